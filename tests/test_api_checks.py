"""The Python API refuses bad arguments at its public constructors and entry points with a
clear error naming the argument (:mod:`advdyn.checks`, the layer the command line uses too),
before any computation: never a raw ``AttributeError``, ``MemoryError``, a NaN result or a
failure much later (the table of the issue "every command checks before it computes")."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

import advdyn as ad
from advdyn.adversarial import Attack, Schedule
from advdyn.posterior import stationary_covariance
from advdyn.theory import constant_rate_limit

CFG = ad.ProblemConfig(d=20, spectrum={"kind": "uniform", "low": 0.5, "high": 1.5},
                       task={"kind": "regression", "noise": 0.3}, epsilon=0.3)


@pytest.fixture(scope="module")
def inst():
    return ad.instantiate(CFG)


@pytest.fixture(scope="module")
def ode():
    # a labelled reference as compare takes it (no solve needed to check the other argument)
    return xr.Dataset({"adv_risk": ("time", [1.0, 0.5])}, coords={"time": [0.0, 1.0]})


H = np.diag([1.0, 2.0])
C = np.diag([0.5, 0.5])

# (name, call(inst, ode), the argument the message must name [: and what it says])
CASES = [
    ("sgd dtype float16", lambda i, o: ad.simulate_sgd(i, ad.Constant(0.5), ad.stream_key(0),
                                                       t_max=1.0, dtype="float16"), "dtype"),
    ("sgd bare float lr", lambda i, o: ad.simulate_sgd(i, 0.5, ad.stream_key(0), t_max=1.0),
     "lr"),
    ("sgd int key", lambda i, o: ad.simulate_sgd(i, ad.Constant(0.5), 0, t_max=1.0), "key"),
    ("hsgd bare float lr", lambda i, o: ad.simulate_hsgd(i, 0.5, ad.stream_key(0), t_max=1.0),
     "lr"),
    ("ode bare float lr", lambda i, o: ad.solve_ode(i, 0.5, np.linspace(0, 1, 3)), "lr"),
    ("limit gamma -1", lambda i, o: constant_rate_limit(i, -1.0), "gamma"),
    ("limit gamma nan", lambda i, o: constant_rate_limit(i, math.nan), "gamma"),
    ("covariance eta < 0", lambda i, o: stationary_covariance(H, C, -0.05), "eta"),
    ("covariance batch 0", lambda i, o: stationary_covariance(H, C, 0.05, batch=0), "batch"),
    ("covariance shapes", lambda i, o: stationary_covariance(H, np.eye(3), 0.05), "C"),
    ("Attack eps -1", lambda i, o: Attack(eps=-1.0), "eps"),
    ("Attack eps string", lambda i, o: Attack(eps="8/255"), "eps"),
    ("Schedule epochs 0", lambda i, o: Schedule(epochs=0), "epochs"),
    ("Schedule epochs -3", lambda i, o: Schedule(epochs=-3), "epochs"),
    ("Schedule lr string", lambda i, o: Schedule(lr="0.1"), "lr"),
    ("instantiate None", lambda i, o: ad.instantiate(None), "config"),
    ("instantiate dict", lambda i, o: ad.instantiate({"d": 10}), "config"),
    ("instantiate d 1e11", lambda i, o: ad.instantiate(CFG.model_copy(update={"d": 10**11})),
     "problem.d"),
    ("stream_key -1", lambda i, o: ad.stream_key(-1), "seed"),
    ("stream_key str", lambda i, o: ad.stream_key("a"), "seed"),
    ("stream_key 2^70", lambda i, o: ad.stream_key(2**70), "seed"),
    ("compare None", lambda i, o: ad.compare(o, None), "other"),
    ("Constant None", lambda i, o: ad.Constant(None), "gamma: must be a real number, got None"),
    ("Constant string", lambda i, o: ad.Constant("0.8"), "gamma"),
    ("integrate_sgd dtype float16", lambda i, o: ad.integrate_sgd(
        i, ad.Constant(0.5), ad.stream_key(0), ad.time_grid(i.d, 1.0, 3), dtype="float16"),
     "dtype"),
    ("integrate_hsgd replicates 0", lambda i, o: ad.integrate_hsgd(
        i, ad.Constant(0.5), ad.stream_key(0), ad.time_grid(i.d, 1.0, 3), replicates=0),
     "replicates"),
    ("integrate_sme replicates 2.0", lambda i, o: _integrate_sme(replicates=2.0),
     "replicates"),
    ("integrate_sme span 0", lambda i, o: _integrate_sme(span=0), "span"),
]


def _integrate_sme(**kwargs):
    import jax
    import jax.numpy as jnp

    from advdyn.sme import SME, GaussianLeastSquares, integrate_sme

    sme = SME(GaussianLeastSquares(jnp.ones(2), jnp.ones(2), 0.5, eps=0.1), 0.1)
    return integrate_sme(sme, jnp.zeros(2), jax.random.key(0), jnp.linspace(0.0, 0.2, 3),
                         0.1, **kwargs)


def test_integrate_sme_refuses_an_unknown_scheme():
    with pytest.raises(ValueError, match="scheme must be one of"):
        _integrate_sme(scheme="milstein")


@pytest.mark.parametrize(("call", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_api_argument_is_a_clear_value_error(inst, ode, call, field):
    with pytest.raises(ValueError) as exc:  # advdyn.ConfigError is a ValueError
        call(inst, ode)
    assert isinstance(exc.value, ad.ConfigError), repr(exc.value)
    name, _, message = field.partition(": ")
    assert exc.value.field == name, str(exc.value)
    assert message in str(exc.value)  # (main said "gamma: must be finite, got nan" for None)
