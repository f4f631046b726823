"""Gaussian-smoothed plug-in (sample propagation) estimator of Goldfeld et al. (ICML 2019)."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from . import _blocks
from ._checks import as_samples, check_block, check_int, check_positive


class MonteCarloEstimate(NamedTuple):
    """A Monte Carlo estimate and its standard error (both in nats)."""

    value: jax.Array
    stderr: jax.Array


def gaussian_entropy(d: int, noise_var) -> jax.Array:
    """``h(N(0, s2 I_d)) = (d/2) log(2 pi e s2)``."""
    return 0.5 * d * jnp.log(2.0 * jnp.pi * jnp.e * noise_var)


@functools.partial(jax.jit, static_argnames=("n_samples", "block_size"))
def _smoothed_entropy(
    s: jax.Array, noise_var: jax.Array, key: jax.Array, n_samples: int, block_size: int | None
) -> MonteCarloEstimate:
    n, d = s.shape
    key_centres, key_noise = jax.random.split(key)
    # Stratified draw of the mixture component: every centre used equally often,
    # up to one more for the centres after a random offset (unbiased on average).
    offset = jax.random.randint(key_centres, (), 0, n)
    centres = (offset + jnp.arange(n_samples)) % n
    sqnorm = jnp.sum(jnp.square(s), axis=-1)
    block = _blocks.block_rows(n_samples, n, d, block_size)

    def log_density_ratio(rows):
        sb = s[centres[rows]]
        # Noise of a block from a key folded with the block's first row.
        z = jnp.sqrt(noise_var) * jax.random.normal(jax.random.fold_in(key_noise, rows[0]), sb.shape, s.dtype)
        # |s_i + z - s_j|^2 - |z|^2 = |s_i - s_j|^2 + 2 z.(s_i - s_j)
        a = _blocks.squared_distances(sb, s, sqnorm) + 2.0 * (jnp.sum(z * sb, axis=-1)[:, None] - z @ s.T)
        # log N(z; 0, s2) - log p(s_i + z)
        return jnp.log(n) - logsumexp(-a / (2.0 * noise_var), axis=-1)

    terms = _blocks.map_row_blocks(log_density_ratio, n_samples, block)
    value = gaussian_entropy(d, noise_var) + jnp.mean(terms)
    stderr = jnp.std(terms, ddof=1) / jnp.sqrt(n_samples) if n_samples > 1 else jnp.nan
    return MonteCarloEstimate(value, stderr)


def smoothed_entropy(
    s,
    noise_var,
    key: jax.Array,
    n_samples: int = 10_000,
    *,
    return_stderr: bool = False,
    block_size: int | None = None,
):
    """Gaussian-smoothed plug-in ``h(P_n * N(0, s2 I_d))`` by Monte Carlo, in nats.

    ``P_n = (1/n) sum_j delta_{s_j}`` is the empirical measure of the samples ``s_j``
    of ``S`` (e.g. the noiseless part of a noisy layer ``T = S + Z``); the estimate of
    ``h(T) = h(P * N_s2)`` is the entropy of the Gaussian mixture centred on the
    samples.  It is computed as

    ``h = (d/2) log(2 pi e s2) + E_{i, z}[ -log( (1/n) sum_j exp(-(|s_i - s_j|^2 + 2 z.(s_i - s_j)) / (2 s2)) ) ]``

    with ``i`` uniform, ``z ~ N(0, s2 I)``: that is ``h(Z) + E[log N(z) - log p(s_i + z)]``,
    the noise entropy taken exactly (a control variate), which leaves a Monte Carlo
    term bounded by ``log n`` from above whose variance vanishes when the centres are
    well separated.  Components are drawn stratified (each centre
    ``floor(n_samples / n)`` or one more time, from a random offset), and the noise of
    a block of draws comes from ``key`` folded with the block's first row (results
    depend on ``block_size``, not on anything else).  As an estimator of ``h(P * N)``
    its error is at most ``c^d / sqrt(n)`` over sub-Gaussian ``P`` (Goldfeld,
    Greenewald, Polyanskiy, Weed 2019); ``I(X; T) = h(T) - h(T | X)``.

    Args:
      s: samples of ``S`` (mixture centres), shape ``(n, d)``.
      noise_var: noise variance ``s2 > 0`` (may be traced).
      key: ``jax.random.PRNGKey`` for the Monte Carlo draws.
      n_samples: Monte Carlo draws from the mixture (static).
      return_stderr: also return the Monte Carlo standard error (static).
      block_size: Monte Carlo rows per block (static); memory ``O(block * n)``.

    Returns:
      The estimate (scalar), or ``MonteCarloEstimate(value, stderr)`` if ``return_stderr``.
    """
    s = as_samples(s, "s")
    check_positive(noise_var, "noise_var")
    n_samples = check_int(n_samples, "n_samples", 1)
    result = _smoothed_entropy(s, jnp.asarray(noise_var, s.dtype), key, n_samples, check_block(block_size))
    return result if return_stderr else result.value
