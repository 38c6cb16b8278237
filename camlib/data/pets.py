"""Oxford-IIIT Pet through torchvision: 37 cat and dog breeds, with masks from the trimaps.

torchvision's ``OxfordIIITPet`` reads (and with ``download=True`` fetches, about 800 MB)::

    oxford-iiit-pet/images/<Breed_name>_<n>.jpg
    oxford-iiit-pet/annotations/trainval.txt, test.txt   "<image id> <class 1..37> <species> <breed id>"
    oxford-iiit-pet/annotations/trimaps/<image id>.png   1 = pet, 2 = background, 3 = border

**Mask.** The trimap's third value is a band a few pixels wide drawn along the pet's outline
("not classified"). The true outline runs inside that band, and thin parts (ears, tails, paws)
are often nothing but band; so by default the border counts as pet (``border_is_pet=True``) and the
mask slightly overestimates the pet. ``border_is_pet=False`` keeps only the core (value 1).

**Box.** The pet's box is the bounding box of the mask: ``torchvision.ops.masks_to_boxes`` returns
the *inclusive* last row and column, so 1 is added to ``x2`` and ``y2`` to make it pixel-edge. An
image whose mask is empty gets no box. Introduced in lesson 03 (a dataset with masks for PxAP).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torchvision.datasets import OxfordIIITPet
from torchvision.ops import masks_to_boxes

from ..config import data_dir
from .common import (BadImageError, DatasetNotFoundError, check_on_bad_image, eval_transform,
                     first_readable, make_sample, missing_data_message)

PET, BACKGROUND, BORDER = 1, 2, 3


def trimap_to_mask(trimap: np.ndarray, border_is_pet: bool = True) -> np.ndarray:
    """Bool pet mask from a trimap array of 1 (pet), 2 (background), 3 (border)."""
    trimap = np.asarray(trimap)
    if trimap.ndim != 2:
        raise ValueError(f"trimap must be a 2-D array; got shape {trimap.shape}")
    bad = ~np.isin(trimap, (PET, BACKGROUND, BORDER))
    if bad.any():
        raise ValueError(f"trimap values must be 1, 2 or 3; got {sorted(np.unique(trimap[bad]).tolist())[:5]}")
    return (trimap == PET) | (trimap == BORDER) if border_is_pet else trimap == PET


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """Pixel-edge ``(1, 4)`` box around a bool mask, or ``(0, 4)`` when the mask is empty."""
    m = torch.as_tensor(np.asarray(mask, dtype=bool))
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W); got shape {tuple(m.shape)}")
    if not m.any():
        return np.zeros((0, 4), np.float32)
    box = masks_to_boxes(m[None]).numpy().astype(np.float32)  # inclusive max row/column
    box[:, 2:] += 1.0
    return box


class OxfordPets(torch.utils.data.Dataset):
    """Oxford-IIIT Pet ``trainval`` or ``test``: ``{"image", "label", "boxes", "mask"}`` samples.

    ``root``: the folder that holds ``oxford-iiit-pet/`` (default ``data_dir()``). ``download``
    is passed to torchvision, which fetches and checks the two archives. ``label`` is the breed,
    0..36 (``class_names``). No lesson opens it: it gives Pets with boxes and masks for
    localization beyond the course (lesson 05 classifies Pets through
    :func:`camlib.data.transfer.transfer_datasets`, without boxes).
    """

    def __init__(self, root: str | Path | None = None, split: str = "test", transform: Callable | None = None,
                 download: bool = False, *, size: int = 224, border_is_pet: bool = True,
                 on_bad_image: str = "raise"):
        if split == "train":
            split = "trainval"
        if split not in ("trainval", "test"):
            raise ValueError(f"split must be 'trainval' (or 'train') or 'test'; got {split!r}")
        self.root = Path(root) if root is not None else data_dir()
        self.size, self.border_is_pet = size, bool(border_is_pet)
        self.on_bad_image = check_on_bad_image(on_bad_image)
        self.bad_images: dict[int, str] = {}
        self.transform = transform if transform is not None else eval_transform(size)
        base = self.root / "oxford-iiit-pet"
        needed = ["images/", "annotations/trimaps/", f"annotations/{split}.txt"]
        if not download and not all((base / n.rstrip("/")).exists() for n in needed):
            raise DatasetNotFoundError(missing_data_message(
                "Oxford-IIIT Pet", base, needed,
                "Pass download=True (torchvision fetches images.tar.gz and annotations.tar.gz from "
                "https://www.robots.ox.ac.uk/~vgg/data/pets/), or unpack both archives there."))
        self._tv = OxfordIIITPet(str(self.root), split=split, target_types=["category", "segmentation"],
                                 download=download)
        self.split = split
        self.class_names = list(self._tv.classes)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self._tv)

    def load(self, index: int) -> tuple[Image.Image, int, np.ndarray, np.ndarray]:
        """The raw RGB image, its label, its pixel-edge box ``(N, 4)`` and its bool mask."""
        path = self._tv._images[index]
        try:
            image, (label, trimap) = self._tv[index]
            image.load()
        except (OSError, SyntaxError, ValueError) as e:
            raise BadImageError(path, f"{type(e).__name__}: {e}") from e
        tri = np.asarray(trimap)
        if tri.shape != (image.height, image.width):
            raise ValueError(f"trimap of image {index} is {tri.shape} but the image is {(image.height, image.width)}")
        mask = trimap_to_mask(tri, self.border_is_pet)
        return image, int(label), mask_to_box(mask), mask

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Sample ``index``; an unreadable image follows ``on_bad_image`` (see :func:`first_readable`)."""
        _, (image, label, box, mask) = first_readable(index, len(self), self.load, policy=self.on_bad_image,
                                                      bad=self.bad_images, name="Oxford-IIIT Pet")
        return make_sample(image, label, box, mask, self.transform, self.size)
