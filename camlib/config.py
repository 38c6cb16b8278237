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
from dataclasses import dataclass, field, replace
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
    # lesson 01: GAP versus GMP on the synthetic data (FINDINGS.md: ~64 steps already separate them).
    "01": {
        "smoke": dict(image_size=64, n_train=2048, n_val=256, steps=80, batch_size=64, seeds=[0], snapshots=[20, 80]),
        "cpu": dict(image_size=64, n_train=8000, n_val=1000, steps=80, batch_size=128, seeds=[0, 1], snapshots=[15, 40, 80]),
        "gpu": dict(image_size=64, n_train=20000, n_val=2000, steps=240, batch_size=128, seeds=[0, 1, 2], snapshots=[15, 60, 240]),
    },
    # lesson 02: the CAM derivation, on a GAP network trained briefly.
    "02": {
        "smoke": dict(image_size=64, n_train=1024, n_val=128, steps=30, batch_size=64),
        "cpu": dict(image_size=64, n_train=8000, n_val=500, steps=80, batch_size=128),
        "gpu": dict(image_size=64, n_train=10000, n_val=1000, steps=200, batch_size=128),
    },
    # lesson 03: localization evaluation of lesson 01's GAP network (same checkpoint), baselines.
    "03": {
        "smoke": dict(n_eval=256, example=3, surgery_models=["alexnet_gap", "googlenet_gap"]),
        "cpu": dict(n_eval=1000, example=3, surgery_models=["alexnet_gap", "vgg16_gap", "googlenet_gap", "resnet50_cam"]),
        "gpu": dict(n_eval=2000, example=3, surgery_models=["alexnet_gap", "vgg16_gap", "googlenet_gap", "resnet50_cam"]),
    },
    # lesson 04: the two-stage fine-grained pipeline on the "fine" preset (128-px frames, stage 1 sees
    # them at 48 px, crops at 64 px); on a GPU also CUB-200-2011 (cub_*: cache side, epochs, models).
    "04": {
        "smoke": dict(n_train=1280, n_test=256, steps=40, batch_size=64, input_size=48, crop_size=64, margin=0.2,
                      min_crop=64, min_gain=0.1, min_holds=0.5, bound_tol=0.01, cub_cache=448, cub_epochs=1,
                      cub_models=["googlenet_gap"], cub_margin=0.1),
        "cpu": dict(n_train=3000, n_test=600, steps=150, batch_size=128, input_size=48, crop_size=64, margin=0.2,
                    min_crop=64, min_gain=0.15, min_holds=0.8, bound_tol=0.01, cub_cache=448, cub_epochs=1,
                    cub_models=["googlenet_gap"], cub_margin=0.1),
        "gpu": dict(n_train=8000, n_test=2000, steps=300, batch_size=128, input_size=48, crop_size=64, margin=0.2,
                    min_crop=64, min_gain=0.15, min_holds=0.8, bound_tol=0.01, cub_cache=448, cub_epochs=20,
                    cub_models=["googlenet_gap", "resnet50_cam"], cub_margin=0.1),
    },
    # lesson 05: a linear SVM on frozen features (synthetic transfer, EfficientNet-Lite0 on digit scenes),
    # informative objects in scenes. n_source/n_new are images drawn before keeping one family (~half).
    "05": {
        "smoke": dict(n_source=2400, n_new=800, steps=40, batch_size=64, svm_C=0.1, min_probe_acc=0.6,
                      min_margin=0.15, digit_size=224, n_digits_train=128, n_digits_test=96, digit_C=0.1,
                      digit_margin=0.1, min_det_acc=0.7, min_peak=0.4, n_scenes_train=2048, n_scenes_test=256,
                      scene_steps=60, tolerance=3),
        "cpu": dict(n_source=6000, n_new=2000, steps=100, batch_size=128, svm_C=0.1, min_probe_acc=0.85,
                    min_margin=0.25, digit_size=224, n_digits_train=240, n_digits_test=240, digit_C=0.1,
                    digit_margin=0.2, min_det_acc=0.8, min_peak=0.6, n_scenes_train=4000, n_scenes_test=600,
                    scene_steps=200, tolerance=3),
        "gpu": dict(n_source=20000, n_new=6000, steps=300, batch_size=128, svm_C=0.1, min_probe_acc=0.85,
                    min_margin=0.25, digit_size=224, n_digits_train=1000, n_digits_test=500, digit_C=0.1,
                    digit_margin=0.2, min_det_acc=0.8, min_peak=0.6, n_scenes_train=10000, n_scenes_test=2000,
                    scene_steps=400, tolerance=3),
    },
    # lesson 06: class-specific units of lesson 01's GAP network; EfficientNet-Lite0 on the photos.
    "06": {
        "smoke": dict(n_train=2048, n_test=400, steps=80, batch_size=64, top_k=3, tolerance=2, n_random=300,
                      min_margin=0.1, n_show=6, show_classes=[0], image_size=224, top_k_imagenet=5,
                      imagenet_show=[0, 1], gpu_val_images=0),
        "cpu": dict(n_train=6000, n_test=1000, steps=100, batch_size=128, top_k=3, tolerance=2, n_random=1000,
                    min_margin=0.15, n_show=8, show_classes=[0, 5], image_size=224, top_k_imagenet=5,
                    imagenet_show=[0, 1, 2], gpu_val_images=0),
        "gpu": dict(n_train=20000, n_test=2000, steps=300, batch_size=128, top_k=3, tolerance=2, n_random=1000,
                    min_margin=0.15, n_show=8, show_classes=[0, 5], image_size=224, top_k_imagenet=5,
                    imagenet_show=[0, 1, 2], gpu_val_images=5000),
    },
    # (lessons 03-06 add their entries here, one block per lesson)
}


@dataclass(frozen=True)
class Profile:
    """A named compute budget plus the device and seed a run uses."""

    name: str
    device: torch.device
    seed: int = 0
    num_threads: int | None = None
    lessons: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: _LESSONS, repr=False)

    def lesson(self, lesson: str, **overrides: Any) -> dict[str, Any]:
        """The sizes lesson ``lesson`` uses under this profile (``overrides`` win)."""
        table = self.lessons.get(str(lesson))
        if table is None:
            raise ValueError(f"no sizes are defined for lesson {lesson!r}; known: {sorted(self.lessons)}")
        sizes = dict(table[self.name])
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


def checkpoint_path(name: str, **key: Any) -> Path:
    """A checkpoint file for run ``name`` whose settings are ``key``: other settings, other file.

    Lessons train with ``resume=True`` on these paths, so a Colab disconnect loses nothing and a
    re-run of a finished cell loads the result instead of training again.
    """
    import hashlib
    import json
    from . import __version__
    blob = json.dumps({"v": __version__, **key}, sort_keys=True, default=str).encode()
    return data_dir() / "checkpoints" / f"{name}-{hashlib.sha1(blob).hexdigest()[:10]}.pt"


def register_lesson_sizes(lesson: str, sizes: dict[str, dict[str, Any]]) -> None:
    """Add (or replace) the per-profile sizes of a lesson; every profile must be given."""
    missing = [p for p in PROFILES if p not in sizes]
    if missing:
        raise ValueError(f"sizes for lesson {lesson!r} lack the profiles {missing}; expected all of {PROFILES}")
    _LESSONS[str(lesson)] = {p: dict(sizes[p]) for p in PROFILES}


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


def with_profile(profile: Profile, **changes: Any) -> Profile:
    """A copy of ``profile`` with some fields changed."""
    return replace(profile, **changes)
