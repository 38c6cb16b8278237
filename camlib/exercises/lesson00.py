"""Lesson 00's exercises: every class's map at the image's size; the class ranking read from the maps."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from ._engine import Spec, gen, randint, random_features, random_sizes, run, _as_indices


# ------------------------------------------------------------------ exercise 1: every class's map, upsampled
def _ref_all_class_maps(features: torch.Tensor, weight: torch.Tensor, size: Any) -> torch.Tensor:
    """The library's two steps: ``camlib.cam.class_activation_maps`` (every class), then ``camlib.cam.upsample``."""
    from ..cam import class_activation_maps, upsample

    return upsample(class_activation_maps(features, weight), tuple(size))


def _all_class_maps_trials(seed: int) -> list[tuple]:
    g = gen(seed)
    trials = []
    for t in range(4):
        b, k, h, w = random_sizes(g, t)
        b = min(b, 3)
        n_classes = randint(g, 2, 6)
        weight = torch.randn(n_classes, k, generator=g)
        # an image size that is not a whole multiple of the map (as 224 is of 7) on every other trial, H != W
        height = h * randint(g, 3, 6) + (randint(g, 1, 3) if t % 2 else 0)
        width = w * randint(g, 3, 6) + (randint(g, 1, 3) if t % 2 == 0 else 0)
        if width == height:
            width += 1
        trials.append((random_features(g, b, k, h, w), weight, (height, width)))
    return trials


def _maps_then(features, weight, size, **kwargs) -> torch.Tensor:
    maps = torch.einsum("bkhw,ck->bchw", features, weight)
    return F.interpolate(maps, size=tuple(size), **kwargs)


def _all_class_maps_spec(seed: int = 1) -> Spec:
    def minmax(f, w, s):
        from ..cam import normalize

        m = _ref_all_class_maps(f, w, s)
        return normalize(m.flatten(0, 1)).reshape(m.shape)

    return Spec("check_all_class_maps", ("features", "weight", "size"), _all_class_maps_trials(seed),
                _ref_all_class_maps, (
        ("used nearest-neighbour upsampling (blocky maps): use mode='bilinear'",
         lambda f, w, s: _maps_then(f, w, s, mode="nearest")),
        ("used align_corners=True: the course's maps use align_corners=False (each map cell covers its own patch "
         "of the image, so the cells' centres, not the map's corners, sit at fixed image points)",
         lambda f, w, s: _maps_then(f, w, s, mode="bilinear", align_corners=True)),
        ("swapped the image's height and width: size is (H, W), rows first, and the result is (B, C, H, W)",
         lambda f, w, s: _maps_then(f, w, (s[1], s[0]), mode="bilinear", align_corners=False)),
        ("normalized each map to [0, 1]: return the raw weighted sums (their values say how strong the evidence is)",
         minmax),
        ("applied a ReLU: the CAM keeps its negative values",
         lambda f, w, s: torch.relu(_ref_all_class_maps(f, w, s))),
        ("upsampled with mode='bicubic': the course's maps are bilinear",
         lambda f, w, s: _maps_then(f, w, s, mode="bicubic", align_corners=False)),
    ))


def check_all_class_maps(fn: Callable[[torch.Tensor, torch.Tensor, tuple], torch.Tensor]) -> None:
    """Check ``fn(features (B, K, h, w), weight (C, K), size (H, W)) -> maps (B, C, H, W)``.

    Lesson 00. The map of *every* class, ``M_c = Σ_k w_k^c f_k``, upsampled to the image's size with
    bilinear interpolation, ``align_corners=False`` (as ``camlib.cam.upsample``).
    """
    run(_all_class_maps_spec(), fn)


# ------------------------------------------------------------------ exercise 2: the ranking from the maps alone
def _ref_top_classes_from_maps(maps: torch.Tensor, bias: torch.Tensor, k: int) -> torch.Tensor:
    """A GAP head's score is the map's mean plus the bias; the library ranks scores (``camlib.metrics.topk_classes``)."""
    from ..metrics import topk_classes

    return topk_classes(maps.mean(dim=(2, 3)) + bias, int(k))


