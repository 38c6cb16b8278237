import numpy as np
import pytest
import torch
from scipy import ndimage
from torchvision.ops import box_iou

from camlib import _components, cam
from camlib import localize as L

EIGHT = np.ones((3, 3), dtype=bool)


# ---------------------------------------------------------------------------------------------
# the reference: localize's definition, one scipy.ndimage.label per threshold per map
# ---------------------------------------------------------------------------------------------
def ref_components(maps: np.ndarray, thresholds) -> dict:
    """{(threshold index, image): sorted [(x1, y1, x2, y2, area), ...]} by the definition."""
    return as_dict(L.components_per_threshold(torch.from_numpy(maps), thresholds))


def ref_largest(comps: list) -> tuple:
    """Largest by pixel count; ties: first box in (y1, x1, y2, x2) order."""
    return min(comps, key=lambda c: (-c[4], c[1], c[0], c[3], c[2]))[:4]


def as_dict(c: L.ThresholdComponents) -> dict:
    assert c.threshold_index.dtype == c.image.dtype == c.areas.dtype == torch.int64
    assert c.boxes.dtype == torch.float32 and c.boxes.shape == (len(c.image), 4)
    out = {}
    for j, b, box, a in zip(c.threshold_index.tolist(), c.image.tolist(), c.boxes.long().tolist(), c.areas.tolist()):
        out.setdefault((j, b), []).append((*box, a))
    return {k: sorted(v) for k, v in out.items()}


def random_maps(rng: np.random.Generator, kind: int, B: int, H: int, W: int) -> np.ndarray:
    if kind == 0:  # noise: many tiny components
        return rng.random((B, H, W)).astype(np.float32)
    if kind == 1:  # few levels: plateaus and ties everywhere
        return rng.integers(0, 4, (B, H, W)).astype(np.float32)
    if kind == 2:  # smooth blobs
        return ndimage.gaussian_filter(rng.random((B, H, W)), (0, 2, 2)).astype(np.float32)
    if kind == 3:  # binary with holes and nested pieces
        return (rng.random((B, H, W)) > 0.55).astype(np.float32) * 3.0
    return np.full((B, H, W), 0.5, np.float32)  # constant


def test_the_definition_on_a_hand_drawn_map():
    m = torch.tensor([[0, 0, 0, 0, 0, 0],
                      [0, 3, 0, 0, 1, 0],
                      [0, 0, 2, 0, 1, 0],     # 3 and 2 touch diagonally: one 8-connected component
                      [0, 0, 0, 0, 1, 0],
                      [2, 2, 0, 0, 0, 0]], dtype=torch.float32)
    got = L.components_per_threshold(m, [1.0, 2.0, 3.0, 4.0])
    assert as_dict(got) == {
        (0, 0): sorted([(1, 1, 3, 3, 2), (4, 1, 5, 4, 3), (0, 4, 2, 5, 2)]),   # >= is inclusive
        (1, 0): sorted([(1, 1, 3, 3, 2), (0, 4, 2, 5, 2)]),
        (2, 0): [(1, 1, 2, 2, 1)],
    }                                                                          # nothing reaches 4
    assert got.count()[:, 0].tolist() == [3, 2, 1, 0]
    assert got.image.tolist() == [0] * 6 and got.thresholds.tolist() == [[1.0, 2.0, 3.0, 4.0]]
    assert as_dict(L.components_per_threshold(m * 5 - 1, [0.7], normalize=True)) == {
        (0, 0): [(1, 1, 2, 2, 1)]}                                            # 3 -> 1.0, 2 -> 0.67


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_every_threshold_matches_per_threshold_labelling(backend):
    rng = np.random.default_rng(0)
    for trial in range(60):
        B = int(rng.integers(1, 4))
        H, W = (int(v) for v in rng.integers(1, 18, 2))
        maps = random_maps(rng, trial % 5, B, H, W)
        grid = trial % 3
        if grid == 0:  # a few thresholds, some equal to pixel values (ties with >=)
            pool = np.unique(np.r_[maps.ravel(), rng.random(4)])
            thr = np.sort(rng.choice(pool, size=min(6, pool.size), replace=False)).astype(np.float64)
        elif grid == 1:  # Choe's grid on normalized maps (the fast level path)
            maps = L.minmax_normalize(torch.from_numpy(maps)).numpy()
            thr = np.arange(0, 1, 0.02)
        else:  # a far-from-uniform grid (the binary-search fallback)
            thr = np.sort(rng.random(30) ** 4)
        got = L.components_at_thresholds(torch.from_numpy(maps), thr, backend=backend, chunk_pixels=150)
        assert as_dict(got) == ref_components(maps, thr), (trial, H, W)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_infinite_and_repeated_thresholds(backend):
    rng = np.random.default_rng(6)
    maps = random_maps(rng, 2, 3, 11, 9)
    for thr in (np.r_[-np.inf, np.linspace(0.2, 0.8, 12), np.inf],   # many: interpolation guess
                np.array([-np.inf, 0.5, 0.5, np.inf]),                # few: direct comparisons
                np.full(10, float(np.median(maps)))):                 # all equal
        got = L.components_at_thresholds(torch.from_numpy(maps), thr, backend=backend)
        assert as_dict(got) == ref_components(maps, thr)


