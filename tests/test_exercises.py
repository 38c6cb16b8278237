"""Every exercise check accepts a correct answer and rejects plausible wrong ones, saying why.

The answers below are written the way a student might (loops, other library calls), not copied
from the references in camlib.exercises, so these tests show the checks are neither too strict
nor too lenient.
"""


import numpy as np
import pytest
import torch
from scipy import ndimage
from torchvision.ops import box_iou

from camlib import exercises as ex
from exercise_checks import accepts, rejects


# --------------------------------------------------------------------------------- lesson 01
def gap_loops(f):
    b, k, h, w = f.shape
    out = torch.zeros(b, k)
    for i in range(h):
        for j in range(w):
            out += f[:, :, i, j]
    return out / (h * w)


def test_gap_accepts_a_loop_version(capsys):
    accepts(ex.check_gap, gap_loops, capsys)
    accepts(ex.check_gap, lambda f: torch.nn.functional.adaptive_avg_pool2d(f, 1).flatten(1), capsys)


def test_gap_accepts_the_papers_sum_and_says_so(capsys):
    ex.check_gap(lambda f: f.sum(dim=-1).sum(dim=-1))  # the paper's F_k is a sum over x, y
    out = capsys.readouterr().out
    assert "OK" in out and "sums the map, as the paper's F_k" in out and "1/(h*w)" in out
    spec = ex.spec("check_gap", seed=5)
    assert ex.diagnose(spec, [t[0].sum(dim=(2, 3)) for t in spec.trials]) == ""
    # a sum over one axis only is neither: still rejected, with its own diagnosis
    rejects(ex.check_gap, lambda f: f.sum(dim=3), "summed over only one spatial dimension")
    # summing on some trials and averaging on others is not accepted either
    mixed = [t[0].sum(dim=(2, 3)) if i % 2 else t[0].mean(dim=(2, 3)) for i, t in enumerate(spec.trials)]
    assert ex.diagnose(spec, mixed) != ""


def test_gap_rejects_max_and_keepdim():
    rejects(ex.check_gap, lambda f: f.flatten(2).max(dim=2).values, "used max instead of mean")
    msg = rejects(ex.check_gap, lambda f: torch.nn.functional.adaptive_avg_pool2d(f, 1), "keepdim")
    assert "expected shape (5, 10), got (5, 10, 1, 1)" in msg


def test_gap_reports_the_first_differing_value():
    msg = rejects(ex.check_gap, lambda f: gap_loops(f) + (torch.arange(f.shape[1]) == 3).float(),
                  "first at index (0, 3)")
    assert "Looks like" not in msg  # no known mistake fits a made-up error


def test_gmp_accepts_and_rejects(capsys):
    accepts(ex.check_gmp, lambda f: torch.nn.functional.adaptive_max_pool2d(f, 1)[:, :, 0, 0], capsys)
    rejects(ex.check_gmp, lambda f: f.mean(dim=(2, 3)), "used mean instead of max")
    rejects(ex.check_gmp, lambda f: f.max(dim=3).values, "only one spatial dimension")
    rejects(ex.check_gmp, lambda f: f.flatten(2).max(dim=2), "take .values")


# --------------------------------------------------------------------------------- lesson 02
def cam_loops(f, w, classes):
    w = torch.as_tensor(w, dtype=f.dtype)
    maps = torch.zeros(f.shape[0], f.shape[2], f.shape[3], dtype=f.dtype)
    for b in range(f.shape[0]):
        for k in range(f.shape[1]):
            maps[b] += w[classes[b], k] * f[b, k]
    return maps


