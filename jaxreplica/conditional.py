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

import jax.numpy as jnp

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
        return self.channel.known_field_functions(A, self.rho, cfg)

    def extrinsic_precision(self, A, mmse):
        return self.channel.hidden_extrinsic(A, 0.0, jnp.inf, mmse)[1]

    def invalid(self):
        return super().invalid() | self.channel.invalid()


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
