import numpy as np
import pytest
import torch

from camlib import cam, features, models
from camlib.data import make_synthetic


@pytest.fixture(scope="module")
def net_and_data():
    torch.manual_seed(0)
    net = models.small_cnn(4, widths=(8, 8, 8, 8, 12))
    ds = make_synthetic(48, seed=5)
    return net, ds


def test_extract_shapes_and_gap_identity(net_and_data):
    net, ds = net_and_data
    out = features.extract(net, ds, batch_size=20, maps=True)
    assert out["features"].shape == (48, 12) and out["maps"].shape == (48, 12, 16, 16)
    assert torch.equal(out["labels"], ds.labels)
    # GAP features are the means of the maps (section 2's F_k)
    assert torch.allclose(out["features"], out["maps"].mean((2, 3)), atol=1e-6)
    # and the model's own logits (eval mode, as extract runs it) follow from them
    net.eval()
    with torch.no_grad():
        logits = net(ds.batch(torch.arange(48))["image"]).logits
    assert torch.allclose(net.classifier(out["features"]), logits, atol=1e-5)
    sub = features.extract(net, ds, indices=[3, 7])
    assert torch.allclose(sub["features"], out["features"][[3, 7]], atol=1e-6) and "maps" not in sub


def test_freeze_and_extraction_change_nothing(net_and_data):
    net, ds = net_and_data
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}    # BatchNorm running stats included
    features.extract(net, ds, batch_size=16)
    assert net.training                                              # left as it was
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    frozen = features.freeze(net)
    assert frozen is net and not net.training and not any(p.requires_grad for p in net.parameters())
    for p in net.parameters():
        p.requires_grad_(True)


def test_probe_weights_reproduce_the_svm_and_make_the_cam(net_and_data):
    net, ds = net_and_data
    out = features.extract(net, ds, maps=True)
    probe = features.fit_probe(out["features"], out["labels"], C=1.0)
    K = out["features"].shape[1]
    assert probe.weight.shape == (len(probe.classes), K)
    # folded weights on raw features give the SVM's decision function on standardized ones
    z = ((out["features"].double() - probe.mean.double()) / probe.scale.double()).numpy()
    ref = torch.from_numpy(probe.svm.decision_function(z)).float()
    assert torch.allclose(probe.decision(out["features"]), ref, atol=1e-3)
    # the probe's CAM is class_activation_maps with the probe's weights ...
    cls = torch.tensor([0, 1, 2, 3] * 12)
    maps = features.probe_cams(out["maps"], probe, cls)
    assert torch.allclose(maps, cam.class_activation_maps(out["maps"], probe.weight, cls), atol=1e-6)
    # ... and its mean plus the bias is the SVM's score (section 2's identity, new weights)
    score = maps[:, 0].mean((1, 2)) + probe.bias[cls]
    assert torch.allclose(score, ref.gather(1, cls[:, None])[:, 0], atol=1e-3)


def test_binary_probe_has_two_opposite_rows(net_and_data):
    net, ds = net_and_data
    out = features.extract(net, ds)
    y = (out["labels"] >= 2).long()
    probe = features.fit_probe(out["features"], y)
    assert probe.weight.shape == (2, out["features"].shape[1])
    assert torch.allclose(probe.weight[0], -probe.weight[1]) and torch.allclose(probe.bias[0], -probe.bias[1])
    d = torch.from_numpy(probe.svm.decision_function(
        ((out["features"].double() - probe.mean.double()) / probe.scale.double()).numpy())).float()
    assert torch.allclose(probe.decision(out["features"])[:, 1], d, atol=1e-3)
    assert np.array_equal(probe.predict(out["features"]).numpy(), (d > 0).long().numpy())


def test_attach_probe_gives_a_camnet_whose_logits_are_the_scores(net_and_data):
    net, ds = net_and_data
    out = features.extract(net, ds, maps=True)
    probe = features.fit_probe(out["features"], out["labels"])
    pn = features.attach_probe(net, probe)
    x = ds.batch(torch.arange(10))["image"]
    with torch.no_grad():
        o = pn(x)
    assert torch.allclose(o.logits, probe.decision(out["features"][:10]), atol=1e-4)
    logits, maps, idx = cam.cams(pn, x, topk=1)
    assert torch.allclose(maps[:, 0], features.probe_cams(out["maps"][:10], probe, idx[:, 0])[:, 0], atol=1e-4)
    assert not any(p.requires_grad for p in pn.parameters())
    assert net.classifier.out_features == 4                      # the original is untouched


def test_bad_inputs(net_and_data):
    net, ds = net_and_data
    with pytest.raises(ValueError, match="CAMNet"):
        features.extract(torch.nn.Linear(2, 2), ds)
    with pytest.raises(ValueError, match="two classes"):
        features.fit_probe(torch.randn(5, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(N,\)"):
        features.fit_probe(torch.randn(5, 3), torch.zeros(4, dtype=torch.long))
    probe = features.fit_probe(torch.randn(20, 3), torch.arange(20) % 2)
    with pytest.raises(ValueError, match="inputs"):
        features.attach_probe(net, probe)


def test_fc_net_trains_and_gives_hidden_features():
    from camlib import train
    torch.manual_seed(0)
    ds = make_synthetic(32, seed=1)
    fcn = features.FCNet(models.small_cnn(8, widths=(4, 4, 4, 4, 6)).backbone, (6, 16, 16), 8, hidden=10)
    train.fit(fcn, ds, steps=2, batch_size=16, progress=False, device="cpu")
    out = features.extract_fc(fcn, ds, batch_size=12)
    assert out["features"].shape == (32, 10) and (out["features"] >= 0).all() and torch.equal(out["labels"], ds.labels)
    fcn.eval()
    with torch.no_grad():        # the classifier on the hidden features gives the network's logits
        logits = fcn(ds.batch(torch.arange(32))["image"]).logits
    assert torch.allclose(fcn.classifier(out["features"]), logits, atol=1e-5)
    with pytest.raises(ValueError, match="fixes the input size"):
        fcn.hidden_features(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="FCNet"):
        features.extract_fc(models.small_cnn(8), ds)
