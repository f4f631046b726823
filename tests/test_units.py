"""Scalar functions of priors and channels against the reference implementation."""

import dataclasses

import numpy as np
import pytest

import jaxreplica as jr
from conftest import load_reference
from _chains import PRIORS, channel

UNITS = load_reference("dnner_units.json")

# The reference's Bimodal mmse at A = 100 (about 2e-23) is off by 20%: its adaptive
# quadrature misses the narrow peak of sech^2 at z = -sqrt(A). These values were
# computed with mpmath (40 digits, the integral split at the peak).
BIMODAL_MMSE_A100 = {0.5: 2.388383471271139737e-23, 0.3: 2.187072306780722091e-23}


import jax
import jax.numpy as jnp

# One compilation per block type (the blocks are pytrees, their numbers are traced).
_prior_fns = jax.jit(lambda prior, A: prior.free_entropy_and_mmse(A))
_output_fns = jax.jit(lambda ch, V, rho: ch.output_functions(V, rho))
_hidden_fns = jax.jit(lambda ch, A, V, rho: (ch.hidden_free_entropy(A, V, rho),) + tuple(ch.hidden_functions(A, V, rho))[1:])


def rel(a, b):
    return abs(float(a) - b) / max(abs(b), 1e-300)


@pytest.mark.parametrize("row", UNITS["priors"], ids=lambda r: f"{r['prior']}-{r['params']}-A{r['A']}")
def test_prior(row):
    prior = PRIORS[row["prior"]](row["params"])
    fe, mmse = _prior_fns(prior, row["A"])
    expected_fe = row["free_entropy"]
    if row["prior"] == "normal" and row["params"]["mean"] != 0:
        # Reference defect (tests/data/README.md, Corrections): it adds mean^2/(2 var).
        expected_fe -= row["params"]["mean"] ** 2 / (2 * row["params"]["var"])
    expected_mmse = row["mmse"]
    if row["prior"] == "bimodal" and row["A"] == 100.0:
        expected_mmse = BIMODAL_MMSE_A100[row["params"]["prob"]]
    assert rel(fe, expected_fe) < 1e-6
    assert rel(mmse, expected_mmse) < 1e-6
    assert rel(prior.second_moment(), row["rho"]) < 1e-12


def test_normal_free_entropy_is_mean_independent():
    a = jr.Normal(mean=0.0, var=2.0).free_entropy(3.0) - 1.5 * 2.0
    b = jr.Normal(mean=0.7, var=2.0).free_entropy(3.0) - 1.5 * (2.0 + 0.49)
    assert abs(float(a - b)) < 1e-14


@pytest.mark.parametrize("row", UNITS["outputs"], ids=lambda r: f"{r['activation']}-{r['params']}-V{r['V']}-rho{r['rho']}")
def test_output_channel(row):
    ch = channel(row["activation"], row["params"])
    fe, ahat = _output_fns(ch, row["V"], row["rho"])
    assert rel(fe, row["free_entropy"]) < 1e-6
    assert rel(ahat, row["A_hat"]) < 1e-6


@pytest.mark.parametrize("row", UNITS["interfaces"], ids=lambda r: f"{r['activation']}-{r['params']}-A{r['A']}-V{r['V']}-rho{r['rho']}")
def test_hidden_channel(row):
    ch = channel(row["activation"], row["params"])
    fe, ahat, vhat = _hidden_fns(ch, row["A"], row["V"], row["rho"])
    assert rel(fe, row["free_entropy"]) < 1e-6
    assert rel(ahat, row["A_hat"]) < 1e-6
    if row["V_hat"] == 0.0:
        assert abs(float(vhat)) < 1e-20
    else:
        assert rel(vhat, row["V_hat"]) < 1e-6
    assert rel(ch.second_moment(row["rho"]), row["rho_next"]) < 1e-12


def test_linear_channel_closed_forms_match_generic_quadrature():
    """The Linear closed forms equal the generic piecewise quadrature (LeakyReLU of slope 1)."""
    lin, leaky = jr.Linear(noise=0.01), jr.LeakyReLU(noise=0.01, slope=1.0)
    for A, V, rho in [(2.0, 0.3, 1.0), (50.0, 0.05, 2.0)]:
        a, b = lin.hidden_functions(A, V, rho), leaky.hidden_functions(A, V, rho)
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-8)
        a, b = lin.output_functions(V, rho), leaky.output_functions(V, rho)
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-8)


