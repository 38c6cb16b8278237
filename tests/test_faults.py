"""Fault injection: nothing lost, nothing stale. Downloads over a loopback server, archive
extraction, unreadable images, the decoded-image cache and training checkpoints, each broken on
purpose; camlib must notice, say which file, and repair or refuse."""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixtures_real as fx  # noqa: E402

from camlib import models, train  # noqa: E402
from camlib.data import make_synthetic  # noqa: E402
from camlib.data import download as dl  # noqa: E402
from camlib.data.archives import (CorruptArchiveError, UnsafeArchiveError, extract_archive,  # noqa: E402
                                  extraction_marker)
from camlib.data.cache import build_cache, cache_path, cached, check_cache, open_cache  # noqa: E402
from camlib.data.common import BadImageError, DatasetNotFoundError  # noqa: E402
from camlib.data.cub import CUB200, CUB_URL, SEGMENTATIONS_URL  # noqa: E402
from camlib.data.download import DownloadError, download_url  # noqa: E402

torch.set_num_threads(1)
PAYLOAD = bytes(np.random.default_rng(7).integers(0, 256, 200_000, dtype=np.uint8))
OTHER = bytes(np.random.default_rng(8).integers(0, 256, 200_000, dtype=np.uint8))


@pytest.fixture
def server():
    with fx.LoopbackServer() as s:
        yield s


# ============================================================================ downloads

