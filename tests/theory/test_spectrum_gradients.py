"""Gradients of recorded ODE quantities wrt the ridge and the spectrum's parameters.

``jax.grad`` of a record at a time (``adv_risk`` mid-way, ``dist_to_opt`` at the end, the
latter through the pure optimum too) with respect to the explicit ridge, the edges of a
bounded (uniform) spectrum's bins, and a power-law exponent through per-direction
eigenvalues, against central finite differences at 1e-6 relative (the issue's figure).

Step and tolerance: the ODE runs at rtol 1e-12, so each value carries an error ~1e-12
relative that the difference divides by the step. With ``h = 1e-4`` times the parameter
(1e-4 absolute for the ridge, which is 0.05 here) that error is ~1e-8 of the derivative, and
the truncation error ``h^2 f''' / 6`` ~1e-9 for these smooth functions of the parameters
(no kink is within ``h``: the optimum is an interior fixed point with label noise); both are
two orders below the 1e-6 asserted.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import advdyn as ad
from advdyn.config.build import binned_from_config, instantiate
from advdyn.config.schema import ProblemConfig
from advdyn.precision import x64
from advdyn.theory.ode import integrate_ode, make_integrator

TIMES = np.linspace(0.0, 2.0, 3)
INTEGRATOR = make_integrator("tsit5", rtol=1e-12, atol=1e-30)


def _records(inst):
    sol = integrate_ode(inst, ad.Constant(1.0), TIMES, INTEGRATOR)
    return jnp.stack([sol.ys["adv_risk"][1], sol.ys["dist_to_opt"][-1]])


def _check(fn, x, combined=False):
    """Jacobian of ``fn`` at ``x`` (shape (P,)) vs central differences, every entry.

    ``combined``: the gradient of the sum of the records instead (one reverse pass).
    """
    if combined:
        fn = (lambda f: lambda p: jnp.sum(f(p), keepdims=True))(fn)
    with x64():
        jac = np.asarray(jax.jit(jax.jacrev(fn))(x))
        f = jax.jit(fn)
        for k in range(x.size):
            h = 1e-4 * abs(float(x[k]))
            up, down = x.at[k].add(h), x.at[k].add(-h)
            fd = (np.asarray(f(up)) - np.asarray(f(down))) / (2 * h)
            np.testing.assert_allclose(jac[:, k], fd, rtol=1e-6)
    assert np.all(np.abs(jac) > 0)  # every parameter moves both records


# under -m slow (minutes of compilation on the loaded 2 cores); the default sibling on the same
# gradient path is tests/theory/test_pure_solvers.py's eps/gamma gradient
@pytest.mark.slow
def test_gradient_wrt_ridge_and_uniform_spectrum_edges_matches_finite_differences():
    cfg = ProblemConfig(d=10**6, loss="least_squares", epsilon=0.3, ridge=0.05,
                        spectrum={"kind": "uniform", "low": 0.2, "high": 1.8},
                        task={"kind": "regression", "noise": 0.3})
    base = binned_from_config(cfg, 8)
    # the bins' eigenvalues are means of low + (high - low) u_i over index ranges: linear in
    # the edges, with these fixed positions u_b in [0, 1]
    u = (base.eigenvalues - 0.2) / 1.6

    def fn(p):
        ridge, low, high = p
        inst = eqx.tree_at(lambda i: (i.ridge, i.eigenvalues), base,
                           (ridge, low + (high - low) * u))
        return _records(inst)

    _check(fn, jnp.array([0.05, 0.2, 1.8]), combined=True)


# every record separately and a per-direction instance: the dearer sibling
@pytest.mark.slow
def test_gradient_wrt_power_law_exponent_through_per_direction_eigenvalues():
    d = 64
    cfg = ProblemConfig(d=d, loss="least_squares", epsilon=0.3, seed=1,
                        spectrum={"kind": "power_law", "exponent": 1.0},
                        task={"kind": "regression", "noise": 0.3})
    base = instantiate(cfg)
    ranks = jnp.arange(1, d + 1, dtype=jnp.float64)

    def fn(p):
        # advdyn.problem.spectra.power_law in JAX: lambda_i = d i^-a / sum_j j^-a
        lam = ranks ** (-p[0])
        return _records(eqx.tree_at(lambda i: i.eigenvalues, base, (d * lam / lam.sum())[None]))

    np.testing.assert_allclose(np.asarray(base.eigenvalues[0]),
                               np.asarray(d * ranks**-1.0 / jnp.sum(ranks**-1.0)), rtol=1e-12)
    _check(fn, jnp.array([1.0]))
