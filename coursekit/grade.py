"""Grading students' notebooks where their code cannot reach the checks (``python -m coursekit grade``).

For each submission the grader (this process, with the instructor's ``camlib`` imported before any
student code runs):

1. reads every submission and lesson into memory first (a submission's kernel cannot change another
   student's file before it is graded), and finds each lesson's exercises in the instructor's copy:
   a solution cell (``### BEGIN SOLUTION``, with nbgrader's ``grade_id``) that defines a function
   which a ``camlib.exercises`` check is called on (``check_gap(gap)``);
2. matches the student's cells by that ``grade_id``, else by the function's name (never by position
   or cell id), and runs the student's notebook in a fresh kernel, in a worker process, down to the
   last exercise cell -- check calls and hidden tests stripped -- with a private working folder,
   ``HOME``, IPython profile and camlib data folder (a copy of the one the instructor's own solution
   made in a reference run);
3. re-runs the matched exercise cells, then sends fresh inputs (trials of the check drawn with a
   seed picked at grading time, one per student) as ``.json`` + ``.npz`` files and asks the kernel
   only to call the student's function on them and write the outputs back as data;
4. reads those outputs without pickle (size-limited), compares them in this process with the
   instructor's references and diagnoses them with :func:`camlib.exercises.diagnose` -- the same
   messages the notebook's check gives;
5. kills whatever the submission left running, puts back any protected file it changed (camlib,
   coursekit, the lessons, site-packages' start-up hooks) and flags it, and writes the row.

A bad submission (invalid JSON, an endless loop, a kernel that exits) gets a row that says why;
the batch goes on. Gradebooks: ``<out>/gradebook.csv`` and ``<out>/gradebook.json``.

What this does not do: it runs as the same user as you, so a determined submission could still
kill the grader itself or read any file you can; grade in a container or a throw-away account.
"""

from __future__ import annotations

import ast
import csv
import datetime as dt
import hashlib
import io
import json
import os
import queue
import re
import secrets
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import nbformat
import numpy as np
import torch

from camlib import exercises as EX

from .course import HIDDEN, LESSON_FILE, LESSONS_DIR, REPO_ROOT, SOLUTION, _scan, _write_atomic, find_lessons, kernel_env

DEFAULT_TIMEOUT = 30.0  # seconds for one exercise: every trial of the student's function
DEFAULT_CELL_TIMEOUT = 300.0  # seconds for one cell of the student's notebook
MAX_OUTPUT_BYTES = 64 << 20  # what a kernel may send back for one exercise
MAX_ERROR_CHARS = 300


# ------------------------------------------------------------------------------------ exercises
@dataclass(frozen=True)
class Exercise:
    """One graded function of a lesson: ``function`` is checked by ``check`` (a camlib.exercises name)."""

    lesson: str
    function: str
    check: str
    grade_id: str = ""

    @property
    def key(self) -> str:
        return f"{self.lesson}:{self.function}"


def _grade_id(cell: Any) -> str:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return str(meta.get("grade_id", "")) if isinstance(meta, dict) else ""


def _parse(source: str) -> ast.Module | None:
    """The cell's code as Python (IPython's magics turned into calls, line numbers kept); None if it is not."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return ast.parse(TransformerManager().transform_cell(source))
    except Exception:  # noqa: BLE001 -- a student's cell may be anything
        return None


def _defined(source: str) -> list[str]:
    """Names a cell defines at top level with ``def`` or ``name = ...``."""
    tree = _parse(source)
    if tree is None:
        return re.findall(r"^def\s+(\w+)\s*\(", source, re.M)
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return names


def _check_calls(source: str) -> list[tuple[str, str]]:
    """``(check, function name)`` for each ``check_x(name)`` call in the cell."""
    tree = _parse(source)
    found = []
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Name):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name in EX.CHECKS:
                found.append((name, node.args[0].id))
    return found


def _has_solution(cell: Any) -> bool:
    return any(SOLUTION[0].match(line) for line in cell.source.split("\n"))


def lesson_exercises(source: Any, lesson: str) -> list[Exercise]:
    """The exercises of the instructor's lesson notebook ``source``, in order."""
    checked: dict[str, str] = {}
    for cell in source.cells:
        if cell.cell_type == "code":
            for check, fn in _check_calls(cell.source):
                checked.setdefault(fn, check)
    found = []
    for cell in source.cells:
        if cell.cell_type == "code" and _has_solution(cell):
            found += [Exercise(lesson, fn, checked[fn], _grade_id(cell)) for fn in _defined(cell.source) if fn in checked]
    return found


