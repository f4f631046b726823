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


def execute_notebook(path: pathlib.Path, timeout: int = 600) -> None:
    """Execute a notebook at small size (``JAXREPLICA_NOTEBOOK_SIZE=small``).

    Every notebook in ``notebooks/`` reads that variable in its first code cell and
    shrinks its problem sizes accordingly, so the test suite runs it in seconds.
    """
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    os.environ["JAXREPLICA_NOTEBOOK_SIZE"] = "small"
    os.environ.setdefault("MPLBACKEND", "Agg")
    nb = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
