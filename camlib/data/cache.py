"""Decode once, train many times: a dataset resized into a memory-mapped uint8 file on disk.

Decoding and resizing a JPEG costs a CPU core about 3 ms; a GPU trains ResNet50-CAM at about
3,200 images/s. So the images are decoded **once**, resized to ``size`` x ``size`` (no crop: the
whole image, as Choe et al. 2020 resize before cropping), and written as raw uint8 ``(N, 3, S, S)``
under ``<cache_dir>/<name>-<S>px-<hash>/`` (:func:`camlib.config.cache_dir`: ``data/cache`` by
default, the runtime's local disk on Colab when the data is on Google Drive)::

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
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .memory import IMAGENET_MEAN, IMAGENET_STD, InMemoryDataset

#: Bump when the file layout or the resizing changes: every old cache is then rebuilt.
CACHE_VERSION = 2
_META = "meta.json"
_CHUNKS = "chunks"


def _cache_root() -> Path:
    from ..config import cache_dir  # the one place the cache folder is decided
    return cache_dir()


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
    :class:`~camlib.data.InMemoryDataset` is fingerprinted by its whole content (labels, boxes,
    masks and every pixel). A file-backed dataset (CUB, ILSVRC, Pets, ...) by its class, length,
    the simple attributes that select its files (root, split, masks, thresholds), a hash of its
    sample list (paths, labels, boxes) when it has one, and the path, size and modification time of
    every source file it names (``source_files()``, or the ``path`` of each sample): a replaced
    image is noticed, and it costs one ``stat`` per file, little next to decoding.
    """
    if hasattr(dataset, "cache_identity"):
        ident = dataset.cache_identity()
        if not isinstance(ident, dict):
            raise ValueError(f"cache_identity() must return a dict; got {type(ident).__name__}")
        return ident
    ident: dict[str, Any] = {"class": type(dataset).__qualname__, "n": len(dataset)}
    if isinstance(dataset, InMemoryDataset):
        h = hashlib.sha1()
        h.update(dataset.labels.cpu().numpy().tobytes())
        if dataset.boxes is not None:
            h.update(dataset.boxes.float().cpu().numpy().tobytes())
        if dataset.masks is not None:
            h.update(np.ascontiguousarray(dataset.masks.cpu().numpy()).tobytes())
        for lo in range(0, len(dataset), 1024):       # every pixel, in slices (no second copy of the data)
            h.update(np.ascontiguousarray(dataset.images[lo:lo + 1024].cpu().numpy()).tobytes())
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
    files = _source_files(dataset)
    if files:
        h = hashlib.sha1()
        for f in files:
            try:
                st = os.stat(f)
                h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{f}\0missing\n".encode())
        ident["files"] = {"count": len(files), "fingerprint": h.hexdigest()[:16]}
    return ident


def _source_files(dataset) -> list[str]:
    """The files a file-backed dataset reads: its ``source_files()``, else the samples' ``path``."""
    if hasattr(dataset, "source_files"):
        return [str(f) for f in dataset.source_files()]
    samples = getattr(dataset, "samples", None)
    if isinstance(samples, (list, tuple)) and samples and isinstance(samples[0], dict) and "path" in samples[0]:
        return [str(s["path"]) for s in samples]
    return []


