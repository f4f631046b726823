"""k-nearest-neighbour estimators: Kozachenko-Leonenko entropy and KSG mutual information."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma, gammaln

from . import _blocks
from ._checks import as_samples, check_block, check_int


def log_unit_ball_volume(d: int) -> jax.Array:
    """``log c_d = (d/2) log(pi) - log Gamma(d/2 + 1)``: the unit Euclidean ``d``-ball."""
    return 0.5 * d * jnp.log(jnp.pi) - gammaln(0.5 * d + 1.0)


def _whiten(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(L^{-1} (x - mean), log|det L|)`` with ``L`` the Cholesky factor of the sample covariance."""
    centred = x - jnp.mean(x, axis=0)
    cov = centred.T @ centred / (x.shape[0] - 1)
    chol = jnp.linalg.cholesky(cov)
    white = jax.scipy.linalg.solve_triangular(chol, centred.T, lower=True).T
    return white, jnp.sum(jnp.log(jnp.diag(chol)))


@functools.partial(jax.jit, static_argnames=("k", "block_size", "whiten"))
def _knn_entropy(x: jax.Array, k: int, block_size: int | None, whiten: bool = False) -> jax.Array:
    n, d = x.shape
    log_jacobian = 0.0
    if whiten:
        x, log_jacobian = _whiten(x)
    block = _blocks.block_rows(n, n, d, block_size)
    sqnorm = jnp.sum(jnp.square(x), axis=-1)
    cols = jnp.arange(n)

    def kth_sqdist(rows):
        xb = x[rows]
        dist = _blocks.squared_distances(xb, x, sqnorm)
        dist = jnp.where(rows[:, None] == cols[None, :], jnp.inf, dist)  # not your own neighbour
        if d > _blocks.DIRECT_MAX_DIM:
            # The Gram form picks the neighbours; their distances are recomputed from
            # explicit differences so that close pairs keep full relative accuracy.
            _, nbr = _blocks.smallest_k(dist, k)  # (block, k) nearest
            exact = jnp.sum(jnp.square(xb[:, None, :] - x[nbr]), axis=-1)
            return jnp.max(exact, axis=-1)
        return _blocks.kth_smallest(dist, k)

    eps2 = _blocks.map_row_blocks(kth_sqdist, n, block)
    estimate = digamma(n) - digamma(k) + log_unit_ball_volume(d) + 0.5 * d * jnp.mean(jnp.log(eps2))
    return estimate + log_jacobian


def knn_entropy(x, k: int = 3, *, whiten: bool = False, block_size: int | None = None) -> jax.Array:
    """Kozachenko-Leonenko k-nearest-neighbour estimate of the differential entropy (nats).

    ``H ~= psi(n) - psi(k) + log c_d + (d/n) sum_i log eps_i``

    with ``eps_i`` the Euclidean distance from sample ``i`` to its ``k``-th nearest
    other sample, ``c_d = pi^(d/2) / Gamma(d/2 + 1)`` the volume of the unit ``d``-ball
    and ``psi`` the digamma function (Kozachenko & Leonenko 1987; Kraskov, Stoegbauer
    & Grassberger 2004, eq. 20).  Duplicated samples give ``eps_i = 0`` and ``-inf``.

    Args:
      x: samples, shape ``(n, d)`` (a 1-D array is read as ``n`` scalars).
      k: neighbour order, ``1 <= k < n`` (static under ``jit``).
      whiten: estimate the entropy of ``L^{-1}(x - mean)`` instead and add
        ``log|det L|`` (``L L^T`` the sample covariance; exact for a fixed ``L`` since
        ``H(A x) = H(x) + log|det A|``).  The plain estimator is biased on strongly
        anisotropic data in moderate dimension (about +0.2 nats at ``d = 10``,
        ``n = 4000`` for a covariance of condition number 16); whitening removes most
        of that.  Needs ``n > d`` and a non-singular sample covariance (static).
      block_size: rows per block of the pairwise computation (static); by default
        chosen from an element budget (``2^19`` explicit differences for ``d <= 16``,
        ``2^22`` Gram-form distances above).

    Returns:
      Scalar entropy estimate of the ``d``-dimensional vector, in nats.

    Cost ``O(n^2 d)`` time, ``O(block * n)`` memory; jittable with ``k`` and
    ``block_size`` static (the core is ``jax.jit``-compiled).
    """
    x = as_samples(x, "x")
    k = check_int(k, "k", 1, x.shape[0])
    if whiten and x.shape[0] <= x.shape[1]:
        raise ValueError(f"whiten=True needs more samples than dimensions; got x of shape {x.shape}")
    return _knn_entropy(x, k, check_block(block_size), bool(whiten))


@functools.partial(jax.jit, static_argnames=("k", "block_size"))
def _ksg(x: jax.Array, y: jax.Array, k: int, block_size: int | None) -> jax.Array:
    n = x.shape[0]
    dim = max(x.shape[1], y.shape[1])
    block = _blocks.block_rows(n, n, dim, block_size)
    xsq = jnp.sum(jnp.square(x), axis=-1)
    ysq = jnp.sum(jnp.square(y), axis=-1)
    cols = jnp.arange(n)

    def neighbour_counts(rows):
        self_mask = rows[:, None] == cols[None, :]
        dx = jnp.where(self_mask, jnp.inf, _blocks.squared_distances(x[rows], x, xsq))
        dy = jnp.where(self_mask, jnp.inf, _blocks.squared_distances(y[rows], y, ysq))
        dz = jnp.maximum(dx, dy)  # max-norm in the joint space
        eps2 = _blocks.kth_smallest(dz, k)
        nx = jnp.sum(dx < eps2[:, None], axis=-1)
        ny = jnp.sum(dy < eps2[:, None], axis=-1)
        return nx, ny

    nx, ny = _blocks.map_row_blocks(neighbour_counts, n, block)
    return digamma(k) + digamma(n) - jnp.mean(digamma(nx + 1.0) + digamma(ny + 1.0))


def ksg_mutual_information(x, y, k: int = 3, *, block_size: int | None = None) -> jax.Array:
    """Kraskov-Stoegbauer-Grassberger estimate of ``I(X; Y)`` (algorithm 1), in nats.

    ``I ~= psi(k) + psi(n) - (1/n) sum_i [psi(n_x(i) + 1) + psi(n_y(i) + 1)]``

    where ``eps_i`` is the distance from ``(x_i, y_i)`` to its ``k``-th nearest other
    sample in the joint space with the norm ``max(|x - x'|, |y - y'|)``, and
    ``n_x(i)`` (``n_y(i)``) counts the samples strictly closer than ``eps_i`` to
    ``x_i`` (``y_i``) in the marginal space.  Marginal norms are Euclidean (the
    estimator is valid for any marginal norms; for scalars this is algorithm 1
    exactly).

    Args:
      x: shape ``(n, d_x)``; y: shape ``(n, d_y)`` (1-D arrays are read as scalars).
      k: neighbour order, ``1 <= k < n`` (static under ``jit``).
      block_size: rows per block (static), see :func:`knn_entropy`.

    Returns:
      Scalar mutual information estimate in nats (can be slightly negative).
    """
    x = as_samples(x, "x")
    y = as_samples(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same number of samples; got {x.shape[0]} and {y.shape[0]}")
    k = check_int(k, "k", 1, x.shape[0])
    return _ksg(x, y, k, check_block(block_size))
