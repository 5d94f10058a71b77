"""The table of docs/real-data.md: how far SGD on the rows of a data set is from the ODE of its
Gaussian-mixture surrogate, for least squares and logistic at eps = 0, 0.5, 1, 2 times the
data-scaled radius (half the distance between the class means).

    python examples/data/make_data.py          # once: writes the data sets
    python examples/data/gap_table.py [data file] [--replicates R] [--figure out.png]

Every replicate is an independent SGD stream (its own rows); the gap of a replicate is the
largest relative gap of its adversarial risk (measured on every row) to the ODE over time, and
the table gives its mean and standard deviation over the replicates, next to the same for SGD
on the Gaussian surrogate itself (the control: what the theory promises) and the d^-1/2 scale
of one run's fluctuations around the d -> inf limit (and d_eff^-1/2, with the effective
dimension (tr K)^2 / tr K^2 of the data's covariance, the scale when the spectrum is spiky).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from advdyn.config import validate_config
from advdyn.config.build import data_problem
from advdyn.io.compare import relative_gap
from advdyn.workflows.run import run

HERE = Path(__file__).resolve().parent
RATES = {"least_squares": 0.5, "logistic": 1.0}
FACTORS = (0.0, 0.5, 1.0, 2.0)


def gaps(result, method: str) -> tuple[np.ndarray, float]:
    """Largest relative gap over time of ``method``'s adv_risk to the ODE: per replicate, and
    of the replicate mean (the systematic part, fluctuations reduced by sqrt(R))."""
    ode, sgd = result.datasets["ode"], result.datasets[method]
    est = sgd.adv_risk.interp(time=ode.time)
    per_run = np.asarray(relative_gap(ode.adv_risk, est).max("time"))
    return per_run, float(relative_gap(ode.adv_risk, est.mean("replicate")).max())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", default=str(HERE / "digits_rf.npz"))
    parser.add_argument("--replicates", type=int, default=8)
    parser.add_argument("--t-max", type=float, default=2.0)
    parser.add_argument("--figure", type=Path, default=None,
                        help="copy risk.png of logistic at 1 x radius here")
    args = parser.parse_args()
    data = {"path": str(Path(args.data).resolve()), "task": "classification"}
    base = validate_config({"problem": {"loss": "logistic", "data": data}})
    diagnostics = data_problem(base.problem).diagnostics
    radius, d_eff = diagnostics["radius"], diagnostics["effective_dimension"]
    d = base.problem.d
    print(f"{Path(args.data).name}: d = {d}, effective dimension {d_eff:.4g}, data-scaled "
          f"radius {radius:.4g}, d^-1/2 = {d**-0.5:.3g}, d_eff^-1/2 = {d_eff**-0.5:.3g}")
    print({k: v for k, v in diagnostics.items() if k != "spectrum"})
    print("| loss | eps / radius | final adv. risk: ODE / rows / surrogate | final clean error: "
          "ODE / rows / surrogate | gap per run: rows | surrogate | gap of the mean: rows | "
          "surrogate |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for loss, gamma in RATES.items():
        for factor in FACTORS:
            cfg = validate_config({
                "problem": {"loss": loss, "epsilon": factor * radius, "data": data},
                "lr": {"gamma": gamma},
                "run": {"t_max": args.t_max, "n_times": 21, "replicates": args.replicates,
                        "methods": ["ode", "data_sgd", "sgd"]},
            })
            start = time.perf_counter()
            draw = args.figure is not None and loss == "logistic" and factor == 1.0
            out = HERE / "gap-table-out" if draw else None
            result = run(cfg, out)
            (g, gm), (c, cm) = gaps(result, "data_sgd"), gaps(result, "sgd")
            final = result.summary["final"]
            methods = ("ode", "data_sgd", "sgd")
            risk = " / ".join(f"{final[m]['adv_risk']:.3g}" for m in methods)
            err = " / ".join(f"{final[m].get('clean_error', float('nan')):.3g}" for m in methods)
            print(f"| {loss} | {factor:g} | {risk} | {err} | {g.mean():.3f} +/- "
                  f"{g.std(ddof=1):.3f} | {c.mean():.3f} +/- {c.std(ddof=1):.3f} | {gm:.3f} | "
                  f"{cm:.3f} |  <!-- {time.perf_counter() - start:.0f} s -->", flush=True)
            if draw:
                shutil.copy(HERE / "gap-table-out" / "risk.png", args.figure)


if __name__ == "__main__":
    main()
