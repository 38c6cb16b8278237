"""Lesson 05's exercises: CAMs from a linear probe trained on GAP features (the paper's Sec. 4), as
scikit-learn gives the probe -- on standardized features, and with one row for two classes.

The references are :func:`camlib.features.probe_weights` (which :func:`camlib.features.fit_probe`
uses to fold scikit-learn's ``coef_`` / ``intercept_`` back onto the raw features) and
:func:`camlib.cam.class_activation_maps`.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ._engine import Mistake, Spec, gen, randint, random_features, random_sizes, run


def _maps(features: torch.Tensor, weight: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    from ..cam import class_activation_maps
    return class_activation_maps(features.double(), weight.double(), classes)[:, 0]


# ------------------------------------------------------------------------ standardized features
def _ref_standardized(features, coef, intercept, mean, scale, classes) -> torch.Tensor:
    """``M_c + b_c`` on the raw maps with the weights and bias of ``features.probe_weights``."""
    from ..features import probe_weights
    weight, bias = probe_weights(coef, intercept, mean, scale)
    return (_maps(features, weight, classes) + bias[classes][:, None, None]).to(features.dtype)


def _standardized_mistakes() -> tuple[Mistake, ...]:
    def folded(f, coef, icpt, mean, scale, c, *, w_div=True, mean_div=True, sign=-1.0, with_icpt=True,
               with_mean=True, bias_scale=1.0):
        coef, icpt, mean, scale = (torch.as_tensor(np.asarray(a), dtype=torch.float64) for a in (coef, icpt, mean, scale))
        weight = coef / scale if w_div else coef
        shift = (coef * (mean / scale if mean_div else mean)).sum(1)
        bias = (icpt if with_icpt else 0 * icpt) + (sign * shift if with_mean else 0 * shift)
        return _maps(f, weight, c) + bias_scale * bias[c][:, None, None]

    return (
        ("forgot to divide the weights by scale: coef acts on standardized features, so on the raw maps the "
         "weights are coef / scale", lambda *a: folded(*a, w_div=False)),
        ("left scale out altogether (weights coef, bias intercept - Σ_k coef_k mean_k): divide by scale in both",
         lambda *a: folded(*a, w_div=False, mean_div=False)),
        ("multiplied by scale: standardizing divides by it, so the weights are coef / scale",
         lambda f, co, i, m, s, c: folded(f, co, i, m, 1.0 / np.asarray(s), c)),
        ("left the intercept as it is: the mean goes into the bias, b_c - Σ_k coef_k mean_k / scale_k",
         lambda *a: folded(*a, with_mean=False)),
        ("added Σ_k coef_k mean_k / scale_k to the bias: (F - mean) subtracts it",
         lambda *a: folded(*a, sign=1.0)),
        ("subtracted Σ_k coef_k mean_k without dividing the means by scale", lambda *a: folded(*a, mean_div=False)),
        ("left out the intercept b_c: the map's mean must be the whole decision value",
         lambda *a: folded(*a, with_icpt=False)),
        ("returned the CAM without its bias: add b_c - Σ_k coef_k mean_k / scale_k to every location",
         lambda *a: folded(*a, with_icpt=False, with_mean=False)),
        ("divided the bias by h*w: the bias adds to every location as it is (then the mean of the map is the score)",
         lambda f, *a: folded(f, *a, bias_scale=1.0 / (f.shape[-2] * f.shape[-1]))),
        ("applied a ReLU: the map keeps its negative values", lambda *a: torch.relu(folded(*a))),
    )


def _standardized_spec(seed: int = 502) -> Spec:
    g = gen(seed)
    trials = []
    for t in range(4):
        b, k, h, w = random_sizes(g, t)
        n_classes = randint(g, 3, 6)                       # C >= 3: one row per class
        feats = random_features(g, b, k, h, w)
        coef = torch.randn(n_classes, k, generator=g).double().numpy()
        intercept = (torch.randn(n_classes, generator=g) * 0.5).double().numpy()
        mean = (0.3 + torch.rand(k, generator=g)).double().numpy()           # pooled means are positive
        scale = (0.2 + 2.0 * torch.rand(k, generator=g)).double().numpy()    # never 1: dividing matters
        classes = torch.randint(0, n_classes, (b,), generator=g)
        trials.append((feats, coef, intercept, mean, scale, classes))
    return Spec("check_standardized_cam", ("features", "coef", "intercept", "mean", "scale", "classes"), trials,
                _ref_standardized, _standardized_mistakes())


def check_standardized_cam(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``fn(features (B, K, h, w), coef (C, K), intercept (C,), mean (K,), scale (K,), classes (B,))
    -> maps (B, h, w)``.

    Lesson 05. A linear SVM trained on standardized pooled features ``(F - mean) / scale`` (NumPy
    arrays, as scikit-learn's ``StandardScaler`` and ``LinearSVC`` give them) scores class ``c`` as
    ``coef[c] . (F - mean) / scale + intercept[c]``. The answer is the map on the *raw* feature maps
    whose mean over the locations is that score: ``Σ_k (coef_k / scale_k) f_k + intercept -
    Σ_k coef_k mean_k / scale_k``, for ``c = classes[b]``.
    """
    run(_standardized_spec(), fn)


