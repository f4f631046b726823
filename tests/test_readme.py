"""Every ``python`` code block of README.md runs as written, each in a fresh interpreter
in an empty directory (blocks that are not meant to run are not marked ``python``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

BLOCKS = re.findall(r"^```python\n(.*?)^```", (REPO / "README.md").read_text(), flags=re.S | re.M)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i + 1}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
               MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("page", ["quantities.md", "training.md"])
def test_docs_python_blocks_run(page, tmp_path):
    """The Python blocks of a docs page, run one after the other in one interpreter."""
    blocks = re.findall(r"^```python\n(.*?)^```", (REPO / "docs" / page).read_text(), flags=re.S | re.M)
    assert blocks
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
               MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-c", "\n".join(blocks)], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
