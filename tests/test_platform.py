"""Platform behaviour that a CPU-only machine cannot show directly: mixed precision on a (faked) CUDA
GPU, where caches go on Colab with Drive, widget versions, torchvision's transform versions, the
stated dependency floors, and a failed weight download."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from camlib import config, train

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))   # fixtures_real


# ================================================================================ mixed precision

@pytest.fixture
def fake_cuda(monkeypatch):
    """Pretend a CUDA GPU of a chosen compute capability is here; ``is_bf16_supported`` says yes, as
    it does on a T4 (by emulation)."""
    def gpu(capability):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    return gpu


@pytest.mark.parametrize("capability, want", [((7, 5), torch.float16),    # T4 (Colab's free GPU)
                                              ((7, 0), torch.float16),    # V100
                                              ((8, 0), torch.bfloat16),   # A100
                                              ((8, 9), torch.bfloat16),   # L4
                                              ((9, 0), torch.bfloat16)])  # H100
def test_auto_amp_uses_bf16_only_where_the_hardware_has_it(fake_cuda, capability, want):
    fake_cuda(capability)
    cuda = torch.device("cuda")
    assert train.amp_dtype(cuda, "auto") == want
    assert train.native_bf16(cuda) == (want == torch.bfloat16)
    assert train.grad_scaler(cuda, want).is_enabled() == (want == torch.float16)  # fp16 always scaled


def test_amp_can_be_forced_and_is_off_without_cuda(fake_cuda):
    fake_cuda((7, 5))
    cuda = torch.device("cuda")
    assert train.amp_dtype(cuda, "bf16") == torch.bfloat16
    assert train.amp_dtype(cuda, "fp16") == torch.float16 and train.grad_scaler(cuda, torch.float16).is_enabled()
    assert train.amp_dtype(cuda, "off") is None and not train.grad_scaler(cuda, None).is_enabled()
    for dev in ("cpu", "mps"):
        assert train.amp_dtype(torch.device(dev), "auto") is None
        assert not train.grad_scaler(torch.device(dev), None).is_enabled()
    with pytest.raises(ValueError, match="amp must be"):
        train.amp_dtype(cuda, "half")


def test_fit_trains_with_the_scaler_for_its_dtype(monkeypatch):
    """fit asks grad_scaler for the dtype amp_dtype chose (so fp16 on a T4 gets a scaler)."""
    from camlib import models
    from camlib.data import make_synthetic

    seen = []
    real = train.grad_scaler

    def spy(device, dtype):
        seen.append((device.type, dtype))
        return real(device, dtype)

    monkeypatch.setattr(train, "grad_scaler", spy)
    torch.manual_seed(0)
    train.fit(models.small_cnn(8), make_synthetic(64, seed=0), steps=1, batch_size=32, amp="off",
              progress=False, device="cpu")
    assert seen == [("cpu", None)]


# ================================================================================ cache folder

@pytest.fixture
def no_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.delenv("CAMLIB_CACHE", raising=False)


def test_cache_folder_defaults_to_the_data_folder(no_colab, monkeypatch, tmp_path):
    monkeypatch.setenv("CAMLIB_DATA", str(tmp_path / "data"))
    assert config.cache_dir() == tmp_path / "data" / "cache"
    monkeypatch.setenv("CAMLIB_CACHE", str(tmp_path / "fast"))
    assert config.cache_dir() == tmp_path / "fast"


def test_on_colab_with_drive_caches_stay_on_the_local_disk(no_colab, monkeypatch):
    from camlib import colab
    from camlib.data import cache, make_synthetic

    monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))   # a Colab kernel
    monkeypatch.setenv("CAMLIB_DATA", colab.DRIVE_DATA_DIR)                         # USE_DRIVE ticked
    assert colab.on_drive(config.data_dir())
    assert config.cache_dir() == Path(colab.LOCAL_CACHE_DIR) and not colab.on_drive(config.cache_dir())
    # every cache goes there (archives and checkpoints stay on Drive)
    path = cache.cache_path(make_synthetic(4, seed=0), 32, key="probe")
    assert path.parent == Path(colab.LOCAL_CACHE_DIR)
    assert colab.on_drive(config.checkpoint_path("run", a=1))
    # an explicit $CAMLIB_CACHE still wins; Colab without Drive keeps the default
    monkeypatch.setenv("CAMLIB_CACHE", "/content/elsewhere")
    assert config.cache_dir() == Path("/content/elsewhere")
    monkeypatch.delenv("CAMLIB_CACHE")
    monkeypatch.setenv("CAMLIB_DATA", "/content/data")
    assert config.cache_dir() == Path("/content/data/cache")


def test_cache_builds_in_the_cache_folder(no_colab, monkeypatch, tmp_path):
    from camlib.data import cache, make_synthetic

    monkeypatch.setenv("CAMLIB_DATA", str(tmp_path / "drive"))
    monkeypatch.setenv("CAMLIB_CACHE", str(tmp_path / "local"))
    ds = cache.cached(make_synthetic(8, seed=0), 16, key="probe", progress=False, workers=0)
    assert len(ds) == 8
    assert list((tmp_path / "local").iterdir()) and not (tmp_path / "drive").exists()


# ================================================================================ torchvision versions

def _sample_with_mask(n_boxes):
    import numpy as np
    from PIL import Image
    img = Image.fromarray(np.zeros((32, 48, 3), np.uint8))
    mask = np.zeros((32, 48), bool)
    mask[4:28, 6:42] = True
    boxes = [[6 * k, 4 * k, 6 * k + 5, 4 * k + 4] for k in range(n_boxes)]   # along the diagonal
    return img, boxes, mask


@pytest.mark.parametrize("n_boxes", [1, 8])
def test_train_transform_keeps_the_image_mask_whole(n_boxes):
    """torchvision <= 0.24 raised here (it indexes every Mask with the boxes' keep-flags); with as many
    boxes as the output has rows (8 boxes, size 8) later versions cut rows out of the mask."""
    from camlib.data.common import make_sample, train_transform

    img, boxes, mask = _sample_with_mask(n_boxes)
    tf = train_transform(8, scale=(0.25, 0.25))
    torch.manual_seed(0)
    counts = set()
    for _ in range(30):
        s = make_sample(img, 0, boxes, mask, transform=tf)
        assert s["image"].shape == (3, 8, 8) and s["mask"].shape == (8, 8) and s["mask"].dtype == torch.bool
        counts.add(len(s["boxes"]))
    assert min(counts) < n_boxes or n_boxes == 1     # some crops did drop boxes (the case that broke)


def test_sanitize_boxes_refuses_what_is_not_a_sample():
    from camlib.data.common import SanitizeBoxes
    with pytest.raises(ValueError, match="sample dict"):
        SanitizeBoxes()(torch.zeros(3, 8, 8))


# ================================================================================ weight downloads

@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """No cached weights, and every download torch.hub starts goes to a closed loopback port (the
    connection is really refused, as it is with no network)."""
    import socket
    import urllib.request

    with socket.socket() as s:                      # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    real = urllib.request.urlopen
    asked = []

    def dead(req, *a, **k):
        url = getattr(req, "full_url", req)
        asked.append(url)
        return real(f"http://127.0.0.1:{port}/{url.rsplit('/', 1)[-1]}", timeout=5)

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "urlopen", dead)
    return asked


def test_failed_weight_download_says_what_and_where_in_one_sentence(no_network, tmp_path):
    from camlib import models

    with pytest.raises(models.WeightsDownloadError) as e:
        models.build("resnet50_cam", num_classes=5, weights="DEFAULT")
    msg = str(e.value)
    assert no_network and no_network[0].startswith("https://download.pytorch.org/")   # it really tried
    assert msg.startswith("Could not download the pretrained weights ResNet50_Weights.IMAGENET1K_V2 for "
                          "resnet50_cam from https://download.pytorch.org/")
    assert "no network connection" in msg and "\n" not in msg and msg.count(". ") == 0 and msg.endswith(".")
    assert f"put resnet50-11ad3fa6.pth (downloaded elsewhere) into {tmp_path / 'hub' / 'checkpoints'}/" in msg
    assert isinstance(e.value, OSError)             # lessons that catch OSError keep working
    with pytest.raises(models.WeightsDownloadError, match=r"ResNet50_Weights\.IMAGENET1K_V1 for resnet50"):
        models.torchvision_model("resnet50", weights="IMAGENET1K_V1")
    assert models.build("resnet50_cam", num_classes=5).num_classes == 5   # no weights: no download at all


def test_the_cli_reports_a_failed_weight_download_without_a_traceback(no_network, tmp_path, monkeypatch, capsys):
    import fixtures_real as fx
    from camlib import recipes

    fx.make_cub(tmp_path / "data")
    monkeypatch.setenv("CAMLIB_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("CAMLIB_CACHE", raising=False)
    rc = recipes.main(["--recipe", "cub-resnet50-cam", "--profile", "smoke", "--device", "cpu", "--weights",
                       "DEFAULT", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "Could not download the pretrained weights ResNet50_Weights.IMAGENET1K_V2 for resnet50_cam" in err


# ================================================================================ widgets (7 and 8)

def test_cam_explorer_works_with_the_installed_ipywidgets(monkeypatch):
    """Run under ipywidgets 8 by `make test` and under Colab's 7.7 by `make test-compat`."""
    import matplotlib
    matplotlib.use("Agg")
    import numpy as np
    from camlib import models, viz

    drawn = []
    monkeypatch.setattr(viz, "show_map", lambda img, m, ax=None, alpha=0.5, title="", **k: drawn.append((alpha, title)))
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: None)
    rng = np.random.default_rng(0)
    photos = {name: rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for name in ("a", "b")}
    names = [f"class{i}" for i in range(8)]
    torch.manual_seed(0)
    box = viz.cam_explorer(photos, models.small_cnn(8).eval(), names, device="cpu", size=32, topk=3)
    photo, cls, alpha = box.children[0].children
    assert len(cls.options) == 3 and cls.value == cls.options[0][1] and drawn
    n = len(drawn)
    photo.value = "b"                               # new classes, and a redraw
    assert len(drawn) > n and drawn[-1][1].startswith(names[cls.value])
    alpha.value = 0.8
    assert drawn[-1][0] == pytest.approx(0.8)
    cls.value = cls.options[2][1]
    assert drawn[-1][1].startswith(names[cls.options[2][1]])
    box.update()