def match_cells(nb: Any, exercises: Iterable[Exercise]) -> dict[str, tuple[int | None, str]]:
    """``{exercise key: (the student's cell index or None, 'grade_id' | 'function name' | 'none')}``.

    The cell whose nbgrader ``grade_id`` is the exercise's, else the last cell that defines the
    function; never the position or the notebook cell id.
    """
    code = [(i, c) for i, c in enumerate(nb.cells) if c.get("cell_type") == "code"]
    out = {}
    for ex in exercises:
        hits = [i for i, c in code if ex.grade_id and _grade_id(c) == ex.grade_id]
        if hits:
            out[ex.key] = (hits[-1], "grade_id")
            continue
        hits = [i for i, c in code if ex.function in _defined(c.source)]
        out[ex.key] = (hits[-1], "function name") if hits else (None, "none")
    return out


def runnable(source: str) -> str:
    """A student's cell as the grader runs it: hidden tests and top-level check calls removed."""
    lines = source.split("\n")
    try:
        labels, _ = _scan(lines, HIDDEN, "cell")
        lines = [line for line, label in zip(lines, labels) if label == "out"]
    except ValueError:
        pass
    tree = _parse("\n".join(lines))
    drop: set[int] = set()
    for node in tree.body if tree is not None else ():
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            f = node.value.func
            if (f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "") in EX.CHECKS:
                drop.update(range(node.lineno - 1, (node.end_lineno or node.lineno)))
    return "\n".join(line for n, line in enumerate(lines) if n not in drop)


# ------------------------------------------------------------------------- library-use detection
_DYNAMIC = {"exec", "eval", "__import__", "compile", "importlib", "getattr"}


def library_use(nb: Any, cell: int | None, function: str) -> list[str]:
    """What of camlib (or of dynamic code) the student's ``function`` uses, read from the notebook's text.

    Reported, not penalized: a student may call ``camlib.cam...`` instead of writing the function.
    """
    bound: dict[str, str] = {}  # local name -> camlib dotted path, from every import in the notebook
    for c in nb.cells:
        tree = _parse(c.source) if c.get("cell_type") == "code" else None
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "camlib":
                        bound[a.asname or "camlib"] = a.name if a.asname else "camlib"
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "camlib":
                for a in node.names:
                    bound[a.asname or a.name] = f"{node.module}.{a.name}"
    if cell is None:
        return []
    tree = _parse(nb.cells[cell].source)
    if tree is None:
        return []
    bodies = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == function]
    bodies += [n for n in tree.body if isinstance(n, ast.Assign)
               and any(isinstance(t, ast.Name) and t.id == function for t in n.targets)]
    found = set()
    for body in bodies:
        for node in ast.walk(body):
            if isinstance(node, ast.Attribute):
                parts, base = [], node
                while isinstance(base, ast.Attribute):
                    parts.append(base.attr)
                    base = base.value
                if isinstance(base, ast.Name) and base.id in bound:
                    found.add(".".join([bound[base.id]] + parts[::-1]))
            elif isinstance(node, ast.Name) and node.id in bound:
                found.add(bound[node.id])
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                found.update(m for m in mods if m.split(".")[0] == "camlib")
            if isinstance(node, ast.Name) and node.id in _DYNAMIC:
                found.add(f"{node.id}(...) (dynamic code: read it)")
    # keep the longest paths only (camlib.cam.x, not also camlib.cam)
    return sorted(f for f in found if not any(g != f and g.startswith(f + ".") for g in found))


