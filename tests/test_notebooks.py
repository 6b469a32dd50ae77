"""Every notebook runs, in smoke mode (LRD_SMOKE=1: small experiments, files in a scratch folder), from its own folder
as Jupyter runs it, as a plain script; a notebook that raises fails the suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.py"))


def test_the_five_notebooks_are_there():
    names = [p.stem for p in NOTEBOOKS]
    for prefix in ("01_vanishing", "02_lstm", "03_truncated", "04_cost", "05_max_lag"):
        assert any(name.startswith(prefix) for name in names), prefix


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_mode(notebook, tmp_path):
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "LRD_SMOKE": "1",
        "MPLBACKEND": "Agg",
        "TMPDIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, notebook.name],
        cwd=notebook.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert (
        "LRD_SMOKE=1" in result.stdout or "running small" in result.stdout
    )  # it did not read committed results
    assert list(tmp_path.rglob("*.png")), "the notebook wrote no figure"


def test_notebooks_are_jupytext_percent_scripts():
    for notebook in NOTEBOOKS:
        text = notebook.read_text()
        assert "format_name: percent" in text and "# %% [markdown]" in text, notebook.name
        assert "**The claim.**" in text and "Verdict" in text, f"{notebook.name}: claim and verdict"
