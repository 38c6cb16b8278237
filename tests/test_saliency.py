import pytest
import torch
from torch import nn

from camlib import localize, models
from camlib import saliency as S
from camlib.metrics import best_iou


class Linear(nn.Module):
    """logits = W . flatten(x): the gradient of class k is W[k], known in closed form."""

    def __init__(self, shape, classes, generator):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, *shape, generator=generator))

    def forward(self, x):
        return torch.einsum("bchw,kchw->bk", x, self.weight)


def test_linear_model_gives_max_abs_weight_over_channels(rng):
    model = Linear((3, 5, 4), 6, rng)
    x = torch.randn(2, 3, 5, 4, generator=rng)
    sal = S.backprop_saliency(model, x, torch.tensor([4, 1]))
    assert sal.shape == (2, 5, 4)
    assert torch.allclose(sal[0], model.weight[4].abs().amax(0))
    assert torch.allclose(sal[1], model.weight[1].abs().amax(0))
    assert torch.allclose(S.backprop_saliency(model, x, 2), model.weight[2].abs().amax(0).expand(2, 5, 4))


def test_camnet_output_batched_equals_one_by_one_and_leaves_model_alone(rng):
    torch.manual_seed(0)
    model = models.small_cnn(num_classes=5).eval()
    x = torch.randn(3, 3, 32, 32, generator=rng)
    classes = torch.tensor([0, 4, 2])
    with torch.no_grad():                               # works even inside no_grad
        sal = S.backprop_saliency(model, x, classes)
    assert sal.shape == (3, 32, 32) and bool((sal >= 0).all()) and float(sal.sum()) > 0
    for b in range(3):
        one = S.backprop_saliency(model, x[b:b + 1], classes[b:b + 1])
        assert torch.allclose(one[0], sal[b], atol=1e-6)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    box = localize.boxes_from_maps(sal)                 # the paper's box rule applies unchanged
    assert box.shape == (3, 4) and torch.isfinite(box).all()


def test_center_boxes():
    boxes = S.center_boxes(2, height=32, width=64)
    assert boxes.tolist() == [[16.0, 8.0, 48.0, 24.0]] * 2
    assert S.center_boxes(1, 10, 10, fraction=1.0).tolist() == [[0.0, 0.0, 10.0, 10.0]]
    assert S.center_boxes(0, 10, 10).shape == (0, 4)
    gt = torch.tensor([[16.0, 8.0, 48.0, 24.0], [0.0, 0.0, 32.0, 16.0]])
    assert best_iou(boxes, gt).tolist() == [1.0, 0.25 / 1.75]


def test_bad_inputs_raise_clear_errors(rng):
    model = Linear((3, 4, 4), 3, rng)
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        S.backprop_saliency(model, x[0], 0)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        S.backprop_saliency(model, x, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        S.backprop_saliency(model, x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="logits"):
        S.backprop_saliency(nn.Flatten(0), x, 0)
    with pytest.raises(ValueError, match="nn.Module"):
        S.backprop_saliency(lambda t: t, x, 0)
    with pytest.raises(ValueError, match="fraction"):
        S.center_boxes(1, 8, 8, fraction=0.0)
