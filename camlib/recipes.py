"""Named training recipes: the paper's setups (and the lessons' synthetic ones) in one command.

``python -m camlib.recipes --recipe NAME --profile smoke|cpu|gpu`` (or under ``torchrun
--nproc_per_node=N``) builds the recipe's data (cached, :mod:`camlib.data.cache`), its model, its
GPU-side augmentation, trains with :func:`camlib.train.fit` (checkpointed: ``--resume`` continues
after a disconnect) and evaluates classification and localization, printing one JSON report.

Each :class:`Recipe` carries its hyper-parameters *with their source*, the numbers it is expected
to reach (:class:`Expected`, each with its source and whether it was checked against the text), and
a time (:class:`Timing`: measured on a named machine, or an estimate, marked as such).

Sources:

* **Paper** (Zhou et al. 2016, section 3; ``../shared/PAPER.md``): GoogLeNet-GAP fine-tuned on
  ILSVRC with the official Caffe solver: SGD, base lr 0.001, x0.1 every 40k iterations, 160k
  iterations, momentum 0.9, weight decay 5e-4, batch 64, 224 crops with mirroring.
* **Choe et al. 2020** ("Evaluating WSOL methods right", CVPR; code github.com/clovaai/wsolevaluation):
  ``data_loaders.py`` trains on Resize(256, 256) -> RandomCrop(224) -> flip and tests on
  Resize(224, 224); ``main.py`` uses SGD with Nesterov momentum 0.9 and a 10x learning rate on the
  fresh layers (``lr_classifier_ratio``, ``config.py``: the added conv + classifier of VGG, layer4
  + fc of ResNet) and multiplies the lr by 0.1 every ``lr_decay_frequency`` epochs. Their README's
  CUB command for VGG16-CAM: batch 32, 50 epochs, lr 1.268269e-5, decay every 15 epochs, weight
  decay 5e-4. Their per-architecture optimum for ResNet50 and InceptionV3 lives in a spreadsheet
  we could not read; the values used here come from third-party scripts that reuse them and are
  marked *unverified*. Their "Inception" is InceptionV3, not the paper's GoogLeNet.

Introduced in lesson 03 (GPU path); the synthetic recipes are lesson 01's setup.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from . import config as _config
from . import distributed as _dist
from . import models as _models
from . import train as _train
from .data.synthetic import SyntheticSpec
from .evaluation import evaluate_localization, evaluate_stream  # noqa: F401  (recipes.run and lesson 03)

#: Training images/s of the model alone on one H100 (``camlib.timing``, the one table of rates). The
#: GPU times of the recipes are *estimates* derived from them, not measurements.
from .timing import H100_IMAGES_PER_S  # noqa: E402

CPU_MACHINE = "2-core CPU (the course's build machine; other jobs were running)"


@dataclass(frozen=True)
class Expected:
    """A number the recipe should reach, where it comes from, and whether we checked the source."""

    metric: str
    value: float
    source: str
    verified: bool
    note: str = ""
    unit: str = "%"                    # "%" or "fraction"


@dataclass(frozen=True)
class Timing:
    """How long the recipe takes: ``kind`` is ``"measured"`` (on ``machine``) or ``"estimate"``."""

    seconds: float | None
    kind: str
    machine: str
    how: str


@dataclass(frozen=True)
class Recipe:
    """One named setup: data, model, hyper-parameters, augmentation, expectations, time."""

    name: str
    summary: str
    dataset: str                       # "synthetic" | "cub" | "ilsvrc"
    model: str                         # a key of camlib.models.BUILDERS
    model_kwargs: dict[str, Any]
    train: dict[str, Any]              # TrainConfig keyword arguments (incl. batch_size, lr)
    epochs: float | None               # training length in epochs (else ``steps``)
    steps: int | None
    image_size: int                    # the model's input side
    cache_size: int | None = None      # training images cached at this side, then cropped
    augment: dict[str, Any] | None = None   # GPUAugment keyword arguments
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    expected: tuple[Expected, ...] = ()
    time: Timing | None = None
    sources: tuple[str, ...] = ()

    def for_profile(self, profile: str) -> dict[str, Any]:
        """The run's settings under ``profile`` (the recipe's overrides for it applied)."""
        if profile not in _config.PROFILES:
            raise ValueError(f"profile must be one of {_config.PROFILES}; got {profile!r}")
        s = {"batch_size": self.train["batch_size"], "steps": self.steps, "epochs": self.epochs,
             "n_train": None, "n_val": None, "image_size": self.image_size, "cache_size": self.cache_size,
             "weights": None}
        s.update(self.profiles.get(profile, {}))
        if _config.is_tiny():     # CAMLIB_SCALE=tiny: the profile's code path, a few images and steps
            s.update(TINY)
        return s


# ------------------------------------------------------------------------------------ the recipes

_CHOE = "Choe et al. 2020 (CVPR), clovaai/wsolevaluation"
_CHOE_TRAIN = dict(optimizer="sgd", nesterov=True, schedule="step", head_lr_mult=10.0, amp="auto",
                   checkpoint_every=200)
_CUB_PROFILES = {
    "smoke": dict(n_train=16, n_val=8, steps=2, batch_size=4, image_size=64, cache_size=72),
    "cpu": dict(n_train=256, n_val=64, steps=8, batch_size=8, image_size=224, cache_size=256),
    "gpu": dict(weights="DEFAULT"),
}


#: What ``CAMLIB_SCALE=tiny`` changes in any recipe (``make test-gpu-path``: same branches, the
#: gpu profile's weights and image sizes, a few images and steps).
TINY = dict(n_train=8, n_val=4, steps=2, batch_size=2)


def _h100_estimate(model: str, images: int, what: str) -> Timing:
    rate = H100_IMAGES_PER_S[model]
    return Timing(round(images / rate, 1), "estimate", "one H100 (not measured here)",
                  f"{images:,} training images ({what}) / {rate:,.0f} images/s, the model-only training "
                  "rate on an H100 given in the issue; excludes caching (once) and evaluation")


def _cub(name: str, model: str, summary: str, lr: float, wd: float, head: tuple[str, ...],
         lr_note: str, lr_verified: bool, expected: tuple[Expected, ...]) -> Recipe:
    batch, epochs = 32, 50
    images = epochs * (5994 // batch) * batch
    return Recipe(
        name=name, summary=summary, dataset="cub", model=model, model_kwargs={"num_classes": 200},
        train=dict(_CHOE_TRAIN, batch_size=batch, lr=lr, weight_decay=wd, head_params=head),
        epochs=epochs, steps=None, image_size=224, cache_size=256,
        augment=dict(mode="crop", flip=0.5), profiles=_CUB_PROFILES, expected=expected,
        time=_h100_estimate(model, images, f"{epochs} epochs of 5,994"),
        sources=(f"{_CHOE}: batch 32, 50 epochs, SGD Nesterov 0.9, x10 lr on fresh layers, x0.1 every 15 epochs, "
                 "Resize 256 -> RandomCrop 224 + flip; test Resize 224",
                 f"lr {lr:g}, weight decay {wd:g}: {lr_note}" + ("" if lr_verified else " [unverified]")),
    )


def _decay_epochs(r: Recipe, every: int) -> Recipe:
    return replace(r, train=dict(r.train, decay_every_epochs=every))


RECIPES: dict[str, Recipe] = {}


def _add(r: Recipe) -> None:
    RECIPES[r.name] = r


_SYNTH_SECONDS, _SYNTH_BOX = {"gap": 270.0, "gmp": 260.0}, {"gap": 0.70, "gmp": 0.19}  # Timing.how; synthetic.py

for _pool in ("gap", "gmp"):
    _add(Recipe(
        name=f"synthetic-{_pool}",
        summary=f"Lesson 01's small CNN with a {_pool.upper()} head on its procedural data (96 px, 8 classes)",
        dataset="synthetic", model="small_cnn", model_kwargs={"num_classes": 8, "pool": _pool},
        train=dict(batch_size=128, lr=2e-3, optimizer="adam", schedule="onecycle", checkpoint_every=20),
        epochs=None, steps=None, image_size=SyntheticSpec.preset(_config.lesson_settings("01", "cpu")["data"]).image_size,
        # lesson 01's own sizes and data (camlib.config, lesson "01"), so the recipe is the lesson's main run
        profiles={p: {k: _config.lesson_settings("01", p)[k] for k in ("n_train", "n_val", "steps", "batch_size", "data")}
                  for p in _config.PROFILES},
        expected=(Expected("gt_known_box_acc_paper_rule", _SYNTH_BOX[_pool],
                           "camlib/data/synthetic.py, preset 'tinted' (seed 0, 8,000 images, step 160 of a 480-step "
                           "run, 2026-11-28)", True,
                           "GAP > GMP is lesson 01's claim at its length and along its longer curve", "fraction"),
                  Expected("acc", 0.99, "camlib/data/synthetic.py, preset 'tinted' (both heads 0.99 at step 160)", True,
                           "cpu profile", "fraction")),
        time=Timing(_SYNTH_SECONDS[_pool], "estimate", CPU_MACHINE,
                    "python -m camlib.recipes --recipe synthetic-%s --profile cpu: scaled from a probe's fit of the "
                    "same network and data (480 steps of 128 at 96 px in about 780 s on one core, 2026-11-28) to "
                    "160 steps on two cores, plus data and evaluation" % _pool),
        sources=("../shared/FINDINGS.md: Adam + one-cycle, peak lr 2e-3, batch 128",),
    ))

_add(_decay_epochs(_cub(
    "cub-vgg16-gap", "vgg16_gap", "VGGnet-GAP (paper section 3 surgery) fine-tuned on CUB-200-2011, Choe et al.'s protocol",
    lr=1.268269e-5, wd=5e-4, head=("backbone.1.", "classifier."),
    lr_note="README of clovaai/wsolevaluation, CUB VGG16-CAM command", lr_verified=True,
    expected=(Expected("MaxBoxAccV2", 63.7, f"{_CHOE}, vanilla CAM, VGG16, CUB (PAPER.md)", True),)), 15))
_add(_decay_epochs(_cub(
    "cub-resnet50-cam", "resnet50_cam", "ResNet50-CAM (stride-1 layer4, 14x14 maps) fine-tuned on CUB-200-2011",
    lr=1.7e-4, wd=1e-4, head=("backbone.7.", "classifier."),
    lr_note="unverified: 1.7e-4 / wd 1e-4 from third-party scripts reusing Choe et al.'s ResNet50 settings",
    lr_verified=False,
    expected=(Expected("MaxBoxAccV2", 63.0, f"{_CHOE}, vanilla CAM, ResNet50, CUB (PAPER.md)", True),)), 15))
_add(_decay_epochs(_cub(
    "cub-googlenet-gap", "googlenet_gap", "GoogLeNet-GAP (paper section 3 surgery) fine-tuned on CUB-200-2011",
    lr=2.24844746e-3, wd=5e-4, head=("backbone.1.", "classifier."),
    lr_note="unverified: Choe et al.'s InceptionV3-CAM value (2.248e-3, wd 5e-4) as reused by third-party "
            "scripts; GoogLeNet is a different network, so this is a starting point, not a tuned value",
    lr_verified=False,
    expected=(Expected("acc", 63.0, "Zhou et al. 2016 Table 4, GoogLeNet-GAP on full images (their "
                       "features + linear SVM, not fine-tuning)", True, "a different training protocol"),
              Expected("gt_known_box_acc_paper_rule", 41.0, "Zhou et al. 2016 section 4.1", False,
                       "PAPER.md marks this figure unverified"),
              Expected("MaxBoxAccV2", 56.7, f"{_CHOE}, vanilla CAM, InceptionV3 (not GoogLeNet), CUB", True,
                       "a different backbone: an anchor, not a target"))), 15))
_add(Recipe(
    name="ilsvrc-googlenet-gap",
    summary="GoogLeNet-GAP fine-tuned on ILSVRC 2012 with the paper's Caffe solver; evaluated on ILSVRC val",
    dataset="ilsvrc", model="googlenet_gap", model_kwargs={"num_classes": 1000},
    train=dict(batch_size=64, lr=1e-3, optimizer="sgd", schedule="step", decay_every=40_000, weight_decay=5e-4,
               checkpoint_every=1000, amp="auto"),
    epochs=None, steps=160_000, image_size=224, cache_size=256, augment=dict(mode="crop", flip=0.5),
    profiles={"smoke": dict(n_train=16, n_val=8, steps=2, batch_size=4, image_size=64, cache_size=72),
              "cpu": dict(n_train=256, n_val=64, steps=8, batch_size=8, image_size=224, cache_size=256),
              "gpu": dict(weights="DEFAULT")},
    expected=(Expected("top1_cls_error", 35.0, "Zhou et al. 2016 Table 1 (PAPER.md)", True),
              Expected("top5_cls_error", 13.2, "Zhou et al. 2016 Table 1 (PAPER.md)", True),
              Expected("top1_loc_error", 56.40, "Zhou et al. 2016 Table 2 (PAPER.md)", True),
              Expected("top5_loc_error", 43.00, "Zhou et al. 2016 Table 2 (PAPER.md)", True),
              Expected("MaxBoxAccV2", 63.4, f"{_CHOE}, vanilla CAM, InceptionV3 (not GoogLeNet), ImageNet", True,
                       "a different backbone: an anchor, not a target")),
    time=_h100_estimate("googlenet_gap", 160_000 * 64, "160k iterations of batch 64"),
    sources=("Zhou et al. 2016 / PAPER.md: official GoogLeNet-CAM Caffe solver",
             "the ILSVRC train cache at 256 px takes about 252 GB of disk (1.28M x 3 x 256 x 256 bytes)"),
))

def get(name: str) -> Recipe:
    """The recipe called ``name``."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; expected one of {sorted(RECIPES)}")
    return RECIPES[name]


