"""``jaxreplica figure2``: replica entropies against k-NN and pairwise estimators (the paper's Figure 2)."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time

import jax
import matplotlib
import numpy as np

from jaxreplica._cli_args import float_list_type, float_type, int_type, name_list_type, output_dir_type, show_progress
from jaxreplica._cmd_sweep import MAX_SIGMA
from jaxreplica.experiments.figure2 import ACTIVATIONS, DEFAULT_SIGMAS, compute_figure2, linear_gap_summary, to_json
from jaxreplica.experiments.plots import plot_figure2, plot_linear_gap

HELP = "Figure 2: replica H(T_1), H(T_2) against exact, k-NN and pairwise-bound estimates, linear/hardtanh/ReLU."

# The terminal table: (key in the result, column label, what the column is).
COLUMNS = (
    ("replica", "replica", "replica formula, two layers with the spectra of sigma W_1 and sigma W_2"),
    ("exact", "exact", "log-determinant of the drawn linear network (linear only)"),
    ("replica_product", "replica-product", "replica formula, one layer with the spectrum of the product "
                                           "sigma^2 W_2 W_1 (linear only)"),
    ("linear_approx", "linear", "exact entropy of the linear network with the same weights (hardtanh)"),
    ("half_linear_approx", "linear/2", "half of it (ReLU)"),
    ("knn", "k-NN", "Kozachenko-Leonenko estimate from the samples (--k neighbours)"),
    ("pairwise", "pairwise", "pairwise KL bound of a Gaussian mixture fit to the noisy samples"),
    ("pairwise_parametric", "pairwise-clean", "the same, mixture fit to the noiseless part, noise variance added"),
)
CELL = 19  # two numbers of 9 characters and a space


def add_arguments(p):
    p.add_argument("--width", type=int_type(2, what="a width"), default=1000,
                   help="width of both layers (default 1000)")
    p.add_argument("--samples", type=int_type(2, what="a number of samples"), default=1000,
                   help="samples per sample-based estimate (default 1000)")
    p.add_argument("--sigmas", default=list(DEFAULT_SIGMAS),
                   type=float_list_type(0.0, MAX_SIGMA, inclusive_low=False, what="weight scales",
                                        hint=" (the tested range)"),
                   help=f"comma-separated weight scales in (0, {MAX_SIGMA:g}] (default: 9 log-spaced values 0.1..10)")
    p.add_argument("--activations", default=list(ACTIVATIONS), type=name_list_type(ACTIVATIONS, "activations"),
                   help=f"comma-separated subset of {','.join(ACTIVATIONS)} (default: all three)")
    p.add_argument("--noise", type=float_type(0.0, inclusive_low=False, what="a noise variance"), default=1e-5,
                   help="noise variance before the measured layer's activation, positive (default 1e-5)")
    p.add_argument("--seed", type=int_type(0, 2**32 - 1, what="a seed"), default=42,
                   help="seed of the weights (NumPy legacy, the paper's demo draw) and samples (default 42)")
    p.add_argument("--k", type=int_type(1, what="a neighbour order"), default=3,
                   help="neighbour order of the k-NN estimator (default 3)")
    p.add_argument("--method", choices=["vamp", "fixed_point"], default="vamp", help="replica solver (default vamp)")
    p.add_argument("--rotations", type=int_type(0, what="a number of rotations"), default=16,
                   help="random rotations W_2 -> W_2 O for the linear panel's finite-width check (default 16; 0: none)")
    p.add_argument("--out", type=output_dir_type, default="figure2_out",
                   help="output folder for figure2.json and the PNGs (default figure2_out)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (none is shown when stderr "
                   "is not a terminal)")


def check_arguments(args, parser) -> None:
    if args.samples <= args.k:
        parser.error(f"--samples ({args.samples}) must exceed --k ({args.k})")


def print_tables(result, k: int, n_samples: int) -> None:
    """One table per activation: per sigma, each column's ``H(T_1)`` and ``H(T_2)``."""
    print(f"Entropy per input unit (nats); every column gives T_1 then T_2. Columns "
          f"({n_samples} samples, k = {k}):")
    for _, label, what in COLUMNS:
        print(f"  {label:<16} {what}")
    for name, curve in result["curves"].items():
        present = [(key, label) for key, label, _ in COLUMNS if key in curve]
        print(f"\n{name}")
        print(f"{'sigma':>8}  " + " ".join(f"{label:^{CELL}}" for _, label in present))
        print(f"{'':>8}  " + " ".join(f"{'T_1':>9} {'T_2':>9}" for _ in present))
        for i, s in enumerate(result["sigmas"]):
            cells = (f"{curve[key][i][0]:9.4f} {curve[key][i][1]:9.4f}" for key, _ in present)
            print(f"{s:>8.4g}  " + " ".join(cells))
        if "exact" in curve:
            gap = linear_gap_summary(curve)
            print(f"  max |replica - exact|: T_1 {gap['replica_gap'][0]:.1e}, T_2 {gap['replica_gap'][1]:.1e} "
                  f"(two-layer formula, free spectra); one-layer form with the product's spectrum: "
                  f"T_1 {gap['product_gap'][0]:.1e}, T_2 {gap['product_gap'][1]:.1e}")
            if "rotated_sd" in gap:
                print(f"  exact H(T_2) of W_2 O W_1 over {len(curve['exact_rotated'])} random rotations O (same two "
                      f"spectra, same two-layer replica value): sd {gap['rotated_sd'].min():.1e} to "
                      f"{gap['rotated_sd'].max():.1e}, range up to {gap['rotated_range'].max():.1e}; the two-layer "
                      f"replica lies inside the range at {gap['replica_inside']} of {len(result['sigmas'])} sigmas")


