"""Lanczos steps of a binned data spectrum (issue 28): the quadrature's error in the steps
against what ``spectrum_rel_change`` reports, on several spectra.

For each data set: `advdyn.problem.data.spectral_statistics` with 8 probes (seed 0) at
``m = 2 .. 14`` steps and at 30 (the reference: the same probes, so only the steps differ),
the ODE (constant rate, 21 records) on each quadrature, and per ``m``:

* ``err``: the largest relative change of the final ``adv_risk``, ``clean_risk``,
  ``dist_to_opt`` against the 30-step quadrature (the quadrature's own error in the steps);
* ``estimate``: ``spectrum_rel_change`` as ``advdyn run`` reports it
  (`advdyn.workflows.run.step_error` of the records on ``m``, ``m - 1`` and ``m - 2``
  steps: the last change, or the geometric tail when the changes contract slowly);
* ``m-1``: the change from ``m - 1`` steps alone;
* ``half``: the change from ``m // 2`` steps (the check before issue 28's fourth round);
* ``residual``: the regression teacher's Galerkin residual.

Data (``n = 20000``, ``d = 1000``, standardised; Gaussian rows in a random eigenbasis, each
data set drawn from its own seed):
least squares (eps 0.3, rate 0.5, ``t = 1``) on a uniform spectrum on ``[0.3, 1.7]``, power
laws ``i^-1`` and ``i^-2`` (the first also to ``t = 20``, where the quadrature converges
slowly), the uniform one with five spikes (50, 30, 20, 10, 5); logistic
(eps 10, three quarters of the data-scaled radius 13.3: at smaller eps these classes are so
far apart that the adversarial optimum's fixed point does not converge) on a two-class
mixture with an ``i^-1`` spectrum; and the shipped random-feature
digits (``examples/data/digits_rf_logistic.toml``; skipped unless
``python examples/data/make_data.py`` wrote them).

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_data_steps.py            # every data set
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_data_steps.py uniform spikes power1_t20
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

KEYS = ("adv_risk", "clean_risk", "dist_to_opt")
STEPS, REFERENCE = range(2, 15), 30


def table(rng, n: int, d: int, lam: np.ndarray, task: str, spikes=()):
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
    lam = np.array(lam, float)
    lam[:len(spikes)] = spikes
    Z = rng.standard_normal((n, d)) * np.sqrt(lam)
    if task == "regression":
        X = Z @ basis.T
        y = X @ (rng.standard_normal(d) / np.sqrt(d)) + 0.3 * rng.standard_normal(n)
        y = (y - y.mean()) / y.std()
    else:
        y = rng.choice([-1.0, 1.0], n)
        X = Z @ basis.T + y[:, None] * (1.5 * rng.standard_normal(d) / np.sqrt(d))
    return (X - X.mean(0)) / X.std(0), y


def sweep(name: str, X, y, task: str, loss_name: str, eps: float, gamma=0.5, t_max=1.0):
    import advdyn as ad
    from advdyn.config.build import gaussian_theta0
    from advdyn.problem.data import spectral_statistics
    from advdyn.problem.losses import make_loss
    from advdyn.theory.spectral import quadrature_instance
    from advdyn.workflows.run import SPECTRUM_REL_CHANGE_WARN, step_error

    loss = make_loss(loss_name)
    theta0 = gaussian_theta0(0, 1.0, X.shape[1])
    lr, times = ad.Constant(gamma), np.linspace(0.0, t_max, 21)
    finals, residual = {}, {}
    for m in [*STEPS, REFERENCE]:
        stats = spectral_statistics(X, y, task, probes=8, steps=m, theta0=theta0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an optimum's accuracy warning, once per m
            sol = ad.solve_ode(quadrature_instance(stats, loss, eps, 0.0), lr, times)
        finals[m] = {k: float(sol.ys[k][-1]) for k in KEYS}
        residual[m] = stats.residual

    def change(a: int, b: int) -> float:
        if a < 2:
            return float("nan")
        return max(abs(finals[a][k] - finals[b][k]) / abs(finals[b][k]) for k in KEYS)

    print(f"== {name}: n = {X.shape[0]}, d = {X.shape[1]}, {loss_name}, eps = {eps}")
    for m in STEPS:
        estimate = step_error(finals[m], finals.get(m - 1), finals.get(m - 2),
                              floor=SPECTRUM_REL_CHANGE_WARN / 100)  # as advdyn run
        print(f"m = {m:2d}: err {change(m, REFERENCE):.1e}  estimate {estimate:.1e}  "
              f"m-1 {change(m - 1, m):.1e}  half {change(m // 2, m):.1e}  "
              f"residual {residual[m]:.1e}", flush=True)


def main() -> None:
    which = sys.argv[1:] or ["uniform", "power1", "power1_t20", "power2", "spikes", "classes",
                             "digits"]
    n, d = 20_000, 1000
    i = np.arange(1, d + 1)
    uniform = np.linspace(0.3, 1.7, d)
    regression = {"uniform": (uniform, ()), "power1": (i**-1.0, ()),
                  "power2": (i**-2.0, ()), "spikes": (uniform, (50, 30, 20, 10, 5))}
    for seed, (name, (lam, spikes)) in enumerate(regression.items(), start=1):
        if name in which:  # each data set from its own seed
            X, y = table(np.random.default_rng(seed), n, d, lam, "regression", spikes)
            sweep(name, X, y, "regression", "least_squares", 0.3)
            if name == "power1" and "power1_t20" in which:
                sweep("power1 to t = 20", X, y, "regression", "least_squares", 0.3, t_max=20.0)
    if "power1_t20" in which and "power1" not in which:
        X, y = table(np.random.default_rng(2), n, d, i**-1.0, "regression")
        sweep("power1 to t = 20", X, y, "regression", "least_squares", 0.3, t_max=20.0)
    if "classes" in which:
        X, y = table(np.random.default_rng(5), n, d, i**-1.0, "classification")
        sweep("classes (i^-1)", X, y, "classification", "logistic", 10.0)
    if "digits" in which:
        import advdyn as ad
        from advdyn.config.build import load_data

        folder = Path(__file__).resolve().parent.parent / "examples" / "data"
        if not (folder / "digits_rf.npz").exists():
            print("digits: skipped (python examples/data/make_data.py writes them)")
            return
        cfg = ad.load_config(folder / "digits_rf_logistic.toml")
        X, y = load_data(cfg.problem.data)
        sweep("digits (random features)", X, y, "classification", "logistic", 9.47,
              gamma=1.0, t_max=2.0)


if __name__ == "__main__":
    main()
