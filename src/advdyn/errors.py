"""Exceptions that carry a user-facing message.

The CLI turns [`ConfigError`][advdyn.errors.ConfigError] into exit code 2 and
[`DivergenceError`][advdyn.errors.DivergenceError] into exit
code 3, each printed as one line without a traceback.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is invalid.

    Parameters
    ----------
    field : str
        Dotted path of the offending field (e.g. ``"problem.spectrum.path"``).
    message : str
        What is wrong with it.
    """

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class DivergenceError(RuntimeError):
    """A simulated or integrated trajectory blew up.

    Parameters
    ----------
    method : str
        ``"ode"`` or ``"sgd"``.
    time : float
        First recorded time at which the run was found diverged.
    lr : float
        Learning rate ``gamma_t`` at that time.
    detail : str
        What was observed (non-finite risk, risk above the threshold, ...).
    loss : str, optional
        Name of the loss, when known: the advice is then specific to it (the stable range
        of the rate of least squares is only stated for least squares).
    advice : str, optional
        What to do, replacing the advice to lower the learning rate.
    """

    def __init__(self, method: str, time: float, lr: float, detail: str,
                 loss: str | None = None, advice: str | None = None):
        self.method = method
        self.time = time
        self.lr = lr
        self.detail = detail
        self.loss = loss
        self.advice = advice
        super().__init__(
            f"{method} diverged at t = {time:.4g} with learning rate gamma = {lr:.4g}: "
            f"{detail}. {advice if advice is not None else _advice(loss)}"
        )

    def with_loss(self, loss: str) -> DivergenceError:
        """The same error with advice for ``loss`` (a built-in name or ``custom:...``)."""
        return DivergenceError(self.method, self.time, self.lr, self.detail, loss, self.advice)

    def with_advice(self, advice: str) -> DivergenceError:
        """The same error with ``advice`` in place of the learning-rate advice (for a
        caller that knows the rate is not the cause, e.g. a solver's step budget)."""
        return DivergenceError(self.method, self.time, self.lr, self.detail, self.loss, advice)


def _advice(loss: str | None) -> str:
    if loss == "least_squares":
        return "Lower the learning rate (for least squares, gamma * tr(K)/d must stay below 2)."
    if loss == "squared_hinge":
        return ("Lower the learning rate (for the squared hinge, gamma * tr(K)/d must stay "
                "below about 1).")
    return "Lower the learning rate (its stable range depends on the loss and the spectrum)."
