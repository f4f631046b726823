"""The entropy of a chain: the multi-start, the choice of the smallest potential, the
result.

:func:`solve` runs every start of a scheme's multi-start (:mod:`jaxreplica.schemes`)
through :func:`jaxreplica.iteration.iterate`, keeps the converged stationary point of
smallest ``phi`` (Claim 1 of the paper), optionally polishes it with Newton's method,
and returns it through :func:`jaxreplica.stationary.at_stationary_point`, so derivatives
of anything computed from it are implicit. The whole of it, from the chain to the
:class:`Solution`, is one compiled program per chain structure and scheme; every number
of the chain and the tolerance are traced. Nothing inside raises: ``status`` says how it
went, and a chain whose numbers are invalid (known only at trace time) gives NaN.
"""

from __future__ import annotations

import functools

import jax
import jax.extend
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from jax import custom_batching

from jaxreplica.chain import Chain
from jaxreplica.conditional import conditional_chain, per_input
from jaxreplica.gaussian import TINY
from jaxreplica.iteration import IterationResult
from jaxreplica.multistart import layout, run_starts
from jaxreplica.potential import OrderParameters, noise_entropy, phi
from jaxreplica.priors import MMSE_FLOOR
from jaxreplica.quadrature import DEFAULT, QuadratureConfig
from jaxreplica.schemes import as_scheme, start_names
from jaxreplica.solution import Branches, LayerSolutions, Solution, Status
from jaxreplica.stationary import at_stationary_point, pack, polish, stationarity_residual, unpack
from jaxreplica._cache import release_if_crowded
from jaxreplica._programs import call as compiled_call
from jaxreplica._struct import concrete, pytree, tree_where

__all__ = ["solve", "solve_layers", "stationarity", "check_method", "METHODS"]

BOUND_SLACK = 1e-9  # round-off allowed above I(X; T) <= H(X)
POLISHED = 1e-6  # largest stationarity residual of a polished point that counts as stationary
LOWER_MARGIN = 1e-8  # a start that did not converge this far (relative) below the selected phi casts doubt
METHODS = ("vamp", "fixed_point")
GRADIENTS = ("implicit", "envelope")


def check_method(method):
    """``method`` if it names or is a scheme, else ``ValueError``."""
    as_scheme(method)
    return method


def _select(potentials, results: IterationResult):
    """The start of smallest ``phi`` among the converged ones (start 0 if none).

    Starts within round-off of the smallest ``phi`` are tied; the tie goes to the one
    with the smallest errors ``V``: the fixed-point scheme has a degenerate uninformed
    point (``V = rho``, ``tV = tA = theta = 0`` on a layer) whose ``phi`` can equal the
    true one to the last digit."""
    ok = results.converged
    pmin = jnp.min(jnp.where(ok, potentials, jnp.inf))
    tied = ok & (potentials <= pmin + 1e-11 * (1.0 + jnp.abs(pmin)))
    size = jnp.sum(jnp.log(jnp.maximum(results.op.V, TINY)), axis=-1)
    return jnp.where(jnp.any(ok), jnp.argmin(jnp.where(tied, size, jnp.inf)), 0)


def _start_status(results: IterationResult):
    return jnp.where(results.converged, Status.CONVERGED,
                     jnp.where(results.failed, Status.NOT_FINITE, Status.MAX_ITERATIONS)).astype(jnp.int32)


def _reported_error(V):
    """An error held at the floor underflowed (a discrete input recovered exactly): 0."""
    return jnp.where(V <= MMSE_FLOOR, 0.0, V)


@pytree
class _Found:
    """What the search finds: the selected stationary point (packed), ``phi`` there,
    the ``theta`` template, and how every start ended."""

    x: jax.Array
    value: jax.Array
    template: OrderParameters
    status: jax.Array
    iterations: jax.Array
    residual: jax.Array
    potentials: jax.Array  # every start's phi
    converged: jax.Array  # every start's convergence
    start_iterations: jax.Array
    start_mmse: jax.Array


