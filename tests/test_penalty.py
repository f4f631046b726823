"""Information as a differentiable objective: the penalty, its gradient, training with it, design.

Default tests use linear layers, or hardtanh only as the *measured* (last) layer of a
chain, whose solves compile in seconds; hidden hardtanh/ReLU channels (2-D
quadrature, slow to compile and to iterate) are in the ``slow`` tests.
"""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreplica as jr
import jaxreplica.data as jd
import jaxreplica.design as design
import jaxreplica.training as jt
from jaxreplica.experiments.figure2 import demo_spectra, figure2_chain
from jaxreplica.experiments.presets import build
from jaxreplica.nn import build_network

NOTRACK = jt.Tracking(every=0)


def _fd_gradient(f, S, entries, rel_step=1e-5):
    """Central differences of ``f(S)`` for ``entries = [(layer index, unit index), ...]``."""
    out = []
    for k, j in entries:
        h = rel_step * max(abs(float(S[k][j])), 1e-3)
        up = [s.at[j].add(h) if i == k else s for i, s in enumerate(S)]
        down = [s.at[j].add(-h) if i == k else s for i, s in enumerate(S)]
        out.append((f(up) - f(down)) / (2 * h))
    return np.asarray(out)


def _assert_gradient(grad, S, f, entries, rtol=1e-5):
    fd = _fd_gradient(f, S, entries)
    got = np.asarray([float(grad[k][j]) for k, j in entries])
    np.testing.assert_allclose(got, fd, rtol=rtol, atol=rtol * np.max(np.abs(fd)))


def _recognition(n_code=8, n_x=24, samples=10, seed=0):
    return jd.generative_recognition(jax.random.key(seed), n_code, n_x, noise=0.01, samples_per_dim=samples)


# ----------------------------------------------------------------------------- the penalty


def test_penalty_of_one_linear_layer_is_the_exact_information_and_gradient():
    """One USV layer on Gaussian data: I(X; T_1)/n_0 = sum_k log(1 + s_k^2/noise)/(2 n_0), exactly."""
    data = jd.teacher_student(jax.random.key(0), 12, 4, samples_per_dim=2)
    net = build_network([12, 8, 4], ["linear", "linear"], [True, False], key=jax.random.key(1))
    noise = 1e-3
    pen = jt.InformationPenalty.for_network(net, data, {1: 2.0}, last_noise=noise, tol=1e-13)
    S = jt.singular_values(net, 1)
    (value, state), grad = jax.value_and_grad(lambda s: pen(s, None), has_aux=True)(S)
    s = np.asarray(S[0])
    exact = np.sum(np.log1p(s**2 / noise)) / (2 * 12)
    assert bool(state.converged[0])
    assert float(state.mutual_information[0]) == pytest.approx(exact, rel=1e-11)
    assert float(value) == pytest.approx(2.0 * exact, rel=1e-11)
    np.testing.assert_allclose(np.asarray(grad[0]), 2.0 * (s / noise) / (1 + s**2 / noise) / 12, rtol=1e-9)
    # and it agrees with the training monitor's exact values (log-determinants)
    _, i_exact = jt.exact_linear_information(1.0, [], [np.asarray(net.layers[0].matrix())], last_noise=noise)
    assert float(state.mutual_information[0]) == pytest.approx(i_exact[0], rel=1e-10)