# ------------------------------------------------------------------------------------ data

def build_data(recipe: Recipe, settings: dict[str, Any], *, progress: bool = True):
    """``(train, val)`` datasets of ``recipe`` under ``settings`` (:meth:`Recipe.for_profile`)."""
    from .data.cache import FirstN, cached
    if recipe.dataset == "synthetic":
        from .data import make_synthetic
        spec = settings.get("data", "gapgmp")
        return make_synthetic(settings["n_train"], seed=0, spec=spec), make_synthetic(settings["n_val"], seed=99, spec=spec)
    size, csize = settings["image_size"], settings["cache_size"] or settings["image_size"]
    if recipe.dataset == "cub":
        from .data.cub import CUB200
        tr_raw, va_raw = CUB200(split="train", download=True, progress=progress), CUB200(split="test")
    elif recipe.dataset == "ilsvrc":
        from .data.ilsvrc import ILSVRCTrain, ILSVRCVal
        tr_raw, va_raw = ILSVRCTrain(), ILSVRCVal()
    else:
        raise ValueError(f"unknown dataset {recipe.dataset!r} in recipe {recipe.name!r}")
    if settings["n_train"]:
        tr_raw = FirstN(tr_raw, settings["n_train"])
    if settings["n_val"]:
        va_raw = FirstN(va_raw, settings["n_val"])
    return cached(tr_raw, csize, progress=progress), cached(va_raw, size, progress=progress)


