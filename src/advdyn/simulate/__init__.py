"""Simulators: streaming adversarial SGD and the adversarial homogenized SGD (the SDE).

One driver (grid, records, divergence check) serves both; they return
[`Solution`][advdyn.solution.Solution] pytrees and report progress through a callback.
"""

from advdyn.simulate.hsgd import simulate_hsgd
from advdyn.simulate.sgd import TimeGrid, sgd_iterates, simulate_sgd, time_grid

__all__ = ["TimeGrid", "sgd_iterates", "simulate_hsgd", "simulate_sgd", "time_grid"]
