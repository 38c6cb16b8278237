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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cam-course/cam-course/blob/main/lessons/05_generic_features.ipynb)
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
# # Lesson 05 — Generic localizable features and pattern discovery
#
# Section 4 of the paper asks whether a GAP network's features are *generic*: freeze the network,
# take the global-average-pooled features $F_k$ of images from a **new** task, and train a linear
# SVM on them. The SVM's scores have the form $S_c = \sum_k w_k^c F_k$ of section 2, so its
# weights $w_k^c$ make a class activation map $M_c = \sum_k w_k^c f_k$ for the new classes — a
# classifier that never saw a box, on classes the features never saw, that still localizes.
# Section 4.2 then uses such maps for **pattern discovery**: the objects that make a scene category,
# and a weakly supervised *text detector* trained only on "contains text / does not". We do each of
# these on data where the answer is known, so that every claim is measured.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from camlib import cam, config, features, localize, metrics, models, report, saliency, train, twostage, units, viz
from camlib.data import SyntheticSpec, make_synthetic
from camlib.data.digits import DigitSpec, make_digit_scenes
from camlib.data.scenes import SceneSpec, make_scenes

cfg = config.get_profile()
S = cfg.lesson("05")
print(cfg.describe())
print(S)


# %% [markdown]
# ## 1. Features of a frozen network, a linear SVM, and its CAM
#
# **Source task.** The course's striped objects (`SyntheticSpec(parts=1)`, as in lessons 02, 03
# and 06: the head's colour names the class, the stripe direction narrows it to a pair) have eight
# classes. We
# train a GAP network on **four** of them only — the classes with an even index.
#
# **Two new tasks.** What a transfer test shows depends on how new the task is.
# - *Same cue, new classes*: the other four classes. Their head colours are new, but each shares a
#   stripe direction with a source class, and the features already tell the stripe directions
#   apart: this task is nearly solved before the probe starts, so it shows little.
# - *A new cue*: scenes (`camlib.data.scenes`) whose category is the **shape** of one object — a
#   disc, a square, a triangle or a ring, in a random colour — beside one or two other shapes
#   that any category may contain. The source network was never asked to tell shapes apart (its
#   classes are named by colour and stripes), and here colour carries nothing. Its box is the
#   deciding object's box.
#
# For both we freeze the network, extract its GAP features, and train scikit-learn's `LinearSVC`.

# %%
def family(n, seed, odd):
    """The striped objects' images of the even (odd=False) or odd classes, relabelled 0..3."""
    ds = make_synthetic(n, seed=seed, spec=SyntheticSpec(parts=1))
    keep = torch.nonzero(ds.labels % 2 == int(odd))[:, 0]
    sub = ds.subset(keep)
    sub.labels = sub.labels // 2
    sub.class_names = [ds.class_names[2 * c + int(odd)] for c in range(4)]
    return sub


source = family(S["n_source"], cfg.seed + 50, odd=False)
same_train, same_test = family(S["n_new"], cfg.seed + 51, odd=True), family(S["n_new"], cfg.seed + 52, odd=True)
shape_spec = SceneSpec(n_common=(1, 2))
new_train = make_scenes(S["n_shapes"], seed=cfg.seed + 57, spec=shape_spec)
new_test = make_scenes(S["n_shapes"], seed=cfg.seed + 58, spec=shape_spec)
new_test.class_names = new_train.class_names = [f"has a {k}" for k in shape_spec.kind_names()[:4]]
print("source classes:", source.class_names)
print("same cue:      ", same_test.class_names)
print("new cue:       ", new_test.class_names)
viz.grid(new_test.images[:8], titles=[new_test.class_names[int(l)] for l in new_test.labels[:8]],
         ncols=8, size=1.8, suptitle="the new task: which shape is there? (colours are random)")
plt.show()

torch.manual_seed(cfg.seed)
net = models.small_cnn(4)
train.fit(net, source, steps=S["steps"], batch_size=S["batch_size"], lr=2e-3, seed=cfg.seed, device=cfg.device,
          checkpoint=config.checkpoint_path("lesson05-source", seed=cfg.seed, **S), resume=True)
features.freeze(net)

f_train = features.extract(net, same_train, device=cfg.device)               # GAP features (N, K)
f_test = features.extract(net, same_test, device=cfg.device, maps=True)      # ... and the maps f_k
probe = features.fit_probe(f_train["features"], f_train["labels"], C=S["svm_C"])
probe_acc = probe.accuracy(f_test["features"], f_test["labels"])
new_acc, new_probe = twostage.probe_accuracy(net, new_train, new_test, C=S["svm_C"], device=cfg.device)  # lesson 04's helper
print(f"features {tuple(f_train['features'].shape)}, maps {tuple(f_test['maps'].shape)}")
print(f"linear SVM on frozen features: same cue {probe_acc:.3f}, new cue (shapes) {new_acc:.3f} (chance 0.25)")

# %% [markdown]
# The SVM was trained on standardized features; `fit_probe` folds the scaling back, so
# `probe.weight` ($4 \times 64$) acts on the raw features and is exactly the $w_k^c$ of a CAM.
# `features.attach_probe` even turns it into a camlib network whose classifier *is* the SVM:

