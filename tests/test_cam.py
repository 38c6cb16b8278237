import pytest
import torch

from camlib import cam, models


def test_einsum_equals_loop(rng):
    f = torch.randn(3, 5, 4, 6, generator=rng)
    w = torch.randn(7, 5, generator=rng)
    cls = torch.tensor([[1, 6], [0, 2], [3, 3]])
    maps = cam.class_activation_maps(f, w, cls)
    assert maps.shape == (3, 2, 4, 6)
    for b in range(3):
        for j in range(2):
            ref = sum(w[cls[b, j], k] * f[b, k] for k in range(5))
            assert torch.allclose(maps[b, j], ref, atol=1e-5)
    assert cam.class_activation_maps(f, w).shape == (3, 7, 4, 6)
    assert torch.allclose(cam.class_activation_maps(f, w, 2)[:, 0], maps.new_tensor(0) + (w[2][None, :, None, None] * f).sum(1))


def test_class_checks():
    f, w = torch.randn(2, 5, 4, 4), torch.randn(3, 5)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cam.class_activation_maps(f, w, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="length 2"):
        cam.class_activation_maps(f, w, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="K = 5"):
        cam.class_activation_maps(f, torch.randn(3, 4))
    with pytest.raises(ValueError, match="integers"):
        cam.class_activation_maps(f, w, torch.tensor([0.0, 1.0]))


def test_normalize_minmax_and_max():
    m = torch.tensor([[[1.0, 3.0], [-1.0, 0.0]], [[2.0, 2.0], [2.0, 2.0]], [[-1.0, -2.0], [-3.0, -1.0]]])
    mm = cam.normalize(m, "minmax")
    assert torch.allclose(mm[0], torch.tensor([[0.5, 1.0], [0.0, 0.25]]))
    assert torch.equal(mm[1], torch.zeros(2, 2))            # constant map -> zeros, no NaN
    fm = cam.normalize(m, "max")
    assert torch.allclose(fm[0], m[0] / 3)
    assert torch.equal(fm[2], torch.zeros(2, 2))            # max <= 0 -> zeros
    assert not torch.isnan(fm).any()


def test_upsample_keeps_mean_for_constant_and_shape():
    m = torch.full((2, 3, 4, 4), 2.0)
    up = cam.upsample(m, (16, 16))
    assert up.shape == (2, 3, 16, 16) and torch.allclose(up, torch.full_like(up, 2.0))
    assert cam.upsample(m[:, 0], 8).shape == (2, 8, 8)


def test_grad_cam_is_cam_times_positive_factor_on_gap():
    torch.manual_seed(0)
    model = models.small_cnn(5).eval()
    x = torch.randn(3, 3, 64, 64)
    cls = torch.tensor([0, 4, 2])
    _, maps, _ = cam.cams(model, x, cls)
    g = cam.grad_cam(model, x, cls, relu=False)
    h, w = maps.shape[-2:]
    assert torch.allclose(g * h * w, maps[:, 0], atol=1e-4)
    assert torch.allclose(cam.grad_cam(model, x, cls), g.clamp_min(0))


def test_cams_topk_and_size():
    torch.manual_seed(0)
    model = models.small_cnn(6).eval()
    x = torch.randn(2, 3, 64, 64)
    logits, maps, idx = cam.cams(model, x, topk=3, size=(64, 64))
    assert maps.shape == (2, 3, 64, 64)
    assert torch.equal(idx, logits.topk(3, 1).indices)
    with pytest.raises(ValueError, match="either"):
        cam.cams(model, x, 1, topk=2)
