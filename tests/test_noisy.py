"""Noisy networks: ``I(X; T_l)`` with noise in every layer, before and after the
activation, against exact log-determinants of linear chains averaged over rotations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreplica as jr
from jaxreplica.conditional import RandomField

WIDTH = 400
ROTATIONS = 10


def _weights(depth, seed=11):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(WIDTH, WIDTH)) / np.sqrt(WIDTH) for _ in range(depth)]


def _rotation_average(weights, noises, seed=5):
    """Mean and standard error over Haar rotations between the layers of the exact
    ``I(X; T_l)`` (the replica formula describes orthogonally invariant weights: the
    average over rotations of one draw is its target)."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(ROTATIONS):
        rotated = [weights[0]]
        for W in weights[1:]:
            Q, _ = np.linalg.qr(rng.normal(size=(WIDTH, WIDTH)))
            rotated.append(W @ Q)
        values.append(np.asarray(jr.exact.gaussian_chain(rotated, noises).mutual_information))
    values = np.array(values)
    return values.mean(0), values.std(0, ddof=1) / np.sqrt(ROTATIONS)


# (before, after) noise of each layer; the total enters the linear chain.
POSITIONS = {
    "before": lambda d: jr.Linear(noise=d),
    "after": lambda d: jr.Linear(noise=0.0, noise_after=d),
    "both": lambda d: jr.Linear(noise=d / 2, noise_after=d / 2),
}


@pytest.mark.parametrize("depth, position", [(2, "before"), (2, "after"), (2, "both"),
                                             pytest.param(3, "both", marks=pytest.mark.slow)])
def test_linear_chain_every_layer_noisy(depth, position):
    noises = [0.1, 0.05, 0.01][-depth:]
    weights = _weights(depth)
    chain = jr.Chain(prior=jr.Normal(), layers=[(jr.Empirical.from_matrix(W), POSITIONS[position](d))
                                                for W, d in zip(weights, noises)])
    lay = jr.solve_layers(chain)
    assert np.all(np.asarray(lay.converged))
    mean, se = _rotation_average(weights, noises)
    assert np.all(np.abs(np.asarray(lay.mutual_information) - mean) <= 3 * se + 1e-9), (lay.mutual_information, mean, se)
    # The full chain's I(X; T_L) from solve() is solve_layers' last entry.
    sol = jr.solve(chain)
    assert abs(float(sol.mutual_information) - float(lay.mutual_information[-1])) < 1e-10
    # With noisy hidden layers I(X; T_L) < I(T_L; T_{L-1}) (data processing).
    assert float(sol.mutual_information) < float(sol.last_layer_information)


def test_noiseless_first_layer_before_noisy_ones():
    """A noiseless first layer makes ``T_1`` a function of ``X``: the conditional chain's
    prior is then deterministic (its ``V`` held at the floor). Linear chain with noise in
    the later layers only, against the exact rotation average."""
    noises = [0.0, 0.05, 0.01]
    weights = _weights(3)
    chain = jr.Chain(prior=jr.Normal(), layers=[(jr.Empirical.from_matrix(W), jr.Linear(noise=d))
                                                for W, d in zip(weights, noises)])
    lay = jr.solve_layers(chain)
    assert np.all(np.asarray(lay.converged)), lay.status
    mean, se = _rotation_average(weights, noises)
    assert np.all(np.abs(np.asarray(lay.mutual_information) - mean) <= 3 * se + 1e-9), (lay.mutual_information, mean, se)


