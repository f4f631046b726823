"""Design by gradient: optimise the parameters of a chain through its replica solution.

:func:`design` runs an optax optimiser on any parameters of a chain (weight scales, a
spectrum, noise levels) with envelope-theorem gradients (:func:`envelope_quantities`:
the solution is stationary in the order parameters, so no differentiation of the
solver is needed); :func:`maximize_entropy` and :func:`match_information` are its two
common objectives. :func:`dense_sweep` and :func:`sweep_maximum` give the brute-force
reference they are checked against.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreplica._struct import pytree, tree_where
from jaxreplica.conditional import conditional_chain, per_input
from jaxreplica.potential import noise_entropy, phi
from jaxreplica.solvers import solve

__all__ = [
    "DesignResult",
    "design",
    "dense_sweep",
    "envelope_quantities",
    "match_information",
    "maximize_entropy",
    "sweep_maximum",
]


def envelope_quantities(chain, fixed_point, conditional_fixed_point=None):
    """``(H(T_L)/n_0, I/n_0)`` of ``chain`` at a *given* stationary point.

    ``H = phi(q*, chain)``. Without ``conditional_fixed_point``, ``I = H - H(T_L | Z_L)/n_0
    = I(T_L; T_{L-1})/n_0``, which is ``I(X; T_L)/n_0`` when every hidden layer of the
    chain after the data model is noiseless; with it (``Solution.conditional_fixed_point``
    of a noisy network), ``I = H - (n_1/n_0) phi(q*_c, conditional chain) = I(X; T_L)/n_0``.
    The order parameters are held fixed, so the gradient of either value with respect
    to the chain's leaves is the total derivative of the solved value (envelope theorem:
    each potential is stationary in its own order parameters) whenever the points are
    the converged solutions (``jr.solve(chain)``).
    """
    fixed_point = jax.lax.stop_gradient(fixed_point)
    h = phi(fixed_point, chain)
    if conditional_fixed_point is None:
        return h, h + noise_entropy(chain)
    point = jax.lax.stop_gradient(conditional_fixed_point)
    return h, h - per_input(chain, phi(point, conditional_chain(chain)))



@pytree
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
    tx = optax.lbfgs() if optimizer is None else optimizer
    tx = optax.with_extra_args_support(tx)
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), params)
    project = (lambda p: p) if project is None else project

    def evaluate(q, op):
        sol = solve(jax.lax.stop_gradient(chain_fn(q)), method, init=op, tol=tol, max_iter=max_iter)
        ok = sol.converged
        point = tree_where(ok, jax.lax.stop_gradient(sol.fixed_point), op)
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
        new_p = tree_where(ok, new_p, p)
        new_state = tree_where(ok, new_state, opt_state)
        return new_p, new_state, point, value, h, i, g, ok

    # cold multi-start outside the step: jr.solve's own compilation, shared between calls
    op = solve(chain_fn(params), method, tol=tol, max_iter=max_iter).fixed_point
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
        check = solve(chain_fn(evaluated), method, tol=tol, max_iter=max_iter)
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
    grid = np.asarray(grid, np.float64)
    h, i, c = [], [], []
    op = None
    for p in grid:
        sol = solve(chain_fn(float(p)), method, init=op if warm else None, tol=tol, max_iter=max_iter)
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
