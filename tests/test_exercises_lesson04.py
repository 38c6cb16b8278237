"""Lesson 04's checks (check_cells_box, check_crop_box) accept right answers written their own way and
reject plausible wrong ones, each with its own diagnosis; the grader's path agrees on other seeds."""

import math

import numpy as np
import pytest
import torch

from camlib import exercises as ex
from camlib import twostage
from camlib.exercises import lesson04
from exercise_checks import accepts, assert_mistakes_distinct, graded, rejects

SEEDS = (3, 17, 250)


# ------------------------------------------------------------------------------- check_cells_box
def cells_box(cam_map, threshold, height, width, last=1, sx=None, sy=None, centres=False, absolute=False):
    """A student's loop over the cells (numpy), with switches for the mistakes."""
    m = np.asarray(cam_map, dtype=np.float64)
    h, w = m.shape
    cut = threshold if absolute else threshold * m.max()
    rows = [i for i in range(h) if any(m[i, j] >= cut for j in range(w))]
    cols = [j for j in range(w) if any(m[i, j] >= cut for i in range(h))]
    sx = width / w if sx is None else sx(h, w, height, width)
    sy = height / h if sy is None else sy(h, w, height, width)
    if centres:
        return torch.tensor([(cols[0] + .5) * sx, (rows[0] + .5) * sy, (cols[-1] + .5) * sx, (rows[-1] + .5) * sy])
    return torch.tensor([cols[0] * sx, rows[0] * sy, (cols[-1] + last) * sx, (rows[-1] + last) * sy])


def test_cells_box_accepts_a_loop_and_an_upsampled_version(capsys):
    accepts(ex.check_cells_box, cells_box, capsys)

    def by_upsampling(cam_map, threshold, height, width):   # each cell a height x width block, then rescale
        h, w = cam_map.shape
        up = cam_map.double().repeat_interleave(height, 0).repeat_interleave(width, 1)
        ys, xs = (up >= threshold * up.max()).nonzero(as_tuple=True)
        return torch.stack([xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h]).double()
    accepts(ex.check_cells_box, by_upsampling, capsys)


def test_cells_box_rejects_with_the_right_diagnosis():
    rejects(ex.check_cells_box, lambda *a: cells_box(*a, last=0), "(last column + 1) * W/w")
    rejects(ex.check_cells_box, lambda *a: cells_box(*a, centres=True), "used the cells' centres")
    rejects(ex.check_cells_box, lambda *a: cells_box(*a, sx=lambda h, w, H, W: H / w, sy=lambda h, w, H, W: W / h),
            "x goes with the width")
    rejects(ex.check_cells_box, lambda *a: cells_box(*a, sx=lambda h, w, H, W: (W - 1) / (w - 1),
                                                     sy=lambda h, w, H, W: (H - 1) / (h - 1)), "align_corners")
    rejects(ex.check_cells_box, lambda *a: cells_box(*a, absolute=True), "compared the map with the threshold itself")
    msg = rejects(ex.check_cells_box, lambda *a: cells_box(*a)[[1, 0, 3, 2]], "returned (y1, x1, y2, x2)")
    assert msg.count("Looks like you") == 1


@pytest.mark.parametrize("seed", SEEDS)
def test_cells_box_grader_path_agrees(seed):
    assert graded("check_cells_box", cells_box, seed) == ""
    assert "(last column + 1)" in graded("check_cells_box", lambda *a: cells_box(*a, last=0), seed)
    assert "cells' centres" in graded("check_cells_box", lambda *a: cells_box(*a, centres=True), seed)


