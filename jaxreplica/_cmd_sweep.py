"""``jaxreplica sweep``: the paper's Figure-2 replica curves on embedded defaults."""

from __future__ import annotations

import csv
import json
import math
import sys
import time

import jax
import matplotlib

from jaxreplica._cli_args import (devices_type, float_list_type, float_type, int_type, name_list_type,
                                  output_dir_type, show_progress)
from jaxreplica.activations import ACTIVATIONS, NOISE_POSITIONS, has_channel
from jaxreplica.experiments.figure2 import DEFAULT_SIGMAS, run_sweep
from jaxreplica.experiments.plots import plot_sweep

HELP = "Replica H(T_1), H(T_2) of two wide layers against the weight scale (the paper's Figure 2)."

# Weight scales beyond this are outside the range the solvers are tested on (docs/accuracy.md).
MAX_SIGMA = 1e3
SWEEP_ACTIVATIONS = tuple(name for name in ACTIVATIONS if has_channel(name))


def add_arguments(p):
    p.add_argument("--activations", default=["linear", "hardtanh", "relu"],
                   type=name_list_type(SWEEP_ACTIVATIONS, "activations"),
                   help=f"comma-separated subset of {','.join(SWEEP_ACTIVATIONS)} (default linear,hardtanh,relu)")
    p.add_argument("--sigmas", default=list(DEFAULT_SIGMAS),
                   type=float_list_type(0.0, MAX_SIGMA, inclusive_low=False, what="weight scales",
                                        hint=" (the tested range)"),
                   help=f"comma-separated weight scales in (0, {MAX_SIGMA:g}] (default: 9 log-spaced values "
                        "from 0.1 to 10)")
    p.add_argument("--width", type=int_type(2, what="a width"), default=1000,
                   help="width of both layers (default 1000)")
    p.add_argument("--noise", type=float_type(0.0, inclusive_low=False, what="a noise variance"), default=1e-5,
                   help="noise variance of the measured layer, positive (default 1e-5)")
    p.add_argument("--hidden-noise", type=float_type(0.0, what="a noise variance"), default=0.0,
                   help="noise variance of the first layer when T_2 is measured (default 0, the paper's setting)")
    p.add_argument("--noise-position", choices=NOISE_POSITIONS, default="before",
                   help="where the noise enters: before the activation (default, the paper's), after it, or both")
    p.add_argument("--seed", type=int_type(0, 2**32 - 1, what="a seed"), default=42,
                   help="NumPy seed of the weight draw (default 42, the paper's)")
    p.add_argument("--method", choices=["vamp", "fixed_point"], default="vamp",
                   help="replica solver (default vamp)")
    p.add_argument("--out", type=output_dir_type, default="sweep_out",
                   help="output folder for sweep.csv, sweep.json and sweep.png (default sweep_out)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (none is shown when stderr "
                   "is not a terminal)")
    p.add_argument("--devices", default=None, type=devices_type,
                   help="split the sigmas over devices: 'all' or a number N (the first N); default: one compiled "
                        "program on the default device")
    g = p.add_argument_group("multi-host (with --devices; run the same command on every process)")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="address of process 0, passed to jax.distributed.initialize")
    g.add_argument("--num-processes", type=int_type(1, what="a number of processes"), default=None,
                   help="number of processes taking part")
    g.add_argument("--process-id", type=int_type(0, what="a process index"), default=None,
                   help="this process's index, 0..num-processes-1")


def check_arguments(args, parser) -> None:
    given = [args.coordinator is not None, args.num_processes is not None, args.process_id is not None]
    if any(given) and not all(given):
        parser.error("--coordinator, --num-processes and --process-id go together")
    if all(given):
        if args.devices is None:
            parser.error("multi-host sweeps need --devices (e.g. --devices all)")
        if args.process_id >= args.num_processes:
            parser.error(f"--process-id must be below --num-processes ({args.num_processes})")
    elif isinstance(args.devices, int) and args.devices > jax.device_count():
        parser.error(f"--devices {args.devices}: only {jax.device_count()} device(s) here")


def failed_rows(result) -> list[str]:
    """``"activation sigma=S: what"`` for every sweep point with a non-converged or non-finite value."""
    rows = []
    for name, c in result["curves"].items():
        for i, s in enumerate(result["sigmas"]):
            bad = [f"T_{l + 1} not converged" for l in range(2) if not c["converged"][i][l]]
            bad += [f"{key} {c[key][i]}" for key in ("H1", "H2", "I2") if not math.isfinite(c[key][i])]
            if bad:
                rows.append(f"{name} sigma={s:g}: {', '.join(bad)}")
    return rows


def run(args) -> int:
    if args.coordinator is not None:
        jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                                   process_id=args.process_id)
    matplotlib.use("Agg")
    start = time.perf_counter()
    result = run_sweep(args.activations, args.sigmas, args.width, args.noise, args.seed, args.method,
                       progress=show_progress(args.no_progress), devices=args.devices,
                       hidden_noise=args.hidden_noise, noise_position=args.noise_position)
    result["seconds_total"] = time.perf_counter() - start
    if "devices" in result:
        print(f"devices: {len(result['devices'])} ({', '.join(result['devices'])}) in {result['processes']} "
              f"process(es); this is process {jax.process_index()}")
    failed = failed_rows(result)
    if jax.process_index() != 0:  # every process has every value; process 0 writes them
        print(f"process {jax.process_index()}: done; process 0 writes the files")
        return 1 if failed else 0
    out = args.out
    print("Entropies and information per input unit (nats); converged: both layers' solves converged.")
    print(f"{'activation':<11} {'sigma':>10} {'H(T_1)':>12} {'H(T_2)':>12} {'I(X;T_2)':>12}  converged")
    rows = []
    for name, c in result["curves"].items():
        for i, s in enumerate(result["sigmas"]):
            ok = all(c["converged"][i])
            rows.append([name, s, c["H1"][i], c["H2"][i], c["I1"][i], c["I2"][i], ok])
            print(f"{name:<11} {s:>10.4g} {c['H1'][i]:12.7f} {c['H2'][i]:12.7f} {c['I2'][i]:12.7f}  "
                  f"{'yes' if ok else 'NO'}")
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["activation", "sigma", "H1", "H2", "I1", "I2", "converged"])
        w.writerows(rows)
    (out / "sweep.json").write_text(json.dumps(result, indent=1))
    plot_sweep(result, out / "sweep.png")
    print(f"{len(rows) * 2} entropies in {result['seconds_total']:.1f} s; wrote {out}/sweep.csv, sweep.json, sweep.png")
    if failed:
        print(f"jaxreplica sweep: {len(failed)} of {len(rows)} points have non-converged or non-finite values: "
              f"{'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0
