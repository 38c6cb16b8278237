"""Grading an instructor can trust: the checks run in the grader, not where the student's code runs.

The fast tests cover the pieces (the checks split into trials / reference / diagnosis, cell
matching, stripping, library-use detection, reading a kernel's outputs, the file guard). The slow
ones grade one batch of adversarial submissions built from the real lessons (solution edition ->
student edition -> filled in) and read its gradebook; the batch runs once (module fixture).
"""

import csv
import json
import random
import shutil
import string

import nbformat
import numpy as np
import pytest
import torch

from camlib import exercises as EX
from coursekit import course
from coursekit import grade as G


# ------------------------------------------------------------------------ the split of a check
@pytest.mark.parametrize("check", EX.CHECKS)
def test_spec_from_another_seed_gives_other_trials_that_the_reference_passes(check):
    own, fresh = EX.spec(check), EX.spec(check, seed=987654)
    assert own.name == fresh.name == check and len(own.trials) == len(fresh.trials) >= 4
    first = lambda s: next(a for a in s.trials[-1] if isinstance(a, torch.Tensor))  # noqa: E731
    assert first(own).shape != first(fresh).shape or not torch.equal(first(own), first(fresh))
    assert EX.diagnose(fresh, [fresh.reference(*t) for t in fresh.trials]) == ""


def test_diagnose_gives_the_checks_messages_on_outputs_given_as_data():
    spec = EX.spec("check_gap", seed=7)
    maxed = [t[0].amax(dim=(2, 3)) for t in spec.trials]
    message = EX.diagnose(spec, maxed)
    assert message.startswith("check_gap: trial 1 of 4") and "Looks like you used max instead of mean" in message
    assert "expected a torch.Tensor, got int" in EX.diagnose(spec, [0] * len(spec.trials))
    assert "not written yet" in EX.diagnose(spec, [EX.Raised("NotImplementedError")] * len(spec.trials))
    assert "raised ZeroDivisionError: boom" in EX.diagnose(spec, [EX.Raised("ZeroDivisionError", "boom")] * 4)
    with pytest.raises(ValueError, match="one output per trial"):
        EX.diagnose(spec, maxed[:2])
    with pytest.raises(ValueError, match="name of a check"):
        EX.spec("check_nothing")


# ------------------------------------------------------------------------------ the lessons
LESSONS = sorted(course.LESSONS_DIR.glob("0[1-6]_*.ipynb"))


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_every_exercise_has_a_grade_id_that_the_student_edition_keeps(path):
    source = nbformat.read(path, as_version=4)
    exercises = G.lesson_exercises(source, path.name[:2])
    assert exercises and all(e.grade_id.startswith(path.name[:2] + "_") for e in exercises)
    student = course.student_notebook(source, path.name)
    assert {k: how for k, (_, how) in G.match_cells(student, exercises).items()} == \
        {e.key: "grade_id" for e in exercises}


def lesson01_student():
    return course.student_notebook(nbformat.read(course.LESSONS_DIR / "01_gap_vs_gmp.ipynb", as_version=4))


def test_cells_are_matched_by_grade_id_then_function_name_never_by_position_or_id():
    nb = lesson01_student()
    ex = G.lesson_exercises(nbformat.read(course.LESSONS_DIR / "01_gap_vs_gmp.ipynb", as_version=4), "01")
    assert G.lesson_exercises(nb, "01") == []  # the student edition has no solutions: exercises come from the source
    assert [(e.function, e.check, e.grade_id) for e in ex] == [
        ("gap", "check_gap", "01_pooling"), ("gmp", "check_gmp", "01_pooling"),
        ("lse_pool", "check_lse_pool", "01_lse_pool"), ("mask_coverage", "check_mask_coverage", "01_mask_coverage")]
    where = G.match_cells(nb, ex)["01:gap"][0]
    moved = nbformat.from_dict(json.loads(json.dumps(nb)))
    cell = moved.cells.pop(where)
    moved.cells.insert(2, cell)
    for c in moved.cells:
        c.pop("id", None)
    pooling = {k: v for k, v in G.match_cells(moved, ex).items() if k in ("01:gap", "01:gmp")}
    assert pooling == {"01:gap": (2, "grade_id"), "01:gmp": (2, "grade_id")}
    del moved.cells[2].metadata["nbgrader"]
    pooling = {k: v for k, v in G.match_cells(moved, ex).items() if k in ("01:gap", "01:gmp")}
    assert pooling == {"01:gap": (2, "function name"), "01:gmp": (2, "function name")}
    moved.cells[2].source = "def something_else(x):\n    return x"
    assert G.match_cells(moved, ex)["01:gap"] == (None, "none")