@pytest.mark.parametrize("first, second", [
    (jr.Linear(), jr.ReLU(noise=0.01)),
    (jr.Linear(), jr.ReLU(noise_after=0.05)),
    (jr.ReLU(), jr.LeakyReLU(noise=0.02)),
    (jr.Linear(), jr.Tanh(noise_after=0.01)),
], ids=["linear-relu", "linear-relu-after", "relu-leaky", "linear-tanh-after"])
def test_noiseless_first_layer_conditional_entropy_starts_at_the_first_noisy_layer(first, second):
    """Given ``X`` a noiseless first layer is known, so ``H(T_3 | X) = H(T_3 | Z_2)``: the
    entropy of the chain whose prior is the second layer's random field, times
    ``n_2/n_0``."""
    a1, a2 = 2.0, 0.5
    chain = jr.Chain(prior=jr.Normal(), layers=[(jr.Gaussian(alpha=a1, scale=1.3), first),
                                                (jr.Gaussian(alpha=a2, scale=0.8), second),
                                                (jr.Gaussian(alpha=1.0), jr.ReLU(noise=1e-3))])
    sol = jr.solve(chain, tol=1e-12)
    assert bool(sol.converged), sol.describe()
    field = jr.Chain(prior=RandomField(channel=second, rho=chain.moments()[1][1]), layers=chain.layers[2:])
    given = jr.solve(field, tol=1e-12)
    assert bool(given.converged)
    conditional = float(sol.entropy) - float(sol.mutual_information)
    assert abs(conditional - a1 * a2 * float(given.entropy)) < 1e-10


def test_noiseless_hidden_layers_give_the_last_layer_information():
    chain = jr.Chain(prior=jr.Normal(), layers=[(jr.Gaussian(alpha=1.2), jr.ReLU()), (jr.Gaussian(alpha=0.8), jr.HardTanh(noise=1e-3))])
    sol = jr.solve(chain)
    assert float(sol.mutual_information) == float(sol.last_layer_information)


def test_hidden_noise_traced_inside_jit():
    """The hidden noise as data: at zero the closed form, above it the conditional
    chain; both in one compiled program (vmapped)."""
    def mi(d):
        chain = jr.Chain(prior=jr.Normal(), layers=[(jr.Gaussian(alpha=1.0), jr.Linear(noise=d)),
                                                    (jr.Gaussian(alpha=1.0), jr.Linear(noise=0.01))])
        return jr.solve(chain)
    noises = jnp.asarray([0.0, 0.05, 0.1])
    sols = jax.jit(jax.vmap(mi))(noises)
    loop = [jr.solve(jr.Chain(prior=jr.Normal(), layers=[(jr.Gaussian(alpha=1.0), jr.Linear(noise=float(d))),
                                                         (jr.Gaussian(alpha=1.0), jr.Linear(noise=0.01))]))
            for d in noises]
    np.testing.assert_allclose(np.asarray(sols.mutual_information), [float(s.mutual_information) for s in loop],
                               rtol=0, atol=1e-10)
    mi_values = np.asarray(sols.mutual_information)
    assert mi_values[0] > mi_values[1] > mi_values[2]  # more noise, less information
    assert mi_values[0] == float(sols.last_layer_information[0])


def test_skipping_the_conditional_solve():
    """``conditional=False``: the entropy and ``I(T_L; T_{L-1})`` as with the conditional
    solve, ``I(X; T_L)`` NaN where a hidden layer is noisy (never a wrong number) and the
    closed form where none is; inside ``jit`` the hidden noise, as data, decides."""
    def chain(d):
        return jr.Chain(prior=jr.Normal(), layers=[(jr.Gaussian(alpha=1.0), jr.Linear(noise=d)),
                                                   (jr.Gaussian(alpha=1.0), jr.Linear(noise=0.01))])
    full, skipped = jr.solve(chain(0.05)), jr.solve(chain(0.05), conditional=False)
    assert bool(skipped.converged) and np.isfinite(float(full.mutual_information))
    assert abs(float(skipped.entropy) - float(full.entropy)) < 1e-12
    assert abs(float(skipped.last_layer_information) - float(full.last_layer_information)) < 1e-12
    assert np.isnan(float(skipped.mutual_information))
    assert float(jr.solve(chain(0.0), conditional=False).mutual_information) == float(
        jr.solve(chain(0.0)).mutual_information)
    traced = jax.jit(jax.vmap(lambda d: jr.solve(chain(d), conditional=False).mutual_information))(
        jnp.asarray([0.0, 0.05]))
    assert np.isfinite(float(traced[0])) and np.isnan(float(traced[1]))
    with pytest.raises(ValueError, match="conditional"):
        jr.solve(chain(0.05), conditional="no")



