import numpy as np
import pytest
import torch

from camlib.data import SyntheticSpec, make_synthetic, render_synthetic


def test_deterministic_per_index_whatever_the_chunking():
    a = make_synthetic(40, seed=3, chunk=7)
    b = make_synthetic(10, seed=3, start=30, chunk=4)
    assert torch.equal(a.images[30:], b.images)
    assert torch.equal(a.boxes[30:], b.boxes) and torch.equal(a.labels[30:], b.labels)
    c = make_synthetic(40, seed=4)
    assert not torch.equal(a.images, c.images)


def test_boxes_are_exact_pixel_edge_boxes_of_the_masks():
    ds = make_synthetic(64, seed=0)
    for m, box, part in zip(ds.masks, ds.boxes, ds.part_masks):
        ys, xs = torch.nonzero(m, as_tuple=True)
        assert box.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
        assert part.any() and (part & ~m).sum() == 0              # the part lies on the object
        assert part.sum() < 0.5 * m.sum()                         # and is small


def test_labels_balanced_and_object_sizes_vary():
    ds = make_synthetic(2000, seed=1)
    counts = np.bincount(ds.labels.numpy(), minlength=8)
    assert counts.min() > 0.7 * counts.mean()
    w = ds.boxes[:, 2] - ds.boxes[:, 0]
    assert w.std() > 3 and ds.boxes[:, 0].std() > 4


def test_fine_preset_and_image_size():
    spec = SyntheticSpec.preset("fine")
    out = render_synthetic(spec, 0, [0, 1, 2])
    assert out["images"].shape == (3, 3, 128, 128) and out["labels"].max() < 16
    big = SyntheticSpec(image_size=96)
    assert render_synthetic(big, 0, [5])["images"].shape == (1, 3, 96, 96)


def test_bad_specs():
    with pytest.raises(ValueError, match="image_size"):
        SyntheticSpec(image_size=8)
    with pytest.raises(ValueError, match="preset"):
        SyntheticSpec.preset("nope")
    with pytest.raises(ValueError, match="n must be"):
        make_synthetic(0)


def test_class_names_follow_the_renderer_when_heads_are_shared():
    spec = SyntheticSpec.preset("fine")
    names = spec.class_names()
    assert len(set(names)) == spec.num_classes
    assert names[0].split(",")[0] == names[1].split(",")[0]          # a pair shares its head colour
    assert names[0].split(",")[1] != names[1].split(",")[1]          # and differs in its stripes


def _nearest_palette(rgb: np.ndarray, colours: int) -> np.ndarray:
    from camlib.data.synthetic import HEAD_PALETTE
    d = ((rgb[:, None, :] - HEAD_PALETTE[None, :colours]) ** 2).sum(-1)
    return d.argmin(1)


def test_every_part_names_the_class_with_its_own_colour():
    """The "parts" design: head, tail and middle each show a colour that names the class alone,
    and the three colours of a class differ (no one colour detector finds every part)."""
    from camlib.data.synthetic import HEAD_PALETTE, PART_OFFSETS
    spec = SyntheticSpec.preset("parts")
    assert spec.parts == 3
    out = render_synthetic(spec, 5, range(200))
    imgs = out["images"].astype(np.float32) / 255.0
    for k in range(3):
        seen = []
        for i in range(200):
            sel = out["part_ids"][i] == k + 1
            assert sel.sum() >= 4, f"part {k} of image {i} is (nearly) invisible"
            assert not (sel & ~out["masks"][i]).any() and not (sel & ~out["part_masks"][i]).any()
            rgb = imgs[i][:, sel].mean(1)
            seen.append(_nearest_palette(rgb[None], spec.num_classes)[0])
        want = (out["labels"] + PART_OFFSETS[k]) % spec.num_classes
        assert (np.array(seen) == want).all(), f"part {k}'s colour does not follow the label"
    for c in range(spec.num_classes):       # a class's parts have three different colours ...
        assert len({(c + o) % spec.num_classes for o in PART_OFFSETS}) == 3
    for o in PART_OFFSETS:                  # ... and each part alone tells every class apart
        assert len({(c + o) % spec.num_classes for c in range(spec.num_classes)}) == spec.num_classes
    assert len(HEAD_PALETTE) >= spec.num_classes


def test_parts_sit_along_the_body_and_union_is_the_part_mask():
    out = render_synthetic(SyntheticSpec.preset("parts"), 2, range(64))
    ids, part = out["part_ids"], out["part_masks"]
    assert ((ids > 0) == part).all()
    for i in range(64):                     # head, middle, tail in that order along the object
        cen = [np.argwhere(ids[i] == k).mean(0) for k in (1, 3, 2)]
        d_hm, d_mt, d_ht = (np.linalg.norm(cen[a] - cen[b]) for a, b in ((0, 1), (1, 2), (0, 2)))
        assert d_ht > max(d_hm, d_mt) and min(d_hm, d_mt) > 5


