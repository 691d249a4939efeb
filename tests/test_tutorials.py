"""Every notebook in tutorials/ runs top to bottom, with small settings, as a user would run it."""

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))

# Notebooks read their run sizes from these variables (defaults are for real work).
SMALL_SETTINGS = {
    "PPL_TUTORIAL_SAMPLES": "200",
    "PPL_TUTORIAL_WARMUP": "200",
    "PPL_TUTORIAL_CHAINS": "2",
}
CELL_TIMEOUT_S = 600
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # kernel tracebacks come coloured


def test_tutorials_are_found():
    """An empty glob would make the parametrized test below vanish without a failure."""
    assert any(nb.name == "01_quickstart.ipynb" for nb in NOTEBOOKS)


def _failed_cell(nb):
    """Index and source of the first code cell whose outputs hold an error."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and any(
            out.get("output_type") == "error" for out in cell.get("outputs", [])
        ):
            return index, cell.source
    return None, ""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[nb.name for nb in NOTEBOOKS])
def test_tutorial_runs(path, monkeypatch):
    # The kernel inherits this process's environment: small settings, and the ppl under
    # test first on its path (harmless when the project is pip-installed).
    for name, value in SMALL_SETTINGS.items():
        monkeypatch.setenv(name, value)
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", pythonpath)

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(TUTORIALS)}},
    )
    try:
        client.execute()
    except CellExecutionError as err:
        error = ANSI_ESCAPE.sub("", str(err))
    else:
        return
    index, source = _failed_cell(nb)
    pytest.fail(
        f"{path.name}: cell {index} (0-based, markdown cells counted) failed.\n"
        f"--- cell source ---\n{source}\n--- error ---\n{error}",
        pytrace=False,
    )