def test_cam_accepts_and_rejects(capsys):
    accepts(ex.check_cam, cam_loops, capsys)
    accepts(ex.check_cam, lambda f, w, c: (w[c][:, :, None, None] * f).sum(1), capsys)
    rejects(ex.check_cam, lambda f, w, c: cam_loops(f, w, c).clamp(min=0), "applied a ReLU")
    rejects(ex.check_cam, lambda f, w, c: cam_loops(f, w, list(range(f.shape[0]))), "instead of weight[classes[b]]")
    rejects(ex.check_cam, lambda f, w, c: torch.einsum("ck,bkhw->bchw", w, f), "maps of every class",
            "expected shape")
    rejects(ex.check_cam, lambda f, w, c: (w[c][:, :, None, None] * f).mean(1), "divided by K")


def test_minmax_accepts_and_rejects(capsys):
    def minmax(m):
        out = torch.zeros_like(m)
        for i, x in enumerate(m):
            if x.max() > x.min():
                out[i] = (x - x.min()) / (x.max() - x.min())
        return out

    accepts(ex.check_minmax, minmax, capsys)
    accepts(ex.check_minmax, lambda m: (m - m.amin((1, 2), True)) / (m.amax((1, 2), True) - m.amin((1, 2), True) + 1e-12),
            capsys)
    rejects(ex.check_minmax, lambda m: m / m.flatten(1).max(1).values[:, None, None], "forgot to subtract the minimum")
    rejects(ex.check_minmax, lambda m: (m - m.min()) / (m.max() - m.min()), "whole batch")
    msg = rejects(ex.check_minmax, lambda m: (m - m.amin((1, 2), True)) / (m.amax((1, 2), True) - m.amin((1, 2), True)),
                  "constant map must give zeros")
    assert "got nan" in msg


# lesson 05's check_probe_cam (now with scikit-learn's one-row binary coef_): tests/test_exercises_lesson05.py


# --------------------------------------------------------------------------------- lesson 03
def component_box(cam, fraction, structure=np.ones((3, 3))):
    mask = (cam >= fraction * cam.max()).numpy()
    labels, n = ndimage.label(mask, structure=structure)
    sizes = [(labels == i).sum() for i in range(1, n + 1)]
    ys, xs = np.where(labels == 1 + int(np.argmax(sizes)))
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


def test_largest_component_box_accepts_and_rejects(capsys):
    accepts(ex.check_largest_component_box, component_box, capsys)
    rejects(ex.check_largest_component_box, lambda c, f: component_box(c, f) - torch.tensor([0, 0, 1, 1]),
            "inclusive x2", "x2 = last column + 1")
    rejects(ex.check_largest_component_box, lambda c, f: component_box(c, f, structure=None), "4-connectivity")
    rejects(ex.check_largest_component_box,
            lambda c, f: component_box((c - c.min()) / (c.max() - c.min()), f), "min-max normalized")

    def every_pixel(cam, fraction):
        ys, xs = torch.nonzero(cam >= fraction * cam.max(), as_tuple=True)
        return torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()

    rejects(ex.check_largest_component_box, every_pixel, "not only the largest connected component")


def test_box_iou_accepts_torchvision_and_rejects(capsys):
    accepts(ex.check_box_iou, box_iou, capsys)

    def iou_plus_one(a, b):
        area = lambda x: (x[:, 2] - x[:, 0] + 1) * (x[:, 3] - x[:, 1] + 1)  # noqa: E731
        w = (torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0]) + 1).clamp(min=0)
        h = (torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1]) + 1).clamp(min=0)
        return w * h / (area(a)[:, None] + area(b)[None] - w * h)

    def iou_no_clamp(a, b):
        w = torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0])
        h = torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1])
        area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
        return w * h / (area(a)[:, None] + area(b)[None] - w * h)

    rejects(ex.check_box_iou, iou_plus_one, "inclusive pixel convention")
    rejects(ex.check_box_iou, iou_no_clamp, "clamp the intersection")


