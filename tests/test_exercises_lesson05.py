"""Lesson 05's checks on linear probes over GAP features: a probe trained on standardized features
(check_standardized_cam) and scikit-learn's one-row binary coef_ (check_probe_cam). Right answers
written otherwise are accepted, each plausible mistake is named, in the notebook and in the grader,
and the references agree with scikit-learn's own decision_function."""

import numpy as np
import pytest
import torch

from camlib import exercises as ex
from camlib import features
from exercise_checks import accepts, rejects


def weighted_sum(f, rows, classes):
    """Σ_k rows[classes[b], k] f_{b,k}, by loops."""
    out = torch.zeros(f.shape[0], f.shape[2], f.shape[3], dtype=torch.float64)
    for b in range(f.shape[0]):
        for k in range(f.shape[1]):
            out[b] += float(rows[int(classes[b]), k]) * f[b, k].double()
    return out


# --------------------------------------------------------------------------- standardized probe
def standardized_per_location(f, coef, icpt, mean, scale, classes):
    """Standardize every location of the maps, then the SVM's own weights and intercept."""
    z = (f.double() - torch.as_tensor(mean)[None, :, None, None]) / torch.as_tensor(scale)[None, :, None, None]
    return weighted_sum(z, coef, classes) + torch.as_tensor(icpt)[classes][:, None, None]


def standardized_folded(f, coef, icpt, mean, scale, classes, *, divide=True, fold_mean=True, bias_factor=1.0):
    w = coef / scale if divide else coef
    b = icpt - (coef * mean / scale).sum(1) if fold_mean else icpt
    return weighted_sum(f, w, classes) + bias_factor * torch.as_tensor(b)[classes][:, None, None]


def test_standardized_cam_accepts_both_right_ways(capsys):
    accepts(ex.check_standardized_cam, standardized_folded, capsys)
    # standardizing every location is the same map: the mean of (f - m) / s is (F - m) / s
    accepts(ex.check_standardized_cam, standardized_per_location, capsys)
    accepts(ex.check_standardized_cam, lambda *a: standardized_folded(*a).float(), capsys)


def test_standardized_cam_names_each_mistake():
    rejects(ex.check_standardized_cam, lambda *a: standardized_folded(*a, divide=False),
            "Looks like you forgot to divide the weights by scale")
    rejects(ex.check_standardized_cam, lambda *a: standardized_folded(*a, fold_mean=False),
            "Looks like you left the intercept as it is")
    rejects(ex.check_standardized_cam,
            lambda f, *a: standardized_folded(f, *a, bias_factor=1.0 / (f.shape[2] * f.shape[3])),
            "Looks like you divided the bias by h*w")

    def no_scale(f, coef, icpt, mean, scale, classes):   # the scaler forgotten altogether
        return weighted_sum(f, coef, classes) + torch.as_tensor(icpt - (coef * mean).sum(1))[classes][:, None, None]

    rejects(ex.check_standardized_cam, no_scale, "Looks like you left scale out altogether")

    def cam_only(f, coef, icpt, mean, scale, classes):   # the map of lesson 02, no bias
        return weighted_sum(f, coef / scale, classes)

    rejects(ex.check_standardized_cam, cam_only, "Looks like you returned the CAM without its bias")


def test_standardized_reference_gives_sklearns_decision_values():
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    g = torch.Generator().manual_seed(0)
    maps = torch.relu(torch.randn(60, 6, 4, 5, generator=g) + 0.3)
    maps[:, 2] *= 5.0                                       # units on different scales
    labels = torch.arange(60) % 3
    maps[labels == 1, 0] += 1.0
    pooled = maps.double().mean((2, 3)).numpy()
    scaler = StandardScaler().fit(pooled)
    svm = LinearSVC(C=1.0, dual="auto", max_iter=20000).fit(scaler.transform(pooled), labels.numpy())
    want = svm.decision_function(scaler.transform(pooled))[np.arange(60), labels.numpy()]
    spec = ex.spec("check_standardized_cam")
    got = spec.reference(maps.double(), svm.coef_, svm.intercept_, scaler.mean_, scaler.scale_, labels)
    assert np.allclose(got.mean((1, 2)).numpy(), want, atol=1e-8)


