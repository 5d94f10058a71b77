"""From a :class:`~advdyn.critical.config.CriticalConfig` to result files: both eps*
estimators, FGM catastrophic overfitting, a table, a summary and a figure.

Files written in the output folder (atomically):

* ``critical_eps.csv``: one row per trained model, ``method`` = ``scratch`` (from scratch;
  ``eps = 0`` is the clean run) or ``finetune`` (Algorithm A.1; ``eps = 0`` is the clean
  model), with adversarial train/test loss and accuracy, clean test loss/accuracy, selected
  epoch, gradient evaluations and seconds; and ``method = fgm`` rows (FGM training, PGD test
  accuracy at the last epoch).
* ``critical_eps.nc``: the same tables as one NetCDF (dimensions ``eps``, ``eps_ft``,
  ``eps_fgm``) plus the per-epoch histories of the from-scratch runs (``epoch``).
* ``critical_eps.json``: both eps* estimates, the level, the compute of each method and their
  ratio, the FGM unstable radius, the config.
* ``critical_eps.png``: adversarial training loss against eps (:mod:`.figures`).
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from advdyn._version import __version__
from advdyn.adversarial.attacks import Attack
from advdyn.adversarial.data import ArrayData, gaussian_mixture, load_digits
from advdyn.adversarial.models import make_model
from advdyn.adversarial.training import Schedule
from advdyn.config.critical import CriticalConfig
from advdyn.critical.estimators import (
    FineTuneEstimate,
    OverfittingResult,
    ScratchEstimate,
    catastrophic_overfitting,
    fine_tune_estimate,
    from_scratch,
)
from advdyn.io import atomic_path, write_json, write_netcdf


def build_data(cfg: CriticalConfig) -> ArrayData:
    """The dataset of a config."""
    d = cfg.data
    if d.kind == "digits":
        return load_digits(d.n_train, d.n_test, d.seed)
    return gaussian_mixture(d.n_train or 1000, d.n_test, d.d, d.classes, d.separation, d.seed)


def build_attacks(cfg: CriticalConfig, data: ArrayData) -> tuple[Attack, Attack, Attack]:
    """Training PGD, evaluation PGD and training FGM attacks (radius 0, set later)."""
    a = cfg.attack
    clip = data.domain if a.clip else None
    common = dict(norm=a.norm, rel_step=a.rel_step, random_start=a.random_start, clip=clip)
    return (
        Attack(eps=0.0, method="pgd", steps=a.train_steps, **common),
        Attack(eps=0.0, method="pgd", steps=a.eval_steps, **common),
        Attack(eps=0.0, method="fgm", **common),
    )


def schedules(cfg: CriticalConfig) -> tuple[Schedule, Schedule, Schedule]:
    """From-scratch, fine-tuning (triangle) and FGM schedules."""
    t = cfg.train
    base = Schedule(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, momentum=t.momentum,
                    weight_decay=t.weight_decay, kind="step", drops=t.drops,
                    drop_factor=t.drop_factor)
    fast = Schedule(epochs=cfg.fast.epochs, batch_size=t.batch_size, lr=cfg.fast.lr or t.lr,
                    momentum=t.momentum, weight_decay=t.weight_decay, kind="triangle",
                    warmup=cfg.fast.warmup)
    fgm = Schedule(**{**base.__dict__, "epochs": cfg.fgm.epochs or t.epochs})
    return base, fast, fgm


def total_epochs(cfg: CriticalConfig) -> int:
    """Number of training epochs a run performs (progress-bar length)."""
    n = cfg.train.epochs * (1 + len(cfg.scratch.eps))
    n += cfg.fast.epochs * (len(cfg.fast.eps) + len(cfg.fast.refine))
    if cfg.fgm.enabled:
        n += (cfg.fgm.epochs or cfg.train.epochs) * len(cfg.fgm.eps)
    return n


@dataclass(frozen=True)
class CriticalResult:
    """Everything a ``critical-eps`` run produced (see the module docstring)."""

    scratch: ScratchEstimate
    fast: FineTuneEstimate
    fgm: OverfittingResult | None
    summary: dict
    files: dict[str, Path]


def _num(x: float):
    return None if math.isnan(x) else (str(x) if math.isinf(x) else x)


def run_critical(cfg: CriticalConfig, out_dir: str | Path | None = None,
                 progress: bool = True) -> CriticalResult:
    """Run both estimators (and the FGM study) and write the result files.

    Parameters
    ----------
    cfg : CriticalConfig
        The run.
    out_dir : str or Path, optional
        Result folder (nothing is written when ``None``).
    progress : bool
        Show a progress bar on standard error (one unit per epoch).

    Returns
    -------
    CriticalResult
    """
    from advdyn.workflows.progress import progress_bar

    start = time.perf_counter()
    data = build_data(cfg)
    pgd_train, pgd_eval, fgm_attack = build_attacks(cfg, data)
    base, fast_sched, fgm_sched = schedules(cfg)
    m = cfg.model

    def fresh():
        return make_model(m.kind, data.input_shape, data.classes, m.width, m.depth, m.seed)

    seed = cfg.train.seed
    with progress_bar("critical-eps", total_epochs(cfg), enabled=progress) as advance:
        scratch = from_scratch(fresh, data, cfg.scratch.eps, pgd_train, pgd_eval, base,
                               seed, advance)
        fast = fine_tune_estimate(scratch.clean, data, cfg.fast.eps, pgd_train, pgd_eval,
                                  fast_sched, cfg.fast.method, seed, advance,
                                  tuple(cfg.fast.refine))
        fgm = None
        if cfg.fgm.enabled:
            fgm = catastrophic_overfitting(fresh, data, cfg.fgm.eps, fgm_attack, pgd_eval,
                                           fgm_sched, cfg.fgm.threshold, seed, advance)
    clean_grads = int(scratch.table["grad_evals"].values[0])
    summary = {
        "data": data.name,
        "n_train": data.n_train,
        "model": f"{m.kind} width {m.width} depth {m.depth}",
        "norm": cfg.attack.norm,
        "clean_test_loss": scratch.clean_test_loss,
        "clean_train_loss": float(scratch.table["adv_train_loss"].values[0]),
        "eps_star_scratch": _num(scratch.eps_star),
        "eps_star_fast": _num(fast.eps_star),
        "eps_star_fast_linear": _num(fast.eps_star_linear),
        "eps_star_fast_isotonic": _num(fast.eps_star_isotonic),
        "fast_method": fast.method,
        "relative_difference": _num(abs(fast.eps_star - scratch.eps_star) / scratch.eps_star)
        if np.isfinite(scratch.eps_star) and scratch.eps_star > 0 else None,
        "compute": {
            "scratch_grad_evals": scratch.grad_evals,
            "scratch_wall_time_s": scratch.wall_time,
            "clean_grad_evals": clean_grads,
            "fast_grad_evals": fast.grad_evals,
            "fast_wall_time_s": fast.wall_time,
            "fast_over_scratch_grad_evals": fast.grad_evals / scratch.grad_evals,
            "fast_plus_clean_over_scratch_grad_evals":
                (fast.grad_evals + clean_grads) / scratch.grad_evals,
            "fast_over_scratch_wall_time": fast.wall_time / scratch.wall_time,
        },
        "fgm": None if fgm is None else {
            "eps_unstable": _num(fgm.eps_unstable),
            "threshold": fgm.threshold,
            "grad_evals": fgm.grad_evals,
            "wall_time_s": fgm.wall_time,
        },
        "wall_time_s": time.perf_counter() - start,
        "advdyn_version": __version__,
        "config": cfg.model_dump(mode="json"),
    }
    files: dict[str, Path] = {}
    if out_dir is not None:
        out = Path(out_dir)
        files = write_results(out, scratch, fast, fgm, summary, cfg)
    return CriticalResult(scratch, fast, fgm, summary, files)


_CSV_COLUMNS = ("method", "eps", "adv_train_loss", "adv_train_acc", "adv_test_loss",
                "adv_test_acc", "clean_test_loss", "clean_test_acc", "best_epoch",
                "grad_evals", "time", "stage", "pgd_test_acc_final")


def _rows(method: str, ds: xr.Dataset):
    for i, e in enumerate(ds["eps"].values):
        row = {"method": method, "eps": float(e)}
        for c in _CSV_COLUMNS[2:]:
            row[c] = ds[c].values[i].item() if c in ds else ""
        yield row


def write_results(out: Path, scratch: ScratchEstimate, fast: FineTuneEstimate,
                  fgm: OverfittingResult | None, summary: dict,
                  cfg: CriticalConfig) -> dict[str, Path]:
    """Write ``critical_eps.{csv,nc,json,png}`` into ``out``; return their paths."""
    from advdyn.plot.critical import plot_critical
    from advdyn.plot.risk import save_figure

    out.mkdir(parents=True, exist_ok=True)
    files = {}
    with atomic_path(out / "critical_eps.csv") as tmp, tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=_CSV_COLUMNS)
        w.writeheader()
        w.writerows(_rows("scratch", scratch.table))
        w.writerows(_rows("finetune", fast.table))
        if fgm is not None:
            w.writerows(_rows("fgm", fgm.table))
    files["csv"] = out / "critical_eps.csv"

    ds = scratch.table.copy()
    ds = ds.merge(fast.table.rename({"eps": "eps_ft"}).rename(
        {k: f"ft_{k}" for k in fast.table.data_vars}))
    if fgm is not None:
        ds = ds.merge(fgm.table.rename({"eps": "eps_fgm"}).rename(
            {k: f"fgm_{k}" for k in fgm.table.data_vars}))
    ds.attrs.update({
        "method": "critical-eps",
        "config": cfg.to_json(),
        "advdyn_version": __version__,
        "eps_star_scratch": float(scratch.eps_star),
        "eps_star_fast": float(fast.eps_star),
        "clean_test_loss": float(scratch.clean_test_loss),
    })
    files["netcdf"] = write_netcdf(ds, out / "critical_eps.nc")
    files["json"] = write_json(summary, out / "critical_eps.json")
    fig = plot_critical(scratch, fast, fgm)
    files["figure"] = save_figure(fig, out / "critical_eps.png")
    return files
