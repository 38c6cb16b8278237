"""camlib.data.photos.PastedPhotos: the package photos' objects pasted onto package backgrounds (lesson 06)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from camlib.data.photos import BACKGROUNDS, PastedPhotos, RealPhotos, load_photo


@pytest.fixture(scope="module")
def photos():
    return RealPhotos(size=64)


def test_every_object_on_every_background_with_its_box(photos):
    ds = PastedPhotos(photos, size=64, placements=2, seed=3)
    assert len(ds) == len(photos) * len(BACKGROUNDS) * 2
    per = len(BACKGROUNDS) * 2
    assert ds.labels == [lab for lab in photos.labels for _ in range(per)]
    for i in range(0, len(ds), 7):
        img, boxes = ds.load(i)
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        x1, y1, x2, y2 = boxes[0]
        assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64
        # the pixels inside the box are the object's crop, resized; those outside are the background's
        src, src_boxes = photos.load(i // per)
        a, b, c, d = (int(v) for v in src_boxes[0])
        crop = np.asarray(Image.fromarray(src[b:d, a:c]).resize((int(x2 - x1), int(y2 - y1)), Image.BILINEAR))
        np.testing.assert_array_equal(img[int(y1):int(y2), int(x1):int(x2)], crop)
        bname = ds.names[i].split(" on ")[1]
        bg = np.asarray(Image.fromarray(load_photo(BACKGROUNDS[bname])).resize((64, 64), Image.BILINEAR))
        outside = np.ones((64, 64), bool)
        outside[int(y1):int(y2), int(x1):int(x2)] = False
        np.testing.assert_array_equal(img[outside], bg[outside])
        # the object's longer side is the placement's scale of the image side
        assert max(x2 - x1, y2 - y1) == pytest.approx((0.45, 0.65)[i % 2] * 64, abs=1)
    s = ds[5]
    assert s["image"].shape == (3, 64, 64) and s["label"] == ds.labels[5]
    torch.testing.assert_close(s["boxes"], torch.from_numpy(ds.load(5)[1]))


def test_same_arguments_same_images_and_the_seed_moves_them(photos):
    a, b = PastedPhotos(photos, size=64, seed=0), PastedPhotos(photos, size=64, seed=0)
    c = PastedPhotos(photos, size=64, seed=1)
    assert all(np.array_equal(a.load(i)[1], b.load(i)[1]) for i in range(len(a)))
    assert any(not np.array_equal(a.load(i)[1], c.load(i)[1]) for i in range(len(a)))


@pytest.mark.parametrize("kwargs", [dict(placements=0), dict(size=8), dict(scales=(1.5,)), dict(scales=()),
                                    dict(backgrounds={})])
def test_bad_arguments_say_what_was_expected(photos, kwargs):
    with pytest.raises(ValueError):
        PastedPhotos(photos, **{"size": 64, **kwargs})
