"""The documentation in ``docs/`` builds with MkDocs in strict mode: any warning (a broken
link or anchor, a page missing from the navigation, a docstring the API reference cannot
render) fails the build."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO


def test_docs_build_strict(tmp_path):
    import mkdocs  # noqa: F401  (the docs extra: pip install -e ".[docs]", included in dev)

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    for page in ("index.html", "theory/index.html", "quantities/index.html", "accuracy/index.html",
                 "api/engine/index.html"):
        assert (tmp_path / "site" / page).exists(), page
    engine = (tmp_path / "site" / "api" / "engine" / "index.html").read_text()
    assert "jaxreplica.solve" in engine and "Solution" in engine
