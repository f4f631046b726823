"""Phase transitions of single-layer generalized linear models.

The textbook checks of a replica engine: discrete and sparse inputs observed through
i.i.d. Gaussian weights, whose Bayes-optimal fixed point jumps from an uninformed branch
to an informed one (perfect recovery). The engine must find the informed branch where it
wins, report both branches, and never give ``I(X; T) > H(X)`` for a discrete input.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreplica as jr
from conftest import load_reference
from _chains import PRIORS, channel
from _independent import spikeslab_linear_replica

DATA = load_reference("glm_transitions.json")
LOG2 = float(np.log(2.0))


def family_chain(family: str, alpha) -> jr.Chain:
    spec = DATA["families"][family]
    prior = PRIORS[spec["prior"]["kind"]](spec["prior"])
    return jr.Chain(prior=prior, layers=[(jr.Gaussian(alpha=alpha), channel(spec["channel"]["kind"], spec["channel"]))])


# One compiled program per family: alpha is a traced leaf of the chain.
_solvers = {}


def solve_family(family: str, alpha, method="vamp"):
    key = (family, method)
    if key not in _solvers:
        _solvers[key] = jax.jit(lambda a: jr.solve(family_chain(family, a), method))
    return _solvers[key](jnp.asarray(alpha, dtype=jnp.float64))


def _tolerance(field: str, digits: int) -> float:
    """1e-6 on entropies and informations, 1e-8 absolute on the mmse, or half a unit of
    the last printed digit where the reference was quoted with fewer digits."""
    floor = 1e-8 if field == "mmse" else 1e-6
    return max(floor, 0.5 * 10.0 ** (-digits))


@pytest.mark.parametrize("row", DATA["rows"], ids=lambda r: f"{r['family']}-{r['alpha']}")
def test_table_row(row):
    sol = solve_family(row["family"], row["alpha"])
    assert bool(sol.converged)
    off = row.get("reference_off", [])
    for field, reference in row["reference"].items():
        distance = abs(float(getattr(sol, field)) - reference)
        if field in off:
            # The reference is wrong here (see the row's note): it must stay away.
            assert distance > _tolerance(field, row["digits"][field]), field
        else:
            assert distance <= _tolerance(field, row["digits"][field]), field
    for field in ("entropy", "mmse"):
        if field in row.get("independent", {}):
            value, independent = float(getattr(sol, field)), row["independent"][field]
            assert abs(value - independent) < (1e-8 if field == "entropy" else 1e-3 * independent), field


def test_sparse_cs_branches_at_025_match_independent_potentials():
    """At alpha = 0.25 (noise 1e-8) both branches are stationary; the uninformed one has
    the smaller potential, so it is the answer although an informed point exists."""
    row = next(r for r in DATA["rows"] if r["family"] == "sparse_cs" and r["alpha"] == 0.25)
    ind = row["independent"]
    br = solve_family("sparse_cs", 0.25).branches
    assert bool(br.uninformed["converged"]) and bool(br.informed["converged"])
    assert abs(float(br.uninformed["potential"]) - ind["entropy_uninformed"]) < 1e-8
    assert abs(float(br.informed["potential"]) - ind["entropy_informed"]) < 1e-8
    assert abs(float(br.informed["mmse"]) / ind["mmse_informed"] - 1.0) < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize(
    "alpha, E0, key",
    [(0.25, 0.1138, "entropy_uninformed"), (0.25, 4.2e-8, "entropy_informed"), (0.3, 2e-8, "entropy"),
     (0.4, 1e-8, "entropy"), (0.6, 5e-9, "entropy")],
)
def test_sparse_cs_independent_values(alpha, E0, key):
    """Recompute the stored independent values (SciPy quadrature, no engine code)."""
    row = next(r for r in DATA["rows"] if r["family"] == "sparse_cs" and r["alpha"] == alpha)
    entropy, _ = spikeslab_linear_replica(rho=0.2, alpha=alpha, delta=1e-8, E0=E0)
    assert abs(entropy - row["independent"][key]) < 1e-9


def _bisect(pred, lo, hi, tol=1e-3):
    """The point in ``[lo, hi]`` where ``pred`` turns true (false at ``lo``, true at ``hi``)."""
    assert not pred(lo) and pred(hi)
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if pred(mid) else (mid, hi)
    return 0.5 * (lo + hi)


def test_binary_perceptron_information_theoretic_transition():
    """Where the informed branch (I = log 2) overtakes the uninformed one: 1.245."""
    def informed_wins(alpha):
        br = solve_family("perceptron", alpha).branches
        assert bool(br.uninformed["converged"]) and bool(br.informed["converged"])
        return float(br.informed["potential"]) < float(br.uninformed["potential"])

    alpha_it = _bisect(informed_wins, 1.2, 1.3)
    assert 1.240 <= alpha_it <= 1.250
    lo, hi = DATA["transitions"]["perceptron"]["alpha_it"]
    assert lo - 1e-3 <= alpha_it <= hi + 1e-3


def test_binary_perceptron_algorithmic_transition():
    """Where the uninformed branch (state evolution from no knowledge) reaches perfect
    recovery: 1.49-1.50."""
    def recovers(alpha):
        br = solve_family("perceptron", alpha).branches
        assert bool(br.uninformed["converged"])
        return float(br.uninformed["mmse"]) < 1e-6

    alpha_alg = _bisect(recovers, 1.4, 1.6)
    assert 1.48 <= alpha_alg <= 1.51
    lo, hi = DATA["transitions"]["perceptron"]["alpha_alg"]
    assert lo - 1e-3 <= alpha_alg <= hi + 1e-3


@pytest.mark.parametrize("alpha", [1.26, 1.3, 1.5, 2.0, 3.0, 5.0])
def test_binary_perceptron_information_above_transition_is_log2(alpha):
    sol = solve_family("perceptron", alpha)
    assert bool(sol.converged)
    assert abs(float(sol.mutual_information) - LOG2) < 1e-6
    assert float(sol.mmse) == 0.0


@pytest.mark.parametrize("kind", ["probit", "linear", "relu", "hardtanh"])
@pytest.mark.parametrize("prob", [0.5, 0.2])
def test_information_never_exceeds_input_entropy(kind, prob):
    """``I(X; T) <= H(X) + 1e-9`` for a binary input over alpha in [0.1, 5] (18 values,
    one batched solve per channel and prior)."""
    alphas = jnp.asarray(np.geomspace(0.1, 5.0, 18))
    prior = jr.Bimodal(prob=prob)
    ch = channel(kind, {"var_noise": 1e-6})
    sols = jax.jit(jax.vmap(lambda a: jr.solve(jr.Chain(prior=prior, layers=[(jr.Gaussian(alpha=a), ch)]))))(alphas)
    h = float(prior.entropy())
    assert np.all(np.asarray(sols.converged))
    mi = np.asarray(sols.mutual_information)
    assert np.all(mi <= h + 1e-9), mi - h
    # The bound is reached: every channel recovers a binary input at large alpha.
    assert abs(mi[-1] - h) < 1e-6


def test_guard_flags_information_above_input_entropy():
    """A warm start on the uninformed branch at alpha = 1.26 stays there, where
    ``I = 0.69905 > log 2``: the solution must say it is not one."""
    assert bool(solve_family("perceptron", 1.26).converged)  # the multi-start finds the informed point
    start = jr.solve(family_chain("perceptron", 1.2)).fixed_point  # uninformed basin
    warm = jr.solve(family_chain("perceptron", 1.26), init=start)
    assert warm.branches.names == ("warm start",)
    assert float(warm.mutual_information) > LOG2 + 1e-4
    assert not bool(warm.converged)


def test_branches_report_every_start():
    sol = solve_family("perceptron", 1.3)
    br = sol.branches
    assert br.names == ("uninformed", "informed")
    assert br.potential.shape == (2,)
    # Between the two transitions: the hard phase. The uninformed branch is stuck at a
    # positive error, the informed one recovers the input and wins.
    assert float(br.uninformed["mmse"]) > 0.1 and float(br.informed["mmse"]) == 0.0
    assert float(br.informed["potential"]) < float(br.uninformed["potential"])
    assert float(br.uninformed["mutual_information"]) > LOG2  # not a solution
    assert float(sol.entropy) == float(br.informed["potential"])
    with pytest.raises(KeyError):
        br["layer 1 lowered"]
    deep = jr.solve(jr.Chain(prior=jr.Normal(), layers=[(jr.Gaussian(1.0), jr.ReLU()), (jr.Gaussian(1.0), jr.Linear(noise=0.01))]))
    assert deep.branches.names == ("uninformed", "informed", "layer 1 lowered", "layer 2 lowered")
    assert np.all(np.asarray(deep.branches.converged))
    np.testing.assert_allclose(np.asarray(deep.branches.potential), float(deep.entropy), rtol=0, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("row", DATA["rows"], ids=lambda r: f"{r['family']}-{r['alpha']}")
def test_table_row_fixed_point(row):
    """The paper's fixed-point scheme agrees with ML-VAMP on every row."""
    a = solve_family(row["family"], row["alpha"])
    b = solve_family(row["family"], row["alpha"], "fixed_point")
    assert bool(b.converged)
    assert abs(float(a.entropy) - float(b.entropy)) < 1e-7
    assert abs(float(a.mmse) - float(b.mmse)) < 1e-8


def test_phase_transitions_notebook_runs():
    from conftest import REPO, execute_notebook

    execute_notebook(REPO / "notebooks" / "phase_transitions.ipynb")
