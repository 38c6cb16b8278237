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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cam-course/cam-course/blob/main/lessons/06_class_units.ipynb)
#
# On Colab, pick a GPU runtime (*Runtime → Change runtime type*) and run the set-up cell below first. Elsewhere that cell does nothing.

# %% tags=["colab-setup"] cellView="form"
#@title Colab set-up (does nothing outside Colab)
# Written by `python -m coursekit sync-colab`; edit coursekit/colab_cells.py, not this cell.
# Tick USE_DRIVE to keep datasets and checkpoints on Google Drive, so a disconnect loses no training
# (decoded-image caches stay on this runtime's fast local disk: see camlib.config.cache_dir).
USE_DRIVE = False  #@param {type:"boolean"}

import sys
if "google.colab" in sys.modules:
    import importlib.util, os, subprocess
    if importlib.util.find_spec("camlib") is None:
        # Pin what Colab already has: pip must never replace it (see coursekit/colab_cells.py).
        from importlib.metadata import distributions
        KEEP = ('torch', 'torchvision', 'ipywidgets')
        have = {(d.metadata["Name"] or "").lower(): d.version for d in distributions()}
        with open("/tmp/keep-colab-torch.txt", "w") as fh:
            fh.write("".join(f"{p}=={have[p]}\n" for p in KEEP if p in have))
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
# # Lesson 06 — Class-specific units
#
# Section 5 of the paper turns the CAM equation around. With a GAP head the class score is
# $S_c = \sum_k w_k^c F_k$, a weighted sum of the last layer's units; so the weights $w_k^c$ **rank
# the units by how much class $c$ relies on them**. Looking at where each top-ranked unit fires
# hardest across a dataset shows *what* the class relies on — the paper finds, for example, that
# the top units of a scene category detect the objects that make the scene. Here we rank units,
# look at their most activating image regions, and measure — on synthetic data where every
# object's discriminative part is known — whether a class's top units really fire on that part,
# against units picked at random. Then we do the same with a network pretrained on ImageNet and
# real photos.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from IPython.display import Markdown, display

from camlib import config, features, models, report, train, units, viz
from camlib.data import make_synthetic

cfg = config.get_profile()
S = cfg.lesson("06")
print(cfg.describe())
print(S)

# %% [markdown]
# ## A network to look inside
#
# Lesson 01's network on the course's striped data (as in lessons 02 and 03): one object per image,
# a striped body with a coloured head; the head's colour names the class, the stripe direction
# narrows it to a pair. A small CNN with a GAP
# head is trained on image-level labels only. Every image comes with the mask of its object and
# of its **discriminative part** (the head), which the network never sees.

# %%
train_set = make_synthetic(S["n_train"], seed=cfg.seed + 60)
test_set = make_synthetic(S["n_test"], seed=cfg.seed + 61)
torch.manual_seed(cfg.seed)
net = models.small_cnn(train_set.num_classes)
train.fit(net, train_set, steps=S["steps"], batch_size=S["batch_size"], lr=2e-3, seed=cfg.seed, device=cfg.device,
          checkpoint=config.checkpoint_path("lesson06-gap", seed=cfg.seed, **S), resume=True)
features.freeze(net)
acc = train.evaluate(net, test_set)["acc"]
print(f"test accuracy {acc:.3f} on {len(test_set)} images, {train_set.num_classes} classes")

# %% [markdown]
# ## Ranking the units of a class
#
# The classifier's weight matrix $W$ is $C \times K$: one row per class, one column per unit of the
# last conv layer ($K = 64$ here). Sorting row $c$ ranks the units for class $c$ — a few units
# carry large positive weights, most are near zero, some are negative (evidence *against* $c$).

