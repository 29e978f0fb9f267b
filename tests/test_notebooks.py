"""The notebooks run, top to bottom, against the demo warehouse (they are stored without outputs)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from analytics.derive import derive
from sandbox.generate import generate
from tests.sandbox_load import load_org
from warehouse.engine import open_warehouse

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('notebooks') / 'demo.db'}"
    engine = open_warehouse(url)
    load_org(engine, generate(1, "demo"))
    derive(engine)
    engine.dispose()
    return url


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(
    path: Path, demo_warehouse: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    book = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in book.cells if cell.cell_type == "code"), (
        f"{path.name} is stored with outputs: clear them"
    )
    monkeypatch.setenv("CDMETRICS_WAREHOUSE__URL", demo_warehouse)
    monkeypatch.chdir(tmp_path)  # no cdmetrics.toml here: defaults plus the environment
    NotebookClient(book, timeout=120, kernel_name="python3").execute()
    errors = [
        o for c in book.cells for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors
