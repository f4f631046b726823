"""Solves and training split over devices.

Several devices are forced on the CPU (``XLA_FLAGS=--xla_force_host_platform_device_count=4``),
which must be set before JAX starts: those checks run in subprocesses. The chains are
single-layer Linear/Gaussian ones (closed-form channels, quick to compile).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import jaxreplica as jr
from jaxreplica.batched import batch_mesh, parse_devices, solve_batched, stack_chains


def _env(n_devices: int) -> dict:
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_devices}"
    return env


def _python(code: str, n_devices: int, timeout: int = 300) -> dict:
    """Run ``code`` in a fresh interpreter with ``n_devices`` CPU devices; it prints one JSON line last."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=_env(n_devices), capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- in process (one device)


def _chain(scale, noise):
    return jr.Chain(prior=jr.Normal(mean=0.0, var=1.0), layers=[(jr.Gaussian(alpha=0.7, scale=scale), jr.Linear(noise=noise))])


def test_stack_chains_and_argument_checks():
    chains = stack_chains([_chain(1.0, 0.1), _chain(2.0, 0.01)])
    assert np.asarray(chains.layers[0][0].scale).tolist() == [1.0, 2.0]
    assert np.asarray(chains.layers[0][1].noise).tolist() == [0.1, 0.01]
    assert np.asarray(chains.layers[0][0].alpha).shape == (2,)
    with pytest.raises(ValueError, match="empty"):
        stack_chains([])
    other = jr.Chain(prior=jr.Normal(), layers=[(jr.Gaussian(), jr.ReLU(noise=0.1))])
    with pytest.raises(ValueError, match="structure"):
        stack_chains([_chain(1.0, 0.1), other])
    e1 = jr.Chain(prior=jr.Normal(), layers=[(jr.Empirical(eigenvalues=np.ones(3)), jr.Linear(noise=0.1))])
    e2 = jr.Chain(prior=jr.Normal(), layers=[(jr.Empirical(eigenvalues=np.ones(4)), jr.Linear(noise=0.1))])
    with pytest.raises(ValueError, match="shapes"):
        stack_chains([e1, e2])
    with pytest.raises(ValueError, match="batch axis"):
        solve_batched(_chain(1.0, 0.1))
    with pytest.raises(ValueError, match="unknown solve arguments"):
        solve_batched(chains, tolerance=1e-3)
    with pytest.raises(ValueError, match="method"):
        solve_batched(chains, method="newton")
    with pytest.raises(ValueError, match="devices"):
        batch_mesh(0)
    with pytest.raises(ValueError, match="devices"):
        batch_mesh(10_000)
    with pytest.raises(ValueError, match="devices"):
        parse_devices("many")
    assert parse_devices("all") == "all" and parse_devices("2") == 2
    assert batch_mesh("all").devices.size == len(__import__("jax").devices())


# --------------------------------------------------------------------------- four forced devices


def test_sharded_solve_matches_vmap_on_four_devices():
    out = _python("""
        import json, jax, numpy as np
        import jaxreplica as jr
        from jaxreplica.batched import solve_batched, stack_chains

        n = 37
        scales, noises = np.linspace(0.5, 2.0, n), np.logspace(-3, -1, n)
        chains = stack_chains([jr.Chain(prior=jr.Normal(mean=0.0, var=1.0),
                                        layers=[(jr.Gaussian(alpha=0.7, scale=float(s)), jr.Linear(noise=float(d)))])
                               for s, d in zip(scales, noises)])
        ref = jax.jit(jax.vmap(jr.solve))(chains)
        sol = solve_batched(chains, devices="all")
        # a warm start from the sharded fixed points, on 3 devices (37 = 3 * 12 + 1: padded to 39)
        warm = solve_batched(chains, devices=3, init=sol.fixed_point)
        diff = lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        print(json.dumps({
            "n_devices": len(jax.devices()),
            "shape": list(sol.entropy.shape),
            "result_devices": len(sol.entropy.sharding.device_set),
            "diffs": {k: diff(getattr(sol, k), getattr(ref, k))
                      for k in ("entropy", "mutual_information", "last_layer_information", "mmse", "residual")},
            "fixed_point_diff": max(diff(a, b) for a, b in zip(jax.tree_util.tree_leaves(sol.fixed_point),
                                                                jax.tree_util.tree_leaves(ref.fixed_point))),
            "converged": bool(np.all(np.asarray(sol.converged))),
            "warm_diff": diff(warm.entropy, ref.entropy),
            "warm_devices": len(warm.entropy.sharding.device_set),
            "warm_iterations": int(np.max(np.asarray(warm.iterations))),
        }))
    """, 4)
    assert out["n_devices"] == 4 and out["shape"] == [37]
    assert out["result_devices"] == 4  # gathered (replicated) over the 4-device mesh
    assert out["converged"]
    for name, d in out["diffs"].items():
        assert d <= 1e-12, (name, d)
    assert out["fixed_point_diff"] <= 1e-12
    assert out["warm_devices"] == 3 and out["warm_diff"] <= 1e-9 and out["warm_iterations"] <= 3


