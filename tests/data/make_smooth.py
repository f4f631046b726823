"""Writes smooth.json: reference values of the smooth channels' hidden-layer functions,
by SciPy adaptive quadrature (tests/_independent.py, no jaxreplica code).

Run from the repository root: ``python tests/data/make_smooth.py`` (about an hour
on two cores: three nested adaptive integrals per value)."""

from __future__ import annotations

import json
import multiprocessing
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _independent import smooth_conditional_entropy, smooth_hidden  # noqa: E402

KINDS = ["tanh", "sigmoid", "softplus", "elu", "erf", "arctan"]
# (A, V, noise, rho, bias): A from 1e-2 to 1e5, V from 1e-6 to rho, noise 1e-5 to 1e-1.
POINTS = [
    (1e-2, 0.5, 1e-1, 1.0, 0.0),
    (1e3, 1e-2, 1e-3, 2.5, 0.3),
    (1e5, 1e-6, 1e-5, 1.0, 0.0),
    (10.0, 1.0, 1e-4, 1.0, -0.2),
]
# (noise, noise_after, rho) of one layer with noise after the activation.
NOISE_AFTER = [(1e-3, 1e-2, 0.7)]


def hidden_row(args):
    kind, (A, V, noise, rho, bias) = args
    start = time.time()
    free, ahat, vhat = smooth_hidden(kind, A, V, noise, rho, bias)
    print(kind, A, V, noise, f"{time.time() - start:.0f} s", flush=True)
    return dict(activation=kind, A=A, V=V, noise=noise, rho=rho, bias=bias, free_entropy=free, ahat=ahat, vhat=vhat)


def noise_after_row(args):
    kind, (noise, after, rho) = args
    value = smooth_conditional_entropy(kind, noise, after, rho)
    print(kind, noise, after, flush=True)
    return dict(activation=kind, noise=noise, noise_after=after, rho=rho, conditional_entropy=value)


def main():
    with multiprocessing.Pool(2) as pool:
        after = pool.map(noise_after_row, [(k, p) for k in KINDS for p in NOISE_AFTER], chunksize=1)
        hidden = pool.map(hidden_row, [(k, p) for p in POINTS for k in KINDS], chunksize=1)
    out = {
        "description": "Smooth activations (tanh, logistic sigmoid, softplus, ELU with alpha 1, erf, and arctan "
                       "as a user's function), t = phi(z + xi + bias). 'hidden': the reduced hidden free entropy "
                       "I_hidden - A E t^2/2, Ahat and Vhat at (A, V, rho) with noise variance 'noise' before phi. "
                       "'noise_after': E_z H(phi(z + xi) + eta | z), z ~ N(0, rho), xi ~ N(0, noise), "
                       "eta ~ N(0, noise_after). SciPy adaptive quadrature (tests/_independent.py, "
                       "tolerances 1e-11 to 1e-13), sharing no code with the package.",
        "hidden": hidden,
        "noise_after": after,
    }
    (HERE / "smooth.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
