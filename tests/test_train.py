"""Training loop, exact linear information, tracking, history round trip, recompute, CLI."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxreplica as jr
import jaxreplica.data as jd
import jaxreplica.training as jt
from jaxreplica.nn import build_network
from jaxreplica.training import tracking

needs_engine = pytest.mark.skipif(not hasattr(jr, "solve"), reason="replica engine (jr.solve) not available")
NOTRACK = jt.Tracking(every=0)


def _figure3(width, seed=0, samples_per_dim=100):
    data = jd.teacher_student(jax.random.key(seed), width, 4, noise=0.01, samples_per_dim=samples_per_dim)
    net = build_network([width] * 4 + [4], ["linear"] * 4, [True, True, True, False], key=jax.random.key(seed + 1))
    return net, data


def test_losses():
    z = jnp.array([[1.0, 2.0], [0.0, -1.0]])
    y = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(np.asarray(jt.loss_function("mse")(z, y)), [1.0, 1.0])
    lse = np.log(np.exp(1) + np.exp(2)), np.log(1 + np.exp(-1))
    np.testing.assert_allclose(np.asarray(jt.loss_function("cross_entropy")(z, y)), [lse[0] - 2, lse[1]], atol=1e-14)
    with pytest.raises(ValueError, match="loss"):
        jt.loss_function("hinge")


def test_exact_linear_information_closed_forms():
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(15, 10)) / np.sqrt(10)
    w2 = rng.normal(size=(8, 15)) / np.sqrt(15)
    d = 1e-3
    h, i = jt.exact_linear_information(2.0, [], [w1, w2], last_noise=d)
    c = np.log(2 * np.pi * np.e)
    s1 = 2.0 * w1 @ w1.T + d * np.eye(15)
    assert h[0] == pytest.approx((np.linalg.slogdet(s1)[1] + 15 * c) / 20, abs=1e-12)
    # I(X; T_1) = log det(I + 2 W W^T / d) / 2
    assert i[0] == pytest.approx(np.linalg.slogdet(np.eye(15) + 2 * w1 @ w1.T / d)[1] / 20, abs=1e-12)
    s2 = 2.0 * w2 @ w1 @ w1.T @ w2.T + d * np.eye(8)
    assert i[1] == pytest.approx((np.linalg.slogdet(s2)[1] - 8 * np.log(d)) / 20, abs=1e-12)
    # with a generative layer Y -> X: I(X; T_1) = log det(I + W S_X W^T / d)/2 per n_Y
    g = rng.normal(size=(10, 4)) / 2.0
    _, ig = jt.exact_linear_information(1.0, [(g, 0.01)], [w1], last_noise=d)
    sx = g @ g.T + 0.01 * np.eye(10)
    assert ig[0] == pytest.approx(np.linalg.slogdet(np.eye(15) + w1 @ sx @ w1.T / d)[1] / 8, abs=1e-12)
    with pytest.raises(ValueError, match="last_noise"):
        jt.exact_linear_information(1.0, [], [w1], last_noise=0.0)


@pytest.mark.skipif(not hasattr(jr, "exact"), reason="jr.exact not available")
def test_exact_linear_information_matches_engine_exact():
    rng = np.random.default_rng(1)
    ws = [rng.normal(size=(12, 12)) / np.sqrt(12), rng.normal(size=(6, 12)) / np.sqrt(12)]
    h, i = jt.exact_linear_information(1.0, [], ws, last_noise=1e-5)
    ref = jr.exact.gaussian_chain(weights=ws, noises=[0.0, 1e-5], prior_var=1.0)
    assert h[1] == pytest.approx(float(np.asarray(ref.entropy)[-1]), abs=1e-10)
    assert i[1] == pytest.approx(float(np.asarray(ref.mutual_information)[-1]), abs=1e-10)


def test_training_learns_the_linear_teacher():
    net, data = _figure3(20, samples_per_dim=50)
    _, hist = jt.train(net, data, jax.random.key(0), jt.TrainConfig(epochs=8), tracking=NOTRACK, progress=False)
    assert hist.epoch.tolist() == list(range(9))
    assert hist.test_loss[-1] < 0.5 * hist.test_loss[0]
    assert hist.train_accuracy is None and np.all(np.isfinite(hist.train_loss))
    assert hist.config["training"]["batch_size"] == 50 and hist.config["training"]["loss"] == "mse"


def test_step_with_penalty_and_any_optax_transformation():
    net, data = _figure3(6, samples_per_dim=10)
    graphdef, params, frozen = nnx.split(net, nnx.Param, ...)
    x, y = data.x_train[:50], data.y_train[:50]
    lr, beta = 0.01, 0.3
    tx = optax.sgd(lr)
    plain = jax.jit(jt.make_step(graphdef, tx, "mse"))
    penal = jax.jit(jt.make_step(graphdef, tx, "mse", penalty=lambda p: beta * jnp.sum(p["layers"][0]["S"][...] ** 2)))
    p1, _, _, m1 = plain(params, tx.init(params), None, frozen, x, y)
    p2, _, _, m2 = penal(params, tx.init(params), None, frozen, x, y)
    l1, l2 = m1["loss"], m2["loss"]
    s0 = np.asarray(params["layers"][0]["S"][...])
    # gradient of beta |S|^2 is 2 beta S: the penalised step moves S by a further -lr 2 beta S
    np.testing.assert_allclose(np.asarray(p2["layers"][0]["S"][...]) - np.asarray(p1["layers"][0]["S"][...]),
                               -lr * 2 * beta * s0, atol=1e-13)
    np.testing.assert_allclose(np.asarray(p2["layers"][1]["S"][...]), np.asarray(p1["layers"][1]["S"][...]),
                               atol=1e-14)
    assert float(l2) == pytest.approx(float(l1) + beta * np.sum(s0**2), rel=1e-12)
    # any optax transformation
    net2, data2 = _figure3(6, samples_per_dim=10)
    _, hist = jt.train(net2, data2, jax.random.key(0), jt.TrainConfig(epochs=2, optimizer=optax.adam(1e-2)), tracking=NOTRACK, progress=False)
    assert hist.test_loss[-1] < hist.test_loss[0] and hist.config["training"]["optimizer"] == "custom"


def test_only_s_and_dense_w_change_during_training():
    net, data = _figure3(8, samples_per_dim=10)
    u0 = np.asarray(net.layers[0].U[...]).copy()
    s0 = np.asarray(net.layers[0].S[...]).copy()
    w0 = np.asarray(net.layers[3].W[...]).copy()
    jt.train(net, data, jax.random.key(0), jt.TrainConfig(epochs=1), tracking=NOTRACK, progress=False)
    np.testing.assert_array_equal(np.asarray(net.layers[0].U[...]), u0)
    assert np.max(np.abs(np.asarray(net.layers[0].S[...]) - s0)) > 1e-6
    assert np.max(np.abs(np.asarray(net.layers[3].W[...]) - w0)) > 1e-6


def test_bad_training_input():
    net, data = _figure3(6, samples_per_dim=10)
    with pytest.raises(ValueError, match="epochs"):
        jt.train(net, data, jax.random.key(0), jt.TrainConfig(epochs=-1), progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        jt.train(net, data, jax.random.key(0), jt.TrainConfig(epochs=1, batch_size=0), progress=False)
    with pytest.raises(ValueError, match="loss"):
        jt.train(net, data, jax.random.key(0), jt.TrainConfig(epochs=1, loss="cross_entropy"), progress=False)
    with pytest.raises(ValueError, match="last_noise"):
        jt.train(net, data, jax.random.key(0), jt.TrainConfig(epochs=1), tracking=jt.Tracking(last_noise=0.0), progress=False)
    with pytest.raises(ValueError, match="layers"):
        jt.train(net, data, jax.random.key(0), jt.TrainConfig(epochs=1), tracking=jt.Tracking(layers=4), progress=False)
    with pytest.raises(ValueError, match="method"):
        jt.train(net, data, jax.random.key(0), jt.TrainConfig(epochs=1), tracking=jt.Tracking(method="newton"), progress=False)
    other = build_network([7, 4], ["linear"], key=jax.random.key(0))
    with pytest.raises(ValueError, match="network"):
        jt.train(other, data, jax.random.key(0), jt.TrainConfig(epochs=1), progress=False)


def test_history_round_trip_without_tracking(tmp_path):
    data = jd.generative_recognition(jax.random.key(0), 4, 10, samples_per_dim=10)
    net = build_network([10, 8, 2], ["relu", "softmax"], [True, False], key=jax.random.key(0))
    _, hist = jt.train(net, data, jax.random.key(0), jt.TrainConfig(epochs=2), tracking=NOTRACK, progress=False)
    assert hist.train_accuracy.shape == (3,) and hist.config["training"]["batch_size"] == 100
    hist.save(tmp_path)
    back = jt.History.load(tmp_path)
    for name in ("epoch", "train_loss", "test_loss", "train_accuracy", "test_accuracy"):
        np.testing.assert_array_equal(getattr(back, name), getattr(hist, name))
    assert back.entropy is None and back.config == json.loads(json.dumps(hist.config))


# ----------------------------------------------------------------------------- with the engine


@needs_engine
def test_tracking_matches_exact_on_a_linear_student(tmp_path):
    net, data = _figure3(30, samples_per_dim=20)
    _, hist = jt.train(net, data, jax.random.key(0), jt.TrainConfig(epochs=3), progress=False)
    assert hist.tracked_epoch.tolist() == [0, 1, 2, 3]
    assert hist.mutual_information.shape == (4, 3) and hist.exact_mutual_information.shape == (4, 3)
    assert [s.shape for s in hist.spectra] == [(4, 30)] * 3
    assert np.all(hist.converged) and not hist.failures
    err = hist.squared_error()
    assert err[:, 0].max() <= 1e-12
    assert err[:, 1:].max() <= 5e-3
    np.testing.assert_allclose(hist.entropy[:, 0], hist.exact_entropy[:, 0], atol=1e-6)
    # round trip, then recompute with the recorded settings reproduces the record
    hist.save(tmp_path)
    back = jt.History.load(tmp_path)
    for name in ("tracked_epoch", "entropy", "mutual_information", "exact_mutual_information", "converged"):
        np.testing.assert_array_equal(getattr(back, name), getattr(hist, name))
    for a, b in zip(back.spectra, hist.spectra):
        np.testing.assert_array_equal(a, b)
    again = jt.recompute(back)
    np.testing.assert_allclose(again.mutual_information, hist.mutual_information, atol=1e-10, rtol=0)
    np.testing.assert_allclose(again.entropy, hist.entropy, atol=1e-10, rtol=0)
    # more noise on the measured layer, less information
    noisier = jt.recompute(back, last_noise=1e-3)
    assert np.all(noisier.mutual_information < hist.mutual_information)
    assert noisier.config["tracking"]["last_noise"] == 1e-3


@needs_engine
@pytest.mark.slow
def test_recompute_keeps_the_recorded_quadrature(tmp_path):
    """A run tracked with coarse rules is recomputed with the same rules (after a round trip
    through the files); asking for the default rules gives other values."""
    coarse = jr.QuadratureConfig(bulk_segments=6, legendre=6, hermite_w=6, hermite_xi=8)
    data = jd.teacher_student(jax.random.key(0), 8, 2, samples_per_dim=10)
    net = build_network([8, 8, 8, 2], ["hardtanh", "hardtanh", "linear"], [True, True, False], key=jax.random.key(1),
                        scale=2.0)
    _, hist = jt.train(net, data, jax.random.key(2), jt.TrainConfig(epochs=1),
                       tracking=jt.Tracking(every=1, layers=2, quadrature=coarse), progress=False)
    assert np.all(hist.converged)
    hist.save(tmp_path)
    back = jt.History.load(tmp_path)
    again = jt.recompute(back)
    np.testing.assert_allclose(again.mutual_information, hist.mutual_information, atol=1e-12, rtol=0)
    assert again.config["tracking"]["quadrature"] == back.config["tracking"]["quadrature"]
    default = jt.recompute(back, quadrature=jr.QuadratureConfig())
    assert np.abs(default.mutual_information[:, 1] - hist.mutual_information[:, 1]).max() > 1e-9


@needs_engine
def test_tracking_failure_records_nan_and_training_goes_on(monkeypatch):
    """A solve that raises or does not converge gives NaN with its reason; training continues."""
    real = tracking._layer_solve("vamp", 1000)
    calls = {"n": 0}

    def flaky(chain, tol, init, conditional=True, conditional_init=None):
        calls["n"] += 1
        if calls["n"] % 3 == 1:
            raise FloatingPointError("boom")
        sol = real(chain, tol=tol, init=init, conditional=conditional, conditional_init=conditional_init)
        if calls["n"] % 3 == 2:
            return sol.replace(converged=jnp.asarray(False), iterations=jnp.asarray(1000))
        return sol

    monkeypatch.setattr(tracking, "_layer_solve", lambda method, max_iter, quadrature=None: flaky)
    net, data = _figure3(30, samples_per_dim=10)
    _, hist = jt.train(net, data, jax.random.key(0), jt.TrainConfig(epochs=2), progress=False)
    # calls 1, 4, 7 (layer 1) raise; calls 2, 5, 8 (layer 2) do not converge; layer 3 is fine
    assert np.isnan(hist.mutual_information[:, :2]).all() and np.isfinite(hist.mutual_information[:, 2]).all()
    assert [f[:2] for f in hist.failures] == [(e, l) for e in range(3) for l in (1, 2)]
    assert all("FloatingPointError: boom" in f[2] for f in hist.failures if f[1] == 1)
    assert all("not converged after 1000 iterations" in f[2] for f in hist.failures if f[1] == 2)
    assert not hist.converged[:, 1].any() and hist.converged[:, 2].all()
    assert np.all(np.isfinite(hist.test_loss)) and hist.test_loss[-1] < hist.test_loss[0]


@pytest.mark.slow
@needs_engine
def test_tracking_a_recognition_network_with_generative_part():
    data = jd.generative_recognition(jax.random.key(1), 8, 24, noise=0.01, samples_per_dim=10)
    net = build_network([24, 32, 24, 16, 8, 2], ["linear", "relu", "linear", "relu", "softmax"],
                        [True] * 4 + [False], key=jax.random.key(2))
    _, hist = jt.train(net, data, jax.random.key(0), jt.TrainConfig(epochs=2), tracking=jt.Tracking(every=2, tol=1e-8), progress=False)
    assert hist.tracked_epoch.tolist() == [0, 2] and hist.mutual_information.shape == (2, 4)
    assert np.all(np.isfinite(hist.mutual_information)), hist.failures
    assert hist.exact_mutual_information is None and len(hist.generative_spectra) == 1
    # data processing: I(X; T_l) can only decrease along the (noiseless) network, up to the measuring noise
    assert np.all(np.diff(hist.mutual_information, axis=1) < 1e-6 + 0.5 * np.log(1 + 1e-5))


@needs_engine
def test_linear_recognition_network_matches_exact_with_generative_layer():
    data = jd.generative_recognition(jax.random.key(2), 10, 30, noise=0.01, samples_per_dim=5, task="regression")
    net = build_network([30, 30, 10], ["linear", "linear"], [True, False], key=jax.random.key(3))
    _, hist = jt.train(net, data, jax.random.key(0), jt.TrainConfig(epochs=1), tracking=jt.Tracking(layers=1, tol=1e-10), progress=False)
    assert hist.exact_mutual_information is not None
    # two layers (generative + first network layer): replica and exact agree to finite-size accuracy
    assert np.max(np.abs(hist.mutual_information - hist.exact_mutual_information)) < 0.05


@needs_engine
def test_cli_figure3_small(tmp_path):
    from jaxreplica.cli import main

    rc = main(["train", "--preset", "figure3", "--width", "30", "--epochs", "2", "--out", str(tmp_path),
               "--no-progress"])
    assert rc == 0
    for name in ("history.npz", "config.json", "learning.png", "information.png", "replica_vs_exact.png"):
        assert (tmp_path / name).exists()
    hist = jt.History.load(tmp_path)
    assert hist.mutual_information.shape == (3, 3) and hist.config["preset"]["name"] == "figure3"


def test_cli_penalty_solves_once_an_epoch_by_default(tmp_path):
    """Without --penalty-solve-every the penalty's fixed points are solved once an epoch
    (as many steps as an epoch has batches: figure3 has 3000 training samples in batches
    of 50), also with noisy hidden layers; an explicit value is kept."""
    from jaxreplica.cli import main

    common = ["train", "--preset", "figure3", "--width", "30", "--epochs", "1", "--no-track", "--info-penalty", "3:0.1"]
    for extra, want in (([], None), (["--penalty-solve-every", "3"], 3), (["--hidden-noise", "1e-3"], None)):
        out = tmp_path / str(len(extra))
        assert main([*common, *extra, "--out", str(out)]) == 0
        config = json.loads((out / "config.json").read_text())
        got = config["training"]["info_penalty"]["solve_every"]
        if want is None:
            want = config["data"]["n_train"] // config["training"]["batch_size"]
            assert want == 60
        assert got == want, (extra, got)


def test_cli_rejects_bad_info_penalty(tmp_path, capsys):
    from jaxreplica.cli import main

    # figure3 has three USV layers (the fourth is dense); the penalty itself: tests/test_penalty.py
    bad = (["--info-penalty", "4:0.1"], ["--info-penalty", "two"], ["--info-penalty", "1:nan"],
           ["--info-penalty", "1:0.1", "--info-penalty", "1:0.2"])
    for flags in bad:
        with pytest.raises(SystemExit) as stop:
            main(["train", "--preset", "figure3", "--out", str(tmp_path), *flags])
        assert stop.value.code == 2
    assert "LAYER:BETA" in capsys.readouterr().err


# ----------------------------------------------------------------------------- acceptance (slow)


def _acceptance_figure3(width, epochs):
    net, data = _figure3(width)
    _, hist = jt.train(net, data, jax.random.key(0), jt.TrainConfig(epochs=epochs), tracking=jt.Tracking(layers=3, tol=1e-10), progress=False)
    return hist


@pytest.mark.slow
@needs_engine
def test_acceptance_figure3_widths():
    means = {}
    for width, epochs, cap, mean_cap in ((100, 40, 5e-4, 1e-4), (400, 15, 3e-5, 1e-5)):
        hist = _acceptance_figure3(width, epochs)
        assert hist.test_loss.min() < 0.5 * hist.test_loss[0]
        err = hist.squared_error()
        assert err[:, 0].max() <= 1e-12
        assert err[:, 1:].max() <= cap
        assert err[:, 1:].mean(axis=0).max() <= mean_cap
        means[width] = err[:, 1:].mean()
    assert means[400] < means[100]


@pytest.mark.slow
@needs_engine
def test_acceptance_recognition_relu_small(tmp_path):
    from jaxreplica.cli import main

    assert main(["train", "--preset", "recognition-relu", "--scale", "small", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    hist = jt.History.load(tmp_path)
    assert hist.test_accuracy.max() >= 0.95
    assert np.all(np.isfinite(hist.mutual_information))
    assert math.isfinite(float(hist.entropy.sum()))

