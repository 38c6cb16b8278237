"""The classification datasets of the paper's generic-feature experiment (section 4, Table 5) that
need no sign-up: Caltech-101, Oxford 102 Flowers, Oxford-IIIT Pet, as ``(train, test)`` pairs.

torchvision downloads them (``download=True``, its own checksums) into the published layouts::

    caltech101/101_ObjectCategories/<class>/image_0001.jpg   (BACKGROUND_Google is not a class)
    flowers-102/jpg/image_00001.jpg, imagelabels.mat, setid.mat
    oxford-iiit-pet/images/<id>.jpg, annotations/{trainval,test}.txt

and this module reads the file lists from them, so that every image goes through
:func:`camlib.data.common.eval_transform` (greyscale and CMYK JPEGs become RGB first -- Caltech-101
has greyscale ones) and an unreadable file (a truncated JPEG) is counted and stood in for by the
next image instead of stopping the run. Flowers-102 is read directly when its three parts are
present (torchvision would check the .mat files' MD5s again on every open). Caltech-101 has no
official split: a fixed random half trains. :func:`transfer_datasets` opens each dataset on its own,
so one that fails does not take the others with it. Introduced in lesson 05 (gpu path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from ..config import data_dir
from .common import eval_transform, first_readable, read_image

NAMES = ("Caltech-101", "Flowers-102", "Oxford-IIIT Pet")


class ImageList(torch.utils.data.Dataset):
    """Image files and labels as ``{"image", "label", "boxes"}`` samples (no boxes: ``(0, 4)``).

    An image that cannot be decoded is recorded in ``unreadable`` (index -> reason), warned about
    once, and the next readable image of the list stands in for it. The dataset type
    that :func:`transfer_datasets` returns (lesson 05's gpu path)."""

    def __init__(self, paths, labels, class_names, transform: Callable | None = None, *, size: int = 224,
                 name: str = "images"):
        self.paths, self.labels = [Path(p) for p in paths], [int(y) for y in labels]
        if len(self.paths) != len(self.labels):
            raise ValueError(f"one label per image expected; got {len(self.paths)} paths, {len(self.labels)} labels")
        if not self.paths:
            raise ValueError(f"{name}: no images")
        self.class_names, self.name = list(class_names), name
        self.transform = transform if transform is not None else eval_transform(size)
        self.unreadable: dict[int, str] = {}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i, img = first_readable(index, len(self.paths), lambda k: read_image(self.paths[k]), policy="skip",
                                bad=self.unreadable, name=self.name)
        return {"image": self.transform(img), "label": self.labels[i], "boxes": torch.zeros(0, 4)}


def caltech101(root: str | Path | None = None, *, download: bool = True, seed: int = 0,
               transform: Callable | None = None) -> tuple[ImageList, ImageList]:
    """Caltech-101 (101 classes, no official split): a fixed random half trains, the rest tests."""
    import torchvision
    root = Path(root) if root is not None else data_dir()
    ds = torchvision.datasets.Caltech101(str(root), download=download)
    base = Path(ds.root) / "101_ObjectCategories"
    paths = [base / ds.categories[y] / f"image_{i:04d}.jpg" for i, y in zip(ds.index, ds.y)]
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed)).tolist()
    half = len(paths) // 2
    pick = lambda idx, part: ImageList([paths[i] for i in idx], [ds.y[i] for i in idx], ds.categories,  # noqa: E731
                                       transform, name=f"Caltech-101 {part}")
    return pick(order[:half], "train"), pick(order[half:], "test")


def flowers102(root: str | Path | None = None, *, download: bool = True,
               transform: Callable | None = None) -> tuple[ImageList, ImageList]:
    """Oxford 102 Flowers: the official ``trnid`` (train) and ``tstid`` (test) splits."""
    import scipy.io
    root = Path(root) if root is not None else data_dir()
    base = root / "flowers-102"
    if not all(p.exists() for p in (base / "jpg", base / "imagelabels.mat", base / "setid.mat")):
        import torchvision
        torchvision.datasets.Flowers102(str(root), "train", download=download)   # fetches and verifies
    labels = scipy.io.loadmat(base / "imagelabels.mat", squeeze_me=True)["labels"].reshape(-1)
    sets = scipy.io.loadmat(base / "setid.mat", squeeze_me=True)
    n_classes = int(labels.max())
    names = [f"flower {c}" for c in range(1, n_classes + 1)]

    def split(key: str, part: str) -> ImageList:
        ids = [int(i) for i in sets[key].reshape(-1)]
        return ImageList([base / "jpg" / f"image_{i:05d}.jpg" for i in ids], [int(labels[i - 1]) - 1 for i in ids],
                         names, transform, name=f"Flowers-102 {part}")

    return split("trnid", "train"), split("tstid", "test")


def oxford_pets(root: str | Path | None = None, *, download: bool = True,
                transform: Callable | None = None) -> tuple[ImageList, ImageList]:
    """Oxford-IIIT Pet breeds (37 classes): the official ``trainval`` and ``test`` splits."""
    import torchvision
    root = Path(root) if root is not None else data_dir()
    out = []
    for split in ("trainval", "test"):
        ds = torchvision.datasets.OxfordIIITPet(str(root), split, download=download)
        out.append(ImageList(ds._images, ds._labels, ds.classes, transform, name=f"Oxford-IIIT Pet {split}"))
    return out[0], out[1]


_OPENERS = {"Caltech-101": caltech101, "Flowers-102": flowers102, "Oxford-IIIT Pet": oxford_pets}


def transfer_datasets(root: str | Path | None = None, names=NAMES, *, download: bool = True,
                      transform: Callable | None = None) -> tuple[dict[str, tuple[ImageList, ImageList]], dict[str, str]]:
    """Open each dataset of ``names`` on its own: ``(opened, failed)`` where ``opened`` maps a name
    to ``(train, test)`` and ``failed`` maps a name to one sentence on why it could not be had."""
    opened, failed = {}, {}
    for name in names:
        if name not in _OPENERS:
            raise ValueError(f"unknown dataset {name!r}; expected some of {NAMES}")
        try:
            opened[name] = _OPENERS[name](root, download=download, transform=transform)
        except Exception as e:  # noqa: BLE001 - a download or a file problem of *this* dataset only
            msg = " ".join(str(e).split()) or type(e).__name__
            failed[name] = f"{name} could not be opened ({type(e).__name__}: {msg[:300]})"
    return opened, failed


__all__ = ["NAMES", "ImageList", "caltech101", "flowers102", "oxford_pets", "transfer_datasets"]
