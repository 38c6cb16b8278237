"""Lesson 01's new checks (log-sum-exp pooling, mask coverage) accept right answers written other ways and
name plausible wrong ones (issue 11). The answers are written the way a student might, not copied from
camlib.exercises.lesson01.
"""

import math

import numpy as np
import torch

from camlib import exercises as ex
from exercise_checks import accepts, graded, rejects

SEEDS = (3, 11, 2024)


# ------------------------------------------------------------------ exercise 2: check_lse_pool
def lse_logsumexp(f, r):
    """torch.logsumexp is stable on its own; the 1/(hw) becomes - log(hw) inside the bracket."""
    return (torch.logsumexp(r * f, dim=(2, 3)) - math.log(f.shape[2] * f.shape[3])) / r


def lse_loop(f, r):
    b, k = f.shape[:2]
    out = torch.empty(b, k)
    for i in range(b):
        for j in range(k):
            x = f[i, j].flatten().double()
            m = x.max()
            out[i, j] = float(m + torch.log(torch.mean(torch.exp(r * (x - m)))) / r)
    return out


LSE_WRONG = [
    (lambda f, r: torch.logsumexp(r * f, dim=(2, 3)) / r, "left out the 1/(hw) inside the log"),
    (lambda f, r: torch.log(torch.exp(r * f).mean(dim=(2, 3))) / r, "computed exp(r * f) directly"),
    (lambda f, r: torch.log(torch.exp(r * f.double()).mean(dim=(2, 3))).float() / r, "computed exp(r * f) directly"),
    (lambda f, r: r * lse_logsumexp(f, r), "forgot the 1/r"),
    (lambda f, r: torch.log(torch.exp(r * (f - f.amax(dim=(2, 3), keepdim=True))).mean(dim=(2, 3))) / r,
     "did not add it back"),
    (lambda f, r: f.max() + torch.log(torch.exp(r * (f - f.max())).mean(dim=(2, 3))) / r,
     "subtracted one max for the whole batch"),
    (lambda f, r: torch.logsumexp(r * f, dim=(2, 3)) / r - math.log(f.shape[2] * f.shape[3]), "divided log(hw) by 1"),
]


def test_lse_pool_accepts_logsumexp_and_a_loop(capsys):
    accepts(ex.check_lse_pool, lse_logsumexp, capsys)
    accepts(ex.check_lse_pool, lse_loop, capsys)


def test_lse_pool_names_each_mistake():
    for fn, text in LSE_WRONG:
        rejects(ex.check_lse_pool, fn, text)
    # one max per image (over its channels) fails the same way as one for the batch
    def one_max_per_image(f, r):
        m = f.amax(dim=(1, 2, 3), keepdim=True)
        return m[:, :, 0, 0] + torch.log(torch.exp(r * (f - m)).mean(dim=(2, 3))) / r

    rejects(ex.check_lse_pool, one_max_per_image, "each map's own max")
    msg = rejects(ex.check_lse_pool, LSE_WRONG[1][0], "got inf")  # the naive form says *what* went wrong
    assert "overflows to inf" in msg


def test_lse_pool_trials_hold_what_the_exercise_promises():
    """A small r (the reference is close to GAP there), an r*f beyond float64's exp, maps 150 apart."""
    spec = ex.spec("check_lse_pool", seed=7)
    small = [(f, r) for f, r in spec.trials if r <= 0.1]
    assert small and all(torch.allclose(spec.reference(f, r), f.mean(dim=(2, 3)), atol=0.1) for f, r in small)
    assert any(bool((r * f.amax(dim=(2, 3)) > 710).all()) for f, r in spec.trials)
    assert all(bool(torch.isfinite(spec.reference(f, r)).all()) for f, r in spec.trials)
    big = max(spec.trials, key=lambda t: t[1])
    f, r = big
    assert bool((spec.reference(f, r) <= f.amax(dim=(2, 3)) + 1e-4).all())   # LSE <= GMP always
    assert bool((spec.reference(f, r) >= f.mean(dim=(2, 3)) - 1e-4).all())   # and >= GAP (Jensen)


def test_lse_pool_the_grader_agrees_on_other_seeds():
    for seed in SEEDS:
        assert graded("check_lse_pool", lse_loop, seed) == ""
        for fn, text in LSE_WRONG:
            assert text in graded("check_lse_pool", fn, seed)


# ------------------------------------------------------------------ exercise 3: check_mask_coverage
def coverage_numpy(maps, masks, fraction, threshold_of=lambda m, f: f * m.max(), over="mask"):
    out = []
    for m, k in zip(maps.numpy(), masks.numpy()):
        region = m >= threshold_of(m, fraction)
        hit = np.logical_and(region, k).sum()
        out.append(hit / {"mask": k.sum(), "region": region.sum(), "image": m.size}[over])
    return torch.tensor(out)


COVERAGE_WRONG = [
    (lambda m, k, f: coverage_numpy(m, k, f, threshold_of=lambda x, f_: f_ * float(m.max())), "whole batch's maximum"),
    (lambda m, k, f: coverage_numpy(m, k, f, over="region"), "divided by the number of kept pixels"),
    (lambda m, k, f: coverage_numpy(m, k, f, over="image"), "divided by the image's area"),
    (lambda m, k, f: coverage_numpy(m, k, f, threshold_of=lambda x, f_: x.min() + f_ * (x.max() - x.min())),
     "min-max normalized"),
    (lambda m, k, f: coverage_numpy(m, k, f, threshold_of=lambda x, f_: f_), "an absolute threshold"),
    (lambda m, k, f: coverage_numpy(m, k, f).mean(), "averaged over the images"),
]


def test_mask_coverage_accepts_numpy_and_a_boolean_mean(capsys):
    accepts(ex.check_mask_coverage, coverage_numpy, capsys)
    def boolean_mean(maps, masks, fraction):
        kept = maps >= fraction * maps.flatten(1).max(dim=1).values[:, None, None]
        return torch.stack([kept[i][masks[i]].float().mean() for i in range(len(maps))])  # kept share of the mask

    accepts(ex.check_mask_coverage, boolean_mean, capsys)


def test_mask_coverage_names_each_mistake():
    for fn, text in COVERAGE_WRONG:
        msg = rejects(ex.check_mask_coverage, fn, text)
        assert msg.count("Looks like you") == 1, msg


def test_mask_coverage_the_grader_agrees_on_other_seeds():
    for seed in SEEDS:
        assert graded("check_mask_coverage", coverage_numpy, seed) == ""
        for fn, text in COVERAGE_WRONG:
            assert text in graded("check_mask_coverage", fn, seed)
