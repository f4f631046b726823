"""Finding the extremum of the replica potential.

Two iterations of the saddle-point equations (replica-math.md, section 5):

* ``"vamp"`` (default): the ML-VAMP state evolution. It needs no ``theta`` root and is
  the robust choice.
* ``"fixed_point"``: the paper's scheme, with the ensemble's ``theta`` from a bracketed
  root-finder.

Both run every initial condition of the multi-start to full convergence, each inside
one ``lax.while_loop`` (one after the other on CPU, ``vmap``-ed on accelerators), keep
the stationary point of smallest ``phi`` (Claim 1 of the paper), optionally polish it
with Newton's method on the stationarity conditions ``d phi / d(order parameters) =
0``, and return it through a ``custom_jvp`` whose rule is the implicit function
theorem, so derivatives of anything computed from it (the entropy, the MMSE) are
implicit derivatives, never derivatives of the iterations. Nothing inside raises:
``converged``, ``iterations`` and ``residual`` report how it went.
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.flatten_util
import jax.numpy as jnp

from jaxreplica._struct import check, pytree
from jaxreplica.chain import Chain
from jaxreplica.ensembles import Empirical
from jaxreplica.potential import OrderParameters, noise_entropy, phi
from jaxreplica.priors import MMSE_FLOOR as V_FLOOR
from jaxreplica.quadrature import DEFAULT, QuadratureConfig

__all__ = ["Solution", "solve", "solve_layers", "LayerSolutions", "stationarity"]

TINY = 1e-300
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
      branches: the stationary point reached from each start (:class:`Branches`): the
        uninformed (algorithmic) and informed branches with their potentials, errors
        and convergence.
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
    branches: "Branches"


@pytree
class Branches:
    """The stationary point reached from each start of the multi-start (axis ``-1``).

    Starts are named by ``names`` (static): ``"uninformed"`` (every error at its
    largest: the state evolution of an algorithm that knows nothing, whose end point is
    the algorithmic prediction), ``"informed"`` (every error near zero: the branch of
    near-perfect recovery) and, for deeper chains, one start per layer. The solution is
    the converged branch of smallest potential; where the informed branch wins while the
    uninformed one ends elsewhere, the problem is in its hard phase (the
    information-theoretic transition has happened, the algorithmic one has not).

    Attributes:
      potential: ``phi`` at the end of each start (also where it did not converge).
      mutual_information: ``I(X; T_L)/n_0`` of each branch (``potential`` plus the
        last layer's noise term; NaN with a noisy hidden layer, as for the solution).
      mmse: the error ``V_1`` on the input of each branch (0 where it underflows).
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


# ----------------------------------------------------------------------------------
# ML-VAMP state evolution
# ----------------------------------------------------------------------------------
def _vamp_sweep(state, chain: Chain, cfg, trho):
    """One ML-VAMP iteration in two stages; ``state = (a1x, a2z)``, each ``(L,)``.

    *Denoisers*, every layer from the same messages: the prior (``V_1`` from ``a1x_1``),
    each hidden channel at ``(A, V) = (a1x_{k+1}, 1/a2z_k)`` (one evaluation gives its
    ``Vhat``, handed up, and its ``Ahat``, handed down) and the last channel at
    ``1/a2z_L``. *Ensembles* then turn the denoisers' messages ``(a2x, 1/a1z)`` into the
    next ``(a1x, a2z)``. Each channel is thus evaluated once per iteration, at exactly
    the point where ``phi`` needs its free entropy, so the iteration also returns
    ``phi`` at the messages it started from (used to rank the starts).
    """
    a1x, a2z = state
    L = chain.depth
    talpha = chain.cumulative_alphas()
    ens = chain.ensembles
    chs = chain.channels
    v1x, g, a2x, a1z_inv = [None] * L, [None] * L, [None] * L, [None] * L
    free, v1x[0] = chain.prior._teacher_average(a1x[0], cfg)
    # The denoisers' extrinsic messages a2x = 1/v1x - a1x and 1/a1z = 1/g - 1/a2z come from
    # the blocks themselves, which know the cancellation-free form where there is one
    # (a Gaussian input, an invertible channel): at small noise both subtractions lose
    # every digit, and the map would move on a staircase that no tolerance can meet.
    a2x[0] = chain.prior.extrinsic_precision(a1x[0], v1x[0])
    free = -free
    for k in range(L - 1):
        i_h, g[k], v1x[k + 1] = chs[k].hidden_functions(a1x[k + 1], 1.0 / a2z[k], trho[k], cfg)
        a1z_inv[k], a2x[k + 1] = chs[k].hidden_extrinsic(a1x[k + 1], 1.0 / a2z[k], g[k], v1x[k + 1])
        free = free - talpha[k + 1] * i_h
    i_last, g[L - 1] = chs[L - 1].output_functions(1.0 / a2z[L - 1], trho[L - 1], cfg)
    a1z_inv[L - 1] = chs[L - 1].output_extrinsic_variance(1.0 / a2z[L - 1], g[L - 1])
    free = free - talpha[L] * i_last
    v1x = jnp.maximum(jnp.stack(v1x), V_FLOOR)
    g, a2x, a1z_inv = jnp.stack(g), jnp.stack(a2x), jnp.stack(a1z_inv)
    new_a1x, new_a2z, theta = [], [], []
    phi_here = free
    for k in range(L):
        comp = ens[k].llmse_complement(a2x[k], a1z_inv[k])
        # a2z = 1/v1z - 1/a1z with v1z = a1z comp/alpha, i.e. (alpha - comp)/(comp a1z):
        # alpha - comp comes from the ensemble without cancellation.
        new_a2z.append(ens[k].llmse_excess(a2x[k], a1z_inv[k]) / (comp * a1z_inv[k]))
        new_a1x.append(comp / ens[k].llmse(a2x[k], a1z_inv[k]))  # = 1/v2x - a2x
        theta.append(comp / ens[k].alpha)  # = 1/(1 + a2z a1z)
        th_here = 1.0 / (1.0 + a2z[k] * a1z_inv[k])
        phi_here = phi_here + 0.5 * talpha[k] * (
            -a1x[k] * v1x[k] - ens[k].alpha * g[k] / a2z[k] + ens[k].free_entropy_term(g[k], v1x[k], th_here)
        )
    new_a1x, new_a2z = jnp.stack(new_a1x), jnp.stack(new_a2z)
    op = OrderParameters(V=v1x, A=g, tV=1.0 / new_a2z, tA=new_a1x, theta=jnp.stack(theta))
    return (new_a1x, new_a2z), op, phi_here


def _vamp_state_from(op: OrderParameters):
    """Messages of ML-VAMP that reproduce a fixed point ``op`` (for warm starts)."""
    return op.tA, 1.0 / op.tV


# ----------------------------------------------------------------------------------
# Fixed-point iteration (the paper's scheme)
# ----------------------------------------------------------------------------------
def _fp_sweep(state, chain: Chain, cfg, trho):
    V, A = state
    L = chain.depth
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
    # An error that underflows (a discrete input recovered exactly) is held at the floor,
    # where conj() takes the limit V -> 0.
    V = jnp.maximum(jnp.stack(V), V_FLOOR)
    op = OrderParameters(V=V, A=jnp.stack(A), tV=jnp.stack(tV), tA=jnp.stack(tA), theta=jnp.stack(th))
    return (V, jnp.stack(A)), op, jnp.nan


# ----------------------------------------------------------------------------------
# The loop, the multi-start and the polish
# ----------------------------------------------------------------------------------
def _relative_change(new: OrderParameters, old: OrderParameters):
    leaves = lambda o: jnp.stack([o.V, o.A, o.tV, o.tA])
    n, o = leaves(new), leaves(old)
    return jnp.max(jnp.abs(n - o) / (jnp.abs(o) + 1e-300))


ANDERSON_MEMORY = 3
GROWTH = 2.0  # a residual this many times the last one clears the memory
REACH = 5.0  # an extrapolation moves no log-message by more than this beyond the plain step


def _iterate(sweep, state0, chain, tol, max_iter, cfg, accelerate=True, trho=None):
    """Iterate ``state -> sweep(state)`` to a fixed point, with Anderson acceleration.

    The sweep map ``G`` acts on positive messages; acceleration works on their logs
    ``x``: with the last ``m`` differences ``dF`` of residuals ``f = G(x) - x`` and ``dG``
    of images, ``x <- G(x) - dG gamma`` where ``gamma`` solves the regularised least
    squares ``min |f - dF gamma|``. Convergence linear at rate 0.92 (replica-math.md,
    section 5) becomes a few dozen iterations. One evaluation of ``G`` per iteration
    (no branch: under ``vmap`` both sides of a branch run): an evaluation that is not
    finite sends the next one back to the last good image with the memory cleared; a
    residual ten times the best so far clears the memory (plain step). Stopping:
    relative change of every order parameter below ``tol`` between two good
    evaluations. The fixed-point solver runs unaccelerated (``accelerate=False``):
    extrapolating its ``theta`` roots jumps between branches.

    Returns ``(op, iterations, converged, change, phi)`` where ``phi`` is the potential
    the sweep reported at its last good evaluation (NaN when the sweep reports none).
    """
    m = ANDERSON_MEMORY
    if trho is None:
        trho = chain.moments()[1]
    flat0, unravel = jax.flatten_util.ravel_pytree(state0)
    n = flat0.shape[0]
    x0 = jnp.log(jnp.maximum(flat0, TINY))
    # Every sweep returns order parameters of shape (L,) (built here rather than by
    # tracing the sweep once more for its output shape).
    nan_op = OrderParameters(*(jnp.full((chain.depth,), jnp.nan) for _ in range(5)))

    def G(x):
        st, op, ph = sweep(unravel(jnp.exp(x)), chain, cfg, trho)
        flat = jax.flatten_util.ravel_pytree(st)[0]
        ok = jnp.all(flat > 0) & _finite(op) & ~jnp.isinf(ph)
        return jnp.log(jnp.maximum(flat, TINY)), op, ph, ok

    def cond(c):
        return (c["it"] < max_iter) & (c["change"] > tol)

    def body(c):
        g, op, ph, ok = G(c["x"])
        f = g - c["x"]
        norm = jnp.linalg.norm(f)
        restart = ~ok | (norm > 10.0 * c["best"]) | (norm > GROWTH * c["last"])
        push = ok & c["have"] & ~restart
        slot = c["filled"] % m
        dF = jnp.where(restart, 0.0, jnp.where(push, c["dF"].at[slot].set(f - c["f"]), c["dF"]))
        dG = jnp.where(restart, 0.0, jnp.where(push, c["dG"].at[slot].set(g - c["g"]), c["dG"]))
        filled = jnp.where(restart, 0, c["filled"] + push.astype(c["filled"].dtype))
        gram = dF @ dF.T
        reg = 1e-12 * (jnp.trace(gram) + 1e-300)
        gamma = _spd_solve(gram + reg * jnp.eye(m), dF @ f)
        # An extrapolation moves no message by more than a factor e^REACH beyond the plain step.
        x_acc = g + jnp.clip(-dG.T @ gamma, -REACH, REACH)
        # Only forward: an extrapolation against the plain step's direction is a
        # symptom of a near-singular history (a map that translates the messages at a
        # constant rate, as on the way to a recovered input) and is refused.
        forward = jnp.dot(x_acc - c["x"], f) > 0
        use_acc = accelerate & (filled > 0) & jnp.all(jnp.isfinite(x_acc)) & forward
        x_next = jnp.where(ok, jnp.where(use_acc, x_acc, g), c["g"])
        change = jnp.where(ok, jnp.where(c["have"], _relative_change(op, c["op"]), jnp.inf), c["change"])
        change = jnp.where(jnp.isnan(change), -1.0, change)
        # Two failed evaluations in a row (or a failed first one): give up, flagged below.
        streak = jnp.where(ok, 0, c["streak"] + 1)
        change = jnp.where((streak >= 2) | (~ok & ~c["have"]), -1.0, change)
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, old)
        return dict(
            x=x_next, g=jnp.where(ok, g, c["g"]), f=jnp.where(ok, f, c["f"]), op=keep(op, c["op"]),
            phi=jnp.where(ok, ph, c["phi"]), dF=dF, dG=dG, filled=filled, have=c["have"] | ok,
            best=jnp.where(ok, jnp.minimum(c["best"], norm), c["best"]), it=c["it"] + 1, change=change,
            last=jnp.where(ok, norm, c["last"]),
            streak=streak,
        )

    carry = dict(
        x=x0, g=x0, f=jnp.zeros(n), op=nan_op, phi=jnp.asarray(jnp.nan), dF=jnp.zeros((m, n)),
        dG=jnp.zeros((m, n)), filled=jnp.asarray(0), have=jnp.asarray(False), best=jnp.asarray(jnp.inf),
        last=jnp.asarray(jnp.inf),
        it=jnp.asarray(0), change=jnp.asarray(jnp.inf), streak=jnp.asarray(0),
    )
    out = jax.lax.while_loop(cond, body, carry)
    op, change = out["op"], out["change"]
    ok = (change >= 0) & (change <= tol) & _finite(op)
    return op, out["it"], ok, jnp.where(change >= 0, change, jnp.nan), out["phi"]


