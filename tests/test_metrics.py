import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import average_precision_score
from torchvision.ops import box_iou

from camlib import localize as L
from camlib import metrics as M

EIGHT = np.ones((3, 3), dtype=bool)


# ---------------------------------------------------------------------------------------------
# classification
# ---------------------------------------------------------------------------------------------
def test_topk_ties_go_to_the_lower_class_index():
    logits = torch.tensor([[1.0, 2.0, 2.0, 0.0], [3.0, 3.0, 3.0, 3.0]])
    assert M.topk_classes(logits, 2).tolist() == [[1, 2], [0, 1]]
    labels = torch.tensor([2, 3])
    assert M.classification_error(logits, labels, k=1) == 1.0      # class 1 wins the tie; class 0 too
    assert M.classification_error(logits, labels, k=2) == 0.5      # 2 is second; 3 is fourth
    assert M.classification_error(logits, labels, k=4) == 0.0
    ranked = torch.tensor([[4, 2, 9], [1, 0, 3]])
    assert M.classification_error(ranked, torch.tensor([2, 1]), k=1) == 0.5
    assert M.classification_error(ranked, torch.tensor([2, 1]), k=2) == 0.0


# ---------------------------------------------------------------------------------------------
# boxes and the paper's localization error
# ---------------------------------------------------------------------------------------------
def test_iou_exactly_half_counts_and_several_gt_boxes():
    gt = [torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
          torch.tensor([[0.0, 0.0, 2.0, 2.0], [20.0, 20.0, 30.0, 40.0]]),
          torch.zeros(0, 4)]
    pred = torch.tensor([[0.0, 0.0, 10.0, 5.0],     # IoU exactly 0.5
                         [20.0, 20.0, 30.0, 30.0],  # 0 with the first box, 0.5 with the second
                         [0.0, 0.0, 5.0, 5.0]])     # no ground truth: never correct
    assert M.best_iou(pred, gt).tolist() == [0.5, 0.5, 0.0]
    assert M.box_accuracy(pred, gt) == pytest.approx(2 / 3)
    assert M.gt_known_accuracy(pred, gt) == M.box_accuracy(pred, gt)
    pred[0, 3] = 4.99                                # just under 0.5
    assert M.box_accuracy(pred, gt) == pytest.approx(1 / 3)
    assert M.mean_iou(pred, gt) == pytest.approx((0.499 + 0.5 + 0.0) / 3)
    one_box = torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 3.0, 3.0]])
    assert M.best_iou(torch.tensor([[0.0, 0.0, 2.0, 2.0]] * 2), one_box).tolist() == [0.25, 0.25 * 4 / 7]


def test_localization_error_needs_class_and_box_together():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 4)
    good, bad = [0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]
    labels = torch.tensor([3, 3, 3, 3])
    classes = torch.tensor([[3, 1, 2, 4, 5],     # right class, right box: localized at top-1
                            [3, 1, 2, 4, 5],     # right class, wrong box; a wrong class has the good box
                            [1, 2, 3, 4, 5],     # right class third, with a good box: top-5 only
                            [1, 2, 4, 5, 6]])    # right class absent
    boxes = torch.tensor([[good, bad, bad, bad, bad],
                          [bad, good, bad, bad, bad],
                          [bad, bad, good, bad, bad],
                          [good, good, good, good, good]])
    assert M.localization_correct(classes, boxes, labels, gt, k=5).tolist() == [True, False, True, False]
    assert M.localization_error(classes, boxes, labels, gt, k=1) == 0.75
    assert M.localization_error(classes, boxes, labels, gt, k=5) == 0.5
    assert M.localization_error(classes, boxes, labels, gt) == 0.5          # all guesses by default
    # the several-boxes heuristic: the same class twice, the second box is the good one
    assert M.localization_correct(torch.tensor([[3, 3]]), torch.tensor([[bad, good]]), torch.tensor([3]),
                                  gt[:1]).tolist() == [True]


