"""Figures: maps over images, boxes, grids, curves; and the ipywidgets explorers built on them.

Every function takes plain tensors/arrays and an optional matplotlib ``ax`` and returns the axes
or figure, so the explorers are thin layers of widgets over these. Introduced in lesson 00.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def to_image(img) -> np.ndarray:
    """A displayable ``(H, W, 3)`` float array in [0, 1] from uint8/float, CHW/HWC, tensor/array."""
    a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if a.ndim != 3:
        raise ValueError(f"expected an image with 3 dims (C, H, W) or (H, W, C); got shape {a.shape}")
    if a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.clip(a, 0.0, 1.0)


def _map(m) -> np.ndarray:
    a = m.detach().float().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"a map must be 2-D (h, w); got shape {a.shape}")
    return a


def _ax(ax):
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=(3.2, 3.2))
    return ax


#: The course's box convention: the ground truth first (green), then the box drawn from a map (red).
BOX_COLORS = ("lime", "red", "yellow", "cyan")
BOX_LABELS = ("ground truth", "box from the map")


def draw_box(ax, box, color: str = "lime", label: str | None = None, lw: float = 2.0):
    """Draw a pixel-edge ``(x1, y1, x2, y2)`` box on an ``imshow`` axis (pixel centres at integers)."""
    import matplotlib.patches as patches
    x1, y1, x2, y2 = [float(v) for v in (box.tolist() if isinstance(box, torch.Tensor) else box)]
    ax.add_patch(patches.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, ec=color, lw=lw))
    if label:
        ax.text(x1 - 0.5, y1 - 1.5, label, color=color, fontsize=8, va="bottom",
                bbox=dict(facecolor="black", alpha=0.4, pad=1, lw=0))
    return ax


def box_legend(ax, labels: Sequence[str], colors: Sequence[str] = BOX_COLORS, *, fontsize: float = 7):
    """A legend under ``ax`` naming each box colour (e.g. which box is the ground truth, which the CAM's)."""
    import matplotlib.patches as patches
    if len(labels) > len(colors):
        raise ValueError(f"box_legend needs a colour per label; got {len(labels)} labels and {len(colors)} colours")
    handles = [patches.Patch(facecolor="none", edgecolor=c, lw=2, label=l) for l, c in zip(labels, colors)]
    return ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=min(len(handles), 2),
                     fontsize=fontsize, frameon=False, handlelength=1.2, borderaxespad=0.2)


def map_colorbar(ax, mappable, *, normalized: bool = False, label: str | None = None, fontsize: float = 7):
    """A slim colorbar beside ``ax``; its label says whether the values are raw or min-max scaled."""
    if label is None:
        label = "min-max scaled per map" if normalized else "map value"
    cax = ax.inset_axes([1.03, 0.0, 0.05, 1.0])     # beside the axis, which keeps its size
    cb = ax.figure.colorbar(mappable, cax=cax)
    cb.set_label(label, fontsize=fontsize)
    cb.ax.tick_params(labelsize=fontsize)
    return cb


def show_map(image, cam=None, *, ax=None, alpha: float = 0.5, boxes=(), box_colors=BOX_COLORS,
             box_labels: Sequence[str] | None = None, title: str | None = None, cmap: str = "jet",
             normalize: bool = False, vmin: float | None = None, vmax: float | None = None,
             colorbar: bool = True, colorbar_label: str | None = None, legend: bool | None = None):
    """An image with a map over it (upsampled to the image if needed) and optional boxes.

    By default the map keeps its values (``normalize=False``) and gets a colorbar that shows them,
    so a weak map looks weak; ``normalize=True`` min-max scales it to [0, 1] and the colorbar says
    so; ``vmin``/``vmax`` put several panels on one scale (then one colorbar, ``colorbar=False`` on
    the others, serves them all). Boxes get a legend under the axis naming each: ``box_labels``,
    else the course's convention ``BOX_LABELS`` (ground truth first, then the box drawn from the
    map). ``legend=None`` (default): a panel carries the legend unless an earlier panel of its figure
    already names the same boxes, so a grid names them once; ``True``/``False`` force it on or off.
    Introduced in lesson 00.
    """
    ax = _ax(ax)
    img = to_image(image)
    ax.imshow(img)
    if cam is not None:
        m = _map(cam)
        if m.shape != img.shape[:2]:
            from .cam import upsample
            m = upsample(torch.as_tensor(m)[None], img.shape[:2])[0].numpy()
        if normalize:
            if vmin is not None or vmax is not None:
                raise ValueError("show_map: give normalize=True or vmin/vmax, not both (a min-max scaled map is in [0, 1])")
            from .cam import normalize as minmax
            m = minmax(torch.as_tensor(m, dtype=torch.float32)[None])[0].numpy()
            vmin, vmax = 0.0, 1.0
        im = ax.imshow(m, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax)
        if colorbar:
            map_colorbar(ax, im, normalized=normalize, label=colorbar_label)
    boxes = list(boxes)
    if box_labels is not None and len(box_labels) < len(boxes):
        raise ValueError(f"show_map: {len(boxes)} boxes but only {len(box_labels)} box_labels")
    labels = list(box_labels) if box_labels is not None else [
        BOX_LABELS[i] if i < len(BOX_LABELS) else f"box {i + 1}" for i in range(len(boxes))]
    colors = [box_colors[i % len(box_colors)] for i in range(len(boxes))]
    for b, c in zip(boxes, colors):
        draw_box(ax, b, c)
    named = tuple(zip(labels[:len(boxes)], colors))
    shown = ax.figure.__dict__.setdefault("_camlib_box_legends", set())   # legends already in this figure
    if boxes and (legend or (legend is None and named not in shown)):
        box_legend(ax, labels[:len(boxes)], colors)
        shown.add(named)
    if title:
        ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return ax


