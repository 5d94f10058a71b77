"""From a `CriticalConfig` to result files: both eps*
estimators, FGM catastrophic overfitting, a table, a summary and a figure.

Files written in the output folder (atomically):

* ``critical_eps.csv``: one row per trained model, ``method`` = ``scratch`` (from scratch;
  ``eps = 0`` is the clean run) or ``finetune`` (Algorithm A.1; ``eps = 0`` is the clean
  model), with adversarial train/test loss and accuracy, clean test loss/accuracy, selected
  epoch, gradient evaluations and seconds; and ``method = fgm`` rows (FGM training, PGD test
  accuracy at the last epoch).
* ``critical_eps.nc``: the same tables as one NetCDF (dimensions ``eps``, ``eps_ft``,
  ``eps_fgm``) plus the per-epoch histories of the from-scratch runs (``epoch``).
* ``critical_eps.json``: both eps* estimates under PGD and under the strong evaluation
  (worst case over PGD and, by default, APGD-CE and APGD-T), the per-repeat estimates over
  data splits and seeds with their prediction interval, the verdict on ``verdict.eps``
  (below / near / beyond), warnings, the level, the compute of each method (gradient
  evaluations; wall time split into compilation and the rest) and their ratios, the FGM
  unstable radius, the config.
* ``critical_eps.png``: adversarial training loss against eps (`.figures`).
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from advdyn._version import __version__
from advdyn.adversarial.apgd import attack_names, strong_attacks
from advdyn.adversarial.attacks import Attack
from advdyn.adversarial.data import ArrayData, gaussian_mixture, load_digits
from advdyn.adversarial.models import make_model
from advdyn.adversarial.training import Schedule
from advdyn.config.critical import CriticalConfig
from advdyn.critical.estimators import (
    FineTuneEstimate,
    OverfittingResult,
    ScratchEstimate,
    StrongEstimate,
    catastrophic_overfitting,
    fine_tune_estimate,
    from_scratch,
    strong_estimate,
    with_eps,
)
from advdyn.critical.verdict import Verdict, diagnose, verdict
from advdyn.io import atomic_path, write_json, write_netcdf
from advdyn.io.files import folder_lock


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
    def make(method: str, steps: int = 1) -> Attack:
        return Attack(eps=0.0, norm=a.norm, method=method, steps=steps, rel_step=a.rel_step,
                      random_start=a.random_start, clip=clip)

    return make("pgd", a.train_steps), make("pgd", a.eval_steps), make("fgm")


def schedules(cfg: CriticalConfig) -> tuple[Schedule, Schedule, Schedule]:
    """From-scratch, fine-tuning (triangle) and FGM schedules."""
    t = cfg.train
    base = Schedule(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, momentum=t.momentum,
                    weight_decay=t.weight_decay, kind="step", drops=t.drops,
                    drop_factor=t.drop_factor, optimizer=t.optimizer, loss=t.loss, beta=t.beta)
    fast = Schedule(epochs=cfg.fast.epochs, batch_size=t.batch_size, lr=cfg.fast.lr or t.lr,
                    momentum=t.momentum, weight_decay=t.weight_decay, kind="triangle",
                    warmup=cfg.fast.warmup, optimizer=t.optimizer, loss=t.loss, beta=t.beta)
    fgm = Schedule(**{**base.__dict__, "epochs": cfg.fgm.epochs or t.epochs})
    return base, fast, fgm


def total_epochs(cfg: CriticalConfig) -> int:
    """Number of training epochs a run performs (progress-bar length)."""
    n = cfg.train.epochs * (1 + len(cfg.scratch.eps))
    per_fast = cfg.fast.epochs * (len(cfg.fast.eps) + len(cfg.fast.refine))
    n += per_fast + (cfg.verdict.repeats - 1) * (cfg.train.epochs + per_fast)
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
    strong_scratch: StrongEstimate | None = None
    strong_fast: StrongEstimate | None = None
    repeats: tuple[dict, ...] = ()
    verdict: Verdict | None = None
    warnings: tuple[str, ...] = ()


def _num(x: float):
    """JSON number, or ``None`` when not finite (the warnings say why)."""
    return float(x) if math.isfinite(x) else None


def repeat_config(cfg: CriticalConfig, r: int) -> CriticalConfig:
    """The config of repeat ``r``: data split, model initialisation and minibatch order
    seeds shifted by ``r``."""
    if r == 0:
        return cfg
    return cfg.with_overrides(**{"data.seed": cfg.data.seed + r,
                                 "model.seed": cfg.model.seed + r,
                                 "train.seed": cfg.train.seed + r})


def _timing(wall: float, compile_s: float) -> dict:
    return {"wall_s": wall, "compile_s": compile_s, "compute_s": max(wall - compile_s, 0.0)}


def _repeat_entry(r, cfg_r, clean, fast, strong_fast, warnings: list[str]) -> dict:
    kind = f"repeat {r} (seeds data {cfg_r.data.seed}, model {cfg_r.model.seed}, " \
           f"train {cfg_r.train.seed}) fine-tune"
    warnings += diagnose(fast.table["eps"].values, fast.table["adv_train_loss"].values,
                         float(fast.table["clean_test_loss"].values[0]), fast.eps_star, kind,
                         clean.history)
    if strong_fast is not None and not np.isfinite(strong_fast.eps_star):
        warnings.append(f"{kind}: the extrapolation under the strong evaluation failed")
    return {
        "repeat": r,
        "seeds": {"data": cfg_r.data.seed, "model": cfg_r.model.seed, "train": cfg_r.train.seed},
        "clean_test_loss": float(fast.table["clean_test_loss"].values[0]),
        "eps_star_pgd": _num(fast.eps_star),
        "eps_star_strong": None if strong_fast is None else _num(strong_fast.eps_star),
        "timing": _timing(clean.wall_time + fast.wall_time,
                          clean.compile_time + fast.compile_time),
    }


@dataclass(frozen=True)
class Backend:
    """Where models, data and training come from (the JAX models of the config by default).

    Attributes
    ----------
    data_for : callable
        ``cfg -> data`` (an ``ArrayData``, or a ``TorchData`` for the PyTorch trainer).
    model_for : callable
        ``(cfg, data) -> fresh model`` (seeded by ``cfg.model.seed``).
    trainer : callable
        The training loop.
    """

    data_for: Callable
    model_for: Callable
    trainer: Callable


def jax_backend() -> Backend:
    """Data and models of the config, trained by the JAX loop."""
    from advdyn.adversarial.training import adversarial_train

    def model_for(cfg, data):
        m = cfg.model
        return make_model(m.kind, data.input_shape, data.classes, m.width, m.depth, m.seed)

    return Backend(build_data, model_for, adversarial_train)


def torch_backend(make_module: Callable, make_data: Callable | None = None, device="cpu",
                  checkpoint_dir: str | Path | None = None) -> Backend:
    """A PyTorch backend: ``make_module(seed) -> torch.nn.Module``, ``make_data(seed) ->
    ArrayData | TorchData`` (default: the config's data), trained natively in PyTorch on
    ``device``; with ``checkpoint_dir`` every training run checkpoints there (and resumes)."""
    import functools

    from advdyn.adversarial.torch_training import torch_adversarial_train

    counter = iter(range(10**9))

    def trainer(*args, **kw):
        ck = None
        if checkpoint_dir is not None:
            Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
            ck = Path(checkpoint_dir) / f"run{next(counter):03d}.pt"
        return torch_adversarial_train(*args, device=device, checkpoint=ck, **kw)

    def data_for(cfg):
        return build_data(cfg) if make_data is None else make_data(cfg.data.seed)

    return Backend(data_for, lambda cfg, data: make_module(cfg.model.seed),
                   functools.wraps(torch_adversarial_train)(trainer))


def run_critical(cfg: CriticalConfig, out_dir: str | Path | None = None,
                 progress: bool = True, eps: float | None = None,
                 backend: Backend | None = None,
                 on_start: Callable[[], None] | None = None) -> CriticalResult:
    """Run both estimators, the repeats, the strong evaluation (and the FGM study), judge
    ``eps`` and write the result files.

    Parameters
    ----------
    cfg : CriticalConfig
        The run.
    out_dir : str or Path, optional
        Result folder (nothing is written when ``None``).
    progress : bool
        Show a progress bar on standard error (one unit per epoch).
    eps : float, optional
        The radius to judge (overrides ``cfg.verdict.eps``).
    backend : Backend, optional
        Models, data and trainer (default `jax_backend`; `torch_backend` for a
        ``torch.nn.Module``). The config's ``model``/``data`` sections then only give seeds.
    on_start : callable, optional
        Called once the inputs and the output folder have been checked (and the folder is
        held), before any computation: a command's status line goes there, so that a
        refusal is the only line it prints.

    Returns
    -------
    CriticalResult

    Raises
    ------
    ConfigError
        If ``out_dir`` cannot be written or is in use by another command (field ``out``;
        [`advdyn.io.folder_lock`][advdyn.io.folder_lock], held from before the first training).
    """
    if out_dir is None:
        if on_start is not None:
            on_start()
        return _run_critical(cfg, None, progress, eps, backend)
    with folder_lock(out_dir, "advdyn critical-eps"):
        if on_start is not None:
            on_start()
        return _run_critical(cfg, Path(out_dir), progress, eps, backend)


def _run_critical(cfg: CriticalConfig, out_dir: Path | None, progress: bool,
                  eps: float | None, backend: Backend | None) -> CriticalResult:
    from advdyn.adversarial.training import CompileClock
    from advdyn.workflows.progress import progress_bar

    be = jax_backend() if backend is None else backend
    start = time.perf_counter()
    clock = CompileClock().__enter__()
    data = be.data_for(cfg)
    pgd_train, pgd_eval, fgm_attack = build_attacks(cfg, data)
    ft_attack = fgm_attack if cfg.fast.attack == "fgm" else pgd_train
    base, fast_sched, fgm_sched = schedules(cfg)
    m = cfg.model
    eps_query = cfg.verdict.eps if eps is None else eps
    if isinstance(eps_query, str):  # the validator already parsed strings; keep mypy sure
        from advdyn.critical.verdict import parse_eps

        eps_query = parse_eps(eps_query)
    st = cfg.strong

    def attacks_for(d):
        def at(e):
            return strong_attacks(with_eps(pgd_eval, e), d.classes, st.steps, st.restarts,
                                  tuple(st.attacks), st.targets)
        return at

    names = attack_names(attacks_for(data)(pgd_eval.eps))

    def strong(est, d, seed):
        if not cfg.strong.enabled:
            return None
        level = est.clean_test_loss if isinstance(est, ScratchEstimate) else \
            float(est.table["clean_test_loss"].values[0])
        return strong_estimate(est, d, attacks_for(d), names, level, seed)

    seed = cfg.train.seed
    warnings: list[str] = []
    repeats: list[dict] = []
    with progress_bar("critical-eps", total_epochs(cfg), enabled=progress) as advance:
        def fresh():
            return be.model_for(cfg, data)

        scratch = from_scratch(fresh, data, cfg.scratch.eps, pgd_train, pgd_eval, base,
                               seed, advance, be.trainer)
        fast = fine_tune_estimate(scratch.clean, data, cfg.fast.eps, ft_attack, pgd_eval,
                                  fast_sched, cfg.fast.method, seed, advance,
                                  tuple(cfg.fast.refine), be.trainer)
        strong_scratch = strong(scratch, data, seed)
        strong_fast = strong(fast, data, seed)
        warnings += diagnose(scratch.table["eps"].values, scratch.table["adv_train_loss"].values,
                             scratch.clean_test_loss, scratch.eps_star, "scratch",
                             scratch.clean.history)
        repeats.append(_repeat_entry(0, cfg, scratch.clean, fast, strong_fast, warnings))
        for r in range(1, cfg.verdict.repeats):
            cr = repeat_config(cfg, r)
            dr = be.data_for(cr)
            clean_r = be.trainer(be.model_for(cr, dr), dr, None, None, base, cr.train.seed,
                                 advance)
            fast_r = fine_tune_estimate(clean_r, dr, cfg.fast.eps, ft_attack, pgd_eval,
                                        fast_sched, cfg.fast.method, cr.train.seed, advance,
                                        tuple(cfg.fast.refine), be.trainer)
            repeats.append(_repeat_entry(r, cr, clean_r, fast_r, strong(fast_r, dr, r),
                                         warnings))
        fgm = None
        if cfg.fgm.enabled:
            fgm = catastrophic_overfitting(fresh, data, cfg.fgm.eps, fgm_attack, pgd_eval,
                                           fgm_sched, cfg.fgm.threshold, seed, advance,
                                           be.trainer)
    warnings = list(dict.fromkeys(warnings))  # each warning once, in order
    use = "strong" if cfg.verdict.attack == "strong" and cfg.strong.enabled else "pgd"
    values = [rp[f"eps_star_{use}"] for rp in repeats]
    pixel = 255.0 if data.domain == (0.0, 1.0) else None
    judged = verdict(eps_query if eps_query is not None else 0.0,
                     [np.nan if v is None else v for v in values], cfg.verdict.level,
                     pixel, warnings)
    warnings = list(judged.warnings)  # the verdict's own notes too (e.g. no interval): all of
    # them in the JSON and printed by the command line
    clean_grads = int(scratch.table["grad_evals"].values[0])
    clean_compile = scratch.clean.compile_time
    sc_compute = scratch.wall_time - scratch.compile_time
    ft_compute = fast.wall_time - fast.compile_time
    summary = {
        "data": data.name,
        "n_train": getattr(data, "n_train", None),
        "trainer": getattr(be.trainer, "__name__", "custom"),
        "model": f"{m.kind} width {m.width} depth {m.depth}",
        "norm": cfg.attack.norm,
        "recipe": {"loss": cfg.train.loss, "optimizer": cfg.train.optimizer,
                   "fine_tune_attack": cfg.fast.attack},
        "clean_test_loss": scratch.clean_test_loss,
        "clean_train_loss": float(scratch.table["adv_train_loss"].values[0]),
        "eps_star_scratch": _num(scratch.eps_star),
        "eps_star_fast": _num(fast.eps_star),
        "eps_star_fast_linear": _num(fast.eps_star_linear),
        "eps_star_fast_isotonic": _num(fast.eps_star_isotonic),
        "fast_method": fast.method,
        "strong_evaluation": None if strong_scratch is None else {
            "attacks": names,
            "steps": cfg.strong.steps,
            "restarts": cfg.strong.restarts,
            "targets": cfg.strong.targets,
            "eps_star_scratch": _num(strong_scratch.eps_star),
            "eps_star_fast": _num(strong_fast.eps_star) if strong_fast else None,
            "timing": _timing(strong_scratch.wall_time + (strong_fast.wall_time
                                                          if strong_fast else 0.0),
                              strong_scratch.compile_time + (strong_fast.compile_time
                                                             if strong_fast else 0.0)),
        },
        "relative_difference": _num(abs(fast.eps_star - scratch.eps_star) / scratch.eps_star)
        if np.isfinite(scratch.eps_star) and scratch.eps_star > 0 else None,
        "repeats": repeats,
        "eps_star": {
            "evaluation": use,
            "estimator": "fine-tune (Algorithm A.1) per repeat",
            "mean": _num(judged.eps_star),
            "lower": _num(judged.lower),
            "upper": _num(judged.upper),
            "ci_mean_lower": _num(judged.ci_lower),
            "ci_mean_upper": _num(judged.ci_upper),
            "level": judged.level,
            "method": judged.method,
            "pixel_units": None if pixel is None else {
                k: judged.in_pixels(v) for k, v in (("mean", judged.eps_star),
                                                    ("lower", judged.lower),
                                                    ("upper", judged.upper))},
        },
        "verdict": judged.to_dict() if eps_query is not None else None,
        "warnings": warnings,
        "compute": {
            "scratch_grad_evals": scratch.grad_evals,
            "scratch_wall_time_s": scratch.wall_time,
            "scratch_timing": _timing(scratch.wall_time, scratch.compile_time),
            "clean_grad_evals": clean_grads,
            "clean_timing": _timing(scratch.clean.wall_time, clean_compile),
            "fast_grad_evals": fast.grad_evals,
            "fast_wall_time_s": fast.wall_time,
            "fast_timing": _timing(fast.wall_time, fast.compile_time),
            "fast_over_scratch_grad_evals": fast.grad_evals / scratch.grad_evals,
            "fast_plus_clean_over_scratch_grad_evals":
                (fast.grad_evals + clean_grads) / scratch.grad_evals,
            "fast_over_scratch_compute_time": ft_compute / sc_compute if sc_compute > 0
            else None,
            "note": "compute_s = wall_s - compile_s (JIT compilation measured from JAX "
                    "events); the scratch run compiles the training epoch first, so compare "
                    "compute_s, not wall_s",
        },
        "fgm": None if fgm is None else {
            "eps_unstable": _num(fgm.eps_unstable),
            "threshold": fgm.threshold,
            "grad_evals": fgm.grad_evals,
            "wall_time_s": fgm.wall_time,
            "timing": _timing(fgm.wall_time, fgm.compile_time),
        },
        "wall_time_s": time.perf_counter() - start,
        "timing": _timing(time.perf_counter() - start, clock.so_far),
        "advdyn_version": __version__,
        "config": cfg.model_dump(mode="json"),
    }
    files: dict[str, Path] = {}
    if out_dir is not None:
        out = Path(out_dir)
        files = write_results(out, scratch, fast, fgm, summary, cfg, strong_scratch,
                              strong_fast)
    return CriticalResult(scratch, fast, fgm, summary, files, strong_scratch, strong_fast,
                          tuple(repeats), judged if eps_query is not None else None,
                          tuple(warnings))


_CSV_COLUMNS = ("method", "eps", "adv_train_loss", "adv_train_acc", "adv_test_loss",
                "adv_test_acc", "clean_test_loss", "clean_test_acc", "best_epoch",
                "grad_evals", "time", "stage", "pgd_test_acc_final", "strong_adv_train_loss")


def _rows(method: str, ds: xr.Dataset):
    for i, e in enumerate(ds["eps"].values):
        row = {"method": method, "eps": float(e)}
        for c in _CSV_COLUMNS[2:]:
            row[c] = ds[c].values[i].item() if c in ds else ""
        yield row


def write_results(out: Path, scratch: ScratchEstimate, fast: FineTuneEstimate,
                  fgm: OverfittingResult | None, summary: dict,
                  cfg: CriticalConfig, strong_scratch: StrongEstimate | None = None,
                  strong_fast: StrongEstimate | None = None) -> dict[str, Path]:
    """Write ``critical_eps.{csv,nc,json,png}`` into ``out``; return their paths."""
    from advdyn.plot.critical import plot_critical
    from advdyn.plot.risk import save_figure

    out.mkdir(parents=True, exist_ok=True)
    if strong_scratch is not None:
        scratch = _with_strong(scratch, strong_scratch)
    if strong_fast is not None:
        fast = _with_strong(fast, strong_fast)
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
        "eps_star_strong_scratch": float(strong_scratch.eps_star) if strong_scratch
        else float("nan"),
        "eps_star_strong_fast": float(strong_fast.eps_star) if strong_fast else float("nan"),
        "clean_test_loss": float(scratch.clean_test_loss),
    })
    files["netcdf"] = write_netcdf(ds, out / "critical_eps.nc")
    files["json"] = write_json(summary, out / "critical_eps.json")
    judged, star = summary.get("verdict") or {}, summary.get("eps_star") or {}
    lower, upper = star.get("lower"), star.get("upper")  # None where undefined
    interval = ((float(lower), float(upper), float(star.get("level", 0.95)))
                if lower is not None and upper is not None else None)
    fig = plot_critical(scratch, fast, fgm, strong_scratch, strong_fast,
                        radius=judged.get("eps"), interval=interval)
    files["figure"] = save_figure(fig, out / "critical_eps.png")
    return files


def _with_strong(est, strong: StrongEstimate):
    import dataclasses

    table = est.table.assign(strong_adv_train_loss=("eps", strong.losses))
    return dataclasses.replace(est, table=table)
