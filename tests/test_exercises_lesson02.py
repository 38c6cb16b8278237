"""Lesson 02's check_bias_region: the 20%-of-max region of M_c + b_c accepts right answers written
otherwise (with or without Grad-CAM's ReLU) and names each plausible mistake, in the notebook and in
the grader."""

import pytest
import torch

from camlib import exercises as ex
from camlib import localize
from exercise_checks import accepts, rejects


def score_maps_loop(f, w, b, c, bias_of=None, bias_factor=1.0):
    """M_c + b_c written with loops over images and units."""
    B, K, h, wd = f.shape
    out = torch.zeros(B, h, wd, dtype=torch.float64)
    for i in range(B):
        cls = int(c[i])
        for k in range(K):
            out[i] += float(w[cls, k]) * f[i, k].double()
        out[i] += bias_factor * float(b[cls if bias_of is None else bias_of[i]])
    return out


def region_loop(maps):
    out = torch.zeros(maps.shape, dtype=torch.bool)
    for i, m in enumerate(maps):
        top = m.max()
        if top > 0:
            out[i] = m >= 0.2 * top
    return out


def right(f, w, b, c):
    return region_loop(score_maps_loop(f, w, b, c))


def test_bias_region_accepts_right_answers_written_otherwise(capsys):
    accepts(ex.check_bias_region, right, capsys)
    # as 0/1 floats
    accepts(ex.check_bias_region, lambda *a: right(*a).float(), capsys)
    # Grad-CAM's ReLU changes nothing where the rule is kept: a map with a positive maximum keeps the
    # same locations, and a map with none keeps no location either way
    accepts(ex.check_bias_region, lambda *a: region_loop(torch.relu(score_maps_loop(*a))), capsys)


def test_bias_region_names_each_mistake():
    hw = lambda f: f.shape[-2] * f.shape[-1]  # noqa: E731
    rejects(ex.check_bias_region, lambda f, w, b, c: region_loop(score_maps_loop(f, w, b, c, bias_factor=0.0)),
            "Looks like you left out the bias")
    rejects(ex.check_bias_region, lambda f, w, b, c: region_loop(score_maps_loop(f, w, b, c, bias_of=range(len(c)))),
            "Looks like you added bias[b] (the image's position in the batch)")
    rejects(ex.check_bias_region,
            lambda f, w, b, c: region_loop(score_maps_loop(f, w, b, c, bias_factor=1.0 / hw(f))),
            "Looks like you divided the bias by h*w")

    def naive_relu(f, w, b, c):          # ReLU, then '>= 0.2 * max' with no rule for an all-zero map
        m = torch.relu(score_maps_loop(f, w, b, c))
        return torch.stack([x >= 0.2 * x.max() for x in m])

    rejects(ex.check_bias_region, naive_relu, "Looks like you applied Grad-CAM's ReLU first")

    def on_minmax(f, w, b, c):
        m = score_maps_loop(f, w, b, c)
        lo, hi = m.amin((1, 2), keepdim=True), m.amax((1, 2), keepdim=True)
        return (m - lo) / (hi - lo) >= 0.2

    rejects(ex.check_bias_region, on_minmax, "Looks like you thresholded the min-max normalized map")

    def batch_max(f, w, b, c):
        m = score_maps_loop(f, w, b, c)
        return m >= 0.2 * m.max()

    rejects(ex.check_bias_region, batch_max, "Looks like you used the maximum of the whole batch")


def test_bias_region_reference_is_the_librarys_rule():
    spec = ex.spec("check_bias_region")
    for f, w, b, c in spec.trials:
        want = localize.threshold_maps(score_maps_loop(f, w, b, c)).double()
        assert torch.equal(spec.reference(f, w, b, c), want)


@pytest.mark.parametrize("seed", [0, 3, 17, 4242])
def test_bias_region_trials_separate_every_mistake_and_the_grader_agrees(seed):
    spec = ex.spec("check_bias_region", seed=seed)
    # each trial set holds a map that is below zero everywhere (where a bare ReLU goes wrong)
    assert any(bool((score_maps_loop(*a).amax((1, 2)) <= 0).any()) for a in spec.trials)
    assert ex.diagnose(spec, [right(*a) for a in spec.trials]) == ""
    for text, wrong in spec.mistakes:
        d = ex.diagnose(spec, [wrong(*a) for a in spec.trials])
        assert f"Looks like you {text}" in d
        assert sum(f"Looks like you {t}" in d for t, _ in spec.mistakes) == 1, d
