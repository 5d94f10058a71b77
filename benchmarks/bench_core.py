"""Benchmarks of the core engine (issue: core engine).

Prints, from one run on the current machine:

* SGD throughput (steps per second, all replicates) for d in {500, 4000}, and the ratio of
  the simulator's time to the time jax.random takes to draw the same number of Gaussian
  samples in the same block layout (target: <= 1.5 at d = 4000);
* homogenized SGD (the SDE) throughput at d = 4000 and its time relative to SGD on the
  same problem, grid and replicates;
* ODE solve time for d in {1000, 10000} directions, t up to 10, rtol = 1e-6, after
  compilation (target: < 1 s at d = 10000).

Usage::

    python benchmarks/bench_core.py [--repeats 3]

Timings are medians over ``--repeats`` runs after one warm-up (compilation) run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import advdyn as ad
from advdyn.config.schema import ProblemConfig
from advdyn.io import to_dataset


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up: compilation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _problem(d: int) -> ad.ProblemInstance:
    cfg = ProblemConfig(d=d, spectrum={"kind": "uniform", "low": 0.2, "high": 1.8},
                        task={"kind": "regression", "noise": 0.3}, epsilon=0.5)
    return ad.instantiate(cfg)


def bench_sgd(d: int, replicates: int, t_max: float, repeats: int) -> dict:
    inst = _problem(d)
    lr = ad.Constant(0.8)
    key = ad.stream_key(0)
    n_times = 11

    def simulate():
        return to_dataset(ad.simulate_sgd(inst, lr, key, t_max=t_max, n_times=n_times,
                               replicates=replicates, dtype="float32"))

    ds = simulate()
    steps, block = ds.attrs["steps"], ds.attrs["block"]
    sim = _median_time(simulate, repeats)

    @jax.jit
    def draw_all_jit():
        # the same number of N(0,1) float32 samples in the simulator's block layout, in one
        # compiled scan (no per-call overhead), summed so that nothing is optimised away
        def body(acc, b):
            def one(r):
                k = jax.random.fold_in(jax.random.fold_in(key, r), b)
                return jax.random.normal(k, (block, d), jnp.float32).sum()
            return acc + jax.vmap(one)(jnp.arange(replicates)).sum(), None
        return jax.lax.scan(body, jnp.float32(0), jnp.arange(steps // block))[0]

    def draw_all():
        draw_all_jit().block_until_ready()

    ref = _median_time(draw_all, repeats)
    return {"d": d, "replicates": replicates, "steps": steps, "sim_s": sim, "draw_s": ref,
            "steps_per_s": steps / sim, "ratio": sim / ref}


def bench_hsgd(d: int, replicates: int, t_max: float, repeats: int) -> dict:
    """Homogenized SGD against SGD on the same problem, grid and replicates (one run)."""
    inst = _problem(d)
    lr = ad.Constant(0.8)
    key = ad.stream_key(0)
    kw = {"t_max": t_max, "n_times": 11, "replicates": replicates, "dtype": "float32"}
    sim_sgd = _median_time(lambda: to_dataset(ad.simulate_sgd(inst, lr, key, **kw)), repeats)
    sim_hsgd = _median_time(lambda: to_dataset(ad.simulate_hsgd(inst, lr, key, **kw)), repeats)
    steps = to_dataset(ad.simulate_hsgd(inst, lr, key, **kw)).attrs["steps"]
    return {"d": d, "steps": steps, "sgd_s": sim_sgd, "hsgd_s": sim_hsgd,
            "steps_per_s": steps / sim_hsgd, "ratio": sim_hsgd / sim_sgd}


def bench_ode(d: int, repeats: int) -> dict:
    inst = _problem(d)
    times = np.linspace(0, 10, 101)
    solve = lambda: to_dataset(ad.solve_ode(inst, ad.Constant(0.8), times, rtol=1e-6))  # noqa: E731
    start = time.perf_counter()
    solve()
    first = time.perf_counter() - start
    return {"d": d, "first_call_s": first, "solve_s": _median_time(solve, repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"advdyn {ad.__version__}, jax {jax.__version__}, {jax.devices()[0].platform}, "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print("\nSGD (float32, 4 replicates, adversarial least squares)")
    print(f"{'d':>6} {'steps':>7} {'sim s':>8} {'draw s':>8} {'steps/s':>9} {'sim/draw':>9}")
    for d, t_max in ((500, 20.0), (4000, 3.0)):
        r = bench_sgd(d, 4, t_max, args.repeats)
        print(f"{r['d']:>6} {r['steps']:>7} {r['sim_s']:>8.3f} {r['draw_s']:>8.3f} "
              f"{r['steps_per_s']:>9.0f} {r['ratio']:>9.2f}")
    print("\nHomogenized SGD (Euler-Maruyama, dt = 1/d, float32, 4 replicates) vs SGD")
    print(f"{'d':>6} {'steps':>7} {'hsgd s':>8} {'sgd s':>8} {'steps/s':>9} {'hsgd/sgd':>9}")
    r = bench_hsgd(4000, 4, 3.0, args.repeats)
    print(f"{r['d']:>6} {r['steps']:>7} {r['hsgd_s']:>8.3f} {r['sgd_s']:>8.3f} "
          f"{r['steps_per_s']:>9.0f} {r['ratio']:>9.2f}")
    print("\nODE (float64, Tsit5, rtol 1e-6, t in [0, 10], 101 saved times)")
    print(f"{'d':>6} {'first call s':>13} {'solve s':>9}")
    for d in (1000, 10000):
        r = bench_ode(d, args.repeats)
        print(f"{r['d']:>6} {r['first_call_s']:>13.2f} {r['solve_s']:>9.4f}")


if __name__ == "__main__":
    main()
