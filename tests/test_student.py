"""The student edition: solutions out, nothing leaked, outputs cleared, and it fails only at exercises.

Built from a small fixture lesson with nbgrader markers; one test also reads (never runs) the
real lessons to check that their student edition leaks nothing and that they have exercises.
"""

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from coursekit import course

SOLUTION_LINES = ["pooled = features.mean(dim=(2, 3))", "return pooled", "answer = sum(range(10))",
                  "Because every location adds to the average.", "assert gap(torch.ones(1, 2, 3, 3)).shape == (1, 2)"]


def fixture_cells(extra=()):
    return [
        new_markdown_cell("# A fixture lesson with exercises"),
        new_code_cell("import torch\nfrom camlib.exercises import check_gap"),
        new_code_cell('def gap(features):\n    """Average each feature map (exercise 1)."""\n'
                      "    ### BEGIN SOLUTION\n    pooled = features.mean(dim=(2, 3))\n    return pooled\n"
                      "    ### END SOLUTION", metadata={"tags": ["exercise"]},
                      outputs=[new_output("stream", name="stdout", text="stale output\n")], execution_count=3),
        new_code_cell("check_gap(gap)"),
        new_code_cell("### BEGIN HIDDEN TESTS\nassert gap(torch.ones(1, 2, 3, 3)).shape == (1, 2)\n"
                      "### END HIDDEN TESTS"),
        new_markdown_cell("**Question.** Why does GAP localize better?\n\n<!-- BEGIN SOLUTION -->\n"
                          "Because every location adds to the average.\n<!-- END SOLUTION -->"),
        new_code_cell("x = 1\n### BEGIN SOLUTION\nanswer = sum(range(10))\n### END SOLUTION\nprint(answer)"),
        new_code_cell("print('the lesson goes on with the library version', x)"),
        *extra,
    ]


def write_lesson(folder: Path, name: str, cells) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    nbformat.write(nb, folder / name)
    return folder / name


@pytest.fixture
def lessons(tmp_path):
    write_lesson(tmp_path / "lessons", "01_fixture.ipynb", fixture_cells())
    return tmp_path / "lessons"


def all_text(path: Path) -> str:
    """Every string in a notebook file (sources, outputs, metadata), JSON-decoded."""
    def walk(x):
        if isinstance(x, str):
            yield x
        elif isinstance(x, dict):
            for v in x.values():
                yield from walk(v)
        elif isinstance(x, list):
            for v in x:
                yield from walk(v)
    return "\n".join(walk(json.loads(path.read_text())))


def test_student_edition_has_no_solution_and_no_outputs(lessons, tmp_path):
    out = tmp_path / "student"
    assert course.main(["--lessons-dir", str(lessons), "student", "--out", str(out)]) == 0
    path = out / "01_fixture.ipynb"
    text = all_text(path)
    for line in SOLUTION_LINES:
        assert line not in text
    nb = nbformat.read(path, as_version=4)
    assert all(not c.outputs and c.execution_count is None for c in nb.cells if c.cell_type == "code")
    src = [c.source for c in nb.cells]
    assert src[2] == ('def gap(features):\n    """Average each feature map (exercise 1)."""\n'
                      "    # YOUR CODE HERE\n    raise NotImplementedError")  # def line and indentation kept
    assert src[5] == "x = 1\n# YOUR CODE HERE\nraise NotImplementedError\nprint(answer)"
    assert not any("HIDDEN" in s for s in src) and len(nb.cells) == 7  # the hidden-test cell is gone
    assert "YOUR ANSWER HERE" in src[4] and "Why does GAP" in src[4]
    assert "stale output" not in text
    assert (out / "README.md").exists()
    assert course.find_leaks(nbformat.read(lessons / "01_fixture.ipynb", as_version=4), nb) == []


