"""Synthetic data: prior samples, teacher-student and generative-recognition sets."""

import jax
import numpy as np
import pytest

import jaxreplica as jr
from jaxreplica import data as jd


def test_prior_samples_have_the_right_moments():
    key = jax.random.key(0)
    n = 200_000
    x = np.asarray(jd.sample_prior(key, jr.Normal(mean=1.0, var=4.0), (n,)))
    assert abs(x.mean() - 1.0) < 4 * 2 / np.sqrt(n)
    assert abs(x.var() / 4.0 - 1) < 4 * np.sqrt(2 / n)
    b = np.asarray(jd.sample_prior(key, jr.Bimodal(prob=0.3), (n,)))
    assert set(np.unique(b)) == {-1.0, 1.0}
    assert abs(np.mean(b == 1) - 0.3) < 4 * np.sqrt(0.21 / n)
    s = np.asarray(jd.sample_prior(key, jr.SpikeSlab(prob=0.2, mean=1.0, var=2.0), (n,)))
    assert abs(np.mean(s == 0) - 0.8) < 4 * np.sqrt(0.16 / n)
    # E s = p mu = 0.2, E s^2 = p (var + mu^2) = 0.6
    assert abs(s.mean() - 0.2) < 0.01
    assert abs(np.mean(s**2) - 0.6) < 0.02


def test_samples_are_reproducible_from_the_key():
    a = jd.teacher_student(jax.random.key(5), 10, 2, samples_per_dim=3)
    b = jd.teacher_student(jax.random.key(5), 10, 2, samples_per_dim=3)
    c = jd.teacher_student(jax.random.key(6), 10, 2, samples_per_dim=3)
    np.testing.assert_array_equal(np.asarray(a.x_train), np.asarray(b.x_train))
    np.testing.assert_array_equal(np.asarray(a.y_test), np.asarray(b.y_test))
    assert not np.allclose(np.asarray(a.x_train), np.asarray(c.x_train))


def test_teacher_student():
    n_x, n_y, noise = 40, 4, 0.01
    d = jd.teacher_student(jax.random.key(1), n_x, n_y, noise=noise, fraction_relevant=0.5)
    assert d.x_train.shape == (100 * n_x, n_x) and d.x_test.shape == (100 * n_x, n_x)
    assert d.y_train.shape == (100 * n_x, n_y) and d.task == "regression"
    assert d.generative == () and d.teacher.shape == (n_y, n_x)
    np.testing.assert_array_equal(d.teacher[:, 20:], 0.0)
    # residual Y - W X is the noise: variance 0.01 (8000 x 4 draws)
    x = np.concatenate([d.x_train, d.x_test])
    y = np.concatenate([d.y_train, d.y_test])
    r = y - x @ d.teacher.T
    assert abs(r.var() / noise - 1) < 0.05
    assert abs(np.std(d.teacher[:, :20]) * np.sqrt(n_x) - 1) < 0.3
    desc = d.describe()
    assert desc["prior"] == {"kind": "Normal", "mean": 0.0, "var": 1.0} and desc["n_train"] == 4000


def test_teacher_student_classification_labels_sign():
    d = jd.teacher_student(jax.random.key(2), 20, 1, task="classification", samples_per_dim=10, noise=0.0)
    y = np.asarray(d.y_train)
    assert y.shape == (200, 2) and np.all(y.sum(1) == 1)
    s = np.asarray(d.x_train) @ d.teacher.T
    np.testing.assert_array_equal(y[:, 1], (s[:, 0] > 0).astype(float))


def test_generative_recognition_covariance_and_labels():
    n_code, n_x, noise = 10, 30, 0.01
    d = jd.generative_recognition(jax.random.key(3), n_code, n_x, noise=noise)
    assert d.x_train.shape == (3000, 30) and d.y_train.shape == (3000, 2)
    (g,) = d.generative
    assert g.weight.shape == (n_x, n_code) and g.noise == noise and g.activation == "linear" and g.alpha == 3.0
    np.testing.assert_allclose(g.spectrum(), np.linalg.eigvalsh(g.weight.T @ g.weight), atol=1e-12)
    x = np.concatenate([d.x_train, d.x_test])
    cov = np.cov(x.T)
    target = g.weight @ g.weight.T + noise * np.eye(n_x)
    assert np.linalg.norm(cov - target) / np.linalg.norm(target) < 0.05
    y = np.asarray(d.y_train)
    assert np.all(y.sum(1) == 1) and abs(y[:, 1].mean() - 0.5) < 0.05


def test_generative_recognition_regression_and_deeper_generator():
    d = jd.generative_recognition(jax.random.key(4), 8, 20, hidden_sizes=[16], activations=["relu", "linear"],
                                  noises=[0.0, 0.05], task="regression", fraction_relevant=0.5, samples_per_dim=5,
                                  prior=jr.Bimodal(prob=0.5))
    assert d.y_train.shape == (100, 4) and set(np.unique(np.asarray(d.y_train))) == {-1.0, 1.0}
    assert [g.weight.shape for g in d.generative] == [(16, 8), (20, 16)]
    assert [g.noise for g in d.generative] == [0.0, 0.05]
    assert d.describe()["gen_sizes"] == [8, 16, 20]


@pytest.mark.parametrize(
    "fn,kwargs,name",
    [
        (jd.teacher_student, dict(n_input=0), "n_input"),
        (jd.teacher_student, dict(n_input=5, noise=-1.0), "noise"),
        (jd.teacher_student, dict(n_input=5, fraction_relevant=0.0), "fraction_relevant"),
        (jd.teacher_student, dict(n_input=5, task="ranking"), "task"),
        (jd.teacher_student, dict(n_input=5, n_output=2, task="classification"), "n_output"),
        (jd.teacher_student, dict(n_input=5, samples_per_dim=0), "samples_per_dim"),
        (jd.teacher_student, dict(n_input=5, prior=object()), "prior"),
        (jd.generative_recognition, dict(n_code=5, n_input=10, activations=["swish"]), "activations"),
        (jd.generative_recognition, dict(n_code=5, n_input=10, noises=[0.1, 0.1]), "noises"),
    ],
)
def test_bad_input_raises_with_parameter_name(fn, kwargs, name):
    with pytest.raises(ValueError, match=name):
        fn(jax.random.key(0), **kwargs)


def test_prior_description_round_trip():
    for p in (jr.Normal(mean=0.5, var=2.0), jr.Bimodal(prob=0.3), jr.SpikeSlab(prob=0.1, mean=0.0, var=1.0)):
        q = jd.prior_from_description(jd.prior_description(p))
        assert jd.prior_description(q) == jd.prior_description(p)
