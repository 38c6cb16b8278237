"""The checks that follow the lessons' exercises.

Each ``check_*`` takes the student's function, runs it and a reference (written here, in plain
torch/scipy) on fresh random inputs from a seeded generator, and either prints one line saying it
passed or raises ``AssertionError`` that says precisely what differs: the type or shape, the first
index where the values differ (with both values), and, when the answer matches a plausible mistake
on every trial, what that mistake was ("looks like you used max instead of mean"). An exception
raised by the student's function passes through unchanged, with a note saying what it was given.

Each check is made of a :class:`Spec` (its trials, reference and known mistakes; :func:`spec`
draws them from any seed) and :func:`diagnose` (the comparison, on outputs given as data), so the
instructor's grader (``python -m coursekit grade``) runs the same checks in its own process, on
trials drawn at grading time, without running them where the student's code could reach them.

| lesson | check | the exercise |
|---|---|---|
| 01 | :func:`check_gap`, :func:`check_gmp` | global average / max pooling |
| 02 | :func:`check_cam`, :func:`check_minmax` | the map as a weighted sum; min-max normalization |
| 03 | :func:`check_largest_component_box`, :func:`check_box_iou`, :func:`check_topk_loc_error` | boxes, IoU, top-k localization error |
| 04 | :func:`check_crop_box` | the crop of the two-stage pipeline |
| 05 | :func:`check_probe_cam` | a CAM from a linear probe's weights |
| 06 | :func:`check_rank_units` | ranking units by a class's weights |

Boxes are ``(x1, y1, x2, y2)`` in pixel-edge coordinates (CONTRIBUTING.md).
"""

from __future__ import annotations

from typing import Callable

from . import lesson01, lesson02, lesson03, lesson04, lesson05, lesson06
from ._engine import Mistake, Raised, Spec, diagnose, run
from .lesson01 import _ref_gap, _ref_gmp  # noqa: F401  (the references, for the instructor's notes)
from .lesson02 import _ref_cam, _ref_minmax  # noqa: F401

LESSON_MODULES = (lesson01, lesson02, lesson03, lesson04, lesson05, lesson06)

# Every check, by name: each lesson's module lists its checks in ``SPECS``; the package exports them
# (``from camlib.exercises import check_gap``) in lesson order.
SPECS: dict[str, Callable[..., Spec]] = {}
for _module in LESSON_MODULES:
    for _name, _make in _module.SPECS.items():
        if _name in SPECS:
            raise ImportError(f"two lessons define {_name}")
        SPECS[_name] = _make
        globals()[_name] = getattr(_module, _name)
CHECKS = tuple(SPECS)


def spec(check: str, seed: int | None = None) -> Spec:
    """The :class:`Spec` of the check named ``check`` (one of :data:`CHECKS`); ``seed`` draws other
    trials than the notebook's own check uses (``None``: the check's own)."""
    if check not in SPECS:
        raise ValueError(f"expected the name of a check, one of {list(CHECKS)}; got {check!r}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ValueError(f"expected a non-negative int seed, got {seed!r}")
    return SPECS[check]() if seed is None else SPECS[check](seed)


__all__ = ["CHECKS", "SPECS", "Mistake", "Raised", "Spec", "diagnose", "run", "spec", *CHECKS]
