"""Bad input to camlib's public functions: each case gets a ValueError that says what was expected
(or, where the meaning is unambiguous, a converted input and the right answer) -- never a NaN, a
silently wrong number, or an error from deep inside torch.

Each row: (id, call, expected) where ``expected`` is ``("raises", regex)`` or ``("ok", check)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camlib import cam, localize, metrics, models, train, units, viz
from camlib.data import make_synthetic

torch.manual_seed(0)
NET = models.small_cnn(4).eval()
X = torch.randn(2, 3, 32, 32)
FEATS = torch.rand(2, 5, 4, 4)
W = torch.randn(3, 5)
LOGITS = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
BOX = torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 3.0, 3.0]])


def _same_logits(x):
    def check(out):
        ref = NET(X)
        torch.testing.assert_close(out.logits.float(), ref.logits, rtol=1e-3, atol=1e-3)
    return check


def _maps_equal_float(out):
    ref = cam.class_activation_maps(FEATS.round(), W)
    assert out.dtype.is_floating_point and torch.allclose(out, ref)


def _grid_closes(fig):
    import matplotlib.pyplot as plt
    plt.close(fig)


CASES = [
    # ---------------------------------------------------------------- models.CAMNet.forward
    ("forward-uint8", lambda: NET((X * 40 + 128).clamp(0, 255).to(torch.uint8)), ("raises", r"uint8.*normaliz")),
    ("forward-int64", lambda: NET(X.long()), ("raises", r"floating")),
    ("forward-float64", lambda: NET(X.double()), ("ok", _same_logits(X))),
    ("forward-half", lambda: NET(X.half()), ("ok", lambda out: out.logits.dtype == torch.float32)),
    ("forward-numpy", lambda: NET(X.numpy()), ("raises", r"tensor")),
    ("forward-3d", lambda: NET(X[0]), ("raises", r"\(B, 3, H, W\)")),
    ("forward-1-channel", lambda: NET(X[:, :1]), ("raises", r"\(B, 3, H, W\)")),
    # ---------------------------------------------------------------- metrics
    ("iou-x2-lt-x1", lambda: metrics.best_iou(torch.tensor([[5.0, 0, 1, 4]]), BOX[:1]), ("raises", r"x1 <= x2")),
    ("iou-gt-x2-lt-x1", lambda: metrics.best_iou(BOX[:1], torch.tensor([[5.0, 0, 1, 4]])), ("raises", r"x1 <= x2")),
    ("iou-nan", lambda: metrics.best_iou(torch.tensor([[float("nan"), 0, 1, 4]]), BOX[:1]), ("raises", r"finite")),
    ("box-accuracy-empty", lambda: metrics.box_accuracy(torch.zeros(0, 4), torch.zeros(0, 4)), ("raises", r"empty")),
    ("mean-iou-empty", lambda: metrics.mean_iou(torch.zeros(0, 4), torch.zeros(0, 4)), ("raises", r"empty")),
    ("loc-error-empty", lambda: metrics.localization_error(torch.zeros(0, 1, dtype=torch.long), torch.zeros(0, 1, 4),
                                                           torch.zeros(0, dtype=torch.long), torch.zeros(0, 4)),
     ("raises", r"empty")),
    ("cls-error-empty", lambda: metrics.classification_error(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)),
     ("raises", r"empty")),
    ("cls-error-k0", lambda: metrics.classification_error(LOGITS, torch.tensor([0, 2]), k=0), ("raises", r"k must")),
    ("cls-error-label-high", lambda: metrics.classification_error(LOGITS, torch.tensor([0, 3])),
     ("raises", r"labels must lie in \[0, 3\)")),
    ("cls-error-label-neg", lambda: metrics.classification_error(LOGITS, torch.tensor([-1, 0])),
     ("raises", r"labels must lie")),
    ("cls-error-float-labels", lambda: metrics.classification_error(LOGITS, torch.tensor([0.0, 2.0])),
     ("raises", r"int")),
    ("loc-correct-label-neg", lambda: metrics.localization_correct(torch.tensor([[0], [1]]), BOX[:, None],
                                                                   torch.tensor([-1, 1]), BOX),
     ("raises", r"labels must lie")),
    ("cls-error-ok", lambda: metrics.classification_error(LOGITS, torch.tensor([0, 0])), ("ok", lambda v: v == 0.5)),
    # ---------------------------------------------------------------- cam
    ("cam-int-features", lambda: cam.class_activation_maps(FEATS.round().long(), W), ("ok", _maps_equal_float)),
    ("cam-numpy-weight", lambda: cam.class_activation_maps(FEATS, W.numpy()),
     ("ok", lambda out: torch.allclose(out, cam.class_activation_maps(FEATS, W)))),
    ("cam-list-weight", lambda: cam.class_activation_maps(FEATS, W.tolist()),
     ("ok", lambda out: torch.allclose(out, cam.class_activation_maps(FEATS, W)))),
    ("cam-weight-1d", lambda: cam.class_activation_maps(FEATS, W[0]), ("raises", r"\(C, K\)")),
    ("cam-float-classes", lambda: cam.class_activation_maps(FEATS, W, torch.tensor([0.5, 1.0])), ("raises", r"integers")),
    ("cam-class-out-of-range", lambda: cam.class_activation_maps(FEATS, W, 3), ("raises", r"\[0, 3\)")),
    ("normalize-nan", lambda: cam.normalize(torch.tensor([[[0.0, 1.0], [float("nan"), 2.0]]])), ("raises", r"NaN")),
    ("normalize-inf", lambda: cam.normalize(torch.tensor([[[0.0, float("inf")], [1.0, 2.0]]]), "max"),
     ("raises", r"finite")),
    ("normalize-numpy", lambda: cam.normalize(np.array([[0.0, 2.0], [1.0, 1.0]])),
     ("ok", lambda out: torch.allclose(out, torch.tensor([[0.0, 1.0], [0.5, 0.5]], dtype=out.dtype)))),
    ("normalize-method", lambda: cam.normalize(torch.rand(1, 2, 2), "median"), ("raises", r"method")),
    ("upsample-2d", lambda: cam.upsample(torch.rand(4, 4), 8), ("raises", r"\(B, h, w\)")),
    # ---------------------------------------------------------------- localize
    ("boxes-from-nan-maps", lambda: localize.boxes_from_maps(torch.full((1, 4, 4), float("nan"))), ("raises", r"finite")),
    ("boxes-from-int-maps", lambda: localize.boxes_from_maps(torch.ones(1, 4, 4, dtype=torch.bool)), ("raises", r"real")),
    ("threshold-out-of-range", lambda: localize.threshold_maps(torch.rand(1, 4, 4), 1.5), ("raises", r"\[0, 1\]")),
    ("boxes-to-masks-zero-size", lambda: localize.boxes_to_masks(BOX, 0, 4), ("raises", r">= 1")),
    ("largest-component-float", lambda: localize.largest_component_boxes(torch.rand(1, 4, 4)), ("raises", r"bool")),
    # ---------------------------------------------------------------- units
    ("rank-units-float-class", lambda: units.rank_units(W, 1.7), ("raises", r"integer")),
    ("rank-units-class-high", lambda: units.rank_units(W, 3), ("raises", r"\[0, 3\)")),
    ("rank-units-k0", lambda: units.rank_units(W, 0, k=0), ("raises", r"k must")),
    ("unit-peaks-neg", lambda: units.unit_peaks(FEATS, [-1]), ("raises", r"units must lie in \[0, 5\)")),
    ("unit-peaks-high", lambda: units.unit_peaks(FEATS, [5]), ("raises", r"units must lie")),
    ("unit-peaks-float", lambda: units.unit_peaks(FEATS, [1.7]), ("raises", r"integer")),
    ("peak-on-mask-neg", lambda: units.peak_on_mask(FEATS, torch.ones(2, 8, 8, dtype=torch.bool), [-1]),
     ("raises", r"units must lie")),
    ("top-activations-neg", lambda: units.top_activations(NET, make_synthetic(4, seed=0), [-1], n=1,
                                                          device="cpu"), ("raises", r"units must lie")),
    ("peak-boxes-patch0", lambda: units.peak_boxes(torch.zeros(1, 2), (4, 4), 32, 0), ("raises", r"patch")),
    # ---------------------------------------------------------------- viz
    ("grid-empty", lambda: viz.grid([]), ("raises", r"at least one image")),
    ("grid-ncols0", lambda: viz.grid(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), ncols=0), ("raises", r"ncols")),
    ("grid-maps-mismatch", lambda: viz.grid(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), maps=torch.zeros(1, 4, 4)),
     ("raises", r"one map per image")),
    ("grid-ok", lambda: viz.grid(torch.zeros(2, 3, 8, 8, dtype=torch.uint8)), ("ok", _grid_closes)),
    ("to-image-2d", lambda: viz.to_image(torch.zeros(8, 8)), ("raises", r"3 dims")),
    # ---------------------------------------------------------------- train
    ("fit-checkpoint-every-0", lambda: train.fit(models.small_cnn(8), make_synthetic(16, seed=0), steps=1,
                                                 batch_size=8, checkpoint_every=0, progress=False, device="cpu"),
     ("raises", r"checkpoint_every must be a positive int")),
    ("fit-eval-every-0", lambda: train.fit(models.small_cnn(8), make_synthetic(16, seed=0), steps=1,
                                           batch_size=8, eval_every=0, progress=False, device="cpu"),
     ("raises", r"eval_every must be a positive int")),
    ("fit-empty-val", lambda: train.fit(models.small_cnn(8), make_synthetic(16, seed=0),
                                        make_synthetic(16, seed=1).subset([]), steps=1, batch_size=8,
                                        progress=False, device="cpu"), ("raises", r"val is an empty")),
    ("evaluate-empty", lambda: train.evaluate(NET, make_synthetic(4, seed=0).subset([])), ("raises", r"empty")),
    ("fit-resume-bad", lambda: train.fit(models.small_cnn(8), make_synthetic(16, seed=0), steps=1,
                                         batch_size=8, resume="yes", checkpoint="x.pt", progress=False, device="cpu"),
     ("raises", r"resume must be")),
]


@pytest.mark.parametrize("name, call, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, call, expected):
    kind, what = expected
    if kind == "raises":
        with pytest.raises(ValueError, match=what):
            call()
    else:
        out = call()
        assert what(out) is not False


def test_checkpoint_folder_fails_before_training(tmp_path):
    calls = []
    with pytest.raises(ValueError, match="not a folder"):
        train.fit(models.small_cnn(8), make_synthetic(16, seed=0), steps=2, batch_size=8, checkpoint=tmp_path,
                  progress=False, device="cpu", on_eval=lambda m, r: calls.append(r))
    assert calls == []          # refused before the first step, not at the first save
