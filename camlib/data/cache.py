"""Decode once, train many times: a dataset resized into a memory-mapped uint8 file on disk.

Decoding and resizing a JPEG costs a CPU core about 3 ms; a GPU trains ResNet50-CAM at about
3,200 images/s. So the images are decoded **once**, resized to ``size`` x ``size`` (no crop: the
whole image, as Choe et al. 2020 resize before cropping), and written as raw uint8 ``(N, 3, S, S)``
under ``data/cache/<name>-<S>px-<hash>/``::

    meta.json        version, the dataset's identity, size, count, mean/std, class names, complete?
    images.u8        raw uint8 (N, 3, S, S), C order, opened with numpy.memmap
    masks.u8         raw bool (N, S, S), when the dataset has masks
    labels.npy       int64 (N,)
    boxes.npy        float32 (M, 4): every image's boxes, one after another (pixel-edge, resized)
    box_offsets.npy  int64 (N + 1,): image i's boxes are boxes[offsets[i]:offsets[i + 1]]
    sizes.npy        int32 (N, 2): each image's original (width, height)

The folder name hashes the dataset's identity (class, root, split, options, a fingerprint of its
sample list), the size and :data:`CACHE_VERSION`, so a changed setting builds a new cache instead
of reading a stale one. Building runs on all cores (``DataLoader`` workers, one chunk of images
per task) with a progress bar; every finished chunk leaves a marker file, so a build that was
interrupted (Ctrl-C, a Colab disconnect, a crash) resumes where it stopped and skips finished
chunks. Opening a cache gives a :class:`CachedDataset`: an
:class:`~camlib.data.InMemoryDataset` whose images are the memory-mapped file, so
:func:`camlib.train.fit` and :class:`~camlib.data.augment.GPUAugment` take it as it is.

Introduced in lesson 03 (GPU path); the paper's inputs are 224-pixel images (section 3).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .memory import IMAGENET_MEAN, IMAGENET_STD, InMemoryDataset

#: Bump when the file layout or the resizing changes: every old cache is then rebuilt.
CACHE_VERSION = 1
_META = "meta.json"
_CHUNKS = "chunks"


def _data_root() -> Path:
    from .common import data_root   # common imports PIL and torchvision.transforms: load it when needed
    return data_root()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _check_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an int >= 8 (the side of the square cached images); got {size!r}")
    return int(size)


# ------------------------------------------------------------------------------------ identity

def _digest(obj: Any) -> str:
    return hashlib.sha1(repr(obj).encode()).hexdigest()[:16]


def dataset_identity(dataset) -> dict[str, Any]:
    """What makes a dataset *this* dataset, as a JSON-able dict (the cache key hashes it).

    A ``cache_identity()`` method wins when the dataset has one. An
    :class:`~camlib.data.InMemoryDataset` is fingerprinted by its content (labels, boxes and a
    strided sample of its pixels). A file-backed dataset (CUB, ILSVRC, Pets, ...) by its class,
    length, the simple attributes that select its files (root, split, masks, thresholds) and a
    hash of its sample list (paths, labels, boxes) when it has one.
    """
    if hasattr(dataset, "cache_identity"):
        ident = dataset.cache_identity()
        if not isinstance(ident, dict):
            raise ValueError(f"cache_identity() must return a dict; got {type(ident).__name__}")
        return ident
    ident: dict[str, Any] = {"class": type(dataset).__qualname__, "n": len(dataset)}
    if isinstance(dataset, InMemoryDataset):
        n = len(dataset)
        step = max(1, n // 64)
        h = hashlib.sha1()
        h.update(dataset.labels.numpy().tobytes())
        if dataset.boxes is not None:
            h.update(dataset.boxes.float().numpy().tobytes())
        h.update(np.ascontiguousarray(dataset.images[::step].cpu().numpy()).tobytes())
        ident.update(name=dataset.name, shape=list(dataset.images.shape), fingerprint=h.hexdigest()[:16],
                     masks=dataset.masks is not None)
        return ident
    for attr in ("root", "base", "split", "with_masks", "mask_threshold", "border_is_pet", "image_dir",
                 "annotation_source", "name"):
        v = getattr(dataset, attr, None)
        if isinstance(v, (str, int, float, bool, os.PathLike)):
            ident[attr] = str(Path(v).resolve()) if isinstance(v, os.PathLike) else v
    if hasattr(dataset, "samples"):
        ident["samples"] = _digest(dataset.samples)
    return ident


def cache_path(dataset, size: int, root: str | os.PathLike | None = None, key: str | None = None) -> Path:
    """The folder that holds (or will hold) ``dataset`` cached at ``size``: ``<root>/<name>-<S>px-<hash>``.

    ``root`` defaults to ``data_root() / "cache"``; ``key`` replaces the dataset's identity
    (use it for a dataset that :func:`dataset_identity` cannot describe).
    """
    size = _check_size(size)
    ident = {"key": key} if key is not None else dataset_identity(dataset)
    digest = hashlib.sha1(json.dumps({"identity": ident, "size": size, "version": CACHE_VERSION},
                                     sort_keys=True, default=str).encode()).hexdigest()[:12]
    name = str(key or ident.get("name") or ident.get("class", "dataset"))
    if ident.get("split"):
        name += f"-{ident['split']}"
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower())[:48]
    base = Path(root) if root is not None else _data_root() / "cache"
    return base / f"{slug}-{size}px-{digest}"


# ------------------------------------------------------------------------------------ decoding

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


class _Decoder:
    """Turns sample ``i`` of a dataset into (uint8 image S x S, label, boxes (n, 4) resized, mask, (w, h))."""

    def __init__(self, dataset, size: int):
        self.size = size
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
            self.dataset, self.swapped = ds, True

    def chunk(self, lo: int, hi: int) -> dict[str, torch.Tensor]:
        if self.memory:
            return self._memory_chunk(lo, hi)
        parts = [self.one(i) for i in range(lo, hi)]
        out = {"images": torch.stack([p[0] for p in parts]),
               "labels": torch.tensor([p[1] for p in parts], dtype=torch.long),
               "boxes": torch.cat([p[2] for p in parts]) if parts else torch.zeros(0, 4),
               "counts": torch.tensor([len(p[2]) for p in parts], dtype=torch.long),
               "sizes": torch.tensor([p[4] for p in parts], dtype=torch.int32).view(-1, 2)}
        has = [p[3] is not None for p in parts]
        if any(has):
            if not all(has):
                raise ValueError(f"images {lo}..{hi - 1}: some samples have a mask and some do not; "
                                 "a cache needs all or none")
            out["masks"] = torch.stack([p[3] for p in parts])
        return out

    def _memory_chunk(self, lo: int, hi: int) -> dict[str, torch.Tensor]:
        ds, S = self.dataset, self.size
        imgs = ds.images[lo:hi].cpu()
        h, w = imgs.shape[-2:]
        out = {"images": _resize_uint8(imgs, S), "labels": ds.labels[lo:hi].cpu().long(),
               "sizes": torch.tensor([[w, h]], dtype=torch.int32).expand(hi - lo, 2).clone()}
        if ds.boxes is not None:
            scale = torch.tensor([S / w, S / h, S / w, S / h])
            out["boxes"] = ds.boxes[lo:hi].cpu().float() * scale
            out["counts"] = torch.ones(hi - lo, dtype=torch.long)
        else:
            out["boxes"], out["counts"] = torch.zeros(0, 4), torch.zeros(hi - lo, dtype=torch.long)
        if ds.masks is not None:
            m = ds.masks[lo:hi].cpu()
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
    """One task per unfinished chunk, so DataLoader workers decode chunks in parallel."""

    def __init__(self, decoder: _Decoder, todo: list[int], chunk: int, n: int):
        self.decoder, self.todo, self.chunk, self.n = decoder, todo, chunk, n

    def __len__(self) -> int:
        return len(self.todo)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        c = self.todo[k]
        lo, hi = c * self.chunk, min((c + 1) * self.chunk, self.n)
        out = self.decoder.chunk(lo, hi)
        out["chunk"] = torch.tensor(c)
        return out


# ------------------------------------------------------------------------------------ building

def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / _META).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a finished cache of the current version."""
    meta = _read_meta(Path(path))
    return bool(meta and meta.get("complete") and meta.get("version") == CACHE_VERSION)


