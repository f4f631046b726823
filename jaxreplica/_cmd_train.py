"""``jaxreplica train``: train a USV network on synthetic data and track I(X; T_l) live.

The presets are the paper's learning experiments (:mod:`jaxreplica.experiments.presets`).
Every run writes ``OUT/history.npz``, ``OUT/config.json``, ``OUT/summary.json`` and PNG
plots (``learning.png``, ``information.png``, and ``replica_vs_exact.png`` when exact
values exist); ``figure5`` writes one sub-directory per initialisation scale and
``figure5.png``.

``--info-penalty LAYER:BETA`` (repeatable) adds ``BETA * I(X; T_LAYER)/n_0`` to the loss,
differentiated through the replica fixed point (:mod:`jaxreplica.training.penalty`)::

    jaxreplica train --preset recognition-hardtanh --scale small --info-penalty 4:0.1 --out runs/ib

Paper-scale Figure 4 (hours on a CPU)::

    jaxreplica train --preset recognition-relu --scale paper --epochs 1000 --out runs/fig4-relu
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import jax
import matplotlib
import numpy as np

from jaxreplica.batched import parse_devices
from jaxreplica.experiments import plots
from jaxreplica.experiments.presets import FIGURE5_SCALES, PRESETS, build, epochs_for, tracked_layers
from jaxreplica.training import History, InformationPenalty, TrainConfig, Tracking, train

HELP = "train a USV network on synthetic data and track the replica I(X; T_l) during training"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", required=True, choices=PRESETS, help="experiment to run")
    parser.add_argument("--out", required=True, type=pathlib.Path, help="output directory")
    parser.add_argument("--width", type=int, default=100, help="figure3: width of the student and input (default 100)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs (default: figure3 100; recognition presets 300 small, paper 1000 (relu) "
                             "or 2000 (hardtanh))")
    parser.add_argument("--scale", choices=("small", "paper"), default="small",
                        help="recognition presets and figure5: 'small' divides every width by 5 (default), "
                             "'paper' uses the paper's sizes")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, initialisation and shuffling")
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 50 (regression), 100 (classification)")
    parser.add_argument("--track-every", type=int, default=None,
                        help="track every k epochs (default 1 for figure3, 2 otherwise); 0 disables tracking")
    parser.add_argument("--no-track", action="store_true", help="disable information tracking")
    parser.add_argument("--hidden-noise", type=float, default=0.0, help="noise variance of the layers before the "
                        "measured one (default 0)")
    parser.add_argument("--last-noise", type=float, default=1e-5, help="noise variance of the measured layer "
                        "(default 1e-5)")
    parser.add_argument("--tol", type=float, default=None, help="solver tolerance (default 1e-10 figure3, 1e-6 else, as the original code)")
    parser.add_argument("--init-scales", type=float, nargs="+", default=None,
                        help=f"figure5: initialisation scales (default {' '.join(map(str, FIGURE5_SCALES))})")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="dtype of data and network (tracking is always float64)")
    parser.add_argument("--info-penalty", action="append", default=[], metavar="LAYER:BETA",
                        help="add BETA * I(X; T_LAYER)/n_0 (replica formula, differentiated through the fixed "
                             "point) to the loss; repeatable, one per USV layer")
    parser.add_argument("--penalty-tol", type=float, default=1e-8,
                        help="solver tolerance of the information penalty (default 1e-8)")
    parser.add_argument("--penalty-max-iter", type=int, default=1000,
                        help="iteration cap of the penalty's solves; a step that reaches it contributes no "
                             "penalty gradient and is counted (default 1000)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--devices", default=None,
                        help="data-parallel training: split every batch over 'all' devices or the first N "
                             "(the batch size must be a multiple of their number); tracking stays on one device")


def _parse_penalty(spec: str) -> tuple[int, float]:
    try:
        layer, beta = spec.split(":")
        layer, beta = int(layer), float(beta)
    except ValueError:
        raise ValueError(f"--info-penalty must look like LAYER:BETA (e.g. 2:0.1), got {spec!r}") from None
    if not math.isfinite(beta):
        raise ValueError(f"--info-penalty: BETA must be finite, got {spec!r}")
    return layer, beta


def _penalty_dict(specs, usv_layers: int) -> dict[int, float]:
    """``{layer: beta}`` from repeated ``LAYER:BETA`` specs, checked against the preset's USV layers."""
    out: dict[int, float] = {}
    for spec in specs:
        layer, beta = _parse_penalty(spec)
        if not 1 <= layer <= usv_layers:
            raise ValueError(f"--info-penalty: LAYER must be a USV layer of the preset (1..{usv_layers}), got {spec!r}")
        if layer in out:
            raise ValueError(f"--info-penalty: layer {layer} given twice")
        out[layer] = beta
    return out