def test_runnable_strips_check_calls_and_hidden_tests_only():
    src = ("import torch\ncheck_gap(gap)\nx = check_gap\nprint(1)\n"
           "### BEGIN HIDDEN TESTS\nassert gap(torch.ones(1, 1, 2, 2)).shape == (1, 1)\n### END HIDDEN TESTS\n"
           "camlib.exercises.check_gmp(\n    gmp)\n%matplotlib inline")
    assert G.runnable(src) == "import torch\nx = check_gap\nprint(1)\n%matplotlib inline"


def test_library_use_is_reported():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import camlib.exercises as E\nfrom camlib import cam\nfrom camlib.cam import minmax"),
        nbformat.v4.new_code_cell("def gap(f):\n    return E._ref_gap(f)\n\ndef gmp(f):\n    return cam.thing(minmax(f))\n"
                                  "def mine(f):\n    return f.mean((2, 3))\nalias = cam.other"),
        nbformat.v4.new_code_cell("def dyn(f):\n    return __import__('camlib').cam.gap(f)")])
    assert G.library_use(nb, 1, "gap") == ["camlib.exercises._ref_gap"]
    assert G.library_use(nb, 1, "gmp") == ["camlib.cam.minmax", "camlib.cam.thing"]
    assert G.library_use(nb, 1, "mine") == [] and G.library_use(nb, 1, "alias") == ["camlib.cam.other"]
    assert G.library_use(nb, 2, "dyn") == ["__import__(...) (dynamic code: read it)"]


def test_outputs_are_read_as_data_never_unpickled(tmp_path):
    stem = tmp_path / "out"
    np.savez(stem.with_suffix(".npz"), o0=np.ones((2, 3), np.float32), o1=np.arange(3))
    stem.with_suffix(".json").write_text(json.dumps({"info": {"function": "gap"}, "outputs": [
        {"t": "tensor", "k": "o0"}, {"t": "ndarray", "k": "o1"}, {"t": "number", "v": 0.5, "type": "float"},
        {"t": "values_indices", "type": "max", "values": {"t": "tensor", "k": "o0"}, "indices": {"t": "tensor", "k": "o1"}},
        {"t": "other", "type": "str"}, {"t": "raised", "ename": "KeyError", "evalue": "x"}]}))
    info, (t, a, n, vi, other, raised) = G._read_outputs(stem)
    assert info == {"function": "gap"} and t.shape == (2, 3) and isinstance(t, torch.Tensor)
    assert isinstance(a, np.ndarray) and n == 0.5 and type(vi).__name__ == "max" and vi.values.shape == (2, 3)
    assert type(other).__name__ == "str" and raised == EX.Raised("KeyError", "x")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)  # an object array
    shutil.copy(tmp_path / "obj.npy", tmp_path / "o0.npy")
    import zipfile
    with zipfile.ZipFile(stem.with_suffix(".npz"), "w") as z:
        z.write(tmp_path / "o0.npy", "o0.npy")
    stem.with_suffix(".json").write_text(json.dumps({"outputs": [{"t": "tensor", "k": "o0"}]}))
    with pytest.raises(ValueError, match="allow_pickle"):
        G._read_outputs(stem)


def test_guard_puts_back_changed_files_and_keeps_a_copy(tmp_path):
    (tmp_path / "lib" / "sub").mkdir(parents=True)
    (tmp_path / "lib" / "sub" / "mod.py").write_text("x = 1\n")
    guard = G.Guard([tmp_path / "lib"])
    assert guard.restore() == []
    (tmp_path / "lib" / "sub" / "mod.py").write_text("x = 2\n")
    (tmp_path / "lib" / "evil.pth").write_text("import os\n")
    changed = guard.restore(tmp_path / "kept")
    assert changed == [str(tmp_path / "lib" / "evil.pth"), str(tmp_path / "lib" / "sub" / "mod.py")]
    assert (tmp_path / "lib" / "sub" / "mod.py").read_text() == "x = 1\n" and not (tmp_path / "lib" / "evil.pth").exists()
    assert (tmp_path / "kept" / (tmp_path / "lib" / "sub" / "mod.py").relative_to("/")).read_text() == "x = 2\n"


def test_bad_settings_and_empty_batches_are_refused(tmp_path):
    with pytest.raises(ValueError, match="timeout in seconds"):
        G.Settings(timeout=0)
    with pytest.raises(ValueError, match="profile"):
        G.Settings(profile="fast")
    with pytest.raises(ValueError, match="one or more submissions"):
        G.grade_batch([], out=tmp_path)


# --------------------------------------------------------------------------------- the batch
HONEST = ("from camlib.exercises import check_gap, check_gmp\n\n"
          "def gap(features):\n    b, k = features.shape[:2]\n    return features.reshape(b, k, -1).mean(-1)\n\n"
          "def gmp(features):\n    return features.flatten(2).max(dim=2).values\n")
