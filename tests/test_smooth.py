"""Smooth increasing activations (tanh, sigmoid, softplus, ELU, erf, a user's function):
core functions against SciPy adaptive quadrature, the identities of an invertible map,
noise after the activation, validation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreplica as jr
from conftest import load_reference
from _independent import smooth_moments
from jaxreplica import activations
from jaxreplica.quadrature import hermite_rule
from jaxreplica.xi_rules import switch_rule

CHANNELS = {
    "tanh": jr.Tanh,
    "sigmoid": jr.Sigmoid,
    "softplus": jr.Softplus,
    "elu": jr.ELU,
    "erf": jr.Erf,
    "arctan": lambda **kw: jr.Activation(jnp.arctan, **kw),
}
KINDS = list(CHANNELS)
REFERENCE = load_reference("smooth.json")


@pytest.mark.parametrize("kind", KINDS)
def test_hidden_functions_against_scipy(kind):
    """Reduced free entropy, ``Ahat`` (relative) and ``Vhat`` of a hidden layer to 1e-7 over ``A`` from
    1e-2 to 1e5, ``V`` from 1e-6 to ``rho``, noises from 1e-5 to 1e-1 (one vmapped program)."""
    rows = [r for r in REFERENCE["hidden"] if r["activation"] == kind]
    args = {k: jnp.asarray([r[k] for r in rows]) for k in ("A", "V", "noise", "rho", "bias")}

    def functions(A, V, noise, rho, bias):
        return CHANNELS[kind](noise=noise, bias=bias).hidden_functions(A, V, rho)

    got = jax.jit(jax.vmap(functions))(**args)
    # Ahat reaches A/(1 + A s) ~ 5e4: relative to it.
    for name, value, rtol, atol in zip(("free_entropy", "ahat", "vhat"), got, (0, 1e-7, 0), (1e-7, 0, 1e-7)):
        expected = np.array([r[name] for r in rows])
        np.testing.assert_allclose(np.asarray(value), expected, rtol=rtol, atol=atol, err_msg=f"{kind} {name}")


LAST = [(1e-6, 1e-5, 1.0, 0.0), (0.3, 1e-2, 0.8, 0.4), (1.0, 1e-1, 2.5, -0.7)]  # (V, noise, rho, bias)


@pytest.mark.parametrize("kind", KINDS)
def test_last_layer_and_second_moment_against_scipy(kind):
    """``I_last = -log(2 pi e s)/2 - E log phi'``, ``Ahat_last = 1/s``, ``I_last(0)`` and
    ``E t^2`` against one-dimensional SciPy quadrature."""
    for V, noise, rho, bias in LAST:
        ch = CHANNELS[kind](noise=noise, bias=bias)
        m2, log_slope = smooth_moments(kind, noise, rho, bias)
        s = V + noise
        free, ahat = ch.output_functions(V, rho)
        assert abs(float(free) - (-0.5 * math.log(2 * math.pi * math.e * s) - log_slope)) < 1e-9
        assert abs(float(ahat) * s - 1.0) < 1e-12
        noise_free = -0.5 * math.log(2 * math.pi * math.e * noise) - log_slope
        assert abs(float(ch.noise_free_entropy(rho)) - noise_free) < 1e-9
        assert abs(float(ch.second_moment(rho)) - m2) < 1e-9


BUILT_IN = ["tanh", "sigmoid", "softplus", "elu", "erf"]


def _one_layer_solver(kind):
    """``(index, noise, noise_after, bias, rho) -> Solution`` of a one-layer chain
    (``alpha = 1.3``), compiled once: the built-in channels as a :class:`jr.Switched`
    (one program for all five), the user's function on its own."""
    def solve(index, noise, noise_after, bias, rho):
        if kind == "built-in":
            ch = jr.Switched(tuple(CHANNELS[k]() for k in BUILT_IN), index=index, noise=noise,
                             noise_after=noise_after, bias=bias)
        else:
            ch = CHANNELS[kind](noise=noise, noise_after=noise_after, bias=bias)
        return jr.solve(jr.Chain(jr.Normal(0.0, rho), [(jr.Gaussian(1.3), ch)]))
    return jax.jit(solve)


