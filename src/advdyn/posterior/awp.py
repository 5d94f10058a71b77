"""Adversarial weight perturbation (AWP) as an optax gradient transformation.

AWP (Wu, Xia and Wang, 2020) trains on the worst case of a *weight* perturbation on top of
the input attack: at weights ``w`` with gradient ``g`` (at the adversarial inputs), each
weight matrix ``w_l`` is moved to ``w_l + v_l`` with the layer-wise relative step

    v_l = gamma |w_l| g_l / |g_l|          (Frobenius norms; one ascent step),

the gradient is taken at ``w + v`` (same adversarial inputs), and the step is applied to
the *unperturbed* ``w``: the perturbation is removed after every step. Only arrays with two
or more axes (weight matrices, convolution kernels) are perturbed; biases are not, as in the
public AWP code. ``gamma = 5e-3`` is that code's default; a warm-up leaves the first
``warmup_steps`` steps unperturbed.

`awp` wraps any optax transformation (the inner optimiser sees the perturbed
gradient); its ``update`` needs the extra argument ``grad_fn`` (weights to gradient).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


def _perturbed_leaf(w, g, gamma):
    if not hasattr(w, "ndim") or w.ndim < 2:
        return jnp.zeros_like(w)
    gn = jnp.linalg.norm(g)
    scale = gamma * jnp.linalg.norm(w) / jnp.where(gn > 0, gn, 1.0)
    return (scale * g).astype(w.dtype)


def awp_perturbation(params, grads, gamma):
    """The layer-wise relative weight perturbation ``v_l = gamma |w_l| g_l / |g_l|``.

    Parameters
    ----------
    params : pytree
        Weights ``w``.
    grads : pytree
        Gradient of the (adversarial) loss at ``w``: the ascent direction.
    gamma : float
        Relative size ``|v_l| / |w_l|`` for every weight array with ``ndim >= 2``.

    Returns
    -------
    pytree
        ``v`` (zeros for biases and scalars).
    """
    return jax.tree.map(lambda w, g: _perturbed_leaf(w, g, gamma), params, grads)


class AWPState(NamedTuple):
    """State of `awp`: the step count (for the warm-up) and the inner state."""

    step: jax.Array
    inner: optax.OptState


def awp(
    inner: optax.GradientTransformation, gamma: float = 5e-3, warmup_steps: int = 0
) -> optax.GradientTransformationExtraArgs:
    """Wrap ``inner`` with adversarial weight perturbation.

    Parameters
    ----------
    inner : optax.GradientTransformation
        The optimiser proper (e.g. ``optax.sgd(lr, momentum)``).
    gamma : float
        Relative perturbation size per layer (0 turns AWP off).
    warmup_steps : int
        Steps without perturbation at the start.

    Returns
    -------
    optax.GradientTransformationExtraArgs
        ``update(grads, state, params, *, grad_fn)``: ``grads`` is the gradient at
        ``params`` (the ascent direction), ``grad_fn(w)`` the gradient at any weights with
        the same inputs. The returned updates are ``inner``'s updates for the gradient at
        ``params + v``; apply them to ``params`` (``optax.apply_updates``).
    """

    def init(params):
        return AWPState(jnp.zeros((), jnp.int32), inner.init(params))

    def update(updates, state, params=None, *, grad_fn: Callable | None = None, **extra):
        if params is None or grad_fn is None:
            raise ValueError("awp needs params and grad_fn")
        g = jnp.where(state.step >= warmup_steps, jnp.asarray(gamma), 0.0)
        v = awp_perturbation(params, updates, g)
        perturbed = grad_fn(optax.apply_updates(params, v))
        new_updates, inner_state = inner.update(perturbed, state.inner, params)
        return new_updates, AWPState(state.step + 1, inner_state)

    return optax.GradientTransformationExtraArgs(init, update)
