"""The replica potential ``phi`` as one pure function of the order parameters.

docs/theory.md, "The potential"::

    phi = 1/2 sum_k talpha_{k-1} [tA_k (rho_k - V_k) - alpha_k A_k tV_k + F_k(A_k, V_k, theta_k)]
          - [I_prior(tA_1) + sum_{k<L} talpha_k I_hidden_k(tA_{k+1}, tV_k, trho_k)
             + talpha_L I_last(tV_L, trho_L)]

``lim H(T_L)/n_0`` is ``phi`` at its stationary point of smallest ``phi``. The terms
``tA_k rho_k/2`` cancel against the trivial parts ``A E[t^2]/2`` of ``I_prior`` and
``I_hidden``; both are dropped (the free entropies enter *reduced*), so that ``phi``
keeps its precision when ``tA`` is huge.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxreplica._struct import pytree
from jaxreplica.chain import Chain
from jaxreplica.quadrature import DEFAULT, QuadratureConfig

__all__ = ["OrderParameters", "phi"]


@pytree
class OrderParameters:
    """Per-layer order parameters, each of shape ``(L,)`` (or batched ``(..., L)``).

    ``V``: error on the layer's input ``t_{k-1}``; ``A``: its conjugate; ``tV``, ``tA``:
    the same for ``z_k = W_k t_{k-1}``; ``theta``: the ensemble's auxiliary variable.
    """

    V: jnp.ndarray
    A: jnp.ndarray
    tV: jnp.ndarray
    tA: jnp.ndarray
    theta: jnp.ndarray


def phi(op: OrderParameters, chain: Chain, cfg: QuadratureConfig = DEFAULT):
    """The replica potential at ``op`` (per input unit, nats)."""
    L = chain.depth
    rho, trho = chain.moments()
    talpha = chain.cumulative_alphas()
    total = 0.0
    for k, (ens, ch) in enumerate(chain.layers):
        V, A, tV, tA, th = op.V[k], op.A[k], op.tV[k], op.tA[k], op.theta[k]
        # tA rho/2 cancels exactly against the trivial part of the free entropy of the
        # layer below (prior or hidden channel), which is therefore taken reduced.
        total = total + 0.5 * talpha[k] * (-tA * V - ens.alpha * A * tV + ens.free_entropy_term(A, V, th))
    total = total - chain.prior.reduced_free_entropy(op.tA[0], cfg)
    for k in range(L - 1):
        total = total - talpha[k + 1] * chain.channels[k].hidden_functions(op.tA[k + 1], op.tV[k], trho[k], cfg)[0]
    total = total - talpha[L] * chain.channels[-1].output_functions(op.tV[L - 1], trho[L - 1], cfg)[0]
    return total


def noise_entropy(chain: Chain, cfg: QuadratureConfig = DEFAULT):
    """``talpha_L I_last(0, trho_L) = -H(T_L | Z_L)/n_0``: minus the entropy of the last
    layer's noise; ``phi`` plus this is ``I(T_L; T_{L-1})/n_0``."""
    _, trho = chain.moments()
    talpha = chain.cumulative_alphas()
    return talpha[-1] * chain.channels[-1].noise_free_entropy(trho[-1], cfg)
