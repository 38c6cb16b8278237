"""Lesson 01's exercises: global average and max pooling (the paper's Sec. 2)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ._engine import Spec, gen, randint, random_features, random_sizes, run


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


# ------------------------------------------------------------------ exercise 2: log-sum-exp pooling
def _ref_lse_pool(features: torch.Tensor, r: float) -> torch.Tensor:
    """``(1/r) log((1/hw) Σ exp(r f))``, written stably: each map's own max comes out of the exponential."""
    f = features.double()
    top = f.amax(dim=(2, 3), keepdim=True)
    inner = torch.exp(r * (f - top)).mean(dim=(2, 3))
    return (top[:, :, 0, 0] + torch.log(inner) / r).float()


def _lse_trials(seed: int) -> list[tuple]:
    """Ordinary maps at a small, a middle and a large ``r``; one batch whose ``r*f`` reaches 1000 and more
    (exp overflows there, even in float64); one whose maps lie 150 apart (one max for all underflows)."""
    g = gen(seed)

    def pick(options):
        return options[randint(g, 0, len(options) - 1)]

    trials = [(random_features(g, *random_sizes(g, 0)), pick((0.02, 0.05, 0.1))),      # near GAP
              (random_features(g, *random_sizes(g, 1)), pick((1.5, 2.0, 3.0))),
              (random_features(g, *random_sizes(g, 2)), pick((5.0, 8.0)))]
    b, k, h, w = random_sizes(g, 3)
    trials.append((40.0 + 0.5 * random_features(g, b, k, h, w), pick((25.0, 30.0))))    # r*f >= 1000 everywhere
    b, k, h, w = random_sizes(g, 4)
    f = random_features(g, b, k, h, w)
    high = torch.arange(k) % 2 == 1                                                     # every other channel, in every image
    f[:, high] += 150.0
    trials.append((f, pick((10.0, 12.0))))
    return trials


def _lse_spec(seed: int = 103) -> Spec:
    def naive(f, r):
        return torch.log(torch.exp(r * f).mean(dim=(2, 3))) / r

    def no_hw(f, r):
        return (torch.logsumexp(r * f.double(), dim=(2, 3)) / r).float()

    def no_one_over_r(f, r):
        return r * _ref_lse_pool(f, r)

    def max_not_added_back(f, r):
        top = f.double().amax(dim=(2, 3), keepdim=True)
        return (torch.log(torch.exp(r * (f.double() - top)).mean(dim=(2, 3))) / r).float()

    def one_max_for_all(f, r):
        top = f.double().max()
        return (top + torch.log(torch.exp(r * (f.double() - top)).mean(dim=(2, 3))) / r).float()

    def log_hw_not_over_r(f, r):
        return (torch.logsumexp(r * f.double(), dim=(2, 3)) / r - np.log(f.shape[2] * f.shape[3])).float()

    return Spec("check_lse_pool", ("features", "r"), _lse_trials(seed), _ref_lse_pool, (
        ("left out the 1/(hw) inside the log: (1/r) log Σ exp(r f) is GMP + log(hw)/r for large r and grows "
         "without bound as r -> 0, instead of tending to GAP", no_hw),
        ("computed exp(r * f) directly: it overflows to inf when r * f is large (exp(89) in float32, exp(710) "
         "in float64); take each map's max m out first: m + (1/r) log mean exp(r (f - m))", naive),
        ("forgot the 1/r in front of the log (the result is r times too large)", no_one_over_r),
        ("subtracted the max inside the exponential but did not add it back outside the log", max_not_added_back),
        ("subtracted one max for the whole batch (or image): a map far below it underflows to exp(...) = 0 "
         "and log(0) = -inf; subtract each map's own max", one_max_for_all),
        ("divided log(hw) by 1 instead of r: (1/r) log((1/hw) Σ exp(r f)) = (1/r) (logsumexp(r f) - log(hw))",
         log_hw_not_over_r),
    ))


