"""Shared test helpers: float64, the test data of ``tests/data``, notebook execution."""

from __future__ import annotations

import json
import os
import pathlib

import pytest

import jaxreplica  # noqa: F401  (switches on float64)

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"


def load_reference(name: str):
    """A file of ``tests/data`` (JSON as a dict, ``.npz`` as NumPy arrays).

    A missing file raises: a test that has nothing to compare with fails."""
    path = DATA / name
    if not path.exists():
        raise FileNotFoundError(f"test data {path} is missing (see tests/data/README.md)")
    if path.suffix == ".json":
        return json.loads(path.read_text())
    import numpy as np

    return np.load(path)


# Appended to a notebook under test: every open figure is saved, and each of its axes
# reports how many artists with finite data it holds (lines, collections, images, bars).
PANEL_REPORT = """
import json as _json, math as _math, pathlib as _pathlib
import numpy as _np
import matplotlib.pyplot as _plt

def _finite(values):
    try:
        a = _np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return False
    return a.size > 0 and bool(_np.isfinite(a).any())

def _artists_with_data(ax):
    n = sum(_finite(l.get_xdata()) and _finite(l.get_ydata()) for l in ax.lines)
    for c in ax.collections:
        offsets = c.get_offsets()
        paths = c.get_paths()
        n += bool((len(offsets) and _finite(offsets)) or any(len(p.vertices) and _finite(p.vertices) for p in paths))
    n += len(ax.images) + sum(p.get_height() != 0 for p in ax.patches if hasattr(p, "get_height"))
    return int(n)

import resource as _resource
_usage = _resource.getrusage(_resource.RUSAGE_SELF)
_pathlib.Path({outdir!r}, "cpu_seconds.txt").write_text(str(_usage.ru_utime + _usage.ru_stime))
_report = []
for _num in _plt.get_fignums():
    _fig = _plt.figure(_num)
    _fig.savefig(_pathlib.Path({outdir!r}) / f"figure{{_num}}.png", dpi=60)
    for _i, _ax in enumerate(_fig.axes):
        if _ax.get_visible() and _ax.axison:
            _report.append({{"figure": _num, "axes": _i, "title": _ax.get_title(), "artists": _artists_with_data(_ax)}})
_pathlib.Path({outdir!r}, "panels.json").write_text(_json.dumps(_report))
"""


def execute_notebook(path: pathlib.Path, timeout: int = 600, outdir: pathlib.Path | None = None) -> float:
    """Execute a notebook at small size (``JAXREPLICA_NOTEBOOK_SIZE=small``); returns the
    wall time in seconds (kernel start included).

    Every notebook in ``notebooks/`` reads that variable in its first code cell and
    shrinks its problem sizes accordingly. The kernel imports this checkout's package
    and draws with the non-interactive Agg backend, so that figures stay open; with
    ``outdir`` a last cell saves each figure there and writes ``panels.json`` (per
    axes, the number of artists holding finite data) and ``cpu_seconds.txt`` (the
    kernel's CPU time, imports included).
    """
    import time

    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    os.environ["JAXREPLICA_NOTEBOOK_SIZE"] = "small"
    os.environ["MPLBACKEND"] = "Agg"
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    nb = nbformat.read(str(path), as_version=4)
    if outdir is not None:
        nb.cells.append(nbformat.v4.new_code_cell(PANEL_REPORT.format(outdir=str(outdir))))
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start
