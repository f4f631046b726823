"""Gaussian-measure quadrature rules, built for the sharp integrands of small noise.

Every expectation in the replica formula is an average over a few Gaussian variables
of a function that is smooth except near a handful of *kinks* (the corners of ReLU,
hardtanh and sign), where it changes on the small scale ``sqrt(V + Delta)``. A plain
Gauss-Hermite rule cannot resolve a boundary layer of width 1e-3 (docs/theory.md,
"Scalar channels"), so the one-dimensional rule here is composite Gauss-Legendre on
breakpoints that are

* uniform over ``[-L sd, L sd]`` (the bulk of the Gaussian),
* placed at every kink, and
* geometrically graded away from every kink, starting at the small scale
  (``kink +- scale * ratio**j``), so that each segment sees a smooth integrand.

Breakpoints are traced values (they move with ``sd`` and ``scale``) and derivatives
flow through them: the gradient of a computed entropy is then the exact derivative
of the number returned (checked against finite differences to 1e-7), and the fixed
point the solvers find is a stationary point of that same number. (Differentiating
under the integral sign with frozen nodes instead differs by the derivative of the
quadrature error, 1e-5 relative at noise 1e-3.)

Smooth Gaussian directions use Gauss-Hermite nodes (probabilists' normalisation, the
weights sum to one). All node tables are NumPy constants built once at import.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from jaxreplica.gaussian import LOG_2PI

__all__ = [
    "QuadratureConfig",
    "DEFAULT",
    "hermite_rule",
    "legendre_rule",
    "kinked_gaussian_rule",
    "far_end",
]

@dataclasses.dataclass(frozen=True)
class QuadratureConfig:
    """Sizes of the quadrature rules (static: changing them recompiles).

    Attributes:
      bulk_segments: uniform segments over ``[-half_width sd, half_width sd]``.
      half_width: extent of the rule in standard deviations.
      grades: graded segments on each side of each kink.
      grade_ratio: growth factor of consecutive graded breakpoints.
      legendre: Gauss-Legendre nodes per segment.
      hermite_w: Gauss-Hermite nodes for the student field ``w`` given the teacher.
      hermite_xi: Gauss-Hermite nodes for the teacher noise ``xi`` of the field ``B``.
    """

    bulk_segments: int = 12
    half_width: float = 10.0
    grades: int = 8
    grade_ratio: float = 8.0
    legendre: int = 6
    hermite_w: int = 12
    hermite_xi: int = 24
    # The last layer's average is only two-dimensional: refine it twice as finely.
    output_grade_ratio: float = 2.0
    output_grades: int = 22
    output_hermite_w: int = 12
    # The hidden sign channel's student field w (jaxreplica.channels): with the 12 nodes of
    # hermite_w its Ahat was up to 2.6e-5 relative off at A below 1 (16: 2.7e-6, 20:
    # 4.4e-7, 24: 6.5e-8, against 48 nodes and the refined rules below).
    sign_hermite_w: int = 24
    # Hidden layers whose activation has an atom beside a slope (ReLU, hardtanh): at A of
    # 1 and more the posterior switches from the atom to the slope as the teacher's noise
    # xi crosses a point in its tail (a step of width about 1/|xi|). With
    # atom_switch_rule (and at least SWITCH_MIN_NODES nodes in xi, jaxreplica.xi_rules) each
    # teacher node's rule in xi follows that switch (jaxreplica.xi_rules.atom_switch): 24 such
    # nodes do what 96 Gauss-Hermite ones did (24 Gauss-Hermite nodes left Ahat up to
    # 2e-6 relative off, free entropy 1.7e-7). The student's field w then needs
    # atom_hermite_w nodes at least (on 300 random points against rules four times as
    # fine, 12: Ahat 2.4e-7 relative off at A V of about 1; 14: 7.9e-8; 16: 6.2e-8, and
    # 8.7e-8 on 300 more).
    atom_switch_rule: bool = True
    atom_hermite_w: int = 16
    # Piecewise channels with noise d after the activation (the hidden functions at
    # A/(1 + A d), or at 1/d as a last layer): a likelihood sharp against the student's
    # prior. These sizes hold every piecewise channel within 2.7e-8 of SciPy over A
    # 1e-2..1e5 (docs/accuracy.md). With 24 nodes in xi (on the switch rule above),
    # hardtanh's last layer was 1.1e-7 off in Ahat and leaky ReLU's (no atom: Gauss-
    # Hermite nodes) 4.6e-8; with 6 Legendre nodes a segment, ReLU's last layer 7.9e-8 in
    # the free entropy. (Before the switch rule, 48 Gauss-Hermite nodes were needed.)
    sharp_legendre: int = 8
    sharp_hermite_xi: int = 32
    sharp_hermite_w: int = 16
    # The prior's averages are one-dimensional: Gauss-Legendre nodes per segment there
    # (10 integrate the Gaussian's mass and moments to round-off; 6 leave 1e-9). Their
    # uniform and graded segments: bulk_segments and grades where None (the coarse rules
    # keep the full ones here).
    prior_legendre: int = 10
    prior_bulk_segments: int | None = None
    prior_grades: int | None = None
    # Graded segments reach from the kink's scale to the caller's reach or the rule's far
    # end (ratio capped at grade_ratio); False: fixed ratio grade_ratio, whatever the reach.
    adaptive_grading: bool = True
    # Smooth activations (jaxreplica.smooth). One-dimensional averages (E t^2, E log phi'):
    # smooth_average_segments uniform segments over +-half_width sd. Teacher: y0 on
    # smooth_teacher_segments uniform segments of smooth_teacher_legendre nodes over
    # +-smooth_teacher_width sd (plus the turn's graded segments and the saturation
    # breakpoints of jaxreplica.smooth), w on smooth_hermite_w Gauss-Hermite nodes, xi on
    # smooth_hermite_xi nodes of a trapezoid rule in a variable that follows the switch of
    # a nearly two-valued posterior (smooth_switch_rule; jaxreplica.xi_rules.switch_rule:
    # 24 Gauss-Hermite nodes were up to 1.3e-4 off there, these 24 nodes 2e-8; the coarse
    # survey keeps Gauss-Hermite nodes, as the switch rule with 12 was too coarse for the
    # survey's map, which then took more refinement steps). Each posterior
    # (one rule in u per teacher node (y0, w), serving every xi): composite Gauss-Legendre
    # (smooth_legendre nodes a segment) on the merged grid of smooth_grid uniform segments
    # in u and smooth_levels uniform levels of the likelihood in t, with smooth_tail levels
    # geometric towards each end of the window. Outer nodes (y0, w, xi) are processed
    # about smooth_chunk at a time (each chunk is one pass of a loop with a fixed cost
    # per pass: with 256, a tanh solve took 10-30% longer; the coarse rules, about 25
    # times fewer nodes, take 8 smooth_chunk at a time, one pass for every activation
    # (400 or 775 teacher nodes), a coarse tanh evaluation then 25% faster). The sizes
    # hold free entropy, Ahat and Vhat within 1e-7 (relative above 1) of rules twice as
    # fine in every direction over A 1e-2..1e5, V 1e-6..rho, noise 1e-5..1e-1 (rho
    # 1..2.5); the limits were xi (8 nodes: 9e-6), the teacher y0 (before the saturation
    # breakpoints, 16 segments of 8: 2e-4 relative in Ahat for erf at A = 1e5) and w (6
    # nodes: 1e-6 in Vhat at V = rho/2).
    # The uniform segments had room to spare: with 12 in y0 (16 before) and 9 in u (12
    # before) every function stayed within 8.4e-9 of rules twice as fine on 840 random
    # points of that grid (the five built-in activations; bias 0 or up to 0.5), and a tanh
    # evaluation took 15% less time (bench_activations.py). With 8 in y0 and saturation
    # breakpoints down to c = 1/512 (jaxreplica.smooth.KNEE_LEVELS; as many nodes as 12
    # without the lowest two levels) that grid is within 1.2e-8 and, with rho up to 100,
    # erf's Ahat within 3e-7 (SciPy agrees at the worst point).
    # smooth_knee_stride: every how many of those levels the rule takes (the rough rules
    # every other one; the coarse rules all of them, as the full rules: with every other
    # one a coarse tanh evaluation was about 30% cheaper, but from weight scale 1 up the
    # coarse fixed point was further from the full one and the chord steps slower, so a
    # two-layer tanh sweep took 24 full evaluations instead of 21 and more time).
    # Beyond that grid (rho up to 100, V above 10) the inner rule's uniform segments were
    # the limit with 4 of them (8 Legendre nodes on 4.5 sds of the prior: 3e-7 of its mass;
    # erf's Ahat 1e-5 off at rho = 24, 1e-7 with 8 segments); with 9 to 12 the rest is w's (up to
    # about 5e-7 in Ahat and Vhat there), but where V is near rho (100 and more) the
    # likelihood's levels towards the ends of the range (jaxreplica.smooth.TAIL_STEP).
    # (With Gauss-Hermite in xi, 16 nodes left the noisy two-layer tanh chain's H(T_2) at
    # weight scale 10 6e-7 off.)
    smooth_average_segments: int = 32
    smooth_teacher_segments: int = 8
    smooth_teacher_legendre: int = 10
    smooth_teacher_width: float = 10.0
    smooth_knee_stride: int = 1
    smooth_hermite_w: int = 10
    smooth_hermite_xi: int = 24
    smooth_switch_rule: bool = True  # (with at least SWITCH_MIN_NODES nodes in xi)
    smooth_grid: int = 9
    smooth_levels: int = 7
    smooth_tail: int = 4
    smooth_legendre: int = 8
    smooth_chunk: int = 1536

    def coarse(self) -> "QuadratureConfig":
        """The rules the multi-start surveys with (several times cheaper; the channels'
        functions within 3e-3 relative of the full rules'): fewer Legendre nodes a
        segment and Hermite nodes for the channels' teacher averages, the smooth
        channels' rules halved (Gauss-Hermite in the teacher's noise) but for the
        Legendre nodes of each posterior's segments and the likelihood's uniform levels
        there (with half of either the coarse map's derivatives were far from the full
        map's, and the refinement's chord steps, which use them, gained less: with half
        the nodes, the derivatives in ``V`` were up to half the full map's; with 4 levels
        instead of 7, a chord step shrank a two-layer tanh chain's residual at weight
        scale 1 about 180 times instead of 10^5 times) and the teacher's saturation
        breakpoints (the same reason, from weight scale 1 up), and
        two thirds of the uniform segments and two fewer graded ones a kink in the
        channels' teacher averages (ReLU's functions within 1.5e-3 relative of the full
        rules' on 200 random points, hardtanh's within 2.7e-3). The prior's rules are
        left as they are (they are cheap)."""
        prior_bulk, prior_grades = self._prior_sizes()
        return dataclasses.replace(
            self, bulk_segments=max(self.bulk_segments * 2 // 3, 6), grades=max(self.grades - 2, 4),
            prior_bulk_segments=prior_bulk, prior_grades=prior_grades,
            legendre=max(self.legendre // 2, 3), hermite_w=max(self.hermite_w // 2, 4),
            hermite_xi=max(self.hermite_xi // 3, 6), output_hermite_w=max(self.output_hermite_w // 2, 4),
            output_grades=max(self.output_grades // 2, 4), sharp_legendre=max(self.sharp_legendre // 2, 3),
            sharp_hermite_xi=max(self.sharp_hermite_xi // 3, 6), sharp_hermite_w=max(self.sharp_hermite_w // 2, 4),
            sign_hermite_w=max(self.sign_hermite_w // 2, 4), atom_switch_rule=False,
            atom_hermite_w=max(self.atom_hermite_w // 2, 4),
            smooth_teacher_segments=max(self.smooth_teacher_segments // 2, 6),
            smooth_teacher_legendre=max(self.smooth_teacher_legendre // 2, 3),
            smooth_hermite_w=max(self.smooth_hermite_w // 2, 4), smooth_hermite_xi=max(self.smooth_hermite_xi // 2, 6),
            smooth_switch_rule=False,
            smooth_grid=max(self.smooth_grid // 2, 2),
            smooth_levels=self.smooth_levels, smooth_tail=max(self.smooth_tail // 2, 1),
            smooth_chunk=8 * self.smooth_chunk)

    def rough(self) -> "QuadratureConfig":
        """The rules a multi-start scouts with before its survey where the refinement takes
        chord steps (chains with smooth activations): the coarse rules with the smooth
        channels' posteriors and teacher noises cut further (half the Legendre nodes a
        segment and 4 of the 7 likelihood levels in each posterior, 3 Gauss-Hermite nodes
        in ``w`` and 6 in ``xi``, every other saturation breakpoint of the teacher): a tanh
        layer's evaluation a fifth to a sixth of the coarse one's, its functions within
        4e-3 relative of the full rules' (150 random points, ``A`` 1e-2..1e5, ``V``
        1e-6 ``rho``..``rho``, ``rho`` 1..100; tanh, erf, softplus and tanh with noise
        after it), as close as the coarse rules of the piecewise channels. Enough to find
        which fixed point a start runs to, which the coarse rules then settle and measure
        the Jacobian at; every other size is the coarse rules'."""
        return dataclasses.replace(self.coarse(), smooth_knee_stride=2 * self.smooth_knee_stride,
                                   smooth_legendre=max(self.smooth_legendre // 2, 3),
                                   smooth_levels=max(self.smooth_levels // 2 + 1, 3),
                                   smooth_hermite_w=max(self.smooth_hermite_w // 3, 3),
                                   smooth_hermite_xi=max(self.smooth_hermite_xi // 4, 6))

    def for_output(self) -> "QuadratureConfig":
        return dataclasses.replace(
            self, grade_ratio=self.output_grade_ratio, grades=self.output_grades, legendre=self.legendre + 2,
            hermite_w=self.output_hermite_w,
        )

    def for_sharp(self) -> "QuadratureConfig":
        """The hidden rules refined for a sharp likelihood (the ``sharp_*`` sizes): the
        piecewise channels' with noise after the activation."""
        return dataclasses.replace(self, legendre=self.sharp_legendre, hermite_xi=self.sharp_hermite_xi,
                                   hermite_w=self.sharp_hermite_w)

    def _prior_sizes(self) -> tuple[int, int]:
        """The prior's uniform segments and grades."""
        bulk = self.bulk_segments if self.prior_bulk_segments is None else self.prior_bulk_segments
        return bulk, self.grades if self.prior_grades is None else self.prior_grades

    def for_prior(self) -> "QuadratureConfig":
        bulk, grades = self._prior_sizes()
        return dataclasses.replace(self, legendre=self.prior_legendre, bulk_segments=bulk, grades=grades)


DEFAULT = QuadratureConfig()


def hermite_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights with ``sum_i w_i f(x_i) ~= E f(z)``, ``z ~ N(0, 1)``."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / math.sqrt(2.0 * math.pi)


def legendre_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on ``[-1, 1]``."""
    return np.polynomial.legendre.leggauss(n)


def far_end(sd, cfg: QuadratureConfig):
    """How far the composite rule reaches: 1.5x its bulk. Kinks in the far tail still get
    their graded segments out to there: an average that is itself tiny (an mmse of
    1e-23) may live entirely there."""
    return 1.5 * (cfg.half_width * sd)


def _breakpoints(sd, kinks, scale, cfg: QuadratureConfig, points=(), reach=None):
    """Sorted breakpoints of the composite rule (see the module docstring), with
    ``points`` added as they are (no graded segments around them) and the graded
    segments out to ``reach`` from each kink (None: the rule's far end)."""
    half = cfg.half_width * sd
    far = far_end(sd, cfg)
    pts = [jnp.linspace(-half, half, cfg.bulk_segments + 1)]
    powers = np.arange(cfg.grades) / max(cfg.grades - 1, 1)
    scales = scale if isinstance(scale, (tuple, list)) else [scale] * len(kinks)
    for k, sc in zip(kinks, scales):
        k = jnp.asarray(k, dtype=jnp.float64)
        sc = jnp.asarray(sc, dtype=jnp.float64)
        if cfg.adaptive_grading:
            # Geometric from `sc` to `reach`, or to the far end of the rule seen from the
            # kink, so that no graded segment falls outside it; the ratio is capped at
            # grade_ratio (beyond the capped grading the bulk segments take over).
            span = far + jnp.abs(k)
            if reach is not None:
                span = jnp.minimum(span, reach)
            ratio = jnp.clip((span / sc) ** (1.0 / max(cfg.grades - 1, 1)), 1.0, cfg.grade_ratio)
            offsets = sc * ratio ** (powers * max(cfg.grades - 1, 1))
        else:
            offsets = sc * cfg.grade_ratio ** np.arange(cfg.grades)
        pts.append(jnp.clip(jnp.stack([k]), -far, far))
        pts.append(jnp.clip(k - offsets, -far, far))
        pts.append(jnp.clip(k + offsets, -far, far))
    if len(points):
        pts.append(jnp.clip(jnp.asarray(points, dtype=jnp.float64).reshape(-1), -far, far))
    return jnp.sort(jnp.concatenate(pts))


def kinked_gaussian_rule(sd, kinks=(), scale=1.0, cfg: QuadratureConfig = DEFAULT, even: bool = False,
                         points=(), reach=None):
    """Composite rule for ``E f(y)``, ``y ~ N(0, sd^2)``, with ``f`` kinked at ``kinks``.

    ``f`` may change on the length ``scale`` near each kink (one number, or one per
    kink) and takes its form away from the kink within ``reach`` of it (the graded
    segments span that; None: out to the rule's far end); ``points`` are further
    breakpoints, without grading (where ``f`` bends on a length the caller knows).
    Returns ``(y, w)`` with
    ``sum_i w_i f(y_i) ~= E f(y)``; segments of zero length (breakpoints clipped to
    the domain) carry zero weight.

    ``even=True`` (static) is for an ``f`` with ``f(-y) = f(y)`` and kinks placed
    symmetrically about 0 (with equal scales): the rule is then the half of the full
    rule on ``y >= 0`` (the full rule's breakpoints, ``points`` included, must be
    symmetric, so that half is theirs from 0 on) with doubled weights: the same sum to
    round-off, for half the nodes.
    """
    sd = jnp.asarray(sd, dtype=jnp.float64)
    bp = _breakpoints(sd, kinks, scale, cfg, points, reach)
    if even:
        n = bp.shape[0]
        # A symmetric set of odd size has 0 in the middle; of even size, 0 is not in it.
        bp = bp[n // 2:].at[0].set(0.0) if n % 2 else jnp.concatenate([jnp.zeros(1), bp[n // 2:]])
    x, w = legendre_rule(cfg.legendre)
    left, right = bp[:-1, None], bp[1:, None]
    half_len = 0.5 * (right - left)
    y = (0.5 * (left + right) + half_len * x).reshape(-1)
    weights = (half_len * w).reshape(-1)
    density = jnp.exp(-0.5 * (y / sd) ** 2 - 0.5 * LOG_2PI) / sd
    return y, weights * density * (2.0 if even else 1.0)
