"""ILSVRC 2012 validation set for localization: 50,000 images, their class and their boxes.

ImageNet cannot be downloaded on a user's behalf (image-net.org asks each user to accept its terms),
so this loader only reads what the user has put under ``data/ILSVRC2012`` (or ``root``). Two
published layouts are recognised:

* **Kaggle** ("ImageNet Object Localization Challenge")::

      ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000001.JPEG ...
      LOC_val_solution.csv         "ImageId,PredictionString" with "wnid x1 y1 x2 y2 wnid x1 ..."
      LOC_synset_mapping.txt       "n01440764 tench, Tinca tinca" (1,000 lines)
      ILSVRC/Annotations/CLS-LOC/val/*.xml   (optional; used when the CSV is absent)

* **image-net.org** downloads::

      ILSVRC2012_img_val/ILSVRC2012_val_00000001.JPEG ...     (ILSVRC2012_img_val.tar)
      ILSVRC2012_bbox_val/ILSVRC2012_val_00000001.xml ...    (ILSVRC2012_bbox_val_v3.tgz: its val/)
      LOC_synset_mapping.txt or synset_words.txt              (same "wnid names" format)

**Box coordinates.** The XML files (PASCAL-VOC style ``<bndbox><xmin>..``) and the Kaggle CSV
hold the same integers: 0-based *inclusive* pixel indices of the first and last covered pixel.
Evidence: ``ILSVRC2012_val_00000001`` reads 111 108 441 193 in both; boxes start at 0 and end at
``width - 1`` (``ILSVRC2012_val_00000010``: 0 0 495 374 on a 500x375 image; ``..._00000014``: ymax
375 on a 376-pixel-high image); and the devkit's evaluation measures widths as ``xmax - xmin + 1``.
The pixel-edge box is therefore ``(xmin, ymin, xmax + 1, ymax + 1)``, clipped to the image.

**Labels.** The class index is the wnid's position in the *sorted* list of the 1,000 synsets (what
``LOC_synset_mapping.txt`` lists, in that order), which is the index torchvision's ImageNet weights
use. All objects of a validation image share its class; the label is the first object's wnid and
the boxes are the objects of that wnid. Introduced in lesson 03 (paper section 3, Tables 1-2).
"""

from __future__ import annotations

import csv
import os
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from ..config import data_dir
from .common import (DatasetNotFoundError, check_on_bad_image, eval_transform,
                     first_readable, make_sample, missing_data_message, read_image)

_IMAGE_DIRS = ("ILSVRC/Data/CLS-LOC/val", "ILSVRC2012_img_val", "val")
_XML_DIRS = ("ILSVRC/Annotations/CLS-LOC/val", "ILSVRC2012_bbox_val", "bbox_val", "val")
_CSV = "LOC_val_solution.csv"
_SYNSETS = ("LOC_synset_mapping.txt", "synset_words.txt")
_HOW = ("ImageNet is not downloaded for you: get the 2012 validation images and boxes from "
        "image-net.org (ILSVRC2012_img_val.tar + ILSVRC2012_bbox_val_v3.tgz) or Kaggle's "
        "'imagenet-object-localization-challenge', and lay them out in either layout that "
        "data/README.md shows.")


def read_synsets(path: str | Path) -> tuple[list[str], list[str]]:
    """``(wnids, names)`` from a ``"n01440764 tench, Tinca tinca"`` file, sorted by wnid."""
    path = Path(path)
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.strip().split(maxsplit=1)
            if not parts[0].startswith("n") or not parts[0][1:].isdigit():
                raise ValueError(f"{path.name} line {lineno}: expected 'n<digits> <names>', got {line.strip()!r}")
            rows.append((parts[0], parts[1] if len(parts) > 1 else parts[0]))
    if len({w for w, _ in rows}) != len(rows):
        raise ValueError(f"{path.name}: a wnid is listed twice")
    rows.sort()
    return [w for w, _ in rows], [n for _, n in rows]


def _inclusive_to_edge(x1: float, y1: float, x2: float, y2: float, where: str) -> tuple[float, float, float, float]:
    if x2 < x1 or y2 < y1:
        raise ValueError(f"{where}: expected xmin <= xmax and ymin <= ymax; got {(x1, y1, x2, y2)}")
    return (x1, y1, x2 + 1.0, y2 + 1.0)