def test_coarse_rules_keep_the_prior_and_stay_near_the_full_rules():
    """The multi-start's survey rules (``QuadratureConfig.coarse()``) leave the prior's
    averages as they are (a spike-and-slab's and a bimodal input's equal; with the
    coarse segments they would move by 1e-12) and keep the hidden channels' functions
    near the full rules' where they are furthest from them on 200 random points: ReLU
    1.5e-3 relative (half the teacher's uniform segments and three fewer graded ones: 5e-3),
    hardtanh 2.75e-3 (2.5e-3 with the full rules' 12 uniform segments and 8 grades), tanh
    1.4e-3 (with every other saturation breakpoint, as with all of them)."""
    full, coarse = jr.QuadratureConfig(), jr.QuadratureConfig().coarse()
    for prior in (jr.SpikeSlab(prob=0.3), jr.Bimodal(prob=0.4)):
        for A in (0.5, 20.0):
            np.testing.assert_allclose(np.array(prior.free_entropy_and_mmse(A, coarse)),
                                       np.array(prior.free_entropy_and_mmse(A, full)), rtol=1e-14, atol=1e-300)
    for ch, (A, V, rho), bar in ((jr.ReLU(noise=0.0), (11.6, 1e-4, 0.8), 2e-3),
                                 (jr.HardTanh(noise=1.3e-4), (32.9, 4.71, 4.735), 3e-3),
                                 (jr.Tanh(noise=0.0), (0.22, 2.7e-4, 4.4), 2e-3)):
        a, b = np.array(ch.hidden_functions(A, V, rho, coarse)), np.array(ch.hidden_functions(A, V, rho, full))
        assert np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-3)) < bar


@pytest.mark.slow
def test_nishimori_identities():
    """Ahat = -2 d I_last/dV and Vhat = 2 d I_hidden/dA - rho_next: two forms of one derivative."""
    import jax

    ch = jr.HardTanh(noise=0.01)
    dI = jax.grad(lambda V: ch.output_functions(V, 1.0)[0])(0.2)
    assert rel(-2 * dI, float(ch.output_functions(0.2, 1.0)[1])) < 1e-7
    dIA = jax.grad(lambda A: ch.hidden_free_entropy(A, 0.2, 1.0))(3.0)
    rho_next = float(ch.second_moment(1.0))
    # d I_hidden/dA = (rho_next - Vhat)/2
    assert rel(rho_next - 2 * dIA, float(ch.hidden_functions(3.0, 0.2, 1.0)[2])) < 1e-6


def test_bad_input_raises_with_parameter_name():
    with pytest.raises(ValueError, match="var"):
        jr.Normal(mean=0.0, var=-1.0)
    with pytest.raises(ValueError, match="prob"):
        jr.Bimodal(prob=1.2)
    with pytest.raises(ValueError, match="noise"):
        jr.ReLU(noise=float("nan"))
    with pytest.raises(ValueError, match="alpha"):
        jr.Gaussian(alpha=0.0)
    with pytest.raises(ValueError, match="eigenvalues"):
        jr.Empirical(eigenvalues=np.array([1.0, -2.0]), alpha=1.0)
    with pytest.raises(ValueError, match="contradict alpha"):
        jr.Empirical(eigenvalues=np.ones(10), alpha=0.5)
    with pytest.raises(ValueError, match="layers"):
        jr.Chain(prior=jr.Normal(), layers=[])
    with pytest.raises(ValueError, match="last layer needs noise"):
        jr.Chain(prior=jr.Normal(), layers=[(jr.Gaussian(alpha=1.0), jr.ReLU(noise=0.0))])
    with pytest.raises(ValueError, match="method"):
        jr.solve(jr.Chain(prior=jr.Normal(), layers=[(jr.Gaussian(alpha=1.0), jr.Linear(noise=0.1))]), method="newton")


@pytest.mark.slow
def test_switched_channel_equals_its_options():
    """Every scalar function of ``Switched(options, index)`` is that of ``options[index]``
    (with the switch's noise), inside ``jit`` with a traced index; bad input names the field."""
    opts = (jr.Linear(), jr.HardTanh(threshold=0.7), jr.ReLU(), jr.Probit(), jr.LeakyReLU(slope=0.2))
    calls = [("second_moment", (0.7,)), ("output_functions", (0.1, 0.7)), ("hidden_functions", (2.0, 0.1, 0.7)),
             ("noise_free_entropy", (0.7,)), ("activation", (np.linspace(-2.0, 2.0, 7),))]
    for method, args in calls:
        run = jax.jit(lambda i, *a, method=method: getattr(jr.Switched(options=opts, index=i, noise=1e-3), method)(*a))
        for i, opt in enumerate(opts):
            got = jax.tree_util.tree_leaves(run(i, *args))
            want = jax.tree_util.tree_leaves(getattr(opt.replace(noise=1e-3), method)(*args))
            for g, w in zip(got, want):
                np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match="index"):
        jr.Switched(options=opts, index=5)
    with pytest.raises(ValueError, match="options"):
        jr.Switched(options=())
    with pytest.raises(ValueError, match="noise"):
        jr.Switched(options=opts, noise=-1.0)