@pytest.mark.parametrize("group", ["built-in", "arctan"])
def test_invertible_map_identities(group):
    """One layer, noise before a strictly increasing ``phi``: ``I(T_1; X)`` is the linear
    channel's and ``H(T_1) = H_linear(T_1) + alpha E log phi'(Y)``, ``Y ~ N(0, rho + noise)``."""
    alpha, rho, noise, bias = 1.3, 0.9, 1e-3, 0.2
    linear = jr.solve(jr.Chain(jr.Normal(0.0, rho), [(jr.Gaussian(alpha), jr.Linear(noise=noise))]))
    solve = _one_layer_solver(group)
    for index, kind in enumerate(BUILT_IN if group == "built-in" else [group]):
        sol = solve(index, noise, None, bias, rho)
        assert bool(sol.converged)
        assert abs(float(sol.last_layer_information) - float(linear.last_layer_information)) < 1e-7, kind
        _, log_slope = smooth_moments(kind, noise, rho, bias)
        assert abs(float(sol.entropy) - (float(linear.entropy) + alpha * log_slope)) < 1e-7, kind


@pytest.mark.slow
@pytest.mark.parametrize("group", ["built-in", "arctan"])
def test_one_layer_information_with_noise_after_the_activation(group):
    """``I(X; T_1) = H(T_1) - n_1 E_z H(phi(z + xi) + eta | z)`` to 1e-8, the second term
    from SciPy quadrature (as for the piecewise channels in test_noisy.py)."""
    solve = _one_layer_solver(group)
    kinds = BUILT_IN if group == "built-in" else [group]
    rows = [r for r in REFERENCE["noise_after"] if r["activation"] in kinds]
    assert len(rows) >= len(kinds)
    for row in rows:
        index = kinds.index(row["activation"])
        sol = solve(index, row["noise"], row["noise_after"], 0.0, row["rho"])
        assert bool(sol.converged)
        expected = float(sol.entropy) - 1.3 * row["conditional_entropy"]
        assert abs(float(sol.mutual_information) - expected) < 1e-8, row


@pytest.mark.parametrize("kind", ["tanh", "elu"])
def test_noise_free_entropy_with_noise_only_after(kind):
    """``E log p(t | z)`` for ``t = phi(z) + eta``, ``eta ~ N(0, d)``: ``-log(2 pi e d)/2``,
    whatever ``rho``, with derivatives ``0`` in ``rho``, ``-1/(2 d)`` in ``d`` and, in the
    noise ``n`` before the activation at 0, ``-E phi'^2/(2 d)`` (one-sided differences
    of the quadrature at small ``n``). (The quadrature at ``s = 0`` had the value but
    derivatives of 1e119, which made jax.grad of a one-layer chain's ``I(X; T_1)`` 1e119.)"""
    d, rho = 1e-3, 0.2

    def free(rho, d, n):
        return CHANNELS[kind](noise=n, noise_after=d).noise_free_entropy(rho)

    assert abs(float(free(rho, d, 0.0)) + 0.5 * math.log(2 * math.pi * math.e * d)) < 1e-13
    grads = jax.grad(free, argnums=(0, 1, 2))(rho, d, 0.0)
    assert float(grads[0]) == 0.0 and abs(float(grads[1]) + 0.5 / d) < 1e-9 / d, grads
    slope2 = float(CHANNELS[kind]().mean_square_slope(rho))
    assert abs(float(grads[2]) + slope2 / (2 * d)) < 1e-10 / d
    h = 1e-9  # (first order: the next term is O(h) relative)
    fd = (float(free(rho, d, h)) - float(free(rho, d, 0.0))) / h
    assert abs(float(grads[2]) - fd) < 1e-4 * abs(fd), (float(grads[2]), fd)


