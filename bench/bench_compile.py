"""Where a first process's time goes: compiling the six Figure-2 chain structures.

    python bench/bench_compile.py            # 9 weight scales, as bench_library.py
    python bench/bench_compile.py --quick    # 3 weight scales

For each activation (linear, hardtanh, ReLU) and depth (one and two layers of the demo
weights), the user code of ``bench_library.py``, ``jax.vmap(lambda s: jr.solve(chain(s)).entropy)``
over the weight scales, is compiled three ways, each structure in a fresh process:

* **store**: called eagerly with an empty cache directory, as a first process does: the
  program is exported (traced and lowered), written to the store and compiled; every
  number of the chain is an argument of the program, so that chains differing only in
  values share it. Timed as one call (compiling and solving).
* **jit, numbers as arguments**: ``jax.jit`` of the same function of the weight scale,
  the noises and the spectra's aspect ratio (the numbers the store takes as arguments),
  with the cache off; tracing, lowering and XLA's compilation timed apart.
* **jit, numbers folded**: ``jax.jit`` of the user code as written (only the weight
  scale traced: XLA folds the other numbers in as constants), with the cache off.

The sum over the six structures is set beside the time that a first process may take to
be 20 times as fast as the original implementation on these entropies (265 s recorded on
a 2-core machine, ``tests/data``). Prints a table and writes ``bench/results/compile.json``.
"""

from __future__ import annotations

import argparse
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
STRUCTURES = [(a, d) for a in ("linear", "hardtanh", "relu") for d in (1, 2)]
CHANNELS = {"linear": "Linear", "hardtanh": "HardTanh", "relu": "ReLU"}
WAYS = ("store", "jit, numbers as arguments", "jit, numbers folded")
TARGET_SPEEDUP = 20.0


def child(activation: str, depth: int, way: str, sigmas: int) -> dict:
    """One structure compiled one way, in this (fresh) process."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxreplica as jr
    from jaxreplica.experiments.figure2 import DEFAULT_SIGMAS, demo_spectra

    spectra = demo_spectra(1000, 42)[:depth]
    sig = jnp.asarray(np.asarray(DEFAULT_SIGMAS)[:: 9 // sigmas][:sigmas])
    channel = getattr(jr, CHANNELS[activation])

    def chain(s, hidden_noise=0.0, noise=1e-5, alpha=1.0):
        layers = [(jr.Empirical(eigenvalues=s**2 * e, alpha=alpha), channel(noise=hidden_noise)) for e in spectra[:-1]]
        layers.append((jr.Empirical(eigenvalues=s**2 * spectra[-1], alpha=alpha), channel(noise=noise)))
        return jr.Chain(prior=jr.Normal(), layers=layers)

    if way == "store":
        start = time.perf_counter()
        values = jax.vmap(lambda s: jr.solve(chain(s)).entropy)(sig).block_until_ready()
        return {"seconds": time.perf_counter() - start, "values": np.asarray(values).tolist()}
    if way == "jit, numbers folded":
        fn, args = jax.jit(jax.vmap(lambda s: jr.solve(chain(s)).entropy)), (sig,)
    else:
        fn = jax.jit(jax.vmap(lambda s, h, n, a: jr.solve(chain(s, h, n, a)).entropy, in_axes=(0, None, None, None)))
        args = (sig, jnp.float64(0.0), jnp.float64(1e-5), jnp.float64(1.0))
    t0 = time.perf_counter()
    traced = fn.trace(*args)
    t1 = time.perf_counter()
    lowered = traced.lower()
    t2 = time.perf_counter()
    compiled = lowered.compile()
    t3 = time.perf_counter()
    values = compiled(*args).block_until_ready()
    t4 = time.perf_counter()
    return {"trace_seconds": t1 - t0, "lower_seconds": t2 - t1, "compile_seconds": t3 - t2, "run_seconds": t4 - t3,
            "seconds": t4 - t0, "hlo_lines": lowered.as_text().count(" = "), "values": np.asarray(values).tolist()}


def run_child(activation: str, depth: int, way: str, sigmas: int) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, JAXREPLICA_CACHE_DIR=cache if way == "store" else "off")
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        command = [sys.executable, __file__, "--child", activation, str(depth), way, "--sigmas", str(sigmas)]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 weight scales instead of 9")
    p.add_argument("--sigmas", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=pathlib.Path, default=HERE / "results" / "compile.json")
    args = p.parse_args(argv)
    sigmas = args.sigmas or (3 if args.quick else 9)
    if args.child:
        activation, depth, way = args.child
        print(json.dumps(child(activation, int(depth), way, sigmas)))
        return 0
    reference = json.loads((DATA / "fig2_sweep.json").read_text())["reference_seconds_total"]
    original = reference["earlier_run_other_2core_machine"] * 6 * sigmas / 54  # these entropies, scaled
    budget = original / TARGET_SPEEDUP
    runs = {f"{a}/{d}": {way: run_child(a, d, way, sigmas) for way in WAYS} for a, d in STRUCTURES}
    print(f"{len(STRUCTURES)} structures x {sigmas} weight scales, jax.vmap of jr.solve, "
          "each compiled in a fresh process")
    print(f"{'structure':<12} {'store s':>8} {'jit, numbers as arguments: s (compile s)':>42} "
          f"{'jit, numbers folded: s (compile s, HLO lines)':>48}")
    for name, r in runs.items():
        a, f = r["jit, numbers as arguments"], r["jit, numbers folded"]
        print(f"{name:<12} {r['store']['seconds']:8.2f} {a['seconds']:28.2f} ({a['compile_seconds']:5.2f})      "
              f"{f['seconds']:25.2f} ({f['compile_seconds']:5.2f}, {f['hlo_lines']:5d})")
    totals = {way: sum(r[way]["seconds"] for r in runs.values()) for way in WAYS}
    compile_totals = {way: sum(r[way]["compile_seconds"] for r in runs.values()) for way in WAYS[1:]}
    print(f"{'total':<12} {totals['store']:8.2f} {totals[WAYS[1]]:28.2f} ({compile_totals[WAYS[1]]:5.2f})      "
          f"{totals[WAYS[2]]:25.2f} ({compile_totals[WAYS[2]]:5.2f})")
    print(f"a first process {TARGET_SPEEDUP:.0f}x the original ({original:.0f} s) may take {budget:.2f} s for all of it")
    differences = {name: max(abs(x - y) for way in WAYS[1:]
                              for x, y in zip(r["store"]["values"], r[way]["values"]))
                   for name, r in runs.items()}
    print(f"largest difference of the values between the ways: {max(differences.values()):.1e}")
    write(args.out, {"machine": machine(), "sigmas": sigmas, "budget_seconds": budget, "runs": runs,
                     "totals": totals, "compile_totals": compile_totals, "differences": differences})
    return 0


if __name__ == "__main__":
    sys.exit(main())
