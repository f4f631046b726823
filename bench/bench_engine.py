"""Timing of the replica engine against the reference implementation's times.

    python bench/bench_engine.py            # demo chain, cold and warm
    python bench/bench_engine.py --sweep    # plus the Figure-2 sweep (54 entropies), slow

Prints a table and writes bench/results/engine.json. The original implementation's
times and values come from the test data in tests/data/ (measured on a 2-core machine;
such times vary by 30% between machines).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

import jax
import numpy as np

import jaxreplica as jr

HERE = pathlib.Path(__file__).resolve().parent
REF = HERE.parent / "tests" / "data"


def demo_chain(spectra):
    return jr.Chain(
        prior=jr.Normal(),
        layers=[
            (jr.Empirical(eigenvalues=spectra["seed42_1000x1000_a"], alpha=1.0), jr.ReLU(noise=0.0)),
            (jr.Empirical(eigenvalues=spectra["seed42_1000x1000_b"], alpha=1.0), jr.HardTanh(noise=1e-5)),
        ],
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", action="store_true", help="also time the Figure-2 sweep (slow)")
    ap.add_argument("--reference", default=str(REF), help="folder of the reference files (default: tests/data)")
    ap.add_argument("--out", default=str(HERE / "results" / "engine.json"), help="JSON of the results")
    args = ap.parse_args()
    ref_dir = pathlib.Path(args.reference)
    spectra = np.load(ref_dir / "spectra.npz")
    models = {c["name"]: c for c in json.loads((ref_dir / "dnner_models.json").read_text())["cases"]}
    rows = []
    solve = jax.jit(jr.solve)
    chain = demo_chain(spectra)
    t = time.perf_counter()
    sol = solve(chain)
    jax.block_until_ready(sol.entropy)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    sol = solve(chain)
    jax.block_until_ready(sol.entropy)
    warm = time.perf_counter() - t
    ref = models["demo_relu_hardtanh"]
    rows.append({"what": "demo entropy (cold)", "seconds": cold, "reference_seconds": ref["reference_seconds"],
                 "value": float(sol.entropy), "reference_value": ref["entropy"]})
    rows.append({"what": "demo entropy (warm)", "seconds": warm, "reference_seconds": ref["reference_seconds"],
                 "value": float(sol.entropy), "reference_value": ref["entropy"]})
    if args.sweep:
        from jaxreplica.experiments.figure2 import run_sweep

        fig2 = json.loads((ref_dir / "fig2_sweep.json").read_text())
        t = time.perf_counter()
        res = run_sweep(sigmas=fig2["curves"]["linear"]["sigmas"], progress=True)
        total = time.perf_counter() - t
        errors = {name: {key: max(abs(a - b) for a, b in zip(res["curves"][name][key], fig2["curves"][name][key]))
                         for key in ("H1", "H2")} for name in res["curves"]}
        err = max(v for e in errors.values() for v in e.values())
        # The reference's linear H(T_1) is off from the exact log-determinant (its loose
        # theta minimisation; tests/data/README.md): compare ours with the log-determinant too.
        from jaxreplica.experiments.figure2 import demo_spectra

        eig1, _ = demo_spectra()
        exact_h1 = [0.5 * np.mean(np.log1p(s * s * eig1 / fig2["noise_last"])) + 0.5 * np.log(2 * np.pi * np.e * fig2["noise_last"])
                    for s in res["sigmas"]]
        linear_vs_exact = max(abs(a - b) for a, b in zip(res["curves"]["linear"]["H1"], exact_h1))
        print(f"trace and compile {res['compile_seconds']:.1f} s, solves {res['solve_seconds']:.1f} s "
              f"({res['threads']} threads)")
        print("max |ours - reference| per curve:", {k: {q: f"{v:.1e}" for q, v in e.items()} for k, e in errors.items()})
        print(f"linear H(T_1): max |ours - exact log-determinant| = {linear_vs_exact:.1e}")
        rows.append({"what": "Figure-2 sweep, 54 entropies (cold)", "seconds": total,
                     "reference_seconds": fig2["reference_seconds_total"]["earlier_run_other_2core_machine"],
                     "max_abs_error": err, "max_abs_error_per_curve": errors,
                     "linear_H1_vs_exact_logdet": linear_vs_exact,
                     "compile_seconds": res["compile_seconds"], "solve_seconds": res["solve_seconds"],
                     "threads": res["threads"], "converged": all(all(c) for v in res["curves"].values() for c in v["converged"])})
    print(f"{'what':<40} {'ours (s)':>10} {'reference (s)':>14} {'speed-up':>9}")
    for r in rows:
        print(f"{r['what']:<40} {r['seconds']:10.2f} {r['reference_seconds']:14.2f} {r['reference_seconds'] / r['seconds']:9.2f}")
    dev = jax.devices()[0]
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {dev.platform} {getattr(dev, 'device_kind', '')}",
           "jax": jax.__version__, "rows": rows}
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"machine: {out['machine']}; wrote {path}")


if __name__ == "__main__":
    main()
