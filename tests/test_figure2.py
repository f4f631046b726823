"""The ``figure2`` command at small size: outputs, replica against exact, estimator closed forms."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import jaxreplica.experiments.figure2.compare as f2
from jaxreplica.experiments.figure2 import draw_weights
from jaxreplica.cli import main

SIGMAS = [0.5, 1.0, 2.0]
WIDTH, SAMPLES, NOISE = 50, 200, 1e-5


def run_figure2(out, *extra):
    argv = ["figure2", "--width", str(WIDTH), "--samples", str(SAMPLES), "--sigmas", "0.5,1,2", "--out", str(out),
            "--no-progress", *extra]
    assert main(argv) == 0
    assert (out / "figure2.png").stat().st_size > 10_000
    return json.loads((out / "figure2.json").read_text())


def check_linear(curve):
    replica = np.asarray(curve["replica"])
    exact = np.asarray(curve["exact"])
    assert np.all(curve["replica_converged"])
    # One layer: the replica formula with the empirical spectrum is the log-determinant.
    np.testing.assert_allclose(replica[:, 0], exact[:, 0], atol=1e-8)
    # Two layers at width 50: a finite-size gap (7e-3 at sigma = 0.5, shrinking with sigma).
    np.testing.assert_allclose(replica[:, 1], exact[:, 1], atol=2e-2)
    # Written as one layer with the spectrum of the product, the replica formula is the
    # log-determinant of the drawn network for both layers.
    np.testing.assert_allclose(np.asarray(curve["replica_product"]), exact, atol=1e-8)
    assert np.max(np.abs(replica[:, 1] - exact[:, 1])) > 1e-4  # the free-spectra gap is real at width 50
    # Why: the pairs W_2 O W_1 share both spectra (so the two-layer replica value) but not
    # their exact entropy, which spreads over more than 1e-4 at every sigma; the replica
    # value sits inside that spread.
    rotated = np.asarray(curve["exact_rotated"])
    assert rotated.shape == (16, len(SIGMAS))
    assert np.all(rotated.max(axis=0) - rotated.min(axis=0) > 1e-4)
    assert np.all((replica[:, 1] > rotated.min(axis=0)) & (replica[:, 1] < rotated.max(axis=0)))
    # A mixture centred on the samples with variance 1e-5: every pairwise distance
    # dwarfs the noise, and the KL bound saturates at H(Z) + log n.
    saturated = np.log(SAMPLES) / WIDTH + 0.5 * np.log(2 * np.pi * np.e * NOISE)
    np.testing.assert_allclose(curve["pairwise_noise_kernel"], saturated, atol=1e-9)
    for key in ("knn", "pairwise", "pairwise_parametric"):
        assert np.all(np.isfinite(curve[key])), key
    # Linear T_l is Gaussian: the sample estimators sit above the truth here (the
    # paper's observation), and scale like log(sigma) as the truth does.
    assert np.all(np.asarray(curve["knn"]) > exact - 0.05)
    assert np.all(np.diff(np.asarray(curve["knn"]), axis=0) > 0)
    # The fitted mixture of the noisy samples and the parametric one agree for a linear
    # network (the noise is negligible against the fitted variance).
    np.testing.assert_allclose(curve["pairwise"], curve["pairwise_parametric"], atol=1e-3)


def test_exact_linear_rotated_is_the_log_determinant():
    """The rotated exact entropy against the covariance log-determinant of
    ``jr.exact.gaussian_chain``, for the identity and a random rotation."""
    import jaxreplica as jr

    w1, w2 = draw_weights(30, weight_seed=3)
    rotations = np.concatenate([np.eye(30)[None], np.asarray(f2.haar_rotations(jax.random.PRNGKey(0), 30, 1))])
    got = f2.exact_linear_rotated(w1, w2, SIGMAS, NOISE, rotations)
    for o, row in zip(rotations, got):
        for s, value in zip(SIGMAS, row):
            want = jr.exact.gaussian_chain(weights=[s * w1, s * w2 @ o], noises=[0.0, NOISE], prior_var=1.0).entropy[1]
            assert abs(value - float(want)) < 1e-10
    np.testing.assert_allclose(rotations[1] @ rotations[1].T, np.eye(30), atol=1e-12)
    assert np.all(np.abs(got[1] - got[0]) > 1e-6)  # a rotation changes the exact entropy


def test_figure2_linear_small(tmp_path):
    result = run_figure2(tmp_path, "--activations", "linear")
    assert (tmp_path / "figure2_linear_gap.png").stat().st_size > 10_000
    assert result["sigmas"] == SIGMAS and result["width"] == WIDTH and result["n_samples"] == SAMPLES
    assert result["wall_seconds"] > 0
    check_linear(result["curves"]["linear"])


@pytest.mark.slow
def test_figure2_all_activations_small(tmp_path):
    """The full command at width 50 (minutes: the hardtanh and ReLU replica solves)."""
    result = run_figure2(tmp_path)
    curves = result["curves"]
    assert set(curves) == {"linear", "hardtanh", "relu"}
    check_linear(curves["linear"])
    exact = np.asarray(curves["linear"]["exact"])
    np.testing.assert_allclose(curves["hardtanh"]["linear_approx"], exact, atol=0)
    np.testing.assert_allclose(curves["relu"]["half_linear_approx"], 0.5 * exact, atol=0)
    for name in ("hardtanh", "relu"):
        assert np.all(curves[name]["replica_converged"]), name
        assert np.all(np.isfinite(curves[name]["replica"])), name


def test_layer_samples_follow_the_model():
    import jax
    import jax.numpy as jnp

    w1, w2 = (jnp.asarray(w) for w in draw_weights(6, 0))
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 6))
    xi1, xi2 = 0.1 * jnp.ones((4, 6)), -0.2 * jnp.ones((4, 6))
    for kind, phi in enumerate([lambda z: z, lambda z: jnp.clip(z, -1, 1), lambda z: jnp.maximum(z, 0)]):
        (t1, t2), (s1, s2) = f2._layer_samples(x, w1, w2, 3.0, xi1, xi2, kind)
        hidden = phi(3.0 * x @ w1.T)
        np.testing.assert_allclose(t1, phi(3.0 * x @ w1.T + xi1), atol=1e-14)
        np.testing.assert_allclose(s1, hidden, atol=1e-14)
        np.testing.assert_allclose(t2, phi(3.0 * hidden @ w2.T + xi2), atol=1e-14)
        np.testing.assert_allclose(s2, phi(3.0 * hidden @ w2.T), atol=1e-14)


def test_weights_are_the_reference_demo_draw():
    w1, w2 = draw_weights(20, 42)
    rng = np.random.RandomState(42)
    np.testing.assert_array_equal(w1, rng.randn(20, 20) / np.sqrt(20))
    np.testing.assert_array_equal(w2, rng.randn(20, 20) / np.sqrt(20))


def test_figure2_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="activation"):
        f2.compute_figure2(jax.random.PRNGKey(0), width=10, sigmas=[1.0], n_samples=20, activations=["swish"], progress=False)
    with pytest.raises(ValueError, match="sigmas"):
        f2.compute_figure2(jax.random.PRNGKey(0), width=10, sigmas=[-1.0], n_samples=20, progress=False)
    with pytest.raises(SystemExit):
        main(["figure2", "--sigmas", "a,b", "--out", str(tmp_path)])
