"""What a student sees: no executed lesson shows a stray return value, a warning or a stuck progress bar.

The lessons are executed by ``make smoke`` (``python -m coursekit build --profile smoke --out
build/smoke``, which ``make test`` runs before the unit tests); this file scans those executed
notebooks. A lesson whose executed copy is missing, or older than its source, is skipped with the
reason. The scanner itself is tested on small hand-made notebooks, so it is known to catch each kind.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
SMOKE = Path(os.environ.get("CAMLIB_SMOKE_BUILD", REPO / "build" / "smoke"))
LESSONS = sorted((REPO / "lessons").glob("[0-9][0-9]_*.ipynb"))

PROGRESS = re.compile(r"\d+%\|")                       # tqdm's "  0%|          | 0/80"
WIDGET = "application/vnd.jupyter.widget-view+json"
RICH = ("text/html", "text/markdown", "image/png", "image/svg+xml", "text/latex", WIDGET)


def output_problems(nb) -> list[str]:
    """Every output a student should not see, as 'cell N: what' lines."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            data = out.get("data", {})
            text = out.get("text", "") if kind == "stream" else data.get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            where = f"cell {i}"
            if kind == "execute_result" and not any(k in data for k in RICH):
                found.append(f"{where}: stray return value {text[:80]!r} (end the cell with a statement, or print)")
            if kind == "stream" and out.get("name") == "stderr":
                found.append(f"{where}: stderr output {text.strip()[:120]!r}")
            elif kind == "stream" and "Warning" in text:
                found.append(f"{where}: a warning in the output {text.strip()[:120]!r}")
            if PROGRESS.search(text):
                what = "a progress-bar widget" if WIDGET in data else "progress-bar text"
                found.append(f"{where}: {what} {text.strip()[:60]!r} (a static page shows it stuck)")
    return found


def _code(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


# ------------------------------------------------------------------------------ the scanner itself
def _nb(*outputs):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), nbformat.v4.new_code_cell("x", outputs=list(outputs))]
    return nb


CLEAN = [nbformat.v4.new_output("stream", name="stdout", text="[PASS] a claim -- ours: 0.9\n"),
         nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure size 640x480>"}),
         nbformat.v4.new_output("display_data", data={"text/markdown": "## Summary", "text/plain": "<Markdown>"}),
         nbformat.v4.new_output("display_data", data={WIDGET: {"model_id": "a"}, "text/plain": "VBox(children=...)"}),
         nbformat.v4.new_output("execute_result", data={"text/html": "<table/>", "text/plain": "df"}, execution_count=1)]


@pytest.mark.parametrize("bad, why", [
    (nbformat.v4.new_output("execute_result", data={"text/plain": "{'claim': 'x', 'passed': True}"}, execution_count=1),
     "stray return value"),
    (nbformat.v4.new_output("execute_result", data={"text/plain": "[<matplotlib.lines.Line2D at 0x7f>]"},
                            execution_count=1), "stray return value"),
    (nbformat.v4.new_output("stream", name="stderr", text="x.py:7: UserWarning: Converting a tensor with requires_grad"),
     "stderr"),
    (nbformat.v4.new_output("stream", name="stdout", text="RuntimeWarning: invalid value"), "a warning"),
    (nbformat.v4.new_output("stream", name="stdout", text="train:   0%|          | 0/80 [00:00<?, ?step/s]"),
     "progress-bar text"),
    (nbformat.v4.new_output("display_data", data={WIDGET: {"model_id": "b"},
                                                  "text/plain": "small-cnn-gap:   0%|          | 0/80"}),
     "progress-bar widget"),
])
def test_scanner_finds_each_kind(bad, why):
    assert output_problems(_nb(*CLEAN)) == []
    found = output_problems(_nb(*CLEAN, bad))
    assert len(found) == 1 and why in found[0], found


# ------------------------------------------------------------------------------ the executed lessons
@pytest.mark.parametrize("source", LESSONS, ids=[p.stem for p in LESSONS])
def test_executed_lesson_shows_no_noise(source):
    executed = SMOKE / source.name
    if not executed.exists():
        pytest.skip(f"{executed} is missing: `make smoke` (part of `make test`) executes the lessons into {SMOKE}")
    nb = nbformat.read(executed, as_version=4)
    if _code(nb) != _code(nbformat.read(source, as_version=4)):
        pytest.skip(f"{executed} was made from an older {source.name}: run `make smoke` again")
    errors = [c for c in nb.cells if c.cell_type == "markdown" and "build-error" in c.get("metadata", {}).get("tags", [])]
    assert not errors, f"{source.stem} failed in the smoke build: {errors[0].source}"
    problems = output_problems(nb)
    assert not problems, f"{source.stem} shows what a student should not see:\n  " + "\n  ".join(problems)
