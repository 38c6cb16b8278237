"""The lessons' jupytext sources (lessons/NN_name.py) and the notebooks made from them stay in sync."""

from pathlib import Path

import nbformat
import pytest

from coursekit import course, sources

LESSONS_DIR = course.LESSONS_DIR
PY = sources.find_sources(LESSONS_DIR)
NB = course.find_lessons(LESSONS_DIR)


def test_every_lesson_notebook_has_a_source_and_back():
    assert PY, "no lesson sources in lessons/"
    assert [p.stem for p in PY] == [p.stem for p in NB], "each NN_name.ipynb needs its NN_name.py and back"


@pytest.mark.parametrize("src", PY, ids=[p.stem for p in PY])
def test_notebook_is_made_from_its_source(src):
    committed = src.with_suffix(".ipynb").read_text(encoding="utf-8")
    made = sources.notebook_text(sources.notebook_from_text(src.read_text(encoding="utf-8"),
                                                            nbformat.reads(committed, as_version=4)))
    assert made == committed, (f"{src.with_suffix('.ipynb').name} differs from what {src.name} makes: edit the .py, "
                               "then run `python -m coursekit lessons` (or `make lessons`)")


def test_regenerating_keeps_cell_ids_and_is_stable(tmp_path):
    src = PY[0]
    (tmp_path / src.name).write_text(src.read_text(encoding="utf-8"))
    assert sources.write_notebooks(tmp_path) == [tmp_path / src.with_suffix(".ipynb").name]
    first = (tmp_path / src.with_suffix(".ipynb").name).read_text()
    assert sources.write_notebooks(tmp_path) == []  # nothing changes the second time
    # editing one cell keeps every other cell's id
    text = (tmp_path / src.name).read_text().replace("# %% [markdown]", "# %% [markdown]\n# An added line.", 1)
    old_ids = [c["id"] for c in nbformat.reads(first, as_version=4).cells]
    (tmp_path / src.name).write_text(text)
    sources.write_notebooks(tmp_path)
    new_ids = [c["id"] for c in nbformat.read(tmp_path / src.with_suffix(".ipynb").name, as_version=4).cells]
    assert sum(a != b for a, b in zip(old_ids, new_ids)) == 1 and len(set(new_ids)) == len(new_ids)


def test_made_notebooks_are_clean():
    for path in NB:
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata.kernelspec.name == "python3"
        for cell in nb.cells:
            assert not cell.get("outputs") and cell.get("execution_count") is None, path.name
            assert "lines_to_next_cell" not in cell.metadata, path.name


def test_check_reports_a_stale_notebook(tmp_path, capsys):
    src = PY[0]
    (tmp_path / src.name).write_text(src.read_text(encoding="utf-8"))
    assert course.main(["--lessons-dir", str(tmp_path), "lessons", "--check"]) == 1
    assert "out of date" in capsys.readouterr().out
    assert course.main(["--lessons-dir", str(tmp_path), "lessons"]) == 0
    assert course.main(["--lessons-dir", str(tmp_path), "lessons", "--check"]) == 0