REDEFINED_CHECK = ("def check_gap(f):\n    print('OK')\n\ndef check_gmp(f):\n    print('OK')\n\n"
                   "def gap(features):\n    return 0\n\ndef gmp(features):\n    return 0\n")
PATCHED = ("import pathlib\nimport camlib.exercises as E\n"
           "E._run = lambda *a, **k: print('OK')\nE._difference = lambda *a, **k: ''\n"
           "E.diagnose = lambda *a, **k: ''\nE._as_tensor = lambda name, out: out\n"
           "pathlib.Path({protected!r}, 'exercises.py').write_text('# hacked')\n"
           "pathlib.Path({protected!r}, 'evil.pth').write_text('import os')\n"
           "import os\nfor d in pathlib.Path(os.environ['CAMLIB_DATA']).parent.parent.glob('reference-01-*/data'):\n"
           "    (d / 'planted.pt').write_bytes(b'not a checkpoint')\n\n"
           "def gap(features):\n    return 0\n\ndef gmp(features):\n    return 0\n")
LOOP_AND_LIBRARY = ("import camlib.exercises.lesson01 as E\n\ndef gap(features):\n    while True:\n        pass\n\n"
                    "def gmp(features):\n    return E._ref_gmp(features)\n")
EXITS = "import os\nos._exit(1)\n\n" + HONEST
WRONG_02 = ("def cam_map(features, weight, classes):\n"
            "    return torch.relu(torch.einsum('bkhw,bk->bhw', features, weight[classes]))\n")


def fill(nb, grade_id, source):
    cell = next(c for c in nb.cells if G._grade_id(c) == grade_id)
    cell.source = source
    return nb


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grade")
    protected = tmp / "protected"
    protected.mkdir()
    shutil.copy(EX.__file__, protected / "exercises.py")
    editions = course.make_student(course.LESSONS_DIR, tmp / "student", only=["01", "02"])
    student = {p.name[:2]: nbformat.read(p, as_version=4) for p in editions}

    def write(name, nb, lesson="01"):
        path = tmp / "submissions" / name / editions[int(lesson) - 1].name
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
        return path

    def copy(lesson="01"):
        return nbformat.from_dict(json.loads(json.dumps(student[lesson])))

    subs = {"honest": write("honest", fill(copy(), "01_pooling", HONEST)),
            "redefined_check": write("redefined_check", fill(copy(), "01_pooling", REDEFINED_CHECK)),
            "patched_exercises": write("patched_exercises",
                                       fill(copy(), "01_pooling", PATCHED.format(protected=str(protected))))}
    old = fill(copy(), "01_pooling", HONEST)  # an older notebook re-created by hand: no ids, no nbgrader metadata
    for c in old.cells:
        c.pop("id", None)
        c.metadata.pop("nbgrader", None)
    old.nbformat_minor = 4
    subs["no_ids"] = tmp / "submissions" / "no_ids" / editions[0].name
    subs["no_ids"].parent.mkdir(parents=True)
    subs["no_ids"].write_text(json.dumps(old))
    subs["invalid_json"] = tmp / "submissions" / "invalid_json" / editions[0].name
    subs["invalid_json"].parent.mkdir(parents=True)
    subs["invalid_json"].write_text('{"cells": [')
    subs["loop_and_library"] = write("loop_and_library", fill(copy(), "01_pooling", LOOP_AND_LIBRARY))
    subs["exits"] = write("exits", fill(copy(), "01_pooling", EXITS))
    moved = fill(copy(), "01_pooling", HONEST)  # re-saved and re-ordered: the exercise cell moves up, new ids
    i = next(i for i, c in enumerate(moved.cells) if G._grade_id(c) == "01_pooling")
    moved.cells.insert(2, moved.cells.pop(i))
    rng = random.Random(0)
    for c in moved.cells:
        c["id"] = "".join(rng.choices(string.ascii_lowercase, k=8))
    subs["reordered"] = write("reordered", moved)
    subs["wrong_02"] = write("wrong_02", fill(copy("02"), "02_cam_map", WRONG_02), "02")

    settings = G.Settings(profile="smoke", timeout=10, cell_timeout=600)
    lines = []
    rows = G.grade_batch(list(subs.values()), course.LESSONS_DIR, tmp / "grades", settings=settings,
                         protect=[protected], echo=lines.append)
    book = json.loads((tmp / "grades" / "gradebook.json").read_text())
    with open(tmp / "grades" / "gradebook.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    return {"rows": {r["student"]: r for r in rows}, "book": book, "table": table, "protected": protected,
            "lines": lines, "tmp": tmp}


def diagnosis(row, key):
    return row["exercises"][key]["diagnosis"]


