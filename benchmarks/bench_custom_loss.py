"""ODE cost of a custom (non-smooth) loss against the built-in least squares (issue 13).

The README's problem (uniform spectrum on [0.2, 1.8], label noise 0.3, eps = 0.5,
gamma = 0.8) at d = 1000, t in [0, 3] (61 records), solved by :func:`advdyn.solve_ode`
with its default tolerances (rtol 1e-8):

* built-in least squares (closed-form expectations);
* the README's Huber loss as a :class:`advdyn.CustomLoss` with its kinks declared
  (``kinks=(-1, 1)``) and without;
* SGD with the Huber loss (4 replicates, float64), and the largest relative gap of its
  replicate mean to the ODE.

Prints compile time (first call minus second) apart from run time (median of repeats).

Usage::

    python benchmarks/bench_custom_loss.py [--d 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import advdyn as ad
from advdyn.config.schema import ProblemConfig


def huber(r, y):
    """The README's Huber loss of width 1."""
    u = jnp.abs(r - y)
    return jnp.where(u < 1, 0.5 * u**2, u - 0.5)


def _timed(fn, repeats: int) -> tuple[float, float, object]:
    start = time.perf_counter()
    out = fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    run = statistics.median(times)
    return max(first - run, 0.0), run, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, jax {jax.__version__}, "
          f"devices {jax.devices()}")
    cfg = ProblemConfig(d=args.d, spectrum={"kind": "uniform", "low": 0.2, "high": 1.8},
                        task={"kind": "regression", "noise": 0.3}, epsilon=0.5)
    lr = ad.Constant(0.8)
    times = ad.time_grid(args.d, 3.0, 61, 64).times
    losses = {
        "least squares (built-in)": None,
        "Huber, CustomLoss(kinks=(-1, 1))": ad.CustomLoss(fn=huber, kinks=(-1.0, 1.0)),
        "Huber, CustomLoss (no kinks)": ad.CustomLoss(fn=huber),
    }
    results, run_times = {}, {}
    for name, loss in losses.items():
        inst = ad.instantiate(cfg, loss=loss)
        compile_s, run_s, sol = _timed(lambda inst=inst: ad.solve_ode(inst, lr, times),
                                       args.repeats)
        results[name] = sol
        run_times[name] = run_s
        print(f"ODE {name:36s} d = {args.d}: compile {compile_s:6.2f} s, run {run_s:6.2f} s")
    inst = ad.instantiate(cfg, loss=losses["Huber, CustomLoss(kinks=(-1, 1))"])
    start = time.perf_counter()
    sgd = ad.simulate_sgd(inst, lr, ad.stream_key(0), t_max=3.0, n_times=61, replicates=4,
                          dtype="float64")
    sgd_s = time.perf_counter() - start
    ode = results["Huber, CustomLoss(kinks=(-1, 1))"]
    mean = np.asarray(sgd.ys["adv_risk"]).mean(axis=0)
    gap = np.max(np.abs(mean / np.asarray(ode.ys["adv_risk"]) - 1))
    print(f"SGD Huber d = {args.d}, 4 replicates (incl. compile): {sgd_s:.2f} s; "
          f"max relative gap of the mean to the ODE: {gap:.3%} (d^-1/2 = {args.d ** -0.5:.3%})")
    base = run_times["least squares (built-in)"]
    for name, t in run_times.items():
        print(f"run time / least squares: {name}: {t / base:.1f}x")
    other = results["Huber, CustomLoss (no kinks)"]
    diff = np.max(np.abs(np.asarray(other.ys["adv_risk"]) / np.asarray(ode.ys["adv_risk"]) - 1))
    print(f"Huber ODE without vs with kinks: max relative difference {diff:.2e}")


if __name__ == "__main__":
    main()
