"""Lesson 01's exercises: global average and max pooling (the paper's Sec. 2)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ._engine import Mistake, Spec, gen, randint, random_features, random_sizes, run, _as_indices, _as_number  # noqa: F401


def _ref_gap(features: torch.Tensor) -> torch.Tensor:
    return features.mean(dim=(2, 3))


def _ref_gmp(features: torch.Tensor) -> torch.Tensor:
    return features.amax(dim=(2, 3))


def _pool_trials(seed: int) -> list[tuple]:
    g = gen(seed)
    return [(random_features(g, *random_sizes(g, t)),) for t in range(4)]


def _gap_spec(seed: int = 101) -> Spec:
    return Spec("check_gap", ("features",), _pool_trials(seed), _ref_gap, (
        ("used max instead of mean (that is GMP)", _ref_gmp),
        ("kept the pooled dimensions (keepdim=True): return shape (B, K)", lambda f: f.mean(dim=(2, 3), keepdim=True)),
        ("averaged over the channels too: pool only the spatial dimensions (2, 3)", lambda f: f.mean(dim=(1, 2, 3))),
        ("averaged over only one spatial dimension: pool over both (dim=(2, 3))", lambda f: f.mean(dim=3)),
        ("summed over only one spatial dimension: pool over both (dim=(2, 3))", lambda f: f.sum(dim=3)),
    ), also_right=(
        ("sums the map, as the paper's F_k = sum_{x,y} f_k(x, y) does; the course's GAP layer averages "
         "(nn.AdaptiveAvgPool2d). The two differ by the constant 1/(h*w), which the next layer's weights absorb, "
         "so the CAM is the same up to scale", lambda f: f.sum(dim=(2, 3))),
    ))


def check_gap(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check ``fn(features (B, K, h, w)) -> (B, K)``, global average pooling.

    Lesson 01. The paper's Sec. 2: ``F_k = Σ_{x,y} f_k(x, y)``. The course's layer takes the mean, which
    differs by the constant 1/hw; both are accepted (the check says which one you wrote).
    """
    run(_gap_spec(), fn)


def _gmp_spec(seed: int = 102) -> Spec:
    return Spec("check_gmp", ("features",), _pool_trials(seed), _ref_gmp, (
        ("used mean instead of max (that is GAP)", _ref_gap),
        ("kept the pooled dimensions (keepdim=True): return shape (B, K)", lambda f: f.amax(dim=(2, 3), keepdim=True)),
        ("took the max over only one spatial dimension: pool over both (dim=(2, 3))", lambda f: f.amax(dim=3)),
        ("took the max over the channels too: pool only the spatial dimensions (2, 3)", lambda f: f.amax(dim=(1, 2, 3))),
    ))


def check_gmp(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check ``fn(features (B, K, h, w)) -> (B, K)``, global max pooling (Oquab et al.; paper Sec. 2). Lesson 01."""
    run(_gmp_spec(), fn)




SPECS = {"check_gap": _gap_spec, "check_gmp": _gmp_spec}