def check_lse_pool(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """Check ``fn(features (B, K, h, w), r) -> (B, K)``, log-sum-exp pooling (Pinheiro & Collobert).

    Lesson 01. ``(1/r) log((1/hw) Σ_{x,y} exp(r f_k(x, y)))`` moves from GAP (r -> 0) to GMP (r -> ∞);
    it must stay finite where ``r * f`` is large (subtract each map's max before the exponential).
    """
    run(_lse_spec(), fn)


# ------------------------------------------------------------------ exercise 3: mask coverage of the 20% region
def _ref_mask_coverage(maps: torch.Tensor, masks: torch.Tensor, fraction: float) -> torch.Tensor:
    """The library's two steps: the paper's region (``camlib.localize.threshold_maps``) and the share of the
    mask inside it (``camlib.metrics.mask_coverage``)."""
    from .. import localize, metrics

    return metrics.mask_coverage(localize.threshold_maps(maps, fraction), masks)


def _coverage(maps, masks, region, over: str = "mask") -> torch.Tensor:
    hit = (region & masks).sum(dim=(1, 2)).double()
    if over == "region":
        return hit / region.sum(dim=(1, 2)).clamp(min=1).double()
    if over == "image":
        return hit / (maps.shape[1] * maps.shape[2])
    return hit / masks.sum(dim=(1, 2)).double()


def _per_map_region(maps, fraction):
    return maps >= fraction * maps.amax(dim=(1, 2), keepdim=True)


_COVERAGE_MISTAKES = (
    ("thresholded at a fraction of the whole batch's maximum: each map has its own threshold, "
     "fraction * that map's max", lambda m, k, f: _coverage(m, k, m >= f * m.max())),
    ("divided by the number of kept pixels (how much of the region is object): coverage is how much of the "
     "*object* is kept, |region & mask| / |mask|", lambda m, k, f: _coverage(m, k, _per_map_region(m, f), "region")),
    ("divided by the image's area: coverage is |region & mask| / |mask|",
     lambda m, k, f: _coverage(m, k, _per_map_region(m, f), "image")),
    ("thresholded the min-max normalized map: the paper's rule is map >= fraction * max of the raw map",
     lambda m, k, f: _coverage(m, k, (m - m.amin(dim=(1, 2), keepdim=True))
                               >= f * (m.amax(dim=(1, 2), keepdim=True) - m.amin(dim=(1, 2), keepdim=True)))),
    ("kept map >= fraction (an absolute threshold): the rule is relative, map >= fraction * the map's max",
     lambda m, k, f: _coverage(m, k, m >= f)),
    ("averaged over the images: return one coverage per image, shape (B,)",
     lambda m, k, f: _coverage(m, k, _per_map_region(m, f)).mean()),
)


def _coverage_trials(seed: int) -> list[tuple]:
    """Blobby maps with a negative background, of very different heights, and elliptic object masks that
    hold some of the blobs; no pixel sits on any rule's threshold, and every mistake gives another answer."""
    g = gen(seed)
    trials = []
    while len(trials) < 4:
        b = randint(g, 3, 5)
        h = randint(g, 12, 20)
        w = h + randint(g, 2, 6)
        if len(trials) % 2:
            h, w = w, h
        yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
        maps = torch.randn(b, h, w, generator=g) * 0.05 - 0.3
        masks = torch.zeros(b, h, w, dtype=torch.bool)
        for i in range(b):
            for _ in range(randint(g, 2, 4)):
                cy, cx = float(torch.rand(1, generator=g)) * h, float(torch.rand(1, generator=g)) * w
                sy, sx = 1 + float(torch.rand(1, generator=g)) * h / 5, 1 + float(torch.rand(1, generator=g)) * w / 5
                # NumPy's exp: torch's takes ~10 ms on a map this small after torch.set_num_threads(2) on a busy
                # machine (tests/conftest.py sets it), and the trials draw a few hundred of them
                bump = np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2).clamp(max=30.0).numpy())
                maps[i] += (0.3 + float(torch.rand(1, generator=g))) * torch.from_numpy(bump)
            maps[i] *= 0.2 + 4.0 * float(torch.rand(1, generator=g))        # maps of different heights
            cy, cx = float(torch.rand(1, generator=g)) * h, float(torch.rand(1, generator=g)) * w
            ry, rx = 2 + float(torch.rand(1, generator=g)) * h / 3, 2 + float(torch.rand(1, generator=g)) * w / 3
            masks[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        fraction = round(0.15 + 0.35 * float(torch.rand(1, generator=g)), 2)
        if bool((maps.amax(dim=(1, 2)) <= 0).any()) or bool((masks.sum(dim=(1, 2)) < 3).any()):
            continue
        top, low = maps.amax(dim=(1, 2), keepdim=True), maps.amin(dim=(1, 2), keepdim=True)
        fences = [fraction * top, fraction * maps.max(), low + fraction * (top - low), torch.tensor(fraction)]
        if any(bool(((maps - t).abs() < 1e-3 * top).any()) for t in fences):
            continue                                                         # a pixel on a threshold: draw again
        want = _ref_mask_coverage(maps, masks, fraction)
        answers = [want] + [fn(maps, masks, fraction) for _, fn in _COVERAGE_MISTAKES]
        if any(x.shape == y.shape and bool(torch.isclose(x, y, atol=1e-6).all())
               for i, x in enumerate(answers) for y in answers[i + 1:]):
            continue
        trials.append((maps, masks, fraction))
    return trials


def _mask_coverage_spec(seed: int = 104) -> Spec:
    return Spec("check_mask_coverage", ("maps", "masks", "fraction"), _coverage_trials(seed), _ref_mask_coverage,
                _COVERAGE_MISTAKES, rtol=0, atol=1e-6)


def check_mask_coverage(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> None:
    """Check ``fn(maps (B, H, W), masks (B, H, W) bool, fraction) -> (B,)`` float.

    Lesson 01. Per image, the share of the object's mask inside the paper's region (pixels with
    ``map >= fraction * that map's max``): ``|region & mask| / |mask|``.
    """
    run(_mask_coverage_spec(), fn)


SPECS = {"check_gap": _gap_spec, "check_gmp": _gmp_spec, "check_lse_pool": _lse_spec,
         "check_mask_coverage": _mask_coverage_spec}