def _search(chain: Chain, scheme, init, cfg: QuadratureConfig) -> _Found:
    """Run the multi-start (or the warm start), pick the smallest converged ``phi``,
    polish it if asked. Never differentiated: derivatives come from
    :func:`at_stationary_point`."""
    moments = chain.moments()
    trho = [jnp.asarray(t, dtype=jnp.float64) for t in moments[1]]
    if init is None:
        starts = scheme.starts(chain, moments)
    else:
        starts = jax.tree_util.tree_map(lambda x: x[None], scheme.warm_state(init))
    # A survey pays where a sweep evaluates a hidden layer's averages by quadrature (three
    # or four dimensions: a hidden channel, a last channel with noise after it, the prior
    # of a conditional chain); elsewhere it would only double the program.
    survey = scheme.survey and init is None and chain.averages_hidden_layers()
    # Chord steps in the refinement pay where each posterior is a quadrature too: there a
    # full evaluation costs tens of coarse ones, the 2L coarse probes of the Jacobian little.
    chords = survey and scheme.accelerate and chain.averages_hidden_layers(posterior_quadrature=True)
    results = run_starts(scheme, chain, starts, cfg, trho, survey=survey, chords=chords)
    potentials = results.potential
    if not scheme.reports_potential:
        potentials = jax.vmap(lambda o: phi(o, chain, cfg))(results.op)
    results = results.replace(converged=results.converged & jnp.isfinite(potentials))
    best = _select(potentials, results)
    op = jax.tree_util.tree_map(lambda x: x[best], results.op)
    status = _start_status(results)[best]
    x, value = pack(op, chain), potentials[best]
    # A start that stopped short of tol at a clearly smaller phi than the selected point
    # may have been on its way to the true minimum: the selection cannot be trusted.
    doubt = jnp.any(~results.converged & (potentials < value - LOWER_MARGIN * (1.0 + jnp.abs(value))))
    status = jnp.where((status == Status.CONVERGED) & doubt, Status.LOWER_START_UNCONVERGED, status)
    if scheme.polish_steps > 0:
        residual_fn = stationarity_residual(chain, op, cfg)
        x = polish(residual_fn, x, scheme.polish_steps)
        residual = jnp.max(jnp.abs(residual_fn(x)))
        status = jnp.where((status == Status.CONVERGED) & ~(residual < POLISHED), Status.NOT_STATIONARY, status)
        value = phi(unpack(x, chain, op), chain, cfg)
    else:
        # Without a polish neither the stationarity gradient nor phi is compiled into the
        # forward program (they would double it): the residual is the iteration's last
        # relative change and the potential the one the iteration reported at its last
        # evaluation (equal to phi at the returned point to second order in that change).
        residual = results.change[best]
    return _Found(x=x, value=value, template=op, status=status, iterations=results.iterations[best],
                  residual=residual, potentials=potentials, converged=results.converged,
                  start_iterations=results.iterations, start_mmse=results.op.V[:, 0])


def _recorded(fn, *args):
    """``fn(*args)`` traced once: a function of the flat ``args`` that evaluates the
    recorded program (returning ``fn``'s output structure), and the output's shapes."""
    closed, shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    tree, run = jax.tree_util.tree_structure(shape), jax.extend.core.jaxpr_as_fun(closed)
    return (lambda *leaves: jax.tree_util.tree_unflatten(tree, run(*leaves))), shape


def _trace_once(fn):
    """``fn`` traced once per argument structure and shapes; later calls evaluate the
    recorded program. ``custom_vmap`` traces a search for the unbatched call and its
    batching rule traces it again for each lane with the same shapes (a jit's cache
    does not serve there: the rule runs in another tracing context); tracing a surveyed
    two-layer search takes about a second of Python."""
    programs = {}

    def call(*args):
        args = jax.tree_util.tree_map(lambda x: jax.lax.convert_element_type(x, jnp.result_type(x)), args)
        leaves, tree = jax.tree_util.tree_flatten(args)
        key = (tree, tuple(jax.typeof(x) for x in leaves))
        if key not in programs:
            programs[key] = _recorded(fn, *args)[0]
        return programs[key](*leaves)

    return call


