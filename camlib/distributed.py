"""Several processes, one training run: ``torchrun`` + DistributedDataParallel, kept identical to one process.

``torchrun --nproc_per_node=N -m camlib.recipes --recipe NAME`` starts N copies; each reads its rank
from the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and :func:`init_from_env` joins
them in a process group (NCCL between GPUs, gloo on CPUs). Then:

* **data**: every rank computes the same global batch indices from ``(seed, step)``
  (:func:`camlib.train.epoch_order`) and keeps its contiguous slice (:func:`shard`), so the
  global batch is the single-process batch split across ranks;
* **gradients**: DDP averages them across ranks; with equal slices the average of the per-rank
  mean losses is the global mean loss, so one step equals one single-process step;
* **BatchNorm**: statistics are per rank unless the model is converted to SyncBatchNorm
  (:func:`wrap`, ``sync_bn=True``; CUDA only in PyTorch). camlib's default converts on CUDA when
  more than one process runs, so a DDP run matches a single-GPU run; models without BatchNorm
  (VGG16-GAP) match exactly either way;
* **evaluation**: each rank scores a strided share of the images and :func:`all_gather_cat`
  collects the results on every rank in the original order;
* **files and progress bars**: only rank 0 (:func:`is_main`) writes checkpoints and draws bars.

Introduced in lesson 03 (GPU path).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: its rank, how many there are, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None


def env_world_size() -> int:
    """``$WORLD_SIZE`` (1 when not launched by torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be an int; got {os.environ.get('WORLD_SIZE')!r}") from None


def is_distributed() -> bool:
    """True inside an initialized process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0, or the only process: the one that writes files and draws progress bars."""
    return rank() == 0


def init_from_env(device: str | torch.device | None = None, backend: str | None = None) -> DistInfo:
    """Join the process group torchrun describes in the environment (nothing to do for one process).

    ``device``: ``"cuda"`` gives each rank ``cuda:<LOCAL_RANK>``; default: CUDA when available,
    else the CPU. ``backend``: default NCCL on CUDA, gloo on the CPU. Safe to call twice.
    """
    ws = env_world_size()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    want = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if want.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but CUDA is not available here")
        if ws > 1 and local >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local} has no GPU: this machine has {torch.cuda.device_count()}")
        want = torch.device("cuda", local if ws > 1 else (want.index or 0))
        torch.cuda.set_device(want)
    if ws <= 1:
        return DistInfo(0, 1, 0, want, None)
    if not dist.is_initialized():
        backend = backend or ("nccl" if want.type == "cuda" else "gloo")
        if backend not in ("nccl", "gloo"):
            raise ValueError(f"backend must be 'nccl' or 'gloo'; got {backend!r}")
        kwargs = {"device_id": want} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, **kwargs)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, want, dist.get_backend())


def cleanup() -> None:
    """Leave the process group (at the end of a run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of a global batch; the batch size must divide by the world size."""
    ws, r = world_size(), rank()
    if ws == 1:
        return indices
    if len(indices) % ws:
        raise ValueError(f"the global batch ({len(indices)}) must divide evenly over {ws} processes")
    per = len(indices) // ws
    return indices[r * per:(r + 1) * per]


def shard_range(n: int) -> tuple[int, int]:
    """``(lo, hi)`` of this rank's rows in a global batch of ``n`` (see :func:`shard`)."""
    per = n // world_size()
    return rank() * per, (rank() + 1) * per


def _comm_device(t: torch.Tensor) -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` from every rank along dim 0 (ranks may hold different lengths).

    Returns the result on ``t``'s device; a no-op for one process. Every rank must call it.
    """
    if not is_distributed():
        return t
    dev = _comm_device(t)
    x = t.detach().to(dev).contiguous()
    n = torch.tensor([x.shape[0]], device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    m = max(sizes)
    if x.shape[0] < m:
        x = torch.cat([x, x.new_zeros((m - x.shape[0], *x.shape[1:]))])
    bufs = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(bufs, x)
    return torch.cat([b[:s] for b, s in zip(bufs, sizes)]).to(t.device)


def gather_strided(t: torch.Tensor, n: int) -> torch.Tensor:
    """Undo a strided split: rank ``r`` holds rows ``r, r + W, r + 2W, ...`` of ``n``; every rank gets all ``n``."""
    if not is_distributed():
        return t
    allr = all_gather_cat(t)
    ws = world_size()
    counts = [len(range(r, n, ws)) for r in range(ws)]
    out = allr.new_empty((n, *allr.shape[1:]))
    lo = 0
    for r, c in enumerate(counts):
        out[r::ws] = allr[lo:lo + c]
        lo += c
    return out


def wrap(model: torch.nn.Module, device: torch.device, sync_bn: bool | str = "auto") -> torch.nn.Module:
    """``model`` in DistributedDataParallel (SyncBatchNorm first when asked); unchanged for one process.

    ``sync_bn="auto"`` converts on CUDA only (PyTorch's SyncBatchNorm has no CPU kernel).
    """
    if not is_distributed():
        return model
    if sync_bn == "auto":
        sync_bn = device.type == "cuda"
    if sync_bn:
        if device.type != "cuda":
            raise ValueError("sync_bn=True needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel); "
                             f"this run is on {device}")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


__all__ = ["DistInfo", "init_from_env", "cleanup", "barrier", "is_distributed", "is_main", "rank", "world_size",
           "shard", "shard_range", "all_gather_cat", "gather_strided", "wrap", "env_world_size"]