def test_log_ndtr_matches_scipy_with_its_derivative():
    """The one-erfc log Phi: relative 1e-14 for x <= 0 (far tail included), absolute
    1e-15 above; derivative phi/Phi."""
    from scipy.special import log_ndtr as scipy_log_ndtr
    from scipy.stats import norm

    from jaxreplica.gaussian import log_ndtr

    x = np.concatenate([-np.logspace(-4, 5, 400), [0.0], np.logspace(-4, 1.5, 200)])
    want = scipy_log_ndtr(x)
    got = np.asarray(jax.jit(log_ndtr)(x))
    neg = x <= 0
    np.testing.assert_allclose(got[neg], want[neg], rtol=1e-14)
    np.testing.assert_allclose(got[~neg], want[~neg], rtol=0, atol=1e-15)
    small = np.abs(x) < 30  # where phi/Phi is representable on both sides
    grad = np.asarray(jax.jit(jax.vmap(jax.grad(log_ndtr)))(x[small]))
    # exp(-x^2/2 - log Phi): arguments near 450 carry relative rounding 1e-13 either way
    np.testing.assert_allclose(grad, np.exp(norm.logpdf(x[small]) - want[small]), rtol=1e-12)


@pytest.mark.parametrize("name, noise, rho", [("relu", 1e-5, 1e-4), ("relu", 2.0, 100.0), ("probit", 0.1, 1.0),
                                              ("hardtanh", 0.3, 1.0)])
def test_noise_free_entropy_against_scipy(name, noise, rho):
    """``-H(t | z)``, ``z ~ N(0, rho)``, by SciPy's adaptive quadrature of the closed form in
    the noise; also ``output_free_entropy(0, rho)``, a different rule (to 1e-9)."""
    from scipy import integrate
    from scipy.special import log_ndtr
    from scipy.stats import norm

    sd = np.sqrt(noise)

    def atom(hi, z):  # P log P of the window (-inf, hi); the upper atoms by symmetry
        lp = log_ndtr((hi - z) / sd)
        return np.exp(lp) * lp

    def slope(lo, hi, z):  # int over (lo, hi) of N(y; z, noise) log N(y; z, noise)
        a, b = (lo - z) / sd, (hi - z) / sd
        mass = norm.cdf(b) - norm.cdf(a)
        edge = lambda u: 0.0 if np.isinf(u) else u * norm.pdf(u)
        return -mass * 0.5 * np.log(2 * np.pi * noise) - 0.5 * (mass - (edge(b) - edge(a)))

    pieces = {
        "relu": lambda z: atom(0.0, z) + slope(0.0, np.inf, z),
        "probit": lambda z: atom(0.0, z) + atom(0.0, -z),
        "hardtanh": lambda z: atom(-1.0, z) + slope(-1.0, 1.0, z) + atom(-1.0, -z),
    }[name]
    g = lambda z: pieces(z) * norm.pdf(z, scale=np.sqrt(rho))
    cuts = sorted({-np.inf, np.inf, -1.0, 0.0, 1.0} | {k + d for k in (-1.0, 0.0, 1.0) for d in (-50 * sd, 50 * sd)})
    want = sum(integrate.quad(g, lo, hi, epsabs=1e-15, epsrel=1e-13, limit=500)[0] for lo, hi in zip(cuts[:-1], cuts[1:]))
    ch = channel(name, {"var_noise": noise})
    assert abs(float(ch.noise_free_entropy(rho)) - want) < 1e-12
    assert abs(float(ch.output_free_entropy(0.0, rho)) - want) < 1e-9