def compare(expected: tuple[Expected, ...], ours: dict[str, float]) -> list[dict[str, Any]]:
    """Each expected number beside ours (in the expected number's unit), where we measured it."""
    rows = []
    for e in expected:
        if e.metric in ours:
            v = ours[e.metric] * (100.0 if e.unit == "%" else 1.0)
            rows.append({"metric": e.metric, "ours": round(v, 4), "expected": e.value, "unit": e.unit,
                         "source": e.source, "verified": e.verified, "note": e.note})
    return rows


# ------------------------------------------------------------------------------------ running

def fit_schedule(train: dict[str, Any], n_images: int, epochs: float | None) -> tuple[int | None, dict[str, Any]]:
    """A recipe's training length in epochs as :func:`camlib.train.fit` counts it, in steps.

    ``train``: the recipe's ``train`` settings (with the ``batch_size`` used); ``n_images``: the
    training set's size. An epoch is ``train.steps_per_epoch(n_images, batch_size)`` steps (whole
    batches, as ``fit`` draws them). Returns ``(steps, fit_kwargs)``: ``steps`` is ``epochs`` in steps
    (``None`` when ``epochs`` is), and ``fit_kwargs`` the settings with ``decay_every_epochs`` turned
    into ``decay_every`` steps (for the ``"step"`` schedule; dropped otherwise). Used by :func:`run`
    and lesson 04's CUB cell."""
    cfg = dict(train)
    if "batch_size" not in cfg:
        raise ValueError(f"train must give the batch_size; got keys {sorted(cfg)}")
    per_epoch = _train.steps_per_epoch(int(n_images), int(cfg["batch_size"]))
    every = cfg.pop("decay_every_epochs", None)
    if every is not None and cfg.get("schedule") == "step":
        cfg["decay_every"] = max(1, int(round(every * per_epoch)))
    steps = None if epochs is None else max(1, int(round(epochs * per_epoch)))
    return steps, cfg


