"""Generic localizable features (paper section 4): a frozen CAM network's GAP features, a linear
SVM trained on a new task, and the SVM's weights used as the CAM weights ``w_k^c``.

A network with a GAP head computes ``F_k = mean_{x,y} f_k(x, y)`` before its classifier. Freeze
it, take ``F`` for the images of a *new* task, and train a linear classifier on them: its scores
``S_c = sum_k w_k^c F_k + b_c`` have exactly the form of section 2, so ``M_c = sum_k w_k^c f_k`` is
a class activation map of the new classifier, although it never saw a box (or the new classes)
while the features were learned.

* :func:`freeze` and :func:`extract` -- frozen features ``(N, K)`` and, if asked, the maps
  ``(N, K, h, w)`` from one pass;
* :func:`fit_probe` -- scikit-learn's ``LinearSVC`` on (standardized) features; the returned
  :class:`Probe` folds the standardization back into per-unit weights, so that
  ``probe.weight @ F + probe.bias`` is the SVM's decision function on the *raw* features;
* :class:`FCNet` and :func:`extract_fc` -- the same backbone with a *fully connected* head instead of
  GAP, and its hidden layer's features: Table 5's comparison (GAP features against fc features, the
  same linear probe on both);
* :func:`probe_cams` -- the maps ``sum_k w_k^c f_k`` with the probe's weights (the same einsum as
  :func:`camlib.cam.class_activation_maps`); :func:`attach_probe` -- a :class:`~camlib.models.CAMNet`
  whose classifier *is* the probe, so every camlib tool (``cam.cams``, ``train.predict``, the
  two-stage pipeline) works on it unchanged.

Introduced in lesson 05.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .cam import class_activation_maps
from .inference import batches, evaluating, model_device
from .models import CAMNet, global_pool

__all__ = ["freeze", "extract", "Probe", "fit_probe", "probe_weights", "probe_cams", "attach_probe", "FCNet", "extract_fc"]


def freeze(model: nn.Module) -> nn.Module:
    """Switch ``model`` to eval mode and stop gradients to every parameter; returns it. Lesson 05."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def extract(model: CAMNet, data, *, batch_size: int = 128, device=None, maps: bool = False, indices=None,
            progress: bool = False) -> dict[str, torch.Tensor]:
    """The frozen network's pooled features for every image (one forward pass each).

    ``data``: an :class:`~camlib.data.InMemoryDataset` or any dataset of ``{"image", "label"}``
    dicts (fixed-size images). Returns on the CPU: ``features`` ``(N, K)`` -- the head's pooling
    (GAP: the mean of each map, section 2's ``F_k``), ``labels`` ``(N,)``, and with ``maps=True``
    also ``maps`` ``(N, K, h, w)`` (the ``f_k`` a probe's CAM is made from). The model is used in
    eval mode and left as it was. Lesson 05.
    """
    if not isinstance(model, CAMNet):
        raise ValueError(f"model must be a camlib CAMNet; got {type(model).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive; got {batch_size}")
    device = model_device(model, device)
    feats, labels, fmaps = [], [], []
    stream = batches(data, batch_size, device, indices)
    if progress:
        from .config import progress_bar
        total = -(-(len(data) if indices is None else len(indices)) // batch_size)
        stream = progress_bar(stream, total=total, desc="features", unit="batch")
    with evaluating(model):
        for b in stream:
            f = model.backbone(b["image"]).float()
            feats.append(global_pool(f, model.pool).cpu())
            labels.append(b["label"].cpu())
            if maps:
                fmaps.append(f.cpu())
    out = {"features": torch.cat(feats), "labels": torch.cat(labels)}
    if maps:
        out["maps"] = torch.cat(fmaps)
    return out


@dataclass
class Probe:
    """A linear classifier on frozen features, as CAM weights.

    ``weight`` ``(C, K)`` and ``bias`` ``(C,)`` act on the *raw* pooled features: ``scores = F @
    weight.T + bias`` equals the SVM's ``decision_function``. ``classes`` are the labels of the
    rows. A binary SVM has one weight vector ``w``; it becomes two rows ``(-w, w)`` (class 0 and
    class 1) with biases ``(-b, b)``, so every class has its own map. ``svm`` is the fitted
    scikit-learn estimator, ``mean``/``scale`` the standardization it was trained with.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    classes: np.ndarray
    svm: Any
    mean: torch.Tensor
    scale: torch.Tensor

    def decision(self, features: torch.Tensor) -> torch.Tensor:
        """Scores ``(N, C)`` of pooled features ``(N, K)``."""
        if features.ndim != 2 or features.shape[1] != self.weight.shape[1]:
            raise ValueError(f"features must be (N, {self.weight.shape[1]}); got {tuple(features.shape)}")
        return features.float() @ self.weight.T + self.bias

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """The predicted labels (from ``classes``) of pooled features ``(N, K)``."""
        return torch.as_tensor(self.classes)[self.decision(features).argmax(1)]

    def accuracy(self, features: torch.Tensor, labels) -> float:
        labels = torch.as_tensor(labels)
        return float((self.predict(features) == labels).float().mean())


def fit_probe(features: torch.Tensor, labels, *, C: float = 0.1, standardize: bool = True,
              max_iter: int = 5000, seed: int = 0) -> Probe:
    """Train a linear SVM (``sklearn.svm.LinearSVC``, one-vs-rest) on pooled features ``(N, K)``.

    With ``standardize`` each feature is centred and scaled to unit variance for the SVM (as one
    usually does); the returned weights undo it (``w_k / s_k``, and the bias absorbs the means), so
    the probe acts on raw features -- and so its weights are the ``w_k^c`` of a CAM on the raw
    feature maps. Paper section 4 ("the weights of the SVM ... generate the CAM"). Lesson 05.
    """
    from sklearn.svm import LinearSVC

    if not isinstance(features, torch.Tensor) or features.ndim != 2:
        raise ValueError(f"features must be a (N, K) tensor; got {tuple(getattr(features, 'shape', ()))}")
    y = np.asarray(torch.as_tensor(labels).cpu())
    if y.ndim != 1 or len(y) != len(features):
        raise ValueError(f"labels must be (N,) with N = {len(features)}; got shape {y.shape}")
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"a probe needs at least two classes in the labels; got {classes.tolist()}")
    if not C > 0:
        raise ValueError(f"C must be positive; got {C}")
    X = features.double().cpu()
    mean = X.mean(0) if standardize else torch.zeros(X.shape[1], dtype=torch.float64)
    scale = X.std(0).clamp_min(1e-6) if standardize else torch.ones(X.shape[1], dtype=torch.float64)
    Z = ((X - mean) / scale).numpy()
    svm = LinearSVC(C=C, max_iter=max_iter, random_state=seed, dual="auto")
    svm.fit(Z, y)
    weight, bias = probe_weights(svm.coef_, svm.intercept_, mean, scale)
    return Probe(weight.float(), bias.float(), svm.classes_, svm, mean.float(), scale.float())


def probe_weights(coef, intercept=None, mean=None, scale=None) -> tuple[torch.Tensor, torch.Tensor]:
    """A scikit-learn linear classifier's ``coef_`` / ``intercept_`` as CAM weights ``(C, K)`` and bias
    ``(C,)`` on the *raw* pooled features (float64), one row per class.

    * Two classes: scikit-learn keeps one row ``w`` (``(1, K)``), the score of class 1; class 0's row
      is ``-w`` (bias ``-b``), so the rows become ``(-w, w)``.
    * Trained on standardized features ``(F - mean) / scale``: ``w . (F - mean) / scale + b =
      (w / scale) . F + (b - sum_k w_k mean_k / scale_k)``, so the weights are ``w / scale`` and the
      mean goes into the bias (a constant: it moves no map location against another).

    ``intercept=None`` means zeros; ``mean``/``scale`` ``None``: not standardized. Used by
    :func:`fit_probe` and lesson 05's exercises.
    """
    coef = torch.as_tensor(np.asarray(coef), dtype=torch.float64)
    if coef.ndim == 1:
        coef = coef[None]
    if coef.ndim != 2:
        raise ValueError(f"coef must be (C, K) or (1, K) as scikit-learn gives it; got shape {tuple(coef.shape)}")
    k = coef.shape[1]
    icpt = (torch.zeros(coef.shape[0], dtype=torch.float64) if intercept is None
            else torch.as_tensor(np.atleast_1d(np.asarray(intercept)), dtype=torch.float64))
    mean = torch.zeros(k, dtype=torch.float64) if mean is None else torch.as_tensor(np.asarray(mean), dtype=torch.float64)
    scale = torch.ones(k, dtype=torch.float64) if scale is None else torch.as_tensor(np.asarray(scale), dtype=torch.float64)
    if icpt.shape != (coef.shape[0],) or mean.shape != (k,) or scale.shape != (k,):
        raise ValueError(f"for coef of shape {tuple(coef.shape)} expected intercept ({coef.shape[0]},), mean ({k},) "
                         f"and scale ({k},); got {tuple(icpt.shape)}, {tuple(mean.shape)}, {tuple(scale.shape)}")
    if not bool((scale > 0).all()):
        raise ValueError("scale must be positive (a standard deviation)")
    if coef.shape[0] == 1:                                  # binary: one vector scores class 1
        coef, icpt = torch.cat([-coef, coef]), torch.cat([-icpt, icpt])
    weight = coef / scale                                    # fold the standardization back
    bias = icpt - (coef * (mean / scale)).sum(1)
    return weight, bias


def probe_cams(maps: torch.Tensor, probe: Probe, classes=None) -> torch.Tensor:
    """``M_c = sum_k w_k^c f_k`` with the probe's weights, for feature maps ``(B, K, h, w)``.

    ``classes`` are *row indices* of the probe (``0 .. C-1``, in the order of ``probe.classes``);
    see :func:`camlib.cam.class_activation_maps` for the accepted forms. Lesson 05.
    """
    if not isinstance(probe, Probe):
        raise ValueError(f"probe must be a Probe from fit_probe; got {type(probe).__name__}")
    return class_activation_maps(maps, probe.weight.to(maps.device), classes)


def attach_probe(model: CAMNet, probe: Probe) -> CAMNet:
    """A frozen copy of ``model`` whose classifier is the probe (weights and bias), so that its
    logits are the SVM's scores and its CAMs the probe's maps. Needs a GAP head (the probe was
    trained on means). Output ``j`` is ``probe.classes[j]``. Lesson 05.
    """
    if not isinstance(model, CAMNet):
        raise ValueError(f"model must be a camlib CAMNet; got {type(model).__name__}")
    if probe.weight.shape[1] != model.num_features:
        raise ValueError(f"the probe has {probe.weight.shape[1]} inputs but the model gives "
                         f"{model.num_features} features")
    net = copy.deepcopy(model)
    if net.pool != "gap":
        raise ValueError(f"attach_probe needs a GAP head; the model pools with {net.pool!r}")
    net.dropout = nn.Identity()
    lin = nn.Linear(net.num_features, probe.weight.shape[0])
    with torch.no_grad():
        lin.weight.copy_(probe.weight)
        lin.bias.copy_(probe.bias)
    net.classifier = lin.to(next(model.parameters()).device)
    net.name = f"{model.name}+probe"
    return freeze(net)


class FCNet(nn.Module):
    """``backbone`` with a fully connected head instead of GAP: the maps ``(K, h, w)`` are flattened,
    a hidden layer of ``hidden`` units (ReLU) follows, then a linear classifier -- the shape of
    AlexNet's fc6/fc7 head, whose features Table 5 of the paper compares with GAP features.

    ``forward`` returns :class:`~camlib.models.CAMOutput` ``(logits, maps)`` so that
    :func:`camlib.train.fit` trains it like any CAMNet; it has no CAM (the flatten mixes locations).
    The input size is fixed by ``feature_shape`` ``(K, h, w)``. Lesson 05 (Table 5 analogue).
    """

    def __init__(self, backbone: nn.Module, feature_shape, num_classes: int, hidden: int = 256, dropout: float = 0.0):
        super().__init__()
        try:
            k, h, w = (int(v) for v in feature_shape)
        except (TypeError, ValueError):
            raise ValueError(f"feature_shape must be (K, h, w); got {feature_shape!r}") from None
        if min(k, h, w, hidden, num_classes) < 1:
            raise ValueError(f"feature_shape, hidden and num_classes must be positive; got {(k, h, w)}, {hidden}, "
                             f"{num_classes}")
        self.backbone, self.feature_shape = backbone, (k, h, w)
        self.fc = nn.Linear(k * h * w, hidden)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_classes)
        self.name = "fc-head"

    def hidden_features(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden layer's activations ``(B, hidden)``: the "fc" features."""
        f = self.backbone(x)
        if tuple(f.shape[1:]) != self.feature_shape:
            raise ValueError(f"the backbone gave maps {tuple(f.shape[1:])}, but this head expects {self.feature_shape} "
                             "(an FC head fixes the input size)")
        return torch.relu(self.fc(f.flatten(1)))

    def forward(self, x: torch.Tensor):
        from .models import CAMOutput
        return CAMOutput(self.classifier(self.dropout(self.hidden_features(x))), self.backbone(x))


def extract_fc(model: FCNet, data, *, batch_size: int = 128, device=None) -> dict[str, torch.Tensor]:
    """:func:`extract` for an :class:`FCNet`: ``{"features" (N, hidden), "labels" (N,)}`` on the CPU,
    the hidden layer's activations (the "fc7" of Table 5). Lesson 05."""
    if not isinstance(model, FCNet):
        raise ValueError(f"model must be a camlib FCNet; got {type(model).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive; got {batch_size}")
    device = model_device(model, device)
    feats, labels = [], []
    with evaluating(model):
        for b in batches(data, batch_size, device):
            feats.append(model.hidden_features(b["image"]).float().cpu())
            labels.append(b["label"].cpu())
    return {"features": torch.cat(feats), "labels": torch.cat(labels)}
