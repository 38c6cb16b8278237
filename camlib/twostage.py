"""Two-stage fine-grained recognition (paper section 4.1): classify, localize with the CAM, crop,
classify the crop.

The paper's CUB-200 experiment (Table 4) in four steps:

1. a CAM network classifies the *full image* (stage 1): in the paper, a linear SVM on the frozen GAP
   features of GoogLeNet-GAP (:func:`probe_accuracy`), whose weights make the CAM (:func:`probe_boxes`);
2. the map of its top-1 class gives a box by the paper's rule (20% of the maximum, largest
   connected component: :func:`camlib.localize.boxes_from_maps`);
3. the box, enlarged by a margin and made square (:func:`crop_boxes`), is cut out and resized
   (:func:`crop_images`, :func:`crop_dataset`);
4. a second network, trained on such crops, classifies the crop (stage 2).

The crop network is trained on the crops that stage 1's CAM boxes give on the *training* images
(:func:`cam_boxes` on the training set), so the whole pipeline uses image-level labels only, as
in the paper; training it on ground-truth boxes with random jitter (:func:`jitter_boxes`) is the
alternative when boxes are available. The ground-truth-box crop (a network trained and tested
on crops of the annotated boxes) is the upper bound: perfect localization.

Everything works on :class:`~camlib.data.InMemoryDataset` (uint8 images in memory), so the
offline synthetic data and a decoded real dataset (:func:`camlib.data.cache.cached`, the gpu path)
go through the same code (:func:`run_two_stage` runs the whole experiment). Introduced in lesson 04.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from . import localize
from .cam import class_activation_maps, upsample
from .boxes import area, as_boxes, clip
from .data.memory import InMemoryDataset
from .inference import batches, evaluating, model_device, predict

__all__ = ["crop_boxes", "same_size_boxes", "box_coverage", "jitter_boxes", "crop_images", "crop_masks",
           "boxes_into_crops", "boxes_from_crops", "resize_dataset", "crop_dataset", "cam_boxes", "probe_boxes",
           "probe_accuracy", "two_stage_predict", "run_two_stage"]


def _size2(size) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be an int or (H, W); got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive; got {(h, w)}")
    return h, w


def _check_boxes(boxes, name: str = "boxes") -> torch.Tensor:
    return as_boxes(boxes, name, dtype=torch.float32)


# ------------------------------------------------------------------------------ crop geometry

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
    H, W = _size2(image_size)
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
    H, W = _size2(image_size)
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
    H, W = _size2(image_size)
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
    out = crop_resize(images, boxes.to(images.device), _size2(size))
    if images.dtype == torch.uint8:
        return out.round().clamp(0, 255).to(torch.uint8)
    return out.to(images.dtype)


def crop_masks(masks: torch.Tensor, boxes: torch.Tensor, size) -> torch.Tensor:
    """Bool masks ``(N, H, W)`` cut and resized like :func:`crop_images` (a crop pixel is in the
    mask when at least half of its samples are). Lesson 04."""
    if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool or masks.ndim != 3:
        raise ValueError(f"masks must be a bool (N, H, W) tensor; got {getattr(masks, 'dtype', None)} "
                         f"{tuple(getattr(masks, 'shape', ()))}")
    return crop_images(masks[:, None].float(), boxes, size)[:, 0] >= 0.5


def boxes_into_crops(boxes: torch.Tensor, crops: torch.Tensor, size) -> torch.Tensor:
    """Express ``boxes`` (image pixels) in the pixels of the resized ``crops`` (one per box),
    clipped to the crop. Lesson 04 (the ground-truth box inside a crop)."""
    boxes, crops = _check_boxes(boxes), _check_boxes(crops, "crops")
    if len(boxes) != len(crops):
        raise ValueError(f"one crop per box expected; got {len(boxes)} boxes and {len(crops)} crops")
    h, w = _size2(size)
    sx = w / (crops[:, 2] - crops[:, 0]).clamp_min(1e-6)
    sy = h / (crops[:, 3] - crops[:, 1]).clamp_min(1e-6)
    out = torch.stack([(boxes[:, 0] - crops[:, 0]) * sx, (boxes[:, 1] - crops[:, 1]) * sy,
                       (boxes[:, 2] - crops[:, 0]) * sx, (boxes[:, 3] - crops[:, 1]) * sy], 1)
    out[:, 0::2] = out[:, 0::2].clamp(0, w)
    out[:, 1::2] = out[:, 1::2].clamp(0, h)
    return out


def boxes_from_crops(boxes: torch.Tensor, crops: torch.Tensor, size) -> torch.Tensor:
    """The inverse of :func:`boxes_into_crops`: boxes in the pixels of resized crops (``size``) back
    in the source image's pixels. Lesson 04 (a CAM box found on a resized image, in the original)."""
    boxes, crops = _check_boxes(boxes), _check_boxes(crops, "crops")
    if len(boxes) != len(crops):
        raise ValueError(f"one crop per box expected; got {len(boxes)} boxes and {len(crops)} crops")
    h, w = _size2(size)
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
    h, w = _size2(size)
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


