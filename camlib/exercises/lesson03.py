"""Lesson 03's exercises: the 20% box, IoU, top-k localization error (the paper's Sec. 3).

Each reference is the library function the lesson introduces: :func:`camlib.localize.boxes_from_maps`,
``torchvision.ops.box_iou`` and :func:`camlib.metrics.localization_error`. The plausible mistakes
are written by hand, each the right rule with one thing changed.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torchvision.ops import box_iou

from .. import localize, metrics
from ._engine import Spec, gen, randint, run, _as_number


def _component_box(mask: np.ndarray, connectivity: int = 8) -> torch.Tensor:
    """The largest component's box of a bool mask, written out (for the mistakes); (0, 0, 0, 0) when empty."""
    from scipy import ndimage

    structure = np.ones((3, 3), bool) if connectivity == 8 else ndimage.generate_binary_structure(2, 1)
    labels, n = ndimage.label(mask, structure=structure)
    if n == 0:
        return torch.zeros(4)
    largest = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    ys, xs = np.nonzero(labels == largest)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


def _ref_largest_component_box(cam: torch.Tensor, fraction: float) -> torch.Tensor:
    """The library's box rule (no kept pixel: the empty box ``(0, 0, 0, 0)``, Choe et al.'s convention)."""
    return localize.boxes_from_maps(cam, threshold=fraction)


def _map_trials(seed: int) -> list[tuple]:
    """One hand-made map that separates the classic mistakes, then random blobby maps."""
    from scipy import ndimage

    g = gen(seed)
    crafted = -0.5 * torch.rand(12, 16, generator=g)  # negative background
    crafted[2:5, 1:4] = 0.5 + 0.5 * torch.rand(3, 3, generator=g)  # two squares touching at a corner:
    crafted[5:8, 4:7] = 0.5 + 0.5 * torch.rand(3, 3, generator=g)  # one 18-px component with 8-connectivity
    crafted[7:11, 10:14] = 0.5 + 0.5 * torch.rand(4, 4, generator=g)  # a 16-px block
    crafted[3, 2] = 1.0
    trials = [(crafted, 0.3)]
    while len(trials) < 5:
        h = randint(g, 10, 20)
        w = h + randint(g, 2, 6)
        cam = torch.randn(h, w, generator=g) * 0.05 - 0.2
        yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
        for _ in range(randint(g, 2, 4)):
            cy, cx = float(torch.rand(1, generator=g)) * h, float(torch.rand(1, generator=g)) * w
            sy, sx = 1 + float(torch.rand(1, generator=g)) * h / 6, 1 + float(torch.rand(1, generator=g)) * w / 6
            cam += (0.4 + float(torch.rand(1, generator=g))) * torch.exp(-((yy - cy) / sy) ** 2 - ((xx - cx) / sx) ** 2)
        fraction = round(0.15 + 0.4 * float(torch.rand(1, generator=g)), 2)
        threshold = fraction * float(cam.max())
        labels, n = ndimage.label((cam >= threshold).numpy(), structure=np.ones((3, 3)))
        sizes = sorted(np.bincount(labels.ravel())[1:], reverse=True)
        near = bool(((cam - threshold).abs() < 1e-3 * float(cam.max())).any())
        if n >= 2 and sizes[0] > sizes[1] and not near:  # a unique winner, no pixel on the fence
            trials.append((cam, fraction))
    return trials