# %%
W = net.classifier.weight.detach().cpu()
K = W.shape[1]
ranked = units.rank_units(W)                     # (C, K): each class's units, best first
c = 0
fig, ax = plt.subplots(figsize=(9, 2.6))
ax.bar(np.arange(K), W[c, ranked[c]].numpy(), color=["tab:red"] * S["top_k"] + ["tab:gray"] * (K - S["top_k"]))
ax.set_xlabel(f"rank of the unit for class {c} ({test_set.class_names[c]}), 0 = largest weight")
ax.set_ylabel("$w_k^c$"); ax.axhline(0, color="k", lw=0.5)
ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color="tab:red"), plt.Rectangle((0, 0), 1, 1, color="tab:gray")],
          labels=[f"the top {S['top_k']} units (followed below)", "the other units"], fontsize=8)
plt.show()
print("top units per class:")
for cls in range(W.shape[0]):
    print(f"  {test_set.class_names[cls]:>28s}: {ranked[cls, :S['top_k']].tolist()}")

# %% [markdown]
# ### Exercise 1 — ranking units
# The paper ranks the units of the last conv layer by their weight for a class (what
# `units.rank_units` did above). Given the classifier weight `(C, K)`, a class `c` and `k`, return the
# indices of the `k` units with the largest $w_k^c$ (the signed weight), largest first.

# %% nbgrader={"grade": false, "grade_id": "06_rank_units", "locked": false, "schema_version": 3, "solution": true, "task": false}
from camlib.exercises import check_rank_units

def rank_units(weight, c, k):
    ### BEGIN SOLUTION
    return torch.argsort(weight[c], descending=True)[:k]
    ### END SOLUTION


# %%
check_rank_units(rank_units)

# %% [markdown]
# ### Exercise 2 — how much of the score do the top units carry?
# A weight says how much a unit *could* add to the score; what it adds on an image is
# $w_k^c F_k$, where $F_k$ is the global average of unit $k$'s map. Write
# `top_units_share(features, weight, c, k)`: `features` are the last conv layer's maps `(N, K, h, w)`,
# `weight` the classifier `(C, K)`. For each image return the share of class $c$'s score
# $S_c = \sum_k w_k^c F_k$ (no bias) that class $c$'s top-`k` units — ranked by their signed weight, as in
# Exercise 1, the same units for every image — give: $\sum_{k \in \mathrm{top}} w_k^c F_k \,/\, S_c$, a
# tensor `(N,)`. (A share above 1 is possible: the other units may pull the score down.)

# %% nbgrader={"grade": false, "grade_id": "06_top_units_share", "locked": false, "schema_version": 3, "solution": true, "task": false}
from camlib.exercises import check_top_units_share

def top_units_share(features, weight, c, k):
    ### BEGIN SOLUTION
    F = features.mean(dim=(2, 3))                       # (N, K): GAP
    contrib = F * weight[c]                             # (N, K): w_k^c F_k
    top = torch.argsort(weight[c], descending=True)[:k]
    return contrib[:, top].sum(1) / contrib.sum(1)
    ### END SOLUTION


# %%
check_top_units_share(top_units_share)

# %% [markdown]
# ## What a top unit sees
#
# For each of class $c$'s top units, `units.top_activations` runs once over the test set and keeps
# the images where the unit's maximum is highest, and where that maximum is. The patch shown
# around it is the unit's **receptive field** — the part of the image that can influence that
# location (`units.receptive_field` computes it for a plain conv stack: 21 px here).

# %%
rf, stride = units.receptive_field(net.backbone)
print(f"receptive field {rf} px, stride {stride} px")
n_show = S["n_show"]


