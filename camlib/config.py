"""Profiles, device choice and seeding: the one place where a lesson learns how big to run.

A *profile* names how much compute a run may spend:

* ``smoke`` -- CI and quick checks: seconds per lesson, results are plumbing only;
* ``cpu``   -- a laptop or the course build on a CPU: minutes, results stable enough to assert;
* ``gpu``   -- Colab or a bigger machine: the real datasets and backbones where present.

The profile comes from the ``CAMLIB_PROFILE`` environment variable, else ``gpu`` when CUDA is
available, else ``cpu``. The device comes from ``CAMLIB_DEVICE``, else CUDA, else Apple's MPS,
else the CPU. Nothing else in camlib names a device. Introduced in lesson 00.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

PROFILES = ("smoke", "cpu", "gpu")


def default_profile_name() -> str:
    """The profile this machine runs by default: ``$CAMLIB_PROFILE``, else gpu with CUDA, else cpu."""
    name = os.environ.get("CAMLIB_PROFILE", "").strip().lower()
    if name:
        if name not in PROFILES:
            raise ValueError(f"CAMLIB_PROFILE must be one of {PROFILES}, got {name!r}")
        return name
    return "gpu" if torch.cuda.is_available() else "cpu"


def get_device(prefer: str | None = None) -> torch.device:
    """The device to compute on: ``prefer`` or ``$CAMLIB_DEVICE`` if given, else cuda > mps > cpu."""
    name = prefer or os.environ.get("CAMLIB_DEVICE", "").strip()
    if name:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for but CUDA is not available here")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so that a run repeats."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))


# Sizes each lesson reads. A lesson asks ``cfg.lesson("01")`` and gets a plain dict.
_LESSONS: dict[str, dict[str, dict[str, Any]]] = {
    # lesson 00: a first CAM of a real photo; nothing to train.
    "00": {
        "smoke": dict(image_size=224),
        "cpu": dict(image_size=224),
        "gpu": dict(image_size=224),
    },
    # lesson 01: GAP versus GMP on the synthetic data, preset "tinted" (camlib/data/synthetic.py: the
    # order holds from 80 to 480 steps there; the preset sets the image size, 96 px). The claims are asserted on the main runs (``steps``, every
    # seed) and on one longer run per head (first seed), measured at curve_snapshots: in the gpu profile
    # it trains past the gpu profile's own length, to show and check how both heads change with training
    # length. In smoke the main run is the curve.
    "01": {
        "smoke": dict(data="tinted", n_train=2048, n_val=256, steps=160, batch_size=64, seeds=[0],
                      snapshots=[40, 80, 160], curve_steps=160, curve_snapshots=[40, 80, 160]),
        "cpu": dict(data="tinted", n_train=8000, n_val=1000, steps=160, batch_size=128, seeds=[0, 1],
                    snapshots=[40, 80, 160], curve_steps=360, curve_snapshots=[40, 80, 160, 240, 300]),
        "gpu": dict(data="tinted", n_train=20000, n_val=2000, steps=160, batch_size=128, seeds=[0, 1, 2],
                    snapshots=[40, 80, 160], curve_steps=480, curve_snapshots=[40, 80, 160, 240, 320, 400]),
    },
    # lesson 02: the CAM derivation, on a GAP network trained briefly.
    "02": {
        "smoke": dict(image_size=64, n_train=1024, n_val=128, steps=30, batch_size=64),
        "cpu": dict(image_size=64, n_train=8000, n_val=500, steps=80, batch_size=128),
        "gpu": dict(image_size=64, n_train=10000, n_val=1000, steps=200, batch_size=128),
    },
    # lesson 03: localization evaluation of lesson 01's GAP network (on the striped data), baselines.
    # flip_margin: how far each of CAM and Grad-CAM (min-max normalized) must lead the other somewhere on the
    # threshold grid for "a fixed threshold can reorder methods" to count (box accuracy, IoU 0.5).
    # net: the small GAP network lesson 03 evaluates (lesson 01's network and training, on the striped
    # default data of lessons 02 and 06), and the two variants it trains with the same settings.
    "03": {
        "smoke": dict(n_eval=256, example=3, surgery_models=["alexnet_gap", "googlenet_gap"], flip_margin=0.03,
                      net=dict(n_train=2048, n_val=256, steps=80, batch_size=64, snapshots=[20, 40, 80])),
        "cpu": dict(n_eval=1000, example=3, surgery_models=["alexnet_gap", "vgg16_gap", "googlenet_gap", "resnet50_cam"],
                    flip_margin=0.03, net=dict(n_train=8000, n_val=1000, steps=80, batch_size=128, snapshots=[15, 40, 80])),
        "gpu": dict(n_eval=2000, example=3, surgery_models=["alexnet_gap", "vgg16_gap", "googlenet_gap", "resnet50_cam"],
                    flip_margin=0.03, net=dict(n_train=20000, n_val=2000, steps=80, batch_size=128, snapshots=[15, 40, 80])),
    },
    # lesson 04: Table 4's protocol on the "fine" preset (128-px frames): a small GAP network trained on
    # other data (src_*: the striped objects) is frozen; linear SVMs (svm_C) on its GAP features of each
    # view (the frame, crops) resized to view_size; crops: CAM box + margin, square, >= min_crop px.
    # Claims: CAM crop >= full + min_gain; >= same-size controls + loc_gain; GT crop >= CAM crop + gt_gain.
    # On a GPU also CUB-200-2011 (cub_*: cache side, epochs, models).
    "04": {
        "smoke": dict(n_train=1280, n_test=256, src_n=2048, src_steps=60, batch_size=64, view_size=64, svm_C=0.1,
                      margin=0.2, min_crop=32, min_gain=0.05, loc_gain=0.05, gt_gain=0.02, bound_tol=0.02,
                      cub_cache=448, cub_epochs=1, cub_models=["googlenet_gap"], cub_margin=0.1),
        "cpu": dict(n_train=2000, n_test=500, src_n=6000, src_steps=150, batch_size=128, view_size=64, svm_C=0.1,
                    margin=0.2, min_crop=32, min_gain=0.08, loc_gain=0.08, gt_gain=0.04, bound_tol=0.02,
                    cub_cache=448, cub_epochs=1, cub_models=["googlenet_gap"], cub_margin=0.1),
        "gpu": dict(n_train=8000, n_test=2000, src_n=20000, src_steps=300, batch_size=128, view_size=64, svm_C=0.1,
                    margin=0.2, min_crop=32, min_gain=0.08, loc_gain=0.08, gt_gain=0.04, bound_tol=0.02,
                    cub_cache=448, cub_epochs=20, cub_models=["googlenet_gap", "resnet50_cam"], cub_margin=0.1),
    },
    # lesson 05: a linear SVM on frozen features (synthetic transfer to the same cue and to a new cue --
    # n_shapes shape scenes per split --, GAP vs an FC head of fc_hidden units, EfficientNet-Lite0 on digit
    # scenes), informative objects in scenes. n_source/n_new are images drawn before keeping one family (~half).
    "05": {
        "smoke": dict(n_source=2400, n_new=800, n_shapes=800, fc_hidden=256, steps=40, batch_size=64, svm_C=0.1,
                      min_probe_acc=0.6,
                      min_margin=0.15, digit_size=224, n_digits_train=128, n_digits_test=96, digit_C=0.1,
                      digit_margin=0.1, min_det_acc=0.7, min_peak=0.4, n_scenes_train=2048, n_scenes_test=256,
                      scene_steps=60, tolerance=3),
        "cpu": dict(n_source=6000, n_new=2000, n_shapes=1500, fc_hidden=256, steps=100, batch_size=128, svm_C=0.1,
                    min_probe_acc=0.85,
                    min_margin=0.25, digit_size=224, n_digits_train=240, n_digits_test=240, digit_C=0.1,
                    digit_margin=0.2, min_det_acc=0.8, min_peak=0.6, n_scenes_train=4000, n_scenes_test=600,
                    scene_steps=200, tolerance=3),
        # steps as in cpu: the source network is lesson 01's GAP network on the striped data, whose maps stop
        # fitting the object with long training (synthetic.py's docstring); at 300 steps the probe's CAM boxes fell to 0.234 (below a
        # centre box's 0.444; claims-gpu on the CPU, 2026-11-28). More images and scenes, not more steps.
        "gpu": dict(n_source=20000, n_new=6000, n_shapes=3000, fc_hidden=256, steps=100, batch_size=128, svm_C=0.1,
                    min_probe_acc=0.85,
                    min_margin=0.25, digit_size=224, n_digits_train=1000, n_digits_test=500, digit_C=0.1,
                    digit_margin=0.2, min_det_acc=0.8, min_peak=0.6, n_scenes_train=10000, n_scenes_test=2000,
                    scene_steps=400, tolerance=3),
    },
    # lesson 06: class-specific units of lesson 01's GAP network; EfficientNet-Lite0 on the photos and on their
    # objects pasted onto package backgrounds (pasted_placements per object and background).
    "06": {
        "smoke": dict(n_train=2048, n_test=400, steps=80, batch_size=64, top_k=3, tolerance=2, n_random=300,
                      min_margin=0.1, n_show=6, show_classes=[0], image_size=224, top_k_imagenet=5,
                      imagenet_show=[0, 1], gpu_val_images=0, pasted_placements=2),
        "cpu": dict(n_train=6000, n_test=1000, steps=100, batch_size=128, top_k=3, tolerance=2, n_random=1000,
                    min_margin=0.15, n_show=8, show_classes=[0, 5], image_size=224, top_k_imagenet=5,
                    imagenet_show=[0, 1, 2], gpu_val_images=0, pasted_placements=2),
        "gpu": dict(n_train=20000, n_test=2000, steps=300, batch_size=128, top_k=3, tolerance=2, n_random=1000,
                    min_margin=0.15, n_show=8, show_classes=[0, 5], image_size=224, top_k_imagenet=5,
                    imagenet_show=[0, 1, 2], gpu_val_images=5000, pasted_placements=2),
    },
    # (lessons 03-06 add their entries here, one block per lesson)
}

# ------------------------------------------------------------------ scale (tiny) and real data
#
# ``CAMLIB_SCALE=tiny`` runs a profile's *code paths* at a few items and steps: CI runs the gpu
# profile this way on a CPU (``make test-gpu-path``) with fixture datasets in the published layouts.
# A tiny gpu lesson takes every branch the gpu profile takes (``cfg.name`` stays "gpu"); its sizes
# are the gpu sizes with (1) every key the smoke profile also sets taken from smoke -- smoke's sizes
# and thresholds are the small ones whose synthetic claims ``make test`` already checks -- except the
# keys in ``_TINY_KEEP`` (which models run: a branch, not a size), then (2) ``_TINY[lesson]``: the
# real-dataset sizes, a handful of images and one epoch. Claims on real data are *reported, not
# asserted* at tiny scale (a few fixture images with random stand-in weights prove nothing); see
# :func:`is_tiny`.

SCALES = ("full", "tiny")
_TINY_KEEP = {"surgery_models", "cub_models"}
_TINY: dict[str, dict[str, Any]] = {
    "04": dict(cub_epochs=1, cub_batch_size=2),        # the recipe's batch of 32 needs 32 images
    "06": dict(gpu_val_images=4),                      # (smoke's 0 would skip the gpu branch's images)
}
#: Printed (once per skipped real-data cell) by :func:`skip_real_data`; ``make test-gpu-path`` fails
#: when it appears in a lesson's output.
REAL_DATA_SKIP_MARKER = "[real data skipped]"


def scale_name() -> str:
    """``$CAMLIB_SCALE``: ``"full"`` (default) or ``"tiny"`` (CI: every branch, a few items/steps)."""
    name = os.environ.get("CAMLIB_SCALE", "").strip().lower() or "full"
    if name not in SCALES:
        raise ValueError(f"CAMLIB_SCALE must be one of {SCALES}, got {name!r}")
    return name


def is_tiny() -> bool:
    """True under ``CAMLIB_SCALE=tiny``: sizes are plumbing-only, so real-data claims are reported
    but not asserted (synthetic claims keep the smoke profile's sizes and are asserted)."""
    return scale_name() == "tiny"


def _env_switch(name: str) -> bool:
    """An on/off environment variable that is on when unset; anything unreadable is refused."""
    v = os.environ.get(name, "").strip().lower()
    if v in ("", "1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1 or 0 (true/false, yes/no, on/off); got {v!r}")


def real_data_enabled() -> bool:
    """``$CAMLIB_REAL_DATA`` (default on): ``0``/``false``/``no``/``off`` makes the real-dataset
    cells skip (``make claims-gpu`` runs only the synthetic, offline parts)."""
    return _env_switch("CAMLIB_REAL_DATA")


def progress_enabled() -> bool:
    """``$CAMLIB_PROGRESS`` (default on): ``0``/``false``/``no``/``off`` turns camlib's progress bars off.

    ``python -m coursekit build`` sets it to 0 in the kernels it runs: a ``tqdm.auto`` bar is a
    Jupyter widget, and a static HTML page keeps only its first frame ("0%"). This is the one place
    that decides whether camlib draws progress bars; :func:`progress_bar` asks it.
    """
    return _env_switch("CAMLIB_PROGRESS")


def progress_bar(iterable=None, **kwargs: Any):
    """A ``tqdm.auto`` progress bar (a widget in Jupyter, text elsewhere), off when
    :func:`progress_enabled` says so or when ``disable=True`` is passed. Every camlib bar is made here."""
    from tqdm.auto import tqdm
    kwargs["disable"] = bool(kwargs.get("disable", False)) or not progress_enabled()
    return tqdm(iterable, **kwargs)


def skip_real_data(why: str) -> None:
    """Say in one line why a real-dataset cell does not run (``REAL_DATA_SKIP_MARKER`` + ``why``)."""
    print(f"{REAL_DATA_SKIP_MARKER} {' '.join(str(why).split())}")


def real_data_ready(profile: "Profile", what: str) -> bool:
    """Whether a real-dataset cell about ``what`` runs: the gpu profile and ``CAMLIB_REAL_DATA`` on.
    Otherwise it prints one sentence why (:func:`skip_real_data`) and returns False. Lessons 03-06."""
    if profile.name != "gpu":
        skip_real_data(f"{what} runs in the gpu profile (CAMLIB_PROFILE=gpu, picked by itself on a CUDA "
                       f"machine); this run is {profile.name}.")
        return False
    if not real_data_enabled():
        skip_real_data(f"{what} is off because CAMLIB_REAL_DATA=0 (only the synthetic parts run).")
        return False
    return True


def lesson_settings(lesson: str, profile: str) -> dict[str, Any]:
    """A copy of lesson ``lesson``'s sizes in ``profile`` as the table above gives them (no tiny
    scale, no overrides): the one place lesson sizes live, read by :meth:`Profile.lesson` and by the
    recipes that repeat a lesson's run (``synthetic-gap`` is lesson 01's)."""
    if str(lesson) not in _LESSONS or profile not in PROFILES:
        raise ValueError(f"expected a lesson in {sorted(_LESSONS)} and a profile in {PROFILES}; "
                         f"got {lesson!r}, {profile!r}")
    return dict(_LESSONS[str(lesson)][profile])


def _tiny_sizes(lesson: str, table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    sizes = dict(table["gpu"])
    sizes.update({k: v for k, v in table["smoke"].items() if k not in _TINY_KEEP})
    sizes.update(_TINY.get(str(lesson), {}))
    return sizes


@dataclass(frozen=True)
class Profile:
    """A named compute budget plus the device and seed a run uses."""

    name: str
    device: torch.device
    seed: int = 0
    lessons: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: _LESSONS, repr=False)

    def lesson(self, lesson: str, **overrides: Any) -> dict[str, Any]:
        """The sizes lesson ``lesson`` uses under this profile (``overrides`` win)."""
        table = self.lessons.get(str(lesson))
        if table is None:
            raise ValueError(f"no sizes are defined for lesson {lesson!r}; known: {sorted(self.lessons)}")
        sizes = _tiny_sizes(lesson, table) if is_tiny() else dict(table[self.name])
        sizes.update(overrides)
        return sizes

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def describe(self) -> str:
        threads = torch.get_num_threads()
        extra = f", {torch.cuda.get_device_name(self.device)}" if self.is_cuda else f", {threads} CPU threads"
        return f"profile={self.name} device={self.device}{extra} seed={self.seed}"


def data_dir() -> Path:
    """Where datasets, caches and checkpoints live (the folder is not created here).

    ``$CAMLIB_DATA`` when set (on Colab, a Google Drive folder survives a disconnect); else
    ``<repo>/data`` when camlib runs from a checkout; else ``./data`` under the working directory.
    """
    env = os.environ.get("CAMLIB_DATA", "").strip()
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").exists() or (repo / ".git").exists():
        return repo / "data"
    return Path.cwd() / "data"


def cache_dir() -> Path:
    """Where decoded-image caches live (:mod:`camlib.data.cache`; the folder is not created here).

    ``$CAMLIB_CACHE`` when set; else, on Colab with the data folder on Google Drive (the set-up cell's
    USE_DRIVE), the runtime's local disk (:data:`camlib.colab.LOCAL_CACHE_DIR`): a cache is several GB
    read at random during training, which Drive's network mount serves far too slowly, and it is
    rebuilt from the archives (kept on Drive) after a disconnect. Else ``data_dir() / "cache"``.
    This is the one place that decides it.
    """
    env = os.environ.get("CAMLIB_CACHE", "").strip()
    if env:
        return Path(env).expanduser()
    from . import colab
    data = data_dir()
    if colab.in_colab() and colab.on_drive(data):
        return Path(colab.LOCAL_CACHE_DIR)
    return data / "cache"


def checkpoint_path(name: str, **key: Any) -> Path:
    """A checkpoint file for run ``name`` whose settings are ``key``: other settings, other file.

    Lessons train with ``resume=True`` on these paths, so a Colab disconnect loses nothing and a
    re-run of a finished cell loads the result instead of training again.
    """
    import hashlib
    import json
    from . import __version__
    blob = json.dumps({"v": __version__, "data": _generators_fingerprint(), **key}, sort_keys=True,
                      default=str).encode()
    return data_dir() / "checkpoints" / f"{name}-{hashlib.sha1(blob).hexdigest()[:10]}.pt"


def _generators_fingerprint() -> str:
    """A hash of the code that draws the synthetic datasets: change a generator, and every lesson
    checkpoint trained on its images gets a new file instead of being refused as another run's."""
    import hashlib
    here = Path(__file__).resolve().parent / "data"
    digest = hashlib.sha1()
    for name in ("synthetic.py", "scenes.py", "digits.py"):
        path = here / name
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()[:12]


def get_profile(name: str | None = None, *, device: str | None = None, seed: int = 0) -> Profile:
    """The profile to run under (``name`` or the default), with its device; seeds everything.

    >>> cfg = get_profile("smoke", device="cpu")
    >>> cfg.lesson("01")["steps"] > 0
    True
    """
    name = (name or default_profile_name()).lower()
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {name!r}")
    dev = get_device(device)
    seed_everything(seed)
    return Profile(name=name, device=dev, seed=seed)