def test_mask_coverage():
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :2] = True
    masks[1, 1:3, 1:3] = True
    regions = torch.zeros(2, 4, 4, dtype=torch.bool)
    regions[0, 0] = True          # covers half of mask 0
    regions[1] = True             # covers all of mask 1
    assert M.mask_coverage(regions, masks).tolist() == [0.5, 1.0]
    box_regions = L.boxes_to_masks(torch.tensor([[0.0, 0.0, 2.0, 4.0], [0.0, 0.0, 2.0, 2.0]]), 4, 4)
    assert M.mask_coverage(box_regions, masks).tolist() == [0.5, 0.25]
    with pytest.raises(ValueError, match="empty"):
        M.mask_coverage(regions, torch.zeros(2, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="same shape"):
        M.mask_coverage(regions[:1], masks)


# ---------------------------------------------------------------------------------------------
# MaxBoxAcc / MaxBoxAccV2
# ---------------------------------------------------------------------------------------------
def test_threshold_grid_is_choes():
    assert np.array_equal(M.box_thresholds(100), np.arange(0, 1, 0.01))
    assert M.box_thresholds(1000).shape == (1000,)
    assert M.box_thresholds(3).tolist() == pytest.approx([0.0, 1 / 3, 2 / 3])


def test_max_box_acc_hand_computed():
    maps = torch.zeros(2, 10, 10)
    maps[0, 3:8, 3:8] = 1.0            # exactly the object
    maps[0, 0, 9] = 0.5                # plus a weaker separate blob
    maps[1, 0:2, 0:2] = 1.0            # the bigger blob is wrong...
    maps[1, 7:9, 8:9] = 0.6            # ...a smaller, weaker one is right
    gt = [torch.tensor([[3.0, 3.0, 8.0, 8.0]]), torch.tensor([[8.0, 7.0, 9.0, 9.0]])]
    thr = [0.0, 0.25, 0.5, 0.75]
    v1 = M.max_box_acc(maps, gt, thresholds=thr)
    # image 0: t=0 whole image (IoU 0.25); t>0 the 5x5 object is the largest component (IoU 1)
    # image 1: t=0 whole image; t=0.25, 0.5 the 2x2 wrong blob is the largest; t=0.75 only it remains
    assert v1.curve[:, 0].tolist() == [0.0, 0.5, 0.5, 0.5]
    assert v1.score == 0.5 and v1.best_threshold == {0.5: 0.25}     # ties: the lowest threshold
    v2 = M.max_box_acc_v2(maps, gt, thresholds=thr)
    # every component counts: image 1 is right at t = 0.25 and 0.5 (the 2x1 blob, IoU 1)
    assert v2.curve.tolist() == [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]]
    assert v2.score == 1.0 and v2.accuracy == {0.3: 1.0, 0.5: 1.0, 0.7: 1.0}
    assert v2.best_threshold == {0.3: 0.25, 0.5: 0.25, 0.7: 0.25}
    # a threshold above every normalized score finds nothing: a miss, not an error
    assert M.max_box_acc_v2(maps, gt, thresholds=[1.5]).curve.tolist() == [[0.0, 0.0, 0.0]]


def test_max_box_acc_constant_map_and_iou_levels():
    maps = torch.full((1, 8, 8), 3.0)            # normalized to zeros: only t = 0 keeps pixels
    gt = torch.tensor([[0.0, 0.0, 8.0, 4.0]])    # half the image: IoU 0.5 with the whole-image box
    r = M.max_box_acc_v2(maps, gt, thresholds=[0.0, 0.5])
    assert r.curve.tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    assert r.score == pytest.approx(2 / 3)


