"""Channels whose activation is piecewise affine, described by their pieces.

On each interval ``(lo, hi)`` of the pre-activation ``y = z + xi`` the activation is
either a constant ``c`` (an atom of ``t``) or affine, ``g y + c`` (a continuous part of
slope ``g``). That one description gives, through
:func:`jaxreplica.gaussian.log_gaussian_window`, every log-partition function in closed
form, and the kinks where the quadrature must be refined. A bias shifts the pieces.

Core functions (see :mod:`jaxreplica.channel`), with ``s = V + noise``:

*Last layer*, ``w ~ N(0, rho - V)``, ``y0 ~ N(w, s)``, ``t0 = phi(y0)``:
``I_last(V, rho) = E log p(t0 | w)`` (atoms count ``p log p``, the continuous part
``density log density`` with the Jacobian of ``g``) and ``Ahat_last = E (d/dw log p)^2``.

*Hidden layer*, ``Z(A, B, w, s) = int dy N(y; w, s) exp(-A phi(y)^2/2 + B phi(y))``, teacher
``B = A t0 + sqrt(A) xi``: ``I_hidden = E log Z``, ``Vhat = E d^2/dB^2 log Z`` (the error on
``t``, handed to the layer below), ``Ahat = E (d/dw log Z)^2`` (equal to
``-E d^2/dw^2 log Z`` by the Nishimori identity; the square keeps it positive).

The teacher averages are taken in the variables ``y0 ~ N(0, rho + noise)`` (kinked
composite rule refined on the scale ``sqrt(s)``), ``w | y0 ~ N(c1 y0, c2)`` with
``c1 = (rho - V)/(rho + noise)``, ``c2 = (rho - V) s/(rho + noise)``, and ``xi``
(Gauss-Hermite; for an atom beside a slope, as in ReLU and hardtanh, a rule per teacher
node that follows the posterior's switch between them, :mod:`jaxreplica.xi_rules`): in
these variables the integrand is smooth on the scale of each rule, however small the
noise.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

from jaxreplica.channel import Channel
from jaxreplica.gaussian import BIG, LOG_2PI, TINY, log_gaussian_window, log_ndtr, log_ndtr_diff, standardize
from jaxreplica.quadrature import DEFAULT, QuadratureConfig, hermite_rule, kinked_gaussian_rule
from jaxreplica.xi_rules import SWITCH_MIN_NODES, atom_switch, nearest_switch_rule

__all__ = ["Piece", "PiecewiseChannel"]

INF = math.inf
# How far from a kink (in the student's prior sd sqrt(s)) the teacher's graded segments
# reach. Graded out to the rule's far end (15 sds of the teacher, hundreds of sqrt(s)
# once the prior is narrow), each graded segment is 2-5x longer where the integrand
# bends, for the same nodes: Figure 2's hardtanh entropies then lie 2.5e-7 from finer
# rules instead of 2e-8. A reach of 4 leaves 1e-5 in some Ahat; 8 and 12 do alike.
GRADE_REACH = 8.0


class Piece(NamedTuple):
    """``phi(y) = slope y + offset`` on ``(lo, hi)``; ``slope=None`` (static) is an atom
    at ``offset``. Infinite bounds are static Python floats."""

    lo: float
    hi: float
    slope: object
    offset: object = 0.0

    @property
    def atom(self) -> bool:
        return self.slope is None


def _is_inf(bound) -> bool:
    """Whether a piece's bound is a static infinity."""
    return isinstance(bound, (int, float)) and math.isinf(bound)


