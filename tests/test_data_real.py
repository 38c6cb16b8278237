"""Real-dataset loaders, download and extraction, on fixtures built in each published format.

Nothing is downloaded: archives are served by a loopback HTTP server (tests/fixtures_real.py).
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixtures_real as fx  # noqa: E402

from camlib.data import common  # noqa: E402
from camlib.data.archives import UnsafeArchiveError, extract_archive  # noqa: E402
from camlib.data.common import (DatasetNotFoundError, collate_samples,  # noqa: E402
                                eval_transform, make_sample, train_transform)
from camlib.data.cub import CUB200  # noqa: E402
from camlib.data.download import ChecksumError, DownloadError, download_url  # noqa: E402
from camlib.data.ilsvrc import ILSVRCVal, parse_loc_csv  # noqa: E402
from camlib.data.pets import OxfordPets, mask_to_box, trimap_to_mask  # noqa: E402
from camlib.data.photos import RealPhotos, load_photo, read_annotations  # noqa: E402

torch.set_num_threads(2)

#: converts to float without resizing or normalizing, so boxes stay in the image's own pixels
RAW = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


@pytest.fixture
def server():
    with fx.LoopbackServer() as s:
        yield s


# ============================================================================ download

PAYLOAD = bytes(np.random.default_rng(1).integers(0, 256, 300_000, dtype=np.uint8))


def test_download_verifies_md5_and_sha256(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    out = download_url(server.url("/a.bin"), tmp_path / "a.bin", md5=fx.md5_of(PAYLOAD),
                       sha256=fx.sha256_of(PAYLOAD), progress=False)
    assert out.read_bytes() == PAYLOAD
    assert not (tmp_path / "a.bin.part").exists()
    # present and valid: no new request
    n = len(server.log)
    download_url(server.url("/a.bin"), tmp_path / "a.bin", md5=fx.md5_of(PAYLOAD), progress=False)
    assert len(server.log) == n


def test_download_checksum_mismatch_deletes_file(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    wrong = fx.md5_of(PAYLOAD + b"x")
    with pytest.raises(ChecksumError, match=wrong):
        download_url(server.url("/a.bin"), tmp_path / "a.bin", md5=wrong, progress=False)
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "a.bin.part").exists()
    with pytest.raises(ChecksumError, match="sha256"):
        download_url(server.url("/a.bin"), tmp_path / "a.bin", sha256=fx.sha256_of(b"other"), progress=False)


def test_download_resumes_a_partial_file(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:123_456])
    download_url(server.url("/a.bin"), tmp_path / "a.bin", md5=fx.md5_of(PAYLOAD), progress=False)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    path, rng, sent = server.log[-1]
    assert rng == "bytes=123456-" and sent == len(PAYLOAD) - 123_456


def test_download_broken_transfer_keeps_part_then_resumes(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.truncate_next = 100_000
    with pytest.raises(DownloadError, match="resume"):
        download_url(server.url("/a.bin"), tmp_path / "a.bin", md5=fx.md5_of(PAYLOAD), progress=False)
    part = tmp_path / "a.bin.part"
    assert part.exists() and part.stat().st_size == 100_000 and not (tmp_path / "a.bin").exists()
    download_url(server.url("/a.bin"), tmp_path / "a.bin", md5=fx.md5_of(PAYLOAD), progress=False)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert server.log[-1][1] == "bytes=100000-" and server.log[-1][2] == len(PAYLOAD) - 100_000


def test_download_restarts_when_server_ignores_range(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.ignore_range = True
    (tmp_path / "a.bin.part").write_bytes(b"garbage that must not be kept")
    download_url(server.url("/a.bin"), tmp_path / "a.bin", md5=fx.md5_of(PAYLOAD), progress=False)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_download_complete_part_answered_416(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD)
    download_url(server.url("/a.bin"), tmp_path / "a.bin", md5=fx.md5_of(PAYLOAD), progress=False)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD and server.log[-1][2] == 0
    # a part longer than the file cannot be resumed: 416 with the total, then a fresh transfer
    (tmp_path / "b.bin.part").write_bytes(PAYLOAD + b"trailing junk")
    download_url(server.url("/a.bin"), tmp_path / "b.bin", progress=False)
    assert (tmp_path / "b.bin").read_bytes() == PAYLOAD
    assert server.log[-1] == ("/a.bin", None, len(PAYLOAD))


def test_download_replaces_corrupt_existing_file(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    (tmp_path / "a.bin").write_bytes(b"old and wrong")
    download_url(server.url("/a.bin"), tmp_path / "a.bin", md5=fx.md5_of(PAYLOAD), progress=False)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_download_bad_input_and_http_errors(server, tmp_path):
    with pytest.raises(ValueError, match="32 hexadecimal"):
        download_url(server.url("/a.bin"), tmp_path / "a.bin", md5="abc")
    with pytest.raises(ValueError, match="http"):
        download_url("ftp://example.org/x", tmp_path / "x")
    with pytest.raises(DownloadError, match="404"):
        download_url(server.url("/missing.bin"), tmp_path / "m.bin", progress=False)


# ============================================================================ extraction

def _tar_with(tmp_path: Path, members: list[tarfile.TarInfo], name="evil.tar") -> Path:
    path = tmp_path / name
    with tarfile.open(path, "w") as tf:
        for m in members:
            tf.addfile(m, io.BytesIO(b"x" * m.size) if m.isfile() else None)
    return path


def _file(name, size=1):
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("members, why", [
    ([_file("ok.txt"), _file("../evil.txt")], "'..'"),
    ([_file("/tmp/evil_abs.txt")], "absolute"),
    ([_file("a/../../evil.txt")], "'..'"),
    ([_link("link", "../../etc/passwd")], "outside"),
    ([_link("link", "/etc/passwd")], "absolute"),
    ([_file("d/f.txt"), _link("d/hard", "../../outside.txt", tarfile.LNKTYPE)], "outside"),
])
def test_extract_refuses_path_tricks_in_tar(tmp_path, members, why):
    archive = _tar_with(tmp_path, members)
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=why):
        extract_archive(archive, target)
    assert not any(target.rglob("*")), "nothing may be written when an archive is refused"
    assert not (tmp_path / "evil.txt").exists()


def test_extract_tar_with_inside_link_and_tgz(tmp_path):
    archive = _tar_with(tmp_path, [_file("d/f.txt", 3), _link("d/alias", "f.txt")], "good.tar")
    out = extract_archive(archive, tmp_path / "out")
    assert (out / "d" / "f.txt").read_bytes() == b"xxx"
    assert (out / "d" / "alias").read_bytes() == b"xxx"
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "sub" / "a.txt").write_text("hello")
    (tmp_path / "g.tgz").write_bytes(fx.tgz_of_dir(tmp_path / "src", "top"))
    extract_archive(tmp_path / "g.tgz", tmp_path / "out2")
    assert (tmp_path / "out2" / "top" / "sub" / "a.txt").read_text() == "hello"


def test_extract_zip_checks(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("dir/a.txt", "A")
    extract_archive(good, tmp_path / "out")
    assert (tmp_path / "out" / "dir" / "a.txt").read_text() == "A"
    for name, why in (("../evil.txt", "'..'"), ("/abs.txt", "absolute"), ("C:/win.txt", "absolute")):
        bad = tmp_path / "bad.zip"
        with zipfile.ZipFile(bad, "w") as zf:
            zf.writestr(zipfile.ZipInfo(name), "E")
        with pytest.raises(UnsafeArchiveError, match=why):
            extract_archive(bad, tmp_path / "out_bad")
    link = zipfile.ZipInfo("lnk")
    link.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        extract_archive(tmp_path / "link.zip", tmp_path / "out_link")
    (tmp_path / "plain.txt").write_text("not an archive")
    with pytest.raises(ValueError, match="neither a tar nor a zip"):
        extract_archive(tmp_path / "plain.txt", tmp_path / "o")


# ============================================================================ common

def test_data_dir_follows_env(monkeypatch, tmp_path):
    from camlib.config import data_dir
    monkeypatch.setenv("CAMLIB_DATA", str(tmp_path))
    assert data_dir() == tmp_path
    monkeypatch.delenv("CAMLIB_DATA")
    assert data_dir() == Path(common.__file__).resolve().parents[2] / "data"


def test_make_sample_checks_and_scales_boxes():
    from PIL import Image
    img = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    s = make_sample(img, 3, [[4, 2, 24, 12]], size=16)
    assert s["image"].shape == (3, 16, 16) and s["image"].dtype == torch.float32 and s["label"] == 3
    torch.testing.assert_close(s["boxes"], torch.tensor([[1.6, 1.6, 9.6, 9.6]]))
    with pytest.raises(ValueError, match="inside the 40x20"):
        make_sample(img, 0, [[0, 0, 41, 10]])
    with pytest.raises(ValueError, match="x1 < x2"):
        make_sample(img, 0, [[5, 0, 5, 10]])
    with pytest.raises(ValueError, match="float image"):
        make_sample(img, 0, [[0, 0, 4, 4]], transform=v2.ToImage())
    with pytest.raises(ValueError, match="size must be"):
        eval_transform(0)


def test_flip_and_crop_keep_boxes_and_masks_together():
    """A box drawn exactly around the mask stays the mask's pixel-edge box under every transform."""
    from PIL import Image
    img = Image.fromarray(np.zeros((30, 40, 3), np.uint8))
    mask = np.zeros((30, 40), bool)
    mask[5:17, 8:28] = True                     # rows 5..16, columns 8..27 -> box (8, 5, 28, 17)
    flip = v2.Compose([v2.ToImage(), v2.RandomHorizontalFlip(p=1.0), v2.ToDtype(torch.float32, scale=True)])
    s = make_sample(img, 0, [[8, 5, 28, 17]], mask, transform=flip)
    assert s["boxes"].tolist() == [[40 - 28, 5, 40 - 8, 17]]
    torch.testing.assert_close(s["boxes"], torch.as_tensor(mask_to_box(s["mask"].numpy())))
    torch.manual_seed(0)
    tf = train_transform(32, scale=(0.5, 1.0))
    for _ in range(10):
        s = make_sample(img, 0, [[8, 5, 28, 17]], mask, transform=tf)
        assert s["image"].shape == (3, 32, 32) and s["mask"].shape == (32, 32)
        b = s["boxes"]
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= 32).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= 32).all()
        if len(b) and s["mask"].any():  # bilinear box vs nearest mask: within one pixel
            assert (b - torch.as_tensor(mask_to_box(s["mask"].numpy()))).abs().max() <= 1.5


def test_collate_samples():
    a = {"image": torch.zeros(3, 8, 8), "label": 1, "boxes": torch.zeros(2, 4),
         "mask": torch.zeros(8, 8, dtype=torch.bool)}
    b = {"image": torch.ones(3, 8, 8), "label": 4, "boxes": torch.zeros(0, 4),
         "mask": torch.ones(8, 8, dtype=torch.bool)}
    out = collate_samples([a, b])
    assert out["image"].shape == (2, 3, 8, 8) and out["label"].tolist() == [1, 4]
    assert [len(x) for x in out["boxes"]] == [2, 0] and out["mask"].shape == (2, 8, 8)
    assert "mask" not in collate_samples([a, {k: v for k, v in b.items() if k != "mask"}])
    with pytest.raises(ValueError, match="one shape"):
        collate_samples([a, {**b, "image": torch.zeros(3, 9, 8)}])
    with pytest.raises(ValueError, match="empty"):
        collate_samples([])


# ============================================================================ CUB-200-2011

def test_cub_reads_published_layout(tmp_path):
    truth = fx.make_cub(tmp_path)
    for split, flag in (("train", 1), ("test", 0)):
        ds = CUB200(tmp_path, split=split, transform=RAW)
        want = [t for t in truth if t["is_train"] == flag]
        assert len(ds) == len(want) and ds.num_classes == 3
        assert ds.class_names == fx.CUB_CLASSES
        for i, t in enumerate(want):
            s = ds[i]
            w, h = t["size"]
            assert s["image"].shape == (3, h, w) and s["label"] == t["label"]
            x, y, bw, bh = t["xywh"]
            assert s["boxes"].tolist() == [[x, y, x + bw, y + bh]]
            assert "mask" not in s
    # the default transform resizes to size x size and scales the box
    ds = CUB200(tmp_path, split="train", size=32)
    t = [t for t in truth if t["is_train"]][0]
    w, h = t["size"]
    x1, y1, x2, y2 = t["box"]
    torch.testing.assert_close(ds[0]["boxes"], torch.tensor([[x1 * 32 / w, y1 * 32 / h, x2 * 32 / w, y2 * 32 / h]]))
    assert ds[0]["image"].shape == (3, 32, 32)
    # root may also be the CUB_200_2011 folder itself
    assert len(CUB200(tmp_path / "CUB_200_2011", split="test")) == 3


def test_cub_masks(tmp_path):
    truth = fx.make_cub(tmp_path)
    ds = CUB200(tmp_path, split="train", transform=RAW, with_masks=True)
    t = [t for t in truth if t["is_train"]][1]
    s = ds[1]
    assert s["mask"].dtype == torch.bool
    assert torch.equal(s["mask"], torch.from_numpy(t["mask"]))  # 255 and 153 in, 102 out
    assert s["mask"].sum() == 6 * 5
    s32 = CUB200(tmp_path, split="train", with_masks=True, size=32)[1]
    assert s32["mask"].shape == (32, 32)


def test_cub_missing_and_malformed(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="CUB_200_2011") as e:
        CUB200(tmp_path / "nothing")
    assert "download=True" in str(e.value) and "images.txt" in str(e.value)
    fx.make_cub(tmp_path, with_segmentations=False)
    with pytest.raises(DatasetNotFoundError, match="segmentations"):
        CUB200(tmp_path, with_masks=True)
    with pytest.raises(ValueError, match="split"):
        CUB200(tmp_path, split="val")
    bb = tmp_path / "CUB_200_2011" / "bounding_boxes.txt"
    bb.write_text(bb.read_text().replace("\n", " 7\n", 1))
    with pytest.raises(ValueError, match="bounding_boxes.txt line 1: expected 5 fields"):
        CUB200(tmp_path)


