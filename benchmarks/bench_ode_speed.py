"""ODE speed (issue 14): stiff power-law spectra in bins, and the per-direction ODE vs Heun.

Prints, from one run:

1. **Binned power law** (exponent 1, ``tr K = d``, two-point Gauss bins, adversarial least
   squares, eps = 0.5, sigma = 0.3, gamma = 0.8, t in [0, 10], 61 records, rtol 1e-7, the
   automatic solver choice): for d in {1e4, 1e6} (``--sizes``) the whole run time in CPU seconds
   (``time.process_time``; bins from the config, optimum, solve; min of 3 after a first
   call that compiles, reported apart; the d interleaved), the steps, and the largest
   relative error of ``adv_risk`` over the records against a reference solve (256 Gauss
   bins, Tsit5, rtol 1e-10): 32 and 28 bins with the decades relaxed before the first
   record in coarser bins (what runs use, ``relaxed_eigenvalue``), 32 plain log bins, and
   plain log bins growing like ``ln d`` (:func:`log_scaled_bins`). Target: run time at 1e6
   within 1.3x of 1e4 at the same accuracy. Part 4 (``--parts 4``) matches the accuracy
   more finely: 28 and 32 relaxed-decade bins at the small d against one and two more at
   the large d.
2. **Bins for power laws**: largest relative error against the reference for 8..128 bins,
   mean-eigenvalue bins against Gauss bins, at d = 1e4 and 1e6 (every solve Tsit5, rtol
   1e-10, so that only the bins differ).
3. **Per-direction ODE at d = 1e5** (default problem: uniform spectrum on [0.2, 1.8]; t in
   [0, 6], 61 records) against a plain numpy Heun (fixed step, two vector-field evaluations
   per step, written below), each at the loosest setting that reaches 1e-6 relative error
   of ``adv_risk`` at every record against a tight advdyn solve (rtol 1e-12). Target:
   advdyn at least 5x faster.

Usage::

    python benchmarks/bench_ode_speed.py [--skip-binned] [--skip-direct] [--sizes 1e4,1e6]
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
from advdyn.problem.losses import LeastSquares
from advdyn.theory.stationary import adversarial_optimum
from advdyn.workflows.bins import relaxed_eigenvalue

TIMES = np.linspace(0, 10, 61)
LR = 0.8


def _power(d: int) -> ProblemConfig:
    return ProblemConfig(d=d, spectrum={"kind": "power_law", "exponent": 1.0},
                         task={"kind": "regression", "noise": 0.3}, epsilon=0.5)


def _relaxed_above() -> float:
    """The eigenvalue above which modes relax before the first record (as runs compute it)."""
    return relaxed_eigenvalue(ad.Constant(LR), TIMES, LeastSquares())


def _binned_run(d, bins, rtol=1e-8, solver="auto", gauss=True, relaxed=False):
    """The whole binned run: bins from the config, optimum, solve. Returns (CPU s, Solution)."""
    start = time.process_time()
    above = _relaxed_above() if relaxed else None
    inst = binned_from_config(_power(d), bins, gauss=gauss, relaxed_above=above)
    opt = adversarial_optimum(inst)
    sol = ad.solve_ode(inst, ad.Constant(LR), TIMES, rtol=rtol, optimum=opt, solver=solver,
                       relaxed_above=above)
    return time.process_time() - start, sol


def _reference(d):
    """256 Gauss bins, explicit Tsit5 at rtol 1e-10 (no Newton solves, so it checks the
    implicit solver independently; at most ~5e5 cheap steps at d = 1e6)."""
    return _binned_run(d, 256, rtol=1e-10, solver="tsit5", gauss=True)[1]


def _err(sol, ref) -> float:
    return float(np.max(np.abs(sol["adv_risk"] / ref["adv_risk"] - 1)))


def log_scaled_bins(d: int, bins_at_1e4: int = 32) -> int:
    """Bins that keep the power-law quadrature error flat in ``d``: ``bins ~ ln d``.

    Log bins spread over the ``ln d`` e-folds of the spectrum, and a Gauss bin's error
    falls as its log-width to the fourth power (part 2), so equal accuracy needs
    ``bins_at_1e4 * ln d / ln 1e4`` bins.
    """
    return round(bins_at_1e4 * np.log(d) / np.log(1e4))


def bench_binned(sizes=(10**4, 10**6), repeats: int = 3, parts=(1, 2)) -> None:
    refs = {}
    if 1 in parts:
        bench_binned_time(sizes, repeats, refs)
    if 2 in parts:
        bench_bins_table((sizes[0], sizes[-1]), refs)
    if 3 in parts:
        bench_top_bins(sizes[-1], refs)
    if 4 in parts:
        bench_matched((sizes[0], sizes[-1]), refs, repeats)


def bench_matched(sizes, refs: dict, repeats: int) -> None:
    """Part 4: accuracy matched more finely. Relaxed-decade bins (as runs build them) at the
    small d (28, 32) against one and two more bins at the large d; time ratio and errors."""
    small, large = sizes
    for d in sizes:
        if d not in refs:
            refs[d] = _reference(d)
    cases = [(small, 28), (large, 29), (large, 30), (small, 32), (large, 33), (large, 34)]
    for d, bins in cases:  # compiles
        _binned_run(d, bins, rtol=1e-7, relaxed=True)
    best: dict = {c: (np.inf, None) for c in cases}
    for _ in range(repeats):  # interleaved
        for d, bins in cases:
            cpu, sol = _binned_run(d, bins, rtol=1e-7, relaxed=True)
            if cpu < best[(d, bins)][0]:
                best[(d, bins)] = (cpu, sol)
    print(f"\n4. matched accuracy, relaxed-decade Gauss bins, rtol 1e-7, CPU s min of {repeats}; "
          f"load average {os.getloadavg()[0]:.1f}")
    for base in (28, 32):
        t0, s0 = best[(small, base)]
        for more in (1, 2):
            t1, s1 = best[(large, base + more)]
            print(f"  {small:.0e} {base} bins: err {_err(s0, refs[small]):.2e}, {t0:.3f} s | "
                  f"{large:.0e} {base + more} bins: err {_err(s1, refs[large]):.2e}, "
                  f"{t1:.3f} s | ratio {t1 / t0:.2f}", flush=True)


def bench_binned_time(sizes, repeats: int, refs: dict) -> None:
    """Part 1: whole-run CPU time and accuracy against d (fixed bins, bins ~ ln d)."""
    print("\n1. binned power law (exponent 1, tr K = d), auto solver, rtol 1e-7; whole run in "
          "CPU s (time.process_time: bins, optimum, solve), min of "
          f"{repeats}; error vs 256 Gauss bins, Tsit5, rtol 1e-10")
    for d in sizes:
        start = time.process_time()
        refs[d] = _reference(d)
        print(f"  reference d = {d}: {refs[d].stats['steps']} Tsit5 steps, "
              f"{time.process_time() - start:.1f} CPU s (first call)", flush=True)
    # 32 bins as in the first measurement; 64 Gauss bins (128 nodes) cost minutes per
    # implicit solve on the 2-core machine
    settings = [
        ("32 Gauss bins, relaxed decades coarser (as runs bin)", lambda d: 32, True),
        ("28 Gauss bins, relaxed decades coarser", lambda d: 28, True),
        ("32 Gauss bins, plain log bins", lambda d: 32, False),
        ("32 * ln d / ln 1e4 Gauss bins, plain log bins", log_scaled_bins, False),
    ]
    print(f"  relaxed above lambda = {_relaxed_above():.1f} (20 / (gamma t_1))")
    for label, bins_of, relaxed in settings:
        first = {d: _binned_run(d, bins_of(d), rtol=1e-7, relaxed=relaxed)[0]
                 for d in sizes}  # compiles
        best: dict = {d: (np.inf, None) for d in sizes}
        for _ in range(repeats):  # interleaved, so that load drifts hit every d alike
            for d in sizes:
                cpu, sol = _binned_run(d, bins_of(d), rtol=1e-7, relaxed=relaxed)
                if cpu < best[d][0]:
                    best[d] = (cpu, sol)
        print(f"  {label}: load average {os.getloadavg()[0]:.1f}")
        print(f"  {'d':>8} {'bins':>5} {'nodes':>5} {'solver':>9} {'first s':>8} {'run s':>7} "
              f"{'steps':>6} {'max rel err':>11} {'solver err':>10}")
        for d in sizes:
            cpu, sol = best[d]
            above = _relaxed_above() if relaxed else None
            nodes = binned_from_config(_power(d), bins_of(d), gauss=True,
                                       relaxed_above=above).n_bins
            # the solver's own part: against Tsit5 at rtol 1e-10 on the same bins
            _, same_bins = _binned_run(d, bins_of(d), rtol=1e-10, solver="tsit5",
                                       relaxed=relaxed)
            print(f"  {d:>8} {bins_of(d):>5} {nodes:>5} {sol.stats['solver']:>9} "
                  f"{first[d]:>8.2f} {cpu:>7.3f} {sol.stats['steps']:>6} "
                  f"{_err(sol, refs[d]):>11.2e} {_err(sol, same_bins):>10.1e}", flush=True)
        print(f"  run time {sizes[-1]:.0e} / {sizes[0]:.0e} = "
              f"{best[sizes[-1]][0] / best[sizes[0]][0]:.2f} (target <= 1.3)")


def bench_bins_table(sizes, refs: dict) -> None:
    """Part 2: error against the number of bins, mean-eigenvalue and Gauss bins."""
    print("\n2. bins for power laws: max rel err of adv_risk against the reference "
          "(each solve Tsit5, rtol 1e-10, so that only the bins differ)")
    for d in sizes:
        if d not in refs:
            refs[d] = _reference(d)
        for gauss in (False, True):
            errs = []
            for bins in (8, 16, 32, 48, 64, 96, 128):
                _, sol = _binned_run(d, bins, rtol=1e-10, gauss=gauss, solver="tsit5")
                errs.append(f"{bins}:{_err(sol, refs[d]):.1e}")
            print(f"  d = {d:.0e} {'gauss 2-point' if gauss else 'mean eigenvalue':<16}"
                  + "  ".join(errs), flush=True)


def bench_top_bins(d: int, refs: dict, low_bins: int = 32, top_bins: int = 4) -> None:
    """Part 3: where the resolution matters. At ``d`` the ranks above ``lambda_max`` of
    ``d = 1e4`` (``lambda_i = c_d / i > c_1e4``) get ``top_bins`` log bins and the ranks
    below get ``low_bins`` geometric bins (the log width of the ``d = 1e4`` bins); Gauss
    bins, Tsit5 rtol 1e-10. An error close to that of ``low_bins`` bins at 1e4 means the
    top decades need little resolution and the error sits in the lower ones."""
    import advdyn.config.build as build
    from advdyn.problem.spectra import eigenvalue_at
    from advdyn.theory.spectral import rank_edges

    if d not in refs:
        refs[d] = _reference(d)
    exponent = _power(d).spectrum.exponent
    # the largest eigenvalue of each law (rank 0)
    c_d, c_4 = (float(eigenvalue_at("power_law", n, 0.0, exponent=exponent)) for n in (d, 10**4))
    cut = int(np.ceil(c_d / c_4))  # ranks 0 .. cut - 1 lie above lambda_max of d = 1e4

    def edges(config, n_bins, spacing="auto"):
        low = np.round(np.geomspace(cut, config.d, low_bins + 1)).astype(np.int64)
        return np.unique(np.concatenate([rank_edges(cut, top_bins, "log"), low]))

    original = build.config_edges
    build.config_edges = edges  # binned_from_config looks the edges up at call time
    try:
        _, sol = _binned_run(d, low_bins + top_bins, rtol=1e-10, solver="tsit5")
    finally:
        build.config_edges = original
    print(f"\n3. d = {d:.0e}: {top_bins} log bins for the {cut} ranks above lambda_max of "
          f"1e4, {low_bins} geometric bins below: max rel err {_err(sol, refs[d]):.2e}",
          flush=True)


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
    parser.add_argument("--sizes", type=str, default="1e4,1e6",
                        help="dimensions of part 1 (part 2 uses the first and the last)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", type=str, default="1,2", help="parts of the binned runs")
    args = parser.parse_args()
    import jax

    print(f"advdyn {ad.__version__}, jax {jax.__version__}, {os.cpu_count()} CPUs; load "
          f"average {os.getloadavg()[0]:.1f}")
    if not args.skip_binned:
        bench_binned(tuple(int(float(x)) for x in args.sizes.split(",")), args.repeats,
                     tuple(int(p) for p in args.parts.split(",")))
    if not args.skip_direct:
        bench_direct()


if __name__ == "__main__":
    main()
