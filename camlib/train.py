"""One training loop for CPU and GPU: fit, evaluate, predict, checkpoints that survive a disconnect.

``fit`` trains a :class:`~camlib.models.CAMNet` for a number of *steps* with image-level labels
only (the paper's weak supervision: boxes and masks are never shown to the loss). It

* draws the data order from ``(seed, epoch)`` alone, so a resumed run sees the same batches;
* uses mixed precision on CUDA (bf16 where the GPU has it natively, compute capability >= 8.0;
  else fp16 with a gradient scaler, e.g. on Colab's T4) and
  channels-last memory, and plain fp32 on the CPU;
* validates after every epoch (and at the end) and keeps a history;
* writes a checkpoint (model, optimizer, schedule, scaler, RNG states, the augmenter's generator,
  history) atomically every ``checkpoint_every`` steps; ``resume=True`` continues from it after a
  crash or a Colab disconnect, to the same weights as an uninterrupted run.

At GPU speed (lesson 03's GPU path): the data is an in-memory or cached uint8 dataset
(:mod:`camlib.data.cache`); each batch is gathered on the CPU in a background thread, pinned, copied
to the device as uint8 and augmented there (``augment=``, e.g.
:class:`camlib.data.augment.GPUAugment`); ``compile=True`` runs the model through
``torch.compile``. Under ``torchrun`` the same call trains with DistributedDataParallel
(:mod:`camlib.distributed`): each rank takes its slice of the same global batch, only rank 0
writes checkpoints and draws the progress bar, and evaluation gathers every rank's share.
``python -m camlib.train --recipe NAME`` runs a named recipe (:mod:`camlib.recipes`).

Introduced in lesson 01.
"""

from __future__ import annotations


