"""Class-specific units (paper section 5): which last-layer units a class relies on, and what they see.

With a GAP head, class ``c``'s score is ``S_c = sum_k w_k^c F_k`` (section 2), so the weights
``w_k^c`` rank the units ``k`` by how much their (average) activation raises the class's score.
For each top-ranked unit we look across a dataset for the images where it fires hardest, and at
the patch of the image around the location of its maximum: that is what the unit detects, and so
what the class relies on.

* :func:`rank_units` -- the top units of each class by ``w_k^c``;
* :func:`unit_peaks` -- each unit's maximum and its location in every image (one pass);
* :func:`top_activations` -- per unit, the ``n`` images where it fires hardest and where;
* :func:`peak_boxes` -- the image patch around a feature-map cell (receptive-field-sized);
* :func:`receptive_field` -- size and stride of a plain stack of convolutions and poolings;
* :func:`peak_on_mask` -- whether each unit's peak falls on a mask (e.g. the class's part).

Introduced in lesson 06.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .boxes import clip, size_hw
from .cam import upsample
from .inference import batches, evaluating, model_device

__all__ = ["rank_units", "unit_peaks", "top_activations", "peak_boxes", "receptive_field", "peak_on_mask"]


def rank_units(weight: torch.Tensor, classes=None, k: int | None = None) -> torch.Tensor:
    """Units ordered by their weight for each class, largest ``w_k^c`` first.

    ``weight``: ``(C, K)`` (a classifier's weight); ``classes``: an int (returns ``(k,)``), a list or
    1-D tensor of classes (returns ``(n, k)``), or ``None`` for all classes (``(C, k)``); ``k``: how
    many units (default all K). Ties keep the lower unit index first. Paper section 5; lesson 06.
    """
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise ValueError(f"weight must be a (C, K) tensor; got {tuple(getattr(weight, 'shape', ()))}")
    C, K = weight.shape
    if k is not None and (isinstance(k, bool) or not isinstance(k, int)):
        raise ValueError(f"k must be an int in [1, {K}]; got {k!r}")
    k = K if k is None else int(k)
    if not 1 <= k <= K:
        raise ValueError(f"k must be in [1, {K}]; got {k}")
    single = isinstance(classes, int) or (isinstance(classes, torch.Tensor) and classes.ndim == 0)
    idx = torch.arange(C) if classes is None else _int_index(classes, "classes", C)
    order = torch.sort(weight.detach()[idx.to(weight.device)], dim=1, descending=True, stable=True).indices[:, :k]
    return order[0].cpu() if single else order.cpu()


def _int_index(values, name: str, size: int) -> torch.Tensor:
    """Integer indices in ``[0, size)`` as a long 1-D tensor -- or a ValueError (no silent truncation
    of 1.7 to 1, no Python-style ``-1`` for the last unit)."""
    t = torch.as_tensor(values)
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise ValueError(f"{name} must be integers; got {values!r} ({t.dtype})")
    t = t.long().reshape(-1)
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= size):
        raise ValueError(f"{name} must lie in [0, {size}); got {t.tolist()[:10]}")
    return t


def _cells_to_yx(flat: torch.Tensor, w: int) -> torch.Tensor:
    return torch.stack([torch.div(flat, w, rounding_mode="floor"), flat % w], -1)


def unit_peaks(features: torch.Tensor, units=None) -> dict[str, torch.Tensor]:
    """Each unit's maximum over locations and where it is, for feature maps ``(N, K, h, w)``.

    ``units``: the channels to look at (default all). Returns ``values`` ``(N, U)`` and ``cells``
    ``(N, U, 2)`` as ``(row, col)`` of the maximum (the first in raster order on ties). Lesson 06.
    """
    if not isinstance(features, torch.Tensor) or features.ndim != 4:
        raise ValueError(f"features must be (N, K, h, w); got {tuple(getattr(features, 'shape', ()))}")
    f = features if units is None else features[:, _int_index(units, "units", features.shape[1]).to(features.device)]
    values, flat = f.flatten(2).max(dim=2)
    return {"values": values, "cells": _cells_to_yx(flat, features.shape[-1])}


def top_activations(model, data, units, n: int = 8, *, batch_size: int = 128, device=None,
                    indices=None) -> dict[str, torch.Tensor]:
    """For each unit in ``units``, the ``n`` images of ``data`` where its maximum is highest.

    One pass over ``data`` (an :class:`~camlib.data.InMemoryDataset` or any dataset of dicts),
    keeping a running top-``n`` per unit, so no feature maps are stored. Returns ``images``
    ``(U, n)`` (dataset indices, best first), ``values`` ``(U, n)``, ``cells`` ``(U, n, 2)`` (row,
    col of the peak in the ``(h, w)`` map) and ``map_size`` ``(h, w)``. Paper section 5; lesson 06.
    """
    units = torch.as_tensor(units)
    if units.dtype == torch.bool or units.is_floating_point():
        raise ValueError(f"units must be integers; got {units.tolist()}")
    units = units.long().reshape(-1)
    if units.numel() == 0 or int(units.min()) < 0:
        raise ValueError(f"units must lie in [0, K) (the feature channels); got {units.tolist()[:10]}")
    total = len(data) if indices is None else len(indices)
    if not 1 <= n <= total:
        raise ValueError(f"n must be in [1, {total}] (the number of images); got {n}")
    device = model_device(model, device)
    order = torch.arange(len(data)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    best_v = torch.full((len(units), 0), float("-inf"))
    best_i = torch.zeros((len(units), 0), dtype=torch.long)
    best_c = torch.zeros((len(units), 0, 2), dtype=torch.long)
    seen, size = 0, None
    with evaluating(model):
        for b in batches(data, batch_size, device, order):
            f = model(b["image"]).features.float()
            if int(units.max()) >= f.shape[1] or int(units.min()) < 0:
                raise ValueError(f"units must lie in [0, {f.shape[1]}); got {units.tolist()}")
            size = tuple(f.shape[-2:])
            p = unit_peaks(f, units.to(f.device))
            ids = order[seen:seen + len(f)]
            seen += len(f)
            v = torch.cat([best_v, p["values"].cpu().T], 1)                 # (U, kept + B)
            i = torch.cat([best_i, ids[None].expand(len(units), -1)], 1)
            c = torch.cat([best_c, p["cells"].cpu().transpose(0, 1)], 1)
            keep = torch.sort(v, dim=1, descending=True, stable=True).indices[:, :n]
            best_v, best_i = v.gather(1, keep), i.gather(1, keep)
            best_c = c.gather(1, keep[..., None].expand(-1, -1, 2))
    return {"images": best_i, "values": best_v, "cells": best_c, "map_size": torch.tensor(size)}


def peak_boxes(cells: torch.Tensor, map_size, image_size, patch: float) -> torch.Tensor:
    """Pixel-edge boxes of side ``patch`` centred on feature-map cells, clipped to the image.

    ``cells``: ``(..., 2)`` (row, col) in an ``(h, w)`` map over an ``(H, W)`` image; a cell's centre
    is at ``((col + 0.5) W / w, (row + 0.5) H / h)``, as :func:`camlib.cam.upsample` places it.
    ``patch`` is usually the receptive field (:func:`receptive_field`), or what one chooses to show.
    Returns ``(..., 4)``. Lesson 06.
    """
    cells = torch.as_tensor(cells)
    if cells.shape[-1] != 2:
        raise ValueError(f"cells must end in (row, col); got shape {tuple(cells.shape)}")
    h, w = (int(v) for v in map_size)
    H, W = size_hw(image_size)
    if not patch > 0:
        raise ValueError(f"patch must be positive; got {patch}")
    cy = (cells[..., 0].float() + 0.5) * H / h
    cx = (cells[..., 1].float() + 0.5) * W / w
    r = float(patch) / 2
    boxes = torch.stack([cx - r, cy - r, cx + r, cy + r], -1)
    return clip(boxes.reshape(-1, 4), (H, W)).reshape(boxes.shape)


def receptive_field(module: nn.Module) -> tuple[int, int]:
    """Theoretical receptive field size and stride (pixels) of a plain feed-forward stack.

    Walks ``module``'s leaf layers in registration order: ``Conv2d``, ``MaxPool2d`` and
    ``AvgPool2d`` grow the field (``rf += (kernel - 1) * dilation * jump``; ``jump *= stride``);
    BatchNorm, activations, dropout and identities do not. Raises ``ValueError`` for layers it
    cannot reason about (e.g. EfficientNet's blocks with skip connections: pass a patch size by
    hand there). Lesson 06 (small CNN: the patch shown around a unit's peak).
    """
    rf, jump = 1, 1
    neutral = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Identity, nn.Dropout,
               nn.Dropout2d, nn.Sequential)
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
            k, s = pair(m.kernel_size)[0], pair(m.stride)[0]
            d = pair(getattr(m, "dilation", 1))[0]
            rf += (k - 1) * d * jump
            jump *= s
        elif not isinstance(m, neutral) and len(list(m.children())) == 0:
            raise ValueError(f"receptive_field handles plain conv/pool stacks; found {type(m).__name__}")
    return rf, jump


def peak_on_mask(features: torch.Tensor, masks: torch.Tensor, units=None, *, tolerance: int = 0) -> torch.Tensor:
    """Whether each unit's peak lands on the mask: ``(N, U)`` bool.

    Each unit's map is upsampled (bilinear) to the mask's size and its maximum pixel taken; the
    hit counts if the mask, grown by ``tolerance`` pixels (a square neighbourhood), holds that
    pixel. ``features``: ``(N, K, h, w)``; ``masks``: bool ``(N, H, W)``. Lesson 06 (do a class's
    top units fire on its discriminative part?).
    """
    if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool or masks.ndim != 3:
        raise ValueError(f"masks must be a bool (N, H, W) tensor; got {getattr(masks, 'dtype', None)} "
                         f"{tuple(getattr(masks, 'shape', ()))}")
    if not isinstance(features, torch.Tensor) or features.ndim != 4 or len(features) != len(masks):
        raise ValueError(f"features must be (N, K, h, w) with N = {len(masks)} (one mask per image); "
                         f"got {tuple(getattr(features, 'shape', ()))}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0; got {tolerance}")
    f = features if units is None else features[:, _int_index(units, "units", features.shape[1]).to(features.device)]
    H, W = masks.shape[-2:]
    m = masks.to(f.device)
    if tolerance:
        m = torch.nn.functional.max_pool2d(m[:, None].float(), 2 * tolerance + 1, 1, tolerance)[:, 0] > 0
    hits = []
    for lo in range(0, len(f), 64):                     # upsampled maps are big: go in chunks
        up = upsample(f[lo:lo + 64].float(), (H, W))     # (b, U, H, W)
        flat = up.flatten(2).argmax(2)                   # (b, U)
        hits.append(m[lo:lo + 64].flatten(1).gather(1, flat))
    return torch.cat(hits).cpu()
