"""SGD: advdyn against a hand-written, vectorised numpy loop (issue 14, "SGD floor").

Prints, from one run, for d in {500, 4000, 32000} and 1 or 8 replicates (float32,
adversarial least squares, uniform spectrum on [0.2, 1.8], eps = 0.5, sigma = 0.3,
gamma = 0.8, 11 records): advdyn's compile time (first call minus second), its run time
(median of the later calls), the numpy loop's run time and the ratio advdyn / numpy
(target <= 1.0 in every row), and the memory estimate of the same run
(:func:`advdyn.workflows.memory.estimate_memory`) against the peak resident memory measured
in a fresh subprocess (``--memory``): the increase of the resident set during a second,
compiled run (Linux ``/proc/self/clear_refs`` resets the high-water mark after the first).

The numpy loop is what a careful user writes: one ``Generator.standard_normal`` call per
block of 64 steps for all replicates (numpy's float32 ziggurat, single-threaded), then per
step the adversarial least-squares gradient of all replicates at once ((R, d) arrays), and
the same population risk every record. advdyn is run as the CLI runs it, with one XLA CPU
device per core (set below before JAX is imported).

Usage::

    python benchmarks/bench_sgd_numpy.py [--repeats 3] [--memory]
"""

from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_"
                               f"device_count={max(1, min(os.cpu_count() or 1, 8))}").strip()

import argparse
import json
import statistics
import subprocess
import sys
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


_PEAK_SNIPPET = """
import json, sys
import bench_sgd_numpy as b
import advdyn as ad
from advdyn.config.build import instantiate
from advdyn.theory.stationary import adversarial_optimum
d, t_max, R = {d}, {t_max}, {R}
cfg = b._config(d, t_max, R)
inst = instantiate(cfg.problem); opt = adversarial_optimum(inst)
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) * 1024 / 1e6
def sim():
    ad.simulate_sgd(inst, ad.Constant(b.GAMMA), ad.stream_key(0), t_max=t_max, n_times=11,
                    replicates=R, dtype='float32', optimum=opt)
sim()  # compiles: the compiler's memory is not the run's
base = status('VmRSS')
open('/proc/self/clear_refs', 'w').write('5')  # reset the peak (VmHWM) to the current RSS
sim()
print(json.dumps({{'base_mb': base, 'peak_mb': status('VmHWM')}}))
"""


def peak_memory(d: int, t_max: float, replicates: int) -> dict:
    """Peak RSS of a second simulation in a fresh process (the first one compiles), and the
    RSS before it; the difference is what the run itself allocates."""
    code = _PEAK_SNIPPET.format(d=d, t_max=t_max, R=replicates)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.abspath(__file__)), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="measure peak memory too")
    parser.add_argument("--sizes", type=str, default="500,4000,32000")
    parser.add_argument("--memory-only", action="store_true",
                        help="only the memory table (estimate vs measured peak)")
    args = parser.parse_args()
    if args.memory_only:
        from advdyn.workflows.memory import estimate_memory

        print(f"{'d':>6} {'R':>2} {'est MB':>7} {'peak MB':>8} {'base MB':>8} {'run MB':>7} "
              f"{'est / run':>9}")
        for d, t_max in [s for s in SIZES if str(s[0]) in args.sizes.split(",")]:
            for R in (1, 8):
                est = estimate_memory(_config(d, t_max, R), available=(1 << 40, "n/a"))
                m = peak_memory(d, t_max, R)
                run = m["peak_mb"] - m["base_mb"]
                print(f"{d:>6} {R:>2} {est.peak / 1e6:>7.1f} {m['peak_mb']:>8.1f} "
                      f"{m['base_mb']:>8.1f} {run:>7.1f} {est.peak / 1e6 / run:>9.2f}",
                      flush=True)
        return
    import jax

    import advdyn as ad

    print(f"advdyn {ad.__version__}, jax {jax.__version__}, {len(jax.devices())} CPU devices, "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    sizes = [s for s in SIZES if str(s[0]) in args.sizes.split(",")]
    print(f"{'d':>6} {'R':>2} {'steps':>6} {'dev':>3} {'compile s':>9} {'advdyn s':>9} "
          f"{'numpy s':>8} {'ratio':>6} {'risk advdyn':>11} {'risk numpy':>10} {'est MB':>7}"
          + (f" {'peak MB':>8} {'base MB':>8} {'peak-base':>9}" if args.memory else ""))
    for d, t_max in sizes:
        for R in (1, 8):
            r = bench_row(d, t_max, R, args.repeats)
            line = (f"{d:>6} {R:>2} {r['steps']:>6} {r['devices']:>3} {r['compile_s']:>9.2f} "
                    f"{r['advdyn_s']:>9.3f} {r['numpy_s']:>8.3f} {r['ratio']:>6.2f} "
                    f"{r['advdyn_risk']:>11.4f} {r['numpy_risk']:>10.4f} {r['estimate_mb']:>7.1f}")
            if args.memory:
                m = peak_memory(d, t_max, R)
                line += (f" {m['peak_mb']:>8.1f} {m['base_mb']:>8.1f} "
                         f"{m['peak_mb'] - m['base_mb']:>9.1f}")
            print(line, flush=True)


if __name__ == "__main__":
    main()
