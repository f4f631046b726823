"""Feed-forward networks of USV and dense layers, ``t_l = phi_l(W_l t_{l-1})``.

:func:`build_network` makes one from layer sizes ``[n_0, n_1, ..., n_L]``,
activations ``[phi_1, ..., phi_L]`` (names of :data:`jaxreplica.activations.ACTIVATIONS`;
``softmax`` on the output layer only) and per-layer USV flags.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxreplica.activations import canonical, function
from jaxreplica.nn.layers import USV, Dense

__all__ = ["Network", "build_network", "activate", "singular_values"]


def activate(name: str, z: jax.Array) -> jax.Array:
    """Apply the activation called ``name`` (see :mod:`jaxreplica.activations`)."""
    return function(name)(z)


class Network(nnx.Module):
    """``t_0 = x``, ``t_l = phi_l(W_l t_{l-1})`` for ``l = 1..L``; no biases, no noise.

    Attributes (static): ``sizes`` ``(n_0, ..., n_L)``, ``activations`` (canonical
    names), ``usv`` (per-layer flags). ``layers`` holds the :class:`USV` /
    :class:`Dense` modules; only their :class:`flax.nnx.Param` leaves are trainable.
    """

    def __init__(self, sizes: Sequence[int], activations: Sequence[str], usv: Sequence[bool] | bool = True, *,
                 rngs: nnx.Rngs, scale: float | Sequence[float] = 1.0, dtype=jnp.float64):
        sizes = tuple(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least an input and an output size, got {sizes!r}")
        for n in sizes:
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"sizes must be positive integers, got {sizes!r}")
        sizes = tuple(int(n) for n in sizes)
        n_layers = len(sizes) - 1
        activations = tuple(_canonical(a) for a in activations)
        if len(activations) != n_layers:
            raise ValueError(f"activations must have {n_layers} entries (one per layer), got {len(activations)}")
        if "softmax" in activations[:-1]:
            raise ValueError("activations: softmax is allowed on the output layer only")
        if isinstance(usv, (bool, np.bool_)):
            usv = (bool(usv),) * n_layers
        usv = tuple(bool(u) for u in usv)
        if len(usv) != n_layers:
            raise ValueError(f"usv must have {n_layers} flags (one per layer), got {len(usv)}")
        if np.ndim(scale) == 0:
            scale = (float(scale),) * n_layers
        scale = tuple(float(s) for s in scale)
        if len(scale) != n_layers:
            raise ValueError(f"scale must be a number or have {n_layers} entries, got {len(scale)}")
        self.sizes = sizes
        self.activations = activations
        self.usv = usv
        self.scales = scale
        layers = []
        for l in range(n_layers):
            cls = USV if usv[l] else Dense
            layers.append(cls(sizes[l], sizes[l + 1], rngs=rngs, scale=scale[l], dtype=dtype))
        self.layers = nnx.List(layers)

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def alphas(self) -> tuple[float, ...]:
        """``alpha_l = n_l / n_{l-1}``."""
        return tuple(self.sizes[l + 1] / self.sizes[l] for l in range(self.n_layers))

    def preactivations(self, x: jax.Array) -> list[jax.Array]:
        """``[z_1, ..., z_L]`` with ``z_l = W_l t_{l-1}`` (before the activation)."""
        zs = []
        t = x
        for layer, act in zip(self.layers, self.activations):
            z = layer(t)
            zs.append(z)
            t = activate(act, z)
        return zs

    def logits(self, x: jax.Array) -> jax.Array:
        """``z_L``: the output before its activation (what the cross-entropy uses)."""
        t = x
        for layer, act in zip(self.layers[:-1], self.activations[:-1]):
            t = activate(act, layer(t))
        return self.layers[-1](t)

    def __call__(self, x: jax.Array) -> jax.Array:
        return activate(self.activations[-1], self.logits(x))

    def spectra(self, layers: Sequence[int] | None = None) -> list[jax.Array]:
        """Eigenvalues of ``W_l^T W_l`` (length ``n_{l-1}``) for the 1-based ``layers`` (default all).

        USV layers read them off ``S`` (no eigendecomposition); dense layers use ``eigvalsh``.
        """
        idx = range(1, self.n_layers + 1) if layers is None else layers
        return [self.layers[l - 1].spectrum() for l in idx]

    def matrices(self) -> list[jax.Array]:
        """Materialised ``[W_1, ..., W_L]`` (``W_l`` is ``n_l x n_{l-1}``)."""
        return [layer.matrix() for layer in self.layers]


def _canonical(name) -> str:
    try:
        return canonical(name)
    except ValueError as err:
        raise ValueError(f"activations: {err}") from None


def build_network(sizes: Sequence[int], activations: Sequence[str], usv: Sequence[bool] | bool = True, *,
                  key: jax.Array | None = None, rngs: nnx.Rngs | None = None,
                  scale: float | Sequence[float] = 1.0, dtype=jnp.float64) -> Network:
    """Build a :class:`Network` from sizes, activations and per-layer USV flags.

    Give either ``key`` (a ``jax.random`` key) or ``rngs``. Weights start as
    ``N(0, scale_l^2 / n_{l-1})`` matrices (``scale`` one number or one per layer).

    Example: the paper's recognition net ``500-1000-500-250-100-2``::

        build_network([500, 1000, 500, 250, 100, 2],
                      ["linear", "relu", "linear", "relu", "softmax"],
                      usv=[True, True, True, True, False], key=jax.random.key(0))
    """
    if rngs is None:
        if key is None:
            raise ValueError("key: give a jax.random key or rngs")
        rngs = nnx.Rngs(params=key)
    return Network(sizes, activations, usv, rngs=rngs, scale=scale, dtype=dtype)


def singular_values(params, depth: int) -> list[jax.Array]:
    """``[S_1, ..., S_depth]`` of the USV layers of a network or of its ``nnx.Param`` state.

    ``params`` is a :class:`jaxreplica.nn.Network` or the ``params`` of
    ``nnx.split(network, nnx.Param, ...)`` (what the training step differentiates).
    """
    layers = params.layers if hasattr(params, "layers") else params["layers"]
    out = []
    for k in range(depth):
        layer = layers[k]
        s = layer.S if hasattr(layer, "S") else layer["S"]
        out.append(s[...])
    return out
