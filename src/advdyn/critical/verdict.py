"""A practitioner's verdict: is my attack radius below, near, or beyond eps*?

eps* is estimated ``R`` times (``repeats``), each time on a different data split, model
initialisation and minibatch order (seeds ``seed + r``). The interval is the two-sided
Student-t **prediction interval** for the eps* of one more, fresh split and seed:

    mean +- t_{(1 + level)/2, R - 1} * s * sqrt(1 + 1/R),

``s`` the sample standard deviation of the ``R`` estimates. It covers a fresh split's eps*
with probability ``level`` when the per-split estimates are roughly Gaussian (checked on the
linear model in the tests). ``eps`` is *below* eps* when it lies under the interval,
*beyond* when over it, and *near* otherwise. With ``R = 1`` there is no interval: the verdict
is *near* within a factor 1.5 of the estimate and a warning says so.

Diagnostics ([`diagnose`][advdyn.critical.verdict.diagnose]) turn the silent failures of the
estimators into warnings: the
crossing outside the grid, a failed fit, an unconverged clean model, an adversarial training
loss that is not increasing in eps.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

VERDICTS = ("below", "near", "beyond")


def parse_eps(text: str | float) -> float:
    """Parse a radius: ``0.03``, ``8/255`` or ``3e-2``.

    Parameters
    ----------
    text : str or float
        The radius, possibly a fraction ``a/b``.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If it is not a finite non-negative number.
    """
    if isinstance(text, int | float):
        value = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(?:/\s*([0-9.eE+-]+))?\s*", str(text))
        if m is None:
            raise ValueError(f"cannot read {text!r} as a radius (e.g. 0.03 or 8/255)")
        try:
            value = float(m.group(1)) / (float(m.group(2)) if m.group(2) else 1.0)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"cannot read {text!r} as a radius (e.g. 0.03 or 8/255)") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"a radius must be finite and non-negative, got {text!r}")
    return value


def prediction_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t prediction interval of one more draw (module docstring).

    Parameters
    ----------
    values : array, shape (R,)
        Finite estimates.
    level : float
        Coverage.

    Returns
    -------
    (mean, lower, upper) : floats
        ``lower``/``upper`` are ``nan`` when ``R < 2``.
    """
    v = np.asarray(values, np.float64)
    mean = float(v.mean())
    if v.size < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) * math.sqrt(1 + 1 / v.size)
    return mean, float(mean - half), float(mean + half)