def test_find_leaks_sees_a_leaked_line(lessons):
    source = nbformat.read(lessons / "01_fixture.ipynb", as_version=4)
    leaky = course.student_notebook(source)
    leaky.cells.append(new_code_cell("    return pooled  # copied"))
    leaky.cells.append(new_markdown_cell("Because every location adds to the average."))
    assert course.find_leaks(source, leaky) == ["Because every location adds to the average.", "return pooled"]
    assert course.find_leaks(source, course.student_notebook(source)) == []


def test_refuses_to_overwrite_without_force(lessons, tmp_path, capsys):
    out = tmp_path / "student"
    out.mkdir()
    (out / "my_notes.txt").write_text("an instructor's file")
    assert course.main(["--lessons-dir", str(lessons), "student", "--out", str(out)]) == 2
    assert "is not a student edition" in capsys.readouterr().err and (out / "my_notes.txt").exists()
    # --force replaces only a student edition it made (its marker file), never a folder of someone's files
    assert course.main(["--lessons-dir", str(lessons), "student", "--out", str(out), "--force"]) == 2
    assert "refusing to replace it, even with --force" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["my_notes.txt"]
    edition = tmp_path / "edition"
    assert course.main(["--lessons-dir", str(lessons), "student", "--out", str(edition)]) == 0
    assert course.main(["--lessons-dir", str(lessons), "student", "--out", str(edition)]) == 2
    assert "already holds a student edition" in capsys.readouterr().err
    assert course.main(["--lessons-dir", str(lessons), "student", "--out", str(edition), "--force"]) == 0
    assert sorted(p.name for p in edition.iterdir()) == [course.STUDENT_MARKER, "01_fixture.ipynb", "README.md"]
    (edition / "my_notes.txt").write_text("an instructor's file")
    assert course.main(["--lessons-dir", str(lessons), "student", "--out", str(edition), "--force"]) == 2
    assert "files it did not write: ['my_notes.txt']" in capsys.readouterr().err
    assert (edition / "my_notes.txt").exists() and (edition / "01_fixture.ipynb").exists()


def test_unbalanced_markers_are_refused(tmp_path):
    for cells, what in [([new_code_cell("### BEGIN SOLUTION\nx = 1")], "never closed"),
                        ([new_code_cell("x = 1\n### END SOLUTION")], "without its BEGIN"),
                        ([new_code_cell("### BEGIN HIDDEN TESTS\nassert True")], "HIDDEN TESTS"),
                        ([new_markdown_cell("<!-- BEGIN SOLUTION --> yes")], "unmatched")]:
        folder = tmp_path / what.replace(" ", "_")
        write_lesson(folder, "02_bad.ipynb", cells)
        with pytest.raises(ValueError, match=what):
            course.make_student(folder, tmp_path / "out" / what.replace(" ", "_"))


@pytest.mark.slow
def test_student_edition_fails_only_at_the_exercises(tmp_path):
    """Executes the student edition: only the check and the top-level stub fail, with NotImplementedError."""
    lessons = tmp_path / "lessons"
    write_lesson(lessons, "01_fixture.ipynb", fixture_cells())
    # a lesson that (wrongly) uses the student's function after the exercise
    write_lesson(lessons, "02_uses_exercise.ipynb",
                 fixture_cells([new_code_cell("print(gap(torch.ones(1, 2, 3, 3)))")]))
    written = course.make_student(lessons, tmp_path / "student")

    problems, errored = course.verify_student_run(written[0], lessons, timeout=120)
    assert problems == []
    assert errored == {3: "NotImplementedError", 5: "NotImplementedError"}  # check_gap(gap), the top-level stub
    student = nbformat.read(written[0], as_version=4)
    assert set(errored) <= set(course.exercise_cells(student))
    assert (student.cells[3].source, student.cells[5].source.split("\n")[0]) == ("check_gap(gap)", "x = 1")

    problems, errored = course.verify_student_run(written[1], lessons, timeout=120)
    assert errored == {3: "NotImplementedError", 5: "NotImplementedError", 7: "NotImplementedError"}
    assert problems == ["02_uses_exercise.ipynb cell 7 ('print(gap(torch.ones(1, 2, 3, 3)))') is not an exercise "
                        "but failed: NotImplementedError: "]


