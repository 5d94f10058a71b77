"""Simulators: streaming adversarial SGD (on Gaussian samples or a data set's rows) and the
adversarial homogenized SGD (the SDE).

One driver (grid, records, divergence check) serves both; they return
[`Solution`][advdyn.solution.Solution] pytrees and report progress through a callback.
"""

from advdyn.simulate.data import simulate_data_sgd
from advdyn.simulate.hsgd import simulate_hsgd
from advdyn.simulate.sgd import TimeGrid, sgd_iterates, simulate_sgd, time_grid

__all__ = ["TimeGrid", "sgd_iterates", "simulate_data_sgd", "simulate_hsgd", "simulate_sgd",
           "time_grid"]