def parse_voc_xml(path: str | Path) -> list[tuple[str, tuple[float, float, float, float]]]:
    """``[(wnid, pixel-edge box), ...]`` from one ImageNet/PASCAL-VOC annotation file."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ValueError(f"{path.name}: not valid XML ({e})") from None
    objects = []
    for obj in root.iter("object"):
        name, bb = obj.findtext("name"), obj.find("bndbox")
        if not name or bb is None:
            raise ValueError(f"{path.name}: an <object> lacks <name> or <bndbox>")
        try:
            coords = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError):
            raise ValueError(f"{path.name}: <bndbox> needs numeric xmin, ymin, xmax, ymax") from None
        objects.append((name.strip(), _inclusive_to_edge(*coords, where=path.name)))
    return objects


def parse_loc_csv(path: str | Path) -> dict[str, list[tuple[str, tuple[float, float, float, float]]]]:
    """``image id -> [(wnid, pixel-edge box), ...]`` from Kaggle's ``LOC_val_solution.csv``."""
    path = Path(path)
    out: dict[str, list] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"ImageId", "PredictionString"} <= set(reader.fieldnames):
            raise ValueError(f"{path.name}: expected the header 'ImageId,PredictionString'; got {reader.fieldnames}")
        for lineno, row in enumerate(reader, 2):
            tokens = (row["PredictionString"] or "").split()
            if not tokens or len(tokens) % 5:
                raise ValueError(f"{path.name} line {lineno}: PredictionString must be groups of "
                                 f"'wnid x1 y1 x2 y2'; got {row['PredictionString']!r}")
            objs = []
            for k in range(0, len(tokens), 5):
                try:
                    coords = [float(t) for t in tokens[k + 1:k + 5]]
                except ValueError:
                    raise ValueError(f"{path.name} line {lineno}: non-numeric coordinates in "
                                     f"{' '.join(tokens[k:k + 5])!r}") from None
                objs.append((tokens[k], _inclusive_to_edge(*coords, where=f"{path.name} line {lineno}")))
            out[row["ImageId"].strip()] = objs
    return out


def _first_dir(root: Path, candidates, pattern: str) -> Path | None:
    for c in candidates:
        d = root / c
        if d.is_dir() and next(d.glob(pattern), None) is not None:
            return d
    return None


