"""Running a multi-start: every start of a scheme to its fixed point, surveyed with coarse
rules (scouted with rough ones first where the refinement takes chord steps) and refined
with the given ones, one after the other (joining points found earlier) or side by side.
:mod:`jaxreplica.solvers` chooses among the points found.
"""

from __future__ import annotations

import jax
import jax.flatten_util
import jax.numpy as jnp

from jaxreplica._struct import tree_where
from jaxreplica.chain import Chain
from jaxreplica.iteration import IterationResult, chord, iterate

__all__ = ["SURVEY_TOL", "layout", "run_starts"]


def layout(scheme) -> str:
    """The scheme's layout, or by backend: ``"map"`` on CPU, ``"vmap"`` elsewhere."""
    if scheme.layout is not None:
        return scheme.layout
    return "map" if jax.default_backend() == "cpu" else "vmap"


SURVEY_TOL = 1e-6  # the coarse survey's stopping change (the refinement then runs to the scheme's tol)


def _unranked(swept):
    """A sweep's result without its potential (NaN): the survey's end points are
    refined, and only the refinement's potential ranks the starts, so the free
    entropies (logarithms of every node's partition function, the ensembles' spectral
    sums) are left out of the survey's program."""
    state, op, potential = swept
    return state, op, jnp.full_like(potential, jnp.nan)


