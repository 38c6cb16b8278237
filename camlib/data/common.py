"""What the real-image datasets share: where data lives, box-aware transforms, samples, batching.

Every real dataset (CUB-200-2011, ILSVRC validation, Oxford-IIIT Pet, the offline photos) reads
its own files and then hands a PIL image, a label, boxes and an optional mask to
:func:`make_sample`, which runs a ``torchvision.transforms.v2`` pipeline over ``tv_tensors`` so
that resizing, cropping and flipping move the boxes and the mask together with the pixels.

Boxes are ``(x1, y1, x2, y2)`` in **pixel-edge** coordinates everywhere (a region covering
columns 3..7 has ``x1 = 3, x2 = 8``): torchvision's v2 transforms treat ``XYXY`` boxes exactly
this way (a horizontal flip maps ``x`` to ``W - x``, a resize scales every coordinate), so the
convention survives every transform. Introduced in lesson 03 (paper section 3: the boxes that
localization is scored against).
"""

from __future__ import annotations


import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..boxes import as_boxes
from .memory import IMAGENET_MEAN, IMAGENET_STD

#: The repository root when camlib runs from a checkout (``<repo>/camlib/data/common.py``).


def check_size(size: Any) -> int:
    """``size`` as an int, or ValueError: the side of a square image (model input, cached image), at least 8."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an int >= 8 (the side of the square images); got {size!r}")
    return int(size)


class ToRGB(v2.Transform):
    """Make the image three-channel RGB *before* anything else: a greyscale, CMYK, palette or RGBA
    PIL image is converted (``Image.convert("RGB")``), a 1-channel tensor image is repeated to 3.
    Boxes and masks pass unchanged. Real datasets hold such files (Caltech-101 has greyscale JPEGs,
    ILSVRC greyscale and CMYK ones); ``Normalize`` with three means needs three channels.
    Used by every transform here, so by :func:`eval_transform`, the default transform of
    :class:`RealPhotos` and :class:`ILSVRCVal`, which lesson 03 opens."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, Image.Image):
            return inpt if inpt.mode == "RGB" else inpt.convert("RGB")
        if isinstance(inpt, (tv_tensors.BoundingBoxes, tv_tensors.Mask)) or not isinstance(inpt, torch.Tensor):
            return inpt
        if inpt.ndim < 3 or inpt.shape[-3] not in (1, 3):
            raise ValueError("ToRGB expects a (..., 1 or 3, H, W) image tensor (a 4-channel tensor may be RGBA or "
                             f"CMYK: convert the PIL image instead); got shape {tuple(inpt.shape)}")
        if inpt.shape[-3] == 3:
            return inpt
        out = inpt.expand(*inpt.shape[:-3], 3, *inpt.shape[-2:]).clone()
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.Image) else out

    _transform = transform      # the name torchvision < 0.21 calls


