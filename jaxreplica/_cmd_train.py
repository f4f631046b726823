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
import pathlib
import sys
import time

import jax
import matplotlib
import numpy as np

from jaxreplica._cli_args import devices_type, float_type, int_type, output_dir_type, show_progress
from jaxreplica.experiments import plots
from jaxreplica.experiments.presets import FIGURE5_SCALES, PRESETS, build, epochs_for, tracked_layers
from jaxreplica.activations import NOISE_POSITIONS
from jaxreplica.training import History, InformationPenalty, TrainConfig, Tracking, train
from jaxreplica.training.loop import default_batch_size

HELP = "train a USV network on synthetic data and track the replica I(X; T_l) during training"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    positive = float_type(0.0, inclusive_low=False, what="a number")
    parser.add_argument("--preset", required=True, choices=PRESETS, help="experiment to run")
    parser.add_argument("--out", required=True, type=output_dir_type, help="output directory (created)")
    parser.add_argument("--width", type=int_type(1, what="a width"), default=100,
                        help="figure3: width of the student and input (default 100)")
    parser.add_argument("--epochs", type=int_type(1, what="a number of epochs"), default=None,
                        help="epochs, at least 1 (default: figure3 100; recognition presets and figure5 300 "
                             "small; paper 1000 (relu, figure5) or 2000 (hardtanh))")
    parser.add_argument("--scale", choices=("small", "paper"), default="small",
                        help="recognition presets and figure5: 'small' divides every width by 5 (default), "
                             "'paper' uses the paper's sizes")
    parser.add_argument("--seed", type=int_type(0, what="a seed"), default=0,
                        help="seed of data, initialisation and shuffling (default 0)")
    parser.add_argument("--lr", type=positive, default=0.01, help="SGD learning rate (default 0.01)")
    parser.add_argument("--batch-size", type=int_type(1, what="a batch size"), default=None,
                        help="default 50 (regression), 100 (classification)")
    parser.add_argument("--track-every", type=int_type(0, what="a tracking interval"), default=None,
                        help="track every k epochs (default 1 for figure3, 2 otherwise); 0 disables tracking")
    parser.add_argument("--no-track", action="store_true", help="disable information tracking")
    parser.add_argument("--hidden-noise", type=float_type(0.0, what="a noise variance"), default=0.0,
                        help="noise variance of the layers before the measured one (default 0)")
    parser.add_argument("--last-noise", type=float_type(0.0, inclusive_low=False, what="a noise variance"),
                        default=1e-5, help="noise variance of the measured layer, positive (default 1e-5)")
    parser.add_argument("--noise-position", choices=NOISE_POSITIONS, default="before",
                        help="where the tracking and penalty noise enters: before the activation (default), after "
                             "it, or both")
    parser.add_argument("--tol", type=positive, default=None,
                        help="solver tolerance (default 1e-10 figure3, 1e-6 otherwise, as the original code)")
    parser.add_argument("--init-scales", type=positive, nargs="+", default=None,
                        help=f"figure5: initialisation scales (default {' '.join(map(str, FIGURE5_SCALES))})")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="dtype of data and network (tracking is always float64)")
    parser.add_argument("--info-penalty", action="append", default=[], metavar="LAYER:BETA", type=_penalty_type,
                        help="add BETA * I(X; T_LAYER)/n_0 (replica formula, differentiated through the fixed "
                             "point) to the loss; repeatable, one per USV layer. Costly on ReLU/hardtanh "
                             "networks: see the README")
    parser.add_argument("--penalty-tol", type=positive, default=1e-8,
                        help="solver tolerance of the information penalty (default 1e-8)")
    parser.add_argument("--penalty-max-iter", type=int_type(1, what="an iteration cap"), default=1000,
                        help="iteration cap of the penalty's solves; a step that reaches it contributes no "
                             "penalty gradient and is counted (default 1000)")
    parser.add_argument("--penalty-solve-every", type=int_type(1, what="a number of steps"), default=None,
                        help="solve the penalty's fixed points every K optimizer steps and use the potential at "
                             "the last ones in between (default: once an epoch, the number of steps in an epoch; "
                             "1: every step)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (none is shown when stderr "
                        "is not a terminal)")
    parser.add_argument("--devices", default=None, type=devices_type,
                        help="data-parallel training: split every batch over 'all' devices or the first N "
                             "(the batch size must be a multiple of their number); tracking stays on one device")


