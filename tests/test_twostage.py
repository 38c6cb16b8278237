import pytest
import torch

from camlib import metrics, models, train, twostage
from camlib.data import InMemoryDataset, make_synthetic


def test_crop_boxes_margin_square_and_centre():
    boxes = torch.tensor([[40.0, 50.0, 60.0, 60.0]])           # 20 wide, 10 high, centre (50, 55)
    plain = twostage.crop_boxes(boxes, 200, margin=0.0, square=False)
    assert torch.allclose(plain, boxes)
    m = twostage.crop_boxes(boxes, 200, margin=0.25, square=False)   # each side grows by a quarter
    assert torch.allclose(m, torch.tensor([[35.0, 47.5, 65.0, 62.5]]))
    sq = twostage.crop_boxes(boxes, 200, margin=0.25, square=True)   # 30 x 15 -> 30 x 30, same centre
    assert torch.allclose(sq, torch.tensor([[35.0, 40.0, 65.0, 70.0]]))


def test_crop_boxes_shift_inside_then_clip():
    # near the top-left corner: shifted inside, size kept
    b = twostage.crop_boxes(torch.tensor([[0.0, 2.0, 10.0, 12.0]]), (100, 80), margin=0.5, square=True)
    assert torch.allclose(b, torch.tensor([[0.0, 0.0, 20.0, 20.0]]))
    # near the bottom-right corner of a non-square image (H=100, W=80)
    b = twostage.crop_boxes(torch.tensor([[70.0, 90.0, 80.0, 100.0]]), (100, 80), margin=0.5)
    assert torch.allclose(b, torch.tensor([[60.0, 80.0, 80.0, 100.0]]))
    # larger than the image: clipped to it
    b = twostage.crop_boxes(torch.tensor([[10.0, 10.0, 70.0, 90.0]]), (100, 80), margin=0.5)
    assert torch.allclose(b, torch.tensor([[0.0, 0.0, 80.0, 100.0]]))
    # a degenerate box still gets a crop of at least min_size
    b = twostage.crop_boxes(torch.tensor([[5.0, 5.0, 5.0, 5.0]]), 50, margin=0.0, min_size=4)
    assert torch.allclose(b, torch.tensor([[3.0, 3.0, 7.0, 7.0]]))


def test_crop_boxes_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        twostage.crop_boxes(torch.zeros(4), 10)
    with pytest.raises(ValueError, match="x2 >= x1"):
        twostage.crop_boxes(torch.tensor([[5.0, 0.0, 1.0, 3.0]]), 10)
    with pytest.raises(ValueError, match="margin"):
        twostage.crop_boxes(torch.tensor([[0.0, 0.0, 1.0, 3.0]]), 10, margin=-1)


def test_crop_images_reads_pixel_edge_boxes_exactly(rng):
    img = torch.rand(2, 3, 8, 8, generator=rng) * 255        # random: a blur or a shift would show
    # an integer box, cropped at its own size, returns exactly its pixels
    box = torch.tensor([[2.0, 3.0, 6.0, 7.0], [0.0, 0.0, 8.0, 8.0]])
    out = twostage.crop_images(img, box, 4)
    assert torch.allclose(out[0], img[0, :, 3:7, 2:6], atol=1e-4)
    # the whole image halved: each output pixel is the mean of a 2x2 block
    assert torch.allclose(out[1], torch.nn.functional.avg_pool2d(img[1:2], 2)[0], atol=1e-4)
    u8 = img.round().to(torch.uint8)
    assert torch.equal(twostage.crop_images(u8, box, 4)[0], u8[0, :, 3:7, 2:6])
    with pytest.raises(ValueError, match="one box per image"):
        twostage.crop_images(img, box[:1], 4)


