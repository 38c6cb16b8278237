"""Crops around boxes: the geometry of lesson 04's second stage, and crops of an in-memory dataset.

A box (a CAM box, or a ground-truth one) becomes the region to cut: enlarged by a margin on each
side, made square, at least ``min_size``, and *shifted* inside the image where it fits
(:func:`crop_boxes`); controls of the same size elsewhere (:func:`same_size_boxes`); how much of
the object a crop holds (:func:`box_coverage`); cutting and resizing images, masks and boxes
(:func:`crop_images`, :func:`crop_masks`, :func:`boxes_into_crops`, :func:`boxes_from_crops`);
whole datasets resized or cropped (:func:`resize_dataset`, :func:`crop_dataset`). Boxes are
pixel-edge ``(x1, y1, x2, y2)``. Used by :mod:`camlib.twostage`; introduced in lesson 04.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .boxes import area, as_boxes, clip, size_hw
from .data.memory import InMemoryDataset

__all__ = ["crop_boxes", "same_size_boxes", "box_coverage", "jitter_boxes", "crop_images", "crop_masks",
           "boxes_into_crops", "boxes_from_crops", "resize_dataset", "crop_dataset"]


def _check_boxes(boxes, name: str = "boxes") -> torch.Tensor:
    return as_boxes(boxes, name, dtype=torch.float32)


def crop_boxes(boxes: torch.Tensor, image_size, margin: float = 0.2, square: bool = True,
               min_size: float = 1.0) -> torch.Tensor:
    """The region to cut around each box: enlarged by ``margin``, optionally square, inside the image.

    ``boxes``: ``(N, 4)`` pixel-edge ``(x1, y1, x2, y2)``; ``image_size``: ``H`` or ``(H, W)``.
    Each side grows by ``margin`` times the box's width (left/right) or height (top/bottom); with
    ``square`` the shorter side then grows to the longer one around the same centre (so resizing
    the crop keeps the aspect ratio). A crop that sticks out of the image is *shifted* inside when
    it fits (the object stays whole, the crop keeps its size), and clipped to the image only where
    it is larger than the image. Each side is at least ``min_size`` pixels (after the margin), so a
    map that found only a small part still gives a crop with some context. A map that kept nothing
    has the empty box ``(0, 0, 0, 0)`` (:func:`camlib.localize.boxes_from_maps`); its crop is the whole
    image, as if there were no first stage. Returns float ``(N, 4)``.
    Lesson 04 (paper section 4.1: "crop around the CAM box").
    """
    boxes = _check_boxes(boxes)
    H, W = size_hw(image_size)
    if not 0.0 <= float(margin) <= 10.0:
        raise ValueError(f"margin must be in [0, 10] (a fraction of the box side); got {margin!r}")
    if not float(min_size) >= 0:
        raise ValueError(f"min_size must be >= 0 pixels; got {min_size!r}")
    x1, y1, x2, y2 = boxes.unbind(1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    w, h = (x2 - x1) * (1 + 2 * margin), (y2 - y1) * (1 + 2 * margin)
    if square:
        w = h = torch.maximum(w, h)
    w, h = w.clamp_min(min_size), h.clamp_min(min_size)
    w, h = w.clamp(max=W), h.clamp(max=H)
    # shift inside: the centre may lie only where the whole crop fits
    cx = torch.minimum(torch.maximum(cx, w / 2), W - w / 2)
    cy = torch.minimum(torch.maximum(cy, h / 2), H - h / 2)
    out = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    empty = (boxes == 0).all(1)                     # (0, 0, 0, 0): the map kept nothing; crop the whole image
    out[empty] = torch.tensor([0.0, 0.0, float(W), float(H)], dtype=out.dtype)
    return out


def same_size_boxes(regions: torch.Tensor, image_size, where: str = "random",
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Boxes of exactly the size of each of ``regions``, placed elsewhere: the controls that tell a
    crop's *location* from its size and resolution.

    ``where="random"``: uniform over the places where the whole box fits in the image (``generator``
    for repeatable draws); ``"centre"``: centred in the image. A region larger than the image keeps
    the image's size on that side. Returns float ``(N, 4)``. Lesson 04 (the size-matched controls of
    "the CAM crop helps").
    """
    regions = _check_boxes(regions, "regions")
    H, W = size_hw(image_size)
    if where not in ("random", "centre"):
        raise ValueError(f"where must be 'random' or 'centre'; got {where!r}")
    w = (regions[:, 2] - regions[:, 0]).clamp(max=W)
    h = (regions[:, 3] - regions[:, 1]).clamp(max=H)
    if where == "centre":
        x1, y1 = (W - w) / 2, (H - h) / 2
    else:
        u = torch.rand((len(regions), 2), generator=generator)
        x1, y1 = u[:, 0] * (W - w), u[:, 1] * (H - h)
    return torch.stack([x1, y1, x1 + w, y1 + h], 1)


