# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown] tags=["colab-badge"]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cam-course/cam-course/blob/main/lessons/01_gap_vs_gmp.ipynb)
#
# On Colab, pick a GPU runtime (*Runtime → Change runtime type*) and run the set-up cell below first. Elsewhere that cell does nothing.

# %% tags=["colab-setup"] cellView="form"
#@title Colab set-up (does nothing outside Colab)
# Written by `python -m coursekit sync-colab`; edit coursekit/colab_cells.py, not this cell.
# Tick USE_DRIVE to keep datasets and checkpoints on Google Drive, so a disconnect loses no training.
USE_DRIVE = False  #@param {type:"boolean"}

import sys
if "google.colab" in sys.modules:
    import importlib.util, os, subprocess
    if importlib.util.find_spec("camlib") is None:
        # Pin the torch Colab already has: pip must never replace it (see coursekit/colab_cells.py).
        from importlib.metadata import version
        with open("/tmp/keep-colab-torch.txt", "w") as fh:
            fh.write("".join(f"{p}=={version(p)}\n" for p in ("torch", "torchvision")))
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", "/tmp/keep-colab-torch.txt",
                        "camlib @ git+https://github.com/cam-course/cam-course"], check=True)
    from google.colab import output
    output.enable_custom_widget_manager()
    if USE_DRIVE:
        from google.colab import drive
        drive.mount("/content/drive")
        os.environ["CAMLIB_DATA"] = "/content/drive/MyDrive/cam-course-data"
        os.makedirs(os.environ["CAMLIB_DATA"], exist_ok=True)

# %% [markdown]
# # Lesson 01 — Global average pooling versus global max pooling
#
# The paper (section 2) trains the *same* network with two different ways of pooling the last
# feature maps into one number per channel:
#
# * **GAP**, global average pooling: $F_k = \frac{1}{hw}\sum_{x,y} f_k(x,y)$;
# * **GMP**, global max pooling: $F_k = \max_{x,y} f_k(x,y)$.
#
# Both train with image-level labels only and classify about equally well. But with GAP, the
# pooled value — and so the class score — rises with *every* location that shows evidence, so the
# network is rewarded for finding the object's whole extent. With GMP only the single best
# location counts: low scores elsewhere change nothing, and the network learns to find **one**
# discriminative part. The paper reports similar classification (Table 1: GoogLeNet-GAP 35.0 vs
# GoogLeNet-GMP 35.6 top-1 error) but better localization for GAP (Table 2: 56.40 vs 57.78 top-1
# localization error).
#
# Here we make that effect visible and measurable on data where we know the truth exactly.

# %%
import copy

import matplotlib.pyplot as plt
import numpy as np
import torch
from torchvision.ops import box_iou

from camlib import config, localize, models, report, train, viz
from camlib.data import make_synthetic

cfg = config.get_profile()
S = cfg.lesson("01")
print(cfg.describe())
print(S)

# %% [markdown]
# ## The data: objects whose evidence is uneven
#
# Each image shows one object — a striped body with a small coloured head — over a cluttered
# background with class-independent distractor shapes. Two cues name the class:
#
# * the **head colour** names the class outright: a small, strongly discriminative part;
# * the **stripe direction** on the body narrows the class to a pair: weaker evidence, spread over
#   the whole object.
#
# Every image comes with its exact box and mask (and the head's mask), so we can *measure*
# localization. (Lesson 03 moves to real benchmarks.) The generator is deterministic in
# `(seed, index)`: the validation set uses another seed than the training set.

# %%
train_set = make_synthetic(S["n_train"], seed=cfg.seed)
val_set = make_synthetic(S["n_val"], seed=cfg.seed + 1000)
print(train_set, val_set, sep="\n")
show = list(range(8))
viz.grid(val_set.images[show], boxes=[[b] for b in val_set.boxes[show]],
         titles=[val_set.class_names[int(c)] for c in val_set.labels[show]], ncols=8, size=1.9,
         suptitle="validation images with their ground-truth boxes")
