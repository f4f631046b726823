"""Memory-aware pairwise computations: row blocks mapped with ``lax.map``.

Every estimator in this package reduces an ``(n, m)`` matrix of pairwise squared
distances row by row (a top-k, a count, a ``logsumexp``).  The full matrix of
``n = 10^4`` samples is 800 MB in float64, and the naive difference tensor
``x[:, None, :] - x[None, :, :]`` of dimension 1000 would be 800 GB, so the rows are
processed in blocks: ``lax.map`` over blocks of ``block`` rows, each block building
only its ``(block, m)`` slice.  Unless given, the block size is chosen from an
element budget: ``2^19`` float64 numbers (4 MB) for the explicit-difference
intermediates of small dimension, which stay in cache and run several times faster
on CPU than one large block, and ``2^22`` (32 MB) for the Gram form, whose matrix
products want taller blocks; at least 32 rows.

Squared distances use the Gram identity ``|a - b|^2 = |a|^2 + |b|^2 - 2 a.b`` (one
matrix product per block) when the dimension is large, and explicit differences
when it is small (``d <= 16``), where the Gram form would lose relative accuracy on
close pairs for no gain in speed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

# Elements (float64) of the largest intermediate one block may build, and the
# smallest block (tiny blocks pay the per-iteration overhead of lax.map).
ELEMENT_BUDGET = 2**19
GRAM_ELEMENT_BUDGET = 2**22
MIN_BLOCK = 32
# Up to this dimension squared distances are computed from explicit differences.
DIRECT_MAX_DIM = 16


def block_rows(n_rows: int, n_cols: int, dim: int, block_size: int | None = None) -> int:
    """Number of rows per block so that one block's distance intermediate fits the budget."""
    if block_size is not None:
        return int(max(1, min(block_size, n_rows)))
    if dim <= DIRECT_MAX_DIM:
        rows = ELEMENT_BUDGET // max(n_cols * dim, 1)
    else:
        rows = GRAM_ELEMENT_BUDGET // max(n_cols, 1)
    return int(max(1, min(n_rows, max(MIN_BLOCK, rows))))


def map_row_blocks(fn, n_rows: int, block: int):
    """Apply ``fn(rows)`` to the row indices ``0..n_rows-1`` in blocks of ``block``.

    ``fn`` takes an int array of shape ``(block,)`` and returns a pytree of arrays with
    leading axis ``block``.  The last block is padded by repeating the last row; the
    padded results are dropped.  Returns the pytree with leading axis ``n_rows``.
    """
    n_blocks = -(-n_rows // block)
    idx = jnp.minimum(jnp.arange(n_blocks * block), n_rows - 1).reshape(n_blocks, block)
    if n_blocks == 1:
        out = jax.tree_util.tree_map(lambda a: a[None], fn(idx[0]))
    else:
        out = lax.map(fn, idx)
    return jax.tree_util.tree_map(lambda a: a.reshape((n_blocks * block,) + a.shape[2:])[:n_rows], out)


def squared_distances(a: jax.Array, b: jax.Array, b_sqnorm: jax.Array | None = None) -> jax.Array:
    """``D[i, j] = |a_i - b_j|^2`` for ``a`` of shape ``(p, d)`` and ``b`` of shape ``(m, d)``.

    Explicit differences for ``d <= 16``; otherwise ``|a_i|^2 + |b_j|^2 - 2 a_i.b_j``
    clipped at 0 (``b_sqnorm`` may pass the precomputed ``|b_j|^2``).
    """
    d = a.shape[-1]
    if d <= DIRECT_MAX_DIM:
        return jnp.sum(jnp.square(a[:, None, :] - b[None, :, :]), axis=-1)
    if b_sqnorm is None:
        b_sqnorm = jnp.sum(jnp.square(b), axis=-1)
    a_sqnorm = jnp.sum(jnp.square(a), axis=-1)
    gram = a @ b.T
    return jnp.maximum(a_sqnorm[:, None] + b_sqnorm[None, :] - 2.0 * gram, 0.0)


# Up to this k the k smallest entries of a row are found by k passes of argmin,
# which on CPU is about ten times faster than ``lax.top_k`` (a sort) on long rows.
ARGMIN_MAX_K = 16


def smallest_k(values: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """The ``k`` smallest entries of each row of ``values`` (ascending) and their column indices."""
    if k > ARGMIN_MAX_K:
        neg, idx = lax.top_k(-values, k)
        return -neg, idx
    cols = jnp.arange(values.shape[-1])
    vals, idxs = [], []
    for _ in range(k):
        j = jnp.argmin(values, axis=-1)
        vals.append(jnp.take_along_axis(values, j[:, None], axis=-1)[:, 0])
        idxs.append(j)
        values = jnp.where(cols[None, :] == j[:, None], jnp.inf, values)
    return jnp.stack(vals, axis=-1), jnp.stack(idxs, axis=-1)


def kth_smallest(values: jax.Array, k: int) -> jax.Array:
    """The ``k``-th smallest entry of each row of ``values``, counting repeated values.

    ``k`` passes of (masked ``min``, count of entries equal to it): vectorised
    reductions only, several times faster on CPU than ``argmin`` passes or a sort.
    """
    if k > ARGMIN_MAX_K:
        return -lax.top_k(-values, k)[0][..., -1]
    prev = jnp.full(values.shape[:-1], -jnp.inf, values.dtype)
    found = jnp.zeros(values.shape[:-1], jnp.int32)
    result = jnp.full(values.shape[:-1], jnp.nan, values.dtype)
    for _ in range(k):
        m = jnp.min(jnp.where(values > prev[..., None], values, jnp.inf), axis=-1)
        result = jnp.where(found < k, m, result)
        found = found + jnp.sum(values == m[..., None], axis=-1, dtype=jnp.int32)
        prev = m
    return result
