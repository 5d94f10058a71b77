"""``advdyn run`` on a data problem: bad data files exit 2 with one line naming the field."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from typer.testing import CliRunner

from advdyn.cli._app import EXIT_USER_ERROR, app

runner = CliRunner()
rng = np.random.default_rng(0)
GOOD_X = rng.standard_normal((30, 4))
GOOD_Y = np.where(GOOD_X[:, 0] > 0, 1, 0)


def _npz(path, X=GOOD_X, y=GOOD_Y, **extra):
    np.savez(path, X=X, y=y, **extra)


def _nan(path):
    X = GOOD_X.copy()
    X[3, 2] = np.nan
    _npz(path, X=X)


def _constant(path):
    X = GOOD_X.copy()
    X[:, 1] = 7.0
    _npz(path, X=X)


def _text(path):
    path.write_text("not an archive\n")


def _csv_text_column(path):
    path.write_text("a,b,y\n1,x,1\n2,y,0\n3,z,1\n")


def _csv_empty(path):
    path.write_text("")


def _npy_pair(path):
    np.save(path, GOOD_X)
    np.save(path.with_name("y.npy"), GOOD_Y[:-1])


# (name, file, writer, [problem.data] extras, [problem] extras, fields in the message)
CASES = [
    ("nan", "d.npz", _nan, {}, {}, ["problem.data.features", "NaN", "row 3"]),
    ("constant column", "d.npz", _constant, {}, {}, ["problem.data.features", "constant", "1"]),
    ("one row", "d.npz", lambda p: _npz(p, X=GOOD_X[:1], y=GOOD_Y[:1]), {}, {},
     ["problem.data.features", "at least 2 rows"]),
    ("three classes", "d.npz", lambda p: _npz(p, y=np.arange(30) % 3), {}, {},
     ["problem.data.target", "exactly 2"]),
    ("fractional labels", "d.npz", lambda p: _npz(p, y=GOOD_Y + 0.5), {}, {},
     ["problem.data.target", "integers"]),
    ("labels of the wrong length", "d.npz", lambda p: _npz(p, y=GOOD_Y[:-2]), {}, {},
     ["problem.data.target", "one value per row"]),
    ("matrix not 2-d", "d.npz", lambda p: _npz(p, X=GOOD_X[:, 0]), {}, {},
     ["problem.data", "features", "2-d"]),
    ("missing array", "d.npz", _npz, {"target": "labels"}, {},
     ["problem.data", "target", "'labels'"]),
    ("not an npz", "d.npz", _text, {}, {}, ["problem.data.path", "not a NumPy .npz"]),
    ("not an npy", "d.npy", _text, {"target": "y.npy"}, {},
     ["problem.data.path", "not a NumPy .npy"]),
    ("npy targets of the wrong length", "d.npy", _npy_pair, {"target": "y.npy"}, {},
     ["problem.data.target", "one value per row"]),
    ("unknown kind", "d.txt", _text, {}, {}, ["problem.data.path", ".parquet"]),
    ("empty csv", "d.csv", _csv_empty, {}, {}, ["problem.data.path", "empty"]),
    ("text column", "d.csv", _csv_text_column, {}, {},
     ["problem.data.features", "'b'", "not numeric"]),
    ("d disagrees", "d.npz", _npz, {}, {"d": 9}, ["problem", "d:", "4 feature columns"]),
    ("logistic on regression", "d.npz", _npz, {"task": "regression"}, {"loss": "logistic"},
     ["loss", "classification"]),
]
if importlib.util.find_spec("pyarrow") is None:
    CASES.append(("parquet without pyarrow", "d.parquet", _text, {}, {},
                  ["problem.data.path", "advdyn[data]"]))


def _toml(value) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


@pytest.mark.parametrize("name, file, write, data, problem, fields", CASES,
                         ids=[c[0] for c in CASES])
def test_bad_data_exits_2_naming_the_field(tmp_path, name, file, write, data, problem, fields):
    write(tmp_path / file)
    data = {"path": file, "task": "classification", **data}
    problem = {"loss": "logistic", **problem}
    text = "[problem]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in problem.items())
    text += "[problem.data]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in data.items())
    text += "[run]\nt_max = 1.0\n"
    (tmp_path / "c.toml").write_text(text)
    result = runner.invoke(app, ["run", str(tmp_path / "c.toml"), "-o", str(tmp_path / "out"),
                                 "-q"])
    assert result.exit_code == EXIT_USER_ERROR, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for f in fields:
        assert f in lines[0], (f, lines[0])
    assert "Traceback" not in result.output


def test_a_covariance_that_does_not_fit_is_refused_up_front(tmp_path):
    """The d x d covariance counts in the memory estimate: refused before anything is read."""
    np.savez(tmp_path / "wide.npz", X=rng.standard_normal((5, 400)), y=np.arange(5) % 2)
    (tmp_path / "c.toml").write_text(
        '[problem]\nloss = "logistic"\n[problem.data]\npath = "wide.npz"\n'
        'task = "classification"\n[run]\nmemory_limit_gb = 0.002\n')
    result = runner.invoke(app, ["run", str(tmp_path / "c.toml"), "-o", str(tmp_path / "o"),
                                 "-q"])
    assert result.exit_code == EXIT_USER_ERROR, result.output
    assert result.stderr.startswith("error: problem.data.path"), result.stderr
    assert "does not fit in memory" in result.stderr


def test_data_sgd_needs_a_data_set(tmp_path):
    (tmp_path / "c.toml").write_text('[problem]\nd = 10\n[run]\nmethods = ["ode", "data_sgd"]\n')
    result = runner.invoke(app, ["run", str(tmp_path / "c.toml"), "-o", str(tmp_path / "o"),
                                 "-q"])
    assert result.exit_code == EXIT_USER_ERROR
    assert "run.methods" in result.stderr and "problem.data" in result.stderr


@pytest.mark.parametrize("command, extra", [
    ("run", "[run]\nt_max = 1.0\n"),
    ("phase", "[run]\nt_max = 1.0\n[phase]\n"
              'x = { field = "problem.epsilon", start = 0.0, stop = 0.5, num = 2 }\n'),
])
def test_a_bad_data_file_prints_only_the_error(tmp_path, command, extra):
    """Without ``-q``: the data are read before the status line, so the refusal is the only
    line (no status line, no spinner)."""
    _nan(tmp_path / "d.npz")
    (tmp_path / "c.toml").write_text(
        '[problem]\nloss = "logistic"\n[problem.data]\npath = "d.npz"\n'
        'task = "classification"\n' + extra)
    result = runner.invoke(app, [command, str(tmp_path / "c.toml"), "-o", str(tmp_path / "o")])
    assert result.exit_code == EXIT_USER_ERROR, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: problem.data.features"), lines
