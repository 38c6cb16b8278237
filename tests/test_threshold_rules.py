"""Lesson 03's "two 20%s": the paper's rule on a raw map (keep >= t * max) is the min-max rule at t on the
same map with its negative values set to zero (Grad-CAM on a GAP network), and the min-max rule on the raw
map keeps at least as much whenever the map has negative values."""

from __future__ import annotations

import torch

from camlib import localize


def _maps(seed=0, n=16, size=20):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n, 5, 5, generator=g)
    m = torch.nn.functional.interpolate(m[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    return m + 0.3                       # most maps keep a positive maximum and a negative minimum


def test_paper_rule_is_minmax_rule_on_the_relu_map():
    m = _maps()
    assert bool((m.amax(dim=(1, 2)) > 0).all()) and bool((m.amin(dim=(1, 2)) < 0).all())
    for t in (0.1, 0.2, 0.5, 0.8):
        raw = localize.threshold_maps(m, t)                                   # the paper's rule
        relu_mm = localize.minmax_normalize(m.clamp_min(0)) >= t              # min-max on the ReLU'd map
        assert torch.equal(raw, relu_mm)
        torch.testing.assert_close(localize.boxes_from_maps(m, t),
                                   localize.boxes_from_maps(localize.minmax_normalize(m.clamp_min(0)), t))


def test_minmax_rule_keeps_more_than_the_paper_rule_when_the_map_goes_negative():
    m = _maps(1)
    for t in (0.1, 0.2, 0.5):
        raw = localize.threshold_maps(m, t)
        mm = localize.minmax_normalize(m) >= t
        assert bool((mm | ~raw).all())                # every pixel the paper keeps, min-max keeps too
        assert int(mm.sum()) > int(raw.sum())         # and more: its cut is below t * max
