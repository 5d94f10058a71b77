"""Benchmarks of the scale features (issue 4): spectral quadrature, sweeps, large-d SGD.

Prints, from one run on the current machine:

* ODE solve time against ``d``: per direction (``d`` up to ``--max-direct``) and with
  spectral quadrature (64 bins built from the config, no instance; ``d`` up to 10^7),
  after compilation (target: binned time flat in ``d``);
* binned accuracy against the number of bins: largest relative gap of ``adv_risk`` over
  time to the per-direction ODE of the same realised instance at ``d = 10^4``;
* sweep throughput: a 100-point ODE sweep (``examples/sweeps/epsilon_gamma.toml``,
  64 bins, ``d = 10^6``) on a LocalCluster of 1 and 2 worker processes, wall time including the
  cluster start and each worker's compilation (target: < 60 s with 2 workers);
* SGD throughput at ``d = 10^5`` (float32, 4 replicates) and the ratio to the time of
  drawing the same Gaussian samples (``bench_core.bench_sgd``).

Usage::

    python benchmarks/bench_scale.py [--repeats 3] [--max-direct 1000000] [--skip-sweep]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import advdyn as ad
from advdyn.config.schema import ProblemConfig
from advdyn.io import to_dataset
from advdyn.theory import spectral as S

sys.path.insert(0, str(Path(__file__).parent))
from bench_core import _median_time, bench_sgd

ROOT = Path(__file__).resolve().parents[1]
LR = ad.Constant(jnp.asarray(0.8, jnp.float64))
TIMES = np.linspace(0, 10, 101)


def _problem(d: int, spectrum=None) -> ProblemConfig:
    spectrum = spectrum or {"kind": "uniform", "low": 0.2, "high": 1.8}
    return ProblemConfig(d=d, spectrum=spectrum, task={"kind": "regression", "noise": 0.3},
                         epsilon=0.5)


def bench_ode_direct(d: int, repeats: int) -> float:
    from advdyn.theory.stationary import adversarial_optimum

    inst = ad.instantiate(_problem(d))
    opt = adversarial_optimum(inst)
    return _median_time(
        lambda: to_dataset(ad.solve_ode(inst, LR, TIMES, rtol=1e-6, optimum=opt)), repeats
    )


def bench_ode_binned(d: int, repeats: int, bins: int = 64) -> tuple[float, float]:
    start = time.perf_counter()
    binned = S.binned_from_config(_problem(d), bins)
    build = time.perf_counter() - start
    from advdyn.theory.stationary import adversarial_optimum

    opt = adversarial_optimum(binned)
    solve = _median_time(
        lambda: to_dataset(ad.solve_ode(binned, LR, TIMES, rtol=1e-6, optimum=opt)), repeats
    )
    return build, solve


def bins_accuracy(spectrum: dict, bins_list) -> list[tuple[int, int, float]]:
    inst = ad.instantiate(_problem(10_000, spectrum))
    ref = to_dataset(ad.solve_ode(inst, LR, TIMES))
    out = []
    for b in bins_list:
        binned = S.bin_instance(inst, b)
        ds = to_dataset(ad.solve_ode(binned, LR, TIMES))
        out.append((b, binned.n_bins, S.adv_risk_change(ref, ds)))
    return out


def bench_sweep(workers: int) -> tuple[float, dict]:
    from advdyn.workflows.sweep import load_sweep, run_sweep

    spec = load_sweep(ROOT / "examples" / "sweeps" / "epsilon_gamma.toml")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        res = run_sweep(spec, Path(tmp) / "out", workers=workers)
        return time.perf_counter() - start, res.summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-direct", type=int, default=10**6)
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args()
    print(f"advdyn {ad.__version__}, jax {jax.__version__}, {jax.devices()[0].platform}, "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")

    print("\nODE solve time vs d (uniform spectrum, Tsit5 rtol 1e-6, t in [0, 10], 101 times)")
    print(f"{'d':>9} {'per-direction s':>16} {'binned build s':>15} {'binned solve s':>15}")
    for d in (10**3, 10**4, 10**5, 10**6, 10**7):
        direct = bench_ode_direct(d, args.repeats) if d <= args.max_direct else float("nan")
        build, solve = bench_ode_binned(d, args.repeats)
        print(f"{d:>9} {direct:>16.4f} {build:>15.4f} {solve:>15.4f}")

    print("\nBinned accuracy vs bins at d = 10^4 (max relative gap of adv_risk over t <= 10)")
    for name, spectrum in (
        ("uniform", {"kind": "uniform", "low": 0.2, "high": 1.8}),
        ("power_law", {"kind": "power_law", "exponent": 1.0}),
        ("marchenko_pastur", {"kind": "marchenko_pastur", "aspect_ratio": 0.5}),
    ):
        rows = bins_accuracy(spectrum, (8, 16, 32, 64, 128, 256, 512))
        print(f"  {name:<17}" + "  ".join(f"{b}:{e:.1e}" for b, _, e in rows))

    if not args.skip_sweep:
        print("\nSweep: 100-point ODE sweep (64 bins, d = 10^6), LocalCluster")
        print(f"{'workers':>8} {'wall s':>8} {'points/s':>9} {'done':>5} {'failed':>7}")
        for w in (1, 2):
            wall, summary = bench_sweep(w)
            print(f"{w:>8} {wall:>8.1f} {summary['points'] / wall:>9.2f} "
                  f"{summary['done']:>5} {summary['failed']:>7}")

    print("\nSGD at d = 10^5 (float32, 4 replicates, t = 0.1)")
    r = bench_sgd(10**5, 4, 0.1, max(1, args.repeats - 2))
    print(f"{'d':>7} {'steps':>7} {'sim s':>8} {'draw s':>8} {'steps/s':>9} {'sim/draw':>9}")
    print(f"{r['d']:>7} {r['steps']:>7} {r['sim_s']:>8.3f} {r['draw_s']:>8.3f} "
          f"{r['steps_per_s']:>9.0f} {r['ratio']:>9.2f}")


if __name__ == "__main__":
    main()
