"""Datasets: the procedural synthetic data (offline workhorse) and loaders of the real benchmarks.

Every dataset returns dicts ``{"image", "label", "boxes", "mask"?}``; see CONTRIBUTING.md.
"""

from .memory import IMAGENET_MEAN, IMAGENET_STD, SYNTH_MEAN, SYNTH_STD, InMemoryDataset
from .synthetic import SyntheticSpec, make_synthetic, render_synthetic

__all__ = ["InMemoryDataset", "SyntheticSpec", "make_synthetic", "render_synthetic",
           "IMAGENET_MEAN", "IMAGENET_STD", "SYNTH_MEAN", "SYNTH_STD"]