def test_per_map_thresholds_and_largest_match_reference():
    rng = np.random.default_rng(1)
    maps = random_maps(rng, 2, 5, 15, 13)
    thr = np.sort(rng.random((5, 7)) * maps.max(), axis=1)
    comps = L.components_at_thresholds(torch.from_numpy(maps), torch.from_numpy(thr))
    ref = ref_components(maps, thr)
    assert as_dict(comps) == ref
    boxes, found = L.largest_per_threshold(comps)
    for j in range(7):
        for b in range(5):
            assert bool(found[j, b]) == ((j, b) in ref)
            if (j, b) in ref:
                assert tuple(boxes[j, b].long().tolist()) == ref_largest(ref[(j, b)])
    assert comps.count().shape == (7, 5)
    assert comps.count()[0, 0] == len(ref.get((0, 0), []))


def test_noisy_maps_split_into_groups_for_the_basin_work():
    rng = np.random.default_rng(4)
    maps = random_maps(rng, 0, 4, 30, 30)                     # hundreds of basins per map
    thr32 = _components._ceil_float32(np.broadcast_to(np.linspace(0.05, 0.95, 7), (4, 7)).copy())
    whole = _components._components_chunk(_components._NumpyOps, maps, thr32, True)
    tiny = _components._components_chunk(_components._NumpyOps, maps, thr32, True, budget=1)  # a map a group
    key = lambda parts: sorted(zip(parts[0].tolist(), parts[1].tolist(), map(tuple, parts[2].tolist()),  # noqa: E731
                                   parts[3].tolist()))
    assert key(whole) == key(tiny)
    want = ref_components(maps, np.linspace(0.05, 0.95, 7))
    assert sum(len(v) for v in want.values()) == len(whole[0])


def test_normalize_inside_components():
    rng = np.random.default_rng(2)
    maps = torch.from_numpy(random_maps(rng, 2, 3, 12, 12)) * 7 - 2
    thr = np.arange(0, 1, 0.05)
    a = as_dict(L.components_at_thresholds(maps, thr, normalize=True))
    b = as_dict(L.components_at_thresholds(L.minmax_normalize(maps), thr))
    assert a == b == as_dict(L.components_per_threshold(maps, thr, normalize=True))


# ---------------------------------------------------------------------------------------------
# the paper's rule, hand-computed
# ---------------------------------------------------------------------------------------------
def test_box_is_pixel_edge_and_threshold_inclusive():
    m = torch.zeros(8, 10)
    m[2:5, 3:8] = 1.0      # rows 2..4, columns 3..7
    m[6, 0] = 0.2          # exactly 20% of the max: kept (>=), but a smaller component
    assert L.boxes_from_maps(m).tolist() == [3.0, 2.0, 8.0, 5.0]
    region = L.threshold_maps(m)
    assert bool(region[6, 0]) and int(region.sum()) == 16
    m2 = torch.zeros(6, 6)
    m2[0, 0], m2[5, 5] = 5.0, 0.99  # 0.99 < 0.2 * 5 = 1.0: dropped
    assert L.boxes_from_maps(m2).tolist() == [0.0, 0.0, 1.0, 1.0]