@pytest.mark.slow
def test_a_check_that_passes_without_a_solution_is_reported(tmp_path):
    lessons = tmp_path / "lessons"
    write_lesson(lessons, "03_toothless.ipynb", [new_code_cell(
        "from camlib.exercises import check_gap\ncheck_gap(lambda f: f.mean(dim=(2, 3)))")])
    written = course.make_student(lessons, tmp_path / "student")
    problems, errored = course.verify_student_run(written[0], lessons, timeout=120)
    assert errored == {} and problems == ["03_toothless.ipynb cell 0 ('from camlib.exercises import check_gap'): "
                                          "the check passed without a solution"]


def test_exercise_cells_are_recognised():
    nb = new_notebook(cells=fixture_cells())
    assert course.exercise_cells(nb) == {2: "solution", 3: "check", 6: "solution"}


LESSONS = sorted(course.LESSONS_DIR.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.skipif(not LESSONS, reason="no lessons in lessons/ yet")
@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_real_lessons_have_exercises_and_leak_nothing(path):
    """Read only: the real lesson's student edition leaks nothing; it has 2-4 exercises, each coded one checked."""
    source = nbformat.read(path, as_version=4)
    student = course.student_notebook(source, path.name)
    assert course.find_leaks(source, student) == []
    kinds = course.exercise_cells(source)
    coded = [i for i, c in enumerate(source.cells) if c.cell_type == "code"
             and any(course.SOLUTION[0].match(line) for line in c.source.split("\n"))]
    written = sum(len(course.MD_SOLUTION.findall(c.source)) for c in source.cells if c.cell_type == "markdown")
    assert 2 <= len(coded) + written and len(coded) <= 4, \
        f"{path.name}: {len(coded)} coded and {written} written exercises; the course asks for 2-4 per lesson"
    for i, j in zip(coded, coded[1:] + [len(source.cells)]):
        assert any(kinds.get(n) == "check" for n in range(i, j)), \
            f"{path.name}: the exercise in cell {i} is not followed by a camlib.exercises check"


@pytest.mark.slow
def test_grading_uses_the_lessons_checks_on_the_students_code(lessons, tmp_path, capsys):
    student = course.make_student(lessons, tmp_path / "student")[0]
    nb = nbformat.read(student, as_version=4)
    solved, wrong = nbformat.from_dict(nb), nbformat.from_dict(json.loads(json.dumps(nb)))
    solved.cells[2].source = "def gap(features):\n    return features.sum(dim=(2, 3)) / features[0, 0].numel()"
    del solved.cells[3]  # a student who deleted the check is graded by it all the same
    wrong.cells[2].source = "def gap(features):\n    return features.amax(dim=(2, 3))"
    nbformat.write(solved, tmp_path / "01_solved.ipynb")
    nbformat.write(wrong, tmp_path / "01_wrong.ipynb")

    # the check runs in the grader (coursekit.grade), on the exercise matched by its function's name
    row = course.grade(tmp_path / "01_solved.ipynb", lessons / "01_fixture.ipynb", timeout=120)
    assert (row["status"], row["score"], row["max_score"]) == ("graded", 1, 1)
    assert row["exercises"]["01:gap"]["matched_by"] == "function name"
    assert course.main(["--lessons-dir", str(lessons), "grade", str(tmp_path / "01_wrong.ipynb"),
                        "--out", str(tmp_path / "grades"), "--protect", str(tmp_path / "student")]) == 0
    out = capsys.readouterr().out
    assert "0 of 1 exercises passed" in out and "FAIL  -- check_gap: trial 1 of 4" in out
    assert "Looks like you used max instead of mean" in out and (tmp_path / "grades" / "gradebook.csv").exists()
