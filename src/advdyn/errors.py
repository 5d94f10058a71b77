"""Exceptions that carry a user-facing message.

The CLI turns :class:`ConfigError` into exit code 2 and :class:`DivergenceError` into exit
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
    """

    def __init__(self, method: str, time: float, lr: float, detail: str):
        self.method = method
        self.time = time
        self.lr = lr
        super().__init__(
            f"{method} diverged at t = {time:.4g} with learning rate gamma = {lr:.4g}: {detail}. "
            "Lower the learning rate (for least squares, gamma * tr(K)/d must stay below about 2)."
        )
