"""Every notebook in notebooks/ runs as a notebook, in a Jupyter kernel, from its own folder.

nbclient executes the cells in order; a cell that raises (a failed ``assert`` included) fails
the test with that cell's source and traceback (nbclient's ``CellExecutionError``). The
``notebooks`` extra (``pip install -e '.[notebooks]'``) provides nbclient, nbformat and
ipykernel.
"""
import nbclient
import nbformat
import pytest

from .conftest import ROOT

NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]


def test_gallery_is_not_empty():
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs(path):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()      # raises CellExecutionError naming the failing cell


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_clean_and_checks_its_result(path):
    """Saved without outputs (diffs stay readable, nothing stale is shown), and the last cell
    asserts something about the notebook's result, so running it tests it."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name}: no code cells"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell {i} has outputs; clear them"
            assert cell.execution_count is None, f"{path.name}: cell {i} has an execution count"
    assert nb.cells[0].cell_type == "markdown", f"{path.name}: start with a markdown intro"
    last = nb.cells[-1]
    assert last.cell_type == "code" and "assert" in last.source, \
        f"{path.name}: the last cell must be a code cell that asserts a fact about the result"
