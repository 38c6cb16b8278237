"""Lesson 03's exercise references are the library functions the lesson introduces, and agree with them.

(tests/test_exercises.py shows each check accepts a student's answer and rejects plausible wrong ones.)
"""

import inspect

import torch
from torchvision.ops import box_iou

from camlib import exercises as ex
from camlib import localize, metrics
from camlib.exercises import lesson03


def test_box_reference_is_the_librarys_rule_on_every_trial_and_seed():
    for seed in (None, 11, 987654):
        spec = ex.spec("check_largest_component_box", seed)
        for cam, fraction in spec.trials:
            assert torch.equal(spec.reference(cam, fraction), localize.boxes_from_maps(cam, threshold=fraction))


def test_no_kept_pixel_gives_the_empty_box_in_the_exercise_and_the_library():
    # Choe et al.'s convention (their code returns [0, 0, 0, 0]; the paper's tool gives no box): one rule
    negative = -torch.rand(6, 9) - 0.1
    assert lesson03._ref_largest_component_box(negative, 0.2).tolist() == [0.0, 0.0, 0.0, 0.0]
    assert localize.boxes_from_maps(negative, threshold=0.2).tolist() == [0.0, 0.0, 0.0, 0.0]
    assert lesson03._component_box((negative >= 0.2 * negative.max()).numpy()).tolist() == [0.0, 0.0, 0.0, 0.0]


def test_iou_reference_is_torchvision():
    assert ex.spec("check_box_iou").reference is box_iou


def test_topk_reference_takes_the_librarys_argument_order_and_gives_its_number():
    spec = ex.spec("check_topk_loc_error")
    lib = list(inspect.signature(metrics.localization_error).parameters)
    assert spec.names.index("labels") < spec.names.index("gt_boxes")
    assert lib.index("labels") < lib.index("gt_boxes")
    for logits, boxes, labels, gts, k in spec.trials:
        top = metrics.topk_classes(logits, k)
        guesses = torch.stack([boxes[i, top[i]] for i in range(len(top))])
        want = metrics.localization_error(top, guesses, labels, gts, k=k)
        assert float(spec.reference(logits, boxes, labels, gts, k)) == want
        # the hand-written version behind the mistakes is the same metric with every switch off
        assert float(lesson03._loc_error_written_out(logits, boxes, labels, gts, k)) == want
