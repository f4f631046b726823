"""Timing of the replica engine against the reference implementation's times.

    python bench/bench_engine.py            # demo chain, cold and warm
    python bench/bench_engine.py --sweep    # plus the Figure-2 sweep (54 entropies), slow

Prints a table and writes bench/results/engine.json. Reference times come from
../shared/reference/ (a 2-core machine; they vary by 30% between such machines).
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
REF = HERE.parent.parent / "shared" / "reference"


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
    ap.add_argument("--reference", default=str(REF), help="folder of the reference files")
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
        from jaxreplica.sweeps import run_sweep

        fig2 = json.loads((ref_dir / "fig2_sweep.json").read_text())
        t = time.perf_counter()
        res = run_sweep(sigmas=fig2["curves"]["linear"]["sigmas"], progress=True)
        total = time.perf_counter() - t
        err = max(abs(a - b) for name in res["curves"] for key in ("H1", "H2")
                  for a, b in zip(res["curves"][name][key], fig2["curves"][name][key]))
        print("per activation (s):", {k: round(v["seconds"], 1) for k, v in res["curves"].items()}, "max |error|:", err)
        rows.append({"what": "Figure-2 sweep, 54 entropies (cold)", "seconds": total,
                     "reference_seconds": fig2["reference_seconds_total"]["earlier_run_other_2core_machine"],
                     "max_abs_error": err})
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