def test_boxes_into_crops_and_masks():
    crops = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    b = twostage.boxes_into_crops(torch.tensor([[15.0, 25.0, 25.0, 45.0]]), crops, 40)   # 2x zoom, clipped
    assert torch.allclose(b, torch.tensor([[10.0, 10.0, 30.0, 40.0]]))
    mask = torch.zeros(1, 50, 50, dtype=torch.bool)
    mask[0, 25:35, 15:25] = True
    cm = twostage.crop_masks(mask, crops, 20)          # same scale: the mask moves by (-10, -20)
    assert cm[0, 5:15, 5:15].all() and cm.sum() == 100


def test_crop_dataset_carries_labels_boxes_and_masks():
    ds = make_synthetic(12, seed=0)
    crops = twostage.crop_dataset(ds, ds.boxes, 32, margin=0.2)
    assert crops.images.shape == (12, 3, 32, 32) and torch.equal(crops.labels, ds.labels)
    assert crops.masks.shape == (12, 32, 32) and crops.part_masks.shape == (12, 32, 32)
    # the object box fills the middle of the square crop: margins of about 0.2/1.4 of the side
    side = crops.boxes[:, 2:] - crops.boxes[:, :2]
    assert (side.max(1).values > 32 / 1.4 - 1.5).all()
    assert torch.equal(crops.extras["crop_box"], twostage.crop_boxes(ds.boxes, 64, margin=0.2))
    # the carried mask's box agrees with the carried box to a pixel
    for m, b in zip(crops.masks, crops.boxes):
        ys, xs = torch.nonzero(m, as_tuple=True)
        got = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
        assert (got - b).abs().max() <= 1.5


def test_pipeline_end_to_end_on_tiny_data():
    torch.manual_seed(0)
    tr, te = make_synthetic(128, seed=1), make_synthetic(32, seed=2)
    m1 = models.small_cnn(8, widths=(8, 8, 8, 8, 8))
    train.fit(m1, tr, steps=3, batch_size=64, progress=False, device="cpu")
    s1 = twostage.cam_boxes(m1, tr)
    assert s1["boxes"].shape == (128, 4) and s1["maps"].shape == (128, 16, 16)
    assert torch.equal(s1["classes"], s1["logits"].argmax(1))
    # the boxes are those of the paper's rule on the upsampled top-1 maps
    from camlib import cam, localize
    ref = localize.boxes_from_maps(cam.upsample(s1["maps"][:5], (64, 64)))
    assert torch.allclose(s1["boxes"][:5], ref)
    crops = twostage.crop_dataset(tr, s1["boxes"], 32)
    m2 = models.small_cnn(8, widths=(8, 8, 8, 8, 8))
    train.fit(m2, crops, steps=2, batch_size=64, progress=False, device="cpu")
    out = twostage.two_stage_predict(m1, m2, te, input_size=64, crop_size=32)
    assert out["crop_logits"].shape == (32, 8) and out["crops"].images.shape == (32, 3, 32, 32)
    direct = train.predict(m2, out["crops"], maps=None)["logits"]
    assert torch.allclose(out["crop_logits"], direct, atol=1e-5)
    assert torch.equal(out["full_pred"], train.predict(m1, te, maps=None)["logits"].argmax(1))
    # stage 1 on a downsized copy: its boxes come back in the original's pixels
    small = twostage.resize_dataset(te, 32)
    out2 = twostage.two_stage_predict(m1, m2, te, input_size=32, crop_size=32)
    s_small = twostage.cam_boxes(m1, small)
    assert torch.allclose(out2["boxes"], s_small["boxes"] * 2)
    assert torch.equal(out2["full_pred"], s_small["classes"])


