"""An accelerated fixed-point iteration on positive messages, inside one ``while_loop``.

A solver's sweep maps positive messages to new ones (and reports the order parameters
and the potential it saw). :func:`iterate` runs it to a fixed point in the logs of the
messages, in four pieces that each do one thing:

* **acceleration** (:func:`_anderson`): type-II Anderson mixing over the last
  ``MEMORY`` steps, limited in reach and only in the plain step's direction;
* **memory** (:class:`_Memory`): the ring buffer of differences it mixes, cleared on a
  restart;
* **restarts** (:func:`_restart`): an evaluation that failed, or a residual that grew,
  clears the memory so that the next step is a plain one;
* **termination** (:func:`_change`, :func:`iterate`): the relative change of every order
  parameter between two good evaluations, or of every message between the point
  evaluated and its image, below ``tol``; or the iteration cap, or two failed
  evaluations in a row;
* **chord steps** (:func:`chord`): an iteration may be told the Jacobian of a nearby map
  (measured by ``probe`` at the end of another iteration) and then steps by
  ``(I - J)^-1`` times the residual, a Newton step with that fixed Jacobian.

One evaluation of the sweep per iteration, with no branch (under ``vmap`` both sides of
a branch would run).
"""

from __future__ import annotations

import jax
import jax.flatten_util
import jax.numpy as jnp

from jaxreplica._struct import pytree, tree_where
from jaxreplica.gaussian import TINY
from jaxreplica.potential import OrderParameters

__all__ = ["iterate", "IterationResult"]

MEMORY = 3  # Anderson's history length
GROWTH = 2.0  # a residual this many times the previous one restarts
SETBACK = 10.0  # a residual this many times the best one restarts
REACH = 5.0  # an extrapolation moves no log-message by more than this beyond the plain step
FAILED = -1.0  # the change recorded once the iteration has given up


@pytree
class IterationResult:
    """How one start ended.

    Attributes:
      messages: the log-messages of the last good evaluation (its image).
      merged: the index of the known fixed point this start ran into, -1 if none.
      op: order parameters at the last good evaluation (NaN if there was none).
      iterations: sweeps evaluated (the Jacobian probes not counted).
      converged: the change fell below ``tol`` with finite order parameters.
      failed: two evaluations in a row (or the first one) were not finite.
      change: the last relative change, the smaller of the order parameters' and the
        messages' (NaN once failed).
      potential: the potential the sweep reported at its last good evaluation (NaN
        for sweeps that report none).
      history: Anderson's memory at the end (its last differences), from which a
        second stage on a nearby map can start.
      jacobian: with ``probe``, the map's Jacobian in the log-messages at the last point
        evaluated, by forward differences (NaN where it was not measured).
    """

    messages: jax.Array
    merged: jax.Array
    op: OrderParameters
    iterations: jax.Array
    converged: jax.Array
    failed: jax.Array
    change: jax.Array
    potential: jax.Array
    history: "_Memory"
    jacobian: jax.Array


@pytree
class _Memory:
    """The last ``MEMORY`` differences of residuals (``dF``) and images (``dG``)."""

    dF: jax.Array
    dG: jax.Array
    filled: jax.Array

    @staticmethod
    def empty(n):
        return _Memory(dF=jnp.zeros((MEMORY, n)), dG=jnp.zeros((MEMORY, n)), filled=jnp.asarray(0))

    def updated(self, push, restart, df, dg):
        """Push ``(df, dg)`` where ``push``; clear everything where ``restart``."""
        slot = self.filled % MEMORY
        dF = jnp.where(push, self.dF.at[slot].set(df), self.dF)
        dG = jnp.where(push, self.dG.at[slot].set(dg), self.dG)
        filled = self.filled + push.astype(self.filled.dtype)
        return _Memory(dF=jnp.where(restart, 0.0, dF), dG=jnp.where(restart, 0.0, dG),
                       filled=jnp.where(restart, 0, filled))


@pytree
class _Carry:
    x: jax.Array  # where the next evaluation happens (log-messages)
    g: jax.Array  # the last good image G(x)
    f: jax.Array  # the last good residual G(x) - x
    op: OrderParameters
    potential: jax.Array
    memory: _Memory
    have: jax.Array  # a good evaluation has happened
    best: jax.Array  # smallest residual norm so far
    last: jax.Array  # residual norm of the last good evaluation
    it: jax.Array
    change: jax.Array
    streak: jax.Array  # failed evaluations in a row
    merged: jax.Array  # index of the known fixed point reached, -1 if none
    chord: jax.Array  # steps are preconditioned by the chord matrix
    probe: jax.Array  # the Jacobian column being measured, -1 before the probes begin
    jacobian: jax.Array


