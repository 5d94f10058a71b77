"""Robust overfitting, measured: adversarial training with momentum SGD and a piecewise
rate decay (optionally with AWP), recording per epoch the robust train/test loss and gap,
the top Hessian eigenvalues, the posterior's curvature and KL terms and the PAC-Bayes bound.

Reuses [`advdyn.adversarial`][advdyn.adversarial] (attacks, models, data,
[`Schedule`][advdyn.adversarial.Schedule], [`evaluate`][advdyn.adversarial.evaluate]). The posterior
model per epoch (our
reconstruction of the paper's construction, see ``docs/posterior.md``):

* curvature: Lanczos top-``k`` eigenpairs ``(h_i, u_i)`` and a Hutchinson trace of the
  Hessian of the adversarial training loss on a fixed training subset; gradient noise
  ``G_ij = u_i^T C u_j`` and ``tr(C)`` from per-sample gradients;
* posterior covariance: the stationary heavy-ball covariance at the epoch's rate ``eta``,
  momentum ``m``, batch ``B`` -- exactly in the top-``k`` subspace (eigenbasis formula with
  the full rotated noise ``V^T C V``, cross-direction covariances included), and
  the curvature term ``1/2 tr(H Sigma) ~ eta tr(C) / (4 B (1 - m))`` to leading order over
  all directions (independent of ``H``);
* KL to the prior ``N(w_0, s0^2 I)`` (``w_0`` the initialisation, drawn before the data):
  the top-``k`` covariance against ``s0^2 I`` (`subspace_kl`), the remaining
  directions at the prior variance, plus the mean term ``|w - w_0|^2 / (2 s0^2)``;
  ``s0^2`` from a geometric grid (union bound);
* bound: McAllester-Maurer with the cross-entropy taken as bounded by ``loss_scale``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from advdyn.adversarial.attacks import Attack
from advdyn.adversarial.data import ArrayData
from advdyn.adversarial.training import Schedule, attacked, evaluate, sample_loss
from advdyn.posterior.awp import awp
from advdyn.posterior.covariance import eigenbasis_covariance
from advdyn.posterior.curvature import (
    flat_loss,
    gradient_noise_trace,
    hutchinson_trace,
    hvp,
    lanczos_top_k,
    subspace_gradient_covariance,
)
from advdyn.posterior.pacbayes import bound_terms, gaussian_kl

#: names of the per-epoch scalar records
RECORDS = (  # the first six every epoch, the rest (but time) when measured
    "lr", "train_loss", "train_acc", "test_loss", "test_acc", "gap", "hessian_trace",
    "hessian_trace_se", "grad_noise_trace", "curvature_topk", "curvature", "kl",
    "prior_variance", "complexity", "bound", "weight_distance", "time",
)


@dataclass(frozen=True)
class Measure:
    """What is measured each epoch and how.

    Parameters
    ----------
    subset : int
        Training samples for the Hessian and gradient noise.
    top_k : int
        Lanczos eigenpairs.
    lanczos_iterations : int
        Krylov dimension.
    probes : int
        Hutchinson probes.
    prior_variances : tuple of float
        Grid of prior variances ``s0^2`` (its size is paid by the union bound).
    delta : float
        Confidence of the bound.
    loss_scale : float
        Bound ``L`` on the loss used to scale it to ``[0, 1]``.
    every : int
        Measure the curvature and bound terms every ``every`` epochs (and at the last);
        NaN in between (losses are recorded every epoch).
    """

    subset: int = 256
    top_k: int = 5
    lanczos_iterations: int = 20
    probes: int = 16
    prior_variances: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    delta: float = 0.05
    loss_scale: float = 5.0
    every: int = 1


@dataclass(frozen=True)
class RobustRecord:
    """Per-epoch records of one training run.

    Attributes
    ----------
    epochs : numpy.ndarray, shape (E,)
        1-based epochs.
    scalars : dict of str to numpy.ndarray
        ``RECORDS`` names, each shape ``(E,)``.
    top_eigenvalues : numpy.ndarray, shape (E, k)
        Lanczos eigenvalues per epoch (largest first).
    model : equinox.Module
        Final model.
    awp_gamma : float
        AWP's relative perturbation (0: plain adversarial training).
    label_noise : float
        Fraction of flipped training labels.
    """

    epochs: np.ndarray
    scalars: dict[str, np.ndarray]
    top_eigenvalues: np.ndarray
    model: object
    awp_gamma: float
    label_noise: float


def flip_labels(y: np.ndarray, classes: int, fraction: float, seed: int) -> np.ndarray:
    """Replace a random ``fraction`` of labels by a different, uniformly drawn class.

    Parameters
    ----------
    y : numpy.ndarray, shape (n,)
        Labels.
    classes : int
        Number of classes.
    fraction : float
        Fraction to flip.
    seed : int
        Seed of the choice.

    Returns
    -------
    numpy.ndarray
        New labels (int32).
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(y).copy()
    idx = rng.choice(len(y), size=round(fraction * len(y)), replace=False)
    y[idx] = (y[idx] + rng.integers(1, classes, len(idx))) % classes
    return y.astype(np.int32)


