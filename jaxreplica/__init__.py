"""jaxreplica: replica-formula entropies and mutual informations of wide stochastic networks.

Importing jaxreplica switches JAX to 64-bit floats (``jax_enable_x64``): the replica
engine compares entropies to 1e-6 and better, which float32 cannot do. Arrays you
create afterwards with ``jnp`` default to float64 too; pass ``dtype=jnp.float32``
explicitly where you want single precision (e.g. large training batches).

It also turns on JAX's persistent compilation cache in ``~/.cache/jaxreplica`` (see
:mod:`jaxreplica._cache`: ``JAXREPLICA_CACHE_DIR`` moves it, ``JAXREPLICA_CACHE_DIR=off``
switches it off), so that compiled solver programs outlive the process.
"""

import jax

jax.config.update("jax_enable_x64", True)

from jaxreplica import _cache  # noqa: E402

CACHE_DIR = _cache.configure()

from jaxreplica.priors import Normal, Bimodal, SpikeSlab  # noqa: E402
from jaxreplica.channels import Linear, ReLU, LeakyReLU, HardTanh, Probit, Switched  # noqa: E402
from jaxreplica.smooth_channels import Tanh, Sigmoid, Softplus, ELU, Erf, Activation  # noqa: E402
from jaxreplica.ensembles import Gaussian, Empirical  # noqa: E402
from jaxreplica.chain import Chain, SpectralLayer, chain_from_spectra  # noqa: E402
from jaxreplica.potential import OrderParameters, phi  # noqa: E402
from jaxreplica.quadrature import QuadratureConfig  # noqa: E402
from jaxreplica.schemes import VAMP, FixedPoint  # noqa: E402
from jaxreplica.solution import Solution, Branches, LayerSolutions, Status  # noqa: E402
from jaxreplica.solvers import solve, solve_layers, stationarity  # noqa: E402
from jaxreplica import exact  # noqa: E402
from jaxreplica import estimators  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Normal", "Bimodal", "SpikeSlab",
    "Linear", "ReLU", "LeakyReLU", "HardTanh", "Probit", "Switched",
    "Tanh", "Sigmoid", "Softplus", "ELU", "Erf", "Activation",
    "Gaussian", "Empirical", "Chain", "SpectralLayer", "chain_from_spectra", "OrderParameters", "phi", "QuadratureConfig",
    "VAMP", "FixedPoint", "Solution", "Branches", "LayerSolutions", "Status",
    "solve", "solve_layers", "stationarity", "exact", "estimators",
]
