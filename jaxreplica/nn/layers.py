"""Weight layers whose spectrum the replica formula can use.

Convention (the paper's): a layer maps ``t in R^{n_in}`` to ``z = W t`` with
``W in R^{n_out x n_in}``; on a batch ``x`` of shape ``(batch, n_in)`` that is
``x @ W.T``. There is no bias: the replica formula describes ``z = W t`` exactly,
and a bias would shift the second moments it is written with (the original
``lsd`` code makes the same choice: its USV layers never have a bias, and its
dense layers have none by default).

* :class:`USV` -- ``W = U diag(S) V`` with ``U``, ``V`` frozen orthogonal factors
  and the singular values ``S`` the only trainable parameter. Its spectrum (the
  eigenvalues of ``W^T W``) is ``S^2`` padded with zeros, read off without any
  eigendecomposition.
* :class:`Dense` -- an unconstrained ``W`` (every entry trainable).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["Frozen", "USV", "Dense", "gaussian_matrix", "spectrum_from_singular_values"]


class Frozen(nnx.Variable):
    """A non-trainable array held by a module (the ``U`` and ``V`` of a USV layer).

    It is an :class:`flax.nnx.Variable` but not an :class:`flax.nnx.Param`, so
    ``nnx.split(model, nnx.Param, ...)`` and ``nnx.Optimizer(..., wrt=nnx.Param)``
    leave it out: optimizers never see it.
    """


def _check_size(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_scale(scale) -> float:
    scale = float(scale)
    if not scale > 0 or not jnp.isfinite(scale):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    return scale


def gaussian_matrix(key: jax.Array, n_in: int, n_out: int, scale: float = 1.0, dtype=jnp.float64) -> jax.Array:
    """``W in R^{n_out x n_in}`` with i.i.d. entries ``N(0, scale^2 / n_in)``.

    With ``scale = 1`` the spectrum of ``W^T W`` follows Marchenko-Pastur with
    ratio ``alpha = n_out / n_in`` and ``mean(lambda) = alpha`` (the ensemble
    ``Gaussian(alpha, scale)`` of the engine).
    """
    _check_size("n_in", n_in)
    _check_size("n_out", n_out)
    scale = _check_scale(scale)
    return (scale / jnp.sqrt(n_in)) * jax.random.normal(key, (n_out, n_in), dtype=dtype)


class USV(nnx.Module):
    """Orthogonally-invariant weight layer ``W = U diag(S) V`` with only ``S`` trained.

    At initialisation ``G ~ N(0, scale^2/n_in)^{n_out x n_in}`` is drawn and its thin
    SVD ``G = U diag(S) V`` (``U: n_out x k``, ``V: k x n_in``, ``k = min(n_in, n_out)``)
    is stored, so that the initial ``W`` *is* ``G``. During training ``U`` and ``V``
    (:class:`Frozen`) stay fixed: ``W`` remains orthogonally invariant, the
    assumption under which the replica formula applies with the empirical
    spectrum of ``W``.

    The forward map on a batch is ``x -> ((x V^T) * S) U^T``, i.e. ``z = W t``.

    Spectrum (eigenvalues of ``W^T W``, ``n_in`` of them, ascending, zeros included)::

        spectrum = sort( [S_1^2, ..., S_k^2, 0, ..., 0] )     (n_in - k zeros)

    because ``W^T W = V^T diag(S^2) V`` and ``V`` has orthonormal rows.
    """

    def __init__(self, n_in: int, n_out: int, *, rngs: nnx.Rngs, scale: float = 1.0, dtype=jnp.float64):
        self.n_in = _check_size("n_in", n_in)
        self.n_out = _check_size("n_out", n_out)
        g = gaussian_matrix(rngs.params(), n_in, n_out, scale, dtype)
        u, s, v = jnp.linalg.svd(g, full_matrices=False)
        self.U = Frozen(u)
        self.V = Frozen(v)
        self.S = nnx.Param(s)

    def __call__(self, x: jax.Array) -> jax.Array:
        return ((x @ self.V[...].T) * self.S[...]) @ self.U[...].T

    @property
    def alpha(self) -> float:
        """``n_out / n_in``."""
        return self.n_out / self.n_in

    def spectrum(self) -> jax.Array:
        """Eigenvalues of ``W^T W`` (length ``n_in``, ascending), from ``S`` alone."""
        s2 = jnp.square(self.S[...])
        zeros = jnp.zeros(self.n_in - s2.shape[0], s2.dtype)
        return jnp.sort(jnp.concatenate([zeros, s2]))

    def matrix(self) -> jax.Array:
        """The materialised ``W = U diag(S) V`` (``n_out x n_in``)."""
        return (self.U[...] * self.S[...]) @ self.V[...]


class Dense(nnx.Module):
    """Unconstrained weight layer ``z = W t``, entries initialised ``N(0, scale^2/n_in)``, no bias.

    Every entry is an :class:`flax.nnx.Param`. Its spectrum needs an
    eigendecomposition (``eigvalsh(W^T W)``); once trained, ``W`` is no longer
    orthogonally invariant, so the replica formula is not justified on it.
    """

    def __init__(self, n_in: int, n_out: int, *, rngs: nnx.Rngs, scale: float = 1.0, dtype=jnp.float64):
        self.n_in = _check_size("n_in", n_in)
        self.n_out = _check_size("n_out", n_out)
        self.W = nnx.Param(gaussian_matrix(rngs.params(), n_in, n_out, scale, dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.W[...].T

    @property
    def alpha(self) -> float:
        """``n_out / n_in``."""
        return self.n_out / self.n_in

    def spectrum(self) -> jax.Array:
        """Eigenvalues of ``W^T W`` (length ``n_in``, ascending), by ``eigvalsh``."""
        w = self.W[...]
        return jnp.linalg.eigvalsh(w.T @ w)

    def matrix(self) -> jax.Array:
        """``W`` (``n_out x n_in``)."""
        return self.W[...]


def spectrum_from_singular_values(s: jax.Array, n_in: int) -> jax.Array:
    """Eigenvalues of ``W^T W`` for ``W = U diag(s) V`` with ``n_in`` columns: ``s^2`` and
    ``n_in - len(s)`` zeros (unsorted: the replica formula only uses symmetric functions
    of the spectrum)."""
    s2 = jnp.square(s)
    pad = n_in - s2.shape[0]
    if pad < 0:
        raise ValueError(f"n_in={n_in} is smaller than the number of singular values {s2.shape[0]}")
    return jnp.concatenate([s2, jnp.zeros(pad, s2.dtype)]) if pad else s2
