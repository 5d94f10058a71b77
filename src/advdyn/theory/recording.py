"""What every method records along a trajectory (THEORY section 11).

One `Recorder` serves the ODE, SGD and the SDE, so that all methods record the same
quantities from their per-direction state (integrated for the ODE, built from the iterate
for the simulators): the observables of `observables`, the
learning rate ``lr``, the squared distance ``dist_to_opt`` to the adversarial optimum and,
for least squares with one centred class, the equivalence quantities ``eff_lr``,
``eff_ridge`` and ``noise_factor`` (`advdyn.theory.equivalence`).
"""

from __future__ import annotations

import equinox as eqx

from advdyn.theory.equivalence import equivalence_applies, ls_equivalence
from advdyn.theory.stationary import StationaryPoint, adversarial_optimum
from advdyn.theory.statistics import DirectionState, observables, statistics
from advdyn.typing import Array


class Recorder(eqx.Module):
    """Records THEORY section 11 quantities of a state.

    Attributes
    ----------
    optimum : StationaryPoint or None
        The adversarial optimum; ``dist_to_opt`` is recorded when it is given.
    equivalence : bool
        Whether to record ``eff_lr``, ``eff_ridge`` and ``noise_factor``.
    """

    optimum: StationaryPoint | None
    equivalence: bool = eqx.field(static=True, default=False)

    def __call__(self, t, state: DirectionState, instance, lr) -> dict[str, Array]:
        """Quantities recorded at time ``t``.

        Parameters
        ----------
        t : scalar
            Time.
        state : DirectionState
            ODE state or the state of an iterate.
        instance : AbstractInstance
        lr : AbstractLearningRate
            The rule, evaluated at ``(t, state)`` for ``lr``.

        Returns
        -------
        dict of str to Array
            Scalars (float64).
        """
        stats = statistics(state, instance)
        out = observables(stats, instance)
        out["lr"] = lr(t, state, instance)
        if self.optimum is not None:
            out["dist_to_opt"] = self.optimum.distance2(state, instance)
        if self.equivalence:
            out.update(ls_equivalence(stats, instance, out["lr"]))
        return out


def make_recorder(instance, optimum: StationaryPoint | None = None) -> Recorder:
    """The recorder of all THEORY section 11 quantities for ``instance``.

    Parameters
    ----------
    instance : AbstractInstance
    optimum : StationaryPoint, optional
        A precomputed adversarial optimum (computed here otherwise).

    Returns
    -------
    Recorder
    """
    if optimum is None:
        optimum = adversarial_optimum(instance)
    return Recorder(optimum, equivalence_applies(instance))
