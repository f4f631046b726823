"""Priors ``P_0`` of the input units: Normal, Bimodal, SpikeSlab.

Each prior is a mixture of Gaussian components (a point mass is a component of
variance 0), which gives one code path for all of them. With
``Z_0(A, B) = int dP_0(x) exp(-A x^2/2 + B x)`` and the teacher ``x0 ~ P_0``,
``B = A x0 + sqrt(A) xi`` (replica-math.md, section 3):

* ``free_entropy(A) = E log Z_0(A, B)``  (the paper's ``I_prior``),
* ``mmse(A) = E d^2/dB^2 log Z_0(A, B)``,
* ``second_moment() = E x^2``  (``rho_1``).

Given component ``c`` of mean ``m_c`` and variance ``v_c``, ``B ~ N(A m_c, A^2 v_c + A)``,
so each expectation is a sum of one-dimensional Gaussian integrals. The Normal prior
uses the closed forms of the table in replica-math.md (the correct one, independent of
the mean: the reference implementation adds ``mu^2/(2 var)`` to it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxreplica._struct import check, pytree
from jaxreplica.quadrature import DEFAULT, QuadratureConfig, kinked_gaussian_rule, log_gaussian_window

__all__ = ["Normal", "Bimodal", "SpikeSlab"]


class _MixturePrior:
    """Shared machinery: subclasses provide ``components()`` and ``_switches(A)``."""

    def components(self):  # -> (log_weights, means, variances), each a tuple
        raise NotImplementedError

    def _switches(self, A):
        """B-values where the dominant component changes, and the width of each change."""
        return (), ()

    def second_moment(self):
        logw, m, v = self.components()
        return sum(jnp.exp(lw) * (mi * mi + vi) for lw, mi, vi in zip(logw, m, v))

    def log_partition(self, A, B):
        """``log Z_0(A, B)``."""
        logw, m, v = self.components()
        terms = [lw + log_gaussian_window(A, B, 1.0, -jnp.inf, jnp.inf, mi, vi) for lw, mi, vi in zip(logw, m, v)]
        return jax.nn.logsumexp(jnp.stack(terms), axis=0)

    def _teacher_average(self, A, cfg: QuadratureConfig):
        """``E[log Z_0] - A rho/2`` and ``E[d^2 log Z_0/dB^2]`` over the teacher's ``B``.

        The free entropy is returned *reduced* by its trivial part ``A rho/2``
        (``log Z_0 = A x0^2/2 + log int dP(x) exp(-A (x - x0)^2/2 + sqrt(A) xi x)``): the
        potential cancels that part against ``tA rho/2`` exactly, which keeps
        entropies accurate when ``A`` reaches 1e8 (an input recovered almost exactly).

        A control variate keeps the free entropy accurate at small ``A``: ``log Z_N`` of
        the Normal prior with the same mean and variance is subtracted inside the
        integral and its exact average added back (for small ``A`` both are nearly the
        same quadratic in ``B``, and the averages are ``O(A^2)`` while the integrands
        are ``O(A)``).
        """
        A = jnp.asarray(A, dtype=jnp.float64)
        logw, m, v = self.components()
        weights = [jnp.exp(lw) for lw in logw]
        mu = sum(w * mi for w, mi in zip(weights, m))
        var = self.second_moment() - mu * mu
        logz = lambda b: self.log_partition(A, b) - log_gaussian_window(A, b, 1.0, -jnp.inf, jnp.inf, mu, var)
        # The mmse is not controlled: it may be far below the control's var/q (1e-23).
        d1 = lambda b: jax.jvp(lambda x: self.log_partition(A, x), (b,), (jnp.ones_like(b),))[1]
        # Exact teacher averages of the control variate (E B = A mu, E B^2 = A^2 rho + A).
        q = 1.0 + var * A
        # E log Z_N - A rho/2 = -log(q)/2: the O(A) part cancels analytically.
        f_mean = -0.5 * jnp.log(q)
        d2_mean = 0.0
        points, widths = self._switches(A)
        for wc, mi, vi in zip(weights, m, v):
            sd = jnp.sqrt(A * A * vi + A)
            # Sharp switches between components sit at fixed B, i.e. at B* - A m in the
            # centred teacher variable.
            y, w = kinked_gaussian_rule(sd, [bs - A * mi for bs in points], scale=list(widths), cfg=cfg)
            b = A * mi + y
            f, d2 = jax.jvp(d1, (b,), (jnp.ones_like(b),))
            f_mean = f_mean + wc * jnp.sum(w * logz(b))
            d2_mean = d2_mean + wc * jnp.sum(w * d2)
        return f_mean, d2_mean

    def free_entropy(self, A, cfg: QuadratureConfig = DEFAULT):
        """``I_prior(A) = E log Z_0(A, A x0 + sqrt(A) xi)``."""
        return self.reduced_free_entropy(A, cfg) + 0.5 * A * self.second_moment()

    def reduced_free_entropy(self, A, cfg: QuadratureConfig = DEFAULT):
        """``I_prior(A) - A rho/2`` (what the potential uses)."""
        return self._teacher_average(A, cfg)[0]

    def mmse(self, A, cfg: QuadratureConfig = DEFAULT):
        """``mmse(A) = E Var[x | B]``, the error of the scalar Gaussian channel of SNR ``A``."""
        return self._teacher_average(A, cfg)[1]

    def free_entropy_and_mmse(self, A, cfg: QuadratureConfig = DEFAULT):
        reduced, mmse = self._teacher_average(A, cfg)
        return reduced + 0.5 * A * self.second_moment(), mmse


@pytree
class Normal(_MixturePrior):
    """``x ~ N(mean, var)``."""

    mean: float = 0.0
    var: float = 1.0

    def __post_init__(self):
        check("mean", self.mean)
        check("var", self.var, positive=True)

    def components(self):
        return (jnp.zeros(()),), (self.mean,), (self.var,)

    def reduced_free_entropy(self, A, cfg: QuadratureConfig = DEFAULT):
        """``I_prior - A rho/2 = -log(1 + A var)/2`` (``rho = var + mean^2``)."""
        return -0.5 * jnp.log1p(A * self.var)

    def mmse(self, A, cfg: QuadratureConfig = DEFAULT):
        """``1/(A + 1/var)``."""
        return self.var / (1.0 + A * self.var)

    def _teacher_average(self, A, cfg: QuadratureConfig = DEFAULT):
        return self.reduced_free_entropy(A), self.mmse(A)


@pytree
class Bimodal(_MixturePrior):
    """``x = +1`` with probability ``prob``, else ``-1``."""

    prob: float = 0.5

    def __post_init__(self):
        check("prob", self.prob, open_unit=True)

    def components(self):
        p = jnp.asarray(self.prob, dtype=jnp.float64)
        return (jnp.log(p), jnp.log1p(-p)), (1.0, -1.0), (0.0, 0.0)

    def _switches(self, A):
        # log p + B = log(1-p) - B: the posterior flips sign at B* = log((1-p)/p)/2.
        p = jnp.asarray(self.prob, dtype=jnp.float64)
        return (0.5 * (jnp.log1p(-p) - jnp.log(p)),), (0.5,)


@pytree
class SpikeSlab(_MixturePrior):
    """``x = 0`` with probability ``1 - prob``, else ``x ~ N(mean, var)``."""

    prob: float = 0.5
    mean: float = 0.0
    var: float = 1.0

    def __post_init__(self):
        check("prob", self.prob, open_unit=True)
        check("mean", self.mean)
        check("var", self.var, positive=True)

    def components(self):
        p = jnp.asarray(self.prob, dtype=jnp.float64)
        return (jnp.log1p(-p), jnp.log(p)), (0.0, self.mean), (0.0, self.var)

    def _switches(self, A):
        # Spike term log(1-p); slab term log p + (2 B m - A m^2 + v B^2)/(2q) - log(q)/2,
        # q = 1 + A v. They cross at the roots of a quadratic in B; the width of the
        # switch is 1/|d(slab - spike)/dB| = q/|v B + m|.
        p = jnp.asarray(self.prob, dtype=jnp.float64)
        m, v = self.mean, self.var
        q = 1.0 + A * v
        a2 = v / (2.0 * q)
        a1 = m / q
        a0 = jnp.log(p) - jnp.log1p(-p) - A * m * m / (2.0 * q) - 0.5 * jnp.log(q)
        disc = a1 * a1 - 4.0 * a2 * a0
        root = jnp.sqrt(jnp.maximum(disc, 0.0))
        vertex = -a1 / (2.0 * a2)
        b_lo = jnp.where(disc > 0, (-a1 - root) / (2.0 * a2), vertex)
        b_hi = jnp.where(disc > 0, (-a1 + root) / (2.0 * a2), vertex)
        width = lambda b: q / jnp.maximum(jnp.abs(v * b + m), 1e-3 * jnp.sqrt(q))
        return (b_lo, b_hi), (width(b_lo), width(b_hi))
