"""`python -m coursekit build` on small fixture lessons: executed notebooks, HTML, REPORT.md.

The fixtures are trivial notebooks (a kernel start and a few prints each), never the real lessons.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from coursekit import course

GOOD = [
    new_markdown_cell("# A fixture lesson"),
    new_code_cell("import os\nfrom camlib.report import claim\n"
                  "print('lesson', os.environ['CAMLIB_LESSON'], 'profile', os.environ.get('CAMLIB_PROFILE'))"),
    new_code_cell("claim('two and two make four', 2 + 2 == 4, ours=4, paper=4, dataset='arithmetic',\n"
                  "      fails_if='the sum is not 4')"),
    new_code_cell("from camlib.report import sanity\nsanity('x - x is zero', 3 - 3 == 0, ours=0)"),
    new_code_cell("claim('pi is about 3.14', abs(3.14159 - 3.14) < 0.01, ours=3.14159, dataset='circles')"),
]
BROKEN = [
    new_code_cell("from camlib.report import claim\n"
                  "claim('one is less than two', 1 < 2, ours=1, dataset='integers')"),
    new_code_cell("raise ValueError('boom: the fixture fails here')"),
    new_code_cell("print('never runs')"),
]


def write_lessons(folder: Path, lessons: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, cells in lessons.items():
        nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                "language": "python"}})
        nbformat.write(nb, folder / name)
    return folder


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build one good and one failing fixture lesson once, through the command line entry point."""
    root = tmp_path_factory.mktemp("course")
    lessons = write_lessons(root / "lessons", {"00_good.ipynb": GOOD, "01_broken.ipynb": BROKEN,
                                               "notes.ipynb": [new_code_cell("1/0")]})
    before = snapshot(lessons)
    out = root / "out"
    code = course.main(["--lessons-dir", str(lessons), "build", "--profile", "smoke", "--out", str(out),
                        "--timeout", "120"])
    return {"lessons": lessons, "out": out, "code": code, "before": before}


@pytest.mark.slow
def test_build_writes_notebooks_html_and_report(built):
    out = built["out"]
    for stem in ("00_good", "01_broken"):
        assert (out / f"{stem}.ipynb").exists() and (out / f"{stem}.html").exists()
    assert not (out / "notes.html").exists()  # only NN_name.ipynb files are lessons
    good = nbformat.read(out / "00_good.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for o in good.cells[1].outputs)
    assert "lesson 00 profile smoke" in printed  # CAMLIB_LESSON and CAMLIB_PROFILE reach the kernel
    assert "[PASS] two and two make four" in (out / "00_good.html").read_text()


@pytest.mark.slow
def test_failed_lesson_is_reported_and_the_build_exits_nonzero(built):
    out = built["out"]
    assert built["code"] == 1
    html = (out / "01_broken.html").read_text()
    assert "boom: the fixture fails here" in html and "This lesson failed in the course build" in html
    report = (out / "REPORT.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| 01_broken"))
    assert "**FAILED**" in row and "cell 1: ValueError: boom" in row
    good = next(line for line in report.splitlines() if line.startswith("| 00_good"))
    assert "| ok |" in good and "| 2/2 | 1/1 |" in good


@pytest.mark.slow
def test_report_has_one_row_per_claim_with_its_numbers(built):
    report = (built["out"] / "REPORT.md").read_text()
    claims = [line for line in report.split("## Claims")[1].split("## Sanity")[0].splitlines()
              if line.startswith("| 0")]
    assert len(claims) == 3
    assert "| 00 | two and two make four | the sum is not 4 | 4 | 4 | arithmetic | smoke | pass |" in claims
    checks = [line for line in report.split("## Sanity checks")[1].splitlines() if line.startswith("| 0")]
    assert checks == ["| 00 | x - x is zero | 0 | smoke | pass |"]  # apart from the claims, not counted as one
    assert any("| 01 | one is less than two |" in c for c in claims)
    assert "Machine:" in report and "torch" in report


@pytest.mark.slow
def test_sources_stay_clean(built):
    assert snapshot(built["lessons"]) == built["before"]


