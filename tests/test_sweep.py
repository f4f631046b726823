"""The main job, ``jaxreplica sweep``, at a small size (the default path: no --devices)."""

import json

import numpy as np
import pytest

import jaxreplica as jr
from jaxreplica.experiments.figure2 import demo_spectra, figure2_chain


def test_sweep_command_small(tmp_path, capsys):
    from jaxreplica.cli import main

    out = tmp_path / "sweep"
    assert main(["sweep", "--activations", "linear,relu", "--width", "40", "--sigmas", "0.5,2",
                 "--out", str(out), "--no-progress"]) == 0
    for name in ("sweep.csv", "sweep.json", "sweep.png"):
        assert (out / name).exists()
    result = json.loads((out / "sweep.json").read_text())
    assert result["sigmas"] == [0.5, 2.0] and result["compile_seconds"] > 0
    eig1, eig2 = demo_spectra(40, 42)
    for name in ("linear", "relu"):
        curve = result["curves"][name]
        assert np.all(curve["converged"])
        for i, s in enumerate(result["sigmas"]):
            lay = jr.solve_layers(figure2_chain(name, eig1, eig2, s))
            assert abs(curve["H1"][i] - float(lay.entropy[0])) < 1e-10
            assert abs(curve["H2"][i] - float(lay.entropy[1])) < 1e-10
            assert abs(curve["I2"][i] - float(lay.mutual_information[1])) < 1e-10
    # linear, one layer: the replica entropy is the log-determinant
    for i, s in enumerate(result["sigmas"]):
        exact = 0.5 * np.mean(np.log1p(s * s * eig1 / 1e-5)) + 0.5 * np.log(2 * np.pi * np.e * 1e-5)
        assert abs(result["curves"]["linear"]["H1"][i] - exact) < 1e-9
    assert "8 entropies" in capsys.readouterr().out


def test_sweep_command_rejects_bad_input(tmp_path):
    from jaxreplica.cli import main

    with pytest.raises((SystemExit, ValueError)):
        main(["sweep", "--activations", "swish", "--width", "10", "--out", str(tmp_path), "--no-progress"])
    with pytest.raises((SystemExit, ValueError)):
        main(["sweep", "--width", "0", "--out", str(tmp_path), "--no-progress"])


@pytest.mark.slow
def test_sweep_fixed_point_matches_solve_layers():
    """The fixed-point path solves T_1 as its own one-layer chain (see replica_curves)."""
    from jaxreplica.experiments.figure2 import run_sweep

    # (small: the fixed-point scheme runs unaccelerated, hundreds of iterations)
    result = run_sweep(["relu"], [0.5], width=40, method="fixed_point", progress=False)
    eig1, eig2 = demo_spectra(40, 42)
    for name in ("relu",):
        for i, s in enumerate(result["sigmas"]):
            lay = jr.solve_layers(figure2_chain(name, eig1, eig2, s), "fixed_point")
            assert np.all(result["curves"][name]["converged"][i]) and np.all(np.asarray(lay.converged))
            np.testing.assert_allclose([result["curves"][name]["H1"][i], result["curves"][name]["H2"][i]],
                                       np.asarray(lay.entropy), atol=1e-10)


def test_replica_curves_vectorized_matches_map():
    """The accelerators' layout (one vmap over sigma per activation and layer) gives the
    CPU layout's values (run here on CPU)."""
    from jaxreplica.experiments.figure2 import replica_curves

    eig1, eig2 = demo_spectra(30, 42)
    runs = [replica_curves(["linear", "relu"], [0.5, 2.0, 4.0], eig1, eig2, progress=False, vectorize=v)[0]
            for v in (False, True)]
    for name in ("linear", "relu"):
        assert np.all(runs[0][name][2]) and np.all(runs[1][name][2])
        np.testing.assert_allclose(runs[1][name][0], runs[0][name][0], atol=1e-10)
        np.testing.assert_allclose(runs[1][name][1], runs[0][name][1], atol=1e-10)


SWEEP_PROCESS = """
import json, jaxreplica as jr
from jaxreplica import _programs
from jaxreplica.experiments.figure2 import demo_spectra, replica_curves
compiled = []
_compile = _programs._compile
_programs._compile = lambda *a: compiled.append(1) or _compile(*a)
eig1, eig2 = demo_spectra(40, 42)
curves = replica_curves(["linear", "relu"], [0.5, 2.0], eig1, eig2, progress=False)[0]
print(len(compiled), json.dumps({k: [v.tolist() for v in c] for k, c in curves.items()}))
"""


def test_the_sweep_program_is_kept_and_loaded_in_a_later_process(tmp_path):
    """The sweep's one program is keyed before tracing: a second process finds it on disk
    (nothing exported or traced again) and computes the same numbers."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, JAXREPLICA_CACHE_DIR=str(tmp_path))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)

    def run():
        out = subprocess.run([sys.executable, "-c", SWEEP_PROCESS], env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stderr
        count, values = out.stdout.strip().splitlines()[-1].split(" ", 1)
        return int(count), json.loads(values)

    first_count, first = run()
    assert first_count == 1 and len(list((tmp_path / "programs").iterdir())) == 1
    second_count, second = run()
    assert second_count == 0 and second == first
    eig1, eig2 = demo_spectra(40, 42)
    lay = jr.solve_layers(figure2_chain("relu", eig1, eig2, 2.0))
    assert abs(first["relu"][0][1][1] - float(lay.entropy[1])) < 1e-10
