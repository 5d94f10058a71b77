"""Adversarial training of a classifier given as arrays: minibatch SGD (optax), per-epoch
adversarial train/test metrics, and selection of the epoch with the smallest adversarial
test loss (the paper's early stopping).

The model is any equinox module mapping a batch of inputs to logits (see
`advdyn.adversarial.models`); the loss is the softmax cross-entropy. One epoch (shuffle,
attack every minibatch, SGD step) is a single jitted ``lax.scan``; the attack radius is a
traced value, so one compilation serves every ``eps``.

Compute is counted in *gradient evaluations*: per-sample backward passes, whether with
respect to the input (one per attack step) or to the parameters (one per training sample
and step). Forward-only passes are not counted. Wall time is split into JIT compilation
(tracing, lowering and XLA compilation, measured by
[`CompileClock`][advdyn.adversarial.training.CompileClock] from JAX's own
monitoring events) and the rest.

Training recipes ([`Schedule`][advdyn.adversarial.training.Schedule]): the objective ``loss`` is the
adversarial
cross-entropy (``"ce"``, Madry et al.), TRADES (``"trades"``: clean cross-entropy plus
``beta`` times the KL divergence from the clean to the attacked prediction, the attack
maximising that KL) or MART (``"mart"``: boosted cross-entropy on the attacked input plus
``beta`` times the KL weighted by one minus the clean probability of the true class); the
optimiser is SGD with heavy-ball momentum (``"sgd"``) or Adam (``"adam"``), both optax.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr

from advdyn import checks
from advdyn.adversarial.attacks import Attack, perturb
from advdyn.adversarial.data import ArrayData

_COMPILE = threading.local()
_LISTENING = False


def _on_event(event: str, duration_secs: float, **_kw) -> None:
    if event.startswith("/jax/core/compile/"):
        _COMPILE.total = getattr(_COMPILE, "total", 0.0) + duration_secs


class CompileClock:
    """Seconds spent compiling (tracing, lowering, XLA) while the context is open.

    Reads JAX's monitoring events ``/jax/core/compile/*`` of the current thread, so the
    wall time of a run splits into ``compile`` and ``wall - compile`` (compute, transfers
    and Python overhead).

    Example
    -------
    >>> with CompileClock() as clock:
    ...     run()
    >>> clock.seconds
    """

    def __enter__(self) -> CompileClock:
        global _LISTENING
        if not _LISTENING:
            jax.monitoring.register_event_duration_secs_listener(_on_event)
            _LISTENING = True
        self._start = getattr(_COMPILE, "total", 0.0)
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = getattr(_COMPILE, "total", 0.0) - self._start

    @property
    def so_far(self) -> float:
        """Compile seconds since the context opened."""
        return getattr(_COMPILE, "total", 0.0) - self._start


LOSSES = ("ce", "trades", "mart")
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class Schedule:
    """Optimiser and learning-rate schedule.

    Parameters
    ----------
    epochs : int
        Passes over the training set.
    batch_size : int
        Minibatch size (the last incomplete batch of each shuffled epoch is dropped).
    lr : float
        Base (peak) learning rate.
    momentum : float
        Heavy-ball momentum (PyTorch convention: the rate multiplies the momentum buffer).
    weight_decay : float
        l2 penalty coefficient added to the gradient.
    kind : {"step", "triangle"}
        ``"step"``: ``lr`` divided by ``drop_factor`` after each fraction in ``drops`` of the
        epochs (the paper's /10 at 50% and 75%). ``"triangle"``: linear warm-up from 0 to
        ``lr`` over the first ``warmup`` fraction of the steps, then linear decay to 0 (the
        fine-tuning schedule of the paper's figure B.1).
    drops : tuple of float
        Fractions of the epochs after which the step schedule drops.
    drop_factor : float
        Divisor of each drop.
    warmup : float
        Warm-up fraction of the triangle schedule.
    optimizer : {"sgd", "adam"}
        SGD with heavy-ball ``momentum`` or Adam (``b1 = 0.9``, ``b2 = 0.999``); weight
        decay is added to the gradient in both cases.
    loss : {"ce", "trades", "mart"}
        Training objective (module docstring).
    beta : float
        Weight of the KL term of TRADES and MART.
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    kind: str = "step"
    drops: tuple[float, ...] = (0.5, 0.75)
    drop_factor: float = 10.0
    warmup: float = 0.3
    optimizer: str = "sgd"
    loss: str = "ce"
    beta: float = 6.0

    def __post_init__(self):
        checks.integer(self.epochs, "epochs", 1)
        checks.integer(self.batch_size, "batch_size", 1)
        checks.positive(self.lr, "lr")
        checks.nonnegative(self.momentum, "momentum")
        checks.nonnegative(self.weight_decay, "weight_decay")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")

    def rates(self, steps_per_epoch: int) -> np.ndarray:
        """Learning rate of every step, shape ``(epochs, steps_per_epoch)``.

        Parameters
        ----------
        steps_per_epoch : int
            SGD steps per epoch.

        Returns
        -------
        numpy.ndarray
            float32 rates.
        """
        total = self.epochs * steps_per_epoch
        s = np.arange(total, dtype=np.float64)
        if self.kind == "step":
            epoch = s // steps_per_epoch
            n_drops = np.zeros_like(s)
            for f in self.drops:
                n_drops += epoch >= round(f * self.epochs)
            r = self.lr / self.drop_factor**n_drops
        elif self.kind == "triangle":
            peak = max(self.warmup * total, 1.0)
            up = (s + 1) / peak
            down = (total - s) / max(total - peak, 1.0)
            r = self.lr * np.clip(np.minimum(up, down), 0.0, 1.0)
        else:
            raise ValueError(f"unknown schedule kind {self.kind!r} (step or triangle)")
        return np.asarray(r, np.float32).reshape(self.epochs, steps_per_epoch)


@dataclass(frozen=True)
class TrainResult:
    """Outcome of one (adversarial) training run.

    Attributes
    ----------
    model : equinox.Module
        Parameters at the selected epoch.
    history : xarray.Dataset
        Per-epoch ``lr`` (last step), ``train_loss``/``train_acc`` (running averages over the
        epoch's attacked minibatches), ``test_loss``/``test_acc`` (evaluation attack),
        ``test_clean_loss``/``test_clean_acc``, cumulative ``grad_evals`` and ``time``.
    best_epoch : int
        Epoch (1-based) with the smallest adversarial test loss.
    train_loss, train_acc : float
        Adversarial loss/accuracy of the selected model on the whole training set under the
        evaluation attack (for ``eps = 0``: clean).
    test_loss, test_acc : float
        The same on the test set.
    clean_test_loss, clean_test_acc : float
        Clean test loss/accuracy of the selected model.
    grad_evals : int
        Gradient evaluations used (training, per-epoch test evaluation, final train evaluation).
    wall_time : float
        Seconds, including compilation.
    compile_time : float
        Seconds of JIT compilation within ``wall_time``.
    """

    model: eqx.Module
    history: xr.Dataset
    best_epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    clean_test_loss: float
    clean_test_acc: float
    grad_evals: int
    wall_time: float
    compile_time: float = 0.0

    @classmethod
    def selected(cls, model, history: xr.Dataset, best_epoch: int, train_eval: dict,
                 test_eval: dict, grad_evals: int, wall_time: float,
                 compile_time: float = 0.0) -> TrainResult:
        """The result of the selected model from its evaluations.

        Parameters
        ----------
        model, history, best_epoch, grad_evals, wall_time, compile_time
            As the attributes.
        train_eval, test_eval : dict
            [`evaluate`][advdyn.adversarial.training.evaluate]'s dictionaries of the
            selected model on the training set and on the test set.

        Returns
        -------
        TrainResult
        """
        return cls(
            model=model, history=history, best_epoch=best_epoch,
            train_loss=float(train_eval["adv_loss"]), train_acc=float(train_eval["adv_acc"]),
            test_loss=float(test_eval["adv_loss"]), test_acc=float(test_eval["adv_acc"]),
            clean_test_loss=float(test_eval["clean_loss"]),
            clean_test_acc=float(test_eval["clean_acc"]), grad_evals=int(grad_evals),
            wall_time=wall_time, compile_time=compile_time,
        )


#: the per-epoch variables of `TrainResult.history`, in order
HISTORY = ("lr", "train_loss", "train_acc", "test_loss", "test_acc", "test_clean_loss",
           "test_clean_acc", "grad_evals", "time")


def gradient_counts(attack, eval_attack, loss: str) -> tuple[int, int]:
    """Parameter backward passes per training sample and per evaluated sample.

    Parameters
    ----------
    attack, eval_attack : Attack or None
        The active training and evaluation attacks (``None``: clean).
    loss : {"ce", "trades", "mart"}
        The training recipe.

    Returns
    -------
    train, evaluation : int
        The attack's gradient evaluations plus one backward pass per sample (two for
        TRADES/MART, on the clean and the attacked input); the evaluation attack's.
    """
    train = (0 if attack is None else attack.gradient_evaluations) + (
        2 if attack is not None and loss != "ce" else 1)
    return train, 0 if eval_attack is None else eval_attack.gradient_evaluations


def record_epoch(rec: dict[str, list[float]], epoch: int, *, lr, train_loss, train_acc,
                 test_eval: dict, grad_evals: int, elapsed: float) -> None:
    """Append one epoch to a training history and stop a diverged run.

    Parameters
    ----------
    rec : dict of str to list of float
        The history so far, one list per name of `HISTORY` (appended to in place).
    epoch : int
        The epoch (0-based).
    lr, train_loss, train_acc : float
        The epoch's last learning rate and its running training averages.
    test_eval : dict
        [`evaluate`][advdyn.adversarial.training.evaluate]'s dictionary on the test set.
    grad_evals : int
        Gradient evaluations so far.
    elapsed : float
        Seconds since the start of training.

    Raises
    ------
    FloatingPointError
        If the adversarial test loss is not finite.
    """
    for name, value in zip(HISTORY, (
            lr, train_loss, train_acc, test_eval["adv_loss"], test_eval["adv_acc"],
            test_eval["clean_loss"], test_eval["clean_acc"], grad_evals, elapsed), strict=True):
        rec[name].append(float(value))
    if not np.isfinite(test_eval["adv_loss"]):
        raise FloatingPointError(f"training diverged at epoch {epoch + 1} (lower the lr)")


def history_dataset(rec: dict[str, list[float]]) -> xr.Dataset:
    """A training history as `TrainResult.history`: one variable per name, along ``epoch``
    (1-based)."""
    return xr.Dataset({k: ("epoch", np.asarray(v)) for k, v in rec.items()},
                      coords={"epoch": np.arange(1, len(rec["lr"]) + 1)})


def sample_loss(model, x: jax.Array, y: jax.Array):
    """Per-sample cross-entropy and correctness of ``model`` on a batch.

    Parameters
    ----------
    model : callable
        Batch of inputs to logits.
    x : array, shape (B, ...)
        Inputs.
    y : int array, shape (B,)
        Labels.

    Returns
    -------
    (loss, correct) : arrays of shape (B,)
        float32 losses and 0/1 correctness.
    """
    logits = model(x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return loss, (jnp.argmax(logits, axis=-1) == y).astype(logits.dtype)


def attacked(model, attack: Attack | None, x, y, key=None):
    """Adversarial inputs for ``model`` (the clean inputs when ``attack`` is ``None``)."""
    if attack is None:
        return x
    adv = perturb(attack, lambda xa, ya: sample_loss(model, xa, ya)[0], x, y, key)
    return jax.lax.stop_gradient(adv)


@functools.cache
def _optimizer(momentum: float, weight_decay: float,
               kind: str = "sgd") -> optax.GradientTransformation:
    # cached so that jitted epochs see the same static object (no recompilation per run);
    # the learning rate multiplies the update outside (one compiled epoch for every schedule)
    parts = []
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    if kind == "adam":
        parts.append(optax.scale_by_adam())
    elif momentum:
        parts.append(optax.trace(decay=momentum))
    return optax.chain(*parts) if parts else optax.identity()


def _kl(p_clean_log, logits_adv):
    """Per-sample ``KL(p_clean || p_adv)`` from clean log-probabilities and attacked logits."""
    log_adv = jax.nn.log_softmax(logits_adv, axis=-1)
    return jnp.sum(jnp.exp(p_clean_log) * (p_clean_log - log_adv), axis=-1)


def objective_terms(model, x, xa, y, loss: str, beta: float):
    """Per-sample training objective of a recipe, and the accuracy on the attacked inputs.

    Parameters
    ----------
    model : callable
        Batch of inputs to logits.
    x, xa : arrays, shape (B, ...)
        Clean and attacked inputs.
    y : int array, shape (B,)
        Labels.
    loss : {"ce", "trades", "mart"}
        Recipe.
    beta : float
        KL weight (TRADES, MART).

    Returns
    -------
    (values, correct) : arrays of shape (B,)
    """
    logits_a = model(xa)
    correct = (jnp.argmax(logits_a, axis=-1) == y).astype(logits_a.dtype)
    ce_a = optax.softmax_cross_entropy_with_integer_labels(logits_a, y)
    if loss == "ce":
        return ce_a, correct
    logits_c = model(x)
    log_c = jax.nn.log_softmax(logits_c, axis=-1)
    if loss == "trades":
        ce_c = optax.softmax_cross_entropy_with_integer_labels(logits_c, y)
        return ce_c + beta * _kl(log_c, logits_a), correct
    # MART: boosted CE (CE + -log(1 - largest wrong probability)) + weighted KL
    p_a = jax.nn.softmax(logits_a, axis=-1)
    onehot = jax.nn.one_hot(y, logits_a.shape[-1], dtype=p_a.dtype)
    wrong = jnp.max(jnp.where(onehot > 0, -1.0, p_a), axis=-1)
    bce = ce_a - jnp.log(jnp.clip(1.0 - wrong, 1e-12, 1.0))
    p_true = jnp.sum(jnp.exp(log_c) * onehot, axis=-1)
    return bce + beta * _kl(log_c, logits_a) * (1.0 - p_true), correct


def _training_inputs(model, attack: Attack | None, x, y, key, loss: str):
    """Attacked inputs for a recipe: TRADES attacks the KL to the clean prediction (from a
    random start, where the KL has a gradient), the others the cross-entropy."""
    if attack is None or loss != "trades":
        return attacked(model, attack, x, y, key)
    log_c = jax.lax.stop_gradient(jax.nn.log_softmax(model(x), axis=-1))
    start = attack if attack.random_start else dataclasses.replace(attack, random_start=True)
    adv = perturb(start, lambda xa, _: _kl(log_c, model(xa)), x, y, key)
    return jax.lax.stop_gradient(adv)


@eqx.filter_jit
def _train_epoch(model, opt_state, xb, yb, lrs, keys, attack, optimizer, recipe=("ce", 6.0)):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    loss_kind, beta = recipe

    def body(carry, inp):
        params, opt_state = carry
        x, y, lr, key = inp
        m = eqx.combine(params, static)
        xa = _training_inputs(m, attack, x, y, key, loss_kind)

        def objective(p):
            values, correct = objective_terms(eqx.combine(p, static), x, xa, y, loss_kind, beta)
            return values.mean(), correct.mean()

        (loss, acc), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = jax.tree.map(lambda p, u: p - lr * u.astype(p.dtype), params, updates)
        return (params, opt_state), (loss, acc)

    (params, opt_state), (losses, accs) = jax.lax.scan(
        body, (params, opt_state), (xb, yb, lrs, keys)
    )
    return eqx.combine(params, static), opt_state, losses.mean(), accs.mean()


@eqx.filter_jit
def _eval_chunk(model, x, y, mask, attack, key):
    clean_l, clean_c = sample_loss(model, x, y)
    if attack is None:
        adv_l, adv_c = clean_l, clean_c
    else:
        adv_l, adv_c = sample_loss(model, attacked(model, attack, x, y, key), y)
    return jnp.stack([jnp.sum(v * mask) for v in (adv_l, adv_c, clean_l, clean_c)])


def evaluate(model, x, y, attack: Attack | None = None, seed: int = 0, chunk: int = 512):
    """Adversarial and clean mean loss and accuracy of ``model`` on ``(x, y)``.

    Parameters
    ----------
    model : callable
        Batch of inputs to logits.
    x, y : arrays
        Inputs ``(n, ...)`` and labels ``(n,)``.
    attack : Attack, optional
        Evaluation attack (``None``: clean only, adversarial = clean).
    seed : int
        Seed of the attack's random start.
    chunk : int
        Samples per compiled call (inputs are padded to a multiple of it).

    Returns
    -------
    dict
        ``adv_loss``, ``adv_acc``, ``clean_loss``, ``clean_acc`` (floats).
    """
    n = len(y)
    xp, yp, mask, n_chunks, chunk = padded_chunks(x, y, chunk)
    key = jax.random.key(seed)
    total = jnp.zeros(4)
    for i in range(n_chunks):
        sl = slice(i * chunk, (i + 1) * chunk)
        total = total + _eval_chunk(
            model, xp[sl], yp[sl], mask[sl], attack, jax.random.fold_in(key, i)
        )
    a = np.asarray(total, dtype=np.float64) / n
    return {"adv_loss": a[0], "adv_acc": a[1], "clean_loss": a[2], "clean_acc": a[3]}


def adversarial_train(
    model,
    data: ArrayData,
    attack: Attack | None,
    eval_attack: Attack | None = None,
    schedule: Schedule = Schedule(),
    seed: int = 0,
    advance: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` against ``attack``; keep the epoch with the smallest
    adversarial test loss.

    Parameters
    ----------
    model : equinox.Module
        Initial model (from scratch, or a trained one for fine-tuning).
    data : ArrayData
        Train/test arrays.
    attack : Attack, optional
        Training attack (``None`` or ``eps = 0``: clean training).
    eval_attack : Attack, optional
        Attack of the per-epoch test evaluation and of the final training-set evaluation
        (default: ``attack``; ``None``: clean).
    schedule : Schedule
        Optimiser and learning rates.
    seed : int
        Seed of the minibatch shuffles and attack random starts.
    advance : callable, optional
        Called with 1 after every epoch (progress bars).

    Returns
    -------
    TrainResult
    """
    start = time.perf_counter()
    clock = CompileClock().__enter__()
    attack, eval_attack = active_attacks(attack, eval_attack)
    x = jnp.asarray(data.x_train)
    y = jnp.asarray(data.y_train)
    n = x.shape[0]
    bs = min(schedule.batch_size, n)
    nb = n // bs
    rates = schedule.rates(nb)
    optimizer = _optimizer(schedule.momentum, schedule.weight_decay, schedule.optimizer)
    recipe = (schedule.loss, float(schedule.beta)) if attack is not None else ("ce", 6.0)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    key = jax.random.key(seed)
    train_grads, eval_grads = gradient_counts(attack, eval_attack, schedule.loss)
    n_test = len(data.y_test)

    rec: dict[str, list[float]] = {k: [] for k in HISTORY}
    best, best_loss, best_epoch, grad_evals = model, np.inf, 0, 0
    for epoch in range(schedule.epochs):
        k_perm, k_att, k_eval = jax.random.split(jax.random.fold_in(key, epoch), 3)
        perm = jax.random.permutation(k_perm, n)[: nb * bs]
        xb = x[perm].reshape(nb, bs, *x.shape[1:])
        yb = y[perm].reshape(nb, bs)
        model, opt_state, tl, ta = _train_epoch(
            model, opt_state, xb, yb, jnp.asarray(rates[epoch]), jax.random.split(k_att, nb),
            attack, optimizer, recipe,
        )
        ev = evaluate(model, data.x_test, data.y_test, eval_attack,
                      seed=int(jax.random.randint(k_eval, (), 0, 2**30)))
        grad_evals += nb * bs * train_grads + n_test * eval_grads
        record_epoch(rec, epoch, lr=rates[epoch, -1], train_loss=tl, train_acc=ta,
                     test_eval=ev, grad_evals=grad_evals, elapsed=time.perf_counter() - start)
        if ev["adv_loss"] < best_loss:
            best, best_loss, best_epoch = model, ev["adv_loss"], epoch + 1
            best_eval = ev
        if advance is not None:
            advance(1)
    tr = evaluate(best, data.x_train, data.y_train, eval_attack, seed=seed + 1)
    grad_evals += n * eval_grads
    clock.__exit__(None, None, None)
    return TrainResult.selected(best, history_dataset(rec), best_epoch, tr, best_eval,
                                grad_evals, time.perf_counter() - start, clock.seconds)


def padded_chunks(x, y, chunk: int):
    """Inputs and labels zero-padded to whole chunks, with the mask of real samples.

    Parameters
    ----------
    x : array, shape (n, ...)
    y : array, shape (n,)
    chunk : int
        Samples per chunk (capped at ``n``).

    Returns
    -------
    xp, yp, mask, n_chunks, chunk
        Padded arrays, float32 mask (1 for real samples), chunk count and chunk size.
    """
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    n = x.shape[0]
    chunk = min(chunk, n)
    n_chunks = -(-n // chunk)
    pad = n_chunks * chunk - n
    xp = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
    yp = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)]) if pad else y
    mask = (jnp.arange(n_chunks * chunk) < n).astype(jnp.float32)
    return xp, yp, mask, n_chunks, chunk


def active_attacks(attack, eval_attack):
    """The training and evaluation attacks, ``None`` for a radius of 0 (clean).

    The evaluation attack defaults to the training attack.
    """
    if attack is not None and float(attack.eps) == 0.0:
        attack = None
    if eval_attack is None:
        eval_attack = attack
    elif float(eval_attack.eps) == 0.0:
        eval_attack = None
    return attack, eval_attack