@eqx.filter_jit
def _epoch(model, opt_state, xb, yb, lrs, keys, attack, gamma, warmup, weight_decay, momentum):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    inner = optax.chain(optax.add_decayed_weights(weight_decay), optax.trace(decay=momentum))
    opt = awp(inner, gamma, warmup)

    def body(carry, inp):
        params, opt_state = carry
        x, y, lr, key = inp
        xa = attacked(eqx.combine(params, static), attack, x, y, key)

        def objective(p):
            return sample_loss(eqx.combine(p, static), xa, y)[0].mean()

        loss, grads = jax.value_and_grad(objective)(params)
        updates, opt_state = opt.update(grads, opt_state, params, grad_fn=jax.grad(objective))
        params = jax.tree.map(lambda p, u: p - lr * u.astype(p.dtype), params, updates)
        return (params, opt_state), loss

    (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), (xb, yb, lrs, keys))
    return eqx.combine(params, static), opt_state, losses.mean()


def subspace_kl(h, G, eta, momentum, batch, dist2, prior_variances):
    """KL of the stationary posterior in the top-``k`` curvature subspace to ``N(w_0, s0^2 I)``.

    The posterior covariance of the positions in the subspace is the position block of
    [`eigenbasis_covariance`][advdyn.posterior.covariance.eigenbasis_covariance] with the full
    rotated noise
    ``G = V^T C V`` (its off-diagonal entries correlate the directions and raise the KL over
    the per-direction product). Directions that are not curved (``h <= 0``) or not stable
    (``eta h >= 2 (1 + m)``) are left at the prior (they contribute nothing). Per prior
    variance ``s0^2``::

        KL = gaussian_kl(0, P, 0, s0^2 I) + |w - w_0|^2 / (2 s0^2)

    Parameters
    ----------
    h : array, shape (k,)
        Curvatures (Lanczos eigenvalues).
    G : array, shape (k, k)
        Per-sample gradient covariance in the eigenbasis, ``V^T C V`` (symmetrised here).
    eta, momentum, batch : float, float, int
        Rate, heavy-ball momentum ``m`` and minibatch size ``B`` of the stationary law.
    dist2 : float
        ``|w - w_0|^2``.
    prior_variances : array, shape (G,)
        ``s0^2`` grid.

    Returns
    -------
    variance : array, shape (k,)
        Stationary position variance per direction (0 where left at the prior or without
        noise).
    kl : array, shape (G,)
        ``+inf`` where the subspace covariance is singular (a direction without noise).
    """
    h = np.asarray(h, np.float64)
    G = np.asarray(G, np.float64)
    G = 0.5 * (G + G.T)
    s = np.asarray(prior_variances, np.float64)
    ok = (h > 0) & (eta * h < 2 * (1 + momentum))
    k = int(ok.sum())
    P = np.asarray(eigenbasis_covariance(h[ok], G[np.ix_(ok, ok)], eta, momentum, batch))
    P = P[:k, :k]
    variance = np.zeros_like(h)
    variance[ok] = np.diag(P)
    mean = 0.5 * dist2 / s
    if k == 0:
        return variance, mean
    if np.linalg.eigvalsh(P)[0] <= 0:
        return variance, np.full_like(s, np.inf)
    zero = np.zeros(k)
    kl = np.array([float(gaussian_kl(zero, P, zero, s0 * np.eye(k))) for s0 in s])
    return variance, kl + mean


def _posterior_terms(model, w0, x, y, attack, eta, momentum, batch, n, measure: Measure, key):
    k1, k2, k3 = jax.random.split(key, 3)
    loss = flat_loss(model, x, y, attack, k1)
    op = hvp(loss)
    p = op.size
    top = lanczos_top_k(op, p, measure.top_k, k2, min(p, measure.lanczos_iterations))
    trace = hutchinson_trace(op, p, k3, measure.probes)
    G = np.asarray(subspace_gradient_covariance(loss, top.vectors), np.float64)
    tr_c = float(gradient_noise_trace(loss))
    h = np.asarray(top.values, dtype=np.float64)
    dist2 = float(jnp.sum((loss.w - w0) ** 2))
    v, kl = subspace_kl(h, G, eta, momentum, batch, dist2, measure.prior_variances)
    curv_topk = 0.5 * float(np.sum(h * v))
    curv = eta * tr_c / (4 * batch * (1 - momentum))
    return top, trace, tr_c, curv_topk, curv, kl, dist2