def _laid_out(fn):
    """``fn(chain, scheme, ...)``, traced once (:func:`_trace_once`), with a batching rule:
    under ``jax.vmap`` the lanes are laid out as the scheme says (``"map"``: one after the
    other, each running only its own iterations and taking only its own branches, such
    as a ``Switched`` channel's option; ``"vmap"``: side by side, each running as long as
    the slowest), instead of JAX's default, which batches the iteration's
    ``while_loop`` and so runs every lane until the slowest has converged."""
    traced = _trace_once(fn)
    batched = custom_batching.custom_vmap(traced)

    @batched.def_vmap
    def _rule(axis_size, in_batched, *args):
        args = jax.tree_util.tree_map(
            lambda x, b: x if b else jnp.broadcast_to(x, (axis_size,) + jnp.shape(x)), args, tuple(in_batched))
        one = lambda a: traced(*a)
        out = jax.lax.map(one, args) if layout(args[1]) == "map" else jax.vmap(one)(args)
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return batched


@functools.lru_cache(maxsize=None)
def _batched_search(cfg: QuadratureConfig):
    """:func:`_search` laid out under ``vmap`` as the scheme says (:func:`_laid_out`)."""
    return _laid_out(lambda chain, scheme, init: _search(chain, scheme, init, cfg))


@functools.lru_cache(maxsize=None)
def _batched_conditional_search(cfg: QuadratureConfig):
    """The search on the conditional chain ``T_1 -> ... -> T_L | X``, only where a hidden
    layer is noisy (otherwise ``H(T_L | X)`` is closed form and a placeholder is
    returned), laid out under ``vmap`` like :func:`_batched_search`, each lane taking
    only its own branch of the condition. ``init``: the conditional chain's order
    parameters to warm-start from, or None for its multi-start."""
    def one(chain, scheme, init):
        # The search is traced once: the condition's branch evaluates the recorded
        # program, and the placeholder takes its shapes from it.
        run, shape = _recorded(lambda: _search(conditional_chain(chain), scheme, init, cfg))
        placeholder = lambda: jax.tree_util.tree_map(lambda s: jnp.ones(s.shape, s.dtype), shape)
        return jax.lax.cond(chain.hidden_noiseless(), placeholder, run)

    return _laid_out(one)


def _nan_where(condition, tree):
    """``tree`` with every leaf NaN where ``condition`` holds."""
    return tree_where(condition, jax.tree_util.tree_map(lambda v: jnp.full_like(v, jnp.nan), tree), tree)


def _conditional_entropy(chain: Chain, scheme, cfg: QuadratureConfig, noisy_hidden: bool, noise_term,
                         skip: bool = False, init: OrderParameters | None = None, gradient: str = "implicit"):
    """``(H(T_L | X)/n_0, status, order parameters)``: closed form (``-noise_term``, the
    last layer's noise; no order parameters) when every hidden layer is noiseless, else
    the entropy of the conditional chain times ``n_1/n_0`` (:mod:`jaxreplica.conditional`),
    differentiable like any solve, warm-started from ``init`` if given; with ``skip``,
    NaN instead of that solve."""
    closed = -noise_term
    converged = jnp.asarray(Status.CONVERGED, dtype=jnp.int32)
    if not noisy_hidden or chain.depth == 1:
        return closed, converged, None
    if skip:
        return jnp.where(chain.hidden_noiseless(), closed, jnp.nan), converged, None
    cchain = conditional_chain(chain)
    found = _batched_conditional_search(cfg)(*jax.lax.stop_gradient((chain, scheme, init)))
    x, value = at_stationary_point(cchain, found.x, found.value, found.template, cfg, gradient)
    quiet = chain.hidden_noiseless()
    entropy = jnp.where(quiet, closed, per_input(chain, value))
    op = _nan_where(quiet, unpack(x, cchain, found.template))
    return entropy, jnp.where(quiet, Status.CONVERGED, found.status).astype(jnp.int32), op


