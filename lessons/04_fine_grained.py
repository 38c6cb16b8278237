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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cam-course/cam-course/blob/main/lessons/04_fine_grained.ipynb)
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
# # Lesson 04 — Fine-grained recognition: classify what the CAM points at
#
# Section 4.1 of the paper uses CAM for **fine-grained recognition** on CUB-200-2011, 200 bird
# species that differ in small details. A network sees a photo shrunk to 224 pixels, where the
# bird may be small and its details lost. The paper's two-stage recipe: classify the full image
# with a GAP network, take the box around its class activation map (the 20%-of-max rule of
# lesson 03), crop that region out of the *original* image, and classify the crop with a second
# classifier trained on such crops. No box is needed at training time. Table 4 reports 63.0%
# accuracy on the full image, **67.8%** on the CAM crop, and 70.5% on the ground-truth box — the
# upper bound a perfect localizer would give. We build the same pipeline (`camlib.twostage`) and
# check the same ordering on data where the effect can be measured exactly.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from camlib import cam, config, metrics, models, report, train, twostage, viz
from camlib.data import SyntheticSpec, make_synthetic
from camlib.data.synthetic import COLOUR_NAMES

cfg = config.get_profile()
S = cfg.lesson("04")
print(cfg.describe())
print(S)

# %% [markdown]
# ## Fine-grained synthetic data
#
# The `"fine"` preset of the synthetic generator draws one object in a **128-pixel** frame full of
# clutter. Its head colour names a *pair* of classes (four colours), and the direction of the
# **thin stripes** on its body — vertical or horizontal, about 3 pixels from one dark stripe to
# the next — decides between the two classes of the pair: eight classes that differ only in a
# fine detail.
#
# Like the paper's networks (224-pixel inputs of larger photos), our classifiers take small inputs:
# stage 1 sees the whole frame shrunk to `S["input_size"]` pixels (resized with antialiasing, as an
# image library does), where the stripes are finer than a pixel and blur away. A crop around the
# object, cut from the full-resolution frame and resized to `S["crop_size"]` pixels, keeps them.

# %%
spec = SyntheticSpec.preset("fine")
# class c: head colour c // 2, stripes c % 2 (0 = vertical bands, 1 = horizontal bands)
names = [f"{COLOUR_NAMES[c // 2]}/{('vertical', 'horizontal')[c % 2]}" for c in range(spec.num_classes)]
train_full = make_synthetic(S["n_train"], seed=cfg.seed + 40, spec=spec)
test_full = make_synthetic(S["n_test"], seed=cfg.seed + 41, spec=spec)
train_full.class_names = test_full.class_names = names
C = spec.num_classes
print(train_full, test_full, sep="\n")

train_small = twostage.resize_dataset(train_full, S["input_size"])
test_small = twostage.resize_dataset(test_full, S["input_size"])
gt_view = twostage.crop_dataset(test_full, test_full.boxes, S["crop_size"], margin=S["margin"], min_size=S["min_crop"])
show = [int(torch.nonzero(test_full.labels == c)[0]) for c in range(C)]     # one test image per class
fig, axes = plt.subplots(3, 8, figsize=(15, 6.2))
for j, i in enumerate(show):
    viz.show_map(test_full.images[i], ax=axes[0, j], boxes=[test_full.boxes[i]], title=names[int(test_full.labels[i])])
    viz.show_map(test_small.images[i], ax=axes[1, j])
    viz.show_map(gt_view.images[i], ax=axes[2, j])
for r, t in enumerate(["128-px frame, true box", f"what stage 1 sees ({S['input_size']} px)",
                       f"a crop around the object ({S['crop_size']} px)"]):
    axes[r, 0].text(-0.08, 0.5, t, transform=axes[r, 0].transAxes, rotation=90, va="center", ha="right", fontsize=8)
plt.tight_layout(); plt.show()


# %% [markdown]
# ## Stage 1: a CAM network on the whole image
#
# The small GAP network of lesson 01, trained with image-level labels only on the shrunk frames.
# For every image we take the map of its **top-1 class** (the paper's protocol: no ground truth at
# test time) and its box by the paper's rule; the box is found on the small copy and mapped back
# to the 128-px original (`twostage.boxes_from_crops`).