def test_data_parallel_training_matches_one_device():
    out = _python("""
        import json, jax, numpy as np
        import jaxreplica as jr
        import jaxreplica.data as jd
        import jaxreplica.training as jt
        from jaxreplica.nn import build_network

        def run(**kw):
            data = jd.teacher_student(jax.random.key(0), 8, 4, noise=0.01, samples_per_dim=5)  # 40 samples
            net = build_network([8, 8, 4], ["linear", "linear"], [True, False], key=jax.random.key(1))
            # one batch of 40 per epoch: 5 epochs are 5 plain SGD steps
            _, h = jt.train(net, data, jax.random.key(0), jt.TrainConfig(epochs=5, batch_size=40, learning_rate=0.05, **kw),
                            tracking=jt.Tracking(every=0), progress=False)
            return h, net

        one, net1 = run()
        four, net4 = run(devices="all")
        flag, _ = run(devices=4)
        # the step really is split: its compiled program all-reduces across the 4 devices
        from flax import nnx
        import optax
        graphdef, params, frozen = nnx.split(net1, nnx.Param, ...)
        from jaxreplica.batched import batch_mesh
        mesh = batch_mesh("all")
        tx = optax.sgd(0.05)
        step = jt.make_step(graphdef, tx, "mse", mesh=mesh)
        x = np.zeros((40, 8)); y = np.zeros((40, 4))
        hlo = jax.jit(step).lower(params, tx.init(params), None, frozen, x, y).compile().as_text()
        w1 = np.asarray(net1.matrices()[0]); w4 = np.asarray(net4.matrices()[0])
        print(json.dumps({
            "batch_one": one.batch_loss[1:].tolist(), "batch_four": four.batch_loss[1:].tolist(),
            "train_one": one.train_loss.tolist(), "train_four": four.train_loss.tolist(),
            "train_flag": flag.train_loss.tolist(),
            "devices": four.config["training"]["devices"], "devices_one": one.config["training"]["devices"],
            "all_reduce": "all-reduce" in hlo, "weight_diff": float(np.max(np.abs(w1 - w4))),
        }))
    """, 4)
    assert out["devices"] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"] and out["devices_one"] is None
    assert len(out["batch_one"]) == 5
    np.testing.assert_allclose(out["batch_four"], out["batch_one"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out["train_four"], out["train_one"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out["train_flag"], out["train_one"], rtol=0, atol=1e-6)
    assert out["train_one"][-1] < out["train_one"][0]  # it did train
    assert out["weight_diff"] <= 1e-10
    assert out["all_reduce"]


def test_sweep_command_same_values_on_one_and_four_devices(tmp_path):
    args = ["-m", "jaxreplica", "sweep", "--activations", "linear", "--width", "50", "--sigmas", "0.5,1,2",
            "--devices", "all", "--no-progress"]
    procs = {n: subprocess.Popen([sys.executable, *args, "--out", str(tmp_path / f"d{n}")], env=_env(n),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in (1, 4)}
    results = {}
    for n, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-4000:]
        assert f"devices: {n} (" in stdout
        results[n] = json.loads((tmp_path / f"d{n}" / "sweep.json").read_text())
    assert results[1]["devices"] == ["cpu:0"]
    assert results[4]["devices"] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"]
    c1, c4 = results[1]["curves"]["linear"], results[4]["curves"]["linear"]
    for key in ("H1", "H2", "I1", "I2", "converged"):
        assert c1[key] == c4[key], key  # identical, not merely close
    assert all(all(c) for c in c1["converged"])
    assert (tmp_path / "d4" / "sweep.csv").read_text() == (tmp_path / "d1" / "sweep.csv").read_text()


@pytest.mark.slow
def test_sweep_on_two_processes(tmp_path):
    """``jax.distributed`` on one machine: 2 processes x 2 CPU devices = a 4-device mesh."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    args = ["-m", "jaxreplica", "sweep", "--activations", "linear", "--width", "50", "--sigmas", "0.5,1,2",
            "--devices", "all", "--no-progress", "--out", str(tmp_path / "mh"),
            "--coordinator", f"localhost:{port}", "--num-processes", "2"]
    procs = [subprocess.Popen([sys.executable, *args, "--process-id", str(i)], env=_env(2), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-4000:]
    assert all("devices: 4 (" in o and "in 2 process(es)" in o for o, _ in outs)
    result = json.loads((tmp_path / "mh" / "sweep.json").read_text())
    assert result["processes"] == 2 and len(result["devices"]) == 4
    ref = _python("""
        import json
        from jaxreplica.experiments.figure2 import run_sweep
        r = run_sweep(["linear"], [0.5, 1.0, 2.0], width=50, progress=False, devices="all")
        print(json.dumps(r["curves"]["linear"]))
    """, 1)
    for key in ("H1", "H2", "I1", "I2"):
        assert result["curves"]["linear"][key] == ref[key], key


@pytest.mark.slow
def test_shards_of_very_different_durations():
    """One device's shard runs over a minute, the other's a moment: no collective waits on it.

    (A gather inside the sharded computation made XLA's CPU runtime abort the process
    after 40 s: "Termination timeout for `all gather` ... of 40 seconds exceeded".)
    """
    out = _python("""
        import json, jax, jax.numpy as jnp, numpy as np
        import jaxreplica
        from jaxreplica.batched import sharded_vmap

        def count(n):  # about n / 7e7 seconds on one core
            def body(c):
                return c[0] + 1, jnp.sin(c[1]) + 1e-3
            return jax.lax.while_loop(lambda c: c[0] < n, body, (jnp.asarray(0.0), jnp.asarray(0.1)))[1]

        y = sharded_vmap(count, jnp.asarray([1e3, 6e9]), devices="all")
        print(json.dumps({"y": np.asarray(y).tolist(), "devices": len(y.sharding.device_set)}))
    """, 2, timeout=900)
    assert out["devices"] == 2 and len(out["y"]) == 2 and all(np.isfinite(out["y"]))
