"""Boxes from maps: the paper's rule, the official several-box heuristic, and every threshold's
connected components in one pass.

Conventions (CONTRIBUTING.md): maps are ``(B, H, W)`` float tensors (a single ``(H, W)`` map is
accepted where it says so); boxes are ``(x1, y1, x2, y2)`` floats in pixel-edge coordinates, so a
region covering columns 3..7 has ``x1 = 3, x2 = 8`` and ``torchvision.ops.box_iou`` applies.
Components are 8-connected (a pixel touches the 8 around it), as in the paper's code.

Which box is "the largest component" when two components have the same number of pixels: the one
whose box is first in ``(y1, x1, y2, x2)`` order. Two components tied on all five have the same
box, so the choice cannot change any score.

Introduced in lesson 01 (the paper's box rule) and lesson 03 (thresholds, MaxBoxAcc, heuristic).

How every threshold is done at once (:func:`components_at_thresholds`)
-----------------------------------------------------------------------
A per-threshold loop labels every map once per threshold. Instead, per map:

1. *Ascent basins* (one pass over the pixels): every pixel points to the pixel of largest
   ``(score, -raster index)`` among itself and its 8 neighbours; pointer jumping (about
   log2(path length) gathers) takes every pixel to the local maximum it climbs to, its basin's
   seed. Scores never drop along a path, so at any threshold ``t`` a basin's pixels ``>= t`` form
   one connected piece holding the seed, and every component of ``{map >= t}`` is a union of such
   pieces. Two pieces join exactly when some touching pixel pair across their border has both
   scores ``>= t``: the border's *pass* (highest lower-score of a touching pair) is ``>= t``.
   The same pass keeps, per basin, its column and row maxima (and, for areas, a histogram of how
   many thresholds each pixel reaches).
2. *Merge tree* (small): Kruskal on the basin graph, in order of decreasing pass, gives every
   component of every threshold as a tree node alive over an interval of thresholds (a basin
   from its seed's score down to its first merge; a merge from its pass down to the next). For
   CAM-like maps there are tens of basins per map, so this Python loop over basin pairs is cheap.
3. *Boxes*: a node's column/row profiles are maxima over its basins (contiguous in the tree's
   leaf order: range-maximum queries); its box at threshold ``t`` is where the prefix and suffix
   maxima of the profiles first reach ``t`` (a vectorized binary search per (node, threshold)).

The pixel pass is NumPy on the CPU (``backend="numpy"``) or torch tensor code on any device
(``backend="torch"``: the same steps, so a batch of maps on a GPU is processed there); steps 2-3
touch only per-basin data and run on the CPU. Cost: one pass over the pixels plus work
proportional to the number of components summed over thresholds, not to thresholds x pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import minimum_spanning_tree

__all__ = [
    "ThresholdComponents",
    "as_maps",
    "threshold_maps",
    "boxes_from_maps",
    "largest_component_boxes",
    "component_boxes",
    "boxes_to_masks",
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
    component search orders pixels by); thresholds are compared in float64. Lesson 01.
    """
    if isinstance(maps, np.ndarray):
        maps = torch.from_numpy(maps)
    if not isinstance(maps, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor or NumPy array, got {type(maps).__name__}")
    single = maps.ndim == 2
    if maps.ndim not in (2, 3):
        raise ValueError(f"{name} must have shape (B, H, W) or (H, W), got {tuple(maps.shape)}")
    if single:
        maps = maps[None]
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
    if isinstance(masks, np.ndarray):
        masks = torch.from_numpy(masks)
    if not isinstance(masks, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor or NumPy array, got {type(masks).__name__}")
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise ValueError(f"{name} must have shape (B, H, W) or (H, W), got {tuple(masks.shape)}")
    if masks.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor, got dtype {masks.dtype}")
    return masks


# ----------------------------------------------------------------------------------------------
# the paper's rule
# ----------------------------------------------------------------------------------------------
def threshold_maps(maps, threshold: float = 0.2, relative: bool = True) -> torch.Tensor:
    """The region the paper's rule keeps: ``map >= threshold * max(map)`` (``relative``) or
    ``map >= threshold``; bool ``(B, H, W)`` (or ``(H, W)`` for one map).

    A map whose maximum is ``<= 0`` has no positive evidence; with ``relative=True`` its region is
    empty (then :func:`boxes_from_maps` falls back to the whole image). Paper section 3; lesson 01.
    """
    m, single = as_maps(maps)
    thr = _relative_thresholds(m, threshold, relative)
    region = m.double() >= thr[:, None, None]
    if relative:
        region &= (m.amax(dim=(1, 2)) > 0)[:, None, None]
    return region[0] if single else region


def _relative_thresholds(m: torch.Tensor, threshold: float, relative: bool) -> torch.Tensor:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(threshold, bool) or not np.isfinite(value):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    threshold = value
    if relative and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"a relative threshold must lie in [0, 1], got {threshold}")
    if relative:
        return threshold * m.amax(dim=(1, 2)).double()
    return torch.full((m.shape[0],), float(threshold), dtype=torch.float64, device=m.device)


def boxes_from_maps(maps, threshold: float = 0.2, relative: bool = True, backend: str = "auto") -> torch.Tensor:
    """One box per map by the paper's rule: keep pixels ``>= threshold * max`` (``relative``) or
    ``>= threshold``, take the bounding box of the largest 8-connected component.

    Returns float ``(B, 4)`` (or ``(4,)`` for one ``(H, W)`` map) in pixel-edge coordinates.
    When the rule keeps no pixel -- a map whose maximum is ``<= 0`` with ``relative=True``, or no
    pixel reaching an absolute threshold -- the box is the whole image ``(0, 0, W, H)``, the
    uninformative guess; a constant positive map keeps every pixel and gets the whole image too.
    Never NaN. ``backend``: ``"numpy"`` labels each map with ``scipy.ndimage`` on the CPU,
    ``"torch"`` runs batched on the maps' device (:func:`components_at_thresholds` with one
    threshold), ``"auto"`` picks by device. Paper section 3; lesson 01.
    """
    m, single = as_maps(maps)
    thr = _relative_thresholds(m, threshold, relative)
    region = m.double() >= thr[:, None, None]
    if relative:  # max <= 0: nothing counts as evidence
        region &= (m.amax(dim=(1, 2)) > 0)[:, None, None]
    boxes = _largest_boxes(region, backend)
    return boxes[0] if single else boxes


def largest_component_boxes(masks, backend: str = "auto") -> torch.Tensor:
    """The box of the largest 8-connected component of each bool mask, ``(B, 4)`` float; an empty
    mask gets the whole image (as in :func:`boxes_from_maps`). Lesson 01."""
    return _largest_boxes(_as_masks(masks), backend)


def _largest_boxes(masks: torch.Tensor, backend: str) -> torch.Tensor:
    """Largest component's box per bool mask (ties: box order), the whole image where empty."""
    B, H, W = masks.shape
    backend = _pick_backend(backend, masks.device)
    whole = [0.0, 0.0, float(W), float(H)]
    if backend == "torch":
        comps = components_at_thresholds(masks.float(), torch.full((B, 1), 0.5, dtype=torch.float64),
                                         backend="torch")
        boxes, found = largest_per_threshold(comps)
        return torch.where(found[0][:, None], boxes[0], boxes.new_tensor(whole))
    out = np.tile(np.asarray(whole, dtype=np.float32), (B, 1))
    for b, mask in enumerate(masks.cpu().numpy()):
        lab, n = ndimage.label(mask, structure=_EIGHT)
        if n == 0:
            continue
        areas = np.bincount(lab.ravel(), minlength=n + 1)[1:]
        slices = ndimage.find_objects(lab)
        best = min(np.flatnonzero(areas == areas.max()),
                   key=lambda i: (slices[i][0].start, slices[i][1].start, slices[i][0].stop, slices[i][1].stop))
        ys, xs = slices[best]
        out[b] = (xs.start, ys.start, xs.stop, ys.stop)
    return torch.from_numpy(out).to(masks.device)


def _pick_backend(backend: str, device: torch.device) -> str:
    if backend not in ("auto", "numpy", "torch"):
        raise ValueError(f"backend must be 'auto', 'numpy' or 'torch', got {backend!r}")
    if backend == "auto":
        return "numpy" if device.type == "cpu" else "torch"
    return backend


def component_boxes(mask) -> tuple[torch.Tensor, torch.Tensor]:
    """Every 8-connected component of one bool mask ``(H, W)``: boxes ``(n, 4)`` float and pixel
    counts ``(n,)``, largest first (ties: box order ``(y1, x1, y2, x2)``). Lesson 03.

    Single-image helper for figures; uses ``scipy.ndimage.label`` on the CPU.
    """
    m = _as_masks(mask, "mask")
    if m.shape[0] != 1:
        raise ValueError(f"mask must be one (H, W) mask, got shape {tuple(mask.shape)}")
    arr = m[0].cpu().numpy()
    labels, n = ndimage.label(arr, structure=_EIGHT)
    if n == 0:
        return torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.int64)
    slices = ndimage.find_objects(labels)
    boxes = np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices], dtype=np.float32)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    order = np.lexsort((boxes[:, 2], boxes[:, 3], boxes[:, 0], boxes[:, 1], -areas))
    return torch.from_numpy(boxes[order]), torch.from_numpy(areas[order].astype(np.int64))