def test_conditional_solve_warm_starts_from_its_fixed_point():
    """``Solution.conditional_fixed_point`` passed back as ``conditional_init``: a
    neighbouring network's ``I(X; T_2)`` as from the multi-start; the start is used (a
    NaN one does not converge, the entropy is unaffected); None where there is no
    conditional chain."""
    def chain(scale, hidden=0.01):
        return jr.Chain(prior=jr.Normal(), layers=[
            (jr.Gaussian(alpha=1.0, scale=scale), jr.HardTanh(noise=0.0, noise_after=hidden)),
            (jr.Gaussian(alpha=1.0), jr.HardTanh(noise=0.0, noise_after=0.01))])
    solve = jax.jit(jr.solve)
    first = solve(chain(1.2))
    point = first.conditional_fixed_point
    assert isinstance(point, jr.OrderParameters) and np.all(np.isfinite(np.asarray(point.V)))
    cold = solve(chain(1.25))
    warm = solve(chain(1.25), init=first.fixed_point, conditional_init=point)
    assert bool(cold.converged) and bool(warm.converged)
    assert abs(float(warm.mutual_information) - float(cold.mutual_information)) < 1e-10
    lost = jax.tree_util.tree_map(lambda v: jnp.full_like(v, jnp.nan), point)
    broken = solve(chain(1.25), init=first.fixed_point, conditional_init=lost)
    assert not bool(broken.converged) and np.isnan(float(broken.mutual_information))
    assert abs(float(broken.entropy) - float(cold.entropy)) < 1e-10
    assert jr.solve(chain(1.2, hidden=0.0)).conditional_fixed_point is None
    layers = jr.solve_layers(chain(1.2))
    assert layers.conditional_fixed_points[0] is None
    again = jr.solve_layers(chain(1.25), init=layers.fixed_points, conditional_init=layers.conditional_fixed_points)
    assert abs(float(again.mutual_information[1]) - float(cold.mutual_information)) < 1e-10
    with pytest.raises(ValueError, match="conditional_init"):
        jr.solve(chain(1.2), conditional_init=first.fixed_point.V)

from conftest import load_reference  # noqa: E402
from _independent import conditional_output_entropy  # noqa: E402

NOISE_AFTER = load_reference("noise_after.json")["rows"]
CHANNELS = {"linear": jr.Linear, "relu": jr.ReLU, "leaky_relu": jr.LeakyReLU, "hardtanh": jr.HardTanh,
            "probit": jr.Probit}


@pytest.mark.parametrize("row", NOISE_AFTER, ids=lambda r: f"{r['activation']}-{r['noise']}-{r['noise_after']}")
def test_one_layer_information_with_noise_after_the_activation(row):
    """``I(X; T_1) = H(T_1) - n_1 E_z H(phi(z + xi) + eta | z)`` to 1e-8, the second term
    from SciPy quadrature."""
    ch = CHANNELS[row["activation"]](noise=row["noise"], noise_after=row["noise_after"])
    alpha = 1.3
    # Gaussian weights of scale 1: the pre-activations have the input's variance, rho.
    chain = jr.Chain(prior=jr.Normal(mean=0.0, var=row["rho"]), layers=[(jr.Gaussian(alpha=alpha), ch)])
    sol = jr.solve(chain)
    assert bool(sol.converged)
    expected = float(sol.entropy) - alpha * row["conditional_entropy"]
    assert abs(float(sol.mutual_information) - expected) < 1e-8


