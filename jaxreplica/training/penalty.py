"""An information penalty: ``P(S) = sum_l beta_l I(X; T_l)/n_0``, differentiable in ``S``.

For a network of USV layers ``W_k = U_k diag(S_k) V_k`` (only the singular values
``S_k`` trained) on a data model with prior ``P_0`` and generative layers ``G`` (possibly
none), ``I(X; T_l)`` is the replica value of the chain ``prior -> G -> network layers
1..l`` (network layers ``1..l-1`` noiseless, layer ``l`` with the measuring noise
``last_noise``, ``1e-5`` by default), as the training monitor records it: with
noiseless hidden network layers ``T_{l-1}`` is a function of ``X`` and ``I(X; T_l) =
I(T_l; T_{l-1}) = phi* - H(T_l | Z_l)`` (``Solution.last_layer_information``). The
spectrum of ``W_k^T W_k`` is ``S_k^2`` padded with ``n_{k-1} - len(S_k)`` zeros, so ``P``
is a function of the ``S_k`` alone.

**Its gradient** is not obtained by unrolling the solver. ``phi`` is stationary in the
order parameters ``q`` at the fixed point ``q*(S)``, so (envelope theorem)::

    dP/dS = sum_l beta_l * [ d/dS phi(q*, chain_l(S)) + d/dS talpha_l I_last(0, trho_l(S)) ]   at fixed q*

which costs one gradient of ``phi`` per penalised layer (``gradient="envelope"``, the
default; with noisy hidden layers also one of ``phi_c``, the conditional chain's
potential: ``I(X; T_l) = phi* - (n_1/n_0) phi_c*``). ``gradient="implicit"``
differentiates ``solve`` itself, whose fixed point is an implicit function of the chain
(the engine's ``custom_jvp``). The solve always runs on ``stop_gradient``-ed inputs,
warm-started from the fixed points kept in a :class:`PenaltyState`.

**Failed solves.** Inside ``jit`` nothing raises. A layer whose solve does not converge
contributes no gradient for that call: its term is replaced by its last converged
value under ``stop_gradient``, its gradient is cut (a select, so a NaN from a bad point
cannot leak through a ``0 * NaN``), its warm start keeps the previous fixed point, and
it is counted (``PenaltyState.converged``; the trainer sums them per epoch).

The optimizer step that adds ``P`` to the task loss is
:func:`jaxreplica.training.step.make_step` (``penalty=InformationPenalty(...)``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxreplica._struct import pytree, tree_where
from jaxreplica.activations import check_position, has_channel
from jaxreplica.chain import SpectralLayer, chain_from_spectra
from jaxreplica.design import envelope_quantities
from jaxreplica.nn.layers import spectrum_from_singular_values
from jaxreplica.nn.network import singular_values
from jaxreplica.schemes import for_training
from jaxreplica.solvers import check_method, solve

__all__ = [
    "InformationPenalty",
    "PenaltyState",
    "information_penalty",
    "network_information",
    "singular_values",
    "spectrum_from_singular_values",
]


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


@pytree
class PenaltyState:
    """Warm starts and diagnostics of the last penalty evaluation, one entry per penalised layer.

    * ``fixed_points``: tuple of ``OrderParameters``, the last *converged* fixed point of
      each layer's chain (a non-converged solve keeps the previous one);
    * ``conditional_points``: likewise for the conditional chain of each layer whose
      ``I(X; T_l)`` goes through one (noisy hidden layers), None for the others;
    * ``mutual_information``: ``(n,)`` last converged ``I(X; T_l)/n_0`` (NaN if none yet);
    * ``converged``: ``(n,)`` whether the last solve of each layer converged;
    * ``iterations``: ``(n,)`` solver iterations of the last solve (0 where it was skipped);
    * ``calls``: evaluations so far (``solve_every = k``: call ``c`` solves if ``k`` divides ``c``);
    * ``weights``: ``(n,)`` the penalty's ``beta_l``. Warm calls take them from here, so
      that a compiled training step does not depend on their values: penalties that
      differ only in ``beta`` share one program (and the persistent compilation cache).
    """

    fixed_points: tuple
    conditional_points: tuple
    mutual_information: jax.Array
    converged: jax.Array
    iterations: jax.Array
    calls: jax.Array
    weights: jax.Array

    @property
    def not_converged(self) -> jax.Array:
        """Number of penalised layers whose last solve did not converge."""
        return jnp.sum(~self.converged)


def _has_channel(name: str) -> bool:
    try:
        return has_channel(name)
    except ValueError:
        return False


@dataclass(frozen=True, eq=False)
class InformationPenalty:
    """``P(S) = sum_l beta_l I(X; T_l)/n_0`` of a USV network on a data model (see the module doc).

    Build it with :meth:`for_network` (from a :class:`~jaxreplica.nn.Network` and a
    :class:`~jaxreplica.data.Dataset`) or directly:

    * ``betas``: mapping ``{layer: beta}`` (1-based network layers; ``beta`` any finite
      real, negative to reward information), stored as sorted pairs;
    * ``prior``: the data model's first variable (``Normal``, ``Bimodal``, ``SpikeSlab``);
    * ``generative``: :class:`~jaxreplica.chain.SpectralLayer` list from that variable to the
      network input, each with its own ``noise`` (empty for teacher-student data);
    * ``sizes``: ``(n_0, ..., n_m)`` of the network layers ``1..m``, ``m >= max(layer)``;
    * ``activations``: their activations (``linear``, ``relu``, ``hardtanh``, ``probit``);
    * ``last_noise``: noise variance of the measured layer;
    * ``hidden_noise``: noise variance of the network layers before it (default 0: then
      ``I(X; T_l) = I(T_l; T_{l-1})``; above 0, ``I(X; T_l)`` of the noisy network, via its conditional chain);
    * ``noise_position``: ``"before"`` the activation (default), ``"after"`` or ``"both"``;
    * ``tol``, ``max_iter``, ``method``: passed to ``jaxreplica.solve`` (a named method
      without the coarse survey: :func:`jaxreplica.schemes.for_training`);
    * ``gradient``: ``"envelope"`` (default) or ``"implicit"``;
    * ``solve_every``: solve the fixed points at every ``k``-th call only (default 1:
      every call). In between, the value and gradient are the potential's at the last
      fixed points and the current singular values (the envelope formula at points that
      lag behind by fewer than ``k`` optimizer steps: its error is second order in the
      fixed points' drift). Needs ``gradient="envelope"``.

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
    hidden_noise: float = 0.0
    noise_position: str = "before"
    tol: float = 1e-8
    max_iter: int = 1000
    method: str = "vamp"
    gradient: str = "envelope"
    solve_every: int = 1

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
            if not _has_channel(activations[k]):
                raise ValueError(f"activations: layer {k + 1} is {activations[k]!r}, which has no replica channel")
        if not self.last_noise > 0:
            raise ValueError(f"last_noise must be positive, got {self.last_noise!r}")
        if not self.hidden_noise >= 0:
            raise ValueError(f"hidden_noise must be non-negative, got {self.hidden_noise!r}")
        check_position(self.noise_position)
        if self.hidden_noise > 0 and self.generative:
            raise ValueError("hidden_noise: I(X; T_l) of a noisy network behind a generative data model is not "
                             "computed; use teacher-student data (no generative layers)")
        if not self.tol > 0:
            raise ValueError(f"tol must be positive, got {self.tol!r}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        check_method(self.method)
        if self.gradient not in ("envelope", "implicit"):
            raise ValueError(f"gradient must be 'envelope' or 'implicit', got {self.gradient!r}")
        every = self.solve_every
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"solve_every must be a positive integer, got {every!r}")
        if every > 1 and self.gradient != "envelope":
            raise ValueError("solve_every > 1 needs gradient='envelope'")
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
        network = [SpectralLayer(spectra[k], self.sizes[k + 1] / self.sizes[k], self.activations[k])
                   for k in range(layer)]
        return chain_from_spectra(self.prior, list(self.generative) + network, hidden_noise=self.hidden_noise,
                                  last_noise=self.last_noise, noise_position=self.noise_position)

    # ---- evaluation

    def __call__(self, singular_values: Sequence[jax.Array], state: PenaltyState | None = None):
        return information_penalty(singular_values, self, state)

    def initial(self, singular_values: Sequence[jax.Array]) -> tuple[jax.Array, PenaltyState]:
        """``(P, state)`` from cold (multi-start) solves of every penalised layer.

        Runs eagerly around ``solve`` (itself jit-compiled once per chain structure
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
        return {"betas": {str(l): b for l, b in self.betas}, "last_noise": self.last_noise,
                "hidden_noise": self.hidden_noise, "noise_position": self.noise_position, "tol": self.tol,
                "max_iter": self.max_iter, "method": self.method, "gradient": self.gradient,
                "solve_every": int(self.solve_every)}


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


def information_penalty(singular_values: Sequence[jax.Array], penalty: InformationPenalty,
                        state: PenaltyState | None = None) -> tuple[jax.Array, PenaltyState]:
    """``(sum_l beta_l I(X; T_l)/n_0, new_state)`` for the network whose USV singular values are given.

    ``singular_values``: ``[S_1, ..., S_m]`` (``m >= penalty.depth``; see
    :func:`singular_values`). ``state``: the previous :class:`PenaltyState` (warm
    starts), or ``None`` for cold multi-start solves. Differentiable in the singular
    values through the fixed points (``penalty.gradient``, envelope theorem by
    default), never by unrolling the iterations. A layer whose solve does not converge
    contributes its last converged value under ``stop_gradient`` (0 if it has none)
    and a zero gradient. Warm calls weigh the layers with ``state.weights`` (set from
    ``penalty`` by the cold call); a concrete state whose weights are not the
    penalty's is refused (``ValueError``).
    """
    weights = _weights(penalty, state)
    spectra = penalty.spectra(singular_values)
    # Noiseless hidden layers: I(X; T_l) = I(T_l; T_{l-1}); noisy ones: through H(T_l | X).
    noisy = penalty.hidden_noise > 0
    scheme = for_training(penalty.method)
    information = (lambda sol: sol.mutual_information) if noisy else (lambda sol: sol.last_layer_information)
    fixed, mis, convs, iters = [], [], [], []
    total = jnp.zeros(())
    calls = jnp.zeros((), jnp.int32) if state is None else state.calls
    lagged = state is not None and penalty.solve_every > 1
    due = calls % penalty.solve_every == 0  # this call solves (lagged penalty)
    for i, layer in enumerate(penalty.layers):
        start = (None, None) if state is None else (state.fixed_points[i], state.conditional_points[i])
        frozen_chain = jax.lax.stop_gradient(penalty.chain(spectra, layer))

        def solved(chain=frozen_chain, start=start):
            sol = solve(chain, scheme, init=start[0], tol=penalty.tol, max_iter=penalty.max_iter,
                        conditional=noisy, conditional_init=start[1])
            return ((sol.fixed_point, sol.conditional_fixed_point), sol.converged & jnp.isfinite(information(sol)),
                    sol.iterations.astype(jnp.int32))

        if lagged:
            skip = lambda start=start: (start, jnp.asarray(True), jnp.zeros((), jnp.int32))  # noqa: E731
            found, ok, iterations = jax.lax.cond(due, solved, skip)
        else:
            found, ok, iterations = solved()
        point, cpoint = (None if new is None else tree_where(ok, new, _fallback_point(new) if old is None else old)
                         for new, old in zip(jax.lax.stop_gradient(found), start))
        gated = [_gate(s, ok) for s in spectra[:layer]]
        chain = penalty.chain(gated, layer)
        if penalty.gradient == "envelope":
            _, value = envelope_quantities(chain, point, cpoint)
        else:
            # the engine's implicit derivative (custom_jvp); from the converged point the
            # iteration stops at once, so this adds one sweep and the tangent solve.
            value = information(solve(chain, scheme, init=point, tol=penalty.tol, max_iter=penalty.max_iter,
                                      conditional=noisy, conditional_init=cpoint))
        prev = jnp.asarray(jnp.nan) if state is None else state.mutual_information[i]
        stale = jnp.where(jnp.isfinite(prev), prev, 0.0)
        term = jnp.where(ok, value, jax.lax.stop_gradient(stale))
        total = total + weights[i] * term
        fixed.append((point, cpoint))
        mis.append(jnp.where(ok, jax.lax.stop_gradient(value), prev))
        convs.append(ok)
        iters.append(jnp.asarray(iterations, jnp.int32))
    new_state = PenaltyState(fixed_points=tuple(p for p, _ in fixed), conditional_points=tuple(c for _, c in fixed),
                             mutual_information=jnp.stack(mis), converged=jnp.stack(convs),
                             iterations=jnp.stack(iters), calls=calls + 1, weights=weights)
    return total, new_state


def _weights(penalty: InformationPenalty, state: PenaltyState | None) -> jax.Array:
    """The ``beta_l`` to weigh the layers with: the penalty's for a cold call, the state's
    for a warm one (checked against the penalty's when they are concrete numbers)."""
    if state is None:
        return jnp.asarray(penalty.beta, jnp.float64)
    weights = state.weights
    concrete = not isinstance(weights, jax.core.Tracer)
    if concrete and not np.array_equal(np.asarray(weights), penalty.beta):
        raise ValueError(f"state: its weights {np.asarray(weights).tolist()} are not this penalty's betas "
                         f"{penalty.beta.tolist()} (start from penalty.initial(...))")
    return weights



