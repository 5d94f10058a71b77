"""Labelled results and files: solver pytrees as xarray datasets, atomic writes, comparisons.

Everything that touches the file system or xarray lives here; the mathematics
([`advdyn.problem`][advdyn.problem], [`advdyn.theory`][advdyn.theory],
[`advdyn.simulate`][advdyn.simulate]) returns
[`Solution`][advdyn.solution.Solution] pytrees and never imports this package.
"""

from advdyn.io.arrays import load_npy
from advdyn.io.compare import compare, gap_over_time, relative_gap
from advdyn.io.files import atomic_path, folder_lock, put_in_place, temporary_path, write_json
from advdyn.io.netcdf import UNITS, as_dataset, make_dataset, read_netcdf, to_dataset, write_netcdf

__all__ = [
    "UNITS",
    "as_dataset",
    "atomic_path",
    "compare",
    "folder_lock",
    "gap_over_time",
    "load_npy",
    "make_dataset",
    "put_in_place",
    "read_netcdf",
    "relative_gap",
    "temporary_path",
    "to_dataset",
    "write_json",
    "write_netcdf",
]
