"""Informative-object scenes: the scene's category is decided by *which* objects it contains.

Paper section 4.2 ("pattern discovery"): the CAM of a scene category, learned from image-level
labels only, points at the objects that make the category (a bed for a bedroom), not at the
objects every scene has. These procedural scenes make that checkable, because every object's
mask is known:

* every scene holds several simple objects (disc, square, triangle, ring, plus, diamond, X,
  frame) in random colours, sizes and places, without overlap, over a noisy background;
* category ``c`` always contains its *informative* object, kind ``c``, which no other category
  contains; the other objects are drawn from the *common* kinds (``num_categories ..``), which any
  category may contain. Colour never tells the category: only the informative object's shape does.

The dataset's ``boxes`` and ``masks`` are those of the informative object; ``extras`` holds every
object: ``object_masks`` bool ``(N, M, H, W)``, ``object_kinds`` int ``(N, M)`` (``-1`` for an empty
slot) and ``object_boxes`` float ``(N, M, 4)`` pixel-edge, with slot 0 the informative object.
Everything is a function of ``(seed, index)``. Introduced in lesson 05.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .memory import InMemoryDataset

#: The object kinds, in the order categories take them (kind ``c`` is category ``c``'s object).
KINDS = ("disc", "square", "triangle", "ring", "plus", "diamond", "x", "frame")


@dataclass(frozen=True)
class SceneSpec:
    """What the scene generator draws. Lengths are in pixels at ``image_size`` (scaled from 64 px)."""

    image_size: int = 64
    num_categories: int = 4          # each with its own informative object kind
    common_kinds: int = 4            # kinds any scene may contain
    n_common: tuple[int, int] = (2, 3)   # how many common objects per scene (inclusive range)
    radius: tuple[float, float] = (5.0, 8.0)   # object half-size at 64 px
    noise: float = 0.05
    grid: int = 8                    # background cell size at 64 px

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or self.image_size < 32:
            raise ValueError(f"image_size must be an int >= 32, got {self.image_size!r}")
        if self.num_categories < 2 or self.common_kinds < 1 or self.num_categories + self.common_kinds > len(KINDS):
            raise ValueError(f"num_categories (>= 2) + common_kinds (>= 1) must be at most {len(KINDS)}; "
                             f"got {self.num_categories} + {self.common_kinds}")
        lo, hi = self.n_common
        if not 0 <= lo <= hi <= 5:
            raise ValueError(f"n_common must be a range 0 <= lo <= hi <= 5; got {self.n_common}")
        if not 2.0 <= self.radius[0] <= self.radius[1]:
            raise ValueError(f"radius must be a range (lo, hi) with 2 <= lo <= hi; got {self.radius}")

    @property
    def scale(self) -> float:
        return self.image_size / 64.0

    @property
    def max_objects(self) -> int:
        return 1 + self.n_common[1]

    def class_names(self) -> list[str]:
        return [f"scene {c}" for c in range(self.num_categories)]

    def kind_names(self) -> list[str]:
        return list(KINDS[: self.num_categories + self.common_kinds])


def shape_mask(kind: int, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Pixels of object ``kind`` of half-size ``r`` at offsets ``(dx, dy)`` from its centre."""
    ax, ay = np.abs(dx), np.abs(dy)
    t = max(1.0, 0.3 * r)                     # stroke half-width of the thin shapes
    if kind == 0:
        return dx ** 2 + dy ** 2 <= r ** 2
    if kind == 1:
        return np.maximum(ax, ay) <= 0.85 * r
    if kind == 2:                              # upright triangle, base at the bottom
        return (dy <= 0.8 * r) & (dy >= -r) & (ax <= (dy + r) * 0.6)
    if kind == 3:
        d2 = dx ** 2 + dy ** 2
        return (d2 <= r ** 2) & (d2 >= (0.55 * r) ** 2)
    if kind == 4:
        return ((ax <= t) & (ay <= r)) | ((ay <= t) & (ax <= r))
    if kind == 5:
        return ax + ay <= r
    if kind == 6:
        return (np.abs(dx - dy) <= 1.4 * t) & (np.maximum(ax, ay) <= 0.8 * r) | \
               (np.abs(dx + dy) <= 1.4 * t) & (np.maximum(ax, ay) <= 0.8 * r)
    if kind == 7:
        m = np.maximum(ax, ay)
        return (m <= 0.85 * r) & (m >= 0.85 * r - 1.6 * t)
    raise ValueError(f"kind must be in 0..{len(KINDS) - 1}; got {kind}")


def _draw_scene(spec: SceneSpec, seed: int, index: int) -> dict:
    rng = np.random.default_rng([int(seed), int(index), 0x5CE7E])
    S, s = spec.image_size, spec.scale
    label = int(rng.integers(spec.num_categories))
    n_common = int(rng.integers(spec.n_common[0], spec.n_common[1] + 1))
    kinds = [label] + [spec.num_categories + int(k) for k in rng.integers(spec.common_kinds, size=n_common)]
    placed: list[tuple[float, float, float]] = []
    for _ in kinds:
        r = rng.uniform(*spec.radius) * s
        for _attempt in range(200):                # rejection sampling: no two objects touch
            cx, cy = rng.uniform(r + 1, S - r - 1, size=2)
            if all((cx - px) ** 2 + (cy - py) ** 2 >= (r + pr + 2 * s) ** 2 for px, py, pr in placed):
                break
        else:
            raise ValueError(f"could not place {len(kinds)} objects without overlap in a {S}px image; "
                             "make radius or n_common smaller")
        placed.append((cx, cy, r))
    colours = rng.uniform(0.0, 1.0, size=(len(kinds), 3))
    colours[np.arange(len(kinds)), rng.integers(3, size=len(kinds))] = rng.uniform(0.85, 1.0, size=len(kinds))
    g = max(1, int(round(spec.grid * s)))
    cells = -(-S // g)
    bg = rng.uniform(0.3, 0.7, size=(cells, cells, 1)) + rng.uniform(-0.1, 0.1, size=(cells, cells, 3))
    noise = rng.standard_normal((3, S, S)).astype(np.float32) * spec.noise
    return dict(label=label, kinds=kinds, placed=placed, colours=colours, bg=np.clip(bg, 0, 1), grid=g, noise=noise)


def render_scenes(spec: SceneSpec, seed: int, indices) -> dict[str, np.ndarray]:
    """Render scenes ``indices``: uint8 images, labels, per-object masks, kinds and boxes."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(idx) and idx.min() < 0:
        raise ValueError(f"indices must be non-negative, got min {idx.min()}")
    S, M, B = spec.image_size, spec.max_objects, len(idx)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) + 0.5        # pixel centres
    images = np.zeros((B, 3, S, S), dtype=np.uint8)
    labels = np.zeros(B, dtype=np.int64)
    obj_masks = np.zeros((B, M, S, S), dtype=bool)
    kinds = np.full((B, M), -1, dtype=np.int64)
    boxes = np.zeros((B, M, 4), dtype=np.float32)
    for b, i in enumerate(idx):
        p = _draw_scene(spec, seed, int(i))
        g = p["grid"]
        img = np.repeat(np.repeat(p["bg"], g, axis=0), g, axis=1)[:S, :S].transpose(2, 0, 1).astype(np.float32)
        for j, (kind, (cx, cy, r)) in enumerate(zip(p["kinds"], p["placed"])):
            m = shape_mask(kind, xx - cx, yy - cy, r)
            img = np.where(m[None], p["colours"][j][:, None, None].astype(np.float32), img)
            obj_masks[b, j] = m
            kinds[b, j] = kind
            ys, xs = np.nonzero(m.any(axis=1))[0], np.nonzero(m.any(axis=0))[0]
            boxes[b, j] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
        images[b] = (np.clip(img + p["noise"], 0, 1) * 255 + 0.5).astype(np.uint8)
        labels[b] = p["label"]
    return dict(images=images, labels=labels, object_masks=obj_masks, object_kinds=kinds, object_boxes=boxes)


def make_scenes(n: int, seed: int = 0, spec: SceneSpec | None = None, *, start: int = 0) -> InMemoryDataset:
    """``n`` scenes (indices ``start .. start+n-1``) as an :class:`InMemoryDataset`.

    ``boxes``/``masks`` are the informative object's; every object is in ``extras`` (see the module
    docstring). Use different seeds for train and test. Lesson 05.

    >>> ds = make_scenes(8, seed=1)
    >>> ds.extras["object_masks"].shape[:2], ds.num_classes
    (torch.Size([8, 4]), 4)
    """
    spec = spec if spec is not None else SceneSpec()
    if not isinstance(spec, SceneSpec):
        raise ValueError(f"spec must be a SceneSpec, got {type(spec).__name__}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    out = render_scenes(spec, seed, np.arange(start, start + n))
    masks = torch.from_numpy(out["object_masks"])
    return InMemoryDataset(
        torch.from_numpy(out["images"]), torch.from_numpy(out["labels"]), torch.from_numpy(out["object_boxes"][:, 0]),
        masks[:, 0].clone(), None, class_names=spec.class_names(), name=f"scenes-{spec.num_categories}-s{seed}",
        extras={"object_masks": masks, "object_kinds": torch.from_numpy(out["object_kinds"]),
                "object_boxes": torch.from_numpy(out["object_boxes"])},
    )