def run(name: str, profile: str = "smoke", *, device=None, steps: int | None = None, batch_size: int | None = None,
        checkpoint: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
        compile: bool = False, weights: str | None = "profile", seed: int = 0) -> dict[str, Any]:
    """Train and evaluate recipe ``name`` under ``profile``; return the report (a JSON-able dict).

    ``weights``: torchvision weights for the backbone (``"DEFAULT"`` downloads ImageNet weights);
    ``"profile"`` uses the profile's choice (the gpu profile fine-tunes from ImageNet weights, as
    the paper and Choe et al. do; smoke and cpu start from random weights, offline).
    """
    from .data.augment import GPUAugment
    recipe = get(name)
    s = recipe.for_profile(profile)
    if steps is not None:
        s["steps"] = int(steps)
    if batch_size is not None:
        s["batch_size"] = int(batch_size)
    info = _dist.init_from_env(device if device is not None else _config.get_device())
    dev = info.device
    t0 = time.perf_counter()
    tr, va = build_data(recipe, s, progress=progress and _dist.is_main())
    t_data = time.perf_counter() - t0
    kw = dict(recipe.model_kwargs)
    w = s["weights"] if weights == "profile" else weights
    if recipe.model != "small_cnn" and w not in (None, "none", "None"):
        kw["weights"] = w
    torch.manual_seed(seed)
    model = _models.build(recipe.model, **kw)
    steps_in_epochs, cfg = fit_schedule(dict(recipe.train, batch_size=s["batch_size"]), len(tr), recipe.epochs)
    total = s["steps"] if s["steps"] is not None else steps_in_epochs
    aug = GPUAugment.like(tr, s["image_size"], seed=seed, **recipe.augment) if recipe.augment else None
    if checkpoint is None:
        checkpoint = _config.data_dir() / "checkpoints" / f"{name}-{profile}{'-tiny' if _config.is_tiny() else ''}.pt"
    t1 = time.perf_counter()
    hist = _train.fit(model, tr, None, steps=total, device=dev, checkpoint=checkpoint, resume=resume,
                      progress=progress, augment=aug, compile=compile, seed=seed, **cfg)
    t_fit = time.perf_counter() - t1
    ev = evaluate_localization(model, va, device=dev, batch_size=max(64, cfg["batch_size"]))
    t_total = time.perf_counter() - t0
    return {"recipe": name, "profile": profile, "device": str(dev), "world_size": info.world_size,
            "steps": total, "batch_size": cfg["batch_size"], "n_train": len(tr), "n_val": len(va),
            "train_loss": hist.rows[-1]["train_loss"] if hist.rows else None, "eval": ev,
            "compare": compare(recipe.expected, ev),
            "seconds": {"data": round(t_data, 2), "fit": round(t_fit, 2), "total": round(t_total, 2)},
            "checkpoint": str(checkpoint)}


