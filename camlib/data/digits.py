"""Real handwritten digits pasted into clutter: data for a weakly-supervised digit detector.

Paper section 4.2 trains a *text detector* from image-level labels only ("contains text" or not)
and lets the CAM find the text. Offline, the same experiment runs on scikit-learn's real
handwritten digits (``sklearn.datasets.load_digits``: 1,797 scans of 8x8 pixels, 16 grey levels):

* a positive image has one digit, upscaled (smoothly) to a random size, pasted at a random place
  in a contrasting ink colour; a negative image has none;
* backgrounds are random crops of the real photos that ship with scikit-image and scikit-learn
  (``background="photos"``) or procedural clutter (``"clutter"``), and every image, positive or
  not, carries a few distractor *strokes* (line segments and arcs in the same inks and widths),
  so that "has ink" does not give the label away: the detector has to know what a digit looks
  like;
* ``digits="train"`` uses the first 1,200 scanned digits and ``"test"`` the other 597, so a test
  image never shows a digit seen in training.

Labels are 1 (digit) / 0 (none); ``boxes`` is the digit's exact box (pixels whose ink coverage
is at least one half, pixel-edge) and ``masks`` those pixels; a negative image gets the whole-image
box and an empty mask. ``extras["digit"]`` is the digit's value (``-1`` for none). Everything is a
function of ``(seed, index)``. Introduced in lesson 05.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from .memory import IMAGENET_MEAN, IMAGENET_STD, InMemoryDataset

#: Photos used as backgrounds (no text in them; all ship inside the installed packages).
BACKGROUND_PHOTOS = (
    ("skimage", "chelsea"), ("skimage", "coffee"), ("skimage", "astronaut"), ("skimage", "rocket"),
    ("skimage", "camera"), ("skimage", "immunohistochemistry"), ("skimage", "brick"), ("skimage", "grass"),
    ("skimage", "gravel"), ("skimage", "moon"), ("skimage", "hubble_deep_field"), ("sklearn", "china.jpg"),
    ("sklearn", "flower.jpg"),
)
TRAIN_DIGITS = 1200      # scanned digits 0..1199 for "train", 1200..1796 for "test"


@dataclass(frozen=True)
class DigitSpec:
    """What the digit-scene generator draws. Lengths are in pixels at ``image_size`` (scaled from 96 px)."""

    image_size: int = 96
    digit_size: tuple[float, float] = (30.0, 46.0)   # side of the square the 8x8 scan is enlarged to
    p_digit: float = 0.5
    background: Literal["photos", "clutter"] = "photos"
    strokes: tuple[int, int] = (1, 3)                # distractor strokes per image (inclusive range)
    digits: Literal["train", "test", "all"] = "train"
    noise: float = 0.03

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or self.image_size < 32:
            raise ValueError(f"image_size must be an int >= 32, got {self.image_size!r}")
        if not 8.0 <= self.digit_size[0] <= self.digit_size[1] <= 96.0:
            raise ValueError(f"digit_size must be a range 8 <= lo <= hi <= 96 (at 96 px); got {self.digit_size}")
        if not 0.0 <= self.p_digit <= 1.0:
            raise ValueError(f"p_digit must be in [0, 1], got {self.p_digit}")
        if self.background not in ("photos", "clutter"):
            raise ValueError(f"background must be 'photos' or 'clutter', got {self.background!r}")
        if self.digits not in ("train", "test", "all"):
            raise ValueError(f"digits must be 'train', 'test' or 'all', got {self.digits!r}")
        if not 0 <= self.strokes[0] <= self.strokes[1] <= 10:
            raise ValueError(f"strokes must be a range 0 <= lo <= hi <= 10, got {self.strokes}")

    @property
    def scale(self) -> float:
        return self.image_size / 96.0


@lru_cache(maxsize=1)
def _scans() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


@lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    import skimage.data
    from sklearn.datasets import load_sample_image
    out = []
    for pkg, name in BACKGROUND_PHOTOS:
        img = getattr(skimage.data, name)() if pkg == "skimage" else load_sample_image(name)
        img = np.asarray(img)
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        out.append(np.ascontiguousarray(img[:, :, :3]).astype(np.float32) / 255.0)
    return tuple(out)


def _resize(a: np.ndarray, size: int) -> np.ndarray:
    """``(h, w, C)`` or ``(h, w)`` float array to ``size`` x ``size`` (bilinear, antialiased)."""
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    aa = t.shape[-1] > size
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=aa)[0]
    return out[0].numpy() if a.ndim == 2 else out.permute(1, 2, 0).numpy()


def _background(spec: DigitSpec, rng: np.random.Generator) -> np.ndarray:
    S = spec.image_size
    if spec.background == "photos":
        photos = _photos()
        p = photos[int(rng.integers(len(photos)))]
        h, w = p.shape[:2]
        side = int(rng.uniform(0.35, 0.9) * min(h, w))
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        img = _resize(p[y0:y0 + side, x0:x0 + side], S)
        if rng.uniform() < 0.5:
            img = img[:, ::-1]
        return np.ascontiguousarray(img)
    cells = int(rng.integers(4, 10))
    grid = rng.uniform(0.2, 0.8, size=(cells, cells, 1)) + rng.uniform(-0.15, 0.15, size=(cells, cells, 3))
    g = -(-S // cells)
    img = np.repeat(np.repeat(grid, g, axis=0), g, axis=1)[:S, :S]
    return np.clip(img, 0, 1).astype(np.float32)


def _ink(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """An ink colour that contrasts with the mean colour ``under`` it (dark on light, light on dark)."""
    lum = float(under.mean())
    base = rng.uniform(0.0, 0.2, size=3) if lum > 0.5 else rng.uniform(0.8, 1.0, size=3)
    tint = rng.uniform(-0.15, 0.15, size=3)
    return np.clip(base + tint, 0, 1).astype(np.float32)


def _stroke(rng: np.random.Generator, S: int, s: float, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Ink coverage in [0, 1] of one distractor stroke: a thick line segment or a circular arc."""
    width = rng.uniform(3.5, 6.5) * s                 # about a digit's stroke width
    cx, cy = rng.uniform(0.1 * S, 0.9 * S, size=2)
    if rng.uniform() < 0.5:
        length = rng.uniform(12, 30) * s
        th = rng.uniform(0, np.pi)
        ux, uy = np.cos(th), np.sin(th)
        t = np.clip((xx - cx) * ux + (yy - cy) * uy, -length / 2, length / 2)
        d = np.hypot(xx - cx - t * ux, yy - cy - t * uy)
    else:
        r = rng.uniform(6, 14) * s
        a0 = rng.uniform(0, 2 * np.pi)
        span = rng.uniform(0.6, 1.4) * np.pi
        ang = np.mod(np.arctan2(yy - cy, xx - cx) - a0, 2 * np.pi)
        d = np.where(ang <= span, np.abs(np.hypot(xx - cx, yy - cy) - r), np.inf)
    return np.clip(width / 2 - d + 0.5, 0, 1).astype(np.float32)