def eval_transform(size: int = 224) -> v2.Compose:
    """Make RGB (:class:`ToRGB`), resize to ``size`` x ``size`` (no crop, so no object is cut
    away) and normalize (ImageNet).

    Takes and returns a dict of ``tv_tensors`` (``image``, ``boxes``, ``mask``), or a single PIL
    image (greyscale and CMYK ones too) and returns a float ``(3, size, size)`` image. The default
    transform of :class:`RealPhotos` and :class:`ILSVRCVal`, which lesson 03 opens; the paper
    evaluates on 224-pixel inputs (section 3).
    """
    size = check_size(size)
    return v2.Compose([
        ToRGB(),
        v2.ToImage(),
        v2.Resize((size, size), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


class SanitizeBoxes(torch.nn.Module):
    """Drop the boxes a crop left with no area; the sample's ``(H, W)`` mask is not touched.

    ``v2.SanitizeBoundingBoxes`` indexes every ``tv_tensors.Mask`` with the boxes' keep-flags, as if
    it were one mask per box ``(N, H, W)``. Ours is one mask for the image: torchvision <= 0.24 then
    fails (the flags' length N is not H), and later versions still drop mask *rows* when N == H.
    So the mask is held aside while the boxes are sanitized. Used by :func:`train_transform`.
    """

    def __init__(self):
        super().__init__()
        self.sanitize = v2.SanitizeBoundingBoxes(labels_getter=None)

    def forward(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"expected a sample dict with 'image' and 'boxes' (see make_sample); got "
                             f"{type(data).__name__}")
        masks = {k: v for k, v in data.items() if isinstance(v, tv_tensors.Mask)}
        out = self.sanitize({k: v for k, v in data.items() if k not in masks})
        return {**out, **masks}


def train_transform(size: int = 224, scale: tuple[float, float] = (0.25, 1.0)) -> v2.Compose:
    """Random resized crop + horizontal flip, then normalize; boxes are clipped to the crop.

    Boxes left with no area by the crop are dropped (``SanitizeBoundingBoxes``), so a training
    sample may carry fewer boxes than its annotation. ``scale`` is the crop's area fraction range;
    the default keeps at least a quarter of the image so that the object usually survives.
    No lesson calls it: it is for training on a file-backed dataset directly, e.g. as
    ``transform=`` of :class:`CUB200` (the paper trains on 224 crops with mirroring, section 3).
    """
    size = check_size(size)
    lo, hi = scale
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"scale must satisfy 0 < low <= high <= 1; got {scale!r}")
    return v2.Compose([
        ToRGB(),
        v2.ToImage(),
        v2.RandomResizedCrop((size, size), scale=(lo, hi), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ClampBoundingBoxes(),
        SanitizeBoxes(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def check_boxes(boxes: Any, width: int, height: int, where: str = "boxes") -> np.ndarray:
    """Validate pixel-edge ``(N, 4)`` boxes against an image of ``width`` x ``height``.

    Returns them as float32. Raises ``ValueError`` when a box is not ``x1 < x2, y1 < y2`` or
    reaches outside ``[0, width] x [0, height]``.
    """
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.size == 0:
        arr = np.zeros((0, 4), np.float32)
    elif arr.shape == (4,):
        arr = arr.reshape(1, 4)
    return as_boxes(arr, where, nonempty=True, image_size=(height, width), dtype=torch.float32).numpy()


def make_sample(image: Image.Image, label: int, boxes: Any, mask: np.ndarray | None = None,
                transform: Callable | None = None, size: int = 224) -> dict[str, Any]:
    """One dataset sample ``{"image", "label", "boxes", "mask"?}`` from raw parts.

    ``image``: a PIL image (converted to RGB); ``boxes``: pixel-edge ``(N, 4)`` in the image's own
    pixels; ``mask``: bool ``(H, W)`` or ``None``. ``transform`` (default
    :func:`eval_transform` of ``size``) receives a dict of ``tv_tensors`` (``Image``,
    ``BoundingBoxes``, ``Mask``) and must return one with the same keys and a float ``(3, h, w)``
    image. The sample holds plain tensors: image float32 ``(3, h, w)``, label int, boxes float32
    ``(N, 4)``, mask bool ``(h, w)``. Each sample of :class:`RealPhotos` and :class:`ILSVRCVal`
    (both opened by lesson 03), :class:`CUB200` and :class:`OxfordPets` is made here.
    """
    if not isinstance(image, Image.Image):
        raise ValueError(f"image must be a PIL image; got {type(image).__name__}")
    image = image.convert("RGB")
    w, h = image.size
    arr = check_boxes(boxes, w, h)
    data: dict[str, Any] = {
        "image": tv_tensors.Image(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)),
        "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(arr), format="XYXY", canvas_size=(h, w)),
    }
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != (h, w):
            raise ValueError(f"mask must have the image's shape {(h, w)}; got {mask.shape}")
        data["mask"] = tv_tensors.Mask(torch.from_numpy(mask.astype(bool)))
    tf = transform if transform is not None else eval_transform(size)
    out = tf(data)
    if not isinstance(out, dict) or "image" not in out or "boxes" not in out:
        raise ValueError("transform must return a dict with 'image' and 'boxes' (it receives one); "
                         f"got {type(out).__name__}")
    img = out["image"]
    if not isinstance(img, torch.Tensor) or img.ndim != 3 or img.shape[0] != 3 or not img.is_floating_point():
        raise ValueError("transform must produce a float image of shape (3, H, W) (end it with "
                         f"ToDtype(float32, scale=True) and Normalize); got "
                         f"{getattr(img, 'dtype', type(img))} {tuple(getattr(img, 'shape', ()))}")
    sample: dict[str, Any] = {
        "image": img.as_subclass(torch.Tensor).to(torch.float32),
        "label": int(label),
        "boxes": out["boxes"].as_subclass(torch.Tensor).to(torch.float32).reshape(-1, 4),
    }
    if "mask" in out:
        sample["mask"] = out["mask"].as_subclass(torch.Tensor).to(torch.bool)
    return sample


def collate_samples(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch samples for a ``DataLoader``: stack images, labels and masks; boxes stay a list.

    Returns ``{"image": (B, 3, H, W), "label": (B,) int64, "boxes": [ (N_i, 4) ... ]}`` plus
    ``"mask": (B, H, W)`` bool when every sample has one; any other key becomes a list. Images must
    share one size (use a fixed-size transform). The ``collate_fn`` of
    :func:`camlib.evaluation.evaluate_stream`, which lesson 03 calls (as ``recipes.evaluate_stream``).
    """
    if len(batch) == 0:
        raise ValueError("collate_samples needs at least one sample; got an empty batch")
    shapes = {tuple(s["image"].shape) for s in batch}
    if len(shapes) != 1:
        raise ValueError(f"all images in a batch must share one shape; got {sorted(shapes)}")
    out: dict[str, Any] = {
        "image": torch.stack([s["image"] for s in batch]),
        "label": torch.tensor([int(s["label"]) for s in batch], dtype=torch.long),
        "boxes": [s["boxes"] for s in batch],
    }
    if all("mask" in s for s in batch):
        out["mask"] = torch.stack([s["mask"] for s in batch])
    for key in batch[0]:
        if key not in out and key != "mask":
            out[key] = [s.get(key) for s in batch]
    return out


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where they were looked for; the message says where to put them."""


def missing_data_message(name: str, where: Path, expected: Sequence[str], how: str) -> str:
    """The text of the error a dataset raises when its files are absent: what, where, how."""
    lines = [f"{name}: not found under {where}.", "Expected these files and folders there:"]
    lines += [f"  {where / e}" for e in expected]
    lines.append(how)
    lines.append("(Set $CAMLIB_DATA to keep datasets elsewhere; see data/README.md.)")
    return "\n".join(lines)


class BadImageError(ValueError):
    """An image file cannot be decoded (truncated, corrupt, not an image); ``path`` names it."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        super().__init__(f"cannot read the image {self.path}: {reason}. Replace or delete the file (download "
                         "the dataset again), or pass on_bad_image='skip' to leave unreadable images out")


#: What a dataset or a cache build does with an unreadable image: "raise" (the default) stops with a
#: :class:`BadImageError` naming the file; "skip" leaves the image out, counts it and reports it.
ON_BAD_IMAGE = ("raise", "skip")


def check_on_bad_image(policy: Any) -> str:
    if policy not in ON_BAD_IMAGE:
        raise ValueError(f"on_bad_image must be 'raise' or 'skip'; got {policy!r}")
    return policy


def first_readable(index: int, n: int, load: Callable[[int], Any], *, policy: str, bad: dict[int, str],
                   name: str) -> tuple[int, Any]:
    """``(i, load(i))`` for ``i = index``, or -- under ``policy="skip"`` -- the next index whose image
    can be read. Each unreadable image is recorded once in ``bad`` (index -> reason) and warned
    about by name; under ``"raise"`` the :class:`BadImageError` passes through. The one place the
    datasets (CUB, ILSVRC, Pets) apply ``on_bad_image``."""
    for k in range(n):
        i = (index + k) % n
        try:
            return i, load(i)
        except BadImageError as e:
            if policy == "raise":
                raise
            if i not in bad:
                bad[i] = str(e)
                warnings.warn(f"{name}: skipping unreadable image {e.path} ({len(bad)} so far)", stacklevel=3)
    raise BadImageError(name, f"none of its {n} images can be read")


def read_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image file as RGB; :class:`BadImageError` naming the file if it cannot.

    Decoding happens here (not lazily at the first transform), so a truncated JPEG is caught with
    its path. Used by :class:`ILSVRCVal` (lesson 03's gpu path), :class:`CUB200` (lesson 04's) and
    the datasets of :func:`camlib.data.transfer.transfer_datasets` (lesson 05's).
    """
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise BadImageError(path, f"{type(e).__name__}: {e}") from e