def _spd_solve(M, b):
    """``M^{-1} b`` for a small symmetric positive definite ``M`` (the Anderson Gram
    matrix): Gaussian elimination unrolled over its static size. A LAPACK solve adds a
    dozen kernels (pivoting, gathers) to the loop body, each compiled separately."""
    n = M.shape[0]
    M = [[M[i, j] for j in range(n)] for i in range(n)]
    b = [b[i] for i in range(n)]
    for k in range(n):
        for i in range(k + 1, n):
            r = M[i][k] / M[k][k]
            M[i] = [M[i][j] - r * M[k][j] for j in range(n)]
            b[i] = b[i] - r * b[k]
    x = [None] * n
    for i in reversed(range(n)):
        x[i] = (b[i] - sum((M[i][j] * x[j] for j in range(i + 1, n)), 0.0)) / M[i][i]
    return jnp.stack(x)


def _anderson(memory: _Memory, x, g, f):
    """The Anderson point ``g - dG gamma``, ``gamma`` solving the regularised least
    squares ``min |f - dF gamma|``, and whether to take it.

    It is refused (the plain image ``g`` is taken) with an empty memory, when it is not
    finite, or when it points against the plain step ``f``: a backward extrapolation
    is the symptom of a near-singular history (a map that translates the messages at a
    constant rate, as on the way to a recovered input) and cycles. Each message moves
    by at most a factor ``e^REACH`` beyond the plain step."""
    gram = memory.dF @ memory.dF.T
    reg = 1e-12 * (jnp.trace(gram) + TINY)
    gamma = _spd_solve(gram + reg * jnp.eye(MEMORY), memory.dF @ f)
    x_acc = g + jnp.clip(-memory.dG.T @ gamma, -REACH, REACH)
    usable = (memory.filled > 0) & jnp.all(jnp.isfinite(x_acc)) & (jnp.dot(x_acc - x, f) > 0)
    return x_acc, usable


def _restart(ok, norm, best, last):
    """Clear the memory (plain next step) after a failed evaluation, or when the
    residual exceeds ``GROWTH`` times the previous one or ``SETBACK`` times the best."""
    return ~ok | (norm > SETBACK * best) | (norm > GROWTH * last)


NEGLIGIBLE = 1e-30  # an error variance below this (a precision above its inverse) has settled at zero


def _change(new: OrderParameters, old: OrderParameters):
    """Largest relative change of ``V, A, tV, tA`` between two evaluations.

    A variance below ``NEGLIGIBLE`` in both (a layer recovered to every digit: a binary
    hidden layer behind a small noise gives ``V`` near ``1e-46``), or a precision above
    its inverse in both, counts as unchanged: its relative value there is quadrature
    noise (a cycle between two values 0.1% apart was seen) that moves nothing else, and
    would keep the iteration from ever meeting ``tol``."""
    n = jnp.stack([new.V, new.tV, new.A, new.tA])
    o = jnp.stack([old.V, old.tV, old.A, old.tA])
    relative = jnp.abs(n - o) / (jnp.abs(o) + TINY)
    an, ao = jnp.abs(n), jnp.abs(o)
    settled = jnp.concatenate([jnp.maximum(an[:2], ao[:2]) < NEGLIGIBLE,
                               jnp.minimum(an[2:], ao[2:]) > 1.0 / NEGLIGIBLE])
    return jnp.max(jnp.where(settled, 0.0, relative))


def finite(op: OrderParameters):
    return jnp.all(jnp.isfinite(jax.flatten_util.ravel_pytree(op)[0]))


MERGE = 1e-3  # a start whose messages come this close (relative) to a known fixed point joins it
PROBE_STEP = 1e-6  # forward-difference step of the Jacobian probes, in log-messages
CHORD_LIMIT = 1e3  # a chord matrix with a larger entry (a near-singular I - J) is not used
CHORD_RATE = 0.5  # chord steps stop unless each one at least halves the residual


