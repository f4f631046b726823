"""Where the noise enters (before the activation, after it, or both), from the one
channel-building function to chains from spectra, the training monitor and the sweep."""

import jax
import numpy as np
import pytest

import jaxreplica as jr
import jaxreplica.data as jd
import jaxreplica.training as jt
from jaxreplica.experiments.figure2 import figure2_chain, run_sweep
from jaxreplica.nn import build_network
from jaxreplica.activations import channel
from jaxreplica.chain import SpectralLayer, chain_from_spectra
from jaxreplica.training.tracking import exact_linear_information


def test_channel_positions():
    assert channel("relu", 0.1).noise == 0.1 and channel("relu", 0.1).noise_after is None
    after = channel("hardtanh", 0.1, "after")
    assert after.noise == 0.0 and after.noise_after == 0.1
    both = channel("linear", 0.1, "both")
    assert both.noise == 0.1 and both.noise_after == 0.1 and both.output_noise() == pytest.approx(0.2)
    # a known zero after the activation is no noise at all (kept out of the structure)
    assert channel("relu", 0.0, "after").noise_after is None
    with pytest.raises(ValueError, match="noise position"):
        channel("relu", 0.1, "middle")


@pytest.mark.parametrize("name", ["ReLU", "Tanh"])
def test_zero_noise_after_the_last_activation_is_no_noise(name):
    """``noise_after=0.0`` (a traced zero) on the last layer gives the channel without
    noise after it, in one vmapped program beside a positive value (the hidden-function
    form at ``A = 1/noise_after`` would divide by zero there)."""
    def chain(after):
        return jr.Chain(prior=jr.Normal(), layers=[
            (jr.Gaussian(alpha=1.0, scale=0.8), getattr(jr, name)(noise=1e-2, noise_after=after))])
    plain = jr.solve(chain(None))
    both = jax.vmap(lambda d: jr.solve(chain(d)))(jax.numpy.asarray([0.0, 1e-3]))
    assert np.all(np.asarray(both.converged)), both.status
    assert abs(float(both.entropy[0]) - float(plain.entropy)) < 1e-12
    assert abs(float(both.mutual_information[0]) - float(plain.mutual_information)) < 1e-12
    # (the programs iterate differently; the mmse is first order in the stopping change)
    assert abs(float(both.mmse[0]) - float(plain.mmse)) < 1e-10
    # noise after the activation loses information (data processing)
    assert float(both.mutual_information[1]) < float(both.mutual_information[0])


@pytest.mark.parametrize("name", ["Linear", "ReLU"])
def test_derivative_in_a_zero_noise_after_the_last_activation(name):
    """At ``noise_after = 0`` the derivative of ``I(X; T)`` in it is the noise before's for
    a linear map (the two noises add) and NaN otherwise (not computed; infinite for
    ReLU's atom), never the zero of the branch without noise after (it was 0); the
    noise before's is that of the channel without noise after. In one vmapped gradient
    the NaN stays in its lane."""
    def info(before, after):
        ch = getattr(jr, name)(noise=before, noise_after=after)
        return jr.solve(jr.Chain(prior=jr.Normal(), layers=[(jr.Gaussian(alpha=1.0, scale=1.3), ch)]),
                        tol=1e-13).mutual_information

    grads = jax.vmap(jax.grad(info, argnums=(0, 1)), in_axes=(None, 0))(1e-2, jax.numpy.asarray([0.0, 1e-3]))
    plain = jax.grad(lambda n: jr.solve(jr.Chain(prior=jr.Normal(), layers=[
        (jr.Gaussian(alpha=1.0, scale=1.3), getattr(jr, name)(noise=n))]), tol=1e-13).mutual_information)(1e-2)
    assert abs(float(grads[0][0]) - float(plain)) < 1e-9 * abs(float(plain))
    if name == "Linear":
        assert abs(float(grads[1][0]) - float(plain)) < 1e-9 * abs(float(plain))
    else:
        assert np.isnan(float(grads[1][0]))
    one = jax.grad(info, argnums=(0, 1))(1e-2, 1e-3)
    for k in range(2):
        assert abs(float(grads[k][1]) - float(one[k])) < 1e-9 * abs(float(one[k])), (k, grads, one)


