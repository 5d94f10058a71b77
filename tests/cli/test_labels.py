"""Labels, titles, help and README commands that read right."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from advdyn.cli._app import app, out_console
from advdyn.io import make_dataset

README = Path(__file__).resolve().parents[2] / "README.md"


def test_netcdf_coordinates_have_long_name_and_units(tmp_path):
    import xarray as xr

    from advdyn.io import write_netcdf

    ds = make_dataset(np.linspace(0, 1, 3), {"adv_risk": np.ones((2, 3))}, "sgd",
                      replicates=True, attrs={"d": 1000, "block": 50})
    write_netcdf(ds, tmp_path / "x.nc")
    with xr.open_dataset(tmp_path / "x.nc") as back:
        for coord in ("time", "replicate"):
            assert back[coord].attrs["long_name"] and back[coord].attrs["units"] == "1"
        assert isinstance(back.attrs["d"], np.integer | int)  # a number, not '1000'


def test_sweep_help_keeps_the_grid_table_name():
    r = CliRunner().invoke(app, ["sweep", "--help"])
    assert r.exit_code == 0 and "[grid]" in r.output


def test_ode_only_table_title_does_not_mention_sgd():
    from advdyn.cli.run import _print_summary

    summary = {"final": {"ode": {"adv_risk": 0.5}}, "wall_time_s": {"ode": 1.0}}
    with out_console.capture() as cap:
        _print_summary(summary)
    text = cap.get()
    assert "final values" in text and "SGD" not in text
    summary = {"final": {"ode": {"adv_risk": 0.5}, "sgd": {"adv_risk": 0.51}},
               "wall_time_s": {"ode": 1.0, "sgd": 2.0}, "gap_vs_ode": {}}
    with out_console.capture() as cap:
        _print_summary(summary)
    title = cap.get().splitlines()[0]
    assert "final values (SGD: mean over replicates)" in title  # on one line, not wrapped


def test_readme_commands_do_not_overwrite_each_other():
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    targets = [m for b in blocks for m in re.findall(r"> *(\S+\.toml)", b)]
    assert targets and len(targets) == len(set(targets)), targets