@pytest.mark.slow
def test_gradient_of_one_layer_information_with_noise_only_after():
    """jax.grad of ``I(X; T_1)`` of a one-layer tanh chain with noise only after the
    activation against central differences, in the weight scale and the noise (it was
    1e119 in the scale)."""
    def info(scale, d):
        layers = [(jr.Gaussian(alpha=0.5, scale=scale), jr.Tanh(noise=0.0, noise_after=d))]
        return jr.solve(jr.Chain(prior=jr.Normal(), layers=layers), tol=1e-13).mutual_information

    args = (0.45, 1e-3)
    grads = jax.grad(info, argnums=(0, 1))(*args)
    for k, h in ((0, 1e-5), (1, 1e-7)):
        up, down = list(args), list(args)
        up[k] += h
        down[k] -= h
        fd = (float(info(*up)) - float(info(*down))) / (2 * h)
        assert abs(float(grads[k]) - fd) <= 1e-6 * max(1.0, abs(fd)), (k, float(grads[k]), fd)


@pytest.mark.parametrize("kind", ["tanh", pytest.param("arctan", marks=pytest.mark.slow)])
def test_hidden_functions_differentiable(kind):
    """Gradients of the hidden functions through ``A``, ``V``, the noise and the bias agree
    with central differences (the nodes move with the arguments)."""
    def functions(p):
        A, V, noise, bias = p
        return jnp.stack(CHANNELS[kind](noise=noise, bias=bias).hidden_functions(A, V, 1.2))

    p = jnp.asarray([3.0, 0.2, 1e-2, 0.3])
    f = jax.jit(functions)
    jac = jax.jit(jax.jacfwd(functions))(p)
    for i, h in enumerate([1e-4, 1e-5, 1e-5, 1e-5]):
        e = jnp.zeros(4).at[i].set(h)
        fd = (f(p + e) - f(p - e)) / (2 * h)
        np.testing.assert_allclose(np.asarray(jac[:, i]), np.asarray(fd), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_two_layers_traced_and_differentiable():
    """A two-layer tanh chain inside ``jit``: a gradient through the weight scale, both
    noises and the bias agrees with central differences."""
    def entropy(p):
        scale, n1, n2, bias = p
        chain = jr.Chain(jr.Normal(), [(jr.Gaussian(1.0, scale=scale), jr.Tanh(noise=n1, bias=bias)),
                                       (jr.Gaussian(0.8), jr.Tanh(noise=n2))])
        return jr.solve(chain).entropy

    p = jnp.asarray([1.5, 1e-3, 1e-2, 0.1])
    value, grad = jax.jit(jax.value_and_grad(entropy))(p)
    f = jax.jit(entropy)
    for i, h in enumerate([1e-4, 1e-6, 1e-5, 1e-4]):
        e = jnp.zeros(4).at[i].set(h)
        fd = (float(f(p + e)) - float(f(p - e))) / (2 * h)
        assert abs(float(grad[i]) - fd) < 1e-5 * max(1.0, abs(fd)), (i, float(grad[i]), fd)
    assert np.isfinite(float(value))


def test_user_function_must_be_non_decreasing():
    with pytest.raises(ValueError, match="non-decreasing"):
        jr.Activation(jnp.sin)
    with pytest.raises(ValueError, match="non-decreasing"):
        jr.Activation(lambda x: -x)
    with pytest.raises(ValueError, match="noise"):
        jr.Activation(jnp.arctan, noise=-1.0)
    jr.Activation(lambda x: x + 0.5 * jnp.tanh(x))


def test_invalid_noise_inside_jit_gives_nan():
    sol = jax.jit(lambda x: jr.solve(jr.Chain(jr.Normal(), [(jr.Gaussian(1.0), jr.Tanh(noise=x))])))(-1e-5)
    for field in ("entropy", "mutual_information", "mmse", "last_layer_information"):
        assert np.isnan(float(getattr(sol, field))), field
    assert not bool(sol.converged)
    assert int(sol.status) == jr.Status.INVALID_INPUT
    with pytest.raises(ValueError):
        jr.Tanh(noise=-1e-5)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "softplus", "elu", "erf"])
def test_registered_in_the_activation_table(name):
    ch = activations.channel(name, noise=1e-3)
    assert isinstance(ch, CHANNELS[name]) and ch.noise == 1e-3
    y = jnp.linspace(-6.0, 6.0, 101)
    np.testing.assert_allclose(np.asarray(ch.activation(y)), np.asarray(activations.function(name)(y)),
                               rtol=0, atol=1e-15)


