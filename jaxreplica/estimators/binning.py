"""Binned ("discretised") entropy of the joint bin code (Shwartz-Ziv & Tishby 2017)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from ._checks import as_samples, check_int


def _dense_ranks(keys: jax.Array) -> jax.Array:
    """Map integer keys to dense ids ``0..(#distinct - 1)`` preserving order."""
    order = jnp.argsort(keys)
    sorted_keys = keys[order]
    new = jnp.concatenate([jnp.zeros((1,), jnp.int32), (sorted_keys[1:] != sorted_keys[:-1]).astype(jnp.int32)])
    return jnp.zeros(keys.shape, jnp.int32).at[order].set(jnp.cumsum(new, dtype=jnp.int32))


@functools.partial(jax.jit, static_argnames=("n_bins",))
def _binned_entropy(x: jax.Array, n_bins: int, low: jax.Array, high: jax.Array) -> jax.Array:
    n, _ = x.shape
    width = jnp.where(high > low, high - low, 1.0)
    codes = jnp.clip(jnp.floor((x - low) / width * n_bins), 0, n_bins - 1).astype(jnp.int32)

    # Group identical rows exactly, one column at a time: the group id of a row after
    # column c is the dense rank of (group id after c-1, code in column c).  Ids stay
    # below n, so the combined key never overflows.
    def absorb_column(group, column):
        return _dense_ranks(group.astype(jnp.int64) * n_bins + column), None

    group, _ = lax.scan(absorb_column, jnp.zeros((n,), jnp.int32), codes.T)
    counts = jnp.zeros((n,), x.dtype).at[group].add(1.0)
    p = counts / n
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))


def binned_entropy(x, n_bins: int, value_range: tuple[float, float] | None = None) -> jax.Array:
    """Discrete entropy (nats) of the joint code of ``x`` quantised into equal bins.

    Each coordinate is mapped to ``b = clip(floor((x - lo) / (hi - lo) * B), 0, B - 1)``
    and ``H = -sum_c p_c log p_c`` over the distinct rows ``c`` of the code matrix,
    ``p_c`` their empirical frequencies.  For a deterministic layer ``T = f(X)`` this
    is the binned "information" ``I(X; bin(T)) = H(bin(T))`` of Shwartz-Ziv & Tishby;
    it measures how the samples cluster at the bin scale, at most ``log n``.

    Args:
      x: samples, shape ``(n, d)``.
      n_bins: bins per coordinate ``B >= 1`` (static).
      value_range: ``(lo, hi)`` shared by all coordinates; by default the minimum and
        maximum of ``x`` (e.g. pass ``(-1, 1)`` for tanh units).

    Jittable with ``n_bins`` static; rows are grouped exactly (a sort per column).
    """
    x = as_samples(x, "x")
    n_bins = check_int(n_bins, "n_bins", 1)
    if value_range is None:
        low, high = jnp.min(x), jnp.max(x)
    else:
        if len(value_range) != 2:
            raise ValueError(f"value_range must be a pair (lo, hi); got {value_range!r}")
        low, high = (jnp.asarray(v, x.dtype) for v in value_range)
        if not isinstance(low, jax.core.Tracer) and not float(high) > float(low):
            raise ValueError(f"value_range must have hi > lo; got {value_range!r}")
    return _binned_entropy(x, n_bins, low, high)
