"""The command line refuses bad input before computing anything: one line on stderr,
exit status 2, no traceback; a diverging training run stops and says so."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO

BAD = [
    ("sweep", "--sigmas", "abc"),
    ("sweep", "--sigmas", "1,,2"),
    ("sweep", "--sigmas", "nan"),
    ("sweep", "--sigmas", "1e6"),
    ("sweep", "--sigmas", "-1"),
    ("sweep", "--activations", ""),
    ("sweep", "--activations", "relu,softmax"),
    ("sweep", "--noise", "-1"),
    ("sweep", "--noise", "0"),
    ("sweep", "--width", "1.5"),
    ("sweep", "--devices", "0"),
    ("sweep", "--devices", "100000"),
    ("train", "--preset", "figure3", "--devices", "100000", "--out", "{tmp}"),
    ("sweep", "--coordinator", "localhost:1"),
    ("sweep", "--out", "/proc/x"),
    ("figure2", "--out", "/proc/x"),
    ("figure2", "--k", "0"),
    ("figure2", "--samples", "3", "--k", "3"),
    ("figure2", "--activations", "probit"),
    ("train", "--preset", "figure3", "--epochs", "0", "--out", "{tmp}"),
    ("train", "--preset", "figure3", "--lr", "-1", "--out", "{tmp}"),
    ("train", "--preset", "figure3", "--info-penalty", "x", "--out", "{tmp}"),
    ("train", "--preset", "figure3", "--info-penalty", "5:0.1", "--out", "{tmp}"),
    ("train", "--preset", "nope", "--out", "{tmp}"),
    ("train", "--preset", "figure3", "--out", "/proc/x"),
    ("train", "--preset", "figure3", "--batch-size", "100000", "--out", "{tmp}"),
    ("nope",),
    ("sweep", "--hiden-noise", "0.1"),
    ("train", "--preset", "figure3", "--learning-rate", "0.1", "--out", "{tmp}"),
    ("--bogus",),
]


def _run(args, cwd, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "jaxreplica", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


# Typical typos, run as a user would (a new process each).
AS_A_PROCESS = [("sweep", "--sigmas", "abc"), ("sweep", "--activations", ""), ("sweep", "--noise", "-1"),
                ("sweep", "--out", "/proc/x"), ("figure2", "--out", "/proc/x"), ("figure2", "--k", "0"),
                ("sweep", "--sigmas", "1e6"), ("train", "--preset", "figure3", "--epochs", "0", "--out", "{tmp}")]


def _check_refused(code, stdout, stderr, tmp_path):
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "error" in lines[0]
    assert stdout == ""
    # nothing was computed, so nothing was written
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("args", BAD, ids=lambda a: " ".join(a))
def test_bad_input_is_one_line_and_status_2(args, tmp_path, capsys):
    from jaxreplica.cli import main

    try:
        code = main([a.format(tmp=tmp_path / "out") for a in args])
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    _check_refused(code, captured.out, captured.err, tmp_path)


@pytest.mark.parametrize("args", AS_A_PROCESS, ids=lambda a: " ".join(a))
def test_bad_input_as_a_process(args, tmp_path):
    proc = _run([a.format(tmp=tmp_path / "out") for a in args], cwd=tmp_path, timeout=120)
    _check_refused(proc.returncode, proc.stdout, proc.stderr, tmp_path)


@pytest.mark.parametrize("args, line", [
    (("sweep", "--hiden-noise", "0.1"),
     "jaxreplica sweep: error: unrecognized arguments: --hiden-noise 0.1; did you mean --hidden-noise? "
     "(see jaxreplica sweep --help)"),
    (("train", "--preset", "figure3", "--info_penalty", "3:0.1", "--out", "{tmp}"),
     "jaxreplica train: error: unrecognized arguments: --info_penalty 3:0.1; did you mean --info-penalty? "
     "(see jaxreplica train --help)"),
    (("figure2", "--depth", "9"), "jaxreplica figure2: error: unrecognized arguments: --depth 9 "
                                  "(see jaxreplica figure2 --help)"),
])
def test_unknown_flag_names_its_command_and_the_closest_flag(args, line, tmp_path, capsys):
    """A flag the command does not take is refused by that command's parser (whose
    ``--help`` lists its flags), with the closest flag it takes where one is close."""
    from jaxreplica.cli import main

    with pytest.raises(SystemExit) as stop:
        main([a.format(tmp=tmp_path / "out") for a in args])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == line
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("command", ["sweep", "figure2", "train"])
def test_help_of_every_command(command, capsys):
    from jaxreplica.cli import main

    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0 and "--out" in capsys.readouterr().out


def test_diverging_training_stops_and_says_so(tmp_path):
    out = tmp_path / "run"
    proc = _run(["train", "--preset", "figure3", "--lr", "1e6", "--epochs", "5", "--out", str(out)], cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("jaxreplica train: loss diverged at epoch 1")
    # what it had was written: the history up to the diverged epoch
    from jaxreplica.training import History

    hist = History.load(out)
    assert hist.diverged_at_epoch == 1 and len(hist.epoch) == 2
    assert (out / "summary.json").exists()


def test_failed_points_are_named():
    from jaxreplica._cmd_figure2 import failed_points
    from jaxreplica._cmd_sweep import failed_rows

    sweep = {"sigmas": [1.0, 1000.0], "curves": {"linear": {
        "H1": [1.0, 7.8], "H2": [2.0, float("nan")], "I1": [1.0, 1.0], "I2": [1.0, float("nan")],
        "converged": [[True, True], [True, False]]}}}
    assert failed_rows(sweep) == ["linear sigma=1000: T_2 not converged, H2 nan, I2 nan"]
    fig2 = {"sigmas": [1.0, 1000.0], "curves": {"relu": {
        "replica": [[1.0, 2.0], [3.0, float("inf")]], "replica_converged": [[True, True], [True, True]]}}}
    assert failed_points(fig2) == ["relu sigma=1000: H(T_2) inf"]


def test_figure2_table_is_aligned(capsys):
    import numpy as np

    from jaxreplica._cmd_figure2 import COLUMNS, print_tables

    rng = np.random.default_rng(0)
    curve = {key: rng.normal(size=(3, 2)) * 10 for key, _, _ in COLUMNS}
    print_tables({"sigmas": [0.1, 1.0, 1000.0], "curves": {"hardtanh": curve}}, k=3, n_samples=100)
    lines = capsys.readouterr().out.splitlines()
    table = lines[lines.index("hardtanh") + 1:][:2 + 3]  # two header lines, three sigmas
    assert len({len(line) for line in table}) == 1, table
    for _, label, what in COLUMNS:  # every column is named in full and explained
        assert label in table[0] and any(what in line for line in lines)
