"""Numbers from predictions: classification and localization errors (the paper's), GT-known
localization, MaxBoxAcc / MaxBoxAccV2 and PxAP (Choe et al. 2020), and small helpers.

Conventions: boxes are ``(x1, y1, x2, y2)`` pixel-edge floats (CONTRIBUTING.md); IoU is
``torchvision.ops.box_iou`` (computed in float64). Ground-truth boxes may be given as a ``(B, 4)``
tensor (one box per image), a ``(B, N, 4)`` tensor, or a list of ``(N_i, 4)`` tensors (several
boxes per image; ``N_i = 0`` means no box, which no prediction can match). A prediction is
correct when its IoU with *any* ground-truth box of its image is ``>= iou_threshold``
(so an IoU of exactly 0.5 counts as correct). The empty box ``(0, 0, 0, 0)``, which
:func:`camlib.localize.boxes_from_maps` gives when its rule keeps no pixel, has IoU 0 with every
box: such an image is never counted as localized (Choe et al. 2020's convention).

Introduced in lesson 01 (box accuracy, IoU, mask coverage) and lesson 03 (everything else).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision.ops import box_iou

from . import localize
from .boxes import as_boxes

__all__ = [
    "topk_classes",
    "classification_error",
    "best_iou",
    "mean_iou",
    "box_accuracy",
    "gt_known_accuracy",
    "localization_correct",
    "localization_error",
    "mask_coverage",
    "box_thresholds",
    "MaxBoxAccResult",
    "max_box_acc",
    "max_box_acc_v2",
    "average_precision",
    "pxap",
]


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------
def _gt_list(gt_boxes, n: int, name: str = "gt_boxes") -> list[torch.Tensor]:
    """Ground truth as a list of ``n`` float64 ``(N_i, 4)`` tensors."""
    if isinstance(gt_boxes, torch.Tensor):
        if gt_boxes.ndim == 2 and gt_boxes.shape[-1] == 4:
            gt_boxes = list(gt_boxes[:, None])
        elif gt_boxes.ndim == 3 and gt_boxes.shape[-1] == 4:
            gt_boxes = list(gt_boxes)
        else:
            raise ValueError(f"{name} must be (B, 4), (B, N, 4) or a list of (N_i, 4); got {tuple(gt_boxes.shape)}")
    if not isinstance(gt_boxes, (list, tuple)):
        raise ValueError(f"{name} must be a tensor or a list of (N_i, 4) tensors, got {type(gt_boxes).__name__}")
    if len(gt_boxes) != n:
        raise ValueError(f"{name} must have one entry per image ({n}), got {len(gt_boxes)}")
    out = []
    for i, g in enumerate(gt_boxes):
        g = torch.as_tensor(g)
        if g.ndim == 1 and g.shape[0] == 4:
            g = g[None]
        if g.ndim != 2 or g.shape[-1] != 4:
            raise ValueError(f"{name}[{i}] must be (N, 4), got {tuple(g.shape)}")
        out.append(as_boxes(g, f"{name}[{i}]"))
    return out


def _nonempty(n: int, what: str) -> None:
    if n == 0:
        raise ValueError(f"{what} of an empty batch is undefined; got 0 images")


def _boxes(boxes, name: str, ndim: int = 2) -> torch.Tensor:
    if not isinstance(boxes, torch.Tensor):
        raise ValueError(f"{name} must be a tensor of (x1, y1, x2, y2) boxes, got {type(boxes).__name__}")
    return as_boxes(boxes, name, ndim=ndim)


def _labels(labels, n: int, num_classes: int | None = None) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.shape[0] != n or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an int tensor of shape ({n},), got {labels.dtype} {tuple(labels.shape)}")
    labels = labels.detach().cpu().long()
    hi = num_classes if num_classes is not None else None
    if labels.numel() and (int(labels.min()) < 0 or (hi is not None and int(labels.max()) >= hi)):
        raise ValueError(f"labels must lie in [0, {hi if hi is not None else 'C'}); got min {int(labels.min())}, "
                         f"max {int(labels.max())}")
    return labels


def _iou_thresholds(ious) -> tuple[float, ...]:
    vals = tuple(float(v) for v in ious)
    if not vals or any(not 0.0 < v <= 1.0 for v in vals):
        raise ValueError(f"IoU thresholds must be in (0, 1], got {ious!r}")
    return vals


# ----------------------------------------------------------------------------------------------
# classification
# ----------------------------------------------------------------------------------------------
def topk_classes(logits: torch.Tensor, k: int = 5) -> torch.Tensor:
    """The ``k`` best classes per image, best first, ``(B, k)``; equal scores go to the lower
    class index (a stable sort), so results never depend on the hardware. Paper section 3."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ValueError(f"logits must be a (B, C) tensor, got {getattr(logits, 'shape', type(logits))}")
    if not 1 <= int(k) <= logits.shape[1]:
        raise ValueError(f"k must be in [1, C={logits.shape[1]}], got {k}")
    return torch.sort(logits.detach(), dim=1, descending=True, stable=True).indices[:, : int(k)]


