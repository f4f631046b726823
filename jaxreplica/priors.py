"""Priors ``P_0`` of the input units: Normal, Bimodal, SpikeSlab.

Each prior is a mixture of Gaussian components (a point mass is a component of
variance 0), which gives one code path for all of them. With
``Z_0(A, B) = int dP_0(x) exp(-A x^2/2 + B x)`` and the teacher ``x0 ~ P_0``,
``B = A x0 + sqrt(A) xi`` (docs/theory.md, "Scalar channels"):

* ``free_entropy(A) = E log Z_0(A, B)``  (the paper's ``I_prior``),
* ``mmse(A) = E d^2/dB^2 log Z_0(A, B)``,
* ``second_moment() = E x^2``  (``rho_1``).

Given component ``c`` of mean ``m_c`` and variance ``v_c``, ``B ~ N(A m_c, A^2 v_c + A)``,
so each expectation is a sum of one-dimensional Gaussian integrals. The Normal prior
uses its closed forms (independent of the mean, as the entropy of ``W X + noise`` is;
the paper's original implementation adds ``mu^2/(2 var)`` to its free entropy).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxreplica._struct import Validated, pytree
from jaxreplica.gaussian import log_gaussian_window
from jaxreplica.quadrature import DEFAULT, QuadratureConfig, kinked_gaussian_rule

__all__ = ["Prior", "Normal", "Bimodal", "SpikeSlab"]

MMSE_FLOOR = 1e-100  # an mmse that underflows (a discrete input recovered exactly) is held here


class Prior(Validated):
    """What a chain needs of its input's law: ``second_moment()`` (``E x^2``),
    ``teacher_average(A, cfg) -> (I_prior(A) - A rho/2, mmse(A))``, and the methods below
    built on them."""

    def second_moment(self):
        raise NotImplementedError

    def teacher_average(self, A, cfg: QuadratureConfig):
        raise NotImplementedError

    def averages_a_hidden_layer(self, posterior_quadrature: bool = False) -> bool:
        """Whether ``teacher_average`` is a hidden layer's average by quadrature (the
        output law of a channel, :class:`jaxreplica.RandomField`; with
        ``posterior_quadrature``, one that integrates each posterior by quadrature as
        well); static."""
        return False

    def entropy(self):
        """``H(X)`` per component: finite for a discrete prior, ``+inf`` otherwise (the
        bound ``I(X; T) <= H(X)`` then says nothing)."""
        return jnp.asarray(jnp.inf)

    def free_entropy(self, A, cfg: QuadratureConfig = DEFAULT):
        """``I_prior(A) = E log Z_0(A, A x0 + sqrt(A) xi)``."""
        return self.reduced_free_entropy(A, cfg) + 0.5 * A * self.second_moment()

    def reduced_free_entropy(self, A, cfg: QuadratureConfig = DEFAULT):
        """``I_prior(A) - A rho/2`` (what the potential uses)."""
        return self.teacher_average(A, cfg)[0]

    def mmse(self, A, cfg: QuadratureConfig = DEFAULT):
        """``mmse(A) = E Var[x | B]``, the error of the scalar Gaussian channel of SNR ``A``."""
        return self.teacher_average(A, cfg)[1]

    def extrinsic_precision(self, A, mmse):
        """``1/mmse - A``: the precision the prior adds to a Gaussian observation of SNR
        ``A`` (ML-VAMP's message ``a2x``). An mmse that underflowed is held at
        ``MMSE_FLOOR`` (an input recovered exactly)."""
        return 1.0 / jnp.maximum(mmse, MMSE_FLOOR) - A

    def free_entropy_and_mmse(self, A, cfg: QuadratureConfig = DEFAULT):
        reduced, mmse = self.teacher_average(A, cfg)
        return reduced + 0.5 * A * self.second_moment(), mmse


class _MixturePrior(Prior):
    """Mixtures of Gaussian components (a point mass is one of variance 0): subclasses
    provide ``components()`` and ``_switches(A)``."""

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

    def teacher_average(self, A, cfg: QuadratureConfig):
        """``E[log Z_0] - A rho/2`` and ``E[d^2 log Z_0/dB^2]`` over the teacher's ``B``.

        The free entropy is returned *reduced* by its trivial part ``A rho/2``: the
        potential cancels that part against ``tA rho/2`` exactly, which keeps entropies
        accurate when ``A`` reaches 1e8 (an input recovered almost exactly).

        Each teacher component ``c`` (``x0 ~ N(m_c, v_c)``, so ``B ~ N(A m_c, A^2 v_c + A)``)
        is averaged with its own log-partition ``log Z_c`` subtracted inside the integral
        and its exact average ``A (m_c^2 + v_c)/2 - log(1 + A v_c)/2`` added back. What is
        left, ``log Z_0 - log Z_c = log sum_c' w_c' Z_c'/Z_c``, is of order one at any
        ``A`` (``log w_c`` where component ``c`` dominates, as it does once the input is
        recovered), so no term of size ``A`` is ever integrated: the free entropy of a
        discrete input keeps its limit ``-H(X)`` to round-off at ``A = 1e8``.
        """
        A = jnp.asarray(A, dtype=jnp.float64)
        cfg = cfg.for_prior()
        logw, m, v = self.components()
        weights = [jnp.exp(lw) for lw in logw]
        d1 = lambda b: jax.jvp(lambda x: self.log_partition(A, x), (b,), (jnp.ones_like(b),))[1]
        f_mean, d2_mean = 0.0, 0.0
        points, widths = self._switches(A)
        window = lambda b, mi, vi: log_gaussian_window(A, b, 1.0, -jnp.inf, jnp.inf, mi, vi)
        for wc, mi, vi in zip(weights, m, v):
            # log Z_0 - log Z_c = log sum_c' w_c' exp(log Z_c' - log Z_c), each difference
            # formed before the sum: where c dominates they are hugely negative and the sum
            # is log w_c exactly (log Z_0 and log Z_c themselves are of size A).
            def reduced(b, mi=mi, vi=vi):
                own = window(b, mi, vi)
                terms = [lw + (window(b, mj, vj) - own) for lw, mj, vj in zip(logw, m, v)]
                return jax.nn.logsumexp(jnp.stack(terms), axis=0)

            sd = jnp.sqrt(A * A * vi + A)
            # Sharp switches between components sit at fixed B, i.e. at B* - A m in the
            # centred teacher variable.
            y, w = kinked_gaussian_rule(sd, [bs - A * mi for bs in points], scale=list(widths), cfg=cfg)
            b = A * mi + y
            _, d2 = jax.jvp(d1, (b,), (jnp.ones_like(b),))
            logz = reduced(b)
            f_mean = f_mean + wc * (jnp.sum(w * logz) - 0.5 * jnp.log1p(A * vi))
            d2_mean = d2_mean + wc * jnp.sum(w * d2)
        return f_mean, d2_mean

@pytree
class Normal(_MixturePrior):
    """``x ~ N(mean, var)``."""

    mean: float = 0.0
    var: float = 1.0

    _rules = {"mean": "finite", "var": "positive"}

    def components(self):
        return (jnp.zeros(()),), (self.mean,), (self.var,)

    def reduced_free_entropy(self, A, cfg: QuadratureConfig = DEFAULT):
        """``I_prior - A rho/2 = -log(1 + A var)/2`` (``rho = var + mean^2``)."""
        return -0.5 * jnp.log1p(A * self.var)

    def mmse(self, A, cfg: QuadratureConfig = DEFAULT):
        """``1/(A + 1/var)``."""
        return self.var / (1.0 + A * self.var)

    def teacher_average(self, A, cfg: QuadratureConfig = DEFAULT):
        return self.reduced_free_entropy(A), self.mmse(A)

    def extrinsic_precision(self, A, mmse):
        """``1/var`` exactly (``1/mmse - A`` cancels when ``A`` is large)."""
        return jnp.zeros_like(jnp.asarray(A, dtype=jnp.float64)) + 1.0 / self.var


@pytree
class Bimodal(_MixturePrior):
    """``x = +1`` with probability ``prob``, else ``-1``."""

    prob: float = 0.5

    _rules = {"prob": "open_unit"}

    def components(self):
        p = jnp.asarray(self.prob, dtype=jnp.float64)
        return (jnp.log(p), jnp.log1p(-p)), (1.0, -1.0), (0.0, 0.0)

    def entropy(self):
        """``H(X) = -p log p - (1 - p) log(1 - p)``."""
        p = jnp.asarray(self.prob, dtype=jnp.float64)
        return -(p * jnp.log(p) + (1.0 - p) * jnp.log1p(-p))

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

    _rules = {"prob": "open_unit", "mean": "finite", "var": "positive"}

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