def test_sign_layer_with_tiny_noise_after_it_at_a_large_weight_scale():
    """A sparse input (5% non-zero) through a biased sign layer at weight scale 18 with
    noise 1e-6 and 1.8e-6 after it: the last layer's functions are a hidden layer's at
    ``A = 1/noise_after`` (up to 1e6), whose student prior is 400 times narrower than the
    teacher's pre-activation. ``I(X; T_1)`` within 1e-8 of the value from rules finer in
    every direction, 0.3993831258 (when the teacher's graded segments spread from the
    kink over the whole rule, it was 2.8e-6 and 4.8e-6 off)."""
    def info(after):
        sign = jr.Probit(noise=4.8928e-5, noise_after=after, bias=-0.22431)
        layers = [(jr.Gaussian(alpha=2.9134, scale=18.02691), sign)]
        return jr.solve(jr.Chain(prior=jr.SpikeSlab(prob=0.0524647), layers=layers))

    sols = jax.jit(jax.vmap(info))(jnp.asarray([1e-6, 1.82e-6]))
    assert np.all(np.asarray(sols.converged))
    np.testing.assert_allclose(np.asarray(sols.mutual_information), 0.3993831258, rtol=0, atol=1e-8)


PIECEWISE = load_reference("piecewise.json")["rows"]


def _piecewise_rows(kind, role, with_after=None):
    rows = [r for r in PIECEWISE if r["activation"] == kind and r["role"] == role]
    if with_after is not None:
        rows = [r for r in rows if (r["noise_after"] > 0) == with_after]
    assert rows and all(r["converged"] < 1e-9 for r in rows)
    return rows


def _piecewise_values(kind, rows, functions, names=("free_entropy", "ahat", "vhat")):
    """``functions(channel, A, V, rho)`` (the values ``names``) at every row, one vmapped
    program, and the reference values, both as arrays ``(row, value)``."""
    keys = ("A", "V", "rho", "noise", "noise_after", "bias")
    args = {k: jnp.asarray([1.0 if r[k] is None else r[k] for r in rows]) for k in keys}
    # (a traced zero noise after is none, but for the rules of a hidden layer: rows
    # without any take the channel without it)
    with_after = any(r["noise_after"] for r in rows)

    def one(A, V, rho, noise, noise_after, bias):
        after = noise_after if with_after else None
        return jnp.stack(functions(CHANNELS[kind](noise=noise, noise_after=after, bias=bias), A, V, rho))

    got = np.asarray(jax.jit(jax.vmap(one))(**args))
    return got, np.array([[r[n] for n in names] for r in rows])


def _assert_close(got, expected, tol, what, names=("free_entropy", "ahat", "vhat")):
    """Free entropy and ``Vhat`` absolute, ``Ahat`` relative (it reaches 5e4)."""
    err = np.abs(got - expected)
    for k, name in enumerate(names):
        if name == "ahat":
            err[:, k] /= np.abs(expected[:, k])
    assert np.all(err <= np.asarray(tol)), (what, err.max(0))


PIECEWISE_KINDS = ["relu", "hardtanh", "leaky_relu", "probit"]


@pytest.mark.parametrize("kind", PIECEWISE_KINDS)
def test_piecewise_functions_with_sharp_likelihoods_against_scipy(kind):
    """Free entropy, ``Ahat`` (relative) and ``Vhat`` to 1e-7 of SciPy (tests/data/
    piecewise.json) over ``A`` 1e-2..1e5, ``V`` 1e-6..``rho``, noises 1e-5..1e-1, with
    biases: hidden layers with noise after the activation, last layers with noise after
    it (the hidden functions at ``A = 1/noise_after``), and the known field of the
    conditional chain's prior (``V = 0``)."""
    hidden = _piecewise_rows(kind, "hidden", with_after=True)
    got, expected = _piecewise_values(kind, hidden, lambda ch, A, V, rho: ch.hidden_functions(A, V, rho))
    _assert_close(got, expected, (1e-7, 1e-7, 1e-7), f"{kind} hidden with noise after")
    last = _piecewise_rows(kind, "last")
    names = ("free_entropy", "ahat")
    got, expected = _piecewise_values(kind, last, lambda ch, A, V, rho: ch.output_functions(V, rho), names)
    _assert_close(got, expected, (1e-7, 1e-7), f"{kind} last layer with noise after", names)
    known = _piecewise_rows(kind, "known")
    names = ("free_entropy", "vhat")
    got, expected = _piecewise_values(kind, known, lambda ch, A, V, rho: RandomField(ch, rho).teacher_average(A),
                                      names)
    _assert_close(got, expected, (1e-7, 1e-7), f"{kind} known field", names)


