"""``examples/notebook.ipynb`` executed headless in a real Jupyter kernel, against FakeOllama.

The kernel is a separate process that finds the server through ``OLLAMA_HOST``, exactly as a
user's notebook finds theirs. The assertions read the cell outputs a person would see.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ollama_ready.testing import FakeOllama

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "notebook.ipynb"


@pytest.fixture(scope="module")
def executed() -> Iterator[tuple[Any, FakeOllama]]:
    """Run the whole notebook once; yield it with its outputs and the server it used."""
    # 1.3 GB at 2 GB/s: a pull of about a second, long enough for the bar to be redrawn.
    with (
        FakeOllama(tick=0.02, bandwidth=2_000_000_000) as server,
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setenv("OLLAMA_HOST", server.url)
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        client = nbclient.NotebookClient(
            notebook,
            timeout=120,
            kernel_name="python3",
            resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        )
        client.execute()
        yield notebook, server


def code_cells(notebook: Any) -> list[Any]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def outputs(cell: Any, output_type: str) -> list[Any]:
    return [out for out in cell.outputs if out.output_type == output_type]


def test_the_stored_notebook_has_no_outputs() -> None:
    stored = json.loads(NOTEBOOK.read_text())
    nbformat.validate(nbformat.reads(NOTEBOOK.read_text(), as_version=4))
    for cell in stored["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == []
            assert cell["execution_count"] is None


def test_setup_cell_shows_the_result_as_a_table(executed: tuple[Any, FakeOllama]) -> None:
    notebook, server = executed
    setup = code_cells(notebook)[0]
    assert not outputs(setup, "error")
    (result,) = outputs(setup, "execute_result")
    html = result.data["text/html"]
    assert html.startswith("<table class='ollama-ready-result'>")
    for text in ("llama3.2:1b", server.url, "0.12.11", "100% CPU", "yes"):
        assert f">{text}<" in html
    assert result.data["text/plain"].startswith("EnsureResult(model='llama3.2:1b', host=")
    assert server.count("POST", "/api/pull") == 1
    assert server.is_loaded("llama3.2:1b")


def test_setup_cell_shows_progress(executed: tuple[Any, FakeOllama]) -> None:
    notebook, _ = executed
    setup = code_cells(notebook)[0]
    if importlib.util.find_spec("ipywidgets") is not None:  # the widget: tqdm.auto's choice
        views = [
            out
            for out in outputs(setup, "display_data")
            if "application/vnd.jupyter.widget-view+json" in out.data
        ]
        assert views
        return
    # Without ipywidgets tqdm.auto falls back to a text bar on stderr: readable, not a widget.
    text = "".join(out.text for out in outputs(setup, "stream") if out.name == "stderr")
    assert "llama3.2:1b" in text
    assert "100%" in text
    assert "GB" in text
    assert not outputs(setup, "display_data")


def test_doctor_cell_renders_its_report(executed: tuple[Any, FakeOllama]) -> None:
    notebook, server = executed
    doctor = code_cells(notebook)[1]
    assert not outputs(doctor, "error")
    (result,) = outputs(doctor, "execute_result")
    assert "ollama-ready doctor" in result.data["text/html"]
    assert server.url in result.data["text/html"]
    assert result.data["text/plain"].startswith("DoctorReport(ok=True")


def test_the_model_answers_after_setup(executed: tuple[Any, FakeOllama]) -> None:
    notebook, server = executed
    generate = code_cells(notebook)[2]
    (result,) = outputs(generate, "execute_result")
    assert result.data["text/plain"] == "'This is a reply from FakeOllama.'"
    assert server.count("POST", "/api/generate") == 2  # the load, then the prompt
