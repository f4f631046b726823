"""``jaxreplica train``: train a USV network on synthetic data and track I(X; T_l) live.

Presets (the paper's learning experiments, Gabrie et al. 2018, section 3):

* ``figure3``: linear teacher ``Y = W X + noise`` (``n_Y = 4``, noise variance 0.01,
  ``X ~ N(0, 1)`` of dimension ``--width``); student of three USV layers and one
  dense layer, all linear, width ``--width``; MSE, batch 50; ``I(X; T_l)`` of layers
  1-3 every epoch, replica and exact (log-determinants).
* ``recognition-relu`` / ``recognition-hardtanh`` (Figure 4): code ``Y ~ N(0, 1)`` of
  dimension 100, ``X = W_gen Y + noise`` of dimension 500 (noise 0.01), label
  ``sign(Y_1)``; recognition net 500-1000-500-250-100-2 with
  linear-act-linear-act-softmax, four USV layers and a dense softmax layer;
  cross-entropy, batch 100; ``I(X; T_l)`` of layers 1-4 every 2 epochs.
  ``--scale small`` divides every width by 5 (20, 100, 100-200-100-50-20-2) and the
  data with it (sets of 100 n_X samples), for a CPU.
* ``figure5``: the recognition task with four hardtanh USV layers
  (hardtanh-hardtanh-hardtanh-hardtanh-softmax), trained from three
  initialisation scales (weight std ``scale / sqrt(n_in)``, scales 2, 1, 0.25 by
  default: the paper's values are not in the extracted text), one sub-directory
  per scale.

Every run writes ``OUT/history.npz``, ``OUT/config.json`` and PNG plots
(``learning.png``, ``information.png``, and ``replica_vs_exact.png`` when exact
values exist).

Information penalty (issue 7): ``--info-penalty LAYER:BETA`` (repeatable) adds
``BETA * I(X; T_LAYER)/n_0`` to the loss, differentiated through the replica fixed point
(:mod:`jaxreplica.regularize`); the history then records the penalty, ``I(X; T_l)`` of
the penalised layers every epoch and the count of non-converged penalty solves::

    jaxreplica train --preset recognition-hardtanh --scale small --info-penalty 4:0.1 --out runs/ib

Paper-scale Figure 4 (documented command; hours on a CPU)::

    jaxreplica train --preset recognition-relu --scale paper --epochs 1000 --out runs/fig4-relu
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

HELP = "train a USV network on synthetic data and track the replica I(X; T_l) during training"

PRESETS = ("figure3", "recognition-relu", "recognition-hardtanh", "figure5")
FIGURE5_SCALES = (2.0, 1.0, 0.25)
DEFAULT_EPOCHS = {"figure3": 100, "recognition-relu": 300, "recognition-hardtanh": 300, "figure5": 300}
PAPER_EPOCHS = {"recognition-relu": 1000, "recognition-hardtanh": 2000, "figure5": 1000}


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
                             "point) to the loss; repeatable, one per USV layer (issue 7)")
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


def build(preset: str, *, width: int = 100, scale: str = "small", seed: int = 0, init_scale: float = 1.0,
          dtype: str = "float64"):
    """``(network, dataset, defaults)`` of a preset; ``defaults`` holds its tracking settings."""
    import jax
    import jax.numpy as jnp

    from . import data as jd
    from .nn import build_network

    dt = jnp.float64 if dtype == "float64" else jnp.float32
    k_data, k_net = jax.random.split(jax.random.key(seed))
    net_seed = int(jax.random.randint(k_net, (), 0, 2**31 - 1))
    if preset == "figure3":
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        data = jd.teacher_student(k_data, width, 4, noise=0.01, dtype=dt)
        net = build_network([width] * 4 + [4], ["linear"] * 4, [True, True, True, False], seed=net_seed, dtype=dt)
        return net, data, {"every": 1, "layers": 3, "tol": 1e-10}
    if preset in ("recognition-relu", "recognition-hardtanh", "figure5"):
        f = 5 if scale == "small" else 1
        n_code, n_x = 100 // f, 500 // f
        sizes = [n_x, 1000 // f, 500 // f, 250 // f, 100 // f, 2]
        if preset == "figure5":
            acts = ["hardtanh"] * 4 + ["softmax"]
        else:
            act = preset.split("-")[1]
            acts = ["linear", act, "linear", act, "softmax"]
        data = jd.generative_recognition(k_data, n_code, n_x, noise=0.01, task="classification", dtype=dt)
        net = build_network(sizes, acts, [True] * 4 + [False], seed=net_seed, scale=init_scale, dtype=dt)
        return net, data, {"every": 2, "layers": 4, "tol": 1e-6}
    raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")


def save_plots(history, out: pathlib.Path) -> list[pathlib.Path]:
    """``learning.png``, ``information.png`` and, with exact values, ``replica_vs_exact.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(5, 3.5))
    history.plot_learning(ax)
    fig.tight_layout()
    paths.append(out / "learning.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    if history.n_tracked_layers:
        axes = history.plot_information()
        fig = axes[0].figure
        fig.tight_layout()
        paths.append(out / "information.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    if history.exact_mutual_information is not None:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        err = history.squared_error()
        for l in range(err.shape[1]):
            ax.semilogy(history.tracked_epoch, err[:, l] + 1e-300, ".-", label=f"layer {l + 1}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("(replica - exact)$^2$ of I(X; T)")
        ax.legend(fontsize="small")
        fig.tight_layout()
        paths.append(out / "replica_vs_exact.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def _run_one(args, out: pathlib.Path, init_scale: float = 1.0) -> dict:
    from .sharding import parse_devices
    from .train import Tracking, train

    net, data, defaults = build(args.preset, width=args.width, scale=args.scale, seed=args.seed,
                                init_scale=init_scale, dtype=args.dtype)
    if args.epochs is not None:
        epochs = args.epochs
    elif args.scale == "paper" and args.preset in PAPER_EPOCHS:
        epochs = PAPER_EPOCHS[args.preset]
    else:
        epochs = DEFAULT_EPOCHS[args.preset]
    every = defaults["every"] if args.track_every is None else args.track_every
    if args.no_track:
        every = 0
    tracking = Tracking(every=every, layers=defaults["layers"], hidden_noise=args.hidden_noise,
                        last_noise=args.last_noise, tol=defaults["tol"] if args.tol is None else args.tol)
    betas = _penalty_dict(args.info_penalty, defaults["layers"]) or None
    penalty_options = {"tol": args.penalty_tol, "max_iter": args.penalty_max_iter} if betas else None
    t0 = time.perf_counter()
    _, hist = train(net, data, epochs=epochs, learning_rate=args.lr, batch_size=args.batch_size, seed=args.seed,
                    tracking=tracking, progress=not args.no_progress, devices=parse_devices(args.devices),
                    info_penalty=betas, info_penalty_options=penalty_options,
                    config={"preset": {"name": args.preset, "width": args.width, "scale": args.scale,
                                       "init_scale": init_scale, "dtype": args.dtype}})
    seconds = time.perf_counter() - t0
    hist.save(out)
    save_plots(hist, out)
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
        import numpy as np

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
        _penalty_dict(args.info_penalty, 3 if args.preset == "figure3" else 4)
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
        from .sharding import parse_devices

        try:
            parse_devices(args.devices)
        except ValueError as err:
            print(f"jaxreplica train: --devices: {err}", file=sys.stderr)
            return 2
    out: pathlib.Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.preset == "figure5":
        scales = FIGURE5_SCALES if args.init_scales is None else tuple(args.init_scales)
        summaries = []
        for s in scales:
            summaries.append(_run_one(args, out / f"scale-{s:g}", init_scale=s))
            print(json.dumps(summaries[-1]))
        _figure5_plot(out, scales)
        (out / "summary.json").write_text(json.dumps(summaries, indent=2))
    else:
        summary = _run_one(args, out)
        print(json.dumps(summary))
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


def _figure5_plot(out: pathlib.Path, scales) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .train import History

    hists = [History.load(out / f"scale-{s:g}") for s in scales]
    m = max(h.n_tracked_layers for h in hists)
    fig, axes = plt.subplots(len(hists), m + 1, figsize=(3 * (m + 1), 2.6 * len(hists)), squeeze=False)
    for row, (s, h) in enumerate(zip(scales, hists)):
        h.plot_learning(axes[row, 0])
        axes[row, 0].set_title(f"init scale {s:g}", fontsize="small")
        if h.n_tracked_layers:
            h.plot_information(axes[row, 1:], exact=False)
    fig.tight_layout()
    fig.savefig(out / "figure5.png", dpi=110)
    plt.close(fig)