def confidence_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean eps* over splits (``nan`` if ``R < 2``)."""
    v = np.asarray(values, np.float64)
    if v.size < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean() - half), float(v.mean() + half)


@dataclass(frozen=True)
class Verdict:
    """Where a radius lies relative to eps*.

    Attributes
    ----------
    eps : float
        The radius asked about (data units).
    verdict : {"below", "near", "beyond"}
        See the module docstring.
    eps_star : float
        Mean of the finite per-repeat estimates.
    lower, upper : float
        Prediction interval (``nan`` with fewer than two finite estimates).
    ci_lower, ci_upper : float
        Confidence interval of the mean.
    level : float
        Nominal coverage.
    values : tuple of float
        Per-repeat estimates (``inf``/``nan`` kept, excluded from the interval).
    method : str
        How the interval was computed.
    warnings : tuple of str
        Diagnostics.
    pixel_scale : float, optional
        255 for images in ``[0, 1]``: radii are also reported in ``/255``.
    """

    eps: float
    verdict: str
    eps_star: float
    lower: float
    upper: float
    ci_lower: float
    ci_upper: float
    level: float
    values: tuple[float, ...]
    method: str
    warnings: tuple[str, ...] = field(default=())
    pixel_scale: float | None = None

    def in_pixels(self, value: float) -> str | None:
        """``value`` as ``k/255`` (one decimal), or ``None`` without a pixel scale."""
        if self.pixel_scale is None or not math.isfinite(value):
            return None
        return f"{value * self.pixel_scale:.1f}/{self.pixel_scale:g}"

    def sentence(self) -> str:
        """One line for people."""
        def both(v):
            px = self.in_pixels(v)
            return f"{v:.4g}" + (f" ({px})" if px else "")

        interval = (f"{self.level:.0%} prediction interval [{both(self.lower)}, "
                    f"{both(self.upper)}]" if math.isfinite(self.lower) else "no interval")
        return (f"eps = {both(self.eps)} is {self.verdict.upper()} eps* = "
                f"{both(self.eps_star)}, {interval} over {len(self.values)} splits/seeds")

    def to_dict(self) -> dict:
        """JSON-ready mapping (non-finite numbers as ``None``)."""
        def num(x):
            return x if isinstance(x, float) and math.isfinite(x) else None

        out = {
            "eps": self.eps, "verdict": self.verdict, "eps_star": num(self.eps_star),
            "lower": num(self.lower), "upper": num(self.upper),
            "ci_mean_lower": num(self.ci_lower), "ci_mean_upper": num(self.ci_upper),
            "level": self.level, "values": [num(float(v)) for v in self.values],
            "method": self.method, "warnings": list(self.warnings),
        }
        if self.pixel_scale is not None:
            out["in_pixels"] = {k: self.in_pixels(v) for k, v in (
                ("eps", self.eps), ("eps_star", self.eps_star), ("lower", self.lower),
                ("upper", self.upper))}
        return out


def verdict(eps: float, values, level: float = 0.95, pixel_scale: float | None = None,
            warnings: tuple[str, ...] | list[str] = ()) -> Verdict:
    """Compare ``eps`` with per-split estimates of eps*.

    Parameters
    ----------
    eps : float
        The radius in question (data units).
    values : array, shape (R,)
        eps* of each repeat (non-finite ones are excluded from the interval and reported).
    level : float
        Coverage of the prediction interval.
    pixel_scale : float, optional
        255 for 8-bit images scaled to ``[0, 1]``.
    warnings : sequence of str
        Diagnostics to carry along (see [`diagnose`][advdyn.critical.verdict.diagnose]).

    Returns
    -------
    Verdict
    """
    v = np.asarray(values, np.float64)
    finite = v[np.isfinite(v)]
    notes = list(warnings)
    if finite.size < v.size:
        notes.append(f"{v.size - finite.size} of {v.size} repeats gave no finite eps* "
                     "(excluded from the interval)")
    if finite.size == 0:
        return Verdict(eps, "near", float("nan"), float("nan"), float("nan"), float("nan"),
                       float("nan"), level, tuple(map(float, v)), "none: no finite estimate",
                       tuple([*notes, "no finite eps*: no verdict possible"]), pixel_scale)
    mean, lo, hi = prediction_interval(finite, level)
    clo, chi = confidence_interval(finite, level)
    if finite.size < 2:
        notes.append("one finite estimate: no interval; 'near' means within a factor 1.5 "
                     "(set repeats >= 3)")
        lo, hi = mean / 1.5, mean * 1.5
        method = "single estimate, factor 1.5 band (no statistical interval)"
    else:
        method = (f"Student-t prediction interval for the eps* of a fresh data split and "
                  f"seed, from {finite.size} repeats: mean +- t_(n-1) s sqrt(1 + 1/n)")
    lo = max(lo, 0.0)  # eps* >= 0: a negative lower end carries no information
    side = "below" if eps < lo else ("beyond" if eps > hi else "near")
    return Verdict(float(eps), side, mean, lo, hi, clo, chi, level, tuple(map(float, v)),
                   method, tuple(notes), pixel_scale)


def not_converged(history_loss, test_loss=None, tail: float = 0.2, tol: float = 0.05) -> bool:
    """Whether a clean training run still improves at its end.

    True when the running training loss fell by more than ``tol`` (relative) over the last
    ``tail`` fraction of the epochs, or when the test loss (if given) is still at its minimum
    in the last epoch having fallen by more than ``tol`` over that tail.

    Parameters
    ----------
    history_loss : array, shape (epochs,)
        Per-epoch running training loss.
    test_loss : array, shape (epochs,), optional
        Per-epoch test loss.
    tail : float
        Fraction of the epochs examined.
    tol : float
        Relative decrease counted as progress.

    Returns
    -------
    bool
    """
    h = np.asarray(history_loss, np.float64)
    k = max(3, math.ceil(tail * h.size))
    if h.size < 4:
        return True
    drop = (h[-k] - h[-1]) / max(abs(h[-k]), 1e-12)
    if drop > tol:
        return True
    if test_loss is not None:
        t = np.asarray(test_loss, np.float64)
        if int(np.argmin(t)) == t.size - 1 and (t[-k] - t[-1]) / max(abs(t[-k]), 1e-12) > tol:
            return True
    return False


def diagnose(eps, losses, level: float, eps_star: float, kind: str,
             clean_history=None, grid_max: float | None = None) -> list[str]:
    """Warnings for one eps* estimate.

    Parameters
    ----------
    eps, losses : arrays
        Radii (``eps[0] = 0``) and adversarial training losses of the estimate.
    level : float
        Clean test loss.
    eps_star : float
        The estimate (``inf``: beyond the grid or no positive slope; ``nan``: below it).
    kind : {"scratch", "fast"}
        Estimator, for the wording.
    clean_history : xarray.Dataset, optional
        History of the clean run (``train_loss``, ``test_loss``) for the convergence check.
    grid_max : float, optional
        Largest radius trained at.

    Returns
    -------
    list of str
    """
    out = []
    e = np.asarray(eps, np.float64)
    v = np.asarray(losses, np.float64)
    order = np.argsort(e)
    e, v = e[order], v[order]
    top = float(grid_max if grid_max is not None else e.max())
    if kind == "scratch":
        if math.isinf(eps_star):
            out.append(f"{kind}: the adversarial training loss stays below the clean test "
                       f"loss up to the largest grid radius {top:.4g}: eps* > {top:.4g} "
                       "(extend the grid)")
        elif math.isnan(eps_star):
            out.append(f"{kind}: every radius of the grid already exceeds the clean test loss:"
                       f" eps* < {e[e > 0].min():.4g} (add smaller radii)")
    else:
        if not math.isfinite(eps_star):
            out.append(f"{kind}: the extrapolation failed (the fitted adversarial training "
                       "loss does not increase with eps)")
        elif eps_star > 3 * top:
            out.append(f"{kind}: eps* = {eps_star:.4g} extrapolated beyond 3x the largest "
                       f"fine-tuning radius {top:.4g}")
    if np.any(np.diff(v) < -1e-3 * max(abs(level), 1e-12)):
        values = ", ".join(f"{x:.3g}" for x in v)
        radii = ", ".join(f"{x:.3g}" for x in e)
        out.append(f"{kind}: the adversarial training loss is not increasing in eps "
                   f"({values} at eps {radii})")
    if clean_history is not None and not_converged(
            clean_history["train_loss"].values, clean_history["test_clean_loss"].values
            if "test_clean_loss" in clean_history else None):
        out.append("the clean model has not converged (its loss still falls at the end of "
                   "training): the level and eps* are unreliable (train longer)")
    return out
