"""Boxes from maps: the paper's rule, the official several-box heuristic, and every threshold's
connected components.

Conventions (CONTRIBUTING.md): maps are ``(B, H, W)`` float tensors (a single ``(H, W)`` map is
accepted where it says so); boxes are ``(x1, y1, x2, y2)`` floats in pixel-edge coordinates, so a
region covering columns 3..7 has ``x1 = 3, x2 = 8`` and ``torchvision.ops.box_iou`` applies.
Components are 8-connected (a pixel touches the 8 around it), as in the paper's code.

Which box is "the largest component" when two components have the same number of pixels: the one
whose box is first in ``(y1, x1, y2, x2)`` order. Two components tied on all five have the same
box, so the choice cannot change any score.

Every threshold's components (MaxBoxAcc, lesson 03): :func:`components_per_threshold` is the
definition -- for each map and threshold ``t``, label the 8-connected components of
``{map >= t}`` with ``scipy.ndimage.label`` and take each one's box and pixel count.
:func:`components_at_thresholds` returns exactly the same components in one pass per map, however
many thresholds there are; its algorithm lives in the private module ``camlib._components``
(which explains it) and is tested against the definition.

Introduced in lesson 01 (the paper's box rule) and lesson 03 (thresholds, MaxBoxAcc, heuristic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from . import _components, cam

__all__ = [
    "ThresholdComponents",
    "as_maps",
    "threshold_maps",
    "boxes_from_maps",
    "largest_component_boxes",
    "component_boxes",
    "boxes_to_masks",
    "components_per_threshold",
    "components_at_thresholds",
    "largest_per_threshold",
    "minmax_normalize",
    "heuristic_boxes",
    "heuristic_topk_predictions",
    "OFFICIAL_HEURISTIC_THRESHOLDS",
]

#: The official code's bbox-generator thresholds on a 0-255 map (PAPER.md, Table 3 paragraph).
OFFICIAL_HEURISTIC_THRESHOLDS = (20, 100, 110)

_EIGHT = np.ones((3, 3), dtype=bool)


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------
def as_maps(maps, name: str = "maps") -> tuple[torch.Tensor, bool]:
    """``maps`` as a float ``(B, H, W)`` tensor, and whether a single ``(H, W)`` map was given.

    Accepts tensors and NumPy arrays; raises ``ValueError`` on other shapes, non-float values,
    empty maps or non-finite values. float64 maps are evaluated in float32 (the scores the
    component search orders pixels by); thresholds are compared in float64. The map check of
    :func:`boxes_from_maps` and :func:`threshold_maps` (lesson 01), and of the other map-taking
    functions here and in :mod:`camlib.metrics`.
    """
    maps, single = _batched(maps, name)
    if maps.shape[0] == 0 or maps.shape[-1] == 0 or maps.shape[-2] == 0:
        raise ValueError(f"{name} must hold at least one map with H, W >= 1, got shape {tuple(maps.shape)}")
    if maps.dtype == torch.bool or not (maps.is_floating_point() or maps.dtype in (torch.uint8, torch.int16,
                                                                                     torch.int32, torch.int64)):
        raise ValueError(f"{name} must hold real numbers, got dtype {maps.dtype}")
    maps = maps.detach().to(torch.float32)
    lo, hi = torch.aminmax(maps)  # NaN propagates into both
    if not (bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))):
        raise ValueError(f"{name} must be finite; found NaN or inf")
    return maps, single


def _as_masks(masks, name: str = "masks") -> torch.Tensor:
    masks, _ = _batched(masks, name)
    if masks.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor, got dtype {masks.dtype}")
    return masks


def _batched(x, name: str) -> tuple[torch.Tensor, bool]:
    """``x`` (a tensor or NumPy array) as ``(B, H, W)``, and whether one ``(H, W)`` was given."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor or NumPy array, got {type(x).__name__}")
    if x.ndim not in (2, 3):
        raise ValueError(f"{name} must have shape (B, H, W) or (H, W), got {tuple(x.shape)}")
    return (x[None], True) if x.ndim == 2 else (x, False)


# ----------------------------------------------------------------------------------------------
# the paper's rule
# ----------------------------------------------------------------------------------------------
def threshold_maps(maps, threshold: float = 0.2, relative: bool = True) -> torch.Tensor:
    """The region the paper's rule keeps: ``map >= threshold * max(map)`` (``relative``) or
    ``map >= threshold``; bool ``(B, H, W)`` (or ``(H, W)`` for one map).

    A map whose maximum is ``<= 0`` has no positive evidence; with ``relative=True`` its region is
    empty (then :func:`boxes_from_maps` gives the empty box). Paper section 3; lesson 01.
    """
    m, single = as_maps(maps)
    region = _region(m, threshold, relative)
    return region[0] if single else region


