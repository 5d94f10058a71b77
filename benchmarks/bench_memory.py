"""Memory (issue 14): :func:`~advdyn.workflows.memory.estimate_memory` against XLA's peak.

The resident set of a Python process running JAX is dominated by the runtime and the
compiled code (630-660 MB here whatever the run), so the run's own arrays are measured with
XLA's buffer accounting instead: every jitted function a run executes is lowered and
compiled ahead of time with the run's arguments (nothing is executed), and
``compiled.memory_analysis()`` gives its argument, output, temporary and aliased bytes per
device. The run's peak is the largest, over those executables, of

    devices x (argument + output + temp - alias)

(the replicates' executable runs on every device of the replicate mesh, each device with
its own copy of the instance arrays it reads and its own temporaries). The executables:

* SGD / HSGD: ``simulate.driver._interval_jit`` (one recording interval: the sampling
  blocks, the steps and the recorded statistics) and ``simulate.driver._first_jit`` (the
  records at ``t = 0``), with the CLI's one XLA CPU device per core
  (``--xla_force_host_platform_device_count``, set below);
* per-direction ODE: ``theory.ode._solve`` (Tsit5, record to record).

Not counted (they are outside XLA or below 2% of every row): numpy copies of the records,
``theta_0`` and the optimum when an executable does not read them.

``--rss`` adds an independent check of XLA's figures at large ``d``: in a fresh process the
executable is compiled ahead of time and its arguments built, the peak resident set is reset
(``/proc/self/clear_refs``), the executable runs once, and the growth of the peak (``VmHWM``
minus ``VmRSS`` before) is compared with what XLA says the call allocates: its outputs and
temporaries on every device, plus the argument copies on the devices other than the first.

Usage::

    python benchmarks/bench_memory.py [--rss] [--sizes 500,4000,32000]
"""

from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_"
                               f"device_count={max(1, min(os.cpu_count() or 1, 8))}").strip()

import argparse
import json
import subprocess
import sys

import numpy as np

SGD_SIZES = ((500, 20.0), (4000, 2.0), (32000, 0.2))  # as bench_sgd_numpy.py
ODE_SIZES = (10**4, 10**5)
GAMMA = 0.8


def sgd_config(d: int, t_max: float, replicates: int, method: str = "sgd"):
    """The run of ``bench_sgd_numpy.py``: float32, 11 records, default problem."""
    from advdyn.config.schema import default_config

    return default_config().with_overrides(**{
        "problem.d": d, "run.t_max": t_max, "run.n_times": 11, "run.replicates": replicates,
        "run.methods": [method], "run.dtype": "float32",
    })


def ode_config(d: int):
    """The default problem's per-direction ODE (no bins)."""
    from advdyn.config.schema import default_config

    return default_config().with_overrides(**{"problem.d": d, "run.methods": ["ode"]})


def xla_bytes(compiled) -> dict:
    """``memory_analysis()`` of a compiled function (equinox or JAX), bytes per device.

    Returns
    -------
    dict or None
        ``argument``, ``output``, ``temp``, ``alias``; ``None`` when the backend gives no
        analysis.
    """
    compiled = getattr(compiled, "compiled", compiled)  # equinox's wrapper
    m = compiled.memory_analysis()
    if m is None:
        return None
    return {"argument": int(m.argument_size_in_bytes), "output": int(m.output_size_in_bytes),
            "temp": int(m.temp_size_in_bytes), "alias": int(m.alias_size_in_bytes)}


def _total(b: dict) -> int:
    return b["argument"] + b["output"] + b["temp"] - b["alias"]


def sgd_executables(config, method: str = "sgd"):
    """Compile (without running) the executables of ``simulate_sgd``/``simulate_hsgd``.

    Returns
    -------
    list of (str, Compiled, int)
        Name, the compiled function and the number of devices it runs on, with exactly the
        arguments :func:`advdyn.simulate.driver.run_replicates` passes for ``config``.
    """
    import jax
    import jax.numpy as jnp

    import advdyn as ad
    from advdyn.config.build import instantiate
    from advdyn.simulate import driver as D
    from advdyn.simulate.hsgd import hsgd_block, hsgd_key
    from advdyn.simulate.sgd import sgd_block
    from advdyn.simulate.streams import stream_words
    from advdyn.theory.recording import make_recorder
    from advdyn.theory.stationary import adversarial_optimum

    rc = config.run
    with jax.enable_x64(True):
        inst = instantiate(config.problem)
        opt = adversarial_optimum(inst)
        lr = ad.Constant(GAMMA)
        key = ad.stream_key(0)  # the key's value does not change any size
        block_fn = sgd_block if method == "sgd" else hsgd_block
        words = stream_words(key if method == "sgd" else hsgd_key(key))
        R, d = rc.replicates, inst.d
        grid = D.time_grid(d, rc.t_max, rc.n_times, rc.block_size)
        thetas = jnp.broadcast_to(inst.theta0.astype(jnp.dtype(rc.dtype)), (R, d))
        mesh = D._replicate_mesh(R)
        times = jnp.asarray(grid.times)
        recorder = make_recorder(inst, opt)
        bound = D.divergence_bound(inst, rc.divergence_factor)
        advance = D._interval_jit.lower(
            block_fn, (thetas, jnp.asarray(0, jnp.int32)), jnp.asarray(1, jnp.int64), words,
            times, grid.stride, grid.block, inst, lr, recorder, bound, mesh,
        ).compile()
        record = D._first_jit.lower(thetas, times, inst, lr, recorder, bound).compile()
    n_dev = 1 if mesh is None else int(mesh.size)
    return [("advance", advance, n_dev), ("record", record, 1)]