def _program(chain: Chain, scheme, init, conditional_init, cfg: QuadratureConfig, noisy_hidden: bool = True,
             skip_conditional: bool = False, gradient: str = "implicit") -> Solution:
    # The search enters without tangents (it has no derivative rule of its own; the
    # derivative comes from at_stationary_point below).
    found = _batched_search(cfg)(*jax.lax.stop_gradient((chain, scheme, init)))
    names = start_names(chain.depth) if init is None else ("warm start",)
    x, potential = at_stationary_point(chain, found.x, found.value, found.template, cfg, gradient)
    op = unpack(x, chain, found.template)
    noise_term = noise_entropy(chain, cfg)
    conditional, conditional_status, conditional_op = _conditional_entropy(
        chain, scheme, cfg, noisy_hidden, noise_term, skip_conditional, conditional_init, gradient)
    mi = potential - conditional
    # I(X; T_L) <= H(X) for a discrete input: a selected point above it is not a solution.
    above = mi > chain.prior.entropy() + BOUND_SLACK
    status = jnp.where((found.status == Status.CONVERGED) & above, Status.ABOVE_INPUT_ENTROPY, found.status)
    status = jnp.where(status == Status.CONVERGED, conditional_status, status)
    # Numbers of the chain that are invalid but were only known at trace time.
    invalid = chain.invalid()
    status = jnp.where(invalid, Status.INVALID_INPUT, status).astype(jnp.int32)
    nan = lambda v: jnp.where(invalid, jnp.nan, v)
    branches = Branches(potential=nan(found.potentials), mutual_information=nan(found.potentials - conditional),
                        mmse=nan(_reported_error(found.start_mmse)), converged=found.converged & ~invalid,
                        iterations=found.start_iterations, names=names)
    return Solution(
        entropy=nan(potential),
        mutual_information=nan(mi),
        last_layer_information=nan(potential + noise_term),
        mmse=nan(_reported_error(op.V[0])),
        fixed_point=_nan_where(invalid, op),
        conditional_fixed_point=None if conditional_op is None else _nan_where(invalid, conditional_op),
        potential=nan(potential),
        converged=status == Status.CONVERGED,
        status=status,
        iterations=found.iterations,
        residual=nan(found.residual),
        start_potentials=nan(jnp.where(found.converged, found.potentials, jnp.nan)),
        branches=branches,
    )


def _maybe_noisy_hidden(chain: Chain) -> bool:
    """False only when every hidden layer's noise is a known zero (then the program
    needs no conditional solve)."""
    for ch in chain.channels[:-1]:
        value = concrete(ch.output_noise())
        if value is None or np.any(value != 0):
            return True
    return False


# One compiled program per chain structure, scheme settings (tol is traced) and
# quadrature: sweeps over any number of the chain and warm starts reuse it.
_program_jit = jax.jit(_program, static_argnames=("cfg", "noisy_hidden", "skip_conditional", "gradient"))


