"""SGD: advdyn against a hand-written, vectorised numpy loop (issue 14, "SGD floor").

Prints, from one run, for d in {500, 4000, 32000} and 1 or 8 replicates (float32,
adversarial least squares, uniform spectrum on [0.2, 1.8], eps = 0.5, sigma = 0.3,
gamma = 0.8, 11 records): advdyn's compile time (first call minus second), its run time
(median of the later calls), the numpy loop's run time and the ratio advdyn / numpy
(target <= 1.0 in every row), and the memory estimate of the same run
(:func:`advdyn.workflows.memory.estimate_memory`). ``--memory-only`` prints the estimate
against XLA's buffer accounting of the same runs instead (``bench_memory.py``; the resident
set of the process is dominated by the JAX runtime and cannot measure a run).

The numpy loop is what a careful user writes: one ``Generator.standard_normal`` call per
block of 64 steps for all replicates (numpy's float32 ziggurat, single-threaded), then per
step the adversarial least-squares gradient of all replicates at once ((R, d) arrays), and
the same population risk every record. advdyn is run as the CLI runs it, with one XLA CPU
device per core (set below before JAX is imported).

Usage::

    python benchmarks/bench_sgd_numpy.py [--repeats 3] [--memory-only]
"""

from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_"
                               f"device_count={max(1, min(os.cpu_count() or 1, 8))}").strip()

import argparse
import statistics
import time

import numpy as np

SIZES = ((500, 20.0), (4000, 2.0), (32000, 0.2))  # (d, t_max): 10 000 / 8 000 / 6 400 steps
EPS, NOISE, GAMMA = 0.5, 0.3, 0.8


def _config(d: int, t_max: float, replicates: int):
    from advdyn.config.schema import default_config

    return default_config().with_overrides(**{
        "problem.d": d, "run.t_max": t_max, "run.n_times": 11, "run.replicates": replicates,
        "run.methods": ["sgd"], "run.dtype": "float32",
    })


def numpy_sgd(inst, t_max: float, replicates: int, n_times: int = 11, block: int = 64,
              seed: int = 0) -> np.ndarray:
    """Vectorised numpy SGD on the same problem: returns the final adversarial risks."""
    d = inst.d
    f32 = np.float32
    sqrt_lam = np.sqrt(np.asarray(inst.eigenvalues[0], np.float64)).astype(f32)
    mean = np.asarray(inst.means[0], f32)
    teacher = np.asarray(inst.theta_star, f32)
    lam = np.asarray(inst.eigenvalues[0], np.float64)
    eps, noise, step = f32(EPS), f32(NOISE), f32(GAMMA / d)
    theta = np.tile(np.asarray(inst.theta0, f32), (replicates, 1))
    rng = np.random.default_rng(seed)
    total = int(t_max * d)
    stride = total // (n_times - 1)
    risks = []
    for k0 in range(0, stride * (n_times - 1), block):
        nb = min(block, stride * (n_times - 1) - k0)
        z = rng.standard_normal((nb, replicates, d), dtype=f32)
        xi = rng.standard_normal((nb, replicates), dtype=f32)
        for j in range(nb):
            x = mean + sqrt_lam * z[j]
            y = x @ teacher + noise * xi[j]
            u = np.einsum("rd,rd->r", x, theta) - y
            n = np.sqrt(np.einsum("rd,rd->r", theta, theta))
            a = eps * n
            L_r = u + a * np.sign(u)
            L_a = np.abs(u) + a
            theta -= step * (L_r[:, None] * x + (eps * L_a / n)[:, None] * theta)
            if (k0 + j + 1) % stride == 0:  # record: the population adversarial risk
                e = theta.astype(np.float64) - teacher
                s = np.sqrt(e**2 @ lam + NOISE**2)
                mu = 0.0
                risks.append(0.5 * (s**2 + 2 * EPS * np.linalg.norm(theta, axis=1) * s
                                    * np.sqrt(2 / np.pi) + (EPS * np.linalg.norm(theta, axis=1))**2
                                    + mu))
    return np.asarray(risks)[-1]


def bench_row(d: int, t_max: float, replicates: int, repeats: int) -> dict:
    import advdyn as ad
    from advdyn.config.build import instantiate
    from advdyn.theory.stationary import adversarial_optimum
    from advdyn.workflows.memory import estimate_memory

    cfg = _config(d, t_max, replicates)
    inst = instantiate(cfg.problem)
    opt = adversarial_optimum(inst)
    lr = ad.Constant(GAMMA)
    key = ad.stream_key(0)

    def advdyn_run():
        return ad.simulate_sgd(inst, lr, key, t_max=t_max, n_times=11, replicates=replicates,
                               dtype="float32", optimum=opt)

    start = time.perf_counter()
    sol = advdyn_run()
    first = time.perf_counter() - start
    times, np_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        advdyn_run()
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        np_final = numpy_sgd(inst, t_max, replicates)
        np_times.append(time.perf_counter() - start)
    run = statistics.median(times)
    est = estimate_memory(cfg, available=(1 << 40, "n/a"))
    return {"d": d, "replicates": replicates, "steps": sol.stats["steps"],
            "devices": sol.stats["devices"], "compile_s": first - run, "advdyn_s": run,
            "numpy_s": statistics.median(np_times), "ratio": run / statistics.median(np_times),
            "advdyn_risk": float(np.mean(sol["adv_risk"][:, -1])),
            "numpy_risk": float(np.mean(np_final)), "estimate_mb": est.peak / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=str, default="500,4000,32000")
    parser.add_argument("--memory-only", action="store_true",
                        help="only the memory table (estimate vs measured peak)")
    args = parser.parse_args()
    if args.memory_only:
        from bench_memory import memory_table

        memory_table([int(x) for x in args.sizes.split(",")])
        return
    import jax

    import advdyn as ad

    print(f"advdyn {ad.__version__}, jax {jax.__version__}, {len(jax.devices())} CPU devices, "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    sizes = [s for s in SIZES if str(s[0]) in args.sizes.split(",")]
    print(f"{'d':>6} {'R':>2} {'steps':>6} {'dev':>3} {'compile s':>9} {'advdyn s':>9} "
          f"{'numpy s':>8} {'ratio':>6} {'risk advdyn':>11} {'risk numpy':>10} {'est MB':>7}")
    for d, t_max in sizes:
        for R in (1, 8):
            r = bench_row(d, t_max, R, args.repeats)
            line = (f"{d:>6} {R:>2} {r['steps']:>6} {r['devices']:>3} {r['compile_s']:>9.2f} "
                    f"{r['advdyn_s']:>9.3f} {r['numpy_s']:>8.3f} {r['ratio']:>6.2f} "
                    f"{r['advdyn_risk']:>11.4f} {r['numpy_risk']:>10.4f} {r['estimate_mb']:>7.1f}")
            print(line, flush=True)


if __name__ == "__main__":
    main()