def show_top_units(model, data, cls, unit_ids, n, patch, title, images=None):
    top = units.top_activations(model, data, unit_ids, n=n, device=cfg.device)
    H, W_ = data.image_size
    boxes = units.peak_boxes(top["cells"], top["map_size"].tolist(), (H, W_), patch)
    imgs = data.images if images is None else images
    fig, axes = plt.subplots(len(unit_ids), n, figsize=(1.9 * n, 1.7 * len(unit_ids)), squeeze=False)
    for r, u in enumerate(unit_ids):
        idx = top["images"][r].tolist()
        with torch.no_grad():                                   # the unit's own map on each of its images
            umaps = model(data.batch(idx, device=cfg.device)["image"]).features[:, int(u)].float().cpu()
        lo, hi = float(umaps.min()), float(umaps.max())         # one colour scale per unit (row)
        for j in range(n):
            viz.show_map(imgs[idx[j]], umaps[j], ax=axes[r, j], alpha=0.45, vmin=lo, vmax=hi, colorbar=(j == n - 1),
                         colorbar_label=f"unit {int(u)} activation", boxes=[boxes[r, j]], box_colors=("yellow",),
                         box_labels=["receptive field at the unit's peak"], legend=(r == len(unit_ids) - 1 and j == 0))
        axes[r, 0].set_title(f"unit {int(u)}", loc="left", fontsize=8)
    fig.suptitle(title, fontsize=10)
    plt.tight_layout()
    plt.show()
    return top


for cls in S["show_classes"]:
    show_top_units(net, test_set, cls, ranked[cls, :S["top_k"]].tolist(), n_show, rf,
                   f"class {cls} ({test_set.class_names[cls]}): its top {S['top_k']} units, most activating test images")

# %% [markdown]
# Each row is one unit: its map over each image (its raw activation, not normalized, on one colour
# scale per row: the bar at the row's end), and the receptive
# field at its peak in yellow. Do the boxes sit on heads of one colour, or on one stripe direction?
# If so the units are colour and texture detectors, and a class's top units the detectors of *its*
# colour and *its* stripes. Looking at a few images is not evidence; the next section counts.
#
# ## Measuring it: do a class's top units fire on its part?
#
# For every test image of class $c$ and every unit, take the unit's map, upsample it to the image
# and find its maximum. A *hit* is a maximum that lands on the class's discriminative part (the
# head), within a tolerance of `S["tolerance"]` pixels (the map is coarse: one cell is 4 px). We
# compare the hit rate of class $c$'s top units with that of **units chosen at random**: many random
# draws of the same number of units, giving a distribution of hit rates.

# %%
feats = features.extract(net, test_set, maps=True, device=cfg.device)
part_hits = units.peak_on_mask(feats["maps"], test_set.part_masks, tolerance=S["tolerance"]).float()   # (N, K)
object_hits = units.peak_on_mask(feats["maps"], test_set.masks, tolerance=S["tolerance"]).float()
labels = test_set.labels
C = W.shape[0]


def hit_rate(hits, unit_sets):
    """Mean hit rate over classes of the unit set each class gets (unit_sets: (C, k))."""
    return float(torch.stack([hits[labels == cls][:, unit_sets[cls]].mean() for cls in range(C)]).mean())


top_sets = ranked[:, :S["top_k"]]
top_part, top_object = hit_rate(part_hits, top_sets), hit_rate(object_hits, top_sets)
g = torch.Generator().manual_seed(cfg.seed)
random_part, random_object = [], []
for _ in range(S["n_random"]):
    sets = torch.stack([torch.randperm(K, generator=g)[:S["top_k"]] for _ in range(C)])
    random_part.append(hit_rate(part_hits, sets))
    random_object.append(hit_rate(object_hits, sets))
random_part, random_object = np.array(random_part), np.array(random_object)
part_share = float(test_set.part_masks.float().mean())
print(f"the part covers {part_share:.1%} of an image")
print(f"peak on the part:   top-{S['top_k']} units {top_part:.3f}; random units {random_part.mean():.3f} "
      f"(99th percentile {np.percentile(random_part, 99):.3f})")
print(f"peak on the object: top-{S['top_k']} units {top_object:.3f}; random units {random_object.mean():.3f}")

