"""Cost of an information-regularized training step against a plain one.

For each case a preset network and its data are built (``jaxreplica.experiments.presets.build``),
the training set is cut to ``--batches`` batches, and two jitted epochs are timed:

* plain: ``training.make_epoch(training.make_step(...))`` (task loss and its gradient);
* regularized: ``training.make_epoch(training.make_step(..., penalty=InformationPenalty(...)))``
  with ``beta I(X; T_l)/n_0`` on the given layer (warm-started replica solve of the
  chain ``prior -> generative -> layers 1..l`` and its envelope gradient in every
  step, plus one evaluation at the end of the epoch).

Reported per case: ``plain_step_s`` and ``reg_step_s`` (steady state: mean over the
timed epochs, divided by the number of steps), their ``ratio``; ``cold_s`` (the
penalty's first, multi-start solves, compilation included); ``compile_plain_s`` and
``compile_reg_s`` (first epoch minus a steady epoch); ``mean_iterations`` of the
warm-started solves; ``not_converged``.

Usage::

    python bench/bench_regularize.py            # small scale (CPU friendly)
    python bench/bench_regularize.py --paper    # also the paper's sizes (slow on a CPU)

Writes ``bench/results/regularize.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import jaxreplica  # noqa: E402,F401
import jaxreplica.training as jt  # noqa: E402
from jaxreplica.experiments.presets import build  # noqa: E402
from jaxreplica.training.step import penalty_summary  # noqa: E402

SMALL = [
    ("figure3", dict(width=100), 3, 0.1),
    ("recognition-relu", dict(scale="small"), 4, 0.1),
    ("recognition-hardtanh", dict(scale="small"), 4, 0.1),
]
PAPER = [
    ("figure3", dict(width=400), 3, 0.1),
    ("recognition-relu", dict(scale="paper"), 4, 0.1),
    ("recognition-hardtanh", dict(scale="paper"), 4, 0.1),
]


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    return out, time.perf_counter() - t0


def bench_case(preset: str, kwargs: dict, layer: int, beta: float, batches: int, epochs: int,
               solve_every: int = 1) -> dict:
    net, data, _ = build(preset, jax.random.key(0), **kwargs)
    batch = 100 if data.task == "classification" else 50
    n = batches * batch
    data = dataclasses.replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n])
    loss = "cross_entropy" if data.task == "classification" else "mse"
    tx = optax.sgd(0.01)
    graphdef, params, frozen = nnx.split(net, nnx.Param, ...)
    key = jax.random.key(0)

    plain = jt.make_epoch(jt.make_step(graphdef, tx, loss), batch)
    p, s = params, tx.init(params)
    plain_times = []
    for e in range(epochs + 1):
        (p, s, _, _), dt = _timed(plain, p, s, None, frozen, jax.random.fold_in(key, e), data.x_train, data.y_train)
        plain_times.append(dt)

    penalty = jt.InformationPenalty.for_network(net, data, {layer: beta}, solve_every=solve_every)
    t0 = time.perf_counter()
    _, pstate = penalty.initial(jt.singular_values(params, penalty.depth))
    jax.block_until_ready(pstate)
    cold_s = time.perf_counter() - t0
    reg = jt.make_epoch(jt.make_step(graphdef, tx, loss, penalty=penalty), batch, penalty_summary(penalty))
    p, s = params, tx.init(params)
    reg_times, iters, failed = [], [], 0
    for e in range(epochs + 1):
        (p, s, pstate, summary), dt = _timed(reg, p, s, pstate, frozen, jax.random.fold_in(key, e),
                                             data.x_train, data.y_train)
        reg_times.append(dt)
        iters.append(int(pstate.iterations[0]))
        failed += int(summary["not_converged"])
    steps = batches  # per epoch; the regularized epoch adds one solve without gradient
    plain_step = float(np.mean(plain_times[1:])) / steps
    reg_step = float(np.mean(reg_times[1:])) / steps
    return {
        "preset": preset, **kwargs, "sizes": list(net.sizes), "penalised_layer": layer, "beta": beta,
        "solve_every": solve_every,
        "batch_size": batch, "steps_per_epoch": steps, "timed_epochs": epochs,
        "plain_step_s": plain_step, "reg_step_s": reg_step, "ratio": reg_step / plain_step,
        "cold_s": cold_s,
        "compile_plain_s": plain_times[0] - float(np.mean(plain_times[1:])),
        "compile_reg_s": reg_times[0] - float(np.mean(reg_times[1:])),
        "mean_iterations": float(np.mean(iters[1:])), "not_converged": failed,
        "final_information": float(pstate.mutual_information[0]),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper", action="store_true", help="also the paper's sizes (slow on a CPU)")
    parser.add_argument("--only", nargs="*", default=None, help="presets to run (default all)")
    parser.add_argument("--batches", type=int, default=5, help="steps per timed epoch (default 5)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after the compiling one (default 2)")
    parser.add_argument("--solve-every", type=int, default=1,
                        help="the penalty's solve_every (default 1: a solve every step)")
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path(__file__).resolve().parent / "results" / "regularize.json")
    args = parser.parse_args(argv)
    cases = SMALL + (PAPER if args.paper else [])
    if args.only:
        cases = [c for c in cases if c[0] in args.only]
    results = []
    for preset, kwargs, layer, beta in cases:
        print(f"# {preset} {kwargs} layer {layer}", flush=True)
        results.append(bench_case(preset, kwargs, layer, beta, args.batches, args.epochs, args.solve_every))
        print(json.dumps(results[-1]), flush=True)
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    out = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "jax": jax.__version__, "devices": [f"{d.platform}:{d.id}" for d in jax.devices()],
                    "load_average_at_end": load},
        "cases": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    header = f"{'preset':22s} {'scale':>6s} {'layer':>5s} {'plain step s':>12s} {'reg step s':>11s} " \
             f"{'ratio':>8s} {'cold s':>7s} {'compile s':>9s} {'iters':>6s}"
    print(header)
    for r in results:
        scale = r.get("scale", f"w{r.get('width', '')}")
        print(f"{r['preset']:22s} {scale:>6s} {r['penalised_layer']:5d} {r['plain_step_s']:12.4g} "
              f"{r['reg_step_s']:11.4g} {r['ratio']:8.1f} {r['cold_s']:7.1f} {r['compile_reg_s']:9.1f} "
              f"{r['mean_iterations']:6.1f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