def test_odd_activations_without_bias_fold_the_teacher_average():
    """An odd activation without a bias averages over the half line ``y0 >= 0`` only; its
    functions equal the whole line's (``bias=0.0``, a traced number) to round-off, hidden
    and last layer, noise before and after. A fold that dropped or double-counted a half
    would be off by a factor of about 2."""
    cases = [jr.HardTanh(noise=1e-5), jr.HardTanh(threshold=0.6, noise=1e-3, noise_after=1e-2), jr.Probit(noise=1e-2),
             jr.Tanh(noise=1e-4), jr.Erf(noise=1e-3, noise_after=1e-3)]
    points = [(1e-2, 1e-6, 1.0), (3.0, 0.2, 0.8), (1e4, 1e-3, 2.5)]
    for ch in cases:
        assert ch.symmetric and not ch.replace(bias=0.0).symmetric
        for A, V, rho in points:
            folded = _hidden_fns(ch, A, V, rho) + tuple(_output_fns(ch, V, rho))
            whole_ch = ch.replace(bias=0.0)
            whole = _hidden_fns(whole_ch, A, V, rho) + tuple(_output_fns(whole_ch, V, rho))
            np.testing.assert_allclose(np.asarray(folded), np.asarray(whole), rtol=1e-10, atol=1e-13,
                                       err_msg=f"{type(ch).__name__} at A={A}, V={V}, rho={rho}")
        np.testing.assert_allclose(float(ch.noise_free_entropy(1.3)), float(ch.replace(bias=0.0).noise_free_entropy(1.3)),
                                   rtol=1e-13)
    assert not jr.ReLU().symmetric and not jr.Sigmoid().symmetric and not jr.HardTanh(bias=0.3).symmetric


def test_hidden_functions_reach_their_limit_as_the_input_is_recovered():
    """Noiseless hidden layer, ``V -> 0`` (its input known, as once the layer above is
    recovered): ``Ahat -> A E[phi'(y + b)^2]``, ``y ~ N(0, rho)``, in closed form. Down to
    ``V = 0`` it holds to 1e-9; ``d log Z/dw`` computed as ``(<y> - w)/V`` gave 0 or
    1e120 below ``V = 1e-20``."""
    from scipy.stats import norm

    rho = 0.8
    sd = np.sqrt(rho)
    cases = {
        "relu": (lambda b: jr.ReLU(bias=b), lambda b: norm.cdf(b / sd)),
        "leaky": (lambda b: jr.LeakyReLU(slope=0.1, bias=b), lambda b: norm.cdf(b / sd) + 0.01 * norm.cdf(-b / sd)),
        "hardtanh": (lambda b: jr.HardTanh(bias=b), lambda b: norm.cdf((1 - b) / sd) - norm.cdf((-1 - b) / sd)),
    }
    for name, (make, slope2) in cases.items():
        for b in (None, 0.3):
            ch = make(b)
            for A in (1e-2, 1.0, 1e3, 1e8):
                for V in (1e-20, 1e-60, 1e-200, 0.0):
                    ahat = float(_hidden_fns(ch, A, V, rho)[1])
                    assert ahat == pytest.approx(A * slope2(0.0 if b is None else b), rel=1e-9), (name, b, A, V, ahat)


@pytest.mark.parametrize("name, ch, A, V, rho", [
    ("relu", jr.ReLU(), 1e3, 0.04, 1.8e8),
    ("relu", jr.ReLU(), 1e6, 1e-6, 1e4),
    ("leaky", jr.LeakyReLU(slope=0.1, bias=0.3), 1e3, 0.04, 1.8e8),
    ("leaky", jr.LeakyReLU(slope=0.1, bias=0.3), 1e6, 1e-6, 1e4),
    ("hardtanh", jr.HardTanh(bias=0.2), 1e9, 1e-9, 2.0),
    ("relu, noise after", jr.ReLU(noise_after=1e-3), 3e4, 0.04, 1.8e8),
])
def test_hidden_free_entropy_where_log_z_is_huge(name, ch, A, V, rho):
    """A wide pre-activation behind a sharp likelihood: ``log Z`` and ``A t0^2/2`` are each
    about ``A rho`` (up to 1e11 here) and the reduced free entropy, their average
    difference, is of order one. Formed as a difference, it was off by up to 3e-6 (and
    moved by that much between rules, 2e-9 for hardtanh at ``A = 1e9``); formed per piece
    from the residual ``sqrt(A) (t0 - c - g w) + xi``, the default rules agree with rules
    finer in every direction to 1e-9, and ``Ahat``, ``Vhat`` to 1e-8 relative. (Deep ReLU
    networks with weight scale 30 reach these values: a binary input recovered through
    three noisy layers gave ``I(X; T_3) = log 2 - 9.5e-6``.)"""
    fine = dataclasses.replace(jr.QuadratureConfig(), bulk_segments=36, legendre=12, grades=16, hermite_w=24,
                               hermite_xi=48)
    default = np.array([float(x) for x in ch.hidden_functions(A, V, rho)])
    finer = np.array([float(x) for x in ch.hidden_functions(A, V, rho, fine)])
    assert abs(default[0] - finer[0]) < 1e-9, (name, default[0], finer[0])
    np.testing.assert_allclose(default[1:], finer[1:], rtol=1e-8, err_msg=name)


