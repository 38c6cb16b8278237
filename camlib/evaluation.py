"""A trained network's localization numbers on a whole dataset: the paper's top-1/top-5 localization
error, GT-known box accuracy at the paper's rule and MaxBoxAccV2, all from :mod:`camlib.metrics`,
summed batch by batch so that memory stays one batch whatever the dataset's size. Used by the
recipes (:mod:`camlib.recipes`) and lesson 03's ILSVRC cell.
"""

from __future__ import annotations

from typing import Any

import torch

from .inference import amp_dtype, predict

__all__ = ["evaluate_localization", "evaluate_stream"]


class _LocalizationTally:
    """The localization numbers of a whole set, summed batch by batch (each is a mean over images, so
    the batches' sums give exactly the whole set's value): every number comes from :mod:`camlib.metrics`
    -- :func:`~camlib.metrics.localization_correct` (the paper's top-k rule),
    :func:`~camlib.metrics.box_accuracy` (GT-known, the paper's 20% box) and the MaxBoxAccV2 curve.
    The one implementation behind :func:`evaluate_localization` and :func:`evaluate_stream`. Lesson 03."""

    def __init__(self):
        self.images, self.top1, self.topk, self.known, self.loc1, self.lock, self.curve = 0, 0, 0, 0.0, 0, 0, None

    def add(self, classes, topk_maps, true_maps, labels, gt_boxes) -> None:
        """One batch: ``classes (b, k)`` the k best classes, best first; ``topk_maps (b, k, H, W)`` their
        maps; ``true_maps (b, H, W)`` the true class's maps; ``labels (b,)``; ``gt_boxes`` as
        :mod:`camlib.metrics` takes them. Maps at the image size."""
        from . import localize, metrics
        classes, labels = classes.cpu(), labels.cpu()
        b, k = classes.shape
        boxes = localize.boxes_from_maps(topk_maps.flatten(0, 1).float().cpu()).view(b, k, 4)
        true_maps = true_maps.float().cpu()
        hit = classes == labels[:, None]
        self.top1 += int(hit[:, 0].sum())
        self.topk += int(hit.any(1).sum())
        self.loc1 += int(metrics.localization_correct(classes, boxes, labels, gt_boxes, k=1).sum())
        self.lock += int(metrics.localization_correct(classes, boxes, labels, gt_boxes, k=k).sum())
        self.known += b * metrics.box_accuracy(localize.boxes_from_maps(true_maps), gt_boxes)
        part = metrics.max_box_acc_v2(true_maps, gt_boxes).curve * b
        self.curve = part if self.curve is None else self.curve + part
        self.images += b

    def result(self) -> dict[str, float]:
        if self.images == 0:
            raise ValueError("the dataset is empty: nothing to evaluate")
        n = self.images
        return {"images": n, "acc": self.top1 / n, "topk": self.topk / n, "gt_known": self.known / n,
                "top1_loc_error": 1 - self.loc1 / n, "topk_loc_error": 1 - self.lock / n,
                "MaxBoxAccV2": float((self.curve / n).max(0).mean())}


def evaluate_localization(model, data, *, device, batch_size: int = 128, chunk: int = 256) -> dict[str, float]:
    """Classification and localization of ``model`` on in-memory ``data`` (maps upsampled to the image size).

    Fractions: ``acc``/``top5`` and their errors; ``gt_known_box_acc_paper_rule``: the true class's
    map, the paper's box rule (>= 20% of the max, largest component), IoU >= 0.5;
    ``top1_loc_error``/``top5_loc_error``: the paper's localization errors (section 3: one of the
    top-k classes is right *and* its map's box has IoU >= 0.5); ``MaxBoxAccV2``: Choe et al.'s,
    on the true class's map. Two forward passes per chunk (true-class maps, top-k maps); the numbers
    come from :class:`_LocalizationTally`, as in :func:`evaluate_stream`. Called by
    :func:`camlib.recipes.run`; lesson 03 streams ILSVRC through its file-backed counterpart,
    :func:`evaluate_stream` (as ``recipes.evaluate_stream``).
    """
    n = len(data)
    size = tuple(data.image_size)
    tally = _LocalizationTally()
    for lo in range(0, n, chunk):
        idx = torch.arange(lo, min(lo + chunk, n))
        p = predict(model, data, batch_size=batch_size, device=device, maps="label", size=size, indices=idx)
        k = min(5, p["logits"].shape[1])
        q = predict(model, data, batch_size=batch_size, device=device, maps="pred", topk=k, size=size,
                           indices=idx)
        gts = [data.boxes_of(int(i)) for i in idx] if getattr(data, "boxes", None) is None else data.boxes[idx]
        qm = q["maps"] if q["maps"].ndim == 4 else q["maps"][:, None]
        tally.add(q["classes"].reshape(len(idx), -1), qm, p["maps"], p["labels"], gts)
    r = tally.result()
    return {"acc": r["acc"], "top5": r["topk"], "top1_cls_error": 1 - r["acc"], "top5_cls_error": 1 - r["topk"],
            "gt_known_box_acc_paper_rule": r["gt_known"], "top1_loc_error": r["top1_loc_error"],
            "top5_loc_error": r["topk_loc_error"], "MaxBoxAccV2": r["MaxBoxAccV2"]}


@torch.no_grad()
def evaluate_stream(model, dataset, *, device, batch_size: int = 64, limit: int | None = None,
                    num_workers: int = 2, topk: int = 5) -> dict[str, Any]:
    """Top-1/top-k localization error and GT-known MaxBoxAccV2 of ``model`` on a file-backed
    dataset (ILSVRC val, CUB: samples of one size), *streamed*: each batch's maps go through the
    metrics (:class:`_LocalizationTally`, as in :func:`evaluate_localization`) and are dropped, so
    memory is one batch whatever the dataset's size (all 50,000 ILSVRC maps at 224 px would be
    ~10 GB of float32). ``limit``: the first ``limit`` images only. Lesson 03.
    """
    from . import cam
    from .data.common import collate_samples
    if limit is not None and (isinstance(limit, bool) or int(limit) < 1):
        raise ValueError(f"limit must be a positive number of images or None; got {limit!r}")
    n_all = len(dataset)
    data = dataset if limit is None or int(limit) >= n_all else torch.utils.data.Subset(dataset, range(int(limit)))
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=collate_samples)
    device = torch.device(device)
    dtype = amp_dtype(device)
    model = model.eval().to(device)
    tally = _LocalizationTally()
    for b in loader:
        x, labels = b["image"].to(device), b["label"]
        size = tuple(x.shape[-2:])
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits, mk, ck = cam.cams(model, x, topk=min(topk, model.num_classes), size=size)
            _, mg, _ = cam.cams(model, x, labels.to(device), size=size)
        tally.add(ck, mk, mg[:, 0], labels, b["boxes"])
        del logits, mk, mg
    r = tally.result()
    return {"images": r["images"], "top-1 loc err": r["top1_loc_error"], f"top-{topk} loc err": r["topk_loc_error"],
            "MaxBoxAccV2": r["MaxBoxAccV2"]}
