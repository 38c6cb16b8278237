"""Lesson 02's exercises: the class activation map as a weighted sum; what the bias does to the 20%-of-max
region (and what Grad-CAM's ReLU does not); min-max normalization."""

from __future__ import annotations

from typing import Any, Callable

import torch

from ._engine import Mistake, Spec, gen, randint, random_features, random_sizes, run, _as_tensor


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


def _as_region(name: str, out: Any) -> torch.Tensor:
    """A region answer: a bool (or 0/1) tensor, compared as 0/1 numbers."""
    t = _as_tensor(name, out)
    return t.double() if t.dtype == torch.bool else t


def _score_maps(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, classes: torch.Tensor,
                bias_of=None, bias_scale: float = 1.0) -> torch.Tensor:
    """``M_c + b_c`` for ``c = classes[b]``: the map whose mean is the logit (``bias_of``: which bias)."""
    from ..cam import class_activation_maps
    maps = class_activation_maps(features, weight, classes)[:, 0].double()
    rows = classes if bias_of is None else bias_of
    return maps + bias_scale * bias.double()[rows][:, None, None]


def _ref_bias_region(features, weight, bias, classes) -> torch.Tensor:
    """The paper's 20%-of-max region (``camlib.localize.threshold_maps``) of ``M_c + b_c``."""
    from ..localize import threshold_maps
    return threshold_maps(_score_maps(features, weight, bias, classes)).double()


def _bias_region_mistakes() -> tuple[Mistake, ...]:
    def region(m):
        return (m >= 0.2 * m.amax(dim=(1, 2), keepdim=True)).double()

    def naive_relu(f, w, b, c):
        return region(torch.relu(_score_maps(f, w, b, c)))

    def minmax(f, w, b, c):
        from ..cam import normalize
        return (normalize(_score_maps(f, w, b, c)) >= 0.2).double()

    def batch_max(f, w, b, c):
        m = _score_maps(f, w, b, c)
        return ((m >= 0.2 * m.max()) & (m.max() > 0)).double()

    def per_position(f, w, b, c):
        return region(_score_maps(f, w, b, c, bias_of=torch.arange(len(c))))

    def per_location(f, w, b, c):
        return region(_score_maps(f, w, b, c, bias_scale=1.0 / (f.shape[-2] * f.shape[-1])))

    return (
        ("added bias[b] (the image's position in the batch) instead of bias[classes[b]]: each image's map gets its "
         "class's bias", per_position),
        ("divided the bias by h*w: b_c is added to every location as it is (then the map's mean is the logit)",
         per_location),
        ("left out the bias: that is the region of the CAM M_c; this exercise thresholds M_c + b_c",
         lambda f, w, b, c: region(_score_maps(f, w, b, c, bias_scale=0.0))),
        ("thresholded the min-max normalized map at 0.2: the rule keeps values >= 20% of the map's maximum, which "
         "is not 20% of its range", minmax),
        ("applied Grad-CAM's ReLU first: a map with no positive value then becomes all zeros and every location "
         "passes '>= 0.2 * max'; a map whose maximum is <= 0 keeps no location", naive_relu),
        ("used the maximum of the whole batch: each map is thresholded at 20% of its own maximum", batch_max),
    )


def _bias_region_spec(seed: int = 203) -> Spec:
    g = gen(seed)
    mistakes = _bias_region_mistakes()
    for _ in range(1000):
        trials = []
        for t in range(4):
            b, k, h, w = random_sizes(g, t)
            b = max(b, 3)
            n_classes = randint(g, b + 1, b + 4)
            weight = torch.randn(n_classes, k, generator=g)
            classes = torch.randint(0, n_classes, (b,), generator=g)
            classes[0] = n_classes - 1                     # never all the batch positions
            feats = random_features(g, b, k, h, w)
            maps = torch.einsum("bkhw,ck->bchw", feats, weight)
            spread = float(maps.amax() - maps.amin())
            bias = torch.randn(n_classes, generator=g) * 0.15 * spread
            if t == 0:   # one class whose map is below zero everywhere once its bias is added
                c = int(classes[1])
                bias[c] = -float(maps[:, c].amax()) - 0.1 * spread
            trials.append((feats, weight, bias, classes))
        refs = [_ref_bias_region(*a) for a in trials]
        if all(any(not torch.equal(wrong(*a), r) for a, r in zip(trials, refs)) for _, wrong in mistakes):
            break   # every mistake differs from the reference on some trial
    else:  # pragma: no cover - the draw above separates the mistakes for every seed tried
        raise RuntimeError(f"check_bias_region: could not draw trials that separate the mistakes (seed {seed})")
    return Spec("check_bias_region", ("features", "weight", "bias", "classes"), trials, _ref_bias_region, mistakes,
                convert=_as_region, rtol=0, atol=1e-6)


def check_bias_region(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``fn(features (B, K, h, w), weight (C, K), bias (C,), classes (B,)) -> region (B, h, w)`` bool.

    Lesson 02 (its "bias and ReLU against the 20% rule" exercise): the paper's box rule keeps the
    locations ``>= 0.2 * max`` of a map (none when the maximum is ``<= 0``,
    ``camlib.localize.threshold_maps``); here the map is ``M_c + b_c``, whose mean is the logit.
    """
    run(_bias_region_spec(), fn)


SPECS = {"check_cam": _cam_spec, "check_bias_region": _bias_region_spec, "check_minmax": _minmax_spec}