# %%
probe_net = features.attach_probe(net, probe)
x = same_test.batch(torch.arange(4))["image"].to(cfg.device)
with torch.no_grad():
    svm_scores = probe.decision(f_test["features"][:4])
    logits = probe_net(x).logits.cpu()
print("SVM decision function:\n", svm_scores.numpy().round(3))
print("the probe network's logits:\n", logits.numpy().round(3))
gap_err = float((logits - svm_scores).abs().max())

# %% [markdown]
# ### Exercise 1 — fold the standardization into the map
# This is the fold `fit_probe` did for you. scikit-learn's SVM saw standardized features
# $(F_k - \mu_k)/s_k$ (`mean`, `scale` as a `StandardScaler` keeps them) and scores class $c$ as
# $\sum_k w_k^c (F_k - \mu_k)/s_k + b_c$, with `coef` $(C, K)$ and `intercept` $(C,)$: NumPy arrays.
# Write the map on the **raw** feature maps whose mean over the locations is that score, for the
# class `classes[b]` of each image:
# `standardized_cam(features (B, K, h, w), coef, intercept, mean, scale, classes (B,)) -> (B, h, w)`.
# Decide what happens to each of $w$, $\mu$, $s$ and $b$ — which belong to every location, and
# which to the constant?

# %% nbgrader={"grade": false, "grade_id": "05_standardized_cam", "locked": false, "schema_version": 3, "solution": true, "task": false}
from camlib.exercises import check_standardized_cam

def standardized_cam(features, coef, intercept, mean, scale, classes):
    ### BEGIN SOLUTION
    coef, intercept, mean, scale = (torch.as_tensor(a, dtype=features.dtype) for a in (coef, intercept, mean, scale))
    weight = coef / scale                                  # acts on the raw features
    bias = intercept - (coef * mean / scale).sum(1)        # the means are a constant: into the bias
    maps = torch.einsum("bkhw,bk->bhw", features, weight[classes])
    return maps + bias[classes][:, None, None]
    ### END SOLUTION


# %%
check_standardized_cam(standardized_cam)

# %% [markdown]
# Now the maps: the SVM's weights on the frozen feature maps, boxed with the paper's rule. On the
# same-cue classes the baselines are a **centre box** (half the image's side, centred:
# `saliency.center_boxes`) and the same probe on the features of the *same network untrained*
# (random weights) — does the localization come from what the network learned? The last row shows
# the new cue's maps (`twostage.probe_boxes`), against the box of the object that decides the scene.

# %%
H, W = same_test.image_size
pred = probe.decision(f_test["features"]).argmax(1)
maps_new = features.probe_cams(f_test["maps"], probe, pred)[:, 0]            # top-1 class of the probe
boxes_new = localize.boxes_from_maps(cam.upsample(maps_new, (H, W)))
box_acc_probe = metrics.box_accuracy(boxes_new, same_test.boxes)
box_acc_centre = metrics.box_accuracy(saliency.center_boxes(len(same_test), H, W), same_test.boxes)

torch.manual_seed(cfg.seed)
untrained = features.freeze(models.small_cnn(4))
u_train = features.extract(untrained, same_train, device=cfg.device)
u_test = features.extract(untrained, same_test, device=cfg.device, maps=True)
u_probe = features.fit_probe(u_train["features"], u_train["labels"], C=S["svm_C"])
u_pred = u_probe.decision(u_test["features"]).argmax(1)
u_maps = features.probe_cams(u_test["maps"], u_probe, u_pred)[:, 0]
box_acc_untrained = metrics.box_accuracy(localize.boxes_from_maps(cam.upsample(u_maps, (H, W))), same_test.boxes)
u_acc = u_probe.accuracy(u_test["features"], u_test["labels"])
u_new_acc, _ = twostage.probe_accuracy(untrained, new_train, new_test, C=S["svm_C"], device=cfg.device)
shape_s1 = twostage.probe_boxes(net, new_probe, new_test, device=cfg.device)
box_acc_shapes = metrics.box_accuracy(shape_s1["boxes"], new_test.boxes)
box_centre_shapes = metrics.box_accuracy(saliency.center_boxes(len(new_test), H, W), new_test.boxes)
print(f"box accuracy (IoU >= 0.5), same-cue classes: probe CAM {box_acc_probe:.3f}, centre box {box_acc_centre:.3f}, "
      f"probe on untrained features {box_acc_untrained:.3f} (its accuracy {u_acc:.3f})")
print(f"box accuracy (IoU >= 0.5), new cue: probe CAM {box_acc_shapes:.3f}, centre box {box_centre_shapes:.3f}")