def _default_and_finer(ch, A, V, rho, fine):
    """The hidden functions with the default rules and with ``fine``."""
    return np.array(ch.hidden_functions(A, V, rho)), np.array(ch.hidden_functions(A, V, rho, fine))


@pytest.mark.parametrize("kind", ["tanh", "erf"])
def test_hidden_functions_where_a_sharp_likelihood_meets_saturation(kind):
    """Wide pre-activations (variance 23) seen through a sharp likelihood (``A s`` about
    5e5): the teacher's averages bend where ``sqrt(A s) phi'`` falls through 1, at three
    to four of the teacher's standard deviations from the turn. The default rules against
    rules finer in the teacher's pre-activation: within 1e-7 (without breakpoints at that
    bend the free entropy was 5e-5 off and ``Ahat`` 1e-4 relative)."""
    ch = CHANNELS[kind](noise=2.31e-3)
    A, V, rho = 2.34e4, 19.4, 23.2
    default, reference = _default_and_finer(ch, A, V, rho, jr.QuadratureConfig(smooth_teacher_segments=48, smooth_teacher_legendre=12))
    np.testing.assert_allclose(default, reference, rtol=1e-7, atol=1e-9)


def test_hidden_functions_where_a_sharp_likelihood_meets_deep_saturation():
    """Pre-activation variance 22 and a narrow student prior (``V`` 0.175) under a sharp
    likelihood (``A`` 7e3): erf's averages over the teacher bend on into saturation past
    ``1 - |t| = 2^-6/sqrt(A s)``. Against SciPy (tests/_independent.smooth_hidden, tol
    1e-9: -0.8132069089176772, 1.8723815658439893, 4.529335357971232e-05): free entropy
    within 1e-8, ``Ahat`` within 5e-7 relative, ``Vhat`` within 1e-10 (the default rules:
    4.1e-9, 2.9e-7, 6e-12; with the saturation breakpoints stopping at ``2^-6`` and as
    many nodes in uniform segments, ``Ahat`` was 2.1e-6 off)."""
    free, ahat, vhat = map(float, jr.Erf(noise=2.65e-5).hidden_functions(7.0e3, 0.175, 21.75))
    assert abs(free + 0.8132069089176772) < 1e-8
    assert abs(ahat / 1.8723815658439893 - 1.0) < 5e-7
    assert abs(vhat - 4.529335357971232e-05) < 1e-10


