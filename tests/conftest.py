"""Shared test helpers."""

from __future__ import annotations

import os
from pathlib import Path

# The suite is dominated by XLA compilation. advdyn's command line compiles its stored
# programs with XLA's loop emitters (advdyn.cli._programs.CPU_COMPILER_OPTIONS: 21-27% less
# compile CPU, docs/benchmarks.md); the tests use the same option for every compilation
# (before JAX starts; the console-script tests inherit it). Results do not depend on it:
# tests/cli/test_programs.py compares stored programs with the API's bit for bit.
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_use_fusion_emitters=false"
    ).strip()
# JAX's "disable most optimizations" (XLA's backend at optimisation level 0, LLVM's expensive
# passes off: code generation after XLA has fixed every operation and dtype) for the suite's
# compilations: its programs are small and most run briefly, so LLVM's optimisation costs
# more CPU than it saves (docs/benchmarks.md "Test suite"). The setting is read per
# compilation: the checks that run long compiled programs (RUNTIME_BOUND below) compile
# theirs fully optimised (none of them compares programs bit for bit). Only code generation
# changes, no tolerance; the console-script tests inherit the variable.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

# One persistent compilation cache for the whole run, in a temporary folder (never the user's
# cache): the two xdist workers and every command-line subprocess (which inherit the
# variable) load what another compiled instead of compiling it again. Programs are the same
# whichever process compiled them; tests of the cache itself set their own folder.
_SESSION_CACHE = None
if not os.environ.get("ADVDYN_CACHE_DIR") and "PYTEST_XDIST_WORKER" not in os.environ:
    import tempfile

    _SESSION_CACHE = tempfile.mkdtemp(prefix="advdyn-test-cache-")
    os.environ["ADVDYN_CACHE_DIR"] = _SESSION_CACHE

import pytest  # noqa: E402  (after the environment above)

from advdyn.workflows.cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache()