fig, axes = plt.subplots(1, 2, figsize=(9, 2.8))
for ax, rnd, top, what in ((axes[0], random_part, top_part, "the discriminative part"),
                           (axes[1], random_object, top_object, "the object")):
    ax.hist(rnd, bins=30, color="tab:gray", label=f"{S['top_k']} random units per class")
    ax.axvline(top, color="tab:red", lw=2, label=f"top {S['top_k']} units by $w_k^c$")
    ax.set_xlabel(f"fraction of peaks on {what}"); ax.set_ylabel(f"random draws (of {S['n_random']})")
    ax.legend(fontsize=7)
plt.tight_layout(); plt.show()

# %% [markdown]
# Which units fire on the part at all? Below, each unit's part-hit rate on the images of class
# $c$ against its weight $w_k^c$: the units with the largest weights are those that fire on the
# head.

# %%
fig, ax = plt.subplots(figsize=(4.5, 3.2))
rate_c = part_hits[labels == c].mean(0)
ax.scatter(W[c].numpy(), rate_c.numpy(), s=12, label=f"each of the {K} units")
ax.scatter(W[c, ranked[c, :S["top_k"]]].numpy(), rate_c[ranked[c, :S["top_k"]]].numpy(), s=30, color="tab:red",
           label=f"the top {S['top_k']} units")
ax.set_xlabel(f"$w_k^c$ (class {c})"); ax.set_ylabel(f"share of class-{c} images\nwhose peak is on the head")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ### Exercise 3 — a unit's IoU with an object, over a dataset (network dissection)
# A hit above asks only where a unit's *maximum* falls. Network dissection (Bau et al., 2017) asks how
# well the unit's whole high-activation region overlaps a concept's masks. Its two rules differ from
# the CAM box's: the unit gets **one** threshold $T$ for the whole dataset — the $(1 - \text{top})$
# quantile of all its activations over all images and pixels, so an image where the unit barely fires
# may have no region at all — and the IoU is **one ratio over the dataset**:
# $\sum_i |R_i \cap M_i| \,/\, \sum_i |R_i \cup M_i|$, where $R_i$ is where the unit's map on image $i$ is
# above $T$. Write `dissection_iou(acts, masks, top)`: `acts` `(N, H, W)` are one unit's maps already
# upsampled to the masks' size, `masks` `(N, H, W)` bool; return a float.

# %% nbgrader={"grade": false, "grade_id": "06_dissection_iou", "locked": false, "schema_version": 3, "solution": true, "task": false}
from camlib.exercises import check_dissection_iou

def dissection_iou(acts, masks, top):
    ### BEGIN SOLUTION
    T = torch.quantile(acts.flatten().double(), 1 - top)
    region = acts > T
    return float((region & masks).sum() / (region | masks).sum())
    ### END SOLUTION


# %%
check_dissection_iou(dissection_iou)

# %% [markdown]
# ### Checks

# %%
data_name = f"synthetic-8 ({S['n_test']} test images, {S['steps']} steps)"
p99 = float(np.percentile(random_part, 99))
report.claim(f"a class's top-{S['top_k']} units peak on its discriminative part more often than 99% of "
             f"{S['n_random']} random draws of {S['top_k']} units, and by a clear margin over their mean",
             top_part > p99 and top_part >= random_part.mean() + S["min_margin"],
             ours=f"top {top_part:.3f} vs random mean {random_part.mean():.3f} (99th pct {p99:.3f})",
             paper="qualitative (section 5)", dataset=data_name, lesson="06",
             fails_if="the top units peak on the part no more often than the 99th percentile of random draws, or "
                      f"less than {S['min_margin']} above their mean")
report.claim("the top units peak on the object far more often than random units",
             top_object >= random_object.mean() + S["min_margin"],
             ours=f"top {top_object:.3f} vs random {random_object.mean():.3f}", dataset=data_name, lesson="06",
             fails_if=f"the top units' object-hit rate less than {S['min_margin']} above random units'")

