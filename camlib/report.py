"""Claims that a lesson checks, recorded for the course report.

Every claim a lesson makes about a number goes through :func:`claim`: it raises
``AssertionError`` when the claim does not hold (so the notebook fails), and when the course
build runs the lesson (``CAMLIB_REPORT`` names a JSON-lines file) it also appends a row that
``build/course/REPORT.md`` is made from. Introduced in lesson 00.
"""

from __future__ import annotations

import json
import os
from typing import Any

from . import config


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def claim(text: str, ok: bool, *, ours: Any, paper: Any = None, dataset: str, lesson: str | None = None,
          profile: str | None = None) -> dict[str, Any]:
    """Assert a lesson's claim and record it for REPORT.md.

    ``text`` says the claim in words; ``ok`` is the boolean computed from the numbers the lesson
    just produced; ``ours`` is that number (or a short string of numbers); ``paper`` is the paper's
    number where it has one; ``dataset`` names the data it came from.
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"claim text must be a non-empty string, got {text!r}")
    ok = bool(ok)
    row = {
        "lesson": lesson or os.environ.get("CAMLIB_LESSON", "?"),
        "claim": text,
        "paper": "" if paper is None else _fmt(paper),
        "ours": _fmt(ours),
        "dataset": dataset,
        "profile": profile or config.default_profile_name(),
        "passed": ok,
    }
    path = os.environ.get("CAMLIB_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
    status = "PASS" if ok else "FAIL"
    print(f"[{status}] {text} -- ours: {row['ours']}" + (f"; paper: {row['paper']}" if row["paper"] else ""))
    if not ok:
        raise AssertionError(f"claim failed: {text} (ours: {row['ours']}, dataset: {dataset})")
    return row