def render_digit_scenes(spec: DigitSpec, seed: int, indices) -> dict[str, np.ndarray]:
    """Render images ``indices``: uint8 images, labels, digit values, boxes and masks."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(idx) and idx.min() < 0:
        raise ValueError(f"indices must be non-negative, got min {idx.min()}")
    scans, values = _scans()
    pool = {"train": np.arange(TRAIN_DIGITS), "test": np.arange(TRAIN_DIGITS, len(scans)),
            "all": np.arange(len(scans))}[spec.digits]
    S, s, B = spec.image_size, spec.scale, len(idx)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) + 0.5
    images = np.zeros((B, 3, S, S), dtype=np.uint8)
    labels = np.zeros(B, dtype=np.int64)
    digit = np.full(B, -1, dtype=np.int64)
    boxes = np.tile(np.array([0, 0, S, S], dtype=np.float32), (B, 1))
    masks = np.zeros((B, S, S), dtype=bool)
    for b, i in enumerate(idx):
        rng = np.random.default_rng([int(seed), int(i), 0xD161])
        img = _background(spec, rng)
        for _ in range(int(rng.integers(spec.strokes[0], spec.strokes[1] + 1))):
            a = _stroke(rng, S, s, xx, yy)
            under = img[a > 0.5] if (a > 0.5).any() else img.reshape(-1, 3)
            img = img * (1 - a[..., None]) + _ink(rng, under) * a[..., None]
        if rng.uniform() < spec.p_digit:
            k = int(pool[rng.integers(len(pool))])
            side = int(round(rng.uniform(*spec.digit_size) * s))
            cover = np.clip((_resize(scans[k], side) - 0.45) * 4.0, 0, 1)   # crisp strokes from the grey scan
            x0, y0 = int(rng.integers(0, S - side + 1)), int(rng.integers(0, S - side + 1))
            a = np.zeros((S, S), dtype=np.float32)
            a[y0:y0 + side, x0:x0 + side] = cover
            m = a >= 0.5
            if m.any():
                img = img * (1 - a[..., None]) + _ink(rng, img[m]) * a[..., None]
                ys, xs = np.nonzero(m.any(axis=1))[0], np.nonzero(m.any(axis=0))[0]
                boxes[b] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
                masks[b], labels[b], digit[b] = m, 1, values[k]
        img = img + rng.standard_normal(img.shape).astype(np.float32) * spec.noise
        images[b] = (np.clip(img, 0, 1).transpose(2, 0, 1) * 255 + 0.5).astype(np.uint8)
    return dict(images=images, labels=labels, digit=digit, boxes=boxes, masks=masks)


def make_digit_scenes(n: int, seed: int = 0, spec: DigitSpec | None = None, *, start: int = 0,
                      imagenet_norm: bool = False) -> InMemoryDataset:
    """``n`` digit-or-not images (indices ``start .. start+n-1``) as an :class:`InMemoryDataset`.

    ``imagenet_norm``: normalize batches with the ImageNet statistics (for pretrained networks)
    instead of the synthetic data's. Lesson 05.

    >>> ds = make_digit_scenes(8, seed=0)
    >>> ds.images.shape, ds.class_names
    (torch.Size([8, 3, 96, 96]), ['no digit', 'digit'])
    """
    spec = spec if spec is not None else DigitSpec()
    if not isinstance(spec, DigitSpec):
        raise ValueError(f"spec must be a DigitSpec, got {type(spec).__name__}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    out = render_digit_scenes(spec, seed, np.arange(start, start + n))
    norm = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD) if imagenet_norm else {}
    return InMemoryDataset(torch.from_numpy(out["images"]), torch.from_numpy(out["labels"]),
                           torch.from_numpy(out["boxes"]), torch.from_numpy(out["masks"]), None,
                           class_names=["no digit", "digit"], extras={"digit": torch.from_numpy(out["digit"])},
                           name=f"digits-{spec.digits}-s{seed}", **norm)