# ------------------------------------------------------------------------- stage 1: CAM boxes

def cam_boxes(model, ds, *, classes: str = "pred", threshold: float = 0.2, batch_size: int = 256,
              device=None) -> dict[str, torch.Tensor]:
    """Stage 1: classify every image, and box the map of its top-1 class (``classes="pred"``,
    the paper's protocol) or of its true class (``"label"``, GT-known) by the paper's rule.

    ``ds``: an :class:`InMemoryDataset` (or anything with ``batch``). Maps are upsampled to the
    image size before :func:`camlib.localize.boxes_from_maps`. Returns ``{"boxes" (N, 4), "logits"
    (N, C), "classes" (N,), "maps" (N, h, w) at feature resolution}`` on the CPU. Lesson 04.
    """
    if classes not in ("pred", "label"):
        raise ValueError(f"classes must be 'pred' or 'label'; got {classes!r}")
    if not hasattr(ds, "batch"):
        raise ValueError(f"ds must be an in-memory dataset with .batch(); got {type(ds).__name__}")
    device = model_device(model, device)
    H, W = ds.image_size
    out: dict[str, list[torch.Tensor]] = {"boxes": [], "logits": [], "classes": [], "maps": []}
    with evaluating(model):
        for b in batches(ds, batch_size, device):
            o = model(b["image"])
            logits = o.logits.float()
            cls = logits.argmax(1) if classes == "pred" else b["label"]
            maps = class_activation_maps(o.features.float(), model.classifier.weight.float(), cls)[:, 0]
            out["boxes"].append(localize.boxes_from_maps(upsample(maps, (H, W)), threshold=threshold).cpu())
            out["logits"].append(logits.cpu())
            out["classes"].append(cls.cpu())
            out["maps"].append(maps.cpu())
    return {k: torch.cat(v) for k, v in out.items()}


# --------------------------------------------- the paper's protocol: frozen features + linear SVM

def probe_accuracy(model, train_ds, test_ds, *, C: float = 0.1, batch_size: int = 128,
                   device=None) -> tuple[float, Any]:
    """Table 4's classifier for one *view* of the images: the frozen ``model``'s GAP features of
    ``train_ds``, a linear SVM on them (:func:`camlib.features.fit_probe`), its accuracy on
    ``test_ds``'s features. Returns ``(accuracy, probe)``. Lesson 04 (paper section 4.1: "we
    train a linear SVM on the GAP features ... of the full image / the crop")."""
    from . import features
    f_tr = features.extract(model, train_ds, batch_size=batch_size, device=device)
    f_te = features.extract(model, test_ds, batch_size=batch_size, device=device)
    probe = features.fit_probe(f_tr["features"], f_tr["labels"], C=C)
    return probe.accuracy(f_te["features"], f_te["labels"]), probe


@torch.no_grad()
def probe_boxes(model, probe, ds, *, threshold: float = 0.2, batch_size: int = 128,
                device=None) -> dict[str, torch.Tensor]:
    """Stage 1 of Table 4: the box of each image's top-1 class map, where the map is the *probe's*
    CAM (the SVM's weights on the frozen feature maps, :func:`camlib.features.probe_cams`), boxed by
    the paper's rule at ``ds``'s image size. Returns ``{"boxes" (N, 4) in ds pixels, "classes" (N,)
    row indices of the probe, "maps" (N, h, w)}`` on the CPU. Lesson 04."""
    from . import features
    if not hasattr(ds, "batch"):
        raise ValueError(f"ds must be an in-memory dataset with .batch(); got {type(ds).__name__}")
    H, W = ds.image_size
    out: dict[str, list[torch.Tensor]] = {"boxes": [], "classes": [], "maps": []}
    for lo in range(0, len(ds), batch_size):
        f = features.extract(model, ds, batch_size=batch_size, device=device, maps=True,
                             indices=torch.arange(lo, min(lo + batch_size, len(ds))))
        cls = probe.decision(f["features"]).argmax(1)
        maps = features.probe_cams(f["maps"], probe, cls)[:, 0]
        out["boxes"].append(localize.boxes_from_maps(upsample(maps, (H, W)), threshold=threshold).cpu())
        out["classes"].append(cls)
        out["maps"].append(maps)
    return {k: torch.cat(v) for k, v in out.items()}


