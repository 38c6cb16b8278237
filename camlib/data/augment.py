"""Augmentation on the device: uint8 batches in, cropped, flipped, resized and normalized floats out.

A JPEG-folder ``DataLoader`` decodes and crops every image on the CPU, one at a time; with two CPU
cores that starves a GPU. Here the images arrive decoded (a :mod:`camlib.data.cache` file or an
:class:`~camlib.data.InMemoryDataset`), a whole batch is copied to the device as uint8 (a quarter of
the bytes of float32), and the random crops of every image are cut and resized in **one** batched
op, ``torchvision.ops.roi_align`` (bilinear, averaging ``ceil(crop/output)`` samples per output
pixel, so shrinking a crop is anti-aliased). Boxes and masks move with the pixels.

Randomness: every parameter is drawn from the augmenter's own ``torch.Generator`` on the CPU
(a few numbers per image), in a fixed amount per image, so the same seed gives the same crops on a
CPU and on a GPU, :meth:`GPUAugment.state_dict` saves the stream in a checkpoint (a resumed run
draws the same crops), and under DDP every rank draws the parameters of the *global* batch and
keeps its own rows, so two processes augment exactly as one would.

Training crops follow the paper's setup (section 3: 224 crops with mirroring) and its descendants:
``mode="crop"`` cuts a fixed ``size`` window (Choe et al. 2020: resize to 256, random 224 crop,
flip), ``mode="resized_crop"`` is torchvision's RandomResizedCrop (area ``scale``, aspect ``ratio``),
``mode="resize"`` only resizes (evaluation). Introduced in lesson 03 (GPU path).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torchvision.ops import roi_align

from ..boxes import as_boxes
from .memory import IMAGENET_MEAN, IMAGENET_STD

MODES = ("resized_crop", "crop", "resize")
_TRIES = 10          # RandomResizedCrop's rejection-sampling attempts, drawn for every image


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a (B, 3, H, W) tensor; got {tuple(getattr(images, 'shape', ()))}")


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a small CPU tensor to ``device`` without stalling the host: a copy from pageable memory
    to a GPU waits for the GPU's queue to drain, one from pinned memory does not."""
    device = torch.device(device)
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _check_crops(crops: torch.Tensor, n: int) -> None:
    if not isinstance(crops, torch.Tensor):
        raise ValueError(f"crops must be a ({n}, 4) tensor of (x1, y1, x2, y2); got {type(crops).__name__}")
    as_boxes(crops, "crops", count=n)


# --------------------------------------------------------------------------------- parameters

