"""Running a trained network over a dataset: eval mode, batches, predictions and maps, precision.

Every loop that scores a dataset (``predict``, ``evaluate``, feature extraction, the two-stage
pipeline, unit statistics) goes through :func:`batches` inside :func:`evaluating`, so eval mode is
set and the model's mode restored in one place, and batches come the same way from an in-memory
dataset (whole batches, ``data.batch``) or any dataset of dicts. Mixed precision on CUDA is chosen
by :func:`amp_dtype` (bf16 only where the GPU has it natively). Introduced in lesson 01.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F

from . import distributed as _dist
from .cam import class_activation_maps, upsample


# ----------------------------------------------------------------------------------- precision

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



# -------------------------------------------------------------------------------- eval batches

@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``with evaluating(model):`` -- eval mode (BatchNorm's running statistics, no dropout) and no
    gradients inside; the model's own mode (training or not) comes back afterwards, even on error."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def model_device(model: torch.nn.Module, device=None) -> torch.device:
    """``device`` if given, else where the model's first parameter is (the CPU for a model without any)."""
    if device is not None:
        return torch.device(device)
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def get_batch(data, idx: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    """A batch as a dict on ``device``: in-memory datasets hand it over whole; others are stacked."""
    if hasattr(data, "batch"):
        return data.batch(idx, device=device)
    samples = [data[int(i)] for i in idx]
    out = {"image": torch.stack([s["image"] for s in samples]).to(device),
           "label": torch.as_tensor([int(s["label"]) for s in samples]).to(device)}
    return out



def batches(data, batch_size: int, device, indices=None) -> Iterator[dict[str, torch.Tensor]]:
    """Batches ``{"image" (B, 3, H, W) normalized float, "label" (B,)}`` (and whatever else an in-memory
    dataset's ``batch`` gives) on ``device``, in the order of ``indices`` (default: all, in order)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive; got {batch_size}")
    order = torch.arange(len(data)) if indices is None else torch.as_tensor(indices, dtype=torch.long).reshape(-1)
    for lo in range(0, len(order), batch_size):
        yield get_batch(data, order[lo:lo + batch_size], torch.device(device))


# ---------------------------------------------------------------------------- predict, evaluate

def evaluate(model: torch.nn.Module, data, *, batch_size: int = 256, device=None) -> dict[str, float]:
    """Loss, top-1 and top-5 accuracy of ``model`` on ``data`` (eval mode)."""
    if len(data) == 0:
        raise ValueError("evaluate needs at least one image; got an empty dataset")
    p = predict(model, data, batch_size=batch_size, device=device, maps=None)
    logits, labels = p["logits"], p["labels"]
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return {"loss": float(F.cross_entropy(logits, labels)),
            "acc": float((top[:, 0] == labels).float().mean()),
            "top5": float((top == labels[:, None]).any(1).float().mean())}


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
    device = model_device(model, device)
    order = torch.arange(len(data)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    ws = _dist.world_size() if len(order) >= _dist.world_size() else 1
    mine = order[_dist.rank()::ws] if ws > 1 else order
    outs: dict[str, list[torch.Tensor]] = {"logits": [], "labels": [], "maps": [], "classes": []}
    dtype = amp_dtype(device)
    with evaluating(model):
        for batch in batches(data, batch_size, device, mine):
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
    result = {k: torch.cat(v) for k, v in outs.items() if v}
    if ws > 1:
        result = {k: _dist.gather_strided(v, len(order)) for k, v in result.items()}
    return result




def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the weights (to compare runs or keep a snapshot)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