# %% [markdown]
# ## An ImageNet network on real photos
#
# EfficientNet-Lite0 (pretrained on ImageNet, offline) ends in 1280 units, GAP and a 1000-way
# linear layer: its weights rank the units of every ImageNet class. We take the classes of the
# hand-annotated photos that ship with scikit-image and scikit-learn (lesson 03: a cat, an espresso,
# a rocket, a space shuttle, a tripod, a moped, a palace) and ask, for each class: **on which image
# do its top units fire hardest, and where?**
#
# Seven photos are too few to count anything: one per class, so a unit that fires hardest on "the
# cat photo" might be reacting to its fur, its colours or its framing. So each photo's object (the
# pixels inside its hand-drawn box) is also cut out and pasted onto package images that show none of
# the objects (grass, gravel, brick, a deep-sky field, a flower), at two sizes and random places
# (`camlib.data.photos.PastedPhotos`): every class then has many images, the same object in
# different surroundings, and an exact box. Two counts, each against units drawn at random:
# - a class's top units should fire hardest on an image **of that class** (of all the images);
# - on the images of the class, their peak should fall **inside the object's box**.

# %%
from camlib.data import IMAGENET_MEAN, IMAGENET_STD
from camlib.data.memory import denormalize
from camlib.data.photos import PastedPhotos, RealPhotos

photos = RealPhotos(size=S["image_size"])                                   # 7 photos, boxes drawn by hand
pasted = PastedPhotos(photos, size=S["image_size"], placements=S["pasted_placements"], seed=cfg.seed)
real = torch.utils.data.ConcatDataset([photos, pasted])
img_names = photos.names + pasted.names
img_labels = torch.tensor(photos.labels + pasted.labels)
photo_labels = torch.tensor(photos.labels)
x = torch.stack([real[i]["image"] for i in range(len(real))])
img_boxes = torch.stack([real[i]["boxes"][0] for i in range(len(real))])  # (N, 4), in the 224-px image
imnet = features.freeze(models.efficientnet_lite0().to(cfg.device))
names = models.imagenet_categories()
with torch.no_grad():
    fmaps = torch.cat([imnet(x[lo:lo + 32].to(cfg.device)).features.float().cpu() for lo in range(0, len(x), 32)])
Wi = imnet.classifier.weight.detach().cpu()
Ki = Wi.shape[1]
peaks = units.unit_peaks(fmaps)                              # each unit's maximum and its cell, per image
best_img = peaks["values"].argmax(0)                         # (Ki,) the image each unit fires hardest on
size_i, cells_i = S["image_size"], peaks["cells"].float()
cy = (cells_i[..., 0] + 0.5) * size_i / fmaps.shape[-2]      # the peak cell's centre in the image, (N, Ki)
cx = (cells_i[..., 1] + 0.5) * size_i / fmaps.shape[-1]
b = img_boxes[:, None]
peak_in_box = (cx >= b[..., 0]) & (cx < b[..., 2]) & (cy >= b[..., 1]) & (cy < b[..., 3])
print(f"{len(photos)} photos + {len(pasted)} pasted images = {len(x)}; feature maps {tuple(fmaps.shape)}")


def real_rates(unit_sets):
    """For unit_sets (7, k), one row per photo's class: the share of units whose hardest image is of the
    class, and the share of (unit, image of the class) pairs whose peak falls inside the object's box."""
    fire = np.mean([float((img_labels[best_img[unit_sets[i]]] == c).float().mean()) for i, c in enumerate(photos.labels)])
    inside = np.mean([float(peak_in_box[img_labels == c][:, unit_sets[i]].float().mean())
                      for i, c in enumerate(photos.labels)])
    return fire, inside


top_real = torch.stack([units.rank_units(Wi, c, k=S["top_k_imagenet"]) for c in photos.labels])
hit_imagenet, inbox_top = real_rates(top_real)
g = torch.Generator().manual_seed(cfg.seed)
rand_real = np.array([real_rates(torch.stack([torch.randperm(Ki, generator=g)[:S["top_k_imagenet"]]
                                              for _ in photos.labels])) for _ in range(S["n_random"])])
