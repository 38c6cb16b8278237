"""Procedural localization data: labels from the image, exact boxes and masks for free.

Each image shows one *object* over clutter: a rotated, striped ellipse (the *body*) with a small
coloured disc (the *head*) at one end. The class evidence is spread unevenly over the object, as
in real photos:

* the head's colour is strong evidence: it alone names the class (a small, discriminative part);
* the body's stripe direction is weaker evidence spread over the whole object: it narrows the
  class to a pair (``stripes="pairs"``), or carries nothing (``stripes="random"``).

A network with a GMP head can succeed by finding the head alone; a GAP head is rewarded for every
location with evidence, so it learns to cover the body too. This is the paper's section 2 argument
made measurable (``../shared/FINDINGS.md``: when only the head carried evidence, both heads' maps
collapsed onto it). With this default design it holds for short training only: trained long enough
(240 steps), GAP comes to rely on the head alone and GMP's maps spread along the striped body, so the
order of the two heads reverses (FINDINGS, "Lesson 01 at the gpu profile's sizes").

**Lesson 01's design, preset ``"tinted"``**, keeps the order at every training length measured. The
head's colour names the class; the body carries a *tint* of the same colour (``body_tint``: the share
of the head's colour mixed into the body's random colour, 0.3-0.5) under stripes in a random
direction, which carry nothing. The tint is the same kind of evidence as the head, only weaker and
spread over the whole object, so GMP, whose maximum sits on the head, gains nothing from it, while
GAP gains from every tinted location. Bodies are larger and rounder and the image is 96 px, so the
receptive field's halo (a 21-px field around each map cell) is small beside the object. Measured
(2026-11-28, 8,000 images, seed 0, snapshots of one 480-step run; box accuracy at the paper's rule):
GAP 0.81 / 0.70 / 0.60 / 0.60 vs GMP 0.24 / 0.19 / 0.17 / 0.13 at steps 80 / 160 / 240 / 480;
accuracy GAP 0.87 / 0.99 / 0.99 / 1.00, GMP 0.99-1.00; GAP's boxes 1.0x the object's area throughout,
GMP's 0.25x (the head). Longer training *shrinks* GMP's maps: the paper's mechanism grows stronger.
What did not work on the way (same protocol): a weaker tint (0.15-0.3, body noise 2x) lets both
heads collapse onto the head (GAP 0.24 -> 0.03, GMP 0.17 -> 0.10); a strong tint on a plain body
(0.35-0.55, no stripes) is read by GMP too (GMP 0.86-0.89 throughout) while GAP's halo grows to 2x
the object (0.95 -> 0.38); the same tint at 64 px keeps the order (GAP 0.83 -> 0.50, GMP 0.45 ->
0.32) but GAP's halo grows to 1.5x; faint stripes under body noise (``stripe_dark=(0.8, 0.9)``,
``body_noise=3``) are ignored by both when the head names the class, and learnt by both, GAP first,
when the head names only the pair (``head_shared=True``: GAP 0.27 / 0.73 vs GMP 0.05 / 0.66 at steps
160 / 480).

``parts=3`` (preset ``"parts"``) adds two more parts that each name the class: a band across the
body near its back end (*tail*) and a square at its centre (*middle*). Part ``k`` of class ``c``
takes palette colour ``(c + PART_OFFSETS[k]) mod colours``, so a class's three parts differ in colour
and shape. The idea was that GMP, needing only one part, would stop at it while GAP would find all
three. Measured (2026-11-28, 8,000 images, seed 0, snapshots of a 240-step run) it does not: GMP's
pooling is a maximum *per channel*, so separate channels detect separate parts and GMP is rewarded
for each kind of part it finds; its maps fit the parts (box accuracy 0.75 / 0.80 / 0.82 at steps
80 / 160 / 240, boxes 1.04x the object's area), while GAP's maps spread past the object (0.84 /
0.63 / 0.54, 1.7-2.0x). Larger, rounder bodies (``body_length=(15, 22), body_aspect=(0.55, 0.75)``)
keep GAP's boxes closer to the object (0.99 / 0.93 / 0.91 at steps 80 / 240 / 480 of a 480-step run),
but GMP catches up (0.68 / 0.84 / 0.86): GMP is not rewarded for the *extent* of one kind of
evidence, GAP is, and separate parts are separate kinds.

``body="dots"`` paints the body as a grid of ``dot_cell``-px cells (image frame, random offset), each
the class's own muted body colour (``BODY_PALETTE[c]``) with chance ``dot_p``, else one of the other
body colours uniformly; with ``head_shared=True`` the head names only the pair, so the body's colour
*statistics* decide within it. One cell says little (every body shows cells of every colour); the
average over the body decides. The idea was that this rewards averaging (GAP) and not a maximum (GMP).
Measured (2026-11-28, 8,000 images, seed 0, snapshots of a 480-step run, ``dot_p=0.35``, 3-px cells)
it does not: GMP's channels detect the *local density* of a colour over their 21-px receptive field,
which is high all over the body, so GMP's maps fit the body (box accuracy 0.11 / 0.55 / 0.67 / 0.76 at
steps 80 / 160 / 240 / 480, boxes 1.0-1.2x the object's area), while GAP's spread past it (0.30 / 0.40 /
0.46 / 0.46, 1.4-1.8x); accuracy 0.98 (GAP) and 0.97 (GMP) at step 480. Weaker cells on larger, rounder
bodies (``dot_p=0.25, body_length=(15, 22), body_aspect=(0.55, 0.75)``) shrink GMP's boxes (0.3-0.9x) but
not GAP's halo (0.8-1.4x): a tie (GAP 0.10 / 0.34 / 0.48 / 0.54, GMP 0.03 / 0.31 / 0.53 / 0.54).
At ``dot_p=0.2`` the body is barely learnt in 480 steps (accuracy 0.86 / 0.79) and both heads fail
(box accuracy 0.22 / 0.21 at step 480). So the default stays ``body="stripes"``.
Backgrounds are a noisy grid of muted colours with class-independent distractor shapes; position,
rotation and scale vary. ``part_masks`` is the union of the class-naming parts;
``render_synthetic`` also returns ``part_ids`` (0 none, 1 head, 2 tail, 3 middle).

The *fine-grained* preset (lesson 04) puts a small object in a larger frame (128 px); the head
colour names a pair of classes and the direction of thin stripes on the body the class within it,
a detail that needs the full resolution.

Everything is a function of ``(seed, index)``: image ``i`` is the same whatever batch or chunk it
is rendered in. Rendering is vectorized over a chunk of images with NumPy. Introduced in lesson 01.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

import numpy as np
import torch

from .memory import InMemoryDataset

# Head colours: saturated and far apart (RGB in [0, 1]).
HEAD_PALETTE = np.array([
    [0.95, 0.10, 0.10], [0.10, 0.80, 0.15], [0.15, 0.30, 0.95], [0.98, 0.90, 0.10],
    [0.90, 0.15, 0.85], [0.10, 0.90, 0.90], [1.00, 0.55, 0.05], [1.00, 1.00, 1.00],
    [0.55, 0.25, 0.05], [0.50, 0.95, 0.55], [0.55, 0.55, 1.00], [0.05, 0.05, 0.05],
], dtype=np.float32)

# Stripe directions relative to the body's long axis (radians): along, across, the two diagonals.
STRIPE_ANGLES = np.array([0.0, np.pi / 2, np.pi / 4, -np.pi / 4], dtype=np.float32)
STRIPE_NAMES = ("along", "across", "diag+", "diag-")
# The parts that name the class (``SyntheticSpec.parts``): head disc, tail band, middle square. Part k of
# class c takes palette colour (c + PART_OFFSETS[k]) mod (number of colours): within a class the parts
# differ in colour (and shape), so no single colour detector finds them all.
PART_NAMES = ("head", "tail", "middle")
PART_OFFSETS = (0, 3, 5)
TAIL_AT = 0.8                                    # the tail band's centre, as a fraction of the semi-major axis
COLOUR_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "white",
                "brown", "mint", "lavender", "black")
# Body colours of ``body="dots"``: muted (the corners of the cube [0.3, 0.7]^3), distinct from the head's.
# Class c's own body colour is BODY_PALETTE[c].
BODY_PALETTE = np.array([
    [0.3, 0.3, 0.3], [0.7, 0.3, 0.3], [0.3, 0.7, 0.3], [0.3, 0.3, 0.7],
    [0.7, 0.7, 0.3], [0.7, 0.3, 0.7], [0.3, 0.7, 0.7], [0.7, 0.7, 0.7],
], dtype=np.float32)
BODY_COLOUR_NAMES = ("dark grey", "rust", "leaf", "slate", "olive", "plum", "teal", "light grey")


@dataclass(frozen=True)
class SyntheticSpec:
    """What the generator draws. Lengths are in pixels at ``image_size`` (scaled from 64 px)."""

    image_size: int = 64
    num_classes: int = 8
    stripes: Literal["pairs", "random"] = "pairs"   # body evidence: class pair, or none
    spots: int = 1                  # fine-grained: classes = head colours x spot positions
    body_length: tuple[float, float] = (12.0, 21.0)  # semi-major axis range at 64 px
    body_aspect: tuple[float, float] = (0.42, 0.6)    # semi-minor / semi-major
    head_radius: float = 0.3        # fraction of the semi-major axis
    stripe_period: tuple[float, float] = (3.6, 5.0)
    distractors: int = 4
    head_palette_distractors: float = 0.0  # fraction of distractors that take a head colour
    head_shared: bool = False       # pairs: the head names the pair, the stripes the class within it
    stripes_absolute: bool = True   # stripe direction fixed in the image (True) or along the body axis
    distractor_size: tuple[float, float] = (2.5, 6.0)
    noise: float = 0.06             # std of the pixel noise, in [0, 1] units
    grid: int = 8                   # background cell size at 64 px
    parts: int = 1                  # separate parts that each name the class: head; + tail band; + middle square
    body: Literal["stripes", "dots"] = "stripes"  # the body's texture (the stripe fields apply to "stripes" only)
    dot_p: float = 0.35             # dots: chance that a cell takes the class's own body colour
    dot_cell: float = 3.0           # dots: cell size at 64 px
    stripe_dark: tuple[float, float] = (0.25, 0.45)  # brightness of the dark stripes (1.0 = no stripes)
    body_noise: float = 1.0         # the pixel noise on the body, as a multiple of ``noise``
    body_tint: tuple[float, float] = (0.0, 0.0)  # share of the head's colour mixed into the body's

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or self.image_size < 16:
            raise ValueError(f"image_size must be an int >= 16, got {self.image_size!r}")
        if self.stripes not in ("pairs", "random"):
            raise ValueError(f"stripes must be 'pairs' or 'random', got {self.stripes!r}")
        if self.spots not in (1, 2, 3):
            raise ValueError(f"spots must be 1, 2 or 3, got {self.spots!r}")
        colours = self.num_classes // self.spots
        if colours * self.spots != self.num_classes or not 2 <= colours <= len(HEAD_PALETTE):
            raise ValueError(f"num_classes must be spots x (2..{len(HEAD_PALETTE)}) head colours; "
                             f"got num_classes={self.num_classes}, spots={self.spots}")
        if self.parts not in (1, 2, 3):
            raise ValueError(f"parts must be 1, 2 or 3, got {self.parts!r}")
        if self.parts > 1 and (self.spots != 1 or self.head_shared):
            raise ValueError(f"parts={self.parts} needs spots=1 and head_shared=False (each part names the class); "
                             f"got spots={self.spots}, head_shared={self.head_shared}")
        if len({o % colours for o in PART_OFFSETS[:self.parts]}) < self.parts:
            raise ValueError(f"with {colours} colours the {self.parts} parts would share a colour "
                             f"(colour offsets {PART_OFFSETS[:self.parts]}); use another num_classes or fewer parts")
        for name in ("stripe_dark", "body_tint"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"{name} must be a range (low, high) with 0 <= low <= high <= 1, got {(lo, hi)!r}")
        if not self.body_noise >= 0.0:
            raise ValueError(f"body_noise must be >= 0 (a multiple of noise), got {self.body_noise!r}")
        if self.body == "dots" and self.body_tint != (0.0, 0.0):
            raise ValueError(f"body_tint applies to body='stripes' only (a dotted body has its own colours); "
                             f"got body_tint={self.body_tint!r}")
        if self.body not in ("stripes", "dots"):
            raise ValueError(f"body must be 'stripes' or 'dots', got {self.body!r}")
        if self.body == "dots":
            if self.spots != 1 or self.parts != 1 or not 2 <= self.num_classes <= len(BODY_PALETTE):
                raise ValueError(f"body='dots' needs spots=1, parts=1 and 2..{len(BODY_PALETTE)} classes (one body "
                                 f"colour each); got spots={self.spots}, parts={self.parts}, "
                                 f"num_classes={self.num_classes}")
            if not 0.0 <= self.dot_p <= 1.0:
                raise ValueError(f"dot_p must be a probability in [0, 1], got {self.dot_p!r}")
            if not self.dot_cell * self.scale >= 1.0:
                raise ValueError(f"dot_cell must be at least 1 pixel at image_size={self.image_size}, "
                                 f"got {self.dot_cell!r} (at 64 px)")
        elif self.stripes == "pairs" and (self.spots != 1 or self.num_classes > 2 * len(STRIPE_ANGLES)
                                        or self.num_classes % 2):
            raise ValueError("stripes='pairs' needs spots=1 and an even num_classes <= 8")

    @property
    def scale(self) -> float:
        return self.image_size / 64.0

    def class_names(self) -> list[str]:
        names = []
        for c in range(self.num_classes):
            colour, spot = c % (self.num_classes // self.spots), c // (self.num_classes // self.spots)
            if self.head_shared:       # same rule as the renderer: head names the pair, stripes the class
                colour = c // 2
            name = f"{COLOUR_NAMES[colour]} head"
            if self.body == "dots":
                name += f", {BODY_COLOUR_NAMES[c]} dots"
            elif self.stripes == "pairs":
                name += f", {STRIPE_NAMES[(c % 2) if self.head_shared else (c // 2)]} stripes"
            if self.spots > 1:
                name += f", spot {('front', 'middle', 'back')[spot]}"
            names.append(name)
        return names

    @classmethod
    def preset(cls, name: str, **changes) -> "SyntheticSpec":
        """Named variants: ``"gapgmp"`` (the default spec of :func:`make_synthetic`, which lessons 02, 03
        and 06 call; lesson 05 builds the same spec as ``SyntheticSpec(parts=1)``), ``"tinted"`` (lesson
        01's data), ``"parts"`` (lesson 01's exercise, ``make_synthetic(..., spec="parts")``) and
        ``"fine"`` (lesson 04)."""
        presets = {
            "gapgmp": cls(),
            # lesson 01: the head names the class, the body carries a faint tint of the head's colour (weak
            # evidence spread over the object) and stripes in a random direction (none); larger, rounder
            # bodies at 96 px, so the receptive field's halo is small beside the object (module docstring)
            "tinted": cls(image_size=96, stripes="random", body_tint=(0.3, 0.5), body_length=(16.0, 23.0),
                          body_aspect=(0.55, 0.75)),
            # three class-naming parts (head, tail, middle): a design measured on 2026-11-28 (module docstring)
            "parts": cls(parts=3),
            # lesson 04: the head colour names a pair, thin stripes (2.4-3.2 px period at 128 px) the class
            # within it -- a detail that an antialiased 48-px copy of the frame no longer shows
            "fine": cls(image_size=128, num_classes=8, stripes="pairs", head_shared=True, body_length=(10.0, 14.0),
                        stripe_period=(1.2, 1.6), head_radius=0.26, distractors=6, distractor_size=(2.0, 5.0), grid=6,
                        parts=1),
        }
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(presets)}")
        return replace(presets[name], **changes)


def part_colour(labels, k: int, colours: int) -> np.ndarray:
    """RGB colours ``(B, 3)`` of part ``k`` (0 head, 1 tail, 2 middle) for class ``labels`` (``PART_OFFSETS``)."""
    return HEAD_PALETTE[(np.asarray(labels) + PART_OFFSETS[k]) % colours]


def _draw_params(spec: SyntheticSpec, seed: int, index: int) -> dict:
    """Every random choice of image ``index``, from its own generator."""
    rng = np.random.default_rng([int(seed), int(index), 0x5CA7])
    s, S = spec.scale, spec.image_size
    label = int(rng.integers(spec.num_classes))
    a = rng.uniform(*spec.body_length) * s
    b = a * rng.uniform(*spec.body_aspect)
    r_head = spec.head_radius * a
    reach = a + r_head + 1.0                     # head centre sits at 0.85 a, so this bounds it
    cx, cy = rng.uniform(reach, S - reach, size=2)
    g = max(1, int(round(spec.grid * s)))
    cells = -(-S // g)
    bg = rng.uniform(0.25, 0.75, size=(cells, cells, 1)) + rng.uniform(-0.12, 0.12, size=(cells, cells, 3))
    dist = np.zeros((spec.distractors, 7), dtype=np.float32)
    for j in range(spec.distractors):            # x, y, size, kind, r, g, b
        dist[j, :2] = rng.uniform(0, S, size=2)
        dist[j, 2] = rng.uniform(*spec.distractor_size) * s
        dist[j, 3] = rng.integers(3)
        dist[j, 4:] = rng.uniform(0.05, 1.0, size=3)
        if rng.uniform() < spec.head_palette_distractors:
            dist[j, 4:] = HEAD_PALETTE[rng.integers(spec.num_classes // spec.spots)]
    return dict(
        label=label, a=a, b=b, r_head=r_head, cx=cx, cy=cy, theta=rng.uniform(0, 2 * np.pi),
        stripe=((label % 2) if spec.head_shared else (label // 2)) if spec.stripes == "pairs"
        else int(rng.integers(len(STRIPE_ANGLES))),
        period=rng.uniform(*spec.stripe_period) * s, phase=rng.uniform(), body_rgb=rng.uniform(0.35, 0.85, size=3),
        stripe_dark=rng.uniform(*spec.stripe_dark), bg=np.clip(bg, 0, 1).astype(np.float32), dist=dist,
        noise=rng.standard_normal((3, S, S), dtype=np.float32) * spec.noise,
        **(_draw_dots(spec, rng, label) if spec.body == "dots" else {}),
        tint=rng.uniform(*spec.body_tint) if spec.body_tint != (0.0, 0.0) else 0.0,
    )


def _dot_cell_px(spec: SyntheticSpec) -> int:
    return max(1, int(round(spec.dot_cell * spec.scale)))


def _draw_dots(spec: SyntheticSpec, rng: np.random.Generator, label: int) -> dict:
    """The body cells' colours for ``body="dots"``, drawn after every other choice (so the rest of the
    image is the same as with stripes): each cell is the class's own body colour with chance ``dot_p``,
    else one of the other body colours, uniformly."""
    c = _dot_cell_px(spec)
    n = -(-spec.image_size // c) + 1              # one spare row/column for the grid's offset
    offset = rng.integers(c, size=2)
    own = rng.uniform(size=(n, n)) < spec.dot_p
    other = rng.integers(spec.num_classes - 1, size=(n, n))
    other = other + (other >= label)              # any colour but the class's own
    return dict(dot_offset=offset, dots=np.where(own, label, other).astype(np.int8))


def render_synthetic(spec: SyntheticSpec, seed: int, indices) -> dict[str, np.ndarray]:
    """Render the given image indices; returns uint8 images and labels, boxes, masks as arrays."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(idx) and idx.min() < 0:
        raise ValueError(f"indices must be non-negative, got min {idx.min()}")
    S = spec.image_size
    P = [_draw_params(spec, seed, i) for i in idx]
    B = len(P)
    col = lambda k: np.array([p[k] for p in P], dtype=np.float32).reshape(B, 1, 1)  # noqa: E731
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) + 0.5          # pixel centres
    xx, yy = xx[None], yy[None]

    # background: a grid of muted colours, nearest-neighbour upsampled, then distractors on top
    g = -(-S // P[0]["bg"].shape[0]) if B else 1
    bg = np.stack([p["bg"] for p in P]) if B else np.zeros((0, 1, 1, 3), np.float32)
    img = np.repeat(np.repeat(bg, g, axis=1), g, axis=2)[:, :S, :S, :].transpose(0, 3, 1, 2).copy()
    for j in range(spec.distractors):
        d = np.stack([p["dist"][j] for p in P]) if B else np.zeros((0, 7), np.float32)
        dx, dy = xx - d[:, 0, None, None], yy - d[:, 1, None, None]
        r, kind = d[:, 2, None, None], d[:, 3, None, None]
        disc = dx ** 2 + dy ** 2 <= r ** 2
        square = np.maximum(np.abs(dx), np.abs(dy)) <= r * 0.85
        ring = disc & (dx ** 2 + dy ** 2 >= (0.55 * r) ** 2)
        shape = np.where(kind == 0, disc, np.where(kind == 1, square, ring))
        img = np.where(shape[:, None], d[:, 4:, None, None], img)

    # the object, in its own frame: u along the body, v across it
    th = col("theta")
    dx, dy = xx - col("cx"), yy - col("cy")
    u = dx * np.cos(th) + dy * np.sin(th)
    v = -dx * np.sin(th) + dy * np.cos(th)
    a, b = col("a"), col("b")
    body = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    phi = STRIPE_ANGLES[np.array([p["stripe"] for p in P], dtype=np.int64)].reshape(B, 1, 1)
    su, sv = (dx, dy) if spec.stripes_absolute else (u, v)
    t = (su * np.cos(phi) + sv * np.sin(phi)) / col("period") + col("phase")
    dark = (t - np.floor(t)) < 0.5
    body_rgb = np.stack([p["body_rgb"] for p in P]).astype(np.float32)[:, :, None, None]
    shade = np.where(dark, col("stripe_dark"), 1.0)[:, None]
    if spec.body == "dots":                        # a grid of cells in the image frame, one colour per cell
        c = _dot_cell_px(spec)
        off = np.stack([p["dot_offset"] for p in P]).astype(np.int64)
        ar = np.arange(S, dtype=np.int64)
        iy = (ar[None, :] + off[:, 1:2]) // c      # (B, S): cell row of each pixel row
        ix = (ar[None, :] + off[:, 0:1]) // c
        dots = np.stack([p["dots"] for p in P]).astype(np.int64)
        cell = dots[np.arange(B)[:, None, None], iy[:, :, None], ix[:, None, :]]
        img = np.where(body[:, None], BODY_PALETTE[cell].transpose(0, 3, 1, 2), img)
    labels = np.array([p["label"] for p in P], dtype=np.int64)
    colours = spec.num_classes // spec.spots
    head_idx = labels // 2 if spec.head_shared else labels % colours
    head_rgb = HEAD_PALETTE[head_idx][:, :, None, None]
    if spec.body != "dots":
        tint = col("tint")[:, None]
        img = np.where(body[:, None], ((1 - tint) * body_rgb + tint * head_rgb) * shade, img)

    part = np.zeros((B, S, S), dtype=bool)
    if spec.spots > 1:                             # fine-grained: a small spot on one side of the body
        spot = labels // colours
        su = np.array([0.35, 0.0, -0.35], dtype=np.float32)[spot].reshape(B, 1, 1) * a
        rs = np.maximum(0.2 * a, 1.2 * spec.scale)
        spot_mask = ((u - su) ** 2 + (v - 0.0) ** 2 <= rs ** 2) & body
        img = np.where(spot_mask[:, None], np.float32(0.02), img)
        part |= spot_mask
    hu = 0.85 * a
    head = (u - hu) ** 2 + v ** 2 <= col("r_head") ** 2
    img = np.where(head[:, None], head_rgb, img)
    part |= head
    part_id = np.where(head, np.int8(1), np.int8(0))
    r = col("r_head")
    if spec.parts >= 2:                            # a band across the body near its back end
        tail = (np.abs(u + TAIL_AT * a) <= 0.55 * r) & (np.abs(v) <= 1.1 * r) & body
        img = np.where(tail[:, None], part_colour(labels, 1, colours)[:, :, None, None], img)
        part |= tail
        part_id = np.where(tail, np.int8(2), part_id)
    if spec.parts >= 3:                            # a square in the middle of the body
        mid = (np.abs(u) <= 0.8 * r) & (np.abs(v) <= 0.8 * r)
        img = np.where(mid[:, None], part_colour(labels, 2, colours)[:, :, None, None], img)
        part |= mid
        part_id = np.where(mid, np.int8(3), part_id)

    noise = np.stack([p["noise"] for p in P]) if B else 0.0
    if spec.body_noise != 1.0:
        noise = noise * np.where(body & ~part, np.float32(spec.body_noise), np.float32(1.0))[:, None]
    img = np.clip(img + noise, 0.0, 1.0)
    mask = body | head
    boxes = np.zeros((B, 4), dtype=np.float32)
    for k in range(B):                            # exact box of the object mask, pixel-edge coords
        ys, xs = np.nonzero(mask[k].any(axis=1))[0], np.nonzero(mask[k].any(axis=0))[0]
        boxes[k] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return dict(images=(img * 255 + 0.5).astype(np.uint8), labels=labels, boxes=boxes, masks=mask, part_masks=part,
                part_ids=part_id)


def make_synthetic(n: int, seed: int = 0, spec: SyntheticSpec | str = "gapgmp", *, start: int = 0,
                   chunk: int = 512, progress: bool = False) -> InMemoryDataset:
    """Generate ``n`` images (indices ``start .. start+n-1``) of the synthetic data set.

    Use different ``seed`` values (or disjoint ``start`` ranges) for train, validation and test.

    >>> ds = make_synthetic(16, seed=1)
    >>> ds.images.shape, ds.boxes.shape
    (torch.Size([16, 3, 64, 64]), torch.Size([16, 4]))
    """
    if isinstance(spec, str):
        spec = SyntheticSpec.preset(spec)
    if not isinstance(spec, SyntheticSpec):
        raise ValueError(f"spec must be a SyntheticSpec or a preset name, got {type(spec).__name__}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    parts = []
    steps = range(start, start + n, chunk)
    if progress:
        from ..config import progress_bar
        steps = progress_bar(steps, desc="generating", unit="chunk")
    for lo in steps:
        parts.append(render_synthetic(spec, seed, np.arange(lo, min(lo + chunk, start + n))))
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return InMemoryDataset(
        torch.from_numpy(cat["images"]), torch.from_numpy(cat["labels"]), torch.from_numpy(cat["boxes"]),
        torch.from_numpy(cat["masks"]), torch.from_numpy(cat["part_masks"]),
        class_names=spec.class_names(), name=f"synthetic-{spec.num_classes}-s{seed}",
    )


def describe(spec: SyntheticSpec) -> dict:
    """The spec as a plain dict (for reports and cache keys)."""
    return asdict(spec)