def box_coverage(regions: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The fraction of each of ``boxes`` that lies inside the matching region ``(N,)``: whether a
    crop holds its object, which IoU does not tell (a crop twice the object's size has IoU 0.25 and
    coverage 1). Lesson 04."""
    regions, boxes = _check_boxes(regions, "regions"), _check_boxes(boxes)
    if len(regions) != len(boxes):
        raise ValueError(f"one region per box expected; got {len(regions)} regions and {len(boxes)} boxes")
    inter = (torch.min(regions[:, 2:], boxes[:, 2:]) - torch.max(regions[:, :2], boxes[:, :2])).clamp_min(0)
    return inter.prod(1) / area(boxes).clamp_min(1e-12)


def jitter_boxes(boxes: torch.Tensor, image_size, scale: float = 0.15, shift: float = 0.1,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomly moved and rescaled copies of ``boxes`` (clipped to the image), for training a crop
    network on ground-truth boxes that then meets imperfect CAM boxes. ``shift`` and ``scale`` are
    fractions of the box side (uniform in ``[-shift, shift]``, log-uniform in ``[1-scale, 1+scale]``).
    Lesson 04 (the alternative to training on CAM-box crops)."""
    boxes = _check_boxes(boxes)
    H, W = size_hw(image_size)
    if scale < 0 or shift < 0:
        raise ValueError(f"scale and shift must be >= 0; got {scale}, {shift}")
    n = len(boxes)
    u = torch.rand((n, 4), generator=generator) * 2 - 1
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 + u[:, 0] * shift * w
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 + u[:, 1] * shift * h
    lo, hi = torch.log1p(torch.tensor(-min(scale, 0.9))), torch.log1p(torch.tensor(scale))
    sw = torch.exp(lo + (u[:, 2] + 1) / 2 * (hi - lo))
    sh = torch.exp(lo + (u[:, 3] + 1) / 2 * (hi - lo))
    w, h = w * sw, h * sh
    out = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    return clip(out, (H, W))


def crop_images(images: torch.Tensor, boxes: torch.Tensor, size) -> torch.Tensor:
    """Cut ``boxes`` out of ``images`` and resize each to ``size``, the whole batch in one
    :func:`camlib.data.augment.crop_resize` (``roi_align``: bilinear, pixel-edge boxes read
    exactly, ``ceil(crop / output)`` samples averaged per output pixel; an integer box of the
    output's size is copied exactly).

    ``images``: ``(N, 3, H, W)`` uint8 or float; ``boxes``: ``(N, 4)``, one per image. Returns the
    crops in the images' dtype (uint8 rounded). Lesson 04.
    """
    from .data.augment import crop_resize

    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a (N, C, H, W) tensor; got {tuple(getattr(images, 'shape', ()))}")
    boxes = _check_boxes(boxes)
    if len(boxes) != len(images):
        raise ValueError(f"one box per image expected: {len(images)} images, {len(boxes)} boxes")
    out = crop_resize(images, boxes.to(images.device), size_hw(size))
    if images.dtype == torch.uint8:
        return out.round().clamp(0, 255).to(torch.uint8)
    return out.to(images.dtype)


def crop_masks(masks: torch.Tensor, boxes: torch.Tensor, size) -> torch.Tensor:
    """Bool masks ``(N, H, W)`` cut and resized like :func:`crop_images` (a crop pixel is in the
    mask when at least half of its samples are). Used by :func:`crop_dataset`, which lesson 04
    calls (as ``twostage.crop_dataset``)."""
    if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool or masks.ndim != 3:
        raise ValueError(f"masks must be a bool (N, H, W) tensor; got {getattr(masks, 'dtype', None)} "
                         f"{tuple(getattr(masks, 'shape', ()))}")
    return crop_images(masks[:, None].float(), boxes, size)[:, 0] >= 0.5


def boxes_into_crops(boxes: torch.Tensor, crops: torch.Tensor, size) -> torch.Tensor:
    """Express ``boxes`` (image pixels) in the pixels of the resized ``crops`` (one per box),
    clipped to the crop. :func:`crop_dataset` (lesson 04) uses it to carry the ground-truth box
    into each crop."""
    boxes, crops = _check_boxes(boxes), _check_boxes(crops, "crops")
    if len(boxes) != len(crops):
        raise ValueError(f"one crop per box expected; got {len(boxes)} boxes and {len(crops)} crops")
    h, w = size_hw(size)
    sx = w / (crops[:, 2] - crops[:, 0]).clamp_min(1e-6)
    sy = h / (crops[:, 3] - crops[:, 1]).clamp_min(1e-6)
    out = torch.stack([(boxes[:, 0] - crops[:, 0]) * sx, (boxes[:, 1] - crops[:, 1]) * sy,
                       (boxes[:, 2] - crops[:, 0]) * sx, (boxes[:, 3] - crops[:, 1]) * sy], 1)
    out[:, 0::2] = out[:, 0::2].clamp(0, w)
    out[:, 1::2] = out[:, 1::2].clamp(0, h)
    return out


def boxes_from_crops(boxes: torch.Tensor, crops: torch.Tensor, size) -> torch.Tensor:
    """The inverse of :func:`boxes_into_crops`: boxes in the pixels of resized crops (``size``) back
    in the source image's pixels: a CAM box found on a resized image, in the original. Used by
    :func:`camlib.twostage.run_two_stage` (lesson 04's gpu path) and
    :func:`camlib.twostage.two_stage_predict`."""
    boxes, crops = _check_boxes(boxes), _check_boxes(crops, "crops")
    if len(boxes) != len(crops):
        raise ValueError(f"one crop per box expected; got {len(boxes)} boxes and {len(crops)} crops")
    h, w = size_hw(size)
    sx = (crops[:, 2] - crops[:, 0]) / w
    sy = (crops[:, 3] - crops[:, 1]) / h
    return torch.stack([crops[:, 0] + boxes[:, 0] * sx, crops[:, 1] + boxes[:, 1] * sy,
                        crops[:, 0] + boxes[:, 2] * sx, crops[:, 1] + boxes[:, 3] * sy], 1)


def resize_dataset(ds: InMemoryDataset, size) -> InMemoryDataset:
    """The whole images resized to ``size``, as an image library resizes a photo (bilinear with
    antialiasing, like ``torchvision.transforms.Resize``): what a network with a fixed input size
    sees of a larger picture. Boxes are scaled, masks resized (a pixel is in when at least half of
    it is); ``extras["crop_box"]`` is the whole image, so :func:`boxes_from_crops` maps boxes found
    on the small copy back to the original. Lesson 04.
    """
    if not isinstance(ds, InMemoryDataset):
        raise ValueError(f"ds must be an InMemoryDataset; got {type(ds).__name__}")
    h, w = size_hw(size)
    H, W = ds.image_size

    def rs(x: torch.Tensor, finish) -> torch.Tensor:
        # chunk by chunk into the final (uint8 or bool) tensor: only one chunk is ever float, so the
        # peak is the output plus ``chunk`` float images (4,800 CUB images at 448 px: no +7 GiB)
        chunk = max(1, (64 << 20) // max(1, x[0].numel() * 4))       # ~64 MiB of float input per chunk
        out = None
        for lo in range(0, len(x), chunk):
            part = finish(F.interpolate(x[lo:lo + chunk].float(), size=(h, w), mode="bilinear", antialias=True,
                                        align_corners=False))
            if out is None:
                out = torch.empty((len(x), *part.shape[1:]), dtype=part.dtype, device=part.device)
            out[lo:lo + len(part)] = part
        return out

    images = rs(ds.images, lambda t: t.round_().clamp_(0, 255).to(torch.uint8))
    masks = rs(ds.masks[:, None], lambda t: t >= 0.5)[:, 0] if ds.masks is not None else None
    parts = rs(ds.part_masks[:, None], lambda t: t >= 0.5)[:, 0] if ds.part_masks is not None else None
    scale = torch.tensor([w / W, h / H, w / W, h / H])
    boxes = ds.boxes * scale.to(ds.boxes.device) if ds.boxes is not None else None
    extras = dict(ds.extras)
    extras["crop_box"] = torch.tensor([[0.0, 0.0, float(W), float(H)]]).expand(len(ds), 4).clone()
    return InMemoryDataset(images, ds.labels.clone(), boxes, masks, parts, mean=ds.mean.flatten().tolist(),
                           std=ds.std.flatten().tolist(), class_names=ds.class_names, extras=extras,
                           name=f"{ds.name}-{h}px")


def crop_dataset(ds: InMemoryDataset, boxes: torch.Tensor, size, *, margin: float = 0.2, square: bool = True,
                 min_size: float = 1.0, chunk: int = 512) -> InMemoryDataset:
    """A new dataset of one crop per image, around ``boxes`` (enlarged by :func:`crop_boxes`),
    resized to ``size``. Labels are kept; the ground-truth box, masks and part masks are carried
    into crop coordinates; ``extras["crop_box"]`` holds each crop's region in the source image.
    Lesson 04.
    """
    if not isinstance(ds, InMemoryDataset):
        raise ValueError(f"ds must be an InMemoryDataset; got {type(ds).__name__}")
    boxes = _check_boxes(boxes)
    if len(boxes) != len(ds):
        raise ValueError(f"one box per image expected: the dataset has {len(ds)} images, got {len(boxes)} boxes")
    regions = crop_boxes(boxes, ds.image_size, margin=margin, square=square, min_size=min_size)
    parts: dict[str, list[torch.Tensor]] = {"images": [], "masks": [], "part_masks": []}
    for lo in range(0, len(ds), chunk):
        r = regions[lo:lo + chunk]
        parts["images"].append(crop_images(ds.images[lo:lo + chunk], r.to(ds.images.device), size))
        if ds.masks is not None:
            parts["masks"].append(crop_masks(ds.masks[lo:lo + chunk], r.to(ds.masks.device), size))
        if ds.part_masks is not None:
            parts["part_masks"].append(crop_masks(ds.part_masks[lo:lo + chunk], r.to(ds.part_masks.device), size))
    cat = lambda k: torch.cat(parts[k]) if parts[k] else None  # noqa: E731
    gt = boxes_into_crops(ds.boxes, regions, size) if ds.boxes is not None else None
    extras = {k: v for k, v in ds.extras.items()}
    extras["crop_box"] = regions
    return InMemoryDataset(cat("images"), ds.labels.clone(), gt, cat("masks"), cat("part_masks"),
                           mean=ds.mean.flatten().tolist(), std=ds.std.flatten().tolist(),
                           class_names=ds.class_names, extras=extras, name=f"{ds.name}-crops")
