"""One training loop for CPU and GPU: ``fit``, with checkpoints that survive a disconnect.

Scoring a dataset (``evaluate``, ``predict``) lives in :mod:`camlib.inference`, checkpoint files in
:mod:`camlib.checkpoint` and the order of the batches in :mod:`camlib.batches`; ``train.evaluate`` and
``train.predict`` are the same functions, kept here because the lessons call them beside ``fit``.

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
``python -m camlib.recipes --recipe NAME`` runs a named recipe (:mod:`camlib.recipes`), which calls this.

Introduced in lesson 01.
"""

from __future__ import annotations


import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from . import config as _config
from . import distributed as _dist
from .checkpoint import (CheckpointError, check_checkpoint_path, data_identity, load_checkpoint,  # noqa: F401
                         previous_checkpoint, resume_differences, rng_state, save_checkpoint, set_rng_state)
from .data.memory import has_uint8_images
# scoring a dataset lives in camlib.inference; these names stay reachable from here for the lessons
from .batches import TrainBatches, epoch_order, steps_per_epoch  # noqa: F401
from .inference import amp_dtype, evaluate, grad_scaler, model_state, native_bf16, predict  # noqa: F401


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


# ------------------------------------------------------------------------------------ optimizer

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
    checkpoint = _check_inputs(train, val, cfg, checkpoint, resume, augment)
    device, step_model = _place(model, device, cfg, compile)
    run = _Run(model, cfg, device)
    history, start = _start(run, train, checkpoint, resume, augment)
    per_epoch = steps_per_epoch(len(train), cfg.batch_size)
    eval_every = cfg.eval_every or per_epoch
    main = _dist.rank() == 0
    snapshot_steps = set(snapshot_steps)
    bar = _config.progress_bar(total=cfg.steps, initial=start, desc=getattr(model, "name", "train"),
                               unit="step") if progress and main else None
    batches = TrainBatches(train, cfg, device, augment, start, prefetch)
    t0, seen = time.perf_counter(), 0
    running = torch.zeros((), device=device)
    model.train()
    try:
        for step in range(start, cfg.steps):
            running += _train_step(run, step_model, batches.get(step))
            seen += 1
            done = step + 1
            if bar is not None:
                bar.update(1)
                if done % _LOG_EVERY == 0 or seen == 1:
                    bar.set_postfix(loss=f"{float(running) / seen:.3f}")
            if done in snapshot_steps:
                history.snapshots[done] = model_state(model)
            if done % eval_every == 0 or done == cfg.steps:
                history.rows.append(_validate(run, val, running / seen, done, per_epoch))
                running.zero_()
                seen = 0
                if bar is not None and "val_acc" in history.rows[-1]:
                    bar.set_postfix(loss=f"{history.rows[-1]['train_loss']:.3f}", val_acc=f"{history.rows[-1]['val_acc']:.3f}")
            if checkpoint is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                history.seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                if main:
                    save_checkpoint(checkpoint, run.state(done, history, train, augment))
            # the user's hook runs after the checkpoint of this step is safe: if it fails (or the
            # kernel dies while it draws), the run resumes from here, with this validation row
            if on_eval is not None and history.rows and history.rows[-1]["step"] == done:
                on_eval(model, history.rows[-1])
    finally:
        batches.close()
        if bar is not None:
            bar.close()
    _dist.barrier()                                 # rank 0's last checkpoint is on disk for everyone
    history.seconds += time.perf_counter() - t0
    model.eval()
    return history


# ------------------------------------------------------------------------------- fit, step by step

_LOG_EVERY = 25                                     # read the loss back (a GPU sync) only this often