class ILSVRCVal(torch.utils.data.Dataset):
    """ILSVRC 2012 validation images with class and boxes: ``{"image", "label", "boxes"}`` samples.

    ``root`` (default ``data_dir() / "ILSVRC2012"``) is searched for either layout in the module
    docstring; ``images``, ``annotations`` (a folder of XML files or the CSV) and ``synsets`` name
    the parts explicitly instead. Without a synset file the sorted wnids of the annotations are used
    only if there are exactly 1,000 of them. Annotated images missing from the image folder are
    skipped with a warning. Introduced in lesson 03 (paper section 3).
    """

    def __init__(self, root: str | Path | None = None, transform: Callable | None = None, *, size: int = 224,
                 images: str | Path | None = None, annotations: str | Path | None = None,
                 synsets: str | Path | None = None, on_bad_image: str = "raise"):
        self.root = Path(root) if root is not None else data_dir() / "ILSVRC2012"
        self.on_bad_image = check_on_bad_image(on_bad_image)
        self.bad_images: dict[int, str] = {}
        self.size = size
        self.transform = transform if transform is not None else eval_transform(size)
        expected = ["ILSVRC/Data/CLS-LOC/val/*.JPEG  or  ILSVRC2012_img_val/*.JPEG",
                    f"{_CSV}  or  ILSVRC/Annotations/CLS-LOC/val/*.xml  or  ILSVRC2012_bbox_val/*.xml",
                    "LOC_synset_mapping.txt  (or synset_words.txt)"]

        image_dir = Path(images) if images is not None else _first_dir(self.root, _IMAGE_DIRS, "*.JPEG")
        if image_dir is None or not image_dir.is_dir():
            raise DatasetNotFoundError(missing_data_message("The ILSVRC 2012 validation images", self.root,
                                                            expected, _HOW))
        if annotations is not None:
            ann = Path(annotations)
        elif (self.root / _CSV).is_file():
            ann = self.root / _CSV
        else:
            ann = _first_dir(self.root, _XML_DIRS, "*.xml")
        if ann is None or not ann.exists():
            raise DatasetNotFoundError(missing_data_message("The ILSVRC 2012 validation boxes", self.root,
                                                            expected, _HOW))
        if ann.is_dir():
            table = {p.stem: parse_voc_xml(p) for p in sorted(ann.glob("*.xml"))}
        else:
            table = parse_loc_csv(ann)
        if not table:
            raise ValueError(f"{ann} holds no annotations")

        syn = Path(synsets) if synsets is not None else next(
            (self.root / s for s in _SYNSETS if (self.root / s).is_file()), None)
        if syn is not None:
            if not syn.is_file():
                raise DatasetNotFoundError(f"synset file {syn} does not exist")
            self.wnids, self.class_names = read_synsets(syn)
        else:
            found = sorted({w for objs in table.values() for w, _ in objs})
            if len(found) != 1000:
                raise DatasetNotFoundError(missing_data_message(
                    "The ImageNet synset list", self.root, ["LOC_synset_mapping.txt"],
                    f"The annotations name {len(found)} classes, not 1,000, so the class order cannot be "
                    "inferred; add the synset file (Kaggle ships it; Caffe's synset_words.txt is the same)."))
            self.wnids, self.class_names = found, list(found)
        index = {w: i for i, w in enumerate(self.wnids)}

        self.image_dir, self.annotation_source = image_dir, ann
        self.samples: list[dict[str, Any]] = []
        missing = []
        for image_id in sorted(table):
            objs = table[image_id]
            wnid = objs[0][0]
            if wnid not in index:
                raise ValueError(f"{image_id}: class {wnid} is not in the synset list ({len(self.wnids)} wnids)")
            path = image_dir / f"{image_id}.JPEG"
            if not path.is_file():
                missing.append(image_id)
                continue
            self.samples.append({"id": image_id, "path": path, "label": index[wnid], "wnid": wnid,
                                 "boxes": [b for w, b in objs if w == wnid]})
        if not self.samples:
            raise DatasetNotFoundError(missing_data_message(
                "The ILSVRC 2012 validation images named by the annotations", image_dir,
                [f"{sorted(table)[0]}.JPEG ..."], _HOW))
        if missing:
            warnings.warn(f"{len(missing)} annotated images are not in {image_dir} (e.g. {missing[0]}); "
                          f"using the {len(self.samples)} present", stacklevel=2)
        self.missing = missing

    @property
    def num_classes(self) -> int:
        return len(self.wnids)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[Image.Image, np.ndarray]:
        """The raw RGB image and its pixel-edge boxes ``(N, 4)``, clipped to the image."""
        s = self.samples[index]
        image = read_image(s["path"])
        w, h = image.size
        boxes = np.asarray(s["boxes"], dtype=np.float32).reshape(-1, 4)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        return image, boxes

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Sample ``index``; an unreadable image follows ``on_bad_image`` (see :func:`first_readable`)."""
        i, (image, boxes) = first_readable(index, len(self.samples), self.load, policy=self.on_bad_image,
                                           bad=self.bad_images, name="ILSVRC 2012 val")
        return make_sample(image, self.samples[i]["label"], boxes, None, self.transform, self.size)


def ilsvrc_train_root() -> Path:
    """The ILSVRC 2012 training images' folder (one subfolder per wnid) under ``data_dir()/ILSVRC2012``:
    ``ILSVRC/Data/CLS-LOC/train`` (Kaggle), ``train`` or ``ILSVRC2012_img_train``."""
    base = data_dir() / "ILSVRC2012"
    for cand in (base / "ILSVRC/Data/CLS-LOC/train", base / "train", base / "ILSVRC2012_img_train"):
        if cand.is_dir():
            return cand
    raise DatasetNotFoundError(f"the ILSVRC 2012 training images were not found under {base} (looked for "
                               "ILSVRC/Data/CLS-LOC/train/, train/ or ILSVRC2012_img_train/, one folder per wnid); "
                               "see data/README.md")


class ILSVRCTrain(torch.utils.data.Dataset):
    """ILSVRC 2012 train in its ``train/<wnid>/*.JPEG`` layout as ``{"image": PIL, "label", "boxes"}``
    dicts (no boxes: training uses image labels only). ``root``: default :func:`ilsvrc_train_root`.
    Used by the ``ilsvrc-*`` recipes (:mod:`camlib.recipes`)."""

    def __init__(self, root: str | os.PathLike | None = None):
        from torchvision.datasets import ImageFolder
        root = Path(root) if root is not None else ilsvrc_train_root()
        self.folder = ImageFolder(str(root))
        self.root, self.samples, self.class_names = str(root), self.folder.samples, self.folder.classes

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int):
        img, label = self.folder[i]
        return {"image": img, "label": int(label), "boxes": torch.zeros(0, 4)}
