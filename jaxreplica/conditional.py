"""``H(T_L | X)``: the entropy a chain keeps once its input is known.

``I(X; T_L) = H(T_L) - H(T_L | X)``. Given ``X = x``, the pre-activations ``z_1 = W_1 x`` of
the first layer are a fixed vector whose components are, in the wide limit, i.i.d.
``N(0, trho_1)`` (orthogonal invariance of ``W_1``), and ``T_1`` has independent
components ``t_i ~ P_1(t | z_i)``. So ``H(T_L | X)`` is the entropy of the chain
``T_1 -> ... -> T_L`` whose input law is that *random field* (docs/theory.md, "Noisy
networks"). Its prior functions are the first channel's hidden functions at ``V = 0``
(the student knows ``w = z``): free entropy ``I_hidden(A, 0, trho_1)``, error
``Vhat(A, 0, trho_1)``. Entropies convert with ``n_1/n_0``.

When every hidden layer is noiseless the answer is closed form: only the last layer's
noise is uncertain given ``x``, ``H(T_L | X)/n_0 = -talpha_L I_last(0, trho_L)``. A
noiseless first layer gives a deterministic random field (``Vhat = 0``): the solvers
treat it as an input recovered exactly (its extrinsic precision held at the floor), and
the conditional chain's entropy is then that of the chain starting at the second layer's
random field, times ``n_2/n_1``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from jaxreplica._struct import pytree
from jaxreplica.chain import Chain
from jaxreplica.channel import Channel, averages_by_quadrature
from jaxreplica.priors import Prior
from jaxreplica.quadrature import DEFAULT, QuadratureConfig

__all__ = ["RandomField", "conditional_chain", "per_input"]


@pytree
class RandomField(Prior):
    """The law of ``t = channel(z)`` with ``z ~ N(0, rho)`` quenched: ``x`` known, the
    field ``z`` given, only the channel's noise left.

    Args:
      channel: the first layer's channel (its noise before and after the activation).
      rho: the variance of ``z`` (``trho_1`` of the chain).
    """

    channel: Channel
    rho: float

    _rules = {"rho": "positive"}

    def second_moment(self):
        return self.channel.second_moment(self.rho)

    def averages_a_hidden_layer(self, posterior_quadrature: bool = False) -> bool:
        return averages_by_quadrature(self.channel, posterior_quadrature)

    def teacher_average(self, A, cfg: QuadratureConfig = DEFAULT):
        """The channel's reduced hidden free entropy and ``Vhat`` at ``V = 0``."""
        return _field_average(self.channel, self.rho, jnp.asarray(A, dtype=jnp.float64), cfg)

    def extrinsic_precision(self, A, mmse):
        return self.channel.hidden_extrinsic(A, 0.0, jnp.inf, mmse)[1]

    def invalid(self):
        return super().invalid() | self.channel.invalid()


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


def conditional_chain(chain: Chain) -> Chain:
    """``T_1 -> ... -> T_L`` given ``X``: the layers after the first, the first one's
    output law as prior. Its entropy times ``n_1/n_0`` is ``H(T_L | X)/n_0``."""
    if chain.depth < 2:
        raise ValueError("a one-layer chain has no conditional chain: H(T_1 | X) is the noise's entropy")
    _, trho = chain.moments()
    return Chain(prior=RandomField(channel=chain.channels[0], rho=trho[0]), layers=chain.layers[1:])


def per_input(chain: Chain, value):
    """``H(T_L | X)/n_0`` from the conditional chain's entropy per component ``value``
    (``n_1/n_0`` times it)."""
    return chain.ensembles[0].alpha * value
