"""``I(X; T_l)`` of every layer of a noisy network with the Gaussian-smoothed plug-in."""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from ._checks import as_samples, check_int, check_positive
from .smoothed import _smoothed_entropy

Layer = Callable[[jax.Array], jax.Array]


class LayerInformation(NamedTuple):
    """Per-layer estimates (shape ``(L,)``, nats) for a noisy network."""

    mutual_information: jax.Array  # I(X; T_l) = h(T_l) - h(T_l | X)
    entropy: jax.Array  # h(T_l)
    conditional_entropy: jax.Array  # h(T_l | X)


def _forward(layers: Sequence[Layer], x: jax.Array, noise_std: Sequence[float], key: jax.Array) -> list[jax.Array]:
    """Noiseless parts ``S_l = f_l(T_{l-1})`` of one noisy pass, ``T_l = S_l + Z_l``."""
    parts = []
    t = x
    for l, (layer, std) in enumerate(zip(layers, noise_std)):
        s = layer(t)
        parts.append(s)
        t = s + std * jax.random.normal(jax.random.fold_in(key, l), s.shape, s.dtype)
    return parts


def noisy_network_information(
    layers: Sequence[Layer],
    x,
    noise_var,
    key: jax.Array,
    *,
    n_conditional: int = 64,
    n_mc: int = 4096,
    n_mc_conditional: int = 512,
    marginal_repeats: int = 1,
) -> LayerInformation:
    """Estimate ``I(X; T_l)`` for every layer of a noisy network (Goldfeld et al. 2019).

    The network is ``T_0 = X``, ``S_l = f_l(T_{l-1})``, ``T_l = S_l + Z_l`` with
    ``Z_l ~ N(0, s2_l I)`` added to each layer's units (after the activation, the
    convention of Goldfeld et al.; the replica engine adds noise before it).  ``X`` is
    uniform on the rows of ``x`` (a data set).  Then

    ``I(X; T_l) = h(T_l) - (1/m) sum_i h(T_l | X = x_i)``,

    each term a Gaussian-smoothed plug-in :func:`smoothed_entropy`:
    ``h(T_l) ~= h(P_n * N_s2)`` on the ``S_l`` of ``marginal_repeats`` noisy passes of
    every input, and ``h(T_l | X = x_i) ~= h(P_n^{(i)} * N_s2)`` on the ``S_l`` of
    ``n_conditional`` noisy passes of ``x_i`` (for ``l = 1``, ``S_1`` is a function of
    ``X`` and this is ``h(Z_1)`` exactly).

    Args:
      layers: the deterministic maps ``f_l``, each taking a batch ``(b, d_{l-1})`` to
        ``(b, d_l)`` (e.g. ``lambda t: jnp.tanh(t @ W.T + b)``).
      x: inputs, shape ``(m, d_0)``.
      noise_var: ``s2 > 0``, a scalar for all layers or one value per layer.
      key: ``jax.random.PRNGKey``.
      n_conditional: noisy passes per input for the conditional entropies.
      n_mc, n_mc_conditional: Monte Carlo draws for the marginal and for each
        conditional plug-in.
      marginal_repeats: noisy passes of each input for the marginal's centres.

    Returns:
      :class:`LayerInformation` with arrays of shape ``(L,)``.
    """
    layers = list(layers)
    if not layers:
        raise ValueError("layers must hold at least one layer function")
    x = as_samples(x, "x")
    n_layers = len(layers)
    noise = [noise_var] * n_layers if jnp.ndim(jnp.asarray(noise_var)) == 0 else list(noise_var)
    if len(noise) != n_layers:
        raise ValueError(f"noise_var must be a scalar or hold one value per layer ({n_layers}); got {len(noise)}")
    for v in noise:
        check_positive(v, "noise_var")
    n_conditional = check_int(n_conditional, "n_conditional", 1)
    n_mc = check_int(n_mc, "n_mc", 2)
    n_mc_conditional = check_int(n_mc_conditional, "n_mc_conditional", 2)
    marginal_repeats = check_int(marginal_repeats, "marginal_repeats", 1)
    noise = jnp.stack([jnp.asarray(v, x.dtype) for v in noise])
    return _estimate(tuple(layers), x, noise, key, n_conditional, n_mc, n_mc_conditional, marginal_repeats)


@functools.partial(
    jax.jit, static_argnames=("layers", "n_conditional", "n_mc", "n_mc_conditional", "marginal_repeats")
)
def _estimate(layers, x, noise, key, n_conditional, n_mc, n_mc_conditional, marginal_repeats) -> LayerInformation:
    n_layers = len(layers)
    std = [jnp.sqrt(noise[l]) for l in range(n_layers)]
    key_marg, key_cond, key_mc = jax.random.split(key, 3)

    marginal = _forward(layers, jnp.tile(x, (marginal_repeats, 1)), std, key_marg)

    def conditional_parts(xi, k):
        return _forward(layers, jnp.broadcast_to(xi, (n_conditional, x.shape[1])), std, k)

    keys = jax.random.split(key_cond, x.shape[0])
    conditional = jax.vmap(conditional_parts)(x, keys)  # list of (m, n_cond, d_l)

    entropy, cond_entropy = [], []
    for l in range(n_layers):
        k_marg, k_cond = jax.random.split(jax.random.fold_in(key_mc, l))
        entropy.append(_smoothed_entropy(marginal[l], noise[l], k_marg, n_mc, None).value)
        per_input = jax.vmap(lambda c, k: _smoothed_entropy(c, noise[l], k, n_mc_conditional, None).value)(
            conditional[l], jax.random.split(k_cond, x.shape[0])
        )
        cond_entropy.append(jnp.mean(per_input))
    entropy = jnp.stack(entropy)
    cond_entropy = jnp.stack(cond_entropy)
    return LayerInformation(entropy - cond_entropy, entropy, cond_entropy)
