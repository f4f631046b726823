"""Cost of differentiating an entropy: ``jr.solve(..., gradient="implicit")`` against
``gradient="envelope"``.

For each chain, ``jax.jit(jax.grad(lambda s: jr.solve(chain(s), gradient=g).mutual_information))``
is timed in a fresh process with the persistent compilation cache switched off: the first
call (tracing, compiling and one solve) and the median of warm calls. The derivative is
compared with central differences of the solved value (step ``1e-5``).

    python bench/bench_gradients.py            # every chain
    python bench/bench_gradients.py --quick    # the one-layer chain only

Prints a table and writes ``bench/results/gradients.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

from _results import machine, write

HERE = pathlib.Path(__file__).resolve().parent
GRADIENTS = ("implicit", "envelope")
WARM_RUNS = 7
STEP = 1e-5


def chains():
    """name -> (chain of the scale ``s``, the scale differentiated at)."""
    import jaxreplica as jr
    from jaxreplica.experiments.figure2 import demo_spectra

    eig1, eig2 = demo_spectra(1000, 42)
    return {
        "binary input, sign channel, alpha 1.2": (
            lambda s: jr.Chain(prior=jr.Bimodal(), layers=[(jr.Gaussian(alpha=s), jr.Probit(noise=1e-3))]), 1.2),
        "two layers sign -> hardtanh, noise 0.02 / 0.01 after": (
            lambda s: jr.Chain(prior=jr.Normal(), layers=[
                (jr.Gaussian(alpha=1.0), jr.Probit(noise=0.0, noise_after=0.02)),
                (jr.Gaussian(alpha=0.8, scale=s), jr.HardTanh(noise=0.0, noise_after=0.01))]), 1.5),
        "Figure-2 two-layer hardtanh, width 1000": (
            lambda s: jr.Chain(prior=jr.Normal(), layers=[
                (jr.Empirical(eigenvalues=s**2 * eig1, alpha=1.0), jr.HardTanh(noise=0.0)),
                (jr.Empirical(eigenvalues=s**2 * eig2, alpha=1.0), jr.HardTanh(noise=1e-5))]), 1.0),
    }


def child(name: str, gradient: str) -> dict:
    import jax
    import numpy as np

    import jaxreplica as jr

    chain, s = chains()[name]
    value = jax.jit(lambda s: jr.solve(chain(s)).mutual_information)
    grad = jax.jit(jax.grad(lambda s: jr.solve(chain(s), gradient=gradient).mutual_information))
    start = time.perf_counter()
    first = float(grad(s))
    first_seconds = time.perf_counter() - start
    runs = []
    for _ in range(WARM_RUNS):
        start = time.perf_counter()
        float(grad(s))
        runs.append(time.perf_counter() - start)
    fd = (float(value(s + STEP)) - float(value(s - STEP))) / (2 * STEP)
    return {"derivative": first, "differences": fd, "first_seconds": first_seconds,
            "warm_seconds": float(np.median(runs)), "converged": bool(jr.solve(chain(s)).converged)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the one-layer chain only")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--out", type=pathlib.Path, default=HERE / "results" / "gradients.json")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    names = list(chains())[:1] if args.quick else list(chains())
    env = dict(os.environ, JAXREPLICA_CACHE_DIR="off")
    rows = {}
    for name in names:
        rows[name] = {}
        for gradient in GRADIENTS:
            out = subprocess.run([sys.executable, __file__, "--child", name, gradient], env=env,
                                 capture_output=True, text=True, check=True)
            rows[name][gradient] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{'chain':<55} {'gradient':<9} {'first s':>8} {'warm s':>8} {'derivative':>20} {'vs differences':>15}")
    for name, row in rows.items():
        for gradient, r in row.items():
            print(f"{name:<55} {gradient:<9} {r['first_seconds']:8.2f} {r['warm_seconds']:8.3f} "
                  f"{r['derivative']:20.12e} {abs(r['derivative'] - r['differences']):15.1e}")
        gap = abs(row["implicit"]["derivative"] - row["envelope"]["derivative"])
        print(f"{'':<55} implicit - envelope: {gap:.1e}")
    write(args.out, {"machine": machine(), "step": STEP, "warm_runs": WARM_RUNS, "chains": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
