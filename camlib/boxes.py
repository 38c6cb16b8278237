"""Boxes: the one check of a box tensor, and torchvision's box operations.

Boxes are ``(x1, y1, x2, y2)`` in pixel-edge coordinates (a region covering columns 3..7 has
``x1 = 3, x2 = 8``), so ``torchvision.ops`` applies directly: :func:`area` is
``torchvision.ops.box_area`` and :func:`clip` is ``torchvision.ops.clip_boxes_to_image``. Every
module that takes boxes from a caller checks them with :func:`as_boxes`. Introduced in lesson 03.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchvision.ops import box_area, clip_boxes_to_image

__all__ = ["as_boxes", "area", "clip", "size_hw"]


def as_boxes(boxes: Any, name: str = "boxes", *, ndim: int = 2, count: int | None = None,
             image_size: tuple[int, int] | None = None, nonempty: bool = False,
             dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``boxes`` checked and returned as a ``dtype`` tensor on the CPU.

    It must be a tensor (or array) of shape ``(N, 4)`` (``ndim=3``: ``(B, P, 4)``), with ``count``
    rows if given, finite, with ``x1 <= x2`` and ``y1 <= y2`` (``nonempty``: strictly, every box
    with an area), and inside ``[0, W] x [0, H]`` when ``image_size = (H, W)`` is given. Otherwise a
    ``ValueError`` names ``name``, what was expected and the first offending boxes.
    """
    t = torch.as_tensor(np.asarray(boxes)) if isinstance(boxes, (np.ndarray, list, tuple)) else boxes
    if not isinstance(t, torch.Tensor) or t.ndim != ndim or t.shape[-1] != 4:
        want = "(N, 4)" if ndim == 2 else "(B, P, 4)"
        raise ValueError(f"{name} must be a {want} tensor of (x1, y1, x2, y2); got "
                         f"{tuple(getattr(t, 'shape', ())) or type(boxes).__name__}")
    if count is not None and t.shape[0] != count:
        raise ValueError(f"{name} must have {count} boxes, one per image; got {t.shape[0]}")
    b = t.detach().to("cpu", dtype)
    if b.numel() and not bool(torch.isfinite(b).all()):
        raise ValueError(f"{name} must be finite; got {b[~torch.isfinite(b).all(-1)].tolist()[:3]}")
    bad = (b[..., 2] <= b[..., 0]) | (b[..., 3] <= b[..., 1]) if nonempty else \
        (b[..., 2] < b[..., 0]) | (b[..., 3] < b[..., 1])
    if bool(bad.any()):
        rule = "x1 < x2 and y1 < y2" if nonempty else "x1 <= x2 and y1 <= y2 (x2 >= x1, y2 >= y1)"
        raise ValueError(f"{name}: boxes must be (x1, y1, x2, y2) with {rule}; got {b[bad].tolist()[:3]}")
    if image_size is not None:
        H, W = image_size
        out = (b[..., 0] < 0) | (b[..., 1] < 0) | (b[..., 2] > W) | (b[..., 3] > H)
        if bool(out.any()):
            raise ValueError(f"{name}: boxes must lie inside the {W}x{H} image (pixel-edge, 0..W and 0..H); "
                             f"got {b[out].tolist()[:3]}")
    return b


def area(boxes: torch.Tensor) -> torch.Tensor:
    """``(x2 - x1) * (y2 - y1)`` of ``(N, 4)`` pixel-edge boxes (``torchvision.ops.box_area``)."""
    return box_area(boxes)


def clip(boxes: torch.Tensor, image_size) -> torch.Tensor:
    """Boxes cut to the ``(H, W)`` image ``[0, W] x [0, H]`` (``torchvision.ops.clip_boxes_to_image``)."""
    H, W = image_size
    return clip_boxes_to_image(boxes, (int(H), int(W)))


def size_hw(size) -> tuple[int, int]:
    """``(H, W)`` from an int side or a pair; ValueError otherwise."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be an int or (H, W); got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive; got {(h, w)}")
    return h, w