def classification_error(logits_or_classes: torch.Tensor, labels, k: int = 1) -> float:
    """Top-k classification error: the fraction of images whose label is not among the k best
    classes. Accepts logits ``(B, C)`` (float) or already-ranked classes ``(B, P)`` (int, best
    first; the first ``k`` are used). Paper section 3, Table 1."""
    x = logits_or_classes
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        raise ValueError(f"expected logits (B, C) or ranked classes (B, P), got {getattr(x, 'shape', type(x))}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int (top-k); got {k!r}")
    _nonempty(x.shape[0], "classification_error")
    lab = _labels(labels, x.shape[0], x.shape[1] if x.is_floating_point() else None)
    ranked = topk_classes(x, k) if x.is_floating_point() else x.detach().cpu().long()
    if ranked.shape[1] < k:
        raise ValueError(f"k={k} but only {ranked.shape[1]} ranked classes were given")
    hit = (ranked[:, :k].cpu() == lab[:, None]).any(1)
    return float(1.0 - hit.double().mean())


# ----------------------------------------------------------------------------------------------
# boxes
# ----------------------------------------------------------------------------------------------
def best_iou(pred_boxes: torch.Tensor, gt_boxes) -> torch.Tensor:
    """Per image, the highest IoU of its predicted box with any of its ground-truth boxes,
    ``(B,)`` float64 (0 where an image has no ground-truth box). Used by :func:`box_accuracy` and
    :func:`mean_iou`, which lessons 03-05 call."""
    pred = _boxes(pred_boxes, "pred_boxes")
    gts = _gt_list(gt_boxes, pred.shape[0])
    out = torch.zeros(pred.shape[0], dtype=torch.float64)
    for i, g in enumerate(gts):
        if len(g):
            out[i] = box_iou(pred[i:i + 1], g).max()
    return out


def mean_iou(pred_boxes: torch.Tensor, gt_boxes) -> float:
    """Mean over images of :func:`best_iou`. Lessons 03 and 04."""
    ious = best_iou(pred_boxes, gt_boxes)
    _nonempty(len(ious), "mean_iou")
    return float(ious.mean())


def box_accuracy(pred_boxes: torch.Tensor, gt_boxes, iou_threshold: float = 0.5) -> float:
    """Fraction of images whose box has IoU ``>= iou_threshold`` with a ground-truth box.
    Lessons 03-05."""
    (thr,) = _iou_thresholds([iou_threshold])
    ious = best_iou(pred_boxes, gt_boxes)
    _nonempty(len(ious), "box_accuracy")
    return float((ious >= thr).double().mean())


def gt_known_accuracy(pred_boxes: torch.Tensor, gt_boxes, iou_threshold: float = 0.5) -> float:
    """GT-known localization accuracy: :func:`box_accuracy` of the boxes made from the
    *ground-truth* class's maps (classification is taken as right). Lesson 03; Choe et al. 2020."""
    return box_accuracy(pred_boxes, gt_boxes, iou_threshold)