def boxes_to_masks(boxes, height: int, width: int) -> torch.Tensor:
    """Bool masks ``(B, H, W)`` that are true inside each pixel-edge box (pixels whose centres lie
    in it; integer boxes cover exactly their pixels). Lesson 01 (mask coverage of a box)."""
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
# every threshold's components at once
# ----------------------------------------------------------------------------------------------
@dataclass
class ThresholdComponents:
    """Every 8-connected component of ``{map >= t}`` for every threshold ``t``, flat.

    ``thresholds`` is ``(B, T)`` float64 (one row per map); component ``k`` lives at threshold
    index ``threshold_index[k]`` of map ``image[k]`` with box ``boxes[k]`` (pixel-edge, float) and
    ``areas[k]`` pixels (``-1`` when areas were not asked for). Components come grouped by image,
    images in order. Lesson 03.
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


class _NumpyOps:
    """The few array operations the pixel pass needs, on NumPy arrays (the fast CPU path)."""

    asarray = staticmethod(lambda t: t.detach().cpu().numpy())
    array = staticmethod(lambda a, like: a)
    full = staticmethod(lambda shape, value, like: np.full(shape, value, dtype=like.dtype))
    zeros_int64 = staticmethod(lambda n, like: np.zeros(n, dtype=np.int64))
    arange = staticmethod(lambda n, like: np.arange(n, dtype=np.int64))
    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)
    equal = staticmethod(np.array_equal)
    flatnonzero = staticmethod(np.flatnonzero)
    to_numpy = staticmethod(lambda a: a)
    int8 = staticmethod(lambda mask: mask.view(np.int8))
    int64 = staticmethod(lambda a: a.astype(np.int64))
    int32 = staticmethod(lambda a: a.astype(np.int32))
    take = staticmethod(np.take)

    @staticmethod
    def scatter_max(n, index, values):
        out = np.full(n, -np.inf, dtype=values.dtype)
        np.maximum.at(out, index, values)
        return out

    @staticmethod
    def bincount(index, n):
        return np.bincount(index, minlength=n)

    @staticmethod
    def clip(a, lo, hi):
        return np.clip(a, lo, hi)

    @staticmethod
    def searchsorted_rows(sorted_rows, values):  # per row: how many entries are <= value
        return np.stack([np.searchsorted(r, v, side="right") for r, v in zip(sorted_rows, values)])


class _TorchOps:
    """The same operations in torch: the path for CUDA (or any torch device)."""

    asarray = staticmethod(lambda t: t.detach())
    array = staticmethod(lambda a, like: torch.as_tensor(a, device=like.device))
    full = staticmethod(lambda shape, value, like: torch.full(shape, value, dtype=like.dtype, device=like.device))
    zeros_int64 = staticmethod(lambda n, like: torch.zeros(n, dtype=torch.int64, device=like.device))
    arange = staticmethod(lambda n, like: torch.arange(n, dtype=torch.int64, device=like.device))
    maximum = staticmethod(torch.maximum)
    minimum = staticmethod(torch.minimum)
    equal = staticmethod(torch.equal)
    to_numpy = staticmethod(lambda a: a.cpu().numpy())
    int8 = staticmethod(lambda mask: mask.to(torch.int8))
    int64 = staticmethod(lambda a: a.to(torch.int64))
    int32 = staticmethod(lambda a: a.to(torch.int32))
    take = staticmethod(lambda a, index: torch.take(a, index))

    @staticmethod
    def flatnonzero(a):
        return torch.nonzero(a.reshape(-1)).squeeze(1)

    @staticmethod
    def scatter_max(n, index, values):
        out = torch.full((n,), -float("inf"), dtype=values.dtype, device=values.device)
        return out.scatter_reduce_(0, index, values, "amax")

    @staticmethod
    def bincount(index, n):
        return torch.bincount(index, minlength=n)

    @staticmethod
    def clip(a, lo, hi):
        return torch.clamp(a, lo, hi)

    @staticmethod
    def searchsorted_rows(sorted_rows, values):
        return torch.searchsorted(sorted_rows.contiguous(), values.contiguous(), right=True)


def _ceil_float32(thr: np.ndarray) -> np.ndarray:
    """The smallest float32 >= each float64 threshold: for a float32 score ``s``,
    ``s >= t`` exactly when ``s >= _ceil_float32(t)``, so all comparisons can run in float32."""
    t32 = thr.astype(np.float32)
    low = t32.astype(np.float64) < thr
    t32[low] = np.nextafter(t32[low], np.float32(np.inf))
    return t32


def _levels(xp, s, thr32: np.ndarray):
    """How many thresholds each score reaches, ``#{j : t_j <= s}``, exactly; ``s`` (B, H, W),
    ``thr32`` (B, T) float32 (see :func:`_ceil_float32`). Few thresholds: count comparisons.
    A shared grid: guess by linear interpolation, then step until exact (1-2 steps when the grid
    is near-uniform, else binary search)."""
    B, T = thr32.shape
    sf = s.reshape(B, -1)
    if T <= 8:
        tx = xp.array(thr32, sf)
        lev = xp.int8(sf >= tx[:, 0:1])
        for j in range(1, T):
            lev = lev + xp.int8(sf >= tx[:, j:j + 1])
        return xp.int64(lev).reshape(-1)
    if not (thr32 == thr32[0:1]).all():
        return xp.int64(xp.searchsorted_rows(xp.array(thr32, sf), sf)).reshape(-1)
    t = thr32[0]
    lo, hi = float(t[0]), float(t[-1])
    if not np.isfinite(hi - lo):  # infinite end points: no useful linear guess
        return xp.int64(xp.searchsorted_rows(xp.array(thr32, sf), sf)).reshape(-1)
    scale = np.float32((T - 1) / (hi - lo)) if hi > lo else np.float32(0)
    g = xp.int64(xp.clip((sf - np.float32(lo)) * scale + np.float32(1.0), 0.0, float(T))).reshape(-1)
    ext = xp.array(np.concatenate([[-np.inf], t, [np.inf]]).astype(np.float32), sf)  # level k: ext[k] <= s < ext[k+1]
    flat = sf.reshape(-1)
    for _ in range(3):
        up = xp.flatnonzero(xp.take(ext, g + 1) <= flat)
        down = xp.flatnonzero(xp.take(ext, g) > flat)
        if up.shape[0] == 0 and down.shape[0] == 0:
            return g
        g[up] += 1
        g[down] -= 1
    return xp.int64(xp.searchsorted_rows(xp.array(thr32, sf), sf)).reshape(-1)


def _pixel_pass(xp, s, thr32: np.ndarray, want_areas: bool) -> dict:
    """One pass over the pixels of float32 maps ``s`` (B, H, W): ascent basins and what the
    per-threshold work needs about them, as NumPy arrays (small: per basin and per basin pair)."""
    B, H, W = s.shape
    N = B * H * W
    # 3x3 argmax, ties to the lowest raster index, so that pointers follow the strict order
    # (score, -index); separable: along rows, then along columns. Masks are made exclusive and
    # combined in int8 arithmetic (cheaper than chains of where).
    pad = xp.full((B, H + 2, W + 2), -np.inf, s)
    pad[:, 1:-1, 1:-1] = s
    left, mid, right = pad[:, :, 0:W], pad[:, :, 1:W + 1], pad[:, :, 2:W + 2]
    hv = xp.maximum(xp.maximum(left, mid), right)
    el = left == hv
    em = (mid == hv) & ~el
    hdx = 1 - xp.int8(em) - 2 * xp.int8(el)  # -1, 0, +1: which column holds the row's max
    up, cen, down = hv[:, 0:H], hv[:, 1:H + 1], hv[:, 2:H + 2]
    vv = xp.maximum(xp.maximum(up, cen), down)
    eu = up == vv
    ec = (cen == vv) & ~eu
    ed = ~(eu | ec)
    eu8, ec8, ed8 = xp.int8(eu), xp.int8(ec), xp.int8(ed)
    dx = eu8 * hdx[:, 0:H] + ec8 * hdx[:, 1:H + 1] + ed8 * hdx[:, 2:H + 2]
    dy = ed8 - eu8
    flat = xp.arange(N, s)
    root = flat + (xp.int32(dy) * W + dx).reshape(-1)
    while True:  # pointer jumping: after k rounds each pointer skips 2**k steps uphill
        nxt = root[root]
        if xp.equal(nxt, root):
            break
        root = nxt
    seeds = xp.flatnonzero(root == flat)
    nb = int(seeds.shape[0])
    label = xp.zeros_int64(N, s)
    label[seeds] = xp.arange(nb, s)
    basin = label[root].reshape(B, H, W)  # basins numbered in raster order of their seeds
    colmax = xp.scatter_max(nb * W, (basin * W + xp.arange(W, s)).reshape(-1), s.reshape(-1))
    rowmax = xp.scatter_max(nb * H, (basin * H + xp.arange(H, s).reshape(H, 1)).reshape(-1), s.reshape(-1))

    # basin borders: touching pixel pairs (8-neighbourhood) in different basins, found on the
    # flattened image with offsets 1 (right), W (down), W+1 (down-right), W-1 (down-left)
    HW = H * W
    b2, s2 = basin.reshape(B, HW), s.reshape(B, HW)
    x_of = np.arange(HW) % W
    us, vs, ps = [], [], []
    for d, valid in ((1, x_of != W - 1), (W, None), (W + 1, x_of != W - 1), (W - 1, x_of != 0)):
        if d >= HW or d == 0:
            continue
        differ = b2[:, :HW - d] != b2[:, d:]
        if valid is not None:
            differ &= xp.array(valid[:HW - d], b2)
        k = xp.flatnonzero(differ)
        if k.shape[0] == 0:
            continue
        i = (k // (HW - d)) * HW + k % (HW - d)  # flat index of the first pixel of each pair
        ba, bc = xp.take(b2, i), xp.take(b2, i + d)
        us.append(xp.to_numpy(xp.minimum(ba, bc)))
        vs.append(xp.to_numpy(xp.maximum(ba, bc)))
        ps.append(xp.to_numpy(xp.minimum(xp.take(s2, i), xp.take(s2, i + d))))
    out = dict(nb=nb, seed_img=xp.to_numpy(seeds // (H * W)), seed_score=xp.to_numpy(xp.take(s, seeds)),
               colmax=xp.to_numpy(colmax).reshape(nb, W), rowmax=xp.to_numpy(rowmax).reshape(nb, H),
               u=np.concatenate(us) if us else np.zeros(0, np.int64),
               v=np.concatenate(vs) if vs else np.zeros(0, np.int64),
               p=np.concatenate(ps) if ps else np.zeros(0, np.float32))
    if want_areas:
        T = thr32.shape[1]
        level = _levels(xp, s, thr32)
        out["hist"] = xp.to_numpy(xp.bincount(basin.reshape(-1) * (T + 1) + level, nb * (T + 1))).reshape(nb, T + 1)
    return out


def _basin_pairs(nb: int, seed_img: np.ndarray, u: np.ndarray, v: np.ndarray, p: np.ndarray):
    """Each touching basin pair once, with its highest pass (border pixel pairs come many times)."""
    if u.size == 0:
        return u, v, p
    n_img = int(seed_img.max()) + 1
    per = np.bincount(seed_img, minlength=n_img)
    if int((per.astype(np.int64) ** 2).sum()) <= 4 * u.size + 4096:  # a dense table per image is cheap
        first = np.cumsum(per) - per
        cell0 = np.cumsum(per.astype(np.int64) ** 2) - per.astype(np.int64) ** 2
        im = seed_img[u]
        cell = cell0[im] + (u - first[im]) * per[im] + (v - first[im])
        best = np.full(int(cell0[-1] + per[-1].astype(np.int64) ** 2), -np.inf, dtype=p.dtype)
        np.maximum.at(best, cell, p)
        hit = np.flatnonzero(best > -np.inf)
        im = np.searchsorted(cell0, hit, side="right") - 1
        local = hit - cell0[im]
        return first[im] + local // per[im], first[im] + local % per[im], best[hit]
    key = u * nb + v
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    best = np.maximum.reduceat(p[order], starts)
    key = key[starts]
    return key // nb, key % nb, best


def _merge_tree(nb: int, u: np.ndarray, v: np.ndarray, p: np.ndarray):
    """Kruskal on the basin graph: basins merge in order of decreasing border pass.

    Nodes are the ``nb`` basins, then the ``K`` merges in creation order. Returns the merge level
    and the two children of each merge, each node's parent (-1 for roots) and height (0 for a
    basin), and a leaf order in which every node's basins are contiguous (``start``/``stop`` per
    node, ``pos`` per basin)."""
    order = np.argsort(-p.astype(np.float64), kind="stable")
    if u.size > nb:  # keep a maximum spanning forest: same components at every threshold
        rank = np.empty(u.size, dtype=np.float64)
        rank[order] = np.arange(1, u.size + 1)  # 1 = highest pass; exact, ties broken by order
        forest = minimum_spanning_tree(coo_matrix((rank, (u, v)), shape=(nb, nb)).tocsr()).tocoo()
        keep = np.sort(forest.data.astype(np.int64) - 1)
        order = order[keep]
    uf = list(range(nb))         # union-find over basins
    node = list(range(nb))       # current tree node of each union-find root
    head = list(range(nb))       # leaf linked lists: every node's leaves stay contiguous
    tail = list(range(nb))
    nxt = [-1] * nb
    size = [1] * nb
    height = [0] * nb
    levels, kids, heads, sizes = [], [], [], []
    for a, b, lvl in zip(u[order].tolist(), v[order].tolist(), p[order].tolist()):
        while uf[a] != a:
            uf[a] = uf[uf[a]]
            a = uf[a]
        while uf[b] != b:
            uf[b] = uf[uf[b]]
            b = uf[b]
        if a == b:
            continue
        if size[a] < size[b]:
            a, b = b, a
        ka, kb = node[a], node[b]
        kids.append((ka, kb))
        height.append(1 + max(height[ka], height[kb]))
        levels.append(lvl)
        uf[b] = a
        nxt[tail[a]] = head[b]
        tail[a] = tail[b]
        size[a] += size[b]
        node[a] = nb + len(levels) - 1
        heads.append(head[a])
        sizes.append(size[a])
    K = len(levels)
    kid = np.asarray(kids, dtype=np.int64).reshape(K, 2)
    parent = np.full(nb + K, -1, dtype=np.int64)
    parent[kid[:, 0]] = np.arange(nb, nb + K)
    parent[kid[:, 1]] = np.arange(nb, nb + K)
    pos = np.empty(nb, dtype=np.int64)
    at = 0
    for r in range(nb):  # walk each root's leaf list
        if uf[r] == r:
            leaf = head[r]
            while leaf != -1:
                pos[leaf] = at
                at += 1
                leaf = nxt[leaf]
    start = np.concatenate([pos, pos[np.asarray(heads, dtype=np.int64)]])
    stop = start + np.concatenate([np.ones(nb, np.int64), np.asarray(sizes, dtype=np.int64)])
    return (np.asarray(levels, dtype=np.float32), kid, parent, np.asarray(height, dtype=np.int64),
            start, stop, pos)


def _count_below(sorted_rows: np.ndarray, row: np.ndarray, target: np.ndarray, slice_size: int = 1 << 20) -> np.ndarray:
    """Vectorized branch-free binary search: per query, how many entries of the non-decreasing
    ``sorted_rows[row]`` are ``< target`` (queries taken ``slice_size`` at a time)."""
    n, w = sorted_rows.shape
    wp = 1 << int(w).bit_length()  # > w: rows padded with +inf to a power of two
    padded = np.full((n, wp), np.inf, dtype=sorted_rows.dtype)
    padded[:, :w] = sorted_rows
    flat = padded.reshape(-1)
    out = np.empty(target.shape, dtype=np.int64)
    for a in range(0, target.shape[0], slice_size):
        base = row[a:a + slice_size] * wp
        at = base.copy()  # base + how many entries are known to be < target
        tgt = target[a:a + slice_size]
        step = wp >> 1
        while step:
            at += step * (flat[at + (step - 1)] < tgt)
            step >>= 1
        out[a:a + slice_size] = at - base
    return out


def _node_phase(px: dict, thr32: np.ndarray, H: int, W: int, want_areas: bool):
    """From one group of maps' basins to every threshold's components (NumPy, CPU): threshold
    index, image (within the group), box and area of each."""
    nb = px["nb"]
    T = thr32.shape[1]
    u, v, p = _basin_pairs(nb, px["seed_img"], px["u"], px["v"], px["p"])
    levels, kid, parent, height, start, stop, pos = _merge_tree(nb, u, v, p)
    n_nodes = parent.shape[0]
    top = np.concatenate([px["seed_score"], levels])  # node n is a component for t <= top[n] ...
    ptop = np.where(parent >= 0, top[np.maximum(parent, 0)], -np.inf).astype(np.float32)  # ... and t > ptop
    leaf_of_pos = np.empty(nb, dtype=np.int64)
    leaf_of_pos[pos] = np.arange(nb)
    img = px["seed_img"][leaf_of_pos[start]]

    # threshold-index interval [lo, hi) in which each node is a component
    if (thr32 == thr32[0:1]).all():
        hi = np.searchsorted(thr32[0], top, side="right")
        lo = np.searchsorted(thr32[0], ptop, side="right")
    else:
        rows = thr32[img]
        hi = (rows <= top[:, None]).sum(1)
        lo = (rows <= ptop[:, None]).sum(1)
    lo = np.where(parent >= 0, lo, 0)  # a root stays a component down to the lowest threshold
    count = hi - lo
    live = np.flatnonzero(count)             # nodes that are a component at some threshold,
    live = live[np.argsort(img[live], kind="stable")]  # grouped by image
    count = count[live]
    M = int(count.sum())
    entry_node = np.repeat(np.arange(live.shape[0]), count)
    first = np.cumsum(count) - count
    j = lo[live][entry_node] + (np.arange(M) - first[entry_node])
    t = thr32[img[live][entry_node], j]

    # column/row profiles of every node: maxima over its children, one tree height at a time
    prof = np.empty((n_nodes, W + H), dtype=np.float32)
    prof[:nb, :W], prof[:nb, W:] = px["colmax"], px["rowmax"]
    merges = np.argsort(height[nb:], kind="stable") + nb
    edges = np.flatnonzero(np.diff(height[merges])) + 1
    for group in np.split(merges, edges) if merges.size else ():
        k = kid[group - nb]
        prof[group] = np.maximum(prof[k[:, 0]], prof[k[:, 1]])
    prof = prof[live]
    colp, rowp = prof[:, :W], prof[:, W:]
    # the four box sides at once: x1 = columns left of the first column reaching t, etc.
    n_live, wpad = live.shape[0], max(W, H)
    side = np.full((4, n_live, wpad), np.inf, dtype=np.float32)
    side[0, :, :W] = np.maximum.accumulate(colp, 1)
    side[1, :, :H] = np.maximum.accumulate(rowp, 1)
    side[2, :, :W] = np.maximum.accumulate(colp[:, ::-1], 1)
    side[3, :, :H] = np.maximum.accumulate(rowp[:, ::-1], 1)
    rows4 = (np.arange(4)[:, None] * n_live + entry_node[None]).reshape(-1)
    below = _count_below(side.reshape(4 * n_live, wpad), rows4, np.tile(t, 4)).reshape(4, M)
    boxes = np.stack([below[0], below[1], W - below[2], H - below[3]], 1).astype(np.float32)
    if want_areas:  # pixels >= t_j of a node: prefix sums over the leaf order, per threshold
        above = px["hist"][leaf_of_pos][:, ::-1].cumsum(1)[:, ::-1][:, 1:]  # (nb, T)
        q = np.zeros((nb + 1, T), dtype=np.int64)
        np.cumsum(above, axis=0, out=q[1:])
        n = live[entry_node]
        areas = q[stop[n], j] - q[start[n], j]
    else:
        areas = np.full(M, -1, dtype=np.int64)
    return j, img[live][entry_node], boxes, areas


def _components_chunk(xp, s, thr32: np.ndarray, want_areas: bool, budget: int = 1 << 23):
    """Components of every threshold for a chunk of maps (NumPy arrays). The per-basin work is
    done for groups of maps small enough that its arrays stay within ~``budget`` numbers (noisy
    maps have thousands of basins)."""
    B, H, W = s.shape
    T = thr32.shape[1]
    px = _pixel_pass(xp, s, thr32, want_areas)
    per_img = np.bincount(px["seed_img"], minlength=B)
    cost = per_img * 2 * (W + H + 4 * max(W, H) + (T if want_areas else 0))
    first = np.concatenate([[0], np.cumsum(per_img)])
    out, b0 = [], 0
    while b0 < B:
        b1 = b0 + 1
        while b1 < B and cost[b0:b1 + 1].sum() <= budget:
            b1 += 1
        lo, hi = first[b0], first[b1]
        keep = (px["u"] >= lo) & (px["u"] < hi)
        sub = dict(nb=int(hi - lo), seed_img=px["seed_img"][lo:hi] - b0, seed_score=px["seed_score"][lo:hi],
                   colmax=px["colmax"][lo:hi], rowmax=px["rowmax"][lo:hi],
                   u=px["u"][keep] - lo, v=px["v"][keep] - lo, p=px["p"][keep])
        if want_areas:
            sub["hist"] = px["hist"][lo:hi]
        j, img, boxes, areas = _node_phase(sub, thr32[b0:b1], H, W, want_areas)
        out.append((j, img + b0, boxes, areas))
        b0 = b1
    return tuple(np.concatenate([o[k] for o in out]) for k in range(4))


def components_at_thresholds(maps, thresholds, *, normalize: bool = False, areas: bool = True,
                             backend: str = "auto", chunk_pixels: int = 1 << 19) -> ThresholdComponents:
    """Every 8-connected component of ``{map >= t}`` for every threshold ``t``, for every map, in
    one pass per map (no loop over thresholds; the module docstring explains the method).

    ``maps``: ``(B, H, W)``; ``thresholds``: ascending, ``(T,)`` shared or ``(B, T)`` per map,
    compared as ``float64(map) >= t``; ``normalize``: min-max normalize each map first (a constant
    map becomes all zeros, as in Choe et al.'s code); ``areas``: also count pixels (needed to pick
    the largest component; skip it when every component counts); ``backend``: ``"numpy"`` (the
    fast CPU path), ``"torch"`` (tensor ops on the maps' device, the GPU path) or ``"auto"``
    (NumPy for CPU tensors, torch otherwise). The per-basin merge (Kruskal over the few basin
    borders) always runs on the CPU. Maps are processed in chunks of ~``chunk_pixels`` pixels.
    Lesson 03.
    """
    m, _ = as_maps(maps)
    B, H, W = m.shape
    thr = torch.as_tensor(thresholds, dtype=torch.float64).detach().cpu().numpy()
    if thr.ndim == 1:
        thr = np.broadcast_to(thr[None], (B, thr.shape[0]))
    if thr.ndim != 2 or thr.shape[0] != B or thr.shape[1] < 1:
        raise ValueError(f"thresholds must be (T,) or (B, T) with B={B}, T >= 1; got {tuple(thr.shape)}")
    if np.isnan(thr).any():
        raise ValueError("thresholds must not be NaN")
    if (np.diff(thr, axis=1) < 0).any():
        raise ValueError("thresholds must be in ascending order")
    xp = _NumpyOps if _pick_backend(backend, m.device) == "numpy" else _TorchOps
    thr = np.array(thr, dtype=np.float64, order="C", copy=True)
    thr32 = _ceil_float32(thr)
    per = max(1, int(chunk_pixels) // (H * W))
    parts = []
    for i in range(0, B, per):  # chunks keep the pixel pass in cache
        chunk = _minmax(m[i:i + per]) if normalize else m[i:i + per]
        parts.append(_components_chunk(xp, xp.asarray(chunk), thr32[i:i + per], areas))
    dev = m.device
    cat = lambda k, off=False: torch.from_numpy(np.concatenate(  # noqa: E731
        [p[k] + (i * per if off else 0) for i, p in enumerate(parts)])).to(dev)
    return ThresholdComponents(thresholds=torch.from_numpy(thr.copy()).to(dev), height=H, width=W,
                               threshold_index=cat(0), image=cat(1, True), boxes=cat(2), areas=cat(3))


def largest_per_threshold(comps: ThresholdComponents) -> tuple[torch.Tensor, torch.Tensor]:
    """The largest component's box per (threshold, image): boxes ``(T, B, 4)`` and a bool
    ``(T, B)`` that is false where no pixel reaches the threshold (box then all zeros).
    Ties on pixel count: the box first in ``(y1, x1, y2, x2)`` order. Lesson 03."""
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
    """Each map scaled to [0, 1] by ``(m - min) / (max - min)`` (float32); a constant map becomes all
    zeros (Choe et al. 2020's convention). Lesson 03."""
    m, single = as_maps(maps)
    out = _minmax(m)
    return out[0] if single else out


def _minmax(m: torch.Tensor) -> torch.Tensor:
    lo = m.amin(dim=(1, 2), keepdim=True)
    hi = m.amax(dim=(1, 2), keepdim=True)
    span = hi - lo
    flat = span <= 0
    return (m - lo) / torch.where(flat, torch.ones_like(span), span) * (~flat)


# ----------------------------------------------------------------------------------------------
# the official several-boxes heuristic (PAPER.md, Table 3 paragraph)
# ----------------------------------------------------------------------------------------------
def heuristic_boxes(maps, thresholds=OFFICIAL_HEURISTIC_THRESHOLDS) -> torch.Tensor:
    """Several boxes per map, one per threshold on a 0-255 scale: ``(B, len(thresholds), 4)``.

    Our reconstruction of the official bbox generator's idea (not its code): each map is min-max
    scaled to 0..255, and for each threshold ``v`` the box of the largest 8-connected component of
    ``{scaled >= v}`` is taken -- ``v = 20`` gives a loose box around the whole response, 100 and
    110 tight boxes around its core. The official C++ tool also applies a distance transform,
    which we do not reproduce. A constant map gets the whole image at every threshold.
    Paper section 3 (Table 3, "heuristics"); lesson 03.
    """
    m, single = as_maps(maps)
    vals = torch.as_tensor(thresholds, dtype=torch.float64)
    if vals.ndim != 1 or vals.numel() < 1 or not bool(((vals >= 0) & (vals <= 255)).all()):
        raise ValueError(f"thresholds must be a non-empty list of values in [0, 255], got {thresholds!r}")
    scaled = minmax_normalize(m) * 255.0
    B, H, W = m.shape
    comps = components_at_thresholds(scaled, vals.to(m.device)[None].expand(B, -1))
    boxes, found = largest_per_threshold(comps)  # (K, B, 4)
    whole = torch.tensor([0.0, 0.0, W, H], device=boxes.device)
    boxes = torch.where(found[..., None], boxes, whole).transpose(0, 1)
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