def _penalty_type(spec: str) -> tuple[int, float]:
    """``LAYER:BETA`` as ``(int, float)``."""
    try:
        layer, beta = spec.split(":")
        layer, beta = int(layer), float_type(what="BETA")(beta)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected LAYER:BETA with a layer number and a finite weight "
                                         f"(e.g. 2:0.1), got {spec!r}") from None
    return layer, beta


def check_arguments(args, parser) -> None:
    usv_layers = tracked_layers(args.preset)
    seen = set()
    for layer, _ in args.info_penalty:
        if not 1 <= layer <= usv_layers:
            parser.error(f"--info-penalty: LAYER must be a USV layer of {args.preset} (1..{usv_layers}), "
                         f"got {layer}")
        if layer in seen:
            parser.error(f"--info-penalty: layer {layer} given twice")
        seen.add(layer)
    if args.info_penalty and args.devices is not None:
        parser.error("--info-penalty with --devices (data-parallel) is not supported")
    if args.init_scales is not None and args.preset != "figure5":
        parser.error("--init-scales applies to --preset figure5 only")
    if args.devices is not None:
        n = jax.device_count() if args.devices == "all" else args.devices
        if n > jax.device_count():
            parser.error(f"--devices {args.devices}: only {jax.device_count()} device(s) here")
        batch = args.batch_size or (50 if args.preset == "figure3" else 100)
        if batch % n:
            parser.error(f"--devices: the batch size ({batch}) must be a multiple of the number of devices ({n})")


