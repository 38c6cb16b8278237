"""The cache's on-disk format: where a dataset's cache lives, what its files hold, whether it is intact.

A cache is a folder ``<cache_dir>/<name>-<S>px-<hash>/`` (:func:`cache_path`;
:func:`camlib.config.cache_dir`: ``data/cache`` by default, the runtime's local disk on Colab when
the data is on Google Drive)::

    meta.json        version, the dataset's identity, size, count, mean/std, class names, complete?
    images.u8        raw uint8 (N, 3, S, S), C order, opened with numpy.memmap
    masks.u8         raw bool (N, S, S), when the dataset has masks
    labels.npy       int64 (N,)
    boxes.npy        float32 (M, 4): every image's boxes, one after another (pixel-edge, resized)
    box_offsets.npy  int64 (N + 1,): image i's boxes are boxes[offsets[i]:offsets[i + 1]]
    sizes.npy        int32 (N, 2): each image's original (width, height)
    sources.npy      int64 (N,): each row's index in the dataset it was built from

The folder name hashes the dataset's identity (:func:`dataset_identity`: class, root, split,
options, a fingerprint of its sample list), the size and :data:`CACHE_VERSION`, so a changed
setting builds a new cache instead of reading a stale one. ``meta.json`` records a crc32 of every
chunk of rows of the raw files and of each small array; :func:`check_cache` checks them.

One layer of :mod:`camlib.data.cache` (which re-exports the public names): writing a cache is
:mod:`camlib.data.cache_build`'s job, opening one is :mod:`camlib.data.cache`'s.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .common import check_size
from .memory import InMemoryDataset


#: Bump when the file layout or the resizing changes: every old cache is then rebuilt.
CACHE_VERSION = 2
#: The cache's description (see the module docstring) and the folder of a build's chunk-done markers.
META_FILE = "meta.json"
CHUNK_DIR = "chunks"


def _cache_root() -> Path:
    from ..config import cache_dir  # the one place the cache folder is decided
    return cache_dir()


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
    size = check_size(size)
    ident = {"key": key} if key is not None else dataset_identity(dataset)
    digest = hashlib.sha1(json.dumps({"identity": ident, "size": size, "version": CACHE_VERSION},
                                     sort_keys=True, default=str).encode()).hexdigest()[:12]
    name = str(key or ident.get("name") or ident.get("class", "dataset"))
    if ident.get("split"):
        name += f"-{ident['split']}"
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower())[:48]
    base = Path(root) if root is not None else _cache_root()
    return base / f"{slug}-{size}px-{digest}"


def write_json(path: Path, obj: dict) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file (a crash leaves the old file or the new)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_meta(path: Path) -> dict[str, Any] | None:
    """The ``meta.json`` of the cache folder ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads((path / META_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a finished cache of the current version (see :func:`check_cache` for damage)."""
    meta = read_meta(Path(path))
    return bool(meta and meta.get("complete") and meta.get("version") == CACHE_VERSION)


#: The ``.npy`` files of a finished cache.
SMALL_ARRAYS = ("labels", "boxes", "box_offsets", "sizes", "sources")


def raw_files(meta: dict[str, Any]) -> list[tuple[str, int]]:
    """The raw files of a cache and the bytes of one row in each."""
    S = int(meta["size"])
    return [("images.u8", 3 * S * S)] + ([("masks.u8", S * S)] if meta.get("has_mask") else [])


def file_crc(path: Path) -> int:
    """crc32 of a whole (small) file."""
    return zlib.crc32(path.read_bytes())


def chunk_crcs(path: Path, row_bytes: int, rows: int, chunk: int, which=None) -> dict[int, int]:
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
    meta = read_meta(path)
    if meta is None or not is_complete(path):
        return {"ok": False, "problems": [f"{path} holds no finished cache of version {CACHE_VERSION}"],
                "chunks": set(), "small": list(SMALL_ARRAYS)}
    rows, chunk = int(meta["rows"]), int(meta["chunk"])
    n_chunks = -(-rows // chunk)
    problems, bad = [], set()
    for name, row_bytes in raw_files(meta):
        f = path / name
        have, want = (f.stat().st_size if f.is_file() else -1), rows * row_bytes
        if have != want:
            problems.append(f"{name} has {max(have, 0)} bytes, expected {want}" if have >= 0 else f"{name} is missing")
        whole = [c for c in range(n_chunks) if min((c + 1) * chunk, rows) * row_bytes <= have]
        bad |= set(range(n_chunks)) - set(whole)
        crcs = chunk_crcs(f, row_bytes, rows, chunk, whole) if whole else {}
        wrong = [c for c, v in crcs.items() if v != meta["crc"][name][c]]
        if wrong:
            problems.append(f"{name}: chunks {wrong[:8]} do not match their checksums (overwritten bytes)")
        bad |= set(wrong)
    small = []
    for k in SMALL_ARRAYS:
        f = path / f"{k}.npy"
        if not f.is_file():
            small.append(k)
            problems.append(f"{k}.npy is missing")
        elif file_crc(f) != meta["npy_crc"][k]:
            small.append(k)
            problems.append(f"{k}.npy does not match its checksum (truncated or changed)")
    return {"ok": not problems, "problems": problems, "chunks": bad, "small": small}
