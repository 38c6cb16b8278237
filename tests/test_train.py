import pytest
import torch

from camlib import models, train
from camlib.data import make_synthetic


@pytest.fixture(scope="module")
def data():
    return make_synthetic(256, seed=0), make_synthetic(64, seed=99)


def _weights(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_fit_is_deterministic_and_resume_matches_uninterrupted(tmp_path, data):
    tr, va = data
    kw = dict(steps=8, batch_size=32, lr=2e-3, seed=5, checkpoint_every=3, progress=False, device="cpu")
    torch.manual_seed(0)
    full = models.small_cnn(8)
    init = _weights(full)
    h_full = train.fit(full, tr, va, checkpoint=tmp_path / "full.pt", **kw)

    # a run that dies after step 6 (the last checkpoint it wrote is step 6), then resumes
    crashed = models.small_cnn(8)
    crashed.load_state_dict(init)

    class Crash(Exception):
        pass

    def die(model, row):
        if row["step"] >= 6:
            raise Crash

    with pytest.raises(Crash):
        train.fit(crashed, tr, va, checkpoint=tmp_path / "run.pt", eval_every=6, on_eval=die, **kw)
    assert train.load_checkpoint(tmp_path / "run.pt")["step"] == 6
    resumed = models.small_cnn(8)          # fresh process: fresh weights, state comes from the file
    train.fit(resumed, tr, va, checkpoint=tmp_path / "run.pt", resume=True, eval_every=6, **kw)
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert h_full.rows[-1]["step"] == 8


def test_training_learns_and_records(data):
    tr, va = data
    torch.manual_seed(0)
    m = models.small_cnn(8)
    before = train.evaluate(m, va)
    h = train.fit(m, tr, va, steps=24, batch_size=32, lr=3e-3, progress=False, snapshot_steps=[8], device="cpu")
    assert h.last("val_loss") < before["loss"]
    assert set(h.snapshots) == {8}
    assert len(h.rows) == 3                                   # one per epoch of 8 steps
    p = train.predict(m, va, maps="pred", topk=2, size=(64, 64))
    assert p["maps"].shape == (64, 2, 64, 64) and p["logits"].shape == (64, 8)


def test_resume_refuses_other_settings(tmp_path, data):
    tr, _ = data
    m = models.small_cnn(8)
    train.fit(m, tr, steps=2, batch_size=32, checkpoint=tmp_path / "c.pt", progress=False, device="cpu")
    with pytest.raises(ValueError, match="steps=2"):
        train.fit(m, tr, steps=3, batch_size=32, checkpoint=tmp_path / "c.pt", resume=True, progress=False, device="cpu")


def test_bad_arguments(data):
    tr, _ = data
    with pytest.raises(ValueError, match="steps"):
        train.fit(models.small_cnn(8), tr, steps=0)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train.fit(models.small_cnn(8), tr.subset(range(10)), steps=1, batch_size=32)
    with pytest.raises(ValueError, match="checkpoint path"):
        train.fit(models.small_cnn(8), tr, steps=1, resume=True)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5])
def test_very_short_runs_train(steps):
    # OneCycleLR used to divide by zero at steps=4 (its warm-up ended exactly on step 0)
    from camlib import models, train
    from camlib.data import make_synthetic

    data = make_synthetic(16, seed=0)
    net = models.small_cnn(data.num_classes, "gap")
    before = [p.detach().clone() for p in net.parameters()]
    hist = train.fit(net, data, data, steps=steps, batch_size=8, lr=1e-3, seed=0, device="cpu")
    assert hist.rows and hist.rows[-1]["step"] == steps
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))  # it did train
