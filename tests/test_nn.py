"""USV and dense layers, the network builder: spectra, initialisation, what gets trained."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxreplica.nn import USV, Dense, Frozen, Network, activate, build_network, gaussian_matrix


@pytest.mark.parametrize("n_in,n_out", [(30, 50), (50, 20), (40, 40)])
def test_usv_spectrum_is_eigvalsh_of_materialised_matrix(n_in, n_out):
    layer = USV(n_in, n_out, rngs=nnx.Rngs(params=3), scale=1.7)
    w = np.asarray(layer.matrix())
    assert w.shape == (n_out, n_in)
    spec = np.asarray(layer.spectrum())
    assert spec.shape == (n_in,)
    np.testing.assert_allclose(spec, np.linalg.eigvalsh(w.T @ w), atol=1e-10, rtol=0)
    # zeros included: n_in - min(n_in, n_out) of them
    assert np.sum(spec < 1e-12) == n_in - min(n_in, n_out)
    assert layer.alpha == n_out / n_in
    # still exact after S is changed (including a sign flip and a zero)
    s = layer.S[...]
    layer.S[...] = s * jnp.linspace(-2.0, 3.0, s.shape[0])
    w = np.asarray(layer.matrix())
    np.testing.assert_allclose(np.asarray(layer.spectrum()), np.linalg.eigvalsh(w.T @ w), atol=1e-10, rtol=0)


def test_usv_initial_matrix_is_the_gaussian_draw():
    n_in, n_out, scale = 60, 35, 0.7
    layer = USV(n_in, n_out, rngs=nnx.Rngs(params=11), scale=scale)
    g = gaussian_matrix(nnx.Rngs(params=11).params(), n_in, n_out, scale)
    np.testing.assert_allclose(np.asarray(layer.matrix()), np.asarray(g), atol=1e-12, rtol=0)
    # U, V orthonormal
    u, v = np.asarray(layer.U[...]), np.asarray(layer.V[...])
    np.testing.assert_allclose(u.T @ u, np.eye(35), atol=1e-12)
    np.testing.assert_allclose(v @ v.T, np.eye(35), atol=1e-12)


def test_initial_entries_have_std_scale_over_sqrt_n_in():
    n_in, n_out, scale = 400, 300, 2.0
    for cls in (USV, Dense):
        w = np.asarray(cls(n_in, n_out, rngs=nnx.Rngs(params=0), scale=scale).matrix())
        # 120000 entries: relative standard error of the std about 0.2 %
        assert abs(w.std() / (scale / np.sqrt(n_in)) - 1) < 0.01
        assert abs(w.mean()) < 0.01 * scale / np.sqrt(n_in) * 10


def test_dense_spectrum_and_forward():
    layer = Dense(12, 7, rngs=nnx.Rngs(params=1))
    w = np.asarray(layer.matrix())
    np.testing.assert_allclose(np.asarray(layer.spectrum()), np.linalg.eigvalsh(w.T @ w), atol=1e-12)
    x = jax.random.normal(jax.random.key(0), (5, 12))
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(x) @ w.T, atol=1e-12)


def test_usv_forward_is_w_times_t():
    layer = USV(9, 14, rngs=nnx.Rngs(params=2))
    x = jax.random.normal(jax.random.key(1), (6, 9))
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(x) @ np.asarray(layer.matrix()).T, atol=1e-12)


def test_only_s_is_a_param_and_only_s_is_updated():
    net = build_network([10, 16, 8, 2], ["linear", "relu", "softmax"], [True, True, False], key=jax.random.key(4))
    params = nnx.state(net, nnx.Param)
    names = sorted(jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0])
    assert len(names) == 3 and all(("'S'" in n or "'W'" in n) for n in names)
    frozen = jax.tree_util.tree_flatten_with_path(nnx.state(net, Frozen))[0]
    assert sorted("U" if "'U'" in jax.tree_util.keystr(p) else "V" for p, _ in frozen) == ["U", "U", "V", "V"]
    before = nnx.state(net, ...)
    before = jax.tree.map(np.array, before)
    opt = nnx.Optimizer(net, optax.sgd(0.5), wrt=nnx.Param)
    x = jax.random.normal(jax.random.key(0), (32, 10))
    y = jax.nn.one_hot(jnp.arange(32) % 2, 2)

    def loss(model):
        return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(model.logits(x)), -1))

    @nnx.jit
    def update(model, optimizer):
        optimizer.update(model, nnx.grad(loss)(model))

    for _ in range(3):
        update(net, opt)
    for l in (0, 1):
        np.testing.assert_array_equal(np.asarray(net.layers[l].U[...]), before["layers"][l]["U"].get_value())
        np.testing.assert_array_equal(np.asarray(net.layers[l].V[...]), before["layers"][l]["V"].get_value())
        assert np.max(np.abs(np.asarray(net.layers[l].S[...]) - before["layers"][l]["S"].get_value())) > 1e-6
    assert np.max(np.abs(np.asarray(net.layers[2].W[...]) - before["layers"][2]["W"].get_value())) > 1e-6


def test_network_forward_and_activations():
    net = build_network([6, 5, 4, 3], ["relu", "hardtanh", "softmax"], [True, False, False], key=jax.random.key(0), scale=3.0)
    x = jax.random.normal(jax.random.key(2), (8, 6))
    w1, w2, w3 = [np.asarray(w) for w in net.matrices()]
    h1 = np.maximum(np.asarray(x) @ w1.T, 0)
    h2 = np.clip(h1 @ w2.T, -1, 1)
    z = h2 @ w3.T
    np.testing.assert_allclose(np.asarray(net.logits(x)), z, atol=1e-12)
    p = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(np.asarray(net(x)), p / p.sum(1, keepdims=True), atol=1e-12)
    zs = net.preactivations(x)
    np.testing.assert_allclose(np.asarray(zs[1]), h1 @ w2.T, atol=1e-12)
    assert net.alphas == (5 / 6, 4 / 5, 3 / 4)
    assert [s.shape for s in net.spectra()] == [(6,), (5,), (4,)]
    np.testing.assert_array_equal(np.asarray(activate("probit", jnp.array([-2.0, 0.5]))), [-1.0, 1.0])


def test_network_is_jittable():
    net = build_network([4, 6, 2], ["linear", "linear"], True, key=jax.random.key(0))
    graphdef, state = nnx.split(net)
    f = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    x = jnp.ones((3, 4))
    np.testing.assert_allclose(np.asarray(f(state, x)), np.asarray(net(x)), atol=1e-14)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(sizes=[5], activations=[]), "sizes"),
        (dict(sizes=[5, 0, 2], activations=["linear", "linear"]), "sizes"),
        (dict(sizes=[5, 3, 2], activations=["linear"]), "activations"),
        (dict(sizes=[5, 3, 2], activations=["linear", "swish"]), "activations"),
        (dict(sizes=[5, 3, 2], activations=["softmax", "linear"]), "activations"),
        (dict(sizes=[5, 3, 2], activations=["linear", "linear"], usv=[True]), "usv"),
        (dict(sizes=[5, 3, 2], activations=["linear", "linear"], scale=-1.0), "scale"),
    ],
)
def test_bad_input_raises_with_parameter_name(kwargs, name):
    with pytest.raises(ValueError, match=name):
        build_network(key=jax.random.key(0), **kwargs)


def test_missing_key_and_bad_layer_sizes():
    with pytest.raises(ValueError, match="key"):
        build_network([3, 2], ["linear"])
    with pytest.raises(ValueError, match="n_out"):
        USV(3, 0, rngs=nnx.Rngs(params=0))
    assert isinstance(build_network([3, 2], ["linear"], key=jax.random.key(0)), Network)