show = list(range(8))
fig, axes = plt.subplots(3, 8, figsize=(15, 6.6))
rows = [(same_test, maps_new, boxes_new), (same_test, u_maps, None), (new_test, shape_s1["maps"], shape_s1["boxes"])]
for r, (ds, maps, boxes) in enumerate(rows):
    lo_, hi_ = float(maps[show].min()), float(maps[show].max())      # one colour scale per row
    for j, i in enumerate(show):
        bx = [ds.boxes[i]] + ([boxes[i]] if boxes is not None else [])
        viz.show_map(ds.images[i], maps[i], ax=axes[r, j], boxes=bx, legend=(j == 0 and r == 0),
                     box_labels=["the object", "box from the probe's CAM"], vmin=lo_, vmax=hi_,
                     colorbar=(j == len(show) - 1))
for r, t in enumerate(["same cue: learned features", "same cue: untrained features", "new cue: learned features"]):
    axes[r, 0].text(-0.08, 0.5, t, transform=axes[r, 0].transAxes, rotation=90, va="center", ha="right", fontsize=8)
plt.tight_layout(); plt.show()

# %% [markdown]
# ### GAP features against fully connected features (Table 5's question)
#
# The paper compares its GAP features with the fc7 features of networks that end in fully
# connected layers, the same SVM on both, and finds them comparable. Our analogue: the **same
# backbone**, trained on the same source task for as many steps, but with a fully connected head
# (`features.FCNet`: the 64×16×16 maps flattened, a hidden layer of 256 units, then the
# classifier) instead of GAP; its hidden layer is the "fc" feature. The same linear SVM on each.
# The fc features have no CAM: the flatten mixes the locations.

# %%
torch.manual_seed(cfg.seed)
fc_net = features.FCNet(models.small_cnn(4).backbone, (64, 16, 16), num_classes=4, hidden=S["fc_hidden"])
train.fit(fc_net, source, steps=S["steps"], batch_size=S["batch_size"], lr=2e-3, seed=cfg.seed, device=cfg.device,
          checkpoint=config.checkpoint_path("lesson05-source-fc", seed=cfg.seed, **S), resume=True)
fc_acc, fc_same = [], []
for tr, te, out in ((new_train, new_test, fc_acc), (same_train, same_test, fc_same)):     # the same probe
    a, b = features.extract_fc(fc_net, tr, device=cfg.device), features.extract_fc(fc_net, te, device=cfg.device)
    out.append(features.fit_probe(a["features"], a["labels"], C=S["svm_C"]).accuracy(b["features"], b["labels"]))
fc_acc, fc_same = fc_acc[0], fc_same[0]
print(f"{'features (linear SVM on top)':>34s} {'same cue':>9s} {'new cue':>8s} {'CAM box acc (same cue)':>23s}")
for name, a1, a2, bx in (("GAP of the trained network", probe_acc, new_acc, f"{box_acc_probe:.3f}"),
                         ("fc of the trained FC network", fc_same, fc_acc, "(no CAM)"),
                         ("GAP of the untrained network", u_acc, u_new_acc, f"{box_acc_untrained:.3f}")):
    print(f"{name:>34s} {a1:>9.3f} {a2:>8.3f} {bx:>23s}")
display(Markdown(
    f"- What transfers: the probe reaches **{probe_acc:.1%}** on the same cue and **{new_acc:.1%}** on the new cue "
    f"(chance 25%). The untrained network's features give {u_acc:.1%} and {u_new_acc:.1%}: training on the source task "
    f"{'helped' if new_acc > u_new_acc + 0.05 else 'hurt' if new_acc < u_new_acc - 0.05 else 'made little difference'} "
    f"on the new cue ({100 * (new_acc - u_new_acc):+.1f} points). "
    f"A network trained on one narrow cue has features for that cue; the paper's features are generic because "
    f"ImageNet's 1,000 classes need many cues (section 2 below uses such features).\n"
    f"- Table 5's question: the fc features of the same backbone give {fc_same:.1%} (same cue) and {fc_acc:.1%} "
    f"(new cue); GAP is {100 * (probe_acc - fc_same):+.1f} and {100 * (new_acc - fc_acc):+.1f} points from them — "
    f"and only GAP gives a map."))

# %%
data_name = f"synthetic-8, odd classes ({len(same_test)} test images; source: even classes, {S['steps']} steps)"
new_name = f"shape scenes ({len(new_test)} test images; same source network)"
report.claim("a linear SVM on frozen GAP features classifies new classes that share the cue the network learned",
             probe_acc >= S["min_probe_acc"], ours=f"{probe_acc:.3f} (chance 0.25)", dataset=data_name,
             fails_if=f"test accuracy below {S['min_probe_acc']}", lesson="05")
report.claim("a cue the source network was never trained to use transfers far less than the cue it learned",
             probe_acc >= new_acc + S["min_margin"], ours=f"same cue {probe_acc:.3f} vs new cue {new_acc:.3f}",
             dataset=new_name, fails_if=f"the new cue's accuracy within {S['min_margin']:.2f} of the same cue's", lesson="05")
report.sanity("the SVM's weights are the CAM weights: the probe network's logits equal the SVM's scores",
              gap_err < 1e-3, ours=f"max |difference| {gap_err:.1e}", dataset=data_name, lesson="05")
