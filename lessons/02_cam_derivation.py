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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cam-course/cam-course/blob/main/lessons/02_cam_derivation.ipynb)
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
# # Lesson 02 — The class activation map, derived
#
# Section 2 of the paper in four lines. Let $f_k(x, y)$ be unit $k$ of the last convolutional
# layer at location $(x, y)$ of an $h \times w$ grid. Global average pooling gives
# $F_k = \frac{1}{hw}\sum_{x,y} f_k(x,y)$ and the linear layer gives the class score
# $$S_c = \sum_k w_k^c F_k + b_c
#       = \sum_k w_k^c \frac{1}{hw}\sum_{x,y} f_k(x,y) + b_c
#       = \frac{1}{hw}\sum_{x,y} \underbrace{\sum_k w_k^c f_k(x,y)}_{M_c(x,y)} + b_c .$$
# Swapping the two sums is the whole trick: the score is the **average of a map**
# $M_c(x,y) = \sum_k w_k^c f_k(x,y)$ plus the bias, and $M_c(x,y)$ says how much location
# $(x,y)$ contributes to class $c$. (The paper writes GAP as a sum and drops the bias; a sum only
# rescales the map, and the bias is a constant that says nothing about *where*.)
#
# This lesson turns the equations into code three ways — by hand with a hook, with `camlib`, and
# with Grad-CAM — and checks that they agree.

# %%
import matplotlib.pyplot as plt
import torch
from skimage import data as skdata
from sklearn.datasets import load_sample_image

from IPython.display import Markdown, display

from camlib import cam, config, localize, models, report, train, viz
from camlib.data import make_synthetic

cfg = config.get_profile()
S = cfg.lesson("02")
print(cfg.describe())
print(S)

# %% [markdown]
# ## A GAP network to look inside
# The small GAP network of lesson 01, trained on the course's striped synthetic objects (the head's
# colour names the class, the stripe direction narrows it to a pair; checkpointed, so a re-run
# loads it).

# %%
train_set = make_synthetic(S["n_train"], seed=cfg.seed)
val_set = make_synthetic(S["n_val"], seed=cfg.seed + 1000)
torch.manual_seed(cfg.seed)
net = models.small_cnn(train_set.num_classes, "gap")
hist = train.fit(net, train_set, val_set, steps=S["steps"], batch_size=S["batch_size"], seed=cfg.seed,
                 device=cfg.device, checkpoint=config.checkpoint_path("lesson02-gap", seed=cfg.seed, **S), resume=True)
net.eval()
print(f"validation accuracy {hist.last('val_acc'):.3f}")


# %% [markdown]
# ## 1. By hand: a hook and an einsum
# Most networks do not return their feature maps. A *forward hook* keeps the output of a layer as
# the network runs; here we hook the last conv block and pretend we only had the logits. The hook
# is a context manager, so it removes itself.

# %%
class Keep:
    """Keep the output of ``module`` while inside the ``with`` block."""
    def __init__(self, module):
        self.module = module
    def __enter__(self):
        self.handle = self.module.register_forward_hook(lambda mod, inp, out: setattr(self, "value", out.detach()))
        return self
    def __exit__(self, *exc):
        self.handle.remove()

batch = val_set.batch(range(8), device=cfg.device)
with Keep(net.backbone[-1]) as kept, torch.no_grad():
    logits = net(batch["image"]).logits
acts = kept.value                                   # (B, K, h, w)
W, b = net.classifier.weight.detach(), net.classifier.bias.detach()   # (C, K), (C,); read, not trained
maps_by_hand = torch.einsum("ck,bkhw->bchw", W, acts)   # every class's map at once
print("activations", tuple(acts.shape), "-> maps", tuple(maps_by_hand.shape))

# %% [markdown]
# **Check the derivation numerically**: for every image and every class, the mean of the map plus
# the bias is the logit.

# %%
recon = maps_by_hand.mean(dim=(-2, -1)) + b
err_identity = float((recon - logits).abs().max())
print(f"max |mean(M_c) + b_c - S_c| over {recon.numel()} scores: {err_identity:.2e}")

