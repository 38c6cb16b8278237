"""CUB-200-2011 (Caltech-UCSD Birds) in its published layout, with boxes and optional masks.

The archive ``CUB_200_2011.tgz`` (1.15 GB, CaltechDATA record 65de6-vp158) unpacks to::

    CUB_200_2011/
        images/<class folder>/<name>.jpg      11,788 photos of 200 species
        images.txt                             "<image id> <class folder>/<name>.jpg"
        image_class_labels.txt                 "<image id> <class id>"        (class ids 1..200)
        train_test_split.txt                   "<image id> <is_train>"        (5,994 train / 5,794 test)
        bounding_boxes.txt                     "<image id> <x> <y> <width> <height>"  (floats, pixels)
        classes.txt                            "<class id> <class folder>"

and the separate ``segmentations.tgz`` (39 MB, record w9d68-gec53) holds
``segmentations/<class folder>/<name>.png``: grey-level masks (the fraction of annotators who marked
the pixel as bird), thresholded here at ``mask_threshold`` of full scale.

Boxes: ``(x, y)`` is the top-left corner, so the pixel-edge box is ``(x, y, x + w, y + h)``,
clipped to the image. Labels are the class ids minus one (0..199). Used in lesson 03 and for the
paper's fine-grained experiment (section 4.1, Table 4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from ..config import data_dir
from .common import (DatasetNotFoundError, check_on_bad_image, eval_transform,
                     first_readable, make_sample, missing_data_message, read_image)
from .download import download_and_extract

CUB_URL = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"
CUB_MD5 = "97eceeb196236b17998738112f37df78"
#: Bytes of CUB_200_2011.tgz. The address, MD5 and size are the Caltech data repository's record
#: 65de6-vp158; not re-checked from this machine (it has no internet): the MD5 is the one the
#: dataset's users have published for years, and several public download logs report this size.
CUB_SIZE = 1_150_585_339
SEGMENTATIONS_URL = "https://data.caltech.edu/records/w9d68-gec53/files/segmentations.tgz"
SEGMENTATIONS_MD5 = "4d47ba1228eae64f2fa547c47bc65255"

_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt", "classes.txt")


def _read_table(path: Path, ncols: int, last_is_text: bool = False) -> dict[int, list[str]]:
    """``id -> fields`` from a whitespace table; ValueError naming the file and line when malformed."""
    rows: dict[int, list[str]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split(maxsplit=ncols - 1) if last_is_text else line.split()
            if len(parts) != ncols:
                raise ValueError(f"{path.name} line {lineno}: expected {ncols} fields, got {line.strip()!r}")
            try:
                key = int(parts[0])
            except ValueError:
                raise ValueError(f"{path.name} line {lineno}: expected an integer id first, got {parts[0]!r}") from None
            if key in rows:
                raise ValueError(f"{path.name} line {lineno}: id {key} appears twice")
            rows[key] = [p.strip() for p in parts[1:]]
    return rows


def _missing_images(base: Path) -> tuple[int, list[str]]:
    """How many images ``images.txt`` lists and which of them are not on disk (an interrupted extraction)."""
    listed = _read_table(base / "images.txt", 2, last_is_text=True)
    return len(listed), [v[0] for _, v in sorted(listed.items()) if not (base / "images" / v[0]).is_file()]


def _complete(base: Path) -> bool:
    if not all((base / f).is_file() for f in _FILES) or not (base / "images").is_dir():
        return False
    try:
        return not _missing_images(base)[1]
    except ValueError:
        return False


def fetch_cub(root: str | Path, *, url: str = CUB_URL, md5: str | None = CUB_MD5, size: int | None = CUB_SIZE,
              progress: bool = True) -> Path:
    """Download ``CUB_200_2011.tgz`` into ``root`` (resumable, MD5-verified), check its size, and
    unpack it there; returns ``root``. Raises :class:`~camlib.data.download.DownloadError` (one
    sentence: no network, a refused address) or :class:`~camlib.data.download.ChecksumError`.
    Called by :class:`CUB200` with ``download=True``, as lesson 04's gpu path opens it, and so by
    ``python -m camlib.recipes --recipe cub-*``."""
    from .archives import extract_archive
    from .download import ChecksumError, download_url
    root = Path(root)
    archive = download_url(url, root / "CUB_200_2011.tgz", md5=md5, progress=progress)
    if size is not None and archive.stat().st_size != size:
        got = archive.stat().st_size
        archive.unlink()
        raise ChecksumError(f"{url}: the archive has {got} bytes, expected {size}; it was deleted")
    extract_archive(archive, root)
    return root


def _locate(root: Path) -> Path:
    """The ``CUB_200_2011`` folder: ``root/CUB_200_2011`` or ``root`` itself when it holds the files."""
    if (root / "images.txt").is_file():
        return root
    return root / "CUB_200_2011"


class CUB200(torch.utils.data.Dataset):
    """CUB-200-2011 ``train`` or ``test`` split: ``{"image", "label", "boxes", "mask"?}`` samples.

    ``root``: the folder that holds ``CUB_200_2011/`` (default ``data_dir()``, i.e.
    ``<repo>/data``), or that folder itself. ``download=True`` fetches and verifies the archive
    (and, with ``with_masks``, the segmentations) when absent; ``url``/``md5`` and
    ``seg_url``/``seg_md5`` may point elsewhere (a mirror, or a test server). ``transform`` gets a
    dict of ``tv_tensors``; the default resizes to ``size`` x ``size`` and normalizes
    (:func:`camlib.data.common.eval_transform`). Introduced in lesson 04's gpu path (paper
    section 4.1).
    """

    def __init__(self, root: str | Path | None = None, split: str = "train", transform: Callable | None = None,
                 download: bool = False, with_masks: bool = False, *, size: int = 224,
                 url: str = CUB_URL, md5: str | None = CUB_MD5,
                 seg_url: str = SEGMENTATIONS_URL, seg_md5: str | None = SEGMENTATIONS_MD5,
                 mask_threshold: float = 0.5, progress: bool = True, on_bad_image: str = "raise"):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
        if not 0.0 < float(mask_threshold) <= 1.0:
            raise ValueError(f"mask_threshold must be in (0, 1]; got {mask_threshold!r}")
        self.root = Path(root) if root is not None else data_dir()
        self.split, self.size = split, size
        self.transform = transform if transform is not None else eval_transform(size)
        self.with_masks, self.mask_threshold = bool(with_masks), float(mask_threshold)
        self.on_bad_image = check_on_bad_image(on_bad_image)
        self.bad_images: dict[int, str] = {}
        base = _locate(self.root)

        if download and not _complete(base):    # absent, or an extraction that was cut short: (re)extract
            fetch_cub(self.root, url=url, md5=md5, size=CUB_SIZE if url == CUB_URL else None, progress=progress)
            base = _locate(self.root)
        if not all((base / f).is_file() for f in _FILES) or not (base / "images").is_dir():
            raise DatasetNotFoundError(missing_data_message(
                "CUB-200-2011", base, [*_FILES, "images/"],
                f"Download CUB_200_2011.tgz ({url}, md5 {CUB_MD5}) and unpack it into {self.root}, "
                "or pass download=True."))
        listed, missing = _missing_images(base)
        if missing:
            raise DatasetNotFoundError(
                f"CUB-200-2011 under {base} is incomplete: images.txt lists {listed} images but {len(missing)} "
                f"are missing (first: {missing[:3]}), as an interrupted extraction leaves it. Pass "
                "download=True to extract the archive again (it is verified, not fetched again), or unpack "
                f"CUB_200_2011.tgz into {self.root} once more.")
        self.base = base

        self.seg_dir: Path | None = None
        if self.with_masks:
            self.seg_dir = self._find_segmentations()
            if self.seg_dir is None and download:
                download_and_extract(seg_url, self.root / "segmentations.tgz", base, md5=seg_md5, progress=progress)
                self.seg_dir = self._find_segmentations()
            if self.seg_dir is None:
                raise DatasetNotFoundError(missing_data_message(
                    "CUB-200-2011 segmentations", base, ["segmentations/<class folder>/<name>.png"],
                    f"Download segmentations.tgz ({seg_url}, md5 {SEGMENTATIONS_MD5}) and unpack it "
                    f"into {base}, or pass download=True (or with_masks=False)."))

        images = _read_table(base / "images.txt", 2, last_is_text=True)
        labels = _read_table(base / "image_class_labels.txt", 2)
        is_train = _read_table(base / "train_test_split.txt", 2)
        boxes = _read_table(base / "bounding_boxes.txt", 5)
        classes = _read_table(base / "classes.txt", 2, last_is_text=True)
        ids = sorted(images)
        for name, table in (("image_class_labels.txt", labels), ("train_test_split.txt", is_train),
                            ("bounding_boxes.txt", boxes)):
            if set(table) != set(ids):
                diff = sorted(set(ids) ^ set(table))[:5]
                raise ValueError(f"{name} must list the same image ids as images.txt; they differ at {diff}")
        class_ids = sorted(classes)
        if class_ids != list(range(1, len(class_ids) + 1)):
            raise ValueError(f"classes.txt must number classes 1..N without gaps; got ids {class_ids[:5]}...")
        self.class_names = [classes[c][0] for c in class_ids]

        want = "1" if split == "train" else "0"
        self.samples: list[dict[str, Any]] = []
        for i in ids:
            flag = is_train[i][0]
            if flag not in ("0", "1"):
                raise ValueError(f"train_test_split.txt: image {i} has is_train {flag!r}; expected 0 or 1")
            if flag != want:
                continue
            c = int(labels[i][0])
            if not 1 <= c <= len(self.class_names):
                raise ValueError(f"image_class_labels.txt: image {i} has class {c}; "
                                 f"expected 1..{len(self.class_names)}")
            x, y, w, h = (float(v) for v in boxes[i])
            if w <= 0 or h <= 0:
                raise ValueError(f"bounding_boxes.txt: image {i} has width/height {w}, {h}; expected both > 0")
            self.samples.append({"id": i, "path": images[i][0], "label": c - 1,
                                 "box": (x, y, x + w, y + h)})

    def source_files(self) -> list[Path]:
        """Every file the split reads (images, and masks when used): the decoded-image cache
        fingerprints them (path, size, modification time)."""
        files = [self.base / "images" / s["path"] for s in self.samples]
        if self.seg_dir is not None:
            files += [self.seg_dir / Path(s["path"]).with_suffix(".png") for s in self.samples]
        return files

    def _find_segmentations(self) -> Path | None:
        for cand in (self.base / "segmentations", self.root / "segmentations"):
            if cand.is_dir():
                return cand
        return None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[Image.Image, np.ndarray, np.ndarray | None]:
        """The raw RGB image, its pixel-edge box ``(1, 4)`` and its bool mask (or None)."""
        s = self.samples[index]
        image = read_image(self.base / "images" / s["path"])
        w, h = image.size
        x1, y1, x2, y2 = s["box"]
        box = np.array([[min(max(x1, 0), w), min(max(y1, 0), h), min(max(x2, 0), w), min(max(y2, 0), h)]],
                       dtype=np.float32)
        mask = None
        if self.seg_dir is not None:
            png = self.seg_dir / Path(s["path"]).with_suffix(".png")
            if not png.is_file():
                raise DatasetNotFoundError(f"segmentation {png} is missing (image {s['id']}, {s['path']})")
            grey = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
            if grey.shape != (h, w):
                raise ValueError(f"segmentation {png.name} is {grey.shape[::-1]} but its image is {(w, h)}")
            mask = grey >= self.mask_threshold * 255.0
        return image, box, mask

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Sample ``index``. An unreadable image raises :class:`~camlib.data.common.BadImageError`
        naming the file (``on_bad_image="raise"``, the default); with ``"skip"`` it is recorded in
        ``bad_images`` (index -> reason), a warning names it, and the next readable image stands in."""
        i, (image, box, mask) = first_readable(index, len(self.samples), self.load, policy=self.on_bad_image,
                                               bad=self.bad_images, name="CUB-200-2011")
        return make_sample(image, self.samples[i]["label"], box, mask, self.transform, self.size)