# %%
def fit_net(data, name):
    torch.manual_seed(cfg.seed)
    net = models.small_cnn(C)
    train.fit(net, data, steps=S["steps"], batch_size=S["batch_size"], lr=2e-3, seed=cfg.seed, device=cfg.device,
              checkpoint=config.checkpoint_path(f"lesson04-{name}", seed=cfg.seed, **S), resume=True)
    return net.eval()


stage1 = fit_net(train_small, "stage1")
s1_test = twostage.cam_boxes(stage1, test_small)          # top-1 class maps and boxes, small-copy pixels
cam_boxes_test = twostage.boxes_from_crops(s1_test["boxes"], test_small.extras["crop_box"], S["input_size"])
acc_full = float((s1_test["classes"] == test_full.labels).float().mean())

loc_acc = metrics.box_accuracy(cam_boxes_test, test_full.boxes)       # IoU >= 0.5, top-1 class's map
known = twostage.cam_boxes(stage1, test_small, classes="label")       # the true class's map (GT-known)
max_box_acc = metrics.max_box_acc_v2(cam.upsample(known["maps"], test_small.image_size), test_small.boxes)
area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
area_ratio = float((area(cam_boxes_test) / area(test_full.boxes)).median())
print(f"stage 1 accuracy on the full image: {acc_full:.3f}")
print(f"CAM box localization (top-1 class, IoU >= 0.5): {loc_acc:.3f}; mean IoU "
      f"{metrics.mean_iou(cam_boxes_test, test_full.boxes):.3f}; CAM box / true box area: {area_ratio:.2f} (median)")
print(f"MaxBoxAccV2 (true class): {max_box_acc.score:.3f}")

# %% [markdown]
# The boxes: green is the true box, red the CAM box, yellow the region we will crop (the CAM box
# with a margin of `S["margin"]` of its size on every side, made square, and at least
# `S["min_crop"]` pixels wide so that a map that found only part of the object still gives some
# context — `twostage.crop_boxes`).

# %%
regions = twostage.crop_boxes(cam_boxes_test, test_full.image_size, margin=S["margin"], min_size=S["min_crop"])
fig, axes = plt.subplots(1, 8, figsize=(15, 2.3))
for j, i in enumerate(show):
    viz.show_map(test_full.images[i], s1_test["maps"][i], ax=axes[j], alpha=0.45,
                 boxes=[test_full.boxes[i], cam_boxes_test[i], regions[i]], box_colors=("lime", "red", "yellow"),
                 title=f"pred {names[int(s1_test['classes'][i])]}")
plt.tight_layout(); plt.show()


# %% [markdown]
# By the IoU ≥ 0.5 criterion the localization is poor (the paper reports about 41% on CUB). The
# objects are small and the map is coarse: at 48 px a map cell covers 4 pixels of the small copy,
# 11 of the original, and the region above 20% of the maximum spreads about a cell past the
# evidence, so the box is much larger than the object (the area ratio above). The evidence itself
# is mostly the head: at 48 px the stripes are gone, so only the head colour tells the classes
# apart. For *cropping* neither matters much: what counts is that the crop holds the object.

# %%
def holds_object(regions, boxes, fraction=0.9):
    """Whether each crop region holds at least `fraction` of its object's box."""
    inter = (torch.min(regions[:, 2:], boxes[:, 2:]) - torch.max(regions[:, :2], boxes[:, :2])).clamp_min(0)
    return inter.prod(1) / (boxes[:, 2:] - boxes[:, :2]).prod(1) >= fraction


crop_holds_object = float(holds_object(regions, test_full.boxes).float().mean())
H = test_full.image_size[0]
centre_regions = twostage.crop_boxes(torch.tensor([[H / 2, H / 2, H / 2, H / 2]]).expand(len(test_full), 4),
                                     H, margin=0.0, min_size=S["min_crop"])       # the same-size crop, centred
centre_holds = float(holds_object(centre_regions, test_full.boxes).float().mean())
print(f"the CAM crop holds at least 90% of the object's box in {crop_holds_object:.1%} of the test images "
      f"(a {S['min_crop']}-px crop in the centre: {centre_holds:.1%})")