# ------------------------------------------------------------------------------- data exchange
def _encode_inputs(trials: list[tuple]) -> tuple[list, dict[str, np.ndarray]]:
    arrays: dict[str, np.ndarray] = {}

    def enc(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            arrays[f"a{len(arrays)}"] = v.detach().cpu().numpy()
            return {"t": "tensor", "k": f"a{len(arrays) - 1}"}
        if isinstance(v, np.ndarray):
            arrays[f"a{len(arrays)}"] = v
            return {"t": "ndarray", "k": f"a{len(arrays) - 1}"}
        if isinstance(v, bool) or isinstance(v, (int, float)):
            return {"t": type(v).__name__, "v": v}
        if isinstance(v, (list, tuple)):
            return {"t": type(v).__name__, "items": [enc(x) for x in v]}
        raise ValueError(f"cannot send a {type(v).__name__} to the kernel")

    return [[enc(a) for a in trial] for trial in trials], arrays


# Runs in the student's kernel: call the function on the inputs, write what it returns as data.
# It may be tampered with there; that only changes the outputs of that student's own function.
KERNEL_HELPER = r'''
def _coursekit_call(function, inputs, outputs):
    import json, numpy, torch
    fn = globals().get(function)
    info = {"function": function, "missing": fn is None}
    results, arrays = [], {}
    if fn is not None:
        info.update(type=type(fn).__name__, module=str(getattr(fn, "__module__", "")),
                    qualname=str(getattr(fn, "__qualname__", "")))
        with open(inputs + ".json") as fh:
            trials = json.load(fh)
        with numpy.load(inputs + ".npz", allow_pickle=False) as z:
            given = {k: z[k] for k in z.files}

        def dec(d):
            t = d["t"]
            if t == "tensor":
                return torch.from_numpy(given[d["k"]].copy())
            if t == "ndarray":
                return given[d["k"]].copy()
            if t in ("list", "tuple"):
                items = [dec(x) for x in d["items"]]
                return items if t == "list" else tuple(items)
            return d["v"]

        def enc(v, depth=0):
            if isinstance(v, torch.Tensor):
                v = v.detach().cpu()
                if v.dtype in (torch.bfloat16, torch.float16):
                    v = v.float()
                arrays["o%d" % len(arrays)] = v.numpy()
                return {"t": "tensor", "k": "o%d" % (len(arrays) - 1)}
            if isinstance(v, numpy.ndarray) and v.dtype != object:
                arrays["o%d" % len(arrays)] = v
                return {"t": "ndarray", "k": "o%d" % (len(arrays) - 1)}
            if isinstance(v, (bool, int, float, numpy.bool_, numpy.integer, numpy.floating)):
                return {"t": "number", "v": v.item() if isinstance(v, numpy.generic) else v, "type": type(v).__name__}
            if isinstance(v, tuple) and hasattr(v, "values") and hasattr(v, "indices") and depth < 3:
                return {"t": "values_indices", "type": type(v).__name__, "values": enc(v.values, depth + 1),
                        "indices": enc(v.indices, depth + 1)}
            if isinstance(v, (list, tuple)) and depth < 3 and len(v) <= 10000:
                return {"t": type(v).__name__, "items": [enc(x, depth + 1) for x in v]}
            return {"t": "other", "type": type(v).__name__}

        for trial in trials:
            try:
                out = fn(*[dec(a) for a in trial])
            except Exception as exc:
                results.append({"t": "raised", "ename": type(exc).__name__, "evalue": str(exc)[:300]})
                continue
            try:
                results.append(enc(out))
            except Exception:
                results.append({"t": "other", "type": type(out).__name__})
    numpy.savez(outputs + ".npz", **arrays)
    with open(outputs + ".json", "w") as fh:
        json.dump({"info": info, "outputs": results}, fh)
'''


def _read_outputs(stem: Path) -> tuple[dict[str, Any], list[Any]]:
    """The kernel's answer for one exercise, decoded without pickle; ValueError when it is unusable."""
    js, npz = stem.with_suffix(".json"), stem.with_suffix(".npz")
    if not js.is_file() or not npz.is_file():
        raise ValueError("the kernel wrote no outputs")
    if js.stat().st_size > MAX_OUTPUT_BYTES or npz.stat().st_size > MAX_OUTPUT_BYTES:
        raise ValueError(f"the outputs are larger than {MAX_OUTPUT_BYTES >> 20} MB")
    with zipfile.ZipFile(npz) as z:
        if sum(i.file_size for i in z.infolist()) > MAX_OUTPUT_BYTES:
            raise ValueError(f"the outputs are larger than {MAX_OUTPUT_BYTES >> 20} MB")
    data = json.loads(js.read_text(encoding="utf-8"))
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}

    def dec(d: Any, depth: int = 0) -> Any:
        t = d.get("t") if isinstance(d, dict) else None
        if depth > 4:
            raise ValueError("outputs nested too deep")
        if t == "raised":
            return EX.Raised(str(d.get("ename", "Exception"))[:80], str(d.get("evalue", ""))[:MAX_ERROR_CHARS])
        if t == "tensor":
            arr = np.array(arrays[str(d["k"])])
            try:
                return torch.from_numpy(arr)
            except TypeError:  # a dtype torch cannot take from numpy (uint16...): compare the values
                return torch.from_numpy(arr.astype(np.float64))
        if t == "ndarray":
            return np.array(arrays[str(d["k"])])
        if t == "number":
            v = d.get("v")
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return bool(v) if isinstance(v, bool) else _opaque(str(type(v).__name__))
            return v
        if t == "values_indices":
            cls = namedtuple(re.sub(r"\W", "_", str(d.get("type", "result")))[:40] or "result", ["values", "indices"])
            return cls(dec(d["values"], depth + 1), dec(d["indices"], depth + 1))
        if t in ("list", "tuple"):
            items = [dec(x, depth + 1) for x in d.get("items", [])]
            return items if t == "list" else tuple(items)
        return _opaque(str(d.get("type", "object")) if isinstance(d, dict) else "object")

    info = data.get("info", {}) if isinstance(data, dict) else {}
    outputs = [dec(d) for d in data.get("outputs", [])] if isinstance(data, dict) else []
    return (info if isinstance(info, dict) else {}), outputs