def check_largest_component_box(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """Check ``fn(map (H, W), threshold_fraction) -> (4,)`` float pixel-edge box.

    Lesson 03. The paper's Sec. 3 rule: keep ``map >= fraction * max(map)``, take the largest
    8-connected component, return its bounding box ``(x1, y1, x2, y2)`` with ``x2 = last column + 1``;
    the reference is :func:`camlib.localize.boxes_from_maps` (which returns ``(0, 0, 0, 0)`` when no
    pixel is kept; the trials always keep some).
    """
    run(_largest_component_box_spec(), fn)


def _largest_component_box_spec(seed: int = 301) -> Spec:
    def all_pixels(cam, frac):
        ys, xs = np.nonzero((cam >= frac * cam.max()).numpy())
        return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)

    def minmax_threshold(cam, frac):
        lo, hi = cam.min(), cam.max()
        return _component_box((cam >= lo + frac * (hi - lo)).numpy())

    return Spec("check_largest_component_box", ("map", "threshold_fraction"), _map_trials(seed),
                _ref_largest_component_box, (
             ("used an inclusive x2 -- boxes here are pixel-edge, x2 = last column + 1 (and y2 = last row + 1)",
              lambda c, f: _ref_largest_component_box(c, f) - torch.tensor([0, 0, 1, 1])),
             ("used 4-connectivity: pixels touching diagonally belong to the same component (8-connectivity)",
              lambda c, f: _component_box((c >= f * c.max()).numpy(), connectivity=4)),
             ("boxed every pixel above the threshold, not only the largest connected component", all_pixels),
             ("returned (y1, x1, y2, x2): boxes here are (x1, y1, x2, y2), x along the columns",
              lambda c, f: _ref_largest_component_box(c, f)[[1, 0, 3, 2]]),
             ("thresholded the min-max normalized map: the paper's rule is map >= fraction * max of the raw map",
              minmax_threshold),
                ))


#: The IoU reference is torchvision's, which the library uses (pixel-edge boxes: area = width * height).
_ref_box_iou = box_iou