def _region(m: torch.Tensor, threshold: float, relative: bool) -> torch.Tensor:
    """The paper's rule on checked ``(B, H, W)`` maps (see :func:`threshold_maps`)."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(threshold, bool) or not np.isfinite(value):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    threshold = value
    if relative and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"a relative threshold must lie in [0, 1], got {threshold}")
    if not relative:
        return m.double() >= threshold
    top = m.amax(dim=(1, 2))[:, None, None]
    return (m.double() >= threshold * top.double()) & (top > 0)  # max <= 0: nothing is evidence


def boxes_from_maps(maps, threshold: float = 0.2, relative: bool = True, backend: str = "auto") -> torch.Tensor:
    """One box per map by the paper's rule: keep pixels ``>= threshold * max`` (``relative``) or
    ``>= threshold``, take the bounding box of the largest 8-connected component.

    Returns float ``(B, 4)`` (or ``(4,)`` for one ``(H, W)`` map) in pixel-edge coordinates.
    When the rule keeps no pixel -- a map whose maximum is ``<= 0`` with ``relative=True``, or no
    pixel reaching an absolute threshold -- there is no box: the result is the empty box
    ``(0, 0, 0, 0)``, whose IoU with any box is 0, so the image counts as not localized. This is
    Choe et al. 2020's convention (their code returns ``[0, 0, 0, 0]`` when no contour is found;
    the paper's official box tool outputs no box); the whole image would instead give credit to
    a map with no evidence wherever the object fills half the image. A constant positive map keeps
    every pixel and gets the whole image ``(0, 0, W, H)``. Never NaN. ``backend``: ``"numpy"`` labels each map with ``scipy.ndimage`` on the CPU
    (:func:`components_per_threshold`), ``"torch"`` runs batched on the maps' device
    (:func:`components_at_thresholds`), ``"auto"`` picks by device. Paper section 3; lesson 01.
    """
    m, single = as_maps(maps)
    boxes = _largest_boxes(_region(m, threshold, relative), backend)
    return boxes[0] if single else boxes


def largest_component_boxes(masks, backend: str = "auto") -> torch.Tensor:
    """The box of the largest 8-connected component of each bool mask, ``(B, 4)`` float; an empty
    mask gets the empty box ``(0, 0, 0, 0)`` (as in :func:`boxes_from_maps`). The same rule that
    :func:`boxes_from_maps` (lessons 01-05) applies after its threshold, for masks already made."""
    return _largest_boxes(_as_masks(masks), backend)


def _largest_boxes(masks: torch.Tensor, backend: str) -> torch.Tensor:
    """Largest component's box per bool mask (ties: box order), ``(0, 0, 0, 0)`` where empty."""
    if _pick_backend(backend, masks.device) == "torch":
        comps = components_at_thresholds(masks.float(), [0.5], backend="torch")
    else:
        comps = components_per_threshold(masks.float(), [0.5])
    boxes, _ = largest_per_threshold(comps)  # all zeros where no pixel is kept
    return boxes[0]


def _pick_backend(backend: str, device: torch.device) -> str:
    if backend not in ("auto", "numpy", "torch"):
        raise ValueError(f"backend must be 'auto', 'numpy' or 'torch', got {backend!r}")
    if backend == "auto":
        return "numpy" if device.type == "cpu" else "torch"
    return backend


def component_boxes(mask) -> tuple[torch.Tensor, torch.Tensor]:
    """Every 8-connected component of one bool mask ``(H, W)``: boxes ``(n, 4)`` float and pixel
    counts ``(n,)``, largest first (ties: box order ``(y1, x1, y2, x2)``).

    Single-image helper for figures (:func:`components_per_threshold` on the CPU): the boxes
    :func:`camlib.metrics.max_box_acc_v2` (lesson 03) tries, for one mask.
    """
    m = _as_masks(mask, "mask")
    if m.shape[0] != 1:
        raise ValueError(f"mask must be one (H, W) mask, got shape {tuple(mask.shape)}")
    comps = components_per_threshold(m.cpu().float(), [0.5])
    boxes, areas = comps.boxes.numpy(), comps.areas.numpy()
    order = np.lexsort((boxes[:, 2], boxes[:, 3], boxes[:, 0], boxes[:, 1], -areas))
    return comps.boxes[order], comps.areas[order]


