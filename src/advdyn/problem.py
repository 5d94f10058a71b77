"""A drawn problem instance, in the eigenbasis of the covariances (THEORY section 1).

:func:`instantiate` turns a validated :class:`~advdyn.config.ProblemConfig` into a
:class:`ProblemInstance`: eigenvalues, teacher, component means and weights, labels and the
initial iterate, all as coordinates in the common eigenbasis. The instance is drawn from
the first of two independent seeds spawned from ``config.seed``; the second seeds the SGD
sample stream (:func:`stream_key`), so the two never share random numbers (THEORY 10).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import config as C
from .errors import ConfigError
from .losses import Loss, make_loss
from .spectra import eigen_decomposition, load_npy

Array = jax.Array


class ProblemInstance(eqx.Module):
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
    loss : Loss
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
    loss: Loss
    task: str = eqx.field(static=True)

    @property
    def d(self) -> int:
        """Dimension ``d``."""
        return self.theta_star.shape[-1]

    @property
    def n_components(self) -> int:
        """Number of mixture components ``C``."""
        return self.weights.shape[0]

    # The ODE, the statistics and the fixed points only need the per-direction products of
    # the constant vectors (THEORY 5): a binned instance (advdyn.spectral) supplies the same
    # names as bin averages, with ``multiplicity`` the number of directions per bin.
    @property
    def multiplicity(self) -> None:
        """Directions represented by each entry: ``None`` means one each (per-direction)."""
        return None

    @property
    def teacher2(self) -> Array:
        """``theta*_i^2``, shape ``(d,)``."""
        return self.theta_star**2

    @property
    def teacher_mean(self) -> Array:
        """``theta*_i mu_{c,i}``, shape ``(C, d)``."""
        return self.theta_star * self.means

    @property
    def mean_mean(self) -> Array:
        """``mu_{c,i} mu_{c',i}``, shape ``(C, C, d)``."""
        return self.means[:, None, :] * self.means[None, :, :]

    def initial_state(self):
        """Per-direction state of ``theta_0`` (products of the coordinates of ``theta_0 - theta*``).

        Returns
        -------
        DirectionState
            float64 state at ``t = 0``.
        """
        from .statistics import DirectionState

        return DirectionState.from_iterate(self.theta0, self)


def _seed_sequences(seed: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
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
    """
    _, stream_seq = _seed_sequences(seed)
    return jax.random.key(int(stream_seq.generate_state(1, dtype=np.uint32)[0]))


def _unit(rng: np.random.Generator, d: int) -> np.ndarray:
    v = rng.standard_normal(d)
    return v / np.linalg.norm(v)


def instantiate(config: C.ProblemConfig, loss: Loss | None = None) -> ProblemInstance:
    """Draw the problem instance described by ``config``.

    All vectors are drawn isotropically, directly as coordinates in the eigenbasis.
    ``theta* = teacher_norm * u`` with ``u`` uniform on the sphere; the mean of component
    ``c`` is ``mu_c = mean_sign * mean_norm * v_c`` with ``v_c`` the unit teacher direction,
    the shared "common" direction or a fresh direction (``mean_direction``). A
    ``theta_0`` read from a file is given in the original basis and rotated into the
    eigenbasis.

    Order of random draws from the instance generator (``d`` standard normals each):

    1. the teacher direction;
    2. the shared "common" mean direction (always drawn, even if no component uses it);
    3. one fresh direction per component whose ``mean_direction`` is ``"random"``, in
       component order (the default regression mixture is one such component, of norm 0);
    4. the Gaussian initial iterate ``theta_0 ~ N(0, scale^2 / d I)`` (nothing for a file
       init).

    So for the same seed, adding a ``"random"`` component (or switching one to or from
    ``"random"``) changes ``theta_0``, while ``theta*`` and the common direction stay
    the same. The SGD sample stream (:func:`stream_key`) is unaffected.

    Parameters
    ----------
    config : ProblemConfig
        Validated problem definition.
    loss : Loss, optional
        Overrides ``config.loss`` (e.g. a :class:`~advdyn.losses.Loss` with custom
        quadrature settings).

    Returns
    -------
    ProblemInstance
        float64 arrays in the eigenbasis of the covariance.

    Raises
    ------
    ConfigError
        If a spectrum, covariance or init file is unreadable, non-finite or of the wrong
        shape, or a spectrum is invalid (see
        :func:`~advdyn.spectra.eigen_decomposition`).
    """
    d = config.d
    rng = np.random.default_rng(_seed_sequences(config.seed)[0])
    lam, basis = eigen_decomposition(config.spectrum, d)

    # Isotropic draws are isotropic in any orthonormal basis: draw directly in the eigenbasis.
    theta_star = config.task.teacher_norm * _unit(rng, d)
    comps = config.resolved_components()
    common = _unit(rng, d)
    eigenvalues, means = [], []
    for i, comp in enumerate(comps):
        if comp.spectrum is None:
            eigenvalues.append(lam)
        else:
            eigenvalues.append(
                eigen_decomposition(comp.spectrum, d, f"problem.components[{i}].spectrum")[0]
            )
        direction = {
            "teacher": theta_star / np.linalg.norm(theta_star),
            "common": common,
            "random": _unit(rng, d) if comp.mean_direction == "random" else None,
        }[comp.mean_direction]
        means.append(comp.mean_sign * comp.mean_norm * direction)

    if isinstance(config.init, C.GaussianInit):
        theta0 = config.init.scale * rng.standard_normal(d) / np.sqrt(d)
    else:
        theta0 = load_npy(config.init.path, "problem.init.path")
        if theta0.shape != (d,):
            raise ConfigError("problem.init.path", f"expected shape ({d},), got {theta0.shape}")
        if basis is not None:
            theta0 = basis.T @ theta0

    f64 = lambda x: jnp.asarray(x, dtype=jnp.float64)  # noqa: E731
    labels = [0.0 if c.label is None else float(c.label) for c in comps]
    return ProblemInstance(
        eigenvalues=f64(np.stack(eigenvalues)),
        theta_star=f64(theta_star),
        means=f64(np.stack(means)),
        weights=f64([c.weight for c in comps]),
        labels=f64(labels),
        theta0=f64(theta0),
        noise=f64(getattr(config.task, "noise", 0.0)),
        epsilon=f64(config.epsilon),
        ridge=f64(config.ridge),
        loss=loss if loss is not None else make_loss(config.loss),
        task=config.task.kind,
    )