# ------------------------------------------------------------------------- the whole pipeline

@torch.no_grad()
def two_stage_predict(stage1, stage2, ds: InMemoryDataset, *, input_size, crop_size, margin: float = 0.2,
                      square: bool = True, min_size: float = 1.0, threshold: float = 0.2, batch_size: int = 256,
                      device=None) -> dict[str, Any]:
    """Run the pipeline on ``ds`` (the original, full-resolution images).

    Stage 1 sees the whole image resized to ``input_size`` (as a network with a fixed input size
    sees a large photo), predicts, and boxes the map of its top-1 class; the box is taken back to
    the original pixels, enlarged by ``margin`` (:func:`crop_boxes`) and cut out of the *original*
    at ``crop_size``; stage 2 classifies that crop. Returns the stage-1 and stage-2 logits and
    predictions, the CAM boxes (original pixels), the stage-1 maps and the crop dataset.
    Lesson 04 (paper section 4.1, Table 4 "GoogLeNet-GAP on crop").
    """
    full = resize_dataset(ds, input_size) if tuple(ds.image_size) != _size2(input_size) else ds
    s1 = cam_boxes(stage1, full, classes="pred", threshold=threshold, batch_size=batch_size, device=device)
    boxes = boxes_from_crops(s1["boxes"], full.extras["crop_box"], input_size) if full is not ds else s1["boxes"]
    crops = crop_dataset(ds, boxes, crop_size, margin=margin, square=square, min_size=min_size)
    logits2 = _logits(stage2, crops, batch_size, device)
    return {"full_logits": s1["logits"], "full_pred": s1["logits"].argmax(1), "boxes": boxes,
            "crop_logits": logits2, "crop_pred": logits2.argmax(1), "crops": crops, "maps": s1["maps"]}


def _logits(model, ds, batch_size: int, device) -> torch.Tensor:
    return predict(model, ds, batch_size=batch_size, device=device, maps=None)["logits"]


def _streamed_max_box_acc_v2(maps: torch.Tensor, boxes: torch.Tensor, hw, chunk: int = 256) -> float:
    """MaxBoxAccV2 of feature-resolution ``maps`` upsampled to ``hw``, ``chunk`` maps at a time (the
    accuracy curve is a mean over images, so chunks add up exactly; the full-size maps of a whole
    test set are never held at once)."""
    from . import metrics
    total, n = None, len(maps)
    for lo in range(0, n, chunk):
        r = metrics.max_box_acc_v2(upsample(maps[lo:lo + chunk], hw), boxes[lo:lo + chunk])
        part = r.curve * min(chunk, n - lo)
        total = part if total is None else total + part
    return float((total / n).max(0).mean())


# ---------------------------------------------------------------------- all of it in one call

