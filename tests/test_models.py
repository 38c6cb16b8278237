"""Every CAMNet returns logits and maps from one pass; for a GAP head, mean(M_c) + b_c = logit."""
import pytest
import torch

from camlib import cam, models



@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():      # scoped to each test: never leak a global grad mode to other files
        yield

CASES = [
    ("small_cnn", dict(num_classes=8), 64, (64, 16, 16)),
    ("alexnet_gap", dict(num_classes=10), 224, (1024, 13, 13)),
    ("vgg16_gap", dict(num_classes=10), 224, (1024, 14, 14)),
    ("googlenet_gap", dict(num_classes=10), 224, (1024, 14, 14)),
    ("resnet50_cam", dict(num_classes=10), 224, (2048, 14, 14)),
    ("efficientnet_lite0", dict(), 224, (1280, 7, 7)),
]


@pytest.mark.parametrize("name,kwargs,size,fshape", CASES, ids=[c[0] for c in CASES])
def test_gap_identity_and_map_shape(name, kwargs, size, fshape):
    torch.manual_seed(0)
    model = models.build(name, **kwargs).eval()
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert tuple(out.features.shape[1:]) == fshape
    maps = cam.class_activation_maps(out.features, model.classifier.weight)      # all classes
    recon = maps.mean(dim=(-2, -1)) + model.classifier.bias
    scale = out.logits.abs().max().clamp_min(1.0)
    assert torch.allclose(recon, out.logits, atol=1e-4 * scale), (recon - out.logits).abs().max()


def test_gmp_head_is_not_the_mean_identity():
    torch.manual_seed(0)
    model = models.small_cnn(4, "gmp").eval()
    out = model(torch.randn(3, 3, 64, 64))
    maps = cam.class_activation_maps(out.features, model.classifier.weight)
    recon_max = torch.einsum("bk,ck->bc", out.features.amax((-2, -1)), model.classifier.weight) + model.classifier.bias
    assert torch.allclose(recon_max, out.logits, atol=1e-5)
    assert not torch.allclose(maps.mean((-2, -1)) + model.classifier.bias, out.logits, atol=1e-3)


def test_efficientnet_pretrained_knows_the_cat():
    from skimage import data
    model = models.efficientnet_lite0().eval()
    logits = model(models.preprocess_imagenet(data.chelsea())).logits
    names = models.imagenet_categories()
    assert names[int(logits.argmax())] in {"Egyptian cat", "tabby", "tiger cat"}


def test_bad_inputs_raise_clear_errors():
    model = models.small_cnn(3)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="pool"):
        models.small_cnn(3, pool="avg")
    with pytest.raises(ValueError, match="unknown model"):
        models.build("lenet")
    with pytest.raises(ValueError, match="uint8"):
        models.preprocess_imagenet(torch.zeros(4, 4, 3).numpy())


@pytest.mark.parametrize("arch", ["resnet18", "googlenet"])
def test_pretrained_classifier_gives_torchvisions_logits_and_7x7_maps(arch, monkeypatch):
    from torchvision.models import get_model
    extra = {"init_weights": False, "aux_logits": False, "transform_input": True} if arch == "googlenet" else {}
    base = get_model(arch, weights=None, **extra).eval()
    monkeypatch.setattr(models, "torchvision_model", lambda *a, **k: base)
    net = models.pretrained_classifier(arch, weights=None)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        out = net(x)
        assert torch.allclose(out.logits, base(x), atol=1e-5)
        # the CAM's mean plus the bias is the logit: the paper's identity holds for the network as it is
        cam = torch.einsum("bkhw,ck->bchw", out.features, net.classifier.weight)
        assert torch.allclose(cam.mean(dim=(2, 3)) + net.classifier.bias, out.logits, atol=1e-4)
    assert out.features.shape[-2:] == (7, 7) and net.classifier is base.fc


def test_pretrained_classifier_refuses_a_network_without_a_gap_head():
    with pytest.raises(ValueError, match="ends in GAP"):
        models.pretrained_classifier("vgg16", weights=None)


def test_small_cnn_fc_is_lesson03s_fc_network_with_the_same_weights_from_the_same_seed():
    torch.manual_seed(3)   # how lesson 03 built it: small_cnn's stride-2 backbone, then the FC head
    backbone = models.small_cnn(8, strides=(1, 2, 1, 2, 2)).backbone
    head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64 * 8 * 8, 256), torch.nn.ReLU(),
                               torch.nn.Linear(256, 8))
    torch.manual_seed(3)
    net = models.SmallCNNFC(8).eval()
    want = {**{f"backbone.{k}": v for k, v in backbone.state_dict().items()},
            **{f"head.{k}": v for k, v in head.state_dict().items()}}
    got = net.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)  # checkpoints still load
    out = net(torch.randn(2, 3, 64, 64))
    assert out.logits.shape == (2, 8) and out.features.shape == (2, 64, 8, 8)
    with pytest.raises(ValueError, match="multiple of 8"):
        models.SmallCNNFC(8, image_size=60)