def failed_points(result) -> list[str]:
    """``"activation sigma=S: what"`` for every non-converged or non-finite replica value."""
    rows = []
    for name, curve in result["curves"].items():
        conv, values = np.asarray(curve["replica_converged"]), np.asarray(curve["replica"])
        for i, s in enumerate(result["sigmas"]):
            bad = [f"T_{l + 1} not converged" for l in range(2) if not conv[i, l]]
            bad += [f"H(T_{l + 1}) {values[i, l]}" for l in range(2) if not math.isfinite(values[i, l])]
            if bad:
                rows.append(f"{name} sigma={s:g}: {', '.join(bad)}")
    return rows


def run(args) -> int:
    matplotlib.use("Agg")
    start = time.perf_counter()
    result = compute_figure2(
        jax.random.PRNGKey(args.seed), width=args.width, sigmas=args.sigmas, n_samples=args.samples,
        noise=args.noise, weight_seed=args.seed, activations=args.activations, k=args.k, method=args.method,
        progress=show_progress(args.no_progress), rotations=args.rotations,
    )
    wall = time.perf_counter() - start
    out = args.out
    print_tables(result, args.k, args.samples)
    payload = to_json(result)
    payload["wall_seconds"] = wall
    payload["machine"] = {"platform": platform.platform(), "cpu_count": os.cpu_count()}
    (out / "figure2.json").write_text(json.dumps(payload, indent=1))
    plot_figure2(result, out / "figure2.png")
    written = [out / "figure2.json", out / "figure2.png"]
    if "linear" in result["curves"]:
        plot_linear_gap(result, out / "figure2_linear_gap.png")
        written.append(out / "figure2_linear_gap.png")
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in result["seconds"].items() if k != "total")
    print(f"\nwall time {wall:.1f} s ({parts}); wrote {', '.join(str(w) for w in written)}")
    failed = failed_points(result)
    if failed:
        n = len(result["sigmas"]) * len(result["curves"])
        print(f"jaxreplica figure2: {len(failed)} of {n} points have non-converged or non-finite replica values: "
              f"{'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0
