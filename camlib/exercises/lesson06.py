"""Lesson 06's exercises: class-specific units (the paper's Sec. 5).

* :func:`check_rank_units` -- class c's top-k units by their signed weight (:func:`camlib.units.rank_units`);
* :func:`check_top_units_share` -- how much of class c's score its top-k units give, per image;
* :func:`check_dissection_iou` -- a unit's IoU with an object mask over a dataset, its region set by
  one dataset-wide quantile of its activations (network dissection, Bau et al. 2017).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .. import units
from ._engine import Spec, gen, randint, random_features, run, _as_indices, _as_number

# ------------------------------------------------------------------------------------ ranking


def _ref_rank_units(weight: torch.Tensor, c: int, k: int) -> torch.Tensor:
    return units.rank_units(weight, c, k=k)


def check_rank_units(fn: Callable[[torch.Tensor, int, int], Any]) -> None:
    """Check ``fn(weight (C, K), c, k) -> (k,)`` the indices of class c's top-k units, by weight, descending.

    Lesson 06 (the paper's Sec. 5): ``w_k^c`` ranks the units by their importance for class c
    (:func:`camlib.units.rank_units`: the signed weight, largest first).
    """
    run(_rank_units_spec(), fn)


def _rank_units_spec(seed: int = 601) -> Spec:
    g = gen(seed)
    trials = []
    for _ in range(4):
        n_classes, n_units = randint(g, 5, 9), randint(g, 12, 30)
        weight = torch.randn(n_classes, n_units, generator=g)
        trials.append((weight, randint(g, 1, n_classes - 1), randint(g, 3, 5)))

    return Spec("check_rank_units", ("weight", "c", "k"), trials, _ref_rank_units, (
        ("sorted in ascending order: the most important unit (largest weight) comes first",
         lambda w, c, k: torch.argsort(w[c])[:k]),
        ("took the k smallest weights: rank by weight, descending", lambda w, c, k: torch.argsort(w[c])[:k].flip(0)),
        ("ranked by |weight|: a large negative weight argues *against* the class; rank by the signed weight",
         lambda w, c, k: torch.argsort(w[c].abs(), descending=True)[:k]),
        ("ranked column weight[:, c] (one unit's weights over the classes): class c's weights are row weight[c]",
         lambda w, c, k: torch.argsort(w[:, c], descending=True)[:k]),
        ("returned the weights themselves: return the unit indices (argsort or topk(...).indices)",
         lambda w, c, k: torch.sort(w[c], descending=True).values[:k]),
        ("found the right units but not in order: sort them by weight, descending",
         lambda w, c, k: torch.sort(torch.argsort(w[c], descending=True)[:k]).values),
    ), convert=_as_indices, rtol=0, atol=0)


# -------------------------------------------------------------- the share of the score of the top units


def _share(features: torch.Tensor, weight: torch.Tensor, c: int, k: int, *, rank: str = "weight",
           pool: str = "mean", whole: str = "score", divide: bool = True, rest: bool = False) -> torch.Tensor:
    f = features.double()
    F = {"max": f.amax, "sum": f.sum}.get(pool, f.mean)(dim=(2, 3))        # (N, K)
    w = weight.double()[c]                                                 # (K,)
    contrib = F * w                                                        # (N, K): w_k^c F_k
    if rank == "abs":
        top = torch.argsort(w.abs(), descending=True)[:k]
        part = contrib[:, top].sum(1)
    elif rank == "contribution":                                           # each image's own top k
        part = contrib.topk(k, dim=1).values.sum(1)
    else:
        part = contrib[:, units.rank_units(weight, c, k=k)].sum(1)
    total = contrib.clamp_min(0).sum(1) if whole == "positive" else contrib.sum(1)
    if not divide:
        return part
    share = part / total
    return 1 - share if rest else share


def _ref_top_units_share(features: torch.Tensor, weight: torch.Tensor, c: int, k: int) -> torch.Tensor:
    return _share(features, weight, c, k)


def check_top_units_share(fn: Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor]) -> None:
    """Check ``fn(features (N, K, h, w), weight (C, K), c, k) -> (N,)``: for each image, the share of class
    c's score ``S_c = sum_k w_k^c F_k`` (``F_k`` the GAP of unit k's map, no bias) that class c's top-k
    units (by signed weight, :func:`camlib.units.rank_units`) give: ``sum_{k in top} w_k^c F_k / S_c``.

    Lesson 06 (the paper's Sec. 5): how much of the class's evidence its top units carry.
    """
    run(_top_units_share_spec(), fn)


def _top_units_share_spec(seed: int = 602) -> Spec:
    g = gen(seed)
    trials = []
    while len(trials) < 4:
        b, K, C = randint(g, 3, 6), randint(g, 10, 20), randint(g, 4, 8)
        h = randint(g, 3, 6)
        w = h + randint(g, 1, 3)
        features = random_features(g, b, K, h, w)
        # sparse, peaked maps: a unit's max is far from its mean, as in a real last layer
        features = features * (torch.rand(b, K, h, w, generator=g) < 0.4)
        weight = torch.randn(C, K, generator=g)
        c, k = randint(g, 0, C - 1), randint(g, 2, 4)
        pick = torch.randperm(K, generator=g)
        weight[c, pick[:k + 1]] += 1.5                                   # a few clearly positive units
        weight[c, pick[k + 1]] = -2.5 - float(torch.rand(1, generator=g))   # and one strongly negative
        S = (features.double().mean(dim=(2, 3)) * weight.double()[c]).sum(1)
        if float(S.min()) < 0.3:
            continue                                                     # a share of a score near 0 is noise
        trials.append((features, weight, c, k))

    return Spec("check_top_units_share", ("features", "weight", "c", "k"), trials, _ref_top_units_share, (
        ("ranked the units by |weight|: a unit with a large negative weight is not one of the class's top units; "
         "rank by the signed weight", lambda *a: _share(*a, rank="abs")),
        ("took each image's k largest contributions w_k^c F_k: the top units are fixed by the weights alone, the "
         "same k units for every image", lambda *a: _share(*a, rank="contribution")),
        ("divided by the sum of the positive contributions only: S_c is the whole sum, negative contributions "
         "included", lambda *a: _share(*a, whole="positive")),
        ("pooled with max: F_k is the global *average* of unit k's map (with a GAP head the score is made of "
         "averages)", lambda *a: _share(*a, pool="max")),
        ("returned the top units' part of the score: divide it by the whole score S_c", lambda *a: _share(*a, divide=False)),
        ("returned the top units' part of the score (with sums over the map): divide it by the whole score S_c",
         lambda *a: _share(*a, divide=False, pool="sum")),
        ("returned the share of the *other* units: the share asked for is the top units' own",
         lambda *a: _share(*a, rest=True)),
    ), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------- network dissection


def _dissection_iou(acts: torch.Tensor, masks: torch.Tensor, top: float, *, per_image: bool = False,
                    mean_of_images: bool = False, level: str = "top") -> torch.Tensor:
    a = acts.double()
    q = 1 - top if level == "top" else top
    if per_image:
        thr = torch.quantile(a.flatten(1), q, dim=1).view(-1, 1, 1)
    else:
        thr = torch.quantile(a.flatten(), q)
    region = a > thr
    inter = (region & masks).flatten(1).sum(1).double()
    union = (region | masks).flatten(1).sum(1).double()
    if mean_of_images:
        return (inter / union.clamp_min(1)).mean()
    return inter.sum() / union.sum()


def _ref_dissection_iou(acts: torch.Tensor, masks: torch.Tensor, top: float) -> torch.Tensor:
    return _dissection_iou(acts, masks, top)


def check_dissection_iou(fn: Callable[[torch.Tensor, torch.Tensor, float], float]) -> None:
    """Check ``fn(acts (N, H, W), masks (N, H, W) bool, top) -> float``: one unit's IoU with a concept's
    masks over a whole dataset, as in network dissection: the unit's region is where its activation is
    above ``T``, the ``1 - top`` quantile of *all* its activations in the dataset (one threshold for the
    unit, not one per image), and the IoU is ``sum_i |region_i & mask_i| / sum_i |region_i | mask_i|``.

    Lesson 06 (a unit's region measured against an object's, across a dataset).
    """
    run(_dissection_iou_spec(), fn)


def _dissection_trial(g: torch.Generator) -> tuple:
    n, H = randint(g, 6, 9), randint(g, 28, 36)
    W = H + randint(g, 4, 10)
    masks = torch.zeros(n, H, W, dtype=torch.bool)
    acts = torch.empty(n, H, W)
    yy, xx = torch.arange(H, dtype=torch.float32)[:, None], torch.arange(W, dtype=torch.float32)[None]
    for i in range(n):
        mh, mw = randint(g, H // 4, H // 2), randint(g, W // 4, W // 2)
        y0, x0 = randint(g, 0, H - mh), randint(g, 0, W - mw)
        masks[i, y0:y0 + mh, x0:x0 + mw] = True
        # the unit fires near the object (off-centre a little), at a strength that varies a lot between images
        cy = y0 + mh / 2 + (float(torch.rand(1, generator=g)) - 0.5) * mh
        cx = x0 + mw / 2 + (float(torch.rand(1, generator=g)) - 0.5) * mw
        blob = torch.exp(-((yy - cy) ** 2 / (0.5 * mh ** 2) + (xx - cx) ** 2 / (0.5 * mw ** 2)))
        strength = float(torch.exp((torch.rand(1, generator=g) - 0.5) * 4))          # x0.14 .. x7.4
        acts[i] = strength * (blob + 0.25 * torch.rand(H, W, generator=g))
    top = (0.04, 0.06, 0.08)[randint(g, 0, 2)]
    return acts, masks, top


def _dissection_iou_spec(seed: int = 603) -> Spec:
    g = gen(seed)
    trials = [_dissection_trial(g) for _ in range(4)]
    return Spec("check_dissection_iou", ("acts", "masks", "top"), trials, _ref_dissection_iou, (
        ("set a threshold per image: network dissection gives the unit *one* threshold, the (1 - top) quantile of "
         "its activations over the whole dataset, so a weak image may have no region at all",
         lambda *a: _dissection_iou(*a, per_image=True)),
        ("averaged the per-image IoUs: dissection's IoU is one ratio over the dataset, the summed intersections "
         "divided by the summed unions", lambda *a: _dissection_iou(*a, mean_of_images=True)),
        ("thresholded and scored each image apart (a per-image quantile, then the mean of per-image IoUs): one "
         "dataset-wide threshold, one dataset-wide ratio", lambda *a: _dissection_iou(*a, per_image=True,
                                                                                     mean_of_images=True)),
        ("took the `top` quantile as the threshold: the unit's region is its top `top` fraction of activations, "
         "above the (1 - top) quantile", lambda *a: _dissection_iou(*a, level="bottom")),
    ), convert=_as_number, rtol=0, atol=1.5e-3)


SPECS = {"check_rank_units": _rank_units_spec, "check_top_units_share": _top_units_share_spec,
         "check_dissection_iou": _dissection_iou_spec}