def _top_scores(kind: str, maps: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    if kind == "peak":
        return maps.amax(dim=(2, 3))
    if kind == "no_bias":
        return maps.mean(dim=(2, 3))
    if kind == "sum":
        return maps.sum(dim=(2, 3)) + bias
    return maps.mean(dim=(2, 3)) + bias


_TOP_MISTAKES = (
    ("ranked the classes by the peak of their maps (the max); a GAP network's score is the map's *mean* plus the "
     "bias, so a class with a high but small peak can rank below one with a broad map",
     lambda m, b, k: _top_scores("peak", m, b).topk(int(k), dim=1).indices),
    ("forgot the classifier's bias: score = mean of the map + bias[c]",
     lambda m, b, k: _top_scores("no_bias", m, b).topk(int(k), dim=1).indices),
    ("summed the map and added the bias: the sum is h*w times the mean, so the bias would have to be h*w times "
     "larger too; score = mean of the map + bias[c]",
     lambda m, b, k: _top_scores("sum", m, b).topk(int(k), dim=1).indices),
    ("took the k lowest scores: the best class first (largest=True, or sort descending)",
     lambda m, b, k: _top_scores("right", m, b).topk(int(k), dim=1, largest=False).indices),
    ("returned the top k in class-index order: return them best first",
     lambda m, b, k: _top_scores("right", m, b).topk(int(k), dim=1).indices.sort(dim=1).values),
    ("returned the scores, not the class indices (topk returns both: take .indices)",
     lambda m, b, k: _top_scores("right", m, b).topk(int(k), dim=1).values),
)


def _separated(scores: torch.Tensor, gap: float = 1e-3) -> bool:
    """No two scores of one image closer than ``gap`` (so no ranking depends on rounding)."""
    s = scores.sort(dim=1).values
    return bool((s[:, 1:] - s[:, :-1]).min() > gap)


def _top_classes_trials(seed: int) -> list[tuple]:
    g = gen(seed)
    trials = []
    while len(trials) < 5:
        b, n_classes = randint(g, 2, 4), randint(g, 8, 14)
        h = randint(g, 3, 7)
        w = h + randint(g, 0, 2)
        k = (2, 3, 5, 2, 4)[len(trials)]
        # each class's map: a broad level plus a few sharp peaks of its own height, so peak and mean disagree
        level = torch.randn(b, n_classes, 1, 1, generator=g)
        spread = 0.3 + 2.0 * torch.rand(b, n_classes, 1, 1, generator=g)
        maps = level + spread * torch.randn(b, n_classes, h, w, generator=g).clamp(min=-1.0) ** 3
        bias = 0.8 * torch.randn(n_classes, generator=g)
        if not all(_separated(_top_scores(kind, maps, bias)) for kind in ("right", "peak", "no_bias", "sum")):
            continue
        want = _ref_top_classes_from_maps(maps, bias, k)
        answers = [want] + [fn(maps, bias, k) for _, fn in _TOP_MISTAKES]
        if any(torch.equal(x.double(), y.double()) for i, x in enumerate(answers) for y in answers[i + 1:]):
            continue  # on every trial each mistake gives another answer than the reference and the other mistakes
        trials.append((maps, bias, k))
    return trials


def _top_classes_from_maps_spec(seed: int = 2) -> Spec:
    return Spec("check_top_classes_from_maps", ("maps", "bias", "k"), _top_classes_trials(seed),
                _ref_top_classes_from_maps, _TOP_MISTAKES, convert=_as_indices, rtol=0, atol=1e-6)


def check_top_classes_from_maps(fn: Callable[[torch.Tensor, torch.Tensor, int], Any]) -> None:
    """Check ``fn(maps (B, C, h, w), bias (C,), k) -> (B, k)`` class indices, best first.

    Lesson 00. With a GAP head the score of class ``c`` is the mean of its map plus the classifier's
    bias, so the maps of every class (and the bias) give back the network's ranking of the classes.
    """
    run(_top_classes_from_maps_spec(), fn)


SPECS = {"check_all_class_maps": _all_class_maps_spec, "check_top_classes_from_maps": _top_classes_from_maps_spec}
