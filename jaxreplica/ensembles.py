"""Orthogonally invariant weight ensembles: what the replica formula needs of ``W_k``.

Only the ratio ``alpha = n_out/n_in`` and the spectrum ``lambda`` of ``W^T W``
(``n_in`` eigenvalues, zeros included) matter. Each ensemble provides
(docs/theory.md, "Weight ensembles"), with ``D(theta) = (1 - theta)(1 - alpha theta)``:

* ``mean_eigenvalue()``: ``mean(lambda)``, which sets ``trho = mean(lambda) rho/alpha``;
* ``free_entropy_term(A, V, theta)``: ``F(A, V, theta) = 2 alpha theta + (alpha - 1) log(1 - theta)
  + mean_j log(A V lambda_j + D(theta))`` (zero eigenvalues taken out analytically);
* ``theta(gamma)``: the root of ``dF/dtheta = 0`` used by the fixed-point solver;
* ``llmse(a, v) = v mean_j 1/(lambda_j + a v)``: the linear-estimation error of ML-VAMP.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxreplica._struct import Validated, concrete, pytree

__all__ = ["Gaussian", "Empirical"]

# Eigenvalues below this times the largest are zeros of W^T W. Round-off zeros of a
# float64 eigvalsh are ~1e-15 of the largest; real ones reach 1e-11 (the product of two
# square 1000-wide Gaussian matrices), and each one that is dropped moves the entropy
# by log(1 + lambda/noise)/(2 n) (1e-9 here cost 1e-3 on such a product).
ZERO_RELATIVE = 1e-12
# Negative eigenvalues down to this times the largest are round-off of W^T W.
NEGATIVE_RELATIVE = 1e-8


@pytree
class Gaussian(Validated):
    """I.i.d. Gaussian weights of variance ``scale^2 / n_in`` (Marchenko-Pastur spectrum).

    ``mean(lambda) = alpha scale^2``, ``theta(gamma) = scale^2 gamma``,
    ``F = alpha scale^2 A V`` and ``llmse`` in closed form.
    """

    alpha: float = 1.0
    scale: float = 1.0

    _rules = {"alpha": "positive", "scale": "positive"}

    def mean_eigenvalue(self):
        return self.alpha * self.scale**2

    def free_entropy_term(self, A, V, theta, complements=None):
        return self.alpha * self.scale**2 * A * V

    def theta(self, gamma):
        return self.scale**2 * gamma

    def llmse(self, a, v):
        """``v s`` with ``x = -a v/scale^2``, ``t = 1 + x - alpha``,
        ``s = (-t - sqrt(t^2 - 4x))/(2x)`` (the Marchenko-Pastur Stieltjes transform)."""
        v1 = v / self.scale**2
        x = -a * v1
        t = 1.0 + x - self.alpha
        root = jnp.sqrt(t * t - 4.0 * x)
        # Two algebraically equal forms; each is free of cancellation on one side.
        safe_x = jnp.where(x == 0, -1e-300, x)
        s = jnp.where(t < 0, 2.0 / (root - t), (-t - root) / (2.0 * safe_x))
        return v1 * s

    def llmse_complement(self, a, v):
        """``1 - a llmse(a, v) = mean_j lambda_j/(lambda_j + a v)``, without cancellation.

        With ``x = -a v/scale^2`` and ``h = 1 + x s(x)``, the Marchenko-Pastur equation for
        ``s`` becomes ``h^2 + (x - alpha - 1) h + alpha = 0``; its small root is
        ``2 alpha/(P + sqrt(P^2 - 4 alpha))`` with ``P = 1 + alpha - x > 0``, free of the
        cancellation of ``1 - a llmse`` when ``a v`` is huge (a recovered input)."""
        P = 1.0 + self.alpha + a * v / self.scale**2
        return 2.0 * self.alpha / (P + jnp.sqrt(jnp.maximum(P * P - 4.0 * self.alpha, 0.0)))

    def llmse_excess(self, a, v):
        """``alpha - llmse_complement(a, v)``, without cancellation when ``a v`` is tiny.

        ``k = alpha - h`` solves ``k^2 + b k - c alpha = 0`` with ``c = a v/scale^2``,
        ``b = 1 - alpha + c``; its positive root is taken in the form free of
        cancellation for either sign of ``b``."""
        c = a * v / self.scale**2
        b = 1.0 - self.alpha + c
        root = jnp.sqrt(b * b + 4.0 * c * self.alpha)
        return jnp.where(b > 0, 2.0 * c * self.alpha / (b + root), 0.5 * (root - b))


@pytree
class Empirical(Validated):
    """A given spectrum: ``eigenvalues`` of ``W^T W`` (``n_in`` values, zeros included).

    ``alpha = n_out/n_in``. Eigenvalues below ``1e-12`` times the largest count as the
    zeros of a rank-deficient ``W^T W`` (there are at least ``(1 - alpha) n_in`` of
    them when ``alpha < 1``); they are taken out of ``F`` and ``theta`` analytically,
    which lets ``theta`` exceed 1 (up to ``1/alpha``) as it must.
    """

    eigenvalues: jax.Array
    alpha: float = 1.0

    _rules = {"alpha": "positive"}

    def __post_init__(self):
        super().__post_init__()
        ev = concrete(self.eigenvalues)
        if ev is None:  # traced: invalid() says what is wrong, nothing may raise here
            return
        if ev.ndim != 1 or ev.size == 0:
            raise ValueError(f"eigenvalues must be a non-empty 1-D array (got shape {ev.shape})")
        if not np.all(np.isfinite(ev)):
            raise ValueError("eigenvalues must be finite")
        top = max(float(ev.max()), 0.0)
        if np.any(ev < -NEGATIVE_RELATIVE * max(top, 1.0)):
            raise ValueError(f"eigenvalues must be non-negative (smallest is {ev.min():.3g})")
        if top <= 0:
            raise ValueError("eigenvalues must not all be zero")
        a = concrete(self.alpha)
        if a is not None and a < 1:
            zeros = int(np.sum(ev <= ZERO_RELATIVE * top))
            need = int(np.floor((1.0 - float(a)) * ev.size + 1e-9))
            if zeros < need:
                raise ValueError(
                    f"eigenvalues contradict alpha={float(a)}: W^T W of a {ev.size}-wide layer with "
                    f"alpha < 1 has at least {need} zero eigenvalues, these have {zeros}"
                )
        # Round-off negatives of W^T W are zeros.
        object.__setattr__(self, "eigenvalues", jnp.asarray(np.maximum(ev, 0.0)))

    def invalid(self):
        """Traced check: a non-positive alpha, non-finite or negative eigenvalues (beyond
        round-off), or no positive eigenvalue."""
        lam = jnp.asarray(self.eigenvalues, dtype=jnp.float64)
        top = jnp.max(lam)
        negative = jnp.any(lam < -NEGATIVE_RELATIVE * jnp.maximum(top, 1.0))
        return super().invalid() | ~jnp.all(jnp.isfinite(lam)) | negative | ~(top > 0)

    @classmethod
    def from_matrix(cls, W) -> "Empirical":
        """The ensemble of a weight matrix ``W`` of shape ``(n_out, n_in)``."""
        W = np.asarray(W, dtype=np.float64)
        if W.ndim != 2:
            raise ValueError(f"W must be a matrix (got shape {W.shape})")
        n_out, n_in = W.shape
        eig = np.linalg.eigvalsh(W.T @ W)
        return cls(eigenvalues=np.clip(eig, 0.0, None), alpha=n_out / n_in)

    # -- spectrum helpers --------------------------------------------------------------
    def _positive(self):
        """``(lambda, mask, z0)``: the spectrum with its zeros set exactly to 0, which
        entries are non-zero, and the fraction of zeros."""
        lam = self.eigenvalues
        mask = lam > ZERO_RELATIVE * jnp.max(lam)
        return jnp.where(mask, lam, 0.0), mask, 1.0 - jnp.mean(mask.astype(lam.dtype))  # bool mean is float32

    def mean_eigenvalue(self):
        return jnp.mean(self._positive()[0])

    def llmse(self, a, v):
        return jnp.mean(v / (self._positive()[0] + a * v))

    def llmse_complement(self, a, v):
        """``1 - a llmse(a, v) = mean_j lambda_j/(lambda_j + a v)``, without cancellation
        when ``a`` is huge (a perfectly recovered layer)."""
        lam = self._positive()[0]
        return jnp.mean(lam / (lam + a * v))

    def llmse_excess(self, a, v):
        """``alpha - llmse_complement(a, v) = (alpha - 1 + z0) + (1/n) sum_{lambda>0} a v/(lambda + a v)``
        (``z0`` the fraction of zero eigenvalues), without cancellation when ``a v`` is tiny."""
        lam, mask, z0 = self._positive()
        c = a * v
        rank_gap = self.alpha - 1.0 + z0
        rank_gap = jnp.where(jnp.abs(rank_gap) < 1e-9, 0.0, rank_gap)
        return rank_gap + jnp.sum(jnp.where(mask, c / (lam + c), 0.0)) / lam.shape[0]

    def free_entropy_term(self, A, V, theta, complements=None):
        """``F = 2 alpha theta + (alpha - 1 + z0) log|1 - theta| + z0 log(1 - alpha theta)
        + (1/n) sum_{lambda > 0} log(A V lambda + D(theta))``, ``z0`` the fraction of zeros.

        ``complements``: ``(1 - theta, 1 - alpha theta)`` where the caller knows them
        without cancellation (``theta`` within 1e-14 of 1 at tiny noise, where
        ``1 - theta`` computed from ``theta`` keeps no digit and ``D`` is all error)."""
        alpha = self.alpha
        lam, mask, z0 = self._positive()
        one_minus, one_minus_alpha = (1.0 - theta, 1.0 - alpha * theta) if complements is None else complements
        D = one_minus * one_minus_alpha
        inner = jnp.where(mask, A * V * lam + D, 1.0)
        coef = alpha - 1.0 + z0
        coef = jnp.where(jnp.abs(coef) < 1e-9, 0.0, coef)
        log_one_minus = jnp.where(coef == 0, 0.0, jnp.log(jnp.abs(one_minus)))
        return (
            2.0 * alpha * theta
            + coef * log_one_minus
            + z0 * jnp.log(one_minus_alpha)
            + jnp.sum(jnp.where(mask, jnp.log(inner), 0.0)) / lam.shape[0]
        )

    def _theta_equation(self, theta, gamma):
        """Zero at the stationary ``theta``: ``z0 gamma/(1 - alpha theta) + (1 - theta) S - gamma``
        with ``S = (1/n) sum_{lambda>0} 1/(lambda + D/gamma)``, divided by ``(1 - theta)``
        when ``z0 = 1 - alpha`` (which removes the trivial root at 1)."""
        alpha = self.alpha
        lam, mask, z0 = self._positive()
        D = (1.0 - theta) * (1.0 - alpha * theta)
        S = jnp.sum(jnp.where(mask, 1.0 / (lam + D / gamma), 0.0)) / lam.shape[0]
        full = z0 * gamma / (1.0 - alpha * theta) + (1.0 - theta) * S - gamma
        reduced = S - alpha * gamma / (1.0 - alpha * theta)
        return jnp.where(jnp.abs(alpha - 1.0 + z0) < 1e-9, reduced, full)

    def theta(self, gamma):
        """First root above 0 of the ``theta`` equation (docs/theory.md, "Weight ensembles").

        Scans ``[0, theta_max)`` on a grid that is geometric near both ends, then
        bisects the first sign change to machine precision. For tiny ``gamma`` the
        series ``gamma mean(lambda)/alpha`` is used (the equation cancels there).
        """
        alpha = self.alpha
        lam, mask, z0 = self._positive()
        lam_min = jnp.min(jnp.where(mask, lam, jnp.inf))
        disc = (1.0 - alpha) ** 2 - 4.0 * alpha * gamma * lam_min
        theta_max = ((1.0 + alpha) - jnp.sqrt(jnp.maximum(disc, 0.0))) / (2.0 * alpha)
        reduced = jnp.abs(alpha - 1.0 + z0) < 1e-9
        theta_max = jnp.where(reduced, theta_max, jnp.minimum(theta_max, 1.0))
        u = jnp.concatenate([jnp.geomspace(1e-14, 0.5, 160), 1.0 - jnp.geomspace(0.5, 1e-14, 160)[1:]])
        grid = theta_max * u
        h = jax.vmap(lambda t: self._theta_equation(t, gamma))(grid)
        sign_change = (h[:-1] <= 0) & (h[1:] > 0)
        idx = jnp.argmax(sign_change)
        found = jnp.any(sign_change)
        lo, hi = grid[idx], grid[idx + 1]

        def bisect(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            up = self._theta_equation(mid, gamma) > 0
            return jnp.where(up, lo, mid), jnp.where(up, mid, hi)

        lo, hi = jax.lax.fori_loop(0, 80, bisect, (lo, hi))
        # No sign change: with zeros taken out (reduced form) the full equation's root at
        # theta = 1 is the one left; otherwise the point closest to a root.
        fallback = jnp.where(reduced, jnp.minimum(1.0, theta_max), grid[jnp.argmax(h)])
        root = jnp.where(found, 0.5 * (lo + hi), fallback)
        series = gamma * jnp.mean(lam) / alpha
        return jnp.where(gamma < 1e-9, series, root)