# ------------------------------------------------------------------------------ binary probe
def probe_cam_right(f, coef, classes):
    rows = np.concatenate([-coef, coef]) if coef.shape[0] == 1 else coef
    return weighted_sum(f, rows, classes)


def test_probe_cam_accepts_a_loop_version_and_gets_numpy_weights(capsys):
    seen = []

    def probe_cam(f, coef, classes):
        seen.append((type(coef), coef.shape[0]))
        return probe_cam_right(f, coef, classes)

    accepts(ex.check_probe_cam, probe_cam, capsys)
    assert {t for t, _ in seen} == {np.ndarray}            # as scikit-learn's coef_ comes
    assert {n == 1 for _, n in seen} == {True, False}      # binary and multiclass trials

    def with_sign(f, coef, classes):                        # another right way: a sign per image
        if coef.shape[0] > 1:
            return weighted_sum(f, coef, classes)
        sign = (2 * classes - 1).double()[:, None, None]
        return sign * weighted_sum(f, coef, torch.zeros_like(classes))

    accepts(ex.check_probe_cam, with_sign, capsys)


def test_probe_cam_names_each_mistake():
    def same_sign(f, coef, classes):
        return weighted_sum(f, coef, classes * 0) if coef.shape[0] == 1 else weighted_sum(f, coef, classes)

    rejects(ex.check_probe_cam, same_sign, "Looks like you used +coef[0] for both classes")

    def swapped(f, coef, classes):
        rows = np.concatenate([coef, -coef]) if coef.shape[0] == 1 else coef
        return weighted_sum(f, rows, classes)

    rejects(ex.check_probe_cam, swapped, "Looks like you gave class 0 the + sign")
    rejects(ex.check_probe_cam, lambda f, coef, c: weighted_sum(f, np.concatenate([-coef, coef]), c),
            "Looks like you made the rows (-w, w) for every coef")
    rejects(ex.check_probe_cam, lambda f, coef, c: torch.relu(probe_cam_right(f, coef, c)), "applied a ReLU")
    # coef[classes] as for many classes: class 1 has no row; the check says why
    rejects(ex.check_probe_cam, lambda f, coef, c: weighted_sum(f, coef, c),
            "Looks like you indexed coef by the class", error=IndexError)


def test_probe_cam_reference_gives_sklearns_binary_decision_values():
    from sklearn.svm import LinearSVC

    g = torch.Generator().manual_seed(1)
    maps = torch.relu(torch.randn(40, 5, 3, 4, generator=g))
    labels = torch.arange(40) % 2
    maps[labels == 1, 1] += 0.8
    pooled = maps.double().mean((2, 3)).numpy()
    svm = LinearSVC(C=1.0, dual="auto", max_iter=20000).fit(pooled, labels.numpy())
    assert svm.coef_.shape == (1, 5)
    d = svm.decision_function(pooled) - svm.intercept_[0]   # the CAM has no bias
    got = ex.spec("check_probe_cam").reference(maps.double(), svm.coef_, labels).mean((1, 2)).numpy()
    assert np.allclose(got, np.where(labels.numpy() == 1, d, -d), atol=1e-8)
    # the library's fit_probe folds the same way (its rows are (-w, w) with standardization undone)
    probe = features.fit_probe(torch.as_tensor(pooled).float(), labels, C=1.0, standardize=False)
    assert torch.allclose(probe.weight.double(), torch.as_tensor(np.concatenate([-svm.coef_, svm.coef_])), atol=1e-6)


@pytest.mark.parametrize("check", ["check_standardized_cam", "check_probe_cam"])
@pytest.mark.parametrize("seed", [0, 3, 17, 4242])
def test_the_grader_path_agrees_for_other_seeds(check, seed):
    spec = ex.spec(check, seed=seed)
    right = standardized_per_location if check == "check_standardized_cam" else probe_cam_right
    assert ex.diagnose(spec, [right(*a) for a in spec.trials]) == ""
    for text, wrong in spec.mistakes:
        d = ex.diagnose(spec, [wrong(*a) for a in spec.trials])
        assert f"Looks like you {text}" in d
        assert sum(f"Looks like you {t}" in d for t, _ in spec.mistakes) == 1, d
