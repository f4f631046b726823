"""Flax NNX networks the replica formula can measure: USV layers, dense layers, builders.

``USV`` layers (``W = U diag(S) V``, only ``S`` trained) keep the weights
orthogonally invariant, so that the replica entropies of the network stay valid
during training (Gabrie et al. 2018, section 3); their spectrum is ``S^2``.
"""

from jaxreplica.nn.layers import USV, Dense, Frozen, gaussian_matrix
from jaxreplica.nn.network import Network, activate, build_network

__all__ = ["Dense", "Frozen", "Network", "USV", "activate", "build_network", "gaussian_matrix"]