report.claim("the probe's CAMs localize the new classes far better than a centre box",
             box_acc_probe >= box_acc_centre + S["min_margin"],
             ours=f"probe CAM {box_acc_probe:.3f} vs centre {box_acc_centre:.3f}", dataset=data_name,
             fails_if=f"less than {S['min_margin']:.2f} above the centre box", lesson="05")
report.claim("... and far better than the same probe on the untrained network's features",
             box_acc_probe >= box_acc_untrained + S["min_margin"],
             ours=f"learned {box_acc_probe:.3f} vs untrained {box_acc_untrained:.3f}", dataset=data_name,
             fails_if=f"less than {S['min_margin']:.2f} above the untrained features' probe", lesson="05")
print(f"(observations, not claims: new cue -- accuracy learned {new_acc:.3f} / untrained {u_new_acc:.3f} / fc {fc_acc:.3f}, "
      f"CAM box accuracy {box_acc_shapes:.3f} vs centre {box_centre_shapes:.3f}; same cue -- fc {fc_same:.3f})")


# %% [markdown]
# ## 2. Generic ImageNet features: a weakly supervised digit detector on real photos
#
# The paper's text detector (section 4.2): a linear SVM on the GAP features of a frozen ImageNet
# network, trained on images labelled only "contains text" or "does not"; its CAM then finds the
# text. Our version: **scikit-learn's real handwritten digits** (8×8 scans, enlarged) pasted in
# contrasting ink onto random crops of the real photos that ship with scikit-image and
# scikit-learn, and onto every image — with or without a digit — a few distractor strokes of the
# same inks and widths, so "has ink" does not give the label away. Test images use scans the
# training images never use. The features come from EfficientNet-Lite0, frozen, pretrained on
# ImageNet (no digits there).

# %%
dspec = dict(image_size=S["digit_size"], digit_size=(44.0, 64.0))
digits_train = make_digit_scenes(S["n_digits_train"], seed=cfg.seed + 53, spec=DigitSpec(digits="train", **dspec),
                                 imagenet_norm=True)
digits_test = make_digit_scenes(S["n_digits_test"], seed=cfg.seed + 54, spec=DigitSpec(digits="test", **dspec),
                                imagenet_norm=True)
viz.grid(digits_test.images[:8], boxes=[[b] if l else [] for b, l in zip(digits_test.boxes[:8], digits_test.labels[:8])],
         titles=[digits_test.class_names[int(l)] for l in digits_test.labels[:8]], ncols=8, size=1.9,
         suptitle="test images (true digit box in green)")
plt.show()

effnet = features.freeze(models.efficientnet_lite0().to(cfg.device))
d_train = features.extract(effnet, digits_train, batch_size=32, device=cfg.device, maps=True, progress=True)
d_test = features.extract(effnet, digits_test, batch_size=32, device=cfg.device, maps=True, progress=True)
detector = features.fit_probe(d_train["features"], d_train["labels"], C=S["digit_C"])
det_acc = detector.accuracy(d_test["features"], d_test["labels"])
print(f"digit / no digit: test accuracy {det_acc:.3f} ({len(digits_test)} images, "
      f"{int(digits_test.labels.sum())} with a digit)")
print(f"the SVM's coef_ has shape {detector.svm.coef_.shape} for its classes {detector.svm.classes_.tolist()}")

# %% [markdown]
# ### Exercise 2 — two classes, one row
# The detector has two classes, and for two classes scikit-learn's `LinearSVC` keeps **one** weight
# vector: `detector.svm.coef_` has shape `(1, K)` (printed above), the score of class 1
# (`classes_[1]`, "digit"). Write the CAM of class `classes[b]` for each image from `coef` as
# scikit-learn gives it — `(C, K)` for $C \ge 3$ classes, `(1, K)` for two — a float64 NumPy array:
# `probe_cam(features (B, K, h, w), coef, classes (B,)) -> (B, h, w)`, no bias, no ReLU.

# %% nbgrader={"grade": false, "grade_id": "05_probe_cam", "locked": false, "schema_version": 3, "solution": true, "task": false}
from camlib.exercises import check_probe_cam

def probe_cam(features, coef, classes):
    ### BEGIN SOLUTION
    w = torch.as_tensor(coef, dtype=features.dtype)
    if w.shape[0] == 1:                     # two classes: one row scores class 1; class 0's is its negative
        w = torch.cat([-w, w])
    return torch.einsum("bkhw,bk->bhw", features, w[classes])
    ### END SOLUTION


# %%
check_probe_cam(probe_cam)

# %% [markdown]
# The detector's CAM is the map of its "digit" row, boxed by **the paper's rule** (20% of the
# maximum, largest component): that is the number to report, since the detector has seen no box.
# EfficientNet-Lite0's maps are 7×7 at 224 px — one cell is 32 pixels — so the 20% region can spill
# far past the digit. Two baselines: a centre box, and for the map's *peak* (does it land in the
# digit's box?) the chance that a random pixel does, the box's share of the image.
#
# Then, apart: what **box labels would buy**. Choosing the map threshold on the training images'
# boxes (Choe et al.'s MaxBoxAcc, lesson 03) is box supervision — a few boxes, but boxes — so it
# is not weakly supervised any more; we show it as the ceiling of the threshold choice, not as the
# detector's result.

