"""Builders for tiny copies of the real datasets in their exact on-disk formats, and a loopback
HTTP server with Range support, for tests/test_data_real.py (nothing can be downloaded here)."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import numpy as np
from PIL import Image


# ----------------------------------------------------------------------------- HTTP server

class LoopbackServer:
    """Serves ``files`` (url path -> bytes) on 127.0.0.1 with ``Range: bytes=N-`` support.

    ``truncate_next`` makes the next response announce the full length but send only that many
    bytes and close (a broken transfer). ``ignore_range`` answers 200 with the whole file.
    ``log`` records ``(path, range header or None, bytes sent)`` per request.
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, str | None, int]] = []
        self.truncate_next: int | None = None
        self.ignore_range = False
        self.no_length = False                   # send no Content-Length: the body ends when the connection closes
        self.headers: dict[str, dict[str, str]] = {}   # url path -> extra headers (ETag, Last-Modified)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                data = server.files.get(self.path.split("?")[0])
                rng = self.headers.get("Range")
                if data is None:
                    server.log.append((self.path, rng, 0))
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                if rng and not server.ignore_range:
                    assert rng.startswith("bytes=") and rng.endswith("-"), rng
                    start = int(rng[len("bytes="):-1])
                    if start >= len(data):
                        server.log.append((self.path, rng, 0))
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                for k, v in server.headers.get(self.path.split("?")[0], {}).items():
                    self.send_header(k, v)
                if server.no_length:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if server.truncate_next is not None:
                    body = body[:server.truncate_next]
                    server.truncate_next = None
                    self.close_connection = True
                # logged before writing: the client may check the log as soon as it has the bytes
                server.log.append((self.path, rng, len(body)))
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tgz_of_dir(folder: Path, arcname: str, extra: dict[str, bytes] | None = None) -> bytes:
    """A .tgz holding ``folder`` as ``arcname/`` (plus loose files ``extra``), as bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(folder, arcname=arcname)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# ----------------------------------------------------------------------------- images

def write_jpeg(path: Path, width: int, height: int, seed: int, mode: str = "RGB") -> None:
    """A random JPEG; ``mode`` "RGB", "L" (greyscale, as some Caltech-101 / ILSVRC files are),
    "CMYK" (as some ILSVRC files are) or "truncated" (an RGB JPEG cut to half its bytes)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr)
    if mode in ("L", "CMYK"):
        img = img.convert(mode)
    elif mode not in ("RGB", "truncated"):
        raise ValueError(mode)
    img.save(path, format="JPEG", quality=90)
    if mode == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


# ----------------------------------------------------------------------------- CUB-200-2011

CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]


