"""Cost of the smooth activations: the Figure-2 sweep with tanh in place of hardtanh, and a
noisy two-layer tanh sweep (noise after every activation), against the hardtanh sweep in
the same run.

    python bench/bench_activations.py           # 9 weight scales, width 1000
    python bench/bench_activations.py --quick   # 3 weight scales

Each row is one call of :func:`jaxreplica.experiments.figure2.run_sweep` (the program of
``jaxreplica sweep``: both layers' entropies for every weight scale), its compilation
and its solves timed separately. The first four rows sweep one activation each and are
compared with the hardtanh row; the noisy tanh row is also compared with the same noisy
network with hardtanh (the cost of the activation alone: a noisy network also solves
its conditional chain). The last two are the whole Figure-2 sweep (linear, hardtanh and
ReLU) and the same with tanh in place of hardtanh, compared with each other. Then one
evaluation of a hidden layer's functions (free entropy, ``Ahat``, ``Vhat``), tanh beside
hardtanh, with the full rules, the coarse ones a multi-start surveys with and the rough ones
it scouts with first (smooth chains only), at three points ``(A, V, rho)``: the unit a
sweep's cost is made of. Prints the tables and writes
``bench/results/activations.json``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
from _results import machine, write

from jaxreplica.experiments.figure2 import DEFAULT_SIGMAS, run_sweep

HERE = pathlib.Path(__file__).resolve().parent
EVALUATION_POINTS = ((2.0, 0.3, 1.0), (50.0, 0.05, 3.0), (1e3, 1e-3, 10.0))  # (A, V, rho)
EVALUATION_RUNS = 30
NOISY = dict(noise=0.01, hidden_noise=0.01, noise_position="after")
# name: (the rows it is compared with, the curve whose values are recorded, run_sweep's arguments)
CASES = {
    "hardtanh": (("hardtanh",), "hardtanh", dict(activations=["hardtanh"])),
    "tanh": (("hardtanh",), "tanh", dict(activations=["tanh"])),
    "hardtanh, noisy (0.01 after every layer)": (("hardtanh",), "hardtanh", dict(activations=["hardtanh"], **NOISY)),
    "tanh, noisy (0.01 after every layer)": (("hardtanh", "hardtanh, noisy (0.01 after every layer)"), "tanh",
                                             dict(activations=["tanh"], **NOISY)),
    "Figure 2: linear, hardtanh, ReLU": (("Figure 2: linear, hardtanh, ReLU",), "hardtanh",
                                         dict(activations=["linear", "hardtanh", "relu"])),
    "Figure 2 with tanh: linear, tanh, ReLU": (("Figure 2: linear, hardtanh, ReLU",), "tanh",
                                               dict(activations=["linear", "tanh", "relu"])),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 weight scales instead of 9")
    p.add_argument("--out", type=pathlib.Path, default=HERE / "results" / "activations.json")
    args = p.parse_args(argv)
    sigmas = list(DEFAULT_SIGMAS)[::4] if args.quick else list(DEFAULT_SIGMAS)
    rows = {}
    for name, (bases, shown, kwargs) in CASES.items():
        res = run_sweep(sigmas=sigmas, width=1000, progress=False, **kwargs)
        curve = res["curves"][shown]
        rows[name] = {"compile_seconds": res["compile_seconds"], "solve_seconds": res["solve_seconds"],
                      "converged": bool(all(np.all(c["converged"]) for c in res["curves"].values())),
                      "compared_with": bases[0], "H2": curve["H2"], "I2": curve["I2"]}
        if len(bases) > 1:
            rows[name]["also_compared_with"] = bases[1]
    print(f"2 x {len(sigmas)} entropies per activation (two layers x {len(sigmas)} weight scales, width 1000)")
    print(f"{'sweep':<40} {'compile s':>10} {'solve s':>9} {'solve ratio':>12} {'total ratio':>12} "
          f"{'converged':>10}  compared with")
    for name, r in rows.items():
        base = rows[r["compared_with"]]
        r["solve_ratio"] = r["solve_seconds"] / base["solve_seconds"]
        r["total_ratio"] = (r["solve_seconds"] + r["compile_seconds"]) / (base["solve_seconds"] + base["compile_seconds"])
        also = ""
        if "also_compared_with" in r:
            other = rows[r["also_compared_with"]]
            r["also_solve_ratio"] = r["solve_seconds"] / other["solve_seconds"]
            also = f" ({r['also_solve_ratio']:.2f}x by solve time against {r['also_compared_with']})"
        print(f"{name:<40} {r['compile_seconds']:10.2f} {r['solve_seconds']:9.2f} {r['solve_ratio']:11.2f}x "
              f"{r['total_ratio']:11.2f}x {'yes' if r['converged'] else 'NO':>10}  {r['compared_with']}{also}")
    evaluations = evaluation_times()
    print(f"one evaluation of a hidden layer's functions, ms (median of {EVALUATION_RUNS})")
    print(f"{'(A, V, rho)':<22} {'rules':<7} {'tanh':>8} {'hardtanh':>9} {'ratio':>7}")
    for e in evaluations:
        print(f"{str(tuple(e['point'])):<22} {e['rules']:<7} {e['tanh_ms']:8.2f} {e['hardtanh_ms']:9.2f} "
              f"{e['tanh_ms'] / e['hardtanh_ms']:6.1f}x")
    write(args.out, {"machine": machine(), "sigmas": sigmas, "rows": rows, "evaluations": evaluations})
    return 0


def evaluation_times() -> list:
    """Milliseconds of one jitted evaluation of ``hidden_functions`` (median of
    ``EVALUATION_RUNS``, tanh and hardtanh interleaved) at each point, full, coarse and rough
    rules."""
    import jax
    import jax.numpy as jnp

    import jaxreplica as jr
    from jaxreplica.quadrature import DEFAULT

    out = []
    for point in EVALUATION_POINTS:
        args = tuple(jnp.float64(x) for x in point)
        for rules, cfg in (("full", DEFAULT), ("coarse", DEFAULT.coarse()), ("rough", DEFAULT.rough())):
            fns = {name: jax.jit(lambda A, V, rho, ch=ch, cfg=cfg: ch.hidden_functions(A, V, rho, cfg))
                   for name, ch in (("tanh", jr.Tanh(noise=0.0)), ("hardtanh", jr.HardTanh(noise=0.0)))}
            times = {name: [] for name in fns}
            for fn in fns.values():
                jax.block_until_ready(fn(*args))
            for _ in range(EVALUATION_RUNS):
                for name, fn in fns.items():
                    start = time.perf_counter()
                    jax.block_until_ready(fn(*args))
                    times[name].append(time.perf_counter() - start)
            out.append({"point": list(point), "rules": rules,
                        **{f"{name}_ms": 1e3 * float(np.median(t)) for name, t in times.items()}})
    return out


if __name__ == "__main__":
    sys.exit(main())
