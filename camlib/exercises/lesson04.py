"""Lesson 04's exercises: the geometry of the two-stage fine-grained pipeline (the paper's Sec. 4.1).

* :func:`check_cells_box` -- the box of a map's cells above a fraction of its maximum, in the
  image's pixels (a cell of an ``h x w`` map over an ``H x W`` image is ``W/w`` by ``H/h`` pixels);
* :func:`check_crop_box` -- the crop around a CAM box, by the library's rule
  (:func:`camlib.twostage.crop_boxes`: margin on each side, square, at least ``min_size``, shifted
  inside the image).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .. import twostage
from ._engine import Spec, gen, randint, run

# ----------------------------------------------------------------------------- map cells -> pixels


def _cells_box(cam_map: torch.Tensor, threshold: float, height: int, width: int, *, last: int = 1,
               centres: bool = False, scale: str = "edges", relative: str = "max",
               order: str = "xy") -> torch.Tensor:
    """The box of the cells ``>= threshold * max``, in image pixels; the keywords make the mistakes."""
    m = cam_map.double()
    h, w = m.shape
    if relative == "max":
        keep = m >= threshold * m.max()
    elif relative == "minmax":
        keep = m >= m.min() + threshold * (m.max() - m.min())
    else:  # the threshold taken as an absolute value
        keep = m >= threshold
    rows, cols = keep.any(1).nonzero()[:, 0], keep.any(0).nonzero()[:, 0]
    r1, r2, c1, c2 = float(rows.min()), float(rows.max()), float(cols.min()), float(cols.max())
    if scale == "swapped":
        sx, sy = height / w, width / h
    elif scale == "corners":
        sx, sy = (width - 1) / (w - 1), (height - 1) / (h - 1)
    else:
        sx, sy = width / w, height / h
    if centres:
        box = [(c1 + 0.5) * sx, (r1 + 0.5) * sy, (c2 + 0.5) * sx, (r2 + 0.5) * sy]
    else:
        box = [c1 * sx, r1 * sy, (c2 + last) * sx, (r2 + last) * sy]
    if order == "yx":
        box = [box[1], box[0], box[3], box[2]]
    return torch.tensor(box, dtype=torch.float64)


def _ref_cells_box(cam_map: torch.Tensor, threshold: float, height: int, width: int) -> torch.Tensor:
    return _cells_box(cam_map, threshold, height, width)


def check_cells_box(fn: Callable[[torch.Tensor, float, int, int], torch.Tensor]) -> None:
    """Check ``fn(cam_map (h, w), threshold, height, width) -> (4,)``: the pixel-edge box, in the
    pixels of a ``height x width`` image, of every cell of the map that is ``>= threshold * max``.

    Lesson 04: a cell ``(i, j)`` of an ``h x w`` map covers ``x`` in ``[j W/w, (j+1) W/w)`` and ``y``
    in ``[i H/h, (i+1) H/h)`` of the image, as :func:`camlib.cam.upsample` places it.
    """
    run(_cells_box_spec(), fn)


def _blob_map(g: torch.Generator, h: int, w: int) -> torch.Tensor:
    """A positive map with one bump away from the border, a floor and some noise (like a coarse CAM)."""
    cy, cx = 1.5 + float(torch.rand(1, generator=g)) * (h - 4), 1.5 + float(torch.rand(1, generator=g)) * (w - 4)
    sy, sx = 0.8 + float(torch.rand(1, generator=g)) * 0.8, 0.8 + float(torch.rand(1, generator=g)) * 0.8
    y, x = torch.arange(h, dtype=torch.float64)[:, None], torch.arange(w, dtype=torch.float64)[None]
    bump = torch.exp(-((y - cy) / sy) ** 2 / 2 - ((x - cx) / sx) ** 2 / 2)
    floor = 0.15 + 0.2 * float(torch.rand(1, generator=g))
    return (floor + bump + 0.04 * torch.rand(h, w, generator=g, dtype=torch.float64)) * (2 + 3 * float(
        torch.rand(1, generator=g)))


def _cells_box_spec(seed: int = 402) -> Spec:
    g = gen(seed)
    trials = []
    while len(trials) < 6:
        h = randint(g, 5, 9)
        w = h + randint(g, 1, 4)
        if len(trials) % 2:
            h, w = w, h                                     # h != w: swapped axes show
        height = h * randint(g, 6, 12) + randint(g, 1, 5)   # not a multiple: W/w is not an integer
        width = w * randint(g, 6, 12) + randint(g, 1, 5)
        if abs(height / h - width / w) < 0.5:
            continue                                        # the two scales must differ
        threshold = (0.2, 0.3, 0.5)[len(trials) % 3]
        cam_map = _blob_map(g, h, w).float()
        m = cam_map.double()
        keep = m >= threshold * m.max()
        rows, cols = keep.any(1).nonzero()[:, 0], keep.any(0).nonzero()[:, 0]
        if int(rows.min()) == 0 or int(cols.min()) == 0 or int(rows.max()) == h - 1 or int(cols.max()) == w - 1:
            continue                                        # the region stays off the border
        if torch.equal(keep, m >= m.min() + threshold * (m.max() - m.min())):
            continue                                        # a fraction of the max differs from min-max
        trials.append((cam_map, threshold, height, width))

    return Spec("check_cells_box", ("cam_map", "threshold", "height", "width"), trials, _ref_cells_box, (
        ("took the last kept cell's left/top edge as x2/y2: cell j spans [j*W/w, (j+1)*W/w), so x2 is "
         "(last column + 1) * W/w", lambda *a: _cells_box(*a, last=0)),
        ("used the cells' centres: the box's edges are the outer edges of the first and last kept cells",
         lambda *a: _cells_box(*a, centres=True)),
        ("scaled the columns by height/h and the rows by width/w: x goes with the width, y with the height",
         lambda *a: _cells_box(*a, scale="swapped")),
        ("scaled by (W - 1)/(w - 1) (align_corners): in pixel-edge coordinates one cell is W/w pixels wide",
         lambda *a: _cells_box(*a, scale="corners")),
        ("compared the map with the threshold itself: keep the cells >= threshold * the map's maximum",
         lambda *a: _cells_box(*a, relative="absolute")),
        ("thresholded the min-max normalized map: the rule keeps the cells >= threshold * max (the map's minimum "
         "plays no part)", lambda *a: _cells_box(*a, relative="minmax")),
        ("returned (y1, x1, y2, x2): boxes are (x1, y1, x2, y2)", lambda *a: _cells_box(*a, order="yx")),
    ), rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------------- the crop rule


def _crop_box(box: torch.Tensor, margin: float, min_size: float, height: int, width: int, *, square: str = "max",
              share: float = 1.0, fit: str = "shift", use_min: bool = True, relative_to_image: bool = False,
              rounding: bool = False) -> torch.Tensor:
    """The crop rule written out, with switches for the plausible mistakes (defaults: the right rule)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = (width, height) if relative_to_image else (x2 - x1, y2 - y1)
    w, h = (x2 - x1) + 2 * share * margin * bw, (y2 - y1) + 2 * share * margin * bh
    if square == "max":
        w = h = max(w, h)
    elif square == "min":
        w = h = min(w, h)
    if use_min:
        w, h = max(w, min_size), max(h, min_size)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    if fit in ("shift", "shift-uncapped"):
        if fit == "shift":
            w, h = min(w, width), min(h, height)
        cx, cy = min(max(cx, w / 2), width - w / 2), min(max(cy, h / 2), height - h / 2)
    out = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    if fit == "clip":
        out = [max(0.0, out[0]), max(0.0, out[1]), min(float(width), out[2]), min(float(height), out[3])]
    if rounding:
        out = [math.floor(out[0]), math.floor(out[1]), math.ceil(out[2]), math.ceil(out[3])]
    return torch.tensor(out, dtype=torch.float64)


