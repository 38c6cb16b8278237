"""A handful of real photos with hand-drawn boxes, usable offline: the ImageNet objects that ship
inside scikit-image and scikit-learn (a cat, an espresso, a rocket, a tripod, ...).

The images come from the installed packages (``skimage.data``, ``sklearn.datasets``); the boxes
and ImageNet classes live in ``camlib/data/photo_annotations.json``, annotated by hand for this course
(each entry has a note on how the box and the class were judged, and ``also_ok`` alternatives).
Seven photos cannot measure a model, but they show CAM on real images on any laptop, and they
check that a pretrained network's maps land on real objects. Introduced in lesson 03.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from .common import DatasetNotFoundError, check_boxes, eval_transform, make_sample

_FITS = ("exact", "nearest")


def annotations_path() -> Path:
    """The hand-made annotations, shipped inside the package (``camlib/data/photo_annotations.json``)."""
    path = Path(__file__).with_name("photo_annotations.json")
    if not path.is_file():
        raise DatasetNotFoundError(f"{path} is missing: the photo annotations ship with camlib; reinstall it")
    return path


def load_photo(source: dict[str, Any]) -> np.ndarray:
    """The uint8 ``(H, W, 3)`` photo that ``source`` names, from scikit-image or scikit-learn."""
    pkg = source.get("package")
    if pkg == "skimage":
        import skimage.data

        fn = getattr(skimage.data, str(source.get("function")), None)
        if fn is None:
            raise ValueError(f"skimage.data has no function {source.get('function')!r}")
        img = fn()
        if "index" in source:
            img = img[int(source["index"])]
    elif pkg == "sklearn":
        from sklearn.datasets import load_sample_image

        img = load_sample_image(str(source.get("file")))
    else:
        raise ValueError(f"source package must be 'skimage' or 'sklearn'; got {pkg!r}")
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"photo {source} is {img.dtype}; expected uint8")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"photo {source} has shape {img.shape}; expected (H, W) or (H, W, 3)")
    return np.ascontiguousarray(img[:, :, :3])


def read_annotations(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The validated list of photo records from the annotation file."""
    path = Path(path) if path is not None else annotations_path()
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    records = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(records, list) or not records:
        raise ValueError(f"{path.name}: expected an object with a non-empty 'images' list")
    names = set()
    for r in records:
        for key in ("name", "source", "width", "height", "label", "class_name", "boxes", "class_fit"):
            if key not in r:
                raise ValueError(f"{path.name}: record {r.get('name', '?')!r} lacks {key!r}")
        if r["name"] in names:
            raise ValueError(f"{path.name}: the name {r['name']!r} appears twice")
        names.add(r["name"])
        if not (isinstance(r["label"], int) and 0 <= r["label"] < 1000):
            raise ValueError(f"{path.name}: {r['name']} label must be an ImageNet index 0..999; got {r['label']!r}")
        if r["class_fit"] not in _FITS:
            raise ValueError(f"{path.name}: {r['name']} class_fit must be one of {_FITS}; got {r['class_fit']!r}")
        if not r["boxes"]:
            raise ValueError(f"{path.name}: {r['name']} has no box")
        check_boxes(r["boxes"], int(r["width"]), int(r["height"]), where=f"{path.name}: {r['name']}")
    return records