def test_chain_from_spectra_positions_on_a_linear_chain_match_log_determinants():
    """Linear layers: noise after the activation is noise before it, and 'both' doubles
    it; I(X; T_2) of every position equals the exact Gaussian chain of one draw's
    rotation-free one-layer case and the tracker's exact formula."""
    rng = np.random.default_rng(3)
    W1, W2 = rng.normal(size=(30, 30)) / np.sqrt(30), rng.normal(size=(20, 30)) / np.sqrt(30)
    values = {}
    for position in ("before", "after", "both"):
        chain = chain_from_spectra(jr.Normal(), [SpectralLayer(np.linalg.eigvalsh(W1.T @ W1), 1.0, "linear")],
                                   last_noise=0.02, noise_position=position)
        values[position] = float(jr.solve(chain).mutual_information)
        _, exact = exact_linear_information(1.0, [], [W1], last_noise=0.02, noise_position=position)
        assert values[position] == pytest.approx(float(exact[0]), abs=1e-9)
    assert values["before"] == pytest.approx(values["after"], abs=1e-12)
    assert values["both"] < values["before"]
    # two layers, noise after every one: the conditional chain, against the exact formula
    # of this draw within the finite-size spread (the replica value is the rotation average)
    sp = [SpectralLayer(np.linalg.eigvalsh(W.T @ W), W.shape[0] / W.shape[1], "linear") for W in (W1, W2)]
    chain = chain_from_spectra(jr.Normal(), sp, hidden_noise=0.05, last_noise=0.02, noise_position="after")
    assert chain.channels[0].noise_after == 0.05 and chain.channels[1].noise_after == 0.02
    _, exact = exact_linear_information(1.0, [], [W1, W2], hidden_noise=0.05, last_noise=0.02, noise_position="after")
    assert float(jr.solve(chain).mutual_information) == pytest.approx(float(exact[1]), abs=0.03)


@pytest.mark.slow
def test_tracking_noisy_hidden_layers_records_the_information_of_the_noisy_network():
    """A noisy linear network (noise after every layer) tracked for two epochs: every
    value finite and converged, I(X; T_2) < I(X; T_1), and the exact values alongside."""
    data = jd.teacher_student(jax.random.key(0), 16, 4, samples_per_dim=4)
    net = build_network([16, 16, 16, 4], ["linear", "linear", "linear"], [True, True, False], key=jax.random.key(1))
    tracking = jt.Tracking(every=1, layers=2, hidden_noise=0.05, last_noise=0.05, noise_position="after", tol=1e-10)
    _, hist = jt.train(net, data, jax.random.key(2), jt.TrainConfig(epochs=2, learning_rate=0.01),
                       tracking=tracking, progress=False)
    mi = np.asarray(hist.mutual_information)
    assert mi.shape == (3, 2) and np.all(np.isfinite(mi)) and np.all(np.asarray(hist.converged))
    assert np.all(mi[:, 1] < mi[:, 0])
    # the first layer needs no averaging: replica = exact for that draw
    np.testing.assert_allclose(mi[:, 0], np.asarray(hist.exact_mutual_information)[:, 0], atol=1e-8)
    assert hist.config["tracking"]["noise_position"] == "after"
    with pytest.raises(ValueError, match="noise position"):
        jt.Tracking(noise_position="inside")


@pytest.mark.slow
def test_sweep_with_noisy_hidden_layer_matches_direct_solves():
    res = run_sweep(["linear", "relu"], [0.7, 2.0], width=40, noise=0.01, hidden_noise=0.02,
                    noise_position="after", progress=False)
    assert res["noise_position"] == "after" and res["hidden_noise"] == 0.02
    rng = np.random.RandomState(42)
    w1, w2 = (rng.randn(40, 40) / np.sqrt(40) for _ in range(2))
    e1, e2 = (np.clip(np.linalg.eigvalsh(w.T @ w), 0, None) for w in (w1, w2))
    for name in ("linear", "relu"):
        for i, s in enumerate([0.7, 2.0]):
            sol = jr.solve(figure2_chain(name, e1, e2, s, 0.01, 0.02, "after"))
            assert res["curves"][name]["I2"][i] == pytest.approx(float(sol.mutual_information), abs=1e-8)
            assert res["curves"][name]["H2"][i] == pytest.approx(float(sol.entropy), abs=1e-8)
            one = jr.solve(chain_from_spectra(jr.Normal(), [SpectralLayer(e1 * s**2, 1.0, name)], last_noise=0.01,
                                              noise_position="after"))
            assert res["curves"][name]["H1"][i] == pytest.approx(float(one.entropy), abs=1e-8)
