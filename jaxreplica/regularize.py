"""Information as a differentiable objective: penalties on ``I(X; T_l)`` and design by gradient.

**The penalty.** For a network of USV layers ``W_k = U_k diag(S_k) V_k`` (only the
singular values ``S_k`` trained) on a data model with prior ``P_0`` and generative
layers ``G`` (possibly none), :class:`InformationPenalty` computes::

    P(S) = sum_l beta_l * I(X; T_l) / n_0

where ``I(X; T_l)`` is the replica value of the chain ``prior -> G -> network layers
1..l`` (network layers ``1..l-1`` noiseless, layer ``l`` with the measuring noise
``last_noise``, ``1e-5`` by default), exactly as the training monitor
(:mod:`jaxreplica.train`) records it: with noiseless hidden network layers
``T_{l-1}`` is a function of ``X`` and ``I(X; T_l) = I(T_l; T_{l-1}) = phi* -
H(T_l | Z_l)`` (``Solution.last_layer_information``). The spectrum of ``W_k^T W_k`` is
``S_k^2`` padded with ``n_{k-1} - len(S_k)`` zeros, so ``P`` is a function of the
``S_k`` alone.

**Its gradient** is not obtained by unrolling the solver. ``phi`` is stationary in
the order parameters ``q`` at the fixed point ``q*(S)``, so (envelope theorem,
replica-math.md section 2)::

    dP/dS = sum_l beta_l * [ d/dS phi(q*, chain_l(S)) + d/dS talpha_l I_last(0, trho_l(S)) ]   at fixed q*

which costs one gradient of ``phi`` per penalised layer (``gradient="envelope"``, the
default). ``gradient="implicit"`` differentiates ``jr.solve`` itself, whose fixed
point is an implicit function of the chain (the engine's ``custom_jvp``: one linear
solve with the Hessian of ``phi``); both agree with finite differences
(tests/test_regularize.py). The solve itself always runs on
``stop_gradient``-ed inputs, warm-started from the fixed points kept in a
:class:`PenaltyState`.

**Failed solves.** Inside ``jit`` nothing raises. A layer whose solve does not
converge (``Solution.converged`` false) contributes no gradient for that call: its
term is replaced by its last converged value under ``stop_gradient``, its
gradient is cut with ``jnp.where`` before it reaches ``S`` (a NaN from a bad point
cannot leak through a ``0 * NaN``), its warm start keeps the previous fixed point,
and it is counted (``PenaltyState.converged``; the trainer sums them per epoch).

**Training** with the penalty: :func:`make_regularized_step` (one jitted optax step
computing the task loss, the penalty and both gradients) and
:func:`make_regularized_epoch`; ``jaxreplica.train.train(..., info_penalty={l: beta})``
and ``jaxreplica train ... --info-penalty L:BETA`` use them.

**Design by gradient**: :func:`maximize_entropy` and :func:`match_information` run an
optax optimiser on any parameters of a chain (weight scales, a spectrum) with the
same envelope gradients; :func:`dense_sweep` and :func:`sweep_maximum` give the
brute-force reference they are checked against.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "InformationPenalty",
    "PenaltyState",
    "information_penalty",
    "singular_values",
    "spectrum_from_singular_values",
    "make_regularized_step",
    "make_regularized_epoch",
    "RegularizedEpoch",
    "DesignResult",
    "design",
    "maximize_entropy",
    "match_information",
    "dense_sweep",
    "sweep_maximum",
    "envelope_quantities",
    "network_information",
]


# ----------------------------------------------------------------------------- pieces


def _noise_entropy(chain):
    """``talpha_L I_last(0, trho_L) = -H(T_L | Z_L)/n_0`` (differentiable in the chain)."""
    from jaxreplica.potential import noise_entropy

    return noise_entropy(chain)


def envelope_quantities(chain, fixed_point):
    """``(H(T_L)/n_0, I(T_L; T_{L-1})/n_0)`` of ``chain`` at a *given* stationary point.

    ``H = phi(q*, chain)`` and ``I = phi(q*, chain) - H(T_L | Z_L)/n_0``. The order
    parameters ``q* = fixed_point`` are held fixed, so the gradient of either value
    with respect to the chain's leaves is the total derivative of the solved value
    (envelope theorem) whenever ``fixed_point`` is the converged solution of
    ``chain`` (``jr.solve(chain).fixed_point``). ``I`` is ``I(X; T_L)/n_0`` when every
    hidden layer of the chain after the data model is noiseless.
    """
    import jaxreplica as jr

    fixed_point = jax.lax.stop_gradient(fixed_point)
    h = jr.phi(fixed_point, chain)
    return h, h + _noise_entropy(chain)


def spectrum_from_singular_values(s: jax.Array, n_in: int) -> jax.Array:
    """Eigenvalues of ``W^T W`` for ``W = U diag(s) V`` with ``n_in`` columns: ``s^2`` and
    ``n_in - len(s)`` zeros (unsorted: the replica formula only uses symmetric functions
    of the spectrum)."""
    s2 = jnp.square(s)
    pad = n_in - s2.shape[0]
    if pad < 0:
        raise ValueError(f"n_in={n_in} is smaller than the number of singular values {s2.shape[0]}")
    return jnp.concatenate([s2, jnp.zeros(pad, s2.dtype)]) if pad else s2


def singular_values(params, depth: int) -> list[jax.Array]:
    """``[S_1, ..., S_depth]`` of the USV layers of a network or of its ``nnx.Param`` state.

    ``params`` is a :class:`jaxreplica.nn.Network` or the ``params`` of
    ``nnx.split(network, nnx.Param, ...)`` (what the training step differentiates).
    """
    layers = params.layers if hasattr(params, "layers") else params["layers"]
    out = []
    for k in range(depth):
        layer = layers[k]
        s = layer.S if hasattr(layer, "S") else layer["S"]
        out.append(s[...])
    return out


@jax.custom_vjp
def _gate(x, ok):
    """Identity whose cotangent is replaced by 0 where ``ok`` is false (a select, so a
    NaN cotangent of a failed solve cannot leak through)."""
    return x


def _gate_fwd(x, ok):
    return x, ok


def _gate_bwd(ok, g):
    return jnp.where(ok, g, jnp.zeros_like(g)), None


_gate.defvjp(_gate_fwd, _gate_bwd)


# ----------------------------------------------------------------------------- state


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["fixed_points", "mutual_information", "converged", "iterations"], meta_fields=[])
@dataclass(frozen=True)
class PenaltyState:
    """Warm starts and diagnostics of the last penalty evaluation, one entry per penalised layer.

    * ``fixed_points``: tuple of ``OrderParameters``, the last *converged* fixed point of
      each layer's chain (a non-converged solve keeps the previous one);
    * ``mutual_information``: ``(n,)`` last converged ``I(X; T_l)/n_0`` (NaN if none yet);
    * ``converged``: ``(n,)`` whether the last solve of each layer converged;
    * ``iterations``: ``(n,)`` solver iterations of the last solve.
    """

    fixed_points: tuple
    mutual_information: jax.Array
    converged: jax.Array
    iterations: jax.Array

    @property
    def not_converged(self) -> jax.Array:
        """Number of penalised layers whose last solve did not converge."""
        return jnp.sum(~self.converged)


# ----------------------------------------------------------------------------- penalty


_ACTIVATION_CHANNELS = ("linear", "relu", "hardtanh", "probit", "sign")


@dataclass(frozen=True, eq=False)
class InformationPenalty:
    """``P(S) = sum_l beta_l I(X; T_l)/n_0`` of a USV network on a data model (see the module doc).

    Build it with :meth:`for_network` (from a :class:`~jaxreplica.nn.Network` and a
    :class:`~jaxreplica.data.Dataset`) or directly:

    * ``betas``: mapping ``{layer: beta}`` (1-based network layers; ``beta`` any finite
      real, negative to reward information), stored as sorted pairs;
    * ``prior``: the data model's first variable (``Normal``, ``Bimodal``, ``SpikeSlab``);
    * ``generative``: :class:`~jaxreplica.nn.SpectralLayer` list from that variable to the
      network input, each with its own ``noise`` (empty for teacher-student data);
    * ``sizes``: ``(n_0, ..., n_m)`` of the network layers ``1..m``, ``m >= max(layer)``;
    * ``activations``: their activations (``linear``, ``relu``, ``hardtanh``, ``probit``);
    * ``last_noise``: noise variance of the measured layer (hidden network layers get 0);
    * ``tol``, ``max_iter``, ``method``: passed to ``jaxreplica.solve``;
    * ``gradient``: ``"envelope"`` (default) or ``"implicit"``.

    Calling it, ``penalty(singular_values, state)``, returns ``(P, new_state)``
    (:func:`information_penalty`); it is pure, jittable, and differentiable in the
    singular values (``jax.value_and_grad(..., has_aux=True)``). ``state=None`` solves
    cold (the engine's multi-start) and compiles separately from warm calls.
    """

    betas: tuple
    prior: Any
    sizes: tuple
    activations: tuple
    generative: tuple = ()
    last_noise: float = 1e-5
    tol: float = 1e-8
    max_iter: int = 1000
    method: str = "vamp"
    gradient: str = "envelope"

    def __post_init__(self):
        betas = self.betas.items() if isinstance(self.betas, Mapping) else self.betas
        pairs = []
        for layer, beta in betas:
            if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
                raise ValueError(f"betas: layers must be integers, got {layer!r}")
            beta = float(beta)
            if not math.isfinite(beta):
                raise ValueError(f"betas: beta of layer {layer} must be finite, got {beta!r}")
            pairs.append((int(layer), beta))
        pairs.sort()
        if not pairs:
            raise ValueError("betas: give at least one {layer: beta}")
        if len({l for l, _ in pairs}) != len(pairs):
            raise ValueError(f"betas: a layer appears twice in {pairs}")
        sizes = tuple(int(n) for n in self.sizes)
        activations = tuple(str(a).lower() for a in self.activations)
        if len(sizes) != len(activations) + 1:
            raise ValueError(f"sizes must have one entry more than activations, got {len(sizes)} and "
                             f"{len(activations)}")
        depth = pairs[-1][0]
        if pairs[0][0] < 1 or depth > len(activations):
            raise ValueError(f"betas: layers must be in 1..{len(activations)}, got {[l for l, _ in pairs]}")
        for k in range(depth):
            if activations[k] not in _ACTIVATION_CHANNELS:
                raise ValueError(f"activations: layer {k + 1} is {activations[k]!r}, which has no replica channel")
        if not self.last_noise > 0:
            raise ValueError(f"last_noise must be positive, got {self.last_noise!r}")
        if not self.tol > 0:
            raise ValueError(f"tol must be positive, got {self.tol!r}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if self.method not in ("vamp", "fixed_point"):
            raise ValueError(f"method must be 'vamp' or 'fixed_point', got {self.method!r}")
        if self.gradient not in ("envelope", "implicit"):
            raise ValueError(f"gradient must be 'envelope' or 'implicit', got {self.gradient!r}")
        for g in self.generative:
            if g.noise is None:
                raise ValueError("generative layers must carry their own noise")
        object.__setattr__(self, "betas", tuple(pairs))
        object.__setattr__(self, "sizes", sizes[: depth + 1])
        object.__setattr__(self, "activations", activations[:depth])
        object.__setattr__(self, "generative", tuple(self.generative))
        object.__setattr__(self, "max_iter", int(self.max_iter))

    # ---- construction

    @classmethod
    def for_network(cls, network, data, betas: Mapping[int, float], **settings) -> InformationPenalty:
        """The penalty of ``network`` (USV layers ``1..max(layer)``) on the data model of ``data``."""
        from .nn.convert import SpectralLayer

        depth = max(betas) if betas else 0
        for k in range(depth):
            if not network.usv[k]:
                raise ValueError(f"betas: layer {k + 1} is a dense layer; the information penalty needs USV layers "
                                 f"1..{depth} (orthogonally invariant weights)")
            if network.activations[k] == "softmax":
                raise ValueError(f"betas: layer {k + 1} has a softmax output, which has no replica channel")
        gen = tuple(SpectralLayer(np.asarray(g.spectrum(), np.float64), g.alpha, g.activation, g.noise)
                    for g in data.generative)
        return cls(betas=dict(betas), prior=data.prior, sizes=tuple(network.sizes), activations=network.activations,
                   generative=gen, **settings)

    # ---- static description

    @property
    def layers(self) -> tuple[int, ...]:
        """Penalised layers (1-based, ascending)."""
        return tuple(l for l, _ in self.betas)

    @property
    def beta(self) -> np.ndarray:
        """Weights ``beta_l`` in the order of :attr:`layers`."""
        return np.asarray([b for _, b in self.betas])

    @property
    def depth(self) -> int:
        """Number of network layers the penalty depends on (the deepest penalised layer)."""
        return len(self.activations)

    def spectra(self, singular_values: Sequence[jax.Array]) -> list[jax.Array]:
        """Spectra of ``W_k^T W_k``, ``k = 1..depth``, from the singular values."""
        if len(singular_values) < self.depth:
            raise ValueError(f"singular_values: need {self.depth} layers, got {len(singular_values)}")
        return [spectrum_from_singular_values(jnp.asarray(singular_values[k]), self.sizes[k])
                for k in range(self.depth)]

    def chain(self, spectra: Sequence[jax.Array], layer: int):
        """The chain ``prior -> generative -> network layers 1..layer`` (traceable in the spectra)."""
        import jaxreplica as jr

        from .nn.convert import channel

        blocks = [(jr.Empirical(eigenvalues=jnp.asarray(g.spectrum, jnp.float64), alpha=float(g.alpha)),
                   channel(g.activation, float(g.noise))) for g in self.generative]
        for k in range(layer):
            noise = self.last_noise if k == layer - 1 else 0.0
            blocks.append((jr.Empirical(eigenvalues=spectra[k], alpha=self.sizes[k + 1] / self.sizes[k]),
                           channel(self.activations[k], noise)))
        return jr.Chain(prior=self.prior, layers=blocks)

    # ---- evaluation

    def __call__(self, singular_values: Sequence[jax.Array], state: PenaltyState | None = None):
        return information_penalty(singular_values, self, state)

    def initial(self, singular_values: Sequence[jax.Array]) -> tuple[jax.Array, PenaltyState]:
        """``(P, state)`` from cold (multi-start) solves of every penalised layer.

        Runs eagerly around ``jr.solve`` (itself jit-compiled once per chain structure
        and shared by every caller in the process), so a new penalty on the same
        network compiles nothing new here.
        """
        return information_penalty([jnp.asarray(s) for s in singular_values[: self.depth]], self, None)

    def initial_state(self, singular_values: Sequence[jax.Array]) -> PenaltyState:
        """The :class:`PenaltyState` of :meth:`initial` (warm starts for the next calls)."""
        return self.initial(singular_values)[1]

    @functools.cached_property
    def value_and_grad(self):
        """Jitted ``(singular_values, state) -> ((P, new_state), dP/dS)`` (``state`` not None)."""
        return jax.jit(jax.value_and_grad(lambda s, st: information_penalty(s, self, st), has_aux=True))

    def describe(self) -> dict:
        """JSON-able settings."""
        return {"betas": {str(l): b for l, b in self.betas}, "last_noise": self.last_noise, "tol": self.tol,
                "max_iter": self.max_iter, "method": self.method, "gradient": self.gradient}


def network_information(network, data, layers: Sequence[int], **settings) -> np.ndarray:
    """``I(X; T_l)/n_0`` of a USV network on a data model for each of ``layers`` (cold solves),
    as the penalty and the training monitor define it (NaN where a solve did not converge).

    ``settings`` as for :class:`InformationPenalty` (``last_noise``, ``tol``, ...).
    """
    pen = InformationPenalty.for_network(network, data, {int(l): 1.0 for l in layers}, **settings)
    state = pen.initial_state(singular_values(network, pen.depth))
    out = np.array(state.mutual_information, np.float64)
    out[~np.asarray(state.converged)] = np.nan
    order = {l: k for k, l in enumerate(pen.layers)}
    return out[[order[int(l)] for l in layers]]


def _fallback_point(template):
    """A finite point of the right shape to evaluate ``phi`` at when a cold solve failed."""
    return jax.tree_util.tree_map(lambda x: jnp.full_like(x, 0.5), template)


def _where_tree(cond, a, b):
    return jax.tree_util.tree_map(lambda x, y: jnp.where(cond, x, y), a, b)


def information_penalty(singular_values: Sequence[jax.Array], penalty: InformationPenalty,
                        state: PenaltyState | None = None) -> tuple[jax.Array, PenaltyState]:
    """``(sum_l beta_l I(X; T_l)/n_0, new_state)`` for the network whose USV singular values are given.

    ``singular_values``: ``[S_1, ..., S_m]`` (``m >= penalty.depth``; see
    :func:`singular_values`). ``state``: the previous :class:`PenaltyState` (warm
    starts), or ``None`` for cold multi-start solves. Differentiable in the singular
    values through the fixed points (``penalty.gradient``, envelope theorem by
    default), never by unrolling the iterations. A layer whose solve does not converge
    contributes its last converged value under ``stop_gradient`` (0 if it has none)
    and a zero gradient.
    """
    import jaxreplica as jr

    spectra = penalty.spectra(singular_values)
    fixed, mis, convs, iters = [], [], [], []
    total = jnp.zeros(())
    for i, (layer, beta) in enumerate(penalty.betas):
        init = None if state is None else state.fixed_points[i]
        frozen_chain = jax.lax.stop_gradient(penalty.chain(spectra, layer))
        sol = jr.solve(frozen_chain, penalty.method, init=init, tol=penalty.tol, max_iter=penalty.max_iter)
        op = jax.lax.stop_gradient(sol.fixed_point)
        ok = sol.converged & jnp.isfinite(sol.last_layer_information)
        keep = init if init is not None else _fallback_point(op)
        point = _where_tree(ok, op, keep)
        gated = [_gate(s, ok) for s in spectra[:layer]]
        chain = penalty.chain(gated, layer)
        if penalty.gradient == "envelope":
            _, value = envelope_quantities(chain, point)
        else:
            # the engine's implicit derivative (custom_jvp); from the converged point the
            # iteration stops at once, so this adds one sweep and the tangent solve.
            value = jr.solve(chain, penalty.method, init=point, tol=penalty.tol,
                             max_iter=penalty.max_iter).last_layer_information
        prev = jnp.asarray(jnp.nan) if state is None else state.mutual_information[i]
        stale = jnp.where(jnp.isfinite(prev), prev, 0.0)
        term = jnp.where(ok, value, jax.lax.stop_gradient(stale))
        total = total + beta * term
        fixed.append(point)
        mis.append(jnp.where(ok, jax.lax.stop_gradient(value), prev))
        convs.append(ok)
        iters.append(sol.iterations)
    new_state = PenaltyState(fixed_points=tuple(fixed), mutual_information=jnp.stack(mis),
                             converged=jnp.stack(convs), iterations=jnp.stack(iters))
    return total, new_state


# ----------------------------------------------------------------------------- training


def _tree_nonfinite(tree) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return sum(jnp.sum(~jnp.isfinite(x)) for x in leaves) if leaves else jnp.zeros((), jnp.int32)


def make_regularized_step(graphdef, tx: optax.GradientTransformation, loss: str, penalty: InformationPenalty,
                          extra_penalty: Callable | None = None):
    """One optimizer step ``(params, opt_state, pstate, frozen, x, y) -> (params, opt_state, pstate, metrics)``.

    Objective on a batch: ``mean_i loss(z_L(x_i), y_i) [+ extra_penalty(params)] +
    sum_l beta_l I(X; T_l)/n_0``. The task gradient (backpropagation) and the penalty
    gradient (through the replica fixed points, warm-started from ``pstate``) are
    computed separately and added; non-finite entries of the penalty gradient are
    zeroed and counted (they should not occur; failed solves already give zero).
    ``metrics``: ``loss`` (task + penalty), ``task``, ``penalty``,
    ``mutual_information`` ``(n,)``, ``not_converged`` (layers), ``nonfinite``
    (gradient entries). Pure and jittable.
    """
    from .train import task_objective as _task_objective

    task_objective = _task_objective(graphdef, loss, extra_penalty)

    def info_objective(params, pstate):
        return information_penalty(singular_values(params, penalty.depth), penalty, pstate)

    def step(params, opt_state, pstate, frozen, x, y):
        task, g_task = jax.value_and_grad(task_objective)(params, frozen, x, y)
        (value, pstate), g_info = jax.value_and_grad(info_objective, has_aux=True)(params, pstate)
        nonfinite = _tree_nonfinite(g_info)
        g_info = jax.tree_util.tree_map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), g_info)
        grads = jax.tree_util.tree_map(jnp.add, g_task, g_info)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {"loss": task + value, "task": task, "penalty": value,
                   "mutual_information": pstate.mutual_information,
                   "not_converged": pstate.not_converged, "nonfinite": nonfinite}
        return params, opt_state, pstate, metrics

    return step


def make_regularized_epoch(step, batch_size: int, penalty: InformationPenalty):
    """Jitted epoch ``(params, opt_state, pstate, frozen, key, x, y) -> (params, opt_state, pstate, summary)``.

    Shuffles with ``key`` and scans ``step`` (:func:`make_regularized_step`) over
    ``floor(n / batch_size)`` batches, carrying the penalty's warm starts from step to
    step, then evaluates the penalty once more at the epoch's final parameters (no
    gradient). ``summary``: means of ``loss``, ``task`` over the batches; ``penalty``
    and ``mutual_information`` ``(n,)`` at the final parameters; ``not_converged``
    (all solves of the epoch) and ``nonfinite`` summed.
    """

    @jax.jit
    def epoch(params, opt_state, pstate, frozen, key, x, y):
        n_batches = x.shape[0] // batch_size
        perm = jax.random.permutation(key, x.shape[0])[: n_batches * batch_size].reshape(n_batches, batch_size)

        def body(carry, idx):
            p, s, st = carry
            p, s, st, m = step(p, s, st, frozen, x[idx], y[idx])
            return (p, s, st), m

        (params, opt_state, pstate), ms = jax.lax.scan(body, (params, opt_state, pstate), perm)
        value, pstate = information_penalty(singular_values(params, penalty.depth), penalty, pstate)
        summary = {"loss": jnp.mean(ms["loss"]), "task": jnp.mean(ms["task"]), "penalty": value,
                   "mutual_information": pstate.mutual_information,
                   "not_converged": jnp.sum(ms["not_converged"]) + pstate.not_converged,
                   "nonfinite": jnp.sum(ms["nonfinite"])}
        return params, opt_state, pstate, summary

    return epoch


class RegularizedEpoch:
    """Adapter with the plain trainer's epoch signature ``(params, opt_state, frozen, key, x, y)
    -> (params, opt_state, mean batch loss)``, holding the :class:`PenaltyState` between
    epochs and a per-epoch record (row 0: the initial network).

    Record (:meth:`arrays`), row ``e`` for the network after epoch ``e``: ``penalty``,
    ``penalty_information`` ``(E + 1, n)`` (``I(X; T_l)/n_0`` of the penalised layers,
    the last converged value where a solve failed; NaN if none yet),
    ``penalty_not_converged`` (layer solves that did not converge during the epoch,
    row 0: the cold solves), ``penalty_nonfinite`` (non-finite penalty-gradient entries
    zeroed during the epoch).
    """

    def __init__(self, graphdef, tx, loss: str, penalty: InformationPenalty, batch_size: int,
                 extra_penalty: Callable | None = None):
        self.penalty = penalty
        self._epoch = make_regularized_epoch(make_regularized_step(graphdef, tx, loss, penalty, extra_penalty),
                                             batch_size, penalty)
        self.state: PenaltyState | None = None
        self.record = {"penalty": [], "penalty_information": [], "penalty_not_converged": [],
                       "penalty_nonfinite": []}

    def start(self, params) -> None:
        """Cold solves at the initial network (row 0 of the record)."""
        value, self.state = self.penalty.initial(singular_values(params, self.penalty.depth))
        self._append(value, self.state.mutual_information, self.state.not_converged, 0)

    def _append(self, value, mi, not_converged, nonfinite):
        self.record["penalty"].append(float(value))
        self.record["penalty_information"].append(np.asarray(mi, np.float64))
        self.record["penalty_not_converged"].append(int(not_converged))
        self.record["penalty_nonfinite"].append(int(nonfinite))

    def __call__(self, params, opt_state, frozen, key, x, y):
        if self.state is None:
            self.start(params)
        params, opt_state, self.state, s = self._epoch(params, opt_state, self.state, frozen, key, x, y)
        self._append(s["penalty"], s["mutual_information"], s["not_converged"], s["nonfinite"])
        return params, opt_state, s["loss"]

    def arrays(self) -> dict[str, np.ndarray]:
        n = len(self.penalty.betas)
        return {"penalty": np.asarray(self.record["penalty"], np.float64),
                "penalty_information": np.asarray(self.record["penalty_information"], np.float64).reshape(-1, n),
                "penalty_not_converged": np.asarray(self.record["penalty_not_converged"], np.int64),
                "penalty_nonfinite": np.asarray(self.record["penalty_nonfinite"], np.int64)}


# ----------------------------------------------------------------------------- design by gradient


@dataclass
class DesignResult:
    """Outcome of :func:`design` (and :func:`maximize_entropy`, :func:`match_information`).

    * ``params``: the parameters at the last evaluated point (where ``entropy`` and
      ``information`` were computed; the point that met the stopping rule if ``done``);
    * ``entropy``, ``information``: ``H(T_L)/n_0`` and ``I(T_L; T_{L-1})/n_0`` there;
    * ``done``: the stopping rule was met; ``steps``: gradient evaluations;
    * ``not_converged``: steps whose solve did not converge (no update was made);
    * ``trace``: per step ``params``, ``loss``, ``entropy``, ``information``, ``grad``
      (NumPy arrays, stacked over steps);
    * ``fixed_point``: the last converged order parameters (a warm start);
    * ``cold_entropy``, ``cold_information``: the same quantities from a cold multi-start
      solve at ``params`` (Claim 1's smallest-``phi`` stationary point). The steps are
      warm-started and could follow another stationary point; a difference between the
      two says so;
    * ``restarts``: how often the run went on from a cold point because the warm steps
      had followed another branch.
    """

    params: Any
    entropy: float
    information: float
    done: bool
    steps: int
    not_converged: int
    trace: dict
    fixed_point: Any
    cold_entropy: float = math.nan
    cold_information: float = math.nan
    restarts: int = 0


def design(chain_fn: Callable[[Any], Any], params, loss: Callable[[jax.Array, jax.Array], jax.Array], *,
           optimizer: optax.GradientTransformation | None = None, steps: int = 100,
           stop: Callable[[dict], bool] | None = None, project: Callable[[Any], Any] | None = None,
           method: str = "vamp", tol: float = 1e-11, max_iter: int = 3000, max_restarts: int = 3) -> DesignResult:
    """Minimise ``loss(H(T_L), I(T_L; T_{L-1}))`` over the parameters of a chain with an optax optimiser.

    ``chain_fn(params) -> jr.Chain`` builds the chain from a pytree of parameters
    (weight scales, a spectrum, noise levels; it must be traceable). Each step solves
    the chain warm-started from the previous fixed point (inputs under
    ``stop_gradient``), takes the gradient of ``loss`` by the envelope theorem
    (:func:`envelope_quantities`: no differentiation of the solver), and applies one
    ``optimizer`` update, followed by ``project`` (e.g. clipping to bounds).

    ``optimizer``: any optax transformation; the default is ``optax.lbfgs()``, whose
    zoom line search gets the objective as ``value_fn`` (each trial point is one more
    warm-started solve; a trial point whose solve does not converge has value
    ``+inf``, so the line search steps back). Plain transformations
    (``optax.adam(1e-2)``, ...) ignore the extra arguments.

    A step whose solve does not converge makes no update and is counted. The steps are
    warm-started, which can follow a stationary point of ``phi`` that is not the
    smallest one (the Figure-2 hardtanh chain has two branches near ``sigma = 2.5``).
    When the run ends, a cold multi-start solve at the final point checks the branch;
    if it differs, the run goes on from the cold point with a fresh optimiser state (at
    most ``max_restarts`` times, within the same ``steps`` budget). The result carries
    that last check (``cold_entropy``, ``cold_information``) and ``restarts``.
    ``stop(info)`` is asked after every converged step with ``info`` holding ``params``,
    ``loss``, ``entropy``, ``information`` and ``grad`` (of ``loss``) at the evaluated
    point, and ends the run when true. One compilation per call.
    """
    import jaxreplica as jr

    tx = optax.lbfgs() if optimizer is None else optimizer
    tx = optax.with_extra_args_support(tx)
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), params)
    project = (lambda p: p) if project is None else project

    def evaluate(q, op):
        sol = jr.solve(jax.lax.stop_gradient(chain_fn(q)), method, init=op, tol=tol, max_iter=max_iter)
        ok = sol.converged
        point = _where_tree(ok, jax.lax.stop_gradient(sol.fixed_point), op)
        h, i = envelope_quantities(chain_fn(q), point)
        value = loss(h, i)
        return value, (h, i, ok & jnp.isfinite(value), point)

    @jax.jit
    def step(p, opt_state, op):
        (value, (h, i, ok, point)), g = jax.value_and_grad(evaluate, has_aux=True)(p, op)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(g)]))
        ok = ok & finite
        g = jax.tree_util.tree_map(lambda x: jnp.where(ok, x, 0.0), g)

        def value_fn(q):
            v, aux = evaluate(q, point)
            return jnp.where(aux[2], v, jnp.inf)

        updates, new_state = tx.update(g, opt_state, p, value=value, grad=g, value_fn=value_fn)
        new_p = project(optax.apply_updates(p, updates))
        new_p = _where_tree(ok, new_p, p)
        new_state = _where_tree(ok, new_state, opt_state)
        return new_p, new_state, point, value, h, i, g, ok

    # cold multi-start outside the step: jr.solve's own compilation, shared between calls
    op = jr.solve(chain_fn(params), method, tol=tol, max_iter=max_iter).fixed_point
    opt_state = tx.init(params)
    trace = {k: [] for k in ("params", "loss", "entropy", "information", "grad", "converged")}
    done, failed, p = False, 0, params
    evaluated, n, restarts = params, 0, 0
    check = None
    while True:
        while n < steps:
            n += 1
            evaluated = p
            new_p, opt_state, op, value, h, i, g, ok = step(p, opt_state, op)
            ok = bool(ok)
            info = {"params": p, "loss": float(value), "entropy": float(h), "information": float(i), "grad": g}
            for k in ("params", "grad"):
                trace[k].append(jax.tree_util.tree_map(np.asarray, info[k]))
            for k in ("loss", "entropy", "information"):
                trace[k].append(info[k])
            trace["converged"].append(ok)
            if not ok:
                failed += 1
            elif stop is not None and stop(info):
                done = True
                break
            p = new_p
        # Cold multi-start at the point reached: the warm-started steps may have followed
        # a stationary point of phi that is not the smallest one (a first-order
        # transition between branches). If so, go on from the cold point.
        check = jr.solve(chain_fn(evaluated), method, tol=tol, max_iter=max_iter)
        last_h = trace["entropy"][-1] if trace["entropy"] else math.nan
        same = bool(check.converged) and abs(float(check.entropy) - last_h) <= 1e-7 * (1.0 + abs(last_h))
        if same or not bool(check.converged) or n >= steps or restarts >= max_restarts:
            break
        restarts += 1
        done = False
        p, op, opt_state = evaluated, check.fixed_point, tx.init(evaluated)
    stacked = {k: (jax.tree_util.tree_map(lambda *xs: np.stack(xs), *v) if k in ("params", "grad") else np.asarray(v))
               for k, v in trace.items() if v}
    last = n - 1
    return DesignResult(params=evaluated, entropy=float(trace["entropy"][last]) if trace["entropy"] else math.nan,
                        information=float(trace["information"][last]) if trace["information"] else math.nan,
                        done=done, steps=n, not_converged=failed, trace=stacked, fixed_point=op,
                        cold_entropy=float(check.entropy) if bool(check.converged) else math.nan,
                        cold_information=float(check.last_layer_information) if bool(check.converged) else math.nan,
                        restarts=restarts)


def _max_abs(tree) -> float:
    return max(float(np.max(np.abs(np.asarray(x)))) for x in jax.tree_util.tree_leaves(tree))


def maximize_entropy(chain_fn: Callable[[Any], Any], params, *, gtol: float = 1e-6,
                     bounds: tuple[float, float] | None = None, **kwargs) -> DesignResult:
    """Gradient ascent of ``H(T_L)/n_0`` over ``params`` (see :func:`design`).

    Stops when every component of ``dH/dparams`` is below ``gtol`` in absolute value,
    or, with ``bounds = (lo, hi)`` (applied to every parameter by clipping), when the
    gradient of each parameter sitting on a bound points outwards (a maximum on the
    boundary: ``H`` still increases beyond it). Example, the paper's Figure 2
    (hardtanh, two layers): ``chain_fn = lambda s: figure2_chain("hardtanh", e1, e2, s)``
    and ``params = 1.0`` climb to the maximum of ``H(T_2)`` near ``sigma = 3``.
    """
    project = None
    if bounds is not None:
        lo, hi = float(bounds[0]), float(bounds[1])
        project = lambda p: jax.tree_util.tree_map(lambda x: jnp.clip(x, lo, hi), p)  # noqa: E731

    def stop(info):
        g = jax.tree_util.tree_map(lambda x: -np.asarray(x), info["grad"])  # dH/dp
        if bounds is None:
            return _max_abs(g) <= gtol
        flags = jax.tree_util.tree_map(
            lambda x, gx: np.where((np.asarray(x) >= hi) & (gx >= 0) | (np.asarray(x) <= lo) & (gx <= 0),
                                   True, np.abs(gx) <= gtol), info["params"], g)
        return all(bool(np.all(f)) for f in jax.tree_util.tree_leaves(flags))

    return design(chain_fn, params, lambda h, i: -h, stop=stop, project=project, **kwargs)


def match_information(chain_fn: Callable[[Any], Any], params, target: float, *, atol: float = 1e-6,
                      **kwargs) -> DesignResult:
    """Drive ``I(T_L; T_{L-1})/n_0`` (``I(X; T_L)/n_0`` for noiseless hidden layers) to ``target``.

    Minimises ``(I - target)^2 / 2`` over ``params`` (see :func:`design`) and stops at the
    first evaluated point with ``|I - target| <= atol``; ``result.params`` is that point.
    """
    target = float(target)
    return design(chain_fn, params, lambda h, i: 0.5 * (i - target) ** 2,
                  stop=lambda info: abs(info["information"] - target) <= atol, **kwargs)


def dense_sweep(chain_fn: Callable[[Any], Any], grid, *, warm: bool = False, method: str = "vamp",
                tol: float = 1e-11, max_iter: int = 3000) -> dict[str, np.ndarray]:
    """Brute-force reference: ``H(T_L)``, ``I(T_L; T_{L-1})`` (per ``n_0``) and ``converged``
    at every value of a 1-D ``grid`` of a scalar parameter.

    By default every point is solved cold, with the engine's multi-start and its
    smallest-``phi`` rule (Claim 1). ``warm=True`` warm-starts each point from its
    neighbour's fixed point instead (faster), which can follow a stationary point that
    is not the smallest-``phi`` one: on the paper's two-layer hardtanh chain (width
    1000) a warm walk from ``sigma = 2.2`` gave ``H(T_2) = 0.94185`` at ``sigma = 2.4``
    (converged) where the multi-start gives 0.92576. One ``jr.solve`` call per point:
    the engine compiles its solves once per chain structure.
    """
    import jaxreplica as jr

    grid = np.asarray(grid, np.float64)
    h, i, c = [], [], []
    op = None
    for p in grid:
        sol = jr.solve(chain_fn(float(p)), method, init=op if warm else None, tol=tol, max_iter=max_iter)
        ok = bool(sol.converged)
        if warm and (ok or op is None):
            op = sol.fixed_point
        h.append(float(sol.entropy))
        i.append(float(sol.last_layer_information))
        c.append(ok)
    return {"grid": grid, "entropy": np.asarray(h), "information": np.asarray(i), "converged": np.asarray(c)}


def sweep_maximum(grid, values) -> float:
    """Location of the maximum of sampled ``values``: the vertex of the parabola through the
    best grid point and its two neighbours (the grid point itself on an edge)."""
    x = np.asarray(grid, np.float64)
    y = np.asarray(values, np.float64)
    k = int(np.nanargmax(y))
    if k == 0 or k == len(x) - 1:
        return float(x[k])
    x0, x1, x2 = x[k - 1: k + 2]
    y0, y1, y2 = y[k - 1: k + 2]
    den = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / den
    b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / den
    return float(-b / (2 * a)) if a < 0 else float(x1)