chance_imagenet, inbox_random = (float(v) for v in rand_real.mean(0))
p99_fire, p99_inbox = (float(v) for v in np.percentile(rand_real, 99, axis=0))
best_photo = units.unit_peaks(fmaps[:len(photos)])["values"].argmax(0)      # the seven photos alone
hit_photos_only = float(torch.cat([(best_photo[top_real[i]] == i).float() for i in range(len(photos))]).mean())
for i, c in enumerate(photos.labels):
    print(f"{names[c]:>15s}: top units {top_real[i].tolist()} fire hardest on "
          f"{[img_names[int(j)] for j in best_img[top_real[i]]]}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 2.8))
for ax, col, top, what in ((axes[0], 0, hit_imagenet, "units whose hardest image is of their class"),
                           (axes[1], 1, inbox_top, "peaks inside the object's box")):
    ax.hist(rand_real[:, col], bins=30, color="tab:gray", label=f"{S['top_k_imagenet']} random units per class")
    ax.axvline(top, color="tab:red", lw=2, label=f"top {S['top_k_imagenet']} units by $w_k^c$")
    ax.set_xlabel(f"share of {what}", fontsize=8); ax.set_ylabel(f"random draws (of {S['n_random']})", fontsize=8)
    ax.legend(fontsize=7)
plt.tight_layout(); plt.show()
display(Markdown(
    f"Over {len(x)} images ({len(photos)} photos, {len(pasted)} pasted), a class's top-{S['top_k_imagenet']} units "
    f"fire hardest on an image of that class in **{hit_imagenet:.0%}** of cases; units drawn at random "
    f"{chance_imagenet:.0%} (99th percentile of {S['n_random']} draws: {p99_fire:.0%}). On the images of the class, "
    f"**{inbox_top:.0%}** of the top units' peaks fall inside the object's box, against {inbox_random:.0%} for "
    f"random units (99th percentile {p99_inbox:.0%}). "
    + ("So the top units are far more class-specific than chance, " if hit_imagenet > p99_fire else
       "So the top units are not clearly more class-specific than chance, ")
    + (f"yet they do not fire hardest on their own class {'most of the time' if hit_imagenet < 0.5 else 'always'}: "
       "a unit can serve several classes, and its hardest image may be another class's. " if hit_imagenet < 1 else "")
    + f"On the {len(photos)} photos alone — the question as first asked here — the rate was {hit_photos_only:.0%} "
      f"({len(photos) * S['top_k_imagenet']} units)."))

# %% [markdown]
# And what they see: for a few classes, each top unit's map over the image where it fires hardest.
# The colours are the unit's raw activation, not normalized, each map with its own colour bar
# (EfficientNet-Lite0's ReLU6 caps activations at 6, so strong units all reach about 6); the class's
# object is boxed in green where it is on that image.

# %%
shown_i = denormalize(x, IMAGENET_MEAN, IMAGENET_STD)          # back to [0, 1] for display
for i in S["imagenet_show"]:
    cls = int(photo_labels[i])
    top_u = units.rank_units(Wi, cls, k=4)
    fig, axes = plt.subplots(1, 4, figsize=(12, 2.9))
    for ax, u in zip(axes, top_u.tolist()):
        j = int(best_img[u])
        own = int(img_labels[j]) == cls
        viz.show_map(shown_i[j], fmaps[j, u], ax=ax, alpha=0.5, boxes=[img_boxes[j]] if own else [],
                     box_labels=[f"the {names[cls]}'s box"], colorbar_label=f"unit {u} activation", legend=own,
                     title=f"unit {u} on '{img_names[j]}'")
        ax.title.set_fontsize(8)
    fig.suptitle(f"top units of '{names[cls]}' (w = {', '.join(f'{Wi[cls, u]:.2f}' for u in top_u)})", fontsize=10)
    plt.tight_layout(); plt.show()

# %%
real_ds = f"{len(photos)} package photos + {len(pasted)} pasted images"
report.claim(f"EfficientNet-Lite0: a class's top-{S['top_k_imagenet']} units fire hardest on an image of that class "
             f"more often than 99% of {S['n_random']} random draws, and at least twice as often as random units",
             hit_imagenet > p99_fire and hit_imagenet >= 2 * chance_imagenet,
             ours=f"{hit_imagenet:.3f} vs random {chance_imagenet:.3f} (99th pct {p99_fire:.3f})",
             paper="qualitative (section 5)", dataset=real_ds, lesson="06",
             fails_if="the top units' hardest images are of their class no more often than random units'")
report.claim(f"EfficientNet-Lite0: on a class's images, its top-{S['top_k_imagenet']} units peak inside the object's box "
             f"more often than 99% of {S['n_random']} random draws",
             inbox_top > p99_inbox, ours=f"{inbox_top:.3f} vs random {inbox_random:.3f} (99th pct {p99_inbox:.3f})",
             paper="qualitative (section 5)", dataset=real_ds, lesson="06",
             fails_if="the top units peak inside the box no more often than random units do")


# %% [markdown]
# ## On a GPU: a torchvision ResNet-50 and ImageNet validation images
#
# With the `gpu` profile, torchvision's pretrained ResNet-50 (also GAP + one linear layer, so the
# same ranking applies) replaces EfficientNet-Lite0, and when the ILSVRC 2012 validation set is
# present (lesson 03 says where to put it) the top units of a few classes are shown on their most
# activating validation images. Elsewhere this cell says what it would need and does nothing.

# %%
def gpu_units():
    if not config.real_data_ready(cfg, "The ResNet-50 / ILSVRC units"):
        return
    try:   # torchvision's ResNet-50 as it is: its own GAP and fc layer are the CAM head
        rnet = features.freeze(models.pretrained_classifier("resnet50", weights="DEFAULT", who="lesson 06").to(cfg.device))
    except models.WeightsDownloadError as e:  # no network: the weights cannot be downloaded
        config.skip_real_data(f"resnet50: {e}")
        return
    from camlib.data.common import DatasetNotFoundError
    from camlib.data.ilsvrc import ILSVRCVal
    try:
        val = ILSVRCVal()
    except DatasetNotFoundError as e:
        config.skip_real_data("ILSVRC 2012 val is not in place, so the package photos stand in; "
                              "where to put it follows.")
        print(e)
        val = photos
    idx = torch.randperm(len(val), generator=torch.Generator().manual_seed(0))[:S["gpu_val_images"]]
    sub = torch.utils.data.Subset(val, idx.tolist())
    for i in S["imagenet_show"]:
        cls = int(photo_labels[i])
        top_u = units.rank_units(rnet.classifier.weight, cls, k=4)
        top = units.top_activations(rnet, sub, top_u, n=min(6, len(sub)), batch_size=64)
        n_img = top["images"].shape[1]
        fig, axes = plt.subplots(len(top_u), n_img, figsize=(2.2 * n_img + 0.6, 2.1 * len(top_u)), squeeze=False)
        for r, u in enumerate(top_u.tolist()):
            imgs = torch.stack([sub[int(top["images"][r, j])]["image"] for j in range(n_img)])
            with torch.no_grad():
                umaps = rnet(imgs.to(cfg.device)).features[:, u].float().cpu()      # unit u's map on each image
            lo, hi = float(umaps.min()), float(umaps.max())                          # one scale per unit (row)
            shown = denormalize(imgs, IMAGENET_MEAN, IMAGENET_STD)
            for j in range(n_img):
                viz.show_map(shown[j], umaps[j], ax=axes[r, j], alpha=0.55, vmin=lo, vmax=hi, colorbar=(j == n_img - 1),
                             colorbar_label=f"unit {u} activation")
            axes[r, 0].set_title(f"unit {u}", loc="left", fontsize=8)
        fig.suptitle(f"ResNet-50: top units of '{names[cls]}', their maps on their most activating of {len(sub)} images")
        plt.tight_layout(); plt.show()


gpu_units()

# %% [markdown]
# **Exercise 4.** Ranking by the absolute value $|w_k^c|$ would also pick strongly *negative*
# units. What do those units detect, and why are they not "the parts a class relies on"?
#
# <!-- BEGIN SOLUTION -->
# A large negative weight means the unit's activation *lowers* the class score: it detects evidence
# for other classes (another head colour, another stripe direction). Its peaks sit on other classes'
# parts, and in an image of class $c$ it is mostly silent. The class relies on the positive units;
# the negative ones explain what rules the class out.
# <!-- END SOLUTION -->

# %%
from IPython.display import Markdown, display

display(Markdown(
    "## Summary: what we measured\n"
    f"- The small GAP network reached test accuracy {acc:.3f} ({len(test_set)} images, {S['steps']} steps).\n"
    f"- A class's top-{S['top_k']} units peak on its discriminative part (the head, {part_share:.1%} of an image) "
    f"in {top_part:.1%} of its images; {S['top_k']} units drawn at random, {random_part.mean():.1%} "
    f"(99th percentile of {S['n_random']} draws: {p99:.1%}).\n"
    f"- On the whole object: top units {top_object:.1%}, random units {random_object.mean():.1%}.\n"
    f"- EfficientNet-Lite0: the top-{S['top_k_imagenet']} units of each photo's class fire hardest on an image of "
    f"that class {hit_imagenet:.0%} of the time, units at random {chance_imagenet:.0%} ({len(x)} images: "
    f"{len(photos)} photos and {len(pasted)} pasted); their peaks fall inside the object's box {inbox_top:.0%} of "
    f"the time, random units' {inbox_random:.0%}."))

# %% [markdown]
# ### The ideas
# - With a GAP head, class $c$'s score is $\sum_k w_k^c F_k$: the weights rank the last layer's
#   units by their importance to the class (paper section 5).
# - A unit's most activating image regions, across a dataset, show what it detects; a class's top
#   units detect the parts the class depends on.
# - On synthetic data we measured it: a class's top units peak on its discriminative part far more
#   often than units at random; with an ImageNet network, the top units of a class fire hardest on
#   images of that class, and inside its object, more often than units at random.
#
# ## What to try on a GPU
# The gpu profile trains the synthetic network on 20,000 images for 300 steps and measures on 2,000
# test images (smoke: 2,048 / 80 steps / 400; cpu: 6,000 / 100 / 1,000), and shows two classes' units
# instead of one (`camlib/config.py`, lesson "06"). The larger measurement narrows the random
# baseline's spread, so the 99th-percentile test gets stricter. Above all, the gpu profile adds to
# the package photos a torchvision ResNet-50 and 5,000 ILSVRC validation images (when they are in
# place): then each top unit is shown with its map on its most activating images, and you can ask
# whether a class's top units detect the parts and objects the class is made of (paper, section 5).
#
# ## More exercises
# 1. Rank the units by their *most negative* weights for a class. Where do those units peak, and
#    on which classes' images?
# 2. The hit rate used a tolerance of a few pixels. Plot the top-unit and random-unit hit rates as
#    the tolerance goes from 0 to 8 pixels. What does the gap look like, and why does it shrink?
# 3. Train the same network with a GMP head (lesson 01) and repeat the measurement. Do the top
#    units change what they detect?
# 4. Instead of the top units by $w_k^c$, rank units by $w_k^c \cdot F_k$ averaged over the images
#    of class $c$ (their actual contribution to the score). Does the ranking change?
#
# ## Questions
# - Why is $w_k^c$ a sensible measure of a unit's importance for class $c$ only when the last layer
#   is followed by global average pooling and a single linear layer?
# - A unit can have a large weight for two classes. What would that unit detect in our synthetic
#   data?
# - The receptive field of a unit in EfficientNet-Lite0's last layer covers the whole 224-px image,
#   yet its map still points at a region. Why?