plt.show()

# %%
fig, axes = plt.subplots(1, 3, figsize=(7, 2.5))
i = 0
viz.show_map(val_set.images[i], ax=axes[0], title="image")
axes[1].imshow(val_set.masks[i], cmap="gray"); axes[1].set_title("object mask"); axes[1].set_axis_off()
axes[2].imshow(val_set.part_masks[i], cmap="gray"); axes[2].set_title("discriminative part"); axes[2].set_axis_off()
plt.show()
print(f"the head covers {val_set.part_masks.sum() / val_set.masks.sum():.0%} of the object on average")

# %% [markdown]
# ### Exercise 1 — the two poolings
# Write global average pooling and global max pooling: each takes feature maps `(B, K, h, w)` and
# returns one number per image and channel, `(B, K)`. The check below compares your functions with
# a reference on random inputs and tells you what differs.

# %%
from camlib.exercises import check_gap, check_gmp

def gap(features):
    ### BEGIN SOLUTION
    return features.mean(dim=(-2, -1))
    ### END SOLUTION

def gmp(features):
    ### BEGIN SOLUTION
    return features.amax(dim=(-2, -1))
    ### END SOLUTION


# %%
check_gap(gap)

# %%
check_gmp(gmp)


# %% [markdown]
# ## Two networks that differ only in the pooling
#
# A small CNN: five 3×3 conv–BatchNorm–ReLU blocks with two stride-2 stages, so a 64-px image gives
# 16×16 feature maps; then the pooling, then one linear layer. Same initialization, same data
# order, same optimizer (Adam, one-cycle schedule) — only `pool` differs. Training uses the labels
# only: the boxes and masks are never shown to the loss. Checkpoints are written as training goes,
# so a re-run (or a Colab disconnect) resumes instead of starting over.

# %%
def train_pair(seed):
    nets, hists = {}, {}
    for pool in ("gap", "gmp"):
        torch.manual_seed(seed)
        net = models.small_cnn(train_set.num_classes, pool)
        ckpt = config.checkpoint_path(f"lesson01-{pool}", seed=seed, **S)
        hists[pool] = train.fit(net, train_set, val_set, steps=S["steps"], batch_size=S["batch_size"], lr=2e-3,
                                seed=seed, device=cfg.device, snapshot_steps=S["snapshots"],
                                checkpoint=ckpt, resume=True)
        nets[pool] = net
    return nets, hists

runs = {seed: train_pair(seed) for seed in S["seeds"]}
nets, hists = runs[S["seeds"][0]]
print("parameters:", {p: sum(t.numel() for t in n.parameters()) for p, n in nets.items()})


# %% [markdown]
# ## Measuring localization
#
# For every validation image we take the map of its **true** class (so classification errors do
# not mix in: lesson 03 adds them), upsample it to the image, and apply the paper's rule: keep the
# pixels at or above **20% of the map's maximum**, take the **largest connected component**, and
# its bounding box. The box is correct when its IoU with the ground truth is at least 0.5.
# We also measure how much of the object's mask the kept region covers.

# %%
def localization(net, data):
    p = train.predict(net, data, maps="label", size=data.image_size, device=cfg.device)
    boxes = localize.boxes_from_maps(p["maps"], threshold=0.2)
    iou = box_iou(boxes, data.boxes).diag()
    region = p["maps"] >= 0.2 * p["maps"].amax(dim=(-2, -1), keepdim=True)
    covered = (region & data.masks).sum((1, 2)) / data.masks.sum((1, 2))
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return {"acc": float((p["logits"].argmax(1) == p["labels"]).float().mean()),
            "box_acc": float((iou >= 0.5).float().mean()), "mean_iou": float(iou.mean()),
            "mask_covered": float(covered.mean()),
            "box_area_ratio": float((area(boxes) / area(data.boxes)).median()),
            "maps": p["maps"], "boxes": boxes}

