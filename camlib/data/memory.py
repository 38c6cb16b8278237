"""A dataset held in memory as uint8 tensors, handed out in whole batches.

The synthetic data (and any decoded cache) lives here: ``images`` stay uint8 ``(N, 3, H, W)`` for
display and are normalized to float only when a batch is taken, on whatever device the tensors
live on. Introduced in lesson 01.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

#: Normalization of the synthetic images: 0.5 mean, 0.25 std on every channel.
SYNTH_MEAN = (0.5, 0.5, 0.5)
SYNTH_STD = (0.25, 0.25, 0.25)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _as_channels(values, like: torch.Tensor) -> torch.Tensor:
    t = values if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=torch.float32)
    return t.to(like.device, torch.float32).reshape(1, -1, 1, 1)


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """The one normalization of the course: pixel values 0..255 (uint8, or float such as a resized
    image) ``(B, 3, H, W)`` to ``(x / 255 - mean) / std``, the float input the models expect.
    ``mean``/``std``: three numbers (e.g. :data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`) or tensors."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images (B, 3, H, W) as a tensor; got {getattr(images, 'shape', type(images))}")
    return (images.float() / 255.0 - _as_channels(mean, images)) / _as_channels(std, images)


def denormalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """Model input ``(B, 3, H, W)`` back to floats in [0, 1] for display (undoes :func:`normalize`)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images (B, 3, H, W) as a tensor; got {getattr(images, 'shape', type(images))}")
    return (images * _as_channels(std, images) + _as_channels(mean, images)).clamp(0, 1)


def _check_len(name: str, t: torch.Tensor | None, n: int) -> None:
    if t is not None and len(t) != n:
        raise ValueError(f"{name} has {len(t)} entries but images has {n}; expected one per image")


class InMemoryDataset(torch.utils.data.Dataset):
    """Images, labels, one box per image and optional masks, all as tensors.

    ``images``: uint8 ``(N, 3, H, W)``; ``labels``: int64 ``(N,)``; ``boxes``: float ``(N, 4)``
    pixel-edge ``(x1, y1, x2, y2)``; ``masks`` / ``part_masks``: bool ``(N, H, W)`` (the whole object
    and its small discriminative part). ``extras`` holds any further per-image tensors.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, boxes: torch.Tensor | None = None,
                 masks: torch.Tensor | None = None, part_masks: torch.Tensor | None = None, *,
                 mean: Sequence[float] = SYNTH_MEAN, std: Sequence[float] = SYNTH_STD,
                 class_names: Sequence[str] | None = None, extras: dict[str, torch.Tensor] | None = None,
                 name: str = "in-memory"):
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            got = f"{getattr(images, 'dtype', type(images))} {tuple(getattr(images, 'shape', ()))}"
            raise ValueError(f"images must be a uint8 tensor of shape (N, 3, H, W); got {got}")
        n, _, h, w = images.shape
        labels = torch.as_tensor(labels, dtype=torch.long)
        _check_len("labels", labels, n)
        if boxes is not None:
            boxes = torch.as_tensor(boxes, dtype=torch.float32)
            if boxes.ndim != 2 or boxes.shape[1] != 4:
                raise ValueError(f"boxes must have shape (N, 4); got {tuple(boxes.shape)}")
            _check_len("boxes", boxes, n)
        for nm, m in (("masks", masks), ("part_masks", part_masks)):
            if m is not None:
                if m.dtype != torch.bool or tuple(m.shape) != (n, h, w):
                    raise ValueError(f"{nm} must be a bool tensor of shape {(n, h, w)}; got {m.dtype} {tuple(m.shape)}")
        self.images, self.labels, self.boxes = images, labels, boxes
        self.masks, self.part_masks = masks, part_masks
        self.extras = dict(extras or {})
        for k, v in self.extras.items():
            _check_len(f"extras[{k!r}]", v, n)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.class_names = list(class_names) if class_names is not None else None
        self.name = name

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else int(self.labels.max()) + 1

    @property
    def device(self) -> torch.device:
        return self.images.device

    def normalize(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, H, W)`` to the float input the models expect (:func:`normalize`)."""
        return normalize(images_uint8, self.mean, self.std)

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Model input back to floats in [0, 1] for display (:func:`denormalize`)."""
        return denormalize(images, self.mean, self.std)

    def batch(self, indices: Any, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """A whole batch at once: normalized float images plus labels, boxes and masks."""
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.images.device)
        if idx.ndim != 1:
            raise ValueError(f"indices must be 1-D; got shape {tuple(idx.shape)}")
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise ValueError(f"indices must lie in [0, {len(self)}); got min {int(idx.min())}, max {int(idx.max())}")
        out: dict[str, torch.Tensor] = {"image": self.images[idx], "label": self.labels.to(idx.device)[idx]}
        if self.boxes is not None:
            out["boxes"] = self.boxes.to(idx.device)[idx]
        if self.masks is not None:
            out["mask"] = self.masks[idx]
        if self.part_masks is not None:
            out["part_mask"] = self.part_masks[idx]
        for k, v in self.extras.items():
            out[k] = v.to(idx.device)[idx]
        if device is not None:
            out = {k: v.to(device, non_blocking=True) for k, v in out.items()}
        out["image"] = self.normalize(out["image"])
        return out

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} images")
        b = self.batch([i % len(self)])
        sample = {k: v[0] for k, v in b.items()}
        sample["label"] = int(sample["label"])
        if "boxes" in sample:          # one box (4,) per image here; (N_i, 4) in a cache with several
            sample["boxes"] = sample["boxes"].reshape(-1, 4)
        return sample

    def subset(self, indices: Any) -> "InMemoryDataset":
        """A new dataset of the chosen images (tensors are indexed, not shared)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        pick = lambda t: None if t is None else t[idx.to(t.device)]  # noqa: E731
        return InMemoryDataset(self.images[idx.to(self.images.device)], pick(self.labels), pick(self.boxes),
                               pick(self.masks), pick(self.part_masks), mean=self.mean.flatten().tolist(),
                               std=self.std.flatten().tolist(), class_names=self.class_names,
                               extras={k: pick(v) for k, v in self.extras.items()}, name=self.name)

    def to(self, device: torch.device | str) -> "InMemoryDataset":
        """Move every tensor (uint8 images included) to ``device``; batches are then built there."""
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return InMemoryDataset(mv(self.images), mv(self.labels), mv(self.boxes), mv(self.masks), mv(self.part_masks),
                               mean=self.mean.flatten().tolist(), std=self.std.flatten().tolist(),
                               class_names=self.class_names, extras={k: mv(v) for k, v in self.extras.items()},
                               name=self.name)

    def __repr__(self) -> str:
        h, w = self.image_size
        return f"InMemoryDataset({self.name!r}, n={len(self)}, size={h}x{w}, classes={self.num_classes})"


def has_uint8_images(data) -> bool:
    """Whether ``data`` holds its images as one uint8 tensor (an :class:`InMemoryDataset` or a decoded
    cache, :class:`camlib.data.cache.CachedDataset`): batches are then gathered from it directly."""
    imgs = getattr(data, "images", None)
    return isinstance(imgs, torch.Tensor) and imgs.dtype == torch.uint8 and hasattr(data, "labels")