def ode_executables(config):
    """Compile (without running) the per-direction ODE solve of ``config`` (Tsit5)."""
    import jax
    import jax.numpy as jnp

    import advdyn as ad
    from advdyn.config.build import instantiate
    from advdyn.theory import ode as O
    from advdyn.theory.recording import make_recorder
    from advdyn.theory.stationary import adversarial_optimum

    rc = config.run
    f64 = jnp.float64
    with jax.enable_x64(True):
        inst = instantiate(config.problem)
        rec = make_recorder(inst, adversarial_optimum(inst))
        times = jnp.asarray(np.linspace(0, rc.t_max, rc.n_times))
        solve = O._solve.lower(inst, ad.Constant(GAMMA), rec, times, jnp.asarray(1e-8, f64),
                               jnp.asarray(1e-20, f64), 1_000_000, jnp.asarray(1e6, f64),
                               "tsit5").compile()
    return [("solve", solve, 1)]


def xla_peak(executables) -> tuple[int, str, dict]:
    """The run's peak by XLA's accounting: the largest ``devices x (arg + out + temp - alias)``.

    Returns
    -------
    peak : int
        Bytes.
    name : str
        The executable that sets it.
    per_device : dict
        Its ``memory_analysis`` (bytes per device).
    """
    best = (-1, "", {})
    for name, compiled, n_dev in executables:
        b = xla_bytes(compiled)
        if b is None:
            return None
        if n_dev * _total(b) > best[0]:
            best = (n_dev * _total(b), name, {**b, "devices": n_dev})
    return best


def memory_table(sizes: list[int]) -> None:
    import jax

    from advdyn.workflows.memory import estimate_memory

    print(f"jax {jax.__version__}, {len(jax.devices())} CPU devices; XLA memory_analysis, "
          "MB = 1e6 bytes")
    print(f"{'run':>12} {'d':>6} {'R':>2} {'dev':>3} {'est MB':>8} {'XLA MB':>8} {'est/XLA':>7} "
          f"{'exe':>7} {'arg MB':>7} {'out MB':>7} {'temp MB':>8}")
    f64 = {"run.dtype": "float64"}
    logistic = {"problem.task": {"kind": "classification", "teacher_norm": 1.0, "mean_norm": 1.5},
                "problem.loss": "logistic"}  # a two-component mixture (C = 2)
    rows = [("sgd", "sgd", d, t, R, {}) for d, t in SGD_SIZES if d in sizes for R in (1, 8)]
    if 32000 in sizes:
        rows += [("hsgd", "hsgd", 32000, 0.2, 8, {}), ("sgd f64", "sgd", 32000, 0.2, 8, f64),
                 ("sgd mixture", "sgd", 32000, 0.2, 8, logistic)]
    rows += [("ode", "ode", d, None, 1, {}) for d in ODE_SIZES]
    worst = 0.0
    for label, method, d, t_max, R, extra in rows:
        if method == "ode":
            cfg = ode_config(d)
            exes = ode_executables(cfg)
        else:
            cfg = sgd_config(d, t_max, R, method).with_overrides(**extra)
            exes = sgd_executables(cfg, method)
        res = xla_peak(exes)
        est = estimate_memory(cfg, available=(1 << 40, "n/a")).peak
        if res is None:
            print(f"{label:>12} {d:>6} {R:>2}  memory_analysis() not available on this backend")
            continue
        peak, name, b = res
        worst = max(worst, abs(est / peak - 1))
        print(f"{label:>12} {d:>6} {R:>2} {b['devices']:>3} {est / 1e6:>8.3f} {peak / 1e6:>8.3f} "
              f"{est / peak:>7.3f} {name:>7} {b['argument'] / 1e6:>7.3f} {b['output'] / 1e6:>7.3f} "
              f"{b['temp'] / 1e6:>8.3f}", flush=True)
    print(f"largest |est / XLA - 1| = {worst:.3f} (target <= 0.30)")