@pytest.mark.parametrize("kind", PIECEWISE_KINDS)
def test_piecewise_hidden_functions_without_noise_after_against_scipy(kind):
    """Hidden layers with noise before the activation only (with biases): free entropy,
    ``Ahat`` (relative) and ``Vhat`` within 1e-7 of SciPy, on the default rules and on the
    refined rules ``QuadratureConfig().for_sharp()``. (With 24 Gauss-Hermite nodes in the
    teacher's noise, ``atom_switch_rule=False``, ReLU's ``Ahat`` is 6.8e-7 off on these
    rows, where the posterior switches from the atom to the slope in the tail of that
    noise; tests/test_units.py has hardtanh's such points.)"""
    rows = _piecewise_rows(kind, "hidden", with_after=False)
    got, expected = _piecewise_values(kind, rows, lambda ch, A, V, rho: ch.hidden_functions(A, V, rho))
    _assert_close(got, expected, (1e-7, 1e-7, 1e-7), f"{kind} hidden, default rules")
    sharp = jr.QuadratureConfig().for_sharp()
    got, expected = _piecewise_values(kind, rows, lambda ch, A, V, rho: ch.hidden_functions(A, V, rho, sharp))
    _assert_close(got, expected, (1e-7, 1e-7, 1e-7), f"{kind} hidden, refined rules")
    if kind == "relu":
        plain = jr.QuadratureConfig(atom_switch_rule=False)
        got, expected = _piecewise_values(kind, rows, lambda ch, A, V, rho: ch.hidden_functions(A, V, rho, plain))
        with pytest.raises(AssertionError):
            _assert_close(got, expected, (1e-7, 1e-7, 1e-7), "")


@pytest.mark.slow
@pytest.mark.parametrize("kind", PIECEWISE_KINDS)
def test_piecewise_reference_values(kind):
    """The first row of each role of tests/data/piecewise.json, recomputed."""
    from _independent import piecewise_functions

    for role in ("hidden", "last", "known"):
        row = _piecewise_rows(kind, role)[0]
        values = piecewise_functions(kind, "last" if role == "last" else "hidden", row["A"], row["V"], row["noise"],
                                     row["rho"], row["bias"], row["noise_after"])
        names = ("free_entropy", "ahat", "vhat")[:len(values)]
        for name, value in zip(names, values):
            assert abs(value - row[name]) <= 1e-10 * max(1.0, abs(row[name])), (role, name)


@pytest.mark.slow
@pytest.mark.parametrize("row", NOISE_AFTER, ids=lambda r: f"{r['activation']}-{r['noise']}-{r['noise_after']}")
def test_noise_after_reference_values(row):
    value = conditional_output_entropy(row["activation"], row["noise"], row["noise_after"], row["rho"])
    assert abs(value - row["conditional_entropy"]) < 1e-10


def _info_noise_after(act, scale, after, before):
    layers = [(jr.Gaussian(alpha=1.0, scale=scale), getattr(jr, act)(noise=before, noise_after=after)),
              (jr.Gaussian(alpha=0.8), getattr(jr, act)(noise=0.0, noise_after=0.01))]
    return jr.solve(jr.Chain(prior=jr.Normal(), layers=layers), tol=1e-13).mutual_information