def localization_correct(pred_classes: torch.Tensor, pred_boxes: torch.Tensor, labels, gt_boxes,
                         iou_threshold: float = 0.5, k: int | None = None) -> torch.Tensor:
    """Per image, whether one of the first ``k`` (class, box) guesses has the right class *and*
    IoU ``>= iou_threshold`` with a ground-truth box: bool ``(B,)``. ``pred_classes`` ``(B, P)``,
    ``pred_boxes`` ``(B, P, 4)`` (one box per guess; a class may appear in several guesses, as in
    the official several-box heuristic). Paper section 3 (the ILSVRC rule)."""
    if not isinstance(pred_classes, torch.Tensor) or pred_classes.ndim != 2 or pred_classes.is_floating_point():
        got = getattr(pred_classes, "shape", type(pred_classes))
        raise ValueError(f"pred_classes must be an int (B, P) tensor, got {got}")
    boxes = _boxes(pred_boxes, "pred_boxes", ndim=3)
    B, P = pred_classes.shape
    if boxes.shape[:2] != (B, P):
        raise ValueError(f"pred_boxes must be ({B}, {P}, 4) to match pred_classes, got {tuple(boxes.shape)}")
    (thr,) = _iou_thresholds([iou_threshold])
    k = P if k is None else int(k)
    if not 1 <= k <= P:
        raise ValueError(f"k must be in [1, {P}], got {k}")
    lab = _labels(labels, B)
    gts = _gt_list(gt_boxes, B)
    right_class = pred_classes[:, :k].cpu() == lab[:, None]
    out = torch.zeros(B, dtype=torch.bool)
    for i, g in enumerate(gts):
        if len(g) and bool(right_class[i].any()):
            good_box = box_iou(boxes[i, :k], g).max(1).values >= thr
            out[i] = bool((good_box & right_class[i]).any())
    return out


def localization_error(pred_classes: torch.Tensor, pred_boxes: torch.Tensor, labels, gt_boxes,
                       iou_threshold: float = 0.5, k: int | None = None) -> float:
    """Top-k localization error, exactly as the paper (ILSVRC) defines it: an image counts as
    localized when one of its first ``k`` guesses names the right class and that guess's box has
    IoU ``>= 0.5`` with a ground-truth box. Top-1: ``k=1``; top-5: ``k=5`` (five guesses, e.g. the
    top-5 classes' boxes, or the heuristic's 2+2+1). Paper section 3, Table 2."""
    ok = localization_correct(pred_classes, pred_boxes, labels, gt_boxes, iou_threshold, k)
    _nonempty(len(ok), "localization_error")
    return float(1.0 - ok.double().mean())


def mask_coverage(regions, masks) -> torch.Tensor:
    """Per image, the fraction of the object mask's pixels inside ``regions`` (bool ``(B, H, W)``,
    e.g. :func:`camlib.localize.threshold_maps` or :func:`camlib.localize.boxes_to_masks`):
    ``|region & mask| / |mask|``, float64 ``(B,)``. An empty mask raises ``ValueError``. Lesson 01."""
    r = localize._as_masks(regions, "regions")
    m = localize._as_masks(masks, "masks")
    if r.shape != m.shape:
        raise ValueError(f"regions and masks must have the same shape, got {tuple(r.shape)} and {tuple(m.shape)}")
    area = m.sum(dim=(1, 2))
    if bool((area == 0).any()):
        raise ValueError(f"masks must not be empty; images {torch.nonzero(area == 0).flatten().tolist()} have no pixel")
    return ((r & m).sum(dim=(1, 2)).double() / area.double()).cpu()


# ----------------------------------------------------------------------------------------------
# MaxBoxAcc and MaxBoxAccV2 (Choe et al., CVPR 2020)
# ----------------------------------------------------------------------------------------------
def box_thresholds(n: int = 100) -> np.ndarray:
    """Choe et al.'s threshold grid: ``np.arange(0, 1, 1/n)``, i.e. ``t_j = j * (1/n)`` for
    ``j = 0 .. n-1`` (float64; n = 100 gives 0.00, 0.01, ..., 0.99). Lesson 03."""
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grid = np.arange(0, 1, 1.0 / int(n))
    if grid.shape[0] != int(n):  # float rounding in arange's length; keep the same values
        grid = np.arange(int(n)) * (1.0 / int(n))
    return grid


@dataclass
class MaxBoxAccResult:
    """What :func:`max_box_acc` measured. ``score``: the headline number (MaxBoxAcc: accuracy at
    IoU 0.5; MaxBoxAccV2: mean over its IoU thresholds of the best accuracy at each); ``accuracy``
    and ``best_threshold``: per IoU threshold, the best accuracy over map thresholds and the
    (lowest) map threshold reaching it; ``curve``: accuracy per map threshold ``(T, n_iou)``."""

    score: float
    accuracy: dict[float, float]
    best_threshold: dict[float, float]
    thresholds: np.ndarray = field(repr=False)
    curve: np.ndarray = field(repr=False)
    iou_thresholds: tuple[float, ...] = (0.5,)
    all_components: bool = False


