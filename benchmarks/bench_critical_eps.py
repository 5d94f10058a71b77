"""Compute of the two eps* estimators on the digits MLP (the embedded critical-eps default).

Runs the default config once with one epoch per run as a warm-up (compiles every jitted
function), then the full default, and prints for each estimator: eps*, gradient evaluations
(per-sample backward passes) and wall time, and the fast/scratch ratios.

    python benchmarks/bench_critical_eps.py [--width 64] [--n-train N]

With ``--study``, instead: eps* of both estimators for several MLP widths and training-set
sizes, each over several seeds (model initialisation and minibatch order), as reported in
``docs/critical_eps.md``:

    python benchmarks/bench_critical_eps.py --study [--seeds 3]
"""

from __future__ import annotations

import argparse
import time

import advdyn  # noqa: F401
from advdyn.config.critical import default_critical_config
from advdyn.workflows.critical import run_critical


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--study", action="store_true", help="widths x training-set sizes")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if args.study:
        study(args.seeds)
        return
    overrides: dict = {"fgm.enabled": False}
    if args.width:
        overrides["model.width"] = args.width
    if args.n_train:
        overrides["data.n_train"] = args.n_train
    cfg = default_critical_config().with_overrides(**overrides)

    t = time.perf_counter()
    run_critical(cfg.with_overrides(**{"train.epochs": 1, "fast.epochs": 1}), None, False)
    print(f"warm-up (compilation, 1 epoch per run): {time.perf_counter() - t:.1f} s")

    res = run_critical(cfg, None, progress=False)
    s, c = res.summary, res.summary["compute"]
    print(f"{s['data']}, n_train {s['n_train']}, {s['model']}, {s['norm']} PGD")
    print(f"clean test loss (level): {s['clean_test_loss']:.4f}")
    print("| estimator | eps* | gradient evaluations | compute s | compile s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    sc, ft = c["scratch_timing"], c["fast_timing"]
    print(f"| from scratch ({len(cfg.scratch.eps)} radii + clean, {cfg.train.epochs} epochs) "
          f"| {s['eps_star_scratch']:.4f} | {c['scratch_grad_evals']:,} "
          f"| {sc['compute_s']:.2f} | {sc['compile_s']:.2f} |")
    print(f"| fine-tune ({len(cfg.fast.eps)} radii + {len(cfg.fast.refine)} refinement, "
          f"{cfg.fast.epochs} epochs, {s['fast_method']}) | {s['eps_star_fast']:.4f} "
          f"| {c['fast_grad_evals']:,} | {ft['compute_s']:.2f} | {ft['compile_s']:.2f} |")
    st = s["strong_evaluation"]
    if st is not None:
        print(f"strong evaluation ({', '.join(st['attacks'])}): eps* scratch "
              f"{st['eps_star_scratch']:.4f}, fine-tune {st['eps_star_fast']:.4f}; "
              f"{st['timing']['compute_s']:.2f} s compute, {st['timing']['compile_s']:.2f} s "
              "compile")
    e = s["eps_star"]
    print(f"eps* over {len(s['repeats'])} splits/seeds: {e['mean']:.4f}, "
          f"{e['level']:.0%} prediction interval [{e['lower']:.4f}, {e['upper']:.4f}]")
    print(f"isotonic extrapolation: {s['eps_star_fast_isotonic']:.4f}")
    print(f"relative difference |fast - scratch| / scratch: {s['relative_difference']:.3f} "
          "(target < 0.25)")
    print(f"fast / scratch gradient evaluations: {c['fast_over_scratch_grad_evals']:.3f}; "
          f"including the clean run: {c['fast_plus_clean_over_scratch_grad_evals']:.3f} "
          "(target <= 1/3)")
    print(f"fast / scratch compute time (compilation excluded): "
          f"{c['fast_over_scratch_compute_time']:.3f}")


def study(seeds: int) -> None:
    """eps* (mean +- sd over seeds) for widths 16/64/256 at n = 1297 and n = 300/600 at 64.

    Smaller training sets get proportionally more epochs (from scratch and fine-tuning), so
    that every run makes about the same number of SGD steps as the default (30 epochs of
    20 minibatches): with 30 epochs at n = 300 the clean model is far from converged and
    fine-tuning keeps lowering its *clean* training loss.
    """
    import numpy as np

    settings = [(16, None), (64, None), (256, None), (64, 600), (64, 300)]
    print("| width | n_train | clean test loss | eps* scratch | eps* fine-tune (linear) |"
          " per-seed scratch |")
    print("| ---: | ---: | ---: | ---: | ---: | --- |")
    for width, n in settings:
        rows = []
        for seed in range(seeds):
            o = {"fgm.enabled": False, "model.width": width, "model.seed": seed,
                 "train.seed": seed}
            if n:
                o["data.n_train"] = n
                o["train.epochs"] = round(30 * 1297 / n)
                o["fast.epochs"] = round(5 * 1297 / n)
            s = run_critical(default_critical_config().with_overrides(**o), None, False).summary
            rows.append((s["clean_test_loss"], s["eps_star_scratch"], s["eps_star_fast"],
                         s["n_train"]))
        a = np.asarray([r[:3] for r in rows], dtype=float)
        m, sd = a.mean(0), a.std(0, ddof=1) if seeds > 1 else np.zeros(3)
        print(f"| {width} | {rows[0][3]} | {m[0]:.3f} | {m[1]:.4f} +- {sd[1]:.4f} "
              f"| {m[2]:.4f} +- {sd[2]:.4f} | {', '.join(f'{v:.4f}' for v in a[:, 1])} |",
              flush=True)


if __name__ == "__main__":
    main()
