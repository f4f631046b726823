"""What every channel gives the solvers, and noise after the activation for all of them.

A layer's channel is ``t = phi(z + xi_in + bias) + xi_out``, ``xi_in ~ N(0, noise)``,
``xi_out ~ N(0, noise_after)``. A subclass describes the channel *without* the noise
after the activation through six methods (the "core"):

* ``_second_moment(rho)``: ``E t^2`` for ``z ~ N(0, rho)``;
* ``_hidden(A, V, rho, cfg)``: ``(I_hidden - A rho_next/2, Ahat, Vhat)``, the reduced free
  entropy of a hidden layer and its two derivatives (docs/theory.md, "Scalar channels");
* ``_output(V, rho, cfg)``: ``(I_last, Ahat_last)`` of the last layer;
* ``_noise_free(rho, cfg)``: ``I_last(0, rho)``, minus the entropy the noise adds;
* ``_output_extrinsic(V, ahat)``, ``_hidden_extrinsic(A, V, ahat, vhat)``: the messages
  ``1/Ahat - V`` (and ``1/Vhat - A``), where a subclass may know a cancellation-free form.

Noise after the activation is then exact and costs nothing new:

* hidden layer: integrating the Gaussian ``xi_out`` out of ``exp(-A t^2/2 + B t)`` leaves
  the same function of ``phi`` at ``A' = A/(1 + A d)``, ``B' = B/(1 + A d)``
  (``d = noise_after``), and the teacher's ``B'`` has exactly the law of a field of SNR
  ``A'``. So ``I = I_0(A') - log(1 + A d)/2`` (reduced), ``Ahat = Ahat_0(A')``,
  ``Vhat = Vhat_0(A')/(1 + A d)^2 + d/(1 + A d)``;
* last layer: the observation ``t + xi_out`` is a Gaussian field of SNR ``1/d`` on ``t``,
  so ``I_last = I_0(1/d, V) - log(2 pi e d)/2`` and ``Ahat_last = Ahat_0(1/d, V)``, the
  hidden functions at ``A = 1/d``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from jaxreplica._struct import Validated
from jaxreplica.priors import MMSE_FLOOR
from jaxreplica.gaussian import gaussian_entropy
from jaxreplica.quadrature import DEFAULT, QuadratureConfig

__all__ = ["Channel", "averages_by_quadrature"]


def averages_by_quadrature(channel, posterior_quadrature: bool = False) -> bool:
    """Whether ``channel``'s hidden average is a quadrature (it has no closed form) or,
    with ``posterior_quadrature``, one that integrates each posterior by quadrature too."""
    return channel.posterior_quadrature if posterior_quadrature else not channel.closed_form


class Channel(Validated):
    """The protocol of a channel (see the module docstring). Subclasses are pytree
    dataclasses with fields ``noise`` (variance before the activation), ``noise_after``
    (variance after it) and ``bias``; for the last two ``None``, the default, means none,
    which is part of the structure: a channel without a bias whose activation is odd
    (``odd``: hardtanh, sign, tanh, erf) has even replica integrands, and its averages
    over the teacher's pre-activation take the half line ``y0 >= 0`` only (half the work,
    same numbers to round-off). ``bias=0.0`` is a traced number like any other (use it to
    differentiate with respect to the bias) and takes the whole line."""

    noise: float
    noise_after: float | None
    bias: float | None
    _rules = {"noise": "nonnegative", "noise_after": "nonnegative", "bias": "finite"}
    odd = False  # phi(-y) = -phi(y)
    closed_form = False  # every function in closed form (no quadrature rule used)
    # A hidden layer's average integrates each posterior by quadrature too (four
    # dimensions; its full rules cost tens of times the coarse ones).
    posterior_quadrature = False

    @property
    def shift(self):
        """The bias, ``0.0`` when there is none."""
        return 0.0 if self.bias is None else self.bias

    @property
    def symmetric(self) -> bool:
        """Static: the replica integrands are even in the teacher's pre-activation (an odd
        activation and no bias), so its averages may fold the half line ``y0 < 0`` onto
        ``y0 > 0``."""
        return self.odd and self.bias is None

    # -- the core, without noise after the activation ---------------------------------
    def activation(self, y):
        """``phi(y + bias)`` (the noiseless activation)."""
        raise NotImplementedError

    def _second_moment(self, rho):
        raise NotImplementedError

    def _hidden(self, A, V, rho, cfg: QuadratureConfig):
        raise NotImplementedError

    def _hidden_sharp(self, A, V, rho, cfg: QuadratureConfig):
        """:meth:`_hidden` with noise after the activation (the functions at
        ``A/(1 + A noise_after)``, or at ``1/noise_after`` for a last layer), where the
        likelihood is sharp against the student's prior and switches between an
        activation's pieces. A subclass may refine its rules there."""
        return self._hidden(A, V, rho, cfg)

    def _output(self, V, rho, cfg: QuadratureConfig):
        raise NotImplementedError

    def _noise_free(self, rho, cfg: QuadratureConfig):
        raise NotImplementedError

    def _output_extrinsic(self, V, ahat):
        return 1.0 / ahat - V

    def mean_square_slope(self, rho):
        """``E phi'(z + bias)^2``, ``z ~ N(0, rho)`` (no noise): how fast a known field's
        output spreads as noise enters before the activation (infinite where ``phi``
        jumps)."""
        raise NotImplementedError

    def _hidden_extrinsic(self, A, V, ahat, vhat):
        return 1.0 / ahat - V, 1.0 / jnp.maximum(vhat, MMSE_FLOOR) - A

    # -- what the solvers call ----------------------------------------------------------
    def output_noise(self):
        """The total variance of the noise, before and after the activation."""
        return self.noise if self.noise_after is None else self.noise + self.noise_after

    def second_moment(self, rho):
        """``rho_next = E t^2`` with ``z ~ N(0, rho)``."""
        m2 = self._second_moment(rho)
        return m2 if self.noise_after is None else m2 + self.noise_after

    def hidden_functions(self, A, V, rho, cfg: QuadratureConfig = DEFAULT):
        """``(I_hidden - A rho_next/2, Ahat, Vhat)`` at ``(A, V, rho)`` (the free entropy
        reduced by its trivial part, which the potential cancels exactly)."""
        if self.noise_after is None:
            return self._hidden(A, V, rho, cfg)
        A = jnp.asarray(A, dtype=jnp.float64)
        q = 1.0 + A * self.noise_after
        free, ahat, vhat = self._hidden_sharp(A / q, V, rho, cfg)
        return free - 0.5 * jnp.log(q), ahat, vhat / (q * q) + self.noise_after / q

    def hidden_free_entropy(self, A, V, rho, cfg: QuadratureConfig = DEFAULT):
        """``I_hidden(A, V, rho) = E log Z`` (not reduced)."""
        return self.hidden_functions(A, V, rho, cfg)[0] + 0.5 * A * self.second_moment(rho)

    def _after(self, with_noise, without):
        """A last layer's ``with_noise(noise_after)`` where ``noise_after > 0``; where it
        is zero (a traced number), ``without()``: the channel without noise after, whose
        derivative in ``noise_after`` is NaN (not computed: infinite where the output
        has atoms, jumps or a bounded range, finite elsewhere; the linear channel, where
        the noise after adds to the one before, has its own)."""
        d = jnp.asarray(self.noise_after, dtype=jnp.float64)
        on = d > 0
        # (the branch not taken sees a harmless d: under vmap both run)
        def at_zero():
            slope = _slope_unknown_at_zero(d)
            return jax.tree_util.tree_map(lambda v: v + slope, without())

        return jax.lax.cond(on, lambda: with_noise(jnp.where(on, d, 1.0)), at_zero)

    def output_functions(self, V, rho, cfg: QuadratureConfig = DEFAULT):
        """``(I_last(V, rho), Ahat_last(V, rho))``."""
        if self.noise_after is None:
            return self._output(V, rho, cfg)
        return self._after(lambda d: self._output_after(d, V, rho, cfg), lambda: self._output(V, rho, cfg))

    def _output_after(self, d, V, rho, cfg: QuadratureConfig):
        """``(I_last, Ahat_last)`` with noise ``d > 0`` after the activation: the hidden
        functions at ``A = 1/d`` (see the module docstring)."""
        free, ahat, _ = self._hidden_sharp(1.0 / d, V, rho, cfg)
        return free - gaussian_entropy(d), ahat

    def output_averages_a_hidden_layer(self, posterior_quadrature: bool = False) -> bool:
        """Whether :meth:`output_functions` is a hidden layer's average by quadrature (noise
        after an activation without closed forms); with ``posterior_quadrature``, one
        whose posteriors are integrated by quadrature as well. Static."""
        return self.noise_after is not None and averages_by_quadrature(self, posterior_quadrature)

    def output_free_entropy(self, V, rho, cfg: QuadratureConfig = DEFAULT):
        return self.output_functions(V, rho, cfg)[0]

    def noise_free_entropy(self, rho, cfg: QuadratureConfig = DEFAULT):
        """``I_last(0, rho) = E log p(t | z)``: minus the entropy the noise adds."""
        if self.noise_after is None:
            return self._noise_free(rho, cfg)
        # (with the field known: without noise before, -log(2 pi e d)/2 exactly, and
        # derivatives that the quadrature at s = 0 does not have)
        plain = self.replace(noise_after=None)

        def with_noise(d):
            return plain.known_field_functions(1.0 / d, rho, cfg)[0] - gaussian_entropy(d)

        return self._after(with_noise, lambda: self._noise_free(rho, cfg))

    def output_extrinsic_variance(self, V, ahat):
        """``1/Ahat_last - V``: the variance of ``z`` the observation leaves (ML-VAMP's
        ``1/a1z``)."""
        if self.noise_after is None:
            return self._output_extrinsic(V, ahat)
        return jnp.where(jnp.asarray(self.noise_after) > 0, 1.0 / ahat - V, self._output_extrinsic(V, ahat))

    def known_field_functions(self, A, rho, cfg: QuadratureConfig = DEFAULT):
        """The reduced hidden free entropy and ``Vhat`` at ``V = 0``: the student knows the
        field ``z ~ N(0, rho)``, only the channel's noise is left. Without noise before
        the activation in closed form, with derivatives (see :func:`_field_average`)."""
        return _field_average(self, rho, jnp.asarray(A, dtype=jnp.float64), cfg)

    def hidden_extrinsic(self, A, V, ahat, vhat):
        """``(1/Ahat - V, 1/Vhat - A)``: the extrinsic variance of ``z`` and precision of
        ``t`` of a hidden layer (ML-VAMP's ``1/a1z`` and ``a2x``); a ``Vhat`` that
        underflowed (the layer's output recovered exactly) is held at the floor."""
        if self.noise_after is None:
            return self._hidden_extrinsic(A, V, ahat, vhat)
        return Channel._hidden_extrinsic(self, A, V, ahat, vhat)


