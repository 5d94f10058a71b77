"""Float64 whatever the caller's JAX settings (advdyn.precision).

Every public entry point of the theory rooms is called in a fresh interpreter whose float64
is off (``JAX_ENABLE_X64=0``), with Python, NumPy float64 and float32 JAX inputs
(``tests/float64_calls.py``); each floating leaf of each result must be float64 and equal the
same call made in that interpreter once float64 is turned on, to 1e-12 relative (the two
passes compute the same float64 operations: only compilation may reorder them, far below
1e-12; a float32 computation anywhere, e.g. an input converted before it is widened, differs
by ~1e-8 or more). A constant made at import with float64 off would be float32 in both
passes, so the rooms' module-level arrays are checked for float64 directly. The interpreter
also checks every jaxtyping annotation of the rooms at run time (jaxtyping's import hook
with beartype), so a call whose shapes or types break its annotations fails here.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CALLS = Path(__file__).with_name("float64_calls.py")

#: the theory rooms and their public functions that are not float64 entry points
ROOMS = ("advdyn.problem", "advdyn.theory", "advdyn.posterior", "advdyn.sme",
         "advdyn.critical.linear", "advdyn.critical.exact", "advdyn.posterior.highdim")
NOT_ENTRY_POINTS = {
    # no floating result: a key, a loss object, a check, an integer grid, p-value helpers
    # on NumPy float64 samples
    "stream_key", "make_loss", "check_stable", "step_grid",
    "teacher_direction", "hotelling_pvalue", "t_pvalue", "loglog_slope", "scaling_slope",
    "default_lr", "common_lr", "crossing", "prior_variance_grid", "replicate_variance",
    "group_by_eigenvalue",
    # measurements of a user's model: computed in the model's own dtype (flat_loss(dtype=))
    "flat_loss", "exact_hessian", "per_sample_gradients", "gradient_covariance", "hvp",
    "hutchinson_trace", "lanczos_top_k", "subspace_gradient_covariance",
    "gradient_noise_trace",
    # measurements of a data table in NumPy float64 over blocks of its rows: a float32 table
    # is converted block by block, not widened whole (issue 28's memory)
    "spectral_statistics", "surrogate_diagnostics",
}


def _public_functions():
    for room in ROOMS:
        module = importlib.import_module(room)
        names = getattr(module, "__all__", None) or [
            n for n, o in vars(module).items()
            if not n.startswith("_") and inspect.isfunction(o) and o.__module__ == room]
        for name in names:
            obj = getattr(module, name)
            if inspect.isfunction(obj) and name not in NOT_ENTRY_POINTS:
                yield f"{room}.{name}", obj


#: the default run's calls: the core's entry points (the ODE, the optimum and the limit, SGD
#: and HSGD, the SME, the posterior path, eps*, binning), each also with float32 inputs where
#: the calls have such a variant; `-m slow` calls every entry point
CORE = ("solve_ode", "solve_ode f32 instance", "adversarial_optimum", "adversarial_optimum f32",
        "constant_rate_limit", "constant_rate_limit f32", "simulate_sgd",
        "simulate_sgd f32 instance", "simulate_hsgd", "solve_sme", "posterior_path",
        "instance_critical_radius", "bin_instance f32", "stationary_covariance f32",
        "ProblemInstance.initial_state f32", "GaussianLeastSquares.risk f32", "Constant f32")


def test_every_theory_entry_point_is_declared_float64():
    undecorated = [n for n, f in _public_functions() if not hasattr(f, "__advdyn_float64__")]
    assert not undecorated, f"public theory functions without @float64: {undecorated}"


def test_core_entry_points_return_float64_when_jax_float64_is_off(tmp_path):
    _check_in_a_float32_interpreter(tmp_path, CORE)


@pytest.mark.slow
def test_theory_entry_points_return_float64_when_jax_float64_is_off(tmp_path):
    _check_in_a_float32_interpreter(tmp_path, ())


def _check_in_a_float32_interpreter(tmp_path, only):
    """Run tests/float64_calls.py (the calls named in ``only``, or all) with float64 off."""
    out = tmp_path / "off.pkl"
    # XLA's backend at optimisation level 0: the child's tiny calls are nearly all
    # compilation (~550 programs, a third less CPU at level 0). The level is LLVM's code
    # generation, after JAX has fixed every dtype; both passes run under it
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        flags = f"{flags} --xla_backend_optimization_level=0".strip()
    env = {**os.environ, "JAX_ENABLE_X64": "0", "XLA_FLAGS": flags,
           "ADVDYN_FLOAT64_ONLY": ",".join(only)}
    # the child also checks the rooms' jaxtyping annotations (shapes and dtypes) at run time
    child = subprocess.run([sys.executable, str(CALLS), str(out), "--jaxtyping"], env=env,
                           capture_output=True, text=True, timeout=1200)
    assert child.returncode == 0, child.stderr[-3000:]
    off = pickle.loads(out.read_bytes())
    assert off["x64"] is False
    assert not off["narrow_module_arrays"], off["narrow_module_arrays"]
    reference = off["reference"]
    if only:  # every named call exists (a renamed one must not drop out silently)
        assert set(reference) == set(only), set(only) - set(reference)
    failures = []
    for name, ref in reference.items():
        got = off["report"][name]
        if "error" in ref or "error" in got:
            failures.append(f"{name}: {ref.get('error') or got.get('error')}")
            continue
        narrow = [t for t in got["dtypes"] if t in ("float32", "float16", "bfloat16",
                                                    "complex64")]
        if narrow:
            failures.append(f"{name}: {narrow} without float64")
        for a, b in zip(got["values"], ref["values"], strict=True):
            if a is None or b is None:
                continue
            if a.shape != b.shape or not np.allclose(a, b, rtol=1e-12, atol=0.0,
                                                     equal_nan=True):
                failures.append(f"{name}: values differ from float64 "
                                f"(max {np.max(np.abs(a - b)) if a.shape == b.shape else a.shape})")
                break
    assert not failures, "\n".join(failures)


def test_float64_keeps_the_arguments_it_is_told_to():
    """``@float64(keep=(...))`` passes the named arguments as they are (a data set's float32
    rows, which a float64 copy would double) and widens the others, by position or name."""
    import jax.numpy as jnp

    from advdyn.precision import float64

    @float64(keep=("rows",))
    def dtypes(scale, rows, *, shift=None):
        return scale.dtype, rows.dtype, None if shift is None else shift.dtype

    f32 = jnp.ones(3, jnp.float32)
    assert dtypes(f32, np.ones(2, np.float32)) == (np.float64, np.float32, None)
    assert dtypes(f32, rows=f32, shift=f32) == (np.float64, np.float32, np.float64)