def test_lesson_widgets_construct_alike_in_ipywidgets_7_and_8():
    """The constructor forms the lessons use (lesson 03's positional IntSlider, interact)."""
    import ipywidgets as widgets
    s = widgets.IntSlider(3, 0, 9)
    assert (s.value, s.min, s.max) == (3, 0, 9)
    f = widgets.FloatSlider(value=0.2, min=0.05, max=0.95, step=0.05)
    assert f.value == pytest.approx(0.2)
    seen = []
    # interact's first call happens on display in a front end (ipywidgets 7) or at once (8): move a
    # slider, as a student does, and the function runs in both
    widgets.interactive(lambda index, fraction: seen.append((index, fraction)), index=s, fraction=f)
    s.value = 5
    assert seen and seen[-1] == (5, pytest.approx(0.2))


# ================================================================================ dependency floors

def _toml(path):
    try:
        import tomllib
    except ImportError:                             # Python 3.10
        from pip._vendor import tomli as tomllib
    return tomllib.loads(path.read_text())


def _pins():
    pins = {}
    for line in (REPO / "requirements-compat.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, ver = line.partition("==")
            pins[name.strip().lower()] = ver.strip()
    return pins


def test_compat_pins_are_exactly_the_stated_floors():
    from packaging.requirements import Requirement
    from packaging.version import Version
    project = _toml(REPO / "pyproject.toml")["project"]
    pins = _pins()
    floors = {}
    for dep in project["dependencies"]:
        req = Requirement(dep)
        lower = [s.version for s in req.specifier if s.operator == ">="]
        assert len(lower) == 1, f"{dep}: every dependency states one floor (>=)"
        floors[req.name.lower()] = lower[0]
    assert set(pins) == set(floors), "requirements-compat.txt pins exactly pyproject's dependencies"
    for name, floor in floors.items():
        assert Version(pins[name]) == Version(floor), f"{name}: pinned {pins[name]}, floor {floor}"  # 2.8 == 2.8.0
    assert project["requires-python"] == ">=3.11"   # BaseException.add_note (camlib.exercises)
    # what Colab ships must satisfy the floors (else pip would replace Colab's torch or widgets)
    for name, colab in (("torch", "2.8.0"), ("torchvision", "0.23.0"), ("ipywidgets", "7.7.1")):
        req = next(Requirement(d) for d in project["dependencies"] if Requirement(d).name.lower() == name)
        assert req.specifier.contains(colab), f"{name} {colab} (Colab) does not meet {req}"


def test_installed_versions_meet_the_floors():
    """Everywhere the floors hold; in the compat environment (`make test-compat`) they are exact."""
    from importlib.metadata import version
    from packaging.requirements import Requirement
    from packaging.version import Version
    compat = Path(sys.prefix).name == ".venv-compat"
    for dep in _toml(REPO / "pyproject.toml")["project"]["dependencies"]:
        req = Requirement(dep)
        have = Version(version(req.name))
        assert req.specifier.contains(have, prereleases=True) or req.specifier.contains(Version(have.base_version)), \
            f"{req.name} {have} does not meet {req}"
        if compat:
            assert have.base_version == Version(_pins()[req.name.lower()]).base_version, (req.name, str(have))
    if compat:
        assert sys.version_info[:2] == (3, 11)
