"""Lesson 06's checks (check_rank_units, check_top_units_share, check_dissection_iou) accept right answers
written their own way and reject plausible wrong ones, each with its own diagnosis; the grader agrees."""

import numpy as np
import pytest
import torch

from camlib import exercises as ex
from camlib import units
from exercise_checks import accepts, assert_mistakes_distinct, graded, rejects

SEEDS = (4, 31, 777)


# ------------------------------------------------------------------------------ check_rank_units
def test_rank_units_reference_is_the_library():
    spec = ex.spec("check_rank_units", seed=9)
    for w, c, k in spec.trials:
        assert torch.equal(spec.reference(w, c, k), units.rank_units(w, c, k=k))


@pytest.mark.parametrize("seed", SEEDS)
def test_rank_units_grader_path_agrees(seed):
    assert graded("check_rank_units", lambda w, c, k: w[c].topk(k).indices, seed) == ""
    assert "ranked by |weight|" in graded("check_rank_units", lambda w, c, k: w[c].abs().topk(k).indices, seed)


# ------------------------------------------------------------------------- check_top_units_share
def share(features, weight, c, k, pool="mean", rank="weight", positive=False, divide=True):
    """A student's version in numpy, with sums instead of means (the ratio is the same)."""
    f, w = features.numpy().astype(np.float64), weight.numpy().astype(np.float64)[c]
    F = f.max(axis=(2, 3)) if pool == "max" else f.sum(axis=(2, 3))
    contrib = F * w
    if rank == "abs":
        top = np.argsort(-np.abs(w))[:k]
    else:
        top = np.argsort(-w)[:k]
    part = contrib[:, top].sum(1)
    total = np.clip(contrib, 0, None).sum(1) if positive else contrib.sum(1)
    return torch.tensor(part / total if divide else part)


def test_top_units_share_accepts_sums_as_well_as_means(capsys):
    accepts(ex.check_top_units_share, share, capsys)

    def with_einsum(features, weight, c, k):
        F = features.mean(dim=(2, 3))
        top = units.rank_units(weight, c, k=k)
        return torch.einsum("nk,k->n", F[:, top], weight[c, top]) / (F @ weight[c])
    accepts(ex.check_top_units_share, with_einsum, capsys)


def test_top_units_share_rejects_with_the_right_diagnosis():
    msg = rejects(ex.check_top_units_share, lambda *a: share(*a, rank="abs"), "ranked the units by |weight|")
    assert msg.count("Looks like you") == 1

    def per_image_top(features, weight, c, k):
        contrib = features.mean(dim=(2, 3)) * weight[c]
        return contrib.topk(k, dim=1).values.sum(1) / contrib.sum(1)
    rejects(ex.check_top_units_share, per_image_top, "the same k units for every image")
    rejects(ex.check_top_units_share, lambda *a: share(*a, positive=True), "negative contributions included")
    rejects(ex.check_top_units_share, lambda *a: share(*a, pool="max"), "pooled with max")
    rejects(ex.check_top_units_share, lambda *a: share(*a, divide=False), "divide it by the whole score")
    rejects(ex.check_top_units_share, lambda f, w, c, k: (f.mean(dim=(2, 3)) * w[c])[:, w[c].topk(k).indices].sum(1),
            "divide it by the whole score")
    rejects(ex.check_top_units_share, lambda *a: 1 - share(*a), "share of the *other* units")


@pytest.mark.parametrize("seed", SEEDS)
def test_top_units_share_grader_path_agrees(seed):
    assert graded("check_top_units_share", share, seed) == ""
    assert "|weight|" in graded("check_top_units_share", lambda *a: share(*a, rank="abs"), seed)
    assert "pooled with max" in graded("check_top_units_share", lambda *a: share(*a, pool="max"), seed)


# -------------------------------------------------------------------------- check_dissection_iou
def dissection(acts, masks, top, per_image=False, mean_iou=False, level=None):
    """A student's version: sort all activations and keep the largest `top` fraction (numpy)."""
    a, m = acts.numpy().astype(np.float64), masks.numpy()
    if per_image:
        t = np.array([np.quantile(x, 1 - top) for x in a])[:, None, None]
    else:
        t = np.quantile(a, 1 - top if level is None else level)
    region = a > t
    inter, union = (region & m).sum(axis=(1, 2)), (region | m).sum(axis=(1, 2))
    return float((inter / union).mean()) if mean_iou else float(inter.sum() / union.sum())


def dissection_by_count(acts, masks, top):
    """Another right answer: the round(top * n) largest activations (a quantile up to a pixel or two)."""
    flat = acts.flatten()
    n_top = int(round(top * flat.numel()))
    region = torch.zeros_like(flat, dtype=torch.bool)
    region[flat.argsort(descending=True)[:n_top]] = True
    region = region.view_as(acts)
    return float((region & masks).sum() / (region | masks).sum())


def test_dissection_iou_accepts_numpy_and_counting_versions(capsys):
    accepts(ex.check_dissection_iou, dissection, capsys)
    accepts(ex.check_dissection_iou, dissection_by_count, capsys)


def test_dissection_iou_rejects_with_the_right_diagnosis():
    msg = rejects(ex.check_dissection_iou, lambda *a: dissection(*a, per_image=True), "set a threshold per image")
    assert msg.count("Looks like you") == 1
    rejects(ex.check_dissection_iou, lambda *a: dissection(*a, mean_iou=True), "averaged the per-image IoUs")
    rejects(ex.check_dissection_iou, lambda *a: dissection(*a, per_image=True, mean_iou=True),
            "thresholded and scored each image apart")
    rejects(ex.check_dissection_iou, lambda a, m, top: dissection(a, m, top, level=top), "took the `top` quantile")
    msg = rejects(ex.check_dissection_iou, lambda a, m, top: torch.zeros(len(a)), "expected one number")


@pytest.mark.parametrize("seed", SEEDS)
def test_dissection_iou_grader_path_agrees(seed):
    assert graded("check_dissection_iou", dissection, seed) == ""
    assert graded("check_dissection_iou", dissection_by_count, seed) == ""
    assert "threshold per image" in graded("check_dissection_iou", lambda *a: dissection(*a, per_image=True), seed)
    assert "averaged the per-image" in graded("check_dissection_iou", lambda *a: dissection(*a, mean_iou=True), seed)


@pytest.mark.parametrize("name", ["check_rank_units", "check_top_units_share", "check_dissection_iou"])
def test_every_mistake_differs_from_the_reference_and_from_each_other(name):
    assert_mistakes_distinct(name)
