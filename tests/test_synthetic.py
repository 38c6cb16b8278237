import numpy as np
import pytest
import torch

from camlib.data import SyntheticSpec, make_synthetic, render_synthetic


def test_deterministic_per_index_whatever_the_chunking():
    a = make_synthetic(40, seed=3, chunk=7)
    b = make_synthetic(10, seed=3, start=30, chunk=4)
    assert torch.equal(a.images[30:], b.images)
    assert torch.equal(a.boxes[30:], b.boxes) and torch.equal(a.labels[30:], b.labels)
    c = make_synthetic(40, seed=4)
    assert not torch.equal(a.images, c.images)


def test_boxes_are_exact_pixel_edge_boxes_of_the_masks():
    ds = make_synthetic(64, seed=0)
    for m, box, part in zip(ds.masks, ds.boxes, ds.part_masks):
        ys, xs = torch.nonzero(m, as_tuple=True)
        assert box.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
        assert part.any() and (part & ~m).sum() == 0              # the part lies on the object
        assert part.sum() < 0.5 * m.sum()                         # and is small


def test_labels_balanced_and_object_sizes_vary():
    ds = make_synthetic(2000, seed=1)
    counts = np.bincount(ds.labels.numpy(), minlength=8)
    assert counts.min() > 0.7 * counts.mean()
    w = ds.boxes[:, 2] - ds.boxes[:, 0]
    assert w.std() > 3 and ds.boxes[:, 0].std() > 4


def test_fine_preset_and_image_size():
    spec = SyntheticSpec.preset("fine")
    out = render_synthetic(spec, 0, [0, 1, 2])
    assert out["images"].shape == (3, 3, 128, 128) and out["labels"].max() < 16
    big = SyntheticSpec(image_size=96)
    assert render_synthetic(big, 0, [5])["images"].shape == (1, 3, 96, 96)


def test_bad_specs():
    with pytest.raises(ValueError, match="image_size"):
        SyntheticSpec(image_size=8)
    with pytest.raises(ValueError, match="preset"):
        SyntheticSpec.preset("nope")
    with pytest.raises(ValueError, match="n must be"):
        make_synthetic(0)


def test_class_names_follow_the_renderer_when_heads_are_shared():
    spec = SyntheticSpec.preset("fine")
    names = spec.class_names()
    assert len(set(names)) == spec.num_classes
    assert names[0].split(",")[0] == names[1].split(",")[0]          # a pair shares its head colour
    assert names[0].split(",")[1] != names[1].split(",")[1]          # and differs in its stripes