# %% [markdown]
# ### Exercise 1 — the map as a weighted sum
# Write the CAM of one class per image: given features `(B, K, h, w)`, the classifier weight
# `(C, K)` and one class index per image `(B,)`, return the maps `(B, h, w)` with
# $M(x,y) = \sum_k w_k^{c_b} f_{b,k}(x,y)$. (No bias, no ReLU.)

# %% nbgrader={"grade": false, "grade_id": "02_cam_map", "locked": false, "schema_version": 3, "solution": true, "task": false}
from camlib.exercises import check_cam, check_minmax

def cam_map(features, weight, classes):
    ### BEGIN SOLUTION
    return torch.einsum("bkhw,bk->bhw", features, weight[classes])
    ### END SOLUTION


# %%
check_cam(cam_map)

# %% [markdown]
# ## 2. The library version
# `camlib` models return the feature maps with the logits, so no hook is needed;
# `cam.class_activation_maps` computes the maps of any classes (here each image's true class) in
# one einsum, and `cam.upsample` brings them to the input size.

# %%
with torch.no_grad():
    out = net(batch["image"])
    maps_lib = cam.class_activation_maps(out.features, W, batch["label"])[:, 0]        # (B, h, w)
pick = maps_by_hand[torch.arange(8), batch["label"]]
err_lib = float((maps_lib - pick).abs().max())
print(f"library vs by hand: max difference {err_lib:.2e}")
viz.grid(val_set.images[:8], cam.upsample(maps_lib, val_set.image_size).cpu(),
         titles=[val_set.class_names[int(c)].split(",")[0] for c in batch["label"]], ncols=8, size=1.9,
         suptitle="CAM of the true class")
plt.show()

# %% [markdown]
# ## 3. Grad-CAM
# Grad-CAM (Selvaraju et al. 2017) weights each feature map by the *average gradient* of the class
# score with respect to it: $\alpha_k^c = \frac{1}{hw}\sum_{x,y} \partial S_c / \partial f_k(x,y)$, and
# the map is $\mathrm{ReLU}(\sum_k \alpha_k^c f_k)$. On a GAP network
# $\partial S_c / \partial f_k(x,y) = w_k^c / hw$ at every location, so $\alpha_k^c = w_k^c / hw$ and
# Grad-CAM is CAM times the positive constant $1/hw$ (then a ReLU). Check it:

# %%
gc = cam.grad_cam(net, batch["image"], batch["label"], relu=False)
h, w = maps_lib.shape[-2:]
err_gradcam = float((gc * h * w - maps_lib).abs().max() / maps_lib.abs().max())
ratio = (gc / maps_lib)[maps_lib.abs() > 1e-3]
print(f"Grad-CAM / CAM: min {ratio.min():.6f}, max {ratio.max():.6f}  (1/hw = {1 / (h * w):.6f})")
print(f"relative max difference after rescaling: {err_gradcam:.2e}")

# %% [markdown]
# ### Checks

# %%
# These three are identities: they hold for *any* GAP network, trained or not, so they check our
# code and our derivation, not the paper's idea. They are recorded as sanity checks, apart from the
# course's claims.
report.sanity("the class score is the mean of the CAM plus the bias (every image, every class)",
              err_identity < 1e-4, ours=f"max |difference| {err_identity:.1e}",
              dataset=f"synthetic-8 ({len(batch['label'])} images)", lesson="02")
report.sanity("hook-and-einsum CAM equals camlib's CAM", err_lib < 1e-5, ours=f"max |difference| {err_lib:.1e}",
              dataset="synthetic-8", lesson="02")
report.sanity("Grad-CAM equals CAM times 1/hw on a GAP network", err_gradcam < 1e-4 and bool((ratio > 0).all()),
              ours=f"relative difference {err_gradcam:.1e}", dataset="synthetic-8", lesson="02")

