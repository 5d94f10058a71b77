"""advdyn.io.write_netcdf: the same file as xarray's to_netcdf, without importing Dask's
distributed scheduler."""

from __future__ import annotations

import subprocess
import sys

import netCDF4
import numpy as np
import pytest
import xarray as xr

from advdyn.io import make_dataset, read_netcdf, write_netcdf


def _dataset() -> xr.Dataset:
    times = np.linspace(0.0, 2.0, 5)
    rng = np.random.default_rng(0)
    values = {"adv_risk": rng.random((3, 5)), "norm": np.full((3, 5), np.nan)}
    return make_dataset(times, values, "sgd", replicates=True,
                        attrs={"config": '{"d": 10}', "seed": 3, "eps": 0.5})


def _same_file(a_path, b_path) -> None:
    def same(x, y):
        try:
            return np.array_equal(x, y, equal_nan=True)
        except TypeError:  # strings
            return x == y

    with netCDF4.Dataset(a_path) as a, netCDF4.Dataset(b_path) as b:
        assert a.data_model == b.data_model
        assert a.ncattrs() == b.ncattrs()
        assert all(same(a.getncattr(k), b.getncattr(k)) for k in a.ncattrs())
        assert list(a.dimensions) == list(b.dimensions)
        assert list(a.variables) == list(b.variables)
        for name in a.variables:
            va, vb = a[name], b[name]
            assert va.dtype == vb.dtype and va.dimensions == vb.dimensions, name
            assert va.ncattrs() == vb.ncattrs(), name  # e.g. _FillValue, long_name, units
            assert all(same(va.getncattr(k), vb.getncattr(k)) for k in va.ncattrs()), name
            assert va.filters() == vb.filters(), name
            np.testing.assert_array_equal(va[:], vb[:])


def test_written_file_equals_to_netcdf(tmp_path):
    ds = _dataset()
    ds.to_netcdf(tmp_path / "xarray.nc", engine="netcdf4")
    write_netcdf(ds, tmp_path / "advdyn.nc")
    _same_file(tmp_path / "xarray.nc", tmp_path / "advdyn.nc")
    xr.testing.assert_identical(read_netcdf(tmp_path / "advdyn.nc"), ds)


def test_chunked_dataset_goes_through_to_netcdf(tmp_path):
    pytest.importorskip("dask")
    ds = _dataset()
    write_netcdf(ds.chunk({"replicate": 1}), tmp_path / "chunked.nc")
    xr.testing.assert_identical(read_netcdf(tmp_path / "chunked.nc"), ds)


def test_writing_does_not_import_dask_distributed(tmp_path):
    # to_netcdf asks Dask for its scheduler, which imports dask.distributed (0.2 s of a
    # command-line run); a fresh interpreter shows whether the writer still does
    code = (
        "import sys, numpy as np\n"
        "from advdyn.io import make_dataset, write_netcdf\n"
        "ds = make_dataset(np.arange(3.0), {'adv_risk': np.ones(3)}, 'ode')\n"
        f"write_netcdf(ds, {str(tmp_path / 'x.nc')!r})\n"
        "print('distributed' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
    assert (tmp_path / "x.nc").exists()


def test_unlimited_dimension_is_kept(tmp_path):
    ds = _dataset()
    ds.encoding["unlimited_dims"] = {"time"}
    ds.to_netcdf(tmp_path / "xarray.nc", engine="netcdf4")
    write_netcdf(ds, tmp_path / "advdyn.nc")
    with netCDF4.Dataset(tmp_path / "advdyn.nc") as f:
        assert f.dimensions["time"].isunlimited()
    _same_file(tmp_path / "xarray.nc", tmp_path / "advdyn.nc")


@pytest.mark.parametrize("value", [None, {"a": 1}, True])
def test_attribute_netcdf_cannot_hold_is_named(tmp_path, value):
    # such a dataset goes through to_netcdf, whose message names the attribute
    ds = _dataset()
    ds.attrs["odd_attribute"] = value
    with pytest.raises((TypeError, ValueError), match="odd_attribute"):
        write_netcdf(ds, tmp_path / "x.nc")
    assert not (tmp_path / "x.nc").exists()


def test_files_written_and_read_from_many_threads_at_once(tmp_path):
    # netCDF-C/HDF5 are not thread-safe: 8 threads writing and reading back 10 files each
    # crashed the process (segmentation fault; xarray's to_netcdf as well) before the writes
    # and reads held one lock (io.netcdf.NETCDF_LOCK). Run in a child process, so that a
    # crash fails this test rather than ending the test session.
    script = f"""
import threading
import numpy as np, xarray as xr
from advdyn.io import read_netcdf, write_netcdf
ds = xr.Dataset({{f"v{{i}}": ("time", np.arange(2000.0) + i) for i in range(20)}},
                coords={{"time": np.arange(2000.0)}})
bad = []
def work(k):
    for j in range(10):
        path = write_netcdf(ds, r"{tmp_path}" + f"/{{k}}-{{j}}.nc")
        if not read_netcdf(path).identical(ds):
            bad.append(path)
threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print(len(bad))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["0"]
    assert len(list(tmp_path.glob("*.nc"))) == 80


def test_a_netcdf_library_error_is_an_oserror_and_leaves_no_temporary(tmp_path, monkeypatch):
    # netCDF4 raises the C library's errors as RuntimeError ("NetCDF: HDF error" on a full
    # disk, seen on a 64 KiB tmpfs): the command line reports OSErrors as one line, exit 2,
    # and printed a traceback for this one
    import advdyn.io.netcdf as netcdf

    def full_disk(ds, path):
        path.write_bytes(b"partial")
        raise RuntimeError("NetCDF: HDF error")

    monkeypatch.setattr(netcdf, "_to_netcdf4", full_disk)
    with pytest.raises(OSError, match="NetCDF: HDF error"):
        write_netcdf(_dataset(), tmp_path / "x.nc")
    assert list(tmp_path.iterdir()) == []

    def other(ds, path):
        raise RuntimeError("something else")

    monkeypatch.setattr(netcdf, "_to_netcdf4", other)
    with pytest.raises(RuntimeError, match="something else"):  # not every RuntimeError
        write_netcdf(_dataset(), tmp_path / "x.nc")
