"""A data problem's cost (issue 28): building the Gaussian-mixture surrogate and solving its ODE,
against one pass of SGD over the data's rows, measured in the same process.

Gaussian rows (a random eigenbasis, a uniform spectrum on ``[0.3, 1.7]``, a linear teacher with
noise 0.3) are written to a ``.npy`` pair in row chunks, then:

* **surrogate**: `advdyn.data_problem` on the file (read, check, standardise, the
  spectrum on the path ``[problem.data] spectrum`` chooses -- dense ``eigh`` up to ``d = 2000``,
  else the binned block-Lanczos quadrature -- the rows in the basis ``data_sgd`` samples, and
  the diagnostics), with its stages timed by wrappers around the functions it calls: "read"
  (`advdyn.config.build.load_data`: reading, checks and standardisation), "spectrum"
  (`spectral_statistics` or `mixture_statistics`) and "diagnostics"
  (`surrogate_diagnostics`);
* **ODE**: `advdyn.solve_ode` on the surrogate, 21 records up to ``t_max = 1``;
* **one pass**: `advdyn.simulate_data_sgd` as ``advdyn run`` calls it, one replicate, ``n``
  steps (``t_max = n / d``), two records (each a pass of the measured risks over every row).

The ODE and the pass are timed after a warm-up call of the same shapes (their compilation is
excluded); the surrogate has nothing to compile. Wall and CPU time (this process's, all
threads) are printed for each, with the load average: the machine may be shared. The ratio
is printed twice: with the read (reading, checks and standardisation of the table), and
without it, since SGD on the rows needs the same standardised table (``advdyn run`` reads
it once for both). Run it as a user would, with NumPy's BLAS on every core; CPU time then
counts both cores' work and wall time what the user waits.

Usage::

    python benchmarks/bench_data_surrogate.py                      # n = 20000, d = 1000
    python benchmarks/bench_data_surrogate.py --n 100000 --d 4000  # the issue's size
    python benchmarks/bench_data_surrogate.py --n 100000 --d 4000 --steps 10 --probes 8
    python benchmarks/bench_data_surrogate.py --n 100000 --d 4000 --folder /tmp/data  # reuse

``--folder`` keeps the written data there and reuses a table of the same shape and dtype (the
table at the issue's size takes minutes to draw and rotate); ``--dtype float32`` (or
``--float32``) uses a float32 table, ``X-float32.npy``: the float64 table ``X.npy`` of the
folder rounded chunk by chunk when it has the shape, else drawn. Its rows stay float32 through
the standardisation and SGD. The peak resident memory of the process (``ru_maxrss``) is
printed after each stage.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def _table(folder: Path, n: int, d: int, dtype: str) -> np.ndarray | None:
    """The table of ``dtype`` in ``folder`` (memory-mapped) if it has shape ``(n, d)``."""
    path = folder / ("X.npy" if dtype == "float64" else f"X-{dtype}.npy")
    if path.exists() and (folder / "y.npy").exists():
        old = np.load(path, mmap_mode="r")
        if old.shape == (n, d) and old.dtype == dtype:
            return old
    return None


def write(folder: Path, n: int, d: int, dtype: str = "float64",
          chunk: int = 10_000) -> tuple[Path, Path]:
    """``X`` (``n x d``, of ``dtype``) and ``y`` written chunk by chunk (memory
    ``O(chunk d)``), unless ``folder`` holds them already (same shape and dtype); a float32
    table is the float64 one rounded when that is there."""
    path = folder / ("X.npy" if dtype == "float64" else f"X-{dtype}.npy")
    if _table(folder, n, d, dtype) is not None:
        return path, folder / "y.npy"
    wide = _table(folder, n, d, "float64")
    if wide is not None:
        X = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n, d))
        for start in range(0, n, chunk):
            X[start:start + chunk] = wide[start:start + chunk]
        X.flush()
        return path, folder / "y.npy"
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
    scale = np.sqrt(np.linspace(0.3, 1.7, d))
    teacher = rng.standard_normal(d) / np.sqrt(d)
    X = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n, d))
    y = np.empty(n)
    for start in range(0, n, chunk):
        rows = (rng.standard_normal((min(chunk, n - start), d)) * scale) @ basis.T
        X[start:start + len(rows)] = rows
        y[start:start + len(rows)] = rows @ teacher + 0.3 * rng.standard_normal(len(rows))
    X.flush()
    del X
    np.save(folder / "y.npy", y)
    return path, folder / "y.npy"


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, GB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def measure(folder: Path, n: int, d: int, data_options: dict, dtype: str) -> dict:
    import advdyn as ad

    X, y = write(folder, n, d, dtype)
    cfg = ad.validate_config({"problem": {"loss": "least_squares", "epsilon": 0.3, "data": {
        "path": str(X), "target": str(y), "task": "regression", **data_options}}})
    import advdyn.config.build as build

    stages: dict[str, list[float]] = {}

    def staged(name: str, fn):
        def wrapper(*args, **kwargs):
            out, wall, cpu = timed(lambda: fn(*args, **kwargs))
            stages[name] = [wall, cpu]
            return out
        return wrapper

    saved = {name: getattr(build, name) for name in (
        "load_data", "spectral_statistics", "mixture_statistics", "surrogate_diagnostics")}
    for name, fn in saved.items():
        setattr(build, name, staged("spectrum" if name.endswith("statistics") else
                                    {"load_data": "read"}.get(name, "diagnostics"), fn))
    rss = {"start": peak_rss_gb()}
    try:
        dp, s_wall, s_cpu = timed(lambda: ad.data_problem(cfg.problem))
    finally:
        for name, fn in saved.items():
            setattr(build, name, fn)
    rss["surrogate"] = peak_rss_gb()
    lr = ad.Constant(0.5)
    times = np.linspace(0.0, 1.0, 21)
    ad.solve_ode(dp.instance, lr, times)  # compiles
    _, o_wall, o_cpu = timed(lambda: ad.solve_ode(dp.instance, lr, times))
    rss["ode"] = peak_rss_gb()

    def one_pass(t_max: float):
        return ad.simulate_data_sgd(dp.rows_instance, dp.rows, dp.targets, lr, ad.stream_key(0),
                                    t_max=t_max, n_times=2, replicates=1, block_size=64,
                                    measured_only=dp.binned)

    one_pass(n / d)  # compiles (the stride of a record is part of the program)
    _, p_wall, p_cpu = timed(lambda: one_pass(n / d))
    rss["one_pass"] = peak_rss_gb()
    return {"path": dp.diagnostics["spectrum"], "surrogate": (s_wall, s_cpu), "rss": rss,
            "rows": str(dp.rows.dtype),
            **{f"  {k}": v for k, v in stages.items()},
            "ode": (o_wall, o_cpu), "one_pass": (p_wall, p_cpu),
            "change": _spectrum_change(cfg, dp, lr, times) if dp.binned else None}


def _spectrum_change(cfg, dp, lr, times) -> float:
    """``spectrum_rel_change`` of the surrogate as ``advdyn run`` reports it."""
    import advdyn as ad
    from advdyn.workflows.run import spectrum_change

    return spectrum_change(cfg, dp, ad.solve_ode(dp.instance, lr, times),
                           lambda inst: ad.solve_ode(inst, lr, times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--d", type=int, default=1000)
    ap.add_argument("--spectrum", default="auto", choices=["auto", "dense", "binned"])
    ap.add_argument("--probes", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--folder", type=Path, default=None)
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--float32", dest="dtype", action="store_const", const="float32",
                    help="the same as --dtype float32")
    args = ap.parse_args()
    options = {"spectrum": args.spectrum}
    if args.probes is not None:
        options["probes"] = args.probes
    if args.steps is not None:
        options["lanczos_steps"] = args.steps
    if args.folder is not None:
        args.folder.mkdir(parents=True, exist_ok=True)
        t = measure(args.folder, args.n, args.d, options, args.dtype)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            t = measure(Path(tmp), args.n, args.d, options, args.dtype)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    both = t["surrogate"][0] + t["ode"][0], t["surrogate"][1] + t["ode"][1]
    print(f"n = {args.n}, d = {args.d}, {args.dtype} table ({t['rows']} rows), spectrum: "
          f"{t['path']}; load average {load}")
    print("  peak resident memory after " + ", ".join(
        f"{k} {v:.2f} GB" for k, v in t["rss"].items()))
    for name in ("surrogate", "  read", "  spectrum", "  diagnostics", "ode", "one_pass"):
        print(f"  {name:16s} wall {t[name][0]:8.2f} s   CPU {t[name][1]:8.2f} s")
    if t["change"] is not None:
        print(f"  spectrum_rel_change {t['change']:.3g}")
    print(f"  surrogate + ODE = {both[0]:.2f} s wall ({both[1]:.2f} s CPU): "
          f"{both[0] / t['one_pass'][0]:.2f} passes of SGD (wall), "
          f"{both[1] / t['one_pass'][1]:.2f} (CPU)")
    beyond = tuple(b - r for b, r in zip(both, t["  read"], strict=True))
    print(f"  without the read that SGD on the rows needs as well: {beyond[0]:.2f} s wall "
          f"({beyond[1]:.2f} s CPU): {beyond[0] / t['one_pass'][0]:.2f} passes of SGD "
          f"(wall), {beyond[1] / t['one_pass'][1]:.2f} (CPU)")


if __name__ == "__main__":
    main()