def make_cub(root: Path, with_segmentations: bool = True, odd_modes: bool = False) -> list[dict]:
    """Write ``root/CUB_200_2011`` with 9 images (3 per class) in the published format.

    Returns the ground truth per image: id, path, label (0-based), is_train, the pixel-edge box,
    size, and the mask (bool, thresholded at 128) when segmentations are written.
    """
    base = root / "CUB_200_2011"
    rng = np.random.default_rng(0)
    truth = []
    image_id = 0
    for c, cname in enumerate(CUB_CLASSES, start=1):
        for k in range(3):
            image_id += 1
            w, h = int(rng.integers(30, 50)), int(rng.integers(24, 40))
            rel = f"{cname}/{cname.split('.')[1]}_{k:04d}_{image_id}.jpg"
            mode = {1: "L", 5: "CMYK"}.get(image_id, "RGB") if odd_modes else "RGB"
            write_jpeg(base / "images" / rel, w, h, seed=image_id, mode=mode)
            x, y = float(rng.integers(0, w // 3)) + 0.5, float(rng.integers(0, h // 3))
            bw, bh = float(rng.integers(5, w - int(x) - 1)), float(rng.integers(5, h - int(y) - 1)) + 0.25
            entry = {"id": image_id, "path": rel, "label": c - 1, "is_train": int(k != 2),
                     "xywh": (x, y, bw, bh), "box": (x, y, x + bw, y + bh), "size": (w, h)}
            if with_segmentations:
                grey = np.zeros((h, w), np.uint8)
                x0, y0 = int(np.ceil(x)), int(np.ceil(y))
                grey[y0:y0 + 4, x0:x0 + 5] = 255      # all annotators: bird
                grey[y0 + 4:y0 + 6, x0:x0 + 5] = 153  # 60 %: bird
                grey[y0 + 6:y0 + 8, x0:x0 + 5] = 102  # 40 %: not bird
                png = base / "segmentations" / Path(rel).with_suffix(".png")
                png.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(grey).save(png)
                entry["mask"] = grey >= 128
            truth.append(entry)
    (base / "images.txt").write_text("".join(f"{t['id']} {t['path']}\n" for t in truth))
    (base / "image_class_labels.txt").write_text("".join(f"{t['id']} {t['label'] + 1}\n" for t in truth))
    (base / "train_test_split.txt").write_text("".join(f"{t['id']} {t['is_train']}\n" for t in truth))
    (base / "bounding_boxes.txt").write_text(
        "".join(f"{t['id']} {' '.join(str(v) for v in t['xywh'])}\n" for t in truth))
    (base / "classes.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(CUB_CLASSES, start=1)))
    return truth


# ----------------------------------------------------------------------------- ILSVRC 2012 val

SYNSETS = [("n01440764", "tench, Tinca tinca"), ("n01443537", "goldfish, Carassius auratus"),
           ("n01751748", "sea snake"), ("n02119789", "kit fox, Vulpes macrotis")]

#: image id -> (width, height, [(wnid, xmin, ymin, xmax, ymax) inclusive 0-based])
ILSVRC_TRUTH = {
    "ILSVRC2012_val_00000001": (50, 40, [("n01751748", 11, 10, 44, 19)]),
    "ILSVRC2012_val_00000002": (40, 30, [("n02119789", 0, 0, 39, 29)]),
    "ILSVRC2012_val_00000003": (45, 35, [("n01440764", 3, 4, 20, 30), ("n01440764", 25, 2, 40, 12)]),
}


def _voc_xml(image_id: str, w: int, h: int, objects) -> str:
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in objects)
    return (f"<annotation><folder>val</folder><filename>{image_id}</filename>"
            f"<source><database>ILSVRC_2012</database></source>"
            f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
            f"<segmented>0</segmented>{objs}</annotation>")


def make_ilsvrc(root: Path, layout: str = "kaggle", use_csv: bool = True, synsets: bool = True,
                odd_modes: bool = False) -> Path:
    """Write the validation fixture under ``root`` in the Kaggle or the image-net.org layout."""
    if layout == "kaggle":
        img_dir, xml_dir = root / "ILSVRC/Data/CLS-LOC/val", root / "ILSVRC/Annotations/CLS-LOC/val"
    elif layout == "official":
        img_dir, xml_dir = root / "ILSVRC2012_img_val", root / "ILSVRC2012_bbox_val"
    else:
        raise ValueError(layout)
    for k, (image_id, (w, h, objs)) in enumerate(ILSVRC_TRUTH.items()):
        mode = ("CMYK", "L", "RGB")[k] if odd_modes else "RGB"
        write_jpeg(img_dir / f"{image_id}.JPEG", w, h, seed=100 + k, mode=mode)
        if not (layout == "kaggle" and use_csv):
            xml_dir.mkdir(parents=True, exist_ok=True)
            (xml_dir / f"{image_id}.xml").write_text(_voc_xml(image_id, w, h, objs))
    if layout == "kaggle" and use_csv:
        lines = ["ImageId,PredictionString"]
        for image_id, (_, _, objs) in ILSVRC_TRUTH.items():
            lines.append(f"{image_id}," + " ".join(f"{n} {a} {b} {c} {d}" for n, a, b, c, d in objs) + " ")
        (root / "LOC_val_solution.csv").write_text("\n".join(lines) + "\n")
    if synsets:
        # written in a shuffled order: the loader must sort
        order = [2, 0, 3, 1]
        (root / "LOC_synset_mapping.txt").write_text("".join(f"{SYNSETS[i][0]} {SYNSETS[i][1]}\n" for i in order))
    return root


# ----------------------------------------------------------------------------- Oxford-IIIT Pet

PET_IMAGES = [  # image id, class id (1-based), species (1 cat, 2 dog), breed id, split
    ("Abyssinian_1", 1, 1, 1, "trainval"),
    ("Abyssinian_2", 1, 1, 1, "test"),
    ("american_bulldog_1", 2, 2, 1, "trainval"),
    ("american_bulldog_2", 2, 2, 1, "test"),
]


def make_pets(root: Path) -> dict[str, np.ndarray]:
    """Write ``root/oxford-iiit-pet`` as torchvision reads it; returns image id -> trimap."""
    base = root / "oxford-iiit-pet"
    trimaps = {}
    for k, (image_id, *_rest) in enumerate(PET_IMAGES):
        w, h = 40 + 2 * k, 30 + k
        write_jpeg(base / "images" / f"{image_id}.jpg", w, h, seed=200 + k)
        tri = np.full((h, w), 2, np.uint8)          # background
        tri[5 + k:20, 8:25 + k] = 3                  # border band ...
        tri[6 + k:19, 9:24 + k] = 1                  # ... around the pet
        tri[12, 25 + k] = 3                          # a thin part that is border only (a tail tip)
        tri[12, 26 + k] = 3
        png = base / "annotations" / "trimaps" / f"{image_id}.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(tri).save(png)
        trimaps[image_id] = tri
    for split in ("trainval", "test"):
        rows = [f"{i} {c} {s} {b}\n" for i, c, s, b, sp in PET_IMAGES if sp == split]
        (base / "annotations" / f"{split}.txt").write_text("".join(rows))
    return trimaps


# ----------------------------------------------------------------------------- ILSVRC 2012 train

def make_ilsvrc_train(root: Path, per_class: int = 3) -> Path:
    """``root/ILSVRC/Data/CLS-LOC/train/<wnid>/<wnid>_<k>.JPEG`` (Kaggle's layout; one folder per
    wnid, as ImageFolder reads it), ``per_class`` images for each of :data:`SYNSETS`."""
    base = root / "ILSVRC/Data/CLS-LOC/train"
    for c, (wnid, _) in enumerate(SYNSETS):
        for k in range(per_class):
            mode = "CMYK" if (c, k) == (1, 0) else "RGB"     # the train set holds a few CMYK JPEGs
            write_jpeg(base / wnid / f"{wnid}_{k + 1}.JPEG", 40 + 3 * k, 32 + 2 * c, seed=300 + 10 * c + k, mode=mode)
    return base


# ----------------------------------------------------------------------------- Caltech-101

CALTECH_CLASSES = ["accordion", "airplanes", "anchor"]


def make_caltech101(root: Path, per_class: int = 4) -> Path:
    """``root/caltech101`` as torchvision's ``Caltech101`` reads it (the unpacked
    ``101_ObjectCategories.tar.gz`` and ``Annotations.tar``)::

        caltech101/101_ObjectCategories/<class>/image_0001.jpg ...   (plus BACKGROUND_Google/)
        caltech101/Annotations/<class or mapped name>/annotation_0001.mat

    One image is greyscale, one CMYK and one truncated (``airplanes/image_0002.jpg``)."""
    import scipy.io

    base = root / "caltech101"
    odd = {("accordion", 1): "L", ("anchor", 3): "CMYK", ("airplanes", 2): "truncated"}
    write_jpeg(base / "101_ObjectCategories" / "BACKGROUND_Google" / "image_0001.jpg", 36, 30, seed=399)
    ann_name = {"airplanes": "Airplanes_Side_2"}
    for c, name in enumerate(CALTECH_CLASSES):
        for k in range(1, per_class + 1):
            w, h = 40 + 2 * k, 30 + c
            write_jpeg(base / "101_ObjectCategories" / name / f"image_{k:04d}.jpg", w, h,
                       seed=400 + 10 * c + k, mode=odd.get((name, k), "RGB"))
            mat = base / "Annotations" / ann_name.get(name, name) / f"annotation_{k:04d}.mat"
            mat.parent.mkdir(parents=True, exist_ok=True)
            scipy.io.savemat(mat, {"box_coord": np.array([[2, h - 3, 3, w - 4]], np.uint16),
                                   "obj_contour": np.array([[1.0, 5.0, 5.0], [1.0, 1.0, 6.0]])})
    return base


# ----------------------------------------------------------------------------- Flowers-102

def make_flowers102(root: Path, n_classes: int = 3, per_split: int = 2) -> Path:
    """``root/flowers-102`` as torchvision's ``Flowers102`` reads it::

        flowers-102/jpg/image_00001.jpg ...     (102flowers.tgz)
        flowers-102/imagelabels.mat              "labels": (1, N) class ids 1..102
        flowers-102/setid.mat                    "trnid", "valid", "tstid": (1, n) image ids (1-based)

    ``per_split`` images of each of ``n_classes`` classes in each split; one image is CMYK.
    (torchvision verifies the two .mat files' MD5s, which a fixture cannot match; camlib reads the
    files itself when they are present: :mod:`camlib.data.transfer`.)"""
    import scipy.io

    base = root / "flowers-102"
    labels, split_ids = [], {"trnid": [], "valid": [], "tstid": []}
    image_id = 0
    for c in range(n_classes):
        for split in ("trnid", "valid", "tstid"):
            for _ in range(per_split):
                image_id += 1
                write_jpeg(base / "jpg" / f"image_{image_id:05d}.jpg", 44, 36 + c, seed=500 + image_id,
                           mode="CMYK" if image_id == 3 else "RGB")
                labels.append(c + 1)
                split_ids[split].append(image_id)
    scipy.io.savemat(base / "imagelabels.mat", {"labels": np.array([labels], np.uint8)})
    scipy.io.savemat(base / "setid.mat", {k: np.array([v], np.uint16) for k, v in split_ids.items()})
    return base


# ----------------------------------------------------------------------------- stand-in weights

#: Every torchvision weight a lesson or a recipe asks for (``weights="DEFAULT"`` resolves to these).
WEIGHTS = ("ResNet50_Weights.IMAGENET1K_V1", "ResNet50_Weights.IMAGENET1K_V2", "GoogLeNet_Weights.IMAGENET1K_V1",
           "VGG16_Weights.IMAGENET1K_V1", "AlexNet_Weights.IMAGENET1K_V1")


def make_standin_weights(torch_home: Path, names=WEIGHTS, big: int = 1 << 22) -> list[Path]:
    """Randomly initialised state_dicts saved where torchvision's loader looks for its cached
    downloads: ``$TORCH_HOME/hub/checkpoints/<the file name in the weights enum's URL>``.

    ``torch.hub.load_state_dict_from_url`` loads a cached file without checking anything (the hash
    prefix in the name is checked only when it downloads), so ``weights="DEFAULT"`` then loads
    these offline. Tensors above ``big`` elements (VGG-16's and AlexNet's fully connected layers,
    which the CAM networks drop) are one random row broadcast to the full shape (a stride-0 view:
    torch.save stores the row only), which keeps the files small."""
    import os

    import torch
    from torchvision.models import get_model_builder, get_weight

    out = []
    folder = Path(torch_home) / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        w = get_weight(name)
        path = folder / os.path.basename(w.url)
        out.append(path)
        if path.exists():
            continue
        arch = {"ResNet50": "resnet50", "GoogLeNet": "googlenet", "VGG16": "vgg16", "AlexNet": "alexnet"}[
            name.split("_Weights")[0]]
        kwargs = {"aux_logits": True, "init_weights": False} if arch == "googlenet" else {}
        torch.manual_seed(0)
        model = get_model_builder(arch)(weights=None, num_classes=len(w.meta["categories"]), **kwargs)
        state = {}
        for k, v in model.state_dict().items():
            if v.numel() > big and v.ndim == 2:
                v = v[:1].clone().expand_as(v)
            state[k] = v
        torch.save(state, path)
    return out


# ----------------------------------------------------------------------------- everything

def make_gpu_path_fixtures(data: Path, torch_home: Path) -> dict[str, Path]:
    """Every dataset and weight file the gpu profile's real-data cells and the recipes read, tiny:
    CUB-200-2011 (a greyscale and a CMYK image), ILSVRC 2012 val (Kaggle layout; CMYK and greyscale)
    and train, Oxford-IIIT Pet, Caltech-101 (greyscale, CMYK, one truncated JPEG), Flowers-102 (CMYK),
    under ``data`` (what ``$CAMLIB_DATA`` points at), and the stand-in weights under ``torch_home``."""
    data, torch_home = Path(data), Path(torch_home)
    make_cub(data, odd_modes=True)
    ilsvrc = data / "ILSVRC2012"
    make_ilsvrc(ilsvrc, "kaggle", True, odd_modes=True)
    make_ilsvrc_train(ilsvrc)
    make_pets(data)
    make_caltech101(data)
    make_flowers102(data)
    make_standin_weights(torch_home)
    return {"data": data, "torch_home": torch_home}


if __name__ == "__main__":  # python tests/fixtures_real.py DATA TORCH_HOME
    import sys

    print(make_gpu_path_fixtures(Path(sys.argv[1]), Path(sys.argv[2])))
