"""XLA CPU compile options for advdyn's stored programs (issue 14, cold start-up).

For each setting of ``XLA_FLAGS`` below, a fresh interpreter compiles the adversarial
optimum's fixed-point solve and the per-direction ODE of the default problem
(``d = 1000``; Tsit5, 61 records) ahead of time and reports the compile time (wall and
CPU seconds: XLA's CPU compiler runs on several threads) and the run time of the compiled
programs at ``d = 1000`` and ``d = 10^5`` (min of 3 after a first call). advdyn compiles its
stored programs with ``advdyn.cli._programs.CPU_COMPILER_OPTIONS``; this script measures
them through ``XLA_FLAGS`` (process-wide) so that every candidate is measured the same way.

Usage::

    python benchmarks/bench_compile_options.py
"""

from __future__ import annotations

import os
import subprocess
import sys

SETTINGS = (
    "",
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_backend_optimization_level=1",
    "--xla_backend_optimization_level=0",
    "--xla_cpu_parallel_codegen_split_count=1",
    "--xla_cpu_use_thunk_runtime=false",
    "--xla_llvm_disable_expensive_passes=true",
)

CHILD = r'''
import time
import jax, jax.numpy as jnp, numpy as np
import advdyn
from advdyn.theory import ode, stationary as st

def best(f, n=3):
    jax.block_until_ready(f())
    out = []
    for _ in range(n):
        t = time.perf_counter(); jax.block_until_ready(f()); out.append(time.perf_counter() - t)
    return min(out)

times = np.linspace(0, 6, 61)
row = []
for d in (1000, 100000):
    inst = advdyn.instantiate(advdyn.default_config().with_overrides(**{"problem.d": d}).problem)
    with jax.enable_x64(True):
        low = st._optimum.lower(inst, 1e-12, 1e-9)
        c, t = time.process_time(), time.perf_counter()
        low.compile()
        fp = (time.perf_counter() - t, time.process_time() - c)
        opt = st.adversarial_optimum(inst)
        args = ode._arguments(inst, advdyn.Constant(0.8), times, jnp.asarray(times), 1e-8,
                              1e-20, 10**6, 1e6, opt, "auto", None)[0]
        low = ode._solve.lower(*args)
        c, t = time.process_time(), time.perf_counter()
        compiled = low.compile()
        oc = (time.perf_counter() - t, time.process_time() - c)
        run_ode = best(lambda: compiled(*args))
        run_fp = best(lambda: st._optimum(inst, 1e-12, 1e-9))
    if d == 1000:
        row += [*fp, *oc]
    row += [run_ode * 1e3, run_fp * 1e3]
print("ROW", " ".join(f"{v:.3f}" for v in row))
'''


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    head = ("XLA_FLAGS", "fp compile s", "fp CPU s", "ODE compile s", "ODE CPU s",
            "ODE 1e3 ms", "fp 1e3 ms", "ODE 1e5 ms", "fp 1e5 ms")
    print(" | ".join(head))
    for flags in SETTINGS:
        env = dict(os.environ, XLA_FLAGS=flags)
        out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                             text=True)
        rows = [line for line in out.stdout.splitlines() if line.startswith("ROW")]
        if not rows:  # e.g. a flag this XLA does not know (it aborts)
            print(f"{flags or '(default)'} | failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        values = rows[-1].split()[1:]
        print(" | ".join([flags or "(default)", *values]))


if __name__ == "__main__":
    main()