# %%
D = S["digit_size"]
pos_tr = torch.nonzero(digits_train.labels == 1)[:, 0]
pos = torch.nonzero(digits_test.labels == 1)[:, 0]
train_maps = cam.upsample(features.probe_cams(d_train["maps"][pos_tr], detector, 1)[:, 0], (D, D))
digit_maps = cam.upsample(features.probe_cams(d_test["maps"][pos], detector, 1)[:, 0], (D, D))
chosen = metrics.max_box_acc(train_maps, digits_train.boxes[pos_tr])          # thresholds on min-max maps
thr = chosen.best_threshold[0.5]
det_box_acc = metrics.max_box_acc(digit_maps, digits_test.boxes[pos], thresholds=np.array([thr])).score
digit_boxes = localize.boxes_from_maps(localize.minmax_normalize(digit_maps), threshold=thr, relative=False)
rule20 = metrics.box_accuracy(localize.boxes_from_maps(digit_maps), digits_test.boxes[pos])
det_centre = metrics.box_accuracy(saliency.center_boxes(len(pos), D, D), digits_test.boxes[pos])
peak = digit_maps.flatten(1).argmax(1)
py, px = peak // D, peak % D
gtb = digits_test.boxes[pos]
peak_in = float(((px >= gtb[:, 0]) & (px < gtb[:, 2]) & (py >= gtb[:, 1]) & (py < gtb[:, 3])).float().mean())
peak_chance = float(((gtb[:, 2] - gtb[:, 0]) * (gtb[:, 3] - gtb[:, 1])).mean() / (D * D))   # a random pixel's chance
display(Markdown(
    f"- The paper's rule: the CAM box finds the digit (IoU ≥ 0.5) in **{rule20:.1%}** of the test images with a digit; "
    f"a centre box in {det_centre:.1%}.\n"
    f"- The map's peak lies in the digit's box in **{peak_in:.1%}** of them; a random pixel would in {peak_chance:.1%}.\n"
    f"- What box labels would buy: with the threshold chosen on the training images' boxes ({thr:.2f} of the min-max "
    f"range, against the rule's 0.20 of the maximum) the box accuracy is {det_box_acc:.1%} — "
    f"{'above' if det_box_acc > rule20 else 'not above'} the rule's {rule20:.1%}: on the coarse 7×7 map the best "
    f"threshold is not the rule's, and only boxes tell which it is."))
fig, axes = plt.subplots(1, 8, figsize=(15, 2.3))
for j in range(8):
    i = int(pos[j])
    viz.show_map(digits_test.images[i], digit_maps[j], ax=axes[j], boxes=[digits_test.boxes[i], digit_boxes[j]],
                 box_labels=["the digit", "box from the detector's CAM"], legend=(j == 0),
                 vmin=float(digit_maps[:8].min()), vmax=float(digit_maps[:8].max()), colorbar=(j == 7),
                 title=f"digit {int(digits_test.extras['digit'][i])}")
plt.tight_layout(); plt.show()

# %%
data_name = f"sklearn digits on photo crops ({len(digits_test)} test images, {D} px)"
report.claim("a linear SVM on frozen ImageNet features detects the digits (image-level labels only)",
             det_acc >= S["min_det_acc"], ours=f"{det_acc:.3f} (chance 0.5)", dataset=data_name,
             fails_if=f"test accuracy below {S['min_det_acc']}", lesson="05")
report.claim("the detector's map peaks inside the digit's box in most test images, far above a random pixel's chance",
             peak_in >= S["min_peak"] and peak_in >= peak_chance + S["digit_margin"],
             ours=f"{peak_in:.3f} vs chance {peak_chance:.3f}", paper="qualitative (text detector, section 4.2)",
             dataset=data_name, fails_if=f"the peak is in the box in fewer than {S['min_peak']:.0%} of the images, or "
             f"less than {S['digit_margin']:.2f} above chance", lesson="05")
print(f"(observations, not claims: box accuracy by the paper's 20% rule {rule20:.3f} vs a centre box {det_centre:.3f}; "
      f"with a threshold tuned on training boxes -- box supervision -- {det_box_acc:.3f})")

# %% [markdown]
# ## 3. Pattern discovery: the informative objects of a scene
#
# In the paper, the CAM of a scene category (learned from scene labels only) lights up the objects
# that make the category. Our scenes (`camlib.data.scenes`) hold three to four objects each: the
# category's **informative** object — a disc, a square, a triangle or a ring, one per category —
# and two or three **common** objects (plus, diamond, X, frame) that any category may contain.
# Colours are random; only the informative object's shape tells the category. A GAP network learns
# the categories from image labels alone; we then ask where each category's map peaks, and how its
# positive mass splits between the objects — every object's mask is known.

