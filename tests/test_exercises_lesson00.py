"""Lesson 00's checks accept right answers written other ways and name plausible wrong ones (issue 11).

The answers here are written the way a student might (other library calls, loops), not copied
from the references in camlib.exercises.lesson00.
"""

import torch
import torch.nn.functional as F

from camlib import exercises as ex
from exercise_checks import accepts, graded, rejects

SEEDS = (3, 11, 2024)


# ------------------------------------------------------------------ exercise 1: check_all_class_maps
def upsample_first(features, weight, size):
    """Upsample the 1280-style feature maps first, then weight them: the same, since both steps are linear."""
    up = F.interpolate(features, size=size, mode="bilinear", align_corners=False)
    return torch.einsum("ck,bkhw->bchw", weight, up)


def class_by_class(features, weight, size, **kwargs):
    maps = []
    for c in range(weight.shape[0]):
        m = (weight[c][None, :, None, None] * features).sum(dim=1, keepdim=True)
        maps.append(F.interpolate(m, size=size, **kwargs))
    return torch.cat(maps, dim=1)


BILINEAR = dict(mode="bilinear", align_corners=False)

ALL_MAPS_WRONG = [
    (lambda f, w, s: class_by_class(f, w, s, mode="nearest"), "nearest-neighbour upsampling"),
    (lambda f, w, s: class_by_class(f, w, s, mode="bilinear", align_corners=True), "used align_corners=True"),
    (lambda f, w, s: class_by_class(f, w, (s[1], s[0]), **BILINEAR), "swapped the image's height and width"),
    (lambda f, w, s: torch.relu(class_by_class(f, w, s, **BILINEAR)), "applied a ReLU"),
]


def test_all_class_maps_accepts_either_order_of_the_two_linear_steps(capsys):
    accepts(ex.check_all_class_maps, upsample_first, capsys)
    accepts(ex.check_all_class_maps, lambda f, w, s: class_by_class(f, w, s, **BILINEAR), capsys)


def test_all_class_maps_names_each_mistake():
    for fn, text in ALL_MAPS_WRONG:
        rejects(ex.check_all_class_maps, fn, text)

    def normalized(f, w, s):
        m = class_by_class(f, w, s, **BILINEAR)
        lo, hi = m.amin(dim=(2, 3), keepdim=True), m.amax(dim=(2, 3), keepdim=True)
        return (m - lo) / (hi - lo)

    rejects(ex.check_all_class_maps, normalized, "normalized each map to [0, 1]")
    msg = rejects(ex.check_all_class_maps, lambda f, w, s: class_by_class(f, w, (s[1], s[0]), **BILINEAR),
                  "expected shape")
    assert msg.count("Looks like you") == 1


def test_all_class_maps_the_grader_agrees_on_other_seeds():
    for seed in SEEDS:
        assert graded("check_all_class_maps", upsample_first, seed) == ""
        for fn, text in ALL_MAPS_WRONG:
            assert text in graded("check_all_class_maps", fn, seed)


# ------------------------------------------------------------------ exercise 2: check_top_classes_from_maps
def ranking(maps, bias, k, score=lambda m, b: m.sum(dim=(2, 3)) / (m.shape[2] * m.shape[3]) + b, order=None):
    """Best first by a loop over the images; ``order`` changes the sort (for the wrong answers)."""
    out = []
    for i in range(maps.shape[0]):
        s = score(maps[i:i + 1], bias)[0].tolist()
        best = sorted(range(len(s)), key=lambda c: -s[c])[:k] if order is None else order(s, k)
        out.append(best)
    return out


TOP_WRONG = [
    (lambda m, b, k: ranking(m, b, k, score=lambda x, b_: x.flatten(2).max(dim=2).values), "peak of their maps"),
    (lambda m, b, k: ranking(m, b, k, score=lambda x, b_: x.mean(dim=(2, 3))), "forgot the classifier's bias"),
    (lambda m, b, k: ranking(m, b, k, score=lambda x, b_: x.sum(dim=(2, 3)) + b_), "summed the map and added the bias"),
    (lambda m, b, k: ranking(m, b, k, order=lambda s, k_: sorted(range(len(s)), key=lambda c: s[c])[:k_]),
     "took the k lowest scores"),
    (lambda m, b, k: ranking(m, b, k, order=lambda s, k_: sorted(sorted(range(len(s)), key=lambda c: -s[c])[:k_])),
     "in class-index order"),
]


def test_top_classes_accepts_a_loop_and_a_list(capsys):
    accepts(ex.check_top_classes_from_maps, ranking, capsys)   # a list of lists of ints
    accepts(ex.check_top_classes_from_maps,
            lambda m, b, k: (m.mean(dim=(2, 3)) + b).argsort(dim=1, descending=True)[:, :k], capsys)


def test_top_classes_names_each_mistake():
    for fn, text in TOP_WRONG:
        msg = rejects(ex.check_top_classes_from_maps, fn, text)
        assert msg.count("Looks like you") == 1, msg
    rejects(ex.check_top_classes_from_maps, lambda m, b, k: (m.mean(dim=(2, 3)) + b).topk(k).values,
            "returned the scores, not the class indices")


def test_top_classes_the_grader_agrees_on_other_seeds():
    for seed in SEEDS:
        assert graded("check_top_classes_from_maps", ranking, seed) == ""
        for fn, text in TOP_WRONG:
            assert text in graded("check_top_classes_from_maps", fn, seed)


def test_top_classes_trials_separate_peak_from_mean():
    """The trials are built so that ranking by the peak is wrong on every trial, not by chance on one."""
    spec = ex.spec("check_top_classes_from_maps", seed=5)
    for maps, bias, k in spec.trials:
        by_peak = maps.amax(dim=(2, 3)).topk(k, dim=1).indices
        assert not torch.equal(by_peak, spec.reference(maps, bias, k))