def test_resize_dataset_and_boxes_from_crops_invert():
    ds = make_synthetic(6, seed=0)
    small = twostage.resize_dataset(ds, 32)
    assert small.images.shape == (6, 3, 32, 32) and small.masks.shape == (6, 32, 32)
    assert torch.allclose(small.boxes, ds.boxes / 2)
    ref = torch.nn.functional.interpolate(ds.images[:1].float(), size=(32, 32), mode="bilinear", antialias=True)
    assert torch.equal(small.images[0], ref.round().to(torch.uint8)[0])
    assert torch.equal(twostage.boxes_from_crops(small.boxes, small.extras["crop_box"], 32), ds.boxes)
    # antialiased: a 2-px checkerboard (invisible at half size) becomes flat grey, not a pattern
    checker = ((torch.arange(64)[:, None] + torch.arange(64)[None]) % 2 * 255).to(torch.uint8)
    flat = twostage.resize_dataset(InMemoryDataset(checker.expand(1, 3, 64, 64).clone(), torch.zeros(1)), 24)
    assert int(flat.images.max()) - int(flat.images.min()) <= 3
    crops = torch.tensor([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 64.0, 64.0]])
    b = torch.tensor([[1.0, 2.0, 3.0, 4.0], [8.0, 8.0, 16.0, 24.0]])
    inside = b + torch.tensor([[12.0, 22.0, 12.0, 22.0], [0, 0, 0, 0]])          # boxes within their crops
    back = twostage.boxes_from_crops(twostage.boxes_into_crops(inside, crops, 16), crops, 16)
    assert torch.allclose(back, inside)


def test_jitter_boxes_stays_in_image_and_moves():
    g = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[10.0, 10.0, 30.0, 40.0]]).repeat(200, 1)
    j = twostage.jitter_boxes(boxes, 50, scale=0.2, shift=0.1, generator=g)
    assert (j[:, 0::2] >= 0).all() and (j[:, 0::2] <= 50).all() and (j[:, 2] > j[:, 0]).all()
    cx = (j[:, 0] + j[:, 2]) / 2
    assert (cx - 20).abs().max() <= 2.0 + 1e-5 and (cx - 20).abs().max() > 1.0
    w = j[:, 2] - j[:, 0]
    assert w.min() >= 20 * 0.8 - 1e-4 and w.max() <= 20 * 1.2 + 1e-4 and w.std() > 1


def test_run_two_stage_on_tiny_data():
    tr, te = make_synthetic(96, seed=1), make_synthetic(24, seed=2)
    build = lambda: models.small_cnn(8, widths=(8, 8, 8, 8, 8))  # noqa: E731
    out = twostage.run_two_stage(tr, te, build, input_size=32, crop_size=32, steps=2, batch_size=32,
                                 progress=False, device="cpu")
    for k in ("acc_full", "acc_crop", "acc_gt", "loc_acc", "max_box_acc_v2"):
        assert 0.0 <= out[k] <= 1.0
    assert out["boxes"].shape == (24, 4) and out["crops_test"].images.shape == (24, 3, 32, 32)
    # the reported numbers are those of the returned models
    again = twostage.two_stage_predict(out["stage1"], out["stage2"], te, input_size=32, crop_size=32)
    assert torch.allclose(again["boxes"], out["boxes"])
    assert out["acc_crop"] == float((again["crop_pred"] == te.labels).float().mean())
    assert out["loc_acc"] == metrics.box_accuracy(again["boxes"], te.boxes)
    with pytest.raises(ValueError, match="InMemoryDataset"):
        twostage.run_two_stage([], te, build, input_size=32, crop_size=32, steps=1)


def test_run_two_stage_on_a_cached_cub_copy_with_augmentation(tmp_path):
    # the gpu path of lesson 04 on a tiny CUB in its published layout: cache, random crops, resize
    from camlib.data.augment import GPUAugment
    from camlib.data.cache import cached
    from camlib.data.cub import CUB200
    from fixtures_real import make_cub

    make_cub(tmp_path, with_segmentations=False)
    tr = cached(CUB200(tmp_path, split="train"), 48, root=tmp_path / "cache", workers=0, progress=False)
    te = cached(CUB200(tmp_path, split="test"), 48, root=tmp_path / "cache", workers=0, progress=False)
    assert tr.boxes is not None and len(tr) == 6 and len(te) == 3
    out = twostage.run_two_stage(
        tr, te, lambda: models.small_cnn(3, widths=(4, 4, 4, 4, 4)), input_size=32, crop_size=32, train_size=40,
        steps=2, batch_size=2, margin=0.1, progress=False, device="cpu",
        augment=lambda ds, size: GPUAugment.like(ds, size, mode="crop", flip=0.5))
    assert out["crops_test"].images.shape == (3, 3, 32, 32)
    assert out["boxes"].shape == (3, 4) and (out["boxes"][:, 2:] <= 48).all()
    for k in ("acc_full", "acc_crop", "acc_gt"):            # fractions of the 3 test images
        assert 0.0 <= out[k] <= 1.0 and abs(out[k] * 3 - round(out[k] * 3)) < 1e-5