def chord(jacobian):
    """``(P, usable)``: ``P = (I - J)^-1`` for a measured Jacobian ``J`` of the map,
    Newton's matrix for the fixed-point equation ``G(x) = x``, held fixed (a chord
    method), or the identity (plain steps, ``usable`` false) where ``J`` was not
    measured or ``I - J`` is close to singular (near a spinodal the Jacobian of a nearby
    map says too little about this one's)."""
    n = jacobian.shape[0]
    inverse = jnp.linalg.inv(jnp.eye(n) - jnp.where(jnp.isfinite(jacobian), jacobian, 0.0))
    usable = jnp.all(jnp.isfinite(jacobian)) & jnp.all(jnp.abs(inverse) < CHORD_LIMIT)
    return jnp.where(usable, inverse, jnp.eye(n)), usable


def iterate(sweep, state0, depth: int, tol, max_iter: int, accelerate: bool = True, known=None,
            history=None, probe: bool = False, precondition=None) -> IterationResult:
    """Iterate ``state -> sweep(state)`` to a fixed point.

    ``known = (messages, valid)``, the log-messages ``(K, n)`` of fixed points other
    starts converged to: an iteration whose image comes within ``MERGE`` (relative, in
    every message) of a valid one stops there (``merged`` says which): it is in that
    point's basin and would only repeat its iterations.

    Args:
      sweep: ``state -> (state, OrderParameters, potential)`` on positive messages.
      state0: the initial messages (a pytree of positive arrays).
      depth: the number of layers (the order parameters' length).
      tol: the relative change at which to stop: of every order parameter between two
        evaluations, or of every message between the point evaluated and its image
        (a point whose image is within ``tol`` is a fixed point to that precision
        already; with an accelerated step the order parameters' change would only
        say so one evaluation later).
      max_iter: iteration cap (static).
      accelerate: Anderson acceleration on (the fixed-point scheme runs without it:
        extrapolating its ``theta`` roots jumps between branches).
      history: an ``IterationResult.history`` of a map close to ``sweep`` (the same
        iteration with coarser rules) to start Anderson's memory from: its
        differences stand in for the first steps' until this map's own replace them.
      probe: (static) once converged (and not merged), evaluate the map at ``n`` more
        points, one log-message moved by ``PROBE_STEP`` each, for
        ``IterationResult.jacobian``. These evaluations are not counted in
        ``iterations`` and change nothing else in the result.
      precondition: an ``(n, n)`` matrix ``P`` (:func:`chord` of a nearby map's
        Jacobian): the iteration is then the same one on ``x -> x + P (G(x) - x)``,
        which has the same fixed points and, with ``P`` near Newton's matrix, converges
        in a few steps. ``history`` is carried over to it. A step that does not halve
        the residual (``CHORD_RATE``) drops ``P`` for the rest of the iteration.
    """
    flat0, unravel = jax.flatten_util.ravel_pytree(state0)
    x0 = jnp.log(jnp.maximum(flat0, TINY))
    n = x0.shape[0]
    nan_op = OrderParameters(*(jnp.full((depth,), jnp.nan) for _ in range(5)))
    P = precondition
    if history is not None and P is not None:
        # the memory's differences as the preconditioned map's: dF -> P dF, dG = dx + dF -> dx + P dF
        pdF = history.dF @ P.T
        history = history.replace(dF=pdF, dG=history.dG - history.dF + pdF)

    def G(x):
        state, op, potential = sweep(unravel(jnp.exp(x)))
        flat = jax.flatten_util.ravel_pytree(state)[0]
        ok = jnp.all(flat > 0) & finite(op) & ~jnp.isinf(potential)
        return jnp.log(jnp.maximum(flat, TINY)), op, potential, ok

    def cond(c: _Carry):
        iterating = (c.it < max_iter) & (c.change > tol)
        return iterating | ((c.probe >= 0) & (c.probe < n)) if probe else iterating

    def step(c: _Carry, g, op, potential, ok):
        """One iteration from the evaluation ``(g, op, potential, ok)`` at ``c.x``."""
        f = g - c.x
        norm = jnp.linalg.norm(f)
        restart = _restart(ok, norm, c.best, c.last)
        # The residual and image the step is taken from (and the previous ones): f and g,
        # or with a chord matrix the preconditioned map's (the previous ones from c.g, c.f).
        chording, fp, fp_last, gp, gp_last = c.chord, f, c.f, g, c.g
        if precondition is not None:
            # Chord steps near a fixed point shrink the residual many times over; where
            # one does not halve it (the nearby map's Jacobian does not describe this one
            # here), they stop, and the memory (of the chord map's differences) is cleared.
            drop = c.chord & ok & (restart | (c.have & (norm > CHORD_RATE * c.last)))
            chording = c.chord & ~drop
            restart = restart | drop
            chorded = lambda r: jnp.where(chording, jnp.clip(P @ r, -REACH, REACH), r)  # noqa: E731
            fp, fp_last = chorded(f), chorded(c.f)
            gp = jnp.where(chording, c.x + fp, g)
            gp_last = jnp.where(chording, c.g - c.f + fp_last, c.g)
        memory = c.memory.updated(ok & c.have & ~restart, restart, fp - fp_last, gp - gp_last)
        x_acc, usable = _anderson(memory, c.x, gp, fp)
        take_acc = accelerate & usable
        # After a failed evaluation, go back to the last good image.
        x_next = jnp.where(ok, jnp.where(take_acc, x_acc, gp), c.g)
        # f is the log-messages' change from the point evaluated to its image (counted
        # only where every message is finite).
        resid = jnp.max(jnp.where(jnp.isfinite(f), jnp.abs(f), jnp.inf))
        moved = jnp.minimum(jnp.where(c.have, _change(op, c.op), jnp.inf), resid)
        change = jnp.where(ok, moved, c.change)
        streak = jnp.where(ok, 0, c.streak + 1)
        gave_up = jnp.isnan(change) | (streak >= 2) | (~ok & ~c.have)
        merged = c.merged
        if known is not None:
            points, valid = known
            near = valid & (jnp.max(jnp.abs(points - g), axis=-1) < MERGE) & ok
            merged = jnp.where(jnp.any(near), jnp.argmax(near), -1)
            change = jnp.where(merged >= 0, 0.0, change)
        change = jnp.where(gave_up, FAILED, change)
        out = c.replace(
            x=x_next, g=jnp.where(ok, g, c.g), f=jnp.where(ok, f, c.f), op=tree_where(ok, op, c.op),
            potential=jnp.where(ok, potential, c.potential), memory=memory, have=c.have | ok,
            best=jnp.where(ok, jnp.minimum(c.best, norm), c.best), last=jnp.where(ok, norm, c.last),
            it=c.it + 1, change=change, streak=streak, merged=merged, chord=chording)
        if probe:
            # Converged here (not merged, not failed): the probes begin at the point just
            # evaluated (c.x, whose image is g).
            begin = ok & (change <= tol) & (change != FAILED) & (merged < 0)
            out = out.replace(probe=jnp.where(begin, 0, -1),
                              x=jnp.where(begin, c.x + PROBE_STEP * jnp.eye(n)[0], x_next))
        return out

    def measure(c: _Carry, g, ok):
        """A probe: the Jacobian's column ``c.probe`` from the image ``g`` at ``c.x``; the
        base point is the last one evaluated before the probes (``c.g - c.f``)."""
        k = c.probe
        column = jnp.where(ok, (g - c.g) / PROBE_STEP, jnp.nan)
        base = c.g - c.f
        following = jnp.eye(n)[jnp.minimum(k + 1, n - 1)]
        return c.replace(jacobian=c.jacobian.at[:, k].set(column), probe=k + 1, x=base + PROBE_STEP * following)

    def body(c: _Carry):
        g, op, potential, ok = G(c.x)
        if not probe:
            return step(c, g, op, potential, ok)
        return tree_where(c.probe >= 0, measure(c, g, ok), step(c, g, op, potential, ok))

    carry = _Carry(
        x=x0, g=x0, f=jnp.zeros_like(x0), op=nan_op, potential=jnp.asarray(jnp.nan),
        memory=_Memory.empty(n) if history is None else history,
        have=jnp.asarray(False), best=jnp.asarray(jnp.inf), last=jnp.asarray(jnp.inf), it=jnp.asarray(0),
        change=jnp.asarray(jnp.inf), streak=jnp.asarray(0), merged=jnp.asarray(-1),
        chord=jnp.asarray(precondition is not None), probe=jnp.asarray(-1), jacobian=jnp.full((n, n), jnp.nan),
    )
    out = jax.lax.while_loop(cond, body, carry)
    failed = out.change == FAILED
    converged = ~failed & (out.change <= tol) & finite(out.op)
    return IterationResult(messages=out.g, merged=out.merged, op=out.op, iterations=out.it, converged=converged,
                           failed=failed, change=jnp.where(failed, jnp.nan, out.change), potential=out.potential,
                           history=out.memory, jacobian=out.jacobian)
