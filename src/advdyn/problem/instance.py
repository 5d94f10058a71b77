"""A drawn problem instance, in the eigenbasis of the covariances (THEORY section 1).

[`instantiate`][advdyn.instantiate] turns a validated [`ProblemConfig`][advdyn.config.ProblemConfig]
into a
[`ProblemInstance`][advdyn.problem.instance.ProblemInstance]: eigenvalues, teacher, component means
and weights, labels and the
initial iterate, all as coordinates in the common eigenbasis. The instance is drawn from
the first of two independent seeds spawned from ``config.seed``; the second seeds the SGD
sample stream ([`stream_key`][advdyn.problem.instance.stream_key]), so the two never share random
numbers (THEORY 10).
"""

import abc
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import numpy as np
from equinox import AbstractVar

from advdyn import checks
from advdyn.deprecation import REMOVED_IN, warn_deprecated
from advdyn.precision import float64
from advdyn.problem.losses import AbstractLoss
from advdyn.problem.state import DirectionState
from advdyn.typing import Array


class AbstractInstance(eqx.Module):
    """The interface the statistics, the ODE and the fixed points read (THEORY section 5).

    Two final implementations: [`ProblemInstance`][advdyn.problem.instance.ProblemInstance] (one
    entry per direction, drawn in
    the eigenbasis) and [`BinnedInstance`][advdyn.theory.BinnedInstance] (one entry per spectral
    bin,
    ``multiplicity`` directions each). The theory only needs per-direction products of the
    constant vectors, never the vectors themselves.
    """

    eigenvalues: AbstractVar[Array]
    weights: AbstractVar[Array]
    labels: AbstractVar[Array]
    noise: AbstractVar[Array]
    epsilon: AbstractVar[Array]
    ridge: AbstractVar[Array]
    loss: AbstractVar[AbstractLoss]
    task: AbstractVar[str]
    # Per-entry products of the constant vectors: fields of a BinnedInstance, properties of a
    # ProblemInstance (equinox lets a property implement an AbstractVar; type checkers are
    # shown read-only properties, which both satisfy).
    if TYPE_CHECKING:

        @property
        def teacher2(self) -> Array:
            """``theta*_i^2`` per entry, shape ``(n,)``."""
            ...

        @property
        def teacher_mean(self) -> Array:
            """``theta*_i mu_{c,i}`` per entry, shape ``(C, n)``."""
            ...

        @property
        def mean_mean(self) -> Array:
            """``mu_{c,i} mu_{c',i}`` per entry, shape ``(C, C, n)``."""
            ...

        @property
        def multiplicity(self) -> Array | None:
            """Directions each entry stands for, shape ``(n,)``; ``None`` means one each."""
            ...

        @property
        def d(self) -> Any:
            """The dimension ``d`` as it enters formulas (the ``1/d`` of the SGD noise).

            A Python int for a drawn instance, a float64 scalar array for bins (a new ``d``
            then does not recompile a solver); ``int(d)`` outside traced code is the Python
            int in both cases.
            """
            ...

    else:
        teacher2: AbstractVar[Array]
        teacher_mean: AbstractVar[Array]
        mean_mean: AbstractVar[Array]
        multiplicity: AbstractVar[Array | None]
        d: AbstractVar[Any]

    @property
    def n_components(self) -> int:
        """Number of mixture components ``C``."""
        return self.weights.shape[0]

    @property
    def dimension(self) -> int:
        """Deprecated (until advdyn 0.2): ``int(d)``, the ambient dimension ``d`` as a Python
        int (not traceable); the one public name is ``d``."""
        warn_deprecated(f"{type(self).__name__}.dimension is deprecated and will be removed in "
                        f"advdyn {REMOVED_IN}: use d (int(d) for a Python int)")
        return round(float(self.d))

    @abc.abstractmethod
    def initial_state(self) -> DirectionState:
        """The state of ``theta_0`` per entry (float64), the ODE's initial condition."""


class ProblemInstance(AbstractInstance):
    """All arrays that define one learning problem, in the eigenbasis.

    Attributes
    ----------
    eigenvalues : Array, shape (C, d)
        ``lambda_{c,i}``: eigenvalues of each component's covariance.
    theta_star : Array, shape (d,)
        Teacher ``theta*``.
    means : Array, shape (C, d)
        Component means ``mu_c``.
    weights : Array, shape (C,)
        Mixture weights ``pi_c``.
    labels : Array, shape (C,)
        ``+/-1`` for classification, zeros for regression.
    theta0 : Array, shape (d,)
        Initial iterate ``theta_0``.
    noise, epsilon, ridge : Array, scalar
        Label noise ``sigma`` (0 for classification), attack radius ``eps`` and explicit
        ridge ``delta``.
    loss : AbstractLoss
        The loss ``l(r, y)``.
    task : str
        ``"regression"`` or ``"classification"``.
    """

    eigenvalues: Array
    theta_star: Array
    means: Array
    weights: Array
    labels: Array
    theta0: Array
    noise: Array
    epsilon: Array
    ridge: Array
    loss: AbstractLoss
    task: str = eqx.field(static=True)

    @property
    def d(self) -> int:
        """The ambient dimension ``d`` (a Python int)."""
        return self.theta_star.shape[-1]

    # The ODE, the statistics and the fixed points only need the per-direction products of
    # the constant vectors (THEORY 5): a binned instance (advdyn.theory.spectral) supplies the same
    # names as bin averages, with ``multiplicity`` the number of directions per bin.
    @property
    def multiplicity(self) -> None:
        """Directions represented by each entry: ``None`` means one each (per-direction)."""
        return None

    @property
    @float64
    def teacher2(self) -> Array:
        """``theta*_i^2``, shape ``(d,)``."""
        return self.theta_star**2

    @property
    @float64
    def teacher_mean(self) -> Array:
        """``theta*_i mu_{c,i}``, shape ``(C, d)``."""
        return self.theta_star * self.means

    @property
    @float64
    def mean_mean(self) -> Array:
        """``mu_{c,i} mu_{c',i}``, shape ``(C, C, d)``."""
        return self.means[:, None, :] * self.means[None, :, :]

    @float64
    def initial_state(self):
        """Per-direction state of ``theta_0`` (products of the coordinates of ``theta_0 - theta*``).

        Returns
        -------
        DirectionState
            float64 state at ``t = 0``.
        """
        return DirectionState.from_iterate(self.theta0, self)


def seed_sequences(seed: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    checks.seed(seed, "seed")
    instance_seq, stream_seq = np.random.SeedSequence(seed).spawn(2)
    return instance_seq, stream_seq


def stream_key(seed: int) -> Array:
    """JAX key of the SGD sample stream, independent of the instance draw.

    Parameters
    ----------
    seed : int
        ``config.seed``; the key comes from the second of the two seeds spawned from it.

    Returns
    -------
    jax.Array
        A typed PRNG key (``jax.random.key``).

    Raises
    ------
    ConfigError
        If ``seed`` is not an integer in ``[0, 2^63 - 1]`` (field ``seed``).
    """
    _, stream_seq = seed_sequences(seed)
    return jax.random.key(int(stream_seq.generate_state(1, dtype=np.uint32)[0]))


