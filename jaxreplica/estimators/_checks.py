"""Argument validation shared by the plain-Python entry points (nothing here runs inside jit)."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np


def as_samples(x, name: str = "x") -> jax.Array:
    """``x`` as a floating ``(n, d)`` array; a 1-D array is read as ``n`` scalar samples."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d); got shape {x.shape}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must hold at least one sample of dimension >= 1; got shape {x.shape}")
    return x


def is_concrete(value) -> bool:
    """True when ``value`` is a number we can inspect here (not a tracer inside jit/vmap)."""
    return not isinstance(value, jax.core.Tracer)


def check_positive(value, name: str, allow_zero: bool = False) -> None:
    """Raise ``ValueError`` if a concrete ``value`` (scalar or array) is not > 0 (or >= 0)."""
    if not is_concrete(value):
        return
    arr = np.asarray(value)
    bad = (arr < 0) if allow_zero else (arr <= 0)
    if np.any(bad) or np.any(~np.isfinite(arr)):
        what = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be finite and {what}; got {value!r}")


def check_int(value, name: str, low: int, high: int | None = None) -> int:
    """``value`` as a Python int with ``low <= value`` (and ``value < high``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    value = int(value)
    if value < low or (high is not None and value >= high):
        bound = f">= {low}" + ("" if high is None else f" and < {high}")
        raise ValueError(f"{name} must be {bound}; got {value}")
    return value


def check_block(block_size) -> int | None:
    if block_size is None:
        return None
    return check_int(block_size, "block_size", 1)
