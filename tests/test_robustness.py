"""Robustness grid: every channel, prior and ensemble, over a wide range of shapes and
noises, one and two layers. Every point must converge to a finite value, and every
linear point must equal its closed form.

Size: one layer, 3 priors x 2 ensembles x 5 channels x 6-7 alphas (0.05 to 5) x 6 noises
(1e-10 to 1e-1) = 1170 chains; two layers (Normal input), 5 hidden x 5 last channels x
2 shape pairs x 2 noises = 100 chains. Each group is one ``jax.vmap`` of ``jr.solve``
(the channel is data, ``jr.Switched``), so the grid compiles 7 programs. Run time on a
2-core CPU: about 45 s, most of it compilation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreplica as jr
from _independent import gaussian_linear_entropy

OPTIONS = (jr.Linear(), jr.ReLU(), jr.LeakyReLU(slope=0.1), jr.HardTanh(), jr.Probit())
LINEAR = 0
ALPHAS = np.geomspace(0.05, 5.0, 7)
NOISES = np.geomspace(1e-10, 1e-1, 6)
WIDTH = 40
# Rectangular empirical layers: n_out/n_in on a grid of 1/WIDTH.
EMPIRICAL_ALPHAS = np.array([2, 4, 12, 40, 80, 200]) / WIDTH
PRIORS = {"normal": jr.Normal(mean=0.0, var=1.0), "bimodal": jr.Bimodal(prob=0.5),
          "spikeslab": jr.SpikeSlab(prob=0.3, mean=0.0, var=1.0)}


def _spectrum(alpha, seed=0):
    """Eigenvalues of ``W^T W`` from the singular values of ``W``: its zeros are exact (an
    eigensolver's round-off zeros, ~1e-16, would move the closed form at noise 1e-10)."""
    W = np.random.default_rng(seed).normal(size=(int(round(alpha * WIDTH)), WIDTH)) / np.sqrt(WIDTH)
    s = np.linalg.svd(W, compute_uv=False)
    return jnp.asarray(np.concatenate([s**2, np.zeros(WIDTH - s.size)]))


def _grid(alphas):
    index, alpha, noise = np.meshgrid(np.arange(len(OPTIONS)), alphas, NOISES, indexing="ij")
    return jnp.asarray(index.ravel(), dtype=jnp.int32), jnp.asarray(alpha.ravel()), jnp.asarray(noise.ravel())


def _check(sol, what):
    converged, entropy = np.asarray(sol.converged), np.asarray(sol.entropy)
    bad = ~(converged & np.isfinite(entropy))
    assert not bad.any(), f"{what}: {bad.sum()} points failed, status {np.asarray(sol.status)[bad]}"


@pytest.mark.parametrize("prior", list(PRIORS))
def test_one_layer_gaussian_ensembles(prior):
    index, alpha, noise = _grid(ALPHAS)

    def solve(i, a, d):
        return jr.solve(jr.Chain(prior=PRIORS[prior], layers=[(jr.Gaussian(alpha=a), jr.Switched(OPTIONS, i, d))]))

    sol = jax.vmap(solve)(index, alpha, noise)
    _check(sol, prior)
    if prior == "normal":
        linear = np.asarray(index) == LINEAR
        closed = [gaussian_linear_entropy(float(a), 1.0, float(d)) for a, d in zip(alpha[linear], noise[linear])]
        np.testing.assert_allclose(np.asarray(sol.entropy)[linear], closed, rtol=0, atol=1e-8)


@pytest.mark.parametrize("prior", list(PRIORS))
def test_one_layer_empirical_ensembles(prior):
    index, alpha, noise = _grid(EMPIRICAL_ALPHAS)
    spectra = {float(a): _spectrum(a) for a in EMPIRICAL_ALPHAS}
    eig = jnp.stack([spectra[float(a)] for a in alpha])

    def solve(i, e, a, d):
        return jr.solve(jr.Chain(prior=PRIORS[prior], layers=[(jr.Empirical(e, a), jr.Switched(OPTIONS, i, d))]))

    sol = jax.vmap(solve)(index, eig, alpha, noise)
    _check(sol, prior)
    if prior == "normal":
        linear = np.asarray(index) == LINEAR
        # The spectrum's log-determinant: sum over the n_out eigenvalues of W W^T.
        closed = [0.5 * a * np.log(2 * np.pi * np.e) + 0.5 * np.mean(np.log(np.asarray(e) + d))
                  + 0.5 * (a - 1.0) * np.log(d)
                  for e, a, d in zip(np.asarray(eig)[linear], np.asarray(alpha)[linear], np.asarray(noise)[linear])]
        np.testing.assert_allclose(np.asarray(sol.entropy)[linear], closed, rtol=0, atol=1e-8)


def test_two_layers_every_hidden_and_last_channel():
    hidden, last, shape, noise = np.meshgrid(np.arange(5), np.arange(5), np.arange(2), np.array([1e-10, 1e-1]),
                                             indexing="ij")
    shapes = np.array([[0.3, 3.0], [3.0, 0.3]])[shape.ravel()]

    def solve(h, l, a1, a2, d):
        return jr.solve(jr.Chain(prior=jr.Normal(), layers=[(jr.Gaussian(alpha=a1), jr.Switched(OPTIONS, h, 0.0)),
                                                            (jr.Gaussian(alpha=a2), jr.Switched(OPTIONS, l, d))]))

    args = (hidden.ravel(), last.ravel(), shapes[:, 0], shapes[:, 1], noise.ravel())
    sol = jax.vmap(solve)(*(jnp.asarray(a) for a in args))
    _check(sol, "two layers")
    # An invertible last activation moves the entropy by E log|phi'|: a leaky ReLU of
    # slope g on a symmetric input adds (n_2/n_0) log(g)/2 to the linear value.
    H = np.asarray(sol.entropy).reshape(hidden.shape)
    gain = 0.5 * shapes[:, 0] * shapes[:, 1] * np.log(0.1)
    np.testing.assert_allclose(H[:, 2].ravel(), (H[:, LINEAR] + gain.reshape(hidden.shape)[:, LINEAR]).ravel(),
                               rtol=0, atol=1e-8)


# Points where the linear channel used to return NaN (rank-deficient weights, small
# noise): ML-VAMP's messages lost every digit to cancellation at small noise.
SINGLE_LAYER_POINTS = [(0.05, 1e-10), (0.0695, 1e-10), (0.0695, 1e-9), (0.0695, 1e-6), (0.0695, 1e-5),
                       (0.1341, 1e-9), (0.3598, 1e-7), (0.5, 1e-7), (0.5, 1e-6), (0.6947, 1e-10),
                       (0.9653, 1e-7), (0.1, 1e-8)]
TWO_LAYER_POINTS = [(0.3, 0.3, "linear"), (0.3, 3.0, "linear"), (1.0, 0.3, "linear"), (1.0, 0.3, "hardtanh")]


def test_linear_channel_points_that_failed():
    alpha, noise = (jnp.asarray(x) for x in zip(*SINGLE_LAYER_POINTS))
    sol = jax.vmap(lambda a, d: jr.solve(jr.Chain(prior=jr.Normal(), layers=[(jr.Gaussian(alpha=a), jr.Linear(noise=d))])))(
        alpha, noise)
    _check(sol, "linear points")
    closed = [gaussian_linear_entropy(a, 1.0, d) for a, d in SINGLE_LAYER_POINTS]
    np.testing.assert_allclose(np.asarray(sol.entropy), closed, rtol=0, atol=1e-8)


@pytest.mark.parametrize("a1, a2, hidden", TWO_LAYER_POINTS)
def test_two_layer_points_that_failed(a1, a2, hidden):
    """Converged and finite; the linear last layer agrees with a leaky one of slope 0.1
    shifted by ``(a1 a2/2) log 0.1`` (an invertible last activation only adds
    ``E log|phi'|``), which converged before."""
    act = {"linear": jr.Linear(), "hardtanh": jr.HardTanh()}[hidden]
    def solve(last):
        return jr.solve(jr.Chain(prior=jr.Normal(), layers=[(jr.Gaussian(alpha=a1), act), (jr.Gaussian(alpha=a2), last)]))
    lin, leaky = solve(jr.Linear(noise=1e-8)), solve(jr.LeakyReLU(noise=1e-8, slope=0.1))
    assert bool(lin.converged) and bool(leaky.converged) and np.isfinite(float(lin.entropy))
    assert abs(float(leaky.entropy) - float(lin.entropy) - 0.5 * a1 * a2 * np.log(0.1)) < 1e-8


# Binary input recovered exactly through a noiseless hidden layer: I(X; T_2) = H(X) = log 2
# per input and H(T_2) = log 2 + (n_2/n_0) log(2 pi e Delta)/2. The hidden channel's
# functions met the variance of a recovered input, 1e-20 and below, where their
# d log Z/dw was rounding noise: these chains used to end non-finite or above H(X).
RECOVERED_POINTS = [(1.0, 1.5, 1e-3), (1.0, 0.5, 1e-3), (2.0, 1.0, 1e-4), (0.7, 1.5, 1e-3)]
HIDDEN = (jr.ReLU(), jr.LeakyReLU(slope=0.1), jr.HardTanh())


def test_binary_input_recovered_through_a_noiseless_hidden_layer():
    index, bias, point = np.meshgrid(np.arange(len(HIDDEN)), np.array([0.0, 0.2]), np.arange(len(RECOVERED_POINTS)),
                                     indexing="ij")
    a1, a2, noise = (np.asarray(x)[point.ravel()] for x in zip(*RECOVERED_POINTS))

    def solve(i, b, a1, a2, d):
        return jr.solve(jr.Chain(prior=jr.Bimodal(), layers=[
            (jr.Gaussian(alpha=a1), jr.Switched(HIDDEN, i, 0.0, bias=b)), (jr.Gaussian(alpha=a2), jr.Linear(noise=d))]))

    sol = jax.vmap(solve)(*(jnp.asarray(x) for x in (index.ravel(), bias.ravel(), a1, a2, noise)))
    _check(sol, "recovered binary input")
    np.testing.assert_allclose(np.asarray(sol.mutual_information), np.log(2.0), rtol=0, atol=1e-10)
    closed = np.log(2.0) + 0.5 * a1 * a2 * np.log(2 * np.pi * np.e * noise)
    np.testing.assert_allclose(np.asarray(sol.entropy), closed, rtol=0, atol=1e-10)