@jax.custom_jvp
def _slope_unknown_at_zero(d):
    """Zero, with a NaN derivative where ``d == 0`` (when ``d`` is differentiated; the
    derivative is zero where ``d != 0``, so that a vmapped lane that does not take this
    value gets no NaN in its reverse pass)."""
    return jnp.zeros_like(d)


def _slope_unknown_jvp(primals, tangents):
    (d,), (td,) = primals, tangents
    zero = jnp.zeros_like(d)
    if _symbolic_zero(td):
        return zero, zero
    return zero, jnp.where(d == 0, jnp.nan, 0.0) * td


_slope_unknown_at_zero.defjvp(_slope_unknown_jvp, symbolic_zeros=True)


def _hidden_at_known_field(channel, rho, A, cfg):
    """The quadrature, for a branch taken only where the noise is not zero: a harmless
    noise stands in for a zero, so that the branch, which under ``vmap`` is evaluated
    for every lane, has finite derivatives there."""
    noise = jnp.asarray(channel.noise, dtype=jnp.float64)
    channel = channel.replace(noise=jnp.where(noise == 0, 1.0, noise))
    free, _, vhat = channel.hidden_functions(A, 0.0, rho, cfg)
    return free, vhat


def _after_noise(channel):
    return jnp.asarray(0.0 if channel.noise_after is None else channel.noise_after, dtype=jnp.float64)


