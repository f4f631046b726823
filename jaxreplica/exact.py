"""Closed forms for linear chains with Gaussian input (docs/theory.md, "Closed-form checks").

``Sigma_0 = rho I``, ``Sigma_k = W_k Sigma_{k-1} W_k^T + Delta_k I``: ``T_L`` is Gaussian and
``H(T_L)/n_0 = log det(2 pi e Sigma_L) / (2 n_0)``, independent of the input's mean.
The noise part ``N_0 = 0``, ``N_k = W_k N_{k-1} W_k^T + Delta_k I`` gives ``H(T_L | X)``
and ``I(X; T_L) = H(T_L) - H(T_L | X)``.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from jaxreplica._struct import check, pytree

__all__ = ["GaussianChainValues", "gaussian_chain", "gaussian_entropy"]


@pytree
class GaussianChainValues:
    """Per-layer values (shape ``(L,)``), per input unit, nats."""

    entropy: jax.Array
    conditional_entropy: jax.Array
    mutual_information: jax.Array


def gaussian_entropy(cov) -> jax.Array:
    """``H = (n log(2 pi e) + log det cov) / 2``, the entropy (nats) of an ``n``-dimensional
    Gaussian vector of covariance ``cov``; NaN when ``cov`` is not positive definite."""
    sign, logdet = jnp.linalg.slogdet(cov)
    const = cov.shape[-1] * jnp.log(2.0 * jnp.pi * jnp.e)
    return 0.5 * (const + jnp.where(sign > 0, logdet, jnp.nan))


def gaussian_chain(weights: Sequence, noises: Sequence, prior_var=1.0) -> GaussianChainValues:
    """Exact ``H(T_l)``, ``H(T_l | X)`` and ``I(X; T_l)`` of a linear Gaussian chain.

    Same convention as :func:`jaxreplica.solve_layers`: the value for layer ``l`` is
    measured with layer ``l``'s own noise if it is positive, else with the last
    layer's noise.

    Args:
      weights: ``W_1, ..., W_L`` with ``W_k`` of shape ``(n_k, n_{k-1})``.
      noises: ``Delta_1, ..., Delta_L`` (variance added at each layer).
      prior_var: variance of the i.i.d. Gaussian input.
    """
    weights = [jnp.asarray(W, dtype=jnp.float64) for W in weights]
    if not weights:
        raise ValueError("weights must not be empty")
    if len(noises) != len(weights):
        raise ValueError(f"noises must have one entry per layer ({len(weights)}), got {len(noises)}")
    for k, d in enumerate(noises):
        check(f"noises[{k}]", d, nonnegative=True)
    check("prior_var", prior_var, positive=True)
    for k in range(1, len(weights)):
        if weights[k].shape[1] != weights[k - 1].shape[0]:
            raise ValueError(f"weights[{k}] has {weights[k].shape[1]} inputs but weights[{k-1}] has {weights[k-1].shape[0]} outputs")
    check("noises[-1]", noises[-1], positive=True)
    H, Hc = _chain_entropies(tuple(weights), jnp.asarray(noises, dtype=jnp.float64), prior_var)
    return GaussianChainValues(entropy=H, conditional_entropy=Hc, mutual_information=H - Hc)


@jax.jit
def _chain_entropies(weights, noises, prior_var):
    """``H(T_l)/n_0`` and ``H(T_l | X)/n_0`` of :func:`gaussian_chain`, one compiled program
    per set of shapes (op by op, every shape compiled a dozen small programs)."""
    n0 = weights[0].shape[1]
    last = noises[-1]
    S = prior_var * jnp.eye(n0)
    N = jnp.zeros((n0, n0))
    H, Hc = [], []
    for W, d in zip(weights, noises):
        S = W @ S @ W.T
        N = W @ N @ W.T
        measured = jnp.where(d > 0, d, last)
        eye = jnp.eye(W.shape[0])
        H.append(gaussian_entropy(S + measured * eye) / n0)
        Hc.append(gaussian_entropy(N + measured * eye) / n0)
        S = S + d * eye
        N = N + d * eye
    return jnp.stack(H), jnp.stack(Hc)