@pytest.mark.parametrize("kind", ["tanh", "erf"])
def test_hidden_functions_where_a_wide_prior_meets_a_flat_likelihood(kind):
    """Wide pre-activations (variance 24) with a wide student prior (``V`` 13.5) and a
    flat likelihood (``A`` 9.1): the posterior's rule in the prior's variable then rests on
    its uniform segments, where the activation saturates. The default rules against
    rules finer in that variable: within 1e-8 (with 4 segments, 8 Legendre nodes on 4.5
    of the prior's sds, erf's ``Ahat`` was 1e-5 off and tanh's 2e-7)."""
    ch = CHANNELS[kind](noise=1e-4, bias=-0.23)
    A, V, rho = 9.1, 13.5, 24.4
    default, reference = _default_and_finer(ch, A, V, rho, jr.QuadratureConfig(smooth_grid=24, smooth_legendre=12, smooth_levels=13))
    np.testing.assert_allclose(default, reference, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("kind", ["tanh", "erf"])
def test_hidden_functions_where_the_prior_is_far_wider_than_the_turn(kind):
    """Pre-activation variances 100 and 900 (weight scales 10 and 30) with student priors
    of variance 0.1 to 0.99 of that: in the posterior's variable the activation's turn
    and its bend into saturation are a sliver of the prior's span, resolved by the
    levels of the likelihood geometric towards the ends of the range. The default rules
    against rules finer in that variable: within 2e-6 (with the levels in ratio e^-1
    instead of e^-2, tanh's functions were 3e-5 off and erf's 5e-5)."""
    ch = CHANNELS[kind](noise=1e-3)
    points = [(rho, A, f * rho) for rho in (100.0, 900.0) for A in (1e-2, 1.0, 30.0) for f in (0.99, 0.5, 0.1)]
    fine = jr.QuadratureConfig(smooth_grid=48, smooth_levels=25, smooth_tail=8, smooth_legendre=16)

    def functions(cfg):
        one = lambda rho, A, V: jnp.stack(ch.hidden_functions(A, V, rho, cfg))  # noqa: E731
        return np.asarray(jax.jit(jax.vmap(one))(*map(jnp.asarray, zip(*points))))

    np.testing.assert_allclose(functions(jr.QuadratureConfig()), functions(fine), rtol=2e-6, atol=2e-6)


# (activation, A, V, noise, rho): (reduced free entropy, Ahat, Vhat) from
# tests/_independent.smooth_hidden(kind, A, V, noise, rho, tol=1e-9), SciPy adaptive
# quadrature. A student prior nearly as wide as the teacher's pre-activation, which
# the activation saturates: the posterior on t is nearly two-valued (near -1 and +1)
# and switches between the two as the teacher's noise xi crosses a point; at A of 1-10
# that switch lies in the bulk of xi's law and is sharp.
TWO_VALUED = [
    (("tanh", 4.0, 2.4975, 1e-3, 2.5), (-0.5572140545037212, 0.24945707038999418, 0.14696864696894016)),
    (("tanh", 2.0, 5.994, 1e-3, 6.0), (-0.4200425109310095, 0.08340424602509287, 0.2572701187454304)),
    (("tanh", 4.0, 99.9, 1e-3, 100.0), (-0.6385408157649519, 0.006052137985998221, 0.09455589957105422)),
    (("erf", 1.0, 23.976, 0.1, 24.0), (-0.30721873459390237, 0.014829456376001736, 0.43393748233738494)),
]
# Gauss-Hermite in xi (the coarse survey's rule, an option of QuadratureConfig) there.
HERMITE_RULES = jr.QuadratureConfig(smooth_switch_rule=False, smooth_hermite_xi=96, smooth_hermite_w=24)


def _two_valued_errors(cfg):
    """Largest errors (free entropy, Ahat relative, Vhat) over the TWO_VALUED points."""
    errors = []
    for kind in dict.fromkeys(k for (k, *_), _ in TWO_VALUED):  # one program per activation
        rows = [(point[1:], expected) for point, expected in TWO_VALUED if point[0] == kind]
        args = map(jnp.asarray, zip(*(point for point, _ in rows)))
        one = lambda A, V, noise, rho: jnp.stack(CHANNELS[kind](noise=noise).hidden_functions(A, V, rho, cfg))  # noqa: E731
        got, expected = np.asarray(jax.jit(jax.vmap(one))(*args)), np.asarray([e for _, e in rows])
        errors.append(np.stack([np.abs(got[:, 0] - expected[:, 0]), np.abs(got[:, 1] / expected[:, 1] - 1.0),
                                np.abs(got[:, 2] - expected[:, 2])], axis=1))
    return np.max(np.concatenate(errors), axis=0)


def test_default_rules_where_the_posterior_is_nearly_two_valued():
    """There the functions of the teacher's noise ``xi`` are analytic only in a narrow
    strip about the real axis, at the switch; the default rule in ``xi`` follows it:
    within 1e-7 of SciPy (24 Gauss-Hermite nodes were 1.1e-7 off at rho 2.5, 2e-6 at
    rho 6, 1.3e-4 at rho 100)."""
    assert np.all(_two_valued_errors(jr.QuadratureConfig()) < 1e-7)


def test_hermite_rules_where_the_posterior_is_nearly_two_valued():
    """Gauss-Hermite nodes in ``xi`` (``smooth_switch_rule=False``) reach the same
    accuracy there only with 96 of them (and 24 in the student's field)."""
    assert np.all(_two_valued_errors(HERMITE_RULES) < 1e-7)
    assert _two_valued_errors(jr.QuadratureConfig(smooth_switch_rule=False))[1] > 1e-5


def test_few_noise_nodes_are_gauss_hermite():
    """With fewer than 16 nodes in ``xi`` the switch rule's nodes are too far apart in the
    bulk (8 of them put a noisy tanh network's ``I(X; T_2)`` 1.7e-2 off): such rules are
    Gauss-Hermite's, as with ``smooth_switch_rule=False``; with 16 the switch rule."""
    ch = jr.Tanh(noise=0.1)

    def functions(**kw):
        return np.asarray(jnp.stack(ch.hidden_functions(4.0, 2.0, 2.5, jr.QuadratureConfig(**kw))))

    np.testing.assert_array_equal(functions(smooth_hermite_xi=8), functions(smooth_hermite_xi=8, smooth_switch_rule=False))
    assert np.max(np.abs(functions(smooth_hermite_xi=16) - functions(smooth_hermite_xi=16, smooth_switch_rule=False))) > 1e-9


def test_switch_rule_is_a_rule_for_the_standard_normal():
    """Whatever the node (a sharp or flat likelihood, a switch far out or none, an empty
    range), the rule in ``xi`` integrates the standard normal's moments and a smooth
    function; at a sharp switch (A of 1-4 over the range [-1, 1]), a step of width
    ``1/(2 sqrt(A))`` there (``E Phi((xi - c)/delta) = Phi(-c/sqrt(1 + delta^2))``) far
    better than 24 Gauss-Hermite nodes."""
    A = jnp.array([1e-6, 0.3, 4.0, 30.0, 1e3, 1e6, 4.0, 4.0])
    t0 = jnp.array([0.0, 0.9, -0.5, 0.3, -0.99, 0.5, 0.2, 3.0])
    tlo = jnp.array([-1.0, -1.0, -1.0, -1.0, -1.0, -1.0, 0.5, -1.0])
    thi = jnp.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 1.0])
    side = jnp.array([0.0, 2.0, -1.0, 0.5, 40.0, -jnp.inf, 0.0, 1.0])
    xi, w = map(np.asarray, switch_rule(A, t0, tlo, thi, side, 24))
    assert np.all(np.isfinite(xi)) and np.all(w >= 0)
    np.testing.assert_allclose(np.sum(w, axis=-1), 1.0, atol=1e-14)
    np.testing.assert_allclose(np.sum(w * xi * xi, axis=-1), 1.0, atol=2e-9)
    np.testing.assert_allclose(np.sum(w * xi**4, axis=-1), 3.0, atol=1e-7)
    np.testing.assert_allclose(np.sum(w * np.cos(xi), axis=-1), math.exp(-0.5), atol=1e-9)
    gx, gw = hermite_rule(24)
    for A, t0, side in ((1.0, -0.5, -1.0), (2.0, 0.3, 0.5), (4.0, 0.3, 0.5)):
        xi, w = map(np.asarray, switch_rule(jnp.float64(A), jnp.float64(t0), -1.0, 1.0, jnp.float64(side), 24))
        k = np.argmin(np.diff(xi))
        c, delta = 0.5 * (xi[k] + xi[k + 1]), 0.5 / math.sqrt(A)  # the switch: where the nodes are densest
        step = lambda x: 0.5 * (1.0 + np.vectorize(math.erf)((x - c) / (delta * math.sqrt(2.0))))  # noqa: E731
        exact = 0.5 * (1.0 + math.erf(-c / math.sqrt(2.0 * (1.0 + delta**2))))
        assert abs(w @ step(xi) - exact) < 1e-5
        assert abs(gw @ step(gx) - exact) > 30 * abs(w @ step(xi) - exact)


@pytest.mark.parametrize("kind", ["tanh", "erf"])
def test_hidden_functions_at_large_weight_scales(kind):
    """Pre-activations of variance 900 (weights at scale 30): the activation's turn is a
    narrow feature of the teacher's law, which the rules must refine towards. The default
    rules against rules twice as fine in every direction: within 5e-6 (without the
    refinement at the turn they were 1e-2 off in a network's I(X; T_2))."""
    ch = CHANNELS[kind](noise=1e-4)
    fine = jr.QuadratureConfig(smooth_teacher_segments=48, smooth_hermite_xi=32, smooth_hermite_w=20)
    for A, V in ((10.0, 1.0), (1e3, 1e-2), (1.0, 100.0)):
        default, reference = _default_and_finer(ch, A, V, 900.0, fine)
        np.testing.assert_allclose(default, reference, rtol=5e-6, atol=5e-6)
