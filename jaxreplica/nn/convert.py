"""From a network (and the data model in front of it) to a replica :class:`jaxreplica.Chain`.

The chain whose entropies a training monitor needs is the one of the original
experiment code (``lsd``, ``Information.match_mi_layers`` and
``MIHistory.on_epoch_end``)::

    prior  ->  generative layers (if any)  ->  network layers 1..l

* the prior is the distribution of the data model's *first* variable: the input
  ``X`` of a teacher-student task, the code ``Y`` of a generative-recognition task;
* each generative layer ``X = phi(W_gen Y + noise)`` enters with the spectrum of
  ``W_gen^T W_gen`` and its own noise variance;
* network layers ``1..l-1`` get the *hidden* noise (default 0) and layer ``l``, the
  one being measured, the *last-layer* noise (default ``1e-5``).

Entropies come out per unit of the chain's first dimension ``n_0`` (``n_Y`` when a
generative part is present, as in the paper's Figure 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["SpectralLayer", "channel", "chain_from_spectra", "network_layers"]


@dataclass(frozen=True)
class SpectralLayer:
    """What the replica formula needs of one layer: spectrum of ``W^T W``, ``alpha``, activation.

    ``noise`` is the variance of the Gaussian noise added before the activation
    (``None``: decided by :func:`chain_from_spectra`, hidden or last-layer noise).
    """

    spectrum: np.ndarray
    alpha: float
    activation: str
    noise: float | None = None


def channel(activation: str, noise: float):
    """The engine's channel for a network activation: ``linear -> Linear``, ``relu -> ReLU``,
    ``hardtanh -> HardTanh(threshold=1)``, ``probit -> Probit``."""
    import jaxreplica as jr

    if activation == "linear":
        return jr.Linear(noise=noise)
    if activation == "relu":
        return jr.ReLU(noise=noise)
    if activation == "hardtanh":
        return jr.HardTanh(noise=noise, threshold=1.0)
    if activation in ("probit", "sign"):
        return jr.Probit(noise=noise)
    raise ValueError(f"activation: {activation!r} has no replica channel (softmax output layers cannot be tracked)")


def chain_from_spectra(prior, layers: Sequence[SpectralLayer], *, hidden_noise: float = 0.0,
                       last_noise: float = 1e-5):
    """``Chain(prior, [(Empirical(spectrum_k, alpha_k), channel_k(noise_k)), ...])``.

    ``noise_k`` is the layer's own ``noise`` when set (generative layers), else
    ``hidden_noise`` for every layer but the last and ``last_noise`` for the last.
    """
    import jaxreplica as jr

    if not layers:
        raise ValueError("layers: a chain needs at least one layer")
    if not last_noise > 0:
        raise ValueError(f"last_noise must be positive for a finite entropy, got {last_noise!r}")
    if hidden_noise < 0:
        raise ValueError(f"hidden_noise must be non-negative, got {hidden_noise!r}")
    out = []
    for k, layer in enumerate(layers):
        if layer.noise is not None:
            noise = float(layer.noise)
        else:
            noise = float(last_noise) if k == len(layers) - 1 else float(hidden_noise)
        ens = jr.Empirical(eigenvalues=np.asarray(layer.spectrum, dtype=np.float64), alpha=float(layer.alpha))
        out.append((ens, channel(layer.activation, noise)))
    return jr.Chain(prior=prior, layers=out)


def network_layers(network, upto: int | None = None) -> list[SpectralLayer]:
    """:class:`SpectralLayer` list for layers ``1..upto`` of a :class:`~jaxreplica.nn.Network`."""
    upto = network.n_layers if upto is None else upto
    if not 1 <= upto <= network.n_layers:
        raise ValueError(f"upto must be in 1..{network.n_layers}, got {upto!r}")
    spectra = network.spectra(range(1, upto + 1))
    return [SpectralLayer(np.asarray(s, dtype=np.float64), network.alphas[l], network.activations[l])
            for l, s in enumerate(spectra)]
