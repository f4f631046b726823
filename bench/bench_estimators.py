"""Benchmark of the sample-based estimators.

1. Error of the Gaussian-smoothed plug-in ``h(P_n * N)`` against exact answers, as a
   function of the number of samples ``n``, with the fitted log-log slope (expected
   about -1/2): a Gaussian input (``P = N(0, 1)``, ``s2 = 0.5``) and the single tanh
   neuron (``w = 1``, ``b = 0.5``, ``s2 = 0.01``, exact value by quadrature).
2. Wall time and peak memory of the pairwise computations at ``n = 10^4`` samples of
   dimension 1000 (pairwise bounds, k-NN entropy, smoothed plug-in with 10^4 draws).

Prints a table and writes ``bench/results/estimators.json``.  ``--quick`` shrinks
both parts (a smoke run of a few tens of seconds).

    python bench/bench_estimators.py [--quick] [--out bench/results/estimators.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxreplica  # noqa: F401  (float64)
import jaxreplica.estimators as est

HERE = pathlib.Path(__file__).resolve().parent
SYMBOLS = jnp.array([-3.0, -1.0, 1.0, 3.0])


def convergence(ns, repeats, mc_factor):
    neuron_noise = 0.01
    neuron_symbols = jnp.tanh(1.0 * SYMBOLS + 0.5)
    neuron_exact = float(est.discrete_awgn_mutual_information(neuron_symbols, jnp.full(4, 0.25), neuron_noise))
    neuron_exact += 0.5 * np.log(2 * np.pi * np.e * neuron_noise)
    cases = {
        "gaussian_d1_s2_0.5": (lambda key, n: jax.random.normal(key, (n, 1)), 0.5, 0.5 * np.log(2 * np.pi * np.e * 1.5)),
        "neuron_w1_b0.5_s2_0.01": (lambda key, n: jax.random.choice(key, neuron_symbols, (n,)), neuron_noise, neuron_exact),
    }
    out = {}
    for name, (sampler, s2, exact) in cases.items():
        rows = []
        t0 = time.perf_counter()
        for n in ns:
            errs = []
            for r in range(repeats):
                s = sampler(jax.random.PRNGKey(1000 * r + n), n)
                errs.append(float(est.smoothed_entropy(s, s2, jax.random.PRNGKey(r), mc_factor * n)) - exact)
            errs = np.array(errs)
            rows.append({"n": n, "rmse": float(np.sqrt(np.mean(errs**2))), "mean_error": float(errs.mean()),
                         "mean_abs_error": float(np.abs(errs).mean())})
        slope = float(np.polyfit(np.log(ns), np.log([r["rmse"] for r in rows]), 1)[0])
        slope_mae = float(np.polyfit(np.log(ns), np.log([r["mean_abs_error"] for r in rows]), 1)[0])
        out[name] = {"exact": exact, "noise_var": s2, "rows": rows, "loglog_slope_rmse": slope,
                     "loglog_slope_mean_abs": slope_mae, "seconds": time.perf_counter() - t0}
    return out


def timed(fn, repeats=2):
    """(first call incl. compilation, best later call) in seconds."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    best = np.inf
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return first, best


def pairwise_timing(n, d):
    x = jax.random.normal(jax.random.PRNGKey(0), (n, d))
    key = jax.random.PRNGKey(1)
    jobs = {
        "pairwise_entropy_bounds": lambda: est.pairwise_entropy_bounds(x, 1e-2),
        "knn_entropy_k3": lambda: est.knn_entropy(x, k=3),
        "smoothed_entropy_1e4_draws": lambda: est.smoothed_entropy(x, 1e-2, key, 10_000),
    }
    out = {}
    for name, fn in jobs.items():
        first, best = timed(fn)
        out[name] = {"first_call_s": first, "steady_s": best}
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--out", default=str(HERE / "results" / "estimators.json"))
    args = parser.parse_args(argv)

    if args.quick:
        ns, repeats, n_pair, d_pair = [100, 316, 1000, 3162], 6, 2000, 1000
    else:
        ns, repeats, n_pair, d_pair = [100, 316, 1000, 3162, 10000], 12, 10_000, 1000
    mc_factor = 8

    t_start = time.perf_counter()
    conv = convergence(ns, repeats, mc_factor)
    print(f"Smoothed plug-in h(P_n * N): RMSE over {repeats} seeds, {mc_factor} n Monte Carlo draws")
    print(f"{'case':26s} " + " ".join(f"{'n=' + str(n):>9s}" for n in ns) + "   slope")
    for name, res in conv.items():
        print(f"{name:26s} " + " ".join(f"{r['rmse']:9.5f}" for r in res["rows"]) + f"  {res['loglog_slope_rmse']:+.3f}")

    timing = pairwise_timing(n_pair, d_pair)
    print(f"\nPairwise computations, n = {n_pair}, d = {d_pair} (seconds; first call includes compilation)")
    for name, t in timing.items():
        if isinstance(t, dict):
            print(f"  {name:28s} first {t['first_call_s']:7.2f}   steady {t['steady_s']:7.2f}")
    print(f"  peak resident memory {timing['peak_rss_gb']:.2f} GB")
    total = time.perf_counter() - t_start
    print(f"total {total:.1f} s")

    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "jax": jax.__version__, "device": str(jax.devices()[0])},
        "quick": args.quick,
        "convergence": {"ns": ns, "repeats": repeats, "mc_draws_per_sample": mc_factor, "cases": conv},
        "pairwise_timing": {"n": n_pair, "d": d_pair, **timing},
        "total_seconds": total,
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