def test_default_design_has_one_class_naming_part_the_head():
    spec = SyntheticSpec.preset("gapgmp")
    assert spec == SyntheticSpec() and spec.parts == 1
    out = render_synthetic(spec, 0, range(32))
    assert out["part_ids"].max() == 1 and (out["part_masks"] == (out["part_ids"] == 1)).all()
    with_parts = render_synthetic(SyntheticSpec.preset("parts"), 0, range(32))
    # the same objects (same random draws), with the tail and the middle painted on
    assert (out["boxes"] == with_parts["boxes"]).all() and (out["labels"] == with_parts["labels"]).all()
    assert (out["part_masks"] <= with_parts["part_masks"]).all() and with_parts["part_masks"].sum() > 2 * out["part_masks"].sum()
    fine = render_synthetic(SyntheticSpec.preset("fine"), 0, range(4))
    assert fine["part_ids"].max() == 1


def test_bad_part_specs():
    with pytest.raises(ValueError, match="parts must be"):
        SyntheticSpec(parts=4)
    with pytest.raises(ValueError, match="head_shared"):
        SyntheticSpec(parts=3, head_shared=True)
    with pytest.raises(ValueError, match="share a colour"):
        SyntheticSpec(num_classes=2, stripes="random", parts=3)
    SyntheticSpec(num_classes=2, stripes="random")


def _nearest_body_colour(img: np.ndarray) -> np.ndarray:
    """Index into BODY_PALETTE of the nearest body colour of every pixel of ``(3, H, W)`` float images."""
    from camlib.data.synthetic import BODY_PALETTE
    d = ((img[None] - BODY_PALETTE[:, :, None, None]) ** 2).sum(1)
    return d.argmin(0)


def test_dots_body_colour_frequencies_follow_dot_p():
    """body="dots": each body cell is the class's own body colour with chance dot_p, else one of the
    other body colours uniformly -- so any class shows cells of its pair partner's colour (one cell says
    little), while the body's average colour names the class."""
    spec = SyntheticSpec(body="dots", head_shared=True, dot_p=0.35)
    out = render_synthetic(spec, 4, range(240))
    imgs = out["images"].astype(np.float32) / 255.0
    counts = np.zeros((spec.num_classes, spec.num_classes))      # class x body colour, pixel counts
    partner_seen = []
    for i in range(240):
        sel = out["masks"][i] & ~out["part_masks"][i]           # body pixels (the head is painted over)
        near = _nearest_body_colour(imgs[i])[sel]
        c = out["labels"][i]
        counts[c] += np.bincount(near, minlength=spec.num_classes)
        partner_seen.append((near == (c ^ 1)).any())
    freq = counts / counts.sum(1, keepdims=True)
    own = np.diag(freq)
    other = freq[~np.eye(spec.num_classes, dtype=bool)]
    assert np.abs(own - 0.35).max() < 0.05, own
    assert np.abs(other - 0.65 / 7).max() < 0.035, other
    assert np.mean(partner_seen) > 0.9                          # the partner's colour is on (nearly) every body
    names = spec.class_names()
    assert len(set(names)) == spec.num_classes and names[0].split(",")[0] == names[1].split(",")[0]


def test_dots_cells_are_dot_cell_pixels_wide():
    spec = SyntheticSpec(body="dots", dot_p=0.0, noise=0.0)
    out = render_synthetic(spec, 2, range(30))
    imgs = out["images"].astype(np.float32) / 255.0
    widths = []
    for i in range(30):                         # runs of one colour along rows of the body's interior
        near = _nearest_body_colour(imgs[i])
        body = out["masks"][i] & ~out["part_masks"][i]
        for y in range(64):
            xs = np.nonzero(body[y])[0]
            if len(xs) < 12 or not body[y, xs[0]:xs[-1] + 1].all():   # a run not broken by the head
                continue
            row = near[y, xs[0]:xs[-1] + 1]
            change = np.nonzero(np.diff(row))[0]
            widths += list(np.diff(change))      # complete runs between two colour changes
            assert not (row == out["labels"][i]).any()   # dot_p=0: the class's own colour never shows
    widths = np.array(widths)
    assert len(widths) > 100 and (widths % 3 == 0).all()    # whole cells of 3 px (neighbours may share a colour)
    assert (widths == 3).mean() > 0.7