# %% [markdown]
# ### Exercise 2 — the bias, Grad-CAM's ReLU and the 20% rule
# The paper draws its box from the CAM $M_c$ by keeping the locations where the map is at least
# 20% of its maximum (a map whose maximum is $\le 0$ has no positive evidence and keeps no
# location: `camlib.localize.threshold_maps`). The bias was dropped as "a constant that says
# nothing about *where*" — but the 20% rule is not blind to constants. Write the region the rule
# keeps on the map whose mean *is* the logit, $M_c + b_c$:
# `bias_region(features (B, K, h, w), weight (C, K), bias (C,), classes (B,))` returns a bool
# tensor `(B, h, w)`, true where $M_{c_b}(x, y) + b_{c_b} \ge 0.2 \max_{x,y}(M_{c_b} + b_{c_b})$, with
# $c_b$ = `classes[b]`; all false for a map whose maximum is $\le 0$. Then ask yourself whether
# Grad-CAM's ReLU, applied first, would change your answer (the check tells you if you get it wrong).

# %% nbgrader={"grade": false, "grade_id": "02_bias_region", "locked": false, "schema_version": 3, "solution": true, "task": false}
from camlib.exercises import check_bias_region

def bias_region(features, weight, bias, classes):
    ### BEGIN SOLUTION
    m = torch.einsum("bkhw,bk->bhw", features, weight[classes]) + bias[classes][:, None, None]
    top = m.amax(dim=(-2, -1), keepdim=True)
    return (m >= 0.2 * top) & (top > 0)
    ### END SOLUTION


# %%
check_bias_region(bias_region)

# %% [markdown]
# What the bias and the ReLU do on the trained network: the 20% region of each validation image's
# true-class map without the bias (the paper's), with it, and with Grad-CAM's ReLU (library
# functions, so the numbers do not depend on your answer above).

# %%
region_cam = localize.threshold_maps(maps_lib)
region_bias = localize.threshold_maps(maps_lib + b[batch["label"]][:, None, None])
region_relu = localize.threshold_maps(torch.relu(maps_lib))
changed_bias = int((region_cam != region_bias).flatten(1).any(1).sum())
changed_relu = int((region_cam != region_relu).flatten(1).any(1).sum())
print(f"biases of the true classes: {[round(float(v), 2) for v in b[batch['label']]]}")
print(f"20% regions changed by adding the bias: {changed_bias} of {len(maps_lib)} images; "
      f"by Grad-CAM's ReLU: {changed_relu} of {len(maps_lib)}")
print(f"locations kept: CAM {int(region_cam.sum())}, CAM + bias {int(region_bias.sum())}")

# %% [markdown]
# A positive bias lowers the bar relative to the map's values (the region grows), a negative one
# raises it; a large negative bias can push the whole map below zero and leave no region at all.
# The ReLU cannot change the region of a map with a positive maximum: the bar $0.2 \max$ is then
# above zero, where the ReLU changes nothing. That is why the paper can drop the bias but must say
# which map it thresholds.

# %% [markdown]
# ## Maps for the top-k classes of real photos
# Any class has a map, not only the predicted one. EfficientNet-Lite0 (pretrained on ImageNet,
# lesson 00) on a few photos that ship with scikit-image and scikit-learn: the top three classes
# of each, with their maps.

# %%
effnet = models.efficientnet_lite0().eval().to(cfg.device)
names = models.imagenet_categories()
photos = {"chelsea": skdata.chelsea(), "coffee": skdata.coffee(), "rocket": skdata.rocket(),
          "astronaut": skdata.astronaut(), "china": load_sample_image("china.jpg")}
x = models.preprocess_imagenet(list(photos.values())).to(cfg.device)
with torch.no_grad():
    logits, maps, top = cam.cams(effnet, x, topk=3)
probs = logits.softmax(1)
fig, axes = plt.subplots(len(photos), 4, figsize=(11.5, 2.6 * len(photos)))
for i, (name, img) in enumerate(photos.items()):
    viz.show_map(img, None, ax=axes[i, 0], title=name)
    lo, hi = float(maps[i].min()), float(maps[i].max())        # one colour scale per photo (row)
    for j in range(3):
        c = int(top[i, j])
        viz.show_map(img, maps[i, j], ax=axes[i, j + 1], vmin=lo, vmax=hi, colorbar=(j == 2),
                     title=f"{names[c]} ({float(probs[i, c]):.2f})")
plt.tight_layout(); plt.show()