def _random_boxes(g: torch.Generator, n: int, size: int = 24) -> torch.Tensor:
    xy = torch.randint(0, size - 2, (n, 2), generator=g)
    wh = torch.randint(1, size // 2, (n, 2), generator=g)
    return torch.cat([xy, xy + wh], dim=1).float()


def check_box_iou(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``fn(a (N, 4), b (M, 4)) -> (N, M)`` intersection over union of pixel-edge boxes. Lesson 03."""
    run(_box_iou_spec(), fn)


def _box_iou_spec(seed: int = 302) -> Spec:
    g = gen(seed)
    trials = []
    for t in range(4):
        n, m = randint(g, 3, 6), randint(g, 2, 6)
        m = m + 1 if m == n else m
        a, b = _random_boxes(g, n), _random_boxes(g, m)
        b[0] = a[0]  # identical boxes: IoU 1
        b[1] = torch.tensor([40.0, 40, 44, 43])  # beyond every box of a: IoU 0
        a[1] = torch.tensor([41.0, 0, 43, 5])  # shares columns with b[1] but no row: IoU 0
        trials.append((a, b))

    def inclusive(a, b):
        return _ref_box_iou(a + torch.tensor([0, 0, 1, 1]), b + torch.tensor([0, 0, 1, 1]))

    def no_clamp(a, b):
        lt = torch.maximum(a[:, None, :2], b[None, :, :2])
        rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
        inter = (rb - lt).prod(dim=2)
        area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
        return inter / (area(a)[:, None] + area(b)[None, :] - inter)

    def union_is_sum(a, b):
        iou = _ref_box_iou(a, b)
        return iou / (1 + iou)  # inter / (A + B) written with IoU = inter / (A + B - inter)

    return Spec("check_box_iou", ("a", "b"), trials, _ref_box_iou, (
        ("computed areas with +1 (inclusive pixel convention); boxes here are pixel-edge: area = (x2 - x1) * (y2 - y1)",
         inclusive),
        ("did not clamp the intersection's width and height at 0: disjoint boxes must give IoU 0", no_clamp),
        ("forgot to subtract the intersection from the union (union = area_a + area_b - intersection)", union_is_sum),
        ("compared a[i] with b[i] only: return every pair, shape (N, M)",
         lambda a, b: _ref_box_iou(a, b).diagonal()),
    ))


def _ref_topk_loc_error(logits, boxes_per_class, labels, gt_boxes, k) -> torch.Tensor:
    """The library's metric: the k best classes' boxes as k guesses, :func:`camlib.metrics.localization_error`."""
    top = metrics.topk_classes(logits, k)                                   # (B, k), best first
    guesses = boxes_per_class.gather(1, top[:, :, None].expand(-1, -1, 4))  # (B, k, 4): each guess's box
    return torch.tensor(metrics.localization_error(top, guesses, labels, gt_boxes, k=k), dtype=torch.float64)


def _loc_error_written_out(logits, boxes_per_class, labels, gt_boxes, k, *, strict=False, first_gt=False,
                           class_free=False, need_class=True):
    """The metric written out with switches, for the mistakes (all off: the reference's value)."""
    top = logits.topk(k, dim=1).indices
    hits = 0
    for b in range(logits.shape[0]):
        gts = gt_boxes[b][:1] if first_gt else gt_boxes[b]
        classes = top[b].tolist() if class_free else [int(labels[b])]
        ok = False
        for c in classes:
            if need_class and not class_free and c not in top[b].tolist():
                continue
            iou = box_iou(boxes_per_class[b, c][None], gts).max()
            ok = ok or bool(iou > 0.5 if strict else iou >= 0.5)
        hits += ok
    return torch.tensor(1 - hits / logits.shape[0], dtype=torch.float64)


def check_topk_loc_error(fn: Callable[..., float]) -> None:
    """Check ``fn(logits (B, C), boxes_per_class (B, C, 4), labels (B,), gt_boxes [(N_i, 4)], k) -> float``.

    Lesson 03. The paper's Sec. 3 metric: an image is localized when its true class is among the
    top-k predictions and *that class's* box has IoU >= 0.5 with one of the image's ground-truth
    boxes; the error is the fraction of images not localized. Arguments in the order of
    :func:`camlib.metrics.localization_error` (predictions, then ``labels``, then ``gt_boxes``), which
    is the reference.
    """
    run(_topk_loc_error_spec(), fn)


def _topk_loc_error_spec(seed: int = 303) -> Spec:
    g = gen(seed)
    trials = []
    for k in (1, 5, 3, 5):
        b, c = randint(g, 24, 40), randint(g, 7, 10)
        logits = torch.randn(b, c, generator=g)
        labels = torch.randint(0, c, (b,), generator=g)
        boost = torch.rand(b, generator=g) < 0.5
        logits[boost, labels[boost]] += 3.0  # about half the images have their class on top
        boxes = _random_boxes(g, b * c).reshape(b, c, 4)
        gts = []
        for i in range(b):
            gt = _random_boxes(g, randint(g, 1, 3))
            j = randint(g, 0, len(gt) - 1)
            kind = randint(g, 0, 3)
            if kind == 0:  # the true class's box is exactly a ground-truth box
                boxes[i, labels[i]] = gt[j]
            elif kind == 1:  # twice as wide: IoU exactly 0.5
                boxes[i, labels[i]] = gt[j] + torch.tensor([0, 0, 1, 0]) * (gt[j, 2] - gt[j, 0])
            wrong = (int(labels[i]) + 1) % c  # another class often has a good box too
            if randint(g, 0, 1):
                boxes[i, wrong] = gt[randint(g, 0, len(gt) - 1)]
            gts.append(gt)
        trials.append((logits, boxes, labels, gts, k))

    def top1_only(lo, bx, lb, gt, k):
        return _ref_topk_loc_error(lo, bx, lb, gt, 1)

    def classification_error(lo, bx, lb, gt, k):
        return 1 - (lo.topk(k, 1).indices == lb[:, None]).any(1).double().mean()

    return Spec("check_topk_loc_error", ("logits", "boxes_per_class", "labels", "gt_boxes", "k"), trials,
                _ref_topk_loc_error, (
             ("counted IoU of exactly 0.5 as wrong: a box is correct when IoU >= 0.5",
              lambda *a: _loc_error_written_out(*a, strict=True)),
             ("compared only with the first ground-truth box: any of the image's boxes counts",
              lambda *a: _loc_error_written_out(*a, first_gt=True)),
             ("counted a good box of any top-k class: only the true class's box counts",
              lambda *a: _loc_error_written_out(*a, class_free=True)),
             ("counted images whose true class is not among the top-k predictions",
              lambda *a: _loc_error_written_out(*a, need_class=False)),
             ("returned the accuracy (1 - error)", lambda *a: 1 - _ref_topk_loc_error(*a)),
             ("ignored k and used only the top-1 class", top1_only),
             ("returned the classification error: the boxes must be checked too", classification_error),
                ), convert=_as_number, rtol=0, atol=1e-6)




SPECS = {"check_largest_component_box": _largest_component_box_spec, "check_box_iou": _box_iou_spec,
         "check_topk_loc_error": _topk_loc_error_spec}