def test_cub_download_from_loopback(server, tmp_path):
    src = tmp_path / "src"
    fx.make_cub(src)
    seg = src / "CUB_200_2011" / "segmentations"
    seg.rename(src / "segmentations")  # the masks come as a separate archive
    tgz = fx.tgz_of_dir(src / "CUB_200_2011", "CUB_200_2011", extra={"attributes.txt": b"1 has_bill_shape::dagger\n"})
    seg_tgz = fx.tgz_of_dir(src / "segmentations", "segmentations")
    server.files["/CUB_200_2011.tgz"] = tgz
    server.files["/segmentations.tgz"] = seg_tgz
    root = tmp_path / "data"
    with pytest.raises(ChecksumError):
        CUB200(root, download=True, url=server.url("/CUB_200_2011.tgz"), md5=fx.md5_of(b"not it"), progress=False)
    assert not (root / "CUB_200_2011").exists()
    ds = CUB200(root, split="test", download=True, with_masks=True, transform=RAW, progress=False,
                url=server.url("/CUB_200_2011.tgz"), md5=fx.md5_of(tgz),
                seg_url=server.url("/segmentations.tgz"), seg_md5=fx.md5_of(seg_tgz))
    assert len(ds) == 3 and ds[0]["mask"].any()
    assert (root / "CUB_200_2011" / "segmentations").is_dir()
    # second construction: nothing fetched again
    n = len(server.log)
    CUB200(root, download=True, with_masks=True, url=server.url("/CUB_200_2011.tgz"), md5=fx.md5_of(tgz))
    assert len(server.log) == n


# ============================================================================ ILSVRC 2012 val

def _check_ilsvrc(ds):
    wnids = sorted(w for w, _ in fx.SYNSETS)
    assert ds.wnids == wnids and ds.class_names[2] == "sea snake"
    assert len(ds) == 3
    for i, (image_id, (w, h, objs)) in enumerate(sorted(fx.ILSVRC_TRUTH.items())):
        s = ds[i]
        assert s["image"].shape == (3, h, w)
        assert s["label"] == wnids.index(objs[0][0])
        want = [[a, b, min(c + 1, w), min(d + 1, h)] for _, a, b, c, d in objs]
        assert s["boxes"].tolist() == want


@pytest.mark.parametrize("layout, use_csv", [("kaggle", True), ("kaggle", False), ("official", False)])
def test_ilsvrc_layouts(tmp_path, layout, use_csv):
    fx.make_ilsvrc(tmp_path, layout, use_csv)
    ds = ILSVRCVal(tmp_path, transform=RAW)
    _check_ilsvrc(ds)
    assert ds.annotation_source.suffix == (".csv" if use_csv else "")
    # val_00000002 spans the whole 40x30 image: inclusive 0..39 -> pixel-edge 0..40
    assert ds[1]["boxes"].tolist() == [[0, 0, 40, 30]]


def test_ilsvrc_missing_parts(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="ILSVRC2012_img_val") as e:
        ILSVRCVal(tmp_path / "ILSVRC2012")
    assert "image-net.org" in str(e.value) and "LOC_synset_mapping.txt" in str(e.value)
    fx.make_ilsvrc(tmp_path, "kaggle", True, synsets=False)
    with pytest.raises(DatasetNotFoundError, match="not 1,000"):
        ILSVRCVal(tmp_path)
    fx.make_ilsvrc(tmp_path, "kaggle", True)
    os.remove(tmp_path / "ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000003.JPEG")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ILSVRCVal(tmp_path)
    assert len(ds) == 2 and ds.missing == ["ILSVRC2012_val_00000003"]
    assert any("1 annotated images" in str(w.message) for w in caught)