def cache_path(dataset, size: int, root: str | os.PathLike | None = None, key: str | None = None) -> Path:
    """The folder that holds (or will hold) ``dataset`` cached at ``size``: ``<root>/<name>-<S>px-<hash>``.

    ``root`` defaults to :func:`camlib.config.cache_dir` (``data/cache``; ``$CAMLIB_CACHE``; on Colab
    with Drive, the runtime's local disk); ``key`` replaces the dataset's identity
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
    base = Path(root) if root is not None else _cache_root()
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

    def __init__(self, decoder: _Decoder, todo: list[int], chunk: int, n: int, sources=None):
        self.decoder, self.todo, self.chunk, self.n, self.sources = decoder, todo, chunk, n, sources

    def __len__(self) -> int:
        return len(self.todo)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        c = self.todo[k]
        lo, hi = c * self.chunk, min((c + 1) * self.chunk, self.n)
        out = self.decoder.chunk(lo, hi) if self.sources is None else self.decoder.chunk(self.sources[lo:hi].tolist())
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
    """Whether ``path`` holds a finished cache of the current version (see :func:`check_cache` for damage)."""
    meta = _read_meta(Path(path))
    return bool(meta and meta.get("complete") and meta.get("version") == CACHE_VERSION)


_SMALL = ("labels", "boxes", "box_offsets", "sizes", "sources")
#: meta entries that may differ between a first and a resumed attempt of the same build
_VOLATILE = ("complete", "has_mask", "crc", "npy_crc", "skipped", "rows", "mean", "std")


def _blobs(meta: dict[str, Any]) -> list[tuple[str, int]]:
    """The raw files of a cache and the bytes of one row in each."""
    S = int(meta["size"])
    return [("images.u8", 3 * S * S)] + ([("masks.u8", S * S)] if meta.get("has_mask") else [])


def _file_crc(path: Path) -> int:
    return zlib.crc32(path.read_bytes())


def _chunk_crcs(path: Path, row_bytes: int, rows: int, chunk: int, which=None) -> dict[int, int]:
    """crc32 of each chunk of ``chunk`` rows of a raw file (only the chunks in ``which``, if given)."""
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for c in (range(-(-rows // chunk)) if which is None else which):
        lo, hi = c * chunk * row_bytes, min((c + 1) * chunk, rows) * row_bytes
        out[c] = zlib.crc32(mm[lo:hi])
    del mm
    return out


def check_cache(path: str | os.PathLike) -> dict[str, Any]:
    """Validate a finished cache: file sizes, the checksum of every chunk of rows, the small arrays.

    Returns ``{"ok", "problems": [sentences], "chunks": damaged chunk numbers, "small": damaged
    .npy names}``. Costs one read of the files (about a second per GB).
    """
    path = Path(path)
    meta = _read_meta(path)
    if meta is None or not is_complete(path):
        return {"ok": False, "problems": [f"{path} holds no finished cache of version {CACHE_VERSION}"],
                "chunks": set(), "small": list(_SMALL)}
    rows, chunk = int(meta["rows"]), int(meta["chunk"])
    n_chunks = -(-rows // chunk)
    problems, bad = [], set()
    for name, row_bytes in _blobs(meta):
        f = path / name
        have, want = (f.stat().st_size if f.is_file() else -1), rows * row_bytes
        if have != want:
            problems.append(f"{name} has {max(have, 0)} bytes, expected {want}" if have >= 0 else f"{name} is missing")
        whole = [c for c in range(n_chunks) if min((c + 1) * chunk, rows) * row_bytes <= have]
        bad |= set(range(n_chunks)) - set(whole)
        crcs = _chunk_crcs(f, row_bytes, rows, chunk, whole) if whole else {}
        wrong = [c for c, v in crcs.items() if v != meta["crc"][name][c]]
        if wrong:
            problems.append(f"{name}: chunks {wrong[:8]} do not match their checksums (overwritten bytes)")
        bad |= set(wrong)
    small = []
    for k in _SMALL:
        f = path / f"{k}.npy"
        if not f.is_file():
            small.append(k)
            problems.append(f"{k}.npy is missing")
        elif _file_crc(f) != meta["npy_crc"][k]:
            small.append(k)
            problems.append(f"{k}.npy does not match its checksum (truncated or changed)")
    return {"ok": not problems, "problems": problems, "chunks": bad, "small": small}


def _run_jobs(decoder, todo, chunk, n, workers, sources, on_result, bar) -> None:
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


def _repair(path: Path, meta: dict[str, Any], damaged: set[int], decoder, workers) -> None:
    """Decode again the rows of the damaged chunks of a finished cache and write them in place."""
    rows, chunk = int(meta["rows"]), int(meta["chunk"])
    maps = {}
    for name, row_bytes in _blobs(meta):
        f = path / name
        if not f.is_file():
            f.touch()
        if f.stat().st_size != rows * row_bytes:
            os.truncate(f, rows * row_bytes)      # cut or extended to its size; the lost rows are in `damaged`
        maps[name] = np.memmap(f, dtype=np.uint8, mode="r+", shape=(rows, row_bytes))
    sources = torch.from_numpy(np.load(path / "sources.npy"))

    def put(res):
        c = int(res["chunk"])
        lo, hi = c * chunk, min((c + 1) * chunk, rows)
        if bool(res["bad"].any()):
            raise ValueError(f"repairing {path}: images that were readable when the cache was built no longer "
                             f"are:\n{res['reasons']}")
        maps["images.u8"][lo:hi] = res["images"].numpy().reshape(hi - lo, -1)
        if "masks.u8" in maps:
            maps["masks.u8"][lo:hi] = res["masks"].numpy().reshape(hi - lo, -1).view(np.uint8)

    _run_jobs(decoder, sorted(damaged), chunk, rows, workers, sources, put, None)
    for name, row_bytes in _blobs(meta):
        maps[name].flush()
        for c, v in _chunk_crcs(path / name, row_bytes, rows, chunk, sorted(damaged)).items():
            meta["crc"][name][c] = v
    del maps
    _write_json(path / _META, meta)


def build_cache(dataset, size: int, *, root: str | os.PathLike | None = None, key: str | None = None,
                workers: int | None = None, chunk: int = 64, progress: bool = True,
                mean=None, std=None, on_bad_image: str | None = None) -> Path:
    """Decode and resize ``dataset`` into a cache folder (see the module docstring); return its path.

    ``dataset``: an :class:`~camlib.data.InMemoryDataset`, one of camlib's real datasets, or any
    dataset of dicts ``{"image": PIL image | uint8 (3, H, W) | float (3, H, W) in [0, 1], "label",
    "boxes"?, "mask"?}``. ``workers``: decoding processes (default: every core; 0 decodes here).
    A finished cache is validated (:func:`check_cache`) and returned; damaged chunks of rows are
    decoded again in place, damaged small arrays rebuild the cache. A partial one is resumed
    (finished chunks, checked against their checksums, are skipped). ``mean``/``std``: the
    normalization the opened cache applies at read time (default: the dataset's own, else
    ImageNet's); the pixels are stored as uint8, so it can differ from call to call.
    ``on_bad_image``: "raise" (default, or the dataset's own ``on_bad_image``) stops at the first
    unreadable image, naming it; "skip" leaves such images out, counts them, lists them in
    ``meta.json`` (``skipped``) and warns once at the end.
    """
    from .common import check_on_bad_image
    size = _check_size(size)
    n = len(dataset)
    if n < 1:
        raise ValueError("cannot cache an empty dataset")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int; got {chunk!r}")
    policy = check_on_bad_image(on_bad_image if on_bad_image is not None
                                else getattr(dataset, "on_bad_image", "raise"))
    path = cache_path(dataset, size, root, key)
    if mean is None:
        mean = dataset.mean.flatten().tolist() if isinstance(dataset, InMemoryDataset) else list(IMAGENET_MEAN)
    if std is None:
        std = dataset.std.flatten().tolist() if isinstance(dataset, InMemoryDataset) else list(IMAGENET_STD)
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    if len(mean) != 3 or len(std) != 3 or not all(v > 0 for v in std):
        raise ValueError(f"mean and std must be 3 numbers each (std > 0); got {mean!r}, {std!r}")
    decoder = _Decoder(dataset, size, policy)
    if is_complete(path):
        meta = _read_meta(path)
        report = check_cache(path)
        if report["ok"] or not report["small"]:
            if not report["ok"]:
                warnings.warn(f"cache {path} was damaged ({'; '.join(report['problems'][:3])}): decoding "
                              f"{len(report['chunks'])} chunk(s) of {meta['chunk']} images again", stacklevel=2)
                _repair(path, meta, report["chunks"], decoder, workers)
            if (meta["mean"], meta["std"]) != (mean, std):
                meta["mean"], meta["std"] = mean, std      # pixels are uint8: only the default changes
                _write_json(path / _META, meta)
            return path
        warnings.warn(f"cache {path} was damaged ({'; '.join(report['problems'][:3])}): building it again",
                      stacklevel=2)
        shutil.rmtree(path)
    names = getattr(dataset, "class_names", None)
    meta = {"version": CACHE_VERSION, "identity": {"key": key} if key is not None else dataset_identity(dataset),
            "size": size, "n": n, "chunk": chunk, "mean": mean, "std": std,
            "class_names": list(names) if names is not None else None, "on_bad_image": policy,
            "name": str(getattr(dataset, "name", None) or key or type(dataset).__name__), "complete": False}
    meta = json.loads(json.dumps(meta, default=str))   # as it will read back (tuples become lists)
    old = _read_meta(path)
    same = lambda m: {k: v for k, v in m.items() if k not in _VOLATILE}  # noqa: E731
    if old is not None and same(old) == same(meta) and "has_mask" in old:
        meta["has_mask"] = old["has_mask"]         # resuming: keep what the first attempt found
    else:
        if path.exists():
            shutil.rmtree(path)                    # a partial build with other settings: start over
        for i in range(n):                          # does the first readable image have a mask?
            probe = decoder.chunk(i, i + 1)          # (and: does decoding work?)
            if not bool(probe["bad"].any()):
                break
        meta["has_mask"] = "masks" in probe
    (path / _CHUNKS).mkdir(parents=True, exist_ok=True)
    _write_json(path / _META, meta)

    mode = "r+" if (path / "images.u8").is_file() and (path / "images.u8").stat().st_size == n * 3 * size * size \
        else "w+"
    images = np.memmap(path / "images.u8", dtype=np.uint8, mode=mode, shape=(n, 3, size, size))
    masks = None
    if meta["has_mask"]:
        mpath = path / "masks.u8"
        mmode = "r+" if mpath.is_file() and mpath.stat().st_size == n * size * size else "w+"
        masks = np.memmap(mpath, dtype=np.bool_, mode=mmode, shape=(n, size, size))
    n_chunks = -(-n // chunk)
    done = set()
    for p in (path / _CHUNKS).glob("*.npz"):       # a finished chunk counts if its marker and pixels check out
        try:
            c = int(p.stem)
            with np.load(p) as z:
                crc = int(z["crc"])
                _ = (z["labels"], z["boxes"], z["counts"], z["sizes"], z["bad"], z["reasons"])
            lo, hi = c * chunk, min((c + 1) * chunk, n)
            ok = zlib.crc32(images[lo:hi]) if masks is None else zlib.crc32(masks[lo:hi], zlib.crc32(images[lo:hi]))
            if ok == crc and mode == "r+":
                done.add(c)
                continue
        except Exception:                          # a cut or garbled marker: decode that chunk again
            pass
        p.unlink(missing_ok=True)
    todo = [c for c in range(n_chunks) if c not in done]

    bar = None
    if progress and todo:
        from ..config import progress_bar
        finished = sum(min(chunk, n - c * chunk) for c in done)
        bar = progress_bar(total=n, initial=finished, desc=f"caching {meta['name']} at {size}px", unit="img")

    def put(res):
        c = int(res["chunk"])
        lo, hi = c * chunk, min((c + 1) * chunk, n)
        images[lo:hi] = res["images"].numpy()
        images.flush()
        crc = zlib.crc32(images[lo:hi])
        if masks is not None:
            if "masks" not in res:
                raise ValueError(f"images {lo}..{hi - 1} have no masks but image 0 has one")
            masks[lo:hi] = res["masks"].numpy()
            masks.flush()
            crc = zlib.crc32(masks[lo:hi], crc)
        tmp = path / _CHUNKS / f"{c:06d}.tmp.npz"
        np.savez(tmp, labels=res["labels"].numpy(), boxes=res["boxes"].numpy().astype(np.float32),
                 counts=res["counts"].numpy(), sizes=res["sizes"].numpy(), bad=res["bad"].numpy(),
                 reasons=np.array(res["reasons"]), crc=np.array(crc, dtype=np.int64))
        os.replace(tmp, path / _CHUNKS / f"{c:06d}.npz")   # the chunk-done marker

    if todo:
        _run_jobs(decoder, todo, chunk, n, workers, None, put, bar)
    _finish(path, meta, images, masks, n, chunk)
    return path


def _finish(path: Path, meta: dict[str, Any], images, masks, n: int, chunk: int) -> None:
    """Gather the chunk markers into the small arrays, leave out skipped images, write checksums."""
    parts = [dict(np.load(path / _CHUNKS / f"{c:06d}.npz")) for c in range(-(-n // chunk))]
    bad = np.concatenate([p["bad"] for p in parts]).astype(bool)
    reasons = [r for p in parts for r in str(p["reasons"]).split("\n") if r]
    keep = np.flatnonzero(~bad)
    if len(keep) == 0:
        raise ValueError(f"none of the {n} images could be read; first: {reasons[:1]}")
    counts = np.concatenate([p["counts"] for p in parts])
    boxes = np.concatenate([p["boxes"].reshape(-1, 4) for p in parts]).astype(np.float32)
    del images, masks
    if bad.any():                                  # compact the raw files: the skipped rows go
        for name, row_bytes in _blobs(meta):
            src = np.memmap(path / name, dtype=np.uint8, mode="r", shape=(n, row_bytes))
            dst = np.memmap(path / (name + ".tmp"), dtype=np.uint8, mode="w+", shape=(len(keep), row_bytes))
            for lo in range(0, len(keep), chunk):
                dst[lo:lo + chunk] = src[keep[lo:lo + chunk]]
            dst.flush()
            del src, dst
            os.replace(path / (name + ".tmp"), path / name)
        boxes = boxes[~bad[np.repeat(np.arange(n), counts)]]
    small = {"labels": np.concatenate([p["labels"] for p in parts]).astype(np.int64)[keep],
             "boxes": boxes,
             "box_offsets": np.concatenate([[0], np.cumsum(counts[keep])]).astype(np.int64),
             "sizes": np.concatenate([p["sizes"].reshape(-1, 2) for p in parts]).astype(np.int32)[keep],
             "sources": keep.astype(np.int64)}
    for k, v in small.items():
        np.save(path / f"{k}.npy", v)
    rows = len(keep)
    meta.update(rows=rows, complete=True, skipped=[{"index": int(r.split("\t")[0]), "reason": r.split("\t", 1)[1]}
                                                    for r in reasons],
                npy_crc={k: _file_crc(path / f"{k}.npy") for k in _SMALL},
                crc={name: list(_chunk_crcs(path / name, rb, rows, chunk).values()) for name, rb in _blobs(meta)})
    _write_json(path / _META, meta)
    shutil.rmtree(path / _CHUNKS, ignore_errors=True)
    if reasons:
        warnings.warn(f"{len(reasons)} of {n} images could not be read and were left out of the cache {path.name} "
                      f"(on_bad_image='skip'); see meta.json 'skipped'. First: {reasons[0].split(chr(9), 1)[1]}",
                      stacklevel=3)


# ------------------------------------------------------------------------------------ opening

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
        meta = _read_meta(path)
        if meta is None:
            raise ValueError(f"{path} is not a cache folder (no readable {_META})")
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