#: checks that run under -m slow although they are not marked in their files: the default
#: run's budget (8 minutes on 2 idle cores). Each has a sibling in the default run on the
#: same code path, named here; none is weakened (`pytest -m slow` runs them as written).
SLOW = {
    "tests/theory/test_pure_solvers.py::test_dense_records_step_budget_bounds_the_whole_solve":
        "the dense loop's other exits: test_dense_records_take_fewer_steps_agree_and_keep_"
        "failure_codes",
    "tests/simulate/test_agreement.py::test_sgd_mean_matches_ode_within_3_percent[ls-anisotropic]":
        "SGD vs ODE on ls-anisotropic: test_hsgd_agrees_with_sgd_and_ode_within_3_percent",
    "tests/simulate/test_agreement.py::test_sgd_mean_matches_ode_within_3_percent"
    "[ls-regression-mixture]":
        "mixtures: [logistic-mixture]; least squares: [ls-anisotropic] in test_hsgd",
    "tests/simulate/test_hsgd.py::test_hsgd_agrees_with_sgd_and_ode_within_3_percent"
    "[logistic-mixture]": "[ls-anisotropic]; SGD on logistic-mixture in test_agreement",
    "tests/workflows/test_pipeline.py::test_three_component_classification_sgd_matches_ode":
        "two components: test_agreement's [logistic-mixture]",
    "tests/theory/test_stationary.py::test_limit_matches_sgd_late_time_average":
        "test_limit_matches_long_ode (the limit is the ODE's fixed point; SGD vs ODE above)",
    "tests/theory/test_stationary.py::test_optimum_gradient_vanishes_for_other_losses"
    "[squared_hinge_classification.toml]": "[logistic_binary_mixture.toml] (classification)",
    "tests/theory/test_adaptive.py::test_polyak_is_d_over_trace_for_clean_noiseless_isotropic_ls"
    "[2.5]": "[1.0]",
    "tests/theory/test_ode.py::test_error_variable_ode_matches_pqm_formulation"
    "[ls-regression-mixture]": "[logistic-mixture] and [ls-anisotropic-ridge]",
    "tests/theory/test_relaxed_bins.py::test_run_records_the_relaxed_eigenvalue":
        "test_relaxed_tolerance_saves_steps_and_keeps_the_solver_error",
    "tests/sme/test_sme_checks.py::test_check2_adversarial_weak_order_small_monte_carlo":
        "test_check2_order2_error_is_twice_order1_near_stationarity, test_check1_*",
    "tests/workflows/test_limits.py::test_limit_figure_numbers_cross_check":
        "test_limit_cli_writes_json, test_limit_report_converges_only_for_small_rates",
    "tests/adversarial/test_apgd.py::test_apgd_at_least_as_strong_as_pgd10_mlp":
        "test_reference_autoattack (APGD-CE + APGD-T against the reference), the exact "
        "linear worst cases",
    "tests/theory/test_stationary.py::test_optimum_gradient_vanishes_for_other_losses"
    "[regression_mixture.toml]": "test_least_squares_optimum_is_ridge_solution (regression)",
    "tests/theory/test_stationary.py::test_least_squares_optimum_is_ridge_solution[0.8]":
        "[0.3]",
    "tests/workflows/test_limits.py::test_limit_report_classification_has_no_ridge":
        "test_limit_report_converges_only_for_small_rates; classification optima: "
        "test_optimum_gradient_vanishes_for_other_losses",
    "tests/workflows/test_limits.py::test_limit_cli_on_spectral_bins_at_huge_d":
        "test_limit_cli_writes_json; huge d on bins: test_config_path_at_huge_d_agrees_*",
    "tests/cli/test_cli.py::test_example_config_runs":
        "test_method_ode_only (the same command on the default problem)",
    "tests/cli/test_cli.py::test_console_script_sgd_over_two_devices_with_an_empty_program_store":
        "test_console_script_run_without_quiet; replicates over devices: tests/simulate",
    "tests/theory/test_stationary_gradients.py::"
    "test_optimum_gradient_matches_finite_differences_at_and_between_kinks":
        "test_noiseless_least_squares_optimum_leaves_the_teacher_past_the_kink; gradients "
        "through the optimum and the ODE: tests/theory/test_pure_solvers.py",
    "tests/workflows/test_phase.py::test_phase_diagram_of_one_field_chunked_as_one_solve":
        "test_phase_diagram_matches_point_solves_and_marks_divergence (two fields, chunked)",
    "tests/sme/test_sme_checks.py::test_check4_exact_noise_sme_agrees_with_homogenized_sgd_and_ode":
        "test_sme_solver_matches_exact_sme_moments; HSGD against SGD and the ODE: "
        "tests/simulate/test_hsgd.py",
    "tests/simulate/test_sgd.py::test_float32_run_tracks_float64_statistically":
        "tests/simulate/test_hsgd.py::test_float32_run_tracks_float64",
    "tests/cli/test_critical_cli.py::test_digits_mlp_estimators_agree_and_fast_is_cheap":
        "test_cli_writes_table_summary_and_figure",
    "tests/theory/test_spectral.py::test_converge_bins_doubles_until_tolerance_with_quadratic_decay":
        "test_pipeline_ode_only_with_bins_draws_no_instance (bins_rel_change); "
        "tests/workflows/test_limits.py::test_sweep_run_point_with_bins[True]",
    "tests/simulate/test_sgd.py::test_sgd_divergence_names_time_and_learning_rate":
        "tests/simulate/test_hsgd.py::test_divergence_names_method_time_and_rate; "
        "tests/cli/test_command_contract.py::test_divergence_blame_says_what_happened",
    "tests/theory/test_implicit.py::test_steep_power_law_against_an_explicit_reference":
        "test_steep_power_law_has_no_erratic_late_phase",
    "tests/simulate/test_hsgd.py::test_agreement_is_sensitive_to_the_noise_term":
        "test_hsgd_agrees_with_sgd_and_ode_within_3_percent[ls-anisotropic] (this one shows "
        "that check can fail)",
    "tests/workflows/test_limits.py::test_sweep_run_point_with_bins[False]": "[True]",
    "tests/workflows/test_phase.py::test_each_point_gets_the_optimum_of_its_own_instance_values[7]":
        "test_phase_diagram_matches_point_solves_and_marks_divergence (eps, an instance field, "
        "against point solves with their own optima)",
    "tests/problem/test_data_binned.py::test_phase_on_a_data_problem":
        "test_the_quadratures_convergence_in_lanczos_steps_is_reported (the binned ODE); "
        "phase: tests/workflows/test_phase.py",
    "tests/problem/test_data_binned.py::test_the_binned_ode_matches_the_dense_one[regression]":
        "test_dense_and_binned_start_from_the_same_seeded_theta0 (dense = binned to 1e-9)",
    "tests/problem/test_data_exact.py::test_state_dependent_rates_on_a_data_problem[line-dense]":
        "[polyak-dense]",
    "tests/problem/test_data_exact.py::"
    "test_critical_radius_of_a_data_problem_is_the_synthetic_one[binned]": "[dense]",
    "tests/workflows/test_sweep.py::test_cli_sweep_user_errors":
        "tests/cli/test_command_contract.py (sweep's bad grid, scheduler and file errors)",
    "tests/sme/test_sme_checks.py::test_sme_solver_matches_exact_sme_moments":
        "tests/sme/test_sme_game.py::test_game_sme_solver_matches_exact_sme_moments",
    "tests/workflows/test_limits.py::test_near_optimum_start_is_never_monotone":
        "test_monotone_cli",
    "tests/theory/test_adaptive.py::test_sgd_and_sde_follow_the_ode_under_adaptive_rates[polyak]":
        "tests/simulate/test_hsgd.py::test_documented_stream_and_state_dependent_rate; the "
        "Polyak ODE: test_polyak_is_d_over_trace_for_clean_noiseless_isotropic_ls[1.0]",
    "tests/simulate/test_agreement.py::test_gap_shrinks_with_dimension[ls-anisotropic]":
        "test_sgd_mean_matches_ode_within_3_percent[logistic-mixture] (SGD = ODE within the "
        "fluctuation scale at one d); the scaling in d runs here only",
    "tests/theory/test_stationary.py::test_limit_matches_long_ode":
        "tests/workflows/test_limits.py::test_limit_report_converges_only_for_small_rates",
    "tests/theory/test_stationary.py::test_optimum_gradient_vanishes_for_other_losses"
    "[logistic_binary_mixture.toml]":
        "the least-squares optimum: tests/theory/test_stationary_gradients.py",
    "tests/theory/test_relaxed_bins.py::test_relaxed_tolerance_saves_steps_and_keeps_the_solver_error":
        "the binned ODE at its default tolerance: tests/theory/test_spectral.py::"
        "test_binned_ode_matches_per_direction_ode[uniform]",
    "tests/posterior/test_posterior_cli.py::test_cli_small_run_writes_files":
        "the posterior API: tests/posterior/test_posterior_highdim.py and "
        "test_posterior_covariance.py; the command's refusals: "
        "test_bad_inputs_exit_2_naming_the_field",
    "tests/cli/test_programs.py::test_ode_and_optimum_through_a_folder_store_are_bitwise_equal":
        "tests/cli/test_cli.py::test_console_script_run_without_quiet (a run through the store)",
    "tests/theory/test_stationary_gradients.py::test_constant_rate_limit_is_pure_and_differentiable":
        "tests/theory/test_pure_solvers.py (jit, vmap and grad through the optimum and the ODE)",
    "tests/theory/test_stationary.py::test_noiseless_clean_least_squares_edge_cases":
        "tests/theory/test_stationary_gradients.py::"
        "test_noiseless_least_squares_optimum_leaves_the_teacher_past_the_kink",
}