def resized_crop_params(n: int, height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Crop windows of torchvision's RandomResizedCrop for ``n`` images, drawn all at once.

    Each image gets ``_TRIES`` candidate windows (area fraction uniform in ``scale``, aspect
    log-uniform in ``ratio``); the first that fits is kept, else a centre crop of the clamped
    aspect. Returns float ``(n, 4)`` pixel-edge boxes ``(x1, y1, x2, y2)`` with integer corners.
    """
    lo, hi = float(scale[0]), float(scale[1])
    rlo, rhi = float(ratio[0]), float(ratio[1])
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"scale must satisfy 0 < low <= high <= 1; got {tuple(scale)}")
    if not 0 < rlo <= rhi:
        raise ValueError(f"ratio must satisfy 0 < low <= high; got {tuple(ratio)}")
    u = torch.rand(n, _TRIES, 4, generator=generator, dtype=torch.float64)
    area = height * width * (lo + (hi - lo) * u[..., 0])
    aspect = torch.exp(math.log(rlo) + (math.log(rhi) - math.log(rlo)) * u[..., 1])
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.to(torch.int8).argmax(dim=1)                 # the first fitting try (0 when none fits)
    pick = lambda t: t.gather(1, first[:, None])[:, 0]      # noqa: E731
    w, h = pick(w), pick(h)
    x1 = torch.floor(pick(u[..., 2]) * (width - w + 1))
    y1 = torch.floor(pick(u[..., 3]) * (height - h + 1))
    # fallback: the whole image cut to the nearest allowed aspect, centred
    in_ratio = width / height
    if in_ratio < rlo:
        fw, fh = width, round(width / rlo)
    elif in_ratio > rhi:
        fw, fh = round(height * rhi), height
    else:
        fw, fh = width, height
    fx, fy = (width - fw) // 2, (height - fh) // 2
    none = ~ok.any(dim=1)
    w = torch.where(none, float(fw), w)
    h = torch.where(none, float(fh), h)
    x1 = torch.where(none, float(fx), x1)
    y1 = torch.where(none, float(fy), y1)
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=1).float()


def fixed_crop_params(n: int, height: int, width: int, size: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Random ``size`` x ``size`` windows (torchvision's RandomCrop), float ``(n, 4)`` pixel-edge boxes."""
    if size > height or size > width:
        raise ValueError(f"a {size}x{size} crop does not fit {height}x{width} images; cache them at >= {size} px")
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    x1 = torch.floor(u[:, 0] * (width - size + 1))
    y1 = torch.floor(u[:, 1] * (height - size + 1))
    return torch.stack([x1, y1, x1 + size, y1 + size], dim=1).float()


# --------------------------------------------------------------------------------- the ops

def crop_resize(images: torch.Tensor, crops: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Cut window ``crops[i]`` out of image ``i`` and resize it to ``size``, for the whole batch at once.

    ``images``: ``(B, C, H, W)`` (uint8 or float); ``crops``: float ``(B, 4)`` pixel-edge boxes.
    Returns float32 ``(B, C, h, w)`` in the input's value range. One ``roi_align`` call (bilinear,
    ``aligned=True`` so that pixel-edge boxes land on pixel edges, adaptive sampling that averages
    ``ceil(crop / output)`` points per output pixel). An integer window of the output's size is
    copied exactly.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W); got {tuple(getattr(images, 'shape', ()))}")
    _check_crops(crops, images.shape[0])
    out = (size, size) if isinstance(size, int) else tuple(size)
    rois = torch.cat([torch.arange(len(crops), device=images.device, dtype=torch.float32)[:, None],
                      crops.to(images.device, torch.float32)], dim=1)
    return roi_align(images.float(), rois, output_size=out, spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def transform_boxes(boxes, crops: torch.Tensor, size: int, flip: torch.Tensor | None = None):
    """Move pixel-edge boxes with the crop-resize-flip of their image (clipped to the output).

    ``boxes``: ``(B, 4)``, ``(B, N, 4)`` or a list of ``(N_i, 4)`` tensors (one per image).
    A box cut away entirely ends with zero width or height. Same structure out as in.
    """
    if isinstance(boxes, (list, tuple)):
        if len(boxes) != len(crops):
            raise ValueError(f"one box tensor per image was expected ({len(crops)}); got {len(boxes)}")
        return [transform_boxes(b[None], crops[i:i + 1], size, None if flip is None else flip[i:i + 1])[0]
                for i, b in enumerate(boxes)]
    b = torch.as_tensor(boxes)
    if b.shape[-1] != 4 or b.ndim not in (2, 3) or b.shape[0] != len(crops):
        raise ValueError(f"boxes must be (B, 4) or (B, N, 4) with B = {len(crops)}; got {tuple(b.shape)}")
    b = b.float()
    c = crops.to(b.device, torch.float32)
    if b.ndim == 2:
        c2 = c
    else:
        c2 = c[:, None, :]
    cx1, cy1 = c2[..., 0:1], c2[..., 1:2]
    sx = size / (c2[..., 2:3] - c2[..., 0:1])
    sy = size / (c2[..., 3:4] - c2[..., 1:2])
    x1, y1, x2, y2 = b.unbind(-1)
    x1 = ((x1[..., None] - cx1) * sx).clamp(0, size)[..., 0]
    x2 = ((x2[..., None] - cx1) * sx).clamp(0, size)[..., 0]
    y1 = ((y1[..., None] - cy1) * sy).clamp(0, size)[..., 0]
    y2 = ((y2[..., None] - cy1) * sy).clamp(0, size)[..., 0]
    if flip is not None:
        f = flip.to(b.device).bool()
        f = f if b.ndim == 2 else f[:, None]
        x1, x2 = torch.where(f, size - x2, x1), torch.where(f, size - x1, x2)
    return torch.stack([x1, y1, x2, y2], dim=-1)


def hflip(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the images whose ``flip`` entry is true (``(B, ..., W)``, ``flip`` bool ``(B,)``)."""
    shape = (-1,) + (1,) * (images.ndim - 1)
    return torch.where(flip.to(images.device).bool().view(shape), images.flip(-1), images)


# --------------------------------------------------------------------------------- the augmenter

class GPUAugment:
    """Random crop (+ resize), horizontal flip and normalization of a uint8 batch on its device.

    ``augment(batch)`` takes a dict with ``"image"`` uint8 ``(B, 3, H, W)`` (and optionally
    ``"boxes"`` ``(B, 4)`` / ``(B, N, 4)`` / a list, ``"mask"`` bool ``(B, H, W)``) and returns a new
    dict with the float normalized ``(B, 3, size, size)`` image and the boxes and masks moved with
    it; other keys pass through. ``part=(lo, hi, total)`` draws the parameters of a batch of
    ``total`` images and applies rows ``lo:hi`` to the given images (how DDP ranks stay identical to
    one process). ``train=False`` (evaluation) only resizes and normalizes and draws nothing.
    """

    def __init__(self, size: int = 224, *, mode: str = "resized_crop", scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                 flip: float = 0.5, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 seed: int = 0):
        if isinstance(size, bool) or not isinstance(size, int) or size < 8:
            raise ValueError(f"size must be an int >= 8; got {size!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
        if not 0.0 <= float(flip) <= 1.0:
            raise ValueError(f"flip is a probability in [0, 1]; got {flip!r}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std must have 3 entries, std > 0; got {mean!r}, {std!r}")
        self.size, self.mode, self.flip = size, mode, float(flip)
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if mode == "resized_crop":   # check scale and ratio now, not at the first batch
            resized_crop_params(1, 8, 8, self.scale, self.ratio, torch.Generator().manual_seed(0))
        self.generator = torch.Generator().manual_seed(int(seed))
        self._consts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def like(cls, dataset, size: int, **kwargs) -> "GPUAugment":
        """An augmenter that normalizes with ``dataset``'s mean and std (an InMemoryDataset or cache)."""
        return cls(size, mean=dataset.mean.flatten().tolist(), std=dataset.std.flatten().tolist(), **kwargs)

    def _affine(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(shift, scale)`` with ``(x / 255 - mean) / std = shift + scale * x``, kept on each device: the
        course's :func:`camlib.data.memory.normalize` as one multiply-add (tested to agree with it)."""
        key = str(device)
        if key not in self._consts:
            m = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
            s = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
            self._consts[key] = (to_device(-m / s, device), to_device(1.0 / (255.0 * s), device))
        return self._consts[key]

    # -- parameters
    def draw(self, n: int, height: int, width: int) -> dict[str, torch.Tensor]:
        """The random parameters of ``n`` images: ``crops`` float ``(n, 4)`` and ``flip`` bool ``(n,)``."""
        if self.mode == "resized_crop":
            crops = resized_crop_params(n, height, width, self.scale, self.ratio, self.generator)
        elif self.mode == "crop":
            crops = fixed_crop_params(n, height, width, self.size, self.generator)
        else:
            crops = torch.tensor([[0.0, 0.0, width, height]]).expand(n, 4).clone()
        flip = torch.rand(n, generator=self.generator) < self.flip
        return {"crops": crops, "flip": flip}

    def apply(self, batch: dict[str, Any], params: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Apply given parameters (from :meth:`draw`) to a batch; see the class docstring."""
        if not isinstance(batch, dict) or "image" not in batch:
            raise ValueError(f"batch must be a dict with an 'image' entry; got {type(batch).__name__}")
        images = batch["image"]
        _check_images(images)
        if images.dtype != torch.uint8:
            raise ValueError(f"GPUAugment takes uint8 images (0..255) and normalizes them itself; got {images.dtype}")
        crops, flip = to_device(params["crops"], images.device), to_device(params["flip"], images.device)
        _check_crops(crops, images.shape[0])
        out = dict(batch)
        x = crop_resize(images, crops, self.size)
        x = hflip(x, flip)
        out["image"] = torch.addcmul(*self._affine(x.device), x)      # (x / 255 - mean) / std
        if batch.get("boxes") is not None:
            out["boxes"] = transform_boxes(batch["boxes"], crops, self.size, flip)
        if batch.get("mask") is not None:
            m = crop_resize(batch["mask"][:, None].to(torch.uint8), crops, self.size)[:, 0] >= 0.5
            out["mask"] = hflip(m, flip)
        return out

    def __call__(self, batch: dict[str, Any], part: tuple[int, int, int] | None = None,
                 train: bool = True) -> dict[str, Any]:
        images = batch["image"] if isinstance(batch, dict) and "image" in batch else None
        _check_images(images)
        b, _, h, w = images.shape
        if not train:
            n = b
            params = {"crops": torch.tensor([[0.0, 0.0, w, h]]).expand(n, 4), "flip": torch.zeros(n, dtype=torch.bool)}
            return self.apply(batch, params)
        if part is None:
            lo, hi, total = 0, b, b
        else:
            lo, hi, total = (int(v) for v in part)
            if not (0 <= lo <= hi <= total and hi - lo == b):
                raise ValueError(f"part=(lo, hi, total) must satisfy 0 <= lo <= hi <= total and hi - lo = {b} "
                                 f"(the batch given); got {part!r}")
        params = self.draw(total, h, w)
        return self.apply(batch, {k: v[lo:hi] for k, v in params.items()})

    # -- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The generator's state (and the settings, to refuse a different augmenter on resume)."""
        return {"generator": self.generator.get_state(), "settings": self._settings()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("settings") != self._settings():
            raise ValueError(f"this checkpoint's augmentation was {state.get('settings')}; "
                             f"this run's is {self._settings()}")
        self.generator.set_state(state["generator"])

    def _settings(self) -> dict[str, Any]:
        return {"size": self.size, "mode": self.mode, "scale": list(self.scale), "ratio": list(self.ratio),
                "flip": self.flip, "mean": list(self.mean), "std": list(self.std)}

    def __repr__(self) -> str:
        extra = f", scale={self.scale}, ratio={tuple(round(r, 3) for r in self.ratio)}" if self.mode == "resized_crop" else ""
        return f"GPUAugment(size={self.size}, mode={self.mode!r}{extra}, flip={self.flip})"


__all__ = ["GPUAugment", "MODES", "resized_crop_params", "fixed_crop_params", "crop_resize", "transform_boxes",
           "hflip", "to_device"]
