"""Named recipes (camlib.recipes): the paper's hyper-parameters, expectations, and end-to-end runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from camlib import models, recipes, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixtures_real as fx  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PAPER = {"cub-googlenet-gap", "cub-resnet50-cam", "cub-vgg16-gap", "ilsvrc-googlenet-gap"}


@pytest.mark.slow
def test_command_line_smoke_run_trains_end_to_end(tmp_path, monkeypatch):
    # the recipe is lesson 01's run (its sizes come from the lesson's table); tiny scale keeps it to seconds
    monkeypatch.setenv("CAMLIB_SCALE", "tiny")
    out, ckpt = tmp_path / "report.json", tmp_path / "ck.pt"
    env = dict(os.environ, PYTHONPATH=str(REPO), CAMLIB_DEVICE="cpu", CAMLIB_DATA=str(tmp_path / "data"))
    proc = subprocess.run([sys.executable, "-m", "camlib.recipes", "--recipe", "synthetic-gap", "--profile", "smoke",
                           "--checkpoint", str(ckpt), "--json", str(out), "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rep = json.loads(out.read_text())
    assert rep["recipe"] == "synthetic-gap" and rep["steps"] == recipes.TINY["steps"] and rep["world_size"] == 1
    ev = rep["eval"]
    for k in ("acc", "top5", "gt_known_box_acc_paper_rule", "top1_loc_error", "MaxBoxAccV2"):
        assert 0.0 <= ev[k] <= 1.0, k
    assert ev["top5"] >= ev["acc"] and abs(ev["top1_cls_error"] - (1 - ev["acc"])) < 1e-9
    assert {c["metric"] for c in rep["compare"]} == {"gt_known_box_acc_paper_rule", "acc"}
    assert train.load_checkpoint(ckpt)["step"] == recipes.TINY["steps"]
    # --resume with the finished checkpoint trains nothing more and reports the same model
    again = recipes.run("synthetic-gap", "smoke", device="cpu", checkpoint=ckpt, resume=True, progress=False)
    assert again["eval"] == ev


def test_the_synthetic_recipes_are_lesson_01s_run():
    from camlib import config
    for profile in config.PROFILES:
        lesson = config.lesson_settings("01", profile)
        for pool in ("gap", "gmp"):
            got = recipes.RECIPES[f"synthetic-{pool}"].profiles[profile]
            assert got == {k: lesson[k] for k in ("n_train", "n_val", "steps", "batch_size", "data")}, (profile, pool)
    tr, va = recipes.build_data(recipes.get("synthetic-gap"), dict(n_train=4, n_val=2, data="tinted"), progress=False)
    assert tr.image_size == va.image_size == (96, 96) == (recipes.get("synthetic-gap").image_size,) * 2  # lesson 01's data


def test_paper_recipes_show_where_each_number_comes_from():
    assert PAPER | {"synthetic-gap", "synthetic-gmp"} <= set(recipes.RECIPES)
    unverified = 0
    for name in sorted(PAPER | {"synthetic-gap"}):
        r = recipes.get(name)
        text = recipes.describe(r)
        assert text.startswith(name) and r.expected and r.sources
        expects = [line.strip() for line in text.splitlines() if line.strip().startswith("expect ")]
        assert len(expects) == len(r.expected)
        for line, e in zip(expects, r.expected):                 # each number with its source ...
            assert line.startswith(f"expect {e.metric} {e.value} ({e.source})") and e.source
            assert ("[unverified]" in line) == (not e.verified)   # ... and flagged when unchecked
            unverified += not e.verified
        assert all(f"source: {src}" in text for src in r.sources)
        rows = recipes.compare(r.expected, {e.metric: 0.5 for e in r.expected})   # ours beside theirs
        assert [row["metric"] for row in rows] == [e.metric for e in r.expected]
        for row, e in zip(rows, r.expected):
            assert row["ours"] == (50.0 if e.unit == "%" else 0.5)            # in the expected number's unit
            assert (row["expected"], row["source"], row["verified"]) == (e.value, e.source, e.verified)
        assert recipes.compare(r.expected, {}) == []                          # nothing measured: no rows
    assert unverified > 0


def test_paper_recipes_time_estimate_is_the_training_their_gpu_run_does(monkeypatch):
    monkeypatch.delenv("CAMLIB_SCALE", raising=False)
    n_train = {"cub": 5994}                                       # PAPER.md: CUB-200-2011's train split
    for name in sorted(PAPER):
        r = recipes.get(name)
        s = r.for_profile("gpu")                                  # what `recipes.run(name, "gpu")` trains
        steps = s["steps"] if s["steps"] is not None else \
            round(r.epochs * train.steps_per_epoch(n_train[r.dataset], s["batch_size"]))
        images = steps * s["batch_size"]
        assert r.time.kind == "estimate" and "H100" in r.time.machine
        assert f"{images:,} training images" in r.time.how        # says what it counts ...
        assert r.time.seconds == pytest.approx(images / recipes.H100_IMAGES_PER_S[r.model], abs=0.05)  # ... at what rate
        assert f"{r.time.seconds:.0f} s" in recipes.describe(r)
    for name in ("synthetic-gap", "synthetic-gmp"):              # ours come from this machine, and say how
        t = recipes.get(name).time
        assert t.kind in ("measured", "estimate") and t.seconds > 0 and t.machine == recipes.CPU_MACHINE
        assert "probe" in t.how or "measured" in t.how


@pytest.mark.parametrize("name", sorted(PAPER))
def test_fresh_layer_prefixes_match_the_builders(name):
    r = recipes.get(name)
    with torch.device("meta"):                                   # names only: no memory, no init time
        model = models.build(r.model, **r.model_kwargs)
    cfg = train.TrainConfig(steps=1, **{k: v for k, v in r.train.items() if k != "decay_every_epochs"})
    groups = train._param_groups(model, cfg)
    if not r.train.get("head_params"):                          # the paper's solver: one learning rate
        assert len(groups) == 1 and len(groups[0]["params"]) == len(list(model.parameters()))
        return
    head = {id(p) for p in groups[1]["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in head}
    assert "classifier.weight" in names
    if r.model == "resnet50_cam":       # Choe et al.: layer4 + fc train at 10x
        assert any(".conv1." in n for n in names) and len(names) > 20
    else:                               # the paper's added 3x3 conv (1024 units) + the classifier
        assert names == {"backbone.1.0.weight", "backbone.1.0.bias", "classifier.weight", "classifier.bias"}
    assert groups[1]["lr"] == pytest.approx(10 * groups[0]["lr"])


def test_cub_recipe_end_to_end_on_a_tiny_copy(tmp_path, monkeypatch):
    fx.make_cub(tmp_path / "data")
    monkeypatch.setenv("CAMLIB_DATA", str(tmp_path / "data"))
    rep = recipes.run("cub-resnet50-cam", "smoke", device="cpu", checkpoint=tmp_path / "ck.pt", progress=False)
    assert (rep["n_train"], rep["n_val"], rep["steps"]) == (6, 3, 2)
    assert (tmp_path / "data" / "cache").is_dir() and len(list((tmp_path / "data" / "cache").iterdir())) == 2
    assert rep["compare"][0]["metric"] == "MaxBoxAccV2" and rep["compare"][0]["unit"] == "%"
    assert 0 <= rep["compare"][0]["ours"] <= 100


def test_bad_requests():
    with pytest.raises(ValueError, match="unknown recipe"):
        recipes.get("cub-alexnet")
    with pytest.raises(ValueError, match="profile"):
        recipes.get("synthetic-gap").for_profile("huge")
    with pytest.raises(SystemExit):
        recipes.main(["--recipe", "nope"])


def test_evaluate_localization_and_evaluate_stream_give_the_metrics_numbers():
    """One implementation (evaluation._LocalizationTally over camlib.metrics) behind both evaluators."""
    from camlib import cam, localize, metrics
    from camlib.data import make_synthetic
    torch.manual_seed(0)
    ds = make_synthetic(20, seed=5)
    net = models.small_cnn(ds.num_classes).eval()
    ev = recipes.evaluate_localization(net, ds, device="cpu", batch_size=8, chunk=7)
    st = recipes.evaluate_stream(net, ds, device="cpu", batch_size=6, num_workers=0)
    x, labels = ds.batch(range(20))["image"], ds.labels
    with torch.no_grad():
        logits, m5, c5 = cam.cams(net, x, topk=5, size=ds.image_size)
        _, mg, _ = cam.cams(net, x, labels, size=ds.image_size)
    boxes = localize.boxes_from_maps(m5.flatten(0, 1)).view(20, 5, 4)
    for k in (1, 5):
        want = metrics.localization_error(c5, boxes, labels, ds.boxes, k=k)
        assert ev[f"top{k}_loc_error"] == pytest.approx(want) and st[f"top-{k} loc err"] == pytest.approx(want)
    assert ev["top1_cls_error"] == pytest.approx(metrics.classification_error(logits, labels, 1))
    assert ev["gt_known_box_acc_paper_rule"] == pytest.approx(
        metrics.box_accuracy(localize.boxes_from_maps(mg[:, 0]), ds.boxes))
    assert ev["MaxBoxAccV2"] == pytest.approx(metrics.max_box_acc_v2(mg[:, 0], ds.boxes).score) == st["MaxBoxAccV2"]


def test_fit_schedule_translates_epochs_and_the_decay_into_fit_steps():
    """One translation of a recipe's epochs into train.fit steps (recipes.run and lesson 04's CUB cell)."""
    r = recipes.get("cub-resnet50-cam")
    steps, kw = recipes.fit_schedule(dict(r.train, batch_size=32), 5994, 50)
    per_epoch = train.steps_per_epoch(5994, 32)                   # 187 whole batches
    assert steps == 50 * per_epoch and kw["decay_every"] == 15 * per_epoch
    assert "decay_every_epochs" not in kw and kw["batch_size"] == 32
    assert recipes.fit_schedule(dict(r.train, batch_size=32), 5994, None)[0] is None
    # another schedule than "step" has no decay to translate: the epochs setting is dropped, not passed to fit
    _, kw = recipes.fit_schedule(dict(r.train, batch_size=32, schedule="onecycle"), 5994, 1)
    assert "decay_every" not in kw and "decay_every_epochs" not in kw
    with pytest.raises(ValueError, match="batch_size"):
        recipes.fit_schedule({"lr": 0.1}, 100, 1)