def _finite(op: OrderParameters):
    return jnp.all(jnp.isfinite(jax.flatten_util.ravel_pytree(op)[0]))


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


INFORMED = 1e-10  # the informed start's errors, relative to each layer's second moment


def start_names(depth: int) -> tuple:
    """Names of the multi-start's initial conditions, in the order they are run."""
    per_layer = tuple(f"layer {k + 1} lowered" for k in range(depth)) if depth > 1 else ()
    return ("uninformed", "informed") + per_layer


def _starts(chain: Chain, method: str, moments):
    """Initial states of the multi-start, named by :func:`start_names`.

    * ``uninformed``: every error at its largest, ``V_k = rho_k`` (the state evolution of
      an algorithm that starts knowing nothing; its end point is the algorithmic
      prediction);
    * ``informed``: every error at ``1e-10 rho_k`` (the branch of near-perfect recovery:
      a discrete input's perfect-recovery point ``V = 0`` is reached from here, where it
      is stable, whatever the uninformed start does);
    * for deeper chains, one start per layer with that layer's error lowered (to 1% of
      ``rho_k`` for ML-VAMP, to ``1e-10`` for the fixed point) and the others at the
      uninformed (ML-VAMP) or informed (fixed point) value.
    """
    rho, trho = moments
    rho = jnp.stack([jnp.asarray(r, dtype=jnp.float64) for r in rho])
    trho = jnp.stack([jnp.asarray(t, dtype=jnp.float64) for t in trho])
    L = chain.depth
    lowered = [rho.at[k].multiply(0.01) for k in range(L)] if L > 1 else []
    if method == "vamp":
        # v0 = rho rather than 1e-10 for the uninformed start (replica-math.md: a tiny v0
        # makes a2x = 1/v1x - a1x cancel for a Gaussian input); the informed start's
        # messages on z are as informed as those on the input.
        v0 = jnp.stack([rho, INFORMED * rho] + lowered)
        tv0 = jnp.stack([trho, INFORMED * trho] + [trho] * len(lowered))
        return (1.0 / v0, 1.0 / tv0)
    small = jnp.full_like(rho, DELTA)
    raised = [small.at[k].set(rho[k]) for k in range(L)] if L > 1 else []
    v0 = jnp.stack([rho, small] + raised)
    return (v0, 1.0 / (2.0 * v0))


