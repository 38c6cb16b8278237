"""Which images each training step sees, and how they reach the device.

The order of an epoch is a permutation fixed by ``(seed, epoch)`` alone (:func:`epoch_order`), so a
resumed run sees the same batches; under ``torchrun`` each rank keeps its slice of the same global
batch. A batch is gathered on the CPU (pinned, in a background thread on CUDA), copied to the device
as uint8 and normalized (or augmented) there. Used by :func:`camlib.train.fit` (lesson 01).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

from . import distributed as _dist
from .data.memory import has_uint8_images, normalize
from .inference import get_batch


def _gather(data, idx: torch.Tensor, pin: bool) -> dict[str, torch.Tensor]:
    """Step 1 of a training batch (any thread): the uint8 images and labels, pinned for a fast copy."""
    if has_uint8_images(data):
        i = idx.to(data.images.device)
        out = {"image": data.images[i], "label": data.labels.to(i.device)[i]}
    else:
        out = get_batch(data, idx, torch.device("cpu"))
    if pin:
        out = {k: v.pin_memory() if v.device.type == "cpu" else v for k, v in out.items()}
    return out


def _finish(data, batch: dict[str, torch.Tensor], device: torch.device, augment, part,
            norm: tuple[torch.Tensor, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Step 2 (the training thread): to the device as uint8, then augment or just normalize there.

    ``norm``: the dataset's mean and std already on ``device`` (not copied there at every step)."""
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if not has_uint8_images(data):
        return batch
    if augment is not None:
        return augment(batch, part=part) if part is not None else augment(batch)
    batch["image"] = normalize(batch["image"], *norm)
    return batch


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The training order of one epoch: a permutation fixed by ``(seed, epoch)`` alone."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g)


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """Indices of training step ``step``: epochs of whole batches (the remainder is dropped)."""
    per_epoch = max(1, n // batch_size)
    epoch, k = divmod(step, per_epoch)
    order = epoch_order(n, seed, epoch)
    return order[k * batch_size:(k + 1) * batch_size]


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)



class TrainBatches:
    """Training batch ``step`` on the device: indices from ``(seed, step)`` alone, this rank's slice,
    gathered on the CPU (in a background thread on CUDA, ``prefetch``), then normalized or augmented
    on the device."""

    def __init__(self, train, cfg, device: torch.device, augment, start: int, prefetch=None):
        self.train, self.cfg, self.device, self.augment = train, cfg, device, augment
        ws = _dist.world_size()
        self.part = (*_dist.shard_range(cfg.batch_size), cfg.batch_size) if ws > 1 else None
        self.norm = ((train.mean.to(device), train.std.to(device))
                     if has_uint8_images(train) and augment is None else None)
        self.pin = device.type == "cuda" and torch.cuda.is_available()
        use_prefetch = device.type == "cuda" if prefetch is None else bool(prefetch)
        self.pool = ThreadPoolExecutor(max_workers=1) if use_prefetch else None
        self.pending = self.pool.submit(self._gather, start) if self.pool is not None and start < cfg.steps else None

    def _gather(self, step: int) -> dict[str, torch.Tensor]:
        idx = _dist.shard(batch_indices(len(self.train), self.cfg.batch_size, self.cfg.seed, step))
        return _gather(self.train, idx, self.pin)

    def get(self, step: int) -> dict[str, torch.Tensor]:
        if self.pool is None:
            cpu_batch = self._gather(step)
        else:
            cpu_batch = self.pending.result()
            if step + 1 < self.cfg.steps:
                self.pending = self.pool.submit(self._gather, step + 1)
        return _finish(self.train, cpu_batch, self.device, self.augment, self.part, self.norm)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
