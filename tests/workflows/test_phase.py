"""Phase diagrams: one batched solve over a grid of config fields, written as one dataset."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

import advdyn as ad
from advdyn.cli import app
from advdyn.config.phase import validate_phase_config
from advdyn.simulate.sgd import time_grid
from advdyn.solution import RESULTS
from advdyn.workflows.bins import spectral_instances
from advdyn.workflows.phase import phase_diagram, stochastic_diagram, write_phase

SMALL = {
    "problem": {"d": 100_000, "loss": "least_squares", "epsilon": 0.3,
                "spectrum": {"kind": "uniform", "low": 0.2, "high": 1.8},
                "task": {"kind": "regression", "noise": 0.0}},
    "lr": {"kind": "constant", "gamma": 0.5},
    "run": {"t_max": 3.0, "n_times": 7, "methods": ["ode"], "bins": 8, "bins_check": False},
    # gamma = 6 diverges (2 gamma - gamma^2 tr K / d < 0)
    "phase": {"x": {"field": "problem.epsilon", "values": [0.0, 0.4]},
              "y": {"field": "lr.gamma", "values": [0.5, 1.5, 6.0]}},
}


def test_phase_diagram_matches_point_solves_and_marks_divergence(tmp_path, monkeypatch):
    import advdyn.workflows.phase as phase

    cfg = validate_phase_config(SMALL)
    checks = []  # write_phase checks once, before its status line, and solves what it checked
    real_check = phase.check_phase
    monkeypatch.setattr(phase, "check_phase", lambda *a: checks.append(1) or real_check(*a))
    result = write_phase(cfg, tmp_path)
    assert len(checks) == 1
    ds = xr.open_dataset(tmp_path / "phase.nc")
    assert ds["adv_risk"].dims == ("problem.epsilon", "lr.gamma", "time")
    assert set(p.name for p in result.files.values()) == {"phase.nc", "phase.png",
                                                          "phase.json"}
    codes = ds["result"].values
    assert (codes[:, 2] == RESULTS.diverged).all() and (codes[:, :2] == 0).all()
    assert np.isnan(ds["final_adv_risk"].values[:, 2]).all()
    # one point against the host solve of the same config
    run = cfg.run_config().with_overrides(**{"problem.epsilon": 0.4, "lr.gamma": 1.5})
    _, binned = spectral_instances(run)
    times = time_grid(run.problem.d, run.run.t_max, run.run.n_times).times
    ref = ad.solve_ode(binned, ad.Constant(1.5), times)
    np.testing.assert_allclose(ds["adv_risk"].values[1, 1], ref["adv_risk"], rtol=1e-9)
    # eps = 0, noiseless: |theta - theta*|^2 descends at every stable rate (THEORY 6)
    assert (ds["monotone_dist"].values[0, :2] == 1).all()
    ds.close()


def test_phase_diagram_of_one_field_chunked_as_one_solve():
    cfg = validate_phase_config(SMALL).run_config()
    whole = phase_diagram(cfg, {"problem.ridge": [0.0, 0.1, 0.2]}).dataset
    chunked = phase_diagram(cfg, {"problem.ridge": [0.0, 0.1, 0.2]}, chunk=2).dataset
    assert whole["adv_risk"].dims == ("problem.ridge", "time")
    np.testing.assert_allclose(chunked["adv_risk"].values, whole["adv_risk"].values,
                               rtol=1e-12)


def test_phase_cli_refuses_a_field_it_cannot_batch(write_toml, tmp_path):
    from importlib import resources

    text = resources.files("advdyn").joinpath("defaults/phase.toml").read_text()
    text = text.replace('x = { field = "problem.epsilon"', 'x = { field = "problem.d"')
    path = write_toml(text)
    result = CliRunner().invoke(app, ["phase", str(path), "-o", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 2
    assert "problem.d" in result.output and "Traceback" not in result.output


SGD_PHASE = {**SMALL,
             "problem": {**SMALL["problem"], "d": 40},
             "run": {"t_max": 1.0, "n_times": 5, "methods": ["ode", "sgd"], "replicates": 2,
                     "dtype": "float64"},
             "phase": {"x": {"field": "lr.gamma", "values": [0.5, 6.0]}, "chunk": 1}}


def _sgd_reference(run, gamma):
    """The host SGD run of ``run`` at ``lr.gamma = gamma``."""
    return ad.simulate_sgd(ad.instantiate(run.problem), ad.Constant(gamma),
                           ad.stream_key(run.problem.seed), t_max=run.run.t_max,
                           n_times=run.run.n_times, replicates=run.run.replicates,
                           dtype=run.run.dtype)


def test_stochastic_diagram_is_the_host_sgd_run_on_every_point():
    """Cheap sibling of the next test: SGD replicates x points as one chunked, vmapped
    solve; each point is the host run to rounding (float64 iterates: 1e-12 relative, where a
    wrong stream or step moves a record by ~d^{-1/2} ~ 0.15); gamma = 6 diverges: a code
    and NaN records."""
    run = validate_phase_config(SGD_PHASE).run_config()
    inst = ad.instantiate(run.problem)
    out, timings = stochastic_diagram(run, "sgd", ["lr.gamma"], np.array([[0.5], [6.0]]),
                                      inst, chunk=1)
    assert out["sgd_result"][1].tolist() == [RESULTS.successful, RESULTS.diverged]
    assert out["sgd_adv_risk"][0] == ["lr.gamma", "replicate", "time"]
    risk = out["sgd_adv_risk"][1]
    np.testing.assert_allclose(risk[0], _sgd_reference(run, 0.5)["adv_risk"], rtol=1e-12)
    assert np.isnan(risk[1, :, -1]).all() and np.isnan(out["sgd_final_adv_risk"][1][1])
    assert set(timings) == {"compile_s", "solve_s"}


@pytest.mark.slow
def test_phase_diagram_adds_sgd_replicates_as_one_batched_solve(tmp_path):
    """``run.methods = ["ode", "sgd"]``: SGD's replicates on every grid point beside the ODE
    (chunked), each point the host run of the same config to rounding (see the cheap
    sibling above), and a diverging point a code and NaN records, not a failed study."""
    cfg = validate_phase_config(SGD_PHASE)
    result = write_phase(cfg, tmp_path)
    ds = result.dataset
    assert ds["sgd_adv_risk"].dims == ("lr.gamma", "replicate", "time")
    assert ds.attrs["methods"] == ["ode", "sgd"]
    assert ds["sgd_result"].values.tolist() == [RESULTS.successful, RESULTS.diverged]
    assert np.isnan(ds["sgd_adv_risk"].values[1, :, -1]).all()
    assert np.isfinite(ds["sgd_gap"].values[0]) and np.isnan(ds["sgd_gap"].values[1])
    ref = _sgd_reference(cfg.run_config(), 0.5)
    np.testing.assert_allclose(ds["sgd_adv_risk"].values[0], ref["adv_risk"], rtol=1e-12)
    summary = (tmp_path / "phase.json").read_text()
    assert '"sgd_results"' in summary


# under -m slow (three compilations of the batched solve); the default sibling on the same
# chunking is test_phase_diagram_of_one_field_chunked_as_one_solve
@pytest.mark.slow
def test_phase_grid_in_blocks_on_a_dask_cluster_matches_one_batched_solve():
    from dask.distributed import Client, LocalCluster

    from advdyn.workflows.phase_chunks import distributed_phase_diagram

    cfg = validate_phase_config(SMALL).run_config()
    axes = {"problem.epsilon": [0.0, 0.4, 0.8], "lr.gamma": [0.5, 1.5]}
    whole = phase_diagram(cfg, axes).dataset
    # two in-process workers (threads): the Dask path without starting processes
    with LocalCluster(n_workers=2, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        res = distributed_phase_diagram(cfg, axes, blocks=2, client=client)
    ds = res.dataset
    assert ds.attrs["blocks"] == 2 and res.timings["points"] == 6
    # blocks of 4 and 2 points: calls of different sizes, kept per block; every timing summed
    assert ds.attrs["chunk"] == [4, 2] and "chunk" in ds.attrs["per_block"].split(",")
    assert ds.attrs["solver"] == "tsit5" and {"optimum_s", "solve_cpu_s"} <= set(res.timings)
    assert ds["adv_risk"].dims == whole["adv_risk"].dims
    np.testing.assert_array_equal(ds["problem.epsilon"].values, [0.0, 0.4, 0.8])
    np.testing.assert_array_equal(ds["result"].values, whole["result"].values)
    # each point's adaptive steps are its own in any batch: only rounding differs
    for name in ("adv_risk", "dist_to_opt", "final_adv_risk", "time_within"):
        np.testing.assert_allclose(ds[name].values, whole[name].values, rtol=1e-12)


# run in a process with two XLA CPU devices (this one has the devices JAX started with)
SHARDED = r"""
import os, sys
import jax, jax.numpy as jnp, numpy as np
from advdyn.workflows.phase import Batching, sharded_rows