@pytest.mark.slow
def test_penalty_gradient_matches_finite_differences_linear():
    """Two linear USV layers (one with alpha < 1, so zero eigenvalues) behind a generative layer:
    cold and warm start, envelope and implicit gradients against central differences.

    Everything runs eagerly around ``jr.solve`` (compiled once per chain structure), which
    keeps the compilations few."""
    data = _recognition()
    net = build_network([24, 16, 12, 2], ["linear", "linear", "softmax"], [True, True, False], key=jax.random.key(1))
    pen = jt.InformationPenalty.for_network(net, data, {1: 0.3, 2: 0.7}, tol=1e-13)
    S = jt.singular_values(net, pen.depth)
    base = pen.initial_state(S)
    f = lambda s: float(pen(s, base)[0])  # noqa: E731  (the recomputed penalty, solved to 1e-13)
    entries = [(0, 0), (0, 7), (0, 15), (1, 0), (1, 11)]
    # cold: multi-start solves
    (v_cold, st_cold), g_cold = jax.value_and_grad(lambda s: pen(s, None), has_aux=True)(S)
    assert bool(jnp.all(st_cold.converged))
    _assert_gradient(g_cold, S, f, entries)
    # warm: from the fixed points of a different network
    other = pen.initial_state([1.05 * s for s in S])
    (v_warm, st_warm), g_warm = jax.value_and_grad(lambda s: pen(s, other), has_aux=True)(S)
    assert float(v_warm) == pytest.approx(float(v_cold), rel=1e-10)
    _assert_gradient(g_warm, S, f, entries)
    np.testing.assert_allclose(np.asarray(st_warm.mutual_information), np.asarray(st_cold.mutual_information),
                               rtol=1e-10)
    # the engine's implicit derivative (custom_root) gives the same gradient
    implicit = dataclasses.replace(pen, gradient="implicit")
    (_, _), g_impl = jax.value_and_grad(lambda s: implicit(s, other), has_aux=True)(S)
    for a, b in zip(g_impl, g_warm):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-14)


def test_penalty_gradient_hardtanh_measured_layer():
    """Two-layer hardtanh network, penalty on T_1 (hardtanh as the chain's last layer): cold and warm."""
    data = jd.teacher_student(jax.random.key(3), 20, 4, samples_per_dim=2)
    net = build_network([20, 20, 20, 4], ["hardtanh", "hardtanh", "linear"], [True, True, False], key=jax.random.key(2),
                        scale=1.5)
    pen = jt.InformationPenalty.for_network(net, data, {1: 1.0}, tol=1e-12)
    S = jt.singular_values(net, 1)
    (v0, st0), g_cold = jax.value_and_grad(lambda s: pen(s, None), has_aux=True)(S)
    f = lambda s: float(pen(s, st0)[0])  # noqa: E731
    entries = [(0, j) for j in (0, 7, 19)]
    _assert_gradient(g_cold, S, f, entries)
    warm = pen.initial_state([0.95 * S[0]])
    (_, _), g_warm = jax.value_and_grad(lambda s: pen(s, warm), has_aux=True)(S)
    _assert_gradient(g_warm, S, f, entries)


def test_non_converged_solve_gives_zero_gradient_and_keeps_warm_start():
    data = _recognition()
    net = build_network([24, 16, 12, 2], ["linear", "linear", "softmax"], [True, True, False], key=jax.random.key(1))
    good = jt.InformationPenalty.for_network(net, data, {2: 1.0})
    bad = dataclasses.replace(good, max_iter=1)
    S = jt.singular_values(net, 2)
    state = good.initial_state(S)
    moved = [1.3 * s for s in S]  # far enough that one iteration does not converge
    (value, new), grad = jax.value_and_grad(lambda s: bad(s, state), has_aux=True)(moved)
    assert not bool(new.converged[0]) and int(new.not_converged) == 1
    assert all(bool(jnp.all(g == 0)) for g in grad)
    assert float(value) == pytest.approx(float(state.mutual_information[0]))  # stale value, no gradient
    for a, b in zip(jax.tree_util.tree_leaves(new.fixed_points), jax.tree_util.tree_leaves(state.fixed_points)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # cold and not converged: value 0, NaN information, zero (finite) gradient
    (value, new), grad = jax.value_and_grad(lambda s: bad(s, None), has_aux=True)(moved)
    assert float(value) == 0.0 and np.isnan(float(new.mutual_information[0]))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grad)


