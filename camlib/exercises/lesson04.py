"""Lesson 04's exercises: the crop of the two-stage fine-grained pipeline (the paper's Sec. 4.1)."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from ._engine import Mistake, Spec, gen, randint, random_features, random_sizes, run, _as_indices, _as_number  # noqa: F401


def _ref_crop_box(box: torch.Tensor, margin: float, height: int, width: int, *, rounding: str = "out",
                  share: float = 1.0, clip: str = "edge", relative_to_image: bool = False) -> torch.Tensor:
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = (width, height) if relative_to_image else (x2 - x1, y2 - y1)
    x1, y1, x2, y2 = (x1 - share * margin * bw, y1 - share * margin * bh, x2 + share * margin * bw,
                      y2 + share * margin * bh)
    if rounding == "out":
        x1, y1, x2, y2 = math.floor(x1), math.floor(y1), math.ceil(x2), math.ceil(y2)
    elif rounding == "nearest":
        x1, y1, x2, y2 = (round(v) for v in (x1, y1, x2, y2))
    elif rounding == "floor":
        x1, y1, x2, y2 = (math.floor(v) for v in (x1, y1, x2, y2))
    if clip != "none":
        last = 1 if clip == "last-pixel" else 0
        x1, y1 = max(0, x1), max(0, y1)
        x2, y2 = min(width - last, x2), min(height - last, y2)
    return torch.tensor([x1, y1, x2, y2], dtype=torch.float64)


def check_crop_box(fn: Callable[[torch.Tensor, float, int, int], torch.Tensor]) -> None:
    """Check ``fn(box (4,), margin, height, width) -> (4,)`` the crop around a CAM box.

    Lesson 04 (the paper's Sec. 4.1 two-stage fine-grained pipeline): the box grows by
    ``margin * box width`` left and right and ``margin * box height`` above and below, is rounded
    outwards to whole pixels (floor x1, y1; ceil x2, y2) and clipped to the image ``[0, width] x [0, height]``.
    """
    run(_crop_box_spec(), fn)


def _crop_box_spec(seed: int = 401) -> Spec:
    g = gen(seed)
    trials = []
    while len(trials) < 6:
        height, width = randint(g, 40, 90), randint(g, 40, 90)
        x1 = float(torch.rand(1, generator=g)) * width * 0.6
        y1 = float(torch.rand(1, generator=g)) * height * 0.6
        x2 = x1 + 4 + float(torch.rand(1, generator=g)) * (width - x1 - 4)
        y2 = y1 + 4 + float(torch.rand(1, generator=g)) * (height - y1 - 4)
        margin = (0.1, 0.15, 0.2, 0.25)[len(trials) % 4]
        bw, bh = x2 - x1, y2 - y1
        edges = [x1 - margin * bw, y1 - margin * bh, x2 + margin * bw, y2 + margin * bh,
                 x1 - margin * bw / 2, x2 + margin * bw / 2, x1 - margin * width, y2 + margin * height]
        if any(abs(e - round(e)) < 1e-3 for e in edges + [x1, x2, y1, y2]):
            continue  # no coordinate on a pixel edge: floor, ceil and round all tell apart
        inside = 0 < edges[0] and edges[2] < width and 0 < edges[1] and edges[3] < height
        both_sides = (edges[0] < 0 or edges[1] < 0) and (edges[2] > width or edges[3] > height)
        if (inside, both_sides) != ((True, False) if len(trials) % 2 == 0 else (False, True)):
            continue  # half the trials stay inside the image, half are clipped at both ends
        trials.append((torch.tensor([x1, y1, x2, y2], dtype=torch.float32), margin, height, width))

    return Spec("check_crop_box", ("box", "margin", "height", "width"), trials, _ref_crop_box, (
        ("clipped x2 to width - 1 (y2 to height - 1): pixel-edge x2 may equal the width",
         lambda *a: _ref_crop_box(*a, clip="last-pixel")),
        ("did not clip the box to the image: keep 0 <= x1 < x2 <= width, 0 <= y1 < y2 <= height",
         lambda *a: _ref_crop_box(*a, clip="none")),
        ("added margin * box size in total: the margin goes on *each* side",
         lambda *a: _ref_crop_box(*a, share=0.5)),
        ("rounded to the nearest pixel: round outwards (floor x1, y1; ceil x2, y2) to keep the whole box",
         lambda *a: _ref_crop_box(*a, rounding="nearest")),
        ("rounded x2 and y2 down (int() or floor): round them up with ceil",
         lambda *a: _ref_crop_box(*a, rounding="floor")),
        ("did not round to whole pixels: floor x1, y1 and ceil x2, y2",
         lambda *a: _ref_crop_box(*a, rounding="none")),
        ("took the margin as a fraction of the image's size: it is a fraction of the box's width and height",
         lambda *a: _ref_crop_box(*a, relative_to_image=True)),
    ), rtol=0, atol=1e-4)




SPECS = {"check_crop_box": _crop_box_spec}
