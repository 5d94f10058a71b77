"""`advdyn.cli._app.command_errors`: what stops a command is one ``error:`` line and an
exit status (2: the user can fix it; 3: the dynamics or a solver stopped), the same in
every command; anything else propagates."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from advdyn.cli._app import command_errors
from advdyn.errors import ConfigError, DivergenceError

OUT = Path("some-out")
STEPS = "equinox: the maximum number of solver steps was reached"


@pytest.mark.parametrize(("error", "value_errors", "code", "line"), [
    (ConfigError("risks.eta", "must be > 0"), False, 2, "error: risks.eta: must be > 0"),
    (ValueError("bad radius"), True, 2, "error: invalid config: bad radius"),
    # an OSError is worded by the file it names: the result folder's, another, none
    (OSError(28, "No space left on device", "some-out/run.nc"), False, 2,
     "error: cannot write results to some-out: No space left on device"),
    (FileNotFoundError(2, "No such file or directory", "in/sweep.toml"), False, 2,
     "error: in/sweep.toml: No such file or directory"),
    (OSError("disk full"), False, 2, "error: file system error: disk full"),
    (DivergenceError("sgd", 1.5, 0.7, "the risk is not finite"), False, 3, "error: "),
    (FloatingPointError("nan in the loss"), False, 3, "error: nan in the loss"),
    (RuntimeError(STEPS), False, 3, "error: a solver stopped before its horizon"),
])
def test_a_stopping_error_is_one_line_and_its_status(capsys, error, value_errors, code, line):
    with pytest.raises(typer.Exit) as exit_, command_errors(OUT, value_errors=value_errors):
        raise error
    assert exit_.value.exit_code == code
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("error", [ValueError("a bug"), RuntimeError("another bug"),
                                   KeyError("x"), typer.Exit(0)])
def test_other_errors_propagate(error):
    # a ValueError is a user error only where the command says so (value_errors=True)
    with pytest.raises(type(error)), command_errors(OUT):
        raise error
