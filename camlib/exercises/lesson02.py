"""Lesson 02's exercises: the class activation map as a weighted sum; min-max normalization."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ._engine import Mistake, Spec, gen, randint, random_features, random_sizes, run, _as_indices, _as_number  # noqa: F401


def _ref_cam(features: torch.Tensor, weight: Any, classes: torch.Tensor) -> torch.Tensor:
    w = torch.as_tensor(weight, dtype=features.dtype)
    return torch.einsum("bkhw,bk->bhw", features, w[classes])


def _ref_minmax(maps: torch.Tensor) -> torch.Tensor:
    """Lesson 02's min-max exercise: its reference is the library's one rule, ``camlib.cam.normalize``."""
    from ..cam import normalize
    return normalize(maps)


def _cam_mistakes(weight_name: str) -> tuple[Mistake, ...]:
    def per_batch_position(f, w, c):
        return _ref_cam(f, w, torch.arange(f.shape[0]))

    return (
        ("applied a ReLU: the CAM keeps negative values (M_c = Σ_k w_k^c f_k, Sec. 2)",
         lambda f, w, c: torch.relu(_ref_cam(f, w, c))),
        (f"used {weight_name}[b] (the image's position in the batch) instead of {weight_name}[classes[b]]",
         per_batch_position),
        ("used class 0 for every image instead of classes[b]", lambda f, w, c: _ref_cam(f, w, torch.zeros_like(c))),
        ("computed the maps of every class: select the map of classes[b] for image b",
         lambda f, w, c: torch.einsum("bkhw,ck->bchw", f, torch.as_tensor(w, dtype=f.dtype))),
        ("averaged over the units instead of summing (divided by K): the map is a weighted sum",
         lambda f, w, c: _ref_cam(f, w, c) / f.shape[1]),
        ("normalized the maps: return the raw weighted sum", lambda f, w, c: _ref_minmax(_ref_cam(f, w, c))),
        ("swapped h and w: return (B, h, w) in the features' order", lambda f, w, c: _ref_cam(f, w, c).transpose(1, 2)),
    )


def _cam_trials(seed: int, numpy_weights: bool = False) -> list[tuple]:
    g = gen(seed)
    trials = []
    for t in range(4):
        b, k, h, w = random_sizes(g, t)
        n_classes = randint(g, b + 1, b + 6)  # more classes than images, not equal to K
        if n_classes == k:
            n_classes += 1
        weight = torch.randn(n_classes, k, generator=g)
        classes = torch.randint(0, n_classes, (b,), generator=g)
        classes[0] = n_classes - 1  # never all the batch positions
        weight = weight.double().numpy() if numpy_weights else weight
        trials.append((random_features(g, b, k, h, w), weight, classes))
    return trials


def check_cam(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``fn(features (B, K, h, w), weight (C, K), classes (B,)) -> maps (B, h, w)``.

    Lesson 02. The paper's class activation map, Sec. 2: ``M_c(x, y) = Σ_k w_k^c f_k(x, y)`` for
    ``c = classes[b]``.
    """
    run(_cam_spec(), fn)


def _cam_spec(seed: int = 201) -> Spec:
    return Spec("check_cam", ("features", "weight", "classes"), _cam_trials(seed), _ref_cam, _cam_mistakes("weight"))


def check_minmax(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check ``fn(maps (B, h, w)) -> maps`` each scaled to [0, 1]; a constant map gives zeros.

    Lesson 02. The min-max convention of Choe et al. (2020) used before thresholds are swept.
    """
    run(_minmax_spec(), fn)


def _minmax_spec(seed: int = 202) -> Spec:
    g = gen(seed)
    trials = []
    for t in range(4):
        b, _, h, w = random_sizes(g, t)
        maps = torch.randn(b, h, w, generator=g) * 3 - 1  # negative values, as raw CAMs have
        if t % 2 == 0:
            maps[-1] = float(torch.randn(1, generator=g))  # a constant map
        trials.append((maps,))

    def forgot_min(m):
        return m / m.amax(dim=(1, 2), keepdim=True)

    def batch_wide(m):
        return (m - m.min()) / (m.max() - m.min())

    return Spec("check_minmax", ("maps",), trials, _ref_minmax, (
        ("forgot to subtract the minimum: the maps are not min-max normalized (divide (m - min) by (max - min))",
         forgot_min),
        ("clipped negatives (ReLU) and divided by the max: min-max subtracts each map's minimum",
         lambda m: torch.relu(m) / m.amax(dim=(1, 2), keepdim=True)),
        ("used the min and max of the whole batch, not of each map", batch_wide),
        ("divided by zero on a constant map: a constant map must give zeros, not NaN",
         lambda m: (m - m.amin(dim=(1, 2), keepdim=True))
         / (m.amax(dim=(1, 2), keepdim=True) - m.amin(dim=(1, 2), keepdim=True))),
    ))




SPECS = {"check_cam": _cam_spec, "check_minmax": _minmax_spec}
