"""The course as a whole: run the lessons into HTML and REPORT.md, make the student edition.

``python -m coursekit <command>``; the Makefile calls these (see ``lessons/README.md``):

* ``build``         execute every lesson (nbclient), write ``<out>/NN_name.ipynb``, ``.html`` and
                    ``REPORT.md`` (every claim the lessons checked, run times, the machine);
* ``student``       the student edition: solutions replaced by ``raise NotImplementedError``,
                    hidden tests removed, written answers blanked, outputs cleared;
* ``check-student`` make a student edition in a temporary folder, check it leaks no solution line
                    and that running it fails only at the exercises;
* ``grade``         grade students' notebooks: the checks run in the grader, not in the students'
                    kernels (:mod:`coursekit.grade`); gradebooks in CSV and JSON;
* ``sync-colab``    write or refresh each lesson's Colab badge and set-up cells (``--check``: only
                    say whether they are up to date).

Markers are nbgrader's: ``### BEGIN SOLUTION`` / ``### END SOLUTION`` and ``### BEGIN HIDDEN
TESTS`` / ``### END HIDDEN TESTS`` in code, ``<!-- BEGIN SOLUTION -->`` / ``<!-- END SOLUTION -->``
in markdown. The sources in ``lessons/`` are only ever read, except by ``sync-colab``.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import nbformat

REPO_ROOT = Path(__file__).resolve().parent.parent
LESSONS_DIR = REPO_ROOT / "lessons"
LESSON_FILE = re.compile(r"^(\d\d)_\w+\.ipynb$")

SOLUTION = (re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION[ \t]*$"), re.compile(r"^[ \t]*### END SOLUTION[ \t]*$"))
HIDDEN = (re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS[ \t]*$"), re.compile(r"^[ \t]*### END HIDDEN TESTS[ \t]*$"))
MD_SOLUTION = re.compile(r"<!--\s*BEGIN SOLUTION\s*-->(?P<answer>.*?)<!--\s*END SOLUTION\s*-->", re.S)
STUB = ("# YOUR CODE HERE", "raise NotImplementedError")
ANSWER = "YOUR ANSWER HERE"
EXERCISE_TAG = "exercise"
STUDENT_MARKER = ".coursekit-student-edition"  # written by make_student: the folder holds an edition it made


# --------------------------------------------------------------------------------------- lessons
def find_lessons(lessons_dir: Path = LESSONS_DIR, only: Iterable[str] | None = None) -> list[Path]:
    """The lesson notebooks ``NN_name.ipynb`` in ``lessons_dir``, sorted; ``only`` picks by NN."""
    lessons_dir = Path(lessons_dir)
    if not lessons_dir.is_dir():
        raise ValueError(f"expected a folder of lessons, got {str(lessons_dir)!r} (not a directory)")
    paths = sorted(p for p in lessons_dir.iterdir() if LESSON_FILE.match(p.name))
    if only:
        wanted = [str(n).zfill(2) for n in only]
        known = {p.name[:2] for p in paths}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise ValueError(f"no lesson numbered {unknown} in {lessons_dir}; found {sorted(known)}")
        paths = [p for p in paths if p.name[:2] in wanted]
    return paths


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _notebook_text(nb: Any) -> str:
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def _refuse_inside(out: Path, lessons_dir: Path) -> None:
    out, src = Path(out).resolve(), Path(lessons_dir).resolve()
    if out == src or src in out.parents or out in src.parents:
        raise ValueError(f"output folder {str(out)!r} must lie outside the lessons folder {str(src)!r} "
                         "and not contain it: the lesson sources stay clean")


def kernel_env(lesson: str, profile: str | None, report: Path | None) -> dict[str, str]:
    """The environment a lesson's kernel runs in: this one, plus the profile, lesson and report."""
    env = dict(os.environ)
    env.pop("CAMLIB_REPORT", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["CAMLIB_LESSON"] = lesson
    env["CAMLIB_PROGRESS"] = "0"   # no progress widgets: a saved notebook or HTML page keeps only their "0%"
    if profile:
        env["CAMLIB_PROFILE"] = profile
    if report is not None:
        env["CAMLIB_REPORT"] = str(Path(report).resolve())
    return env


def kernel_manager(folder: Path | None = None) -> Any:
    """A kernel manager (asynchronous, as nbclient's own: a blocking one would ignore the cell time
    limit) whose kernel talks over Unix sockets in a folder of its own (``folder``, else a
    new temporary one), not over TCP ports. With TCP, a port is picked free and then bound by the
    kernel a moment later, so kernels started at the same time by other processes (a second build,
    the tests, the grader) can take the same port: each side then waits for a message that went to
    another kernel, and the build hangs with both processes idle (seen here twice before this).
    Unix socket paths are unique to the folder, so that cannot happen."""
    from jupyter_client.manager import AsyncKernelManager

    folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="ck-"))
    return AsyncKernelManager(kernel_name="python3", transport="ipc", ip=str(folder / "kernel"))


