"""Pairwise-distance bounds on the entropy of a Gaussian mixture (Kolchinsky & Tracey 2017).

For ``T = S + Z`` with ``S`` uniform on the centres ``s_1..s_n`` and
``Z ~ N(0, s2 I_d)``, ``p(t) = (1/n) sum_j N(t; s_j, s2 I)``.  With a pairwise
divergence ``D`` between components,

``H(T) ~= H(T | S) - (1/n) sum_i log( (1/n) sum_j exp(-D(p_i || p_j)) )``,
``H(T | S) = (d/2) log(2 pi e s2)``,

is an *upper* bound on ``H(T)`` for ``D = KL`` (``|s_i - s_j|^2 / (2 s2)``) and a
*lower* bound for ``D`` = Bhattacharyya distance (``|s_i - s_j|^2 / (8 s2)``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from . import _blocks
from ._checks import as_samples, check_block, check_positive

# Denominators of the pairwise divergences in units of the noise variance.
_KL_SCALE = 2.0
_BHATTACHARYYA_SCALE = 8.0


class EntropyBounds(NamedTuple):
    """Bhattacharyya lower and KL upper bounds on a Gaussian-mixture entropy (nats)."""

    lower: jax.Array
    upper: jax.Array


@functools.partial(jax.jit, static_argnames=("block_size",))
def _pairwise_bounds(s: jax.Array, noise_var: jax.Array, block_size: int | None) -> EntropyBounds:
    n, d = s.shape
    block = _blocks.block_rows(n, n, d, block_size)
    sqnorm = jnp.sum(jnp.square(s), axis=-1)
    log_n = jnp.log(n)

    def row_terms(rows):
        dist = _blocks.squared_distances(s[rows], s, sqnorm)
        lo = logsumexp(-dist / (_BHATTACHARYYA_SCALE * noise_var), axis=-1) - log_n
        up = logsumexp(-dist / (_KL_SCALE * noise_var), axis=-1) - log_n
        return lo, up

    lo, up = _blocks.map_row_blocks(row_terms, n, block)
    conditional = 0.5 * d * jnp.log(2.0 * jnp.pi * jnp.e * noise_var)
    return EntropyBounds(lower=conditional - jnp.mean(lo), upper=conditional - jnp.mean(up))


def _validate(s, noise_var, block_size):
    s = as_samples(s, "s")
    check_positive(noise_var, "noise_var")
    return s, jnp.asarray(noise_var, dtype=s.dtype), check_block(block_size)


def pairwise_entropy_bounds(s, noise_var, *, block_size: int | None = None) -> EntropyBounds:
    """Both pairwise bounds on ``H(T)``, ``T ~ (1/n) sum_j N(s_j, noise_var I_d)``, in nats.

    ``lower = (d/2) log(2 pi e s2) - (1/n) sum_i log((1/n) sum_j exp(-|s_i - s_j|^2 / (8 s2)))``
    ``upper = (d/2) log(2 pi e s2) - (1/n) sum_i log((1/n) sum_j exp(-|s_i - s_j|^2 / (2 s2)))``

    (Bhattacharyya and KL pairwise distances; Kolchinsky & Tracey, *Estimating mixture
    entropy with pairwise distances*, Entropy 2017).  Both lie in
    ``[H(T|S), H(T|S) + log n]`` and coincide when the centres are far apart.

    Args:
      s: mixture centres, shape ``(n, d)``.
      noise_var: component variance ``s2 > 0`` (a traced value is accepted).
      block_size: rows per block (static); memory is ``O(block * n)``.
    """
    return _pairwise_bounds(*_validate(s, noise_var, block_size))


def pairwise_entropy_bound(s, noise_var, *, block_size: int | None = None) -> jax.Array:
    """KL-based upper bound on the entropy of the mixture ``(1/n) sum_j N(s_j, noise_var I)``.

    ``H(T) <= (d/2) log(2 pi e s2) - (1/n) sum_i log( (1/n) sum_j exp(-|s_i - s_j|^2 / (2 s2)) )``

    Used on a noisy layer in two ways (paper's Figure 2): centres = noisy samples
    ("fit to the noisy samples"), or centres = the deterministic part with the noise
    variance ``s2`` added ("parametric").  See :func:`pairwise_entropy_bounds`.
    """
    return pairwise_entropy_bounds(s, noise_var, block_size=block_size).upper


def bhattacharyya_entropy_bound(s, noise_var, *, block_size: int | None = None) -> jax.Array:
    """Bhattacharyya lower bound on the entropy of ``(1/n) sum_j N(s_j, noise_var I)``.

    ``H(T) >= (d/2) log(2 pi e s2) - (1/n) sum_i log( (1/n) sum_j exp(-|s_i - s_j|^2 / (8 s2)) )``
    """
    return pairwise_entropy_bounds(s, noise_var, block_size=block_size).lower
