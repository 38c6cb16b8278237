"""The Colab cells: built from camlib.REPO_URL, a no-op off Colab, the right steps on (a faked) Colab,
kept in sync by `python -m coursekit sync-colab`, present in every lesson."""

import os
import subprocess
import sys
import types
from importlib.metadata import version
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import camlib
from camlib import colab
from coursekit import colab_cells, course


def test_badge_links_to_the_lesson_in_colab():
    src = colab_cells.badge_source("01_gap_vs_gmp.ipynb", "https://github.com/someone/cam-course")
    assert ("(https://colab.research.google.com/github/someone/cam-course/blob/main/lessons/01_gap_vs_gmp.ipynb)"
            in src)
    assert colab_cells.BADGE_IMAGE in src
    assert colab_cells.github_slug(camlib.REPO_URL) in colab_cells.badge_source("00_introduction.ipynb")


def test_bad_addresses_are_refused():
    with pytest.raises(ValueError, match="expected a GitHub URL"):
        colab_cells.github_slug("https://gitlab.com/a/b")
    with pytest.raises(ValueError, match="expected a notebook file name"):
        colab_cells.colab_url("lessons/01.ipynb")


def run_setup(source: str) -> dict:
    namespace: dict = {}
    exec(compile(source, "<colab-setup>", "exec"), namespace)
    return namespace


def test_setup_cell_does_nothing_off_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)

    def no_subprocess(*a, **k):
        raise AssertionError("the set-up cell must not run anything off Colab")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    ns = run_setup(colab_cells.setup_source())
    assert ns["USE_DRIVE"] is False and not colab.in_colab()
    assert f"camlib @ git+{camlib.REPO_URL}" in colab_cells.setup_source()  # the URL, literally, from one place


@pytest.fixture
def fake_colab(monkeypatch, tmp_path):
    """A stand-in for Colab's modules that records what the cell asks of them."""
    calls = []
    google = types.ModuleType("google")
    gcolab = types.ModuleType("google.colab")
    gcolab.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append("widgets"))
    gcolab.drive = types.SimpleNamespace(mount=lambda where: calls.append(("mount", where)))
    google.colab = gcolab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", gcolab)
    monkeypatch.setattr(subprocess, "run", lambda cmd, check: calls.append(("run", cmd)))
    monkeypatch.setattr(os, "makedirs", lambda path, exist_ok: calls.append(("makedirs", path)))
    monkeypatch.delenv("CAMLIB_DATA", raising=False)
    return calls


def test_setup_cell_on_colab_installs_keeping_torch(fake_colab, monkeypatch):
    import importlib.util

    assert colab.in_colab()
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "camlib" else real_find_spec(name))
    ns = run_setup(colab_cells.setup_source("https://github.com/someone/cam-course"))
    (_, cmd), widgets = fake_colab
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"]
    assert cmd[-1] == "camlib @ git+https://github.com/someone/cam-course"
    constraints = Path(cmd[cmd.index("-c") + 1]).read_text()
    assert f"torch=={version('torch')}" in constraints and f"torchvision=={version('torchvision')}" in constraints
    # Colab's ipywidgets (7.7) is kept too: pyproject's floor accepts it, the constraint guarantees it
    assert f"ipywidgets=={version('ipywidgets')}" in constraints
    assert widgets == "widgets" and ns["USE_DRIVE"] is False and "CAMLIB_DATA" not in os.environ


def test_setup_cell_on_colab_with_drive(fake_colab):
    source = colab_cells.setup_source().replace("USE_DRIVE = False", "USE_DRIVE = True")
    run_setup(source)  # camlib is importable here, so nothing is installed
    assert fake_colab == ["widgets", ("mount", "/content/drive"), ("makedirs", colab.DRIVE_DATA_DIR)]
    assert os.environ["CAMLIB_DATA"] == colab.DRIVE_DATA_DIR


def lesson(cells=None):
    return new_notebook(cells=cells or [new_markdown_cell("# Lesson"), new_code_cell("x = 1", metadata={"k": 1})],
                        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})


def test_apply_inserts_once_and_keeps_the_rest():
    nb = lesson()
    rest = [dict(c) for c in nb.cells]
    assert colab_cells.apply_colab_cells(nb, "03_localization.ipynb")
    assert [c.metadata["tags"] for c in nb.cells[:2]] == [[colab_cells.BADGE_TAG], [colab_cells.SETUP_TAG]]
    assert [dict(c) for c in nb.cells[2:]] == rest
    assert not colab_cells.apply_colab_cells(nb, "03_localization.ipynb")  # already up to date
    nbformat.validate(nb)


def test_apply_replaces_stale_cells_wherever_they_are():
    nb = lesson()
    colab_cells.apply_colab_cells(nb, "03_localization.ipynb", "https://github.com/old/place")
    old_id = nb.cells[1]["id"]
    nb.cells.append(nb.cells.pop(0))  # someone moved the badge to the end
    assert colab_cells.apply_colab_cells(nb, "03_localization.ipynb", "https://github.com/new/place")
    assert len(nb.cells) == 4 and "new/place" in nb.cells[0].source and "new/place" in nb.cells[1].source
    assert nb.cells[1]["id"] == old_id and "old/place" not in str(nb.cells)


def test_sync_writes_only_stale_lessons_and_check_says_so(tmp_path, capsys):
    from coursekit.sources import text_from_notebook

    for name in ("00_a.py", "01_b.py"):
        (tmp_path / name).write_text(text_from_notebook(lesson()))
    args = ["--lessons-dir", str(tmp_path), "sync-colab"]
    assert course.main(args + ["--check"]) == 1 and "00_a.py: Colab cells out of date" in capsys.readouterr().out
    assert course.main(args) == 0
    assert course.main(args + ["--check"]) == 0
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert course.main(args) == 0  # nothing to do: no file is touched
    assert stamps == {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    # the sources and the notebooks made from them, no temp files left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00_a.ipynb", "00_a.py", "01_b.ipynb", "01_b.py"]
    nb = nbformat.read(tmp_path / "00_a.ipynb", as_version=4)
    assert nb.cells[0].metadata["tags"] == [colab_cells.BADGE_TAG]


LESSONS = sorted(course.LESSONS_DIR.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.skipif(not LESSONS, reason="no lessons in lessons/ yet")
def test_every_lesson_has_up_to_date_colab_cells():
    stale = course.sync_colab(check=True)
    assert stale == [], f"run `python -m coursekit sync-colab`: out of date in {[p.name for p in stale]}"
