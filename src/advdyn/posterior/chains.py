"""Independent SGD chains on adversarial least squares (the Monte Carlo side of the checks).

Inputs ``x ~ N(0, diag(lambda))``, labels ``y = <theta*, x> + sigma z``, per-sample l2
adversarial gradient ``(|r| + eps |theta|)(sign(r) x + eps theta / |theta|)``, batch 1, no
momentum: the setting of POSTERIOR checks 2 to 4.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from advdyn.posterior.curvature import adversarial_ls_sample_gradient
from advdyn.precision import float64


@float64
def ls_chains(
    spectrum: Float[ArrayLike, " p"],
    theta_star: Float[ArrayLike, " p"],
    sigma: float,
    eps: float,
    theta0: Float[ArrayLike, " p"],
    rates,
    record_steps,
    chains: int,
    seed: int = 0,
) -> Float[Array, "K M p"]:
    """Run ``chains`` independent SGD chains and return the iterates at ``record_steps``.

    Parameters
    ----------
    spectrum : array, shape (p,)
        Input variances (diagonal covariance).
    theta_star : array, shape (p,)
        Teacher.
    sigma : float
        Label noise.
    eps : float
        l2 attack radius (0: clean least squares).
    theta0 : array, shape (p,)
        Common start.
    rates : array, shape (S,)
        Learning rate of every step.
    record_steps : array of int, shape (K,)
        Steps (``0 .. S``) after which to record (0: the start).
    chains : int
        Number of chains ``M``.
    seed : int
        Seed; step ``k`` draws from ``fold_in(key(seed), k)``.

    Returns
    -------
    array, shape (K, M, p)
    """
    sq = jnp.sqrt(jnp.asarray(spectrum, jnp.float64))
    ts = jnp.asarray(theta_star, jnp.float64)
    rates = jnp.asarray(np.asarray(rates, np.float64))
    record = np.asarray(record_steps, np.int64)
    total = int(record.max()) if record.size else 0
    if total > rates.shape[0]:
        raise ValueError(f"record step {total} beyond the {rates.shape[0]} given rates")
    # slot[k]: where the iterate after k steps is stored (-1: not recorded)
    slot = np.full(total + 1, -1, np.int64)
    slot[record] = np.arange(len(record))
    theta0 = jnp.broadcast_to(jnp.asarray(theta0, jnp.float64), (chains, sq.shape[0]))
    return _run(sq, ts, sigma, eps, theta0, rates[:total], jnp.asarray(slot),
                jax.random.key(seed), len(record))


@functools.partial(jax.jit, static_argnames=("n_records",))
def _run(sq, ts, sigma, eps, theta0, rates, slot, key, n_records):
    # one compiled scan over all steps; the iterates at the recorded steps go to a buffer
    buf = jnp.zeros((n_records, *theta0.shape), theta0.dtype)
    buf = jnp.where(slot[0] >= 0, buf.at[slot[0]].set(theta0), buf)

    def body(carry, inp):
        theta, buf = carry
        k, eta = inp
        kx, kz = jax.random.split(jax.random.fold_in(key, k))
        x = sq * jax.random.normal(kx, theta.shape)
        y = x @ ts + sigma * jax.random.normal(kz, theta.shape[:1])
        theta = theta - eta * adversarial_ls_sample_gradient(theta, x, y, eps)
        s = slot[k + 1]
        buf = jnp.where(s >= 0, buf.at[jnp.maximum(s, 0)].set(theta), buf)
        return (theta, buf), None

    steps = jnp.arange(rates.shape[0])
    (_, buf), _ = jax.lax.scan(body, (theta0, buf), (steps, rates))
    return buf