assert jax.device_count() == 2
def fn(values, index, shared):  # an adaptive loop: each row takes its own iterations
    def body(c):
        k, x = c
        return k + 1, x * 0.5 + values[0] + shared[index]
    return jax.lax.while_loop(lambda c: c[0] < 3 + 4 * index, body, (0, values[1]))[1]

values = jnp.asarray(np.random.default_rng(0).normal(size=(12, 2)))
index = jnp.asarray([0, 1, 2] * 4)
shared = jnp.asarray([0.1, -0.2, 0.3])
mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("point",))
two = sharded_rows(fn, Batching(batch=3, call=12, devices=2, mesh=mesh))(values, index, shared)
one = sharded_rows(fn, Batching(batch=3, call=12, devices=1, mesh=None))(values, index, shared)
alone = jnp.stack([fn(values[k], index[k], shared) for k in range(12)])
assert len(two.sharding.device_set) == 2, two.sharding
np.testing.assert_array_equal(np.asarray(two), np.asarray(one))
np.testing.assert_allclose(np.asarray(two), np.asarray(alone), rtol=1e-12)
print("ok")
"""


def test_batched_solve_split_over_two_devices_is_the_one_device_solve():
    """The glue of `phase_diagram`'s solve (`sharded_rows`: rows in vmapped batches under
    ``lax.map``, split over the devices by ``shard_map``, a shared table replicated) gives
    each row exactly what one device gives, and the row's own loop (a batched while loop
    must not run a row past its own end). Cheap: a toy loop, not an ODE."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_merged_blocks_keep_attributes_that_differ_per_block():
    """`merge_attrs` (the Dask blocks' datasets as one): what every block has alike stays a
    value, what differs (the solver ``auto`` chose per block, the call size) becomes the
    list of the blocks' values, named in ``per_block``; nothing is taken from block 0 alone."""
    from advdyn.workflows.phase_chunks import merge_attrs

    blocks = [{"solver": "tsit5", "chunk": 4, "fields": ["a", "b"], "factor": 1.1},
              {"solver": "kvaerno5", "chunk": 4, "fields": ["a", "b"], "factor": 1.1},
              {"solver": "tsit5,kvaerno5", "chunk": 2, "fields": ["a", "b"], "factor": 1.1}]
    merged = merge_attrs(blocks)
    assert merged["solver"] == ["tsit5", "kvaerno5", "tsit5,kvaerno5"]
    assert merged["chunk"] == [4, 4, 2]
    assert merged["fields"] == ["a", "b"] and merged["factor"] == 1.1
    assert merged["per_block"] == "solver,chunk"
    assert merge_attrs(blocks[:1])["per_block"] == ""


