import numpy as np
import pytest
import torch
from scipy import ndimage

from camlib.data.digits import DigitSpec, make_digit_scenes, render_digit_scenes
from camlib.data.scenes import KINDS, SceneSpec, make_scenes, render_scenes


def _box_of(mask: torch.Tensor) -> list[float]:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def test_scenes_deterministic_per_index():
    a = make_scenes(12, seed=2)
    b = make_scenes(4, seed=2, start=8)
    assert torch.equal(a.images[8:], b.images) and torch.equal(a.labels[8:], b.labels)
    assert torch.equal(a.extras["object_masks"][8:], b.extras["object_masks"])
    assert not torch.equal(a.images, make_scenes(12, seed=3).images)


def test_scene_objects_masks_boxes_and_categories_are_exact():
    spec = SceneSpec()
    ds = make_scenes(60, seed=0, spec=spec)
    kinds, masks, boxes = ds.extras["object_kinds"], ds.extras["object_masks"], ds.extras["object_boxes"]
    assert masks.shape == (60, spec.max_objects, 64, 64)
    for i in range(60):
        c = int(ds.labels[i])
        assert kinds[i, 0] == c                                   # slot 0: the informative object
        others = kinds[i, 1:][kinds[i, 1:] >= 0]
        assert (others >= spec.num_categories).all()              # no other category's object
        assert spec.n_common[0] <= len(others) <= spec.n_common[1]
        assert torch.equal(ds.masks[i], masks[i, 0]) and ds.boxes[i].tolist() == boxes[i, 0].tolist()
        present = masks[i][kinds[i] >= 0]
        assert (present.sum(0) <= 1).all()                        # objects never overlap
        for m, b in zip(present, boxes[i][kinds[i] >= 0]):
            assert m.any() and _box_of(m) == b.tolist()
        assert not masks[i][kinds[i] < 0].any()                   # empty slots are empty


def test_scene_pixels_show_the_objects():
    spec = SceneSpec(noise=0.0)
    out = render_scenes(spec, 0, [0, 1, 2])
    img, masks, kinds = out["images"].astype(np.int32), out["object_masks"], out["object_kinds"]
    assert (kinds[:, 0] >= 0).all() and ((kinds >= 0).sum(1) >= 1 + spec.n_common[0]).all()
    for b, j in zip(*np.nonzero(kinds >= 0)):                     # every object drawn, none skipped
        m = masks[b, j]
        assert m.sum() >= 10
        colour = img[b][:, m]
        assert np.ptp(colour, axis=1).max() <= 1                  # one flat colour over the object
        # ... that stands out: one channel >= 0.85 * 255, above any background cell (<= 0.8 * 255),
        # so every background pixel touching the object differs from it by >= 0.05 * 255 somewhere
        around = ndimage.binary_dilation(m, structure=np.ones((3, 3), bool)) & ~masks[b].any(0)
        assert around.any()
        gap = np.abs(img[b][:, around] - colour[:, :1]).max(0)
        assert gap.min() >= 12, (b, j, gap.min())


def test_scene_spec_checks():
    with pytest.raises(ValueError, match="at most"):
        SceneSpec(num_categories=5, common_kinds=4)
    with pytest.raises(ValueError, match="image_size"):
        SceneSpec(image_size=16)
    assert len(KINDS) == 8
    with pytest.raises(ValueError, match="positive"):
        make_scenes(0)


def test_digits_deterministic_and_exact():
    spec = DigitSpec(image_size=64)
    a = make_digit_scenes(16, seed=1, spec=spec)
    b = make_digit_scenes(6, seed=1, spec=spec, start=10)
    assert torch.equal(a.images[10:], b.images) and torch.equal(a.boxes[10:], b.boxes)
    assert not torch.equal(a.images, make_digit_scenes(16, seed=2, spec=spec).images)
    pos = a.labels == 1
    assert pos.any() and (~pos).any()
    for i in range(16):
        if pos[i]:
            assert a.masks[i].any() and a.boxes[i].tolist() == _box_of(a.masks[i])
            assert 0 <= int(a.extras["digit"][i]) <= 9
        else:
            assert not a.masks[i].any() and a.boxes[i].tolist() == [0.0, 0.0, 64.0, 64.0]
            assert int(a.extras["digit"][i]) == -1


def test_digits_splits_use_different_scans(monkeypatch):
    from camlib.data import digits as D
    n = len(D._scans()[0])
    assert 0 < D.TRAIN_DIGITS < n
    # fake scans: the train ones are solid ink, the test ones blank -- so which pool a split draws
    # from shows in whether any ink lands
    fake = np.zeros((n, 8, 8), dtype=np.float32)
    fake[:D.TRAIN_DIGITS] = 1.0
    monkeypatch.setattr(D, "_scans", lambda: (fake, np.arange(n) % 10))
    spec = dict(image_size=48, p_digit=1.0, strokes=(0, 0), background="clutter", noise=0.0)
    tr = render_digit_scenes(DigitSpec(digits="train", **spec), 0, range(10))
    te = render_digit_scenes(DigitSpec(digits="test", **spec), 0, range(10))
    assert (tr["labels"] == 1).all() and tr["masks"].any(axis=(1, 2)).all()
    assert (te["labels"] == 0).all() and not te["masks"].any()
    # a solid scan becomes a solid square of its drawn size: the box is exact
    b = tr["boxes"][0]
    assert tr["masks"][0].sum() == (b[2] - b[0]) * (b[3] - b[1])


def test_digit_positive_rate_and_checks():
    ds = make_digit_scenes(200, seed=0, spec=DigitSpec(image_size=32, digit_size=(40.0, 60.0), background="clutter"))
    assert 0.38 < float(ds.labels.float().mean()) < 0.62
    assert make_digit_scenes(4, seed=0, spec=DigitSpec(image_size=32, p_digit=0.0)).labels.sum() == 0
    with pytest.raises(ValueError, match="background"):
        DigitSpec(background="sky")
    with pytest.raises(ValueError, match="p_digit"):
        DigitSpec(p_digit=2.0)
