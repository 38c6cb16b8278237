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

def write_jpeg(path: Path, width: int, height: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="JPEG", quality=90)


# ----------------------------------------------------------------------------- CUB-200-2011

CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]


def make_cub(root: Path, with_segmentations: bool = True) -> list[dict]:
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
            write_jpeg(base / "images" / rel, w, h, seed=image_id)
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


def make_ilsvrc(root: Path, layout: str = "kaggle", use_csv: bool = True, synsets: bool = True) -> Path:
    """Write the validation fixture under ``root`` in the Kaggle or the image-net.org layout."""
    if layout == "kaggle":
        img_dir, xml_dir = root / "ILSVRC/Data/CLS-LOC/val", root / "ILSVRC/Annotations/CLS-LOC/val"
    elif layout == "official":
        img_dir, xml_dir = root / "ILSVRC2012_img_val", root / "ILSVRC2012_bbox_val"
    else:
        raise ValueError(layout)
    for k, (image_id, (w, h, objs)) in enumerate(ILSVRC_TRUTH.items()):
        write_jpeg(img_dir / f"{image_id}.JPEG", w, h, seed=100 + k)
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