def test_time_within_panel_marks_not_reached_apart_from_diverged():
    """On the ``time_within`` panel a point that did not come within the factor by t_max
    (NaN there, result 0) has its own hatch and legend entry, not the grey of a diverged
    point; a line plot (one field) marks it too."""
    from advdyn.plot.phase_diagram import plot_phase

    eps, gamma = np.array([0.0, 0.5, 1.0]), np.array([0.5, 1.0, 2.0])
    within = np.array([[1.0, np.nan, 2.0], [1.5, 2.5, np.nan], [np.nan, np.nan, np.nan]])
    result = np.zeros((3, 3), int)
    result[2] = RESULTS.diverged
    dims = ("problem.epsilon", "lr.gamma")
    ds = xr.Dataset({"final_adv_risk": (dims, np.ones((3, 3))),
                     "final_clean_risk": (dims, np.ones((3, 3))),
                     "monotone_dist": (dims, np.ones((3, 3))),
                     "time_within": (dims, within), "result": (dims, result)},
                    coords={"problem.epsilon": eps, "lr.gamma": gamma,
                            "time": np.linspace(0, 3, 4)},
                    attrs={"fields": list(dims), "factor": 1.1})
    for data in (ds, ds.isel({"lr.gamma": 1}, drop=True).assign_attrs(
            fields=["problem.epsilon"])):
        fig = plot_phase(data)
        panel = next(ax for ax in fig.axes if ax.get_title().startswith("time until")
                     or ax.get_ylabel().startswith("time until"))
        # a line plot's legend is beside its panel; heat maps share one under the panels
        legend = panel.get_legend() or fig.legends[0]
        labels = [t.get_text() for t in legend.get_texts()]
        assert any(lab.startswith("not reached by") for lab in labels), labels
        assert "diverged / failed" in labels