@pytest.mark.slow
def test_rebuilding_one_lesson_keeps_the_others_rows(built, tmp_path):
    out = tmp_path / "out"
    for f in ("runs.json", "claims.jsonl", "REPORT.md"):
        (out / f).parent.mkdir(exist_ok=True)
        (out / f).write_bytes((built["out"] / f).read_bytes())
    runs = course.build(built["lessons"], out, profile="smoke", only=["00"], timeout=120, echo=lambda m: None)
    assert [r.name for r in runs] == ["00_good"] and runs[0].ok
    rows = [json.loads(x) for x in (out / "claims.jsonl").read_text().splitlines()]
    assert sorted(r["lesson"] for r in rows) == ["00", "00", "00", "01"]  # 00 re-recorded once, 01 kept
    assert "| 01_broken | **FAILED** |" in (out / "REPORT.md").read_text()


@pytest.mark.slow
def test_two_lessons_at_once_give_the_same_report(built, tmp_path):
    out = tmp_path / "out"
    runs = course.build(built["lessons"], out, profile="smoke", timeout=120, jobs=2, echo=lambda m: None)
    assert [r.name for r in runs] == ["00_good", "01_broken"] and [r.ok for r in runs] == [True, False]
    rows = [json.loads(x) for x in (out / "claims.jsonl").read_text().splitlines()]
    assert sorted(r["lesson"] for r in rows) == sorted(json.loads(x)["lesson"] for x in
                                                       (built["out"] / "claims.jsonl").read_text().splitlines())
    assert "| 01_broken | **FAILED** |" in (out / "REPORT.md").read_text()
    with pytest.raises(ValueError, match="jobs must be a positive int"):
        course.build(built["lessons"], out, jobs=0, echo=lambda m: None)


@pytest.mark.slow
def test_bad_arguments_are_refused(built, tmp_path):
    with pytest.raises(ValueError, match="no lesson numbered"):
        course.find_lessons(built["lessons"], ["07"])
    with pytest.raises(ValueError, match="outside the lessons folder"):
        course.build(built["lessons"], built["lessons"] / "out", echo=lambda m: None)
    with pytest.raises(ValueError, match="expected a folder of lessons"):
        course.find_lessons(tmp_path / "missing")


@pytest.mark.slow
def test_command_line_help_runs():
    root = Path(course.__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "coursekit", "--help"], capture_output=True, text=True, timeout=60,
                          cwd=root)
    assert done.returncode == 0
    assert all(c in done.stdout for c in ("build", "student", "check-student", "sync-colab", "lessons"))


def test_students_package_does_not_ship_course_tooling():
    import camlib

    pkg = Path(camlib.__file__).resolve().parent
    assert not (pkg / "course.py").exists() and not (pkg / "__main__.py").exists()
    for path in pkg.rglob("*.py"):
        imports = re.findall(r"^\s*(?:import|from)\s+(\w+)", path.read_text(encoding="utf-8"), re.M)
        assert not {"nbformat", "nbclient", "jupytext", "coursekit"} & set(imports), path


@pytest.mark.slow
def test_a_cell_over_the_time_limit_fails_its_lesson(tmp_path):
    lessons = write_lessons(tmp_path / "lessons", {"00_slow.ipynb": [new_code_cell("import time\ntime.sleep(60)")]})
    runs = course.build(lessons, tmp_path / "out", timeout=2, echo=lambda m: None)
    assert not runs[0].ok and runs[0].error == "cell 0: timed out (limit 2 s per cell)"
    assert runs[0].seconds < 30


def test_kernels_talk_over_unix_sockets_not_tcp_ports(tmp_path):
    # TCP ports are picked free and bound a moment later: a kernel started at the same time by another
    # process could take one, and both builds then hang idle (seen twice). Unix sockets in a folder of
    # the build's own cannot collide.
    km = course.kernel_manager(tmp_path)
    assert km.transport == "ipc" and km.ip.startswith(str(tmp_path))
    assert type(km).__name__ == "AsyncKernelManager"        # a blocking manager ignores the cell time limit
