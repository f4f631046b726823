"""Finding the extremum of the replica potential.

Two iterations of the saddle-point equations (replica-math.md, section 5):

* ``"vamp"`` (default): the ML-VAMP state evolution. It needs no ``theta`` root and is
  the robust choice.
* ``"fixed_point"``: the paper's scheme, with the ensemble's ``theta`` from a bracketed
  root-finder.

Both run every initial condition of the multi-start at once (``vmap``) to full
convergence inside one ``lax.while_loop``, keep the stationary point of smallest
``phi`` (Claim 1 of the paper), then polish it with Newton's method on the
stationarity conditions ``d phi / d(order parameters) = 0``. The polished point is
returned through ``jax.lax.custom_root``, so derivatives of anything computed from
it (the entropy, the MMSE) are implicit derivatives, never derivatives of the
iterations. Nothing inside raises: ``converged``, ``iterations`` and ``residual``
report how it went.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.flatten_util
import jax.numpy as jnp

from jaxreplica._struct import check, pytree
from jaxreplica.chain import Chain
from jaxreplica.ensembles import Empirical
from jaxreplica.potential import OrderParameters, noise_entropy, phi
from jaxreplica.quadrature import DEFAULT, QuadratureConfig

__all__ = ["Solution", "solve", "solve_layers", "LayerSolutions", "stationarity"]

TINY = 1e-300
V_FLOOR = 1e-100  # an mmse that underflows (a discrete input recovered exactly) is held here
DELTA = 1e-10  # the fixed-point solver's "small" start


@pytree
class Solution:
    """Result of :func:`solve` (per input unit, nats).

    Attributes:
      entropy: ``H(T_L)/n_0``, the potential at its selected stationary point.
      mutual_information: ``I(X; T_L)/n_0`` when every hidden layer is noiseless; NaN
        otherwise, because then ``phi - H(T_L | Z_L)`` is ``I(T_L; T_{L-1})`` and not
        ``I(X; T_L)`` (replica-math.md, section 2).
      last_layer_information: ``I(T_L; T_{L-1})/n_0`` (always defined).
      mmse: ``V_1``, the minimal mean squared error on the input ``X``.
      fixed_point: the order parameters (pass back as ``init=`` for a warm start).
      potential: ``phi`` at the fixed point (equal to ``entropy``).
      converged: the selected start met the tolerance and the polished point is
        stationary.
      iterations: iterations of the selected start.
      residual: with ``polish_steps > 0``, the largest ``|d phi / d log(order parameter)|``
        at the returned point; otherwise the largest relative change of an order
        parameter in the last iteration (see :func:`stationarity` for the former).
      start_potentials: ``phi`` reached from each start (NaN where it did not converge).
    """

    entropy: jax.Array
    mutual_information: jax.Array
    last_layer_information: jax.Array
    mmse: jax.Array
    fixed_point: OrderParameters
    potential: jax.Array
    converged: jax.Array
    iterations: jax.Array
    residual: jax.Array
    start_potentials: jax.Array


# ----------------------------------------------------------------------------------
# ML-VAMP state evolution
# ----------------------------------------------------------------------------------
def _vamp_sweep(state, chain: Chain, cfg):
    """One forward and one backward sweep; ``state = (a1x, a1z_inv)``, each ``(L,)``."""
    a1x, a1z_inv = state
    L = chain.depth
    _, trho = chain.moments()
    ens = chain.ensembles
    chs = chain.channels
    a1x = list(a1x)
    a1z_inv = list(a1z_inv)
    v1x, a2x, a2z, g = [None] * L, [None] * L, [None] * L, [None] * L
    for k in range(L):
        if k == 0:
            v1x[k] = chain.prior.mmse(a1x[0], cfg)
        else:
            v1x[k] = chs[k - 1].hidden_functions(a1x[k], 1.0 / a2z[k - 1], trho[k - 1], cfg)[2]
        v1x[k] = jnp.maximum(v1x[k], V_FLOOR)
        a2x[k] = 1.0 / v1x[k] - a1x[k]
        v1z = a1z_inv[k] * ens[k].llmse_complement(a2x[k], a1z_inv[k]) / ens[k].alpha
        a2z[k] = 1.0 / v1z - 1.0 / a1z_inv[k]
    for k in reversed(range(L)):
        if k == L - 1:
            g[k] = chs[k].output_functions(1.0 / a2z[k], trho[k], cfg)[1]
        else:
            g[k] = chs[k].hidden_functions(a1x[k + 1], 1.0 / a2z[k], trho[k], cfg)[1]
        a1z_inv[k] = 1.0 / g[k] - 1.0 / a2z[k]
        v2x = ens[k].llmse(a2x[k], a1z_inv[k])
        a1x[k] = ens[k].llmse_complement(a2x[k], a1z_inv[k]) / v2x  # = 1/v2x - a2x
    op = OrderParameters(
        V=jnp.stack(v1x),
        A=jnp.stack(g),
        tV=1.0 / jnp.stack(a2z),
        tA=jnp.stack(a1x),
        theta=1.0 / (1.0 + jnp.stack(a2z) * jnp.stack(a1z_inv)),
    )
    return (jnp.stack(a1x), jnp.stack(a1z_inv)), op


def _vamp_state_from(op: OrderParameters):
    """Messages of ML-VAMP that reproduce a fixed point ``op`` (for warm starts)."""
    a2z = 1.0 / op.tV
    a1z_inv = (1.0 / op.theta - 1.0) / a2z
    return op.tA, a1z_inv


# ----------------------------------------------------------------------------------
# Fixed-point iteration (the paper's scheme)
# ----------------------------------------------------------------------------------
def _fp_sweep(state, chain: Chain, cfg):
    V, A = state
    L = chain.depth
    _, trho = chain.moments()
    ens = chain.ensembles
    chs = chain.channels
    V, A = list(V), list(A)
    tV, tA, th = [None] * L, [None] * L, [None] * L

    def conj(k, Ak, Vk):
        t = ens[k].theta(Ak * Vk)
        # V -> 0: theta/V -> mean(lambda) A/alpha (replica-math.md, section 5).
        ta = jnp.where(Vk > TINY, ens[k].alpha * t / jnp.maximum(Vk, TINY), ens[k].mean_eigenvalue() * Ak)
        return t, ta

    for k in reversed(range(L)):
        t = ens[k].theta(A[k] * V[k])
        tV[k] = t / A[k]
        if k == L - 1:
            A[k] = chs[k].output_functions(tV[k], trho[k], cfg)[1]
        else:
            A[k] = chs[k].hidden_functions(tA[k + 1], tV[k], trho[k], cfg)[1]
        th[k], tA[k] = conj(k, A[k], V[k])
    for k in reversed(range(L)):
        if k == 0:
            V[k] = chain.prior.mmse(tA[0], cfg)
        else:
            V[k] = chs[k - 1].hidden_functions(tA[k], tV[k - 1], trho[k - 1], cfg)[2]
    op = OrderParameters(V=jnp.stack(V), A=jnp.stack(A), tV=jnp.stack(tV), tA=jnp.stack(tA), theta=jnp.stack(th))
    return (jnp.stack(V), jnp.stack(A)), op


# ----------------------------------------------------------------------------------
# The loop, the multi-start and the polish
# ----------------------------------------------------------------------------------
def _relative_change(new: OrderParameters, old: OrderParameters):
    leaves = lambda o: jnp.stack([o.V, o.A, o.tV, o.tA])
    n, o = leaves(new), leaves(old)
    return jnp.max(jnp.abs(n - o) / (jnp.abs(o) + 1e-300))


ANDERSON_MEMORY = 5


def _iterate(sweep, state0, chain, tol, max_iter, cfg, accelerate=True):
    """Iterate ``state -> sweep(state)`` to a fixed point, with Anderson acceleration.

    The sweep map ``G`` acts on positive messages; acceleration works on their logs
    ``x``: with the last ``m`` differences ``dF`` of residuals ``f = G(x) - x`` and ``dG``
    of images, ``x <- G(x) - dG gamma`` where ``gamma`` solves the regularised least
    squares ``min |f - dF gamma|``. Convergence linear at rate 0.92 (replica-math.md,
    section 5) becomes a few dozen iterations. The step falls back to the plain
    iteration (and the memory is cleared) whenever the accelerated point is not finite
    or the residual grew tenfold. Stopping: relative change of every order parameter
    below ``tol`` between two sweeps. The fixed-point solver runs unaccelerated
    (``accelerate=False``): extrapolating its ``theta`` roots jumps between branches.
    """
    m = ANDERSON_MEMORY
    flat0, unravel = jax.flatten_util.ravel_pytree(state0)
    n = flat0.shape[0]
    to_x = lambda st: jnp.log(jnp.maximum(jax.flatten_util.ravel_pytree(st)[0], TINY))
    positive = lambda st: jnp.all(jax.flatten_util.ravel_pytree(st)[0] > 0)

    def G(x):
        st, op = sweep(unravel(jnp.exp(x)), chain, cfg)
        return st, op

    x0 = to_x(state0)
    st1, op1 = G(x0)
    g1 = to_x(st1)

    def cond(c):
        return (c["it"] < max_iter) & (c["change"] > tol)

    def body(c):
        x, g, op = c["x"], c["g"], c["op"]
        f = g - x
        # Anderson step from the memory (rows beyond `filled` are zero).
        dF, dG = c["dF"], c["dG"]
        gram = dF @ dF.T
        reg = 1e-12 * (jnp.trace(gram) + 1e-300)
        gamma = jnp.linalg.solve(gram + reg * jnp.eye(m), dF @ f)
        x_acc = g - dG.T @ gamma
        use_acc = accelerate & (c["filled"] > 0) & jnp.all(jnp.isfinite(x_acc))
        x_new = jnp.where(use_acc, x_acc, g)
        st_new, op_new = G(x_new)
        bad = ~(positive(st_new) & _finite(op_new))
        # Fallback: plain step from g.
        st_plain, op_plain = jax.lax.cond(bad, lambda: G(g), lambda: (st_new, op_new))
        x_new = jnp.where(bad, g, x_new)
        st_new, op_new = st_plain, op_plain
        g_new = to_x(st_new)
        f_new = g_new - x_new
        norm_new = jnp.linalg.norm(f_new)
        restart = bad | (norm_new > 10.0 * c["best"])
        # Push the newest differences (the memory is a ring of size m).
        slot = c["filled"] % m
        dF = jnp.where(restart, 0.0, dF.at[slot].set(f_new - f))
        dG = jnp.where(restart, 0.0, dG.at[slot].set(g_new - g))
        change = _relative_change(op_new, op)
        change = jnp.where(jnp.isfinite(change), change, -1.0)  # NaN: stop, flagged below
        return dict(
            x=x_new, g=g_new, op=op_new, dF=dF, dG=dG, it=c["it"] + 1, change=change,
            filled=jnp.where(restart, 0, c["filled"] + 1), best=jnp.minimum(c["best"], norm_new),
        )

    carry = dict(
        x=x0, g=g1, op=op1, dF=jnp.zeros((m, n)), dG=jnp.zeros((m, n)), it=jnp.asarray(1),
        change=jnp.asarray(jnp.inf), filled=jnp.asarray(0), best=jnp.linalg.norm(g1 - x0),
    )
    out = jax.lax.while_loop(cond, body, carry)
    op, change = out["op"], out["change"]
    ok = (change >= 0) & (change <= tol) & _finite(op)
    return op, out["it"], ok, jnp.where(change >= 0, change, jnp.nan)


def _finite(op: OrderParameters):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(op)]))


def _theta_free(chain: Chain):
    """Which layers have ``theta`` as a free order parameter (Empirical spectra)."""
    return [isinstance(e, Empirical) for e in chain.ensembles]


def _pack(op: OrderParameters, chain: Chain):
    logs = jnp.log(jnp.maximum(jnp.stack([op.V, op.A, op.tV, op.tA]), TINY)).reshape(-1)
    thetas = [op.theta[k] for k, free in enumerate(_theta_free(chain)) if free]
    return jnp.concatenate([logs, jnp.stack(thetas)]) if thetas else logs


def _unpack(x, chain: Chain, template: OrderParameters):
    L = chain.depth
    V, A, tV, tA = jnp.exp(x[: 4 * L]).reshape(4, L)
    theta = list(template.theta)
    i = 4 * L
    for k, free in enumerate(_theta_free(chain)):
        if free:
            theta[k] = x[i]
            i += 1
    return OrderParameters(V=V, A=A, tV=tV, tA=tA, theta=jnp.stack(theta))


def _stationarity(chain: Chain, template: OrderParameters, cfg):
    """``x -> d phi/dx`` in the packed coordinates (logs of the positive parameters)."""
    return jax.grad(lambda x: phi(_unpack(x, chain, template), chain, cfg))


def _newton(residual_fn, x0, steps: int):
    def body(_, carry):
        x, r = carry
        J = jax.jacfwd(residual_fn)(x)
        step = jnp.linalg.solve(J, r)
        x_new = x - step
        r_new = residual_fn(x_new)
        better = jnp.all(jnp.isfinite(r_new)) & (jnp.max(jnp.abs(r_new)) < jnp.max(jnp.abs(r)))
        return jnp.where(better, x_new, x), jnp.where(better, r_new, r)

    x, r = jax.lax.fori_loop(0, steps, body, (x0, residual_fn(x0)))
    return x


def _starts(chain: Chain, method: str):
    """Initial states of the multi-start: one default plus one per layer."""
    rho, _ = chain.moments()
    rho = jnp.stack([jnp.asarray(r, dtype=jnp.float64) for r in rho])
    L = chain.depth
    if method == "vamp":
        # From v0 = rho (replica-math.md: v0 = 1e-10 makes a2x cancel); the other starts
        # lower one layer's v0 to 1% of its rho.
        v0 = jnp.stack([rho] + [rho.at[k].multiply(0.01) for k in range(L)])
        return (1.0 / v0, jnp.ones_like(v0))
    v0 = jnp.stack([jnp.full_like(rho, DELTA)] + [jnp.full_like(rho, DELTA).at[k].set(rho[k]) for k in range(L)])
    return (v0, 1.0 / (2.0 * v0))


def _core(chain: Chain, init, method: str, tol, max_iter, polish_steps: int, cfg):
    sweep = _vamp_sweep if method == "vamp" else _fp_sweep
    if init is None:
        starts = _starts(chain, method)
    else:
        state = _vamp_state_from(init) if method == "vamp" else (init.V, init.A)
        starts = jax.tree_util.tree_map(lambda x: x[None], state)
    ops, its, oks, changes = jax.vmap(lambda s: _iterate(sweep, s, chain, tol, max_iter, cfg, method == "vamp"))(starts)
    phis = jax.vmap(lambda o: phi(o, chain, cfg))(ops)
    phis = jnp.where(oks & jnp.isfinite(phis), phis, jnp.nan)
    any_ok = jnp.any(oks)
    best = jnp.where(any_ok, jnp.nanargmin(jnp.where(oks, phis, jnp.inf)), 0)
    op = jax.tree_util.tree_map(lambda x: x[best], ops)
    it = its[best]

    template = jax.lax.stop_gradient(op)
    x0 = jax.lax.stop_gradient(_pack(op, chain))
    residual_fn = _stationarity(chain, template, cfg)

    def solve_fn(f, x):
        return _newton(f, x, polish_steps) if polish_steps > 0 else x

    def tangent_solve(g, y):
        return jnp.linalg.solve(jax.jacfwd(g)(y), y)

    x = jax.lax.custom_root(residual_fn, x0, solve_fn, tangent_solve)
    op = _unpack(x, chain, template)
    if polish_steps > 0:
        residual = jnp.max(jnp.abs(residual_fn(jax.lax.stop_gradient(x))))
        ok = any_ok & oks[best] & (residual < 1e-6)
    else:
        # Without a polish the stationarity gradient is not compiled at all (it would
        # double the program); the residual is the iteration's last relative change.
        residual = changes[best]
        ok = any_ok & oks[best]
    potential = phi(op, chain, cfg)
    return op, potential, ok, it, residual, phis


# Compiled once per chain structure and static setting; tol and every number of the
# chain are traced, so sweeps and warm starts reuse the compiled program.
_core_jit = jax.jit(_core, static_argnames=("method", "max_iter", "polish_steps", "cfg"))


def solve(
    chain: Chain,
    method: Literal["vamp", "fixed_point"] = "vamp",
    *,
    init: OrderParameters | None = None,
    tol: float = 1e-11,
    max_iter: int = 3000,
    polish_steps: int = 0,
    quadrature: QuadratureConfig = DEFAULT,
) -> Solution:
    """Entropy, mutual information and MMSE of ``chain`` from the replica formula.

    Args:
      chain: the model.
      method: ``"vamp"`` (default) or ``"fixed_point"``.
      init: a previous ``Solution.fixed_point`` to warm-start from (then only that
        start is run); by default the multi-start of replica-math.md, section 5.
      tol: relative change of every order parameter at which an iteration stops.
      max_iter: iteration cap; a start that reaches it is reported not converged.
      polish_steps: Newton steps on the stationarity conditions after the iteration
        (0 by default: the iteration already converges to ``tol``, and each step
        costs a Hessian of ``phi``, which roughly doubles the compile time).
      quadrature: sizes of the integration rules (static).

    Returns:
      A :class:`Solution`. Jittable, vmappable over batched chain leaves, and
      differentiable with respect to them (implicitly through the fixed point).
    """
    if method not in ("vamp", "fixed_point"):
        raise ValueError(f"method must be 'vamp' or 'fixed_point' (got {method!r})")
    if not isinstance(chain, Chain):
        raise ValueError(f"chain must be a jaxreplica.Chain (got {type(chain).__name__})")
    check("tol", tol, positive=True)
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be at least 1 (got {max_iter})")
    op, potential, converged, it, residual, phis = _core_jit(
        chain, init, method, jnp.asarray(tol, dtype=jnp.float64), int(max_iter), int(polish_steps), quadrature
    )
    mi_last = potential + noise_entropy(chain, quadrature)
    return Solution(
        entropy=potential,
        mutual_information=jnp.where(chain.hidden_noiseless(), mi_last, jnp.nan),
        last_layer_information=mi_last,
        mmse=op.V[0],
        fixed_point=op,
        potential=potential,
        converged=converged,
        iterations=it,
        residual=residual,
        start_potentials=phis,
    )


def stationarity(solution: Solution, chain: Chain, quadrature: QuadratureConfig = DEFAULT):
    """Largest ``|d phi / d log(order parameter)|`` (and ``d phi/d theta``) at a solution."""
    op = solution.fixed_point
    return jnp.max(jnp.abs(_stationarity(chain, op, quadrature)(_pack(op, chain))))


@pytree
class LayerSolutions:
    """:func:`solve_layers` results, one entry per layer ``l = 1..L`` (shape ``(L,)``)."""

    entropy: jax.Array
    mutual_information: jax.Array
    mmse: jax.Array
    converged: jax.Array
    iterations: jax.Array
    residual: jax.Array
    fixed_points: tuple


def solve_layers(chain: Chain, method: str = "vamp", *, init=None, **kwargs) -> LayerSolutions:
    """``H(T_l)/n_0`` and ``I(X; T_l)/n_0`` for every layer ``l`` of ``chain``.

    Each truncated chain ``T_0 -> ... -> T_l`` keeps its last layer's own noise if it
    is positive and otherwise gets the noise of the full chain's last layer (the
    paper's convention: hidden layers noiseless, every ``H(T_l)`` measured with the
    same small noise; replica-math.md, section 2). ``init`` may be a previous
    ``LayerSolutions.fixed_points`` for warm starts.
    """
    last_noise = chain.channels[-1].noise
    sols = []
    for l in range(1, chain.depth + 1):
        own = chain.channels[l - 1].noise
        noise = jnp.where(jnp.asarray(own) > 0, own, last_noise) if l < chain.depth else None
        sub = chain.truncated(l, noise)
        sols.append(solve(sub, method, init=None if init is None else init[l - 1], **kwargs))
    stack = lambda name: jnp.stack([getattr(s, name) for s in sols])
    return LayerSolutions(
        entropy=stack("entropy"),
        mutual_information=stack("mutual_information"),
        mmse=stack("mmse"),
        converged=stack("converged"),
        iterations=stack("iterations"),
        residual=stack("residual"),
        fixed_points=tuple(s.fixed_point for s in sols),
    )
