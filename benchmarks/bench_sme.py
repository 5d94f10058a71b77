"""SME solver vs SGD on the same problem; weak error reached per second for orders 1 and 2.

Problem: adversarial least squares, d = 2 (spectrum {0.5, 2}), theta* = (1, -0.5),
theta_0 = (0, 0.5), sigma = 0.5, eps = 0.3, eta = 0.05, horizon tau = 2.

1. Throughput: replicates per second of SGD itself and of the order-1/order-2 SMEs (Euler at
   dt = eta, and the extrapolated weak-order-2 scheme at dt = eta/2), 4,000 replicates batched;
   compile time (first call) reported apart from the run time (median of ``--repeats``).
2. Weak error per second: clean least squares (SME 3 check 1: d = 3, exact moments, no
   Monte Carlo), the weak error of each order at eta from 0.05 down, against the
   wall time of an SGD run of the same eta (``--replicates`` replicates). The SME of
   order 2 reaches a given weak error at a larger eta, hence with fewer steps.

    python benchmarks/bench_sme.py [--replicates 4000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from advdyn.precision import x64
from advdyn.sme import (
    SME,
    GaussianLeastSquares,
    simulate_objective_sgd,
    solve_sme,
    weak_error_study,
)


def _timed(fn, repeats):
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return first, statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    eta, t_max, m = 0.05, 2.0, args.replicates
    with x64():
        ob = GaussianLeastSquares(jnp.array([0.5, 2.0]), jnp.array([1.0, -0.5]), 0.5, 0.3)
        th0 = jnp.array([0.0, 0.5])
        key = jax.random.key(0)
        cases = {
            "SGD": lambda: simulate_objective_sgd(ob, eta, th0, key, t_max=t_max, n_times=5,
                                                  replicates=m),
            "SME1 euler dt=eta": lambda: solve_sme(SME(ob, eta, 1), th0, key, t_max=t_max,
                                                   dt=eta, n_times=5, replicates=m),
            "SME2 euler dt=eta": lambda: solve_sme(SME(ob, eta, 2), th0, key, t_max=t_max,
                                                   dt=eta, n_times=5, replicates=m),
            "SME1 extrapolated dt=eta/2": lambda: solve_sme(
                SME(ob, eta, 1), th0, key, t_max=t_max, dt=eta / 2, n_times=5, replicates=m,
                scheme="extrapolated"),
            "SME2 extrapolated dt=eta/2": lambda: solve_sme(
                SME(ob, eta, 2), th0, key, t_max=t_max, dt=eta / 2, n_times=5, replicates=m,
                scheme="extrapolated"),
        }
        print(f"throughput: d = 2, eta = {eta}, tau = {t_max} ({int(t_max / eta)} SGD steps), "
              f"{m} replicates")
        print("| solver | compile+first s | run s | replicates/s | run / SGD run |")
        print("| --- | ---: | ---: | ---: | ---: |")
        base = None
        for name, fn in cases.items():
            first, run = _timed(fn, args.repeats)
            base = base or run
            print(f"| {name} | {first:.2f} | {run:.3f} | {m / run:,.0f} | {run / base:.1f} |")

        etas = 0.1 / 2.0 ** np.arange(6)
        study = weak_error_study([0.5, 1.0, 2.0], 0.5, [1.0, -1.0, 0.5], etas, 2.0)
        obc = GaussianLeastSquares(jnp.array([0.5, 1.0, 2.0]), jnp.zeros(3), 0.5, 0.0)
        d0 = jnp.array([1.0, -1.0, 0.5])
        print(f"\nweak error (exact moments, check-1 problem) vs compute for {m} replicates")
        print("| eta | SGD steps | SGD run s | SME1 run s (euler, dt=eta) | weak error order 1 |"
              " SME2 run s (extrapolated, dt=eta/2) | weak error order 2 |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for eta_i, e1, e2 in zip(etas, study["order1"], study["order2"], strict=True):
            e = float(eta_i)
            _, run = _timed(lambda e=e: simulate_objective_sgd(obc, e, d0, key, t_max=2.0,
                                                               n_times=2, replicates=m), 1)
            _, r1 = _timed(lambda e=e: solve_sme(SME(obc, e, 1), d0, key, t_max=2.0, dt=e,
                                             n_times=2, replicates=m), 1)
            _, r2 = _timed(lambda e=e: solve_sme(SME(obc, e, 2), d0, key, t_max=2.0, dt=e / 2,
                                             n_times=2, replicates=m, scheme="extrapolated"), 1)
            print(f"| {e:.5f} | {round(2.0 / e)} | {run:.3f} | {r1:.3f} | {e1:.2e} | "
                  f"{r2:.3f} | {e2:.2e} |")


if __name__ == "__main__":
    main()
