"""The one table from an activation's name to its replica channel and its function.

Everything that turns a name such as ``"relu"`` into something (a channel of a
:class:`~jaxreplica.Chain`, the forward pass of a network, a generative data model,
the sample-based curves of Figure 2) reads :data:`ACTIVATIONS`.

==========  ==================================  ==============================
name        ``phi(z)``                          replica channel
==========  ==================================  ==============================
linear      ``z``                               ``Linear``
relu        ``max(0, z)``                       ``ReLU``
leaky_relu  ``z`` if ``z > 0`` else ``0.1 z``   ``LeakyReLU`` (slope 0.1)
hardtanh    ``clip(z, -1, 1)``                  ``HardTanh(threshold=1)``
probit      ``sign(z)``                         ``Probit``
tanh        ``tanh(z)``                         ``Tanh``
sigmoid     ``1/(1 + exp(-z))``                 ``Sigmoid``
softplus    ``log(1 + exp(z))``                 ``Softplus``
elu         ``z`` if ``z > 0`` else ``e^z - 1``  ``ELU`` (alpha 1)
erf         ``erf(z)``                          ``Erf``
softmax     ``exp(z_i) / sum_j exp(z_j)``       none (a network's output only)
==========  ==================================  ==============================

Aliases: ``sign`` for ``probit``, ``identity`` for ``linear``. ``hardtanh`` is the
original Keras code's ``2 hard_sigmoid(2.5 z) - 1``, which is ``clip(z, -1, 1)``.
``probit`` has zero gradient almost everywhere: it is meant for forward passes and
entropies, not for training.

The functions are plain ``jax.numpy`` expressions (fast, with the usual gradients);
:func:`channel` gives the engine's description of the same map (piecewise affine or
smooth), whose ``activation`` method agrees with them away from the kinks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf

from jaxreplica._struct import concrete
from jaxreplica.channel import Channel
from jaxreplica.channels import HardTanh, LeakyReLU, Linear, Probit, ReLU
from jaxreplica.smooth_channels import ELU, Erf, Sigmoid, Softplus, Tanh

__all__ = ["ACTIVATIONS", "ALIASES", "NOISE_POSITIONS", "ActivationRow", "canonical", "channel", "check_position",
           "function", "has_channel"]


@dataclass(frozen=True)
class ActivationRow:
    """One row of the table: ``function(z)`` on arrays and the channel class (``None``
    where the replica formula has no channel)."""

    function: Callable[[jax.Array], jax.Array]
    channel: type | None


ACTIVATIONS: dict[str, ActivationRow] = {
    "linear": ActivationRow(lambda z: z, Linear),
    "relu": ActivationRow(lambda z: jnp.maximum(z, 0.0), ReLU),
    "leaky_relu": ActivationRow(lambda z: jnp.where(z > 0, z, LeakyReLU.slope * z), LeakyReLU),
    "hardtanh": ActivationRow(lambda z: jnp.clip(z, -1.0, 1.0), HardTanh),
    "probit": ActivationRow(jnp.sign, Probit),
    "tanh": ActivationRow(jnp.tanh, Tanh),
    "sigmoid": ActivationRow(jax.nn.sigmoid, Sigmoid),
    "softplus": ActivationRow(jax.nn.softplus, Softplus),
    "elu": ActivationRow(jax.nn.elu, ELU),
    "erf": ActivationRow(erf, Erf),
    "softmax": ActivationRow(lambda z: jax.nn.softmax(z, axis=-1), None),
}
ALIASES = {"sign": "probit", "identity": "linear"}


def canonical(name: str) -> str:
    """The table's name for ``name`` (case-insensitive, aliases resolved); ``ValueError`` if unknown."""
    if not isinstance(name, str):
        raise ValueError(f"activations must be strings, got {name!r}")
    key = ALIASES.get(name.lower(), name.lower())
    if key not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {tuple(ACTIVATIONS) + tuple(ALIASES)}")
    return key


def has_channel(name: str) -> bool:
    """Whether the replica formula has a channel for the activation ``name``."""
    return ACTIVATIONS[canonical(name)].channel is not None


def function(name: str) -> Callable[[jax.Array], jax.Array]:
    """``phi`` of the activation ``name``, elementwise (softmax: over the last axis)."""
    return ACTIVATIONS[canonical(name)].function


NOISE_POSITIONS = ("before", "after", "both")


def check_position(position: str) -> str:
    """``position`` if it is one of :data:`NOISE_POSITIONS`, else ``ValueError``."""
    if position not in NOISE_POSITIONS:
        raise ValueError(f"noise position must be one of {NOISE_POSITIONS}, got {position!r}")
    return position


def channel(activation, noise=0.0, position: str = "before") -> Channel:
    """The channel of ``activation`` with noise of variance ``noise``.

    ``position`` says where the noise enters: ``"before"`` the activation
    (``phi(z + xi)``), ``"after"`` it (``phi(z) + xi``) or ``"both"`` (an independent
    ``xi`` of variance ``noise`` at each place). ``activation`` is a name of the table
    or a channel already (its noises are then replaced, e.g. a
    :class:`~jaxreplica.Switched` whose index is data).
    """
    check_position(position)
    before = 0.0 if position == "after" else noise
    # A known zero after the activation is no noise at all (None keeps it out of the
    # program's structure).
    known = concrete(noise)
    after = None if position == "before" or (known is not None and np.all(known == 0)) else noise
    if isinstance(activation, Channel):
        return activation.replace(noise=before, noise_after=after)
    row = ACTIVATIONS[canonical(activation)]
    if row.channel is None:
        raise ValueError(f"activation: {activation!r} has no replica channel (softmax output layers cannot be tracked)")
    return row.channel(noise=before, noise_after=after)