def boxes_to_masks(boxes, height: int, width: int) -> torch.Tensor:
    """Bool masks ``(B, H, W)`` that are true inside each pixel-edge box (pixels whose centres lie
    in it; integer boxes cover exactly their pixels). A box's region for
    :func:`camlib.metrics.mask_coverage`, to which lesson 01 passes the thresholded map
    (:func:`threshold_maps`) instead."""
    if not isinstance(boxes, torch.Tensor) or boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be a (B, 4) tensor, got {getattr(boxes, 'shape', type(boxes))}")
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"height and width must be >= 1, got {height}, {width}")
    ys = torch.arange(int(height), device=boxes.device, dtype=torch.float32) + 0.5
    xs = torch.arange(int(width), device=boxes.device, dtype=torch.float32) + 0.5
    b = boxes.float()
    iny = (ys[None] >= b[:, 1:2]) & (ys[None] < b[:, 3:4])
    inx = (xs[None] >= b[:, 0:1]) & (xs[None] < b[:, 2:3])
    return iny[:, :, None] & inx[:, None, :]


# ----------------------------------------------------------------------------------------------
# every threshold's components: the definition, and the same in one pass
# ----------------------------------------------------------------------------------------------
@dataclass
class ThresholdComponents:
    """Every 8-connected component of ``{map >= t}`` for every threshold ``t``, flat.

    ``thresholds`` is ``(B, T)`` float64 (one row per map); component ``k`` lives at threshold
    index ``threshold_index[k]`` of map ``image[k]`` with box ``boxes[k]`` (pixel-edge, float) and
    ``areas[k]`` pixels (``-1`` when areas were not asked for). Components come grouped by image,
    images in order. What :func:`components_at_thresholds` returns to
    :func:`camlib.metrics.max_box_acc`, :func:`~camlib.metrics.max_box_acc_v2` and
    :func:`heuristic_boxes` (lesson 03).
    """

    thresholds: torch.Tensor
    height: int
    width: int
    threshold_index: torch.Tensor
    image: torch.Tensor
    boxes: torch.Tensor
    areas: torch.Tensor

    @property
    def n_images(self) -> int:
        return int(self.thresholds.shape[0])

    @property
    def n_thresholds(self) -> int:
        return int(self.thresholds.shape[1])

    def count(self) -> torch.Tensor:
        """Number of components per (threshold, image): ``(T, B)`` int64."""
        out = torch.zeros(self.n_thresholds * self.n_images, dtype=torch.int64, device=self.boxes.device)
        out.index_add_(0, self.threshold_index * self.n_images + self.image, torch.ones_like(self.image))
        return out.view(self.n_thresholds, self.n_images)


def components_per_threshold(maps, thresholds, *, normalize: bool = False) -> ThresholdComponents:
    """Every 8-connected component of ``{map >= t}`` for every threshold ``t``, by the definition:
    one ``scipy.ndimage.label`` per map and threshold, each component's bounding box and pixel
    count. This is the reference :func:`components_at_thresholds` is tested against; use that one
    for many thresholds (this one costs a labelling per map and threshold).

    ``maps``, ``thresholds`` and ``normalize`` as in :func:`components_at_thresholds`. With the
    ``"numpy"`` backend (the default for CPU maps), :func:`boxes_from_maps` (lessons 01-05) finds
    its largest component with it.
    """
    m, _ = as_maps(maps)
    B, H, W = m.shape
    thr = _as_thresholds(thresholds, B)
    if normalize:
        m = minmax_normalize(m)
    found = []  # (threshold index, image, x1, y1, x2, y2, pixels) of every component
    for b in range(B):
        scores = m[b].cpu().double().numpy()
        for j, t in enumerate(thr[b]):
            labels, n = ndimage.label(scores >= t, structure=_EIGHT)
            pixels = np.bincount(labels.ravel(), minlength=n + 1)[1:]
            for (ys, xs), area in zip(ndimage.find_objects(labels), pixels):
                found.append((j, b, xs.start, ys.start, xs.stop, ys.stop, area))
    rows = np.array(found, dtype=np.int64).reshape(-1, 7)
    return _pack(thr, H, W, rows[:, 0], rows[:, 1], rows[:, 2:6].astype(np.float32), rows[:, 6], m.device)


