"""The per-direction state of an iterate: the products that every statistic is a sum of."""

from __future__ import annotations

from typing import TYPE_CHECKING

import equinox as eqx

if TYPE_CHECKING:
    from advdyn.problem.instance import ProblemInstance

from advdyn.typing import Array


class DirectionState(eqx.Module):
    """Per-direction second moments of the error ``e = theta - theta*``.

    For SGD these are products of one iterate's coordinates; for the ODE they are the
    integrated deterministic equivalents.

    Attributes
    ----------
    err2 : Array, shape (d,)
        ``e_i^2`` (``= P_i - 2 Q_i + theta*_i^2``).
    err_teacher : Array, shape (d,)
        ``e_i theta*_i`` (``= Q_i - theta*_i^2``).
    err_mean : Array, shape (C, d)
        ``e_i mu_{c,i}`` (``= M_{c,i} - theta*_i mu_{c,i}``).
    """

    err2: Array
    err_teacher: Array
    err_mean: Array

    @classmethod
    def from_iterate(cls, theta: Array, instance: ProblemInstance) -> DirectionState:
        """State of a single iterate ``theta`` (products of its coordinates).

        Parameters
        ----------
        theta : Array, shape (d,)
            Iterate in the eigenbasis; its dtype is kept.
        instance : ProblemInstance
            Supplies ``theta*`` and the means ``mu_c``.

        Returns
        -------
        DirectionState
            ``(e_i^2, e_i theta*_i, e_i mu_{c,i})`` with ``e = theta - theta*``.
        """
        e = theta - instance.theta_star.astype(theta.dtype)
        ts = instance.theta_star.astype(theta.dtype)
        return cls(e * e, e * ts, e * instance.means.astype(theta.dtype))
