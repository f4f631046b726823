"""Rules in the teacher's noise ``xi`` that follow a switch of the student's posterior.

In a hidden layer's functions the teacher's field is ``B = A t0 + sqrt(A) xi`` with
``xi ~ N(0, 1)``. Where the posterior jumps between two regimes as ``xi`` crosses a point
(two ends of a saturating activation's range, or an atom of ReLU or hardtanh and the
slope beside it), the functions of ``xi`` are analytic only in a narrow strip about the
real axis there, and Gauss-Hermite rules converge slowly. :func:`bent_rule` puts a
trapezoid rule's nodes densest at the switch; :func:`switch_rule` (smooth activations)
and :func:`atom_switch` (piecewise ones) say where the switch is and how sharp.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxreplica.gaussian import TINY, log_ndtr, log_ndtr_diff, standardize

__all__ = ["switch_rule", "bent_rule", "atom_switch", "nearest_switch_rule", "SWITCH_MIN_NODES"]

# The teacher's noise xi (see switch_rule): nodes over [-XI_SPAN, XI_SPAN] (mass 2.6e-12
# outside), equally spaced in a variable in which the spacing in xi is at most XI_CAP
# times the step, and 1/XI_SHAPE of the switch's distance from the real axis at it.
# With 24 nodes, over spans 7-9, caps 0.6-1.2 and shapes 1-5, these were the best at the
# nearly two-valued points of tests/test_smooth.py (errors 2e-10 to 2e-8; a span of 9
# with cap 0.6 and shape 2 left 1e-4, and needed 40 nodes for 5e-8).
XI_SPAN = 7.0
XI_CAP = 1.0
XI_SHAPE = 3.0
# sqrt(A) (thi - tlo) beyond which the switch rule's bend fades: with none, 24 nodes were
# up to 1.5e-6 off (tanh at A = 30, trho = 24) where Gauss-Hermite's were 1e-7; with
# XI_FADE of 4-6 within 5e-7 there, and no worse than Gauss-Hermite's at A of 1-8.
XI_FADE = 5.0
# Fewer nodes than this are Gauss-Hermite's whatever smooth_switch_rule says: with 8, the
# switch rule's nodes 2 apart left a noisy tanh network's I(X; T_2) 1.7e-2 off (Gauss-
# Hermite's 6e-6); with 16 and more it beat Gauss-Hermite's over the nearly two-valued band.
SWITCH_MIN_NODES = 16


def switch_rule(A, t0, tlo, thi, side, n: int):
    """Nodes and weights (shape ``S + (n,)``) with ``sum_j w_j f(xi_j) ~= E f(xi)``,
    ``xi ~ N(0, 1)``, for a teacher node's functions of the likelihood's noise.

    Where the student's prior puts its mass near both ends of the activation's range
    (a wide prior that the activation saturates), the posterior on ``t`` is nearly
    two-valued and switches from one end to the other as ``xi`` crosses a point: the
    functions of ``xi`` are then analytic only in a strip of half-width about
    ``d = pi/(sqrt(A) (thi - tlo))`` about the real axis, at the switch, and a
    Gauss-Hermite rule converges slowly (24 nodes were up to 2e-4 off). The switch is
    where the likelihood's peak ``t0 + xi/sqrt(A)`` reaches the point between the ends
    at which the two ends' prior masses (``Phi(side)``, ``Phi(-side)``) and their
    likelihoods balance. Where ``x = sqrt(A) (thi - tlo)`` exceeds about ``XI_FADE``
    the posterior follows the likelihood's peak instead of switching, and ``d`` grows
    until, at ``XI_CAP XI_SHAPE``, the rule is the trapezoid rule in ``xi``
    (:func:`bent_rule`)."""
    root = jnp.sqrt(A)
    x = jnp.maximum(root * (thi - tlo), TINY)
    log_ratio = log_ndtr(-side) - log_ndtr(side)
    xs = root * (0.5 * (tlo + thi) - t0) + log_ratio / x
    # The switch's width is about 1/x in xi (x = sqrt(A) times the range): its poles are
    # pi/x from the real axis. Where x is large the likelihood is sharper than the range
    # and the posterior follows its peak instead of switching: there the bend fades
    # (d grows as x^3 beyond XI_FADE and reaches the plain trapezoid rule's at x ~ 9).
    return bent_rule(xs, np.pi / x * (1.0 + (x / XI_FADE) ** 4), n)


def bent_rule(xs, d, n: int):
    """Nodes and weights (shape ``S + (n,)``, for ``xs`` and ``d`` of shape ``S``) with
    ``sum_j w_j f(xi_j) ~= E f(xi)``, ``xi ~ N(0, 1)``, for functions analytic in a strip
    of half-width ``d`` about the real axis at ``xs`` (a switch there, of width about
    ``d/pi``) and in a wide one elsewhere.

    The nodes are equally spaced in ``e``, with ``xi = xs + r(e)``,
    ``r(e) = XI_CAP e - (XI_CAP XI_SHAPE - d) tanh(e/XI_SHAPE)``: spacing ``d/XI_SHAPE``
    times the step at the switch, ``XI_CAP`` times it far from it, analytic in a strip
    of ``e`` (the trapezoid rule converges geometrically). ``xs`` is clipped to
    ``[-XI_SPAN, XI_SPAN]`` (taken as 0 where it is not finite) and ``d`` to
    ``[1e-3, XI_CAP XI_SHAPE]`` (there the rule is the trapezoid rule in ``xi``). The
    ends of the range in ``e`` are those of ``r``'s asymptotes, ``r(e) ~ XI_CAP e -+
    bend``, for ``xi = -+XI_SPAN``: as ``r`` bends towards them, the rule reaches at or
    past ``+-XI_SPAN`` (never short of it), with no root-finding. The weights are
    normalised to sum to one."""
    xs = jnp.where(jnp.isfinite(xs), jnp.clip(xs, -XI_SPAN, XI_SPAN), 0.0)[..., None]
    bend = XI_CAP * XI_SHAPE - jnp.clip(d, 1e-3, XI_CAP * XI_SHAPE)[..., None]
    first = (-XI_SPAN - xs - bend) / XI_CAP
    last = (XI_SPAN - xs + bend) / XI_CAP
    k = np.linspace(0.0, 1.0, n)
    e = first + (last - first) * k
    th = jnp.tanh(e / XI_SHAPE)
    xi = xs + XI_CAP * e - bend * th
    ends = np.where((k == 0.0) | (k == 1.0), 0.5, 1.0)
    weight = ends * (XI_CAP - bend / XI_SHAPE * (1.0 - th * th)) * jnp.exp(-0.5 * xi * xi)
    return xi, weight / jnp.sum(weight, axis=-1, keepdims=True)


def atom_switch(A, t0, w, s, kink, atom_lo, atom_hi, atom_value, slope, atom_on_left: bool):
    """Where, in the teacher's noise ``xi``, the posterior of a hidden piecewise channel
    switches between an atom (``t = atom_value`` on ``(atom_lo, atom_hi)``) and the piece
    of slope ``slope`` beside it across ``kink``, and how sharply: ``(xs, D)``, arrays of
    the shape of the teacher nodes ``(t0, w)`` (the student's prior ``N(w, s)``).

    With ``k`` the kink, ``c`` the atom's value and ``g`` the slope, write
    ``u = (B - A c)/sqrt(A) = sqrt(A) (t0 - c) + xi``. Reduced by ``B^2/(2A)`` (as in
    :meth:`jaxreplica.piecewise.PiecewiseChannel.posterior_moments`), the atom's share of
    ``Z`` is ``exp(-u^2/2) P``, with ``P`` the prior's mass on its window; the slope's is
    ``exp(-r^2/(2q))/sqrt(q)`` times its posterior's mass on its window, with
    ``r = u + sqrt(A) g (k - w)`` and ``q = 1 + s A g^2``. That mass is near one at a sharp switch (the posterior sits
    ``|u|`` of its sds inside the window there), so the log ratio of the shares is
    ``a2 u^2 + a1 u + a0``, ``a2 = s A g^2/(2q)``, ``a1 = -sqrt(A) g (k - w)/q``,
    ``a0 = -A g^2 (k - w)^2/(2q) - log(q)/2 - log P``. The switch is its root on the
    slope's side of the atom (``u > 0`` for an atom on the left), where its slope is
    ``D = sqrt(a1^2 - 4 a2 a0)``: the functions of ``xi`` have poles ``pi/D`` from the
    real axis there. Where there is no root (``D = 0``: one share dominates for every
    ``xi``) or ``D`` is small, :func:`bent_rule` is the trapezoid rule in ``xi``.
    """
    g = slope
    sqrt_a, sd = jnp.sqrt(A), jnp.sqrt(s)
    q = 1.0 + s * A * g * g
    m = sqrt_a * g * (kink - w)
    log_p = log_ndtr_diff(standardize(atom_lo, w, sd), standardize(atom_hi, w, sd))
    a2 = 0.5 * s * A * g * g / q
    a1 = -m / q
    a0 = -0.5 * m * m / q - 0.5 * jnp.log(q) - log_p
    D = jnp.sqrt(jnp.maximum(a1 * a1 - 4.0 * a2 * a0, 0.0))
    # The root on the slope's side, each form where it has no cancellation.
    if atom_on_left:
        u = jnp.where(a1 <= 0.0, (D - a1) / jnp.maximum(2.0 * a2, TINY), -2.0 * a0 / jnp.maximum(a1 + D, TINY))
    else:
        u = jnp.where(a1 >= 0.0, -(D + a1) / jnp.maximum(2.0 * a2, TINY), 2.0 * a0 / jnp.maximum(D - a1, TINY))
    xs = u - sqrt_a * (t0 - atom_value)
    # (a degenerate prior, s -> 0, can leave neither finite: no switch then)
    ok = jnp.isfinite(xs) & jnp.isfinite(D)
    return jnp.where(ok, xs, XI_SPAN), jnp.where(ok, D, 0.0)


def nearest_switch_rule(switches, n: int):
    """:func:`bent_rule` at the switch ``(xs, D)`` of ``switches`` nearest ``xi = 0`` (where
    the law of ``xi`` has most mass), with ``d = pi/D``."""
    xs, D = switches[0]
    for other_xs, other_d in switches[1:]:
        nearer = jnp.abs(other_xs) < jnp.abs(xs)
        xs, D = jnp.where(nearer, other_xs, xs), jnp.where(nearer, other_d, D)
    return bent_rule(xs, np.pi / jnp.maximum(D, TINY), n)
