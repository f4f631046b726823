"""Every notebook in ``notebooks/`` runs at small size in under a minute on a 2-core CPU
and draws every panel it sets up with data in it. The notebooks assert their own statements (slopes,
orderings) in their cells, so running them checks those too."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, execute_notebook

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
SMALL_SECONDS = 60.0


def test_notebooks_are_found():
    names = {p.name for p in NOTEBOOKS}
    assert {"figure2.ipynb", "figure3.ipynb", "figure4.ipynb", "figure5.ipynb", "single_neuron.ipynb",
            "information_regularization.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_small(path, tmp_path):
    seconds = execute_notebook(path, timeout=600, outdir=tmp_path)
    panels = json.loads((tmp_path / "panels.json").read_text())
    assert panels, f"{path.name} draws no figure"
    empty = [p for p in panels if p["artists"] == 0]
    assert not empty, f"{path.name}: empty panels {empty}"
    # Under a minute on a 2-core CPU: the wall time on an idle machine; on a machine busy with
    # other work (a parallel test run) the kernel's CPU time stands for it.
    cpu = float((tmp_path / "cpu_seconds.txt").read_text())
    assert min(seconds, cpu) < SMALL_SECONDS, (
        f"{path.name} took {seconds:.0f} s ({cpu:.0f} s of CPU) at small size (limit {SMALL_SECONDS:.0f} s)")