def _run_one(args, out: pathlib.Path, init_scale: float = 1.0) -> dict:
    key = jax.random.key(args.seed)
    net, data, defaults = build(args.preset, key, width=args.width, scale=args.scale, init_scale=init_scale,
                                dtype=args.dtype)
    epochs = epochs_for(args.preset, args.scale) if args.epochs is None else args.epochs
    every = defaults["every"] if args.track_every is None else args.track_every
    if args.no_track:
        every = 0
    tracking = Tracking(every=every, layers=defaults["layers"], hidden_noise=args.hidden_noise,
                        last_noise=args.last_noise, tol=defaults["tol"] if args.tol is None else args.tol)
    betas = _penalty_dict(args.info_penalty, defaults["layers"]) or None
    penalty = None
    if betas:
        penalty = InformationPenalty.for_network(net, data, betas, tol=args.penalty_tol,
                                                 max_iter=args.penalty_max_iter, last_noise=args.last_noise)
    config = TrainConfig(epochs=epochs, learning_rate=args.lr, batch_size=args.batch_size,
                         devices=parse_devices(args.devices))
    t0 = time.perf_counter()
    _, hist = train(net, data, jax.random.key(args.seed), config, tracking=tracking, penalty=penalty,
                    progress=not args.no_progress,
                    metadata={"preset": {"name": args.preset, "width": args.width, "scale": args.scale,
                                         "init_scale": init_scale, "dtype": args.dtype, "seed": args.seed}})
    seconds = time.perf_counter() - t0
    hist.save(out)
    plots.save_training_plots(hist, out)
    summary = {"out": str(out), "seconds": round(seconds, 2), "epochs": epochs,
               "initial_test_loss": float(hist.test_loss[0]), "final_test_loss": float(hist.test_loss[-1])}
    if hist.test_accuracy is not None:
        summary["best_test_accuracy"] = float(hist.test_accuracy.max())
        summary["final_test_accuracy"] = float(hist.test_accuracy[-1])
        summary["best_train_accuracy"] = float(hist.train_accuracy.max())
    if hist.penalty is not None:
        summary["info_penalty"] = {str(l): b for l, b in sorted(betas.items())}
        summary["final_penalty"] = float(hist.penalty[-1])
        summary["final_penalty_information"] = [float(v) for v in hist.penalty_information[-1]]
        summary["penalty_not_converged"] = int(hist.penalty_not_converged.sum())
    if hist.n_tracked_layers:
        summary["tracked_epochs"] = int(len(hist.tracked_epoch))
        summary["nan_entries"] = int(np.isnan(hist.mutual_information).sum())
        # steps 0 and 1 include compiling the cold and the warm-started solves
        ts = hist.tracking_seconds
        summary["seconds_per_tracking_step"] = float(np.mean(ts[2:] if len(ts) > 2 else ts[-1:]))
        summary["seconds_first_two_tracking_steps"] = float(np.sum(ts[:2]))
        summary["seconds_per_epoch"] = float(np.mean(hist.epoch_seconds[2:] if len(hist.epoch_seconds) > 2 else
                                                     hist.epoch_seconds[1:]))
        if hist.exact_mutual_information is not None:
            err = hist.squared_error()
            summary["max_squared_error"] = err.max(axis=0).tolist()
            summary["mean_squared_error"] = err.mean(axis=0).tolist()
    return summary


def run(args: argparse.Namespace) -> int:
    try:
        _penalty_dict(args.info_penalty, tracked_layers(args.preset))
    except ValueError as err:
        print(f"jaxreplica train: {err}", file=sys.stderr)
        return 2
    if args.info_penalty and args.devices is not None:
        print("jaxreplica train: --info-penalty with --devices (data-parallel) is not supported yet", file=sys.stderr)
        return 2
    if args.info_penalty and not (args.penalty_tol > 0 and args.penalty_max_iter >= 1):
        print("jaxreplica train: --penalty-tol must be positive and --penalty-max-iter at least 1", file=sys.stderr)
        return 2
    if args.epochs is not None and args.epochs < 0:
        print("jaxreplica train: --epochs must be non-negative", file=sys.stderr)
        return 2
    if args.devices is not None:
        try:
            parse_devices(args.devices)
        except ValueError as err:
            print(f"jaxreplica train: --devices: {err}", file=sys.stderr)
            return 2
    matplotlib.use("Agg")
    out: pathlib.Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.preset == "figure5":
        scales = FIGURE5_SCALES if args.init_scales is None else tuple(args.init_scales)
        summaries = []
        for s in scales:
            summaries.append(_run_one(args, out / f"scale-{s:g}", init_scale=s))
            print(json.dumps(summaries[-1]))
        plots.plot_figure5([History.load(out / f"scale-{s:g}") for s in scales], scales, out / "figure5.png")
        (out / "summary.json").write_text(json.dumps(summaries, indent=2))
    else:
        summary = _run_one(args, out)
        print(json.dumps(summary))
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0

