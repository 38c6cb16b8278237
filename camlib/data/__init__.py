"""Datasets: the procedural synthetic data (offline workhorse) and loaders of the real benchmarks.

Every dataset returns dicts ``{"image", "label", "boxes", "mask"?}``; see CONTRIBUTING.md.
"""

from .memory import IMAGENET_MEAN, IMAGENET_STD, SYNTH_MEAN, SYNTH_STD, InMemoryDataset
from .synthetic import SyntheticSpec, make_synthetic, render_synthetic

# Real datasets (imported on first use: they pull in torchvision's transforms and PIL).
_LAZY = {"CUB200": "cub", "ILSVRCVal": "ilsvrc", "OxfordPets": "pets", "RealPhotos": "photos",
         "collate_samples": "common", "eval_transform": "common",
         "train_transform": "common", "DatasetNotFoundError": "common"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["InMemoryDataset", "SyntheticSpec", "make_synthetic", "render_synthetic",
           "IMAGENET_MEAN", "IMAGENET_STD", "SYNTH_MEAN", "SYNTH_STD", *_LAZY]
