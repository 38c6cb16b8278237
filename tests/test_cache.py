"""The decoded-image cache (camlib.data.cache): exact contents, keys, resumable builds, training on it."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from camlib import models, train
from camlib.data import make_synthetic
from camlib.data.cache import (CachedDataset, build_cache, cache_path, cached, dataset_identity, is_complete,
                               open_cache)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixtures_real as fx  # noqa: E402


class Dicts(torch.utils.data.Dataset):
    """Dicts with PIL images of several sizes, 0..3 boxes each and a mask; counts what it decodes."""

    def __init__(self, n=21, fail_at=None, seed=0):
        g = np.random.default_rng(seed)
        self.items = []
        for i in range(n):
            w, h = int(g.integers(20, 50)), int(g.integers(16, 40))
            arr = g.integers(0, 256, (h, w, 3), dtype=np.uint8)
            k = i % 4
            boxes = np.array([[1 + j, 2, w - 3 - j, h - 1] for j in range(k)], np.float32).reshape(-1, 4)
            mask = np.zeros((h, w), bool)
            mask[2:h // 2, 3:w // 2] = True
            self.items.append((arr, int(g.integers(5)), boxes, mask))
        self.fail_at, self.calls = fail_at, []

    def cache_identity(self):
        return {"name": "dicts", "n": len(self.items)}

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        self.calls.append(i)
        if i == self.fail_at:
            raise RuntimeError(f"simulated crash at image {i}")
        arr, label, boxes, mask = self.items[i]
        return {"image": Image.fromarray(arr), "label": label, "boxes": torch.from_numpy(boxes), "mask": mask}


def _ref_resize(arr, size):
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float()
    return F.interpolate(t, size=(size, size), mode="bilinear", antialias=True).round().clamp(0, 255).to(torch.uint8)[0]


def test_in_memory_dataset_round_trips_exactly(tmp_path):
    ds = make_synthetic(70, seed=1)
    same = open_cache(build_cache(ds, 64, root=tmp_path, chunk=16, progress=False))
    assert isinstance(same, CachedDataset) and len(same) == 70
    assert torch.equal(same.images, ds.images) and torch.equal(same.labels, ds.labels)
    assert torch.equal(same.boxes, ds.boxes) and torch.equal(same.masks, ds.masks)
    assert same.class_names == ds.class_names and torch.allclose(same.mean, ds.mean)
    assert torch.equal(same.batch([3, 9])["image"], ds.batch([3, 9])["image"])
    half = open_cache(build_cache(ds, 32, root=tmp_path, chunk=16, progress=False))
    ref = F.interpolate(ds.images.float(), size=(32, 32), mode="bilinear", antialias=True).round().to(torch.uint8)
    assert torch.equal(half.images, ref)
    assert torch.allclose(half.boxes, ds.boxes / 2)
    assert half.masks.shape == (70, 32, 32) and (half.original_sizes == 64).all()


def test_pil_dicts_with_varying_boxes(tmp_path):
    ds = Dicts()
    c = open_cache(build_cache(ds, 24, root=tmp_path, chunk=5, workers=0, progress=False))
    assert c.boxes is None and c.masks.shape == (21, 24, 24)     # 0..3 boxes per image: no (N, 4) form
    for i in (0, 1, 3, 20):
        arr, label, boxes, mask = ds.items[i]
        h, w = arr.shape[:2]
        assert torch.equal(c.images[i], _ref_resize(arr, 24))
        assert c.labels[i] == label and tuple(c.original_sizes[i].tolist()) == (w, h)
        scale = torch.tensor([24 / w, 24 / h, 24 / w, 24 / h])
        assert torch.allclose(c.boxes_of(i), torch.from_numpy(boxes) * scale)
        assert c[i]["boxes"].shape == (i % 4, 4) and c[i]["label"] == label
    b = c.batch([1, 3], device="cpu")
    assert isinstance(b["boxes"], list) and [len(x) for x in b["boxes"]] == [1, 3]
    assert b["image"].dtype == torch.float32 and b["mask"].shape == (2, 24, 24)


def test_key_changes_with_size_content_and_version(tmp_path):
    a, a2, other = make_synthetic(20, seed=1), make_synthetic(20, seed=1), make_synthetic(20, seed=2)
    assert dataset_identity(a) == dataset_identity(a2)
    assert cache_path(a, 32, tmp_path) == cache_path(a2, 32, tmp_path)
    assert cache_path(a, 32, tmp_path) != cache_path(a, 48, tmp_path)
    assert cache_path(a, 32, tmp_path) != cache_path(other, 32, tmp_path)
    p = build_cache(a, 32, root=tmp_path, progress=False)
    assert is_complete(p) and not is_complete(cache_path(other, 32, tmp_path))
    assert p.name.startswith("synthetic-8-s1-32px-")


def test_interrupted_build_resumes_and_skips_finished_chunks(tmp_path):
    broken = Dicts(fail_at=13)                 # chunks of 4: chunks 0..2 finish, chunk 3 (12..15) dies
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_cache(broken, 20, root=tmp_path, chunk=4, workers=0, progress=False)
    path = cache_path(broken, 20, tmp_path)
    assert not is_complete(path)
    assert sorted(p.name for p in (path / "chunks").glob("*.npz")) == ["000000.npz", "000001.npz", "000002.npz"]
    with pytest.raises(ValueError, match="unfinished"):
        open_cache(path)

    fixed = Dicts()                            # same identity: the build resumes
    assert build_cache(fixed, 20, root=tmp_path, chunk=4, workers=0, progress=False) == path
    assert min(fixed.calls) == 12               # images 0..11 were not decoded again
    resumed = open_cache(path)
    clean = open_cache(build_cache(Dicts(), 20, root=tmp_path / "clean", chunk=4, workers=0, progress=False))
    assert torch.equal(resumed.images, clean.images) and torch.equal(resumed.masks, clean.masks)
    assert torch.equal(resumed.all_boxes, clean.all_boxes) and torch.equal(resumed.box_offsets, clean.box_offsets)
    assert torch.equal(resumed.labels, clean.labels)
    assert not (path / "chunks").exists()
    calls = len(fixed.calls)
    build_cache(fixed, 20, root=tmp_path, chunk=4, workers=0, progress=False)     # finished: nothing to do
    assert len(fixed.calls) == calls


def test_parallel_build_equals_serial(tmp_path):
    a = open_cache(build_cache(Dicts(), 16, root=tmp_path / "a", chunk=3, workers=2, progress=False))
    b = open_cache(build_cache(Dicts(), 16, root=tmp_path / "b", chunk=3, workers=0, progress=False))
    for name in ("images", "labels", "masks", "all_boxes", "box_offsets", "original_sizes"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_real_loader_layout_is_cached_unnormalized(tmp_path):
    from camlib.data.cub import CUB200
    truth = fx.make_cub(tmp_path / "data")
    cub = CUB200(root=tmp_path / "data", split="train", with_masks=True)
    c = cached(cub, 32, root=tmp_path / "cache", progress=False, workers=0)
    assert len(c) == len(cub) == 6 and c.masks is not None and c.boxes.shape == (6, 4)
    train_truth = [t for t in truth if t["is_train"]]
    for i, t in enumerate(train_truth):
        w, h = t["size"]
        arr = np.asarray(Image.open(tmp_path / "data/CUB_200_2011/images" / t["path"]).convert("RGB"))
        assert torch.equal(c.images[i], _ref_resize(arr, 32))
        x1, y1, x2, y2 = t["box"]
        exp = torch.tensor([x1 * 32 / w, y1 * 32 / h, min(x2, w) * 32 / w, min(y2, h) * 32 / h])
        assert torch.allclose(c.boxes[i], exp, atol=1e-4)
        assert c.labels[i] == t["label"] and tuple(c.original_sizes[i].tolist()) == (w, h)
    assert c.class_names == cub.class_names
    # another split or size is another cache
    assert cache_path(CUB200(root=tmp_path / "data", split="test"), 32, tmp_path / "cache") != c.path


def test_fit_on_a_cache_equals_fit_in_memory(tmp_path):
    ds = make_synthetic(96, seed=0)
    c = cached(ds, 64, root=tmp_path, progress=False)
    kw = dict(steps=3, batch_size=32, seed=1, progress=False, device="cpu")
    torch.manual_seed(0)
    a = models.small_cnn(8)
    b = models.small_cnn(8)
    b.load_state_dict(a.state_dict())
    train.fit(a, ds, **kw)
    train.fit(b, c, prefetch=True, **kw)          # memory-mapped, gathered in a background thread
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="size"):
        build_cache(make_synthetic(4, seed=0), 4, root=tmp_path)

    class Normalized(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {"image": torch.randn(3, 8, 8) * 3, "label": 0}

    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        build_cache(Normalized(), 8, root=tmp_path, key="normalized", workers=0, progress=False)
    with pytest.raises(ValueError, match="not a cache folder"):
        open_cache(tmp_path / "nothing-here")
