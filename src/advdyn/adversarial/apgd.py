"""Auto-PGD (APGD) with cross-entropy, DLR and targeted DLR losses, random restarts, and a
worst case over attacks (AutoAttack's "standard" APGD-CE and APGD-T), in JAX.

APGD (Croce and Hein, 2020) is PGD with momentum and a step size that halves when progress
stalls, so it needs no step-size tuning. Per sample, with ``P`` the projection onto the ball
and the data domain, step ``eta`` (initially ``2 eps``) and ``alpha = 0.75``::

    z_{k+1} = P(x_k + eta_k dir(grad f(x_k)))
    x_{k+1} = P(x_k + alpha (z_{k+1} - x_k) + (1 - alpha) (x_k - x_{k-1}))

(the first step is a plain projected step). At the checkpoints ``w_j = ceil(p_j N)``,
``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, the step
halves and the iterate restarts from the best point so far when either fewer than
``rho = 0.75`` of the steps since the previous checkpoint increased ``f``, or the step did not
change at the previous checkpoint and the best value did not improve since. Every run starts,
as AutoAttack's do, from a random point on the sphere of the ball (l-infinity:
``eps t/|t|_inf``, ``t`` uniform in the cube; l2: a uniform direction), clipped to the domain;
the starting point counts as an iterate. (The evaluation PGD of
[`strong_attacks`][advdyn.adversarial.apgd.strong_attacks] covers
the clean start.)

What is returned per sample is AutoAttack's bookkeeping: when a *success* test is given (for a
classifier: the iterate is misclassified), the iterate of highest objective among the
successful iterates of all restarts (and targets) whenever there is one, otherwise the iterate
of highest objective. The highest-loss iterate alone is not enough: for the cross-entropy it
can be classified correctly while an earlier iterate was not.

Losses: the cross-entropy; the difference of logits ratio
``DLR = -(z_y - max_{i != y} z_i) / (z_(1) - z_(3))`` (``z_(k)`` the sorted logits), which is
invariant to shifts and scalings of the logits and so does not suffer from saturated softmax
(it needs at least 3 classes); and the targeted DLR of APGD-T,
``-(z_y - z_t) / (z_(1) - (z_(3) + z_(4))/2)`` (``z_(1) - z_(3)`` with 3 classes), run once per
target ``t`` among the ``targets`` classes of largest clean logit other than the top one.

[`strong_evaluate`][advdyn.adversarial.apgd.strong_evaluate] evaluates a classifier under several
attacks at once (by default the
given PGD, APGD-CE and APGD-T, [`strong_attacks`][advdyn.adversarial.apgd.strong_attacks]): per
sample, the worst cross-entropy
over every point the attacks return and correctness under all of them.
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
    ascent_direction,
    constrain,
    perturb,
    sample_norm,
)
from advdyn.adversarial.training import padded_chunks

APGD_LOSSES = ("ce", "dlr", "dlr-targeted")
#: The attacks [`strong_attacks`][advdyn.adversarial.apgd.strong_attacks] can add to the evaluation
# PGD, by name.
STRONG_ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t")
#: AutoAttack's "standard" gradient attacks, in its order.
STANDARD_ATTACKS = ("apgd-ce", "apgd-t")


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
    loss : {"ce", "dlr", "dlr-targeted"}
        Objective maximised (for [`apgd_classifier`][advdyn.adversarial.apgd.apgd_classifier]);
        ``"dlr-targeted"`` is APGD-T.
    steps : int
        Iterations per run (after the starting point, which is evaluated too).
    restarts : int
        Runs per target, each from a random point on the sphere of the ball.
    rho : float
        Success-fraction threshold of the step-size rule.
    clip : tuple of float, optional
        Data domain.
    targets : int
        APGD-T only: target classes, the ``targets`` classes of largest clean logit after the
        top one (at most the number of classes less one; AutoAttack uses 9).
    """

    eps: float | jax.Array
    norm: str = eqx.field(static=True, default="linf")
    loss: str = eqx.field(static=True, default="ce")
    steps: int = eqx.field(static=True, default=20)
    restarts: int = eqx.field(static=True, default=1)
    rho: float = eqx.field(static=True, default=0.75)
    clip: tuple[float, float] | None = eqx.field(static=True, default=None)
    targets: int = eqx.field(static=True, default=9)

    def __check_init__(self):
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.loss not in APGD_LOSSES:
            raise ValueError(f"loss must be one of {APGD_LOSSES}, got {self.loss!r}")
        if self.steps < 2 or self.restarts < 1 or self.targets < 1:
            raise ValueError("APGD needs steps >= 2, restarts >= 1 and targets >= 1")

    @property
    def runs(self) -> int:
        """Runs per sample: ``restarts``, times ``targets`` for APGD-T."""
        return self.restarts * (self.targets if self.loss == "dlr-targeted" else 1)

    @property
    def gradient_evaluations(self) -> int:
        """Input-gradient evaluations per sample (``steps + 1`` per run)."""
        return (self.steps + 1) * self.runs

    @property
    def name(self) -> str:
        """``apgd-ce``, ``apgd-dlr`` or ``apgd-t``."""
        return "apgd-t" if self.loss == "dlr-targeted" else f"apgd-{self.loss}"