def slow_max_box_acc(maps, gts, thr, ious, all_components):
    """Direct definition: normalize, label every threshold's mask, IoU with torchvision."""
    T, B = len(thr), maps.shape[0]
    best = np.zeros((T, B))
    for b in range(B):
        m = maps[b].numpy()
        m = (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else np.zeros_like(m)
        for j, t in enumerate(thr):
            lab, n = ndimage.label(m.astype(np.float64) >= t, structure=EIGHT)
            if n == 0 or len(gts[b]) == 0:
                continue
            comps = [(s[1].start, s[0].start, s[1].stop, s[0].stop, int((lab == i + 1).sum()))
                     for i, s in enumerate(ndimage.find_objects(lab))]
            if not all_components:
                comps = [min(comps, key=lambda c: (-c[4], c[1], c[0], c[3], c[2]))]
            boxes = torch.tensor([c[:4] for c in comps], dtype=torch.float64)
            best[j, b] = box_iou(boxes, gts[b].double()).max()
    return np.stack([(best >= d).mean(1) for d in ious], 1)


@pytest.mark.parametrize("all_components", [False, True])
def test_max_box_acc_matches_slow_definition(all_components):
    g = torch.Generator().manual_seed(0)
    small = torch.randn(12, 1, 5, 5, generator=g)
    maps = torch.nn.functional.interpolate(small, size=(24, 20), mode="bilinear", align_corners=False)[:, 0]
    maps[3] = 1.0                                              # a constant map
    gts = []
    for i in range(12):
        n = i % 3                                              # 0, 1 or 2 boxes
        xy = torch.randint(0, 12, (n, 2), generator=g).float()
        wh = torch.randint(2, 10, (n, 2), generator=g).float()
        gts.append(torch.cat([xy, xy + wh], 1))
    thr = M.box_thresholds(50)
    ious = (0.3, 0.5, 0.7)
    got = M.max_box_acc(maps, gts, thresholds=thr, iou_thresholds=ious, all_components=all_components)
    want = slow_max_box_acc(maps, gts, thr, ious, all_components)
    assert np.array_equal(got.curve, want)
    assert got.score == pytest.approx(np.mean(want.max(0)))
    torch_path = M.max_box_acc(maps, gts, thresholds=thr, iou_thresholds=ious, all_components=all_components,
                               backend="torch")
    assert np.array_equal(torch_path.curve, want)


# ---------------------------------------------------------------------------------------------
# PxAP
# ---------------------------------------------------------------------------------------------
def test_average_precision_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.integers(0, 6, 200).astype(np.float32) if _ % 2 else rng.random(200).astype(np.float32)
        labels = rng.random(200) < 0.3
        assert M.average_precision(torch.from_numpy(scores), torch.from_numpy(labels)) == pytest.approx(
            average_precision_score(labels, scores), abs=1e-12)


def test_pxap_hand_cases_and_sklearn():
    masks = torch.zeros(1, 2, 2, dtype=torch.bool)
    masks[0, 0] = True
    perfect = torch.tensor([[[1.0, 0.9], [0.1, 0.0]]])
    assert M.pxap(perfect, masks) == 1.0
    flat = torch.full((1, 2, 2), 0.3)                 # all tied: AP = share of positives
    assert M.pxap(flat, masks) == 0.5
    g = torch.Generator().manual_seed(1)
    maps, masks = torch.rand(3, 9, 7, generator=g), torch.rand(3, 9, 7, generator=g) < 0.4
    norm = L.minmax_normalize(maps)
    assert M.pxap(maps, masks) == pytest.approx(average_precision_score(masks.numpy().ravel(), norm.numpy().ravel()))
    thr = M.box_thresholds(10)
    levels = np.searchsorted(thr, norm.double().numpy().ravel(), side="right")
    assert M.pxap(maps, masks, thresholds=thr) == pytest.approx(average_precision_score(masks.numpy().ravel(), levels))
    with pytest.raises(ValueError, match="positive|mask pixel"):
        M.pxap(maps, torch.zeros_like(masks))
    with pytest.raises(ValueError, match="shape"):
        M.pxap(maps, masks[:2])


# ---------------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors():
    boxes = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="one entry per image"):
        M.best_iou(boxes, [torch.zeros(1, 4)])
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        M.best_iou(boxes, [torch.zeros(1, 3), torch.zeros(1, 4)])
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        M.best_iou(torch.zeros(2, 5), boxes)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        M.box_accuracy(boxes, boxes, iou_threshold=0.0)
    with pytest.raises(ValueError, match="labels"):
        M.classification_error(torch.rand(2, 5), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"k must be in"):
        M.topk_classes(torch.rand(2, 3), 4)
    with pytest.raises(ValueError, match="to match pred_classes"):
        M.localization_error(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 4, 4),
                             torch.zeros(2, dtype=torch.long), boxes)
    with pytest.raises(ValueError, match="1-D ascending"):
        M.max_box_acc(torch.rand(2, 4, 4), boxes, thresholds=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="at least one positive"):
        M.average_precision(torch.rand(4), torch.zeros(4, dtype=torch.bool))
