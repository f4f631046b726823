"""Writes smooth.json: reference values of the smooth channels' hidden-layer functions,
by adaptive quadrature (tests/_independent.py: SciPy and NumPy, no jaxreplica code).

Run from the repository root: ``python tests/data/make_smooth.py`` (one process; the
file is rewritten after every value, so an interrupted run keeps what it finished).
Every value is computed at tolerance ``TOL``; a second pass recomputes each at
``CHECK_TOL`` and records per row ``converged``, the largest difference of the two (relative
above 1). Rows already in the file are kept (a rerun resumes)."""

from __future__ import annotations

import json
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _independent import smooth_conditional_entropy, smooth_hidden  # noqa: E402

KINDS = ["tanh", "sigmoid", "softplus", "elu", "erf", "arctan"]
# (A, V, noise, rho, bias): A from 1e-2 to 1e5, V from 1e-6 to rho, noise 1e-5 to 1e-1.
POINTS = [
    (10.0, 1.0, 1e-4, 1.0, -0.2),
    (1e-2, 0.5, 1e-1, 1.0, 0.0),
    (1e3, 1e-2, 1e-3, 2.5, 0.3),
    (1e5, 1e-6, 1e-5, 1.0, 0.0),
]
# (noise, noise_after, rho) of one layer with noise after the activation.
NOISE_AFTER = [(1e-3, 1e-2, 0.7)]
TOL, CHECK_TOL = 1e-10, 1e-8
DESCRIPTION = (
    "Smooth activations (tanh, logistic sigmoid, softplus, ELU with alpha 1, erf, and arctan as a user's "
    "function), t = phi(z + xi + bias). 'hidden': the reduced hidden free entropy I_hidden - A E t^2/2, Ahat and "
    "Vhat at (A, V, rho) with noise variance 'noise' before phi. 'noise_after': E_z H(phi(z + xi) + eta | z), "
    "z ~ N(0, rho), xi ~ N(0, noise), eta ~ N(0, noise_after). Nested adaptive quadrature (tests/_independent.py, "
    f"SciPy quad_vec outside, adaptive Gauss-Legendre bisection inside), tolerance {TOL:g}, sharing no code with "
    f"the package; 'converged' is the largest difference from the same computation at tolerance {CHECK_TOL:g}; "
    "'seconds' the time of the first.")


def timed(fn, *args, **kw):
    start = time.time()
    value = fn(*args, **kw)
    return value, time.time() - start


def _diff(a, b):
    return max(abs(float(x) - float(y)) / max(1.0, abs(float(y))) for x, y in zip(a, b))


def main():
    path = HERE / "smooth.json"
    out = json.loads(path.read_text()) if path.exists() else {"hidden": [], "noise_after": []}
    out["description"] = DESCRIPTION
    after_rows = {(r["activation"], r["noise"], r["noise_after"], r["rho"]): r for r in out["noise_after"]}
    hidden_rows = {(r["activation"], r["A"], r["V"], r["noise"], r["rho"], r["bias"]): r for r in out["hidden"]}

    def save():
        out["noise_after"], out["hidden"] = list(after_rows.values()), list(hidden_rows.values())
        path.write_text(json.dumps(out, indent=1) + "\n")

    for kind in KINDS:
        for noise, after, rho in NOISE_AFTER:
            if (kind, noise, after, rho) not in after_rows:
                value, sec = timed(smooth_conditional_entropy, kind, noise, after, rho, tol=TOL)
                after_rows[kind, noise, after, rho] = dict(activation=kind, noise=noise, noise_after=after, rho=rho,
                                                           conditional_entropy=value, seconds=sec)
                print("noise_after", kind, noise, after, rho, f"{sec:.1f} s", flush=True)
                save()
    for point in POINTS:
        for kind in KINDS:
            if (kind, *point) not in hidden_rows:
                (free, ahat, vhat), sec = timed(smooth_hidden, kind, *point, tol=TOL)
                A, V, noise, rho, bias = point
                hidden_rows[(kind, *point)] = dict(activation=kind, A=A, V=V, noise=noise, rho=rho, bias=bias,
                                                   free_entropy=float(free), ahat=float(ahat), vhat=float(vhat),
                                                   seconds=sec)
                print("hidden", kind, *point, f"{sec:.1f} s", flush=True)
                save()
    # The second pass: the same values at CHECK_TOL (the largest A first).
    for (kind, *point), row in sorted(hidden_rows.items(), key=lambda item: -item[0][1]):
        if "converged" not in row:
            check = smooth_hidden(kind, *point, tol=CHECK_TOL)
            row["converged"] = _diff([row["free_entropy"], row["ahat"], row["vhat"]], check)
            print("check hidden", kind, *point, f"{row['converged']:.1e}", flush=True)
            save()
    for (kind, noise, after, rho), row in after_rows.items():
        if "converged" not in row:
            check = smooth_conditional_entropy(kind, noise, after, rho, tol=CHECK_TOL)
            row["converged"] = _diff([row["conditional_entropy"]], [check])
            print("check noise_after", kind, f"{row['converged']:.1e}", flush=True)
            save()

if __name__ == "__main__":
    main()