def test_penalties_differing_in_beta_share_one_warm_program():
    """The warm step reads the betas from its state: two penalties that differ only in beta
    lower to the same program, and weigh their layers with their own betas."""
    data = _recognition()
    net = build_network([24, 16, 12, 2], ["linear", "hardtanh", "softmax"], [True, True, False], key=jax.random.key(1))
    S = jt.singular_values(net, 2)
    pens = [jt.InformationPenalty.for_network(net, data, {1: b1, 2: b2}) for b1, b2 in ((0.1, -0.7), (2.0, 0.3))]
    states = [p.initial_state(S) for p in pens]
    texts = [jax.jit(lambda s, st, p=p: p(s, st)).lower(S, st).as_text() for p, st in zip(pens, states)]
    assert texts[0] == texts[1]
    for p, st in zip(pens, states):
        value, new = p(S, st)
        np.testing.assert_array_equal(np.asarray(new.weights), p.beta)
        assert float(value) == pytest.approx(float(np.dot(p.beta, np.asarray(new.mutual_information))), rel=1e-12)
    # a state of another penalty is refused where its weights can be read
    with pytest.raises(ValueError, match="betas"):
        pens[0](S, states[1])


def test_penalty_validation():
    data = _recognition()
    net = build_network([24, 16, 12, 2], ["linear", "relu", "softmax"], [True, False, False], key=jax.random.key(1))
    with pytest.raises(ValueError, match="dense"):
        jt.InformationPenalty.for_network(net, data, {2: 0.1})
    with pytest.raises(ValueError, match="softmax|dense"):
        jt.InformationPenalty.for_network(net, data, {3: 0.1})
    with pytest.raises(ValueError, match="1..2"):
        jt.InformationPenalty(betas={3: 0.1}, prior=data.prior, sizes=(24, 16, 12), activations=("linear", "relu"))
    with pytest.raises(ValueError, match="replica channel"):
        jt.InformationPenalty(betas={2: 0.1}, prior=data.prior, sizes=(24, 16, 12),
                              activations=("linear", "softmax"))
    with pytest.raises(ValueError, match="finite"):
        jt.InformationPenalty.for_network(net, data, {1: math.nan})
    with pytest.raises(ValueError, match="gradient"):
        jt.InformationPenalty.for_network(net, data, {1: 0.1}, gradient="unrolled")
    with pytest.raises(ValueError, match="at least one"):
        jt.InformationPenalty.for_network(net, data, {})
    with pytest.raises(ValueError, match="InformationPenalty"):
        jt.train(net, data, jax.random.key(0), jt.TrainConfig(epochs=1), tracking=NOTRACK, progress=False, penalty=[(1, 0.1)])


# ----------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def plain_run():
    """beta = 0 (the plain trainer), shared by the tests that compare against it."""
    return _small_recognition_run(0.0)


def _small_recognition_run(beta, seed=0, epochs=3, activation="hardtanh", **options):
    data = _recognition(samples=10, seed=seed)
    net = build_network([24, 32, 16, 2], ["linear", activation, "softmax"], [True, True, False], key=jax.random.key(seed + 1))
    penalty = jt.InformationPenalty.for_network(net, data, {2: beta}, **options) if beta else None
    _, hist = jt.train(net, data, jax.random.key(seed), jt.TrainConfig(epochs=epochs, learning_rate=0.05), tracking=NOTRACK, progress=False, penalty=penalty)
    return net, data, hist


