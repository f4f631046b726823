"""The two iterations of the saddle-point equations, as small solver configurations.

A *scheme* is a frozen record (a pytree: ``tol`` is a traced leaf, the rest is static
structure) with one protocol, used by :func:`jaxreplica.solve`:

* ``starts(chain, moments)``: the initial messages of the multi-start, one per name of
  :func:`start_names`, stacked on a leading axis;
* ``warm_state(op)``: the messages that reproduce a fixed point ``op`` (warm starts);
* ``sweep(state, chain, cfg, trho) -> (state, OrderParameters, potential)``: one
  iteration (the potential is NaN where the scheme does not compute it);
* ``accelerate``: whether Anderson acceleration applies; ``reports_potential``: whether
  the sweep returns ``phi`` (otherwise it is computed at each start's end point).

Two schemes (docs/theory.md, "Solvers"):

* :class:`VAMP` (default): the ML-VAMP state evolution. It needs no ``theta`` root,
  and every ensemble and channel enters through cancellation-free messages.
* :class:`FixedPoint`: the paper's iteration, with the ensemble's ``theta`` from a
  bracketed root-finder.

``method="vamp"`` and ``method="fixed_point"`` are shorthands for the defaults.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from jaxreplica._struct import check, pytree
from jaxreplica.chain import Chain
from jaxreplica.gaussian import TINY
from jaxreplica.potential import OrderParameters
from jaxreplica.priors import MMSE_FLOOR

__all__ = ["VAMP", "FixedPoint", "as_scheme", "for_training", "start_names"]

INFORMED = 1e-10  # the informed start's errors, relative to each layer's second moment
LAYOUTS = (None, "map", "vmap")


def start_names(depth: int) -> tuple:
    """Names of the multi-start's initial conditions, in the order they are run.

    * ``uninformed``: every error at its largest (the state evolution of an algorithm
      that starts knowing nothing: its end point is the algorithmic prediction);
    * ``informed``: every error near zero (the branch of near-perfect recovery; a
      discrete input's perfect-recovery point is reached from here where it is stable,
      whatever the uninformed start does);
    * for deeper chains, ``layer k lowered``: one start per layer with that layer's
      error lowered (ML-VAMP) or raised (fixed point) against the others.
    """
    per_layer = tuple(f"layer {k + 1} lowered" for k in range(depth)) if depth > 1 else ()
    return ("uninformed", "informed") + per_layer


def _moments_arrays(moments):
    rho, trho = moments
    return (jnp.stack([jnp.asarray(r, dtype=jnp.float64) for r in rho]),
            jnp.stack([jnp.asarray(t, dtype=jnp.float64) for t in trho]))


class _Scheme:
    """Shared fields and validation. ``tol``: the relative change at which an
    iteration stops (of every order parameter between two evaluations, or of every
    message between the point evaluated and its image); ``max_iter``: the cap (a start that reaches
    it is not converged); ``polish_steps``: Newton steps on the stationarity conditions
    after the iteration (each costs a Hessian of ``phi``); ``layout``: how the starts
    run, ``"map"`` one after the other (the cost is the sum of their iterations: best
    on CPU), ``"vmap"`` side by side (every start runs as long as the slowest: best on
    accelerators), ``None`` by backend; ``survey``: each start of a multi-start first
    iterates with the coarse rules (``QuadratureConfig.coarse()``; where a hidden layer
    also integrates each posterior, a smooth activation's, after scouting with the rough
    ones, ``QuadratureConfig.rough()``) and is then refined with the given ones, where a
    sweep evaluates a hidden layer's averages by quadrature
    (:meth:`jaxreplica.Chain.averages_hidden_layers`; the answer is the given rules'; the
    way into each basin costs several times less)."""

    _static = ("max_iter", "polish_steps", "layout", "survey")

    def __post_init__(self):
        check("tol", self.tol, positive=True)
        if int(self.max_iter) < 1:
            raise ValueError(f"max_iter must be at least 1 (got {self.max_iter})")
        if int(self.polish_steps) < 0:
            raise ValueError(f"polish_steps must be non-negative (got {self.polish_steps})")
        if not isinstance(self.survey, bool):
            raise ValueError(f"survey must be True or False (got {self.survey!r})")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be None, 'map' or 'vmap' (got {self.layout!r})")
        object.__setattr__(self, "max_iter", int(self.max_iter))
        object.__setattr__(self, "polish_steps", int(self.polish_steps))


@pytree
class VAMP(_Scheme):
    """ML-VAMP state evolution (the default solver).

    State: the messages ``(a1x, a2z)``, each of shape ``(L,)``. One sweep evaluates
    every block once, at exactly the point where the potential needs its free entropy,
    so it also returns ``phi`` (used to rank the starts)."""

    tol: float = 1e-11
    max_iter: int = 3000
    polish_steps: int = 0
    layout: str | None = None
    survey: bool = True

    name = "vamp"
    accelerate = True
    reports_potential = True

    def starts(self, chain: Chain, moments):
        """Uninformed ``v0 = rho`` (a tiny ``v0`` would make ``a2x = 1/v1x - a1x`` cancel
        for a Gaussian input), informed ``v0 = 1e-10 rho`` with equally informed
        messages on ``z``, and for deeper chains one layer at a time at 1% of ``rho``."""
        rho, trho = _moments_arrays(moments)
        L = chain.depth
        lowered = [rho.at[k].multiply(0.01) for k in range(L)] if L > 1 else []
        v0 = jnp.stack([rho, INFORMED * rho] + lowered)
        tv0 = jnp.stack([trho, INFORMED * trho] + [trho] * len(lowered))
        return (1.0 / v0, 1.0 / tv0)

    def warm_state(self, op: OrderParameters):
        return op.tA, 1.0 / op.tV

    def sweep(self, state, chain: Chain, cfg, trho):
        """One iteration in two stages.

        *Denoisers*, every layer from the same messages: the prior (``V_1`` from
        ``a1x_1``), each hidden channel at ``(A, V) = (a1x_{k+1}, 1/a2z_k)`` (its ``Vhat``
        goes up, its ``Ahat`` down) and the last channel at ``1/a2z_L``. Their extrinsic
        messages ``a2x = 1/v1x - a1x`` and ``1/a1z = 1/g - 1/a2z`` come from the blocks,
        which know a cancellation-free form where there is one (a Gaussian input, an
        invertible channel): at small noise the subtractions lose every digit and the
        map would move on a staircase that no tolerance can meet. *Ensembles* then turn
        ``(a2x, 1/a1z)`` into the next ``(a1x, a2z)``, again without cancellation."""
        a1x, a2z = state
        L = chain.depth
        talpha = chain.cumulative_alphas()
        ens, chs = chain.ensembles, chain.channels
        v1x, g, a2x, a1z_inv = [None] * L, [None] * L, [None] * L, [None] * L
        free, v1x[0] = chain.prior.teacher_average(a1x[0], cfg)
        a2x[0] = chain.prior.extrinsic_precision(a1x[0], v1x[0])
        free = -free
        for k in range(L - 1):
            i_h, g[k], v1x[k + 1] = chs[k].hidden_functions(a1x[k + 1], 1.0 / a2z[k], trho[k], cfg)
            a1z_inv[k], a2x[k + 1] = chs[k].hidden_extrinsic(a1x[k + 1], 1.0 / a2z[k], g[k], v1x[k + 1])
            free = free - talpha[k + 1] * i_h
        i_last, g[L - 1] = chs[L - 1].output_functions(1.0 / a2z[L - 1], trho[L - 1], cfg)
        a1z_inv[L - 1] = chs[L - 1].output_extrinsic_variance(1.0 / a2z[L - 1], g[L - 1])
        free = free - talpha[L] * i_last
        v1x = jnp.maximum(jnp.stack(v1x), MMSE_FLOOR)
        g, a2x, a1z_inv = jnp.stack(g), jnp.stack(a2x), jnp.stack(a1z_inv)
        new_a1x, new_a2z, theta = [], [], []
        potential = free
        for k in range(L):
            alpha = ens[k].alpha
            comp = ens[k].llmse_complement(a2x[k], a1z_inv[k])
            excess = ens[k].llmse_excess(a2x[k], a1z_inv[k])  # alpha - comp
            llmse = ens[k].llmse(a2x[k], a1z_inv[k])
            # a2z = 1/v1z - 1/a1z with v1z = a1z comp/alpha, i.e. (alpha - comp)/(comp a1z).
            new_a2z.append(excess / (comp * a1z_inv[k]))
            new_a1x.append(comp / llmse)  # = 1/v2x - a2x
            # theta = 1/(1 + a2z a1z) = comp/alpha, with 1 - theta = excess/alpha and
            # 1 - alpha theta = 1 - comp = a2x llmse known without cancellation.
            theta.append(comp / alpha)
            complements = (excess / alpha, a2x[k] * llmse)
            potential = potential + 0.5 * talpha[k] * (
                -a1x[k] * v1x[k] - alpha * g[k] / a2z[k]
                + ens[k].free_entropy_term(g[k], v1x[k], theta[k], complements)
            )
        new_a1x, new_a2z = jnp.stack(new_a1x), jnp.stack(new_a2z)
        op = OrderParameters(V=v1x, A=g, tV=1.0 / new_a2z, tA=new_a1x, theta=jnp.stack(theta))
        return (new_a1x, new_a2z), op, potential


@pytree
class FixedPoint(_Scheme):
    """The paper's fixed-point iteration on ``(V, A)``, ``theta`` from the ensemble's
    bracketed root-finder (runs unaccelerated: extrapolating its roots jumps between
    branches, so it is slower than :class:`VAMP`)."""

    tol: float = 1e-11
    max_iter: int = 3000
    polish_steps: int = 0
    layout: str | None = None
    survey: bool = True

    name = "fixed_point"
    accelerate = False
    reports_potential = False

    def starts(self, chain: Chain, moments):
        """Uninformed ``V = rho``, informed ``V = 1e-10``, and for deeper chains one
        layer at a time raised to ``rho`` from the informed start; ``A = 1/(2 V)``."""
        rho, _ = _moments_arrays(moments)
        L = chain.depth
        small = jnp.full_like(rho, INFORMED)
        raised = [small.at[k].set(rho[k]) for k in range(L)] if L > 1 else []
        v0 = jnp.stack([rho, small] + raised)
        return (v0, 1.0 / (2.0 * v0))

    def warm_state(self, op: OrderParameters):
        return op.V, op.A

    def sweep(self, state, chain: Chain, cfg, trho):
        V, A = state
        L = chain.depth
        ens, chs = chain.ensembles, chain.channels
        V, A = list(V), list(A)
        tV, tA, th = [None] * L, [None] * L, [None] * L

        def conjugate(k, Ak, Vk):
            t = ens[k].theta(Ak * Vk)
            # V -> 0 (a recovered layer): theta/V -> mean(lambda) A/alpha.
            ta = jnp.where(Vk > TINY, ens[k].alpha * t / jnp.maximum(Vk, TINY), ens[k].mean_eigenvalue() * Ak)
            return t, ta

        for k in reversed(range(L)):
            tV[k] = ens[k].theta(A[k] * V[k]) / A[k]
            if k == L - 1:
                A[k] = chs[k].output_functions(tV[k], trho[k], cfg)[1]
            else:
                A[k] = chs[k].hidden_functions(tA[k + 1], tV[k], trho[k], cfg)[1]
            th[k], tA[k] = conjugate(k, A[k], V[k])
        for k in reversed(range(L)):
            if k == 0:
                V[k] = chain.prior.mmse(tA[0], cfg)
            else:
                V[k] = chs[k - 1].hidden_functions(tA[k], tV[k - 1], trho[k - 1], cfg)[2]
        # An error that underflows (a discrete input recovered exactly) is held at the
        # floor, where conjugate() takes the limit V -> 0.
        V = jnp.maximum(jnp.stack(V), MMSE_FLOOR)
        op = OrderParameters(V=V, A=jnp.stack(A), tV=jnp.stack(tV), tA=jnp.stack(tA), theta=jnp.stack(th))
        return (V, jnp.stack(A)), op, jnp.nan


SCHEMES = {"vamp": VAMP, "fixed_point": FixedPoint}


def as_scheme(method, **overrides):
    """A scheme from a name (``"vamp"``, ``"fixed_point"``) or a scheme, with the
    fields in ``overrides`` that are not None replaced; ``ValueError`` otherwise."""
    if isinstance(method, str):
        if method not in SCHEMES:
            raise ValueError(f"method must be 'vamp', 'fixed_point', jr.VAMP(...) or jr.FixedPoint(...) (got {method!r})")
        method = SCHEMES[method]()
    elif not isinstance(method, (VAMP, FixedPoint)):
        raise ValueError(f"method must be 'vamp', 'fixed_point', jr.VAMP(...) or jr.FixedPoint(...) (got {method!r})")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(method, **overrides) if overrides else method


def for_training(method):
    """The scheme of the solves that training runs (the monitor, the penalty): a named
    method without the coarse survey; a scheme given as such is kept as it is.

    A training run solves each layer cold once and then warm-starts it, and a warm
    start never surveys: for that one cold solve, the survey's second copy of the
    channels' functions costs more to compile (seconds) than it saves (milliseconds
    for piecewise-affine channels, a tenth of a second for a smooth one; see the
    benchmark results)."""
    return as_scheme(method, survey=False) if isinstance(method, str) else method
