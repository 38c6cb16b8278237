"""The gpu profile's real-data paths (issue 9): tiny scale, fixtures, the defects they exposed."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fixtures_real as fx
from camlib import config

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- CAMLIB_SCALE / REAL_DATA

def test_tiny_scale_keeps_the_gpu_branches_and_shrinks_sizes(monkeypatch):
    monkeypatch.setenv("CAMLIB_SCALE", "tiny")
    gpu = config.get_profile("gpu", device="cpu")
    assert gpu.name == "gpu"                                  # the lessons' `cfg.name != "gpu"` branch
    for lesson, table in config._LESSONS.items():
        tiny = gpu.lesson(lesson)
        assert set(table["gpu"]) <= set(tiny), lesson            # nothing the gpu code reads is missing
        for key in ("n_train", "steps", "n_eval", "n_source", "cub_epochs"):
            if key in table["gpu"]:
                assert tiny[key] <= table["smoke"].get(key, tiny[key]) <= table["gpu"][key], (lesson, key)
    s04 = gpu.lesson("04")
    assert s04["cub_models"] == config._LESSONS["04"]["gpu"]["cub_models"]     # which models: a branch
    assert s04["cub_epochs"] == 1 and s04["cub_batch_size"] <= 4
    assert gpu.lesson("06")["gpu_val_images"] > 0                              # the gpu cell shows images
    monkeypatch.setenv("CAMLIB_SCALE", "huge")
    with pytest.raises(ValueError, match="CAMLIB_SCALE"):
        gpu.lesson("01")
    monkeypatch.delenv("CAMLIB_SCALE")
    assert gpu.lesson("04")["cub_epochs"] == config._LESSONS["04"]["gpu"]["cub_epochs"]


def test_real_data_switch(monkeypatch, capsys):
    gpu, cpu = config.get_profile("gpu", device="cpu"), config.get_profile("cpu", device="cpu")
    monkeypatch.delenv("CAMLIB_REAL_DATA", raising=False)
    assert config.real_data_ready(gpu, "X") and capsys.readouterr().out == ""
    assert not config.real_data_ready(cpu, "X")
    out = capsys.readouterr().out
    assert out.startswith(config.REAL_DATA_SKIP_MARKER) and out.count("\n") == 1
    monkeypatch.setenv("CAMLIB_REAL_DATA", "0")
    assert not config.real_data_ready(gpu, "X")
    assert "CAMLIB_REAL_DATA=0" in capsys.readouterr().out
    monkeypatch.setenv("CAMLIB_REAL_DATA", "maybe")
    with pytest.raises(ValueError, match="CAMLIB_REAL_DATA"):
        config.real_data_ready(gpu, "X")


def test_recipes_tiny(monkeypatch):
    from camlib import recipes
    monkeypatch.setenv("CAMLIB_SCALE", "tiny")
    s = recipes.get("cub-googlenet-gap").for_profile("gpu")
    assert s["weights"] == "DEFAULT" and s["image_size"] == 224 and s["steps"] == recipes.TINY["steps"]
    monkeypatch.delenv("CAMLIB_SCALE")
    assert recipes.get("cub-googlenet-gap").for_profile("gpu")["steps"] is None      # epochs, full set


# ----------------------------------------------------------------------------- stand-in weights, GoogLeNet

@pytest.fixture(scope="module")
def torch_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("torch")
    fx.make_standin_weights(home, names=("GoogLeNet_Weights.IMAGENET1K_V1",))
    return home


def test_googlenet_gap_loads_imagenet_weights(torch_home, monkeypatch):
    """Failed before the fix: torchvision refuses aux_logits=False with weights (a ValueError)."""
    from torchvision.models import GoogLeNet_Weights
    from camlib import models
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    cached = torch_home / "hub" / "checkpoints" / Path(GoogLeNet_Weights.DEFAULT.url).name
    assert cached.is_file()
    net = models.build("googlenet_gap", num_classes=200, weights="DEFAULT")
    state = torch.load(cached, weights_only=True)
    # the trunk holds the (stand-in) ImageNet weights, not a fresh init
    assert torch.equal(net.backbone[0].layers[0].conv.weight, state["conv1.conv.weight"])
    assert net.backbone[0].transform_input and net.classifier.out_features == 200
    assert not hasattr(net.backbone[0], "aux1")
    with pytest.raises(ValueError, match="aux_logits"):
        models.build("googlenet_gap", weights="DEFAULT", aux_logits=True)
    net.eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 224, 224)).logits.shape == (1, 200)


# ----------------------------------------------------------------------------- greyscale / CMYK / truncated

@pytest.mark.parametrize("mode", ["L", "CMYK", "RGB"])
def test_eval_transform_makes_rgb_first(tmp_path, mode):
    """Failed before the fix for L and CMYK: Normalize got 1 or 4 channels."""
    from camlib.data.common import eval_transform, train_transform
    fx.write_jpeg(tmp_path / "a.jpg", 30, 20, seed=0, mode=mode)
    from torchvision import tv_tensors
    with Image.open(tmp_path / "a.jpg") as im:
        assert im.mode == mode
        x = eval_transform(32)(im)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    grey = {"image": tv_tensors.Image(torch.randint(0, 255, (1, 20, 30), dtype=torch.uint8)),
            "boxes": tv_tensors.BoundingBoxes(torch.tensor([[2.0, 2.0, 25.0, 18.0]]), format="XYXY",
                                              canvas_size=(20, 30))}
    assert train_transform(32, scale=(0.9, 1.0))(grey)["image"].shape == (3, 32, 32)
    if mode == "L":   # a grey picture stays grey: three equal channels before normalization
        from camlib.data.memory import IMAGENET_MEAN, IMAGENET_STD
        raw = x * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        assert torch.allclose(raw[0], raw[1], atol=1e-5) and torch.allclose(raw[1], raw[2], atol=1e-5)


def test_transfer_datasets_each_on_its_own(tmp_path):
    """Caltech-101 with greyscale, CMYK and a truncated JPEG; Flowers-102 from its .mat files; one
    missing dataset does not lose the others (before: one try around all three)."""
    from camlib.data.transfer import transfer_datasets
    fx.make_caltech101(tmp_path)
    fx.make_flowers102(tmp_path)
    opened, failed = transfer_datasets(tmp_path, download=False)      # no Pets here
    assert set(opened) == {"Caltech-101", "Flowers-102"} and set(failed) == {"Oxford-IIIT Pet"}
    assert "\n" not in failed["Oxford-IIIT Pet"]
    tr, te = opened["Caltech-101"]
    assert len(tr) + len(te) == 12 and tr.num_classes == 3           # BACKGROUND_Google is no class
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        samples = [d[i] for d in (tr, te) for i in range(len(d))]
    assert all(s["image"].shape == (3, 224, 224) for s in samples)
    assert sum(len(d.unreadable) for d in (tr, te)) == 1
    ftr, fte = opened["Flowers-102"]
    assert [ftr[i]["label"] for i in range(len(ftr))] == [0, 0, 1, 1, 2, 2] and len(fte) == 6


# ----------------------------------------------------------------------------- CUB download

def test_cub_download_from_a_server_and_one_sentence_without_network(tmp_path):
    from camlib.data.cub import CUB200, CUB_SIZE, CUB_URL, fetch_cub
    from camlib.data.download import ChecksumError, DownloadError
    src = tmp_path / "src"
    fx.make_cub(src, odd_modes=True)
    blob = fx.tgz_of_dir(src / "CUB_200_2011", "CUB_200_2011")
    with fx.LoopbackServer() as srv:
        srv.files["/CUB_200_2011.tgz"] = blob
        ds = CUB200(tmp_path / "dl", split="train", download=True, url=srv.url("/CUB_200_2011.tgz"),
                    md5=fx.md5_of(blob), progress=False)
        assert len(ds) == 6 and ds[0]["image"].shape == (3, 224, 224)
        with pytest.raises(ChecksumError, match="bytes, expected"):
            fetch_cub(tmp_path / "wrong-size", url=srv.url("/CUB_200_2011.tgz"), md5=fx.md5_of(blob),
                      size=len(blob) + 1, progress=False)
        port = srv.httpd.server_address[1]
    # the server is gone: a refused connection is what a missing network looks like
    with pytest.raises(DownloadError) as e:
        CUB200(tmp_path / "none", download=True, url=f"http://127.0.0.1:{port}/CUB_200_2011.tgz", progress=False)
    assert "\n" not in str(e.value) and "failed" in str(e.value)
    assert CUB_URL == "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz" and CUB_SIZE > 10**9


def test_recipes_cli_downloads_cub_and_says_one_sentence(tmp_path, monkeypatch):
    """Before: no CLI passed download=True (a DatasetNotFoundError traceback)."""
    from camlib import recipes
    seen = {}

    def fake_fetch(root, **kw):
        seen["root"] = root
        raise __import__("camlib.data.download", fromlist=["DownloadError"]).DownloadError(
            "downloading https://data.caltech.edu/... failed: <urlopen error no network>.")
    monkeypatch.setattr("camlib.data.cub.fetch_cub", fake_fetch)
    monkeypatch.setenv("CAMLIB_DATA", str(tmp_path))
    monkeypatch.setenv("CAMLIB_SCALE", "tiny")
    assert recipes.main(["--recipe", "cub-resnet50-cam", "--profile", "gpu", "--no-progress"]) == 2
    assert Path(seen["root"]) == tmp_path


# ----------------------------------------------------------------------------- memory

_PEAK = textwrap.dedent("""
    import resource, sys, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {repo!r})
    from camlib.data.memory import InMemoryDataset
    from camlib import twostage
    n, side = {n}, {side}
    imgs = torch.randint(0, 255, (n, 3, side, side), dtype=torch.uint8)
    ds = InMemoryDataset(imgs, torch.zeros(n, dtype=torch.long), torch.tensor([[1., 1., 9., 9.]]).repeat(n, 1))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = twostage.resize_dataset(ds, {out})
    assert out.images.dtype == torch.uint8 and out.images.shape == (n, 3, {out}, {out})
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
""")


@pytest.mark.slow
def test_resize_dataset_peak_memory_is_bounded():
    """Before: every chunk became float and the floats were concatenated (4,800 CUB images at 448 px:
    +7 GiB). Now the extra peak is the uint8 output plus one float chunk (~64 MiB of input)."""
    n, side, out = 160, 448, 256
    code = _PEAK.format(repo=str(REPO), n=n, side=side, out=out)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    extra = int(p.stdout.strip().splitlines()[-1])
    input_bytes = n * 3 * side * side                       # 96 MB
    output_bytes = n * 3 * out * out                        # 31 MB
    float_all = 4 * (input_bytes + output_bytes)            # what the old code held at once: 0.5 GB
    assert extra < output_bytes + 3 * (64 << 20), (extra, float_all)
    # extrapolated to CUB train (5,994 images at 448 -> 256): output 1.2 GB + a constant, far below 10 GB
    assert 5994 * 3 * 256 * 256 + 3 * (64 << 20) < 10 * 10**9


@pytest.mark.slow
def test_evaluate_stream_memory_does_not_grow_with_the_dataset():
    """Lesson 03's ILSVRC cell kept every map (50,000 x 224 x 224 float32, ~10 GB); the streamed
    evaluation holds one batch: the peak for 8x the images stays within a fraction of their maps."""
    code = textwrap.dedent("""
        import resource, sys, torch
        torch.set_num_threads(1)
        sys.path.insert(0, {repo!r})
        from camlib import models, recipes
        class Fake(torch.utils.data.Dataset):
            def __len__(self): return {n}
            def __getitem__(self, i):
                g = torch.Generator().manual_seed(i)
                return {{"image": torch.randn(3, 224, 224, generator=g), "label": i % 5,
                         "boxes": torch.tensor([[20., 30., 120., 150.]])}}
        torch.manual_seed(0)
        net = models.small_cnn(num_classes=5, widths=(4, 4, 4, 4, 4), strides=(4, 2, 1, 2, 1))
        r = recipes.evaluate_stream(net, Fake(), device="cpu", batch_size=16, num_workers=0)
        assert r["images"] == {n} and 0 <= r["MaxBoxAccV2"] <= 1
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    """)
    peaks = {}
    for n in (32, 256):
        p = subprocess.run([sys.executable, "-c", code.format(repo=str(REPO), n=n)], capture_output=True, text=True,
                           timeout=600)
        assert p.returncode == 0, p.stderr
        peaks[n] = int(p.stdout.strip().splitlines()[-1])
    maps_bytes = (256 - 32) * 224 * 224 * 4 * 6       # the kept top-5 + GT maps of the extra images: 270 MB
    assert peaks[256] - peaks[32] < maps_bytes / 4, peaks


def test_evaluate_stream_equals_the_whole_set_at_once():
    from camlib import cam, localize, metrics, models, recipes
    torch.manual_seed(0)

    class Fake(torch.utils.data.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return {"image": torch.randn(3, 64, 64, generator=g), "label": i % 5,
                    "boxes": torch.tensor([[4.0 + i, 8.0, 40.0, 50.0 - i]])}
    net = models.small_cnn(num_classes=5).eval()
    r = recipes.evaluate_stream(net, Fake(), device="cpu", batch_size=3, num_workers=0)
    ds = Fake()
    x = torch.stack([ds[i]["image"] for i in range(10)])
    labels = torch.tensor([ds[i]["label"] for i in range(10)])
    gts = [ds[i]["boxes"] for i in range(10)]
    with torch.no_grad():
        _, m5, c5 = cam.cams(net, x, topk=5, size=(64, 64))
        _, mg, _ = cam.cams(net, x, labels, size=(64, 64))
    boxes = localize.boxes_from_maps(m5.flatten(0, 1)).view(10, 5, 4)
    assert r["top-1 loc err"] == pytest.approx(metrics.localization_error(c5, boxes, labels, gts, k=1))
    assert r["top-5 loc err"] == pytest.approx(metrics.localization_error(c5, boxes, labels, gts, k=5))
    assert r["MaxBoxAccV2"] == pytest.approx(metrics.max_box_acc_v2(mg[:, 0], gts).score)
    assert recipes.evaluate_stream(net, Fake(), device="cpu", limit=4, num_workers=0)["images"] == 4


# ----------------------------------------------------------------------------- checkpoints

def test_run_two_stage_checkpoints_and_resumes(tmp_path, monkeypatch):
    """Before: run_two_stage took no checkpoint; a disconnect started all three trainings over."""
    from camlib import models, train, twostage
    from camlib.data import make_synthetic
    tr, te = make_synthetic(64, seed=0), make_synthetic(16, seed=1)
    calls = []
    real_fit = train.fit

    def counting_fit(*a, **k):
        calls.append((k.get("checkpoint"), k.get("resume")))
        return real_fit(*a, **k)
    monkeypatch.setattr(train, "fit", counting_fit)
    build = lambda: models.small_cnn(num_classes=8, widths=(4, 4, 4, 4, 4))  # noqa: E731
    ck = tmp_path / "run.pt"
    kw = dict(input_size=32, crop_size=32, steps=2, batch_size=16, progress=False, device="cpu", checkpoint=ck)
    out1 = twostage.run_two_stage(tr, te, build, **kw)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["run-gt.pt", "run-stage1.pt", "run-stage2.pt"], files
    assert all(r for _, r in calls)
    steps_done = {f: train.load_checkpoint(tmp_path / f)["step"] for f in files}
    assert set(steps_done.values()) == {2}
    out2 = twostage.run_two_stage(tr, te, build, **kw)          # a re-run loads: same networks, same numbers
    for key in ("acc_full", "acc_crop", "acc_gt", "max_box_acc_v2"):
        assert out1[key] == out2[key]
    for a, b in zip(out1["stage1"].parameters(), out2["stage1"].parameters()):
        assert torch.equal(a.cpu(), b.cpu())