results = {seed: {pool: localization(net, val_set) for pool, net in pair[0].items()} for seed, pair in runs.items()}
keys = ["acc", "box_acc", "mean_iou", "mask_covered", "box_area_ratio"]
print(f"{'seed':>4} {'head':>4} " + " ".join(f"{k:>14}" for k in keys))
for seed, res in results.items():
    for pool, r in res.items():
        print(f"{seed:>4} {pool:>4} " + " ".join(f"{r[k]:>14.3f}" for k in keys))

mean = {pool: {k: float(np.mean([results[s][pool][k] for s in results])) for k in keys} for pool in ("gap", "gmp")}

# %%
fig, ax = plt.subplots(figsize=(6, 3))
w = 0.38
x = np.arange(len(keys) - 1)
for j, pool in enumerate(("gap", "gmp")):
    ax.bar(x + (j - 0.5) * w, [mean[pool][k] for k in keys[:-1]], w, label=pool.upper())
ax.set_xticks(x, ["classification\naccuracy", "box accuracy\n(IoU ≥ 0.5)", "mean IoU", "mask\ncovered"])
ax.set_ylim(0, 1); ax.legend(); ax.set_title(f"mean over {len(results)} seed(s), {S['n_val']} validation images")
plt.show()

# %% [markdown]
# ## Why: look at the maps
#
# The same validation images, the map of the true class for each head, the ground-truth box in
# green and the box from the 20% rule in red.

# %%
seed0 = S["seeds"][0]
fig, axes = plt.subplots(2, 8, figsize=(16, 4.4))
for row, pool in enumerate(("gap", "gmp")):
    r = results[seed0][pool]
    for j, i in enumerate(show):
        viz.show_map(val_set.images[i], r["maps"][i], ax=axes[row, j], alpha=0.5,
                     boxes=[val_set.boxes[i], r["boxes"][i]], box_colors=("lime", "red"))
    axes[row, 0].set_title(pool.upper(), loc="left", fontsize=11)
plt.tight_layout(); plt.show()

# %% [markdown]
# The GMP maps are a bright spot: the network found *one* place that decides the class — usually
# near the head — and nothing rewarded it for lighting up the rest. The GAP maps spread along the
# striped body, because every striped location adds to the average that the class score is made of.

# %% [markdown]
# ## How the maps change as training goes on
#
# `fit` kept copies of the weights at a few steps. Early on both heads see little; as training
# goes on, GMP's map shrinks to its peak while GAP's covers the object — and, trained long enough,
# GAP's map grows past the object (its boxes get larger than the object: watch the area ratio).

# %%
snap_rows = []
fig, axes = plt.subplots(2 * len(S["snapshots"]), 6, figsize=(10, 3.4 * len(S["snapshots"])))
for si, step in enumerate(S["snapshots"]):
    for pi, pool in enumerate(("gap", "gmp")):
        net = copy.deepcopy(nets[pool])
        net.load_state_dict(hists[pool].snapshots[step])
        r = localization(net, val_set)
        snap_rows.append((step, pool, r["acc"], r["box_acc"], r["box_area_ratio"]))
        for j in range(6):
            ax = axes[2 * si + pi, j]
            viz.show_map(val_set.images[j], r["maps"][j], ax=ax, boxes=[val_set.boxes[j], r["boxes"][j]],
                         box_colors=("lime", "red"))
        axes[2 * si + pi, 0].set_title(f"{pool.upper()} @ step {step}", loc="left", fontsize=9)
plt.tight_layout(); plt.show()
print(f"{'step':>5} {'head':>4} {'acc':>6} {'box acc':>8} {'box/object area':>16}")
for step, pool, acc, bacc, ratio in snap_rows:
    print(f"{step:>5} {pool:>4} {acc:>6.3f} {bacc:>8.3f} {ratio:>16.2f}")