import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import config as _config
from . import distributed as _dist
from .cam import class_activation_maps, upsample


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (saved in the checkpoint)."""

    steps: int
    batch_size: int = 128
    lr: float = 2e-3
    optimizer: str = "adam"            # "adam" | "sgd" (momentum 0.9, as the paper's Caffe solver)
    schedule: str = "onecycle"         # "onecycle" | "step" (x0.1 at 1/2 and 3/4, or every decay_every) | "constant"
    weight_decay: float = 0.0
    nesterov: bool = False             # SGD with Nesterov momentum (Choe et al. 2020)
    decay_every: int | None = None     # "step" schedule: x0.1 every this many steps (the paper: 40k iterations)
    head_params: tuple[str, ...] = ()  # parameter-name prefixes of the layers that start fresh ...
    head_lr_mult: float = 1.0          # ... and their learning-rate multiplier (Choe et al.: 10)
    sync_bn: bool | str = "auto"       # SyncBatchNorm under DDP: "auto" = on CUDA with > 1 process
    seed: int = 0
    eval_every: int | None = None      # steps between validations; default: one epoch
    checkpoint_every: int = 50
    amp: str = "auto"                  # "auto" | "bf16" | "fp16" | "off"
    channels_last: bool = True
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive int, got {self.steps!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("onecycle", "step", "constant"):
            raise ValueError(f"schedule must be 'onecycle', 'step' or 'constant', got {self.schedule!r}")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', got {self.amp!r}")
        if self.decay_every is not None and (not isinstance(self.decay_every, int) or self.decay_every < 1):
            raise ValueError(f"decay_every must be a positive int or None, got {self.decay_every!r}")
        if isinstance(self.head_params, str) or not all(isinstance(h, str) for h in self.head_params):
            raise ValueError(f"head_params must be a tuple of parameter-name prefixes, got {self.head_params!r}")
        self.head_params = tuple(self.head_params)
        if not self.head_lr_mult > 0:
            raise ValueError(f"head_lr_mult must be positive, got {self.head_lr_mult!r}")
        if self.sync_bn not in ("auto", True, False):
            raise ValueError(f"sync_bn must be 'auto', True or False, got {self.sync_bn!r}")
        for name in ("checkpoint_every", "eval_every"):
            v = getattr(self, name)
            if (v is not None or name == "checkpoint_every") and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be a positive int (steps){' or None' if name == 'eval_every' else ''}; "
                                 f"got {v!r}")


@dataclass
class History:
    """What a run measured: one row per validation, plus snapshots of the weights if asked."""

    rows: list[dict[str, float]] = field(default_factory=list)
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    seconds: float = 0.0

    def last(self, key: str) -> float:
        vals = [r[key] for r in self.rows if key in r]
        if not vals:
            raise ValueError(f"no validation row has {key!r}; keys: {sorted({k for r in self.rows for k in r})}")
        return vals[-1]

    def column(self, key: str) -> list[float]:
        return [r[key] for r in self.rows if key in r]


# ----------------------------------------------------------------------------------- data access

def _num(data) -> int:
    return len(data)


def _get_batch(data, idx: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    """A batch as a dict on ``device``: in-memory datasets hand it over whole; others are stacked."""
    if hasattr(data, "batch"):
        return data.batch(idx, device=device)
    samples = [data[int(i)] for i in idx]
    out = {"image": torch.stack([s["image"] for s in samples]).to(device),
           "label": torch.as_tensor([int(s["label"]) for s in samples]).to(device)}
    return out


def _is_tensor_dataset(data) -> bool:
    """In-memory or cached: uint8 ``images`` and ``labels`` tensors that batches are gathered from."""
    imgs = getattr(data, "images", None)
    return isinstance(imgs, torch.Tensor) and imgs.dtype == torch.uint8 and hasattr(data, "labels")


def _gather(data, idx: torch.Tensor, pin: bool) -> dict[str, torch.Tensor]:
    """Step 1 of a training batch (any thread): the uint8 images and labels, pinned for a fast copy."""
    if _is_tensor_dataset(data):
        i = idx.to(data.images.device)
        out = {"image": data.images[i], "label": data.labels.to(i.device)[i]}
    else:
        out = _get_batch(data, idx, torch.device("cpu"))
    if pin:
        out = {k: v.pin_memory() if v.device.type == "cpu" else v for k, v in out.items()}
    return out


def _finish(data, batch: dict[str, torch.Tensor], device: torch.device, augment, part,
            norm: tuple[torch.Tensor, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Step 2 (the training thread): to the device as uint8, then augment or just normalize there.

    ``norm``: the dataset's mean and std already on ``device`` (the same arithmetic as
    ``InMemoryDataset.normalize``, without copying them to the device at every step)."""
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if not _is_tensor_dataset(data):
        return batch
    if augment is not None:
        return augment(batch, part=part) if part is not None else augment(batch)
    mean, std = norm
    batch["image"] = (batch["image"].float() / 255.0 - mean) / std
    return batch


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The training order of one epoch: a permutation fixed by ``(seed, epoch)`` alone."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g)