def _opaque(type_name: str) -> Any:
    """A stand-in for an output the kernel could only name (a str, None, a dict...)."""
    return type(re.sub(r"\W", "_", type_name)[:40] or "object", (), {})()


# -------------------------------------------------------------------------------- the worker
def _kill_children() -> None:
    """Kill every process left below this one (this process is their sub-reaper), and reap them."""
    me = str(os.getpid())
    for _ in range(20):
        kids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[1] == me:
                kids.append(int(stat.parent.name))
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not kids:
            return
        time.sleep(0.1)


def _worker(job_dir: str) -> None:
    """Run one submission's kernel as ``job.json`` says; write ``status.json``. Started by :func:`_run_job`."""
    from jupyter_client import KernelManager

    job_dir = Path(job_dir)
    job = json.loads((job_dir / "job.json").read_text())
    status: dict[str, Any] = {"cells": [], "exercises": {}, "end": ""}

    def save() -> None:
        (job_dir / "status.json").write_text(json.dumps(status))

    try:  # orphans of the kernel (a double fork) come back to this process, which kills them at the end
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:  # noqa: BLE001 -- not Linux: the kernel's process group is still killed
        pass
    import tempfile

    # Unix sockets in a folder of its own, not TCP ports that a kernel started elsewhere at the same
    # moment could take (see coursekit.course.kernel_manager)
    sockets = tempfile.mkdtemp(prefix="ck-")
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(sockets) / "kernel"))
    try:
        km.start_kernel(env=job["env"], cwd=job["cwd"])
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
    except Exception as exc:  # noqa: BLE001
        status["end"] = f"kernel did not start: {type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        save()
        import shutil
        shutil.rmtree(sockets, ignore_errors=True)
        return

    def run(code: str, timeout: float) -> tuple[str, str]:
        """('ok' | 'error' | 'timeout' | 'stuck' | 'died', error text)."""
        msg_id = kc.execute(code, store_history=False, allow_stdin=False, stop_on_error=False)
        deadline, error, interrupted = time.monotonic() + timeout, "", False
        while True:
            if not km.is_alive():
                return "died", error
            left = deadline - time.monotonic()
            if left <= 0:
                if interrupted:
                    return "stuck", error
                km.interrupt_kernel()
                interrupted, deadline = True, time.monotonic() + 10
                continue
            try:
                msg = kc.get_iopub_msg(timeout=min(0.5, left))
            except queue.Empty:
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "error":
                error = f"{msg['content'].get('ename', '')}: {msg['content'].get('evalue', '')}"[:MAX_ERROR_CHARS]
            elif msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                return ("timeout" if interrupted else "error" if error else "ok"), error

    try:
        for cell in job["cells"]:
            state, error = run(cell["code"], job["cell_timeout"])
            if state != "ok":
                status["cells"].append({"index": cell["index"], "state": state, "error": error})
                save()
            if state in ("died", "stuck"):
                status["end"] = f"{state} in cell {cell['index']}"
                break
        else:
            run(KERNEL_HELPER, 60)
            for cell in job["rerun"]:
                run(cell["code"], job["cell_timeout"])
            for ex in job["exercises"]:
                state, error = run(f"_coursekit_call({ex['function']!r}, {ex['inputs']!r}, {ex['outputs']!r})",
                                   job["timeout"])
                status["exercises"][ex["key"]] = {"state": state, "error": error}
                save()
                if state in ("died", "stuck"):
                    status["end"] = f"{state} in exercise {ex['key']}"
                    break
    finally:
        save()
        try:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
        except Exception:  # noqa: BLE001
            pass
        _kill_children()
        import shutil
        shutil.rmtree(sockets, ignore_errors=True)


def _boot() -> str:
    """The worker's program: :func:`_kill_children` and :func:`_worker` alone (no torch, no camlib, no coursekit)."""
    import inspect

    return "\n".join(["import json, os, queue, signal, sys, time", "from pathlib import Path",
                      f"MAX_ERROR_CHARS = {MAX_ERROR_CHARS!r}", f"KERNEL_HELPER = {KERNEL_HELPER!r}",
                      inspect.getsource(_kill_children), inspect.getsource(_worker), "_worker(sys.argv[1])"])