def run_two_stage(train_ds: InMemoryDataset, test_ds: InMemoryDataset, build_model: Callable[[], Any], *,
                  input_size, crop_size, steps: int, margin: float = 0.2, min_size: float = 1.0, train_size=None,
                  augment: Callable | None = None, upper_bound: bool = True, device=None, progress: bool = True,
                  seed: int = 0, checkpoint=None, **fit_kwargs) -> dict[str, Any]:
    """The whole experiment of Table 4 on any in-memory dataset with one box per image.

    1. stage 1 (``build_model()``) trains on the full images resized to ``train_size`` (default
       ``input_size``) and is tested on them resized to ``input_size``;
    2. its top-1 CAM boxes on the training and test images, taken back to the full-resolution
       ``train_ds``/``test_ds``, give square crops with ``margin``: training crops are cut at
       ``train_size`` when it is given (to be random-cropped by ``augment``), else at
       ``crop_size``; test crops at ``crop_size``;
    3. stage 2 (a fresh ``build_model()``) trains on the training crops and classifies the test
       crops; with ``upper_bound`` a third network trains and tests on ground-truth-box crops.

    ``augment(dataset, size)`` may return a :func:`camlib.train.fit` ``augment=`` callable (e.g. a
    :class:`camlib.data.augment.GPUAugment` that random-crops ``input_size`` out of ``train_size``).
    ``fit_kwargs`` go to :func:`camlib.train.fit` (``batch_size``, ``lr``, ``optimizer``, ...).
    ``checkpoint``: a file path (e.g. from :func:`camlib.config.checkpoint_path`); each network then
    trains with ``resume=True`` on ``<stem>-stage1``, ``-stage2`` and ``-gt`` beside it, so a run cut
    off (a Colab disconnect) continues where it stopped, and a finished one is loaded, not retrained.
    Returns accuracies ``acc_full``, ``acc_crop``, ``acc_gt`` (fractions), the stage-1 localization
    ``loc_acc`` (top-1 class's box, IoU >= 0.5; class not required) and ``max_box_acc_v2``
    (GT-known maps), the test boxes and the models. Lesson 04 (gpu path: CUB-200-2011).
    """
    from . import metrics, train as _train

    if not isinstance(train_ds, InMemoryDataset) or not isinstance(test_ds, InMemoryDataset):
        raise ValueError("train_ds and test_ds must be InMemoryDatasets (or caches of them)")
    if train_ds.boxes is None or test_ds.boxes is None:
        raise ValueError("run_two_stage needs one ground-truth box per image (ds.boxes of shape (N, 4))")
    tsize = input_size if train_size is None else train_size
    in_hw, t_hw = _size2(input_size), _size2(tsize)

    if checkpoint is not None:
        from pathlib import Path
        checkpoint = Path(checkpoint)

    def fitted(ds, part: str):
        torch.manual_seed(seed)
        model = build_model()
        aug = augment(ds, _size2(input_size)[0]) if augment is not None else None
        ck = None if checkpoint is None else checkpoint.with_name(f"{checkpoint.stem}-{part}{checkpoint.suffix or '.pt'}")
        _train.fit(model, ds, steps=steps, device=device, progress=progress, seed=seed, augment=aug,
                   checkpoint=ck, resume=ck is not None, **fit_kwargs)
        return model.eval()

    def resized(ds, hw):
        return ds if tuple(ds.image_size) == hw else resize_dataset(ds, hw)

    full_train, full_test = resized(train_ds, t_hw), resized(test_ds, in_hw)
    stage1 = fitted(full_train, "stage1")
    s_train = cam_boxes(stage1, full_train, device=device)
    s_test = cam_boxes(stage1, full_test, device=device)
    to_orig = lambda s, full, ds, hw: (boxes_from_crops(s["boxes"], full.extras["crop_box"], hw)  # noqa: E731
                                       if full is not ds else s["boxes"])
    b_train, b_test = to_orig(s_train, full_train, train_ds, t_hw), to_orig(s_test, full_test, test_ds, in_hw)
    crop_train = crop_dataset(train_ds, b_train, tsize if train_size is not None else crop_size, margin=margin,
                              min_size=min_size)
    crop_test = crop_dataset(test_ds, b_test, crop_size, margin=margin, min_size=min_size)
    stage2 = fitted(crop_train, "stage2")
    labels = test_ds.labels.cpu()
    acc = lambda logits: float((logits.argmax(1) == labels).float().mean())  # noqa: E731
    known = cam_boxes(stage1, full_test, classes="label", device=device)
    out: dict[str, Any] = {
        "acc_full": acc(s_test["logits"]),
        "acc_crop": acc(_logits(stage2, crop_test, 256, device)),
        "loc_acc": metrics.box_accuracy(b_test, test_ds.boxes.cpu()),
        "max_box_acc_v2": _streamed_max_box_acc_v2(known["maps"], full_test.boxes.cpu(), in_hw),
        "boxes": b_test, "stage1": stage1, "stage2": stage2, "crops_test": crop_test,
    }
    if upper_bound:
        gt_train = crop_dataset(train_ds, train_ds.boxes.cpu(), tsize if train_size is not None else crop_size,
                                margin=margin, min_size=min_size)
        gt_test = crop_dataset(test_ds, test_ds.boxes.cpu(), crop_size, margin=margin, min_size=min_size)
        gt_model = fitted(gt_train, "gt")
        out.update(acc_gt=acc(_logits(gt_model, gt_test, 256, device)), gt_model=gt_model)
    return out