def _ref_crop_box(box: torch.Tensor, margin: float, min_size: float, height: int, width: int) -> torch.Tensor:
    """The library's rule, the one the lesson's results use."""
    return twostage.crop_boxes(torch.as_tensor(box, dtype=torch.float32)[None], (height, width), margin=margin,
                               square=True, min_size=min_size)[0]


def check_crop_box(fn: Callable[[torch.Tensor, float, float, int, int], torch.Tensor]) -> None:
    """Check ``fn(box (4,), margin, min_size, height, width) -> (4,)`` the crop around a CAM box.

    Lesson 04 (the paper's Sec. 4.1 two-stage pipeline), the rule of :func:`camlib.twostage.crop_boxes`:
    the box grows by ``margin * box width`` on the left and on the right and ``margin * box height``
    above and below; the shorter side grows to the longer one around the same centre (square); a side
    shorter than ``min_size`` grows to ``min_size``; a side longer than the image is cut to the image's;
    then the crop is *shifted* (not clipped) until it lies inside ``[0, width] x [0, height]``.
    Coordinates stay fractional (the crop is read by bilinear sampling).
    """
    run(_crop_box_spec(), fn)


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + float(torch.rand(1, generator=g)) * (hi - lo)


def _crop_trial(g: torch.Generator, kind: int) -> tuple | None:
    """One trial of ``kind`` (0: inside, 1: sticks out top-left, 2: bottom-right, 3: longer than the image,
    4: smaller than min_size, 5: wide box near an edge), or None when the draw misses the kind."""
    height, width = randint(g, 60, 90), randint(g, 60, 90)
    if abs(height - width) < 8:
        width = height + 12
    margin = (0.1, 0.15, 0.2, 0.25)[kind % 4]
    min_size = _uniform(g, 12.0, 20.0)
    if kind == 3:                                               # tall: longer than the image once square
        bh, bw = _uniform(g, 0.75, 0.9) * height, _uniform(g, 0.2, 0.4) * width
    elif kind == 4:                                             # small: the crop grows to min_size
        bh, bw = _uniform(g, 3.0, 6.0), _uniform(g, 5.0, 8.0)
    elif kind == 5:
        bw, bh = _uniform(g, 0.3, 0.45) * width, _uniform(g, 0.12, 0.2) * height
    else:
        bw, bh = _uniform(g, 0.15, 0.3) * width, _uniform(g, 0.25, 0.4) * height
    if kind in (1, 5):
        x1, y1 = _uniform(g, 0.5, 4.0), _uniform(g, 0.5, 4.0)
    elif kind == 2:
        x1, y1 = width - bw - _uniform(g, 0.5, 4.0), height - bh - _uniform(g, 0.5, 4.0)
    else:
        x1, y1 = _uniform(g, 0.3, 0.7) * (width - bw), _uniform(g, 0.3, 0.7) * (height - bh)
    box = torch.tensor([x1, y1, x1 + bw, y1 + bh], dtype=torch.float32)
    args = (box, margin, min_size, height, width)
    raw = _crop_box(*args, fit="none")
    outside = raw[0] < 0 or raw[1] < 0 or raw[2] > width or raw[3] > height
    longer = raw[2] - raw[0] > width or raw[3] - raw[1] > height
    grows = max(bw, bh) * (1 + 2 * margin) < min_size
    want = {0: (False, False, False), 1: (True, False, False), 2: (True, False, False),
            3: (True, True, False), 4: (False, False, True), 5: (True, False, False)}[kind]
    if (bool(outside), bool(longer), bool(grows)) != want:
        return None
    if any(abs(v - round(v)) < 1e-3 for v in raw.tolist()):
        return None                                             # rounding to whole pixels shows
    return args


