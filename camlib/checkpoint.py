"""Checkpoints that survive a disconnect: atomic writes, the previous file kept, RNG states, and a
check that a resumed run has the settings and data of the run that wrote it. Used by
:func:`camlib.train.fit` (lesson 01: resuming after a Colab disconnect).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.memory import has_uint8_images


def rng_state() -> dict[str, Any]:
    """The random states of torch, NumPy, Python (and CUDA): a resumed run draws what the first would have."""
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


class CheckpointError(ValueError):
    """A checkpoint file cannot be read (truncated, empty, not a checkpoint); the message names it."""


def previous_checkpoint(path: str | os.PathLike) -> Path:
    """Where :func:`save_checkpoint` keeps the checkpoint it replaced: ``<path>.prev``."""
    path = Path(path)
    return path.with_name(path.name + ".prev")


def check_checkpoint_path(path: str | os.PathLike) -> Path:
    """A checkpoint path that can be written: not a folder, its folder creatable. Checked before training."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"checkpoint must be a file path, not a folder; got {path} (try {path / 'run.pt'})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the folder of the checkpoint {path}: {e}") from e
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"the folder of the checkpoint {path} is not writable")
    return path


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` atomically: a crash mid-write never leaves a broken checkpoint. The checkpoint
    it replaces is kept as ``<path>.prev`` (:func:`load_checkpoint` falls back to it)."""
    path = check_checkpoint_path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    if path.is_file():
        os.replace(path, previous_checkpoint(path))
    os.replace(tmp, path)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        st = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:       # EOFError, UnpicklingError, RuntimeError (zip), OSError ... all mean: unreadable
        raise CheckpointError(f"{type(e).__name__}: {e}") from e
    if not isinstance(st, dict):
        raise CheckpointError(f"it holds a {type(st).__name__}, not a checkpoint dict")
    return st


def load_checkpoint(path: str | os.PathLike, fallback: bool = True) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (on the CPU).

    A truncated, empty or garbage file raises :class:`CheckpointError` naming it and saying what to
    do -- unless ``fallback`` and the previous checkpoint (``<path>.prev``) reads: then a warning
    names both and the previous one is returned. Called by :func:`camlib.train.fit` with
    ``resume=True``, which lesson 01 uses to resume after a disconnect.
    """
    path = Path(path)
    prev = previous_checkpoint(path)
    if path.is_dir():
        raise ValueError(f"checkpoint must be a file path, not a folder; got {path}")
    if not path.is_file() and not (fallback and prev.is_file()):
        raise ValueError(f"no checkpoint at {path}")
    why = "it is missing"
    if path.is_file():
        try:
            return _read_checkpoint(path)
        except CheckpointError as e:
            why = str(e)
    if fallback and prev.is_file():
        try:
            st = _read_checkpoint(prev)
        except CheckpointError:
            pass
        else:
            import warnings
            warnings.warn(f"checkpoint {path} cannot be read ({why}); using the previous one, {prev} "
                          f"(step {st.get('step', '?')})", stacklevel=2)
            return st
    raise CheckpointError(f"checkpoint {path} cannot be read ({why}): it is truncated, empty or not a "
                          "checkpoint, and no readable previous checkpoint (.prev) is beside it. Move it away "
                          "or delete it to start the run afresh (or pass another checkpoint path)")


#: Settings that may change between a run and its resumption (they do not change the weights).
_RESUMABLE = ("eval_every", "checkpoint_every")


def data_identity(data) -> dict[str, Any]:
    """A cheap fingerprint of a training set: class, size, name, labels and a strided sample of pixels."""
    import hashlib
    meta = getattr(data, "meta", None)
    if isinstance(meta, dict) and "identity" in meta:      # a decoded-image cache knows its source
        return {"cache": hashlib.sha1(repr((meta["identity"], meta.get("size"), meta.get("rows"))).encode())
                .hexdigest()[:16], "n": len(data)}
    ident: dict[str, Any] = {"class": type(data).__name__, "n": len(data)}
    if has_uint8_images(data):
        h = hashlib.sha1(data.labels.cpu().numpy().tobytes())
        step = max(1, len(data) // 256)
        h.update(np.ascontiguousarray(data.images[::step].cpu().numpy()).tobytes())
        ident["content"] = h.hexdigest()[:16]
    return ident


def resume_differences(st: dict[str, Any], now: dict[str, Any], data_id: dict[str, Any]) -> list[str]:
    """The settings of this run (``now``, e.g. ``asdict(TrainConfig)``) that differ from those the
    checkpoint ``st`` was written with, and a different training set (``data_id``: :func:`data_identity`)."""
    old = st.get("config", {})
    diff = [f"{k}={old[k]!r} (now {now[k]!r})" for k in now if k in old and k not in _RESUMABLE and old[k] != now[k]]
    if st.get("data") is not None and st["data"] != data_id:
        diff.append(f"dataset {st['data']} (now {data_id})")
    return diff