# %%
fig, ax = plt.subplots(figsize=(5, 3))
for pool in ("gap", "gmp"):
    rows = [r for r in snap_rows if r[1] == pool]
    ax.plot([r[0] for r in rows], [r[3] for r in rows], "o-", label=f"{pool.upper()} box accuracy")
    ax.plot([r[0] for r in rows], [r[2] for r in rows], "s--", label=f"{pool.upper()} classification")
ax.set_xlabel("training step"); ax.set_ylim(0, 1.02); ax.grid(alpha=0.3); ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Checks
# The lesson's claims, asserted on the numbers computed above (averaged over the seeds). In the
# smoke profile the networks train only briefly, so the claims are checked at that size too.

# %%
g, m = mean["gap"], mean["gmp"]
data_name = f"synthetic-8 ({S['n_val']} val, {S['steps']} steps, seeds {S['seeds']})"
report.claim("GAP localizes better than GMP by a clear margin (box accuracy, IoU >= 0.5, 20% rule)",
             g["box_acc"] >= m["box_acc"] + 0.15, ours=f"GAP {g['box_acc']:.3f} vs GMP {m['box_acc']:.3f}",
             paper="top-1 loc. err. GAP 56.40 vs GMP 57.78 (Table 2)", dataset=data_name, lesson="01")
report.claim("GAP is ahead in localization for every seed",
             all(results[s]["gap"]["box_acc"] > results[s]["gmp"]["box_acc"] for s in results),
             ours=[round(results[s]["gap"]["box_acc"] - results[s]["gmp"]["box_acc"], 3) for s in results],
             dataset=data_name, lesson="01")
report.claim("GAP's kept region covers more of the object's mask than GMP's",
             g["mask_covered"] > m["mask_covered"], ours=f"GAP {g['mask_covered']:.3f} vs GMP {m['mask_covered']:.3f}",
             dataset=data_name, lesson="01")
report.claim("classification accuracy is close (within 5 points)", abs(g["acc"] - m["acc"]) <= 0.05,
             ours=f"GAP {g['acc']:.3f} vs GMP {m['acc']:.3f}", paper="top-1 err. GAP 35.0 vs GMP 35.6 (Table 1)",
             dataset=data_name, lesson="01")

# %% [markdown]
# ## Summary
# - GAP and GMP heads classify about equally well, trained with image-level labels only.
# - With GAP, every location with evidence raises the class score, so the map covers the object's
#   extent; GMP only rewards the best location, so its map shrinks to one discriminative part.
# - A single number (box accuracy at the 20% rule) shows the difference, but the maps show *why*.
# - Trained longer, GAP's maps can grow past the object: localization is not monotone in training.
#
# ## More exercises
# 1. Make the body carry no evidence: `SyntheticSpec(stripes="random")` (pass it as `spec=` to
#    `make_synthetic`). Predict what happens to both heads' maps, then check.
# 2. Change the threshold from 20% to 10% and 40% of the maximum. Which head is more sensitive, and why?
# 3. Replace GMP by a *log-sum-exp* pooling $\frac{1}{r}\log\frac{1}{hw}\sum e^{r f}$, which moves
#    from GAP ($r\to0$) to GMP ($r\to\infty$). Where between them does localization break?
#
# **Exercise 2.** Why does the *pointing game* (is the map's peak inside the object?) fail to
# separate GAP from GMP on this data?
#
# <!-- BEGIN SOLUTION -->
# GMP's map peaks on the head, which is part of the object, so its peak is inside the object as
# often as GAP's. The pointing game only asks *whether* the network looked at the object, not how
# much of it: exactly the difference between the two heads. Box IoU or mask coverage measure extent.
# <!-- END SOLUTION -->
#
# ## Questions
# - How would you design data on which GMP localizes as well as GAP? (is the map's peak inside the object?) fail to separate GAP from
#   GMP here?
# - The paper's localization gap between GAP and GMP (Table 2) is much smaller than ours. Give two
#   reasons why real photos might narrow it.