def _noise_after_only_gradients(act, checked, tol_fd, tol_noise=None, kinked=False):
    """jax.grad of ``I(X; T_2)/n_0`` of a chain with noise only after each activation (the
    noisy-network model; the conditional chain's prior, a known field, is then in closed
    form) against differences: central in the weight scale and the noise after
    (``checked`` of them), and with ``tol_noise`` one-sided in the hidden layer's noise
    before, at zero."""
    scale, after = 1.5, 0.02
    info = lambda *a: _info_noise_after(act, *a)  # noqa: E731
    args = (scale, after, 0.0)
    grads = jax.grad(info, argnums=(0, 1, 2))(*args)
    assert np.all(np.isfinite(np.asarray(grads))), grads
    for k, h in ((0, 1e-4), (1, 1e-5))[:checked]:
        up = list(args); up[k] += h
        down = list(args); down[k] -= h
        fd = (float(info(*up)) - float(info(*down))) / (2 * h)
        assert abs(float(grads[k]) - fd) <= tol_fd * max(1.0, abs(fd)), (k, float(grads[k]), fd)
    if tol_noise is None:
        return
    if kinked:
        # a kink adds n^{3/2} to the value: (f(h) - f0)/h = g + c h^{1/2}, and with 4h
        # g + 2 c h^{1/2} (the next term leaves about 65 h here)
        h = 1e-7
        f0, f1, f4 = (float(info(scale, after, n)) for n in (0.0, h, 4 * h))
        fd = 2 * (f1 - f0) / h - (f4 - f0) / (4 * h)
    else:
        h = 1e-5
        f0, f1, f2 = (float(info(scale, after, n)) for n in (0.0, h, 2 * h))
        fd = (-3 * f0 + 4 * f1 - f2) / (2 * h)
    assert abs(float(grads[2]) - fd) <= tol_noise * max(1.0, abs(fd)), (float(grads[2]), fd)