def components_at_thresholds(maps, thresholds, *, normalize: bool = False, areas: bool = True,
                             backend: str = "auto", chunk_pixels: int = 1 << 19) -> ThresholdComponents:
    """The same components as :func:`components_per_threshold`, in one pass per map: no loop over
    thresholds (``camlib._components`` explains the method).

    ``maps``: ``(B, H, W)``; ``thresholds``: ascending, ``(T,)`` shared or ``(B, T)`` per map,
    compared as ``float64(map) >= t``; ``normalize``: min-max normalize each map first
    (:func:`minmax_normalize`); ``areas``: also count pixels (needed to pick the largest
    component; skip it when every component counts); ``backend``: ``"numpy"`` (the fast CPU
    path), ``"torch"`` (tensor ops on the maps' device, the GPU path) or ``"auto"`` (NumPy for
    CPU tensors, torch otherwise). The per-basin merge always runs on the CPU. Maps are processed
    in chunks of ~``chunk_pixels`` pixels. Used by :func:`camlib.metrics.max_box_acc`,
    :func:`~camlib.metrics.max_box_acc_v2` and :func:`heuristic_boxes`, which lesson 03 calls.
    """
    m, _ = as_maps(maps)
    B, H, W = m.shape
    thr = _as_thresholds(thresholds, B)
    j, img, boxes, pixels = _components.every_threshold(
        m, thr, backend=_pick_backend(backend, m.device), normalize=normalize, areas=areas,
        chunk_pixels=chunk_pixels)
    return _pack(thr, H, W, j, img, boxes, pixels, m.device)


def _as_thresholds(thresholds, B: int) -> np.ndarray:
    """Thresholds as an ascending float64 ``(B, T)`` array (a shared ``(T,)`` grid repeated)."""
    thr = torch.as_tensor(thresholds, dtype=torch.float64).detach().cpu().numpy()
    if thr.ndim == 1:
        thr = np.broadcast_to(thr[None], (B, thr.shape[0]))
    if thr.ndim != 2 or thr.shape[0] != B or thr.shape[1] < 1:
        raise ValueError(f"thresholds must be (T,) or (B, T) with B={B}, T >= 1; got {tuple(thr.shape)}")
    if np.isnan(thr).any():
        raise ValueError("thresholds must not be NaN")
    if (np.diff(thr, axis=1) < 0).any():
        raise ValueError("thresholds must be in ascending order")
    return np.array(thr, dtype=np.float64, order="C", copy=True)


def _pack(thr: np.ndarray, H: int, W: int, j, img, boxes, pixels, device) -> ThresholdComponents:
    tensor = lambda a, dtype: torch.from_numpy(np.ascontiguousarray(a, dtype=dtype)).to(device)  # noqa: E731
    return ThresholdComponents(thresholds=tensor(thr, np.float64), height=H, width=W,
                               threshold_index=tensor(j, np.int64), image=tensor(img, np.int64),
                               boxes=tensor(boxes, np.float32).reshape(-1, 4), areas=tensor(pixels, np.int64))


