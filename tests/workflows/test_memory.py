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
    # independent arithmetic: per replicate in flight, a block of B x d float32 samples in
    # 2 copies plus their uint32 Philox words (before issue 14 all R replicates held one),
    # 3 copies of R float32 iterates, the float64 instance (2C + 5 vectors of d, C = 1)
    assert est.parts["sgd: samples"] == P * B * d * (2 * 4 + 4)
    assert est.parts["sgd: iterates"] == 3 * R * d * 4
    assert est.parts["instance"] == 7 * d * 8
    assert est.peak == est.parts["instance"] + sum(v for k, v in est.parts.items()
                                                   if k.startswith("sgd"))


def test_oversized_sgd_run_is_refused_naming_the_fields():
    cfg = config(methods=["sgd"], replicates=16, block_size=64)
    # 64 x 1e7 x 12 B = 7.7 GB of samples per replicate in flight (one per device)
    with pytest.raises(ad.ConfigError) as err:
        check_memory(cfg, available=(6 * GB, "test"))
    assert err.value.field == "run.block_size"
    msg = str(err.value)
    for name in ("problem.d", "run.replicates", "run.block_size", "run.memory_limit_gb"):
        assert name in msg


def test_per_direction_ode_refused_binned_ode_fits():
    cfg = config(methods=["ode"], n_times=51)
    # 14 x 3 x 1e7 x 8 B = 3.4 GB (since issue 14 the solve keeps no saved states, only
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