def _check_inputs(train, val, cfg: TrainConfig, checkpoint, resume, augment) -> Path | None:
    """Refuse a run that would fail (or lose work) later: everything is checked before step 1."""
    n = len(train)
    if n < cfg.batch_size:
        raise ValueError(f"the training set has {n} images, fewer than one batch of {cfg.batch_size}")
    if resume not in (False, True, "force"):
        raise ValueError(f"resume must be False, True or 'force'; got {resume!r}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    if checkpoint is not None:
        checkpoint = check_checkpoint_path(checkpoint)     # a folder fails now, not after the training
    if val is not None and len(val) == 0:
        raise ValueError("val is an empty dataset; pass val=None to train without validation")
    if augment is not None and not callable(augment):
        raise ValueError(f"augment must be callable (batch dict -> batch dict); got {type(augment).__name__}")
    if augment is not None and not has_uint8_images(train):
        raise ValueError("augment= works on uint8 batches: give an InMemoryDataset or a cached dataset "
                         f"(camlib.data.cache.cached); got {type(train).__name__}")
    if cfg.batch_size % _dist.world_size():
        raise ValueError(f"batch_size {cfg.batch_size} must divide evenly over {_dist.world_size()} processes")
    return checkpoint


def _place(model: torch.nn.Module, device, cfg: TrainConfig, compile: bool) -> tuple[torch.device, torch.nn.Module]:
    """The device (this rank's GPU under torchrun), the model moved there, and the module that takes
    the training steps: DDP-wrapped under torchrun, compiled if asked."""
    device = torch.device(device) if device is not None else _config.get_device()
    if _dist.world_size() > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    step_model = _dist.wrap(model, device, cfg.sync_bn)       # DDP (and SyncBatchNorm) under torchrun
    return device, (torch.compile(step_model) if compile else step_model)


class _Run:
    """The optimizer, schedule, precision and gradient scaler of one run, and its checkpoint state."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, device: torch.device):
        self.model, self.cfg, self.device = model, cfg, device
        self.opt, self.sched = _make_optimizer(model, cfg)
        self.dtype = amp_dtype(device, cfg.amp)
        self.scaler = grad_scaler(device, self.dtype)

    def state(self, step: int, history: History, train, augment) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "scaler": self.scaler.state_dict(), "rng": rng_state(),
                "history": history, "step": step, "config": asdict(self.cfg), "data": data_identity(train),
                "augment": augment.state_dict() if hasattr(augment, "state_dict") else None}

    def load(self, st: dict[str, Any], augment) -> None:
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])
        self.scaler.load_state_dict(st["scaler"])
        set_rng_state(st["rng"])
        if augment is not None and hasattr(augment, "load_state_dict"):
            if st.get("augment") is None:
                raise ValueError("the checkpoint was written without augmentation; this run has "
                                 f"{augment!r}")
            augment.load_state_dict(st["augment"])


def _start(run: _Run, train, checkpoint: Path | None, resume, augment) -> tuple[History, int]:
    """A fresh start (seeded), or the history and step of the checkpoint when resuming from one
    written with the same settings and data (``resume="force"``: whatever they were)."""
    if not (resume and checkpoint is not None
            and (Path(checkpoint).is_file() or previous_checkpoint(checkpoint).is_file())):
        _config.seed_everything(run.cfg.seed)
        return History(), 0
    st = load_checkpoint(checkpoint)
    diff = resume_differences(st, asdict(run.cfg), data_identity(train))
    if diff and resume != "force":
        raise ValueError(f"checkpoint {checkpoint} was written by a run with other settings: {'; '.join(diff)}. "
                         "Resuming would mix two runs. Use the same settings, another checkpoint path, or "
                         "resume='force' to continue anyway.")
    try:
        run.load(st, augment)
    except ValueError as e:
        raise ValueError(f"checkpoint {checkpoint}: {e}") from None
    return st["history"], st["step"]


def _train_step(run: _Run, step_model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """One optimizer step on ``batch`` (mixed precision where the device has it); the loss, detached."""
    x = batch["image"]
    if run.cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(run.device.type, dtype=run.dtype, enabled=run.dtype is not None):
        logits = step_model(x).logits
        loss = F.cross_entropy(logits.float(), batch["label"])
    run.opt.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if run.cfg.grad_clip:
        run.scaler.unscale_(run.opt)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip)
    run.scaler.step(run.opt)
    run.scaler.update()
    run.sched.step()
    return loss.detach()


def _validate(run: _Run, val, mean_loss: torch.Tensor, done: int, per_epoch: int) -> dict[str, float]:
    """One history row: the training loss since the last row (the global batch's, under torchrun), the
    learning rate, and the validation loss and accuracies; the model is back in training mode after."""
    ws = _dist.world_size()
    if ws > 1:                                      # the loss of the global batch: average over ranks
        torch.distributed.all_reduce(mean_loss, op=torch.distributed.ReduceOp.SUM)
        mean_loss = mean_loss / ws
    row = {"step": done, "epoch": done / per_epoch, "train_loss": float(mean_loss),
           "lr": float(run.sched.get_last_lr()[0])}
    if val is not None:
        row.update({f"val_{k}": v for k, v in evaluate(run.model, val, batch_size=max(run.cfg.batch_size, 256),
                                                        device=run.device).items()})
        run.model.train()
    return row


__all__ = ["TrainConfig", "History", "fit", "evaluate", "predict", "save_checkpoint", "load_checkpoint",
           "CheckpointError", "previous_checkpoint", "check_checkpoint_path",
           "epoch_order", "steps_per_epoch", "amp_dtype", "native_bf16", "grad_scaler", "model_state"]
