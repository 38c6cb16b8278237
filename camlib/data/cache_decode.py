"""Decode a dataset's samples into uint8 chunks of ``size`` x ``size`` images, on every core.

Decoding and resizing a JPEG costs a CPU core about 3 ms; a GPU trains ResNet50-CAM at about
3,200 images/s. So the cache decodes each image **once**: :class:`Decoder` turns sample ``i`` (a
PIL image, a uint8 tensor or a float one in [0, 1]) into a uint8 ``(3, S, S)`` image resized with
anti-aliasing -- no crop: the whole image, as Choe et al. 2020 resize before cropping -- with its
boxes scaled alike, its mask (nearest) and its original ``(width, height)``; an unreadable image
raises or, under ``on_bad_image="skip"``, is flagged. :func:`run_jobs` runs one chunk of images per
task in ``DataLoader`` workers (all cores by default) and hands each result to a callback.

One layer of :mod:`camlib.data.cache`; :mod:`camlib.data.cache_build` writes what it decodes.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .memory import InMemoryDataset


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _to_uint8_image(img: Any, where: str) -> torch.Tensor:
    """A PIL image, a uint8 (3, H, W) tensor or a float one in [0, 1] as uint8 (3, H, W)."""
    try:
        from PIL import Image
        if isinstance(img, Image.Image):
            return torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1).contiguous()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3:
        img = torch.from_numpy(img.copy()).permute(2, 0, 1)
    if not isinstance(img, torch.Tensor) or img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"{where}: expected a PIL image or a (3, H, W) tensor; got "
                         f"{type(img).__name__} {tuple(getattr(img, 'shape', ()))}")
    if img.dtype == torch.uint8:
        return img.contiguous()
    if img.is_floating_point():
        lo, hi = float(img.min()), float(img.max())
        if lo < -1e-4 or hi > 1 + 1e-4:
            raise ValueError(f"{where}: a float image must hold values in [0, 1] (unnormalized) to be cached; got "
                             f"range [{lo:.3f}, {hi:.3f}] (a normalized image? give the dataset a transform "
                             "that stops before Normalize, or pass PIL images)")
        return (img * 255).round().clamp(0, 255).to(torch.uint8)
    raise ValueError(f"{where}: image dtype must be uint8 or float; got {img.dtype}")


def _resize_uint8(img: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> uint8 (B, 3, S, S), bilinear with anti-aliasing."""
    if tuple(img.shape[-2:]) == (size, size):
        return img
    x = F.interpolate(img.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


class Decoder:
    """Turns sample ``i`` of a dataset into (uint8 image S x S, label, boxes (n, 4) resized, mask, (w, h))."""

    def __init__(self, dataset, size: int, on_bad_image: str = "raise"):
        self.size, self.on_bad_image = size, on_bad_image
        self.memory = isinstance(dataset, InMemoryDataset)
        self.dataset = dataset
        self.swapped = False
        if not self.memory and hasattr(dataset, "transform") and hasattr(dataset, "load"):
            # camlib's real datasets build samples with common.make_sample(transform=...): swap in a
            # transform that only converts to [0, 1] floats (no resize, no normalization), so the
            # sample arrives at its original size and is resized below like any other
            from torchvision.transforms import v2
            ds = copy.copy(dataset)
            ds.transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
            if hasattr(ds, "on_bad_image"):
                ds.on_bad_image = "raise"      # the build applies the policy itself (no stand-in images)
            self.dataset, self.swapped = ds, True

    def chunk(self, lo: int, hi: int | None = None) -> dict[str, torch.Tensor]:
        """Images ``lo..hi-1`` (or the list of indices ``lo``): uint8 images, labels, boxes, ...;
        ``bad`` flags the unreadable ones (left as zeros) when the policy is "skip"."""
        idx = list(range(lo, hi)) if hi is not None else [int(i) for i in lo]
        if self.memory:
            out = self._memory_chunk(idx)
            out["bad"] = torch.zeros(len(idx), dtype=torch.bool)
            out["reasons"] = ""
            return out
        from .common import BadImageError
        parts, reasons = [], []
        for i in idx:
            try:
                parts.append(self.one(i))
            except BadImageError as e:
                if self.on_bad_image != "skip":
                    raise
                parts.append(None)
                reasons.append(f"{i}\t{e}")
        S = self.size
        good = [p for p in parts if p is not None]
        masked = any(p[3] is not None for p in good)
        blank = (torch.zeros(3, S, S, dtype=torch.uint8), -1, torch.zeros(0, 4),
                 torch.zeros(S, S, dtype=torch.bool) if masked else None, (0, 0))
        bad = torch.tensor([p is None for p in parts], dtype=torch.bool)
        parts = [p if p is not None else blank for p in parts]
        out = {"images": torch.stack([p[0] for p in parts]),
               "labels": torch.tensor([p[1] for p in parts], dtype=torch.long),
               "boxes": torch.cat([p[2] for p in parts]) if parts else torch.zeros(0, 4),
               "counts": torch.tensor([len(p[2]) for p in parts], dtype=torch.long),
               "sizes": torch.tensor([p[4] for p in parts], dtype=torch.int32).view(-1, 2)}
        has = [p[3] is not None for p in parts]
        if any(has):
            if not all(has):
                raise ValueError(f"images {idx[0]}..{idx[-1]}: some samples have a mask and some do not; "
                                 "a cache needs all or none")
            out["masks"] = torch.stack([p[3] for p in parts])
        out["bad"], out["reasons"] = bad, "\n".join(reasons)
        return out

    def _memory_chunk(self, idx: list[int]) -> dict[str, torch.Tensor]:
        ds, S = self.dataset, self.size
        sel = torch.tensor(idx, dtype=torch.long)
        imgs = ds.images[sel.to(ds.images.device)].cpu()
        h, w = imgs.shape[-2:]
        k = len(idx)
        out = {"images": _resize_uint8(imgs, S), "labels": ds.labels.cpu()[sel].long(),
               "sizes": torch.tensor([[w, h]], dtype=torch.int32).expand(k, 2).clone()}
        if ds.boxes is not None:
            scale = torch.tensor([S / w, S / h, S / w, S / h])
            out["boxes"] = ds.boxes.cpu()[sel].float() * scale
            out["counts"] = torch.ones(k, dtype=torch.long)
        else:
            out["boxes"], out["counts"] = torch.zeros(0, 4), torch.zeros(k, dtype=torch.long)
        if ds.masks is not None:
            m = ds.masks.cpu()[sel]
            if (h, w) != (S, S):
                m = F.interpolate(m[:, None].float(), size=(S, S), mode="nearest-exact")[:, 0] > 0.5
            out["masks"] = m
        return out

    def one(self, i: int):
        s = self.dataset[i]
        where = f"sample {i} of {type(self.dataset).__name__}"
        if not isinstance(s, dict) or "image" not in s or "label" not in s:
            raise ValueError(f"{where}: expected a dict with 'image' and 'label'; got {type(s).__name__}")
        S = self.size
        img = _to_uint8_image(s["image"], where)
        h, w = img.shape[-2:]
        img = _resize_uint8(img[None], S)[0]
        boxes = torch.as_tensor(s.get("boxes", torch.zeros(0, 4)), dtype=torch.float32).reshape(-1, 4)
        boxes = boxes * torch.tensor([S / w, S / h, S / w, S / h])
        mask = s.get("mask")
        if mask is not None:
            mask = torch.as_tensor(np.asarray(mask)).bool()
            if tuple(mask.shape) != (h, w):
                raise ValueError(f"{where}: mask shape {tuple(mask.shape)} differs from the image's {(h, w)}")
            mask = F.interpolate(mask[None, None].float(), size=(S, S), mode="nearest-exact")[0, 0] > 0.5
        return img, int(s["label"]), boxes, mask, (int(w), int(h))


class _ChunkJob(torch.utils.data.Dataset):
    """One task per unfinished chunk, so DataLoader workers decode chunks in parallel.

    ``todo``: chunk numbers; ``sources`` (optional): the dataset indices of each chunk's rows
    (a repair re-decodes the rows of damaged chunks of a finished cache)."""

    def __init__(self, decoder: Decoder, todo: list[int], chunk: int, n: int, sources=None):
        self.decoder, self.todo, self.chunk, self.n, self.sources = decoder, todo, chunk, n, sources

    def __len__(self) -> int:
        return len(self.todo)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        c = self.todo[k]
        lo, hi = c * self.chunk, min((c + 1) * self.chunk, self.n)
        out = self.decoder.chunk(lo, hi) if self.sources is None else self.decoder.chunk(self.sources[lo:hi].tolist())
        out["chunk"] = torch.tensor(c)
        return out


def run_jobs(decoder, todo, chunk, n, workers, sources, on_result, bar) -> None:
    if workers is None:
        workers = 0 if decoder.memory else min(_cores(), len(todo))
    loader = torch.utils.data.DataLoader(_ChunkJob(decoder, todo, chunk, n, sources), batch_size=None,
                                         shuffle=False, num_workers=int(workers))
    try:
        for res in loader:
            on_result(res)
            if bar is not None:
                bar.update(len(res["labels"]))
    finally:
        if bar is not None:
            bar.close()
