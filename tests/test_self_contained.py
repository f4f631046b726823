"""The repository stands on its own: no file a user gets reads or cites a path outside it.

Scans the tests, the package, the notebooks, the docs, the benchmarks and the README for
references to a sibling folder of the repository (the development workspace's shared
material), which a clone does not have.
"""

from __future__ import annotations

import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCANNED = ("README.md", "pyproject.toml", ".ci", "tests", "jaxreplica", "notebooks", "docs", "bench")
SUFFIXES = {".py", ".md", ".ipynb", ".toml", ".yml", ".yaml", ".cfg", ".txt", ".json", ""}
# Built from pieces so that this file does not match itself.
SHARED = "sha" + "red"
FORBIDDEN = re.compile(r"\.\./+" + SHARED + r"\b|\b" + SHARED + r"/(reference|docs|papers)\b")
# The mathematical note of the development workspace, cited by name.
MATH_NOTE = re.compile(r"replica-" + r"math\.md")
# Engine modules whose docstrings still cite that note by name; their pointers move to
# docs/theory.md with the engine's own changes. Remove a module from here once it does.
MATH_NOTE_PENDING = {"jaxreplica/solvers.py", "jaxreplica/ensembles.py", "jaxreplica/chain.py",
                     "jaxreplica/priors.py", "jaxreplica/quadrature.py", "jaxreplica/exact.py",
                     "jaxreplica/channels.py", "jaxreplica/potential.py"}


def _files() -> list[pathlib.Path]:
    out = []
    for name in SCANNED:
        path = REPO / name
        if path.is_file():
            out.append(path)
        elif path.is_dir():
            out.extend(p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix in SUFFIXES
                       and "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts)
    return out


FILES = _files()


def test_scan_covers_the_repository():
    names = {p.relative_to(REPO).as_posix() for p in FILES}
    assert "README.md" in names and "tests/conftest.py" in names and "jaxreplica/solvers.py" in names
    assert any(n.startswith("notebooks/") for n in names) and any(n.startswith("docs/") for n in names)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_path_outside_the_repository(path):
    text = path.read_text(errors="replace")
    rel = path.relative_to(REPO).as_posix()
    hits = [m.group(0) for m in FORBIDDEN.finditer(text)]
    assert not hits, f"{rel} refers to a folder outside the repository: {hits}"
    if rel not in MATH_NOTE_PENDING:
        assert not MATH_NOTE.search(text), f"{rel} cites a note that is not in the repository; point to docs/ instead"