def _best_iou_per_cell(comps: localize.ThresholdComponents, gts: list[torch.Tensor],
                       all_components: bool) -> torch.Tensor:
    """Highest IoU per (threshold, image) over the boxes considered and the ground-truth boxes;
    0 where nothing reaches the threshold. ``(T, B)`` float64."""
    T, B = comps.n_thresholds, comps.n_images
    if all_components:
        img, tix, boxes = comps.image.cpu(), comps.threshold_index.cpu(), comps.boxes.cpu().double()
    else:
        largest, found = localize.largest_per_threshold(comps)
        tix, img = torch.nonzero(found.cpu(), as_tuple=True)
        boxes = largest.cpu().double()[tix, img]
    best = torch.zeros(T * B, dtype=torch.float64)
    if img.numel() == 0:
        return best.view(T, B)
    if not bool((img[1:] >= img[:-1]).all()):  # components_at_thresholds groups them by image already
        order = torch.argsort(img, stable=True)
        img, tix, boxes = img[order], tix[order], boxes[order]
    counts = torch.bincount(img, minlength=B).tolist()
    ious = torch.zeros(img.shape[0], dtype=torch.float64)
    at = 0
    for b, c in enumerate(counts):  # one box_iou per image, over all its thresholds' boxes
        if c and len(gts[b]):
            ious[at:at + c] = box_iou(gts[b], boxes[at:at + c]).max(0).values
        at += c
    best.scatter_reduce_(0, tix * B + img, ious, "amax")
    return best.view(T, B)


def max_box_acc(maps, gt_boxes, thresholds=None, iou_thresholds=(0.5,), all_components: bool = False,
                normalize: bool = True, backend: str = "auto") -> MaxBoxAccResult:
    """MaxBoxAcc (Choe et al. 2020): box accuracy at the best of a grid of map thresholds.

    Each map is min-max normalized (``normalize``; a constant map becomes all zeros); for every
    threshold ``t`` of ``thresholds`` (default :func:`box_thresholds` ``(100)``) the pixels
    ``>= t`` are split into 8-connected components; the box is the largest component's
    (``all_components=False``: MaxBoxAcc) or every component's box is tried and the best counts
    (``True``: the V2 rule). An image is correct at ``t`` when a box has IoU ``>= delta`` with a
    ground-truth box; where no pixel reaches ``t`` it is wrong. Returns the best accuracy over
    ``t`` for each ``delta`` in ``iou_thresholds``. All thresholds come from one pass per map
    (:func:`camlib.localize.components_at_thresholds`), batched, no loop over thresholds.

    Differences from Choe et al.'s code, on purpose: maps are thresholded in float (``>= t``)
    rather than as uint8 with ``> t``; boxes are pixel-edge boxes of 8-connected components (no
    clipping to ``W - 1``) and IoU is torchvision's (no ``+1``); "largest" counts pixels rather than
    contour polygon area; hole contours are not extra boxes. Lesson 03.
    """
    m, _ = localize.as_maps(maps)
    B = m.shape[0]
    gts = _gt_list(gt_boxes, B)
    ious = _iou_thresholds(iou_thresholds)
    thr = box_thresholds(100) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    if thr.ndim != 1 or thr.shape[0] < 1:
        raise ValueError(f"thresholds must be a 1-D ascending grid, got shape {thr.shape}")
    comps = localize.components_at_thresholds(m, thr, normalize=normalize, areas=not all_components,
                                              backend=backend)
    best = _best_iou_per_cell(comps, gts, all_components)  # (T, B)
    curve = torch.stack([(best >= d).double().mean(1) for d in ious], 1).numpy()
    top = curve.argmax(0)
    accuracy = {d: float(curve[top[i], i]) for i, d in enumerate(ious)}
    best_thr = {d: float(thr[top[i]]) for i, d in enumerate(ious)}
    score = float(np.mean([accuracy[d] for d in ious]))
    return MaxBoxAccResult(score=score, accuracy=accuracy, best_threshold=best_thr, thresholds=thr, curve=curve,
                           iou_thresholds=ious, all_components=all_components)