def test_training_with_penalty_lowers_information(tmp_path, plain_run):
    """Same seed, beta = 0 and beta = 0.5 on T_2: the penalised run ends with less I(X; T_2)."""
    net0, data, h0 = plain_run
    net1, _, h1 = _small_recognition_run(0.5)
    i0 = jt.network_information(net0, data, [2])[0]
    i1 = jt.network_information(net1, data, [2])[0]
    assert i1 < i0 - 1e-4, (i0, i1)
    # the recorded trajectory: starts at the common initial value, decreases, no failures
    assert h1.penalty_information.shape == (4, 1) and h1.penalty.shape == (4,)
    assert float(h1.penalty_information[-1, 0]) == pytest.approx(i1, abs=1e-6)
    assert np.all(np.diff(h1.penalty_information[:, 0]) < 0)
    np.testing.assert_allclose(h1.penalty, 0.5 * h1.penalty_information[:, 0], rtol=1e-14)
    assert h1.penalty_information[0, 0] == pytest.approx(jt.network_information(
        build_network([24, 32, 16, 2], ["linear", "hardtanh", "softmax"], [True, True, False], key=jax.random.key(1)), data, [2])[0])
    assert h1.penalty_not_converged.sum() == 0 and h1.penalty_nonfinite.sum() == 0
    assert h0.penalty is None and h1.config["training"]["info_penalty"]["betas"] == {"2": 0.5}
    # test accuracy is reported for both runs
    print(f"I(X;T_2): beta=0 {i0:.6f}, beta=0.5 {i1:.6f}; test accuracy {h0.test_accuracy[-1]:.3f}, "
          f"{h1.test_accuracy[-1]:.3f}")
    assert np.all(np.isfinite(h0.test_accuracy)) and np.all(np.isfinite(h1.test_accuracy))
    # history round trip keeps the penalty record
    h1.save(tmp_path)
    back = jt.History.load(tmp_path)
    for name in ("penalty", "penalty_information", "penalty_not_converged", "penalty_nonfinite"):
        np.testing.assert_array_equal(getattr(back, name), getattr(h1, name))


@pytest.mark.slow
def test_forced_non_convergence_leaves_parameters_finite_and_is_counted():
    """max_iter=1: every penalty solve fails; the run is the plain one, and every failure is counted."""
    net0, _, h0 = _small_recognition_run(0.0, activation="linear")
    net1, _, h1 = _small_recognition_run(0.5, activation="linear", max_iter=1)
    # row 0: the cold solve; then 2 steps per epoch and the end-of-epoch evaluation
    assert h1.penalty_not_converged[0] == 1 and np.all(h1.penalty_not_converged[1:] == 3)
    assert np.isnan(h1.penalty_information).all() and np.all(h1.penalty == 0)
    for a, b in zip(net0.layers, net1.layers):
        w0, w1 = np.asarray(a.matrix()), np.asarray(b.matrix())
        assert np.all(np.isfinite(w1))
        np.testing.assert_allclose(w1, w0, rtol=0, atol=1e-13)  # no penalty gradient was applied
    np.testing.assert_allclose(h1.test_loss, h0.test_loss, rtol=1e-12)