def _core(chain: Chain, init, method: str, tol, max_iter, polish_steps: int, cfg):
    sweep = _vamp_sweep if method == "vamp" else _fp_sweep
    moments = chain.moments()
    trho = [jnp.asarray(t, dtype=jnp.float64) for t in moments[1]]
    if init is None:
        starts = _starts(chain, method, moments)
    else:
        state = _vamp_state_from(init) if method == "vamp" else (init.V, init.A)
        starts = jax.tree_util.tree_map(lambda x: x[None], state)
    run = lambda s: _iterate(sweep, s, chain, tol, max_iter, cfg, method == "vamp", trho)
    if jax.default_backend() == "cpu":
        # One start after the other: the cost is the sum of their iterations, where a
        # vmapped while loop would run every start as long as the slowest one.
        ops, its, oks, changes, phis = jax.lax.map(run, starts)
    else:
        ops, its, oks, changes, phis = jax.vmap(run)(starts)
    if method != "vamp":
        phis = jax.vmap(lambda o: phi(o, chain, cfg))(ops)
    raw_phis = phis
    phis = jnp.where(oks & jnp.isfinite(phis), phis, jnp.nan)
    any_ok = jnp.any(oks)
    # Smallest phi (Claim 1). Starts within round-off of the smallest phi are tied; the
    # tie goes to the one with the smallest errors V: the fixed-point scheme has a
    # degenerate uninformed point (V = rho, tV = tA = theta = 0 on a layer) whose phi
    # can equal the true one to the last digit.
    pmin = jnp.nanmin(jnp.where(oks, phis, jnp.inf))
    tied = oks & (phis <= pmin + 1e-11 * (1.0 + jnp.abs(pmin)))
    size = jnp.sum(jnp.log(jnp.maximum(ops.V, TINY)), axis=-1)
    best = jnp.where(any_ok, jnp.argmin(jnp.where(tied, size, jnp.inf)), 0)
    op = jax.tree_util.tree_map(lambda x: x[best], ops)
    it = its[best]

    template = jax.lax.stop_gradient(op)
    x = jax.lax.stop_gradient(_pack(op, chain))
    value = jax.lax.stop_gradient(phis[best])
    if polish_steps > 0:
        residual_fn = _stationarity(chain, template, cfg)
        x = _newton(residual_fn, x, polish_steps)
        residual = jnp.max(jnp.abs(residual_fn(x)))
        ok = any_ok & oks[best] & (residual < 1e-6)
        value = phi(_unpack(x, chain, template), chain, cfg)
    else:
        # Without a polish neither the stationarity gradient nor phi is compiled into
        # the forward program (they would double it): the residual is the iteration's
        # last relative change and the potential the one the iteration reported at its
        # last evaluation (equal to phi at the returned point to second order in that
        # change, phi being stationary there).
        residual = changes[best]
        ok = any_ok & oks[best]
    x, potential = _at_stationary_point(chain, x, value, template, cfg)
    op = _unpack(x, chain, template)
    per_start = dict(potential=raw_phis, mmse=ops.V[:, 0], converged=oks, iterations=its)
    return op, potential, ok, it, residual, phis, per_start