@pytest.mark.slow
def test_every_submission_gets_a_row_and_the_batch_goes_on(batch):
    names = ["honest", "redefined_check", "patched_exercises", "no_ids", "invalid_json", "loop_and_library",
             "exits", "reordered", "wrong_02"]
    assert [r["student"] for r in batch["book"]["rows"]] == names
    assert [r["student"] for r in batch["table"]] == names
    assert {r["student"]: r["status"] for r in batch["table"]} == {
        "honest": "graded", "redefined_check": "graded", "patched_exercises": "tampered", "no_ids": "graded",
        "invalid_json": "invalid notebook", "loop_and_library": "timeout", "exits": "kernel died",
        "reordered": "graded", "wrong_02": "graded"}
    assert {r["student"]: (r["01:gap"], r["01:gmp"]) for r in batch["table"] if r["lesson"] == "01"} == {
        "honest": ("1", "1"), "redefined_check": ("0", "0"), "patched_exercises": ("0", "0"), "no_ids": ("1", "1"),
        "invalid_json": ("0", "0"), "loop_and_library": ("0", "1"), "exits": ("0", "0"), "reordered": ("1", "1")}
    assert all(r["seed"] != EX.SPECS["check_gap"].__defaults__[0] for r in batch["book"]["rows"])


@pytest.mark.slow
def test_the_instructors_solutions_get_full_marks(batch):
    refs = batch["book"]["reference"]
    assert [(r["lesson"], r["status"], r["score"], r["max_score"]) for r in refs] == [("01", "graded", 4, 4),
                                                                                      ("02", "graded", 3, 3)]


@pytest.mark.slow
def test_cheats_get_no_marks_and_the_diagnosis_says_why(batch):
    rows = batch["rows"]
    assert "expected a torch.Tensor, got int" in diagnosis(rows["redefined_check"], "01:gap")
    assert "expected a torch.Tensor, got int" in diagnosis(rows["patched_exercises"], "01:gmp")


@pytest.mark.slow
def test_a_submission_that_changes_protected_files_is_flagged_and_they_are_put_back(batch):
    row = batch["rows"]["patched_exercises"]
    assert sorted(row["changed_files"]) == [str(batch["protected"] / "evil.pth"),
                                            str(batch["protected"] / "exercises.py")]
    assert (batch["protected"] / "exercises.py").read_bytes() == open(EX.__file__, "rb").read()
    assert not (batch["protected"] / "evil.pth").exists()
    kept = batch["tmp"] / "grades" / "changed-files" / "submission-3"
    assert (kept / (batch["protected"] / "exercises.py").relative_to("/")).read_text() == "# hacked"
    assert [r["changed_files"] for r in batch["book"]["rows"] if r["student"] != "patched_exercises"] == [[]] * 8
    # it also planted a file in the folder the reference run made for the next kernels: no one gets that folder now
    assert "lesson 01: the reference run's data folder was changed; kernels start without it from now on" in batch["lines"]


@pytest.mark.slow
def test_cells_are_matched_whatever_their_ids_and_order(batch):
    rows = batch["rows"]
    assert {k: e["matched_by"] for k, e in rows["no_ids"]["exercises"].items()} == \
        {"01:gap": "function name", "01:gmp": "function name", "01:lse_pool": "function name",
         "01:mask_coverage": "function name"}
    assert rows["reordered"]["exercises"]["01:gap"]["matched_by"] == "grade_id"
    assert rows["reordered"]["exercises"]["01:gap"]["cell"] == 2


@pytest.mark.slow
def test_bad_notebooks_say_why_they_were_not_graded(batch):
    rows = batch["rows"]
    assert rows["invalid_json"]["reason"].startswith("invalid notebook:")
    assert diagnosis(rows["loop_and_library"], "01:gap") == "timeout: gap ran past 10 s on the grader's inputs"
    assert rows["exits"]["reason"].startswith("the kernel died") and rows["exits"]["score"] == 0


@pytest.mark.slow
def test_library_use_is_reported_not_penalized(batch):
    row = batch["rows"]["loop_and_library"]
    assert row["exercises"]["01:gmp"]["score"] == 1
    assert row["exercises"]["01:gmp"]["library_use"] == ["camlib.exercises.lesson01._ref_gmp"]
    table = {r["student"]: r for r in batch["table"]}
    assert table["loop_and_library"]["library_use"] == "01:gmp: camlib.exercises.lesson01._ref_gmp"
    assert table["honest"]["library_use"] == ""


@pytest.mark.slow
def test_wrong_answers_get_the_checks_diagnosis_on_fresh_inputs(batch):
    row = batch["rows"]["wrong_02"]
    assert row["exercises"]["02:cam_map"]["score"] == 0 and row["exercises"]["02:minmax"]["score"] == 0
    assert "Looks like you applied a ReLU" in diagnosis(row, "02:cam_map")
    assert "not written yet" in diagnosis(row, "02:minmax")