def test_largest_component_and_eight_connectivity():
    m = torch.zeros(1, 9, 9)
    m[0, 0, 0] = m[0, 1, 1] = m[0, 2, 2] = 1.0   # a diagonal: one 8-connected component of 3
    m[0, 6, 5:7] = 1.0                            # a pair
    assert L.boxes_from_maps(m).tolist() == [[0.0, 0.0, 3.0, 3.0]]
    m[0, 7, 5:8] = 1.0                            # now 5 pixels down there
    assert L.boxes_from_maps(m).tolist() == [[5.0, 6.0, 8.0, 8.0]]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_tie_goes_to_the_box_first_in_y1_x1_order(backend):
    m = torch.zeros(8, 8)
    m[5:7, 0:2] = 1.0   # 4 pixels, lower left
    m[0:2, 5:7] = 1.0   # 4 pixels, upper right: first by y1
    assert L.boxes_from_maps(m, backend=backend).tolist() == [5.0, 0.0, 7.0, 2.0]
    m = torch.zeros(8, 8)
    m[3:5, 6:8] = 1.0
    m[3:5, 0:2] = 1.0   # same y1: first by x1
    assert L.boxes_from_maps(m, backend=backend).tolist() == [0.0, 3.0, 2.0, 5.0]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_largest_with_many_ties_matches_reference(backend):
    rng = np.random.default_rng(5)
    masks = rng.random((40, 7, 9)) > 0.7          # many small components of equal size
    boxes = L.largest_component_boxes(torch.from_numpy(masks), backend=backend)
    for b, mask in enumerate(masks):
        lab, n = ndimage.label(mask, structure=EIGHT)
        comps = [(s[1].start, s[0].start, s[1].stop, s[0].stop, int((lab == i + 1).sum()))
                 for i, s in enumerate(ndimage.find_objects(lab))]
        assert tuple(boxes[b].long().tolist()) == (ref_largest(comps) if n else (0, 0, 0, 0))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_no_pixel_kept_gives_the_empty_box_never_nan(backend):
    # Choe et al.'s convention: no kept pixel, no box -- (0, 0, 0, 0), which overlaps nothing
    maps = torch.stack([torch.zeros(4, 6), torch.full((4, 6), -3.0), torch.full((4, 6), 2.0),
                        -torch.rand(4, 6) - 0.1])
    boxes = L.boxes_from_maps(maps, backend=backend)
    empty, whole = [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 6.0, 4.0]
    assert boxes.tolist() == [empty, empty, whole, empty]       # a constant positive map keeps every pixel
    assert not bool(L.threshold_maps(maps[1]).any())            # max <= 0: no evidence
    absolute = L.boxes_from_maps(torch.rand(2, 5, 5), threshold=2.0, relative=False, backend=backend)
    assert absolute.tolist() == [empty] * 2
    assert torch.isfinite(boxes).all()
    assert float(box_iou(boxes[:1], torch.tensor([[0.0, 0.0, 6.0, 4.0]]))) == 0.0   # never counted as found
    assert L.largest_component_boxes(torch.zeros(1, 3, 3, dtype=torch.bool), backend=backend).tolist() == [empty]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_absolute_threshold_and_batch_matches_single(backend):
    rng = np.random.default_rng(3)
    maps = torch.from_numpy(np.concatenate([random_maps(rng, k, 3, 20, 16) for k in range(4)]))
    batch = L.boxes_from_maps(maps, threshold=0.4, backend=backend)
    for b in range(len(maps)):
        assert torch.equal(L.boxes_from_maps(maps[b], threshold=0.4, backend=backend), batch[b])
    other = "torch" if backend == "numpy" else "numpy"
    assert torch.equal(L.boxes_from_maps(maps, threshold=0.4, backend=other), batch)
    maps = maps[:6]
    thr = float(maps.mean())
    absolute = L.boxes_from_maps(maps, threshold=thr, relative=False, backend=backend)
    for b in range(6):
        lab, n = ndimage.label(maps[b].double().numpy() >= thr, structure=EIGHT)
        comps = [(s[1].start, s[0].start, s[1].stop, s[0].stop, int((lab == i + 1).sum()))
                 for i, s in enumerate(ndimage.find_objects(lab))]
        want = ref_largest(comps) if n else (0, 0, 0, 0)   # nothing kept: the empty box
        assert tuple(absolute[b].long().tolist()) == want


