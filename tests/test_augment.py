"""GPU-side augmentation (camlib.data.augment) and a SIGKILLed training run that resumes exactly."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from camlib import models, train
from camlib.data import make_synthetic
from camlib.data.augment import (GPUAugment, crop_resize, fixed_crop_params, resized_crop_params,
                                 transform_boxes)

REPO = Path(__file__).resolve().parents[1]
IDENTITY = dict(mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))   # output = pixel values 0..255


def _rect_images(n, h, w, gen):
    """Black images with one white rectangle each, and that rectangle's pixel-edge box."""
    imgs = torch.zeros(n, 3, h, w, dtype=torch.uint8)
    boxes = torch.zeros(n, 4)
    for i in range(n):
        x1 = int(torch.randint(0, w // 2, (1,), generator=gen))
        y1 = int(torch.randint(0, h // 2, (1,), generator=gen))
        x2 = x1 + int(torch.randint(6, w // 2, (1,), generator=gen))
        y2 = y1 + int(torch.randint(6, h // 2, (1,), generator=gen))
        imgs[i, :, y1:y2, x1:x2] = 255
        boxes[i] = torch.tensor([x1, y1, x2, y2], dtype=torch.float32)
    return imgs, boxes


@pytest.mark.parametrize("mode", ["resized_crop", "crop", "resize"])
def test_boxes_move_with_the_pixels(mode, rng):
    imgs, boxes = _rect_images(24, 60, 80, rng)
    aug = GPUAugment(40, mode=mode, scale=(0.3, 1.0), flip=0.5, seed=1, **IDENTITY)
    out = aug({"image": imgs, "boxes": boxes, "label": torch.arange(24)})
    assert out["image"].shape == (24, 3, 40, 40) and out["image"].dtype == torch.float32
    assert torch.equal(out["label"], torch.arange(24))
    checked = 0
    for i in range(24):
        b = out["boxes"][i]
        if (b[2] - b[0]) < 3 or (b[3] - b[1]) < 3:       # (almost) cut away: nothing to compare
            continue
        bright = out["image"][i, 0] > 127.5
        ys = torch.nonzero(bright.any(1))[:, 0]
        xs = torch.nonzero(bright.any(0))[:, 0]
        seen = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        assert torch.allclose(seen, b, atol=1.0), (i, seen, b)
        checked += 1
    assert checked >= 12


def test_fixed_crop_copies_pixels_exactly_and_flips(rng):
    imgs = torch.randint(0, 256, (6, 3, 20, 24), dtype=torch.uint8, generator=rng)
    aug = GPUAugment(16, mode="crop", flip=0.5, seed=3, **IDENTITY)
    params = aug.draw(6, 20, 24)
    out = aug.apply({"image": imgs}, params)["image"]
    for i in range(6):
        x1, y1, x2, y2 = (int(v) for v in params["crops"][i])
        ref = imgs[i, :, y1:y2, x1:x2].float()
        if params["flip"][i]:
            ref = ref.flip(-1)
        assert torch.allclose(out[i], ref, atol=1e-3)
    assert params["flip"].any() and not params["flip"].all()     # seed 3 flips some, not all


def test_crop_resize_of_whole_image_matches_antialiased_resize(rng):
    imgs = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=rng)
    crops = torch.tensor([[0.0, 0.0, 32.0, 32.0]] * 2)
    got = crop_resize(imgs, crops, 16)                            # 2x2 box average
    ref = torch.nn.functional.avg_pool2d(imgs.float(), 2)
    assert torch.allclose(got, ref, atol=1e-3)


def test_resized_crop_params_respect_scale_ratio_and_bounds(rng):
    c = resized_crop_params(2000, 90, 120, (0.2, 0.9), (3 / 4, 4 / 3), rng)
    w, h = c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]
    assert (c[:, 0] >= 0).all() and (c[:, 1] >= 0).all() and (c[:, 2] <= 120).all() and (c[:, 3] <= 90).all()
    area = w * h / (90 * 120)
    assert area.min() > 0.19 and area.max() < 0.92              # rounding of w, h moves the area a little
    aspect = w / h
    assert aspect.min() > 0.7 and aspect.max() < 1.4
    assert area.std() > 0.1                                      # really random
    # impossible request (the whole image at aspect 2..3 of a square): centred fallback, the whole width
    f = resized_crop_params(5, 50, 50, (1.0, 1.0), (2.0, 3.0), rng)
    assert torch.equal(f, torch.tensor([[0.0, 12.0, 50.0, 37.0]]).expand(5, 4))
    k = fixed_crop_params(100, 30, 40, 24, rng)
    assert ((k[:, 2] - k[:, 0]) == 24).all() and (k[:, 2] <= 40).all() and (k[:, 3] <= 30).all()


def test_boxes_list_and_padded_forms_agree():
    crops = torch.tensor([[10.0, 0.0, 50.0, 40.0], [0.0, 0.0, 20.0, 20.0]])
    flip = torch.tensor([True, False])
    lst = [torch.tensor([[10.0, 0.0, 30.0, 20.0], [40.0, 30.0, 60.0, 40.0]]), torch.tensor([[5.0, 5.0, 10.0, 10.0]])]
    out = transform_boxes(lst, crops, 20, flip)
    # image 0: crop x 10..50 -> scale 0.5, then mirrored: x1' = 20 - x2
    assert torch.allclose(out[0], torch.tensor([[10.0, 0.0, 20.0, 10.0], [0.0, 15.0, 5.0, 20.0]]))
    assert torch.allclose(out[1], torch.tensor([[5.0, 5.0, 10.0, 10.0]]))
    padded = transform_boxes(torch.stack([lst[0], torch.cat([lst[1], lst[1]])]), crops, 20, flip)
    assert torch.allclose(padded[0], out[0]) and torch.allclose(padded[1, 0], out[1][0])


def test_same_seed_same_batch_state_roundtrip_and_ddp_parts(rng):
    imgs = torch.randint(0, 256, (8, 3, 36, 36), dtype=torch.uint8, generator=rng)
    a, b = GPUAugment(24, seed=7), GPUAugment(24, seed=7)
    assert torch.equal(a({"image": imgs})["image"], b({"image": imgs})["image"])
    st = a.state_dict()
    nxt = a({"image": imgs})["image"]
    c = GPUAugment(24, seed=123)
    c.load_state_dict(st)
    assert torch.equal(c({"image": imgs})["image"], nxt)
    assert not torch.equal(GPUAugment(24, seed=8)({"image": imgs})["image"], nxt)
    with pytest.raises(ValueError, match="augmentation was"):
        GPUAugment(32, seed=7).load_state_dict(st)
    # two "ranks" augmenting halves of the global batch == one process augmenting all of it
    whole = GPUAugment(24, seed=9)({"image": imgs})["image"]
    r0, r1 = GPUAugment(24, seed=9), GPUAugment(24, seed=9)
    half0 = r0({"image": imgs[:4]}, part=(0, 4, 8))["image"]
    half1 = r1({"image": imgs[4:]}, part=(4, 8, 8))["image"]
    assert torch.equal(torch.cat([half0, half1]), whole)


def test_eval_mode_equals_dataset_normalization():
    ds = make_synthetic(8, seed=2)
    aug = GPUAugment.like(ds, 64, mode="resize", flip=0.0)
    idx = torch.arange(8)
    got = aug({"image": ds.images[idx]}, train=False)["image"]
    assert torch.allclose(got, ds.batch(idx)["image"], atol=1e-5)


def test_masks_follow_too(rng):
    imgs, boxes = _rect_images(4, 40, 40, rng)
    masks = imgs[:, 0] > 0
    out = GPUAugment(20, mode="resized_crop", scale=(0.5, 1.0), seed=0, **IDENTITY)(
        {"image": imgs, "mask": masks})
    assert out["mask"].dtype == torch.bool and out["mask"].shape == (4, 20, 20)
    agree = (out["mask"] == (out["image"][:, 0] > 127.5)).float().mean()
    assert agree > 0.97


def test_bad_inputs():
    imgs = torch.zeros(2, 3, 16, 16, dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8"):
        GPUAugment(8)({"image": imgs.float()})
    with pytest.raises(ValueError, match="size"):
        GPUAugment(4)
    with pytest.raises(ValueError, match="mode"):
        GPUAugment(8, mode="zoom")
    with pytest.raises(ValueError, match="scale"):
        GPUAugment(8, scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="does not fit"):
        GPUAugment(32, mode="crop")({"image": imgs})
    with pytest.raises(ValueError, match="part"):
        GPUAugment(8)({"image": imgs}, part=(0, 3, 4))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        GPUAugment(8)({"image": torch.zeros(3, 16, 16, dtype=torch.uint8)})
    with pytest.raises(ValueError, match="uint8 batches"):
        train.fit(models.small_cnn(8), [{"image": torch.zeros(3, 8, 8), "label": 0}] * 4, steps=1, batch_size=2,
                  augment=GPUAugment(8), progress=False, device="cpu")


# ------------------------------------------------------------------ a run killed with SIGKILL resumes exactly

_KILLED_RUN = r"""
import os, signal, sys, torch
torch.set_num_threads(int(sys.argv[3]))
from camlib import models, train
from camlib.data import make_synthetic
from camlib.data.augment import GPUAugment
tr = make_synthetic(96, seed=0)
model = models.small_cnn(8)
model.load_state_dict(torch.load(sys.argv[1]))

def die(model, row):
    if row["step"] >= 5:
        os.kill(os.getpid(), signal.SIGKILL)       # the kernel dies: no cleanup, no flush

train.fit(model, tr, steps=8, batch_size=32, seed=5, checkpoint=sys.argv[2], checkpoint_every=3, eval_every=5,
          on_eval=die, augment=GPUAugment.like(tr, 48, scale=(0.4, 1.0), seed=11), progress=False, device="cpu")
print("not killed")
"""


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_same_weights(tmp_path):
    tr = make_synthetic(96, seed=0)
    kw = dict(steps=8, batch_size=32, seed=5, checkpoint_every=3, eval_every=5, progress=False, device="cpu")
    torch.manual_seed(0)
    init = train.model_state(models.small_cnn(8))
    torch.save(init, tmp_path / "init.pt")

    full = models.small_cnn(8)
    full.load_state_dict(init)
    train.fit(full, tr, checkpoint=tmp_path / "full.pt",
              augment=GPUAugment.like(tr, 48, scale=(0.4, 1.0), seed=11), **kw)

    script = tmp_path / "run.py"
    script.write_text(_KILLED_RUN)
    ckpt = tmp_path / "run.pt"
    env = dict(os.environ, PYTHONPATH=str(REPO), CAMLIB_DEVICE="cpu")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "init.pt"), str(ckpt),
                           str(torch.get_num_threads())], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    st = train.load_checkpoint(ckpt)
    assert st["step"] == 3 and st["augment"] is not None       # it ran to step 5, saved at 3

    resumed = models.small_cnn(8)                              # fresh weights, fresh augmenter (same seed)
    train.fit(resumed, tr, checkpoint=ckpt, resume=True,
              augment=GPUAugment.like(tr, 48, scale=(0.4, 1.0), seed=11), **kw)
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k

    # the augmenter's stream matters: resuming with its state dropped lands elsewhere
    st["augment"]["generator"] = torch.Generator().manual_seed(99).get_state()
    torch.save(st, tmp_path / "other.pt")
    other = models.small_cnn(8)
    train.fit(other, tr, checkpoint=tmp_path / "other.pt", resume=True,
              augment=GPUAugment.like(tr, 48, scale=(0.4, 1.0), seed=11), **kw)
    assert not all(torch.equal(v, other.state_dict()[k]) for k, v in full.state_dict().items())


def test_fit_compile_flag_compiles_the_training_model(tmp_path, monkeypatch):
    """compile=True hands the model to torch.compile (the real compiler needs ~1 min here: faked),
    and checkpoints keep the plain module's parameter names."""
    seen = []

    class Compiled(torch.nn.Module):              # like torch.compile's OptimizedModule: keys get a prefix
        def __init__(self, m):
            super().__init__()
            self._orig_mod = m

        def forward(self, x):
            return self._orig_mod(x)

    def fake_compile(m, **kw):
        seen.append(m)
        return Compiled(m)

    monkeypatch.setattr(torch, "compile", fake_compile)
    tr = make_synthetic(64, seed=0)
    model = models.small_cnn(8)
    train.fit(model, tr, steps=2, batch_size=32, compile=True, checkpoint=tmp_path / "c.pt", progress=False,
              device="cpu", augment=GPUAugment.like(tr, 56, mode="crop"))
    assert seen == [model]
    keys = set(train.load_checkpoint(tmp_path / "c.pt")["model"])
    assert keys == set(model.state_dict()) and not any("_orig_mod" in k for k in keys)


def test_the_augmenters_multiply_add_is_the_one_normalization():
    from camlib.data.memory import IMAGENET_MEAN, IMAGENET_STD, denormalize, normalize
    same = GPUAugment(24, mode="resize", flip=0.0, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    x2 = torch.randint(0, 256, (2, 3, 24, 24), dtype=torch.uint8)
    assert torch.allclose(same.apply({"image": x2}, same.draw(2, 24, 24))["image"],
                          normalize(x2, IMAGENET_MEAN, IMAGENET_STD), atol=1e-5)
    assert torch.allclose(denormalize(normalize(x2, IMAGENET_MEAN, IMAGENET_STD), IMAGENET_MEAN, IMAGENET_STD),
                          x2.float() / 255, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        normalize(x2[0], IMAGENET_MEAN, IMAGENET_STD)
