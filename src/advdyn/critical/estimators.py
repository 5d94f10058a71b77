"""Estimators of the critical attack strength

    eps* = sup{eps : R_n(theta(eps), eps) <= R(theta(0), 0)},

the largest radius at which the adversarial *training* loss of the adversarially trained
model does not exceed the clean *test* loss of the clean model (the paper's definition).

* [`from_scratch`][advdyn.critical.estimators.from_scratch]: adversarial training from scratch on a
grid of radii, then linear
  interpolation of the adversarial training loss (section 5.2 of the paper).
* [`fine_tune_estimate`][advdyn.critical.estimators.fine_tune_estimate]: the paper's Algorithm A.1.
Adversarial fine-tuning of the clean
  model at a few small radii (warm-up then decay of the learning rate), then linear
  (least-squares line) or isotonic extrapolation of the points ``(0, R_0), (eps_k, R_k)`` to
  the level of the clean test loss.
* [`catastrophic_overfitting`][advdyn.critical.estimators.catastrophic_overfitting]: FGM training at
several radii; the smallest radius at
  which the PGD test accuracy of the FGM-trained model collapses.

Every estimator reports the compute it used: gradient evaluations (per-sample backward
passes, see `advdyn.adversarial.training`) and wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import xarray as xr

from advdyn.adversarial.attacks import Attack
from advdyn.adversarial.data import ArrayData
from advdyn.adversarial.training import Schedule, TrainResult, adversarial_train
from advdyn.typing import Array


def crossing(eps, values, level: float | np.ndarray | Array) -> float:
    """``sup{eps : v(eps) <= level}`` for the piecewise-linear interpolant ``v`` of a grid.

    Parameters
    ----------
    eps : array, shape (k,)
        Increasing radii.
    values : array, shape (k,)
        Values at the radii (e.g. adversarial training losses).
    level : float
        Threshold (e.g. the clean test loss).

    Returns
    -------
    float
        The interpolated crossing after the last grid point at or below ``level``;
        ``inf`` if the last grid value is still at or below ``level`` (eps* beyond the grid);
        ``nan`` if every value exceeds ``level``.
    """
    eps = np.asarray(eps, np.float64)
    v = np.asarray(values, np.float64)
    below = np.nonzero(v <= level)[0]
    if below.size == 0:
        return float("nan")
    i = int(below[-1])
    if i == len(v) - 1:
        return float("inf")
    return float(eps[i] + (level - v[i]) / (v[i + 1] - v[i]) * (eps[i + 1] - eps[i]))


def with_eps(attack: Attack, eps: float) -> Attack:
    """Copy of ``attack`` with radius ``eps`` (a float32 array, so jitted code is reused)."""
    return eqx.tree_at(lambda a: a.eps, attack, jnp.asarray(eps, jnp.float32))


def extrapolate(eps, values, level: float, method: str = "linear") -> float:
    """Crossing of ``level`` by a monotone fit of ``(eps, values)``, extrapolated if needed.

    Parameters
    ----------
    eps, values : arrays
        Points, ``eps[0] = 0`` being the clean model.
    level : float
        Threshold.
    method : {"linear", "isotonic"}
        ``"linear"``: least-squares line ``a + b eps``, crossing ``(level - a)/b`` (``inf``
        if ``b <= 0``). ``"isotonic"``: non-decreasing isotonic regression; the crossing is
        interpolated inside the fitted range, and beyond it the secant through the first and
        last fitted points is extended.

    Returns
    -------
    float
    """
    eps = np.asarray(eps, np.float64)
    v = np.asarray(values, np.float64)
    if method == "linear":
        b, a = np.polyfit(eps, v, 1)
        return float((level - a) / b) if b > 0 else float("inf")
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        f = IsotonicRegression(increasing=True).fit_transform(eps, v)
        if f[-1] >= level:
            return crossing(eps, f, level)
        slope = (f[-1] - f[0]) / (eps[-1] - eps[0])
        return float(eps[-1] + (level - f[-1]) / slope) if slope > 0 else float("inf")
    raise ValueError(f"unknown extrapolation {method!r} (linear or isotonic)")


def _table(eps, results: list[TrainResult], extra: dict | None = None) -> xr.Dataset:
    cols = {
        "adv_train_loss": [r.train_loss for r in results],
        "adv_train_acc": [r.train_acc for r in results],
        "adv_test_loss": [r.test_loss for r in results],
        "adv_test_acc": [r.test_acc for r in results],
        "clean_test_loss": [r.clean_test_loss for r in results],
        "clean_test_acc": [r.clean_test_acc for r in results],
        "best_epoch": [r.best_epoch for r in results],
        "grad_evals": [r.grad_evals for r in results],
        "time": [r.wall_time for r in results],
    }
    cols.update(extra or {})
    return xr.Dataset({k: ("eps", np.asarray(v)) for k, v in cols.items()},
                      coords={"eps": np.asarray(eps, np.float64)})


@dataclass(frozen=True)
class ScratchEstimate:
    """eps* from adversarial training from scratch on a grid.

    Attributes
    ----------
    eps_star : float
        Interpolated crossing (``inf``: beyond the grid).
    clean_test_loss : float
        Clean test loss of the clean model (the level).
    table : xarray.Dataset
        Per radius (``eps = 0`` first, the clean run): adversarial train/test loss and
        accuracy of the selected epoch, clean test loss/accuracy, best epoch, gradient
        evaluations and seconds.
    clean : TrainResult
        The clean run (reused by the fast estimator).
    grad_evals : int
        Total gradient evaluations, clean run included.
    wall_time : float
        Total seconds.
    compile_time : float
        Seconds of JIT compilation within ``wall_time``.
    results : tuple of TrainResult
        One per radius (the models, for re-evaluation under other attacks).
    """

    eps_star: float
    clean_test_loss: float
    table: xr.Dataset
    clean: TrainResult = field(repr=False)
    grad_evals: int
    wall_time: float
    compile_time: float = 0.0
    results: tuple = field(default=(), repr=False)


def from_scratch(
    make_model: Callable[[], eqx.Module],
    data: ArrayData,
    eps_grid,
    attack: Attack,
    eval_attack: Attack,
    schedule: Schedule,
    seed: int = 0,
    advance: Callable[[int], None] | None = None,
    trainer: Callable[..., TrainResult] = adversarial_train,
) -> ScratchEstimate:
    """eps* by adversarial training from scratch at every radius of ``eps_grid``.

    Parameters
    ----------
    make_model : callable
        Returns a freshly initialised model (same seed for every radius).
    data : ArrayData
        Train/test split.
    eps_grid : sequence of float
        Positive radii, increasing (the clean run ``eps = 0`` is added).
    attack, eval_attack : Attack
        Training and evaluation attacks (their ``eps`` is replaced).
    schedule : Schedule
        Optimiser and learning rates (the same for every radius).
    seed : int
        Seed of shuffles and random starts.
    advance : callable, optional
        Progress callback (one unit per epoch).
    trainer : callable
        The training loop ([`adversarial_train`][advdyn.adversarial.training.adversarial_train], or
        `torch_adversarial_train` for PyTorch).

    Returns
    -------
    ScratchEstimate
    """
    start = time.perf_counter()
    eps = np.concatenate([[0.0], np.asarray(eps_grid, np.float64)])
    if np.any(np.diff(eps) <= 0):
        raise ValueError("eps_grid must be positive and increasing")
    results = [
        trainer(make_model(), data, with_eps(attack, e), with_eps(eval_attack, e),
                schedule, seed, advance)
        for e in eps
    ]
    level = results[0].clean_test_loss
    table = _table(eps, results)
    return ScratchEstimate(
        eps_star=crossing(eps, table["adv_train_loss"].values, level),
        clean_test_loss=level,
        table=table,
        clean=results[0],
        grad_evals=int(sum(r.grad_evals for r in results)),
        wall_time=time.perf_counter() - start,
        compile_time=float(sum(r.compile_time for r in results)),
        results=tuple(results),
    )


@dataclass(frozen=True)
class FineTuneEstimate:
    """eps* by adversarial fine-tuning and extrapolation (Algorithm A.1).

    Attributes
    ----------
    eps_star : float
        Estimate of the chosen ``method``.
    eps_star_linear, eps_star_isotonic : float
        Both extrapolations.
    method : str
        ``"linear"`` or ``"isotonic"``.
    table : xarray.Dataset
        Per radius (``eps = 0``: the clean model, not retrained): adversarial train/test
        loss and accuracy after fine-tuning, best epoch, gradient evaluations, seconds and
        ``stage`` (0: the given radii, 1: refinement).
    grad_evals : int
        Gradient evaluations of the fine-tuning runs (the clean model's training is not
        included: both estimators need it).
    wall_time : float
        Seconds of the fine-tuning runs.
    compile_time : float
        Seconds of JIT compilation within ``wall_time``.
    results : tuple of TrainResult
        One per row of ``table`` (the first is the clean model).
    """

    eps_star: float
    eps_star_linear: float
    eps_star_isotonic: float
    method: str
    table: xr.Dataset
    grad_evals: int
    wall_time: float
    compile_time: float = 0.0
    results: tuple = field(default=(), repr=False)


def fine_tune_estimate(
    clean: TrainResult,
    data: ArrayData,
    eps_values,
    attack: Attack,
    eval_attack: Attack,
    schedule: Schedule,
    method: str = "linear",
    seed: int = 0,
    advance: Callable[[int], None] | None = None,
    refine: tuple[float, ...] = (),
    trainer: Callable[..., TrainResult] = adversarial_train,
) -> FineTuneEstimate:
    """Algorithm A.1: fine-tune the clean model at a few small radii and extrapolate.

    Parameters
    ----------
    clean : TrainResult
        Clean training (its selected model is the starting point; its clean train and test
        losses give the point at ``eps = 0`` and the level).
    data : ArrayData
        Train/test split.
    eps_values : sequence of float
        Small positive radii, increasing.
    attack, eval_attack : Attack
        Fine-tuning and evaluation attacks (their ``eps`` is replaced).
    schedule : Schedule
        Fine-tuning schedule (usually ``kind = "triangle"``: warm-up then decay, few epochs).
    method : {"linear", "isotonic"}
        Which extrapolation gives ``eps_star``.
    seed : int
        Seed of shuffles and random starts.
    advance : callable, optional
        Progress callback (one unit per epoch).
    refine : tuple of float
        Optional second round (Algorithm A.1 leaves the radii free): fine-tune again at
        these fractions of the first linear estimate, so that the last points lie close to
        eps*; the linear estimate then comes from the least-squares line through the
        refinement points only (a short, local extrapolation that the curvature of the loss
        cannot bias much), the isotonic one from all points.
    trainer : callable
        The training loop (JAX or PyTorch), as in
        [`from_scratch`][advdyn.critical.estimators.from_scratch].

    Returns
    -------
    FineTuneEstimate
    """
    start = time.perf_counter()
    eps = np.asarray(eps_values, np.float64)
    if eps.size == 0 or np.any(eps <= 0) or np.any(np.diff(eps) <= 0):
        raise ValueError("eps_values must be positive and increasing")

    def tune(radii):
        return [trainer(clean.model, data, with_eps(attack, e), with_eps(eval_attack, e),
                        schedule, seed, advance)
                for e in radii]

    results = tune(eps)
    level = clean.clean_test_loss
    all_eps = np.concatenate([[0.0], eps])
    losses = np.concatenate([[clean.train_loss], [r.train_loss for r in results]])
    lin = extrapolate(all_eps, losses, level, "linear")
    stage = [0] * len(all_eps)
    if refine and np.isfinite(lin) and lin > 0:
        eps2 = np.asarray(sorted(refine), np.float64) * lin
        more = tune(eps2)
        loss2 = np.asarray([r.train_loss for r in more])
        lin = extrapolate(eps2, loss2, level, "linear") if len(eps2) > 1 else extrapolate(
            np.concatenate([[0.0], eps2]), np.concatenate([[clean.train_loss], loss2]), level)
        order = np.argsort(np.concatenate([all_eps, eps2]), kind="stable")
        all_eps = np.concatenate([all_eps, eps2])[order]
        losses = np.concatenate([losses, loss2])[order]
        results = list(np.asarray([None, *results, *more], dtype=object)[order][1:])
        stage = list(np.asarray(stage + [1] * len(eps2))[order])
    iso = extrapolate(all_eps, losses, level, "isotonic")
    zero = TrainResult(clean.model, clean.history, clean.best_epoch, clean.train_loss,
                       clean.train_acc, clean.test_loss, clean.test_acc, clean.clean_test_loss,
                       clean.clean_test_acc, 0, 0.0)
    return FineTuneEstimate(
        eps_star=lin if method == "linear" else iso,
        eps_star_linear=lin,
        eps_star_isotonic=iso,
        method=method,
        table=_table(all_eps, [zero, *results], {"stage": stage}),
        grad_evals=int(sum(r.grad_evals for r in results)),
        wall_time=time.perf_counter() - start,
        compile_time=float(sum(r.compile_time for r in results)),
        results=(zero, *results),
    )


@dataclass(frozen=True)
class OverfittingResult:
    """Catastrophic overfitting of FGM training.

    Attributes
    ----------
    eps_unstable : float
        Smallest radius whose FGM-trained model ends with PGD test accuracy below
        ``threshold`` (``nan`` if none does).
    threshold : float
        The collapse threshold.
    table : xarray.Dataset
        Per radius: ``pgd_test_acc_final`` (last epoch), ``pgd_test_acc_best`` (best over
        epochs), ``fgm_train_acc_final`` (running FGM training accuracy, last epoch),
        ``pgd_test_loss_final``.
    grad_evals : int
        Gradient evaluations.
    wall_time : float
        Seconds.
    """

    eps_unstable: float
    threshold: float
    table: xr.Dataset
    grad_evals: int
    wall_time: float
    compile_time: float = 0.0


def catastrophic_overfitting(
    make_model: Callable[[], eqx.Module],
    data: ArrayData,
    eps_values,
    fgm: Attack,
    eval_attack: Attack,
    schedule: Schedule,
    threshold: float = 0.2,
    seed: int = 0,
    advance: Callable[[int], None] | None = None,
    trainer: Callable[..., TrainResult] = adversarial_train,
) -> OverfittingResult:
    """FGM adversarial training from scratch; find where PGD test accuracy collapses.

    Parameters
    ----------
    make_model : callable
        Fresh model factory.
    data : ArrayData
        Train/test split.
    eps_values : sequence of float
        Radii, increasing.
    fgm : Attack
        Training attack (``method = "fgm"``; its ``eps`` is replaced).
    eval_attack : Attack
        PGD evaluation attack (its ``eps`` is replaced).
    schedule : Schedule
        Training schedule.
    threshold : float
        Collapse: final-epoch PGD test accuracy below this (e.g. twice chance level).
    seed : int
        Seed.
    advance : callable, optional
        Progress callback (one unit per epoch).

    Returns
    -------
    OverfittingResult
    """
    start = time.perf_counter()
    eps = np.asarray(eps_values, np.float64)
    results = [
        trainer(make_model(), data, with_eps(fgm, e), with_eps(eval_attack, e),
                schedule, seed, advance)
        for e in eps
    ]
    final = np.asarray([float(r.history["test_acc"].values[-1]) for r in results])
    table = xr.Dataset(
        {
            "pgd_test_acc_final": ("eps", final),
            "pgd_test_acc_best": ("eps", [float(r.history["test_acc"].max()) for r in results]),
            "pgd_test_loss_final": ("eps", [float(r.history["test_loss"].values[-1])
                                            for r in results]),
            "fgm_train_acc_final": ("eps", [float(r.history["train_acc"].values[-1])
                                            for r in results]),
        },
        coords={"eps": eps},
    )
    collapsed = np.nonzero(final < threshold)[0]
    return OverfittingResult(
        eps_unstable=float(eps[collapsed[0]]) if collapsed.size else float("nan"),
        threshold=threshold,
        table=table,
        grad_evals=int(sum(r.grad_evals for r in results)),
        wall_time=time.perf_counter() - start,
        compile_time=float(sum(r.compile_time for r in results)),
    )


@dataclass(frozen=True)
class StrongEstimate:
    """eps* of an estimate re-measured under a stronger evaluation (same trained models).

    Attributes
    ----------
    eps_star : float
        The estimator's rule applied to the re-evaluated adversarial training losses
        (from scratch: interpolated crossing; fine-tuning: the same extrapolation).
    losses : numpy.ndarray
        Adversarial training loss per row of the estimate's table under the strong
        evaluation (the clean row keeps its clean loss).
    per_attack : dict of str to numpy.ndarray
        Adversarial training loss per row under each attack of the ensemble.
    grad_evals : int
        Input-gradient evaluations of the re-evaluation.
    wall_time, compile_time : float
        Seconds (compilation apart).
    """

    eps_star: float
    losses: np.ndarray
    per_attack: dict
    grad_evals: int
    wall_time: float
    compile_time: float


def _as_jax_model(model, classes: int):
    """JAX models as they are; a ``torch.nn.Module`` wrapped (CPU copy, ``eval()`` mode, its
    trained BatchNorm statistics) through `TorchModel`."""
    if isinstance(model, eqx.Module) or not hasattr(model, "state_dict"):
        return model
    import copy

    from advdyn.adversarial.torch_adapter import TorchModel

    module = copy.deepcopy(model).cpu().eval()
    key = (type(model).__name__, repr(model), classes)
    template = _TEMPLATES.get(key)
    wrapped = TorchModel.wrap(module, out_features=classes, template=template)
    _TEMPLATES.setdefault(key, wrapped)  # one compiled evaluation per architecture
    return wrapped


_TEMPLATES: dict = {}


def strong_estimate(estimate: ScratchEstimate | FineTuneEstimate, data: ArrayData,
                    attacks_at: Callable[[float], tuple], names: list[str],
                    level: float, seed: int = 0) -> StrongEstimate:
    """Re-evaluate the adversarial training losses of an estimate's models under an ensemble
    of attacks (worst case per sample) and apply the estimator's rule again.

    Parameters
    ----------
    estimate : ScratchEstimate or FineTuneEstimate
        With its trained models (``results``).
    data : ArrayData
        The training data of the estimate.
    attacks_at : callable
        ``eps -> tuple of attacks`` (e.g. PGD, APGD-CE, APGD-T at that radius).
    names : list of str
        Names of the attacks, for ``per_attack``.
    level : float
        The clean test loss of the clean model.
    seed : int
        Seed of the random starts.

    Returns
    -------
    StrongEstimate
    """
    from advdyn.adversarial.apgd import strong_evaluate
    from advdyn.adversarial.training import CompileClock

    start = time.perf_counter()
    eps = estimate.table["eps"].values
    losses = estimate.table["adv_train_loss"].values.astype(np.float64).copy()
    if hasattr(data, "x_train"):
        x_train, y_train = data.x_train, data.y_train
    else:  # PyTorch DataLoaders: one pass collected
        x_train, y_train = data.arrays("train")  # type: ignore[attr-defined]
    per = {k: losses.copy() for k in names}
    grads = 0
    with CompileClock() as clock:
        for i, (e, r) in enumerate(zip(eps, estimate.results, strict=True)):
            if e == 0:
                continue
            attacks = attacks_at(float(e))
            ev = strong_evaluate(_as_jax_model(r.model, data.classes), x_train, y_train,
                                 attacks, seed + i)
            losses[i] = ev["adv_loss"]
            for j, k in enumerate(names):
                per[k][i] = ev[f"loss_{j}"]
            grads += len(y_train) * sum(a.gradient_evaluations for a in attacks)
    if isinstance(estimate, ScratchEstimate):
        value = crossing(eps, losses, level)
    else:
        stage = estimate.table["stage"].values
        fit = stage == 1 if np.sum(stage == 1) > 1 else np.ones(len(eps), bool)
        value = extrapolate(eps[fit], losses[fit], level, estimate.method) \
            if estimate.method == "linear" else extrapolate(eps, losses, level, "isotonic")
    return StrongEstimate(value, losses, per, grads, time.perf_counter() - start,
                          clock.seconds)