# ------------------------------------------------------------------------------- two classes
def _ref_binary(features, coef, classes) -> torch.Tensor:
    """The CAM of ``classes[b]`` with ``features.probe_weights``'s rows (``(-w, w)`` for two classes)."""
    from ..features import probe_weights
    weight, _ = probe_weights(coef)
    return _maps(features, weight, classes).to(features.dtype)


def _binary_mistakes() -> tuple[Mistake, ...]:
    def rows_of(coef, *, binary_sign=(-1.0, 1.0), stack_always=False):
        w = torch.as_tensor(np.asarray(coef), dtype=torch.float64)
        if w.shape[0] == 1 or stack_always:
            return torch.cat([binary_sign[0] * w, binary_sign[1] * w])
        return w

    def cam(f, coef, c, **kw):
        return _maps(f, rows_of(coef, **kw), c)

    return (
        ("used +coef[0] for both classes: with two classes coef_ holds one row, class 1's score; class 0's map "
         "uses -coef[0]", lambda f, co, c: cam(f, co, c, binary_sign=(1.0, 1.0))),
        ("gave class 0 the + sign and class 1 the - sign: scikit-learn's one row scores classes_[1]",
         lambda f, co, c: cam(f, co, c, binary_sign=(1.0, -1.0))),
        ("made the rows (-w, w) for every coef: only a (1, K) coef (two classes) has one row; with C >= 3 classes "
         "row c is class c's", lambda f, co, c: cam(f, co, c, stack_always=True)),
        ("applied a ReLU: the CAM keeps negative values (M_c = Σ_k w_k^c f_k)",
         lambda f, co, c: torch.relu(cam(f, co, c))),
        ("used class 0 for every image instead of classes[b]", lambda f, co, c: cam(f, co, torch.zeros_like(c))),
        ("computed the maps of every class: select the map of classes[b] for image b",
         lambda f, co, c: torch.einsum("bkhw,ck->bchw", f.double(), rows_of(co))),
    )


def _binary_spec(seed: int = 501) -> Spec:
    g = gen(seed)
    trials = []
    for t in range(6):
        b, k, h, w = random_sizes(g, t)
        multiclass = t in (2, 5)
        n_rows = randint(g, 3, 6) if multiclass else 1
        coef = torch.randn(n_rows, k, generator=g).double().numpy()
        n_classes = max(n_rows, 2)
        classes = torch.randint(0, n_classes, (b,), generator=g)
        classes[0], classes[1] = 0, n_classes - 1           # both classes (the first and the last) in every batch
        trials.append((random_features(g, b, k, h, w), coef, classes))
    return Spec("check_probe_cam", ("features", "coef", "classes"), trials, _ref_binary, _binary_mistakes())


def check_probe_cam(fn: Callable[[torch.Tensor, Any, torch.Tensor], torch.Tensor]) -> None:
    """Check ``fn(features (B, K, h, w), coef (1, K) or (C, K), classes (B,)) -> maps (B, h, w)``.

    Lesson 05 (the paper's Sec. 4): the CAM of class ``classes[b]`` from a linear SVM's ``coef_`` as
    scikit-learn gives it (a float64 NumPy array): one row per class for ``C >= 3`` classes, but a
    single row ``(1, K)`` for two classes -- the score of class 1, whose negative scores class 0.
    """
    try:
        run(_binary_spec(), fn)
    except IndexError as exc:
        exc.add_note("check_probe_cam: Looks like you indexed coef by the class: with two classes coef has one "
                     "row (class 1's score); class 0's weights are -coef[0].")
        raise


SPECS = {"check_standardized_cam": _standardized_spec, "check_probe_cam": _binary_spec}