def _run_job(job_dir: Path, job: dict[str, Any], limit: float) -> dict[str, Any]:
    """Run the worker on ``job`` (in its own session, ``-I``: no user site-packages) with a hard limit."""
    (job_dir / "job.json").write_text(json.dumps(job))
    with open(job_dir / "worker.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-I", "-c", _boot(), str(job_dir)],
                                stdout=log, stderr=log, start_new_session=True, cwd=job["cwd"])
        try:
            proc.wait(timeout=limit)
            hard = ""
        except subprocess.TimeoutExpired:
            hard = f"ran past the grader's limit for the whole submission ({limit:.0f} s)"
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
    try:
        text = (job_dir / "status.json").read_text()[:1 << 20]
        status = json.loads(text)
        if not isinstance(status, dict):
            raise ValueError
    except (OSError, ValueError):
        status = {"cells": [], "exercises": {}, "end": "the grading worker died"}
    if hard:
        status["end"] = "timeout: " + hard
    return status


# ------------------------------------------------------------------------------- the guard
def default_protected() -> list[Path]:
    """What a submission must not change: camlib, coursekit, the lessons, site-packages' start-up hooks."""
    paths = [REPO_ROOT / "camlib", REPO_ROOT / "coursekit", LESSONS_DIR]
    for d in [*site.getsitepackages(), site.getusersitepackages()]:
        paths.append(Path(d))
    return paths


class Guard:
    """Remembers the files under ``roots`` (``*.py``, ``*.pth``, ``*.ipynb``, ``*.json``) and puts them back.

    Site-packages folders are watched at their top level only (where ``.pth`` and ``sitecustomize``
    files run at every Python start); other folders recursively.
    """

    PATTERNS = ("*.py", "*.pth", "*.ipynb", "*.json")

    def __init__(self, roots: Iterable[Path]):
        self.roots = [Path(r) for r in roots]
        self.saved = self._files()

    def _files(self) -> dict[Path, bytes]:
        files = {}
        for root in self.roots:
            if not root.is_dir():
                continue
            deep = "site-packages" not in root.parts
            for pattern in self.PATTERNS:
                for p in (root.rglob(pattern) if deep else root.glob(pattern)):
                    if p.is_file() and "__pycache__" not in p.parts:
                        try:
                            files[p] = p.read_bytes()
                        except OSError:
                            pass
        return files

    def restore(self, keep: Path | None = None) -> list[str]:
        """Put back what changed since the snapshot (remove new files); return what that was.

        The changed and new files are first copied under ``keep`` (their absolute path inside it),
        so nothing is lost if someone other than the submission changed them.
        """
        now = self._files()
        changed = [p for p, data in self.saved.items() if now.get(p) != data] + sorted(now.keys() - self.saved.keys())
        for p in changed:
            if keep is not None and p in now:
                dest = Path(keep) / p.relative_to(p.anchor)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(now[p])
            if p in self.saved:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(self.saved[p])
            else:
                p.unlink(missing_ok=True)
        return sorted(str(p) for p in changed)