# -------------------------------------------------------------------------------- check_crop_box
def crop_box(box, margin, min_size, height, width, fit="shift", square=True, share=1.0, use_min=True, rnd=False):
    """A student's version: corners first, then moved; switches for the mistakes."""
    x1, y1, x2, y2 = (float(v) for v in box)
    dx, dy = share * margin * (x2 - x1), share * margin * (y2 - y1)
    x1, y1, x2, y2 = x1 - dx, y1 - dy, x2 + dx, y2 + dy
    if square:
        side = max(x2 - x1, y2 - y1)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        x1, x2, y1, y2 = cx - side / 2, cx + side / 2, cy - side / 2, cy + side / 2
    for lo, hi, size in ((0, 2, width), (1, 3, height)):
        b = [x1, y1, x2, y2]
        if use_min and b[hi] - b[lo] < min_size:
            grow = (min_size - (b[hi] - b[lo])) / 2
            b[lo], b[hi] = b[lo] - grow, b[hi] + grow
        if fit == "shift":
            if b[hi] - b[lo] > size:                         # longer than the image: the whole side
                b[lo], b[hi] = 0.0, float(size)
            elif b[lo] < 0:
                b[lo], b[hi] = 0.0, b[hi] - b[lo]
            elif b[hi] > size:
                b[lo], b[hi] = b[lo] - (b[hi] - size), float(size)
        elif fit == "clip":
            b[lo], b[hi] = max(0.0, b[lo]), min(float(size), b[hi])
        x1, y1, x2, y2 = b
    if rnd:
        x1, y1, x2, y2 = math.floor(x1), math.floor(y1), math.ceil(x2), math.ceil(y2)
    return torch.tensor([x1, y1, x2, y2], dtype=torch.float64)


def test_crop_box_reference_is_the_library():
    spec = ex.spec("check_crop_box")
    for box, margin, min_size, height, width in spec.trials:
        want = twostage.crop_boxes(box[None], (height, width), margin=margin, min_size=min_size)[0]
        assert torch.equal(spec.reference(box, margin, min_size, height, width), want)
        # the hand-written rule the mistakes are variations of is the library's rule
        assert torch.allclose(lesson04._crop_box(box, margin, min_size, height, width).float(), want, atol=1e-4)


def test_crop_box_accepts_a_version_written_differently(capsys):
    accepts(ex.check_crop_box, crop_box, capsys)


def test_crop_box_rejects_with_the_right_diagnosis():
    msg = rejects(ex.check_crop_box, lambda *a: crop_box(*a, fit="clip"), "clipped the crop at the image's edges")
    assert msg.count("Looks like you") == 1
    rejects(ex.check_crop_box, lambda *a: crop_box(*a, fit="none"), "left the crop sticking out")
    rejects(ex.check_crop_box, lambda *a: crop_box(*a, square=False), "did not make the crop square")
    rejects(ex.check_crop_box, lambda *a: crop_box(*a, share=0.5), "on *each* side")
    rejects(ex.check_crop_box, lambda *a: crop_box(*a, use_min=False), "ignored min_size")
    rejects(ex.check_crop_box, lambda *a: crop_box(*a, rnd=True), "rounded the crop to whole pixels")


def test_crop_box_rejects_the_old_round_out_and_clip_rule():
    # the rule this exercise used to teach (round outwards, clip), which the lesson's crops never used
    rejects(ex.check_crop_box, lambda *a: crop_box(*a, square=False, fit="clip", use_min=False, rnd=True),
            "expected")


@pytest.mark.parametrize("seed", SEEDS)
def test_crop_box_grader_path_agrees(seed):
    assert graded("check_crop_box", crop_box, seed) == ""
    assert "clipped the crop" in graded("check_crop_box", lambda *a: crop_box(*a, fit="clip"), seed)
    assert "did not make the crop square" in graded("check_crop_box", lambda *a: crop_box(*a, square=False), seed)
    assert "ignored min_size" in graded("check_crop_box", lambda *a: crop_box(*a, use_min=False), seed)


@pytest.mark.parametrize("name", ["check_cells_box", "check_crop_box"])
def test_every_mistake_differs_from_the_reference_and_from_each_other(name):
    assert_mistakes_distinct(name)
