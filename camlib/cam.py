"""Class activation maps (paper section 2), their upsampling and normalization, and Grad-CAM.

``M_c(x, y) = sum_k w_k^c f_k(x, y)``: one einsum over the feature maps gives the maps of any set
of classes for a whole batch. With a GAP head, the class score is the *mean* of the map plus the
classifier bias::

    S_c = b_c + sum_k w_k^c mean_{x,y} f_k(x, y) = b_c + mean_{x,y} M_c(x, y)

(the paper sums instead of averaging and drops the bias). The bias is a per-class constant: it moves
the score but says nothing about *where* the evidence is, so it is not part of the map. Adding it
to every location would shift the map and change what "20% of the maximum" keeps, so camlib keeps
the paper's ``M_c`` and tests the identity above. Introduced in lesson 02.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F


def _check_features(features: torch.Tensor) -> None:
    if not isinstance(features, torch.Tensor) or features.ndim != 4:
        raise ValueError(f"features must be a (B, K, h, w) tensor; got {tuple(getattr(features, 'shape', ()))}")


def _class_index(classes, batch: int, num_classes: int, device) -> torch.Tensor:
    """Normalize ``classes`` to a ``(B, k)`` long tensor."""
    if classes is None:
        idx = torch.arange(num_classes, device=device).expand(batch, num_classes)
    else:
        idx = torch.as_tensor(classes, device=device)
        if idx.dtype.is_floating_point:
            raise ValueError(f"classes must be integers; got dtype {idx.dtype}")
        idx = idx.long()
        if idx.ndim == 0:
            idx = idx.expand(batch, 1)
        elif idx.ndim == 1:
            if len(idx) != batch:
                raise ValueError(f"a 1-D classes tensor gives one class per image: expected length {batch}, got {len(idx)}")
            idx = idx[:, None]
        elif idx.ndim != 2 or idx.shape[0] != batch:
            raise ValueError(f"classes must be an int, (B,) or (B, k); got shape {tuple(idx.shape)} for B={batch}")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= num_classes):
        raise ValueError(f"class indices must lie in [0, {num_classes}); got min {int(idx.min())}, max {int(idx.max())}")
    return idx


def class_activation_maps(features: torch.Tensor, weight: torch.Tensor, classes=None) -> torch.Tensor:
    """``M_c = sum_k w_k^c f_k`` for the chosen classes of every image, in one einsum.

    ``features``: ``(B, K, h, w)``; ``weight``: ``(C, K)`` (the classifier's weight);
    ``classes``: ``None`` (all C classes), an int (the same class for all), ``(B,)`` (one per
    image) or ``(B, k)`` (e.g. each image's top-k). Returns ``(B, k, h, w)`` maps at the feature
    resolution (``(B, C, h, w)`` for ``None``).
    """
    _check_features(features)
    if not isinstance(weight, torch.Tensor):
        try:
            weight = torch.as_tensor(weight)               # a NumPy array or nested lists of numbers
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"weight must be a (C, K) tensor or array; got {type(weight).__name__}") from None
    if weight.ndim != 2 or weight.shape[1] != features.shape[1]:
        raise ValueError(f"weight must be (C, K) with K = {features.shape[1]} (the feature channels); got {tuple(weight.shape)}")
    if features.dtype == torch.bool or weight.dtype == torch.bool or weight.is_complex() or features.is_complex():
        raise ValueError(f"features and weight must hold real numbers; got {features.dtype} and {weight.dtype}")
    if not features.is_floating_point():                   # integer features: the maps are real numbers
        features = features.to(weight.dtype if weight.is_floating_point() else torch.float32)
    idx = _class_index(classes, features.shape[0], weight.shape[0], features.device)
    w = weight.to(features.device, features.dtype)[idx]     # (B, k, K)
    return torch.einsum("bkhw,bck->bchw", features, w)


def cams(model, x: torch.Tensor, classes=None, *, topk: int | None = None, size: tuple[int, int] | None = None):
    """Run ``model`` once and return ``(logits, maps, classes)``.

    ``classes`` as in :func:`class_activation_maps`; or ``topk=k`` for each image's k best classes
    (then ``classes`` must be None). ``size`` upsamples the maps (e.g. to the input size).
    """
    if topk is not None and classes is not None:
        raise ValueError("give either classes or topk, not both")
    out = model(x)
    if topk is not None:
        if not 1 <= topk <= out.logits.shape[1]:
            raise ValueError(f"topk must be in [1, {out.logits.shape[1]}]; got {topk}")
        classes = out.logits.topk(topk, dim=1).indices
    idx = _class_index(classes, x.shape[0], out.logits.shape[1], out.logits.device)
    maps = class_activation_maps(out.features, model.classifier.weight, idx)
    if size is not None:
        maps = upsample(maps, size)
    return out.logits, maps, idx


def upsample(maps: torch.Tensor, size) -> torch.Tensor:
    """Bilinear upsampling of ``(B, k, h, w)`` or ``(B, h, w)`` maps to ``size = (H, W)``.

    Uses ``align_corners=False``: each map cell covers its patch of the image, as the receptive
    field centres of a strided network do.
    """
    if isinstance(size, int):
        size = (size, size)
    if maps.ndim not in (3, 4):
        raise ValueError(f"maps must be (B, h, w) or (B, k, h, w); got {tuple(maps.shape)}")
    squeeze = maps.ndim == 3
    m = maps[:, None] if squeeze else maps
    out = F.interpolate(m.float(), size=tuple(size), mode="bilinear", align_corners=False)
    return out[:, 0] if squeeze else out


def normalize(maps: torch.Tensor, method: Literal["minmax", "max"] = "minmax") -> torch.Tensor:
    """Normalize each map over its last two dims: ``(M - lo) / (max - lo)``.

    * ``"minmax"``: ``lo = min``, to [0, 1] -- Choe et al.'s convention for MaxBoxAcc.
    * ``"max"``: ``lo = 0``, i.e. ``M / max`` -- the paper's "fraction of the maximum" (values
      above 0.2 are the 20% rule).

    One rule for the maps it cannot scale: where ``max - lo`` is not positive -- a constant map
    for ``"minmax"``, a map whose maximum is ``<= 0`` for ``"max"`` (no location is evidence for
    the class) -- the map becomes all zeros, never NaN. Any positive range is scaled, however
    small. camlib's one min-max normalization (``camlib.localize.minmax_normalize`` is this after
    its map checks); lesson 02's min-max exercise, :func:`camlib.exercises.check_minmax`, checks the
    student's answer against it.
    """
    if method not in ("minmax", "max"):
        raise ValueError(f"method must be 'minmax' or 'max', got {method!r}")
    if not isinstance(maps, torch.Tensor):
        if not isinstance(maps, np.ndarray):
            raise ValueError(f"maps must be a tensor or NumPy array; got {type(maps).__name__}")
        maps = torch.from_numpy(np.asarray(maps))
    if maps.ndim < 2:
        raise ValueError(f"maps must have at least 2 dims (h, w); got {tuple(maps.shape)}")
    if not maps.is_floating_point():
        if maps.dtype == torch.bool or maps.is_complex():
            raise ValueError(f"maps must hold real numbers; got {maps.dtype}")
        maps = maps.float()
    lo, hi = torch.aminmax(maps.flatten(-2), dim=-1)     # NaN propagates into both
    if not (bool(torch.isfinite(lo).all()) and bool(torch.isfinite(hi).all())):
        bad = ~torch.isfinite(maps)
        kind = "NaN" if bool(torch.isnan(maps).any()) else "inf"
        raise ValueError(f"maps must be finite; found {int(bad.sum())} {kind} value(s) (NaN/inf) -- a map with "
                         "one would normalize to nonsense")
    hi = hi[..., None, None]
    lo = lo[..., None, None] if method == "minmax" else torch.zeros_like(hi)
    span = hi - lo
    scalable = span > 0
    scaled = (maps - lo) / torch.where(scalable, span, torch.ones_like(span))
    return torch.where(scalable, scaled, torch.zeros_like(maps))


def grad_cam(model, x: torch.Tensor, classes, *, relu: bool = True) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) on a CAMNet's last feature maps: ``(B, h, w)``.

    ``alpha_k = mean_{x,y} dS_c/df_k(x, y)``; map = ``ReLU(sum_k alpha_k f_k)``. On a GAP network,
    ``dS_c/df_k(x, y) = w_k^c / (h w)`` everywhere, so Grad-CAM is CAM times ``1/(h w)`` (then ReLU):
    lesson 02 checks it. One class per image (``classes``: int or ``(B,)``).
    """
    if x.ndim != 4:
        raise ValueError(f"x must be (B, 3, H, W); got {tuple(x.shape)}")
    with torch.enable_grad():
        out = model(x.detach().requires_grad_(True))   # a graph even when the weights are frozen
        feats = out.features
        idx = _class_index(classes, x.shape[0], out.logits.shape[1], out.logits.device)
        if idx.shape[1] != 1:
            raise ValueError("grad_cam takes one class per image")
        score = out.logits.gather(1, idx).sum()
        grads, = torch.autograd.grad(score, feats)
    alpha = grads.mean(dim=(-2, -1), keepdim=True)
    maps = (alpha * feats.detach()).sum(1)
    return maps.clamp_min(0) if relu else maps