def test_no_checksum_no_length_truncated_transfer_is_refused(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.no_length = True
    server.truncate_next = 50_000            # the connection closes early: looks like a clean end
    logged = len(server.log)
    with pytest.raises(DownloadError, match="no length"):
        download_url(server.url("/a.bin"), tmp_path / "a.bin", progress=False)
    assert not (tmp_path / "a.bin").exists()
    # the client may give up before the server's thread has finished that response: wait for it, or
    # the server could clear the next truncation after we set it (a race seen under load)
    deadline = time.monotonic() + 10
    while len(server.log) == logged and time.monotonic() < deadline:
        time.sleep(0.01)
    # with a size it is detected as short (and resumable); with the right size it completes
    server.truncate_next = 50_000
    with pytest.raises(DownloadError, match="stopped at 50000 of 200000"):
        download_url(server.url("/a.bin"), tmp_path / "b.bin", size=len(PAYLOAD), progress=False)
    assert not (tmp_path / "b.bin").exists()
    download_url(server.url("/a.bin"), tmp_path / "b.bin", size=len(PAYLOAD), progress=False)
    assert (tmp_path / "b.bin").read_bytes() == PAYLOAD


def test_part_of_a_different_file_is_not_taken_as_finished(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    (tmp_path / "a.bin.part").write_bytes(OTHER)          # same length, other bytes, no record
    download_url(server.url("/a.bin"), tmp_path / "a.bin", progress=False)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert server.log[-1] == ("/a.bin", None, len(PAYLOAD))   # a fresh transfer, no Range


def test_part_resumed_only_when_server_confirms_same_file(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.headers["/a.bin"] = {"ETag": '"v1"', "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"}
    server.truncate_next = 60_000
    with pytest.raises(DownloadError):
        download_url(server.url("/a.bin"), tmp_path / "a.bin", progress=False)
    assert json.loads((tmp_path / "a.bin.part.json").read_text())["etag"] == '"v1"'
    # same file: resumed from byte 60000
    download_url(server.url("/a.bin"), tmp_path / "a.bin", progress=False)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD and server.log[-1][1] == "bytes=60000-"
    assert not (tmp_path / "a.bin.part.json").exists()
    # the server's file changes between the two attempts (new ETag): the part is discarded
    server.truncate_next = 60_000
    with pytest.raises(DownloadError):
        download_url(server.url("/a.bin"), tmp_path / "c.bin", progress=False)
    server.files["/a.bin"] = OTHER
    server.headers["/a.bin"] = {"ETag": '"v2"', "Last-Modified": "Tue, 02 Jan 2024 00:00:00 GMT"}
    download_url(server.url("/a.bin"), tmp_path / "c.bin", progress=False)
    assert (tmp_path / "c.bin").read_bytes() == OTHER
    assert server.log[-1] == ("/a.bin", None, len(OTHER))


def test_every_known_dataset_has_size_and_checksum():
    assert set(dl.KNOWN_FILES) == {CUB_URL, SEGMENTATIONS_URL}
    for url, (size, md5) in dl.KNOWN_FILES.items():
        assert isinstance(size, int) and size > 1_000_000 and len(md5) == 32, url
    from camlib.data.cub import CUB_MD5, SEGMENTATIONS_MD5
    assert dl.KNOWN_FILES[CUB_URL][1] == CUB_MD5 and dl.KNOWN_FILES[SEGMENTATIONS_URL][1] == SEGMENTATIONS_MD5


def test_known_file_is_verified_even_without_arguments(server, tmp_path, monkeypatch):
    server.files["/known.tgz"] = PAYLOAD
    url = server.url("/known.tgz")
    monkeypatch.setitem(dl.KNOWN_FILES, url, (len(PAYLOAD) + 1, fx.md5_of(PAYLOAD + b"!")))
    with pytest.raises(dl.ChecksumError):
        download_url(url, tmp_path / "k.tgz", progress=False)
    monkeypatch.setitem(dl.KNOWN_FILES, url, (len(PAYLOAD), fx.md5_of(PAYLOAD)))
    assert download_url(url, tmp_path / "k.tgz", progress=False).read_bytes() == PAYLOAD


# ============================================================================ extraction

def _tar(path: Path, members) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, kind, arg in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(arg)
                tf.addfile(info, io.BytesIO(arg))
            else:
                info.type, info.linkname = (tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE), arg
                tf.addfile(info)
    return path


def test_symlink_chain_refused_without_tarfile_filter(tmp_path, monkeypatch):
    # a -> .  ;  b -> a/..  (= the target's parent) ;  b/evil : a file written outside the target
    archive = _tar(tmp_path / "chain.tar", [("a", "sym", "."), ("b", "sym", "a/.."), ("b/evil", "file", b"pwned")])
    monkeypatch.delattr(tarfile, "data_filter")         # a Python without the standard library's filter
    target = tmp_path / "deep" / "out"
    with pytest.raises(UnsafeArchiveError, match="b"):
        extract_archive(archive, target)
    assert not (tmp_path / "deep" / "evil").exists()
    assert not any(target.rglob("*")) and not any(p.is_symlink() for p in target.iterdir())
    # a chain that stays inside is fine
    ok = _tar(tmp_path / "ok.tar", [("d/f.txt", "file", b"x"), ("a", "sym", "d"), ("b", "sym", "a/f.txt")])
    extract_archive(ok, tmp_path / "ok")
    assert (tmp_path / "ok" / "b").read_bytes() == b"x"


def test_member_count_and_size_are_bounded(tmp_path):
    archive = _tar(tmp_path / "many.tar", [(f"f{i}.txt", "file", b"0123456789") for i in range(20)])
    with pytest.raises(UnsafeArchiveError, match="more than 10 members"):
        extract_archive(archive, tmp_path / "o1", max_members=10)
    with pytest.raises(UnsafeArchiveError, match="more than 100 bytes"):
        extract_archive(archive, tmp_path / "o2", max_bytes=100)
    assert not (tmp_path / "o1" / "f0.txt").exists() and not (tmp_path / "o2" / "f0.txt").exists()
    extract_archive(archive, tmp_path / "o3")
    assert len(list((tmp_path / "o3").glob("f*.txt"))) == 20


def test_truncated_tgz_names_the_archive(tmp_path):
    (tmp_path / "src").mkdir()
    for i in range(5):
        (tmp_path / "src" / f"{i}.bin").write_bytes(os.urandom(20_000))
    data = fx.tgz_of_dir(tmp_path / "src", "top")
    (tmp_path / "cut.tgz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptArchiveError, match="cut.tgz"):
        extract_archive(tmp_path / "cut.tgz", tmp_path / "out")
    assert not (tmp_path / "out" / "top").exists()


def test_extraction_goes_through_a_temporary_folder_and_leaves_a_marker(tmp_path, monkeypatch):
    src = tmp_path / "src"
    fx.make_cub(src, with_segmentations=False)
    (tmp_path / "cub.tgz").write_bytes(fx.tgz_of_dir(src / "CUB_200_2011", "CUB_200_2011"))
    target = tmp_path / "data"
    real = tarfile.TarFile.extractall

    def dies(self, path, *a, **k):          # an interrupted extraction: 4 members out, then the crash
        for m in self.getmembers()[:4]:
            self.extract(m, path, **{kk: v for kk, v in k.items() if kk == "filter"})
        raise KeyboardInterrupt

    monkeypatch.setattr(tarfile.TarFile, "extractall", dies)
    with pytest.raises(KeyboardInterrupt):
        extract_archive(tmp_path / "cub.tgz", target)
    assert not (target / "CUB_200_2011").exists()            # nothing half-done where it is looked for
    assert not extraction_marker(tmp_path / "cub.tgz", target).exists()
    monkeypatch.setattr(tarfile.TarFile, "extractall", real)
    extract_archive(tmp_path / "cub.tgz", target)
    assert extraction_marker(tmp_path / "cub.tgz", target).is_file()
    assert not list(target.glob(".*.partial"))
    assert len(CUB200(target, split="train")) == 6


def test_interrupted_cub_extraction_is_detected_and_repaired(server, tmp_path):
    src = tmp_path / "src"
    fx.make_cub(src, with_segmentations=False)
    tgz = fx.tgz_of_dir(src / "CUB_200_2011", "CUB_200_2011")
    server.files["/CUB_200_2011.tgz"] = tgz
    root = tmp_path / "data"
    # what an old, interrupted extraction left: every .txt, only 2 of the 9 images
    (root / "CUB_200_2011").mkdir(parents=True)
    for f in (src / "CUB_200_2011").glob("*.txt"):
        (root / "CUB_200_2011" / f.name).write_bytes(f.read_bytes())
    imgs = sorted((src / "CUB_200_2011" / "images").rglob("*.jpg"))
    for p in imgs[:2]:
        dst = root / "CUB_200_2011" / "images" / p.relative_to(src / "CUB_200_2011" / "images")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(p.read_bytes())
    with pytest.raises(DatasetNotFoundError, match=r"lists 9 images but 7 are missing"):
        CUB200(root, split="train")
    ds = CUB200(root, split="train", download=True, url=server.url("/CUB_200_2011.tgz"), md5=fx.md5_of(tgz),
                progress=False)
    assert len(ds) == 6 and all(ds[i]["image"].shape == (3, 224, 224) for i in range(6))
    assert len(list((root / "CUB_200_2011" / "images").rglob("*.jpg"))) == 9


# ============================================================================ unreadable images

def _cut_jpeg(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def test_truncated_jpeg_error_names_the_file_and_skip_policy(tmp_path):
    truth = fx.make_cub(tmp_path, with_segmentations=False)
    train_truth = [t for t in truth if t["is_train"]]
    bad = tmp_path / "CUB_200_2011" / "images" / train_truth[2]["path"]
    _cut_jpeg(bad)
    ds = CUB200(tmp_path, split="train", size=16)
    with pytest.raises(BadImageError, match=bad.name):
        ds[2]
    with pytest.raises(ValueError, match="on_bad_image"):
        CUB200(tmp_path, split="train", on_bad_image="ignore")
    skip = CUB200(tmp_path, split="train", size=16, on_bad_image="skip")
    with pytest.warns(UserWarning, match=bad.name):
        s = skip[2]
    assert s["label"] == train_truth[3]["label"] and list(skip.bad_images) == [2]

    # a cache build: "raise" names the file; "skip" leaves it out, counts it, reports it at the end
    with pytest.raises(BadImageError, match=bad.name):
        build_cache(ds, 16, root=tmp_path / "c1", workers=0, progress=False)
    with pytest.warns(UserWarning, match=r"1 of 6 images could not be read"):
        c = cached(ds, 16, root=tmp_path / "c2", workers=0, progress=False, on_bad_image="skip")
    assert len(c) == 5 and c.sources.tolist() == [0, 1, 3, 4, 5]
    assert [s["index"] for s in c.meta["skipped"]] == [2] and bad.name in c.meta["skipped"][0]["reason"]
    assert c.labels.tolist() == [t["label"] for i, t in enumerate(train_truth) if i != 2]
    assert check_cache(c.path)["ok"]


@pytest.mark.parametrize("dataset", ["ilsvrc", "pets"])
def test_every_real_dataset_names_a_truncated_image_and_can_skip_it(tmp_path, dataset):
    from camlib.data.ilsvrc import ILSVRCVal
    from camlib.data.pets import OxfordPets

    if dataset == "ilsvrc":
        fx.make_ilsvrc(tmp_path)
        open_ds = lambda **kw: ILSVRCVal(tmp_path, size=16, **kw)  # noqa: E731
    else:
        fx.make_pets(tmp_path)
        open_ds = lambda **kw: OxfordPets(tmp_path, split="test", size=16, **kw)  # noqa: E731
    ds = open_ds()
    bad = Path(ds.samples[0]["path"]) if dataset == "ilsvrc" else Path(ds._tv._images[0])
    _cut_jpeg(bad)
    with pytest.raises(BadImageError, match=bad.name):
        ds[0]
    with pytest.raises(ValueError, match="on_bad_image"):
        open_ds(on_bad_image="ignore")
    skip = open_ds(on_bad_image="skip")
    with pytest.warns(UserWarning, match=bad.name):
        s = skip[0]
    assert s["label"] == skip[1]["label"] and list(skip.bad_images) == [0]


# ============================================================================ the decoded-image cache

def _fresh(tmp_path, **kw):
    ds = make_synthetic(40, seed=3)
    path = build_cache(ds, 32, root=tmp_path, chunk=8, progress=False, **kw)
    return ds, path, open_cache(path).images.clone()


@pytest.mark.parametrize("damage", ["truncate-images", "overwrite-bytes", "delete-npy", "truncate-npy",
                                    "delete-images"])
def test_damaged_cache_is_detected_and_rebuilt(tmp_path, damage):
    ds, path, ref = _fresh(tmp_path)
    f = path / "images.u8"
    if damage == "truncate-images":
        os.truncate(f, f.stat().st_size // 2)
    elif damage == "overwrite-bytes":
        with open(f, "r+b") as fh:
            fh.seek(3 * 32 * 32 * 17 + 100)
            fh.write(b"\x00\xff" * 50)
    elif damage == "delete-npy":
        (path / "labels.npy").unlink()
    elif damage == "truncate-npy":
        os.truncate(path / "boxes.npy", 90)
    else:
        f.unlink()
    assert not check_cache(path)["ok"]
    with pytest.raises(ValueError, match="damaged"):
        open_cache(path)
    with pytest.warns(UserWarning, match="damaged"):
        again = build_cache(ds, 32, root=tmp_path, chunk=8, progress=False)
    assert again == path and check_cache(path)["ok"]
    c = open_cache(path)
    assert torch.equal(c.images, ref) and torch.equal(c.labels, ds.labels) and torch.equal(c.boxes, ds.boxes / 2)


def test_only_damaged_chunks_are_decoded_again(tmp_path):
    from test_cache import Dicts
    ds = Dicts(n=20)
    path = build_cache(ds, 16, root=tmp_path, chunk=4, workers=0, progress=False)
    ref = open_cache(path).images.clone()
    with open(path / "images.u8", "r+b") as fh:          # overwrite inside image 9 (chunk 2: images 8..11)
        fh.seek(3 * 16 * 16 * 9 + 5)
        fh.write(b"\x01\x02\x03")
    ds.calls.clear()
    with pytest.warns(UserWarning, match="1 chunk"):
        build_cache(ds, 16, root=tmp_path, chunk=4, workers=0, progress=False)
    assert sorted(set(ds.calls)) == [8, 9, 10, 11]
    assert torch.equal(open_cache(path).images, ref)


def test_cut_chunk_marker_during_a_build_is_redone(tmp_path):
    from test_cache import Dicts
    broken = Dicts(n=20, fail_at=13)
    with pytest.raises(RuntimeError):
        build_cache(broken, 16, root=tmp_path, chunk=4, workers=0, progress=False)
    path = cache_path(broken, 16, tmp_path)
    marker = path / "chunks" / "000001.npz"
    marker.write_bytes(marker.read_bytes()[:50])          # a chunk marker cut mid-write
    fixed = Dicts(n=20)
    build_cache(fixed, 16, root=tmp_path, chunk=4, workers=0, progress=False)
    assert sorted(set(fixed.calls)) == [4, 5, 6, 7, *range(12, 20)]
    clean = open_cache(build_cache(Dicts(n=20), 16, root=tmp_path / "clean", chunk=4, workers=0, progress=False))
    assert torch.equal(open_cache(path).images, clean.images) and torch.equal(open_cache(path).labels, clean.labels)


def test_changed_source_image_is_not_served_stale(tmp_path):
    fx.make_cub(tmp_path / "data", with_segmentations=False)
    cub = CUB200(tmp_path / "data", split="train")
    c1 = cached(cub, 16, root=tmp_path / "cache", workers=0, progress=False)
    # replace one JPEG (same name) with another picture
    p = tmp_path / "data" / "CUB_200_2011" / "images" / cub.samples[4]["path"]
    w, h = Image.open(p).size
    Image.fromarray(np.full((h, w, 3), 200, np.uint8)).save(p, format="JPEG")
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10_000_000))
    c2 = cached(CUB200(tmp_path / "data", split="train"), 16, root=tmp_path / "cache", workers=0, progress=False)
    assert c2.path != c1.path
    assert (c2.images[4].float() - 200).abs().max() <= 3 and not torch.equal(c1.images[4], c2.images[4])


def test_in_memory_fingerprint_sees_every_image(tmp_path):
    a = make_synthetic(200, seed=1)
    b = make_synthetic(200, seed=1)
    b.images[101, 0, 5, 5] ^= 1                           # one pixel of one image (not on a 1-in-64 stride)
    assert cache_path(a, 32, tmp_path) != cache_path(b, 32, tmp_path)


def test_normalization_follows_the_call_not_the_first_build(tmp_path):
    ds = make_synthetic(16, seed=0)
    first = cached(ds, 32, root=tmp_path, progress=False, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    other = cached(ds, 32, root=tmp_path, progress=False, mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5))
    assert other.path == first.path                        # the pixels are shared (uint8) ...
    x = other.batch([0])["image"]
    u8 = first.images[:1].float() / 255
    want = (u8 - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / 0.5
    assert torch.allclose(x, want, atol=1e-6)               # ... the normalization is this call's
    default = cached(ds, 32, root=tmp_path, progress=False)
    assert torch.allclose(default.mean.flatten(), ds.mean.flatten())


# ============================================================================ checkpoints

@pytest.fixture(scope="module")
def data():
    return make_synthetic(64, seed=0)


KW = dict(steps=8, batch_size=16, lr=2e-3, seed=3, checkpoint_every=4, progress=False, device="cpu")


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_damaged_checkpoint_names_file_and_falls_back(tmp_path, data, damage):
    ck = tmp_path / "run.pt"
    train.fit(models.small_cnn(8), data, checkpoint=ck, **KW)
    prev = train.previous_checkpoint(ck)
    assert train.load_checkpoint(ck)["step"] == 8 and train.load_checkpoint(prev)["step"] == 4
    raw = ck.read_bytes()
    ck.write_bytes({"truncated": raw[: len(raw) // 2], "empty": b"", "garbage": b"not a checkpoint\x00" * 9}[damage])
    with pytest.warns(UserWarning, match=r"run\.pt cannot be read.*previous one"):
        st = train.load_checkpoint(ck)
    assert st["step"] == 4
    with pytest.warns(UserWarning, match="previous"):       # fit resumes from the previous good one
        h = train.fit(models.small_cnn(8), data, checkpoint=ck, resume=True, **KW)
    assert h.rows[-1]["step"] == 8 and train.load_checkpoint(ck)["step"] == 8
    # no previous one: an error naming the file and what to do
    ck.write_bytes(b"")
    prev.unlink()
    with pytest.raises(train.CheckpointError, match=r"run\.pt cannot be read.*delete it"):
        train.load_checkpoint(ck)
    with pytest.raises(train.CheckpointError, match=r"run\.pt"):
        train.fit(models.small_cnn(8), data, checkpoint=ck, resume=True, **KW)


@pytest.mark.parametrize("change, names", [
    (dict(lr=1e-2), "lr"), (dict(seed=4), "seed"), (dict(batch_size=8), "batch_size"),
    (dict(lr=1e-2, seed=9), "lr.*seed"), ("data", "dataset"),
])
def test_resume_with_other_settings_is_refused(tmp_path, data, change, names):
    ck = tmp_path / "run.pt"
    kw = dict(KW)
    train.fit(models.small_cnn(8), data, checkpoint=ck, **kw)
    other, train_set = dict(kw), data
    if change == "data":
        train_set = make_synthetic(64, seed=1)
    else:
        other.update(change)
    with pytest.raises(ValueError, match=rf"other settings: .*{names}.*resume='force'"):
        train.fit(models.small_cnn(8), train_set, checkpoint=ck, resume=True, **other)
    assert train.load_checkpoint(ck)["config"]["lr"] == kw["lr"]      # the checkpoint is untouched
    h = train.fit(models.small_cnn(8), train_set, checkpoint=ck, resume="force", **other)
    assert h.rows[-1]["step"] == 8


def test_checkpoint_folder_fails_at_the_start(tmp_path, data):
    seen = []
    with pytest.raises(ValueError, match="not a folder"):
        train.fit(models.small_cnn(8), data, checkpoint=tmp_path, on_eval=lambda m, r: seen.append(r), **KW)
    assert seen == []
    with pytest.raises(ValueError, match="not a folder"):
        train.save_checkpoint(tmp_path, {"step": 0})
