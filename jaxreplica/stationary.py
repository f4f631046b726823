"""The stationary point of ``phi`` as a differentiable function of the chain.

The order parameters are packed into one vector ``x`` (logs of the positive
``V, A, tV, tA``, and ``theta`` where it is a free parameter: empirical spectra). Here:

* :func:`stationarity_residual`: ``x -> d phi/dx``;
* :func:`polish`: Newton steps on ``d phi/dx = 0`` (each step keeps the better point);
* :func:`at_stationary_point`: the identity on ``(x, phi)`` whose derivative with
  respect to the chain is implicit (the implicit function theorem on ``d phi/dx = 0``),
  never the derivative of the iterations that found ``x``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxreplica.chain import Chain
from jaxreplica.ensembles import Empirical
from jaxreplica.gaussian import TINY
from jaxreplica.potential import OrderParameters, phi

__all__ = ["pack", "unpack", "stationarity_residual", "polish", "at_stationary_point"]


def _theta_free(chain: Chain):
    """Which layers have ``theta`` as a free order parameter (empirical spectra)."""
    return [isinstance(e, Empirical) for e in chain.ensembles]


def pack(op: OrderParameters, chain: Chain):
    logs = jnp.log(jnp.maximum(jnp.stack([op.V, op.A, op.tV, op.tA]), TINY)).reshape(-1)
    thetas = [op.theta[k] for k, free in enumerate(_theta_free(chain)) if free]
    return jnp.concatenate([logs, jnp.stack(thetas)]) if thetas else logs


def unpack(x, chain: Chain, template: OrderParameters) -> OrderParameters:
    """Order parameters from ``x``; ``theta`` of the layers where it is not free comes
    from ``template``."""
    L = chain.depth
    V, A, tV, tA = jnp.exp(x[: 4 * L]).reshape(4, L)
    theta = list(template.theta)
    i = 4 * L
    for k, free in enumerate(_theta_free(chain)):
        if free:
            theta[k] = x[i]
            i += 1
    return OrderParameters(V=V, A=A, tV=tV, tA=tA, theta=jnp.stack(theta))


def stationarity_residual(chain: Chain, template: OrderParameters, cfg):
    """``x -> d phi/dx`` in the packed coordinates."""
    return jax.grad(lambda x: _potential(template, cfg)(x, chain))


def polish(residual_fn, x0, steps: int):
    """``steps`` Newton steps on ``residual_fn(x) = 0``; a step that does not lower the
    largest residual is not taken."""
    def body(_, carry):
        x, r = carry
        x_new = x - jnp.linalg.solve(jax.jacfwd(residual_fn)(x), r)
        r_new = residual_fn(x_new)
        better = jnp.all(jnp.isfinite(r_new)) & (jnp.max(jnp.abs(r_new)) < jnp.max(jnp.abs(r)))
        return jnp.where(better, x_new, x), jnp.where(better, r_new, r)

    return jax.lax.fori_loop(0, steps, body, (x0, residual_fn(x0)))[0]


def at_stationary_point(chain, x, value, template, cfg, gradient: str = "implicit"):
    """``(x, value)``: a stationary point of ``phi`` (packed) and ``phi`` there, as
    functions of ``chain`` for differentiation.

    The point's derivative is implicit (``dx = -H^{-1} d(d phi/dx)/d chain``, with ``H``
    the Hessian of ``phi``). The value's is ``d phi/d chain + d phi/dx . dx``
    (``gradient="implicit"``): the second term is zero at an exact stationary point; at
    the iteration's fixed point, where ``d phi/dx`` is of the order of the quadrature's
    error, it cancels that error to first order. With ``gradient="envelope"`` the
    value's derivative is ``d phi/d chain`` at the point (the envelope theorem), and
    nothing of second order is traced: the point's derivative is then NaN (not
    computed), never a plausible number. The rules are traced only under
    differentiation, so the forward program carries neither the Hessian nor ``phi``.
    """
    if gradient == "envelope":
        return _held_point(chain, x), _value_at(chain, x, value, template, cfg)
    point = _implicit_point(chain, x, template, cfg)
    return point, _value_at(chain, point, value, template, cfg)


@jax.custom_jvp
def _held_point(chain, x):
    """``x``, whose derivative in the chain is not computed (NaN)."""
    return x


@_held_point.defjvp
def _held_point_jvp(primals, tangents):
    x = primals[1]
    # NaN times a linear function of the chain's tangents: a tangent that is linear in
    # them, so that reverse mode carries it too (it drops a constant one, as a zero).
    total = sum(jnp.sum(t) for t in jax.tree_util.tree_leaves(tangents[0]) if jnp.issubdtype(t.dtype, jnp.inexact))
    return x, jnp.full_like(x, jnp.nan) * total


def _potential(template, cfg):
    return lambda y, ch: phi(unpack(y, ch, template), ch, cfg)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _implicit_point(chain, x, template, cfg):
    """``x``, with the implicit derivative of the stationary point."""
    return x


@_implicit_point.defjvp
def _implicit_point_jvp(cfg, primals, tangents):
    chain, x, template = primals
    gradient = lambda y, ch: jax.grad(_potential(template, cfg))(y, ch)
    hessian = jax.jacfwd(gradient)(x, chain)
    r_dot = jax.jvp(lambda ch: gradient(x, ch), (chain,), (tangents[0],))[1]
    return x, -jnp.linalg.solve(hessian, r_dot)


@functools.partial(jax.custom_jvp, nondiff_argnums=(4,))
def _value_at(chain, x, value, template, cfg):
    """``value`` (``phi`` at ``x``, as the search found it), differentiated as ``phi``
    in the chain and in ``x``."""
    return value


@_value_at.defjvp
def _value_at_jvp(cfg, primals, tangents):
    chain, x, value, template = primals
    dchain, dx = tangents[0], tangents[1]
    return value, jax.jvp(_potential(template, cfg), (x, chain), (dx, dchain))[1]