def largest_per_threshold(comps: ThresholdComponents) -> tuple[torch.Tensor, torch.Tensor]:
    """The largest component's box per (threshold, image): boxes ``(T, B, 4)`` and a bool
    ``(T, B)`` that is false where no pixel reaches the threshold (box then all zeros).
    Ties on pixel count: the box first in ``(y1, x1, y2, x2)`` order. Used by
    :func:`boxes_from_maps` (lessons 01-05), :func:`heuristic_boxes` and
    :func:`camlib.metrics.max_box_acc` (lesson 03)."""
    if bool((comps.areas < 0).any()):
        raise ValueError("these components were computed with areas=False; the largest needs areas=True")
    T, B = comps.n_thresholds, comps.n_images
    dev = comps.boxes.device
    cell = comps.threshold_index * B + comps.image
    best_area = torch.full((T * B,), -1, dtype=torch.int64, device=dev).scatter_reduce_(0, cell, comps.areas, "amax")
    top = comps.areas == best_area[cell]
    H1, W1 = comps.height + 1, comps.width + 1
    b = comps.boxes.long()
    order_key = ((b[:, 1] * W1 + b[:, 0]) * H1 + b[:, 3]) * W1 + b[:, 2]
    order_key = torch.where(top, order_key, torch.full_like(order_key, torch.iinfo(torch.int64).max))
    best_key = torch.full((T * B,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=dev)
    best_key.scatter_reduce_(0, cell, order_key, "amin")
    winner = top & (order_key == best_key[cell])
    out = torch.zeros((T * B, 4), dtype=comps.boxes.dtype, device=dev)
    out[cell[winner]] = comps.boxes[winner]
    found = torch.zeros(T * B, dtype=torch.bool, device=dev)
    found[cell] = True
    return out.view(T, B, 4), found.view(T, B)


def minmax_normalize(maps) -> torch.Tensor:
    """Each map scaled to [0, 1] by ``(m - min) / (max - min)``, float32 ``(B, H, W)`` (or
    ``(H, W)``): :func:`camlib.cam.normalize` (``"minmax"``, whose rule makes a constant map all
    zeros, as in Choe et al. 2020's code) after this module's map checks. Lesson 03."""
    m, single = as_maps(maps)
    out = cam.normalize(m, "minmax")
    return out[0] if single else out


# ----------------------------------------------------------------------------------------------
# the official several-boxes heuristic (PAPER.md, Table 3 paragraph)
# ----------------------------------------------------------------------------------------------
def heuristic_boxes(maps, thresholds=OFFICIAL_HEURISTIC_THRESHOLDS) -> torch.Tensor:
    """Several boxes per map, one per threshold on a 0-255 scale: ``(B, len(thresholds), 4)``.

    Our reconstruction of the official bbox generator's idea (not its code): each map is min-max
    scaled to 0..255, and for each threshold ``v`` the box of the largest 8-connected component of
    ``{scaled >= v}`` is taken -- ``v = 20`` gives a loose box around the whole response, 100 and
    110 tight boxes around its core. The official C++ tool also applies a distance transform,
    which we do not reproduce. Where a threshold keeps no pixel (a constant map, scaled to all
    zeros, at any threshold above 0) the box is ``(0, 0, 0, 0)``, as in :func:`boxes_from_maps`:
    the official tool gives no box there, and this one cannot match an object either.
    Paper section 3 (Table 3, "heuristics"); lesson 03.
    """
    m, single = as_maps(maps)
    vals = torch.as_tensor(thresholds, dtype=torch.float64)
    if vals.ndim != 1 or vals.numel() < 1 or not bool(((vals >= 0) & (vals <= 255)).all()):
        raise ValueError(f"thresholds must be a non-empty list of values in [0, 255], got {thresholds!r}")
    scaled = minmax_normalize(m) * 255.0
    B = m.shape[0]
    comps = components_at_thresholds(scaled, vals.to(m.device)[None].expand(B, -1))
    boxes, _ = largest_per_threshold(comps)  # (K, B, 4), all zeros where no pixel is kept
    boxes = boxes.transpose(0, 1)
    return boxes[0] if single else boxes


def heuristic_topk_predictions(class_maps, classes, boxes_per_class=(2, 2, 1),
                               thresholds=OFFICIAL_HEURISTIC_THRESHOLDS) -> tuple[torch.Tensor, torch.Tensor]:
    """Five (class, box) guesses per image for top-5 localization, the official way: two boxes
    for the top-1 class, two for the top-2 class, one for the top-3 class.

    ``class_maps``: ``(B, k, H, W)`` maps of the top-k predicted classes (best first);
    ``classes``: ``(B, k)`` those classes. Class ``r`` contributes the boxes of the first
    ``boxes_per_class[r]`` thresholds of :func:`heuristic_boxes` (the loose 20 first, then the
    tight 100, then 110). Returns ``pred_classes (B, P)`` and ``pred_boxes (B, P, 4)`` with
    ``P = sum(boxes_per_class)``, ready for :func:`camlib.metrics.localization_error`.
    Paper section 3 (Table 3); lesson 03.
    """
    if not isinstance(class_maps, torch.Tensor) or class_maps.ndim != 4:
        got = getattr(class_maps, "shape", type(class_maps))
        raise ValueError(f"class_maps must be a (B, k, H, W) tensor, got {got}")
    B, k, H, W = class_maps.shape
    if not isinstance(classes, torch.Tensor) or tuple(classes.shape) != (B, k):
        raise ValueError(f"classes must be a ({B}, {k}) tensor, got {getattr(classes, 'shape', type(classes))}")
    counts = [int(c) for c in boxes_per_class]
    if len(counts) > k or any(c < 0 or c > len(thresholds) for c in counts):
        raise ValueError(f"boxes_per_class {boxes_per_class!r} needs at most k={k} classes and at most "
                         f"{len(thresholds)} boxes each")
    boxes = heuristic_boxes(class_maps[:, :len(counts)].reshape(-1, H, W), thresholds)
    boxes = boxes.view(B, len(counts), len(thresholds), 4)
    pred_boxes = torch.cat([boxes[:, r, :c] for r, c in enumerate(counts)], 1)
    pred_classes = torch.cat([classes[:, r:r + 1].expand(B, c) for r, c in enumerate(counts)], 1)
    return pred_classes, pred_boxes
