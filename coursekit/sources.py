"""Lesson sources: each lesson is written as a jupytext percent script, ``lessons/NN_name.py``.

The script is what people edit and review; ``lessons/NN_name.ipynb`` is *made* from it (clean: no
outputs, kernel ``python3``) because Colab and JupyterLab open notebooks. Both are committed, and a
test checks every pair is in sync, so a change made in one and not the other fails CI.

    python -m coursekit lessons            # write every NN_name.ipynb from its NN_name.py
    python -m coursekit lessons --check    # only say which are out of date (exit 1 if any)
    python -m coursekit lessons --from-notebooks   # the other way, once, after editing in Jupyter

Cell ids: a notebook cell keeps its id when a cell of the same type and source was there before,
else gets a stable one made from its content, so regenerating an unchanged lesson changes nothing.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Iterable

import jupytext
import nbformat

SOURCE_FORMAT = "py:percent"
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
          "language_info": {"name": "python"}}
SOURCE_FILE = re.compile(r"^(\d\d)_\w+\.py$")
# Cell metadata jupytext adds for its own round trip; it has no meaning in the notebook.
_JUPYTEXT_KEYS = ("lines_to_next_cell", "lines_to_end_of_cell_marker")


def find_sources(lessons_dir: Path, only: Iterable[str] | None = None) -> list[Path]:
    """The lesson sources ``NN_name.py`` in ``lessons_dir``, sorted; ``only`` picks by NN."""
    lessons_dir = Path(lessons_dir)
    if not lessons_dir.is_dir():
        raise ValueError(f"expected a folder of lessons, got {str(lessons_dir)!r} (not a directory)")
    paths = sorted(p for p in lessons_dir.iterdir() if SOURCE_FILE.match(p.name))
    if only:
        wanted = {str(n).zfill(2) for n in only}
        paths = [p for p in paths if p.name[:2] in wanted]
    return paths


def _stable_id(cell: Any, taken: set[str]) -> str:
    digest = hashlib.sha1((cell.cell_type + "\0" + cell.source).encode()).hexdigest()
    for start in range(0, len(digest) - 8):
        cid = digest[start:start + 8]
        if cid not in taken:
            return cid
    raise RuntimeError("could not find a free cell id")  # 32 tries on a 40-hex digest: never in practice


def notebook_from_text(text: str, old: Any | None = None) -> Any:
    """The clean lesson notebook of a percent script's ``text``; ids kept from ``old`` where cells match."""
    nb = jupytext.reads(text, fmt=SOURCE_FORMAT)
    nb.metadata = nbformat.from_dict(KERNEL)
    nb.nbformat, nb.nbformat_minor = 4, 5
    unused: dict[tuple[str, str], list[str]] = {}
    for c in (old.cells if old is not None else []):
        if c.get("id"):
            unused.setdefault((c.cell_type, c.source), []).append(c["id"])
    taken: set[str] = set()
    for cell in nb.cells:
        for key in _JUPYTEXT_KEYS:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        ids = unused.get((cell.cell_type, cell.source))
        cid = ids.pop(0) if ids else None
        if cid is None or cid in taken:
            cid = _stable_id(cell, taken)
        cell["id"] = cid
        taken.add(cid)
    nbformat.validate(nb)
    return nb


def text_from_notebook(nb: Any) -> str:
    """The percent script of a notebook (what ``--from-notebooks`` writes)."""
    nb = nbformat.from_dict(nb)
    nb.metadata = nbformat.from_dict({**KERNEL, "jupytext": {"formats": "ipynb,py:percent"}})
    return jupytext.writes(nb, fmt=SOURCE_FORMAT)


def notebook_text(nb: Any) -> str:
    """A notebook as the bytes we commit (nbformat's layout, trailing newline)."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def _read_old(path: Path) -> Any | None:
    try:
        return nbformat.read(path, as_version=4)
    except (FileNotFoundError, ValueError, OSError):
        return None


def write_notebooks(lessons_dir: Path, *, only: Iterable[str] | None = None, check: bool = False) -> list[Path]:
    """Make each ``NN_name.ipynb`` from its ``NN_name.py``; return those that were (``check``: are) stale."""
    from .course import _write_atomic

    stale = []
    for src in find_sources(lessons_dir, only):
        dst = src.with_suffix(".ipynb")
        old = _read_old(dst)
        want = notebook_text(notebook_from_text(src.read_text(encoding="utf-8"), old))
        have = dst.read_text(encoding="utf-8") if dst.exists() else None
        if want != have:
            stale.append(dst)
            if not check:
                _write_atomic(dst, want)
    return stale


def write_sources(lessons_dir: Path, *, only: Iterable[str] | None = None) -> list[Path]:
    """The other way: make each ``NN_name.py`` from its notebook (after editing in Jupyter)."""
    from .course import _write_atomic, find_lessons

    written = []
    for nb_path in find_lessons(lessons_dir, only):
        nb = nbformat.read(nb_path, as_version=4)
        dst = nb_path.with_suffix(".py")
        text = text_from_notebook(nb)
        if not dst.exists() or dst.read_text(encoding="utf-8") != text:
            _write_atomic(dst, text)
            written.append(dst)
    return written
