"""Decode once, train many times: a dataset resized into a memory-mapped uint8 file on disk.

Decoding and resizing a JPEG costs a CPU core about 3 ms; a GPU trains ResNet50-CAM at about
3,200 images/s. So the images are decoded **once**, resized to ``size`` x ``size``, and written as
raw uint8 under :func:`camlib.config.cache_dir`. This module is what users import:
:func:`cached` builds a dataset's cache when needed and opens it; :func:`open_cache` opens a
finished one as a :class:`CachedDataset`: an :class:`~camlib.data.InMemoryDataset` whose images
are the memory-mapped file, so :func:`camlib.train.fit` and
:class:`~camlib.data.augment.GPUAugment` take it as it is.

The work below it is done in three layers, each importing only the ones listed before it:

* :mod:`camlib.data.cache_format` -- the on-disk format: the folder a dataset's cache lives in
  (:func:`cache_path`, :func:`dataset_identity`), its files, :func:`is_complete`, :func:`check_cache`;
* :mod:`camlib.data.cache_decode` -- decoding and resizing samples into uint8 chunks, on every core;
* :mod:`camlib.data.cache_build` -- :func:`build_cache`: writing, resuming and repairing a cache.

:func:`build_cache`, :func:`cache_path`, :func:`check_cache`, :func:`dataset_identity` and
:func:`is_complete` are re-exported here, so ``from camlib.data.cache import ...`` gives every
public name.

Introduced in lesson 03 (GPU path); the paper's inputs are 224-pixel images (section 3).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cache_build import build_cache
from .cache_format import CACHE_VERSION, META_FILE, cache_path, check_cache, dataset_identity, is_complete, read_meta
from .memory import InMemoryDataset


class CachedDataset(InMemoryDataset):
    """A finished cache opened as an :class:`~camlib.data.InMemoryDataset` (images memory-mapped).

    ``images`` is a uint8 ``(N, 3, S, S)`` tensor over the file (copy-on-write: pages are read on
    demand and nothing is written back). When every image has exactly one box, ``boxes`` is the
    usual ``(N, 4)``; otherwise ``boxes`` is None and :meth:`boxes_of` / ``batch()["boxes"]`` (a
    list of ``(N_i, 4)``, as :func:`camlib.data.common.collate_samples`) give them.
    ``original_sizes``: each image's ``(width, height)`` before resizing (0 where unknown);
    ``sources``: each row's index in the dataset it was built from (rows differ from it only where
    unreadable images were skipped). ``mean``/``std`` (default: those recorded at the build)
    normalize at read time. ``verify`` checks sizes and checksums first (:func:`check_cache`).
    """

    def __init__(self, path: str | os.PathLike, *, mean=None, std=None, verify: bool = True):
        path = Path(path)
        meta = read_meta(path)
        if meta is None:
            raise ValueError(f"{path} is not a cache folder (no readable {META_FILE})")
        if meta.get("version") != CACHE_VERSION or not meta.get("complete"):
            raise ValueError(f"{path} holds an unfinished cache or one of version {meta.get('version')} "
                             f"(expected a complete one of version {CACHE_VERSION}); build it with build_cache")
        if verify:
            report = check_cache(path)
            if not report["ok"]:
                raise ValueError(f"the cache {path} is damaged: {'; '.join(report['problems'][:4])}. Call "
                                 "camlib.data.cache.cached (or build_cache) with its dataset to repair it, or "
                                 "delete the folder")
        n, S = int(meta["rows"]), int(meta["size"])
        images = torch.from_numpy(np.memmap(path / "images.u8", dtype=np.uint8, mode="c", shape=(n, 3, S, S)))
        masks = None
        if meta["has_mask"]:
            masks = torch.from_numpy(np.memmap(path / "masks.u8", dtype=np.bool_, mode="c", shape=(n, S, S)))
        labels = torch.from_numpy(np.load(path / "labels.npy"))
        flat = torch.from_numpy(np.load(path / "boxes.npy")).view(-1, 4)
        offsets = torch.from_numpy(np.load(path / "box_offsets.npy"))
        single = bool((offsets[1:] - offsets[:-1] == 1).all())
        super().__init__(images, labels, flat if single else None, masks,
                         mean=meta["mean"] if mean is None else mean, std=meta["std"] if std is None else std,
                         class_names=meta["class_names"], name=meta["name"])
        self.path, self.meta = path, meta
        self.box_offsets, self.all_boxes = offsets, flat
        self.original_sizes = torch.from_numpy(np.load(path / "sizes.npy"))
        self.sources = torch.from_numpy(np.load(path / "sources.npy"))

    def boxes_of(self, i: int) -> torch.Tensor:
        """Image ``i``'s boxes, float ``(N_i, 4)`` in the cached image's pixels."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} images")
        i %= len(self)
        return self.all_boxes[int(self.box_offsets[i]):int(self.box_offsets[i + 1])]

    def batch(self, indices: Any, device: torch.device | str | None = None) -> dict[str, Any]:
        out = super().batch(indices, device)
        if self.boxes is None:
            idx = torch.as_tensor(indices, dtype=torch.long).view(-1)
            out["boxes"] = [self.boxes_of(int(i)).to(device or "cpu") for i in idx]
        return out

    def __repr__(self) -> str:
        return f"CachedDataset({self.name!r}, n={len(self)}, size={self.image_size[0]}, path={str(self.path)!r})"


def open_cache(path: str | os.PathLike, *, mean=None, std=None, verify: bool = True) -> CachedDataset:
    """Open a finished cache folder (see :func:`build_cache`); ``mean``/``std`` normalize at read time
    (default: those recorded at the build); ``verify`` checks it first (:func:`check_cache`)."""
    return CachedDataset(path, mean=mean, std=std, verify=verify)


def cached(dataset, size: int, **kwargs) -> CachedDataset:
    """Build ``dataset``'s cache at ``size`` if needed (arguments of :func:`build_cache`), then open it.

    Under ``torch.distributed`` only rank 0 builds; the other ranks wait for it, then open the file.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if dist.get_rank() == 0:
            path = build_cache(dataset, size, **kwargs)
        dist.barrier()
        if dist.get_rank() != 0:
            path = cache_path(dataset, size, kwargs.get("root"), kwargs.get("key"))
        return open_cache(path, verify=dist.get_rank() != 0)
    return open_cache(build_cache(dataset, size, **kwargs), verify=False)   # build_cache has just checked it


__all__ = ["CACHE_VERSION", "CachedDataset", "build_cache", "open_cache", "cached", "cache_path",
           "check_cache", "dataset_identity", "is_complete"]


class FirstN(torch.utils.data.Dataset):
    """The first ``n`` samples of a file-backed dataset, with what its cache key needs (a recipe's
    ``n_train``/``n_val``): the cache of ``FirstN(ds, n)`` is not the cache of ``ds``."""

    def __init__(self, ds, n: int):
        self.ds, self.n = ds, min(n, len(ds))
        self.class_names = getattr(ds, "class_names", None)

    # the cache swaps the transform of camlib's real datasets (to read unnormalized pixels): pass it on
    @property
    def transform(self):
        return getattr(self.ds, "transform", None)

    @transform.setter
    def transform(self, t) -> None:
        self.ds = copy.copy(self.ds)
        self.ds.transform = t

    @property
    def load(self):
        return self.ds.load

    def cache_identity(self) -> dict[str, Any]:
        return {"subset_of": dataset_identity(self.ds), "n": self.n}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.ds[i]