def _setup(args, init_scale: float):
    """Network, data, tracking, penalty and configuration of one run (``ValueError`` if inconsistent)."""
    net, data, defaults = build(args.preset, jax.random.key(args.seed), width=args.width, scale=args.scale,
                                init_scale=init_scale, dtype=args.dtype)
    epochs = epochs_for(args.preset, args.scale) if args.epochs is None else args.epochs
    every = defaults["every"] if args.track_every is None else args.track_every
    if args.no_track:
        every = 0
    tracking = Tracking(every=every, layers=defaults["layers"], hidden_noise=args.hidden_noise,
                        last_noise=args.last_noise, noise_position=args.noise_position, tol=defaults["tol"] if args.tol is None else args.tol)
    n_train = data.x_train.shape[0]
    if args.batch_size is not None and args.batch_size > n_train:
        raise ValueError(f"--batch-size {args.batch_size} exceeds the {n_train} training samples of {args.preset}")
    betas = dict(args.info_penalty)
    penalty = None
    solve_every = args.penalty_solve_every
    if solve_every is None:
        # Once an epoch (as many steps as the epoch has batches).
        batch = args.batch_size or default_batch_size(data)
        solve_every = max(1, n_train // batch)
    if betas:
        penalty = InformationPenalty.for_network(net, data, betas, tol=args.penalty_tol,
                                                 max_iter=args.penalty_max_iter, last_noise=args.last_noise,
                                                 hidden_noise=args.hidden_noise,
                                                 noise_position=args.noise_position,
                                                 solve_every=solve_every)
    config = TrainConfig(epochs=epochs, learning_rate=args.lr, batch_size=args.batch_size, devices=args.devices)
    return net, data, tracking, penalty, config


def _summary(hist, out: pathlib.Path, seconds: float) -> dict:
    epochs = len(hist.epoch) - 1
    summary = {"out": str(out), "seconds": round(seconds, 2), "epochs": epochs,
               "initial_test_loss": float(hist.test_loss[0]), "final_test_loss": float(hist.test_loss[-1])}
    if hist.diverged_at_epoch is not None:
        summary["diverged_at_epoch"] = hist.diverged_at_epoch
    if hist.test_accuracy is not None:
        summary["best_test_accuracy"] = float(np.nanmax(hist.test_accuracy))
        summary["final_test_accuracy"] = float(hist.test_accuracy[-1])
        summary["best_train_accuracy"] = float(np.nanmax(hist.train_accuracy))
    if hist.penalty is not None:
        summary["info_penalty"] = hist.config["training"]["info_penalty"]["betas"]
        summary["final_penalty"] = float(hist.penalty[-1])
        summary["final_penalty_information"] = [float(v) for v in hist.penalty_information[-1]]
        summary["penalty_not_converged"] = int(hist.penalty_not_converged.sum())
    if epochs:
        # epochs 1 and 2 include compiling the step
        secs = hist.epoch_seconds[1:]
        summary["seconds_per_epoch"] = float(np.mean(secs[2:] if len(secs) > 2 else secs))
    if hist.n_tracked_layers:
        summary["tracked_epochs"] = int(len(hist.tracked_epoch))
        summary["nan_entries"] = int(np.isnan(hist.mutual_information).sum())
        # steps 0 and 1 include compiling the cold and the warm-started solves
        ts = hist.tracking_seconds
        summary["seconds_per_tracking_step"] = float(np.mean(ts[2:] if len(ts) > 2 else ts[-1:]))
        summary["seconds_first_two_tracking_steps"] = float(np.sum(ts[:2]))
        if hist.exact_mutual_information is not None:
            err = hist.squared_error()
            summary["max_squared_error"] = err.max(axis=0).tolist()
            summary["mean_squared_error"] = err.mean(axis=0).tolist()
    return summary


def _run_one(args, out: pathlib.Path, init_scale: float = 1.0):
    """Train one network; returns ``(summary, history)``, or ``None`` when the settings are inconsistent."""
    try:
        net, data, tracking, penalty, config = _setup(args, init_scale)
    except ValueError as err:
        print(f"jaxreplica train: error: {' '.join(str(err).split())}", file=sys.stderr)
        return None
    t0 = time.perf_counter()
    _, hist = train(net, data, jax.random.key(args.seed), config, tracking=tracking, penalty=penalty,
                    progress=show_progress(args.no_progress),
                    metadata={"preset": {"name": args.preset, "width": args.width, "scale": args.scale,
                                         "init_scale": init_scale, "dtype": args.dtype, "seed": args.seed}})
    seconds = time.perf_counter() - t0
    hist.save(out)
    plots.save_training_plots(hist, out)
    return _summary(hist, out, seconds), hist


def _diverged(hist, out: pathlib.Path, args) -> int:
    e = hist.diverged_at_epoch
    print(f"jaxreplica train: loss diverged at epoch {e} (train loss {hist.train_loss[-1]:.3g}, learning rate "
          f"{args.lr:g}); training stopped, the history up to epoch {e} is in {out}; try a smaller --lr",
          file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    matplotlib.use("Agg")
    out: pathlib.Path = args.out
    if args.preset == "figure5":
        scales = FIGURE5_SCALES if args.init_scales is None else tuple(args.init_scales)
        summaries = []
        for s in scales:
            done = _run_one(args, out / f"scale-{s:g}", init_scale=s)
            if done is None:
                return 2
            summaries.append(done[0])
            print(json.dumps(summaries[-1]))
            (out / "summary.json").write_text(json.dumps(summaries, indent=2))
            if done[1].diverged_at_epoch is not None:
                return _diverged(done[1], out / f"scale-{s:g}", args)
        plots.plot_figure5([History.load(out / f"scale-{s:g}") for s in scales], scales, out / "figure5.png")
        return 0
    done = _run_one(args, out)
    if done is None:
        return 2
    summary, hist = done
    print(json.dumps(summary))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if hist.diverged_at_epoch is not None:
        return _diverged(hist, out, args)
    return 0
