"""Cost of information tracking relative to training: seconds per tracking step vs seconds per epoch.

Runs each case for a few epochs with tracking at every epoch and reports

* ``epoch_s``: mean wall time of one training epoch (jitted scan over batches),
  the first (compiling) epoch left out;
* ``track_first_s``: the first tracking step (cold multi-start solves, includes
  compiling them);
* ``track_second_s``: the second step (first warm-started solves, includes compiling
  the warm-start variant);
* ``track_s``: mean of the later, warm-started tracking steps (steady state);
* ``ratio``: ``track_s / epoch_s``.

Usage::

    python bench/bench_training.py            # small scale (CPU friendly)
    python bench/bench_training.py --paper    # also the paper's sizes (slow on a CPU)

Writes ``bench/results/training.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import jaxreplica  # noqa: E402,F401
from jaxreplica.experiments.presets import build  # noqa: E402
from jaxreplica.training import TrainConfig, Tracking, train  # noqa: E402

SMALL = [
    ("figure3", dict(width=100), 6),
    ("recognition-relu", dict(scale="small"), 5),
    ("recognition-hardtanh", dict(scale="small"), 5),
]
PAPER = [
    ("figure3", dict(width=400), 4),
    ("recognition-relu", dict(scale="paper"), 4),
    ("recognition-hardtanh", dict(scale="paper"), 4),
]


def bench_case(preset: str, kwargs: dict, epochs: int) -> dict:
    net, data, defaults = build(preset, jax.random.key(0), **kwargs)
    tracking = Tracking(every=1, layers=defaults["layers"], tol=defaults["tol"])
    t0 = time.perf_counter()
    _, hist = train(net, data, jax.random.key(0), TrainConfig(epochs=epochs), tracking=tracking, progress=False)
    total = time.perf_counter() - t0
    epoch_s = float(np.mean(hist.epoch_seconds[2:])) if epochs >= 2 else float(hist.epoch_seconds[1])
    track_s = float(np.mean(hist.tracking_seconds[2:]))
    return {
        "preset": preset,
        **kwargs,
        "sizes": hist.config["network"]["sizes"],
        "n_train": hist.config["data"]["n_train"],
        "tracked_layers": int(hist.n_tracked_layers),
        "epochs": epochs,
        "epoch_s": epoch_s,
        "first_epoch_s": float(hist.epoch_seconds[1]),
        "track_first_s": float(hist.tracking_seconds[0]),
        "track_second_s": float(hist.tracking_seconds[1]),
        "track_s": track_s,
        "ratio": track_s / epoch_s,
        "mean_iterations": float(np.mean(hist.iterations[2:])),
        "nan_entries": int(np.isnan(hist.mutual_information).sum()),
        "failures": [[int(e), int(l), str(r)] for e, l, r in hist.failures[:10]],
        "total_s": total,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paper", action="store_true", help="also run the paper-scale cases")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).parent / "results" / "training.json")
    args = p.parse_args(argv)
    cases = SMALL + (PAPER if args.paper else [])
    rows = []
    header = (f"{'preset':22s} {'sizes':24s} {'epoch_s':>8s} {'track_s':>8s} {'ratio':>7s} {'1st':>7s} {'2nd':>7s} "
              f"{'iters':>6s}")
    print(header)
    print("-" * len(header))
    for preset, kwargs, epochs in cases:
        r = bench_case(preset, kwargs, epochs)
        rows.append(r)
        sizes = "-".join(map(str, r["sizes"]))
        print(f"{preset:22s} {sizes:24s} {r['epoch_s']:8.3f} {r['track_s']:8.3f} {r['ratio']:7.1f} "
              f"{r['track_first_s']:7.1f} {r['track_second_s']:7.1f} {r['mean_iterations']:6.0f}", flush=True)
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "jax": jax.__version__, "devices": [str(d) for d in jax.devices()]},
        "cases": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