@functools.partial(jax.custom_jvp, nondiff_argnums=(4,))
def _at_stationary_point(chain, x, value, template, cfg):
    """``(x, value)``: a stationary point of ``phi`` (packed) and ``phi`` there, as
    functions of ``chain`` for differentiation.

    Derivatives are implicit (the implicit function theorem on ``d phi/dx = 0``:
    ``dx = -H^{-1} d(d phi/dx)/d chain``, with ``H`` the Hessian of ``phi``), never
    derivatives of the iterations. The rule is traced only under differentiation, so
    the forward program carries neither the Hessian nor ``phi``.
    """
    return x, value


@_at_stationary_point.defjvp
def _at_stationary_point_jvp(cfg, primals, tangents):
    chain, x, value, template = primals
    dchain = tangents[0]
    potential = lambda y, ch: phi(_unpack(y, ch, template), ch, cfg)
    gradient = lambda y, ch: jax.grad(potential)(y, ch)
    hessian = jax.jacfwd(gradient)(x, chain)
    (v0, r0), (v_dot, r_dot) = jax.jvp(lambda ch: (potential(x, ch), gradient(x, ch)), (chain,), (dchain,))
    dx = -jnp.linalg.solve(hessian, r_dot)
    # d value = d phi/d chain + d phi/dx . dx; the second term is zero at an exact
    # stationary point and keeps the derivative exact at a converged one.
    return (x, value), (dx, v_dot + jnp.dot(r0, dx))


