"""torchrun with two CPU processes (gloo): DDP training equals one process on the same global batch.

The model has no BatchNorm: with BatchNorm each rank would normalize with its own half-batch
statistics (SyncBatchNorm, which camlib uses on CUDA, has no CPU kernel in PyTorch), so the runs
would differ by design. Gradients are averaged by an all-reduce, so weights agree to float
rounding, not bit for bit.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from camlib import batches, distributed, models, train
from camlib.data import make_synthetic
from camlib.data.augment import GPUAugment

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")

_SCRIPT = r"""
import sys, json, torch
import torch.nn as nn
from camlib import distributed, models, recipes, train
from camlib.data import make_synthetic
from camlib.data.augment import GPUAugment

out_dir = sys.argv[1]
info = distributed.init_from_env("cpu")
assert info.world_size == 2 and info.backend == "gloo", info

def nobn():
    backbone = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), nn.ReLU(), nn.Conv2d(16, 24, 3, 2, 1), nn.ReLU(),
                             nn.Conv2d(24, 32, 3, 2, 1), nn.ReLU())
    return models.CAMNet(backbone, 32, 8, "gap", name="nobn")

class Recording:
    # GPUAugment that remembers which images (by label) this rank was given at each step
    def __init__(self, aug):
        self.aug, self.seen = aug, []
    def __call__(self, batch, part=None):
        self.seen.append(batch["label"].clone())
        return self.aug(batch, part=part)
    def state_dict(self):
        return self.aug.state_dict()
    def load_state_dict(self, st):
        self.aug.load_state_dict(st)

saves = []
_save = train.save_checkpoint
train.save_checkpoint = lambda path, state: (saves.append(state["step"]), _save(path, state))

tr, va = make_synthetic(128, seed=0), make_synthetic(41, seed=9)
model = nobn()
model.load_state_dict(torch.load(f"{out_dir}/init.pt"))
hist = train.fit(model, tr, va, steps=6, batch_size=32, lr=3e-3, seed=2, eval_every=3, checkpoint_every=2,
                 checkpoint=f"{out_dir}/ddp.pt", augment=(rec := Recording(GPUAugment.like(tr, 48, scale=(0.5, 1.0),
                 seed=4))), progress=True, device="cpu")
pred = train.predict(model, va, maps="label")
uneven = distributed.all_gather_cat(torch.full((info.rank + 1, 2), float(info.rank)))
torch.save({"state": train.model_state(model), "rows": hist.rows, "pred": pred, "saves": saves,
            "uneven": uneven, "seen": rec.seen}, f"{out_dir}/rank{info.rank}.pt")
# the command-line path of a recipe under the same process group (it cleans up the group at the end)
recipes.main(["--recipe", "synthetic-gap", "--profile", "smoke", "--device", "cpu", "--no-progress",
              "--checkpoint", f"{out_dir}/recipe.pt", "--json", f"{out_dir}/recipe{info.rank}.json"])
"""


def _nobn():
    backbone = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), nn.ReLU(), nn.Conv2d(16, 24, 3, 2, 1), nn.ReLU(),
                             nn.Conv2d(24, 32, 3, 2, 1), nn.ReLU())
    return models.CAMNet(backbone, 32, 8, "gap", name="nobn")


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists() or not torch.distributed.is_gloo_available(),
                    reason="needs torchrun and the gloo backend")
def test_two_process_ddp_matches_one_process(tmp_path):
    torch.manual_seed(0)
    init = train.model_state(_nobn())
    torch.save(init, tmp_path / "init.pt")
    script = tmp_path / "ddp_run.py"
    script.write_text(_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO), CAMLIB_DEVICE="cpu", OMP_NUM_THREADS="1",
               CAMLIB_DATA=str(tmp_path / "data"))
    proc = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(script), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")

    # one process, the same global batches and augmentation
    tr, va = make_synthetic(128, seed=0), make_synthetic(41, seed=9)
    single = _nobn()
    single.load_state_dict(init)
    hist = train.fit(single, tr, va, steps=6, batch_size=32, lr=3e-3, seed=2, eval_every=3,
                     augment=GPUAugment.like(tr, 48, scale=(0.5, 1.0), seed=4), progress=False, device="cpu")
    moved = 0.0
    for k, v in single.state_dict().items():
        assert torch.allclose(r0["state"][k], v, atol=2e-5, rtol=1e-4), k
        assert torch.equal(r0["state"][k], r1["state"][k]), k        # the ranks hold one model
        moved = max(moved, float((v - init[k]).abs().max()))
    assert moved > 1e-3                                              # it trained: the check has teeth

    # each rank got its half of the single-process batch
    for step in range(6):
        idx = batches.batch_indices(128, 32, 2, step)
        assert torch.equal(r0["seen"][step], tr.labels[idx[:16]]) and torch.equal(r1["seen"][step], tr.labels[idx[16:]])

    # evaluation gathered across ranks: every image once, in order, on both ranks
    ref = train.predict(single, va, maps="label")
    for r in (r0, r1):
        assert torch.equal(r["pred"]["labels"], va.labels)
        assert torch.allclose(r["pred"]["logits"], ref["logits"], atol=1e-4)
        assert torch.allclose(r["pred"]["maps"], ref["maps"], atol=1e-4)
    assert [row["step"] for row in r0["rows"]] == [3, 6]
    for a, b in zip(r0["rows"], hist.rows):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 and a["val_acc"] == b["val_acc"]

    # only rank 0 writes checkpoints (steps 2, 4, 6); the file resumes as usual
    assert r0["saves"] == [2, 4, 6] and r1["saves"] == []
    assert train.load_checkpoint(tmp_path / "ddp.pt")["step"] == 6
    assert torch.equal(r0["uneven"], torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]))
    # the recipe ran under torchrun on both ranks; only rank 0 reported
    assert (tmp_path / "recipe0.json").is_file() and not (tmp_path / "recipe1.json").exists()
    assert '"world_size": 2' in (tmp_path / "recipe0.json").read_text()
    assert proc.stderr.count("nobn:") >= 1 and proc.stderr.count("nobn:   0%") <= 1   # one progress bar


def test_single_process_helpers_are_no_ops():
    assert not distributed.is_distributed() and distributed.world_size() == 1 and distributed.is_main()
    idx = torch.arange(10)
    assert torch.equal(distributed.shard(idx), idx)
    assert distributed.shard_range(8) == (0, 8)
    t = torch.randn(3, 2)
    assert distributed.all_gather_cat(t) is t and distributed.gather_strided(t, 3) is t
    info = distributed.init_from_env("cpu")
    assert info.world_size == 1 and info.rank == 0 and info.device == torch.device("cpu")
    m = models.small_cnn(8)
    assert distributed.wrap(m, torch.device("cpu")) is m


def test_batch_must_split_evenly(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ValueError, match="divide evenly over 3"):
        train.fit(models.small_cnn(8), make_synthetic(64, seed=0), steps=1, batch_size=32, progress=False,
                  device="cpu")
    with pytest.raises(ValueError, match="divide evenly"):
        distributed.shard(torch.arange(32))
