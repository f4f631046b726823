"""The one chain-from-spectra builder and the activation table."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreplica as jr
from jaxreplica import activations


def _spectrum(n=20, seed=0):
    w = np.random.RandomState(seed).randn(n, n) / np.sqrt(n)
    return np.linalg.eigvalsh(w.T @ w).clip(0.0)


def test_chain_from_spectra_noises_and_channels():
    eig = _spectrum()
    layers = [jr.SpectralLayer(eig, 1.0, "relu", noise=0.01), jr.SpectralLayer(eig, 1.0, "hardtanh"),
              jr.SpectralLayer(eig, 1.0, "sign")]
    chain = jr.chain_from_spectra(jr.Normal(mean=0.0, var=1.0), layers, hidden_noise=1e-3, last_noise=1e-4)
    kinds = [type(c).__name__ for c in chain.channels]
    assert kinds == ["ReLU", "HardTanh", "Probit"]
    np.testing.assert_array_equal([float(c.noise) for c in chain.channels], [0.01, 1e-3, 1e-4])
    with pytest.raises(ValueError, match="last_noise"):
        jr.chain_from_spectra(jr.Normal(mean=0.0, var=1.0), layers[:1], last_noise=0.0)
    with pytest.raises(ValueError, match="softmax"):
        jr.chain_from_spectra(jr.Normal(mean=0.0, var=1.0), [jr.SpectralLayer(eig, 1.0, "softmax")])


def test_gradient_through_chain_from_spectra_matches_finite_differences():
    """The builder is traceable: d H / d sigma through the spectra (and d H / d noise)."""
    eig = _spectrum()
    prior = jr.Normal(mean=0.0, var=1.0)

    def entropy(sigma, noise):
        layer = jr.SpectralLayer(sigma**2 * jnp.asarray(eig), 1.0, "linear")
        return jr.solve(jr.chain_from_spectra(prior, [layer], last_noise=noise)).entropy

    grad = jax.jit(jax.grad(entropy, argnums=(0, 1)))
    g_sigma, g_noise = grad(1.3, 0.01)
    h = 1e-5
    fd_sigma = (entropy(1.3 + h, 0.01) - entropy(1.3 - h, 0.01)) / (2 * h)
    fd_noise = (entropy(1.3, 0.01 + h * 0.01) - entropy(1.3, 0.01 - h * 0.01)) / (2 * h * 0.01)
    assert float(g_sigma) == pytest.approx(float(fd_sigma), rel=1e-6)
    assert float(g_noise) == pytest.approx(float(fd_noise), rel=1e-6)
    # the exact log-determinant agrees for this linear layer
    exact = jr.exact.gaussian_chain(weights=[1.3 * np.diag(np.sqrt(eig))], noises=[0.01]).entropy[0]
    assert float(entropy(1.3, 0.01)) == pytest.approx(float(exact), abs=1e-8)


def test_activation_table_functions_match_their_channels():
    z = jnp.linspace(-3.0, 3.0, 13) + 0.05  # no point on a kink
    for name, row in activations.ACTIVATIONS.items():
        if row.channel is None:
            continue
        np.testing.assert_allclose(activations.function(name)(z), activations.channel(name).activation(z),
                                   atol=1e-15, err_msg=name)
    assert activations.canonical("Sign") == "probit" and activations.canonical("identity") == "linear"
    assert not activations.has_channel("softmax")
    with pytest.raises(ValueError, match="unknown activation"):
        activations.canonical("swish")