def test_mask_helpers():
    mask = torch.zeros(7, 9, dtype=torch.bool)
    mask[1:3, 1:3] = True
    mask[4:7, 2:9] = True
    mask[5, 5] = False                     # a hole does not change the box
    boxes, areas = L.component_boxes(mask)
    assert boxes.tolist() == [[2.0, 4.0, 9.0, 7.0], [1.0, 1.0, 3.0, 3.0]]
    assert areas.tolist() == [20, 4]
    assert L.largest_component_boxes(mask[None]).tolist() == [[2.0, 4.0, 9.0, 7.0]]
    assert L.largest_component_boxes(torch.zeros(1, 3, 4, dtype=torch.bool)).tolist() == [[0.0, 0.0, 0.0, 0.0]]
    empty_boxes, empty_areas = L.component_boxes(torch.zeros(3, 3, dtype=torch.bool))
    assert empty_boxes.shape == (0, 4) and empty_areas.shape == (0,)
    box_mask = L.boxes_to_masks(torch.tensor([[2.0, 4.0, 9.0, 7.0]]), 7, 9)
    assert int(box_mask.sum()) == 21 and bool(box_mask[0, 4:7, 2:9].all())
    assert L.largest_component_boxes(box_mask).tolist() == [[2.0, 4.0, 9.0, 7.0]]


def test_heuristic_boxes_loose_then_tight():
    m = torch.zeros(20, 20)
    m[2:18, 3:17] = 0.2            # a wide weak response: above 20/255 of the range
    m[8:12, 9:13] = 1.0            # a strong core: the only part above 100/255 and 110/255
    boxes = L.heuristic_boxes(m)
    assert boxes.tolist() == [[3.0, 2.0, 17.0, 18.0], [9.0, 8.0, 13.0, 12.0], [9.0, 8.0, 13.0, 12.0]]
    assert torch.equal(L.heuristic_boxes(torch.ones(2, 4, 5)), torch.zeros(2, 3, 4))   # constant: no box
    maps = torch.stack([m, m.flip(1), m.t()])[None]          # (1, 3, H, W): top-3 classes' maps
    classes, pred = L.heuristic_topk_predictions(maps, torch.tensor([[7, 2, 5]]))
    assert classes.tolist() == [[7, 7, 2, 2, 5]]
    assert torch.equal(pred[0, 0:2], boxes[0:2])
    assert torch.equal(pred[0, 2:4], L.heuristic_boxes(m.flip(1))[0:2])
    assert torch.equal(pred[0, 4], L.heuristic_boxes(m.t())[0])


def test_minmax_normalize_is_cams_one_rule():
    m = torch.tensor([[[1.0, 3.0], [-1.0, 0.0]], [[2.0, 2.0], [2.0, 2.0]], [[0.0, 1e-20], [0.0, 0.0]]])
    out = L.minmax_normalize(m)
    assert torch.equal(out[0], torch.tensor([[0.5, 1.0], [0.0, 0.25]]))
    assert torch.equal(out[1], torch.zeros(2, 2))                      # constant: all zeros
    assert torch.equal(out[2], torch.tensor([[0.0, 1.0], [0.0, 0.0]]))  # a tiny range is still a range
    assert torch.equal(cam.normalize(m, "minmax"), out)
    assert torch.equal(L.minmax_normalize(m[0].numpy()), out[0])
    tiny = torch.tensor([[[0.0, 1e-20], [-1e-20, 0.0]], [[0.0, 0.0], [-1e-20, 0.0]]])
    assert torch.equal(cam.normalize(tiny, "max"), torch.tensor([[[0.0, 1.0], [-1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        L.boxes_from_maps(torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="finite"):
        L.boxes_from_maps(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="real numbers"):
        L.boxes_from_maps(torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one map"):
        L.boxes_from_maps(torch.rand(0, 4, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        L.boxes_from_maps(torch.rand(4, 4), threshold=1.5)
    with pytest.raises(ValueError, match="ascending"):
        L.components_at_thresholds(torch.rand(1, 4, 4), [0.5, 0.2])
    with pytest.raises(ValueError, match=r"\(T,\) or \(B, T\)"):
        L.components_at_thresholds(torch.rand(2, 4, 4), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="backend"):
        L.components_at_thresholds(torch.rand(1, 4, 4), [0.5], backend="cuda")
    with pytest.raises(ValueError, match="bool"):
        L.largest_component_boxes(torch.rand(2, 3, 3))
    with pytest.raises(ValueError, match="areas=True"):
        L.largest_per_threshold(L.components_at_thresholds(torch.rand(1, 4, 4), [0.5], areas=False))
    with pytest.raises(ValueError, match="one \\(H, W\\) mask"):
        L.component_boxes(torch.zeros(2, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        L.boxes_to_masks(torch.zeros(4), 3, 3)
    with pytest.raises(ValueError, match="boxes_per_class"):
        L.heuristic_topk_predictions(torch.rand(1, 2, 5, 5), torch.tensor([[0, 1]]))
