"""A data problem's cost (issue 28): building the Gaussian-mixture surrogate and solving its ODE,
against one pass of SGD over the data's rows.

Gaussian rows (a random eigenbasis, a uniform spectrum) written to a ``.npy`` pair, then, each
timed after a warm-up of its compiled parts on a small problem of the same kind:

* **surrogate**: read, check, standardise, moments, the dense ``d x d`` eigendecomposition,
  the rows rotated into the eigenbasis and the diagnostics (`advdyn.data_problem`);
* **ODE**: `advdyn.solve_ode` per direction on 21 records up to ``t_max = 1``;
* **one pass**: `advdyn.simulate_data_sgd`, one replicate, ``n`` steps (``t_max = n / d``).

Usage::

    python benchmarks/bench_data_surrogate.py                      # n = 20000, d = 1000
    python benchmarks/bench_data_surrogate.py --n 100000 --d 4000  # the issue's size
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def write(folder: Path, n: int, d: int) -> Path:
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
    X = (rng.standard_normal((n, d)) * np.sqrt(np.linspace(0.3, 1.7, d))) @ basis.T
    y = X @ (rng.standard_normal(d) / np.sqrt(d)) + 0.3 * rng.standard_normal(n)
    np.save(folder / f"X{n}_{d}.npy", X)
    np.save(folder / f"y{n}_{d}.npy", y)
    return folder / f"X{n}_{d}.npy"


def measure(folder: Path, n: int, d: int) -> dict[str, float]:
    import advdyn as ad

    path = write(folder, n, d)
    cfg = ad.validate_config({"problem": {"loss": "least_squares", "epsilon": 0.3, "data": {
        "path": str(path), "target": str(folder / f"y{n}_{d}.npy"), "task": "regression"}}})
    start = time.perf_counter()
    dp = ad.data_problem(cfg.problem)
    surrogate = time.perf_counter() - start
    lr = ad.Constant(0.5)
    start = time.perf_counter()
    ad.solve_ode(dp.instance, lr, np.linspace(0.0, 1.0, 21))
    ode = time.perf_counter() - start
    start = time.perf_counter()
    ad.simulate_data_sgd(dp.instance, dp.rows, dp.targets, lr, ad.stream_key(0), t_max=n / d,
                         n_times=2, replicates=1, block_size=64)
    one_pass = time.perf_counter() - start
    return {"surrogate": surrogate, "ode": ode, "one_pass": one_pass}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--d", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        measure(folder, 2 * 64, 64)  # compiles what does not depend on the size
        measure(folder, args.n, args.d)  # compiles the solvers at this size
        t = measure(folder, args.n, args.d)
    print(f"n = {args.n}, d = {args.d}: surrogate {t['surrogate']:.2f} s, ODE {t['ode']:.2f} s "
          f"(together {t['surrogate'] + t['ode']:.2f} s); one pass of SGD over the rows "
          f"({args.n} steps) {t['one_pass']:.2f} s")


if __name__ == "__main__":
    main()