# %% [markdown]
# ## Stage 2: a second network on the CAM crops
#
# The crop network is trained on the crops that stage 1's CAM boxes give on the **training**
# images — so the whole pipeline still uses image-level labels only, as in the paper, and the crop
# network learns from crops as imperfect as the ones it will meet. (If boxes were available,
# training on ground-truth boxes with random jitter — `twostage.jitter_boxes` — would be the
# alternative.) At test time `twostage.two_stage_predict` runs the whole pipeline.

# %%
s1_train = twostage.cam_boxes(stage1, train_small)
cam_boxes_train = twostage.boxes_from_crops(s1_train["boxes"], train_small.extras["crop_box"], S["input_size"])
crops_train = twostage.crop_dataset(train_full, cam_boxes_train, S["crop_size"], margin=S["margin"], min_size=S["min_crop"])
viz.grid(crops_train.images[:8], titles=[names[int(c)] for c in crops_train.labels[:8]], ncols=8, size=1.8,
         suptitle="training crops from stage 1's CAM boxes")
plt.show()

stage2 = fit_net(crops_train, "stage2-cam")
pipeline = twostage.two_stage_predict(stage1, stage2, test_full, input_size=S["input_size"], crop_size=S["crop_size"],
                                      margin=S["margin"], min_size=S["min_crop"])
acc_crop = float((pipeline["crop_pred"] == test_full.labels).float().mean())
print(f"two-stage accuracy (CAM crop): {acc_crop:.3f}")

# %% [markdown]
# ## The upper bound: crops of the ground-truth box
#
# The same crop network trained and tested on crops around the **true** boxes (same margin and
# minimum size): what the pipeline would reach with perfect localization.

# %%
gt_train = twostage.crop_dataset(train_full, train_full.boxes, S["crop_size"], margin=S["margin"], min_size=S["min_crop"])
gt_net = fit_net(gt_train, "stage2-gt")
acc_gt = float((twostage.cam_boxes(gt_net, gt_view)["classes"] == test_full.labels).float().mean())
print(f"ground-truth crop accuracy: {acc_gt:.3f}")

# %% [markdown]
# ## Results beside Table 4

# %%
rows = [("full image", acc_full, 63.0), ("crop around the CAM box", acc_crop, 67.8),
        ("crop around the ground-truth box", acc_gt, 70.5)]
print(f"{'':>34s} {'ours (synthetic)':>17s} {'paper (CUB, GoogLeNet-GAP)':>27s}")
for name, ours, paper in rows:
    print(f"{name:>34s} {100 * ours:>16.1f}% {paper:>26.1f}%")
fig, ax = plt.subplots(figsize=(6, 2.8))
x = np.arange(3)
ax.bar(x - 0.2, [100 * r[1] for r in rows], 0.4, label="ours (synthetic, 8 classes)")
ax.bar(x + 0.2, [r[2] for r in rows], 0.4, label="paper (CUB, 200 classes)")
ax.set_xticks(x, ["full image", "CAM crop", "GT crop"]); ax.set_ylabel("accuracy (%)"); ax.set_ylim(0, 100)
ax.legend(fontsize=8); plt.show()

# %% [markdown]
# Where does the crop help? The images stage 1 got wrong and stage 2 got right are mostly the
# right head colour with the wrong stripes: at the small input size stage 1 can name the pair but
# not the class within it.