# ------------------------------------------------------------------------------ one submission
@dataclass
class Settings:
    """How submissions run: the camlib profile, seconds per exercise and per notebook cell, and
    whether the whole notebook runs (default: down to its last exercise cell)."""

    profile: str | None = "smoke"
    timeout: float = DEFAULT_TIMEOUT
    cell_timeout: float = DEFAULT_CELL_TIMEOUT
    whole_notebook: bool = False

    def __post_init__(self) -> None:
        if self.profile not in (None, "smoke", "cpu", "gpu"):
            raise ValueError(f"expected a profile smoke, cpu or gpu (or None), got {self.profile!r}")
        for name in ("timeout", "cell_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6:
                raise ValueError(f"expected {name} in seconds, a number > 0, got {value!r}")


def _seed(batch_seed: int, n: int, check: str) -> int:
    s = int(hashlib.sha256(f"{batch_seed}:{n}:{check}".encode()).hexdigest()[:8], 16) % (2 ** 31)
    return s + 1 if s == EX.SPECS[check].__defaults__[0] else s


def _first_line(text: str) -> str:
    return " ".join(str(text).split())[:MAX_ERROR_CHARS]


def grade_notebook(text: bytes, source: Any, lesson: str, *, seed: int, settings: Settings, work: Path,
                   data_from: Path | None = None) -> dict[str, Any]:
    """Grade one submission (its file's bytes) against the instructor's ``source`` lesson notebook.

    ``work`` is a fresh folder for this submission (its kernel's home, data and the exchanged
    files); ``data_from`` a camlib data folder to copy in. Returns the row (see :func:`grade_batch`).
    """
    exercises = lesson_exercises(source, lesson)
    row: dict[str, Any] = {"lesson": lesson, "status": "graded", "score": 0, "max_score": len(exercises),
                           "exercises": {}, "notes": [], "reason": ""}
    for ex in exercises:
        row["exercises"][ex.key] = {"function": ex.function, "check": ex.check, "grade_id": ex.grade_id,
                                    "score": 0, "cell": None, "matched_by": "none", "diagnosis": "not graded",
                                    "library_use": []}
    try:
        nb = nbformat.reads(text.decode("utf-8"), as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("no list of cells")
        for c in nb.cells:
            if not isinstance(c.get("source"), str) or c.get("cell_type") not in ("code", "markdown", "raw"):
                raise ValueError("a cell without a type or source")
    except Exception as exc:  # noqa: BLE001
        row.update(status="invalid notebook", reason=f"invalid notebook: {_first_line(f'{type(exc).__name__}: {exc}')}")
        for e in row["exercises"].values():
            e["diagnosis"] = "not graded: invalid notebook"
        return row
    if not exercises:
        row["notes"].append("this lesson has no checked exercises")
        return row

    matched = match_cells(nb, exercises)
    for ex in exercises:
        cell, how = matched[ex.key]
        e = row["exercises"][ex.key]
        e.update(cell=cell, matched_by=how, library_use=library_use(nb, cell, ex.function))
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    last = max([m[0] for m in matched.values() if m[0] is not None], default=-1)
    cells = [{"index": i, "code": runnable(c.source)} for i, c in code if settings.whole_notebook or i <= last]
    rerun = sorted({m[0] for m in matched.values() if m[0] is not None})

    io_dir, home, data = work / "io", work / "home", work / "data"
    for d in (io_dir, home):
        d.mkdir(parents=True)
    if data_from is not None and data_from.is_dir():
        shutil.copytree(data_from, data)
    else:
        data.mkdir()
    specs, jobs = {}, []
    for ex in exercises:
        specs[ex.key] = EX.spec(ex.check, _seed(seed, 0, ex.check) if seed >= 0 else None)
        trials, arrays = _encode_inputs(specs[ex.key].trials)
        stem = io_dir / re.sub(r"\W", "_", ex.key)
        stem.with_suffix(".json").write_text(json.dumps(trials))
        np.savez(stem.with_suffix(".npz"), **arrays)
        jobs.append({"key": ex.key, "function": ex.function, "inputs": str(stem),
                     "outputs": str(io_dir / ("out_" + stem.name))})
    env = kernel_env(lesson, settings.profile, None)
    env.update(HOME=str(home), IPYTHONDIR=str(home / ".ipython"), MPLCONFIGDIR=str(home / ".matplotlib"),
               JUPYTER_CONFIG_DIR=str(home / ".jupyter"), PYTHONNOUSERSITE="1", MPLBACKEND="agg",
               CAMLIB_DATA=str(data), CAMLIB_CACHE=str(data / "cache"), TMPDIR=str(work / "tmp"))
    (work / "tmp").mkdir()
    (work / "run").mkdir()
    job = {"cells": cells, "rerun": [{"index": i, "code": runnable(nb.cells[i].source)} for i in rerun],
           "exercises": jobs, "timeout": settings.timeout, "cell_timeout": settings.cell_timeout,
           "env": env, "cwd": str(work / "run")}
    limit = settings.cell_timeout * (len(cells) + len(rerun)) + settings.timeout * len(jobs) + 180
    status = _run_job(work, job, limit)

    end = str(status.get("end", ""))
    cell_notes = [f"cell {c.get('index')}: {c.get('state')}" + (f" ({c.get('error')})" if c.get("error") else "")
                  for c in status.get("cells", []) if isinstance(c, dict)]
    row["notes"] += [_first_line(n) for n in cell_notes[:5]]
    for ex in exercises:
        e = row["exercises"][ex.key]
        st = status.get("exercises", {}).get(ex.key)
        state = st.get("state") if isinstance(st, dict) else None
        if state is None:
            e["diagnosis"] = f"not graded: {end or 'the kernel did not get to it'}"
        elif state in ("timeout", "stuck"):
            e["diagnosis"] = f"timeout: {ex.function} ran past {settings.timeout:g} s on the grader's inputs"
        elif state == "died":
            e["diagnosis"] = f"the kernel died while running {ex.function}"
        else:
            try:
                info, outputs = _read_outputs(Path(jobs[exercises.index(ex)]["outputs"]))
            except Exception as exc:  # noqa: BLE001 -- whatever the kernel wrote
                e["diagnosis"] = _first_line(f"could not read the outputs of {ex.function}: {exc}"
                                             + (f" ({st.get('error')})" if st.get("error") else ""))
                continue
            if info.get("missing"):
                e["diagnosis"] = f"no function named {ex.function} in the notebook"
                continue
            if info.get("module") not in (None, "", "__main__"):
                e["library_use"].append(f"{ex.function} is {info.get('module')}.{info.get('qualname')} itself")
            try:
                message = EX.diagnose(specs[ex.key], outputs)
            except Exception as exc:  # noqa: BLE001 -- outputs of the wrong length or kind
                message = f"{ex.check}: could not compare the outputs: {type(exc).__name__}: {exc}"
            e["score"] = 0 if message else 1
            e["diagnosis"] = message[:2000] if message else "ok"
    row["score"] = sum(e["score"] for e in row["exercises"].values())
    if end.startswith("died"):
        row.update(status="kernel died", reason=f"the kernel died ({end})")
    elif end.startswith("stuck") or end.startswith("timeout"):
        row.update(status="timeout", reason=end if end.startswith("timeout") else
                   f"timeout: {end.replace('stuck', 'still running after the time limit and an interrupt')}")
    elif end:
        row.update(status="not graded", reason=end)
    elif any(e["diagnosis"].startswith("timeout") for e in row["exercises"].values()):
        row.update(status="timeout", reason="an exercise ran past the time limit")
    return row


# ---------------------------------------------------------------------------------- the batch
def _manifest(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder``."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and not p.is_symlink():
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            out[str(p.relative_to(folder))] = h.hexdigest()
        elif p.is_symlink():
            out[str(p.relative_to(folder))] = "symlink"
    return out


def _student_name(path: Path) -> str:
    return path.parent.name if path.parent.name not in ("", ".") else path.stem


def grade_batch(submissions: Iterable[Path], lessons_dir: Path = LESSONS_DIR,
                out: Path = REPO_ROOT / "build" / "grades", *, lesson: str | None = None,
                settings: Settings | None = None, seed: int | None = None,
                protect: Iterable[Path] | None = None, reference: bool = True,
                echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Grade every submission; write ``out/gradebook.csv`` and ``out/gradebook.json`` after each one.

    One row per submission, whatever happens to it: ``student``, ``lesson``, ``submission``,
    ``status`` ('graded', 'invalid notebook', 'timeout', 'kernel died', 'not graded', 'tampered'),
    ``score`` of ``max_score``, per exercise its score, diagnosis and library use, and the
    ``reason`` it could not be graded. ``seed`` (default: drawn now) picks the trials; with
    ``reference`` the instructor's own notebook of each lesson is graded first (its camlib data
    folder is copied to each student's kernel; it must get full marks). ``protect``: folders that
    a submission must not change (default :func:`default_protected`); what it changed is put back.
    """
    settings = settings or Settings()
    seed = secrets.randbelow(2 ** 31) if seed is None else int(seed)
    paths = [Path(p) for p in submissions]
    if not paths:
        raise ValueError("expected one or more submissions (students' NN_name.ipynb files), got none")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    texts: list[bytes | None] = []
    for p in paths:  # every file is read before any student code runs
        try:
            texts.append(p.read_bytes())
        except OSError as exc:
            texts.append(None)
            echo(f"{p}: cannot read it ({exc})")
    lessons: dict[str, tuple[Path, Any]] = {}
    nums = []
    for p in paths:
        num = lesson or (p.name[:2] if LESSON_FILE.match(p.name) else "")
        nums.append(num)
        if num and num not in lessons:
            src = find_lessons(lessons_dir, [num])[0]
            lessons[num] = (src, nbformat.read(src, as_version=4))
    guard = Guard(default_protected() if protect is None else protect)
    rows: list[dict[str, Any]] = []
    refs: list[dict[str, Any]] = []
    book = {"written": "", "seed": seed, "profile": settings.profile, "timeout_s": settings.timeout,
            "cell_timeout_s": settings.cell_timeout, "reference": refs, "rows": rows}

    def save() -> None:
        book["written"] = dt.datetime.now().isoformat(timespec="seconds")
        write_gradebook(out, book)

    with tempfile.TemporaryDirectory(prefix="coursekit-grade-") as tmp:
        data_dirs: dict[str, Path] = {}
        manifests: dict[str, dict[str, str]] = {}
        if reference:
            for num, (src, nb) in sorted(lessons.items()):
                work = Path(tempfile.mkdtemp(prefix=f"reference-{num}-", dir=tmp))
                start = time.perf_counter()
                row = grade_notebook(src.read_bytes(), nb, num, seed=seed, settings=settings, work=work)
                row.update(student="(instructor's solution)", submission=str(src),
                           seconds=round(time.perf_counter() - start, 1),
                           changed_files=guard.restore(out / "changed-files" / f"reference-{num}"))
                refs.append(row)
                data_dirs[num] = work / "data"
                manifests[num] = _manifest(work / "data")
                ok = row["score"] == row["max_score"] and row["status"] == "graded"
                echo(f"reference {src.name}: {row['score']} of {row['max_score']}"
                     + ("" if ok else f" -- WARNING: the instructor's solution does not get full marks "
                                      f"({row['reason'] or 'see gradebook.json'}); check the timeouts and the lesson"))
        for n, (path, text, num) in enumerate(zip(paths, texts, nums), 1):
            work = Path(tempfile.mkdtemp(prefix=f"submission-{n}-", dir=tmp))  # a name no kernel could guess
            start = time.perf_counter()
            if num in data_dirs and _manifest(data_dirs[num]) != manifests[num]:
                del data_dirs[num]  # changed since the reference run made it: no student gets it any more
                echo(f"lesson {num}: the reference run's data folder was changed; kernels start without it from now on")
            try:
                if text is None:
                    row = {"lesson": num, "status": "not graded", "score": 0, "max_score": 0, "exercises": {},
                           "notes": [], "reason": "the file could not be read"}
                elif not num:
                    row = {"lesson": "", "status": "not graded", "score": 0, "max_score": 0, "exercises": {},
                           "notes": [], "reason": f"cannot tell the lesson from the name {path.name!r}: name it "
                                                  "NN_name.ipynb or pass --lesson NN"}
                else:
                    row = grade_notebook(text, lessons[num][1], num, seed=_seed(seed, n, "check_gap"),
                                         settings=settings, work=work, data_from=data_dirs.get(num))
            except Exception as exc:  # noqa: BLE001 -- the batch goes on
                row = {"lesson": num, "status": "not graded", "score": 0, "max_score": 0, "exercises": {},
                       "notes": [], "reason": _first_line(f"grader error: {type(exc).__name__}: {exc}")}
            changed = guard.restore(out / "changed-files" / f"submission-{n}")
            if changed:
                row["notes"].append(f"changed protected files (put back; the changed copies are in "
                                    f"{out / 'changed-files' / f'submission-{n}'}): {changed[:5]}")
                row.update(status="tampered", reason=f"the submission changed {len(changed)} protected file(s); "
                                                      "they were put back")
            row.update(student=_student_name(path), submission=str(path),
                       sha256=hashlib.sha256(text or b"").hexdigest(), seed=_seed(seed, n, "check_gap"),
                       seconds=round(time.perf_counter() - start, 1), changed_files=changed)
            rows.append(row)
            save()
            echo(f"[{n}/{len(paths)}] {path}: {row['status']}, {row['score']} of {row['max_score']}"
                 + (f" -- {row['reason']}" if row["reason"] else ""))
    save()
    return rows


def _keys(rows: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r.get("exercises", {}) if k not in keys]
    return keys


def write_gradebook(out: Path, book: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``gradebook.json`` (everything) and ``gradebook.csv`` (one row per submission)."""
    out = Path(out)
    rows = book["rows"]
    keys = _keys(rows)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["student", "lesson", "submission", "status", "score", "max_score", *keys, "diagnosis",
                "library_use", "reason", "sha256"])
    for r in rows:
        ex = r.get("exercises", {})
        diag = "; ".join(f"{k}: {e['diagnosis'].splitlines()[0]}" for k, e in ex.items() if e["diagnosis"] != "ok")
        lib = "; ".join(f"{k}: {', '.join(e['library_use'])}" for k, e in ex.items() if e.get("library_use"))
        w.writerow([r.get("student", ""), r.get("lesson", ""), r.get("submission", ""), r.get("status", ""),
                    r.get("score", 0), r.get("max_score", 0), *[ex[k]["score"] if k in ex else "" for k in keys],
                    diag, lib, r.get("reason", ""), r.get("sha256", "")])
    csv_path, json_path = out / "gradebook.csv", out / "gradebook.json"
    _write_atomic(csv_path, buf.getvalue())
    _write_atomic(json_path, json.dumps(book, indent=1, default=str) + "\n")
    return csv_path, json_path


def main_grade(args: Any) -> int:
    """``python -m coursekit grade ...`` (the parsed arguments): grade, print a summary; 0 once every row is written."""
    settings = Settings(profile=args.profile, timeout=args.timeout or DEFAULT_TIMEOUT,
                        cell_timeout=args.cell_timeout or DEFAULT_CELL_TIMEOUT, whole_notebook=args.whole_notebook)
    rows = grade_batch(args.submissions, args.lessons_dir, args.out, lesson=args.lesson, settings=settings,
                       seed=args.seed, protect=getattr(args, "protect", None), echo=lambda m: print(m, flush=True))
    for r in rows:
        print(f"{r['submission']}: {r['score']} of {r['max_score']} exercises passed ({r['status']})"
              + (f" -- {r['reason']}" if r["reason"] else ""))
        for key, e in r["exercises"].items():
            print(f"  {key:<28} {'pass' if e['score'] else 'FAIL'}"
                  + ("" if e["score"] else "  -- " + e["diagnosis"].replace("\n", "\n     ")))
            if e["library_use"]:
                print(f"  {'':<28} uses {', '.join(e['library_use'])}")
    print(f"Wrote {Path(args.out) / 'gradebook.csv'} and {Path(args.out) / 'gradebook.json'}")
    return 0