def run_starts(scheme, chain: Chain, starts, cfg, trho, survey: bool = True, chords: bool = False) -> IterationResult:
    """Every start to convergence: one after the other (``"map"``) or side by side
    (``"vmap"``: each runs as long as the slowest, which an accelerator hides).

    With ``survey`` (the multi-start), each start first runs with the coarse rules
    (``cfg.coarse()``, several times cheaper), to ``SURVEY_TOL``, and then from that end
    point, with the survey's Anderson memory, with the given rules to the scheme's
    tolerance: the many iterations of the way into a basin cost little, the fixed point
    and everything computed from it are those of the given rules. The survey's sweeps
    leave the potential out (:func:`_unranked`). One after the other,
    a start that runs into the basin of a fixed point an earlier start converged to
    stops there and takes that start's result (most chains have one stationary point,
    which every start would otherwise approach to full precision), in every stage. A
    start whose survey did not converge is refined from its own initial point.
    Iterations are counted over every stage. With ``chords``, a survey that converged
    (and did not join) measures the coarse map's Jacobian there (2L coarse evaluations,
    not counted) and the refinement takes chord steps with it
    (:func:`jaxreplica.iteration.chord`), starting with an empty memory instead of the
    survey's; and before the survey each start scouts with the rough rules
    (``cfg.rough()``, a few times cheaper again for smooth channels) to ``SURVEY_TOL``,
    the survey going on from where that ended, with its memory: the later starts
    usually join an earlier one while scouting, and the survey then only settles the
    coarse fixed point (a few evaluations) where the Jacobian is measured."""
    fine = lambda st: scheme.sweep(st, chain, cfg, trho)
    run = lambda sweep, st, tol, known=None, history=None, probe=False, precondition=None: iterate(
        sweep, st, chain.depth, tol, scheme.max_iter, scheme.accelerate, known=known, history=history,
        probe=probe, precondition=precondition)
    count = jax.tree_util.tree_leaves(starts)[0].shape[0]
    unravel = jax.flatten_util.ravel_pytree(jax.tree_util.tree_map(lambda x: x[0], starts))[1]
    if not survey:
        if layout(scheme) == "vmap":
            return jax.vmap(lambda st: run(fine, st, scheme.tol))(starts)
        results = _scan_starts(lambda i, st, known: run(fine, st, scheme.tol, known), starts, count)
        return _joined(results, jnp.where(results.merged >= 0, results.merged, jnp.arange(count)))

    survey_tol = jnp.maximum(scheme.tol, SURVEY_TOL)
    unranked = lambda rules: lambda st: _unranked(scheme.sweep(st, chain, rules, trho))  # noqa: E731
    coarse_sweep = unranked(cfg.coarse())

    def continued(res, st):
        """Where a stage goes on from the previous one's result ``res`` for start ``st``:
        its end point and Anderson memory if it converged, else ``st`` afresh."""
        point = tree_where(res.converged, unravel(jnp.exp(res.messages)), st)
        history = jax.tree_util.tree_map(lambda m: jnp.where(res.converged, m, jnp.zeros_like(m)), res.history)
        return point, history

    def surveyed(res, st, known=None):
        """The coarse survey, from the rough scouting's end point where there was one."""
        point, history = (st, None) if res is None else continued(res, st)
        return run(coarse_sweep, point, survey_tol, known, history, probe=chords)

    def refined(res, st, known=None):
        """The refinement of a start surveyed to ``res``: from the survey's end point
        with its Anderson memory (the coarse map's last differences, which spare the
        first full steps' plain ones) or, with ``chords``, in chord steps with the
        coarse map's Jacobian instead (the two maps differ by the rules' error, so these
        are nearly Newton's steps), or from ``st`` afresh if the survey did not converge."""
        point, history = continued(res, st)
        P = None
        if chords:
            # (the Jacobian is NaN, and the chord the identity, where no probes ran)
            P, usable = chord(res.jacobian)
            # The memory's differences carry the coarse map's derivatives between points
            # further apart than the probes, a rougher Newton matrix than P: mixed into
            # the chord steps, they left more to do (a two-layer tanh chain at weight
            # scale 1: the first step took the residual from 7.5e-6 to 2.6e-9 with
            # them, to 9.3e-11 without, and the refinement needed one more evaluation).
            history = jax.tree_util.tree_map(lambda m: jnp.where(usable, jnp.zeros_like(m), m), history)
        return run(fine, point, scheme.tol, known, history, precondition=P)

    # Each stage goes on from the previous one's result: with chords a rough scouting
    # first (its map a few times cheaper again: the way into a basin, and the joining of
    # later starts, cost little), then the coarse survey, then the refinement.
    stages = [surveyed, refined]
    if chords:
        rough_sweep = unranked(cfg.rough())
        stages = [lambda res, st, known=None: run(rough_sweep, st, survey_tol, known)] + stages

    if layout(scheme) == "vmap":
        results = jax.vmap(lambda st: stages[0](None, st))(starts)
        iterations = results.iterations
        for stage in stages[1:]:
            results = jax.vmap(stage)(results, starts)
            iterations = iterations + results.iterations
        return results.replace(iterations=iterations)

    index = jnp.arange(count)
    results = _scan_starts(lambda i, st, known: stages[0](None, st, known), starts, count)
    source = jnp.where(results.merged >= 0, results.merged, index)
    iterations = results.iterations
    for stage in stages[1:]:
        # A start that joined an earlier one is skipped (the result has the previous
        # stage's shapes: a start skipped gets zeros); each stage's joins are followed
        # from where the earlier stages' led.
        previous, skip = results, results.merged >= 0
        placeholder = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape[1:], x.dtype), previous).replace(
            merged=jnp.asarray(-1, dtype=previous.merged.dtype))

        def one(i, st, known, stage=stage, previous=previous, skip=skip, placeholder=placeholder):
            res = jax.tree_util.tree_map(lambda x: x[i], previous)
            return jax.lax.cond(skip[i], lambda: placeholder, lambda: stage(res, st, known))

        results = _scan_starts(one, starts, count)
        source = jnp.where(results.merged >= 0, results.merged, index)[source]
        iterations = iterations + results.iterations
        results = results.replace(merged=jnp.where(skip, previous.merged, results.merged))
    return _joined(results.replace(iterations=iterations), source)


def _scan_starts(one, init_starts, count: int) -> IterationResult:
    """``one(i, start, known) -> IterationResult`` over the starts in order, each told
    the fixed points (log-messages) the earlier ones converged to."""
    flat = jax.vmap(lambda st: jax.flatten_util.ravel_pytree(st)[0])(init_starts)

    def step(found, i):
        points, valid = found
        res = one(i, jax.tree_util.tree_map(lambda x: x[i], init_starts), (points, valid))
        new = res.converged & (res.merged < 0)
        return (points.at[i].set(res.messages), valid.at[i].set(new)), res

    init = (jnp.zeros_like(flat), jnp.zeros((count,), dtype=bool))
    return jax.lax.scan(step, init, jnp.arange(count))[1]


def _joined(results: IterationResult, source) -> IterationResult:
    """Every start reports the fixed point of start ``source`` (itself, or the one it
    joined); its own iteration count and ``merged`` stay."""
    take = lambda x: x[source]
    return results.replace(messages=take(results.messages), op=jax.tree_util.tree_map(take, results.op),
                           converged=take(results.converged), failed=take(results.failed),
                           change=take(results.change), potential=take(results.potential))