def build_cache(dataset, size: int, *, root: str | os.PathLike | None = None, key: str | None = None,
                workers: int | None = None, chunk: int = 64, progress: bool = True,
                mean=None, std=None) -> Path:
    """Decode and resize ``dataset`` into a cache folder (see the module docstring); return its path.

    ``dataset``: an :class:`~camlib.data.InMemoryDataset`, one of camlib's real datasets, or any
    dataset of dicts ``{"image": PIL image | uint8 (3, H, W) | float (3, H, W) in [0, 1], "label",
    "boxes"?, "mask"?}``. ``workers``: decoding processes (default: every core; 0 decodes here).
    A finished cache is returned at once; a partial one is resumed (finished chunks are skipped).
    ``mean``/``std``: the normalization the cached dataset applies (default: the dataset's own, else
    ImageNet's).
    """
    size = _check_size(size)
    n = len(dataset)
    if n < 1:
        raise ValueError("cannot cache an empty dataset")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int; got {chunk!r}")
    path = cache_path(dataset, size, root, key)
    if is_complete(path):
        return path
    decoder = _Decoder(dataset, size)
    if mean is None:
        mean = dataset.mean.flatten().tolist() if isinstance(dataset, InMemoryDataset) else list(IMAGENET_MEAN)
    if std is None:
        std = dataset.std.flatten().tolist() if isinstance(dataset, InMemoryDataset) else list(IMAGENET_STD)
    names = getattr(dataset, "class_names", None)
    meta = {"version": CACHE_VERSION, "identity": {"key": key} if key is not None else dataset_identity(dataset),
            "size": size, "n": n, "chunk": chunk, "mean": list(mean), "std": list(std),
            "class_names": list(names) if names is not None else None,
            "name": str(getattr(dataset, "name", None) or key or type(dataset).__name__), "complete": False}
    meta = json.loads(json.dumps(meta, default=str))   # as it will read back (tuples become lists)
    old = _read_meta(path)
    same = lambda m: {k: v for k, v in m.items() if k not in ("complete", "has_mask")}  # noqa: E731
    if old is not None and same(old) == same(meta) and "has_mask" in old:
        meta["has_mask"] = old["has_mask"]         # resuming: keep what the first attempt found
    else:
        if old is not None:
            shutil.rmtree(path)                    # a partial build with other settings: start over
        meta["has_mask"] = "masks" in decoder.chunk(0, 1)   # does image 0 have a mask? (and: does decoding work?)
    (path / _CHUNKS).mkdir(parents=True, exist_ok=True)
    _write_json(path / _META, meta)

    mode = "r+" if (path / "images.u8").is_file() else "w+"
    images = np.memmap(path / "images.u8", dtype=np.uint8, mode=mode, shape=(n, 3, size, size))
    masks = None
    if meta["has_mask"]:
        mmode = "r+" if (path / "masks.u8").is_file() else "w+"
        masks = np.memmap(path / "masks.u8", dtype=np.bool_, mode=mmode, shape=(n, size, size))
    n_chunks = -(-n // chunk)
    done = {int(p.stem) for p in (path / _CHUNKS).glob("*.npz")}
    todo = [c for c in range(n_chunks) if c not in done]

    bar = None
    if progress and todo:
        from tqdm.auto import tqdm
        finished = sum(min(chunk, n - c * chunk) for c in done)
        bar = tqdm(total=n, initial=finished, desc=f"caching {meta['name']} at {size}px", unit="img")
    if todo:
        if workers is None:
            workers = 0 if decoder.memory else min(_cores(), len(todo))
        loader = torch.utils.data.DataLoader(_ChunkJob(decoder, todo, chunk, n), batch_size=None, shuffle=False,
                                             num_workers=int(workers))
        try:
            for res in loader:
                c = int(res["chunk"])
                lo, hi = c * chunk, min((c + 1) * chunk, n)
                images[lo:hi] = res["images"].numpy()
                images.flush()
                if masks is not None:
                    if "masks" not in res:
                        raise ValueError(f"images {lo}..{hi - 1} have no masks but image 0 has one")
                    masks[lo:hi] = res["masks"].numpy()
                    masks.flush()
                tmp = path / _CHUNKS / f"{c:06d}.tmp.npz"
                np.savez(tmp, labels=res["labels"].numpy(), boxes=res["boxes"].numpy().astype(np.float32),
                         counts=res["counts"].numpy(), sizes=res["sizes"].numpy())
                os.replace(tmp, path / _CHUNKS / f"{c:06d}.npz")   # the chunk-done marker
                if bar is not None:
                    bar.update(hi - lo)
        finally:
            if bar is not None:
                bar.close()
    del images, masks

    parts = [np.load(path / _CHUNKS / f"{c:06d}.npz") for c in range(n_chunks)]
    counts = np.concatenate([p["counts"] for p in parts])
    np.save(path / "labels.npy", np.concatenate([p["labels"] for p in parts]).astype(np.int64))
    np.save(path / "boxes.npy", np.concatenate([p["boxes"].reshape(-1, 4) for p in parts]).astype(np.float32))
    np.save(path / "box_offsets.npy", np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
    np.save(path / "sizes.npy", np.concatenate([p["sizes"].reshape(-1, 2) for p in parts]).astype(np.int32))
    meta["complete"] = True
    _write_json(path / _META, meta)
    shutil.rmtree(path / _CHUNKS, ignore_errors=True)
    return path


# ------------------------------------------------------------------------------------ opening

class CachedDataset(InMemoryDataset):
    """A finished cache opened as an :class:`~camlib.data.InMemoryDataset` (images memory-mapped).

    ``images`` is a uint8 ``(N, 3, S, S)`` tensor over the file (copy-on-write: pages are read on
    demand and nothing is written back). When every image has exactly one box, ``boxes`` is the
    usual ``(N, 4)``; otherwise ``boxes`` is None and :meth:`boxes_of` / ``batch()["boxes"]`` (a
    list of ``(N_i, 4)``, as :func:`camlib.data.common.collate_samples`) give them.
    ``original_sizes``: each image's ``(width, height)`` before resizing (0 where unknown).
    """

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        meta = _read_meta(path)
        if meta is None:
            raise ValueError(f"{path} is not a cache folder (no readable {_META})")
        if meta.get("version") != CACHE_VERSION or not meta.get("complete"):
            raise ValueError(f"{path} holds an unfinished cache or one of version {meta.get('version')} "
                             f"(expected a complete one of version {CACHE_VERSION}); build it with build_cache")
        n, S = int(meta["n"]), int(meta["size"])
        images = torch.from_numpy(np.memmap(path / "images.u8", dtype=np.uint8, mode="c", shape=(n, 3, S, S)))
        masks = None
        if meta["has_mask"]:
            masks = torch.from_numpy(np.memmap(path / "masks.u8", dtype=np.bool_, mode="c", shape=(n, S, S)))
        labels = torch.from_numpy(np.load(path / "labels.npy"))
        flat = torch.from_numpy(np.load(path / "boxes.npy")).view(-1, 4)
        offsets = torch.from_numpy(np.load(path / "box_offsets.npy"))
        single = bool((offsets[1:] - offsets[:-1] == 1).all())
        super().__init__(images, labels, flat if single else None, masks, mean=meta["mean"], std=meta["std"],
                         class_names=meta["class_names"], name=meta["name"])
        self.path, self.meta = path, meta
        self.box_offsets, self.all_boxes = offsets, flat
        self.original_sizes = torch.from_numpy(np.load(path / "sizes.npy"))

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


def open_cache(path: str | os.PathLike) -> CachedDataset:
    """Open a finished cache folder (see :func:`build_cache`)."""
    return CachedDataset(path)


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
        return open_cache(path)
    return open_cache(build_cache(dataset, size, **kwargs))


__all__ = ["CACHE_VERSION", "CachedDataset", "build_cache", "open_cache", "cached", "cache_path",
           "dataset_identity", "is_complete"]
