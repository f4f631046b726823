"""``jaxreplica sweep``: the paper's Figure-2 replica curves on embedded defaults."""

from __future__ import annotations

import csv
import json
import pathlib
import time

import jax
import matplotlib

from jaxreplica.batched import parse_devices
from jaxreplica.experiments.figure2 import DEFAULT_SIGMAS, run_sweep
from jaxreplica.experiments.plots import plot_sweep

HELP = "Replica H(T_1), H(T_2) of two wide layers against the weight scale (the paper's Figure 2)."


def add_arguments(p):
    p.add_argument("--activations", default="linear,hardtanh,relu", help="comma-separated: linear, hardtanh, relu, leaky_relu, probit")
    p.add_argument("--sigmas", default=None, help="comma-separated weight scales (default: 9 log-spaced values from 0.1 to 10)")
    p.add_argument("--width", type=int, default=1000, help="width of both layers (default 1000)")
    p.add_argument("--noise", type=float, default=1e-5, help="noise variance before the last activation (default 1e-5)")
    p.add_argument("--seed", type=int, default=42, help="seed of the weight draw (default 42, the paper's)")
    p.add_argument("--method", choices=["vamp", "fixed_point"], default="vamp")
    p.add_argument("--out", default="sweep_out", help="output folder for sweep.csv, sweep.json and sweep.png")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--devices", default=None,
                   help="split the sigmas over devices: 'all' or a number N (the first N); default: one jitted vmap "
                        "on the default device")
    g = p.add_argument_group("multi-host (with --devices; run the same command on every process)")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="address of process 0, passed to jax.distributed.initialize")
    g.add_argument("--num-processes", type=int, default=None, help="number of processes taking part")
    g.add_argument("--process-id", type=int, default=None, help="this process's index, 0..num-processes-1")


def _initialize_distributed(args) -> None:
    """``jax.distributed.initialize`` from the multi-host flags (before any computation)."""
    given = [args.coordinator is not None, args.num_processes is not None, args.process_id is not None]
    if not any(given):
        return
    if not all(given):
        raise SystemExit("--coordinator, --num-processes and --process-id go together")
    if args.devices is None:
        raise SystemExit("multi-host sweeps need --devices (e.g. --devices all)")
    jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                               process_id=args.process_id)


def run(args) -> int:
    _initialize_distributed(args)
    matplotlib.use("Agg")
    sigmas = DEFAULT_SIGMAS if args.sigmas is None else [float(s) for s in args.sigmas.split(",") if s.strip()]
    if args.width < 1:
        raise SystemExit("--width must be a positive integer")
    try:
        devices = parse_devices(args.devices)
    except ValueError as err:
        raise SystemExit(f"--devices: {err}") from None
    acts = [a.strip() for a in args.activations.split(",") if a.strip()]
    start = time.perf_counter()
    result = run_sweep(acts, sigmas, args.width, args.noise, args.seed, args.method, progress=not args.no_progress,
                       devices=devices)
    result["seconds_total"] = time.perf_counter() - start
    if "devices" in result:
        print(f"devices: {len(result['devices'])} ({', '.join(result['devices'])}) in {result['processes']} "
              f"process(es); this is process {jax.process_index()}")
    if jax.process_index() != 0:  # every process has every value; process 0 writes them
        print(f"process {jax.process_index()}: done; process 0 writes the files")
        return 0
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{'activation':<11} {'sigma':>8} {'H(T_1)':>12} {'H(T_2)':>12} {'I(X;T_2)':>12} conv")
    rows = []
    for name, c in result["curves"].items():
        for i, s in enumerate(result["sigmas"]):
            rows.append([name, s, c["H1"][i], c["H2"][i], c["I1"][i], c["I2"][i], all(c["converged"][i])])
            print(f"{name:<11} {s:8.4f} {c['H1'][i]:12.7f} {c['H2'][i]:12.7f} {c['I2'][i]:12.7f} {'yes' if all(c['converged'][i]) else 'NO'}")
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["activation", "sigma", "H1", "H2", "I1", "I2", "converged"])
        w.writerows(rows)
    (out / "sweep.json").write_text(json.dumps(result, indent=1))
    plot_sweep(result, out / "sweep.png")
    print(f"{len(rows) * 2} entropies in {result['seconds_total']:.1f} s; wrote {out}/sweep.csv, sweep.json, sweep.png")
    return 0
