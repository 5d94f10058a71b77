"""SME section 3 check 2 at scale: weak errors of both SMEs on adversarial least squares.

The instances of ``tests/sme/test_sme_checks.py`` (spectrum ``linspace(0.5, 2, d)``,
``theta*`` and ``theta_0`` from ``default_rng(d)``, ``eps = 0.3``, ``sigma = 0.5``,
``T = 2``, observable ``E|theta - theta*|^2``).

``--convergence``: the order-1 and order-2 SMEs at ``eta`` solved with ``dt = eta/2, eta/4,
eta/8`` on common Brownian paths (grid ``eta/16``); prints the paired differences.
Otherwise: SGD and both SMEs (extrapolated scheme, ``dt = eta / div``) for each ``eta``,
the weak errors with standard errors, and log-log slopes with 95% intervals (errors
resampled within their standard errors). Numbers quoted in docs/sme.md (check 2):

    python benchmarks/sme_check2.py --convergence --d 3 --eta 0.05 --replicates 100000
    python benchmarks/sme_check2.py --d 3 --etas 0.05,0.025,0.0125 --replicates 120000 --div 4
    python benchmarks/sme_check2.py --d 2 --etas 0.05,0.025,0.0125 --replicates 30000 --div 4
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from advdyn.sme import SME, GaussianLeastSquares, loglog_fit, simulate_objective_sgd, solve_sme


def problem(d: int):
    rng = np.random.default_rng(d)
    lam = jnp.asarray(np.linspace(0.5, 2.0, d))
    ob = GaussianLeastSquares(lam, jnp.asarray(rng.normal(size=d) / np.sqrt(d)), 0.5, 0.3)
    return ob, jnp.asarray(0.5 * rng.normal(size=d) / np.sqrt(d))


def convergence(d: int, eta: float, replicates: int) -> None:
    ob, th0 = problem(d)
    chunk = min(replicates, 50_000)
    for order in (2, 1):
        xs = {}
        for div in (2, 4, 8):
            xs[div] = solve_sme(SME(ob, eta, order), th0, jax.random.key(1), t_max=2.0,
                                dt=eta / div, n_times=2, replicates=replicates,
                                scheme="extrapolated", chunk=chunk,
                                brownian_dt=eta / 16)["dist2"][:, -1]
            print(f"order {order} dt=eta/{div}: E dist2 {xs[div].mean():.6f}", flush=True)
        for a, b in ((2, 4), (4, 8)):
            diff = xs[a] - xs[b]
            print(f"  order {order} eta/{a} - eta/{b}: {diff.mean():+.2e} "
                  f"+- {diff.std() / np.sqrt(replicates):.1e}")


def slope_interval(etas, err, se, draws: int = 4000):
    rng = np.random.default_rng(0)
    sims = [loglog_fit(etas, np.abs(err + se * rng.standard_normal(len(err))))[0]
            for _ in range(draws)]
    return loglog_fit(etas, np.abs(err))[0], np.percentile(sims, [2.5, 97.5])


def weak_errors(d: int, etas, replicates: int, div: int) -> None:
    ob, th0 = problem(d)
    chunk = min(replicates, 50_000)
    out = {k: [] for k in ("e1", "e2", "se1", "se2")}
    for eta in etas:
        t0 = time.perf_counter()
        sgd = simulate_objective_sgd(ob, eta, th0, jax.random.key(0), t_max=2.0, n_times=2,
                                     replicates=replicates, chunk=chunk)["dist2"][:, -1]
        xs = [solve_sme(SME(ob, eta, o), th0, jax.random.key(1), t_max=2.0, dt=eta / div,
                        n_times=2, replicates=replicates, scheme="extrapolated",
                        chunk=chunk)["dist2"][:, -1] for o in (1, 2)]
        for o, x in zip((1, 2), xs, strict=True):
            out[f"e{o}"].append(sgd.mean() - x.mean())
            out[f"se{o}"].append(np.sqrt((sgd.var() + x.var()) / replicates))
        d12 = xs[0] - xs[1]
        print(f"eta {eta}: e1 {out['e1'][-1]:+.3e} (se {out['se1'][-1]:.1e})  "
              f"e2 {out['e2'][-1]:+.3e} (se {out['se2'][-1]:.1e})  sme1 - sme2 "
              f"{d12.mean():+.3e} (se {d12.std() / np.sqrt(replicates):.0e})  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    r = {k: np.asarray(v) for k, v in out.items()}
    et = np.asarray(etas)
    for o in (1, 2):
        s, (lo, hi) = slope_interval(et, r[f"e{o}"], r[f"se{o}"])
        print(f"order {o} slope {s:.2f} (95% interval {lo:.2f} to {hi:.2f})")
    print("|e2| < |e1|:", list(map(bool, np.abs(r["e2"]) < np.abs(r["e1"]))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=3)
    parser.add_argument("--etas", default="0.05,0.025,0.0125")
    parser.add_argument("--eta", type=float, default=0.05)
    parser.add_argument("--replicates", type=int, default=20_000)
    parser.add_argument("--div", type=int, default=4)
    parser.add_argument("--convergence", action="store_true")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    if args.convergence:
        convergence(args.d, args.eta, args.replicates)
    else:
        weak_errors(args.d, [float(v) for v in args.etas.split(",")], args.replicates, args.div)


if __name__ == "__main__":
    main()
