"""The model: a prior and a list of ``(ensemble, channel)`` layers.

``Chain`` is a pytree (numbers are leaves; the number of layers and the kind of each
block are structure), so ``jit``, ``vmap`` over a batched leaf and ``grad`` with
respect to a leaf all work on it. Its methods compute the moments and ratios of
docs/theory.md, "The model".
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

import jaxreplica.activations as activations
from jaxreplica._struct import check, concrete, pytree
from jaxreplica.channel import Channel, averages_by_quadrature
from jaxreplica.ensembles import Empirical, Gaussian
from jaxreplica.priors import Prior

__all__ = ["Chain", "SpectralLayer", "chain_from_spectra"]


@pytree
class Chain:
    """``X ~ prior -> T_1 -> ... -> T_L`` with ``T_k = channel_k(W_k T_{k-1})``.

    Args:
      prior: ``Normal``, ``Bimodal`` or ``SpikeSlab``.
      layers: sequence of ``(ensemble, channel)`` pairs; the last channel must carry
        noise (``noise > 0``) for the entropy to be finite.
    """

    prior: Prior
    layers: tuple

    def __post_init__(self):
        if not isinstance(self.prior, Prior):
            raise ValueError(f"prior must be Normal, Bimodal or SpikeSlab (got {type(self.prior).__name__})")
        if not isinstance(self.layers, (tuple, list)) or not self.layers:
            raise ValueError("layers must be a non-empty list of (ensemble, channel) pairs, "
                             "e.g. [(jr.Gaussian(alpha=1.0), jr.Linear(noise=1e-5))]")
        for k, layer in enumerate(self.layers):
            if not isinstance(layer, (tuple, list)) or len(layer) != 2:
                raise ValueError(f"layers[{k}] must be an (ensemble, channel) pair such as "
                                 f"(jr.Gaussian(alpha=1.0), jr.ReLU(noise=0.0)); got {type(layer).__name__}")
        layers = tuple(tuple(layer) for layer in self.layers)
        for k, (ens, ch) in enumerate(layers):
            if not isinstance(ens, (Gaussian, Empirical)):
                raise ValueError(f"layers[{k}][0] must be Gaussian or Empirical (got {type(ens).__name__})")
            if not isinstance(ch, Channel):
                raise ValueError(f"layers[{k}][1] must be a channel (got {type(ch).__name__})")
        last_noise = concrete(layers[-1][1].output_noise())
        if last_noise is not None and not (last_noise > 0).all():
            raise ValueError("the last layer needs noise (noise > 0 before the activation or noise_after > 0): "
                             "without it the entropy is -infinity")
        object.__setattr__(self, "layers", layers)

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def ensembles(self):
        return [e for e, _ in self.layers]

    @property
    def channels(self):
        return [c for _, c in self.layers]

    def alphas(self):
        return [e.alpha for e in self.ensembles]

    def cumulative_alphas(self):
        """``[talpha_0, ..., talpha_L]`` with ``talpha_k = n_k/n_0``."""
        out = [jnp.ones(())]
        for a in self.alphas():
            out.append(out[-1] * a)
        return out

    def moments(self):
        """``(rho, trho)``: second moments of each layer's input and of its ``z = W t``."""
        rho, trho = [self.prior.second_moment()], []
        for k, (ens, ch) in enumerate(self.layers):
            trho.append(ens.mean_eigenvalue() * rho[-1] / ens.alpha)
            if k + 1 < self.depth:  # the last channel's output moment is not needed
                rho.append(ch.second_moment(trho[-1]))
        return rho, trho

    def invalid(self):
        """True (as an array) when a number of the chain is out of range: what the
        constructors refuse eagerly, checked on traced values (inside ``jit``), plus a
        last layer without noise (its entropy is minus infinity)."""
        out = self.prior.invalid()
        for ens, ch in self.layers:
            out = out | ens.invalid() | ch.invalid()
        return out | ~(jnp.asarray(self.channels[-1].output_noise()) > 0)

    def averages_hidden_layers(self, posterior_quadrature: bool = False) -> bool:
        """Whether a solver's sweep evaluates a hidden layer's averages by quadrature
        (static): at a hidden channel without closed forms, at a last channel with noise
        after its activation (its functions are the hidden ones at SNR
        ``1/noise_after``), or at a prior that is a channel's output law. With
        ``posterior_quadrature``, only averages that integrate each posterior by
        quadrature as well (smooth activations)."""
        return (any(averages_by_quadrature(ch, posterior_quadrature) for ch in self.channels[:-1])
                or self.channels[-1].output_averages_a_hidden_layer(posterior_quadrature)
                or self.prior.averages_a_hidden_layer(posterior_quadrature))

    def hidden_noiseless(self):
        """True (as an array) when every layer but the last has zero noise."""
        flags = [jnp.asarray(ch.output_noise()) == 0 for ch in self.channels[:-1]]
        out = jnp.array(True)
        for f in flags:
            out = out & f
        return out

    def truncated(self, depth: int, noise=None) -> "Chain":
        """The chain cut after ``depth`` layers; its last channel's noise is replaced
        by ``noise`` if given (see :func:`jaxreplica.solve_layers`)."""
        layers = list(self.layers[:depth])
        if noise is not None:
            ens, ch = layers[-1]
            layers[-1] = (ens, ch.replace(noise=noise))
        return self.replace(layers=tuple(layers))


@pytree
class SpectralLayer:
    """What the replica formula needs of one weight layer.

    * ``spectrum``: eigenvalues of ``W^T W`` (``n_in`` of them, zeros included);
    * ``alpha``: ``n_out / n_in``;
    * ``activation``: a name of :data:`jaxreplica.activations.ACTIVATIONS`, or a channel
      whose noise :func:`chain_from_spectra` replaces;
    * ``noise``: variance added before the activation; ``None`` lets
      :func:`chain_from_spectra` choose (hidden or last-layer noise).
    """

    _static = ("activation",)

    spectrum: jax.Array
    alpha: float
    activation: object
    noise: float | None = None


def chain_from_spectra(prior, layers: Sequence[SpectralLayer], *, hidden_noise=0.0, last_noise=1e-5,
                       noise_position: str = "before") -> Chain:
    """``Chain(prior, [(Empirical(spectrum_k, alpha_k), channel_k(noise_k)), ...])``.

    ``noise_k`` is the layer's own ``noise`` when set (e.g. a data model's generative
    layers), else ``last_noise`` for the last layer and ``hidden_noise`` for the others.
    ``noise_position`` (``"before"``, ``"after"`` or ``"both"``) says where the
    network layers' noise enters (:func:`jaxreplica.activations.channel`); a layer's own
    ``noise`` always enters before its activation.
    Traceable: spectra and noises may be tracers (``jax.grad`` through the chain works),
    so every use (training monitor, information penalty, weight-scale sweeps) builds
    its chains here.
    """
    if not layers:
        raise ValueError("layers: a chain needs at least one layer")
    check("last_noise", last_noise, positive=True)
    check("hidden_noise", hidden_noise, nonnegative=True)
    activations.check_position(noise_position)
    blocks = []
    for k, layer in enumerate(layers):
        if layer.noise is not None:
            noise, position = layer.noise, "before"
        else:
            noise, position = (last_noise if k == len(layers) - 1 else hidden_noise), noise_position
        ensemble = Empirical(eigenvalues=jnp.asarray(layer.spectrum, dtype=jnp.float64), alpha=layer.alpha)
        blocks.append((ensemble, activations.channel(layer.activation, noise, position)))
    return Chain(prior=prior, layers=blocks)
