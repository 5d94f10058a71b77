"""Simulators: streaming adversarial SGD (on Gaussian samples or a data set's rows) and the
adversarial homogenized SGD (the SDE).

One driver (grid, records, divergence check; `advdyn.simulate.driver`) serves both, as a
pure solve (`integrate_sgd`, `integrate_hsgd`) and as a host run (`simulate_sgd`,
`simulate_hsgd`); they return
[`Solution`][advdyn.solution.Solution] pytrees and report progress through a callback.
"""

from advdyn.simulate.data import integrate_data_sgd, simulate_data_sgd
from advdyn.simulate.driver import TimeGrid, time_grid
from advdyn.simulate.hsgd import integrate_hsgd, simulate_hsgd
from advdyn.simulate.sgd import integrate_sgd, sgd_iterates, simulate_sgd

__all__ = ["TimeGrid", "integrate_data_sgd", "integrate_hsgd", "integrate_sgd", "sgd_iterates",
           "simulate_data_sgd", "simulate_hsgd", "simulate_sgd", "time_grid"]