def _length(recipe: Recipe) -> str:
    if recipe.epochs:
        return f"{recipe.epochs:g} epochs"
    if recipe.steps:
        return f"{recipe.steps:,} steps"
    return "steps " + ", ".join(f"{p} {o['steps']}" for p, o in recipe.profiles.items() if "steps" in o)


def describe(recipe: Recipe) -> str:
    """A few lines on a recipe: what it trains, with what, what to expect, how long."""
    lines = [f"{recipe.name}: {recipe.summary}",
             f"  model {recipe.model} {recipe.model_kwargs}; train {recipe.train}; "
             f"{_length(recipe)}; "
             f"input {recipe.image_size}px" + (f" (cached at {recipe.cache_size}px)" if recipe.cache_size else ""),
             f"  augment {recipe.augment}"]
    for e in recipe.expected:
        lines.append(f"  expect {e.metric} {e.value} ({e.source}){'' if e.verified else ' [unverified]'}"
                     + (f" -- {e.note}" if e.note else ""))
    if recipe.time is not None:
        secs = recipe.time.seconds
        lines.append(f"  time ({recipe.time.kind}, {recipe.time.machine}): "
                     f"{'n/a' if secs is None else f'{secs:.0f} s'} -- {recipe.time.how}")
    for src in recipe.sources:
        lines.append(f"  source: {src}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The command line of ``python -m camlib.recipes`` (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m camlib.recipes", description="Train a named camlib recipe.")
    ap.add_argument("--recipe", help=f"one of: {', '.join(sorted(RECIPES))}")
    ap.add_argument("--list", action="store_true", help="describe every recipe and exit")
    ap.add_argument("--profile", default=None, choices=_config.PROFILES, help="default: $CAMLIB_PROFILE, else gpu/cpu")
    ap.add_argument("--device", default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--checkpoint", default=None, help="default: data/checkpoints/<recipe>-<profile>.pt")
    ap.add_argument("--resume", action="store_true", help="continue from the checkpoint when it exists")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--weights", default="profile", help="torchvision weights (DEFAULT, none); default: the profile's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the report to this file")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    if a.list:
        print("\n\n".join(describe(r) for r in RECIPES.values()))
        return 0
    if not a.recipe:
        ap.error("--recipe is required (or --list)")
    if a.recipe not in RECIPES:
        ap.error(f"unknown recipe {a.recipe!r}; expected one of {sorted(RECIPES)}")
    profile = a.profile or _config.default_profile_name()
    from .data.common import DatasetNotFoundError
    from .data.download import ChecksumError, DownloadError
    try:
        report = run(a.recipe, profile, device=a.device, steps=a.steps, batch_size=a.batch_size,
                     checkpoint=a.checkpoint, resume=a.resume, progress=not a.no_progress, compile=a.compile,
                     weights=a.weights, seed=a.seed)
        if _dist.is_main():
            text = json.dumps(report, indent=1)
            print(text)
            if a.json:
                Path(a.json).parent.mkdir(parents=True, exist_ok=True)
                Path(a.json).write_text(text)
    except (DatasetNotFoundError, DownloadError, ChecksumError) as e:
        print(f"python -m camlib.recipes: {e}", file=sys.stderr)
        return 2
    finally:
        _dist.cleanup()
    return 0


__all__ = ["Recipe", "Expected", "Timing", "RECIPES", "H100_IMAGES_PER_S", "TINY", "get", "run", "fit_schedule",
           "build_data", "evaluate_localization", "evaluate_stream", "compare", "describe", "main"]


if __name__ == "__main__":
    sys.exit(main())
