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
from ._checks import as_samples, check_block, check_int, check_positive

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


# Below this many samples the leave-one-out fit keeps the whole distance matrix
# (n^2 float64 numbers, 128 MB at the limit); above it, every iteration recomputes
# the distances block by block.
_FIT_DENSE_MAX_N = 4096


class MixtureVarianceFit(NamedTuple):
    """Leave-one-out maximum-likelihood variance of an isotropic Gaussian mixture."""

    variance: jax.Array
    log_likelihood: jax.Array  # mean leave-one-out log density at the fit
    iterations: jax.Array
    converged: jax.Array


@functools.partial(jax.jit, static_argnames=("max_iter", "block_size"))
def _fit_mixture_variance(s: jax.Array, tol: jax.Array, max_iter: int, block_size: int | None) -> MixtureVarianceFit:
    n, d = s.shape
    sqnorm = jnp.sum(jnp.square(s), axis=-1)
    cols = jnp.arange(n)
    dense = n <= _FIT_DENSE_MAX_N
    if dense:
        full = _blocks.squared_distances(s, s, sqnorm)
    block = _blocks.block_rows(n, n, d, block_size)

    def distances(rows):
        dist = full[rows] if dense else _blocks.squared_distances(s[rows], s, sqnorm)
        return jnp.where(rows[:, None] == cols[None, :], jnp.inf, dist)  # leave one out

    def e_step(var):
        """Mean responsibility-weighted squared distance and mean LOO log-likelihood."""

        def rows_fn(rows):
            logits = -distances(rows) / (2.0 * var)
            lse = logsumexp(logits, axis=-1)
            weights = jnp.exp(logits - lse[:, None])
            dist = jnp.where(jnp.isfinite(logits), -2.0 * var * logits, 0.0)
            return jnp.sum(weights * dist, axis=-1), lse

        wd, lse = _blocks.map_row_blocks(rows_fn, n, block)
        loglik = jnp.mean(lse) - jnp.log(n - 1.0) - 0.5 * d * jnp.log(2.0 * jnp.pi * var)
        return jnp.mean(wd) / d, loglik

    # Start from the nearest-neighbour scale, where the responsibilities are sharp.
    nearest = _blocks.map_row_blocks(lambda rows: jnp.min(distances(rows), axis=-1), n, block)
    floor = 1e-12 * jnp.maximum(jnp.mean(nearest) / d, jnp.finfo(s.dtype).tiny)
    var0 = jnp.maximum(jnp.mean(nearest) / d, floor)

    def cond(state):
        var, prev, it = state
        return (it < max_iter) & (jnp.abs(jnp.log(var) - jnp.log(prev)) > tol)

    def body(state):
        var, _, it = state
        # EM update of the shared variance: var = sum_i sum_j w_ij |s_i - s_j|^2 / (n d).
        new, _ = e_step(var)
        return jnp.maximum(new, floor), var, it + 1

    var, prev, it = jax.lax.while_loop(cond, body, (var0, 2.0 * var0 + 1.0, jnp.asarray(0)))
    _, loglik = e_step(var)
    converged = jnp.abs(jnp.log(var) - jnp.log(prev)) <= tol
    return MixtureVarianceFit(var, loglik, it, converged)


def fit_mixture_variance(
    s, *, tol: float = 1e-8, max_iter: int = 500, block_size: int | None = None
) -> MixtureVarianceFit:
    """Fit the common variance ``h^2`` of ``(1/n) sum_j N(s_j, h^2 I_d)`` to the samples ``s``.

    Maximises the leave-one-out log-likelihood

    ``L(h^2) = (1/n) sum_i log( (1/(n-1)) sum_{j != i} N(s_i; s_j, h^2 I_d) )``

    by its EM iteration ``h^2 <- (1/(n d)) sum_i sum_{j != i} w_ij |s_i - s_j|^2`` with
    ``w_ij`` the softmax over ``j`` of ``-|s_i - s_j|^2 / (2 h^2)``, started from the
    mean nearest-neighbour squared distance over ``d`` and stopped when ``log h^2``
    moves by less than ``tol``.  This is how a mixture is "fit to the noisy samples"
    before taking its pairwise entropy bound (kernel density estimation); centring it
    on the noiseless part and adding the noise variance is the "parametric" variant.
    Duplicated samples drive ``h^2`` to its floor (``1e-12`` of the start).

    Args:
      s: samples, shape ``(n, d)``, ``n >= 2``.
      tol: stopping tolerance on ``log h^2``.
      max_iter: iteration cap (static); ``converged`` reports whether ``tol`` was met.
      block_size: rows per block (static) when ``n > 4096`` (below, the ``n x n``
        distance matrix is kept).
    """
    s = as_samples(s, "s")
    if s.shape[0] < 2:
        raise ValueError(f"s must hold at least 2 samples; got shape {s.shape}")
    check_positive(tol, "tol")
    max_iter = check_int(max_iter, "max_iter", 1)
    return _fit_mixture_variance(s, jnp.asarray(tol, s.dtype), max_iter, check_block(block_size))
