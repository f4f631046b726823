"""jaxreplica: replica-formula entropies and mutual informations of wide stochastic networks.

Importing jaxreplica switches JAX to 64-bit floats (``jax_enable_x64``): the replica
engine compares entropies to 1e-6 and better, which float32 cannot do. Arrays you
create afterwards with ``jnp`` default to float64 too; pass ``dtype=jnp.float32``
explicitly where you want single precision (e.g. large training batches).
"""

import jax

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