def robust_training(
    model,
    data: ArrayData,
    attack: Attack,
    schedule: Schedule,
    *,
    awp_gamma: float = 0.0,
    awp_warmup_epochs: int = 0,
    measure: Measure = Measure(),
    label_noise: float = 0.0,
    seed: int = 0,
    advance: Callable[[int], None] | None = None,
) -> RobustRecord:
    """Adversarial training (optionally with AWP) with per-epoch bound terms.

    Parameters
    ----------
    model : equinox.Module
        Initial model (its weights are the prior mean ``w_0``).
    data : ArrayData
        Train/test arrays.
    attack : Attack
        Training and evaluation attack.
    schedule : Schedule
        Momentum SGD with the piecewise decay (``kind = "step"``).
    awp_gamma : float
        AWP relative perturbation (0: plain adversarial training).
    awp_warmup_epochs : int
        Epochs before AWP starts.
    measure : Measure
        Curvature/posterior measurement settings.
    label_noise : float
        Fraction of training labels flipped (the robust-overfitting amplifier).
    seed : int
        Seed of shuffles, attack starts, probes and label flips.
    advance : callable, optional
        Called with 1 after every epoch.

    Returns
    -------
    RobustRecord
    """
    start = time.perf_counter()
    y_train = np.asarray(data.y_train)
    if label_noise > 0:
        y_train = flip_labels(y_train, data.classes, label_noise, seed + 7)
    x = jnp.asarray(data.x_train)
    y = jnp.asarray(y_train)
    n = x.shape[0]
    bs = min(schedule.batch_size, n)
    nb = n // bs
    rates = schedule.rates(nb)
    params = eqx.filter(model, eqx.is_inexact_array)
    w0, _ = ravel_pytree(params)
    inner = optax.chain(optax.add_decayed_weights(schedule.weight_decay),
                        optax.trace(decay=schedule.momentum))
    opt_state = awp(inner).init(params)
    m_sub = min(measure.subset, n)
    x_sub, y_sub = x[:m_sub], y[:m_sub]
    key = jax.random.key(seed)
    rec: dict[str, list[float]] = {k: [] for k in RECORDS}
    tops = []
    gamma = jnp.asarray(awp_gamma, jnp.float32)
    warmup = jnp.asarray(awp_warmup_epochs * nb, jnp.int32)
    for epoch in range(schedule.epochs):
        k_perm, k_att, k_meas = jax.random.split(jax.random.fold_in(key, epoch), 3)
        perm = jax.random.permutation(k_perm, n)[: nb * bs]
        xb = x[perm].reshape(nb, bs, *x.shape[1:])
        yb = y[perm].reshape(nb, bs)
        model, opt_state, _ = _epoch(
            model, opt_state, xb, yb, jnp.asarray(rates[epoch]), jax.random.split(k_att, nb),
            attack, gamma, warmup, schedule.weight_decay, schedule.momentum,
        )
        tr = evaluate(model, x, y, attack, seed=seed + 1)
        te = evaluate(model, data.x_test, data.y_test, attack, seed=seed + 2)
        eta = float(rates[epoch, -1])
        for name, value in (
            ("lr", eta), ("train_loss", tr["adv_loss"]), ("train_acc", tr["adv_acc"]),
            ("test_loss", te["adv_loss"]), ("test_acc", te["adv_acc"]),
            ("gap", te["adv_loss"] - tr["adv_loss"]),
        ):
            rec[name].append(float(value))
        measured = (epoch + 1) % measure.every == 0 or epoch == schedule.epochs - 1
        if measured:
            top, trace, tr_c, curv_topk, curv, kl, dist2 = _posterior_terms(
                model, w0, x_sub, y_sub, attack, eta, schedule.momentum, bs, n, measure,
                k_meas,
            )
            terms = bound_terms(tr["adv_loss"], curv, kl, n, measure.delta,
                                loss_scale=measure.loss_scale)
            i = int(terms.grid_index)
            values = {
                "hessian_trace": float(trace.value), "hessian_trace_se": float(trace.stderr),
                "grad_noise_trace": tr_c, "curvature_topk": curv_topk, "curvature": curv,
                "kl": float(terms.kl), "prior_variance": measure.prior_variances[i],
                "complexity": float(terms.complexity), "bound": float(terms.bound),
                "weight_distance": float(np.sqrt(dist2)),
            }
            tops.append(np.asarray(top.values, dtype=np.float64))
        else:
            values = {}
            tops.append(np.full(measure.top_k, np.nan))
        for name in RECORDS[6:-1]:
            rec[name].append(float(values.get(name, np.nan)))
        rec["time"].append(time.perf_counter() - start)
        if not np.isfinite(tr["adv_loss"]):
            raise FloatingPointError(f"training diverged at epoch {epoch + 1} (lower the lr)")
        if advance is not None:
            advance(1)
    return RobustRecord(
        np.arange(1, schedule.epochs + 1),
        {k: np.asarray(v) for k, v in rec.items()},
        np.stack(tops),
        model,
        float(awp_gamma),
        float(label_noise),
    )