class PiecewiseChannel(Channel):
    """Shared machinery. Subclasses define ``_pieces()``, a list of :class:`Piece` for the
    activation without bias."""

    continuous = True  # phi has no jump (static); posterior_moments relies on it

    def _pieces(self):
        raise NotImplementedError

    def pieces(self):
        """The pieces of ``y -> phi(y + bias)``: finite bounds move by ``-bias``, affine
        offsets by ``slope bias``."""
        b = self.shift
        shift = lambda x: x if _is_inf(x) else x - b
        return [Piece(shift(p.lo), shift(p.hi), p.slope, p.offset if p.atom else p.offset + p.slope * b)
                for p in self._pieces()]

    def activation(self, y):
        out = jnp.zeros_like(y)
        for p in self.pieces():
            inside = (y > p.lo) & (y <= p.hi)
            out = jnp.where(inside, p.offset if p.atom else p.slope * y + p.offset, out)
        return out

    def _kinks(self):
        return [p.hi for p in self.pieces()[:-1]]

    def _invertible(self) -> bool:
        """Every piece has a slope (static): ``t`` gives ``z + xi`` exactly."""
        return not any(p.atom for p in self._pieces())

    # -- second moment -----------------------------------------------------------------
    def _second_moment(self, rho):
        """``E phi(y)^2`` with ``y ~ N(0, rho + noise)``: per window, ``c^2 P`` or
        ``g^2 sd^2 E[u^2] + 2 g c sd E[u] + c^2 P`` (``u`` standardized)."""
        sd = jnp.sqrt(rho + self.noise)
        total = 0.0
        for p in self.pieces():
            a, b = standardize(p.lo, 0.0, sd), standardize(p.hi, 0.0, sd)
            mass = ndtr(b) - ndtr(a)
            if p.atom:
                total = total + p.offset * p.offset * mass
            else:
                first = _normal_pdf(a) - _normal_pdf(b)  # E[u; a < u < b]
                total = total + (p.slope**2 * sd * sd * _second_moment_in_window(mass, a, b)
                                 + 2.0 * p.slope * p.offset * sd * first + p.offset**2 * mass)
        return total

    def mean_square_slope(self, rho):
        """``sum g^2 P(piece)`` over the affine pieces; infinite where ``phi`` jumps."""
        sd = jnp.sqrt(rho)
        total = jnp.zeros_like(sd) + (0.0 if self.continuous else jnp.inf)
        for p in self.pieces():
            if not p.atom:
                total = total + p.slope**2 * (ndtr(standardize(p.hi, 0.0, sd)) - ndtr(standardize(p.lo, 0.0, sd)))
        return total

    # -- teacher variables -----------------------------------------------------------
    def _teacher(self, V, rho, cfg, A=0.0):
        """Nodes ``(s, y0, w, weight)`` of the teacher average.

        Near a kink the integrand changes on the scale of the student's posterior on
        ``y``: ``sqrt(s)`` from the prior ``N(w, s)``, narrowed to
        ``sqrt(s/(1 + s A))`` by the field ``B`` of a hidden layer, and it settles into
        its form away from the kink within ``GRADE_REACH sqrt(s)`` of it (where the
        prior's mass across the kink is of order ``exp(-GRADE_REACH^2/2)``): the graded
        segments span that, not the whole rule. For a symmetric channel
        (``self.symmetric``) ``y0`` covers ``y0 >= 0`` only, with doubled weights: every
        average taken over these nodes is of a function that is even under
        ``(y0, w, xi) -> (-y0, -w, -xi)``, and the ``w`` and ``xi`` rules are symmetric.
        """
        s = jnp.maximum(V + self.noise, TINY)
        spread = jnp.maximum(rho - V, 0.0)
        total = rho + self.noise
        scale = jnp.sqrt(s / (1.0 + s * A))
        y0, wy = kinked_gaussian_rule(jnp.sqrt(total), self._kinks(), scale, cfg, even=self.symmetric,
                                      reach=GRADE_REACH * jnp.sqrt(s))
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
        for p in self.pieces():
            if p.atom:
                a, b = standardize(p.lo, w, sd), standardize(p.hi, w, sd)
                log_mass = _log_window_mass(p.lo, p.hi, a, b)
                ratio = lambda u: jnp.exp(-0.5 * u * u - 0.5 * LOG_2PI - log_mass)  # phi(u)/P
                here = log_mass
                d_here = ((0.0 if _is_inf(p.lo) else ratio(a)) - (0.0 if _is_inf(p.hi) else ratio(b))) / sd
            else:
                here = -0.5 * (LOG_2PI + jnp.log(s)) - 0.5 * (y0 - w) ** 2 / s - jnp.log(jnp.abs(p.slope))
                d_here = (y0 - w) / s
            inside = (y0 > p.lo) & (y0 <= p.hi)
            out = jnp.where(inside, here, out)
            dout = jnp.where(inside, d_here, dout)
        return out, dout

    def _output(self, V, rho, cfg: QuadratureConfig = DEFAULT):
        s, y0, w, weight = self._teacher(V, rho, cfg.for_output())
        logp, dlogp = self._log_likelihood(y0, w, s)
        return jnp.sum(weight * logp), jnp.sum(weight * dlogp**2)

    def _noise_free(self, rho, cfg: QuadratureConfig = DEFAULT):
        """``I_last(0, rho) = E log p(t | z)``, ``z ~ N(0, rho)``, as a one-dimensional
        average over ``z`` (a kinked rule refined on the noise's scale) of a closed form
        in the noise: on a piece of mass ``P`` given ``z``, an atom contributes
        ``P log P`` and a slope ``g`` contributes
        ``-P log(sqrt(2 pi noise) |g|) - E[u^2; window]/2`` (``u`` the standardized noise).
        A far smaller program than the output average, which solvers compile beside it.
        """
        noise = jnp.maximum(jnp.asarray(self.noise, dtype=jnp.float64), TINY)
        sd = jnp.sqrt(noise)
        cfg = cfg.for_output()
        z, weight = kinked_gaussian_rule(jnp.sqrt(jnp.maximum(rho, TINY)), self._kinks(), sd, cfg,
                                         even=self.symmetric)
        total = 0.0
        for p in self.pieces():
            a, b = standardize(p.lo, z, sd), standardize(p.hi, z, sd)
            log_mass = _log_window_mass(p.lo, p.hi, a, b)
            mass = jnp.exp(log_mass)
            if p.atom:
                total = total + mass * log_mass
            else:
                second = _second_moment_in_window(mass, a, b)
                total = total - mass * (0.5 * jnp.log(2.0 * jnp.pi * noise) + jnp.log(jnp.abs(p.slope))) - 0.5 * second
        return jnp.sum(weight * total)

    def _output_extrinsic(self, V, ahat):
        """An invertible channel gives ``z + xi`` exactly: the answer is ``noise``, which
        the subtraction ``1/Ahat - V`` would lose to cancellation at small noise."""
        if self._invertible():
            return jnp.zeros_like(jnp.asarray(V, dtype=jnp.float64)) + self.noise
        return 1.0 / ahat - V

    # -- hidden layer ----------------------------------------------------------------
    def log_partition(self, A, B, w, s):
        """``log Z(A, B, w, s) = log int dy N(y; w, s) exp(-A phi(y)^2/2 + B phi(y))``."""
        terms = []
        for p in self.pieces():
            if p.atom:
                sd = jnp.sqrt(s)
                terms.append(-0.5 * A * p.offset**2 + B * p.offset
                             + log_ndtr_diff(standardize(p.lo, w, sd), standardize(p.hi, w, sd)))
            else:
                # exp(-A (g y + c)^2/2 + B (g y + c)) = exp(-A c^2/2 + B c) exp(-A (g y)^2/2 + (B - A c) g y)
                terms.append(-0.5 * A * p.offset**2 + B * p.offset
                             + log_gaussian_window(A, B - A * p.offset, p.slope, p.lo, p.hi, w, s))
        terms = jnp.broadcast_arrays(*terms)
        return jax.nn.logsumexp(jnp.stack(terms), axis=0)

    def _hidden(self, A, V, rho, cfg: QuadratureConfig = DEFAULT):
        A = jnp.asarray(A, dtype=jnp.float64)
        kinks = self._atom_kinks()
        switching = bool(kinks) and cfg.atom_switch_rule and cfg.hermite_xi >= SWITCH_MIN_NODES
        if switching:
            cfg = dataclasses.replace(cfg, hermite_w=max(cfg.hermite_w, cfg.atom_hermite_w))
        s, y0, w, weight = self._teacher(V, rho, cfg, A)
        t0 = self.activation(y0)
        if switching:
            # One rule in xi per teacher node (y0, w), shape (y0, w, xi). It stands for the
            # fixed law N(0, 1): where its nodes sit is a choice, and derivatives need not
            # flow through it (they would cost, not change, them).
            xi, wxi = jax.lax.stop_gradient(self._xi_rule(kinks, A, t0, w, s, cfg.hermite_xi))
        else:
            xi, wxi = hermite_rule(cfg.hermite_xi)
        # Shapes (y0, 1, 1), (y0, w, 1) and (xi,) or (y0, w, xi): broadcast inside the fused
        # element-wise code.
        t0 = t0[..., None]
        w = w[..., None]
        weight = weight[..., None] * wxi
        logz, _, d2, dw = self.posterior_moments(A, t0, xi, w, s)
        # Reduced free entropy: log Z - A t0^2/2 = (log Z - B^2/(2A)) + xi^2/2 + sqrt(A) xi t0,
        # whose last term averages to zero exactly and is left out.
        reduced = logz + 0.5 * xi * xi
        return jnp.sum(weight * reduced), jnp.sum(weight * dw**2), jnp.sum(weight * d2)

    def _atom_kinks(self):
        """``(kink, atom, slope, atom_on_left)`` for each kink between an atom and a
        piece with a slope (static)."""
        ps = self.pieces()
        return [(left.hi, *((left, right, True) if left.atom else (right, left, False)))
                for left, right in zip(ps[:-1], ps[1:]) if left.atom != right.atom]

    @staticmethod
    def _xi_rule(kinks, A, t0, w, s, n: int):
        """A rule in the teacher's noise ``xi`` for each teacher node ``(t0, w)``, shape
        ``w.shape + (n,)``, bent at the switch between an atom and the slope beside it
        across one of ``kinks`` (:meth:`_atom_kinks`; :func:`jaxreplica.xi_rules.atom_switch`);
        of several (hardtanh's two), the one nearest ``xi = 0``."""
        return nearest_switch_rule([atom_switch(A, t0, w, s, k, atom.lo, atom.hi, atom.offset, slope.slope, on_left)
                                    for k, atom, slope, on_left in kinks], n)

    def _hidden_sharp(self, A, V, rho, cfg: QuadratureConfig):
        """On the refined rules of :meth:`QuadratureConfig.for_sharp`."""
        return self._hidden(A, V, rho, cfg.for_sharp())

    def posterior_moments(self, A, t0, xi, w, s):
        """``(log Z - B^2/(2A), d log Z/dB, d^2 log Z/dB^2, d log Z/dw)`` in closed form, at
        the teacher's field ``B = A t0 + sqrt(A) xi``.

        ``log Z`` and ``B^2/(2A)`` are both of size ``A t0^2`` (1e11 and more for a wide
        pre-activation and a sharp likelihood), while their difference is of order one: it
        is formed piece by piece without that cancellation. On a piece ``g y + c`` (an atom
        has ``g = 0``), with the residual ``r = sqrt(A) (t0 - c - g w) + xi`` and
        ``q = 1 + s A g^2``, the piece's Gaussian factor is ``exp(-r^2/(2 q))/sqrt(q)``,
        its posterior on ``y`` is centred at ``w + s g sqrt(A) r/q`` with variance ``s/q``,
        and its drift (below) is ``g sqrt(A) r/q``.

        With the student's posterior on ``y`` (prior ``N(w, s)``, likelihood
        ``exp(-A phi(y)^2/2 + B phi(y))``), ``d log Z/dB = <t>``,
        ``d^2 log Z/dB^2 = <t^2> - <t>^2`` and ``d log Z/dw = (<y> - w)/s``. On each piece the
        posterior is a truncated Gaussian (of ``y``; ``t`` is ``c`` or ``g y + c`` there), whose
        moments are ratios ``phi(a)/(Phi(b) - Phi(a))`` taken in log space. This is the
        hot path of the solvers: it replaces nested automatic differentiation of
        :meth:`log_partition` (the same derivatives, far smaller programs; the first output
        is :meth:`log_partition` less ``B^2/(2A)``).

        ``d log Z/dw`` has two exact forms: ``<(y - w)/s>`` and, by parts,
        ``<d/dy log L(y)>`` with ``L = exp(-A phi^2/2 + B phi)`` (the boundary terms
        cancel because ``phi`` is continuous). On a piece of slope ``g`` (0 for an atom)
        with ``q = 1 + s A g^2`` they are ``D + T`` and ``D - s A g^2 T``, with the
        drift ``D = g (B - A c - A g w)/q`` and the truncation term
        ``T = (n(a) - n(b))/(P sqrt(s q))`` of the standardized window ``(a, b)`` of
        mass ``P`` (``n`` the standard normal density).
        Rounding in ``T`` grows like ``1/sqrt(s)`` in the first form (it is noise once
        ``s`` falls far below 1, as where the input above is recovered: 1e-20 and less)
        and like ``s A`` in the second (1e-8 relative at ``A = 1e8``). Their weighted sum
        with ``lam = s A/(1 + s A)`` and ``1 - lam`` is as exact as either, and drops
        ``T`` on slope-1 pieces entirely.
        """
        if not self.continuous:
            raise NotImplementedError(f"{type(self).__name__}: posterior_moments needs a continuous activation")
        lam = s * A / (1.0 + s * A)
        sqrt_a = jnp.sqrt(A)
        logs, t1, t2, shares = [], [], [], []
        for p in self.pieces():
            c = p.offset
            if p.atom:
                centre, var, q = w, s, 1.0
                r = sqrt_a * (t0 - c) + xi
            else:
                g = p.slope
                q = 1.0 + s * A * g * g
                r = sqrt_a * (t0 - c - g * w) + xi
                pull = g * sqrt_a * r / q
                centre = w + s * pull
                var = s / q
            extra = -0.5 * r * r / q
            sd = jnp.sqrt(jnp.maximum(var, TINY))
            a = jnp.clip(standardize(p.lo, centre, sd), -BIG, BIG)
            b = jnp.clip(standardize(p.hi, centre, sd), -BIG, BIG)
            # A half-infinite window's infinite end has phi = 0 (and needs no log Phi).
            lo_inf, hi_inf = _is_inf(p.lo), _is_inf(p.hi)
            log_mass = _log_window_mass(p.lo, p.hi, a, b)
            log_pdf = lambda u: -0.5 * u * u - 0.5 * LOG_2PI - log_mass
            ra = 0.0 if lo_inf else jnp.exp(log_pdf(a))  # phi(a)/mass
            rb = 0.0 if hi_inf else jnp.exp(log_pdf(b))
            a_ra = 0.0 if lo_inf else a * ra
            b_rb = 0.0 if hi_inf else b * rb
            mean_y = centre + sd * (ra - rb)
            var_y = var * jnp.maximum(1.0 + (a_ra - b_rb) - (ra - rb) ** 2, 0.0)
            # This piece's share of d log Z/dw (see the docstring): drift + coef * truncation
            drift = 0.0 if p.atom else pull
            coef = lam if p.atom else lam - (1.0 - lam) * s * A * g * g
            share = drift + coef * (ra - rb) / jnp.sqrt(jnp.maximum(s * q, TINY))
            logs.append(extra - 0.5 * jnp.log(q) + log_mass)
            if p.atom:
                t1.append(c + 0.0 * mean_y)
                t2.append(jnp.zeros_like(mean_y))
            else:
                t1.append(p.slope * mean_y + c)
                t2.append(p.slope * p.slope * var_y)
            shares.append(share)
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
        return logz, m1, var_t, sum(p * d for p, d in zip(pi, shares))


def _normal_pdf(u):
    return jnp.exp(-0.5 * u * u - 0.5 * LOG_2PI)


def _second_moment_in_window(mass, a, b):
    """``E[u^2; a < u < b]`` for a standard normal ``u``, given the window's ``mass``:
    ``mass - (b phi(b) - a phi(a))`` (the edge terms vanish at the clipped ``+-BIG``)."""
    return mass - (b * _normal_pdf(b) - a * _normal_pdf(a))


def _log_window_mass(lo, hi, a, b):
    """``log(Phi(b) - Phi(a))`` for the window ``(lo, hi)`` standardized to ``(a, b)``: one
    ``log Phi`` when a bound is a static infinity (the hot paths' half-infinite pieces),
    two otherwise."""
    if _is_inf(lo) and not _is_inf(hi):
        return log_ndtr(b)
    if _is_inf(hi) and not _is_inf(lo):
        return log_ndtr(-a)
    return log_ndtr_diff(a, b)