def test_dots_change_only_the_body():
    """The dots are drawn after every other random choice: the same objects, heads, background and
    noise as with stripes; only the body's pixels differ. The default stays the stripes design."""
    assert SyntheticSpec().body == "stripes" and SyntheticSpec.preset("gapgmp").body == "stripes"
    a = render_synthetic(SyntheticSpec(), 1, range(40))
    b = render_synthetic(SyntheticSpec(body="dots"), 1, range(40))
    for k in ("labels", "boxes", "masks", "part_masks", "part_ids"):
        assert (a[k] == b[k]).all(), k
    body = a["masks"] & ~a["part_masks"]
    assert (a["images"] == b["images"]).transpose(1, 0, 2, 3)[:, ~body].all()
    assert (a["images"] != b["images"]).transpose(1, 0, 2, 3)[:, body].any(0).mean() > 0.5
    c = make_synthetic(30, seed=1, spec=SyntheticSpec(body="dots"), chunk=7)
    assert torch.equal(c.images, torch.from_numpy(b["images"][:30]))


def test_bad_dots_specs():
    with pytest.raises(ValueError, match="body must be"):
        SyntheticSpec(body="spots")
    with pytest.raises(ValueError, match="body='dots' needs"):
        SyntheticSpec(body="dots", parts=3)
    with pytest.raises(ValueError, match="body='dots' needs"):
        SyntheticSpec(body="dots", num_classes=12, stripes="random")
    with pytest.raises(ValueError, match="dot_p"):
        SyntheticSpec(body="dots", dot_p=1.5)
    with pytest.raises(ValueError, match="dot_cell"):
        SyntheticSpec(body="dots", dot_cell=0.5)
    SyntheticSpec(body="dots", num_classes=7)        # odd class counts are fine without stripes


def test_tint_mixes_the_head_colour_into_the_body_only():
    """``body_tint`` is drawn after every other choice: the same objects as without it, and on the body
    (outside the head) each pixel moves towards the class's head colour by the drawn share."""
    from camlib.data.synthetic import HEAD_PALETTE
    spec = SyntheticSpec.preset("tinted")
    assert spec.image_size == 96 and spec.stripes == "random" and spec.body_tint == (0.3, 0.5)
    flat = dict(noise=0.0, stripe_dark=(1.0, 1.0))               # no noise, no stripes: exact colours
    plain = render_synthetic(SyntheticSpec.preset("tinted", body_tint=(0.0, 0.0), **flat), 2, range(24))
    tinted = render_synthetic(SyntheticSpec.preset("tinted", **flat), 2, range(24))
    for k in ("labels", "boxes", "masks", "part_masks"):
        assert (plain[k] == tinted[k]).all(), k
    body = plain["masks"] & ~plain["part_masks"]
    a, b = plain["images"].astype(np.float64) / 255, tinted["images"].astype(np.float64) / 255
    assert (a.transpose(1, 0, 2, 3)[:, ~body] == b.transpose(1, 0, 2, 3)[:, ~body]).all()   # only the body changes
    for i, c in enumerate(plain["labels"]):
        head = HEAD_PALETTE[c][:, None]
        pa, pb = a[i][:, body[i]], b[i][:, body[i]]
        # one share t for the whole body: pb = (1 - t) pa + t head
        far = np.abs(head - pa) > 0.2
        t = ((pb - pa) / np.where(far, head - pa, 1.0))[far]
        assert 0.29 <= np.median(t) <= 0.51 and t.std() < 0.02, (i, np.median(t), t.std())
        assert np.abs(pb - head).mean() < np.abs(pa - head).mean()    # nearer the class's own colour


def test_body_noise_and_stripe_contrast_are_knobs_with_checks():
    base = render_synthetic(SyntheticSpec(), 5, range(16))
    noisy = render_synthetic(SyntheticSpec(body_noise=3.0), 5, range(16))
    body = base["masks"] & ~base["part_masks"]
    diff = (noisy["images"].astype(int) - base["images"].astype(int)).transpose(1, 0, 2, 3)
    assert (diff[:, ~body] == 0).all() and np.abs(diff[:, body]).mean() > 5     # more noise on the body only
    flat = render_synthetic(SyntheticSpec(stripe_dark=(1.0, 1.0), noise=0.0), 5, range(4))
    for i in range(4):
        px = flat["images"][i][:, body[i]]
        assert px.std(axis=1).max() <= 1.0                           # no stripes: one colour per body
    for bad in (dict(body_tint=(0.5, 0.2)), dict(body_tint=(0.0, 1.5)), dict(stripe_dark=(-0.1, 0.5))):
        with pytest.raises(ValueError, match="must be a range"):
            SyntheticSpec(**bad)
    with pytest.raises(ValueError, match="body_noise"):
        SyntheticSpec(body_noise=-1.0)
    with pytest.raises(ValueError, match="body_tint applies"):
        SyntheticSpec(body="dots", body_tint=(0.3, 0.5))