def _crop_box_spec(seed: int = 401) -> Spec:
    g = gen(seed)
    trials = []
    while len(trials) < 6:
        t = _crop_trial(g, len(trials))
        if t is not None:
            trials.append(t)

    return Spec("check_crop_box", ("box", "margin", "min_size", "height", "width"), trials, _ref_crop_box, (
        ("clipped the crop at the image's edges: shift it inside instead, so it keeps its size and its square "
         "shape (only a side longer than the image is cut to the image)", lambda *a: _crop_box(*a, fit="clip")),
        ("left the crop sticking out of the image: shift it until it lies inside [0, width] x [0, height]",
         lambda *a: _crop_box(*a, fit="none")),
        ("shifted the crop but did not cut a side longer than the image to the image's size first",
         lambda *a: _crop_box(*a, fit="shift-uncapped")),
        ("did not make the crop square: grow its shorter side to the longer one, around the same centre",
         lambda *a: _crop_box(*a, square="none")),
        ("made the crop square with the *shorter* side: the longer side sets the square, so the object stays whole",
         lambda *a: _crop_box(*a, square="min")),
        ("added margin * box size in total: the margin goes on *each* side",
         lambda *a: _crop_box(*a, share=0.5)),
        ("took the margin as a fraction of the image's size: it is a fraction of the box's width and height",
         lambda *a: _crop_box(*a, relative_to_image=True)),
        ("ignored min_size: a side shorter than min_size pixels (after the margin) grows to min_size",
         lambda *a: _crop_box(*a, use_min=False)),
        ("rounded the crop to whole pixels: keep the fractional coordinates (the crop is read by bilinear "
         "sampling, so a fractional box is exact)", lambda *a: _crop_box(*a, rounding=True)),
    ), rtol=0, atol=1e-4)


SPECS = {"check_cells_box": _cells_box_spec, "check_crop_box": _crop_box_spec}
