"""Build a dataset's cache folder: decode it once, resume an interrupted build, repair a damaged one.

:func:`build_cache` writes the files :mod:`camlib.data.cache_format` describes, with the images
:mod:`camlib.data.cache_decode` decodes (``DataLoader`` workers, one chunk of images per task) and a
progress bar. Every finished chunk leaves a marker file (with the crc32 of its rows), so a build
that was interrupted (Ctrl-C, a Colab disconnect, a crash) resumes where it stopped and skips
finished chunks. A finished cache is validated first: damaged chunks of rows are decoded again in
place, damaged small arrays rebuild the cache.

One layer of :mod:`camlib.data.cache` (which re-exports :func:`build_cache`).
Introduced in lesson 03 (GPU path).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cache_decode import Decoder, run_jobs
from .common import check_size
from .cache_format import (CACHE_VERSION, CHUNK_DIR, META_FILE, SMALL_ARRAYS, cache_path, check_cache,
                           chunk_crcs, dataset_identity, file_crc, is_complete, raw_files, read_meta, write_json)
from .memory import IMAGENET_MEAN, IMAGENET_STD, InMemoryDataset


#: meta entries that may differ between a first and a resumed attempt of the same build
_VOLATILE = ("complete", "has_mask", "crc", "npy_crc", "skipped", "rows", "mean", "std")


def _repair(path: Path, meta: dict[str, Any], damaged: set[int], decoder, workers) -> None:
    """Decode again the rows of the damaged chunks of a finished cache and write them in place."""
    rows, chunk = int(meta["rows"]), int(meta["chunk"])
    maps = {}
    for name, row_bytes in raw_files(meta):
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

    run_jobs(decoder, sorted(damaged), chunk, rows, workers, sources, put, None)
    for name, row_bytes in raw_files(meta):
        maps[name].flush()
        for c, v in chunk_crcs(path / name, row_bytes, rows, chunk, sorted(damaged)).items():
            meta["crc"][name][c] = v
    maps.clear()                                  # let go of the memory maps before writing meta.json
    write_json(path / META_FILE, meta)


def build_cache(dataset, size: int, *, root: str | os.PathLike | None = None, key: str | None = None,
                workers: int | None = None, chunk: int = 64, progress: bool = True,
                mean=None, std=None, on_bad_image: str | None = None) -> Path:
    """Decode and resize ``dataset`` into a cache folder (files: :mod:`camlib.data.cache_format`); return its path.

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
    size = check_size(size)
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
    decoder = Decoder(dataset, size, policy)
    if is_complete(path):
        meta = read_meta(path)
        report = check_cache(path)
        if report["ok"] or not report["small"]:
            if not report["ok"]:
                warnings.warn(f"cache {path} was damaged ({'; '.join(report['problems'][:3])}): decoding "
                              f"{len(report['chunks'])} chunk(s) of {meta['chunk']} images again", stacklevel=2)
                _repair(path, meta, report["chunks"], decoder, workers)
            if (meta["mean"], meta["std"]) != (mean, std):
                meta["mean"], meta["std"] = mean, std      # pixels are uint8: only the default changes
                write_json(path / META_FILE, meta)
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
    old = read_meta(path)
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
    (path / CHUNK_DIR).mkdir(parents=True, exist_ok=True)
    write_json(path / META_FILE, meta)

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
    for p in (path / CHUNK_DIR).glob("*.npz"):       # a finished chunk counts if its marker and pixels check out
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
        tmp = path / CHUNK_DIR / f"{c:06d}.tmp.npz"
        np.savez(tmp, labels=res["labels"].numpy(), boxes=res["boxes"].numpy().astype(np.float32),
                 counts=res["counts"].numpy(), sizes=res["sizes"].numpy(), bad=res["bad"].numpy(),
                 reasons=np.array(res["reasons"]), crc=np.array(crc, dtype=np.int64))
        os.replace(tmp, path / CHUNK_DIR / f"{c:06d}.npz")   # the chunk-done marker

    if todo:
        run_jobs(decoder, todo, chunk, n, workers, None, put, bar)
    _finish(path, meta, images, masks, n, chunk)
    return path


def _finish(path: Path, meta: dict[str, Any], images, masks, n: int, chunk: int) -> None:
    """Gather the chunk markers into the small arrays, leave out skipped images, write checksums."""
    parts = [dict(np.load(path / CHUNK_DIR / f"{c:06d}.npz")) for c in range(-(-n // chunk))]
    bad = np.concatenate([p["bad"] for p in parts]).astype(bool)
    reasons = [r for p in parts for r in str(p["reasons"]).split("\n") if r]
    keep = np.flatnonzero(~bad)
    if len(keep) == 0:
        raise ValueError(f"none of the {n} images could be read; first: {reasons[:1]}")
    counts = np.concatenate([p["counts"] for p in parts])
    boxes = np.concatenate([p["boxes"].reshape(-1, 4) for p in parts]).astype(np.float32)
    del images, masks
    if bad.any():                                  # compact the raw files: the skipped rows go
        for name, row_bytes in raw_files(meta):
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
                npy_crc={k: file_crc(path / f"{k}.npy") for k in SMALL_ARRAYS},
                crc={name: list(chunk_crcs(path / name, rb, rows, chunk).values()) for name, rb in raw_files(meta)})
    write_json(path / META_FILE, meta)
    shutil.rmtree(path / CHUNK_DIR, ignore_errors=True)
    if reasons:
        warnings.warn(f"{len(reasons)} of {n} images could not be read and were left out of the cache {path.name} "
                      f"(on_bad_image='skip'); see meta.json 'skipped'. First: {reasons[0].split(chr(9), 1)[1]}",
                      stacklevel=3)