# %% [markdown]
# ### Exercise 3 — min-max normalization
# To show maps side by side (and for lesson 03's MaxBoxAcc) each map is scaled to [0, 1]:
# $(M - \min M) / (\max M - \min M)$, per map. A constant map has no extent: return zeros for it.
# Input and output `(B, h, w)`.

# %% nbgrader={"grade": false, "grade_id": "02_minmax", "locked": false, "schema_version": 3, "solution": true, "task": false}
def minmax(maps):
    ### BEGIN SOLUTION
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    hi = maps.amax(dim=(-2, -1), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (maps - lo) / span.clamp_min(1e-12), torch.zeros_like(maps))
    ### END SOLUTION


# %%
check_minmax(minmax)

# %% [markdown]
# A map explains *this* class's score, not the image as a whole. (Each row shares one colour
# scale, its raw map values; lesson 03 is careful about normalization.) Where do the top-3 maps of
# each photo peak? The sentence below is written from the peak cells just computed.

# %%
def peak_cell(m):
    """(row, col) of a map's maximum on its own grid."""
    return divmod(int(m.argmax()), m.shape[-1])

top3_peaks = {name: [peak_cell(maps[i, j]) for j in range(3)] for i, name in enumerate(photos)}
same = [n for n, cells in top3_peaks.items() if len(set(cells)) == 1]
display(Markdown(
    f"Peaks of the top-3 maps on the {maps.shape[-2]}×{maps.shape[-1]} grid: "
    + "; ".join(f"**{n}** " + ", ".join(f"{names[int(top[i, j])]} {top3_peaks[n][j]}" for j in range(3))
                for i, n in enumerate(photos)) + ". "
    + (f"On {', '.join(same)} all three maps peak in the same cell: there the top classes name the *same* "
       "object (on " + same[0] + ": " + ", ".join(names[int(top[list(photos).index(same[0]), j])] for j in range(3))
       + "), so the same place explains all three. "
       if same else "No photo has all three peaks in one cell. ")
    + "Classes that describe one object should share its place; to see maps point at different places we "
      "need classes that name *different* objects in one photo."))

# %% [markdown]
# ### Two objects in one photo
# The astronaut photo shows a person in a flight suit and, behind her shoulder, a model of the
# space shuttle; the cameraman photo a camera on a tripod. ImageNet has classes for both things in
# each (it has no "person", so for the suit we take its *bulletproof vest* class). Each class gets
# its own map from the same forward pass; the white cross marks each map's peak and the green box
# is the hand-drawn box of the labelled object (`camlib/data/photo_annotations.json`).

# %%
import numpy as np

from camlib.data.photos import RealPhotos

annotated = RealPhotos()
pairs = {"astronaut": ("space shuttle", "bulletproof vest"), "camera": ("tripod", "reflex camera")}
pair_imgs = {n: annotated.load(annotated.names.index(n))[0] for n in pairs}
pair_boxes = {n: annotated.load(annotated.names.index(n))[1][0] for n in pairs}
xp = models.preprocess_imagenet(list(pair_imgs.values())).to(cfg.device)
pair_cls = torch.tensor([[names.index(c) for c in pairs[n]] for n in pairs], device=cfg.device)
with torch.no_grad():
    _, pair_maps, _ = cam.cams(effnet, xp, pair_cls)
pair_maps = pair_maps.cpu()
fig, axes = plt.subplots(len(pairs), 2, figsize=(7, 3.4 * len(pairs)))
pair_rows = []
for i, n in enumerate(pairs):
    img = pair_imgs[n]
    Hp, Wp = img.shape[:2]
    h7, w7 = pair_maps.shape[-2:]
    cells = [peak_cell(pair_maps[i, j]) for j in range(2)]
    centres = [((c + 0.5) * Wp / w7, (r + 0.5) * Hp / h7) for r, c in cells]   # peak cell's centre, photo pixels
    x1, y1, x2, y2 = pair_boxes[n]
    inside = [bool(x1 <= cx < x2 and y1 <= cy < y2) for cx, cy in centres]
    dist = float(np.hypot(cells[0][0] - cells[1][0], cells[0][1] - cells[1][1]))
    pair_rows.append((n, pairs[n], cells, inside, dist))
    for j in range(2):
        viz.show_map(img, pair_maps[i, j], ax=axes[i, j], boxes=[pair_boxes[n]] if j == 0 else [],
                     box_labels=[f"hand-drawn {pairs[n][0]}"], title=f"{n}: {pairs[n][j]}")
        axes[i, j].plot(*centres[j], "w+", ms=18, mew=3)
