"""CPU per Tsit5 step and point of the phase diagram's batched ODE, against diffrax's floor.

The problem of ``bench_phase.py`` (``examples/sweeps/epsilon_gamma.toml``: 64 bins, state of
192 doubles a point, ``t_max = 10``) at ``eps = 0.3, gamma = 1``, solved by
``jax.jit(jax.vmap(integrate_ode))`` on one CPU device for batches of ``B`` identical points
and 2, 11 or 61 records, recording interval by interval (`solve_ode`'s integration) and in one
pass with the records read off the interpolant (``Integrator.dense``, the phase diagram's);
then the floor: a plain ``diffeqsolve`` (Tsit5, same controller, one
interval) of ``dy/dt = -y`` on a state of the same shape (three leaves of 64) or one leaf of
192, under ``vmap``. Best of 5 calls, in CPU seconds of this process.

    cd benchmarks && python bench_ode_step.py [--records 61 --batches 16 --no-floor]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

import diffrax
import jax
import jax.numpy as jnp

from advdyn.config.build import integrator_for, make_learning_rate
from advdyn.simulate.sgd import time_grid
from advdyn.theory.ode import integrate_ode
from advdyn.theory.stationary import optimum
from advdyn.workflows.bins import spectral_instances
from advdyn.workflows.phase import _at_point
from advdyn.workflows.sweep import load_sweep

jax.config.update("jax_enable_x64", True)
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sweeps" / "epsilon_gamma.toml"
NAMES = ["problem.epsilon", "lr.gamma"]


def best_cpu(f, x, reps=5) -> float:
    jax.block_until_ready(f(x))
    best = float("inf")
    for _ in range(reps):
        start = time.process_time()
        jax.block_until_ready(f(x))
        best = min(best, time.process_time() - start)
    return best


def integrate(n_times: int, batch: int, dense: bool = False) -> tuple[int, float]:
    spec = load_sweep(EXAMPLE)
    config = spec.base.with_overrides(**spec.sweep.overrides, **{"run.n_times": n_times})
    _, inst = spectral_instances(config.with_overrides(**{"run.bins_relaxed": False}))
    lr = make_learning_rate(config.lr, inst, optimum=optimum(inst))
    times = time_grid(config.problem.d, config.run.t_max, n_times, config.run.block_size).times
    integrator = integrator_for(config.run, inst, lr, times)
    if dense:
        integrator = dataclasses.replace(integrator, dense=True)

    def point(values):
        i, r = _at_point(NAMES, inst, lr, values)
        sol = integrate_ode(i, r, jnp.asarray(times), integrator, throw=False)
        return sol.ys["adv_risk"], sol.steps

    values = jnp.tile(jnp.asarray([[0.3, 1.0]]), (batch, 1))
    f = jax.jit(jax.vmap(point)).lower(values).compile()
    return int(f(values)[1][0]), best_cpu(f, values)


def floor(leaves: int, size: int, batch: int) -> tuple[int, float]:
    def solve(rate):
        y0 = tuple(jnp.ones(size) for _ in range(leaves))
        term = diffrax.ODETerm(lambda t, y, a: jax.tree.map(lambda u: -a * u, y))
        sol = diffrax.diffeqsolve(
            term, diffrax.Tsit5(), 0.0, 10.0, None, y0, args=rate,
            saveat=diffrax.SaveAt(t1=True), max_steps=100_000, throw=False,
            stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-20))
        return sol.stats["num_steps"]

    rates = jnp.ones(batch)
    f = jax.jit(jax.vmap(solve)).lower(rates).compile()
    return int(f(rates)[0]), best_cpu(f, rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[2, 11, 61])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--no-floor", action="store_true", help="skip the plain diffeqsolve")
    args = parser.parse_args()
    print(f"jax {jax.__version__}, diffrax {diffrax.__version__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    for n_times in args.records:
        for batch in args.batches:
            for dense in (False, True):
                steps, cpu = integrate(n_times, batch, dense)
                print(f"integrate_ode{' (dense)' if dense else ''}, {n_times:2d} records, batch "
                      f"{batch:2d}: {steps} steps, {cpu / batch * 1e3:.3f} ms a point, "
                      f"{cpu / batch / steps * 1e6:5.2f} us a step and point", flush=True)
    for leaves, size in () if args.no_floor else ((3, 64), (1, 192)):
        for batch in (1, 16, 64, 256):
            steps, cpu = floor(leaves, size, batch)
            print(f"diffeqsolve of -y, {leaves} x {size}, batch {batch:3d}: {steps} steps, "
                  f"{cpu / batch / steps * 1e6:5.2f} us a step and point", flush=True)
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