_RSS_SNIPPET = """
import gc, json, sys
sys.path.insert(0, {here!r})
import jax
import bench_memory as b
method, d, t_max, R = {method!r}, {d}, {t_max}, {R}
if method == "ode":
    cfg = b.ode_config(d).with_overrides(**{{"run.t_max": t_max, "run.n_times": 2}})
else:
    cfg = b.sgd_config(d, t_max, R, method)
import advdyn as ad, jax.numpy as jnp
from advdyn.config.build import instantiate
from advdyn.theory.stationary import adversarial_optimum
from advdyn.theory.recording import make_recorder
from advdyn.simulate import sgd as S
from advdyn.simulate.streams import stream_words
from advdyn.theory import ode as O
f64 = jnp.float64
with jax.enable_x64(True):
    inst = instantiate(cfg.problem)
    lr = ad.Constant(b.GAMMA)
    if method == "ode":
        rec = make_recorder(inst, adversarial_optimum(inst))
        times = jnp.linspace(0.0, t_max, 2)
        args = (inst, lr, rec, times, jnp.asarray(1e-8, f64), jnp.asarray(1e-20, f64),
                1_000_000, jnp.asarray(1e6, f64), "tsit5")
        fn, n_dev = O._solve, 1
    else:
        from advdyn.simulate import driver as D
        grid = D.time_grid(d, t_max, 2, 64)
        mesh = D._replicate_mesh(R)
        thetas = jnp.broadcast_to(inst.theta0.astype(jnp.float32), (R, d))
        rec = make_recorder(inst, adversarial_optimum(inst))
        args = (S.sgd_block, (thetas, jnp.asarray(0, jnp.int32)), jnp.asarray(1, jnp.int64),
                stream_words(ad.stream_key(0)), jnp.asarray(grid.times), grid.stride,
                grid.block, inst, lr, rec, D.divergence_bound(inst, 1e6), mesh)
        fn, n_dev = D._interval_jit, 1 if mesh is None else int(mesh.size)
    compiled = fn.lower(*args).compile()
    xb = b.xla_bytes(compiled)
    gc.collect()
    def status(key):
        for line in open('/proc/self/status'):
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    base = status('VmRSS')
    open('/proc/self/clear_refs', 'w').write('5')  # VmHWM := VmRSS
    out = compiled(*args)
    jax.block_until_ready(out)
    peak = status('VmHWM')
print(json.dumps({{'base': base, 'peak': peak, 'xla': xb, 'devices': n_dev}}))
"""


def rss_check(method: str, d: int, t_max: float, replicates: int) -> dict:
    """Growth of the peak resident set during one call, in a fresh process, against XLA.

    Returns
    -------
    dict
        ``grown`` (``VmHWM`` during the call minus ``VmRSS`` before it, bytes) and
        ``predicted`` (outputs and temporaries on every device plus the argument copies on
        the devices other than the first, from ``memory_analysis``).
    """
    code = _RSS_SNIPPET.format(here=os.path.dirname(os.path.abspath(__file__)), method=method,
                               d=d, t_max=t_max, R=replicates)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    xb, n = r["xla"], r["devices"]
    predicted = n * (xb["output"] + xb["temp"] - xb["alias"]) + (n - 1) * xb["argument"]
    return {"grown": r["peak"] - r["base"], "predicted": predicted, "base": r["base"], **xb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=str, default="500,4000,32000",
                        help="SGD dimensions (the ODE rows are d = 1e4, 1e5)")
    parser.add_argument("--rss", action="store_true",
                        help="also check XLA's figures against the resident set at large d")
    args = parser.parse_args()
    memory_table([int(s) for s in args.sizes.split(",")])
    if args.rss:
        print("\nresident-set check (fresh process per row; MB = 1e6 bytes)")
        print(f"{'run':>5} {'d':>8} {'R':>2} {'XLA allocs MB':>13} {'RSS growth MB':>13} "
              f"{'ratio':>6} {'RSS before MB':>13}")
        for method, d, t_max, R in (("sgd", 500_000, 64 / 500_000, 1),
                                    ("sgd", 500_000, 64 / 500_000, 2),
                                    ("ode", 1_000_000, 0.01, 1)):
            r = rss_check(method, d, t_max, R)
            print(f"{method:>5} {d:>8} {R:>2} {r['predicted'] / 1e6:>13.1f} "
                  f"{r['grown'] / 1e6:>13.1f} {r['grown'] / r['predicted']:>6.3f} "
                  f"{r['base'] / 1e6:>13.1f}", flush=True)


if __name__ == "__main__":
    main()