def test_same_size_boxes_keep_each_size_and_move_it():
    g = torch.Generator().manual_seed(0)
    regions = torch.tensor([[10.0, 20.0, 40.0, 50.0], [0.0, 0.0, 90.0, 90.0], [60.0, 60.0, 70.0, 70.0]])
    for where in ("random", "centre"):
        out = twostage.same_size_boxes(regions.repeat(50, 1), (80, 100), where, generator=g)
        size = out[:, 2:] - out[:, :2]
        want = torch.minimum(regions[:, 2:] - regions[:, :2], torch.tensor([100.0, 80.0])).repeat(50, 1)
        assert torch.allclose(size, want)                                        # exactly each one's size
        assert (out[:, :2] >= -1e-5).all() and (out[:, 2] <= 100 + 1e-4).all() and (out[:, 3] <= 80 + 1e-4).all()
    centre = twostage.same_size_boxes(regions, (80, 100), "centre")
    assert torch.allclose((centre[:, :2] + centre[:, 2:]) / 2, torch.tensor([[50.0, 40.0]] * 2 + [[50.0, 40.0]]))
    rand = twostage.same_size_boxes(regions[:1].repeat(400, 1), (80, 100), "random", generator=g)
    assert rand[:, 0].std() > 15 and rand[:, 0].max() > 60 and rand[:, 0].min() < 10   # spread over where it fits
    with pytest.raises(ValueError, match="where"):
        twostage.same_size_boxes(regions, 80, "left")


def test_box_coverage():
    boxes = torch.tensor([[10.0, 10.0, 20.0, 20.0]] * 3)
    regions = torch.tensor([[0.0, 0.0, 40.0, 40.0], [15.0, 10.0, 40.0, 40.0], [30.0, 30.0, 40.0, 40.0]])
    assert torch.allclose(twostage.box_coverage(regions, boxes), torch.tensor([1.0, 0.5, 0.0]))
    with pytest.raises(ValueError, match="one region per box"):
        twostage.box_coverage(regions[:2], boxes)


def test_probe_boxes_and_probe_accuracy_follow_the_svm():
    from camlib import cam, features, localize
    torch.manual_seed(0)
    net = features.freeze(models.small_cnn(8, widths=(8, 8, 8, 8, 12)))
    tr, te = make_synthetic(64, seed=1), make_synthetic(24, seed=2)
    acc, probe = twostage.probe_accuracy(net, tr, te, C=0.1)
    f = features.extract(net, te, maps=True)
    assert acc == probe.accuracy(f["features"], f["labels"])
    out = twostage.probe_boxes(net, probe, te, batch_size=10)
    cls = probe.decision(f["features"]).argmax(1)
    assert torch.equal(out["classes"], cls)
    maps = features.probe_cams(f["maps"], probe, cls)[:, 0]
    assert torch.allclose(out["maps"], maps, atol=1e-5)
    assert torch.allclose(out["boxes"], localize.boxes_from_maps(cam.upsample(maps, (64, 64))))


def test_an_empty_cam_box_crops_the_whole_image():
    boxes = torch.tensor([[0.0, 0, 0, 0], [10, 10, 20, 20]])
    out = twostage.crop_boxes(boxes, (64, 80), margin=0.2, min_size=8)
    assert out[0].tolist() == [0.0, 0.0, 80.0, 64.0]
    assert out[1].tolist() != [0.0, 0.0, 80.0, 64.0] and float(out[1, 2] - out[1, 0]) == 14.0