# %%
scene_spec = SceneSpec()
scenes_train = make_scenes(S["n_scenes_train"], seed=cfg.seed + 55, spec=scene_spec)
scenes_test = make_scenes(S["n_scenes_test"], seed=cfg.seed + 56, spec=scene_spec)
kind_names = scene_spec.kind_names()
viz.grid(scenes_test.images[:8], titles=[f"scene {int(l)}" for l in scenes_test.labels[:8]], ncols=8, size=1.8,
         suptitle="scenes: which object decides the category?")
plt.show()

torch.manual_seed(cfg.seed)
scene_net = models.small_cnn(scene_spec.num_categories)
train.fit(scene_net, scenes_train, steps=S["scene_steps"], batch_size=S["batch_size"], lr=2e-3, seed=cfg.seed,
          device=cfg.device, checkpoint=config.checkpoint_path("lesson05-scenes", seed=cfg.seed, **S), resume=True)
scene_acc = train.evaluate(scene_net, scenes_test)["acc"]
print(f"scene classification accuracy {scene_acc:.3f} (chance 0.25)")

# %%
p = train.predict(scene_net, scenes_test, maps="label", size=scenes_test.image_size)
maps_s = p["maps"]                                              # (N, H, W): each scene's own category
objects = scenes_test.extras["object_masks"]                    # (N, M, H, W); slot 0 = informative
present = scenes_test.extras["object_kinds"] >= 0
tol = S["tolerance"]            # a map cell is 4 px: count a peak within `tol` px of an object as on it
# (N, M): does each scene's map peak on (within tol px of) its object m?
peak_on = torch.stack([units.peak_on_mask(maps_s[:, None], objects[:, m], tolerance=tol)[:, 0]
                       for m in range(objects.shape[1])], 1)
peak_informative = float(peak_on[:, 0].float().mean())
peak_common = float(peak_on[:, 1:].any(1).float().mean())
positive = maps_s.clamp_min(0)
mass = (positive[:, None] * objects).flatten(2).sum(2) / positive.flatten(1).sum(1, keepdim=True).clamp_min(1e-12)
mass_inf = float(mass[:, 0].mean())
mass_common = float((mass[:, 1:].sum(1) / present[:, 1:].sum(1).clamp_min(1)).mean())   # per common object
print(f"the map's peak lies on (within {tol} px of) the informative object in {peak_informative:.1%} of the scenes, "
      f"on a common object in {peak_common:.1%}")
print(f"share of the map's positive mass: informative object {mass_inf:.1%}, an average common object {mass_common:.1%}")

fig, axes = plt.subplots(2, 8, figsize=(15, 4.2))
for j in range(8):
    viz.show_map(scenes_test.images[j], ax=axes[0, j], title=f"scene {int(scenes_test.labels[j])}")
    viz.show_map(scenes_test.images[j], maps_s[j], ax=axes[1, j], boxes=[scenes_test.boxes[j]],
                 box_labels=["the informative object"], legend=(j == 0), vmin=float(maps_s[:8].min()),
                 vmax=float(maps_s[:8].max()), colorbar=(j == 7),
                 title=f"CAM; informative: {kind_names[int(scenes_test.labels[j])]}")
plt.tight_layout(); plt.show()

# %%
data_name = f"scenes ({len(scenes_test)} test scenes, {S['scene_steps']} steps)"
report.claim("each scene category's CAM peaks on its informative object far more often than on a common object",
             peak_informative >= S["min_peak"] and peak_informative >= peak_common + S["min_margin"],
             ours=f"informative {peak_informative:.3f} vs common {peak_common:.3f}",
             paper="qualitative (informative objects, section 4.2)", dataset=data_name, lesson="05")
report.claim("the informative object holds more of the map's positive mass than any average common object",
             mass_inf >= 2 * mass_common, ours=f"{mass_inf:.3f} vs {mass_common:.3f} per common object",
             dataset=data_name, lesson="05")


# %% [markdown]
# ## 4. The paper's other generic tasks, and a small demo: a concept from weak labels
#
# Section 4.2 of the paper uses the same recipe — frozen GAP features, a linear SVM on image-level
# labels, the SVM's CAM — for several *pattern discovery* tasks: the informative objects of scene
# categories (§3 above), a weakly supervised **text detector** (§2 above, with digits for text),
# **concepts** mined from image captions (a phrase such as "dog on a couch" becomes a label, and
# its CAM shows where the phrase is in the image), **actions** (Stanford Action40: the map points at
# the object the person acts on) and the image regions behind a **visual question answering**
# model's answer. The photos and captions those need cannot be had offline; the mechanism can.
#
# A caption-like weak label on our scenes: "there is a **plus** in the picture" — an object that
# decides no category, so the scene network never needed it. A linear SVM on the scene network's
# frozen GAP features learns the concept from these image-level labels alone; its CAM (the SVM's
# weights) then says where it thinks the plus is. We measure how often the map's peak lies on a
# plus, and how often a random pixel would (the pluses' share of the image).