def test_ilsvrc_malformed_csv(tmp_path):
    p = tmp_path / "LOC_val_solution.csv"
    p.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01751748 1 2 3\n")
    with pytest.raises(ValueError, match="line 2: PredictionString must be groups"):
        parse_loc_csv(p)
    p.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01751748 5 2 3 9\n")
    with pytest.raises(ValueError, match="xmin <= xmax"):
        parse_loc_csv(p)
    p.write_text("Id,Boxes\n")
    with pytest.raises(ValueError, match="header"):
        parse_loc_csv(p)


# ============================================================================ Oxford-IIIT Pet

def test_mask_to_box_is_pixel_edge():
    m = np.zeros((10, 12), bool)
    m[2:5, 3:8] = True  # rows 2..4, columns 3..7
    assert mask_to_box(m).tolist() == [[3, 2, 8, 5]]
    assert mask_to_box(np.zeros((4, 4), bool)).shape == (0, 4)
    with pytest.raises(ValueError, match="1, 2 or 3"):
        trimap_to_mask(np.array([[0, 1]]))


def test_pets_through_torchvision(tmp_path):
    trimaps = fx.make_pets(tmp_path)
    ds = OxfordPets(tmp_path, split="test", transform=RAW)
    assert len(ds) == 2 and ds.class_names == ["Abyssinian", "American Bulldog"]
    ids = [r[0] for r in fx.PET_IMAGES if r[4] == "test"]
    for i, image_id in enumerate(ids):
        tri = trimaps[image_id]
        s = ds[i]
        assert s["label"] == [r[1] for r in fx.PET_IMAGES if r[0] == image_id][0] - 1
        assert torch.equal(s["mask"], torch.from_numpy((tri == 1) | (tri == 3)))
        rows, cols = np.nonzero((tri == 1) | (tri == 3))
        assert s["boxes"].tolist() == [[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]]
    core = OxfordPets(tmp_path, split="test", transform=RAW, border_is_pet=False)[0]
    tri = trimaps[ids[0]]
    rows, cols = np.nonzero(tri == 1)
    assert torch.equal(core["mask"], torch.from_numpy(tri == 1))
    assert core["boxes"].tolist() == [[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]]
    assert len(OxfordPets(tmp_path, split="train")) == 2
    assert OxfordPets(tmp_path, size=32)[0]["mask"].shape == (32, 32)


def test_pets_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="oxford-iiit-pet") as e:
        OxfordPets(tmp_path)
    assert "download=True" in str(e.value)
    with pytest.raises(ValueError, match="split"):
        OxfordPets(tmp_path, split="val")


# ============================================================================ package photos

def test_photo_annotations_are_inside_their_images_and_name_imagenet_classes():
    from torchvision.models import ResNet18_Weights
    categories = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    records = read_annotations()
    assert len(records) >= 5
    for r in records:
        img = load_photo(r["source"])
        h, w = img.shape[:2]
        assert (w, h) == (r["width"], r["height"]), r["name"]
        assert img.dtype == np.uint8 and img.shape[2] == 3
        boxes = np.asarray(r["boxes"], float)
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all(), r["name"]
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all(), r["name"]
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all(), r["name"]
        assert categories[r["label"]] == r["class_name"], r["name"]
        for alt in r.get("also_ok", []):
            assert categories[alt["label"]] == alt["class_name"] and alt["label"] != r["label"]
        assert r["note"].strip()


def test_real_photos_dataset():
    ds = RealPhotos(size=64)
    records = read_annotations()
    assert len(ds) == len(records)
    batch = collate_samples([ds[i] for i in range(len(ds))])
    assert batch["image"].shape == (len(ds), 3, 64, 64)
    assert batch["label"].tolist() == [r["label"] for r in records]
    for r, b in zip(records, batch["boxes"]):
        scale = torch.tensor([64 / r["width"], 64 / r["height"]] * 2)
        torch.testing.assert_close(b, torch.tensor(r["boxes"], dtype=torch.float32) * scale)
    exact = RealPhotos(exact_only=True)
    assert 0 < len(exact) < len(ds)
    assert all(r["class_fit"] == "exact" for r in exact.records)


def test_photo_annotations_validation(tmp_path):
    from camlib.data.photos import annotations_path
    doc = json.loads(annotations_path().read_text())
    doc["images"][0]["boxes"] = [[0, 0, doc["images"][0]["width"] + 1, 10]]
    bad = tmp_path / "a.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="inside"):
        read_annotations(bad)
    doc["images"][0]["boxes"] = [[0, 0, 10, 10]]
    doc["images"][0]["label"] = 1000
    bad.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="0..999"):
        read_annotations(bad)
