"""Memory estimate and refusal of runs that cannot fit (advdyn.memory)."""

from __future__ import annotations

import jax
import pytest

import advdyn as ad
from advdyn.config.schema import validate_config
from advdyn.workflows.memory import available_memory, check_memory, estimate_memory

GB = 10**9


def config(**run):
    return validate_config({
        "problem": {"d": 10**7, "spectrum": {"kind": "uniform", "low": 0.2, "high": 1.8}},
        "run": run,
    })


def test_sgd_parts_are_the_array_sizes():
    cfg = config(methods=["sgd"], replicates=8, block_size=64, dtype="float32")
    est = estimate_memory(cfg, available=(10**15, "test"))
    d, R, B = 10**7, 8, 64
    P = min(len(jax.local_devices()), R)  # replicates in flight (issue 14: one per device)
    # independent arithmetic: per replicate in flight, a block of B x d float32 samples plus
    # their uint32 Philox words (before issue 14 all R replicates held one), 2 copies of the
    # R float32 iterates (an interval's input and output), 16 bytes per direction of working
    # vectors per device and, on every device but the first, the 3 float64 vectors of d a
    # step reads; the resident float64 instance (2C + 2 vectors of d, C = 1)
    assert est.parts["sgd: samples"] == P * B * d * (4 + 4)
    assert est.parts["sgd: iterates"] == 2 * R * d * 4
    assert est.parts["sgd: per device"] == P * 16 * d + (P - 1) * 3 * d * 8
    assert est.parts["instance"] == 4 * d * 8
    assert est.peak == est.parts["instance"] + sum(v for k, v in est.parts.items()
                                                   if k.startswith("sgd"))


def _xla_total(compiled, devices: int) -> int:
    """XLA's own buffer accounting of a compiled function: per device, arguments + outputs +
    temporaries - aliased bytes, times the devices it runs on (None without an analysis)."""
    m = getattr(compiled, "compiled", compiled).memory_analysis()
    if m is None:
        return None
    per = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
           - m.alias_size_in_bytes)
    return devices * per


@pytest.mark.parametrize("method", ["sgd", "ode"])
def test_estimate_matches_xla_memory_analysis(method):
    """The estimate against the buffers XLA allocates for the run's largest executable
    (``benchmarks/bench_memory.py`` measures the issue-14 runs the same way)."""
    import jax.numpy as jnp
    import numpy as np

    from advdyn.config.build import instantiate
    from advdyn.config.schema import default_config
    from advdyn.simulate import sgd as S
    from advdyn.simulate.streams import stream_words
    from advdyn.theory import ode as O
    from advdyn.theory.recording import make_recorder
    from advdyn.theory.stationary import adversarial_optimum

    d, R = 3000, 2
    cfg = default_config().with_overrides(**{
        "problem.d": d, "run.t_max": 0.5, "run.n_times": 3, "run.replicates": R,
        "run.methods": [method], "run.dtype": "float32",
    })
    inst = instantiate(cfg.problem)
    lr = ad.Constant(0.8)
    if method == "sgd":  # one recording interval, with the arguments simulate_sgd passes
        from advdyn.simulate import driver as D

        grid = S.time_grid(d, 0.5, 3, 64)
        mesh = D._replicate_mesh(R)
        opt = adversarial_optimum(inst)
        carry = (jnp.broadcast_to(inst.theta0.astype(jnp.float32), (R, d)),
                 jnp.asarray(0, jnp.int32))
        compiled = D._interval_jit.lower(
            S.sgd_block, carry, jnp.asarray(1, jnp.int64), stream_words(ad.stream_key(0)),
            jnp.asarray(grid.times), grid.stride, grid.block, inst, lr,
            make_recorder(inst, opt), D.divergence_bound(inst, 1e6), mesh,
        ).compile()
        devices = 1 if mesh is None else int(mesh.size)
    else:  # the per-direction Tsit5 solve
        f64 = jnp.float64
        compiled = O._solve.lower(
            inst, lr, make_recorder(inst, adversarial_optimum(inst)),
            jnp.asarray(np.linspace(0, 0.5, 3)), jnp.asarray(1e-8, f64),
            jnp.asarray(1e-20, f64), 1000, jnp.asarray(1e6, f64), "tsit5",
        ).compile()
        devices = 1
    measured = _xla_total(compiled, devices)
    if measured is None:
        pytest.skip("memory_analysis() gives nothing on this backend")
    est = estimate_memory(cfg, available=(10**15, "test")).peak
    # XLA 0.10 on the CPU gives 0.99-1.02 (benchmarks/bench_memory.py). 10% leaves room for
    # another XLA fusing the small working vectors differently (16 bytes per direction per
    # device against 8 x 64 for a sampling block) while catching a missing or extra copy of
    # a sampling block, of the ODE state (1/13 of the ODE) or of the iterates.
    assert est == pytest.approx(measured, rel=0.10)


def test_oversized_sgd_run_is_refused_naming_the_fields():
    cfg = config(methods=["sgd"], replicates=16, block_size=64)
    # 64 x 1e7 x 8 B = 5.1 GB of samples per replicate in flight (one per device)
    with pytest.raises(ad.ConfigError) as err:
        check_memory(cfg, available=(6 * GB, "test"))
    assert err.value.field == "run.block_size"
    msg = str(err.value)
    for name in ("problem.d", "run.replicates", "run.block_size", "run.memory_limit_gb"):
        assert name in msg


