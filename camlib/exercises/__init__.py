"""The checks that follow the lessons' exercises.

Each ``check_*`` takes the student's function, runs it and a reference (the library function the
lesson introduces where there is one, else a plain version in the lesson's module) on fresh random inputs from a seeded generator, and either prints one line saying it
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
| 00 | :func:`check_all_class_maps`, :func:`check_top_classes_from_maps` | every class's map at the image's size; the ranking from the maps |
| 01 | :func:`check_gap`, :func:`check_gmp`, :func:`check_lse_pool`, :func:`check_mask_coverage` | global average / max / log-sum-exp pooling; mask coverage of the 20% region |
| 02 | :func:`check_cam`, :func:`check_bias_region`, :func:`check_minmax` | the map as a weighted sum; the bias (and Grad-CAM's ReLU) against the 20%-of-max region; min-max normalization |
| 03 | :func:`check_largest_component_box`, :func:`check_box_iou`, :func:`check_topk_loc_error` | boxes, IoU, top-k localization error |
| 04 | :func:`check_cells_box`, :func:`check_crop_box` | a map's cells in image pixels; the crop of the two-stage pipeline (:func:`camlib.twostage.crop_boxes`) |
| 05 | :func:`check_standardized_cam`, :func:`check_probe_cam` | a probe on standardized features folded into CAM weights and bias; scikit-learn's one-row binary coef_ |
| 06 | :func:`check_rank_units`, :func:`check_top_units_share`, :func:`check_dissection_iou` | ranking units by a class's weights; the share of the score the top units give; a unit's dataset-wide IoU (network dissection) |

Boxes are ``(x1, y1, x2, y2)`` in pixel-edge coordinates (CONTRIBUTING.md).
"""

from __future__ import annotations

from typing import Callable

from . import lesson00, lesson01, lesson02, lesson03, lesson04, lesson05, lesson06
from ._engine import Mistake, Raised, Spec, diagnose, run

LESSON_MODULES = (lesson00, lesson01, lesson02, lesson03, lesson04, lesson05, lesson06)

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
