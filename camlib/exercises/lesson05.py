"""Lesson 05's exercises: a CAM from a linear probe's weights (the paper's Sec. 4)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ._engine import Mistake, Spec, gen, randint, random_features, random_sizes, run, _as_indices, _as_number  # noqa: F401
from .lesson02 import _cam_mistakes, _cam_trials, _ref_cam


def check_probe_cam(fn: Callable[[torch.Tensor, Any, torch.Tensor], torch.Tensor]) -> None:
    """Check ``fn(features (B, K, h, w), svm_coef (C, K), classes (B,)) -> maps (B, h, w)``.

    Lesson 05 (the paper's Sec. 4): a linear probe (SVM) trained on GAP features gives the
    ``w_k^c`` of a new CAM. ``svm_coef`` comes as scikit-learn gives it: a float64 NumPy array.
    """
    run(_probe_cam_spec(), fn)


def _probe_cam_spec(seed: int = 501) -> Spec:
    return Spec("check_probe_cam", ("features", "svm_coef", "classes"), _cam_trials(seed, numpy_weights=True),
                _ref_cam, _cam_mistakes("svm_coef"))




SPECS = {"check_probe_cam": _probe_cam_spec}