#: checks whose compiled programs run long (many SGD steps at a large d): they compile with
#: JAX's optimisations on (e.g. the first: 21 CPU-s optimised, 76 at level 0)
RUNTIME_BOUND = {
    "tests/simulate/test_hsgd.py::test_hsgd_agrees_with_sgd_and_ode_within_3_percent"
    "[ls-anisotropic]",
    "tests/simulate/test_agreement.py::test_isotropic_least_squares_sgd_matches_closed_form",
    "tests/simulate/test_agreement.py::test_sgd_mean_matches_ode_within_3_percent"
    "[logistic-mixture]",
    "tests/posterior/test_posterior_covariance.py::test_check3_reduced",
    "tests/posterior/test_posterior_covariance.py::"
    "test_check2_multiplicative_fixed_point_matches_chains[reduced]",
    "tests/posterior/test_posterior_covariance.py::"
    "test_check4_transient_after_decay_matches_chains[reduced]",
}


@pytest.fixture(autouse=True)
def _optimise_long_runs(request):
    """Full optimisation for the compilations of a `RUNTIME_BOUND` check."""
    if request.node.nodeid not in RUNTIME_BOUND:
        yield
        return
    import jax

    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid in SLOW:
            item.add_marker(pytest.mark.slow)


def pytest_unconfigure(config):
    if _SESSION_CACHE is not None:
        import shutil

        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


@pytest.fixture
def write_toml(tmp_path):
    """Return ``write(text, name)``: writes a file in ``tmp_path`` and returns its path."""

    def write(text: str, name: str = "config.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(autouse=True)
def _float64():
    """Run each test with JAX's float64 on, as the library's entry points do.

    Importing advdyn changes no global JAX state; the entry points enable float64 for their
    own duration (advdyn.precision). Tests also call low-level building blocks (statistics,
    drift, expectations) directly, so each test runs inside the same context. That the entry
    points work without it is checked in a fresh interpreter (tests/test_architecture.py).
    """
    from advdyn.precision import x64

    with x64():
        yield


class _DictStore:
    """An in-memory :class:`advdyn.cli._programs.ExecutableStore` (a dict of key to bytes)."""

    def __init__(self):
        self.data: dict[str, bytes] = {}

    def get(self, key):
        return self.data.get(key)

    def put(self, key, blob):
        self.data[key] = blob


@pytest.fixture
def new_program_store():
    """Return the in-memory executable store class: each call makes an empty store."""
    return _DictStore


@pytest.fixture
def program_store(new_program_store):
    """An empty in-memory executable store, set for the test (the previous one restored)."""
    from advdyn.cli._programs import set_store

    s = new_program_store()
    old = set_store(s)
    yield s
    set_store(old)
