"""Orchestration: from a config to results (compute, write, plot), and sweeps.

Workflows are where configs, the mathematics, files, progress bars and figures meet; the CLI
calls them and nothing below them calls back.
"""

from advdyn.workflows.bins import converge_bins, relaxed_eigenvalue
from advdyn.workflows.limits import limit_report, monotone_scan
from advdyn.workflows.phase import phase_diagram
from advdyn.workflows.run import RunResult, run
from advdyn.workflows.sweep import load_sweep, run_sweep

__all__ = [
    "RunResult",
    "converge_bins",
    "limit_report",
    "load_sweep",
    "monotone_scan",
    "phase_diagram",
    "relaxed_eigenvalue",
    "run",
    "run_sweep",
]
