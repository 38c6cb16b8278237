import pytest
import torch

from camlib import models, units
from camlib.data import make_synthetic


def test_rank_units_matches_argsort(rng):
    w = torch.randn(5, 30, generator=rng)
    full = units.rank_units(w)
    assert full.shape == (5, 30)
    for c in range(5):
        assert torch.equal(full[c], torch.argsort(w[c], descending=True))
        assert torch.equal(units.rank_units(w, c, k=4), torch.argsort(w[c], descending=True)[:4])
    assert units.rank_units(w, [3, 1], k=2).shape == (2, 2)
    # ties keep the lower index first
    tied = torch.tensor([[1.0, 3.0, 3.0, 0.0]])
    assert units.rank_units(tied, 0).tolist() == [1, 2, 0, 3]
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        units.rank_units(w, 5)
    with pytest.raises(ValueError, match="k must"):
        units.rank_units(w, 0, k=31)


def test_unit_peaks_and_peak_boxes():
    f = torch.zeros(2, 3, 4, 5)
    f[0, 1, 2, 3] = 5.0
    f[1, 1, 0, 0] = 1.0
    f[1, 2, 3, 4] = 2.0
    p = units.unit_peaks(f, [1, 2])
    assert p["values"].tolist() == [[5.0, 0.0], [1.0, 2.0]]
    assert p["cells"][0, 0].tolist() == [2, 3] and p["cells"][1, 1].tolist() == [3, 4]
    assert p["cells"][0, 1].tolist() == [0, 0]                  # ties: first in raster order
    # a 4x5 map over a 40x50 image: cell (2, 3) is centred at (35, 25)
    b = units.peak_boxes(torch.tensor([[2, 3], [0, 0]]), (4, 5), (40, 50), patch=10)
    assert b.tolist() == [[30.0, 20.0, 40.0, 30.0], [0.0, 0.0, 10.0, 10.0]]


def test_top_activations_against_brute_force():
    torch.manual_seed(0)
    net = models.small_cnn(3, widths=(8, 8, 8, 8, 6)).eval()
    ds = make_synthetic(70, seed=3)
    with torch.no_grad():
        f = net(ds.batch(torch.arange(70))["image"]).features
    us = [0, 4, 5]
    top = units.top_activations(net, ds, us, n=5, batch_size=16)
    assert top["images"].shape == (3, 5) and tuple(top["map_size"].tolist()) == (16, 16)
    peaks = f.flatten(2).max(2)
    for j, u in enumerate(us):
        ref = torch.sort(peaks.values[:, u], descending=True, stable=True)
        assert torch.allclose(top["values"][j], ref.values[:5], atol=1e-5)
        assert torch.equal(top["images"][j], ref.indices[:5])
        i = int(top["images"][j, 0])
        y, x = top["cells"][j, 0].tolist()
        assert f[i, u, y, x] == f[i, u].max()


def test_receptive_field_of_small_cnn():
    # five 3x3 convs with strides 1,2,1,2,1: rf = 1 + 2*(1 + 1 + 2 + 2 + 4) = 21, stride 4
    assert units.receptive_field(models.small_cnn(2).backbone) == (21, 4)
    seq = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5, 2), torch.nn.MaxPool2d(2), torch.nn.Conv2d(4, 4, 3, dilation=2))
    assert units.receptive_field(seq) == (1 + 4 + 2 + 2 * 2 * 4, 4)
    with pytest.raises(ValueError, match="plain conv"):
        units.receptive_field(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Upsample(scale_factor=2)))


def test_peak_on_mask():
    f = torch.zeros(1, 2, 4, 4)
    f[0, 0, 1, 1] = 1.0      # peak of unit 0 in the cell covering pixels 8..15 of a 32-px image
    f[0, 1, 3, 3] = 1.0
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[0, 8:16, 8:16] = True
    hits = units.peak_on_mask(f, mask)
    assert hits.tolist() == [[True, False]]
    near = torch.zeros(1, 32, 32, dtype=torch.bool)
    near[0, 8:16, 17:20] = True                                 # 6 px right of unit 0's peak pixel (11, 11)
    assert units.peak_on_mask(f, near, [0]).tolist() == [[False]]
    assert units.peak_on_mask(f, near, [0], tolerance=6).tolist() == [[True]]
    with pytest.raises(ValueError, match="bool"):
        units.peak_on_mask(f, mask.float())
