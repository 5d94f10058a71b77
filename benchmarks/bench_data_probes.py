"""Probes and Lanczos steps of a binned data spectrum (issue 28): cost and accuracy per setting.

For a ``.npy`` pair written by ``bench_data_surrogate.py --folder`` (``X.npy``, ``y.npy``;
regression): the table is read once (`advdyn.config.build.load_data`), then for each
``probes,steps`` setting `advdyn.problem.data.spectral_statistics` (timed, wall and CPU), the
benchmark's ODE (``least_squares``, ``eps = 0.3``, constant rate 0.5, 21 records to ``t = 1``)
on its quadrature and on the quadrature one step lower: ``spectrum_rel_change`` as
``advdyn run`` reports it, and the largest relative change of the final ``adv_risk``,
``clean_risk``, ``dist_to_opt`` against the first setting. ``--float32`` repeats the settings
on the standardised rows rounded to float32 (float32 products), against the float64 results.

Usage::

    python benchmarks/bench_data_surrogate.py --n 100000 --d 4000 --folder /tmp/data
    python benchmarks/bench_data_probes.py /tmp/data 16,20 8,10 16,10 8,6 4,6 4,4 --float32
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

KEYS = ("adv_risk", "clean_risk", "dist_to_opt")


def main() -> None:
    import advdyn as ad
    from advdyn.config.build import gaussian_theta0, load_data
    from advdyn.problem.data import spectral_statistics
    from advdyn.problem.losses import make_loss
    from advdyn.theory.spectral import quadrature_instance

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("settings", nargs="+", help="probes,steps")
    ap.add_argument("--float32", action="store_true")
    args = ap.parse_args()
    settings = [tuple(int(v) for v in s.split(",")) for s in args.settings]
    cfg = ad.validate_config({"problem": {"loss": "least_squares", "epsilon": 0.3, "data": {
        "path": f"{args.folder}/X.npy", "target": f"{args.folder}/y.npy",
        "task": "regression", "spectrum": "binned"}}})
    wall, cpu = time.perf_counter(), time.process_time()
    X, y = load_data(cfg.problem.data)
    print(f"read {time.perf_counter() - wall:.2f} s wall {time.process_time() - cpu:.2f} s CPU")
    theta0 = gaussian_theta0(cfg.problem.seed, float(cfg.problem.init.scale), X.shape[1])
    loss = make_loss(cfg.problem.loss)
    lr, times = ad.Constant(0.5), np.linspace(0.0, 1.0, 21)

    def finals(stats) -> dict:
        sol = ad.solve_ode(quadrature_instance(stats, loss, 0.3, 0.0), lr, times)
        return {k: float(sol.ys[k][-1]) for k in KEYS}

    def change(a: dict, b: dict) -> float:
        return max(abs(a[k] - b[k]) / abs(b[k]) for k in KEYS)

    results: dict = {}
    for rows in (X, X.astype(np.float32)) if args.float32 else (X,):
        first = None
        for k, m in settings:
            wall, cpu = time.perf_counter(), time.process_time()
            stats = spectral_statistics(rows, y, "regression", probes=k, steps=m,
                                        theta0=theta0)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            full, coarser = finals(stats), finals(stats.coarser)
            first = full if first is None else first
            line = (f"{rows.dtype} probes {k:3d} steps {m:3d}: {wall:7.2f} s wall {cpu:7.2f} s "
                    f"CPU; spectrum_rel_change {change(coarser, full):.3g}; vs first "
                    f"{change(full, first):.3g}; teacher residual {stats.residual:.2g}")
            if (k, m) in results:
                line += f"; vs float64 {change(full, results[(k, m)]):.3g}"
            results.setdefault((k, m), full)
            print(f"{line}; load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