def test_cli_info_penalty(tmp_path):
    from jaxreplica.cli import main

    out = tmp_path / "run"
    rc = main(["train", "--preset", "figure3", "--width", "12", "--epochs", "1", "--no-track", "--no-progress",
               "--info-penalty", "2:0.1", "--out", str(out)])
    assert rc == 0
    hist = jt.History.load(out)
    assert hist.penalty_information.shape == (2, 1) and hist.penalty_not_converged.sum() == 0
    assert hist.penalty_information[1, 0] < hist.penalty_information[0, 0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["info_penalty"] == {"2": 0.1} and summary["penalty_not_converged"] == 0
    assert summary["final_penalty"] == pytest.approx(0.1 * hist.penalty_information[-1, 0], rel=1e-12)


# ----------------------------------------------------------------------------- design by gradient


def _hardtanh_one_layer(width=50, seed=0):
    rng = np.random.RandomState(seed)
    w = rng.randn(width, width) / np.sqrt(width)
    ev = np.clip(np.linalg.eigvalsh(w.T @ w), 0.0, None)
    return lambda s: jr.Chain(prior=jr.Normal(mean=0.0, var=1.0),
                              layers=[(jr.Empirical(eigenvalues=ev * s**2, alpha=1.0), jr.HardTanh(noise=1e-5))])


def _sweep_argmax(chain_fn, lo, hi, coarse=0.1, fine=0.002):
    sweep = design.dense_sweep(chain_fn, np.arange(lo, hi + coarse / 2, coarse))
    assert sweep["converged"].all()
    s0 = design.sweep_maximum(sweep["grid"], sweep["entropy"])
    dense = design.dense_sweep(chain_fn, np.arange(s0 - 10 * fine, s0 + 10.5 * fine, fine))
    assert dense["converged"].all()
    return design.sweep_maximum(dense["grid"], dense["entropy"]), sweep


def test_design_maximizes_entropy_of_a_hardtanh_layer_cheap():
    """Width 50, one hardtanh layer: H(T_1) peaks inside (0.5, 4); Adam lands on the sweep's maximum."""
    chain_fn = _hardtanh_one_layer()
    best, _ = _sweep_argmax(chain_fn, 0.5, 4.0)
    assert 1.0 < best < 3.5
    res = design.maximize_entropy(chain_fn, 1.0, gtol=1e-7, steps=400,
                              optimizer=optax.adam(optax.exponential_decay(0.1, 50, 0.5)))
    assert res.done and res.not_converged == 0
    assert abs(float(res.params) - best) < 1e-3
    assert res.cold_entropy == pytest.approx(res.entropy, abs=1e-9)


def test_design_matches_a_target_information_linear():
    """Two linear layers (width 30): the weight scale that gives I(X; T_2)/n_0 = 2."""
    rng = np.random.RandomState(1)
    ev = [np.clip(np.linalg.eigvalsh((lambda w: w.T @ w)(rng.randn(30, 30) / np.sqrt(30))), 0, None)
          for _ in range(2)]

    def chain_fn(s):
        return jr.Chain(prior=jr.Normal(mean=0.0, var=1.0),
                        layers=[(jr.Empirical(eigenvalues=ev[0] * s**2, alpha=1.0), jr.Linear(noise=0.0)),
                                (jr.Empirical(eigenvalues=ev[1] * s**2, alpha=1.0), jr.Linear(noise=1e-5))])

    res = design.match_information(chain_fn, 0.5, 2.0, atol=1e-6)
    assert res.done and abs(res.information - 2.0) <= 1e-4
    check = jr.solve(chain_fn(float(res.params)), tol=1e-12)
    assert float(check.mutual_information) == pytest.approx(2.0, abs=1e-4)


@pytest.mark.slow
def test_design_per_layer_scales_linear():
    """A pytree of parameters (one scale per layer) to a target information."""
    rng = np.random.RandomState(1)
    ev = [np.clip(np.linalg.eigvalsh((lambda w: w.T @ w)(rng.randn(30, 30) / np.sqrt(30))), 0, None)
          for _ in range(2)]
    res2 = design.match_information(
        lambda p: jr.Chain(prior=jr.Normal(mean=0.0, var=1.0),
                           layers=[(jr.Empirical(eigenvalues=ev[0] * p["s1"] ** 2, alpha=1.0), jr.Linear(noise=0.0)),
                                   (jr.Empirical(eigenvalues=ev[1] * p["s2"] ** 2, alpha=1.0),
                                    jr.Linear(noise=1e-5))]),
        {"s1": 0.5, "s2": 0.7}, 2.0, atol=1e-6)
    assert res2.done and abs(res2.information - 2.0) <= 1e-4


def test_sweep_maximum_parabola():
    x = np.linspace(0, 2, 21)
    assert design.sweep_maximum(x, -(x - 0.737) ** 2) == pytest.approx(0.737, abs=1e-12)
    assert design.sweep_maximum(x, x) == 2.0


# ----------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_penalty_gradient_two_layer_hardtanh_network():
    """Both layers hardtanh (a hidden hardtanh channel): FD to 1e-5 relative, cold and warm start."""
    data = jd.teacher_student(jax.random.key(3), 20, 4, samples_per_dim=2)
    net = build_network([20, 20, 20, 4], ["hardtanh", "hardtanh", "linear"], [True, True, False], key=jax.random.key(2),
                        scale=1.5)
    # tol 1e-10: the hidden hardtanh channel's quadrature does not let the relative change
    # of the order parameters go much below that (1e-12 ran into max_iter)
    pen = jt.InformationPenalty.for_network(net, data, {1: 0.4, 2: 1.0}, tol=1e-10, max_iter=3000)
    S = jt.singular_values(net, 2)
    v0, st0 = pen.initial(S)
    assert bool(jnp.all(st0.converged))
    (vc, stc), g_cold = jax.value_and_grad(lambda s: pen(s, None), has_aux=True)(S)
    f = lambda s: float(pen(s, st0)[0])  # noqa: E731
    entries = [(0, 0), (0, 11), (1, 3), (1, 19)]
    _assert_gradient(g_cold, S, f, entries)
    warm = pen.initial_state([0.97 * s for s in S])
    (_, _), g_warm = jax.value_and_grad(lambda s: pen(s, warm), has_aux=True)(S)
    _assert_gradient(g_warm, S, f, entries)


@pytest.mark.slow
def test_recognition_hardtanh_small_penalty_on_last_hidden_layer():
    """The recognition-hardtanh preset at --scale small (data cut to 300 samples, 2 epochs):
    beta = 0.1 on T_4 ends with less I(X; T_4) than beta = 0 from the same seed."""
    def run(beta):
        net, data, _ = build("recognition-hardtanh", jax.random.key(0), scale="small")
        data = dataclasses.replace(data, x_train=data.x_train[:300], y_train=data.y_train[:300],
                                   x_test=data.x_test[:300], y_test=data.y_test[:300])
        penalty = jt.InformationPenalty.for_network(net, data, {4: beta}) if beta else None
        _, hist = jt.train(net, data, jax.random.key(0), jt.TrainConfig(epochs=2), tracking=NOTRACK, progress=False, penalty=penalty)
        return net, data, hist

    net0, data, h0 = run(0.0)
    net1, _, h1 = run(0.1)
    i0 = jt.network_information(net0, data, [4])[0]
    i1 = jt.network_information(net1, data, [4])[0]
    print(f"I(X;T_4): beta=0 {i0:.6f}, beta=0.1 {i1:.6f}; test accuracy {h0.test_accuracy[-1]:.3f}, "
          f"{h1.test_accuracy[-1]:.3f}")
    assert i1 < i0
    assert h1.penalty_not_converged.sum() == 0
    assert np.all(np.isfinite(h0.test_accuracy)) and np.all(np.isfinite(h1.test_accuracy))


def _figure2(activation):
    e1, e2 = demo_spectra(1000, 42)
    return lambda s: figure2_chain(activation, e1, e2, s, 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("activation,bounds", [("hardtanh", (0.1, 10.0)), ("relu", (0.1, 10.0))])
def test_design_maximizes_h_t2_figure2(activation, bounds):
    """Width 1000, noise 1e-5: gradient ascent on sigma lands within 1e-3 of the dense sweep's maximum
    of H(T_2) (hardtanh: an interior maximum; ReLU: H(T_2) increases, the maximum is the upper bound)."""
    chain_fn = _figure2(activation)
    if activation == "hardtanh":
        # cold multi-start at every point (a warm walk can follow a non-minimal branch)
        best, _ = _sweep_argmax(chain_fn, 1.5, 5.0, coarse=0.25, fine=0.005)
        assert 2.5 < best < 3.5  # the Figure-2 curve peaks between its samples 1.78 and 5.62
    else:
        sweep = design.dense_sweep(chain_fn, np.linspace(*bounds, 12))
        assert np.all(np.diff(sweep["entropy"]) > 0)
        best = design.sweep_maximum(sweep["grid"], sweep["entropy"])
    res = design.maximize_entropy(chain_fn, 1.0, bounds=bounds, gtol=1e-7, steps=60)
    print(activation, "sigma*", best, "found", float(res.params), "steps", res.steps)
    assert res.done and abs(float(res.params) - best) < 1e-3
    assert res.cold_entropy == pytest.approx(res.entropy, abs=1e-8)


@pytest.mark.slow
def test_design_target_information_figure2_hardtanh():
    chain_fn = _figure2("hardtanh")
    target = float(jr.solve(chain_fn(2.5)).last_layer_information)
    res = design.match_information(chain_fn, 1.5, target, atol=1e-6, steps=60)
    assert res.done and abs(res.information - target) <= 1e-4
    assert abs(res.cold_information - target) <= 1e-4


# ----------------------------------------------------------------------------- lagged and noisy penalties


@pytest.mark.parametrize("noisy", [False, True], ids=["hardtanh", "noisy-linear"])
def test_lagged_penalty_solves_every_k_calls_and_stays_close(noisy):
    """solve_every=3: calls 0, 3, 6 solve (iterations > 0), the others reuse the last fixed
    point (and, for a noisy network, the conditional chain's); the lagged value is
    within second order of the solved one while the singular values drift, and equal to
    it at the calls that solve."""
    data = jd.teacher_student(jax.random.key(0), 12, 4, samples_per_dim=2)
    if noisy:
        net = build_network([12, 12, 8, 4], ["linear"] * 3, [True, True, False], key=jax.random.key(1))
        layer, settings = 2, {"hidden_noise": 0.05, "last_noise": 0.01, "noise_position": "after"}
    else:
        net = build_network([12, 8, 4], ["hardtanh", "linear"], [True, False], key=jax.random.key(1))
        layer, settings = 1, {}
    S0 = jt.singular_values(net, layer)
    every = jt.InformationPenalty.for_network(net, data, {layer: 1.0}, tol=1e-12, **settings)
    lagged = dataclasses.replace(every, solve_every=3)
    _, st_every = every(S0, None)
    _, st_lag = lagged(S0, None)
    step_every = jax.jit(lambda s, st: every(s, st))
    step_lag = jax.jit(lambda s, st: lagged(s, st))
    for c in range(7):
        S = [s * (1.0 + 0.002 * (c + 1)) for s in S0]
        v_every, st_every = step_every(S, st_every)
        v_lag, st_lag = step_lag(S, st_lag)
        solved = (c + 1) % 3 == 0  # the cold call was call 0
        assert (int(st_lag.iterations[0]) > 0) == solved, (c, st_lag.iterations)
        if solved:
            assert abs(float(v_lag) - float(v_every)) < 1e-10
        else:
            assert 0 < abs(float(v_lag) - float(v_every)) < 1e-5, (c, float(v_lag), float(v_every))
    assert int(st_lag.calls) == 8
    with pytest.raises(ValueError, match="solve_every"):
        dataclasses.replace(every, solve_every=0)
    with pytest.raises(ValueError, match="solve_every > 1 needs"):
        dataclasses.replace(every, solve_every=2, gradient="implicit")
    if noisy:
        assert not np.allclose(np.asarray(st_lag.conditional_points[0].V), np.asarray(st_every.conditional_points[0].V))


@pytest.mark.slow
def test_penalty_of_a_noisy_linear_network_is_the_exact_information_and_gradient():
    """Two noisy linear USV layers (noise after every activation): the penalty on T_2 is
    I(X; T_2) of the noisy network, H(T_2) - H(T_2 | X), and its gradient matches finite
    differences of the exact log-determinants' replica value."""
    data = jd.teacher_student(jax.random.key(0), 10, 4, samples_per_dim=2)
    net = build_network([10, 10, 10, 4], ["linear", "linear", "linear"], [True, True, False], key=jax.random.key(2))
    pen = jt.InformationPenalty.for_network(net, data, {2: 1.0}, hidden_noise=0.05, last_noise=0.01,
                                            noise_position="after", tol=1e-12)
    S = jt.singular_values(net, 2)
    value, state = pen(S, None)
    chain = pen.chain(pen.spectra(S), 2)
    assert chain.channels[0].noise == 0.0 and chain.channels[0].noise_after == 0.05
    assert float(value) == pytest.approx(float(jr.solve(chain).mutual_information), abs=1e-10)
    assert float(value) < float(jr.solve(chain).last_layer_information)
    grad = jax.grad(lambda s: pen(s, state)[0])(S)
    f = lambda s: float(jr.solve(pen.chain(pen.spectra(s), 2), tol=1e-12).mutual_information)  # noqa: E731
    _assert_gradient(grad, S, f, [(0, 0), (0, 3), (1, 1), (1, 5)], rtol=1e-5)
    with pytest.raises(ValueError, match="generative"):
        jt.InformationPenalty.for_network(net, _recognition(), {1: 1.0}, hidden_noise=0.1)


def test_penalty_of_a_noisy_network_warm_starts_its_conditional_chain():
    """The state keeps the conditional chain's fixed point of a noisy network's layer
    (None for a noiseless one); a warm call after a step gives the cold value there."""
    data = jd.teacher_student(jax.random.key(0), 10, 4, samples_per_dim=2)
    net = build_network([10, 10, 10, 4], ["linear", "linear", "linear"], [True, True, False], key=jax.random.key(2))
    pen = jt.InformationPenalty.for_network(net, data, {1: 1.0, 2: 1.0}, hidden_noise=0.05, last_noise=0.01,
                                            noise_position="after", tol=1e-12)
    S = jt.singular_values(net, 2)
    _, state = pen(S, None)
    assert state.conditional_points[0] is None  # T_1: no noisy layer before it
    assert isinstance(state.conditional_points[1], jr.OrderParameters)
    moved = [s * 1.02 for s in S]
    warm, after = pen(moved, state)
    cold, _ = pen(moved, None)
    assert bool(np.all(np.asarray(after.converged))) and abs(float(warm) - float(cold)) < 1e-10
    assert not np.allclose(np.asarray(after.conditional_points[1].V), np.asarray(state.conditional_points[1].V))


@pytest.mark.slow
def test_envelope_gradient_of_a_noisy_hardtanh_network():
    """Noise before and after both hardtanh layers: the envelope gradient (the potentials
    of the chain and of its conditional chain at their fixed points) matches finite
    differences of solved values and the implicit gradient."""
    data = jd.teacher_student(jax.random.key(0), 10, 4, samples_per_dim=2)
    net = build_network([10, 10, 10, 4], ["hardtanh", "hardtanh", "linear"], [True, True, False],
                        key=jax.random.key(2))
    settings = {"hidden_noise": 0.05, "last_noise": 0.01, "noise_position": "both", "tol": 1e-12}
    pen = jt.InformationPenalty.for_network(net, data, {2: 1.0}, **settings)
    implicit = dataclasses.replace(pen, gradient="implicit")
    S = jt.singular_values(net, 2)
    _, state = pen(S, None)
    grad = jax.grad(lambda s: pen(s, state)[0])(S)
    f = lambda s: float(jr.solve(pen.chain(pen.spectra(s), 2), tol=1e-12).mutual_information)  # noqa: E731
    _assert_gradient(grad, S, f, [(0, 0), (0, 4), (1, 3), (1, 9)], rtol=1e-5)
    exact = jax.grad(lambda s: implicit(s, state)[0])(S)
    for a, b in zip(grad, exact):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-7)
