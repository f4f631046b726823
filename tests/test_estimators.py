"""Sample-based estimators: closed forms, bounds, invariances, and the single neuron."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreplica.estimators as est

LOG2, LOG4 = np.log(2.0), np.log(4.0)
SYMBOLS = jnp.array([-3.0, -1.0, 1.0, 3.0])


def gaussian_entropy(cov):
    return 0.5 * np.linalg.slogdet(2 * np.pi * np.e * np.asarray(cov))[1]


def ar1_covariance(d, rho=0.5):
    """AR(1) correlations with unequal scales: condition number up to about 16."""
    i = np.arange(d)
    scale = np.linspace(0.7, 1.4, d)
    return rho ** np.abs(i[:, None] - i[None, :]) * scale[:, None] * scale[None, :]


def gaussian_samples(seed, n, cov):
    chol = np.linalg.cholesky(cov)
    return jax.random.normal(jax.random.PRNGKey(seed), (n, cov.shape[0])) @ chol.T


def brute_force_sqdist(x):
    x = np.asarray(x)
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)


# --------------------------------------------------------------------------- k-NN


# The Kozachenko-Leonenko estimator with k = 3 and n = 4000 has a negative bias of
# about 0.08 nats at d = 6-8 on Gaussians and a spread of about 0.045 between sample
# sets, so a single estimate misses 0.1 about one time in four there; the tests
# below check the mean of four seeded sample sets (and each one within 0.2).
KNN_SEEDS = (0, 1, 2, 3)


@pytest.mark.parametrize("d", [1, 2, 4, 7, 10])
def test_knn_entropy_isotropic_gaussian(d):
    truth = gaussian_entropy(np.eye(d))
    errors = np.array([float(est.knn_entropy(jax.random.normal(jax.random.PRNGKey(s), (4000, d)), k=3)) - truth
                       for s in KNN_SEEDS])
    assert abs(errors.mean()) < 0.1 and np.all(np.abs(errors) < 0.2), errors


@pytest.mark.parametrize("d", [3, 6, 10])
def test_knn_entropy_correlated_gaussian_whitened(d):
    cov = ar1_covariance(d)  # condition number up to 16
    errors = np.array([float(est.knn_entropy(gaussian_samples(s, 4000, cov), k=3, whiten=True)) - gaussian_entropy(cov)
                       for s in KNN_SEEDS])
    assert abs(errors.mean()) < 0.1 and np.all(np.abs(errors) < 0.2), errors


def test_knn_entropy_matches_brute_force_and_equivariances():
    x = jax.random.normal(jax.random.PRNGKey(0), (300, 20))  # d > 16: Gram path + refinement
    d2 = brute_force_sqdist(x)
    np.fill_diagonal(d2, np.inf)
    k, n, d = 4, 300, 20
    eps = np.sqrt(np.sort(d2, axis=1)[:, k - 1])
    from scipy.special import digamma, gammaln

    ref = digamma(n) - digamma(k) + 0.5 * d * np.log(np.pi) - gammaln(d / 2 + 1) + d * np.mean(np.log(eps))
    h = float(est.knn_entropy(x, k=k))
    assert h == pytest.approx(ref, abs=1e-10)
    # Blocked evaluation gives the same number.
    assert float(est.knn_entropy(x, k=k, block_size=7)) == pytest.approx(h, abs=1e-12)
    # H(c x + b) = H(x) + d log|c|, exactly for this estimator.
    assert float(est.knn_entropy(2.5 * x + 1.0, k=k)) == pytest.approx(h + d * np.log(2.5), abs=1e-9)


def test_ksg_scalar_gaussian_pairs():
    z = jax.random.normal(jax.random.PRNGKey(3), (4000, 2))
    for r in (0.0, 0.5, 0.9):
        y = r * z[:, 0] + np.sqrt(1 - r * r) * z[:, 1]
        mi = float(est.ksg_mutual_information(z[:, 0], y, k=3))
        assert abs(mi + 0.5 * np.log(1 - r * r)) < 0.04, (r, mi)


def test_ksg_vector_gaussian_and_symmetry():
    # X in R^2, Y in R^2, coordinate pairs correlated r = 0.6: I = -log(1 - r^2).
    r = 0.6
    z = jax.random.normal(jax.random.PRNGKey(4), (3000, 4))
    x = z[:, :2]
    y = r * x + np.sqrt(1 - r * r) * z[:, 2:]
    mi = float(est.ksg_mutual_information(x, y))
    assert abs(mi + np.log(1 - r * r)) < 0.06
    assert float(est.ksg_mutual_information(y, x)) == pytest.approx(mi, abs=1e-12)
    assert float(est.ksg_mutual_information(x, y, block_size=128)) == pytest.approx(mi, abs=1e-12)


# --------------------------------------------------------------------- pairwise


def test_pairwise_bounds_closed_forms():
    d, s2 = 3, 0.2
    hz = 0.5 * d * np.log(2 * np.pi * np.e * s2)
    one = jnp.ones((1, d))
    b = est.pairwise_entropy_bounds(one, s2)
    assert float(b.lower) == pytest.approx(hz, abs=1e-12) and float(b.upper) == pytest.approx(hz, abs=1e-12)
    same = jnp.ones((50, d))  # all centres equal: one Gaussian
    assert float(est.pairwise_entropy_bound(same, s2)) == pytest.approx(hz, abs=1e-12)
    far = 100.0 * jnp.eye(d)  # well separated: H = H(Z) + log n
    assert float(est.bhattacharyya_entropy_bound(far, s2)) == pytest.approx(hz + np.log(d), abs=1e-12)
    assert float(est.pairwise_entropy_bound(far, s2)) == pytest.approx(hz + np.log(d), abs=1e-12)


def test_pairwise_bound_matches_brute_force_gram_path():
    s = jax.random.normal(jax.random.PRNGKey(5), (200, 30))
    s2 = 4.0
    d2 = brute_force_sqdist(s)
    from scipy.special import logsumexp

    hz = 15 * np.log(2 * np.pi * np.e * s2)
    up = hz - np.mean(logsumexp(-d2 / (2 * s2), axis=1) - np.log(200))
    lo = hz - np.mean(logsumexp(-d2 / (8 * s2), axis=1) - np.log(200))
    b = est.pairwise_entropy_bounds(s, s2, block_size=33)
    assert float(b.upper) == pytest.approx(up, abs=1e-9)
    assert float(b.lower) == pytest.approx(lo, abs=1e-9)


def test_pairwise_bounds_bracket_monte_carlo_mixture_entropy():
    rng = np.random.default_rng(0)
    shapes = [(7, 2), (30, 5)]  # few shapes: one compilation each
    for trial in range(12):
        n, d = shapes[trial % 2]
        s2 = float(np.exp(rng.uniform(np.log(0.02), np.log(5.0))))
        centres = jnp.asarray(rng.normal(size=(n, d)) * rng.uniform(0.2, 3.0))
        b = est.pairwise_entropy_bounds(centres, s2)
        mc = est.smoothed_entropy(centres, s2, jax.random.PRNGKey(trial), 4000, return_stderr=True)
        slack = 4.0 * float(mc.stderr) + 1e-12
        assert float(b.lower) <= float(mc.value) + slack, (trial, b, mc)
        assert float(mc.value) <= float(b.upper) + slack, (trial, b, mc)
        assert float(b.lower) <= float(b.upper)


def test_fit_mixture_variance_maximises_leave_one_out_likelihood(monkeypatch):
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    import jaxreplica.estimators.pairwise as pw

    n, d = 150, 3
    s = 2.0 * jax.random.normal(jax.random.PRNGKey(8), (n, d))
    d2 = brute_force_sqdist(s)
    np.fill_diagonal(d2, np.inf)

    def neg_loglik(log_var):
        var = np.exp(log_var)
        return -(np.mean(logsumexp(-d2 / (2 * var), axis=1)) - np.log(n - 1) - 0.5 * d * np.log(2 * np.pi * var))

    ref = minimize_scalar(neg_loglik, bounds=(-10.0, 5.0), method="bounded", options={"xatol": 1e-12})
    fit = est.fit_mixture_variance(s, tol=1e-12, max_iter=5000)
    assert bool(fit.converged)
    assert float(fit.variance) == pytest.approx(np.exp(ref.x), rel=1e-6)
    assert float(fit.log_likelihood) == pytest.approx(-ref.fun, abs=1e-9)
    # The blocked path (used above 4096 samples) gives the same fit.
    dense = est.fit_mixture_variance(s[:149], tol=1e-12, max_iter=5000)
    monkeypatch.setattr(pw, "_FIT_DENSE_MAX_N", 10)  # read when a new signature is traced
    blocked = est.fit_mixture_variance(s[:149], tol=1e-12, max_iter=5000, block_size=16)
    assert float(blocked.variance) == pytest.approx(float(dense.variance), rel=1e-10)


# --------------------------------------------------------------------- smoothed


def test_smoothed_entropy_closed_forms():
    d, s2 = 4, 0.3
    hz = 0.5 * d * np.log(2 * np.pi * np.e * s2)
    key = jax.random.PRNGKey(0)
    single = est.smoothed_entropy(jnp.zeros((1, d)), s2, key, 500, return_stderr=True)
    assert float(single.value) == pytest.approx(hz, abs=1e-12) and float(single.stderr) < 1e-12
    far = 1e3 * jax.random.normal(jax.random.PRNGKey(1), (16, d))
    assert float(est.smoothed_entropy(far, s2, key, 512)) == pytest.approx(hz + np.log(16), abs=1e-10)
    assert float(est.gaussian_entropy(d, s2)) == pytest.approx(hz, abs=1e-14)


def test_smoothed_entropy_gaussian_input():
    # P = N(0, 1) in d = 2, s2 = 0.5: h(P * N) = log(2 pi e 1.5).
    s = jax.random.normal(jax.random.PRNGKey(2), (3000, 2))
    v = est.smoothed_entropy(s, 0.5, jax.random.PRNGKey(3), 12000, return_stderr=True)
    assert abs(float(v.value) - np.log(2 * np.pi * np.e * 1.5)) < 0.03
    assert float(v.stderr) < 0.015


def test_estimators_jit_and_vmap():
    s = jax.random.normal(jax.random.PRNGKey(6), (64, 3))
    key = jax.random.PRNGKey(7)
    f = jax.jit(est.smoothed_entropy, static_argnames=("n_samples",))
    assert float(f(s, 0.4, key, n_samples=256)) == pytest.approx(float(est.smoothed_entropy(s, 0.4, key, 256)), abs=1e-12)
    g = jax.jit(est.knn_entropy, static_argnames=("k",))
    assert float(g(s, k=2)) == pytest.approx(float(est.knn_entropy(s, k=2)), abs=1e-12)
    noise = jnp.array([0.1, 0.5, 2.0])
    batched = jax.vmap(lambda v: est.pairwise_entropy_bound(s, v))(noise)
    for v, b in zip(noise, batched):
        assert float(b) == pytest.approx(float(est.pairwise_entropy_bound(s, float(v))), abs=1e-12)
    # The upper bound grows with the noise variance here (derivative through the bound).
    assert float(jax.grad(lambda v: est.pairwise_entropy_bound(s, v))(0.5)) > 0


def test_input_validation():
    x = jnp.zeros((10, 2))
    with pytest.raises(ValueError, match="k"):
        est.knn_entropy(x, k=10)
    with pytest.raises(ValueError, match="k"):
        est.ksg_mutual_information(x, x, k=0)
    with pytest.raises(ValueError, match="same number"):
        est.ksg_mutual_information(x, x[:5])
    with pytest.raises(ValueError, match="whiten"):
        est.knn_entropy(jnp.ones((3, 5)), k=1, whiten=True)
    with pytest.raises(ValueError, match="noise_var"):
        est.pairwise_entropy_bound(x, -1.0)
    with pytest.raises(ValueError, match="noise_var"):
        est.smoothed_entropy(x, 0.0, jax.random.PRNGKey(0), 10)
    with pytest.raises(ValueError, match="n_samples"):
        est.smoothed_entropy(x, 1.0, jax.random.PRNGKey(0), 0)
    with pytest.raises(ValueError, match="n_bins"):
        est.binned_entropy(x, 0)
    with pytest.raises(ValueError, match="shape"):
        est.knn_entropy(jnp.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="probs"):
        est.discrete_awgn_mutual_information(jnp.array([0.0, 1.0]), jnp.array([0.5, 0.6]), 1.0)
    with pytest.raises(ValueError, match="noise_var"):
        est.discrete_awgn_mutual_information(jnp.array([0.0, 1.0]), jnp.array([0.5, 0.5]), -1.0)
    with pytest.raises(ValueError, match="noise_var"):
        est.noisy_network_information([jnp.tanh], x, [0.1, 0.1], jax.random.PRNGKey(0))


# ---------------------------------------------------------------------- binning


def test_binned_entropy_matches_unique_rows():
    x = np.random.default_rng(1).integers(0, 5, size=(1000, 3)).astype(float)
    _, counts = np.unique(x, axis=0, return_counts=True)
    p = counts / counts.sum()
    assert float(est.binned_entropy(x, 5, value_range=(0.0, 5.0))) == pytest.approx(-(p * np.log(p)).sum(), abs=1e-12)
    # Continuous samples in many dimensions: every row its own code, H = log n.
    y = jax.random.normal(jax.random.PRNGKey(0), (500, 50))
    assert float(est.binned_entropy(y, 30)) == pytest.approx(np.log(500), abs=1e-12)
    # One bin: a single code.
    assert float(est.binned_entropy(y, 1)) == pytest.approx(0.0, abs=1e-15)


# ------------------------------------------------------------------------- AWGN


def _quad_awgn(symbols, probs, noise_var):
    from scipy import integrate

    s, p = np.asarray(symbols, float), np.asarray(probs, float)
    sd = np.sqrt(noise_var)

    def integrand(t):
        dens = np.sum(p * np.exp(-((t - s) ** 2) / (2 * noise_var))) / np.sqrt(2 * np.pi * noise_var)
        return -dens * np.log(dens) if dens > 0 else 0.0

    h, _ = integrate.quad(integrand, s.min() - 40 * sd, s.max() + 40 * sd, points=sorted(set(s)),
                          limit=2000, epsabs=1e-14, epsrel=1e-13)
    return h - 0.5 * np.log(2 * np.pi * np.e * noise_var)


@pytest.mark.parametrize(
    "symbols,probs,noise_var",
    [
        ([-3.0, -1.0, 1.0, 3.0], [0.25] * 4, 1.0),
        (list(np.tanh(0.5 * np.array([-3.0, -1, 1, 3]))), [0.25] * 4, 0.01),
        (list(np.tanh(2.0 * np.array([-3.0, -1, 1, 3]) + 0.3)), [0.25] * 4, 0.01),
        ([0.0, 1.0, 2.5], [0.2, 0.5, 0.3], 0.3),
        ([0.0, 0.05], [0.5, 0.5], 1e-4),
        ([0.0, 0.3], [0.1, 0.9], 0.01),
    ],
)
def test_discrete_awgn_matches_adaptive_quadrature(symbols, probs, noise_var):
    mi = est.discrete_awgn_mutual_information(jnp.array(symbols), jnp.array(probs), noise_var)
    assert float(mi) == pytest.approx(_quad_awgn(symbols, probs, noise_var), abs=1e-8)


def test_discrete_awgn_limits_and_invariances():
    f = est.discrete_awgn_mutual_information
    assert float(f(jnp.array([0.7]), jnp.array([1.0]), 0.1)) == pytest.approx(0.0, abs=1e-14)
    assert float(f(jnp.array([0.0, 50.0, 100.0]), jnp.full(3, 1 / 3), 1.0)) == pytest.approx(np.log(3), abs=1e-12)
    s, p = jnp.array([0.0, 0.4, 1.1]), jnp.array([0.3, 0.3, 0.4])
    base = float(f(s, p, 0.05))
    assert float(f(3.0 * s + 2.0, p, 0.45)) == pytest.approx(base, abs=1e-12)  # scale + shift
    merged = float(f(jnp.array([0.0, 0.0, 0.4, 1.1]), jnp.array([0.1, 0.2, 0.3, 0.4]), 0.05))
    assert merged == pytest.approx(base, abs=1e-12)  # repeated symbols add up
    # Gaussian input limit: a fine lattice weighted by N(0, 1) (spacing 0.1, noise
    # standard deviation 0.71; the lattice error is of order exp(-2 pi^2 s2 / h^2))
    # gives the Gaussian channel's log(1 + 1/s2)/2.
    grid = jnp.linspace(-9.0, 9.0, 181)
    w = jnp.exp(-0.5 * grid**2)
    assert float(f(grid, w / w.sum(), 0.5)) == pytest.approx(0.5 * np.log(3.0), abs=1e-9)


# ----------------------------------------------------------------- single neuron


def single_neuron_symbols(w, b=0.0):
    return jnp.tanh(w * SYMBOLS + b)


def test_single_neuron_exact_information_falls_from_log4_to_log2():
    ws = np.geomspace(0.5, 20.0, 30)
    mi = np.array([float(est.discrete_awgn_mutual_information(single_neuron_symbols(w), jnp.full(4, 0.25), 0.01))
                   for w in ws])
    assert mi[0] > LOG4 - 0.05 and mi[0] < LOG4
    assert np.all(np.diff(mi) < 1e-12)  # non-increasing as the symbols saturate
    assert mi[-1] == pytest.approx(LOG2, abs=1e-9)


@pytest.mark.parametrize("w", [0.5, 2.0, 8.0])
def test_single_neuron_smoothed_plug_in_and_pairwise(w):
    noise = 0.01
    hz = 0.5 * np.log(2 * np.pi * np.e * noise)
    exact = float(est.discrete_awgn_mutual_information(single_neuron_symbols(w), jnp.full(4, 0.25), noise))
    x = jax.random.choice(jax.random.PRNGKey(int(10 * w)), SYMBOLS, (4000,))
    s = jnp.tanh(w * x)
    plug_in = float(est.smoothed_entropy(s, noise, jax.random.PRNGKey(1), 8000)) - hz
    assert abs(plug_in - exact) < 0.03
    b = est.pairwise_entropy_bounds(s, noise)
    assert float(b.lower) - hz - 0.02 <= exact <= float(b.upper) - hz + 0.02


def test_single_neuron_binned_information_counts_clusters():
    x = jnp.repeat(SYMBOLS, 250)  # exactly equiprobable
    for w, expected in [(0.5, LOG4), (8.0, LOG2)]:
        t = jnp.tanh(w * x)
        assert float(est.binned_entropy(t, 30, value_range=(-1.0, 1.0))) == pytest.approx(expected, abs=1e-12)


def test_noisy_network_information_single_neuron_and_data_processing():
    # Layer 1 is the single neuron; layer 2 a second noisy tanh unit on top of it.
    w, noise = 2.0, 0.01
    exact = float(est.discrete_awgn_mutual_information(single_neuron_symbols(w), jnp.full(4, 0.25), noise))
    res = est.noisy_network_information(
        [lambda t: jnp.tanh(w * t), lambda t: jnp.tanh(3.0 * t - 0.5)], SYMBOLS[:, None], [noise, 0.05],
        jax.random.PRNGKey(0), n_conditional=64, n_mc=4096, n_mc_conditional=512, marginal_repeats=64,
    )
    assert res.mutual_information.shape == (2,)
    i1, i2 = (float(v) for v in res.mutual_information)
    assert i1 == pytest.approx(exact, abs=0.01)
    # S_1 is a function of X: h(T_1 | X) is the noise entropy, exactly.
    assert float(res.conditional_entropy[0]) == pytest.approx(0.5 * np.log(2 * np.pi * np.e * noise), abs=1e-9)
    # Data processing: I(X; T_2) <= I(X; T_1) <= log 4.
    assert 0.0 < i2 < i1 <= LOG4


# -------------------------------------------------------------------- convergence rate


@pytest.mark.slow
def test_smoothed_plug_in_error_rate():
    """RMSE of h(P_n * N) over seeds falls like n^{-1/2} (Gaussian P, exact answer)."""
    ns = np.array([100, 400, 1600, 6400])
    exact = 0.5 * np.log(2 * np.pi * np.e * 1.5)
    rmse = []
    for n in ns:
        errs = [float(est.smoothed_entropy(jax.random.normal(jax.random.PRNGKey(1000 * r + int(n)), (int(n), 1)), 0.5,
                                           jax.random.PRNGKey(r), 8 * int(n))) - exact for r in range(12)]
        rmse.append(np.sqrt(np.mean(np.square(errs))))
    slope = np.polyfit(np.log(ns), np.log(rmse), 1)[0]
    assert -0.7 < slope < -0.3