def topk_loc_error(logits, boxes, labels, gt_boxes, k, strict=False, first_only=False, any_class=False):
    wrong = 0
    for i in range(len(labels)):
        top = logits[i].argsort(descending=True)[:k].tolist()
        candidates = top if any_class else [int(labels[i])] if int(labels[i]) in top else []
        gts = gt_boxes[i][:1] if first_only else gt_boxes[i]
        best = max((float(box_iou(boxes[i, c][None], gts).max()) for c in candidates), default=0.0)
        wrong += not (best > 0.5 if strict else best >= 0.5)
    return wrong / len(labels)


def test_topk_loc_error_accepts_and_rejects(capsys):
    accepts(ex.check_topk_loc_error, topk_loc_error, capsys)
    rejects(ex.check_topk_loc_error, lambda *a: topk_loc_error(*a, strict=True), "exactly 0.5")
    rejects(ex.check_topk_loc_error, lambda *a: topk_loc_error(*a, first_only=True), "first ground-truth box")
    rejects(ex.check_topk_loc_error, lambda *a: topk_loc_error(*a, any_class=True), "any top-k class")
    rejects(ex.check_topk_loc_error, lambda *a: 1 - topk_loc_error(*a), "returned the accuracy")
    rejects(ex.check_topk_loc_error, lambda lo, bx, lb, gt, k: torch.zeros(len(lb)), "one number")
    # the order of camlib.metrics.localization_error, labels before gt_boxes: the old order fails, and the
    # note names each argument as it was passed
    with pytest.raises(ValueError) as info:
        ex.check_topk_loc_error(lambda lo, bx, gt, lb, k: topk_loc_error(lo, bx, lb, gt, k))
    assert "labels=tensor (" in "".join(info.value.__notes__) and "gt_boxes=list of" in "".join(info.value.__notes__)


# --------------------------------------------------------------------------------- lesson 04
# check_crop_box and check_cells_box: tests/test_exercises_lesson04.py


# --------------------------------------------------------------------------------- lesson 06
def test_rank_units_accepts_and_rejects(capsys):
    accepts(ex.check_rank_units, lambda w, c, k: w[c].topk(k).indices, capsys)
    accepts(ex.check_rank_units, lambda w, c, k: [int(i) for i in np.argsort(-w[c].numpy())[:k]], capsys)
    rejects(ex.check_rank_units, lambda w, c, k: w[c].abs().topk(k).indices, "ranked by |weight|")
    rejects(ex.check_rank_units, lambda w, c, k: w[c].argsort()[:k], "ascending")
    rejects(ex.check_rank_units, lambda w, c, k: w[c].topk(k).values, "return the unit indices")
    rejects(ex.check_rank_units, lambda w, c, k: w[:, c].topk(k).indices, "row weight[c]")
    rejects(ex.check_rank_units, lambda w, c, k: w[c].topk(k + 1).indices, "expected shape")


# ------------------------------------------------------------------------------ the machinery
def test_unwritten_exercise_raises_not_implemented_with_a_note():
    def stub(features):
        raise NotImplementedError

    with pytest.raises(NotImplementedError) as info:
        ex.check_gap(stub)
    assert any("not written yet" in n for n in info.value.__notes__)


def test_errors_in_the_students_code_pass_through_with_the_inputs():
    with pytest.raises(RuntimeError) as info:
        ex.check_cam(lambda f, w, c: f @ w)
    assert any("called your function with features=tensor" in n for n in info.value.__notes__)


def test_wrong_types_and_non_functions():
    rejects(ex.check_gap, lambda f: f.mean((2, 3)).numpy(), "expected a torch.Tensor, got ndarray", "torch.as_tensor")
    with pytest.raises(ValueError, match="expects your function"):
        ex.check_gap(None)


def test_checks_use_fresh_inputs_each_trial():
    shapes = []
    ex.check_gap(lambda f: shapes.append(tuple(f.shape)) or f.mean((2, 3)))
    assert len(set(shapes)) == len(shapes) >= 3  # several trials, each a new shape


def test_every_listed_check_exists():
    assert all(callable(getattr(ex, name)) for name in ex.CHECKS)