def test_per_direction_ode_refused_binned_ode_fits():
    cfg = config(methods=["ode"], n_times=51)
    # 13 x 3 x 1e7 x 8 B = 3.1 GB (since issue 14 the solve keeps no saved states, only
    # scalar records; it was (12 + 2 x 51) x 3 x 1e7 x 8 B = 27 GB)
    with pytest.raises(ad.ConfigError) as err:
        check_memory(cfg, available=(2 * GB, "test"))
    assert err.value.field == "run.bins"
    binned = config(methods=["ode"], n_times=51, bins=64)
    est = check_memory(binned, available=(16 * GB, "test"))
    assert est.parts["instance"] == 0  # the config path draws no instance
    assert est.peak < 10**7  # independent of d: a few MB at most


def test_memory_limit_override_and_pipeline_refusal():
    cfg = validate_config({"problem": {"d": 100_000},
                           "run": {"methods": ["sgd"], "memory_limit_gb": 0.01}})
    with pytest.raises(ad.ConfigError, match=r"run\.memory_limit_gb"):
        ad.run(cfg)  # refused before anything is drawn or compiled
    assert estimate_memory(cfg).source == "run.memory_limit_gb"


def test_available_memory_is_measured():
    n, source = available_memory()
    assert n > 0 and source


def test_binned_data_estimate_bounds_the_measured_lanczos(tmp_path):
    """The binned data path's estimate holds the block Lanczos at its Rayleigh-Ritz step
    (`lanczos_arrays`: ``5 m b d + 3 b d + (m + 3) n b + 12 n`` and a converted block of
    rows, the coarser check included), and that bounds the peak of NumPy's allocations
    measured while `spectral_statistics` runs (tracemalloc), for regression and
    classification, on a float64 and a float32 table; an older count, ``2 m b d + 2 n b``,
    does not."""
    import tracemalloc

    import numpy as np

    from advdyn.checks import ROW_BLOCK_BYTES
    from advdyn.problem.data import spectral_statistics
    from advdyn.workflows.memory import lanczos_arrays

    n, d, probes, steps = 600, 400, 6, 6
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d))
    np.savez(tmp_path / "rows.npz", X=X, y=X[:, 0])
    cfg = validate_config({"problem": {"loss": "least_squares", "data": {
        "path": str(tmp_path / "rows.npz"), "task": "regression", "spectrum": "binned",
        "probes": probes, "lanczos_steps": steps}}, "run": {"methods": ["ode"]}})
    est = estimate_memory(cfg, available=(10**15, "test"))
    block = probes + 1 + 2
    assert est.parts["instance: draw temporaries"] == 8 * (  # (and theta_0's draw: 3 d)
        3 * d + 5 * steps * block * d + 3 * block * d + (steps + 3) * n * block + 12 * n
        + 2 * ROW_BLOCK_BYTES // 8)
    assert est.parts["data"] == 2 * n * d * 8
    for task, y in (("regression", X[:, 0] + rng.standard_normal(n)),
                    ("classification", np.where(rng.random(n) < 0.5, 1.0, -1.0))):
        b = probes + (2 if task == "classification" else 1) + 2
        for table in (X, X.astype(np.float32)):
            tracemalloc.start()
            start = tracemalloc.get_traced_memory()[0]
            spectral_statistics(table, y, task, probes=probes, steps=steps, seed=0,
                                theta0=rng.standard_normal(d))
            peak = tracemalloc.get_traced_memory()[1] - start
            tracemalloc.stop()
            assert peak <= 8 * lanczos_arrays(n, d, b, steps), (task, table.dtype)
            if table.dtype == np.float64:  # the old count fell short
                assert peak > 8 * (2 * steps * b * d + 2 * n * b), task


@pytest.mark.parametrize("command", ["phase", "critical-exact"])
def test_phase_and_critical_exact_check_memory_as_run_does(command):
    """Both plans refuse what ``advdyn run`` refuses, before anything is solved: a
    per-direction ODE of ``d = 10^5`` (13 x 3 x 1e5 x 8 B = 31 MB) under a 1 MB limit,
    naming the field that helps most (run.bins)."""
    from advdyn.config.critical_exact import validate_critical_exact_config
    from advdyn.config.phase import validate_phase_config
    from advdyn.workflows.critical_exact import plan_critical_exact
    from advdyn.workflows.phase import check_phase

    data = {"problem": {"d": 10**5}, "run": {"methods": ["ode"], "memory_limit_gb": 0.001}}
    with pytest.raises(ad.ConfigError) as err:
        if command == "phase":
            cfg = validate_phase_config({**data, "phase": {
                "x": {"field": "problem.epsilon", "values": [0.0, 0.1]}}})
            check_phase(cfg.run_config(), {"problem.epsilon": [0.0, 0.1]}, 1.1)
        else:
            plan_critical_exact(validate_critical_exact_config(data))
    assert err.value.field == "run.bins"
    assert "run.memory_limit_gb" in str(err.value)
