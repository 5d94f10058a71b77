"""Import cost: ``import advdyn`` against ``import jax`` in fresh interpreters.

Prints the median wall time of each statement over ``--repeats`` fresh processes (run
interleaved, so machine load affects all alike), the extra time of advdyn over jax, and
whether importing advdyn left JAX's x64 flag as it was.

    python benchmarks/bench_import.py --repeats 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

STATEMENTS = {
    "import jax": "import jax",
    "import jax.numpy": "import jax.numpy",
    "import advdyn": "import advdyn",
    "advdyn.solve_ode (first use)": "import advdyn; advdyn.solve_ode",
    "import advdyn.cli": "import advdyn.cli",
}

_PROBE = """
import json, sys, time
t0 = time.perf_counter()
exec({stmt!r})
dt = time.perf_counter() - t0
import jax
print(json.dumps({{"dt": dt, "x64": bool(jax.config.jax_enable_x64)}}))
"""


def measure(stmt: str) -> tuple[float, bool]:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(stmt=stmt)], check=True,
                         capture_output=True, text=True).stdout
    info = json.loads(out.strip().splitlines()[-1])
    return info["dt"], info["x64"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {k: [] for k in STATEMENTS}
    x64 = {}
    for _ in range(args.repeats):
        for label, stmt in STATEMENTS.items():
            dt, flag = measure(stmt)
            times[label].append(dt)
            x64[label] = flag
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'statement':32s} {'median s':>9s} {'min s':>7s} {'max s':>7s}  x64 after")
    for label, values in times.items():
        print(f"{label:32s} {med[label]:9.3f} {min(values):7.3f} {max(values):7.3f}  "
              f"{x64[label]}")
    extra = med["import advdyn"] - med["import jax"]
    print(f"\nimport advdyn / import jax: {med['import advdyn'] / med['import jax']:.2f}x "
          f"(extra {extra:+.3f} s over jax)")


if __name__ == "__main__":
    main()