def solve(chain: Chain, method="vamp", *, init: OrderParameters | None = None, tol=None, max_iter=None,
          polish_steps=None, quadrature: QuadratureConfig = DEFAULT, conditional: bool = True,
          conditional_init: OrderParameters | None = None, gradient: str = "implicit") -> Solution:
    """Entropy, mutual information and MMSE of ``chain`` from the replica formula.

    Args:
      chain: the model.
      method: ``"vamp"`` (default), ``"fixed_point"``, or a scheme
        (``jr.VAMP(tol=..., max_iter=..., polish_steps=..., layout=...)``,
        ``jr.FixedPoint(...)``).
      init: a previous ``Solution.fixed_point`` to warm-start from (then only that
        start is run); by default the scheme's multi-start.
      tol, max_iter, polish_steps: override the scheme's fields (defaults ``1e-11``,
        ``3000``, ``0``): the relative change at which an iteration stops (of every
        order parameter between two evaluations, or of every message between the
        point evaluated and its image), the iteration cap, Newton steps after the
        iteration.
      quadrature: sizes of the integration rules (static).
      conditional: where a hidden layer is noisy, ``I(X; T_L)`` needs ``H(T_L | X)``,
        the entropy of a second chain solved by its own multi-start; ``False`` skips
        that solve and leaves ``mutual_information`` NaN there, for callers that read
        only the entropy and ``last_layer_information`` (static).
      conditional_init: a previous ``Solution.conditional_fixed_point`` to warm-start
        that second solve from (then only that start is run); by default its
        multi-start. Independent of ``init``.
      gradient: how derivatives of the values (``entropy``, ``mutual_information``,
        ``last_layer_information``, ``potential``) are taken (static). ``"implicit"``
        (default): through the fixed point's implicit derivative; it agrees with
        differences of solved values. ``"envelope"``: the partial derivative of ``phi``
        at the converged point (the envelope theorem), off by the order of the
        quadrature's error (up to 6e-7 relative on the chains compared in
        ``docs/theory.md``); no second derivative of ``phi`` is traced, so a gradient
        program compiles and runs several times faster, and the derivatives of the
        fixed points and the MMSE are NaN (not computed; in reverse mode that NaN
        reaches every derivative of a function that returns them beside the values).

    Returns:
      A :class:`Solution`. ``jax.jit``, ``jax.vmap`` over batched chain leaves and
      ``jax.grad`` with respect to them (implicitly through the fixed point) all work.
      Invalid numbers raise ``ValueError`` when the chain is built from concrete values;
      under ``jit`` they give NaN with ``status == Status.INVALID_INPUT``.
    """
    scheme = as_scheme(method, tol=tol, max_iter=max_iter, polish_steps=polish_steps)
    if not isinstance(chain, Chain):
        raise ValueError(f"chain must be a jaxreplica.Chain (got {type(chain).__name__})")
    if init is not None and not isinstance(init, OrderParameters):
        raise ValueError(f"init must be a Solution.fixed_point (OrderParameters), got {type(init).__name__}")
    if conditional_init is not None and not isinstance(conditional_init, OrderParameters):
        raise ValueError("conditional_init must be a Solution.conditional_fixed_point (OrderParameters), "
                         f"got {type(conditional_init).__name__}")
    if not isinstance(quadrature, QuadratureConfig):
        raise ValueError(f"quadrature must be a jaxreplica.QuadratureConfig (got {type(quadrature).__name__})")
    if not isinstance(conditional, bool):
        raise ValueError(f"conditional must be True or False (got {conditional!r})")
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {', '.join(map(repr, GRADIENTS))} (got {gradient!r})")
    # A process that compiled many chain structures gives their memory back here.
    release_if_crowded((chain, init, conditional_init))
    statics = dict(cfg=quadrature, noisy_hidden=_maybe_noisy_hidden(chain), skip_conditional=not conditional,
                   gradient=gradient)
    # Called from concrete values (eagerly, or in an eager vmap): the compiled program is
    # found by a key taken before tracing (:mod:`jaxreplica._programs`); else jit's path.
    found = compiled_call(_program, (chain, scheme, init, conditional_init), statics)
    if found is not None:
        return found
    return _program_jit(chain, scheme, init, conditional_init, **statics)


def stationarity(solution: Solution, chain: Chain, quadrature: QuadratureConfig = DEFAULT):
    """Largest ``|d phi/d log(order parameter)|`` (and ``d phi/d theta``) at a solution."""
    op = solution.fixed_point
    return jnp.max(jnp.abs(stationarity_residual(chain, op, quadrature)(pack(op, chain))))


def solve_layers(chain: Chain, method="vamp", *, init=None, conditional_init=None, **kwargs) -> LayerSolutions:
    """``H(T_l)/n_0`` and ``I(X; T_l)/n_0`` for every layer ``l`` of ``chain``.

    Each truncated chain ``T_0 -> ... -> T_l`` keeps its last layer's own noise if it has
    any and otherwise gets the noise of the full chain's last layer (the paper's
    convention: hidden layers noiseless, every ``H(T_l)`` measured with the same small
    noise). ``init`` may be a previous ``LayerSolutions.fixed_points`` for warm starts,
    ``conditional_init`` its ``conditional_fixed_points``; other keyword arguments go to
    :func:`solve`.
    """
    last_noise = chain.channels[-1].output_noise()
    sols = []
    for l in range(1, chain.depth + 1):
        ch = chain.channels[l - 1]
        # A layer without noise of its own is measured with the last layer's (all of it
        # before the activation).
        noise = jnp.where(jnp.asarray(ch.output_noise()) > 0, ch.noise, last_noise) if l < chain.depth else None
        sub = chain.truncated(l, noise)
        sols.append(solve(sub, method, init=None if init is None else init[l - 1],
                          conditional_init=None if conditional_init is None else conditional_init[l - 1], **kwargs))
    stack = lambda name: jnp.stack([getattr(s, name) for s in sols])
    return LayerSolutions(
        entropy=stack("entropy"), mutual_information=stack("mutual_information"), mmse=stack("mmse"),
        converged=stack("converged"), status=stack("status"), iterations=stack("iterations"),
        residual=stack("residual"), fixed_points=tuple(s.fixed_point for s in sols),
        conditional_fixed_points=tuple(s.conditional_fixed_point for s in sols),
    )
