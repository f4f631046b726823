"""Sample-based information estimators (all arrays ``(n, d)``, all results in nats).

* :func:`knn_entropy` -- Kozachenko-Leonenko k-nearest-neighbour entropy;
* :func:`ksg_mutual_information` -- Kraskov-Stoegbauer-Grassberger mutual information;
* :func:`pairwise_entropy_bound`, :func:`bhattacharyya_entropy_bound`,
  :func:`pairwise_entropy_bounds` -- Kolchinsky-Tracey bounds on a Gaussian-mixture entropy,
  and :func:`fit_mixture_variance` -- the leave-one-out maximum-likelihood variance of
  such a mixture fit to samples;
* :func:`smoothed_entropy` -- Gaussian-smoothed plug-in ``h(P_n * N)`` by Monte Carlo;
* :func:`noisy_network_information` -- ``I(X; T_l)`` of every layer of a noisy network;
* :func:`binned_entropy` -- discrete entropy of the joint bin code;
* :func:`discrete_awgn_mutual_information` -- exact ``I(X; X + Z)`` for a discrete
  scalar input (quadrature), for checks.

Pairwise computations run over blocks of rows (``lax.map``) so that their memory is
``O(block * n)``: ``n = 10^4`` samples of dimension 1000 fit a few hundred MB.
Every entry point validates its arguments in plain Python (``ValueError`` naming
the parameter) and calls a ``jax.jit``-compiled core whose integer arguments are
static.
"""

from .awgn import discrete_awgn_mutual_information
from .binning import binned_entropy
from .knn import knn_entropy, ksg_mutual_information
from .noisy import LayerInformation, noisy_network_information
from .pairwise import (
    EntropyBounds,
    MixtureVarianceFit,
    bhattacharyya_entropy_bound,
    fit_mixture_variance,
    pairwise_entropy_bound,
    pairwise_entropy_bounds,
)
from .smoothed import MonteCarloEstimate, gaussian_entropy, smoothed_entropy

__all__ = [
    "EntropyBounds",
    "LayerInformation",
    "MixtureVarianceFit",
    "MonteCarloEstimate",
    "bhattacharyya_entropy_bound",
    "binned_entropy",
    "discrete_awgn_mutual_information",
    "fit_mixture_variance",
    "gaussian_entropy",
    "knn_entropy",
    "ksg_mutual_information",
    "noisy_network_information",
    "pairwise_entropy_bound",
    "pairwise_entropy_bounds",
    "smoothed_entropy",
]