def grid(images, maps=None, *, titles: Sequence[str] | None = None, boxes=None, ncols: int = 8,
         size: float = 2.0, alpha: float = 0.5, suptitle: str | None = None, box_labels: Sequence[str] | None = None):
    """A grid of images (with maps and boxes if given); returns the figure.

    The maps share one colour scale (their overall min and max), shown by a colorbar at the end of
    each row; the first panel with boxes carries the box legend (see :func:`show_map`).
    """
    import matplotlib.pyplot as plt
    n = len(images)
    if n == 0:
        raise ValueError("grid needs at least one image; got none")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive int; got {ncols!r}")
    for what, seq in (("maps", maps), ("titles", titles), ("boxes", boxes)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"grid takes one map per image, one title per image and one box list per image; "
                             f"got {n} images and {len(seq)} {what}")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)), squeeze=False)
    lo = hi = None
    if maps is not None:   # one scale for every panel, so the panels compare and one colorbar per row serves
        lo = min(float(_map(maps[i]).min()) for i in range(n))
        hi = max(float(_map(maps[i]).max()) for i in range(n))
    legend_done = False
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_axis_off()
            continue
        bx = () if boxes is None else list(boxes[i])
        show_map(images[i], None if maps is None else maps[i], ax=ax, alpha=alpha, vmin=lo, vmax=hi,
                 colorbar_label="map value (one scale for all panels)",
                 colorbar=(i % ncols == ncols - 1 or i == n - 1), boxes=bx, box_labels=box_labels,
                 legend=bool(bx) and not legend_done, title=None if titles is None else titles[i])
        legend_done = legend_done or bool(bx)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def bars(names: Sequence[str], values: Sequence[float], *, ax=None, title: str | None = None, xlabel: str = ""):
    """Horizontal bars, largest at the top (e.g. top-5 class probabilities)."""
    ax = _ax(ax)
    y = np.arange(len(names))[::-1]
    ax.barh(y, values, color="tab:blue")
    ax.set_yticks(y, names)
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    return ax


def cam_explorer(photos: dict, model, class_names: Sequence[str], *, device=None, size: int = 224, topk: int = 10):
    """An ipywidgets explorer: pick a photo, one of its top-k classes, and the overlay strength.

    ``photos`` maps names to RGB uint8 arrays. One forward pass per photo (cached); each class's map
    comes from the same features. Returns the widget box; ``box.update()`` redraws with the current
    values (headless runs call it once). Introduced in lesson 02.

    Uses only what ipywidgets 7 (Colab's 7.7) and 8 share: ``(label, value)`` options, ``observe(...,
    names="value")``, ``Output`` with ``clear_output(wait=True)``; the first draw is explicit, not left to
    a display event (tests/test_platform.py runs it under both, via ``make test-compat``).
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    from .cam import class_activation_maps
    from .models import preprocess_imagenet

    if not photos:
        raise ValueError("photos must map at least one name to an RGB image")
    device = device or next(model.parameters()).device
    cache: dict[str, tuple] = {}

    def run(name):
        if name not in cache:
            x = preprocess_imagenet(photos[name], size=size).to(device)
            with torch.no_grad():
                out = model(x)
            probs = out.logits.softmax(1)[0]
            top = probs.topk(topk)
            cache[name] = (out.features, probs, top.indices.tolist())
        return cache[name]

    photo = w.Dropdown(options=list(photos), description="photo")
    cls = w.Dropdown(description="class")
    alpha = w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="overlay")
    out = w.Output()

    def refresh_classes(*_):
        _, probs, idx = run(photo.value)
        cls.options = [(f"{class_names[i]} ({float(probs[i]):.2f})", i) for i in idx]
        cls.value = idx[0]

    def redraw(*_):
        feats, probs, _ = run(photo.value)
        with torch.no_grad():
            m = class_activation_maps(feats, model.classifier.weight, int(cls.value))[0, 0]
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(4.5, 3.6))
            show_map(photos[photo.value], m, ax=ax, alpha=alpha.value,
                     title=f"{class_names[int(cls.value)]}: p = {float(probs[int(cls.value)]):.3f}")
            plt.show()

    photo.observe(lambda ch: (refresh_classes(), redraw()), names="value")
    cls.observe(redraw, names="value")
    alpha.observe(redraw, names="value")
    refresh_classes()
    box = w.VBox([w.HBox([photo, cls, alpha]), out])
    box.update = redraw
    display(box)
    redraw()
    return box
