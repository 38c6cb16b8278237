import pytest
import torch

from camlib import config, report


def test_profile_from_env_and_default(monkeypatch):
    monkeypatch.setenv("CAMLIB_PROFILE", "smoke")
    assert config.get_profile().name == "smoke"
    monkeypatch.delenv("CAMLIB_PROFILE")
    expected = "gpu" if torch.cuda.is_available() else "cpu"
    assert config.default_profile_name() == expected
    monkeypatch.setenv("CAMLIB_PROFILE", "huge")
    with pytest.raises(ValueError, match="CAMLIB_PROFILE must be one of"):
        config.get_profile()


def test_device_choice(monkeypatch):
    monkeypatch.setenv("CAMLIB_DEVICE", "cpu")
    assert config.get_device().type == "cpu"
    monkeypatch.delenv("CAMLIB_DEVICE")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            config.get_device("cuda")


def test_lesson_sizes_grow_with_the_profile():
    small, mid = config.get_profile("smoke").lesson("01"), config.get_profile("cpu").lesson("01")
    assert small["steps"] <= mid["steps"] and small["n_train"] <= mid["n_train"]
    assert config.get_profile("cpu").lesson("01", steps=3)["steps"] == 3
    with pytest.raises(ValueError, match="no sizes"):
        config.get_profile("cpu").lesson("99")
    for lesson, table in config._LESSONS.items():
        assert set(table) == set(config.PROFILES), lesson


def test_seeding_repeats():
    config.seed_everything(3)
    a = torch.rand(3)
    config.seed_everything(3)
    assert torch.equal(a, torch.rand(3))
    with pytest.raises(ValueError, match="seed"):
        config.seed_everything(-1)


def test_checkpoint_path_depends_on_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("CAMLIB_DATA", str(tmp_path))
    a = config.checkpoint_path("run", steps=3)
    assert a.parent == tmp_path / "checkpoints"
    assert a != config.checkpoint_path("run", steps=4) and a == config.checkpoint_path("run", steps=3)


def test_claim_records_and_asserts(monkeypatch, tmp_path):
    out = tmp_path / "claims.jsonl"
    monkeypatch.setenv("CAMLIB_REPORT", str(out))
    report.claim("two is more than one", 2 > 1, ours=2, paper=1, dataset="arithmetic", lesson="xx")
    with pytest.raises(AssertionError, match="claim failed"):
        report.claim("one is more than two", 1 > 2, ours=1, dataset="arithmetic", lesson="xx")
    rows = out.read_text().splitlines()
    assert len(rows) == 2 and '"passed": false' in rows[1]


def test_checkpoint_path_changes_when_a_data_generator_changes(monkeypatch, tmp_path):
    # a lesson's checkpoint trained on the old synthetic images must not be resumed on new ones
    monkeypatch.setenv("CAMLIB_DATA", str(tmp_path))
    before = config.checkpoint_path("run", steps=3)
    monkeypatch.setattr(config, "_generators_fingerprint", lambda: "another-generator")
    assert config.checkpoint_path("run", steps=3) != before
