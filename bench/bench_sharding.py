"""Timing of a sharded sigma sweep on 1, 2 and 4 devices.

    python bench/bench_sharding.py                          # 1024 sigmas, width 1000 (slow)
    python bench/bench_sharding.py --points 16 --width 200  # a few minutes on a 2-core CPU

The sweep is the paper's Figure-2 one (two layers, the same activation on both,
``sigma`` log-spaced in [0.1, 10], noise 1e-5 on the last layer), for ReLU and
hardtanh: ``points`` chains stacked with ``jaxreplica.batched.stack_chains`` and
solved by ``solve_layers_batched`` over all devices. Each device count runs in its own
subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (on a CPU the
"devices" share its cores; on a machine with N accelerators pass ``--real-devices``
to leave ``XLA_FLAGS`` alone and use the first N of them).

Per activation and device count: ``cold`` (first call: compilation + run), ``warm``
(second call, run only), and the largest difference of the entropies from the
1-device run. Prints a table and writes bench/results/sharding.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent


def worker(args) -> dict:
    import jax
    import numpy as np

    import jaxreplica  # noqa: F401  (float64)
    from jaxreplica.batched import batch_mesh, describe_mesh, solve_layers_batched, stack_chains
    from jaxreplica.experiments.figure2 import demo_spectra, figure2_chain

    mesh = batch_mesh(args.n_devices)
    sigmas = np.logspace(-1, 1, args.points)
    eig1, eig2 = demo_spectra(args.width, 42)
    out = {"devices": describe_mesh(mesh), "jax": jax.__version__, "curves": {}}
    for name in args.activations.split(","):
        chains = stack_chains([figure2_chain(name, eig1, eig2, float(s), 1e-5) for s in sigmas])
        t = time.perf_counter()
        lay = solve_layers_batched(chains, mesh=mesh)
        jax.block_until_ready(lay.entropy)
        cold = time.perf_counter() - t
        warm = None
        if not args.no_warm:
            t = time.perf_counter()
            lay = solve_layers_batched(chains, mesh=mesh)
            jax.block_until_ready(lay.entropy)
            warm = time.perf_counter() - t
        out["curves"][name] = {
            "cold_seconds": cold, "warm_seconds": warm,
            "entropy": np.asarray(lay.entropy).tolist(),
            "converged": int(np.sum(np.all(np.asarray(lay.converged), axis=1))),
            "max_iterations": int(np.max(np.asarray(lay.iterations))),
        }
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1024, help="number of sigmas (default 1024)")
    ap.add_argument("--width", type=int, default=1000, help="width of both layers (default 1000)")
    ap.add_argument("--devices", default="1,2,4", help="device counts to time (default 1,2,4)")
    ap.add_argument("--activations", default="relu,hardtanh")
    ap.add_argument("--no-warm", action="store_true", help="time the first (compiling) call only")
    ap.add_argument("--real-devices", action="store_true", help="use the machine's own devices, no XLA_FLAGS")
    ap.add_argument("--out", default=str(HERE / "results" / "sharding.json"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n-devices", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.points < 1 or args.width < 1:
        raise SystemExit("--points and --width must be positive")
    counts = [int(c) for c in args.devices.split(",") if c.strip()]
    runs = {}
    for n in counts:
        env = dict(os.environ)
        if not args.real_devices:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}").strip()
            env.setdefault("JAX_PLATFORMS", "cpu")
        cmd = [sys.executable, __file__, "--worker", "--n-devices", str(n), "--points", str(args.points),
               "--width", str(args.width), "--activations", args.activations] + (["--no-warm"] if args.no_warm else [])
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"worker with {n} devices failed:\n{proc.stderr[-4000:]}")
        runs[n] = json.loads(proc.stdout.strip().splitlines()[-1])
        runs[n]["process_seconds"] = time.perf_counter() - t
        print(f"{n} device(s): {runs[n]['process_seconds']:.1f} s", flush=True)
        _write(args, counts, runs)


def _write(args, counts, runs):
    """Table and JSON of the runs so far (written after each device count)."""
    import numpy as np

    counts = [n for n in counts if n in runs]
    base = runs[counts[0]]
    rows = []
    for name in args.activations.split(","):
        for n in counts:
            c = runs[n]["curves"][name]
            diff = float(np.max(np.abs(np.asarray(c["entropy"]) - np.asarray(base["curves"][name]["entropy"]))))
            w0 = base["curves"][name]["warm_seconds"]
            rows.append({"activation": name, "devices": n, "cold_seconds": c["cold_seconds"],
                         "warm_seconds": c["warm_seconds"],
                         "warm_speedup": (w0 / c["warm_seconds"]) if c["warm_seconds"] else None,
                         "converged": c["converged"], "points": args.points, "max_iterations": c["max_iterations"],
                         "max_abs_diff_vs_first": diff})
    print(f"\n{'activation':<10} {'devices':>7} {'cold s':>9} {'warm s':>9} {'speedup':>8} {'conv':>9} {'|dH| vs 1':>10}")
    for r in rows:
        warm = f"{r['warm_seconds']:9.2f}" if r["warm_seconds"] is not None else f"{'-':>9}"
        sp = f"{r['warm_speedup']:8.2f}" if r["warm_speedup"] is not None else f"{'-':>8}"
        print(f"{r['activation']:<10} {r['devices']:>7} {r['cold_seconds']:9.2f} {warm} {sp} "
              f"{r['converged']:>4}/{r['points']:<4} {r['max_abs_diff_vs_first']:10.2e}")
    result = {
        "what": "Figure-2 sigma sweep, solve_layers_batched over N devices (cold: compile + run; warm: run)",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "forced_host_devices": not args.real_devices},
        "jax": base["jax"],
        "command": " ".join([os.path.relpath(__file__, HERE.parent)] + sys.argv[1:]),
        "points": args.points, "width": args.width, "rows": rows,
        "devices": {str(n): runs[n]["devices"] for n in counts},
        "process_seconds": {str(n): runs[n]["process_seconds"] for n in counts},
        "complete": len(counts) == len(args.devices.split(",")),
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