def test_bent_rule_is_a_rule_for_the_standard_normal():
    """Wherever the bend sits and however sharp it is (a switch far out, none, a
    non-finite position), the rule integrates the standard normal's moments and a smooth
    function; it reaches ``|xi| = 7`` at both ends."""
    from jaxreplica.xi_rules import bent_rule

    xs = jnp.array([0.0, 3.5, -6.9, 7.0, 40.0, jnp.nan, -2.0, 1.0])
    d = jnp.array([3.0, 0.3, 1e-3, 0.05, 0.2, 0.5, 1e9, 0.0])
    xi, w = map(np.asarray, bent_rule(xs, d, 24))
    assert np.all(np.isfinite(xi)) and np.all(w >= 0)
    assert np.all(xi[:, 0] <= -7.0) and np.all(xi[:, -1] >= 7.0)
    np.testing.assert_allclose(np.sum(w, axis=-1), 1.0, atol=1e-14)
    np.testing.assert_allclose(np.sum(w * xi, axis=-1), 0.0, atol=1e-9)
    np.testing.assert_allclose(np.sum(w * xi * xi, axis=-1), 1.0, atol=1e-8)
    np.testing.assert_allclose(np.sum(w * np.cos(xi), axis=-1), np.exp(-0.5), atol=1e-8)


# Points where the posterior of a ReLU or hardtanh hidden layer switches between the atom
# and the slope as the teacher's noise xi crosses a point in its tail (A, V, rho, noise,
# bias): where 24 Gauss-Hermite nodes in xi miss Ahat by 8e-7 to 2e-6 relative, and
# (A V of about 1) where 12 nodes in the student's field miss it by 1.5e-7 to 2.7e-7.
ATOM_SWITCHES = {
    "relu": [(16964.805702, 1.29153, 1.638784, 0.0257925, -0.229467), (7748.559233, 0.126735, 1.947237, 8.91958e-05, -0.389473),
             (3.436811, 0.24546, 1.182853, 4.581e-05, -0.043004)],
    "hardtanh": [(24879.138567, 0.0687525, 2.096059, 0.000432642, 0.0), (5331.467876, 1.42895, 1.694302, 0.0559669, 0.0),
                 (9.095164, 0.0714616, 2.294425, 0.0, 0.28319)],
}


@pytest.mark.parametrize("kind", sorted(ATOM_SWITCHES))
def test_hidden_functions_where_the_posterior_switches_from_atom_to_slope(kind):
    """There each teacher node's rule in ``xi`` follows the switch: free entropy, ``Ahat``
    (relative) and ``Vhat`` within 1e-7 of Gauss-Hermite rules four times as fine (96
    nodes in ``xi``, 24 in ``w``, 10 Legendre nodes a segment). Gauss-Hermite's 24 nodes
    (``atom_switch_rule=False``) and 12 nodes in ``w`` each miss that by far."""
    make = {"relu": jr.ReLU, "hardtanh": jr.HardTanh}[kind]
    points = np.array(ATOM_SWITCHES[kind])

    def values(cfg):
        one = lambda A, V, rho, noise, bias: jnp.stack(make(noise=noise, bias=bias).hidden_functions(A, V, rho, cfg))  # noqa: E731
        return np.asarray(jax.jit(jax.vmap(one))(*map(jnp.asarray, points.T)))

    def errors(cfg):
        err = np.abs(values(cfg) - fine)
        err[:, 1] /= np.abs(fine[:, 1])
        return err

    fine = values(jr.QuadratureConfig(atom_switch_rule=False, legendre=10, hermite_xi=96, hermite_w=24))
    assert np.all(errors(jr.QuadratureConfig()) < 1e-7), errors(jr.QuadratureConfig())
    assert np.max(errors(jr.QuadratureConfig(atom_switch_rule=False))[:2, 1]) > 7e-7
    assert errors(jr.QuadratureConfig(atom_hermite_w=12))[2, 1] > 1.5e-7
