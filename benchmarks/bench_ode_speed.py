"""ODE speed (issue 14): stiff power-law spectra in bins, and the per-direction ODE vs Heun.

Prints, from one run:

1. **Binned power law** (exponent 1, ``tr K = d``, 64 bins by two-point Gauss rules,
   adversarial least squares, eps = 0.5, sigma = 0.3, gamma = 0.8, t in [0, 10], 61
   records): for d in {1e4, 1e5, 1e6} the whole run time (bins from the config, optimum,
   solve; after a first call that compiles, reported apart) with the automatic solver
   choice and with Tsit5 forced, the steps, and the largest relative error of ``adv_risk``
   over the records against a reference solve (256 Gauss bins, Kvaerno5, rtol 1e-11).
   Target: auto time at 1e6 within 1.3x of 1e4 at the same accuracy.
2. **Bins for power laws**: largest relative error against the reference for 8..128 bins,
   mean-eigenvalue bins against Gauss bins (d = 1e5, Kvaerno5 rtol 1e-11).
3. **Per-direction ODE at d = 1e5** (default problem: uniform spectrum on [0.2, 1.8]; t in
   [0, 6], 61 records) against a plain numpy Heun (fixed step, two vector-field evaluations
   per step, written below), each at the loosest setting that reaches 1e-6 relative error
   of ``adv_risk`` at every record against a tight advdyn solve (rtol 1e-12). Target:
   advdyn at least 5x faster.

Usage::

    python benchmarks/bench_ode_speed.py [--skip-binned] [--skip-direct]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import numpy as np

import advdyn as ad
from advdyn.config.build import binned_from_config, instantiate
from advdyn.config.schema import ProblemConfig
from advdyn.theory.stationary import adversarial_optimum

TIMES = np.linspace(0, 10, 61)
LR = 0.8


def _power(d: int) -> ProblemConfig:
    return ProblemConfig(d=d, spectrum={"kind": "power_law", "exponent": 1.0},
                         task={"kind": "regression", "noise": 0.3}, epsilon=0.5)


def _binned_run(d, bins, rtol=1e-8, solver="auto", gauss=True):
    start = time.perf_counter()
    inst = binned_from_config(_power(d), bins, gauss=gauss)
    opt = adversarial_optimum(inst)
    sol = ad.solve_ode(inst, ad.Constant(LR), TIMES, rtol=rtol, optimum=opt, solver=solver)
    return time.perf_counter() - start, sol


def _err(sol, ref) -> float:
    return float(np.max(np.abs(sol["adv_risk"] / ref["adv_risk"] - 1)))


def bench_binned() -> None:
    print("\n1. binned power law (exponent 1, tr K = d), 64 bins, rtol 1e-8")
    print(f"{'d':>8} {'solver':>9} {'first s':>8} {'run s':>7} {'steps':>7} {'stiffness':>10} "
          f"{'max rel err':>11}")
    runs = {}
    for d in (10**4, 10**5, 10**6):
        _, ref = _binned_run(d, 256, rtol=1e-11, solver="kvaerno5")
        for solver in ("auto", "tsit5"):
            first, _ = _binned_run(d, 64, solver=solver)
            wall, sol = min((_binned_run(d, 64, solver=solver) for _ in range(3)),
                            key=lambda x: x[0])
            runs[(d, solver)] = wall
            print(f"{d:>8} {sol.stats['solver']:>9} {first - wall:>8.2f} {wall:>7.3f} "
                  f"{sol.stats['steps']:>7} {sol.stats['stiffness']:>10.3g} "
                  f"{_err(sol, ref):>11.2e}", flush=True)
    print(f"auto: run time at 1e6 / 1e4 = {runs[(10**6, 'auto')] / runs[(10**4, 'auto')]:.2f} "
          f"(target <= 1.3); tsit5: {runs[(10**6, 'tsit5')] / runs[(10**4, 'tsit5')]:.1f}")

    print("\n2. bins for power laws at d = 1e5: max rel err of adv_risk vs 256 Gauss bins")
    _, ref = _binned_run(10**5, 256, rtol=1e-11, solver="kvaerno5")
    for gauss in (False, True):
        errs = []
        for bins in (8, 16, 32, 64, 128):
            _, sol = _binned_run(10**5, bins, rtol=1e-11, gauss=gauss, solver="kvaerno5")
            errs.append(f"{bins}:{_err(sol, ref):.1e}")
        print(f"  {'gauss 2-point' if gauss else 'mean eigenvalue':<16}" + "  ".join(errs))


def heun(inst, times, n_steps: int) -> np.ndarray:
    """Plain numpy Heun on the per-direction ODE of one centred class, least squares
    (THEORY 5 in the error variables): returns adv_risk at ``times``."""
    lam = np.asarray(inst.eigenvalues[0], np.float64)
    t2 = np.asarray(inst.teacher2, np.float64)
    sum_t2 = t2.sum()
    eps, ridge = float(inst.epsilon), float(inst.ridge)
    noise2 = float(inst.noise) ** 2
    d = inst.d
    c_abs, c_pdf = np.sqrt(2 / np.pi), 1 / np.sqrt(2 * np.pi)
    import jax

    with jax.enable_x64(True):  # the float64 initial state, as the ODE uses
        s0 = inst.initial_state()
    e2, et = np.asarray(s0.err2, np.float64).copy(), np.asarray(s0.err_teacher, np.float64).copy()

    def scalars(e2, et):
        s2 = lam @ e2 + noise2
        s = np.sqrt(s2)
        nrm = np.sqrt(e2.sum() + 2 * et.sum() + sum_t2)
        a = eps * nrm
        e_abs = s * c_abs
        return s2, s, nrm, a, e_abs

    def field(e2, et):
        s2, s, nrm, a, e_abs = scalars(e2, et)
        h1 = 1 + 2 * a * c_pdf / s
        rho = eps * (e_abs + a) / nrm + ridge
        big_i = s2 + 2 * a * e_abs + a * a
        D = lam * h1 + rho  # H = -lam h1, so D + H = rho
        de2 = -2 * LR * (D * e2 + rho * et) + LR**2 * lam * (big_i / d)
        det = -LR * (D * et + rho * t2)
        return de2, det

    def risk(e2, et):
        s2, _, _, a, e_abs = scalars(e2, et)
        return 0.5 * (s2 + 2 * a * e_abs + a * a)

    out = [risk(e2, et)]
    for t0, t1 in itertools.pairwise(times):
        h = (t1 - t0) / n_steps
        for _ in range(n_steps):
            k1 = field(e2, et)
            p2, pt = e2 + h * k1[0], et + h * k1[1]
            k2 = field(p2, pt)
            e2 = e2 + 0.5 * h * (k1[0] + k2[0])
            et = et + 0.5 * h * (k1[1] + k2[1])
        out.append(risk(e2, et))
    return np.asarray(out)


def bench_direct(d: int = 10**5) -> None:
    print(f"\n3. per-direction ODE at d = {d} (uniform [0.2, 1.8]) vs numpy Heun, target 1e-6")
    cfg = ProblemConfig(d=d, spectrum={"kind": "uniform", "low": 0.2, "high": 1.8},
                        task={"kind": "regression", "noise": 0.3}, epsilon=0.5)
    inst = instantiate(cfg)
    opt = adversarial_optimum(inst)
    times = np.linspace(0, 6, 61)
    ref = ad.solve_ode(inst, ad.Constant(LR), times, rtol=1e-12, optimum=opt)["adv_risk"]
    best = None
    for rtol in (1e-5, 3e-6, 1e-6, 3e-7, 1e-7, 1e-8):
        start = time.perf_counter()
        sol = ad.solve_ode(inst, ad.Constant(LR), times, rtol=rtol, optimum=opt)
        first = time.perf_counter() - start
        start = time.perf_counter()
        sol = ad.solve_ode(inst, ad.Constant(LR), times, rtol=rtol, optimum=opt)
        wall = time.perf_counter() - start
        err = float(np.max(np.abs(sol["adv_risk"] / ref - 1)))
        print(f"  advdyn tsit5 rtol {rtol:.0e}: {wall:.3f} s (first call {first:.2f} s), "
              f"{sol.stats['steps']} steps, max rel err {err:.1e}", flush=True)
        if err <= 1e-6:
            best = wall
            break
    import jax

    from advdyn.theory.ode import initial_state, vector_field

    with jax.enable_x64(True):
        y0 = initial_state(inst)
        field = jax.jit(lambda y: vector_field(0.0, y, (inst, ad.Constant(LR))))
        jax.block_until_ready(field(y0))
        start = time.perf_counter()
        for _ in range(20):
            jax.block_until_ready(field(y0))
        per_eval = (time.perf_counter() - start) / 20
    if best:
        per_step = best / sol.stats["steps"]
        print(f"  vector field {per_eval * 1e3:.2f} ms; advdyn {per_step * 1e3:.2f} ms per "
              f"accepted step ({per_step / per_eval:.1f} fields)")
    heun_best = None
    for n in (1, 2, 4, 8, 16, 32, 64, 128):  # Heun steps per record interval (dt = 0.1 / n)
        start = time.perf_counter()
        out = heun(inst, times, n)
        wall = time.perf_counter() - start
        err = float(np.max(np.abs(out / ref - 1)))
        print(f"  numpy Heun dt = {0.1 / n:.4f}: {wall:.3f} s, max rel err {err:.1e}", flush=True)
        if err <= 1e-6:
            heun_best = wall
            break
    if best and heun_best:
        print(f"  Heun / advdyn at 1e-6: {heun_best / best:.1f}x (target >= 5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-binned", action="store_true")
    parser.add_argument("--skip-direct", action="store_true")
    args = parser.parse_args()
    import jax

    print(f"advdyn {ad.__version__}, jax {jax.__version__}, {os.cpu_count()} CPUs; load "
          f"average {os.getloadavg()[0]:.1f}")
    if not args.skip_binned:
        bench_binned()
    if not args.skip_direct:
        bench_direct()


if __name__ == "__main__":
    main()