def _errors(nb: Any) -> list[tuple[int, Any]]:
    return [(i, o) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


# ----------------------------------------------------------------------------------------- build
@dataclass
class LessonRun:
    """How one lesson's execution went."""

    lesson: str
    name: str
    ok: bool
    seconds: float
    error: str = ""
    profile: str = ""
    machine: str = ""
    finished: str = ""


def machine_info() -> str:
    """One line naming the CPU, its cores, the GPU (if any) and the torch and Python versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu} ({os.cpu_count()} cores), {gpu}; torch {torch.__version__}, "
            f"Python {platform.python_version()}")


MATHJAX_DIR = "mathjax"   # next to the HTML pages, copied from jupyter-server-mathjax


def mathjax_url(out: Path, echo: Callable[[str], None] = print) -> str:
    """Copy MathJax (from the ``jupyter-server-mathjax`` package) to ``out/mathjax`` once and return
    the URL, relative to the HTML pages in ``out``, that makes their equations render offline.

    Without the package the pages load MathJax from nbconvert's CDN, and this says so.
    """
    try:
        import jupyter_server_mathjax
    except ImportError:
        echo("note: jupyter-server-mathjax is not installed, so the HTML pages load MathJax from a CDN "
             "(offline, equations show as LaTeX source); pip install jupyter-server-mathjax")
        from nbconvert import HTMLExporter
        return HTMLExporter().mathjax_url
    src = Path(jupyter_server_mathjax.__file__).parent / "static"
    dest = Path(out) / MATHJAX_DIR
    if not (dest / "MathJax.js").is_file():
        shutil.copytree(src, dest, dirs_exist_ok=True)
    return f"{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def execute_lesson(path: Path, out: Path, *, profile: str | None = None, timeout: float | None = 3600,
                   report: Path | None = None, mathjax: str | None = None,
                   extra_env: dict[str, str] | None = None) -> LessonRun:
    """Execute one lesson (cwd = its folder), write the executed notebook and its HTML to ``out``.

    ``mathjax`` is the MathJax URL the HTML page loads (:func:`mathjax_url`; default nbconvert's CDN);
    ``extra_env`` is added to the kernel's environment.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError
    from nbconvert import HTMLExporter

    from camlib.config import default_profile_name

    path, out = Path(path), Path(out)
    nb = nbformat.read(path, as_version=4)
    env = {**kernel_env(path.name[:2], profile, report), **(extra_env or {})}
    sockets = Path(tempfile.mkdtemp(prefix="ck-"))
    client = NotebookClient(nb, timeout=timeout if timeout and timeout > 0 else None, kernel_name="python3",
                            km=kernel_manager(sockets), resources={"metadata": {"path": str(path.parent)}})
    running = [None]                                   # the index of the cell being run (for a timeout's message)
    client.on_cell_start = lambda cell, cell_index: running.__setitem__(0, cell_index)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    error = ""
    try:  # the kernel process's own output (its log, C-level crashes) goes to a file, not the console
        with open(out / f"{path.stem}.kernel.log", "w", encoding="utf-8") as log:
            client.execute(env=env, stdout=log, stderr=log)
    except Exception as exc:  # a failed lesson is reported, and the others still run
        failed = _errors(nb)
        if isinstance(exc, CellTimeoutError):
            where = failed[0][0] if failed else running[0]
            error = (f"cell {where}: " if where is not None else "") + f"timed out (limit {timeout:g} s per cell)"
        elif failed:
            i, o = failed[0]
            error = f"cell {i}: {o.get('ename', '')}: {o.get('evalue', '')}"
        else:
            error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
        note = nbformat.v4.new_markdown_cell(f"**This lesson failed in the course build** ({error}).")
        note.metadata["tags"] = ["build-error"]
        nb.cells.insert(0, note)
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    seconds = time.perf_counter() - start
    _write_atomic(out / path.name, _notebook_text(nb))
    exporter = HTMLExporter(mathjax_url=mathjax) if mathjax else HTMLExporter()
    html, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
    _write_atomic(out / f"{path.stem}.html", html)
    return LessonRun(lesson=path.name[:2], name=path.stem, ok=not error, seconds=round(seconds, 1), error=error,
                     profile=profile or default_profile_name(),
                     finished=dt.datetime.now().isoformat(timespec="seconds"))


def read_claims(path: Path) -> list[dict[str, Any]]:
    """The rows that :func:`camlib.report.claim` appended to ``path`` (none if it is missing)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: expected one JSON object per line, got {line[:80]!r}") from exc
    return rows


def _cell_text(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ").strip()


def write_report(out: Path, runs: dict[str, dict[str, Any]], claims: list[dict[str, Any]]) -> Path:
    """Write ``out/REPORT.md``: the lessons (status, time, claims) and one row per claim."""
    out = Path(out)
    lines = ["# Course build report", "",
             f"Written {dt.datetime.now().isoformat(timespec='seconds')} by `python -m coursekit build`.", ""]
    machines: dict[str, list[str]] = {}
    for num, run in sorted(runs.items()):
        machines.setdefault(run.get("machine", "?"), []).append(num)
    for machine, nums in machines.items():
        lines.append(f"- Machine: {machine} (lessons {', '.join(nums)})")
    findings = [c for c in claims if c.get("kind", "claim") == "claim"]
    sanity = [c for c in claims if c.get("kind") == "sanity"]

    def tally(rows: list[dict[str, Any]]) -> str:
        return f"{sum(bool(c.get('passed')) for c in rows)}/{len(rows)}"

    lines += ["", "## Lessons", "",
              "| lesson | result | run time | profile | claims passed | sanity checks passed | finished | error |",
              "|---|---|---|---|---|---|---|---|"]
    for num, run in sorted(runs.items()):
        mine = [c for c in findings if c.get("lesson") == num]
        checks = [c for c in sanity if c.get("lesson") == num]
        lines.append(f"| {_cell_text(run['name'])} | {'ok' if run['ok'] else '**FAILED**'} | {run['seconds']:.1f} s "
                     f"| {run.get('profile', '')} | {tally(mine)} | {tally(checks)} | {run.get('finished', '')} "
                     f"| {_cell_text(run.get('error', ''))} |")
    lines.append(f"| all | {sum(r['ok'] for r in runs.values())}/{len(runs)} ok "
                 f"| {sum(r['seconds'] for r in runs.values()) / 60:.1f} min | | {tally(findings)} | {tally(sanity)} | | |")
    lines += ["", "## Claims", "",
              "Findings that would fail if the paper's idea were false on this data; *fails if* says what result "
              "would have made each one fail.", "",
              "| lesson | claim | fails if | paper | ours | dataset | profile | result |",
              "|---|---|---|---|---|---|---|---|"]
    for c in sorted(findings, key=lambda c: str(c.get("lesson"))):
        lines.append("| " + " | ".join(_cell_text(c.get(k, "")) for k in ("lesson", "claim", "fails_if", "paper",
                                                                          "ours", "dataset", "profile"))
                     + f" | {'pass' if c.get('passed') else '**FAIL**'} |")
    if not findings:
        lines.append("| | (no claims recorded) | | | | | | |")
    lines += ["", "## Sanity checks", "",
              "Identities that hold by construction (they test the code, not the paper's idea).", "",
              "| lesson | check | ours | profile | result |", "|---|---|---|---|---|"]
    for c in sorted(sanity, key=lambda c: str(c.get("lesson"))):
        lines.append("| " + " | ".join(_cell_text(c.get(k, "")) for k in ("lesson", "claim", "ours", "profile"))
                     + f" | {'pass' if c.get('passed') else '**FAIL**'} |")
    if not sanity:
        lines.append("| | (no sanity checks recorded) | | | |")
    path = out / "REPORT.md"
    _write_atomic(path, "\n".join(lines) + "\n")
    return path


def build(lessons_dir: Path = LESSONS_DIR, out: Path = REPO_ROOT / "build" / "course", *, profile: str | None = None,
          only: Iterable[str] | None = None, timeout: float | None = 3600, jobs: int = 1,
          echo: Callable[[str], None] = print) -> list[LessonRun]:
    """Execute the lessons into ``out`` and write ``out/REPORT.md``; returns this build's runs.

    Lessons not built this time keep their earlier rows (``out/runs.json``); a rebuilt lesson's
    old claims are dropped from ``out/claims.jsonl`` before the build starts. ``jobs``: how many
    lessons run at once (each kernel then gets ``OMP_NUM_THREADS=1`` unless it is set: on a 2-core
    machine two single-threaded kernels finish the course sooner than one kernel with two threads,
    since much of a lesson is single-threaded NumPy, SciPy and plotting).
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor, as_completed

    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int, got {jobs!r}")
    paths = find_lessons(lessons_dir, only)
    out = Path(out)
    _refuse_inside(out, lessons_dir)
    out.mkdir(parents=True, exist_ok=True)
    claims_path, runs_path = out / "claims.jsonl", out / "runs.json"
    runs: dict[str, dict[str, Any]] = json.loads(runs_path.read_text()) if runs_path.exists() else {}
    machine = machine_info()
    echo(f"Building {len(paths)} lesson(s) into {out} on {machine}")
    mathjax = mathjax_url(out, echo)
    nums = {path.name[:2] for path in paths}
    kept = [c for c in read_claims(claims_path) if c.get("lesson") not in nums]
    _write_atomic(claims_path, "".join(json.dumps(c) + "\n" for c in kept))
    lock, done = threading.Lock(), []
    threads = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")} if jobs > 1 else {}

    def one(i: int, path: Path) -> LessonRun:
        num = path.name[:2]
        echo(f"[{i}/{len(paths)}] {path.stem} ...")
        run = execute_lesson(path, out, profile=profile, timeout=timeout, report=claims_path, mathjax=mathjax,
                             extra_env=threads)
        run.machine = machine
        with lock:
            runs[num] = asdict(run)
            _write_atomic(runs_path, json.dumps(runs, indent=1) + "\n")
            n_claims = sum(c.get("lesson") == num for c in read_claims(claims_path))
        echo(f"[{i}/{len(paths)}] {path.stem}: {'ok' if run.ok else 'FAILED'} in {run.seconds:.1f} s, "
             f"{n_claims} claim(s)" + (f" -- {run.error}" if run.error else ""))
        return run

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(one, i, path) for i, path in enumerate(paths, 1)]
        for f in as_completed(futures):
            done.append(f.result())
    done.sort(key=lambda r: r.lesson)
    report = write_report(out, runs, read_claims(claims_path))
    failed = [r.name for r in done if not r.ok]
    echo(f"Wrote {report}" + (f"; FAILED: {', '.join(failed)}" if failed else "; all lessons ran"))
    return done


# --------------------------------------------------------------------------------------- student
def _scan(lines: list[str], markers: tuple[re.Pattern, re.Pattern], where: str,
          inside: bool = False) -> tuple[list[str], bool]:
    """Label each line 'begin', 'end', 'in' or 'out' of the marked regions; check the nesting."""
    begin, end = markers
    labels = []
    for n, line in enumerate(lines):
        if begin.match(line):
            if inside:
                raise ValueError(f"{where}, line {n + 1}: a second BEGIN before the END of the first")
            inside = True
            labels.append("begin")
        elif end.match(line):
            if not inside:
                raise ValueError(f"{where}, line {n + 1}: an END marker without its BEGIN")
            inside = False
            labels.append("end")
        else:
            labels.append("in" if inside else "out")
    return labels, inside


def _stubbed(source: str, where: str, replacement: tuple[str, ...] = STUB) -> str:
    lines = source.split("\n")
    labels, open_ = _scan(lines, SOLUTION, where)
    if open_:
        raise ValueError(f"{where}: '### BEGIN SOLUTION' is never closed by '### END SOLUTION'")
    kept = []
    for line, label in zip(lines, labels):
        if label == "begin":
            indent = SOLUTION[0].match(line).group("indent")
            kept += [indent + r for r in replacement]
        elif label == "out":
            kept.append(line)
    return "\n".join(kept)


def _check_md_markers(source: str, where: str) -> None:
    rest = MD_SOLUTION.sub("", source)
    if re.search(r"<!--\s*(BEGIN|END) SOLUTION\s*-->", rest):
        raise ValueError(f"{where}: unmatched <!-- BEGIN SOLUTION --> / <!-- END SOLUTION --> marker")


def student_notebook(nb: Any, where: str = "notebook") -> Any:
    """A student copy of ``nb``: solutions stubbed, hidden tests and outputs gone, answers blanked."""
    from .colab_cells import BADGE_TAG

    nb = copy.deepcopy(nb)
    cells, hidden = [], False
    for i, cell in enumerate(nb.cells):
        here = f"{where}, cell {i}"
        tags = cell.get("metadata", {}).get("tags", [])
        if BADGE_TAG in tags:  # the badge opens the full edition on GitHub: point students elsewhere
            note = nbformat.v4.new_markdown_cell(
                "*Student edition.* Open it in Jupyter, or in Google Colab with *File → Upload notebook*; "
                "on Colab run the set-up cell below first.")
            note.metadata["tags"] = ["student-note"]
            if "id" in cell:
                note["id"] = cell["id"]
            else:
                note.pop("id", None)
            cells.append(note)
            continue
        if cell.cell_type == "code":
            lines = cell.source.split("\n")
            labels, hidden = _scan(lines, HIDDEN, here, hidden)
            kept = [line for line, label in zip(lines, labels) if label == "out"]
            if len(kept) < len(lines) and not "\n".join(kept).strip():
                continue  # the cell held only hidden tests
            cell.source = _stubbed("\n".join(kept), here)
            cell.outputs, cell.execution_count = [], None
        elif cell.cell_type == "markdown":
            _check_md_markers(cell.source, here)
            cell.source = _stubbed(MD_SOLUTION.sub(ANSWER, cell.source), here, (ANSWER,))
        cell.get("metadata", {}).pop("execution", None)
        cells.append(cell)
    if hidden:
        raise ValueError(f"{where}: '### BEGIN HIDDEN TESTS' is never closed by '### END HIDDEN TESTS'")
    nb.cells = cells
    nb.metadata.pop("widgets", None)
    return nb


def _secret_and_public_lines(nb: Any) -> tuple[set[str], set[str]]:
    """Stripped lines inside solution / hidden-test regions, and those outside all of them."""
    secret, public, hidden = set(), set(), False
    for i, cell in enumerate(nb.cells):
        lines = cell.source.split("\n")
        if cell.cell_type == "markdown":
            for m in MD_SOLUTION.finditer(cell.source):
                secret.update(m.group("answer").split("\n"))
            lines = MD_SOLUTION.sub("", cell.source).split("\n")
            solution, _ = _scan(lines, SOLUTION, f"cell {i}")
            hid = ["out"] * len(lines)
        else:
            hid, hidden = _scan(lines, HIDDEN, f"cell {i}", hidden)
            solution, _ = _scan(lines, SOLUTION, f"cell {i}")
        for line, a, b in zip(lines, solution, hid):
            (public if a == "out" and b == "out" else secret).add(line)
    clean = lambda s: {line.strip() for line in s if line.strip()}  # noqa: E731
    return clean(secret), clean(public)


def _strings(obj: Any) -> Iterable[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def find_leaks(source_nb: Any, student: Any, min_chars: int = 4) -> list[str]:
    """Solution or hidden-test lines of ``source_nb`` that show up in ``student`` (a notebook or text).

    Lines that also appear outside the marked regions of the source (``return out``, ``)``) are
    not secrets, and student lines copied from there are not leaks; a secret line counts as leaked
    when any other student line contains it. Lines shorter than ``min_chars`` are ignored.
    """
    secret, public = _secret_and_public_lines(source_nb)
    texts = [student] if isinstance(student, str) else list(_strings(student))
    new_lines = {line.strip() for t in texts for line in t.split("\n")} - public
    return sorted(s for s in secret - public if len(s) >= min_chars and any(s in line for line in new_lines))


def _student_readme(paths: list[Path]) -> str:
    rows = "\n".join(f"- `{p.name}`" for p in paths)
    return ("# CAM course: student edition\n\n"
            "Each lesson has exercises: a cell with `raise NotImplementedError` for you to replace with\n"
            "your code, followed by a check (`camlib.exercises.check_...`) that runs your function on\n"
            "random inputs against a reference and says what differs. Run the notebooks in Jupyter\n"
            "with camlib installed, or upload them to Google Colab (its set-up cell installs camlib).\n"
            "Written answers go where a cell says \"YOUR ANSWER HERE\".\n\n" + rows + "\n")


def make_student(lessons_dir: Path = LESSONS_DIR, out: Path = REPO_ROOT / "build" / "student", *,
                 force: bool = False, only: Iterable[str] | None = None) -> list[Path]:
    """Write the student edition of the lessons to ``out``, with a marker file listing what it wrote.

    A non-empty ``out`` is refused, except with ``force`` when its marker says this made it and it
    holds nothing else: then only the files the marker lists are replaced.
    """
    paths = find_lessons(lessons_dir, only)
    out = Path(out)
    _refuse_inside(out, lessons_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"expected {str(out)!r} to be a folder for the student edition; it is a file")
    old: list[str] = []
    if out.exists() and any(out.iterdir()):
        try:
            old = json.loads((out / STUDENT_MARKER).read_text(encoding="utf-8"))["files"]
            if not (isinstance(old, list) and all(isinstance(f, str) and "/" not in f and f not in ("", ".", "..")
                                                  for f in old)):
                raise ValueError
        except (OSError, ValueError, KeyError, TypeError):
            raise FileExistsError(f"{out} is not empty and is not a student edition made by `python -m coursekit "
                                  f"student` (no valid {STUDENT_MARKER} file in it): refusing to replace it, even "
                                  "with --force; pick a new or empty folder") from None
        if not force:
            raise FileExistsError(f"{out} already holds a student edition (it is not empty); "
                                  "pass --force to replace it")
        others = sorted(p.name for p in out.iterdir() if p.name not in old and p.name != STUDENT_MARKER)
        if others:
            raise FileExistsError(f"{out} holds a student edition and also files it did not write: {others[:5]}; "
                                  "move them away first (--force replaces only the student edition)")
    sources = [nbformat.read(p, as_version=4) for p in paths]
    editions = [student_notebook(nb, p.name) for nb, p in zip(sources, paths)]  # fail before deleting
    for p, nb, ed in zip(paths, sources, editions):
        leaks = find_leaks(nb, ed)
        if leaks:
            raise RuntimeError(f"{p.name}: the student edition would leak solution lines: {leaks[:5]}")
    for name in old:
        (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for p, ed in zip(paths, editions):
        _write_atomic(out / p.name, _notebook_text(ed))
        written.append(out / p.name)
    _write_atomic(out / "README.md", _student_readme(paths))
    _write_atomic(out / STUDENT_MARKER, json.dumps({"made_by": "python -m coursekit student",
                                                    "files": [p.name for p in written] + ["README.md"]}) + "\n")
    return written


def _calls_a_check(source: str) -> bool:
    from camlib.exercises import CHECKS

    return re.search(r"\b(?:" + "|".join(CHECKS) + r")\s*\(", source) is not None


def exercise_cells(nb: Any) -> dict[int, str]:
    """Cells where a student edition may fail: ``{index: 'solution' | 'check'}``.

    A *solution* cell holds solution markers or their stub (or is tagged ``exercise``); a *check*
    cell calls one of :mod:`camlib.exercises`' checks.
    """
    found = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        src = cell.source
        if _calls_a_check(src):
            found[i] = "check"
        elif (EXERCISE_TAG in cell.get("metadata", {}).get("tags", []) or STUB[0] in src
              or any(SOLUTION[0].match(line) for line in src.split("\n"))):
            found[i] = "solution"
    return found


def _run_allowing_errors(nb: Any, lesson: str, cwd: Path, profile: str | None,
                         timeout: float | None) -> dict[int, Any]:
    """Execute ``nb`` in place, going on after errors; return ``{cell index: its error output}``."""
    from nbclient import NotebookClient

    sockets = Path(tempfile.mkdtemp(prefix="ck-"))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True, km=kernel_manager(sockets),
                            resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute(env=kernel_env(lesson, profile, None), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    return dict(_errors(nb))


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.split("\n") if line.strip()), "")


def verify_student_run(path: Path, cwd: Path, *, profile: str | None = "smoke",
                       timeout: float | None = 600) -> tuple[list[str], dict[int, str]]:
    """Execute a student notebook (errors allowed); return what went wrong, and ``{cell: error name}``.

    Allowed: ``NotImplementedError`` in exercise cells. Required: every check cell fails that way
    (a check that passes without a solution checks nothing).
    """
    nb = nbformat.read(path, as_version=4)
    errors = _run_allowing_errors(nb, Path(path).name[:2], cwd, profile, timeout)
    kinds = exercise_cells(nb)

    def where(i: int) -> str:  # student-edition cell numbers differ from the source's: show the code
        return f"{Path(path).name} cell {i} ({_first_line(nb.cells[i].source)[:60]!r})"

    problems = []
    for i, o in errors.items():
        if i not in kinds:
            problems.append(f"{where(i)} is not an exercise but failed: {o.ename}: {o.evalue}")
        elif o.ename != "NotImplementedError":
            problems.append(f"{where(i)} ({kinds[i]}) failed with {o.ename}: {o.evalue}, expected NotImplementedError")
    for i, kind in kinds.items():
        if kind == "check" and i not in errors:
            problems.append(f"{where(i)}: the check passed without a solution")
    return problems, {i: o.ename for i, o in errors.items()}


def grade(submission: Path, source: Path, *, profile: str | None = "smoke", timeout: float | None = None,
          seed: int | None = None) -> dict[str, Any]:
    """Grade one student's notebook against the instructor's lesson ``source``: its row (see
    :func:`coursekit.grade.grade_batch`). The checks run in this process, not in the student's kernel."""
    import secrets

    from .grade import DEFAULT_TIMEOUT, Settings, grade_notebook

    submission, source = Path(submission), Path(source)
    with tempfile.TemporaryDirectory(prefix="coursekit-grade-") as tmp:
        return grade_notebook(submission.read_bytes(), nbformat.read(source, as_version=4), source.name[:2],
                              seed=secrets.randbelow(2 ** 31) if seed is None else seed,
                              settings=Settings(profile=profile, timeout=timeout or DEFAULT_TIMEOUT), work=Path(tmp))


def check_student(lessons_dir: Path = LESSONS_DIR, *, profile: str | None = "smoke", only: Iterable[str] | None = None,
                  timeout: float | None = 600, echo: Callable[[str], None] = print) -> list[str]:
    """Make a student edition in a temporary folder, look for leaks and run it; return the problems."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="camlib-student-") as tmp:
        for path in make_student(lessons_dir, Path(tmp) / "student", only=only):
            start = time.perf_counter()
            found, _ = verify_student_run(path, Path(lessons_dir), profile=profile, timeout=timeout)
            echo(f"{path.name}: {'ok' if not found else f'{len(found)} problem(s)'} "
                 f"({time.perf_counter() - start:.1f} s)")
            problems += found
    return problems


# ----------------------------------------------------------------------------------------- colab
def sync_colab(lessons_dir: Path = LESSONS_DIR, *, check: bool = False, only: Iterable[str] | None = None) -> list[Path]:
    """Bring each lesson source's Colab cells up to date (and its notebook with it); return the
    sources that were (``check``: are) stale."""
    from .colab_cells import apply_colab_cells
    from .sources import find_sources, notebook_from_text, text_from_notebook, write_notebooks

    stale = []
    for src in find_sources(lessons_dir, only):
        nb = notebook_from_text(src.read_text(encoding="utf-8"), None)
        if apply_colab_cells(nb, src.with_suffix(".ipynb").name):
            stale.append(src)
            if not check:
                _write_atomic(src, text_from_notebook(nb))
    if not check and stale:
        write_notebooks(lessons_dir, only=[p.name[:2] for p in stale])
    return stale


# ------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    """``python -m coursekit {build,student,check-student,grade,sync-colab}``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m coursekit", description=__doc__.split("\n")[0])
    parser.add_argument("--lessons-dir", type=Path, default=LESSONS_DIR, help="folder of NN_name.ipynb lessons")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="execute the lessons, write HTML and REPORT.md")
    b.add_argument("--profile", choices=("smoke", "cpu", "gpu"), help="default: the machine's ($CAMLIB_PROFILE, GPU)")
    b.add_argument("--lessons", nargs="+", metavar="NN", help="only these lessons (e.g. 00 01)")
    b.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "course")
    b.add_argument("--timeout", type=float, default=3600, help="seconds per cell (0: no limit)")
    b.add_argument("--jobs", type=int, default=1, help="lessons run at once (default 1)")
    s = sub.add_parser("student", help="write the student edition")
    s.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "student")
    s.add_argument("--force", action="store_true", help="replace an existing student edition")
    s.add_argument("--lessons", nargs="+", metavar="NN")
    c = sub.add_parser("check-student", help="check a student edition leaks nothing and fails only at exercises")
    c.add_argument("--profile", choices=("smoke", "cpu", "gpu"), default="smoke")
    c.add_argument("--lessons", nargs="+", metavar="NN")
    c.add_argument("--timeout", type=float, default=600, help="seconds per cell")
    r = sub.add_parser("grade", help="grade students' notebooks; the checks run outside their kernels")
    r.add_argument("submissions", nargs="+", type=Path, help="students' NN_name.ipynb files (e.g. alice/01_gap_vs_gmp.ipynb)")
    r.add_argument("--lesson", metavar="NN", help="the lesson they answer (default: from each file name)")
    r.add_argument("--profile", choices=("smoke", "cpu", "gpu"), default="smoke")
    r.add_argument("--timeout", type=float, default=None, help="seconds per exercise (default 30)")
    r.add_argument("--cell-timeout", type=float, default=None, help="seconds per notebook cell (default 300)")
    r.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "grades", help="where the gradebooks go")
    r.add_argument("--seed", type=int, help="the seed of the graded inputs (default: drawn now, saved in the gradebook)")
    r.add_argument("--whole-notebook", action="store_true", help="run each notebook to its end, not to its last exercise")
    r.add_argument("--protect", nargs="+", type=Path, metavar="DIR",
                   help="folders a submission must not change (default: camlib, coursekit, lessons, site-packages)")
    y = sub.add_parser("sync-colab", help="write or refresh each lesson's Colab badge and set-up cells")
    y.add_argument("--check", action="store_true", help="only report; exit 1 if any lesson is out of date")
    y.add_argument("--lessons", nargs="+", metavar="NN")
    n = sub.add_parser("lessons", help="write each lessons/NN_name.ipynb from its jupytext source NN_name.py")
    n.add_argument("--check", action="store_true", help="only report; exit 1 if any notebook is out of date")
    n.add_argument("--from-notebooks", action="store_true", help="the other way: rewrite the .py from the .ipynb")
    n.add_argument("--lessons", nargs="+", metavar="NN")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            runs = build(args.lessons_dir, args.out, profile=args.profile, only=args.lessons, timeout=args.timeout,
                         jobs=args.jobs, echo=lambda m: print(m, flush=True))
            return 0 if all(r.ok for r in runs) else 1
        if args.command == "student":
            written = make_student(args.lessons_dir, args.out, force=args.force, only=args.lessons)
            print(f"Wrote the student edition of {len(written)} lesson(s) to {args.out}")
            return 0
        if args.command == "check-student":
            problems = check_student(args.lessons_dir, profile=args.profile, only=args.lessons, timeout=args.timeout,
                                     echo=lambda m: print(m, flush=True))
            for p in problems:
                print("PROBLEM:", p)
            return 1 if problems else 0
        if args.command == "grade":
            from .grade import main_grade
            return main_grade(args)
        if args.command == "lessons":
            from .sources import write_notebooks, write_sources
            if args.from_notebooks:
                for p in write_sources(args.lessons_dir, only=args.lessons):
                    print(f"wrote {p}")
                return 0
            stale = write_notebooks(args.lessons_dir, only=args.lessons, check=args.check)
            for p in stale:
                print(f"{p.name}: {'out of date with its .py source' if args.check else 'written from its .py source'}")
            if not stale:
                print("every lesson notebook matches its .py source")
            return 1 if (args.check and stale) else 0
        stale = sync_colab(args.lessons_dir, check=args.check, only=args.lessons)
        verb = "out of date" if args.check else "updated"
        for p in stale:
            print(f"{p.name}: Colab cells {verb}")
        if not stale:
            print("Colab cells up to date in every lesson")
        return 1 if (args.check and stale) else 0
    except (ValueError, FileExistsError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