def test_gradient_with_noise_only_after_the_activation_is_finite():
    """(It was NaN: the conditional prior's quadrature differentiated at zero noise.)"""
    _noise_after_only_gradients("ReLU", 1, 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("act, tol_noise, kinked", [("ReLU", 2e-5, True), ("Tanh", 1e-5, False)])
def test_gradient_with_noise_only_after_the_activation(act, tol_noise, kinked):
    _noise_after_only_gradients(act, 2, 1e-5, tol_noise, kinked)


@pytest.mark.parametrize("act", ["Probit", "ReLU"])
def test_known_field_derivatives(act):
    """The random field of a layer without noise before its activation: derivatives of
    the closed form ``-log(1 + A d)/2``, ``d/(1 + A d)`` in ``A``, ``d`` and ``rho`` (none),
    and in the noise before, at zero, ``-A E phi'^2/(2 (1 + A d))``: infinite for the sign.
    (The sign's were NaN in every direction.)"""
    A, d, rho = 3.0, 0.05, 1.7

    def free(A, d, rho, n):
        return RandomField(channel=getattr(jr, act)(noise=n, noise_after=d), rho=rho).teacher_average(A)[0]

    grads = jax.grad(free, argnums=(0, 1, 2))(A, d, rho, 0.0)
    expected = (-0.5 * d / (1 + A * d), -0.5 * A / (1 + A * d), 0.0)
    np.testing.assert_allclose(np.asarray(grads), expected, rtol=1e-12, atol=1e-14)
    slope2 = np.inf if act == "Probit" else 0.5  # E phi'^2: ReLU's is P(z > 0)
    np.testing.assert_allclose(float(jax.grad(free, argnums=3)(A, d, rho, 0.0)), -0.5 * A * slope2 / (1 + A * d),
                               rtol=1e-12)


@pytest.mark.slow
def test_gradient_through_a_sign_layer_with_noise_only_after():
    """A sign first layer with noise only after it: ``T_1`` does not depend on the weight
    scale, so neither does ``I(X; T_2)``; the derivative in the noise after matches
    central differences, and the one in a noise before, at zero, is the true ``-inf``
    (the sign flips with probability of order ``sqrt(n)``). (They were all NaN: the
    conditional prior's quadrature differentiated at zero noise.)"""
    info = lambda *a: _info_noise_after("Probit", *a)  # noqa: E731
    scale, after, h = 1.5, 0.02, 1e-5
    grads = jax.grad(info, argnums=(0, 1, 2))(scale, after, 0.0)
    assert abs(float(grads[0])) < 1e-9 and float(grads[2]) == -np.inf, grads
    fd = (float(info(scale, after + h, 0.0)) - float(info(scale, after - h, 0.0))) / (2 * h)
    assert abs(float(grads[1]) - fd) <= 1e-5 * max(1.0, abs(fd)), (float(grads[1]), fd)


@pytest.mark.slow
def test_gradient_through_a_sign_layer_in_vmapped_lanes():
    """Lanes with and without noise before a sign layer, in one vmapped gradient: the
    derivative in the noise is infinite in the lane at zero and finite in the other
    (the closed form's infinite slope does not leak into it), and the lanes match the
    unbatched gradients."""
    info = lambda *a: _info_noise_after("Probit", *a)  # noqa: E731
    noises = jnp.array([0.0, 1e-3])
    grads = jax.vmap(jax.grad(info, argnums=(0, 1, 2)), in_axes=(None, None, 0))(1.5, 0.02, noises)
    assert float(grads[2][0]) == -np.inf and np.isfinite(float(grads[2][1])), grads
    one = jax.grad(info, argnums=(0, 1, 2))(1.5, 0.02, 1e-3)
    for k in range(3):
        assert abs(float(grads[k][1]) - float(one[k])) <= 1e-9 * max(1.0, abs(float(one[k]))), (k, grads, one)


@pytest.mark.slow
def test_gradient_of_noisy_tanh_information_matches_finite_differences():
    """jax.grad of I(X; T_2)/n_0 of a noisy two-layer tanh chain (noise before and after
    every activation) with respect to the weight scale, both noises and the first
    layer's spectrum, against central differences of the solved value."""
    rng = np.random.default_rng(4)
    eig = jnp.asarray(np.clip(np.linalg.eigvalsh((lambda W: W.T @ W)(rng.normal(size=(60, 60)) / np.sqrt(60))), 0, None))

    def info(scale, before, after, eig1):
        layers = [(jr.Empirical(eigenvalues=scale**2 * eig1, alpha=1.0), jr.Tanh(noise=before, noise_after=after)),
                  (jr.Gaussian(alpha=0.8), jr.Tanh(noise=before, noise_after=after))]
        return jr.solve(jr.Chain(prior=jr.Normal(), layers=layers), tol=1e-13).mutual_information

    args = (1.3, 0.02, 0.05, eig)
    grads = jax.grad(info, argnums=(0, 1, 2, 3))(*args)
    for k, h in ((0, 1e-4), (1, 1e-5), (2, 1e-5)):
        up = list(args); up[k] = args[k] + h
        down = list(args); down[k] = args[k] - h
        fd = (float(info(*up)) - float(info(*down))) / (2 * h)
        assert abs(float(grads[k]) - fd) <= 1e-5 * max(1.0, abs(fd)), (k, float(grads[k]), fd)
    for j in (10, 30, 59):  # eigenvalues well above 0 (ascending order)
        h = 1e-5
        fd = (float(info(*args[:3], eig.at[j].add(h))) - float(info(*args[:3], eig.at[j].add(-h)))) / (2 * h)
        assert abs(float(grads[3][j]) - fd) <= 1e-5 * max(1.0, abs(fd)), (j, float(grads[3][j]), fd)


@pytest.mark.slow
def test_binary_input_recovered_through_noisy_relu_layers_with_large_weights():
    """Noise after every layer (1e-3), weight scale 30, three ReLU layers: the binary input
    is recovered (mmse 0), so ``I(X; T_3) = H(X) = log 2``. The hidden channels there see
    ``log Z`` of about 1e11 (second moments 900, 4e5, 2e8); the reduced free entropy formed
    as a difference gave ``log 2 - 9.5e-6`` at scale 30 and, at scale 10, ``log 2 + 1.3e-8``,
    which the bound ``I <= H(X)`` rejected as not a solution."""
    for scale in (10.0, 30.0):
        chain = jr.Chain(prior=jr.Bimodal(), layers=[
            (jr.Gaussian(alpha=a, scale=scale), jr.ReLU(noise=0.0, noise_after=1e-3)) for a in (0.5, 2.0, 2.0)])
        sol = jr.solve(chain)
        assert bool(sol.converged), (scale, jr.Status(int(sol.status)).describe())
        assert float(sol.mmse) == 0.0
        assert abs(float(sol.mutual_information) - np.log(2.0)) < 1e-10, (scale, float(sol.mutual_information))