def max_box_acc_v2(maps, gt_boxes, thresholds=None, iou_thresholds=(0.3, 0.5, 0.7), normalize: bool = True,
                   backend: str = "auto") -> MaxBoxAccResult:
    """MaxBoxAccV2 (Choe et al. 2020): every component's box is tried at each threshold, and the
    score is the mean over IoU 0.3 / 0.5 / 0.7 of the best accuracy at each (each IoU threshold
    may pick its own map threshold). See :func:`max_box_acc`. Lesson 03."""
    return max_box_acc(maps, gt_boxes, thresholds, iou_thresholds, all_components=True, normalize=normalize,
                       backend=backend)


# ----------------------------------------------------------------------------------------------
# PxAP (Choe et al. 2020)
# ----------------------------------------------------------------------------------------------
def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Average precision of ``scores`` against bool ``labels`` (any shapes, flattened):
    ``sum_k (R_k - R_{k-1}) P_k`` over the distinct score values from high to low, the step rule
    of ``sklearn.metrics.average_precision_score`` (no interpolation). Needs a positive. Used by
    :func:`pxap` (lesson 03)."""
    s = torch.as_tensor(scores).detach().reshape(-1).cpu()
    y = torch.as_tensor(labels).detach().reshape(-1).cpu()
    if s.shape != y.shape:
        raise ValueError(f"scores and labels must have the same number of elements, got {s.numel()} and {y.numel()}")
    if y.dtype != torch.bool:
        raise ValueError(f"labels must be bool, got {y.dtype}")
    if s.numel() and not torch.isfinite(s.double()).all():
        raise ValueError("scores must be finite")
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError("average precision needs at least one positive label")
    order = torch.argsort(s, descending=True, stable=True)
    s, y = s[order], y[order]
    tp = torch.cumsum(y.double(), 0)
    last = torch.ones_like(y)  # the last element of each run of equal scores closes a step
    last[:-1] = s[1:] != s[:-1]
    tp = tp[last]
    predicted = torch.nonzero(last).flatten().double() + 1
    precision = tp / predicted
    recall = tp / n_pos
    gain = torch.diff(recall, prepend=torch.zeros(1, dtype=torch.float64))
    return float((gain * precision).sum())


def pxap(maps, masks, thresholds=None, normalize: bool = True) -> float:
    """PxAP (Choe et al. 2020): average precision of pixel scores against the object masks, over
    all pixels of all images. Maps are min-max normalized per image first (``normalize``).

    ``thresholds=None``: the exact AP (:func:`average_precision`, equal to sklearn's).
    A grid (e.g. :func:`box_thresholds` ``(100)``, as Choe et al. bin it): each pixel counts as
    predicted positive at threshold ``t_j`` when its score is ``>= t_j``; precision and recall at
    each grid threshold are combined by the same step rule -- the AP of each pixel's level
    (how many thresholds it reaches), computed from histograms in one pass. Pixels below the
    lowest threshold (none, for normalized maps and a grid starting at 0) form a last step where
    every pixel is predicted positive. Choe et al.'s code bins the same way up to its end-point
    convention (it adds edges above 1). Lesson 03.
    """
    m, _ = localize.as_maps(maps)
    msk = localize._as_masks(masks)
    if msk.shape != m.shape:
        raise ValueError(f"masks must match maps' shape {tuple(m.shape)}, got {tuple(msk.shape)}")
    if normalize:
        m = localize.minmax_normalize(m)
    if thresholds is None:
        return average_precision(m, msk)
    thr = np.asarray(thresholds, dtype=np.float64)
    if thr.ndim != 1 or thr.shape[0] < 1 or (np.diff(thr) < 0).any():
        raise ValueError(f"thresholds must be a 1-D ascending grid, got {thresholds!r}")
    level = torch.searchsorted(torch.from_numpy(thr), m.reshape(-1).double().cpu(), right=True)
    y = msk.reshape(-1).cpu()
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError("PxAP needs at least one mask pixel")
    T = thr.shape[0]
    pos = torch.bincount(level[y], minlength=T + 1).double()
    neg = torch.bincount(level[~y], minlength=T + 1).double()
    tp = pos.flip(0).cumsum(0)  # predicted positive at threshold index j: level >= j + 1 ... from the top
    pp = (pos + neg).flip(0).cumsum(0)
    keep = (pos + neg).flip(0) > 0
    tp, pp = tp[keep], pp[keep]
    recall = tp / n_pos
    gain = torch.diff(recall, prepend=torch.zeros(1, dtype=torch.float64))
    return float((gain * tp / pp).sum())
