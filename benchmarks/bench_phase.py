"""Phase diagram as one batched solve vs ``advdyn sweep`` point by point, same problem.

The problem is ``examples/sweeps/epsilon_gamma.toml``'s (adversarial least squares, uniform
spectrum on [0.2, 1.8], binned ODE with 64 bins, ``d = 10^6``, ``t_max = 10``) with 61
records (``run.n_times = 61`` on both sides). The phase diagram solves a 100 x 100
(eps x gamma) grid with ``advdyn.phase_diagram`` on one XLA CPU device per core, as the
command line sets them up: compile time (tracing + XLA, once) and solve time (all calls)
are reported apart, the solve also in this process's CPU seconds (``time.process_time``,
all threads), which a loaded machine inflates less than the wall. The
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
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from advdyn.cli import xla_flags  # (imports no JAX)

if "jax" not in sys.modules:
    # each side runs with the XLA_FLAGS its command sets (advdyn.cli.xla_flags) from those
    # this process was given: the phase diagram here, ``advdyn phase``'s
    os.environ["ADVDYN_BENCH_GIVEN_XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = xla_flags("phase", os.environ["ADVDYN_BENCH_GIVEN_XLA_FLAGS"])

import jax
import numpy as np

import advdyn as ad
from advdyn.workflows.phase import phase_diagram
from advdyn.workflows.sweep import load_sweep, run_sweep, sweep_from_dict

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "sweeps" / "epsilon_gamma.toml"
RECORDS = {"run.n_times": 61}  # the 61 records, on both sides


def grid(n: int) -> dict[str, np.ndarray]:
    return {"problem.epsilon": np.linspace(0.0, 0.9, n), "lr.gamma": np.linspace(0.1, 1.8, n)}


def base_config():
    spec = load_sweep(EXAMPLE)
    return spec, spec.base.with_overrides(**spec.sweep.overrides, **RECORDS)


def bench_phase(n: int) -> dict:
    _, config = base_config()
    start, cpu = time.perf_counter(), time.process_time()
    res = phase_diagram(config, grid(n))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    codes = np.asarray(res.dataset["result"])
    attrs = res.dataset.attrs
    return {**res.timings, "wall_s": wall, "cpu_s": cpu, "converged": int(np.sum(codes == 0)),
            "chunk": int(attrs["chunk"]), "batch": int(attrs["batch"]),
            "devices": int(attrs["devices"]), "solver": attrs["solver"],
            "steps": float(np.mean(res.dataset["steps"]))}


def bench_sweep(points: int, n: int) -> tuple[float, list[float]]:
    """Wall of ``advdyn sweep`` on the first ``points`` gamma values at the second eps, and
    each point's seconds in its worker (``points/<id>.json``)."""
    spec, _ = base_config()
    g = grid(n)
    values = {"problem.epsilon": [float(g["problem.epsilon"][1])],
              "lr.gamma": [float(v) for v in g["lr.gamma"][:points]]}
    sweep = sweep_from_dict({"base": spec.base.model_dump(mode="json"), "kind": "run",
                             "overrides": {**spec.sweep.overrides, **RECORDS}, "grid": values},
                            EXAMPLE.parent)
    phase_flags = os.environ["XLA_FLAGS"]
    # the worker processes inherit the environment: ``advdyn sweep``'s flags
    os.environ["XLA_FLAGS"] = xla_flags("sweep", os.environ.get("ADVDYN_BENCH_GIVEN_XLA_FLAGS", ""))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            res = run_sweep(sweep, Path(tmp) / "out", workers=1)
            wall = time.perf_counter() - start
            per_point = [json.loads(f.read_text())["wall_time_s"]
                         for f in (Path(tmp) / "out" / "points").glob("*.json")]
    finally:
        os.environ["XLA_FLAGS"] = phase_flags
    assert res.summary["done"] == points, res.summary
    return wall, per_point


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="grid points per axis")
    parser.add_argument("--small", type=int, default=2, help="points of the small sweep")
    parser.add_argument("--large", type=int, default=32, help="points of the large sweep")
    parser.add_argument("--skip-phase", action="store_true", help="only the sweeps")
    parser.add_argument("--skip-sweep", action="store_true", help="only the phase diagram")
    args = parser.parse_args()
    print(f"advdyn {ad.__version__}, jax {jax.__version__}, {jax.devices()[0].platform}, "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    points = args.n**2
    if not args.skip_phase:
        ph = bench_phase(args.n)
        print(f"phase diagram {args.n} x {args.n} ({ph['solver']}, {ph['devices']} devices, "
              f"batches of {ph['batch']}, calls of {ph['chunk']}): compile "
              f"{ph['compile_s']:.1f} s, solve {ph['solve_s']:.2f} s wall "
              f"({ph['solve_s'] / points * 1e3:.3f} ms a point; the optimum "
              f"{ph['optimum_s']:.1f} s of compile + solve), ODE solve "
              f"{ph['solve_cpu_s']:.2f} s CPU of this process "
              f"({ph['solve_cpu_s'] / points * 1e3:.3f} ms a point), {ph['steps']:.0f} steps a "
              f"point on average; {ph['converged']} of {points} converged; whole call "
              f"{ph['wall_s']:.1f} s wall, {ph['cpu_s']:.1f} s CPU; load average "
              f"{os.getloadavg()[0]:.1f}")
    if args.skip_sweep:
        return
    bench_sweep(1, args.n)  # fills the persistent compilation cache
    small, _ = bench_sweep(args.small, args.n)
    large, in_worker = bench_sweep(args.large, args.n)
    steady = (large - small) / (args.large - args.small)
    # a point's own seconds in its worker, the first (which compiles) left out: a lower
    # bound on the marginal point (no scheduling, no result file), less noisy under load
    worker = float(np.median(sorted(in_worker)[:-1])) if len(in_worker) > 1 else float("nan")
    print(f"sweep, 1 worker: {args.small} points {small:.1f} s, {args.large} points "
          f"{large:.1f} s -> {steady:.3f} s a point after compiling (difference of walls), "
          f"median {worker:.3f} s a point in the worker; {large / args.large:.2f} s a point "
          "with cluster start and compilation")
    if not args.skip_phase:
        per = ph["solve_s"] / points
        print(f"per point: sweep / phase = {steady / per:.0f}x (after compiling: difference "
              f"of walls), {worker / per:.0f}x (the worker's median point), "
              f"{(large / args.large) / ((ph['solve_s'] + ph['compile_s']) / points):.0f}x"
              " (each with its compilation)")
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
