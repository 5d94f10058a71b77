"""Start-up latency of ``advdyn run --method ode`` (issue 14, "answers in about a second").

Prints, from one run, the wall and CPU seconds (user + system of the child process) of

* ``python -c "import jax.numpy"`` (the yardstick),
* ``advdyn run --method ode -q`` on the embedded default problem with an empty compilation
  cache (``ADVDYN_CACHE_DIR`` a fresh temporary folder): the first run, which compiles;
* the same command again (the persistent cache is warm), ``--repeats`` times (median),
* and, for reference, the second run with the caches off (``ADVDYN_NO_CACHE=1``);
* the *import floor*: ``python -c "import ..."`` of the third-party modules a warm run
  loads (:data:`FLOOR`), i.e. the least a run can cost with this stack.

Targets: warm run <= 4x the import of ``jax.numpy``; cold run <= 5.5 s.

With ``--paired SRC1,SRC2,...`` it instead times the warm run of several checkouts of
advdyn (each ``src`` folder put first on ``PYTHONPATH``, each with its own cache folder,
filled by one run first), interleaved over ``--repeats`` rounds with ``import jax.numpy``,
so that two versions are compared under the same load; with ``--cold`` each of those runs
gets an empty cache folder (first runs, which compile).

Usage::

    python benchmarks/bench_startup.py [--repeats 3]
    git worktree add /tmp/before <commit>
    python benchmarks/bench_startup.py --paired /tmp/before/src,src --repeats 6
    python benchmarks/bench_startup.py --paired /tmp/before/src,src --repeats 4 --cold
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# the third-party modules a warm run loads (its sys.modules at exit): JAX and equinox for the
# stored programs, pydantic/typer/rich for the config and the command line, xarray (which
# imports dask.array on the first DataArray, dask being installed for sweeps), netCDF4, the
# scipy.linalg that JAX's LAPACK kernels load, and matplotlib's Agg figure for risk.png;
# diffrax and optimistix only when a program is traced (a cache miss), and `distributed` no longer
# (advdyn.io writes NetCDF without asking Dask for its scheduler). Imported under the console
# script's garbage-collector policy (advdyn.__main__: collector off during the imports,
# everything frozen at exit), so that the floor is what a run cannot go below.
FLOOR = ("import gc; gc.disable(); "
         "import jax.numpy, equinox, pydantic, typer, rich, xarray, dask.array, netCDF4, "
         "scipy.linalg, matplotlib.figure, matplotlib.backends.backend_agg; gc.freeze()")


def _timed(cmd: list[str], env: dict) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def paired(sources: list[str], rounds: int, cold: bool = False) -> None:
    """Warm (or, with ``cold``, first) runs of several checkouts, interleaved (see the
    module docstring)."""
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        def env_for(i: int, src: str, r: int) -> dict:
            # a cold run gets a fresh, empty cache folder in every round
            cache = os.path.join(tmp, f"cache{i}-{r}" if cold else f"cache{i}")
            env = dict(os.environ, PYTHONPATH=os.path.abspath(src), ADVDYN_CACHE_DIR=cache)
            env.pop("ADVDYN_NO_CACHE", None)
            return env

        runs = {src: [py, "-m", "advdyn", "run", "--method", "ode", "-q", "-o",
                      os.path.join(tmp, f"out{i}")] for i, src in enumerate(sources)}
        if not cold:
            for i, src in enumerate(sources):  # fill each cache
                _timed(runs[src], env_for(i, src, 0))
        jnp, times = [], {src: [] for src in sources}
        for r in range(rounds):
            jnp.append(_timed([py, "-c", "import jax.numpy"], dict(os.environ))[0])
            for i, src in enumerate(sources):
                times[src].append(_timed(runs[src], env_for(i, src, r))[0])
    kind = "cold" if cold else "warm"
    print(f"load average {os.getloadavg()[0]:.1f}; {rounds} interleaved rounds; wall s")
    base = statistics.median(jnp)
    print(f"{'import jax.numpy':<40} median {base:.2f}")
    for src in sources:
        med = statistics.median(times[src])
        print(f"{kind + ' run, ' + src:<40} median {med:.2f} ({med / base:.1f}x), min "
              f"{min(times[src]):.2f}, all {' '.join(f'{x:.2f}' for x in times[src])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--paired", type=str, default=None,
                        help="comma-separated src folders of checkouts to compare")
    parser.add_argument("--cold", action="store_true",
                        help="with --paired: time first runs, each with an empty cache")
    args = parser.parse_args()
    if args.paired:
        paired(args.paired.split(","), args.repeats, cold=args.cold)
        return
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, ADVDYN_CACHE_DIR=os.path.join(tmp, "cache"))
        env.pop("ADVDYN_NO_CACHE", None)
        run = [py, "-m", "advdyn", "run", "--method", "ode", "-q", "-o", os.path.join(tmp, "o")]
        jnp = [_timed([py, "-c", "import jax.numpy"], env) for _ in range(args.repeats)]
        floor = [_timed([py, "-c", FLOOR], env) for _ in range(args.repeats)]
        cold = _timed(run, env)
        warm = [_timed(run, env) for _ in range(args.repeats)]
        off = _timed(run, dict(env, ADVDYN_NO_CACHE="1"))
    med = lambda rows, i: statistics.median(r[i] for r in rows)  # noqa: E731
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    print(f"{'':<38} {'wall s':>7} {'cpu s':>7} {'wall / import':>13} {'cpu / import':>12}")
    base_w, base_c = med(jnp, 0), med(jnp, 1)
    for name, (w, c) in (("python -c 'import jax.numpy'", (base_w, base_c)),
                         ("import floor (the stack a run loads)", (med(floor, 0), med(floor, 1))),
                         ("advdyn run --method ode, cold", cold),
                         ("advdyn run --method ode, warm", (med(warm, 0), med(warm, 1))),
                         ("advdyn run --method ode, no cache", off)):
        print(f"{name:<38} {w:>7.2f} {c:>7.2f} {w / base_w:>13.1f} {c / base_c:>12.1f}")


if __name__ == "__main__":
    main()
