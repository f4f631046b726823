"""Flax NNX networks the replica formula can measure: USV layers, dense layers, builders.

``USV`` layers (``W = U diag(S) V``, only ``S`` trained) keep the weights
orthogonally invariant, so that the replica entropies of the network stay valid
during training (Gabrie et al. 2018, section 3); their spectrum is ``S^2``.
"""

from .convert import SpectralLayer, chain_from_spectra, channel, network_layers
from .layers import USV, Dense, Frozen, gaussian_matrix
from .network import ACTIVATIONS, Network, activate, build_network

__all__ = [
    "ACTIVATIONS",
    "Dense",
    "Frozen",
    "Network",
    "SpectralLayer",
    "USV",
    "activate",
    "build_network",
    "chain_from_spectra",
    "channel",
    "gaussian_matrix",
    "network_layers",
]
