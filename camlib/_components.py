"""Every threshold's 8-connected components in one pass per map: the fast algorithm behind
:func:`camlib.localize.components_at_thresholds`.

Private: call it through ``camlib.localize``, whose :func:`~camlib.localize.components_per_threshold`
is the plain definition (one ``scipy.ndimage.label`` per map and threshold) that this module must
match component for component (``tests/test_localize.py`` checks it on maps built to be hard:
noise, plateaus, ties with thresholds, holes, constant maps). It earns its place on real datasets:
its cost hardly grows with the number of thresholds (benchmarks/README.md: 1.5x from 100 to 1,000
thresholds, where a per-threshold loop grows 6-8x).

Method
------
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

The pixel pass is NumPy on the CPU (``_NumpyOps``) or torch tensor code on any device
(``_TorchOps``: the same steps through the same few operations, so a batch of maps on a GPU is
processed there); steps 2-3 touch only per-basin data and run on the CPU with NumPy. Cost: one
pass over the pixels plus work proportional to the number of components summed over thresholds,
not to thresholds x pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import minimum_spanning_tree

from . import cam


def every_threshold(maps: torch.Tensor, thresholds: np.ndarray, *, backend: str, normalize: bool,
                    areas: bool, chunk_pixels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Components of ``{map >= t}`` for every threshold of every map, as flat NumPy arrays
    ``(threshold_index, image, boxes (M, 4) float32, areas)`` grouped by image (areas ``-1`` when
    not asked for).

    ``maps``: float32 ``(B, H, W)``, already checked; ``thresholds``: float64 ``(B, T)``, ascending;
    ``backend``: ``"numpy"`` or ``"torch"`` (the pixel pass on the maps' device); ``normalize``:
    min-max normalize each map first (:func:`camlib.cam.normalize`); maps are taken
    ~``chunk_pixels`` pixels at a time so that the pixel pass stays in cache.
    """
    xp = _NumpyOps if backend == "numpy" else _TorchOps
    B, H, W = maps.shape
    thr32 = _ceil_float32(thresholds)
    per = max(1, int(chunk_pixels) // (H * W))
    parts = []
    for i in range(0, B, per):
        chunk = cam.normalize(maps[i:i + per], "minmax") if normalize else maps[i:i + per]
        j, img, boxes, count = _components_chunk(xp, xp.asarray(chunk), thr32[i:i + per], areas)
        parts.append((j, img + i, boxes, count))
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(4))


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
    """Components of every threshold for a chunk of maps (``xp`` arrays). The per-basin work is
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

