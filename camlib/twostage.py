"""Two-stage fine-grained recognition (paper section 4.1): classify, localize with the CAM, crop,
classify the crop.

The paper's CUB-200 experiment (Table 4) in four steps:

1. a CAM network classifies the *full image* (stage 1): in the paper, a linear SVM on the frozen GAP
   features of GoogLeNet-GAP (:func:`probe_accuracy`), whose weights make the CAM (:func:`probe_boxes`);
2. the map of its top-1 class gives a box by the paper's rule (20% of the maximum, largest
   connected component: :func:`camlib.localize.boxes_from_maps`);
3. the box, enlarged by a margin and made square (:func:`crop_boxes`), is cut out and resized
   (:func:`crop_images`, :func:`crop_dataset`);
4. a second network, trained on such crops, classifies the crop (stage 2).

The crop network is trained on the crops that stage 1's CAM boxes give on the *training* images
(:func:`cam_boxes` on the training set), so the whole pipeline uses image-level labels only, as
in the paper; training it on ground-truth boxes with random jitter (:func:`jitter_boxes`) is the
alternative when boxes are available. The ground-truth-box crop (a network trained and tested
on crops of the annotated boxes) is the upper bound: perfect localization.

Everything works on :class:`~camlib.data.InMemoryDataset` (uint8 images in memory), so the
offline synthetic data and a decoded real dataset (:func:`camlib.data.cache.cached`, the gpu path)
go through the same code (:func:`run_two_stage` runs the whole experiment). Introduced in lesson 04.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from . import localize
from .cam import class_activation_maps, upsample
# the crop geometry lives in camlib.crops; the lesson reads it as part of the pipeline (twostage.crop_boxes)
from .boxes import size_hw
from .crops import (box_coverage, boxes_from_crops, boxes_into_crops, crop_boxes, crop_dataset,  # noqa: F401
                    crop_images, crop_masks, jitter_boxes, resize_dataset, same_size_boxes)
from .data.memory import InMemoryDataset
from .inference import batches, evaluating, model_device, predict

__all__ = ["crop_boxes", "same_size_boxes", "box_coverage", "jitter_boxes", "crop_images", "crop_masks",
           "boxes_into_crops", "boxes_from_crops", "resize_dataset", "crop_dataset", "cam_boxes", "probe_boxes",
           "probe_accuracy", "two_stage_predict", "run_two_stage"]


# ------------------------------------------------------------------------- stage 1: CAM boxes

def cam_boxes(model, ds, *, classes: str = "pred", threshold: float = 0.2, batch_size: int = 256,
              device=None) -> dict[str, torch.Tensor]:
    """Stage 1: classify every image, and box the map of its top-1 class (``classes="pred"``,
    the paper's protocol) or of its true class (``"label"``, GT-known) by the paper's rule.

    ``ds``: an :class:`InMemoryDataset` (or anything with ``batch``). Maps are upsampled to the
    image size before :func:`camlib.localize.boxes_from_maps`. Returns ``{"boxes" (N, 4), "logits"
    (N, C), "classes" (N,), "maps" (N, h, w) at feature resolution}`` on the CPU. Called by
    :func:`run_two_stage`, which lesson 04 runs.
    """
    if classes not in ("pred", "label"):
        raise ValueError(f"classes must be 'pred' or 'label'; got {classes!r}")
    if not hasattr(ds, "batch"):
        raise ValueError(f"ds must be an in-memory dataset with .batch(); got {type(ds).__name__}")
    device = model_device(model, device)
    H, W = ds.image_size
    out: dict[str, list[torch.Tensor]] = {"boxes": [], "logits": [], "classes": [], "maps": []}
    with evaluating(model):
        for b in batches(ds, batch_size, device):
            o = model(b["image"])
            logits = o.logits.float()
            cls = logits.argmax(1) if classes == "pred" else b["label"]
            maps = class_activation_maps(o.features.float(), model.classifier.weight.float(), cls)[:, 0]
            out["boxes"].append(localize.boxes_from_maps(upsample(maps, (H, W)), threshold=threshold).cpu())
            out["logits"].append(logits.cpu())
            out["classes"].append(cls.cpu())
            out["maps"].append(maps.cpu())
    return {k: torch.cat(v) for k, v in out.items()}


# --------------------------------------------- the paper's protocol: frozen features + linear SVM

def probe_accuracy(model, train_ds, test_ds, *, C: float = 0.1, batch_size: int = 128,
                   device=None) -> tuple[float, Any]:
    """Table 4's classifier for one *view* of the images: the frozen ``model``'s GAP features of
    ``train_ds``, a linear SVM on them (:func:`camlib.features.fit_probe`), its accuracy on
    ``test_ds``'s features. Returns ``(accuracy, probe)``. Lesson 04 (paper section 4.1: "we
    train a linear SVM on the GAP features ... of the full image / the crop")."""
    from . import features
    f_tr = features.extract(model, train_ds, batch_size=batch_size, device=device)
    f_te = features.extract(model, test_ds, batch_size=batch_size, device=device)
    probe = features.fit_probe(f_tr["features"], f_tr["labels"], C=C)
    return probe.accuracy(f_te["features"], f_te["labels"]), probe


@torch.no_grad()
def probe_boxes(model, probe, ds, *, threshold: float = 0.2, batch_size: int = 128,
                device=None) -> dict[str, torch.Tensor]:
    """Stage 1 of Table 4: the box of each image's top-1 class map, where the map is the *probe's*
    CAM (the SVM's weights on the frozen feature maps, :func:`camlib.features.probe_cams`), boxed by
    the paper's rule at ``ds``'s image size. Returns ``{"boxes" (N, 4) in ds pixels, "classes" (N,)
    row indices of the probe, "maps" (N, h, w)}`` on the CPU. Lesson 04."""
    from . import features
    if not hasattr(ds, "batch"):
        raise ValueError(f"ds must be an in-memory dataset with .batch(); got {type(ds).__name__}")
    H, W = ds.image_size
    out: dict[str, list[torch.Tensor]] = {"boxes": [], "classes": [], "maps": []}
    for lo in range(0, len(ds), batch_size):
        f = features.extract(model, ds, batch_size=batch_size, device=device, maps=True,
                             indices=torch.arange(lo, min(lo + batch_size, len(ds))))
        cls = probe.decision(f["features"]).argmax(1)
        maps = features.probe_cams(f["maps"], probe, cls)[:, 0]
        out["boxes"].append(localize.boxes_from_maps(upsample(maps, (H, W)), threshold=threshold).cpu())
        out["classes"].append(cls)
        out["maps"].append(maps)
    return {k: torch.cat(v) for k, v in out.items()}


# ------------------------------------------------------------------------- the whole pipeline

@torch.no_grad()
def two_stage_predict(stage1, stage2, ds: InMemoryDataset, *, input_size, crop_size, margin: float = 0.2,
                      square: bool = True, min_size: float = 1.0, threshold: float = 0.2, batch_size: int = 256,
                      device=None) -> dict[str, Any]:
    """Run the pipeline on ``ds`` (the original, full-resolution images).

    Stage 1 sees the whole image resized to ``input_size`` (as a network with a fixed input size
    sees a large photo), predicts, and boxes the map of its top-1 class; the box is taken back to
    the original pixels, enlarged by ``margin`` (:func:`crop_boxes`) and cut out of the *original*
    at ``crop_size``; stage 2 classifies that crop. Returns the stage-1 and stage-2 logits and
    predictions, the CAM boxes (original pixels), the stage-1 maps and the crop dataset.
    It applies the two networks :func:`run_two_stage` (lesson 04) returns to new images, the same
    way that function tests them (paper section 4.1, Table 4 "GoogLeNet-GAP on crop").
    """
    full = resize_dataset(ds, input_size) if tuple(ds.image_size) != size_hw(input_size) else ds
    s1 = cam_boxes(stage1, full, classes="pred", threshold=threshold, batch_size=batch_size, device=device)
    boxes = boxes_from_crops(s1["boxes"], full.extras["crop_box"], input_size) if full is not ds else s1["boxes"]
    crops = crop_dataset(ds, boxes, crop_size, margin=margin, square=square, min_size=min_size)
    logits2 = _logits(stage2, crops, batch_size, device)
    return {"full_logits": s1["logits"], "full_pred": s1["logits"].argmax(1), "boxes": boxes,
            "crop_logits": logits2, "crop_pred": logits2.argmax(1), "crops": crops, "maps": s1["maps"]}


def _logits(model, ds, batch_size: int, device) -> torch.Tensor:
    return predict(model, ds, batch_size=batch_size, device=device, maps=None)["logits"]


def _streamed_max_box_acc_v2(maps: torch.Tensor, boxes: torch.Tensor, hw, chunk: int = 256) -> float:
    """MaxBoxAccV2 of feature-resolution ``maps`` upsampled to ``hw``, ``chunk`` maps at a time (the
    accuracy curve is a mean over images, so chunks add up exactly; the full-size maps of a whole
    test set are never held at once)."""
    from . import metrics
    total, n = None, len(maps)
    for lo in range(0, n, chunk):
        r = metrics.max_box_acc_v2(upsample(maps[lo:lo + chunk], hw), boxes[lo:lo + chunk])
        part = r.curve * min(chunk, n - lo)
        total = part if total is None else total + part
    return float((total / n).max(0).mean())


# ---------------------------------------------------------------------- all of it in one call

def run_two_stage(train_ds: InMemoryDataset, test_ds: InMemoryDataset, build_model: Callable[[], Any], *,
                  input_size, crop_size, steps: int, margin: float = 0.2, min_size: float = 1.0, train_size=None,
                  augment: Callable | None = None, upper_bound: bool = True, device=None, progress: bool = True,
                  seed: int = 0, checkpoint=None, **fit_kwargs) -> dict[str, Any]:
    """The whole experiment of Table 4 on any in-memory dataset with one box per image.

    1. stage 1 (``build_model()``) trains on the full images resized to ``train_size`` (default
       ``input_size``) and is tested on them resized to ``input_size``;
    2. its top-1 CAM boxes on the training and test images, taken back to the full-resolution
       ``train_ds``/``test_ds``, give square crops with ``margin``: training crops are cut at
       ``train_size`` when it is given (to be random-cropped by ``augment``), else at
       ``crop_size``; test crops at ``crop_size``;
    3. stage 2 (a fresh ``build_model()``) trains on the training crops and classifies the test
       crops; with ``upper_bound`` a third network trains and tests on ground-truth-box crops.

    ``augment(dataset, size)`` may return a :func:`camlib.train.fit` ``augment=`` callable (e.g. a
    :class:`camlib.data.augment.GPUAugment` that random-crops ``input_size`` out of ``train_size``).
    ``fit_kwargs`` go to :func:`camlib.train.fit` (``batch_size``, ``lr``, ``optimizer``, ...).
    ``checkpoint``: a file path (e.g. from :func:`camlib.config.checkpoint_path`); each network then
    trains with ``resume=True`` on ``<stem>-stage1``, ``-stage2`` and ``-gt`` beside it, so a run cut
    off (a Colab disconnect) continues where it stopped, and a finished one is loaded, not retrained.
    Returns accuracies ``acc_full``, ``acc_crop``, ``acc_gt`` (fractions), the stage-1 localization
    ``loc_acc`` (top-1 class's box, IoU >= 0.5; class not required) and ``max_box_acc_v2``
    (GT-known maps), the test boxes and the models. Lesson 04 (gpu path: CUB-200-2011).
    """
    from . import metrics, train as _train

    if not isinstance(train_ds, InMemoryDataset) or not isinstance(test_ds, InMemoryDataset):
        raise ValueError("train_ds and test_ds must be InMemoryDatasets (or caches of them)")
    if train_ds.boxes is None or test_ds.boxes is None:
        raise ValueError("run_two_stage needs one ground-truth box per image (ds.boxes of shape (N, 4))")
    tsize = input_size if train_size is None else train_size
    in_hw, t_hw = size_hw(input_size), size_hw(tsize)

    if checkpoint is not None:
        from pathlib import Path
        checkpoint = Path(checkpoint)

    def fitted(ds, part: str):
        torch.manual_seed(seed)
        model = build_model()
        aug = augment(ds, size_hw(input_size)[0]) if augment is not None else None
        ck = None if checkpoint is None else checkpoint.with_name(f"{checkpoint.stem}-{part}{checkpoint.suffix or '.pt'}")
        _train.fit(model, ds, steps=steps, device=device, progress=progress, seed=seed, augment=aug,
                   checkpoint=ck, resume=ck is not None, **fit_kwargs)
        return model.eval()

    def resized(ds, hw):
        return ds if tuple(ds.image_size) == hw else resize_dataset(ds, hw)

    full_train, full_test = resized(train_ds, t_hw), resized(test_ds, in_hw)
    stage1 = fitted(full_train, "stage1")
    s_train = cam_boxes(stage1, full_train, device=device)
    s_test = cam_boxes(stage1, full_test, device=device)
    to_orig = lambda s, full, ds, hw: (boxes_from_crops(s["boxes"], full.extras["crop_box"], hw)  # noqa: E731
                                       if full is not ds else s["boxes"])
    b_train, b_test = to_orig(s_train, full_train, train_ds, t_hw), to_orig(s_test, full_test, test_ds, in_hw)
    crop_train = crop_dataset(train_ds, b_train, tsize if train_size is not None else crop_size, margin=margin,
                              min_size=min_size)
    crop_test = crop_dataset(test_ds, b_test, crop_size, margin=margin, min_size=min_size)
    stage2 = fitted(crop_train, "stage2")
    labels = test_ds.labels.cpu()
    acc = lambda logits: float((logits.argmax(1) == labels).float().mean())  # noqa: E731
    known = cam_boxes(stage1, full_test, classes="label", device=device)
    out: dict[str, Any] = {
        "acc_full": acc(s_test["logits"]),
        "acc_crop": acc(_logits(stage2, crop_test, 256, device)),
        "loc_acc": metrics.box_accuracy(b_test, test_ds.boxes.cpu()),
        "max_box_acc_v2": _streamed_max_box_acc_v2(known["maps"], full_test.boxes.cpu(), in_hw),
        "boxes": b_test, "stage1": stage1, "stage2": stage2, "crops_test": crop_test,
    }
    if upper_bound:
        gt_train = crop_dataset(train_ds, train_ds.boxes.cpu(), tsize if train_size is not None else crop_size,
                                margin=margin, min_size=min_size)
        gt_test = crop_dataset(test_ds, test_ds.boxes.cpu(), crop_size, margin=margin, min_size=min_size)
        gt_model = fitted(gt_train, "gt")
        out.update(acc_gt=acc(_logits(gt_model, gt_test, 256, device)), gt_model=gt_model)
    return out