class RealPhotos(torch.utils.data.Dataset):
    """The annotated package photos: ``{"image", "label", "boxes"}`` samples, label an ImageNet index.

    ``transform`` (default: resize to ``size`` x ``size`` and normalize) scales the boxes with the
    image. ``exact_only`` keeps the photos whose object is an instance of its ImageNet class (drops
    the 'nearest class' ones: rocket/missile, motorcycle/moped, tower/palace). ``records[i]`` holds
    the name, class name, ``also_ok`` classes and the annotator's note. Introduced in lesson 03.
    """

    def __init__(self, transform: Callable | None = None, size: int = 224, *, exact_only: bool = False,
                 annotations: str | Path | None = None):
        records = read_annotations(annotations)
        if exact_only:
            records = [r for r in records if r["class_fit"] == "exact"]
        self.records = records
        self.size = size
        self.transform = transform if transform is not None else eval_transform(size)
        self.names = [r["name"] for r in records]
        self.labels = [int(r["label"]) for r in records]
        self.class_names = [r["class_name"] for r in records]
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw uint8 ``(H, W, 3)`` photo and its pixel-edge boxes ``(N, 4)`` in its own pixels."""
        r = self.records[index]
        if index not in self._cache:  # seven small photos: decode each once
            self._cache[index] = load_photo(r["source"])
        img = self._cache[index]
        if img.shape[:2] != (r["height"], r["width"]):
            raise ValueError(f"photo {r['name']} is {img.shape[1]}x{img.shape[0]} but was annotated at "
                             f"{r['width']}x{r['height']}; the package's image changed")
        return img.copy(), np.asarray(r["boxes"], dtype=np.float32).reshape(-1, 4)

    def __getitem__(self, index: int) -> dict[str, Any]:
        img, boxes = self.load(index)
        return make_sample(Image.fromarray(img), self.labels[index], boxes, None, self.transform, self.size)


#: Package images that show none of the annotated objects: pasted objects go onto these (lesson 06).
BACKGROUNDS: dict[str, dict[str, Any]] = {
    "grass": {"package": "skimage", "function": "grass"},
    "gravel": {"package": "skimage", "function": "gravel"},
    "brick": {"package": "skimage", "function": "brick"},
    "hubble": {"package": "skimage", "function": "hubble_deep_field"},
    "flower": {"package": "sklearn", "file": "flower.jpg"},
}


class PastedPhotos(torch.utils.data.Dataset):
    """More real-object images with exact boxes: each annotated photo's object (its first box, cut
    out) pasted onto package backgrounds that show none of the objects (:data:`BACKGROUNDS`).

    For every object, background and placement ``p < placements`` the object is scaled so that its
    longer side is ``scales[p % len(scales)]`` of the ``size``-pixel square image and put at a place
    drawn from ``seed``; the box is where it landed (pixel-edge, in the ``size`` image). Samples are
    ``{"image", "label", "boxes"}`` (ImageNet mean/std normalized, like :class:`RealPhotos`);
    :meth:`load` gives the uint8 ``(size, size, 3)`` image. Everything is a function of the
    arguments. Introduced in lesson 06 (do a class's top units fire on its object?).
    """

    def __init__(self, photos: RealPhotos | None = None, size: int = 224, *, backgrounds=None,
                 placements: int = 2, scales=(0.45, 0.65), seed: int = 0):
        photos = photos if photos is not None else RealPhotos(size=size)
        bgs = dict(BACKGROUNDS) if backgrounds is None else dict(backgrounds)
        if int(size) < 16 or int(placements) < 1 or not bgs:
            raise ValueError(f"need size >= 16, placements >= 1 and at least one background; got size={size}, "
                             f"placements={placements}, {len(bgs)} backgrounds")
        if not scales or not all(0.05 <= float(s) <= 1.0 for s in scales):
            raise ValueError(f"scales must be fractions of the image side in [0.05, 1]; got {scales!r}")
        self.size = int(size)
        self.transform = eval_transform(self.size)
        rng = np.random.default_rng(seed)
        bg_imgs = {k: np.asarray(Image.fromarray(load_photo(v)).resize((self.size, self.size), Image.BILINEAR))
                   for k, v in bgs.items()}
        self.names, self.labels, self.class_names, self._items = [], [], [], []
        for i in range(len(photos)):
            img, boxes = photos.load(i)
            x1, y1, x2, y2 = (int(round(float(v))) for v in boxes[0])
            obj = Image.fromarray(img[y1:y2, x1:x2])
            for bname in bgs:
                for p in range(int(placements)):
                    scale = float(scales[p % len(scales)]) * self.size / max(obj.size)
                    w, h = max(1, round(obj.size[0] * scale)), max(1, round(obj.size[1] * scale))
                    px, py = int(rng.integers(0, self.size - w + 1)), int(rng.integers(0, self.size - h + 1))
                    self._items.append((bname, obj, (w, h), (px, py)))
                    self.names.append(f"{photos.names[i]} on {bname}")
                    self.labels.append(photos.labels[i])
                    self.class_names.append(photos.class_names[i])
        self._bg = bg_imgs

    def __len__(self) -> int:
        return len(self._items)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The uint8 ``(size, size, 3)`` composite and its pixel-edge box ``(1, 4)``."""
        bname, obj, (w, h), (px, py) = self._items[index]
        out = self._bg[bname].copy()
        out[py:py + h, px:px + w] = np.asarray(obj.resize((w, h), Image.BILINEAR))
        return out, np.array([[px, py, px + w, py + h]], dtype=np.float32)

    def __getitem__(self, index: int) -> dict[str, Any]:
        img, boxes = self.load(index)
        return make_sample(Image.fromarray(img), self.labels[index], boxes, None, self.transform, self.size)