#: two instance fields (the optimum is solved once per distinct (ridge, eps) and indexed by
#: every point of every call), a d small enough that the compile dominates
TWO_INSTANCE_FIELDS = {"problem.ridge": [0.0, 0.1, 0.3],
                       "problem.epsilon": [0.0, 0.2, 0.4, 0.6, 0.9]}


@pytest.mark.parametrize("chunk", [
    7,  # 15 points in 3 calls of 7, the last padded: the index crosses calls
    pytest.param(None, marks=pytest.mark.slow), pytest.param(3, marks=pytest.mark.slow),
    pytest.param(5, marks=pytest.mark.slow), pytest.param(1, marks=pytest.mark.slow),
])
def test_each_point_gets_the_optimum_of_its_own_instance_values(chunk):
    """``adv_risk_opt`` of every point is ``optimum()`` of the instance at that point's
    (ridge, eps), in any cut of the grid into calls (the sorted, padded rows index the
    distinct values' optima). The same optimum program on the same inputs: to rounding."""
    import equinox as eqx
    import jax.numpy as jnp

    from advdyn.config import default_config
    from advdyn.config.build import instantiate
    from advdyn.theory.stationary import optimum

    cfg = default_config().with_overrides(**{
        "problem.d": 20, "problem.loss": "least_squares", "problem.task.noise": 0.3,
        "run.t_max": 0.5, "run.n_times": 3, "run.methods": ["ode"]})
    ds = phase_diagram(cfg, TWO_INSTANCE_FIELDS, chunk=chunk).dataset
    assert ds.attrs["chunk"] == (chunk or 15)
    inst = instantiate(cfg.problem)
    direct = np.array([[float(optimum(eqx.tree_at(lambda o: (o.ridge, o.epsilon), inst,
                                                  (jnp.asarray(r), jnp.asarray(e)))).adv_risk)
                        for e in TWO_INSTANCE_FIELDS["problem.epsilon"]]
                       for r in TWO_INSTANCE_FIELDS["problem.ridge"]])
    assert len(np.unique(direct.round(12))) == direct.size  # every point's is its own
    np.testing.assert_allclose(ds["adv_risk_opt"].values, direct, rtol=1e-12, atol=0)


