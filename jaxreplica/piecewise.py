"""Channels ``t = phi(z + xi)``, ``xi ~ N(0, noise)``, described by their pieces.

:class:`Channel` turns one description of a piecewise-affine activation into every
scalar function the solvers need (the concrete channels are in
:mod:`jaxreplica.channels`): on each interval ``(lo, hi)`` of the
pre-activation ``y = z + xi`` it is either a constant ``c`` (an atom of ``t``) or
``g y`` (a continuous part of slope ``g``). That one description gives, through
:func:`jaxreplica.quadrature.log_gaussian_window`, the log-partition functions in
closed form, and the kinks where the quadrature must be refined.

Scalar functions (docs/theory.md, "Scalar channels"), with ``s = V + noise``:

*Last layer* (output channel), ``w ~ N(0, rho - V)``, ``y0 ~ N(w, s)``, ``t0 = phi(y0)``:

* ``output_free_entropy(V, rho) = E log p(t0 | w)`` (``I_last``; atoms count ``p log p``,
  the continuous part ``density log density`` with the Jacobian of ``g``),
* ``output_ahat(V, rho) = E (d/dw log p(t0 | w))^2``.

*Hidden layer*, ``Z(A, B, w, s) = int dy N(y; w, s) exp(-A phi(y)^2/2 + B phi(y))`` and the
teacher ``B = A t0 + sqrt(A) xi``:

* ``hidden_free_entropy(A, V, rho) = E log Z`` (``I_hidden``),
* ``hidden_vhat = E d^2/dB^2 log Z`` (the error on ``t``, handed to the layer below),
* ``hidden_ahat = E (d/dw log Z)^2`` (equal to ``-E d^2/dw^2 log Z`` by the Nishimori
  identity; the square keeps it positive under quadrature),
* ``second_moment(rho) = E phi(y)^2``, ``y ~ N(0, rho + noise)`` (``rho_next``).

The teacher averages are taken in the variables ``y0 ~ N(0, rho + noise)`` (kinked
composite rule refined on the scale ``sqrt(s)``), ``w | y0 ~ N(c1 y0, c2)`` with
``c1 = (rho - V)/(rho + noise)``, ``c2 = (rho - V) s/(rho + noise)``, and ``xi``
(Gauss-Hermite): in these variables the integrand is smooth on the scale of each
rule, however small the noise.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

from jaxreplica._struct import Validated
from jaxreplica.priors import MMSE_FLOOR
from jaxreplica.quadrature import (
    DEFAULT,
    QuadratureConfig,
    hermite_rule,
    kinked_gaussian_rule,
    log_gaussian_window,
    log_ndtr,
    log_ndtr_diff,
    standardize,
    BIG,
    LOG_2PI,
)

__all__ = ["Channel"]

INF = jnp.inf
TINY = 1e-300


class Channel(Validated):
    """Shared machinery. Subclasses define ``pieces()``: tuples ``(lo, hi, kind, value)``
    with ``kind`` ``"const"`` (``phi = value``) or ``"linear"`` (``phi = value * y``)."""

    noise: float
    _rules = {"noise": "nonnegative"}

    def pieces(self):
        raise NotImplementedError

    def activation(self, y):
        """``phi(y)`` (the noiseless activation)."""
        out = jnp.zeros_like(y)
        for lo, hi, kind, val in self.pieces():
            inside = (y > lo) & (y <= hi)
            out = jnp.where(inside, val if kind == "const" else val * y, out)
        return out

    def _kinks(self):
        return [p[1] for p in self.pieces()[:-1]]

    # -- second moment ---------------------------------------------------------------
    def second_moment(self, rho):
        """``rho_next = E phi(y)^2`` with ``y ~ N(0, rho + noise)``."""
        sd = jnp.sqrt(rho + self.noise)
        total = 0.0
        for lo, hi, kind, val in self.pieces():
            a, b = standardize(lo, 0.0, sd), standardize(hi, 0.0, sd)
            mass = ndtr(b) - ndtr(a)
            if kind == "const":
                total = total + val * val * mass
            else:
                # E[u^2; a < u < b] = mass - (b phi(b) - a phi(a)), u standard normal.
                total = total + val * val * sd * sd * _second_moment_in_window(mass, a, b)
        return total

    # -- teacher variables -----------------------------------------------------------
    def _teacher(self, V, rho, cfg, A=0.0):
        """Nodes ``(s, y0, w, weight)`` of the teacher average.

        Near a kink the integrand changes on the scale of the student's posterior on
        ``y``: ``sqrt(s)`` from the prior ``N(w, s)``, narrowed to
        ``sqrt(s/(1 + s A))`` by the field ``B`` of a hidden layer.
        """
        s = jnp.maximum(V + self.noise, TINY)
        spread = jnp.maximum(rho - V, 0.0)
        total = rho + self.noise
        scale = jnp.sqrt(s / (1.0 + s * A))
        y0, wy = kinked_gaussian_rule(jnp.sqrt(total), self._kinks(), scale, cfg)
        eta, weta = hermite_rule(cfg.hermite_w)
        c1 = spread / total
        c2 = spread * s / total
        w = c1 * y0[:, None] + jnp.sqrt(c2) * eta[None, :]
        return s, y0[:, None], w, wy[:, None] * weta[None, :]

    # -- last layer ------------------------------------------------------------------
    def _log_likelihood(self, y0, w, s):
        """``log p(phi(y0) | w)`` for ``y ~ N(w, s)``, on the piece that holds ``y0``, and
        its derivative in ``w`` (closed forms: a window's ``(phi(a) - phi(b))/(sd P)``, a
        slope's ``(y0 - w)/s``)."""
        shape = jnp.broadcast_shapes(jnp.shape(y0), jnp.shape(w))
        out, dout = jnp.zeros(shape), jnp.zeros(shape)
        sd = jnp.sqrt(s)
        for lo, hi, kind, val in self.pieces():
            if kind == "const":
                a, b = standardize(lo, w, sd), standardize(hi, w, sd)
                log_mass = _log_window_mass(lo, hi, a, b)
                ratio = lambda u: jnp.exp(-0.5 * u * u - 0.5 * LOG_2PI - log_mass)  # phi(u)/P
                here = log_mass
                d_here = ((0.0 if _is_inf(lo) else ratio(a)) - (0.0 if _is_inf(hi) else ratio(b))) / sd
            else:
                here = -0.5 * (LOG_2PI + jnp.log(s)) - 0.5 * (y0 - w) ** 2 / s - jnp.log(jnp.abs(val))
                d_here = (y0 - w) / s
            inside = (y0 > lo) & (y0 <= hi)
            out = jnp.where(inside, here, out)
            dout = jnp.where(inside, d_here, dout)
        return out, dout

    def output_functions(self, V, rho, cfg: QuadratureConfig = DEFAULT):
        """``(I_last(V, rho), Ahat_last(V, rho))``."""
        s, y0, w, weight = self._teacher(V, rho, cfg.for_output())
        logp, dlogp = self._log_likelihood(y0, w, s)
        return jnp.sum(weight * logp), jnp.sum(weight * dlogp**2)

    def noise_free_entropy(self, rho, cfg: QuadratureConfig = DEFAULT):
        """``I_last(0, rho) = E log p(t | z)`` with ``z ~ N(0, rho)``: minus the entropy
        the noise adds, ``-H(t | z)``.

        Equal to ``output_free_entropy(0, rho)``, computed as a one-dimensional average
        over ``z`` (a kinked rule, refined on the noise's scale) of a closed form in the
        noise: on a piece ``(lo, hi)`` of mass ``P`` given ``z``, an atom contributes
        ``P log P`` and a slope ``g`` contributes
        ``-P log(sqrt(2 pi noise) |g|) - E[u^2; window]/2`` (``u`` the standardized noise).
        A far smaller program than the output average, which solvers compile beside it.
        """
        noise = jnp.maximum(jnp.asarray(self.noise, dtype=jnp.float64), TINY)
        sd = jnp.sqrt(noise)
        cfg = cfg.for_output()
        z, weight = kinked_gaussian_rule(jnp.sqrt(jnp.maximum(rho, TINY)), self._kinks(), sd, cfg)
        total = 0.0
        for lo, hi, kind, val in self.pieces():
            a, b = standardize(lo, z, sd), standardize(hi, z, sd)
            log_mass = _log_window_mass(lo, hi, a, b)
            mass = jnp.exp(log_mass)
            if kind == "const":
                total = total + mass * log_mass
            else:
                second = _second_moment_in_window(mass, a, b)
                total = total - mass * (0.5 * jnp.log(2.0 * jnp.pi * noise) + jnp.log(jnp.abs(val))) - 0.5 * second
        return jnp.sum(weight * total)

    def output_extrinsic_variance(self, V, ahat):
        """``1/Ahat_last - V``: the variance of ``z`` that the channel's observation
        leaves (ML-VAMP's ``1/a1z``). A channel whose pieces all have a slope is
        invertible: ``t`` gives ``z + xi`` exactly and the answer is ``noise``, which
        the subtraction would lose to cancellation at small noise."""
        if all(kind == "linear" for _, _, kind, _ in self.pieces()):
            return jnp.zeros_like(jnp.asarray(V, dtype=jnp.float64)) + self.noise
        return 1.0 / ahat - V

    def hidden_extrinsic(self, A, V, ahat, vhat):
        """``(1/Ahat - V, 1/Vhat - A)``: the extrinsic variance of ``z`` and precision of
        ``t`` of a hidden layer (ML-VAMP's ``1/a1z`` and ``a2x``); a ``Vhat`` that
        underflowed (the layer's output recovered exactly) is held at the floor."""
        return 1.0 / ahat - V, 1.0 / jnp.maximum(vhat, MMSE_FLOOR) - A

    def output_free_entropy(self, V, rho, cfg: QuadratureConfig = DEFAULT):
        return self.output_functions(V, rho, cfg)[0]

    # -- hidden layer ----------------------------------------------------------------
    def log_partition(self, A, B, w, s):
        """``log Z(A, B, w, s) = log int dy N(y; w, s) exp(-A phi(y)^2/2 + B phi(y))``."""
        terms = []
        for lo, hi, kind, val in self.pieces():
            if kind == "const":
                sd = jnp.sqrt(s)
                terms.append(-0.5 * A * val * val + B * val + log_ndtr_diff(standardize(lo, w, sd), standardize(hi, w, sd)))
            else:
                terms.append(log_gaussian_window(A, B, val, lo, hi, w, s))
        terms = jnp.broadcast_arrays(*terms)
        return jax.nn.logsumexp(jnp.stack(terms), axis=0)

    def hidden_free_entropy(self, A, V, rho, cfg: QuadratureConfig = DEFAULT):
        """``I_hidden(A, V, rho) = E log Z``."""
        return self.hidden_functions(A, V, rho, cfg)[0] + 0.5 * A * self.second_moment(rho)

    def hidden_functions(self, A, V, rho, cfg: QuadratureConfig = DEFAULT):
        """``(I_hidden - A rho_next/2, Ahat, Vhat)`` at ``(A, V, rho)``.

        The free entropy is *reduced* by ``E[A t0^2/2] = A rho_next/2``, which the
        potential cancels exactly against ``tA rho/2`` of the layer below; the full
        value is :meth:`hidden_free_entropy`.
        """
        A = jnp.asarray(A, dtype=jnp.float64)
        s, y0, w, weight = self._teacher(V, rho, cfg, A)
        xi, wxi = hermite_rule(cfg.hermite_xi)
        t0 = self.activation(y0)[..., None]
        # Shapes (y0, 1, xi) and (y0, w, 1): broadcast inside the fused element-wise
        # code, never materialised as full grids.
        B = A * t0 + jnp.sqrt(A) * xi
        w = w[..., None]
        weight = weight[..., None] * wxi
        logz, _, d2, dw = self.posterior_moments(A, B, w, s)
        # Reduced free entropy: log Z - A t0^2/2 (see hidden_free_entropy).
        logz = logz - 0.5 * A * t0**2
        return jnp.sum(weight * logz), jnp.sum(weight * dw**2), jnp.sum(weight * d2)

    def posterior_moments(self, A, B, w, s):
        """``(log Z, d log Z/dB, d^2 log Z/dB^2, d log Z/dw)`` in closed form.

        With the student's posterior on ``y`` (prior ``N(w, s)``, likelihood
        ``exp(-A phi(y)^2/2 + B phi(y))``), ``d log Z/dB = <t>``,
        ``d^2 log Z/dB^2 = <t^2> - <t>^2`` and ``d log Z/dw = (<y> - w)/s``. On each piece the
        posterior is a truncated Gaussian (of ``y``; ``t`` is ``c`` or ``g y`` there), whose
        moments are ratios ``phi(a)/(Phi(b) - Phi(a))`` taken in log space. This is the
        hot path of the solvers: it replaces nested automatic differentiation of
        :meth:`log_partition` (same values, far smaller programs).
        """
        logs, t1, t2, y1 = [], [], [], []
        for lo, hi, kind, val in self.pieces():
            if kind == "const":
                centre, var = w, s
                extra = -0.5 * A * val * val + B * val
                q = 1.0
            else:
                q = 1.0 + s * A * val * val
                centre = (w + s * B * val) / q
                var = s / q
                extra = (2.0 * B * val * w - A * val * val * w * w + s * B * B * val * val) / (2.0 * q)
            sd = jnp.sqrt(jnp.maximum(var, 1e-300))
            a, b = standardize(lo, centre, sd), standardize(hi, centre, sd)
            a = jnp.clip(a, -BIG, BIG)
            b = jnp.clip(b, -BIG, BIG)
            # A half-infinite window's infinite end has phi = 0 (and needs no log Phi).
            lo_inf, hi_inf = _is_inf(lo), _is_inf(hi)
            log_mass = _log_window_mass(lo, hi, a, b)
            log_pdf = lambda u: -0.5 * u * u - 0.5 * LOG_2PI - log_mass
            ra = 0.0 if lo_inf else jnp.exp(log_pdf(a))  # phi(a)/mass
            rb = 0.0 if hi_inf else jnp.exp(log_pdf(b))
            a_ra = 0.0 if lo_inf else a * ra
            b_rb = 0.0 if hi_inf else b * rb
            mean_y = centre + sd * (ra - rb)
            var_y = var * jnp.maximum(1.0 + (a_ra - b_rb) - (ra - rb) ** 2, 0.0)
            logs.append(extra - 0.5 * jnp.log(q) + log_mass)
            if kind == "const":
                t1.append(jnp.full_like(mean_y, val) if not hasattr(val, "shape") else val + 0.0 * mean_y)
                t2.append(jnp.zeros_like(mean_y))
            else:
                t1.append(val * mean_y)
                t2.append(val * val * var_y)
            y1.append(mean_y)
        # Mixture over the pieces, element-wise (a stacked logsumexp materialises every
        # piece's arrays and is slower on CPU): pi_j = exp(log_j - logz).
        top = functools.reduce(jnp.maximum, logs)
        e = [jnp.exp(l - top) for l in logs]
        total = sum(e[1:], e[0])
        logz = top + jnp.log(total)
        pi = [ej / total for ej in e]
        m1 = sum(p * t for p, t in zip(pi, t1))
        # Variance as within-piece plus between-piece parts: no <t^2> - <t>^2 cancellation.
        var_t = sum(p * (v + (t - m1) ** 2) for p, v, t in zip(pi, t2, t1))
        my = sum(p * y for p, y in zip(pi, y1))
        return logz, m1, var_t, (my - w) / s


def _is_inf(bound) -> bool:
    """Whether a piece's bound is a static infinity."""
    return isinstance(bound, (int, float)) and math.isinf(bound)


def _second_moment_in_window(mass, a, b):
    """``E[u^2; a < u < b]`` for a standard normal ``u``, given the window's ``mass``:
    ``mass - (b phi(b) - a phi(a))`` (the edge terms vanish at the clipped ``+-BIG``)."""
    edge = lambda u: u * jnp.exp(-0.5 * u * u - 0.5 * LOG_2PI)
    return mass - (edge(b) - edge(a))


def _log_window_mass(lo, hi, a, b):
    """``log(Phi(b) - Phi(a))`` for the window ``(lo, hi)`` standardized to ``(a, b)``: one
    ``log Phi`` when a bound is a static infinity (the hot paths' half-infinite pieces),
    two otherwise."""
    if _is_inf(lo) and not _is_inf(hi):
        return log_ndtr(b)
    if _is_inf(hi) and not _is_inf(lo):
        return log_ndtr(-a)
    return log_ndtr_diff(a, b)