def _no_noise_before(channel):
    return jnp.asarray(channel.noise) == 0


def _known(A, d):
    """No noise before the activation: ``z`` known, ``t = phi(z) + xi_out`` is Gaussian
    around a known mean, so the reduced free entropy is ``-log(1 + A d)/2`` and
    ``Vhat = d/(1 + A d)`` (``d = noise_after``)."""
    return -0.5 * jnp.log1p(A * d), d / (1.0 + A * d)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _field_average(channel, rho, A, cfg):
    """:func:`_hidden_at_known_field`, in closed form (:func:`_known`) where the channel
    has no noise before its activation (the quadrature gives the same within 3e-14)."""
    return jax.lax.cond(_no_noise_before(channel), lambda: _known(A, _after_noise(channel)),
                        lambda: _hidden_at_known_field(channel, rho, A, cfg))


def _field_average_jvp(cfg, primals, tangents):
    """The quadrature's derivatives where there is noise before the activation. Without
    it, the closed form's in ``A`` and ``noise_after``, and in the noise before to first
    order: with a small noise ``n``, ``t`` given ``z`` is Gaussian of variance
    ``d + phi'(z)^2 n`` up to ``O(n^{3/2})`` (kinks), hence ``-A E phi'^2/(2 (1 + A d))``
    and ``E phi'^2/(1 + A d)^2`` (infinite for an activation that jumps: the sign's
    output flips with probability of order ``sqrt(n)``). No other parameter enters at
    ``n = 0``. Tangents come symbolic where zero: a noise before that is not
    differentiated adds nothing (not ``0 * inf``)."""
    channel, rho, A = primals
    fixed_noise = _symbolic_zero(tangents[0].noise)
    tch, _, tA = tangents = _instantiate(tangents)
    d = _after_noise(channel)
    td = _after_noise(tch)
    tn = jnp.asarray(tch.noise, dtype=jnp.float64)
    known_field = _no_noise_before(channel)

    def known():
        out, (tf, tv) = jax.jvp(_known, (A, d), (tA, td))
        if fixed_noise:
            return out, (tf, tv)
        # (zero in a lane that takes the quadrature: its reverse pass multiplies by zero)
        g2 = jnp.where(known_field, channel.mean_square_slope(rho), 0.0)
        q = 1.0 + A * d
        return out, (tf - 0.5 * A * g2 / q * tn, tv + g2 / (q * q) * tn)

    quadrature = lambda: jax.jvp(lambda c, r, a: _hidden_at_known_field(c, r, a, cfg), primals, tangents)  # noqa: E731
    return jax.lax.cond(known_field, known, quadrature)


_field_average.defjvp(_field_average_jvp, symbolic_zeros=True)


def _symbolic_zero(t) -> bool:
    return isinstance(t, SymbolicZero)


def _instantiate(tree):
    """Symbolic zero tangents as arrays of zeros."""
    return jax.tree_util.tree_map(lambda t: jnp.zeros(t.aval.shape, t.aval.dtype) if _symbolic_zero(t) else t,
                                  tree, is_leaf=_symbolic_zero)
