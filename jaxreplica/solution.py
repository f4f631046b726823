"""What a solve returns: :class:`Solution`, its :class:`Branches`, :class:`LayerSolutions`,
and the :class:`Status` codes that say why a result is not converged."""

from __future__ import annotations

import enum

import jax
import numpy as np

from jaxreplica._struct import pytree
from jaxreplica.potential import OrderParameters

__all__ = ["Status", "Solution", "Branches", "LayerSolutions"]


class Status(enum.IntEnum):
    """Why a result is (not) converged: ``Solution.status`` holds one of these codes."""

    CONVERGED = 0
    MAX_ITERATIONS = 1  # the selected start reached max_iter
    NOT_FINITE = 2  # the iteration produced non-finite values and gave up
    INVALID_INPUT = 3  # a number of the chain is out of range (negative noise, ...)
    ABOVE_INPUT_ENTROPY = 4  # I(X; T) > H(X) for a discrete input: not the solution
    NOT_STATIONARY = 5  # after the Newton polish, d phi/d(order parameters) is not 0
    LOWER_START_UNCONVERGED = 6  # a start that did not converge reached a smaller phi

    def describe(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    Status.CONVERGED: "converged",
    Status.MAX_ITERATIONS: "the iteration reached max_iter before meeting tol (raise max_iter or loosen tol)",
    Status.NOT_FINITE: "the iteration produced non-finite values (the chain is out of the supported range)",
    Status.INVALID_INPUT: "a number of the chain is invalid: a negative noise or variance, zero noise on the "
                          "last layer, a non-positive alpha, scale or threshold, negative or non-finite "
                          "eigenvalues, or a probability outside (0, 1)",
    Status.ABOVE_INPUT_ENTROPY: "the selected stationary point gives I(X; T) > H(X): it is not the solution",
    Status.NOT_STATIONARY: "the polished point is not stationary (d phi/d(order parameters) above 1e-6)",
    Status.LOWER_START_UNCONVERGED: "a start that did not converge reached a smaller phi than the selected "
                                    "point, so the selected branch may not be the solution (raise max_iter "
                                    "or loosen tol)",
}


def describe(status) -> str | list:
    """The message of a concrete status code (a list for an array of codes)."""
    codes = np.asarray(status)
    if codes.ndim == 0:
        return Status(int(codes)).describe()
    return [describe(c) for c in codes]


@pytree
class Branches:
    """The stationary point reached from each start of the multi-start (last axis).

    Starts are named by ``names`` (static): ``"uninformed"`` (every error at its
    largest: the state evolution of an algorithm that knows nothing, whose end point is
    the algorithmic prediction), ``"informed"`` (every error near zero: the branch of
    near-perfect recovery), and for deeper chains one start per layer; a warm start has
    the single name ``"warm start"``. The solution is the converged branch of smallest
    potential. Where the informed branch wins while the uninformed one ends elsewhere,
    the problem is in its hard phase (past the information-theoretic transition, before
    the algorithmic one).

    Attributes:
      potential: ``phi`` at the end of each start (also where it did not converge).
      mutual_information: ``I(X; T_L)/n_0`` of each branch.
      mmse: the error ``V_1`` on the input (0 where it underflows: exact recovery).
      converged: whether each start met the tolerance.
      iterations: iterations of each start.
    """

    _static = ("names",)

    potential: jax.Array
    mutual_information: jax.Array
    mmse: jax.Array
    converged: jax.Array
    iterations: jax.Array
    names: tuple = ()

    def __getitem__(self, name: str) -> dict:
        """The fields of one named start, e.g. ``branches["informed"]["mmse"]``."""
        if name not in self.names:
            raise KeyError(f"no start named {name!r}; starts are {self.names}")
        i = self.names.index(name)
        fields = ("potential", "mutual_information", "mmse", "converged", "iterations")
        return {f: getattr(self, f)[..., i] for f in fields}

    @property
    def uninformed(self) -> dict:
        return self["uninformed"]

    @property
    def informed(self) -> dict:
        return self["informed"]


@pytree
class Solution:
    """Result of :func:`jaxreplica.solve` (per input unit, nats).

    Attributes:
      entropy: ``H(T_L)/n_0``, the potential at its selected stationary point.
      mutual_information: ``I(X; T_L)/n_0 = (H(T_L) - H(T_L | X))/n_0``; with a noisy
        hidden layer, ``H(T_L | X)`` is the entropy of the chain given its input (a
        second solve, see :mod:`jaxreplica.conditional`).
      last_layer_information: ``I(T_L; T_{L-1})/n_0`` (equal to ``mutual_information``
        when every hidden layer is noiseless).
      mmse: ``V_1``, the minimal mean squared error on the input ``X`` (0 where it
        underflows: a discrete input recovered exactly).
      fixed_point: the order parameters (pass back as ``init=`` for a warm start).
      conditional_fixed_point: where ``mutual_information`` came from a second solve
        (noisy hidden layers), that conditional chain's order parameters (pass back as
        ``conditional_init=``; NaN where every hidden noise turned out to be zero);
        otherwise None.
      potential: ``phi`` at the fixed point (equal to ``entropy``).
      converged: ``status == Status.CONVERGED``.
      status: a :class:`Status` code saying why a result is not converged.
      iterations: iterations of the selected start (survey and refinement; the
        survey's Jacobian probes, where there are chord steps, not counted).
      residual: with ``polish_steps > 0``, the largest ``|d phi/d log(order
        parameter)|`` at the returned point; otherwise the iteration's last relative
        change (of the order parameters between its last two evaluations, or of the
        messages between the last point and its image, whichever is smaller).
      start_potentials: ``phi`` reached from each start (NaN where it did not converge).
      branches: every start's end point (:class:`Branches`).
    """

    entropy: jax.Array
    mutual_information: jax.Array
    last_layer_information: jax.Array
    mmse: jax.Array
    fixed_point: OrderParameters
    conditional_fixed_point: OrderParameters | None
    potential: jax.Array
    converged: jax.Array
    status: jax.Array
    iterations: jax.Array
    residual: jax.Array
    start_potentials: jax.Array
    branches: Branches

    def describe(self) -> str | list:
        """Why the result is (not) converged, in words (concrete results only)."""
        return describe(self.status)


@pytree
class LayerSolutions:
    """:func:`jaxreplica.solve_layers` results, one entry per layer ``l = 1..L``."""

    entropy: jax.Array
    mutual_information: jax.Array
    mmse: jax.Array
    converged: jax.Array
    status: jax.Array
    iterations: jax.Array
    residual: jax.Array
    fixed_points: tuple
    conditional_fixed_points: tuple  # None where a layer has no conditional chain