# %%
PLUS = kind_names.index("plus")
concept = lambda ds: (ds.extras["object_kinds"] == PLUS).any(1).long()  # noqa: E731  (the weak label)
c_train = features.extract(scene_net, scenes_train, device=cfg.device)
c_test = features.extract(scene_net, scenes_test, device=cfg.device, maps=True)
c_probe = features.fit_probe(c_train["features"], concept(scenes_train), C=S["svm_C"])
c_acc = c_probe.accuracy(c_test["features"], concept(scenes_test))
has = torch.nonzero(concept(scenes_test) == 1)[:, 0]
c_maps = cam.upsample(features.probe_cams(c_test["maps"][has], c_probe, 1)[:, 0], scenes_test.image_size)
plus_mask = (objects[has] & (scenes_test.extras["object_kinds"][has] == PLUS)[:, :, None, None]).any(1)
c_peak = float(units.peak_on_mask(c_maps[:, None], plus_mask, tolerance=tol).float().mean())
plus_grown = torch.nn.functional.max_pool2d(plus_mask[:, None].float(), 2 * tol + 1, 1, tol)[:, 0] > 0
c_chance = float(plus_grown.float().mean())          # a random pixel's chance to lie within tol px of a plus
fig, axes = plt.subplots(1, 8, figsize=(15, 2.3))
for j in range(8):
    i = int(has[j])
    viz.show_map(scenes_test.images[i], c_maps[j], ax=axes[j], vmin=float(c_maps[:8].min()), vmax=float(c_maps[:8].max()),
                 colorbar=(j == 7), title='CAM of "there is a plus"')
plt.tight_layout(); plt.show()
c_major = max(float(concept(scenes_test).float().mean()), 1 - float(concept(scenes_test).float().mean()))
display(Markdown(
    f'The concept probe tells scenes with a plus from scenes without one in {c_acc:.1%} of the test scenes '
    f'(always answering the more common case: {c_major:.1%}); in the scenes that have one, its map peaks on (within {tol} px '
    f'of) a plus in **{c_peak:.1%}**, where a random pixel would in {c_chance:.1%}. '
    + ("The scene network's features carry the concept although its training never asked for it."
       if c_peak > 2 * c_chance and c_acc >= c_major + 0.1 else
       "The probe barely tells which scenes have a plus, yet where there is one its map often peaks on it: the features "
       "respond to the plus where it is, but their average over the image is too weak a signal for a good classifier — "
       "a hint of the concept, not a detector." if c_peak > 2 * c_chance else
       "The scene network's features barely carry a concept its training never asked for — the same lesson as §1's "
       "new cue: features are generic only as far as their training made them.")))
print(f"(observation, not a claim: concept accuracy {c_acc:.3f}, peak on a plus {c_peak:.3f} vs chance {c_chance:.3f})")


# %% [markdown]
# ## On a GPU: generic features on real datasets
#
# With the `gpu` profile, the same probe — frozen ImageNet features, a linear SVM — runs on
# datasets that need no sign-up: Caltech-101, Oxford 102 Flowers and Oxford-IIIT Pet
# (`camlib.data.transfer`), with torchvision's pretrained GoogLeNet and ResNet-50 (both end in GAP +
# one linear layer, so the SVM's weights make CAMs). torchvision downloads them into `data/`
# (Caltech-101 comes from the Caltech data repository). Greyscale and CMYK photos are made RGB first;
# an unreadable file is counted and left out; a dataset that cannot be had is named, and the others
# still run. Elsewhere (or with `CAMLIB_REAL_DATA=0`) this cell says so in one line and does nothing.

# %%
def gpu_generic_features():
    if not config.real_data_ready(cfg, "The real-dataset table (Caltech-101, Flowers-102, Pets)"):
        return None
    from camlib.data.transfer import transfer_datasets

    try:   # torchvision's classifiers as they are: GAP + one linear layer, so they are CAM networks already
        nets = {b: features.freeze(models.pretrained_classifier(b, weights="DEFAULT").to(cfg.device))
                for b in ("googlenet", "resnet50")}
    except models.WeightsDownloadError as e:  # no network: one sentence says which file and where it goes
        config.skip_real_data(str(e))
        return None
    sets, failed = transfer_datasets(download=True)
    for why in failed.values():
        print(why)
    if not sets:
        config.skip_real_data("no dataset of the table could be had (see the lines above).")
        return None
    print(f"{'dataset':>16s} " + " ".join(f"{n:>10s}" for n in nets))
    table = {}
    for dname, (tr, te) in sets.items():
        try:                              # one dataset's failure costs its row only
            row = []
            for bb in nets.values():
                ftr = features.extract(bb, tr, batch_size=128, progress=True)
                fte = features.extract(bb, te, batch_size=128, progress=True)
                pr = features.fit_probe(ftr["features"], ftr["labels"], C=S["svm_C"])
                row.append(pr.accuracy(fte["features"], fte["labels"]))
        except Exception as e:
            print(f"{dname}: failed ({type(e).__name__}: {e}); the other datasets go on")
            continue
        table[dname] = row
        bad = len(tr.unreadable) + len(te.unreadable)
        print(f"{dname:>16s} " + " ".join(f"{100 * a:>9.1f}%" for a in row)
              + (f"   ({bad} unreadable image(s) left out)" if bad else ""))
    print("(the paper reports GAP features comparable to fc7 features on Caltech-101 and others; its "
          "per-dataset numbers are not quoted here: unverified)")
    return table


