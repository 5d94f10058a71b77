"""advdyn's strong evaluation against the reference AutoAttack (``pyautoattack``, Croce and
Hein's code; ``pip install --no-deps 'pyautoattack==0.2.0'``), issue 25's table.

The same torch MLPs (width 64 on the 8x8 digits: a clean one and one PGD-trained at
l-infinity 0.1, 30 epochs; trained by advdyn and copied into torch), the same test points,
the budgets l-infinity 8/255, 0.1, 0.15 and l2 0.5, at 20 and 100 iterations. Per cell:

* AutoAttack standard (APGD-CE, APGD-T with 9 targets, FAB-T with 9 targets, Square with
  5000 queries; the iterations of APGD and FAB set to the column's), and its robust accuracy
  after each attack of the sequence (what FAB-T and Square add after APGD-CE and APGD-T);
* advdyn's strong evaluation (PGD-10, APGD-CE, APGD-T), each attack alone, and the previous
  default ensemble (PGD-10, APGD-CE, APGD-DLR) and PGD-10 + APGD-CE alone (what APGD-T adds).

Usage::

    python benchmarks/bench_autoattack_reference.py                 # 500 points, 20 and 100
    python benchmarks/bench_autoattack_reference.py --n 100 --steps 20 --json out.json
    python benchmarks/bench_autoattack_reference.py --steps 100 --models clean --budgets linf:0.1

Robust accuracies in percent; advdyn - AA must be <= 0.4 in every cell (issue 25).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="test points")
    ap.add_argument("--steps", type=int, nargs="+", default=[20, 100])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--models", nargs="+", default=["clean", "pgd"])
    ap.add_argument("--budgets", nargs="+", default=["linf:8/255", "linf:0.1", "linf:0.15",
                                                     "l2:0.5"], help="norm:radius")
    ap.add_argument("--json", default=None, help="write the rows here")
    args = ap.parse_args()

    import torch

    from advdyn.adversarial.reference import (
        autoattack_accuracy,
        digits_torch_mlps,
        strong_accuracy,
    )
    from advdyn.precision import x64

    torch.set_num_threads(1)  # eager torch on small batches: one thread is fastest
    from fractions import Fraction

    budgets = [(b.split(":")[0], float(Fraction(b.split(":")[1]))) for b in args.budgets]
    rows = []
    with x64():
        t0 = time.perf_counter()
        models, data = digits_torch_mlps(epochs=args.epochs, kinds=tuple(args.models))
        print(f"trained in {time.perf_counter() - t0:.0f} s", flush=True)
        x = data.x_test[: args.n].reshape(-1, 1, 8, 8)
        y = data.y_test[: args.n]
        print("| model | budget | steps | AA standard | after APGD-CE, APGD-T | advdyn strong"
              " | advdyn - AA | PGD-10 / APGD-CE / APGD-T alone | PGD + APGD-CE"
              " | old ensemble (+APGD-DLR) | seconds AA / advdyn |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |")
        for steps in args.steps:
            for name, module in models.items():
                for norm, eps in budgets:
                    t = time.perf_counter()
                    ref = autoattack_accuracy(module, x, y, eps, norm, steps)
                    t_ref = time.perf_counter() - t
                    t = time.perf_counter()
                    ours = strong_accuracy(module, x, y, eps, norm, steps)
                    t_ours = time.perf_counter() - t
                    ce = strong_accuracy(module, x, y, eps, norm, steps, ("apgd-ce",))
                    old = strong_accuracy(module, x, y, eps, norm, steps,
                                          ("apgd-ce", "apgd-dlr"))
                    row = {
                        "model": name, "norm": norm, "eps": eps, "steps": steps, "n": len(y),
                        "autoattack": 100 * ref["robust_acc"],
                        "autoattack_after": {k: 100 * v for k, v in ref["after"].items()},
                        "advdyn": 100 * ours["adv_acc"],
                        "advdyn_alone": [100 * ours[f"acc_{i}"] for i in range(3)],
                        "advdyn_pgd_ce": 100 * ce["adv_acc"],
                        "advdyn_old_ensemble": 100 * old["adv_acc"],
                        "clean": 100 * ours["clean_acc"],
                        "seconds": [t_ref, t_ours],
                    }
                    rows.append(row)
                    budget = f"{norm} {'8/255' if abs(eps - 8 / 255) < 1e-9 else eps}"
                    after_t = row["autoattack_after"].get("apgd-t", float("nan"))
                    alone = " / ".join(f"{v:.1f}" for v in row["advdyn_alone"])
                    print(f"| {name} | {budget} | {steps} | {row['autoattack']:.1f} "
                          f"| {after_t:.1f} | {row['advdyn']:.1f} "
                          f"| {row['advdyn'] - row['autoattack']:+.1f} | {alone} "
                          f"| {row['advdyn_pgd_ce']:.1f} | {row['advdyn_old_ensemble']:.1f} "
                          f"| {t_ref:.0f} / {t_ours:.0f} |", flush=True)
    worst = max(r["advdyn"] - r["autoattack"] for r in rows)
    print(f"largest advdyn - AA: {worst:+.1f} points (bound +0.4)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=lambda v: float(np.asarray(v)))


if __name__ == "__main__":
    main()