# %%
full_pred, crop_pred, y = pipeline["full_pred"], pipeline["crop_pred"], test_full.labels
same_pair = float(((full_pred // 2) == (y // 2)).float().mean())
print(f"stage 1 names the right pair (head colour) in {same_pair:.1%} of the images, the right class in {acc_full:.1%}")
fixed = torch.nonzero((full_pred != y) & (crop_pred == y))[:, 0][:8].tolist()
if fixed:
    fig, axes = plt.subplots(2, len(fixed), figsize=(1.9 * len(fixed), 4.2), squeeze=False)
    for j, i in enumerate(fixed):
        viz.show_map(test_small.images[i], ax=axes[0, j], title=f"stage 1: {names[int(full_pred[i])]}")
        viz.show_map(pipeline["crops"].images[i], ax=axes[1, j], title=f"crop: {names[int(crop_pred[i])]}")
    plt.tight_layout(); plt.show()

# %% [markdown]
# ### Checks

# %%
data_name = f"synthetic fine ({S['n_test']} test images, {S['steps']} steps per network)"
report.claim("classifying the crop around the CAM box beats classifying the full image",
             acc_crop >= acc_full + S["min_gain"], ours=f"crop {acc_crop:.3f} vs full {acc_full:.3f}",
             paper="67.8 vs 63.0 (Table 4, CUB)", dataset=data_name, lesson="04")
report.claim(f"the ground-truth crop bounds both: above the full image by a clear margin, and at least the CAM "
             f"crop (within {S['bound_tol']:.0%}, the test set's sampling noise near the ceiling)",
             acc_gt >= acc_full + S["min_gain"] and acc_gt >= acc_crop - S["bound_tol"],
             ours=f"GT {acc_gt:.3f}, CAM {acc_crop:.3f}, full {acc_full:.3f}",
             paper="70.5 >= 67.8 >= 63.0 (Table 4)", dataset=data_name, lesson="04")
report.claim("the crop around the CAM box holds the object (>= 90% of its box) far more often than a centred crop "
             "of the same size",
             crop_holds_object >= max(S["min_holds"], centre_holds + S["min_gain"]),
             ours=f"CAM crop {crop_holds_object:.3f} vs centred crop {centre_holds:.3f}", dataset=data_name, lesson="04")
report.claim("stage 1 names the right pair far more often than the right class (the fine detail is what it lacks)",
             same_pair >= acc_full + S["min_gain"], ours=f"pair {same_pair:.3f} vs class {acc_full:.3f}",
             dataset=data_name, lesson="04")
print(f"(reported, not claimed: CAM box localization {loc_acc:.3f} at IoU >= 0.5, MaxBoxAccV2 {max_box_acc.score:.3f};"
      " the paper: about 41% of CUB test images localized, unverified)")


# %% [markdown]
# ## On a GPU: CUB-200-2011 with GoogLeNet-GAP and ResNet-50
#
# The same pipeline (`twostage.run_two_stage`) on the real benchmark: CUB-200-2011 decoded once
# into a 448-px cache (`camlib.data.cache`), each network an ImageNet-pretrained backbone with the
# paper's surgery (GoogLeNet-GAP) or a stride-1 ResNet-50, fine-tuned with Choe et al.'s recipe
# (`camlib.recipes`), training on random 224 crops of 256-px images. This runs in the `gpu` profile
# when CUB is in `data/` (lesson 03 shows how to get it); elsewhere it says what it needs and skips.

# %%
def cub_two_stage():
    if cfg.name != "gpu":
        print(f"skipped: the CUB experiment runs with CAMLIB_PROFILE=gpu (this run: {cfg.name})")
        return None
    from camlib import recipes
    from camlib.data.augment import GPUAugment
    from camlib.data.cache import cached
    from camlib.data.common import DatasetNotFoundError
    from camlib.data.cub import CUB200
    try:
        cub_train, cub_test = CUB200(split="train"), CUB200(split="test")
    except DatasetNotFoundError as e:
        print(f"skipped: {e}")
        return None
    tr, te = cached(cub_train, S["cub_cache"]), cached(cub_test, S["cub_cache"])
    table = {}
    for name in S["cub_models"]:
        r = recipes.get(f"cub-{name.replace('_cam', '-cam').replace('_gap', '-gap')}")
        fit_kw = dict(r.train)
        batch = fit_kw["batch_size"]
        per_epoch = len(tr) // batch
        every = fit_kw.pop("decay_every_epochs", None)
        if every is not None:
            fit_kw["decay_every"] = every * per_epoch
        out = twostage.run_two_stage(
            tr, te, lambda: models.build(name, num_classes=200, weights="DEFAULT"), input_size=224, crop_size=224,
            train_size=256, steps=S["cub_epochs"] * per_epoch, margin=S["cub_margin"], device=cfg.device,
            augment=lambda ds, size: GPUAugment.like(ds, size, mode="crop", flip=0.5), **fit_kw)
        table[name] = out
        print(f"{name}: full {out['acc_full']:.3f}  CAM crop {out['acc_crop']:.3f}  GT crop {out['acc_gt']:.3f}  "
              f"loc@0.5 {out['loc_acc']:.3f}  MaxBoxAccV2 {out['max_box_acc_v2']:.3f}")
    print("paper (Table 4, GoogLeNet-GAP, features + linear SVM): full 63.0, CAM crop 67.8, GT box 70.5")
    for name, out in table.items():
        report.claim(f"CUB, {name}: the CAM crop beats the full image", out["acc_crop"] > out["acc_full"],
                     ours=f"{out['acc_crop']:.3f} vs {out['acc_full']:.3f}", paper="67.8 vs 63.0 (Table 4)",
                     dataset="CUB-200-2011 test", lesson="04")
    return table


cub_results = cub_two_stage()

# %% [markdown]
# ### Exercise 1 — the crop around a CAM box
# Stage 2 classifies a crop around stage 1's box. Write it for one box `(x1, y1, x2, y2)` (pixel-edge):
# grow it by `margin × box width` on the left *and* on the right, and `margin × box height` above
# *and* below; round outwards to whole pixels (floor `x1, y1`, ceil `x2, y2`); clip to the image
# `[0, width] × [0, height]`. Return a tensor of 4 values.

# %%
import math
from camlib.exercises import check_crop_box

def crop_box(box, margin, height, width):
    ### BEGIN SOLUTION
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = x2 - x1, y2 - y1
    x1, y1 = math.floor(x1 - margin * bw), math.floor(y1 - margin * bh)
    x2, y2 = math.ceil(x2 + margin * bw), math.ceil(y2 + margin * bh)
    return torch.tensor([max(0, x1), max(0, y1), min(width, x2), min(height, y2)], dtype=torch.float64)
    ### END SOLUTION


# %%
check_crop_box(crop_box)

# %% [markdown]
# **Exercise 2.** The CAM boxes here fail the IoU ≥ 0.5 test almost always, yet the CAM crop
# classifies nearly as well as the ground-truth crop. Explain how both can be true.
#
# <!-- BEGIN SOLUTION -->
# IoU punishes a box that is too *large* as much as one that is off target. The coarse stage-1 map
# gives boxes a few times the object's area, so IoU is low; but such a box still *contains* the
# object (the crop holds it in about 97% of images), and after the margin and resize the crop shows
# the small discriminative stripes at a resolution where the second network can read them. For
# cropping, containment matters; for the localization metric, tightness does.
# <!-- END SOLUTION -->

# %% [markdown]
# ## Summary
# - The CAM of a GAP network, trained with image-level labels only, tells *where* to look; cropping
#   there and classifying the crop with a second network recovers details that the shrunk full
#   image loses (paper section 4.1, Table 4).
# - The crop network is trained on the CAM crops of the training images, so no box is ever used;
#   ground-truth crops give the upper bound.
# - A localization that is poor by the IoU ≥ 0.5 criterion can still give good crops: what matters
#   is that the crop holds the object.
#
# ## More exercises
# 1. Set the margin to 0 and the minimum crop size to 1 pixel. What happens to the CAM-crop
#    accuracy, and why?
# 2. Train the crop network on ground-truth boxes with random jitter (`twostage.jitter_boxes`) and
#    test it on the CAM crops. Is it better or worse than training on the CAM crops?
# 3. Give stage 1 a larger input (e.g. 96 px). How do the three accuracies change? At what input
#    size does the crop stop helping?
# 4. Replace the top-1 class's map by the map of the true class for the *test* crops. How much of
#    the gap to the ground-truth crop closes? Is that a fair number to report?
#
# ## Questions
# - Why train the crop network on crops of stage 1's boxes rather than on ground-truth boxes, when
#   the latter look cleaner?
# - The paper's localization on CUB (about 41% at IoU ≥ 0.5) is far below its classification gain.
#   How can a poor localizer still help classification?
# - In what kind of dataset would the two-stage pipeline *not* help?