generic_table = gpu_generic_features()

# %% [markdown]
# **Exercise 3 (written).** Why must the new classifier be *linear* on the GAP features for its weights to
# give a class activation map? What breaks with a two-layer MLP probe?
#
# <!-- BEGIN SOLUTION -->
# With a linear probe the score is $\sum_k w_k^c F_k + b_c$ and $F_k$ is the mean of $f_k$, so the
# sums over units and locations swap and the score is the mean of $\sum_k w_k^c f_k(x,y)$: a map
# whose every location's contribution adds up to the score. An MLP applies a nonlinearity to
# combinations of the pooled $F_k$; its score is no longer a sum of per-location terms, so no
# single map decomposes it (Grad-CAM's gradient weights are then only a local linearization).
# <!-- END SOLUTION -->

# %%
from IPython.display import Markdown, display

display(Markdown(
    "## Summary: what we measured\n"
    f"- Linear SVM on frozen GAP features, 4 classes the network never saw that share its learned cue: accuracy "
    f"{probe_acc:.3f} (chance 0.25); box accuracy of its CAMs {box_acc_probe:.3f}, against {box_acc_centre:.3f} for a "
    f"centre box and {box_acc_untrained:.3f} for the same probe on the untrained network (which classifies at "
    f"{u_acc:.3f}). A new cue (shapes): {new_acc:.3f} (untrained features {u_new_acc:.3f}). Fully connected features "
    f"of the same backbone (Table 5's question): {fc_same:.3f} on the same cue, {fc_acc:.3f} on the new one.\n"
    f"- Digit detector on frozen EfficientNet-Lite0 features: accuracy {det_acc:.3f} (chance 0.5); CAM boxes by the "
    f"paper's 20% rule {rule20:.3f}, a centre box {det_centre:.3f}; the map peaks in the digit's box in {peak_in:.0%} "
    f"of the test images (a random pixel: {peak_chance:.0%}). With a threshold tuned on training boxes ({thr:.2f}) — "
    f"what box labels would buy — {det_box_acc:.3f}.\n"
    f"- Scenes: accuracy {scene_acc:.3f} (chance 0.25); the category's map peaks on its informative object in "
    f"{peak_informative:.0%} of the scenes, on a common object in {peak_common:.0%}; the informative object holds "
    f"{mass_inf:.0%} of the positive mass, an average common object {mass_common:.0%}.\n"
    f"- A concept from weak labels (\"there is a plus\"): accuracy {c_acc:.3f}; the map peaks on a plus in {c_peak:.0%} "
    f"of the scenes that have one (a random pixel: {c_chance:.0%})."))

# %% [markdown]
# ### The ideas
# - A frozen GAP network's pooled features, with a linear SVM on top, classify new classes; the
#   SVM's weights are CAM weights, so the new classifier localizes without ever seeing a box
#   (paper section 4).
# - Whether the maps localize depends on what the frozen features learned: the same probe on an
#   untrained network's features classifies passably but localizes poorly. Features transfer the
#   cues their training needed: a network trained on colours and stripes helps little with shapes.
# - With generic ImageNet features, a detector trained on "digit / no digit" labels finds the
#   digits; a scene classifier's maps point at the objects that make each category (section 4.2).
#
# ## What to try on a GPU
# The gpu profile draws 20,000 source and 6,000 new-class images (and 3,000 shape scenes per split)
# and trains the source networks for 300 steps (smoke: 2,400 / 800 / 40; cpu: 6,000 / 2,000 / 100), trains the digit detector on 1,000
# images and tests on 500 (smoke: 128 / 96), and the scene network on 10,000 scenes for 400 steps
# (`camlib/config.py`, lesson "05"). Above all it runs the paper's own test of generic features: a
# linear SVM on the frozen GAP features of torchvision's GoogLeNet and ResNet-50 on Caltech-101,
# Oxford 102 Flowers and Oxford-IIIT Pet. Try drawing the SVM's CAMs there (`features.probe_cams`)
# on a few test images of a class the backbones never saw by name.
#
# ## More exercises
# 1. Train the source network on classes 0–3 instead (two stripe directions) and transfer to
#    classes 4–7 (the two *other* directions and new colours). How do accuracy and localization
#    change, and why? Then probe the shape scenes with EfficientNet-Lite0's features (ImageNet):
#    does the new cue transfer from features trained on many cues?
# 2. Fit the probe without standardizing the features (`standardize=False`). What happens to the
#    accuracy and to the maps (compare their peaks with the standardized probe's)?
# 3. Train the digit detector with 10 classes (which digit, or none) instead of 2. Do the maps of
#    different digits differ?
# 4. Make one common object appear more often in one scene category than in the others (a
#    correlated but not decisive object). Does its share of the map grow?
#
# ## Questions
# - The probe on untrained features still classifies the new classes well above chance. What
#   could it be using, and why does that not localize?
# - What does the text detector of the paper learn that a detector trained with boxes would not
#   need to?
