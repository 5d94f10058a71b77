"""Benchmarks of the posterior room (seed 003).

Prints, from one run on the current machine:

* Hessian of the adversarial training loss of the digits MLP (64 -> width -> 10, PGD
  l-inf inputs held fixed): time of the exact Hessian, of a Hutchinson trace and of a
  Lanczos top-k, each after compilation (compile time printed apart), and their relative
  errors against the exact Hessian (trace; top-k eigenvalues);
* the stationary Lyapunov solve against dimension: eigenbasis path vs dense (Smith doubling
  on the 2p x 2p momentum system) vs Kronecker (small p only).

Usage::

    python benchmarks/bench_posterior.py [--width 32] [--probes 32] [--k 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from advdyn.adversarial import Attack, load_digits, make_model
from advdyn.posterior import (
    exact_hessian,
    flat_loss,
    hutchinson_trace,
    hvp,
    lanczos_top_k,
    solve_discrete_lyapunov,
    stationary_covariance,
)
from advdyn.posterior.covariance import noise_matrix, transition_matrix
from advdyn.precision import x64


def _timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready([x for x in jax.tree.leaves(out) if isinstance(x, jax.Array)])
    return out, time.perf_counter() - t


def bench_hessian(width: int, probes: int, k: int, n: int = 256) -> None:
    data = load_digits(n_train=n, n_test=300)
    model = make_model("mlp", (64,), 10, width, seed=0)
    attack = Attack(0.1, norm="linf", method="pgd", steps=5, clip=(0.0, 1.0))
    with x64():
        loss = flat_loss(model, data.x_train, data.y_train, attack, dtype=jnp.float64)
        p = loss.w.shape[0]
        _, t_c = _timed(exact_hessian, loss)
        H, t_h = _timed(exact_hessian, loss)
        H = np.asarray(H)
        evals = np.sort(np.linalg.eigvalsh(H))[::-1]
        op = hvp(loss)
        key = jax.random.key(0)
        _, t_tc = _timed(hutchinson_trace, op, p, key, probes)
        tr, t_t = _timed(hutchinson_trace, op, p, jax.random.key(1), probes)
        _, t_lc = _timed(lanczos_top_k, op, p, k, key, 4 * k)
        top, t_l = _timed(lanczos_top_k, op, p, k, jax.random.key(1), 4 * k)
    err_tr = abs(float(tr.value) - np.trace(H)) / abs(np.trace(H))
    err_top = np.abs(np.asarray(top.values) - evals[:k]) / np.abs(evals[:k])
    print(f"digits MLP width {width}: p = {p} parameters, n = {n} samples, PGD-5 inputs")
    print("| estimate | first call s (compile) | run s | relative error |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| exact Hessian (jax.hessian) | {t_c:.2f} | {t_h:.3f} | 0 |")
    print(f"| Hutchinson trace, {probes} probes | {t_tc:.2f} | {t_t:.3f} | {err_tr:.3f} "
          f"(SE/trace {float(tr.stderr) / np.trace(H):.3f}) |")
    print(f"| Lanczos top-{k}, {4 * k} iterations | {t_lc:.2f} | {t_l:.3f} | "
          f"max {err_top.max():.1e} |")


def bench_lyapunov(dims=(8, 32, 128, 256)) -> None:
    rng = np.random.default_rng(0)
    print("| p | eigen path s | dense (doubling, 2p x 2p) s | Kronecker s | max rel. diff |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    with x64():
        for p in dims:
            U, _ = np.linalg.qr(rng.standard_normal((p, p)))
            h, c = rng.uniform(0.1, 2.0, p), rng.uniform(0.1, 1.0, p)
            H, C = U @ np.diag(h) @ U.T, U @ np.diag(c) @ U.T
            eta, m = 0.05, 0.9
            stationary_covariance(H, C, eta, m, 8, method="eigen")
            S_e, t_e = _timed(stationary_covariance, H, C, eta, m, 8, "eigen")
            stationary_covariance(H, C, eta, m, 8, method="doubling")
            S_d, t_d = _timed(stationary_covariance, H, C, eta, m, 8, "doubling")
            t_k = float("nan")
            if p <= 16:
                A = transition_matrix(H, eta, m)
                Q = noise_matrix(C, eta, 8)
                solve_discrete_lyapunov(A, Q, "kron")
                _, t_k = _timed(solve_discrete_lyapunov, A, Q, "kron")
            diff = np.abs(np.asarray(S_e.position) - np.asarray(S_d.position)).max()
            diff /= np.abs(np.asarray(S_e.position)).max()
            print(f"| {p} | {t_e:.4f} | {t_d:.4f} | {t_k:.4f} | {diff:.1e} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--probes", type=int, default=32)
    ap.add_argument("--k", type=int, default=5)
    args = ap.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}, jax {jax.__version__}")
    bench_hessian(args.width, args.probes, args.k)
    bench_lyapunov()


if __name__ == "__main__":
    main()