def _as_pgd(attack: APGD) -> Attack:
    # an Attack with the same ball and domain, for the projection helpers
    return Attack(eps=attack.eps, norm=attack.norm, clip=attack.clip)


def _random_on_sphere(key: jax.Array, shape, eps, norm: str, dtype) -> jax.Array:
    """AutoAttack's starting perturbations: ``eps t/|t|`` per sample, ``t`` uniform in the
    cube (l-infinity) or standard normal (l2)."""
    if norm == "linf":
        t = jax.random.uniform(key, shape, dtype, -1.0, 1.0)
    else:
        t = jax.random.normal(key, shape, dtype)
    size = sample_norm(t, norm)
    return eps * t / jnp.where(size > 0, size, 1.0)


# fn(xa, param) -> (objective (B,), success (B,) bool)
_Scored = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def _search(attack: APGD, fn: _Scored, x: jax.Array, key: jax.Array, params: jax.Array):
    """All runs of APGD (one per leading entry of ``params``, each from a random point on
    the sphere of the ball) and AutoAttack's bookkeeping over them.

    Returns ``(point, best_x, best_f)``: per sample the highest-objective successful iterate
    of all runs where there is one, else the highest-objective iterate; and the
    highest-objective iterate with its value.
    """
    spec = _as_pgd(attack)
    eps = jnp.asarray(attack.eps, x.dtype)
    bshape = (x.shape[0],) + (1,) * (x.ndim - 1)
    n = attack.steps
    # step i (0-based) produces iterate i + 1; a checkpoint follows iterate w
    is_check = np.zeros(n, bool)
    since = np.ones(n, np.float32)
    prev = 0
    for w in checkpoints(n):
        is_check[w - 1] = True
        since[w - 1] = w - prev
        prev = w
    neg = jnp.full((x.shape[0],), -jnp.inf, x.dtype)

    def scored(xa, p):
        f, hit = fn(xa, p)
        return jnp.sum(f), (f, hit)

    value_grad = jax.value_and_grad(scored, has_aux=True)

    def one_run(inp):
        k, p = inp

        def evaluate(xa):
            (_, (f, hit)), g = value_grad(xa, p)
            return f, hit, g

        x0 = x + constrain(x, _random_on_sphere(k, x.shape, eps, attack.norm, x.dtype), spec)
        f0, hit0, g0 = evaluate(x0)
        state = dict(
            x=x0, x_prev=x0, f=f0, g=g0, eta=jnp.full(bshape, 2.0, x.dtype) * eps,
            best_x=x0, best_f=f0, best_g=g0,
            adv_x=x0, adv_f=jnp.where(hit0, f0, neg),
            successes=jnp.zeros_like(f0), best_at_check=f0, eta_reduced=jnp.ones_like(f0),
        )

        def step(s, inp):
            first, check, length = inp
            z = x + constrain(x, s["x"] - x + s["eta"] * ascent_direction(s["g"], attack.norm),
                               spec)
            a = jnp.where(first, 1.0, 0.75).astype(x.dtype)
            xn = x + constrain(
                x, s["x"] - x + a * (z - s["x"]) + (1 - a) * (s["x"] - s["x_prev"]), spec)
            fn_, hit, gn = evaluate(xn)
            successes = s["successes"] + (fn_ > s["f"]).astype(x.dtype)
            new_best = fn_ > s["best_f"]
            best_x = jnp.where(new_best.reshape(bshape), xn, s["best_x"])
            best_g = jnp.where(new_best.reshape(bshape), gn, s["best_g"])
            best_f = jnp.maximum(fn_, s["best_f"])
            new_adv = hit & (fn_ > s["adv_f"])
            adv_x = jnp.where(new_adv.reshape(bshape), xn, s["adv_x"])
            adv_f = jnp.where(new_adv, fn_, s["adv_f"])
            # checkpoint rule (applies where ``check``)
            cond1 = successes < attack.rho * length
            cond2 = (s["eta_reduced"] == 0) & (best_f <= s["best_at_check"])
            halve = check & (cond1 | cond2)
            hb = halve.reshape(bshape)
            return dict(
                x=jnp.where(hb, best_x, xn), x_prev=jnp.where(hb, best_x, s["x"]),
                f=jnp.where(halve, best_f, fn_), g=jnp.where(hb, best_g, gn),
                eta=jnp.where(hb, s["eta"] / 2, s["eta"]),
                best_x=best_x, best_f=best_f, best_g=best_g, adv_x=adv_x, adv_f=adv_f,
                successes=jnp.where(check, 0.0, successes),
                best_at_check=jnp.where(check, best_f, s["best_at_check"]),
                eta_reduced=jnp.where(check, halve.astype(x.dtype), s["eta_reduced"]),
            ), None

        inputs = (jnp.arange(n) == 0, jnp.asarray(is_check), jnp.asarray(since))
        final, _ = jax.lax.scan(step, state, inputs)
        return final["best_x"], final["best_f"], final["adv_x"], final["adv_f"]

    runs = params.shape[0]
    keys = jax.random.split(key, runs)
    xs, fs, axs, afs = jax.lax.map(one_run, (keys, params))

    def pick(points, values):
        i = jnp.argmax(values, axis=0).reshape((1, *bshape))
        return jnp.take_along_axis(points, i, axis=0)[0]

    best_x, best_f = pick(xs, fs), jnp.max(fs, axis=0)
    found = jnp.max(afs, axis=0) > -jnp.inf
    point = jnp.where(found.reshape(bshape), pick(axs, afs), best_x)
    return point, best_x, best_f


