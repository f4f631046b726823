"""Writes piecewise.json: reference values of the piecewise-affine channels' functions
where the likelihood is sharp (noise after the activation, a known field) and of their
hidden functions with a bias, by adaptive quadrature (tests/_independent.py: SciPy and
NumPy, no jaxreplica code).

Run from the repository root: ``python tests/data/make_piecewise.py [activation ...]``
(about ten minutes an activation; the file is rewritten after each, keeping the rows of
the other activations, so that several processes can share the work). Every value is computed at tolerance ``TOL`` and again at ``CHECK_TOL``; each row's
``converged`` is the largest difference of the two (relative above 1)."""

from __future__ import annotations

import itertools
import json
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _independent import piecewise_functions  # noqa: E402

KINDS = ["relu", "hardtanh", "leaky_relu", "probit"]
TOL, CHECK_TOL = 1e-10, 1e-8
A_GRID = (1e-2, 1.0, 1e2, 1e4, 1e5)
V_FRACTIONS = (1e-6, 1e-3, 0.1, 0.5, 0.999)  # V / rho
RHOS = (1.0, 2.5)
NOISES = (0.0, 1e-5, 1e-2)  # before the activation
AFTER = (1e-5, 1e-3, 1e-1)
# Rows per activation, drawn without replacement from each role's grid (seeded).
COUNTS = {"hidden": 24, "last": 12, "known": 8}
DESCRIPTION = (
    "Piecewise-affine activations (relu, hardtanh with threshold 1, leaky_relu with slope 0.1, probit = sign), "
    "t = phi(z + xi + bias) + eta, xi ~ N(0, noise), eta ~ N(0, noise_after). 'hidden': the reduced hidden free "
    "entropy I_hidden - A E t^2/2, Ahat and Vhat at (A, V, rho) (noise_after 0: none). 'last': I_last and Ahat_last "
    "of a last layer with noise_after > 0 (A unused). 'known': the hidden functions at V = 0, the field z known "
    "(free entropy, Ahat, Vhat). Computed by tests/_independent.piecewise_functions (closed forms given the student's "
    f"field and the observation, adaptive Gauss-Legendre bisection over the observation, SciPy quad_vec over the "
    f"field), tolerance {TOL:g}, sharing no code with the package; 'converged' is the largest difference from the "
    f"same computation at tolerance {CHECK_TOL:g}; 'seconds' the time of the first.")


def grid(role):
    if role == "hidden":
        return list(itertools.product((0.0,) + AFTER, A_GRID, V_FRACTIONS, RHOS, NOISES))
    if role == "last":
        return list(itertools.product(AFTER, (None,), V_FRACTIONS, RHOS, NOISES))
    return list(itertools.product((0.0,) + AFTER, A_GRID, (0.0,), RHOS, NOISES[1:]))


def rows_for(kind, seed):
    rng = np.random.default_rng(seed)
    out = []
    for role, count in COUNTS.items():
        points = grid(role)
        for k, i in enumerate(rng.choice(len(points), count, replace=False)):
            after, A, fraction, rho, noise = points[i]
            bias = round(float(rng.uniform(-0.5, 0.5)), 4) if k % 2 else 0.0
            out.append(dict(activation=kind, role=role, A=A, V=fraction * rho, rho=rho, noise=noise,
                            noise_after=after, bias=bias))
    return out


def compute(row, tol):
    role = "last" if row["role"] == "last" else "hidden"
    return piecewise_functions(row["activation"], role, row["A"], row["V"], row["noise"], row["rho"], row["bias"],
                               row["noise_after"], tol=tol)


def main():
    kinds = sys.argv[1:] or KINDS
    path = HERE / "piecewise.json"
    for kind in kinds:
        rows = []
        for row in rows_for(kind, 100 + KINDS.index(kind)):
            start = time.time()
            values = compute(row, TOL)
            row["seconds"] = round(time.time() - start, 2)
            check = compute(row, CHECK_TOL)
            row["converged"] = max(abs(a - b) / max(1.0, abs(a)) for a, b in zip(values, check))
            names = ("free_entropy", "ahat") if row["role"] == "last" else ("free_entropy", "ahat", "vhat")
            row.update({name: float(v) for name, v in zip(names, values)})
            rows.append(row)
            print(kind, row["role"], row["A"], row["V"], row["noise"], row["noise_after"], f"{row['seconds']} s",
                  flush=True)
        old = json.loads(path.read_text())["rows"] if path.exists() else []
        rows = [r for r in old if r["activation"] != kind] + rows
        rows.sort(key=lambda r: KINDS.index(r["activation"]))
        path.write_text(json.dumps({"description": DESCRIPTION, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