def _batch_indices(n: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """Indices of training step ``step``: epochs of whole batches (the remainder is dropped)."""
    per_epoch = max(1, n // batch_size)
    epoch, k = divmod(step, per_epoch)
    order = epoch_order(n, seed, epoch)
    return order[k * batch_size:(k + 1) * batch_size]


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)


# ------------------------------------------------------------------------------- precision, state

def native_bf16(device: torch.device) -> bool:
    """Whether CUDA ``device`` computes in bf16 in hardware (compute capability 8.0 or more: A100, L4,
    H100...). A T4 (7.5) or V100 (7.0) only *emulates* bf16 (``torch.cuda.is_bf16_supported()`` says
    yes all the same), slower than fp16 and without its tensor cores."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    major, _minor = torch.cuda.get_device_capability(device)
    return major >= 8


def amp_dtype(device: torch.device, amp: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``device``: on CUDA, bf16 where the hardware has it (:func:`native_bf16`),
    else fp16 (trained with a gradient scaler, see :func:`grad_scaler`); none on the CPU or MPS.
    ``amp="bf16"``/``"fp16"`` force one, ``"off"`` none."""
    if amp not in ("auto", "bf16", "fp16", "off"):
        raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', got {amp!r}")
    if amp == "off" or device.type != "cuda":
        return None
    if amp == "bf16" or (amp == "auto" and native_bf16(device)):
        return torch.bfloat16
    return torch.float16


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """The gradient scaler for a run in ``dtype``: enabled for fp16 (its small range underflows small
    gradients without it), a no-op otherwise (bf16 has fp32's range; fp32 needs none)."""
    return torch.amp.GradScaler("cuda", enabled=(device.type == "cuda" and dtype == torch.float16))


def _rng_state() -> dict[str, Any]:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
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
    names both and the previous one is returned. Lesson 01 (resuming after a disconnect).
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


def _data_identity(data) -> dict[str, Any]:
    """A cheap fingerprint of a training set: class, size, name, labels and a strided sample of pixels."""
    import hashlib
    meta = getattr(data, "meta", None)
    if isinstance(meta, dict) and "identity" in meta:      # a decoded-image cache knows its source
        return {"cache": hashlib.sha1(repr((meta["identity"], meta.get("size"), meta.get("rows"))).encode())
                .hexdigest()[:16], "n": len(data)}
    ident: dict[str, Any] = {"class": type(data).__name__, "n": len(data)}
    if _is_tensor_dataset(data):
        h = hashlib.sha1(data.labels.cpu().numpy().tobytes())
        step = max(1, len(data) // 256)
        h.update(np.ascontiguousarray(data.images[::step].cpu().numpy()).tobytes())
        ident["content"] = h.hexdigest()[:16]
    return ident


def _resume_differences(st: dict[str, Any], cfg: "TrainConfig", data_id: dict[str, Any]) -> list[str]:
    """The settings of this run that differ from those the checkpoint was written with."""
    old = st.get("config", {})
    now = asdict(cfg)
    diff = [f"{k}={old[k]!r} (now {now[k]!r})" for k in now if k in old and k not in _RESUMABLE and old[k] != now[k]]
    if st.get("data") is not None and st["data"] != data_id:
        diff.append(f"dataset {st['data']} (now {data_id})")
    return diff


def _param_groups(model, cfg: TrainConfig) -> list[dict[str, Any]]:
    """One group at ``lr``; with ``head_params``, the fresh layers get ``lr * head_lr_mult``."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not cfg.head_params:
        return [{"params": [p for _, p in named], "lr": cfg.lr}]
    head = [p for n, p in named if n.startswith(cfg.head_params)]
    if not head:
        raise ValueError(f"head_params {cfg.head_params} match no parameter; names start like "
                         f"{sorted({n.split('.')[0] + '.' + n.split('.')[1] for n, _ in named if '.' in n})[:8]}")
    rest = [p for n, p in named if not n.startswith(cfg.head_params)]
    return [{"params": rest, "lr": cfg.lr}, {"params": head, "lr": cfg.lr * cfg.head_lr_mult}]


def _make_optimizer(model, cfg: TrainConfig):
    groups = _param_groups(model, cfg)
    if cfg.optimizer == "adam":
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay) if cfg.weight_decay \
            else torch.optim.Adam(groups, lr=cfg.lr)
    else:
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    if cfg.schedule == "onecycle":
        # torch's OneCycleLR divides by (pct_start * steps - 1): warm up a quarter of the run, or a
        # little more when that is exactly one step (steps=4 would divide by zero)
        pct = 0.25 if abs(0.25 * cfg.steps - 1.0) > 1e-9 else 0.3
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=cfg.steps,
                                                    pct_start=pct)
    elif cfg.schedule == "step" and cfg.decay_every:
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.decay_every, gamma=0.1)
    elif cfg.schedule == "step":
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[cfg.steps // 2, (3 * cfg.steps) // 4], gamma=0.1)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


# -------------------------------------------------------------------------------------- the loop

def fit(model: torch.nn.Module, train, val=None, *, steps: int, batch_size: int = 128, lr: float = 2e-3,
        device: torch.device | str | None = None, checkpoint: str | os.PathLike | None = None,
        resume: bool | str = False, progress: bool = True, snapshot_steps=(), on_eval: Callable | None = None,
        augment: Callable | None = None, compile: bool = False, prefetch: bool | None = None,
        **kwargs) -> History:
    """Train ``model`` on ``train`` (image-level labels only) for ``steps`` steps; return the history.

    ``train``/``val``: an :class:`~camlib.data.InMemoryDataset` (or a cache of one,
    :class:`~camlib.data.cache.CachedDataset`) or any dataset of dicts with ``"image"`` and
    ``"label"``. Other keyword arguments go to :class:`TrainConfig`.
    ``checkpoint``: a file path (checked before training starts); with ``resume=True`` and an
    existing file, the run continues from it -- only if it was written with the same settings (lr,
    seed, batch size, ..., and the same training set); otherwise a ``ValueError`` names the
    differences, unless ``resume="force"``. An unreadable checkpoint falls back to the previous one
    (:func:`load_checkpoint`). ``snapshot_steps``: steps after which a CPU copy of the weights is kept in the history
    (lesson 01 draws maps from them). ``on_eval(model, row)`` runs after each validation.
    ``augment``: a callable applied on the device to each uint8 training batch (a dict with
    ``"image"`` uint8 ``(B, 3, H, W)`` and ``"label"``) that returns it with a normalized float
    image, e.g. :class:`camlib.data.augment.GPUAugment`; its ``state_dict()`` (the random stream)
    goes into the checkpoint. Needs an in-memory or cached dataset. ``compile``: run the model
    through ``torch.compile``. ``prefetch``: gather the next batch in a background thread
    (default: on CUDA). Under ``torchrun`` the run is data-parallel (module docstring).
    """
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, **kwargs)
    n = _num(train)
    if n < cfg.batch_size:
        raise ValueError(f"the training set has {n} images, fewer than one batch of {cfg.batch_size}")
    if resume not in (False, True, "force"):
        raise ValueError(f"resume must be False, True or 'force'; got {resume!r}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    if checkpoint is not None:
        checkpoint = check_checkpoint_path(checkpoint)     # a folder fails now, not after the training
    if val is not None and _num(val) == 0:
        raise ValueError("val is an empty dataset; pass val=None to train without validation")
    if augment is not None and not callable(augment):
        raise ValueError(f"augment must be callable (batch dict -> batch dict); got {type(augment).__name__}")
    if augment is not None and not _is_tensor_dataset(train):
        raise ValueError("augment= works on uint8 batches: give an InMemoryDataset or a cached dataset "
                         f"(camlib.data.cache.cached); got {type(train).__name__}")
    ws, rank = _dist.world_size(), _dist.rank()
    if cfg.batch_size % ws:
        raise ValueError(f"batch_size {cfg.batch_size} must divide evenly over {ws} processes")
    device = torch.device(device) if device is not None else _config.get_device()
    if ws > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    step_model = _dist.wrap(model, device, cfg.sync_bn)       # DDP (and SyncBatchNorm) under torchrun
    if compile:
        step_model = torch.compile(step_model)
    opt, sched = _make_optimizer(model, cfg)
    dtype = amp_dtype(device, cfg.amp)
    scaler = grad_scaler(device, dtype)
    history, start = History(), 0
    per_epoch = steps_per_epoch(n, cfg.batch_size)
    eval_every = cfg.eval_every or per_epoch
    main = rank == 0

    data_id = _data_identity(train)
    if resume and checkpoint is not None and (Path(checkpoint).is_file() or previous_checkpoint(checkpoint).is_file()):
        st = load_checkpoint(checkpoint)
        diff = _resume_differences(st, cfg, data_id)
        if diff and resume != "force":
            raise ValueError(f"checkpoint {checkpoint} was written by a run with other settings: {'; '.join(diff)}. "
                             "Resuming would mix two runs. Use the same settings, another checkpoint path, or "
                             "resume='force' to continue anyway.")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        scaler.load_state_dict(st["scaler"])
        _set_rng_state(st["rng"])
        if augment is not None and hasattr(augment, "load_state_dict"):
            if st.get("augment") is None:
                raise ValueError(f"checkpoint {checkpoint} was written without augmentation; this run has {augment!r}")
            augment.load_state_dict(st["augment"])
        history = st["history"]
        start = st["step"]
    else:
        _config.seed_everything(cfg.seed)

    def state(step: int) -> dict[str, Any]:
        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(), "rng": _rng_state(), "history": history, "step": step,
                "config": asdict(cfg), "data": data_id,
                "augment": augment.state_dict() if hasattr(augment, "state_dict") else None}

    use_prefetch = device.type == "cuda" if prefetch is None else bool(prefetch)
    pin = device.type == "cuda" and torch.cuda.is_available()

    def gather(step: int) -> dict[str, torch.Tensor]:
        return _gather(train, _dist.shard(_batch_indices(n, cfg.batch_size, cfg.seed, step)), pin)

    part = (*_dist.shard_range(cfg.batch_size), cfg.batch_size) if ws > 1 else None
    norm = (train.mean.to(device), train.std.to(device)) if _is_tensor_dataset(train) and augment is None else None
    bar = None
    if progress and main:
        bar = _config.progress_bar(total=cfg.steps, initial=start, desc=getattr(model, "name", "train"), unit="step")
    snapshot_steps = set(snapshot_steps)
    log_every = 25                                  # read the loss back (a GPU sync) only this often
    t0, seen = time.perf_counter(), 0
    running = torch.zeros((), device=device)
    pool = ThreadPoolExecutor(max_workers=1) if use_prefetch else None
    pending = pool.submit(gather, start) if pool is not None and start < cfg.steps else None
    model.train()
    try:
        for step in range(start, cfg.steps):
            if pool is not None:
                cpu_batch = pending.result()
                if step + 1 < cfg.steps:
                    pending = pool.submit(gather, step + 1)
            else:
                cpu_batch = gather(step)
            batch = _finish(train, cpu_batch, device, augment, part, norm)
            x = batch["image"]
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = step_model(x).logits
                loss = F.cross_entropy(logits.float(), batch["label"])
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            running += loss.detach()
            seen += 1
            done = step + 1
            if bar is not None:
                bar.update(1)
                if done % log_every == 0 or seen == 1:
                    bar.set_postfix(loss=f"{float(running) / seen:.3f}")
            if done in snapshot_steps:
                history.snapshots[done] = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            if done % eval_every == 0 or done == cfg.steps:
                mean_loss = running / seen
                if ws > 1:                          # the loss of the global batch: average over ranks
                    torch.distributed.all_reduce(mean_loss, op=torch.distributed.ReduceOp.SUM)
                    mean_loss = mean_loss / ws
                row = {"step": done, "epoch": done / per_epoch, "train_loss": float(mean_loss),
                       "lr": float(sched.get_last_lr()[0])}
                running.zero_()
                seen = 0
                if val is not None:
                    row.update({f"val_{k}": v for k, v in evaluate(model, val, batch_size=max(cfg.batch_size, 256),
                                                                    device=device).items()})
                    model.train()
                history.rows.append(row)
                if bar is not None and "val_acc" in row:
                    bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{row['val_acc']:.3f}")
            if checkpoint is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                history.seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                if main:
                    save_checkpoint(checkpoint, state(done))
            # the user's hook runs after the checkpoint of this step is safe: if it fails (or the
            # kernel dies while it draws), the run resumes from here, with this validation row
            if on_eval is not None and history.rows and history.rows[-1]["step"] == done:
                on_eval(model, history.rows[-1])
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
        if bar is not None:
            bar.close()
    _dist.barrier()                                 # rank 0's last checkpoint is on disk for everyone
    history.seconds += time.perf_counter() - t0
    model.eval()
    return history


# ----------------------------------------------------------------------------- evaluate, predict

@torch.no_grad()
def evaluate(model: torch.nn.Module, data, *, batch_size: int = 256, device=None) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy of ``model`` on ``data`` (eval mode)."""
    if _num(data) == 0:
        raise ValueError("evaluate needs at least one image; got an empty dataset")
    p = predict(model, data, batch_size=batch_size, device=device, maps=None)
    logits, labels = p["logits"], p["labels"]
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return {"loss": float(F.cross_entropy(logits, labels)),
            "acc": float((top[:, 0] == labels).float().mean()),
            "top5": float((top == labels[:, None]).any(1).float().mean())}


@torch.no_grad()
def predict(model: torch.nn.Module, data, *, batch_size: int = 256, device=None,
            maps: str | None = "label", topk: int = 1, size=None, indices=None) -> dict[str, torch.Tensor]:
    """Logits for every image, and the CAMs of chosen classes from the same forward pass.

    ``maps``: ``"label"`` (the true class: the GT-known protocol), ``"pred"`` (the ``topk`` best
    classes) or ``None``. ``size`` upsamples the maps (e.g. ``data.image_size``); by default they
    stay at the feature resolution. Results are on the CPU: ``logits (N, C)``, ``labels (N,)``,
    ``maps (N, h, w)`` for one class per image or ``(N, k, h, w)``, and ``classes``.
    Under ``torchrun`` each rank scores every ``world_size``-th image and the results are gathered,
    so every rank returns them all, in order.
    """
    if maps not in ("label", "pred", None):
        raise ValueError(f"maps must be 'label', 'pred' or None; got {maps!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    n = _num(data)
    order = torch.arange(n) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    ws = _dist.world_size() if len(order) >= _dist.world_size() else 1
    mine = order[_dist.rank()::ws] if ws > 1 else order
    outs: dict[str, list[torch.Tensor]] = {"logits": [], "labels": [], "maps": [], "classes": []}
    dtype = amp_dtype(device)
    for lo in range(0, len(mine), batch_size):
        batch = _get_batch(data, mine[lo:lo + batch_size], device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model(batch["image"])
        logits = out.logits.float()
        outs["logits"].append(logits.cpu())
        outs["labels"].append(batch["label"].cpu())
        if maps is not None:
            cls = batch["label"] if maps == "label" else logits.topk(topk, dim=1).indices
            m = class_activation_maps(out.features.float(), model.classifier.weight.float(), cls)
            if size is not None:
                m = upsample(m, size)
            if maps == "label" or topk == 1:
                m = m[:, 0]
            outs["maps"].append(m.cpu())
            outs["classes"].append((cls if cls.ndim == 2 else cls[:, None]).cpu())
    model.train(was_training)
    result = {k: torch.cat(v) for k, v in outs.items() if v}
    if ws > 1:
        result = {k: _dist.gather_strided(v, len(order)) for k, v in result.items()}
    return result


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the weights (to compare runs or keep a snapshot)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def main(argv: list[str] | None = None) -> int:
    """``python -m camlib.train --recipe NAME ...`` (also under ``torchrun``): see :mod:`camlib.recipes`."""
    from .recipes import main as run_recipe
    return run_recipe(argv)


__all__ = ["TrainConfig", "History", "fit", "evaluate", "predict", "save_checkpoint", "load_checkpoint",
           "CheckpointError", "previous_checkpoint", "check_checkpoint_path",
           "epoch_order", "steps_per_epoch", "amp_dtype", "native_bf16", "grad_scaler", "model_state",
           "main"]


if __name__ == "__main__":
    sys.exit(main())