def apgd_maximize(
    attack: APGD,
    objective: Callable[[jax.Array], jax.Array],
    x: Float[Array, "B ..."],
    key: jax.Array,
    success: Callable[[jax.Array], jax.Array] | None = None,
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
    success : callable, optional
        ``success(xa) -> (B,)`` booleans (e.g. misclassified). When given, per sample the
        highest-objective iterate among the successful ones of all restarts is returned
        whenever there is one.

    Returns
    -------
    array, same shape as ``x``
        Per sample, the highest-objective iterate (or the successful one, above), inside the
        ball and the domain.
    """
    def fn(xa, _p):
        f = objective(xa)
        return f, (jnp.zeros(f.shape, bool) if success is None else success(xa))

    return _search(attack, fn, x, key, jnp.zeros(attack.restarts, jnp.int32))[0]


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


def targeted_dlr_loss(logits: Float[Array, "B K"], y: Int[Array, " B"],
                      target: Int[Array, " B"]) -> Float[Array, " B"]:
    """Targeted DLR ``-(z_y - z_t) / (z_(1) - (z_(3) + z_(4))/2 + 1e-12)`` (APGD-T).

    Parameters
    ----------
    logits : array, shape (B, K)
        Logits (``K >= 3``; with ``K = 3`` the denominator is ``z_(1) - z_(3)``).
    y, target : int arrays, shape (B,)
        Labels and target classes.

    Returns
    -------
    array, shape (B,)
        Positive where the target's logit exceeds the label's.
    """
    z_sorted = jnp.sort(logits, axis=-1)
    z_y = jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
    z_t = jnp.take_along_axis(logits, target[:, None], axis=-1)[:, 0]
    low = z_sorted[:, -3] if logits.shape[-1] == 3 else 0.5 * (z_sorted[:, -3] + z_sorted[:, -4])
    return -(z_y - z_t) / (z_sorted[:, -1] - low + 1e-12)


def _classifier_search(attack: APGD, model, x, y, key):
    """APGD on a classifier: ``(point, highest-loss point)`` (see `_search`)."""
    def misclassified(logits):
        return jnp.argmax(logits, -1) != y

    if attack.loss == "dlr-targeted":
        classes = int(jax.eval_shape(model, x).shape[-1])
        if classes < 3 or attack.targets > classes - 1:
            raise ValueError(f"APGD-T with {attack.targets} targets needs at least "
                             f"{max(3, attack.targets + 1)} classes, the model has {classes}")
        # target of rank r: the class of (r + 1)-th largest clean logit (rank 0 is the top one)
        order = jnp.argsort(-jax.lax.stop_gradient(model(x)), axis=-1)
        params = jnp.repeat(jnp.arange(1, attack.targets + 1), attack.restarts)

        def fn(xa, r):
            logits = model(xa)
            t = jnp.take_along_axis(order, jnp.broadcast_to(r, y.shape)[:, None], -1)[:, 0]
            return targeted_dlr_loss(logits, y, t), misclassified(logits)
    else:
        params = jnp.zeros(attack.restarts, jnp.int32)

        def fn(xa, _r):
            logits = model(xa)
            f = dlr_loss(logits, y) if attack.loss == "dlr" else \
                optax.softmax_cross_entropy_with_integer_labels(logits, y)
            return f, misclassified(logits)

    point, best_x, _ = _search(attack, fn, x, key, params)
    return jax.lax.stop_gradient(point), jax.lax.stop_gradient(best_x)


def apgd_classifier(attack: APGD, model, x, y, key) -> jax.Array:
    """APGD-CE, APGD-DLR or APGD-T adversarial inputs for a classifier ``model``.

    Per sample, the highest-loss misclassified iterate of all runs (restarts and targets)
    whenever an iterate was misclassified, else the highest-loss iterate (AutoAttack's
    bookkeeping).

    Parameters
    ----------
    attack : APGD
        The attack (``attack.loss`` chooses CE, DLR or targeted DLR).
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

    Raises
    ------
    ValueError
        APGD-T with more targets than the model has classes less one, or fewer than 3
        classes.
    """
    return _classifier_search(attack, model, x, y, key)[0]


def strong_attacks(pgd: Attack, classes: int, steps: int = 20, restarts: int = 1,
                   attacks: tuple[str, ...] = STANDARD_ATTACKS, targets: int = 9
                   ) -> tuple[Attack | APGD, ...]:
    """The ensemble of the strong evaluation: the given PGD and the named APGD attacks on the
    same ball and domain.

    Parameters
    ----------
    pgd : Attack
        The evaluation PGD (always first).
    classes : int
        Number of classes. With 2 classes only APGD-CE applies (DLR and APGD-T need 3).
    steps, restarts : int
        APGD iterations and restarts (per target for APGD-T).
    attacks : tuple of str
        Names among `STRONG_ATTACKS`; default AutoAttack's standard APGD-CE and APGD-T.
    targets : int
        APGD-T targets, capped at ``classes - 1``.

    Returns
    -------
    tuple of Attack or APGD
    """
    unknown = set(attacks) - set(STRONG_ATTACKS)
    if unknown:
        raise ValueError(f"unknown attacks {sorted(unknown)}; choose from {STRONG_ATTACKS}")
    loss = {"apgd-ce": "ce", "apgd-dlr": "dlr", "apgd-t": "dlr-targeted"}
    out: list[Attack | APGD] = [pgd]
    for name in attacks:
        if classes < 3 and name != "apgd-ce":
            continue
        out.append(APGD(eps=pgd.eps, norm=pgd.norm, loss=loss[name], steps=steps,
                        restarts=restarts, clip=pgd.clip,
                        targets=max(1, min(targets, classes - 1))))
    return tuple(out)


@eqx.filter_jit
def _strong_chunk(model, x, y, mask, attacks, key):
    logits = model(x)
    clean_l = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    clean_c = (jnp.argmax(logits, -1) == y).astype(logits.dtype)
    worst_l, worst_c, per = clean_l, clean_c, []

    def scores(xa):
        la = model(xa)
        return (optax.softmax_cross_entropy_with_integer_labels(la, y),
                (jnp.argmax(la, -1) == y).astype(la.dtype))

    for i, a in enumerate(attacks):
        k = jax.random.fold_in(key, i)
        if isinstance(a, APGD):
            # the returned point (misclassified where any iterate was) and the highest-loss
            # iterate: the worst cross-entropy and the correctness over both
            point, best = _classifier_search(a, model, x, y, k)
            (loss, corr), (loss_b, corr_b) = scores(point), scores(best)
            loss, corr = jnp.maximum(loss, loss_b), jnp.minimum(corr, corr_b)
        else:
            loss, corr = scores(jax.lax.stop_gradient(perturb(
                a, lambda xx, yy: optax.softmax_cross_entropy_with_integer_labels(model(xx), yy),
                x, y, k if a.random_start else None)))
        per.append(jnp.stack([jnp.sum(loss * mask), jnp.sum(corr * mask)]))
        worst_l = jnp.maximum(worst_l, loss)
        worst_c = jnp.minimum(worst_c, corr)
    head = jnp.stack([jnp.sum(v * mask) for v in (worst_l, worst_c, clean_l, clean_c)])
    return head, jnp.stack(per)


def strong_evaluate(model, x, y, attacks: tuple[Attack | APGD, ...], seed: int = 0,
                    chunk: int = 512) -> dict:
    """Worst case over attacks: per sample, the largest cross-entropy over the points the
    attacks return and correctness under every attack.

    Parameters
    ----------
    model : callable
        Batch of inputs to logits.
    x, y : arrays
        Inputs ``(n, ...)`` and labels ``(n,)``.
    attacks : tuple of Attack or APGD
        The ensemble; [`strong_attacks`][advdyn.adversarial.apgd.strong_attacks] builds the default
        one (the evaluation PGD,
        APGD-CE and APGD-T).
    seed : int
        Seed of the random starts.
    chunk : int
        Samples per compiled call.

    Returns
    -------
    dict
        ``adv_loss``, ``adv_acc`` (worst case), ``clean_loss``, ``clean_acc`` and, per attack
        ``i``, ``loss_i``/``acc_i``. For an APGD attack these count both the point it
        returns and its highest-loss iterate.
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
    """Short names (``pgd-10``, ``apgd-ce``, ``apgd-dlr``, ``apgd-t``) of an ensemble."""
    return [a.name if isinstance(a, APGD) else f"{a.method}-{a.steps}" for a in attacks]
