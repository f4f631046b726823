"""Channels whose activation is smooth and increasing: the shared machinery.

The channels themselves (tanh, the logistic sigmoid, softplus, ELU, erf and a user's
increasing function) are in :mod:`jaxreplica.smooth_channels`. Core functions (see
:mod:`jaxreplica.channel`), with ``y = z + xi_in`` the pre-activation, ``s = V + noise``
and ``t = phi(y + bias)``:

*Last layer.* With noise before a strictly increasing ``phi`` the observation ``t``
gives ``y`` back, so ``p(t | w) = N(y; w, s)/phi'(y + bias)`` and, in closed form,
``I_last = -log(2 pi e s)/2 - E log phi'(y0 + bias)`` with ``y0 ~ N(0, rho + noise)``,
``Ahat_last = 1/s`` (the linear channel's), and the extrinsic variance ``1/Ahat - V`` is
``noise`` exactly. The one average ``E log phi'`` is a one-dimensional Gaussian rule.

*Hidden layer.* ``Z(A, B, w, s) = int dy N(y; w, s) exp(-A phi^2/2 + B phi)`` with the
teacher ``y0 ~ N(0, rho + noise)``, ``w | y0 ~ N(c1 y0, c1 s)`` (``c1 = (rho - V)/(rho +
noise)``), ``t0 = phi(y0 + bias)``, ``B = A t0 + sqrt(A) xi``. In the prior's standardized
variable ``u = (y - w)/sqrt(s)``, with ``q(u) = sqrt(A) (phi(y + bias) - t0) - xi``,

    log Z - A t0^2/2 = sqrt(A) xi t0 + xi^2/2 + log int du N(u) exp(-q(u)^2/2),

whose first term averages to zero and whose second to 1/2: nothing of size ``A`` is
ever formed. The posterior on ``u`` (prior ``N(u)`` times likelihood ``exp(-q^2/2)``) has
no closed form, so each teacher node ``(y0, w)`` gets its own composite
Gauss-Legendre rule in ``u``, which serves all of the likelihood's ``xi`` nodes (the
sums for every ``xi`` are one contraction over the rule's nodes). The integrand changes
on the scale 1 in ``u`` (the prior) and on the scale 1 in ``q`` (the likelihood: narrow
where ``sqrt(A s) phi'`` is large, flat where ``phi`` saturates). The rule's breakpoints
are the union of

* ``smooth_grid`` segments uniform in ``u`` over the part of the prior's span
  ``[-9, 9]`` (widened to hold the teacher) that the likelihood's window covers, and
* levels of ``t`` uniform over that window (``|q| <= 9`` around the teacher and around
  the likelihood's peak for every ``xi``, beyond which the likelihood is below
  ``e^-40``), plus a few levels geometrically closer to each end where ``phi`` bends
  into saturation, each mapped to ``u`` through ``phi^-1``
  (closed forms for the built-ins; bracketed Newton steps for a user's function),

merged by a sorting network, plus the activation's kinks (ELU's curvature jump).
Every segment then spans at most about 1.5 units of ``u`` and a few of ``q``, so the rule
follows a narrow peak, a step (an observation beyond the range of ``phi``) or a
prior-shaped tail without knowing which it meets. ``Vhat`` is the posterior variance of
``t`` from the same nodes. ``d log Z/dw`` has two exact forms, ``<u>/sqrt(s)`` and (by
parts) ``-sqrt(A) <q phi'>``; their average with weights ``lam/(1 + lam)`` and
``1/(1 + lam)``, ``lam = A s phi'(teacher)^2``, is exact for a linear ``phi`` at any rule
and keeps ``Ahat`` accurate both when the likelihood is flat and when it is sharp. The
teacher averages: ``y0`` by a composite Gauss-Legendre rule (with the kinks, and
breakpoints where ``phi`` saturates against the likelihood: :meth:`SmoothChannel._knees`),
``w`` by Gauss-Hermite, and ``xi`` by a rule of each teacher node's own that follows
the switch of a nearly two-valued posterior (:func:`jaxreplica.xi_rules.switch_rule`).
Sizes are ``QuadratureConfig.smooth_*``; everything is traced and differentiable
(derivatives flow through the nodes, as in :mod:`jaxreplica.quadrature`).

Accuracy: tests/test_smooth.py compares every core function with SciPy adaptive
quadrature (docs/theory.md, "Scalar channels").
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxreplica.channel import Channel
from jaxreplica.gaussian import LOG_2PI, TINY, gaussian_entropy
from jaxreplica.quadrature import DEFAULT, QuadratureConfig, far_end, hermite_rule, kinked_gaussian_rule
from jaxreplica.xi_rules import SWITCH_MIN_NODES, XI_SPAN, switch_rule

__all__ = ["SmoothChannel", "EPS"]

EPS = 2.0**-53  # half an ulp of 1: t in (-1 + EPS, 1 - EPS) keeps atanh finite
SPAN = 9.0  # the prior's span in u (mass 2e-19 outside)
WINDOW = 9.0  # half-width of the likelihood's window in q (exp(-40.5))
NEWTON_STEPS = 40
# Geometric ratio exp(-TAIL_STEP) of the levels towards each end: with 4 levels the last
# is 3e-4 of a uniform step from the end. With ratio exp(-1) (6e-3) a prior far wider
# than the activation's turn (pre-activation variance 100 and more) left the bend
# beyond the last level to one uniform segment: tanh's functions were 2.5e-5 off at
# variance 900, erf's 9e-6 at 100.
TAIL_STEP = 2.0
# c of the teacher's breakpoints where phi saturates (see SmoothChannel._knees): 1/512 .. 181.
# Down to 1/64 only, erf's Ahat was 2.1e-6 off SciPy's at A = 7e3, V = 0.18 and
# pre-activation variance 22 (the bend into deep saturation left to one segment); the two
# levels below cost what two uniform segments of the teacher's rule did (12 -> 8).
KNEE_LEVELS = 2.0 ** np.arange(-9.0, 8.0, 1.5)


class SmoothChannel(Channel):
    """Shared machinery. A subclass defines ``_phi(x)`` (the activation without bias) and
    may override ``_phi_and_slope`` (``phi`` and ``phi'`` together), ``_log_slope``
    (``log phi'``), ``_inverse`` (``phi^-1`` on the closed range of ``phi``, finite) and
    ``_kinks`` (points where ``phi'`` or ``phi''`` jumps, without bias)."""

    posterior_quadrature = True

    def _phi(self, x):
        raise NotImplementedError

    def _phi_and_slope(self, x):
        return jax.jvp(self._phi, (x,), (jnp.ones_like(x),))

    def _log_slope(self, x):
        return jnp.log(jnp.maximum(self._phi_and_slope(x)[1], TINY))

    def _inverse(self, t, lo, hi):
        """``x`` in ``[lo, hi]`` with ``phi(x) = t``, given ``phi(lo) <= t <= phi(hi)``:
        Newton steps that bisect the bracket whenever they would leave it, run with the
        derivative stopped, then one differentiable Newton step (the implicit derivative
        ``1/phi'``)."""
        t, lo, hi = jnp.broadcast_arrays(*jax.lax.stop_gradient((t, lo, hi)))
        x = jnp.clip(0.5 * (lo + hi), lo, hi)

        def step(_, carry):
            x, lo, hi = carry
            f, g = self._phi_and_slope(x)
            f = f - t
            lo, hi = jnp.where(f < 0, x, lo), jnp.where(f < 0, hi, x)
            newton = x - f / jnp.where(g > 0, g, 1.0)
            ok = (g > 0) & (newton > lo) & (newton < hi)
            return jnp.where(ok, newton, 0.5 * (lo + hi)), lo, hi

        x, lo, hi = jax.lax.fori_loop(0, NEWTON_STEPS, step, (x, lo, hi))
        return x

    def _kinks(self):
        # Where a saturating activation turns: at large weight scales the teacher's law is
        # wide and this turn is a narrow feature of it, which the rules refine towards as
        # they do towards a kink.
        return (0.0,)

    # -- with the bias ----------------------------------------------------------------
    def activation(self, y):
        return self._phi(y + self.shift)

    def _inverse_biased(self, t, lo, hi):
        """``phi^-1`` of ``y -> phi(y + bias)`` on ``[lo, hi]``, with one differentiable
        Newton step for a generic inverse (a closed form is differentiable as it is)."""
        b = self.shift
        if type(self)._inverse is SmoothChannel._inverse:
            x = jax.lax.stop_gradient(self._inverse(t, lo + b, hi + b))
            f, g = self._phi_and_slope(x)
            x = x - (f - t) / jnp.maximum(g, TINY)
        else:
            x = self._inverse(t, lo + b, hi + b)
        return jnp.clip(x - b, lo, hi)

    def _biased_kinks(self):
        return [k - self.shift for k in self._kinks()]

    # -- one-dimensional averages over y ~ N(0, rho + noise) --------------------------
    def _average(self, f, rho, cfg: QuadratureConfig = DEFAULT):
        sd = jnp.sqrt(jnp.maximum(rho + self.noise, TINY))
        rule = dataclasses.replace(cfg.for_prior(), bulk_segments=cfg.smooth_average_segments)
        y, wy = kinked_gaussian_rule(sd, self._biased_kinks(), sd, rule)
        return jnp.sum(wy * f(y + self.shift))

    def _second_moment(self, rho):
        return self._average(lambda x: self._phi(x) ** 2, rho)

    def mean_square_slope(self, rho):
        """``E phi'(z + bias)^2``, ``z ~ N(0, rho)``."""
        return self.replace(noise=0.0)._average(lambda x: self._phi_and_slope(x)[1] ** 2, rho)

    def mean_log_slope(self, rho, cfg: QuadratureConfig = DEFAULT):
        """``E log phi'(y + bias)``, ``y ~ N(0, rho + noise)``."""
        return self._average(self._log_slope, rho, cfg)

    # -- last layer (closed forms of an invertible channel) ---------------------------
    def _output(self, V, rho, cfg: QuadratureConfig = DEFAULT):
        s = jnp.asarray(V, dtype=jnp.float64) + self.noise
        return -gaussian_entropy(s) - self.mean_log_slope(rho, cfg), 1.0 / s

    def _noise_free(self, rho, cfg: QuadratureConfig = DEFAULT):
        return -gaussian_entropy(self.noise) - self.mean_log_slope(rho, cfg)

    def _output_extrinsic(self, V, ahat):
        """``noise`` exactly: ``t`` gives ``z + xi`` back."""
        return jnp.zeros_like(jnp.asarray(V, dtype=jnp.float64)) + self.noise

    # -- hidden layer -------------------------------------------------------------------
    def _hidden(self, A, V, rho, cfg: QuadratureConfig = DEFAULT):
        A = jnp.asarray(A, dtype=jnp.float64)
        s = jnp.maximum(V + self.noise, TINY)
        total = jnp.maximum(rho + self.noise, TINY)
        spread = jnp.maximum(rho - V, 0.0)
        teacher = dataclasses.replace(cfg, bulk_segments=cfg.smooth_teacher_segments,
                                      legendre=cfg.smooth_teacher_legendre, half_width=cfg.smooth_teacher_width)
        y0, wy = kinked_gaussian_rule(jnp.sqrt(total), self._biased_kinks(), jnp.sqrt(s / (1.0 + s * A)), teacher,
                                      even=self.symmetric, points=self._knees(A, s, jnp.sqrt(total), teacher))
        eta, weta = hermite_rule(cfg.smooth_hermite_w)
        y0, eta = y0[:, None], eta[None, :]
        w = spread / total * y0 + jnp.sqrt(spread * s / total) * eta
        # (y0 - w)/sqrt(s) without the cancellation
        zeta = jnp.sqrt(s) / total * y0 - jnp.sqrt(spread / total) * eta
        weight = wy[:, None] * weta
        nodes = [jnp.broadcast_to(x, weight.shape).reshape(-1) for x in (self.activation(y0), w, zeta, weight)]
        # In chunks of teacher nodes (lax.map): the inner arrays then stay in cache, which
        # on CPU is 2-3x faster than one pass over all of them.
        n = nodes[0].shape[0]
        chunk = min(max(cfg.smooth_chunk // cfg.smooth_hermite_xi, 1), n)
        pad = -n % chunk
        # (padded with copies of the first node, of weight zero)
        fill = [x[0] for x in nodes[:-1]] + [0.0]
        nodes = [jnp.concatenate([x, jnp.zeros(pad) + f]).reshape(-1, chunk) for x, f in zip(nodes, fill)]

        def sums(args):
            t0, w, zeta, weight = args
            shifted, var, dw, wxi = self.posterior(A, s, t0, w, zeta, cfg)
            # E log Z = E (log Z + xi^2/2) - 1/2: the rule integrates the part that grows
            # at most linearly in xi.
            return jnp.stack([jnp.sum(weight * (jnp.sum(wxi * shifted, axis=-1) - 0.5)),
                              jnp.sum(weight[:, None] * wxi * dw * dw), jnp.sum(weight[:, None] * wxi * var)])

        # Rematerialised under differentiation: a reverse pass keeps each chunk's inputs
        # only, not every intermediate of every node (a gradient through a two-layer tanh
        # chain otherwise asked for tens of GB).
        total_sums = jnp.sum(jax.lax.map(jax.checkpoint(sums), nodes), axis=0)
        return 0.5 + total_sums[0], total_sums[1], total_sums[2]

    def _knees(self, A, s, sd, teacher: QuadratureConfig):
        """Breakpoints for the teacher's ``y0`` where ``phi`` saturates: ``y0`` with
        ``phi(y0 + bias)`` at ``c/sqrt(A s)`` from an end of its range (``c`` in
        ``KNEE_LEVELS``, every ``smooth_knee_stride``-th of them). Across there
        ``sqrt(A s) phi'(y0)`` falls through 1 and the averages bend from the likelihood's
        regime into the prior's, on a length far shorter than the teacher's ``sd`` once
        ``A s`` is large (where ``phi' ~ 1 - |t|`` these levels are geometric in ``phi'``).
        On a side that does not saturate they fall at the rule's far end, where the weight
        is nil. Symmetric for an odd ``phi`` without bias (the folded rule needs its
        breakpoints so)."""
        far = far_end(sd, teacher)
        tlo, thi = self.activation(-far), self.activation(far)
        d = KNEE_LEVELS[::teacher.smooth_knee_stride] / jnp.sqrt(jnp.maximum(A * s, TINY))
        upper = self._inverse_biased(jnp.clip(thi - d, tlo, thi), -far, far)
        if self.symmetric:
            return jnp.concatenate([-upper, upper])
        return jnp.concatenate([self._inverse_biased(jnp.clip(tlo + d, tlo, thi), -far, far), upper])

    def posterior(self, A, s, t0, w, zeta, cfg: QuadratureConfig = DEFAULT):
        """Per teacher node (``t0, w, zeta``, arrays of one shape ``S``), arrays of shape
        ``S + (J,)`` over the node's rule in the likelihood noise ``xi``
        (:func:`jaxreplica.xi_rules.switch_rule`, ``J = cfg.smooth_hermite_xi``; with
        ``cfg.smooth_switch_rule`` off or fewer than ``SWITCH_MIN_NODES`` nodes, the
        Gauss-Hermite rule, the same for every node, and its weights of shape ``(J,)``):
        ``log int du N(u) exp(-q^2/2) + xi^2/2``, ``Var_post(t)``, ``d log Z/dw =
        (<y> - w)/s`` and the rule's weights, where ``y = w + sqrt(s) u``,
        ``q = sqrt(A) (phi(y + bias) - t0) - xi`` and ``zeta`` is the teacher's ``u`` (the
        rule's span holds it). One rule in ``u`` per teacher node serves every ``xi``: its
        window holds the likelihood's for each of them."""
        t0, w, zeta = jnp.broadcast_arrays(t0, w, zeta)
        sqs, sqa = jnp.sqrt(s), jnp.sqrt(A)
        lo, hi = jnp.minimum(-SPAN, zeta - 3.0), jnp.maximum(SPAN, zeta + 3.0)
        ylo, yhi = w + sqs * lo, w + sqs * hi
        tlo, thi = self.activation(ylo), self.activation(yhi)
        if cfg.smooth_switch_rule and cfg.smooth_hermite_xi >= SWITCH_MIN_NODES:
            # The prior's mass on either side of the middle of the range, for the switch.
            middle = self._inverse_biased(jax.lax.stop_gradient(0.5 * (tlo + thi)), *jax.lax.stop_gradient((ylo, yhi)))
            # The rule stands for the fixed law N(0, 1): where its nodes sit is a choice,
            # and derivatives need not flow through it (they would cost, not change, them).
            xi, wxi = jax.lax.stop_gradient(switch_rule(A, t0, tlo, thi, (w - middle) / sqs, cfg.smooth_hermite_xi))
            reach = XI_SPAN
        else:
            xi, wxi = hermite_rule(cfg.smooth_hermite_xi)
            reach = float(np.max(np.abs(xi)))
        # The likelihood's window in t for every xi: between the teacher (q = -xi) and the
        # peak (q = 0), widened by WINDOW (a flat likelihood, A -> 0, covers the whole span).
        inv_a = 1.0 / jnp.maximum(sqa, 1e-150)
        ta = t0 - (reach + WINDOW) * inv_a
        tb = t0 + (reach + WINDOW) * inv_a
        ta_in, tb_in = jnp.clip(ta, tlo, thi), jnp.clip(tb, tlo, thi)
        ex = lambda x: x[..., None]  # noqa: E731
        # Levels in t: smooth_levels uniform ones over the window and, between each end
        # and its neighbour, smooth_tail ones geometric towards the end (where phi
        # saturates, q approaches its plateau geometrically: these resolve the bend).
        nt, nl = cfg.smooth_tail, cfg.smooth_levels
        step = ex((tb_in - ta_in) / (nl - 1))
        geo = np.exp(-TAIL_STEP * np.arange(1.0, nt + 1.0))
        levels = jnp.concatenate([ex(ta_in), ex(ta_in) + step * geo[::-1], ex(ta_in) + step * np.arange(1.0, nl - 1.0),
                                  ex(tb_in) - step * geo, ex(tb_in)], axis=-1)
        y = self._inverse_biased(levels, ex(ylo), ex(yhi))
        u = (y - ex(w)) / sqs
        ua = jnp.where(ta <= tlo, lo, u[..., 0])
        ub = jnp.where(tb >= thi, hi, u[..., -1])
        ua, ub = jnp.minimum(ua, ub), jnp.maximum(ua, ub)
        grid = ex(ua) + ex(ub - ua) * np.linspace(0.0, 1.0, cfg.smooth_grid + 1)
        points = _merge(grid, jnp.clip(u[..., 1:-1], ex(ua), ex(ub)))
        for k in self._biased_kinks():
            points = _merge(points, jnp.clip(ex((k - w) / sqs), ex(ua), ex(ub)))
        # Nodes on one axis (segment-major), each a fixed combination of its segment's
        # ends: u = left (1 - x)/2 + right (1 + x)/2, weight (right - left) wl/2. Both
        # as products with constant matrices, so that the arrays below are flat from the
        # start (a reshape of (..., segment, node) arrays cost XLA's CPU backend index
        # arithmetic in every fused use, 2.5x the time of an evaluation).
        nodes, weights = _expansion(points.shape[-1] - 1, cfg.smooth_legendre)
        u = points @ nodes
        wu = points @ weights
        phi, slope = self._phi_and_slope(ex(w) + ex(sqs) * u + self.shift)
        d = phi - ex(t0)
        qa = sqa * d  # q + xi
        # The posterior's weights wu exp(-(u^2 + q^2)/2) times exp(xi^2/2), the same factor
        # for every node of one xi (it cancels from the moments; log z below leaves it out):
        # exp(-(u^2 + qa^2)/2 + qa xi) <= exp(xi^2/2) and is about exp(-zeta^2/2) at the
        # teacher, so no shift is needed against overflow or underflow, and the exponent is
        # one product and one sum a (node, xi) pair (its rounding, relative to the terms
        # that count, is below 1e-13). The sums over the nodes for every xi at once: moments
        # of d about the teacher's t0 (which the posterior holds within a few sds), the
        # combination of u and (q + xi) phi' that d log Z/dw takes (below), and phi' (the
        # part of that combination that goes with xi).
        # <u> = -sqrt(A s) <q phi'> (by parts), and d log Z/dw = (lam <u> - sqrt(A s)
        # <q phi'>)/((1 + lam) sqrt(s)) with lam = A s phi'(teacher)^2 (see the docstring):
        # with q phi' = (q + xi) phi' - xi phi', its numerator is <r> + sqrt(A) xi <phi'>
        # with r = A (sqrt(s) phi'(teacher)^2 u - d phi'), one moment for what were two.
        g0 = ex(self._phi_and_slope(w + sqs * zeta + self.shift)[1])
        lam = s * A * g0 * g0
        per_xi = lambda x: x[..., None, :]  # noqa: E731
        e = per_xi(wu) * jnp.exp(per_xi(-0.5 * (u * u + qa * qa)) + per_xi(qa) * ex(xi))
        moments = jnp.stack([jnp.ones_like(d), d, d * d, A * (sqs * g0 * g0 * u - d * slope), slope], axis=-2)
        # As a product and a sum, not a contraction (einsum): XLA's CPU backend then forms
        # the weights and sums them in one kernel without writing them out, 1.6x faster
        # than the contraction of written-out weights (a 2-core Xeon). Most of its cost is
        # the products, one a (node, xi, moment): a full tanh evaluation took 5-10% less
        # time with these five moments than with six.
        m = jnp.sum(e[..., :, None, :] * moments[..., None, :, :], axis=-1)
        z = m[..., 0]
        m1 = m[..., 1] / z
        var = jnp.maximum(m[..., 2] / z - m1 * m1, 0.0)
        dw = (m[..., 3] + sqa * xi * m[..., 4]) / (z * (1.0 + lam))
        return jnp.log(z) - 0.5 * LOG_2PI, var, dw, wxi


@functools.lru_cache(maxsize=None)
def _expansion(segments: int, order: int):
    """Constant matrices mapping ``segments + 1`` sorted breakpoints to the nodes and
    the weights of the composite ``order``-point Gauss-Legendre rule on their segments
    (segment-major)."""
    x, wl = np.polynomial.legendre.leggauss(order)
    nodes = np.zeros((segments + 1, segments, order))
    weights = np.zeros_like(nodes)
    for k in range(segments):
        nodes[k, k], nodes[k + 1, k] = 0.5 * (1.0 - x), 0.5 * (1.0 + x)
        weights[k, k], weights[k + 1, k] = -0.5 * wl, 0.5 * wl
    return nodes.reshape(segments + 1, -1), weights.reshape(segments + 1, -1)


def _merge(a, b):
    """The sorted union of two sorted arrays (last axis) by a bitonic merging network:
    ``log2 n`` stages of element-wise min/max, far cheaper than a general sort on CPU,
    and differentiable (the order is piecewise constant)."""
    n = a.shape[-1] + b.shape[-1]
    size = 1 << (n - 1).bit_length()
    pad = jnp.broadcast_to(jnp.full((1,), np.inf), a.shape[:-1] + (size - n,))
    x = jnp.concatenate([a, pad, b[..., ::-1]], axis=-1)  # ascending then descending
    half = size // 2
    while half >= 1:
        x = x.reshape(x.shape[:-1] + (size // (2 * half), 2, half))
        lo, hi = jnp.minimum(x[..., 0, :], x[..., 1, :]), jnp.maximum(x[..., 0, :], x[..., 1, :])
        x = jnp.stack([lo, hi], axis=-2).reshape(x.shape[:-3] + (size,))
        half //= 2
    return x[..., :n]
