"""Phase diagram as one batched solve vs ``advdyn sweep`` point by point, same problem.

The problem is ``examples/sweeps/epsilon_gamma.toml``'s (adversarial least squares, uniform
spectrum on [0.2, 1.8], binned ODE with 64 bins, ``d = 10^6``, ``t_max = 10``, 61 records).
The phase diagram solves a 100 x 100 (eps x gamma) grid with ``advdyn.phase_diagram``:
compile time (tracing + XLA, once) and solve time (all chunks) are reported apart. The
sweep runs subsets of the same grid with one Dask worker; its cost per point after the
worker has compiled is the difference of two sweeps' walls over the difference of their
points (so cluster start and compilation cancel; a one-point sweep first fills JAX's
persistent compilation cache, which both then hit alike), and its cost per point including
them is the larger sweep's wall over its points. Phase solve times are also given in CPU
seconds of this process (``time.process_time``), which a loaded machine inflates less.

    cd benchmarks && python bench_phase.py [--n 100] [--small 2 --large 12]
    (--skip-phase or --skip-sweep: one side only)
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

import advdyn as ad
from advdyn.workflows.phase import phase_diagram
from advdyn.workflows.sweep import load_sweep, run_sweep, sweep_from_dict

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "sweeps" / "epsilon_gamma.toml"


def grid(n: int) -> dict[str, np.ndarray]:
    return {"problem.epsilon": np.linspace(0.0, 0.9, n), "lr.gamma": np.linspace(0.1, 1.8, n)}


def base_config():
    spec = load_sweep(EXAMPLE)
    return spec, spec.base.with_overrides(**spec.sweep.overrides)


def bench_phase(n: int) -> dict:
    _, config = base_config()
    start, cpu = time.perf_counter(), time.process_time()
    res = phase_diagram(config, grid(n))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    codes = np.asarray(res.dataset["result"])
    return {**res.timings, "wall_s": wall, "cpu_s": cpu, "converged": int(np.sum(codes == 0)),
            "chunk": int(res.dataset.attrs["chunk"])}


def bench_sweep(points: int, n: int) -> float:
    """Wall of ``advdyn sweep`` on the first ``points`` gamma values at the first eps."""
    spec, _ = base_config()
    g = grid(n)
    values = {"problem.epsilon": [float(g["problem.epsilon"][1])],
              "lr.gamma": [float(v) for v in g["lr.gamma"][:points]]}
    sweep = sweep_from_dict({"base": spec.base.model_dump(mode="json"), "kind": "run",
                             "overrides": dict(spec.sweep.overrides), "grid": values},
                            EXAMPLE.parent)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        res = run_sweep(sweep, Path(tmp) / "out", workers=1)
        wall = time.perf_counter() - start
    assert res.summary["done"] == points, res.summary
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="grid points per axis")
    parser.add_argument("--small", type=int, default=2, help="points of the small sweep")
    parser.add_argument("--large", type=int, default=12, help="points of the large sweep")
    parser.add_argument("--skip-phase", action="store_true", help="only the sweeps")
    parser.add_argument("--skip-sweep", action="store_true", help="only the phase diagram")
    args = parser.parse_args()
    print(f"advdyn {ad.__version__}, jax {jax.__version__}, {jax.devices()[0].platform}, "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    points = args.n**2
    if not args.skip_phase:
        ph = bench_phase(args.n)
        print(f"phase diagram {args.n} x {args.n}: compile {ph['compile_s']:.1f} s, solve "
              f"{ph['solve_s']:.2f} s ({ph['solve_s'] / points * 1e3:.3f} ms a point; chunk "
              f"{ph['chunk']}), {ph['converged']} of {points} converged; this process's "
              f"CPU {ph['cpu_s']:.1f} s for compile + solve, wall {ph['wall_s']:.1f} s")
    if args.skip_sweep:
        return
    bench_sweep(1, args.n)  # fills the persistent compilation cache
    small = bench_sweep(args.small, args.n)
    large = bench_sweep(args.large, args.n)
    steady = (large - small) / (args.large - args.small)
    print(f"sweep, 1 worker: {args.small} points {small:.1f} s, {args.large} points "
          f"{large:.1f} s -> {steady:.3f} s a point after compiling, "
          f"{large / args.large:.2f} s a point with it")
    if not args.skip_phase:
        per = ph["solve_s"] / points
        print(f"per point: sweep / phase = {steady / per:.0f}x (after compiling), "
              f"{(large / args.large) / ((ph['solve_s'] + ph['compile_s']) / points):.0f}x"
              " (each with its compilation)")
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