# Compiled once per chain structure and static setting; tol and every number of the
# chain are traced, so sweeps and warm starts reuse the compiled program.
_core_jit = jax.jit(_core, static_argnames=("method", "max_iter", "polish_steps", "cfg"))


METHODS = ("vamp", "fixed_point")


def check_method(method) -> str:
    """``method`` if it names a solver of :data:`METHODS`, else ``ValueError``."""
    if method not in METHODS:
        raise ValueError(f"method must be 'vamp' or 'fixed_point' (got {method!r})")
    return method


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
    check_method(method)
    if not isinstance(chain, Chain):
        raise ValueError(f"chain must be a jaxreplica.Chain (got {type(chain).__name__})")
    check("tol", tol, positive=True)
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be at least 1 (got {max_iter})")
    op, potential, converged, it, residual, phis, per_start = _core_jit(
        chain, init, method, jnp.asarray(tol, dtype=jnp.float64), int(max_iter), int(polish_steps), quadrature
    )
    noise_term = noise_entropy(chain, quadrature)
    information = lambda phi_value: jnp.where(chain.hidden_noiseless(), phi_value + noise_term, jnp.nan)
    mi = information(potential)
    # I(X; T_L) <= H(X) for a discrete input: a selected point above it is not a
    # solution, whatever the iteration says.
    converged = converged & ~(mi > chain.prior.entropy() + BOUND_SLACK)
    names = ("warm start",) if init is not None else start_names(chain.depth)
    return Solution(
        entropy=potential,
        mutual_information=mi,
        last_layer_information=potential + noise_term,
        mmse=_reported_error(op.V[0]),
        fixed_point=op,
        potential=potential,
        converged=converged,
        iterations=it,
        residual=residual,
        start_potentials=phis,
        branches=Branches(
            potential=per_start["potential"],
            mutual_information=information(per_start["potential"]),
            mmse=_reported_error(per_start["mmse"]),
            converged=per_start["converged"],
            iterations=per_start["iterations"],
            names=names,
        ),
    )


BOUND_SLACK = 1e-9  # round-off allowed above I(X; T) <= H(X)


def _reported_error(V):
    """An error held at the floor underflowed (a discrete input recovered exactly): 0."""
    return jnp.where(V <= V_FLOOR, 0.0, V)


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