def test_a_line_panel_with_no_finite_value_draws_its_failed_points_without_warning():
    """A one-field panel whose non-failed values are all NaN (an SGD gap where every
    replicate diverged, a time never reached) puts its failed crosses at 0, silently."""
    import warnings

    from advdyn.plot.phase_diagram import plot_phase

    dims, nan = ("problem.epsilon",), [np.nan] * 3
    ds = xr.Dataset({"final_adv_risk": (dims, [1.0, 1.0, np.nan]),
                     "final_clean_risk": (dims, [1.0, 1.0, np.nan]),
                     "monotone_dist": (dims, [1.0, 1.0, np.nan]), "time_within": (dims, nan),
                     "result": (dims, [0, 0, 1]), "sgd_gap": (dims, nan),
                     "sgd_result": (dims, [0, 0, 1])},
                    coords={"problem.epsilon": [0.0, 0.5, 1.0], "time": np.linspace(0, 3, 4)},
                    attrs={"fields": list(dims), "factor": 1.1, "methods": ["ode", "sgd"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_phase(ds)


_FRESH_PHASE = r"""
import sys
import jax
from advdyn.config.phase import validate_phase_config
from advdyn.workflows.phase import write_phase
assert not jax.config.jax_enable_x64
cfg = validate_phase_config({
    "problem": {"d": 20, "epsilon": 0.2}, "lr": {"gamma": 0.5},
    "run": {"t_max": 1.0, "n_times": 3, "methods": ["ode"]},
    "phase": {"x": {"field": "problem.epsilon", "values": [0.0, 0.3]}}})
result = write_phase(cfg, sys.argv[1])
print(sorted(p.name for p in result.files.values()))
"""


def test_write_phase_runs_with_jax_float64_off(tmp_path):
    # the autouse fixture turns float64 on for every test: write_phase, the command's entry
    # point, must turn it on by itself (it calls the checked diagram directly)
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _FRESH_PHASE, str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "phase.nc" in out.stdout


SMALL_TOML = """  # SMALL, as a file
[problem]
d = 100_000
loss = "least_squares"
epsilon = 0.3
spectrum = { kind = "uniform", low = 0.2, high = 1.8 }
task = { kind = "regression", noise = 0.0 }
[lr]
kind = "constant"
gamma = 0.5
[run]
t_max = 3.0
n_times = 7
methods = ["ode"]
bins = 8
bins_check = false
[phase]
x = { field = "problem.epsilon", values = [0.0, 0.4] }
y = { field = "lr.gamma", values = [0.5, 1.5, 6.0] }
"""


def test_phase_console_script_compiles_its_loops_into_kernels(write_toml, tmp_path):
    """``advdyn phase`` in its own process, where the command line sets XLA's option that
    compiles each while loop into one kernel (`advdyn.cli.LOOP_KERNEL_OPTION`): the run
    succeeds and its records are those of this process's solve (no such option) up to
    rounding. Tolerance: the two differ only in XLA's code generation (order of floating
    point operations), about 1e-14 relative on these records; 1e-10 leaves room for the
    rounding to grow over the solve's steps while staying far below the ODE's own
    tolerance (rtol 1e-8), so a wrong kernel cannot pass."""
    import os
    import subprocess
    import sys

    path = write_toml(SMALL_TOML)  # SMALL as a file
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", ADVDYN_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run(
        [sys.executable, "-c", "from advdyn.__main__ import main; main()", "phase", str(path),
         "-q", "-o", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ds = xr.open_dataset(tmp_path / "out" / "phase.nc")
    ref = phase_diagram(validate_phase_config(SMALL).run_config(),
                        {"problem.epsilon": [0.0, 0.4], "lr.gamma": [0.5, 1.5, 6.0]}).dataset
    np.testing.assert_array_equal(ds["result"].values, ref["result"].values)
    for name in ("adv_risk", "clean_risk", "dist_to_opt"):
        np.testing.assert_allclose(ds[name].values, ref[name].values, rtol=1e-10)
    ds.close()


def test_one_point_a_batch_when_xla_compiles_each_loop_into_one_kernel(monkeypatch):
    """`plan_batching`: batches of `BATCH_BYTES` of solver state under XLA's default, one
    point a batch when ``XLA_FLAGS`` raises XLA's one-kernel loop threshold above a point's
    loop (`loop_kernels`), as ``advdyn phase`` does."""
    from advdyn.workflows.phase import loop_kernels, plan_batching

    option = "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold="
    assert not loop_kernels(10**5, "")
    assert not loop_kernels(10**5, "--xla_force_host_platform_device_count=2")
    assert not loop_kernels(10**5, option + "1024")  # XLA's default: below any ODE's loop
    assert loop_kernels(10**5, option + "1000000000")
    assert not loop_kernels(10**9, option + "1000000000")
    _, binned = spectral_instances(validate_phase_config(SMALL).run_config())
    monkeypatch.setenv("XLA_FLAGS", "")
    assert plan_batching(binned, 7, 600, None).batch > 1
    monkeypatch.setenv("XLA_FLAGS", option + "1000000000")
    plan = plan_batching(binned, 7, 600, None)
    assert plan.batch == 1 and plan.call % plan.devices == 0
