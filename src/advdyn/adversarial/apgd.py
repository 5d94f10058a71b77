"""Auto-PGD (APGD) with cross-entropy and DLR losses, random restarts, and a worst case over
attacks (in the manner of AutoAttack's ensemble), in JAX.

APGD (Croce and Hein, 2020) is PGD with momentum and a step size that halves when progress
stalls, so it needs no step-size tuning. Per sample, with ``P`` the projection onto the ball
and the data domain, step ``eta`` (initially ``2 eps``) and ``alpha = 0.75``::

    z_{k+1} = P(x_k + eta_k dir(grad f(x_k)))
    x_{k+1} = P(x_k + alpha (z_{k+1} - x_k) + (1 - alpha) (x_k - x_{k-1}))

(the first step is a plain projected step). At the checkpoints ``w_j = ceil(p_j N)``,
``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, the step
halves and the iterate restarts from the best point so far when either fewer than
``rho = 0.75`` of the steps since the previous checkpoint increased ``f``, or the step did not
change at the previous checkpoint and the best value did not improve since. The first run
starts from the clean input (as our PGD does; on a linear model its first step then lands on
the exact worst case), every further restart from a uniform point of the ball; the point
with the largest objective over restarts is kept.

Losses: the cross-entropy, and the difference of logits ratio
``DLR = -(z_y - max_{i != y} z_i) / (z_(1) - z_(3))`` (``z_(k)`` the sorted logits), which is
invariant to shifts and scalings of the logits and so does not suffer from saturated softmax
(it needs at least 3 classes).

:func:`strong_evaluate` evaluates a classifier under several attacks at once (the given PGD,
APGD-CE, APGD-DLR): per sample, the worst cross-entropy over the attacks' adversarial points
and correctness under all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int

from advdyn.adversarial.attacks import (
    NORMS,
    Attack,
    _ascent_direction,
    _constrain,
    perturb,
    random_in_ball,
)
from advdyn.adversarial.training import padded_chunks

APGD_LOSSES = ("ce", "dlr")


def checkpoints(steps: int) -> np.ndarray:
    """APGD checkpoints ``w_j = ceil(p_j N)`` (iteration indices, 0 excluded).

    Parameters
    ----------
    steps : int
        Number of iterations ``N``.

    Returns
    -------
    numpy.ndarray
        Increasing integers in ``(0, N)``.
    """
    p = [0.0, 0.22]
    while p[-1] < 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    # round first: 0.22 + 0.19 + 0.16 is 0.5700000000000001 in floating point
    w = sorted({math.ceil(round(q * steps, 9)) for q in p[1:]
                if math.ceil(round(q * steps, 9)) < steps})
    return np.asarray([v for v in w if v > 0], np.int32)


class APGD(eqx.Module):
    """An APGD attack specification (``eps`` is a traced leaf: no recompilation per radius).

    Parameters
    ----------
    eps : float
        Radius.
    norm : {"linf", "l2"}
        Norm of the ball (over all non-batch axes of a sample).
    loss : {"ce", "dlr"}
        Objective maximised (for :func:`apgd_classifier`).
    steps : int
        Iterations per restart.
    restarts : int
        Random restarts (the best point over restarts is kept).
    rho : float
        Success-fraction threshold of the step-size rule.
    clip : tuple of float, optional
        Data domain.
    """

    eps: float | jax.Array
    norm: str = eqx.field(static=True, default="linf")
    loss: str = eqx.field(static=True, default="ce")
    steps: int = eqx.field(static=True, default=20)
    restarts: int = eqx.field(static=True, default=1)
    rho: float = eqx.field(static=True, default=0.75)
    clip: tuple[float, float] | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.loss not in APGD_LOSSES:
            raise ValueError(f"loss must be one of {APGD_LOSSES}, got {self.loss!r}")
        if self.steps < 2 or self.restarts < 1:
            raise ValueError("APGD needs steps >= 2 and restarts >= 1")

    @property
    def gradient_evaluations(self) -> int:
        """Input-gradient evaluations per sample."""
        return self.steps * self.restarts


def _as_pgd(attack: APGD) -> Attack:
    # an Attack with the same ball and domain, for the projection helpers
    return Attack(eps=attack.eps, norm=attack.norm, clip=attack.clip)


def apgd_maximize(
    attack: APGD,
    objective: Callable[[jax.Array], jax.Array],
    x: Float[Array, "B ..."],
    key: jax.Array,
) -> Float[Array, "B ..."]:
    """Maximise a per-sample objective over the ball around ``x`` with APGD.

    Parameters
    ----------
    attack : APGD
        Radius, norm, domain, iterations and restarts (``attack.loss`` is not used).
    objective : callable
        ``objective(xa) -> (B,)``; samples must not interact.
    x : array, shape (B, ...)
        Clean inputs.
    key : jax.Array
        PRNG key of the random starts.

    Returns
    -------
    array, same shape as ``x``
        The best point found per sample (inside the ball and the domain).
    """
    spec = _as_pgd(attack)
    eps = jnp.asarray(attack.eps, x.dtype)
    value_grad = jax.value_and_grad(lambda xa: jnp.sum(objective(xa)))  # summed: per-sample grads
    per_sample = objective
    bshape = (x.shape[0],) + (1,) * (x.ndim - 1)
    n = attack.steps
    is_check = np.zeros(n, bool)
    since = np.ones(n, np.float32)
    prev = 0
    for w in checkpoints(n):
        is_check[w] = True
        since[w] = w - prev
        prev = w

    def one_restart(inp):
        k, random = inp
        d0 = random * _constrain(x, random_in_ball(k, x.shape, eps, attack.norm, x.dtype), spec)
        x0 = x + d0
        f0 = per_sample(x0)
        _, g0 = value_grad(x0)
        eta = jnp.full(bshape, 2.0, x.dtype) * eps
        x1 = x + _constrain(x, x0 - x + eta * _ascent_direction(g0, attack.norm), spec)
        f1 = per_sample(x1)
        better = f1 > f0
        best_x = jnp.where(better.reshape(bshape), x1, x0)
        best_f = jnp.maximum(f1, f0)
        state = dict(
            x=x1, x_prev=x0, f=f1, eta=eta, best_x=best_x, best_f=best_f,
            successes=better.astype(x.dtype), best_at_check=f0, eta_reduced=jnp.ones_like(f0),
        )

        def step(s, inp):
            check, length = inp
            _, g = value_grad(s["x"])
            z = x + _constrain(x, s["x"] - x + s["eta"] * _ascent_direction(g, attack.norm),
                               spec)
            xn = x + _constrain(
                x, s["x"] - x + 0.75 * (z - s["x"]) + 0.25 * (s["x"] - s["x_prev"]), spec)
            fn = per_sample(xn)
            improved = fn > s["f"]
            successes = s["successes"] + improved.astype(x.dtype)
            new_best = fn > s["best_f"]
            best_x = jnp.where(new_best.reshape(bshape), xn, s["best_x"])
            best_f = jnp.maximum(fn, s["best_f"])
            # checkpoint rule (applies where ``check``)
            cond1 = successes < attack.rho * length
            cond2 = (s["eta_reduced"] == 0) & (best_f <= s["best_at_check"])
            halve = check & (cond1 | cond2)
            eta = jnp.where(halve.reshape(bshape), s["eta"] / 2, s["eta"])
            x_next = jnp.where(halve.reshape(bshape), best_x, xn)
            f_next = jnp.where(halve, best_f, fn)
            return dict(
                x=x_next, x_prev=jnp.where(halve.reshape(bshape), best_x, s["x"]),
                f=f_next, eta=eta, best_x=best_x, best_f=best_f,
                successes=jnp.where(check, 0.0, successes),
                best_at_check=jnp.where(check, best_f, s["best_at_check"]),
                eta_reduced=jnp.where(check, halve.astype(x.dtype), s["eta_reduced"]),
            ), None

        inputs = (jnp.asarray(is_check[1:]), jnp.asarray(since[1:]))
        final, _ = jax.lax.scan(step, state, inputs)
        return final["best_x"], final["best_f"]

    keys = jax.random.split(key, attack.restarts)
    random = (jnp.arange(attack.restarts) > 0).astype(x.dtype)  # restart 0: clean start
    xs, fs = jax.lax.map(one_restart, (keys, random))
    pick = jnp.argmax(fs, axis=0)
    return jnp.take_along_axis(xs, pick.reshape((1, *bshape)), axis=0)[0]


def dlr_loss(logits: Float[Array, "B K"], y: Int[Array, " B"]) -> Float[Array, " B"]:
    """Difference of logits ratio ``-(z_y - max_{i != y} z_i) / (z_(1) - z_(3) + 1e-12)``.

    Parameters
    ----------
    logits : array, shape (B, K)
        Logits (``K >= 3``).
    y : int array, shape (B,)
        Labels.

    Returns
    -------
    array, shape (B,)
    """
    z_sorted = jnp.sort(logits, axis=-1)
    z_y = jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
    onehot = jax.nn.one_hot(y, logits.shape[-1], dtype=bool)
    z_other = jnp.max(jnp.where(onehot, -jnp.inf, logits), axis=-1)
    return -(z_y - z_other) / (z_sorted[:, -1] - z_sorted[:, -3] + 1e-12)


def apgd_classifier(attack: APGD, model, x, y, key) -> jax.Array:
    """APGD-CE or APGD-DLR adversarial inputs for a classifier ``model`` (batch -> logits).

    Parameters
    ----------
    attack : APGD
        The attack (``attack.loss`` chooses CE or DLR).
    model : callable
        Batch of inputs to logits.
    x : array, shape (B, ...)
        Inputs.
    y : int array, shape (B,)
        Labels.
    key : jax.Array
        PRNG key.

    Returns
    -------
    array, same shape as ``x``
    """
    if attack.loss == "dlr":
        def obj(xa):
            return dlr_loss(model(xa), y)
    else:
        def obj(xa):
            return optax.softmax_cross_entropy_with_integer_labels(model(xa), y)
    return jax.lax.stop_gradient(apgd_maximize(attack, obj, x, key))


def strong_attacks(pgd: Attack, classes: int, steps: int = 20, restarts: int = 1
                   ) -> tuple[Attack | APGD, ...]:
    """The ensemble of the strong evaluation: the given PGD, APGD-CE and (``classes >= 3``)
    APGD-DLR on the same ball and domain."""
    out: list[Attack | APGD] = [pgd]
    for loss in ("ce", "dlr") if classes >= 3 else ("ce",):
        out.append(APGD(eps=pgd.eps, norm=pgd.norm, loss=loss, steps=steps, restarts=restarts,
                        clip=pgd.clip))
    return tuple(out)


@eqx.filter_jit
def _strong_chunk(model, x, y, mask, attacks, key):
    logits = model(x)
    clean_l = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    clean_c = (jnp.argmax(logits, -1) == y).astype(logits.dtype)
    worst_l, worst_c, per = clean_l, clean_c, []
    for i, a in enumerate(attacks):
        k = jax.random.fold_in(key, i)
        if isinstance(a, APGD):
            xa = apgd_classifier(a, model, x, y, k)
        else:
            xa = jax.lax.stop_gradient(perturb(
                a, lambda xx, yy: optax.softmax_cross_entropy_with_integer_labels(model(xx), yy),
                x, y, k if a.random_start else None))
        la = model(xa)
        loss = optax.softmax_cross_entropy_with_integer_labels(la, y)
        corr = (jnp.argmax(la, -1) == y).astype(la.dtype)
        per.append(jnp.stack([jnp.sum(loss * mask), jnp.sum(corr * mask)]))
        worst_l = jnp.maximum(worst_l, loss)
        worst_c = jnp.minimum(worst_c, corr)
    head = jnp.stack([jnp.sum(v * mask) for v in (worst_l, worst_c, clean_l, clean_c)])
    return head, jnp.stack(per)


def strong_evaluate(model, x, y, attacks: tuple[Attack | APGD, ...], seed: int = 0,
                    chunk: int = 512) -> dict:
    """Worst case over attacks: per sample, the largest cross-entropy over the attacks'
    adversarial points and correctness under every attack.

    Parameters
    ----------
    model : callable
        Batch of inputs to logits.
    x, y : arrays
        Inputs ``(n, ...)`` and labels ``(n,)``.
    attacks : tuple of Attack or APGD
        The ensemble (e.g. :func:`strong_attacks`).
    seed : int
        Seed of the random starts.
    chunk : int
        Samples per compiled call.

    Returns
    -------
    dict
        ``adv_loss``, ``adv_acc`` (worst case), ``clean_loss``, ``clean_acc`` and, per attack
        ``i``, ``loss_i``/``acc_i``.
    """
    n = len(y)
    xp, yp, mask, n_chunks, chunk = padded_chunks(x, y, chunk)
    key = jax.random.key(seed)
    head = jnp.zeros(4)
    per = jnp.zeros((len(attacks), 2))
    for i in range(n_chunks):
        sl = slice(i * chunk, (i + 1) * chunk)
        h, p = _strong_chunk(model, xp[sl], yp[sl], mask[sl], attacks,
                             jax.random.fold_in(key, i))
        head, per = head + h, per + p
    a = np.asarray(head, np.float64) / n
    b = np.asarray(per, np.float64) / n
    out = {"adv_loss": a[0], "adv_acc": a[1], "clean_loss": a[2], "clean_acc": a[3]}
    for i in range(len(attacks)):
        out[f"loss_{i}"], out[f"acc_{i}"] = b[i, 0], b[i, 1]
    return out


def attack_names(attacks) -> list[str]:
    """Short names (``pgd-10``, ``apgd-ce``, ``apgd-dlr``) of an ensemble."""
    return [f"apgd-{a.loss}" if isinstance(a, APGD) else f"{a.method}-{a.steps}"
            for a in attacks]
