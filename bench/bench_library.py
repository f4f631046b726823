"""The library path as users write it: the Figure-2 entropies from ``jax.vmap`` of ``jr.solve``.

    python bench/bench_library.py              # cold (empty cache), cold (filled cache), warm
    python bench/bench_library.py --quick      # 3 sigmas instead of 9 (a smoke run)
    python bench/bench_library.py --xla-flags=--xla_cpu_use_fusion_emitters=false --out F
                                               # also first and second processes under these flags

For each activation (linear, hardtanh, ReLU) and depth (one and two layers of the
paper's 1000-wide demo weights), ``jax.vmap(lambda s: jr.solve(chain(s)).entropy)`` over
the 9 weight scales of the sweep, timed

* in a first process with an empty persistent compilation cache ("cold"),
* in a second process that finds the first one's compiled programs on disk ("cached"),
* in the second process again, the programs loaded ("warm"),

plus the demo chain (1000-wide ReLU -> hardtanh) solved warm with ``jr.solve`` and with
``jax.jit(jr.solve)``, and, in a third process with an empty cache, the same loop with
the activation as data (every channel a ``jr.Switched`` of the three, so that one program
per depth serves them all). The original implementation's times are the ones recorded in
``tests/data`` on a 2-core machine (its demo chain 4.07 s, the 54-entropy Figure-2 sweep
265 s; it is not installed here to be timed in the same run). Prints a table and writes ``bench/results/library.json``; every value computed is
recorded, and the cold, cached and warm values are compared with each other.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from _results import machine, write

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data"
ACTIVATIONS = ("linear", "hardtanh", "relu")
CHANNELS = {"linear": "Linear", "hardtanh": "HardTanh", "relu": "ReLU"}
DEMO_RUNS = 60  # warm demo solves of each kind, interleaved (median and minimum; single runs vary by 30%)


def child(sigmas: int, switched: bool = False) -> dict:
    """Runs in a fresh process: imports, then the user code twice (first and warm); with
    ``switched``, every channel a ``jr.Switched`` of the three activations."""
    t_import = time.perf_counter()
    import jax
    import numpy as np

    import jaxreplica as jr
    from jaxreplica.experiments.figure2 import DEFAULT_SIGMAS, demo_spectra

    imported = time.perf_counter() - t_import
    eig1, eig2 = demo_spectra(1000, 42)
    sig = jax.numpy.asarray(np.asarray(DEFAULT_SIGMAS)[:: 9 // sigmas][:sigmas])

    def chain(activation, depth, s):
        spectra = (eig1, eig2)[:depth]
        channel = getattr(jr, CHANNELS[activation])
        if switched:
            options = tuple(getattr(jr, CHANNELS[a])() for a in ACTIVATIONS)
            channel = functools.partial(jr.Switched, options, ACTIVATIONS.index(activation))
        layers = [(jr.Empirical(eigenvalues=s**2 * e, alpha=1.0), channel(noise=0.0)) for e in spectra[:-1]]
        layers.append((jr.Empirical(eigenvalues=s**2 * spectra[-1], alpha=1.0), channel(noise=1e-5)))
        return jr.Chain(prior=jr.Normal(), layers=layers)

    def sweep():
        out, times = {}, {}
        for activation in ACTIVATIONS:
            for depth in (1, 2):
                start = time.perf_counter()
                values = jax.vmap(lambda s: jr.solve(chain(activation, depth, s)).entropy)(sig)
                out[f"{activation}/{depth}"] = np.asarray(jax.block_until_ready(values)).tolist()
                times[f"{activation}/{depth}"] = time.perf_counter() - start
        return out, times

    start = time.perf_counter()
    first, first_times = sweep()
    first_seconds = time.perf_counter() - start
    start = time.perf_counter()
    warm, warm_times = sweep()
    warm_seconds = time.perf_counter() - start

    spectra = np.load(DATA / "spectra.npz")
    demo = jr.Chain(prior=jr.Normal(), layers=[
        (jr.Empirical(eigenvalues=spectra["seed42_1000x1000_a"], alpha=1.0), jr.ReLU(noise=0.0)),
        (jr.Empirical(eigenvalues=spectra["seed42_1000x1000_b"], alpha=1.0), jr.HardTanh(noise=1e-5))])
    jitted = jax.jit(jr.solve)
    calls = {"solve": jr.solve, "jit(solve)": jitted}
    for fn in calls.values():
        fn(demo).entropy.block_until_ready()  # compile (or load)
    # Interleaved (solve, jit(solve), solve, ...): a shared machine's drift then reaches both.
    runs, values = {name: [] for name in calls}, {}
    for _ in range(DEMO_RUNS):
        for name, fn in calls.items():
            start = time.perf_counter()
            values[name] = float(fn(demo).entropy.block_until_ready())
            runs[name].append(time.perf_counter() - start)
    demo_times = {name: {"median": float(np.median(r)), "min": float(np.min(r)), "value": values[name]}
                  for name, r in runs.items()}
    return {"import_seconds": imported, "first_seconds": first_seconds, "warm_seconds": warm_seconds,
            "first_times": first_times, "warm_times": warm_times, "first": first, "warm": warm, "demo": demo_times,
            "sigmas": np.asarray(sig).tolist(), "cache_dir": str(jr.CACHE_DIR)}


def reference_seconds() -> tuple[float, float]:
    """The original implementation's recorded times on a 2-core machine: its demo chain and
    the 54-entropy Figure-2 sweep (tests/data)."""
    models = json.loads((DATA / "dnner_models.json").read_text())["cases"]
    demo = next(c["reference_seconds"] for c in models if c["name"] == "demo_relu_hardtanh")
    sweep = json.loads((DATA / "fig2_sweep.json").read_text())["reference_seconds_total"]
    return demo, sweep["earlier_run_other_2core_machine"]


def run_child(cache: str, sigmas: int, switched: bool = False, xla_flags: str | None = None) -> dict:
    env = dict(os.environ, JAXREPLICA_CACHE_DIR=cache)
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", "--sigmas", str(sigmas)] + ["--switched"] * switched,
                         env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - start
    return result


def max_difference(a: dict, b: dict) -> float:
    return max(abs(x - y) for key in a for x, y in zip(a[key], b[key]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 weight scales instead of 9")
    p.add_argument("--sigmas", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--switched", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--xla-flags", default=None, metavar="FLAGS",
                   help="also run a first and a second process with XLA_FLAGS=FLAGS (an experiment on the "
                        "compiler's options: the table and the JSON hold both)")
    p.add_argument("--out", type=pathlib.Path, default=HERE / "results" / "library.json")
    args = p.parse_args(argv)
    sigmas = args.sigmas or (3 if args.quick else 9)
    if args.child:
        print(json.dumps(child(sigmas, args.switched)))
        return 0
    with tempfile.TemporaryDirectory() as cache:
        cold = run_child(cache, sigmas)
        cached = run_child(cache, sigmas)
    with tempfile.TemporaryDirectory() as cache:
        switched = run_child(cache, sigmas, switched=True)
    flagged = {}
    if args.xla_flags is not None:
        with tempfile.TemporaryDirectory() as cache:
            flagged = {"cold": run_child(cache, sigmas, xla_flags=args.xla_flags),
                       "cached": run_child(cache, sigmas, xla_flags=args.xla_flags)}
    ref_demo, ref_sweep = reference_seconds()
    ref_sweep *= 6 * sigmas / 54
    rows = [
        ("Figure-2 entropies, user code, first process (empty cache)", cold["first_seconds"]),
        ("same, second process (persistent cache filled)", cached["first_seconds"]),
        ("same, warm (second call in a process)", cached["warm_seconds"]),
        ("activations as data (jr.Switched), first process (empty cache)", switched["first_seconds"]),
        ("same, warm", switched["warm_seconds"]),
    ]
    if flagged:
        rows += [("with XLA_FLAGS: first process (empty cache)", flagged["cold"]["first_seconds"]),
                 ("with XLA_FLAGS: second process (cache filled)", flagged["cached"]["first_seconds"]),
                 ("with XLA_FLAGS: warm", flagged["cached"]["warm_seconds"])]
    print(f"{6 * sigmas} entropies: 3 activations x 2 depths x {sigmas} weight scales, jax.vmap of jr.solve")
    print(f"original implementation (recorded): demo chain {ref_demo:.2f} s; the same entropies {ref_sweep:.0f} s")
    print(f"{'what':<62} {'seconds':>9} {'vs original':>12}")
    for name, seconds in rows:
        print(f"{name:<62} {seconds:9.2f} {ref_sweep / seconds:11.0f}x")
    for prefix, run in [("", cached)] + ([("with XLA_FLAGS: ", flagged["cached"])] if flagged else []):
        for name in ("solve", "jit(solve)"):
            d = run["demo"][name]
            label = f"{prefix}demo chain warm, {name}, median of {DEMO_RUNS} (min {d['min']:.4f})"
            print(f"{label:<62} {d['median']:9.4f} {ref_demo / d['median']:11.0f}x")
    if flagged:
        print(f"XLA_FLAGS={args.xla_flags}")
    print(f"process wall time: cold {cold['process_seconds']:.1f} s, cached {cached['process_seconds']:.1f} s "
          f"(imports {cold['import_seconds']:.1f} s)")
    diffs = {"cold_vs_cached": max_difference(cold["first"], cached["first"]),
             "cached_vs_warm": max_difference(cached["first"], cached["warm"]),
             "cold_vs_switched": max_difference(cold["first"], switched["first"])}
    if flagged:
        diffs["cold_vs_flagged"] = max_difference(cold["first"], flagged["cold"]["first"])
    print(f"largest difference between runs: {max(diffs.values()):.1e}")
    result = {"machine": machine(),
              "sigmas": cold["sigmas"], "reference": {"demo_seconds": ref_demo, "sweep_seconds": ref_sweep},
              "cold": cold, "cached": cached, "switched": switched, "differences": diffs,
              "xla_flags_experiment": {"flags": args.xla_flags, **flagged} if flagged else None,
              "speedups": {"cold": ref_sweep / cold["first_seconds"], "cached": ref_sweep / cached["first_seconds"],
                           "warm": ref_sweep / cached["warm_seconds"],
                           "switched_cold": ref_sweep / switched["first_seconds"],
                           "switched_warm": ref_sweep / switched["warm_seconds"]}}
    write(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
