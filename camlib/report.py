"""Claims that a lesson checks, recorded for the course report.

Two kinds of check, kept apart in ``build/course/REPORT.md``:

* :func:`claim` -- a *finding*: something that would fail if the paper's idea were false on this
  data (GAP beats GMP on box accuracy; the CAM crop beats a same-size crop elsewhere). It says,
  in ``fails_if``, what result would have made it fail.
* :func:`sanity` -- a *sanity check* of the code: an identity that holds by construction whatever
  the data (mean(CAM) + bias = logit; top-5 error <= top-1 error). Worth asserting, never counted
  as a result.

Both raise ``AssertionError`` when the check does not hold (so the notebook fails), print one
line, and return nothing (so a cell that ends with one shows no stray value). When the course
build runs the lesson (``CAMLIB_REPORT`` names a JSON-lines file) each also appends a row that
REPORT.md is made from. Introduced in lesson 00.
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


def claim(text: str, ok: bool, *, ours: Any, paper: Any = None, dataset: str, fails_if: str | None = None,
          lesson: str | None = None, profile: str | None = None) -> None:
    """Assert a lesson's claim (a finding that could fail) and record it for REPORT.md.

    ``text`` says the claim in words; ``ok`` is the boolean computed from the numbers the lesson
    just produced; ``ours`` is that number (or a short string of numbers); ``paper`` is the paper's
    number where it has one; ``dataset`` names the data it came from; ``fails_if`` says what result
    would have made the claim fail (shown in REPORT.md).
    """
    _record("claim", text, ok, ours=ours, paper=paper, dataset=dataset, fails_if=fails_if, lesson=lesson,
            profile=profile)


def sanity(text: str, ok: bool, *, ours: Any, dataset: str = "", lesson: str | None = None,
           profile: str | None = None) -> None:
    """Assert a sanity check of the code (true by construction) and record it apart from the claims."""
    _record("sanity", text, ok, ours=ours, paper=None, dataset=dataset, fails_if=None, lesson=lesson,
            profile=profile)


def _record(kind: str, text: str, ok: bool, *, ours: Any, paper: Any, dataset: str, fails_if: str | None,
            lesson: str | None, profile: str | None) -> None:
    if not isinstance(text, str) or not text:
        raise ValueError(f"{kind} text must be a non-empty string, got {text!r}")
    ok = bool(ok)
    row = {
        "kind": kind,
        "lesson": lesson or os.environ.get("CAMLIB_LESSON", "?"),
        "claim": text,
        "paper": "" if paper is None else _fmt(paper),
        "ours": _fmt(ours),
        "dataset": dataset,
        "profile": profile or config.default_profile_name(),
        "passed": ok,
    }
    if fails_if:
        row["fails_if"] = fails_if
    path = os.environ.get("CAMLIB_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
    status = ("PASS" if ok else "FAIL") if kind == "claim" else ("sanity ok" if ok else "SANITY FAIL")
    print(f"[{status}] {text} -- ours: {row['ours']}" + (f"; paper: {row['paper']}" if row["paper"] else ""))
    if not ok:
        raise AssertionError(f"{kind} failed: {text} (ours: {row['ours']}, dataset: {dataset})")