plt.tight_layout(); plt.show()
display(Markdown(" ".join(
    f"On **{n}**, the *{a}* map peaks at cell {ca} and the *{b}* map at cell {cb}, "
    f"{d:.1f} cells apart; the *{a}* peak lies {'inside' if ia else 'outside'} the hand-drawn {a} box and the "
    f"*{b}* peak {'inside' if ib else 'outside'} it."
    for n, (a, b), (ca, cb), (ia, ib), d in pair_rows)
    + (" Where two classes name different objects, their maps point at different places."
       if all(d > 0 for *_, d in pair_rows) else
       " Here the two classes' maps share a peak: a 7×7 map cannot always separate two objects this close.")))

# %% [markdown]
# ## Explore
# Pick a photo, one of its top-10 classes, and the overlay strength.

# %% tags=["explorer"]
explorer = viz.cam_explorer(photos, effnet, names, device=cfg.device)

# %%
peak_cells = [[divmod(int(maps[i, j].argmax()), maps.shape[-1]) for j in range(3)] for i in range(len(photos))]
distinct = {name: len(set(cells)) for name, cells in zip(photos, peak_cells)}
display(Markdown(
    "## Summary: what we measured\n"
    f"- On {len(batch['label'])} synthetic validation images and all {W.shape[0]} classes, the mean of the hook-and-einsum "
    f"map plus the bias equals the logit to {err_identity:.1e}; camlib's maps equal the hand-made ones to {err_lib:.1e}.\n"
    f"- Grad-CAM divided by CAM lies in [{float(ratio.min()):.6f}, {float(ratio.max()):.6f}], against "
    f"1/hw = {1 / (h * w):.6f}; after rescaling they differ by {err_gradcam:.1e} (relative).\n"
    f"- The small GAP network reached validation accuracy {hist.last('val_acc'):.3f} after {S['steps']} steps.\n"
    "- Peak cells of the top-3 maps on the photos (7×7 grid): "
    + "; ".join(f"{name}: {n} distinct of 3" for name, n in distinct.items()) + "."))

# %% [markdown]
# ### The ideas
# - $M_c(x,y)=\sum_k w_k^c f_k(x,y)$; with GAP, $S_c = \mathrm{mean}_{x,y} M_c + b_c$ (checked to 1e-4).
# - A hook and one einsum compute it for any network with a GAP head; `camlib` models return the
#   features with the logits, so no second pass is needed.
# - On a GAP network Grad-CAM is CAM up to the positive factor $1/hw$ (and a ReLU).
#
# ## What to try on a GPU
# The gpu profile trains the small GAP network on 10,000 images for 200 steps (smoke: 1,024 images,
# 30 steps; cpu: 8,000 and 80; `camlib/config.py`, lesson "02"). The three identities do not change
# with scale — they hold for any GAP network, trained or not — but the maps do: a better-trained
# network's true-class maps cover the objects more tightly. On a GPU, also run the hook-and-einsum
# cell on a torchvision ResNet-50 (`weights="DEFAULT"`, hook `layer4`): its head is GAP and one linear
# layer too, so the same identity must hold on ImageNet images.
#
# ## More exercises
# 1. Write the CAM for one class per image as a loop over units $k$ and check it against the einsum.
# 2. Exercise 2 thresholded the map on its own grid. Upsample $M_c$ and $M_c + b_c$ to the image (bilinear) and
#    draw both boxes by the paper's rule (`localize.boxes_from_maps`): how far apart are they?
#
# ## Questions
# - Why does the identity $S_c = \mathrm{mean}(M_c) + b_c$ fail for a GMP network? What takes its place?
# - For a network with two fully connected layers after pooling, is there still a map whose mean is
#   the score? What does Grad-CAM compute then?
