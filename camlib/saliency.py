"""Baselines the paper compares CAM with: backpropagation saliency and a centre box.

* :func:`backprop_saliency` -- Simonyan, Vedaldi and Zisserman (2014), "Deep inside convolutional
  networks": the gradient of a class score with respect to the input pixels, its absolute value,
  the maximum over the colour channels. The paper's Table 2 boxes these maps with the same rule as
  CAM ("Backprop on GoogLeNet", ...), i.e. :func:`camlib.localize.boxes_from_maps`.
* :func:`center_boxes` -- a box in the middle of the image whatever the image shows: the floor
  any localization method has to beat.

Introduced in lesson 03.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["class_scores", "backprop_saliency", "center_boxes"]


def class_scores(output) -> torch.Tensor:
    """The logits of a model's output: the output itself when it is a tensor, else its
    ``.logits`` (camlib's ``CAMOutput(logits, features)``). Must be ``(B, C)``. Used by
    :func:`backprop_saliency` (lesson 03)."""
    logits = output if isinstance(output, torch.Tensor) else getattr(output, "logits", None)
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"the model must return a (B, C) tensor of logits or an object with .logits, "
                         f"got {type(output).__name__}")
    if logits.ndim != 2:
        raise ValueError(f"the model's logits must be (B, C), got shape {tuple(logits.shape)}")
    return logits


def backprop_saliency(model: nn.Module, images: torch.Tensor, classes) -> torch.Tensor:
    """Backpropagation saliency maps ``(B, H, W)``: ``max_c |d S_k / d x_c(h, w)|`` for the class
    ``k`` chosen per image, where ``S_k`` is the class score before the softmax (Simonyan et al.
    2014, section 3.1). One forward and one backward pass for the whole batch: the scores of all
    images are summed before differentiating, which gives each image its own gradient as long as
    images do not interact (put the model in ``eval()`` mode: BatchNorm in training mode mixes
    them). The model's mode and its parameters' ``.grad`` are left untouched.

    ``images``: ``(B, 3, H, W)`` float (normalized as the model expects); ``classes``: an int, or
    ``(B,)`` ints. Paper section 3 ("Backprop" baselines, Table 2); lesson 03.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float (B, C, H, W) tensor, got "
                         f"{getattr(images, 'dtype', type(images))} {tuple(getattr(images, 'shape', ()))}")
    B = images.shape[0]
    cls = torch.as_tensor(classes, device=images.device)
    if cls.ndim == 0:
        cls = cls.expand(B)
    if cls.ndim != 1 or cls.shape[0] != B or cls.is_floating_point():
        raise ValueError(f"classes must be an int or an int tensor of shape ({B},), got {cls.dtype} {tuple(cls.shape)}")
    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = class_scores(model(x))
        if logits.shape[0] != B:
            raise ValueError(f"the model returned {logits.shape[0]} rows of logits for {B} images")
        C = logits.shape[1]
        if bool(((cls < 0) | (cls >= C)).any()):
            raise ValueError(f"classes must lie in [0, {C}), got {cls.tolist()}")
        score = logits.gather(1, cls.long()[:, None]).sum()
        (grad,) = torch.autograd.grad(score, x)
    return grad.abs().amax(dim=1)


def center_boxes(n: int, height: int, width: int, fraction: float = 0.5) -> torch.Tensor:
    """``n`` identical boxes centred in a ``height`` x ``width`` image, each side ``fraction`` of the
    image's side (default 0.5: the middle quarter of the area), ``(n, 4)`` float pixel-edge.

    The fraction is a fixed parameter chosen before looking at any test box (fitting it to the
    test set's mean box would leak the answer). Lesson 03 (the centre baseline).
    """
    if int(n) < 0 or int(height) < 1 or int(width) < 1:
        raise ValueError(f"need n >= 0 and height, width >= 1; got n={n}, height={height}, width={width}")
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    f = float(fraction)
    x1, y1 = (1.0 - f) / 2.0 * width, (1.0 - f) / 2.0 * height
    box = torch.tensor([x1, y1, width - x1, height - y1], dtype=torch.float32)
    return box.expand(int(n), 4).clone()
