"""The checks that follow the lessons' exercises.

Each ``check_*`` takes the student's function, runs it and a reference (written here, in plain
torch/scipy) on fresh random inputs from a seeded generator, and either prints one line saying it
passed or raises ``AssertionError`` that says precisely what differs: the type or shape, the first
index where the values differ (with both values), and, when the answer matches a plausible mistake
on every trial, what that mistake was ("looks like you used max instead of mean"). An exception
raised by the student's function passes through unchanged, with a note saying what it was given.

Each check is made of a :class:`Spec` (its trials, reference and known mistakes; :func:`spec`
draws them from any seed) and :func:`diagnose` (the comparison, on outputs given as data), so the
instructor's grader (``python -m coursekit grade``) runs the same checks in its own process, on
trials drawn at grading time, without running them where the student's code could reach them.

| lesson | check | the exercise |
|---|---|---|
| 01 | :func:`check_gap`, :func:`check_gmp` | global average / max pooling |
| 02 | :func:`check_cam`, :func:`check_minmax` | the map as a weighted sum; min-max normalization |
| 03 | :func:`check_largest_component_box`, :func:`check_box_iou`, :func:`check_topk_loc_error` | boxes, IoU, top-k localization error |
| 04 | :func:`check_crop_box` | the crop of the two-stage pipeline |
| 05 | :func:`check_probe_cam` | a CAM from a linear probe's weights |
| 06 | :func:`check_rank_units` | ranking units by a class's weights |

Boxes are ``(x1, y1, x2, y2)`` in pixel-edge coordinates (CONTRIBUTING.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

CHECKS = ("check_gap", "check_gmp", "check_cam", "check_minmax", "check_largest_component_box", "check_box_iou",
          "check_topk_loc_error", "check_crop_box", "check_probe_cam", "check_rank_units")

Mistake = tuple[str, Callable[..., Any]]


# ------------------------------------------------------------------------------------ the engine
def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        if value.dim() <= 1 and value.numel() <= 4:  # small enough to show the values (a box)
            return f"tensor({[round(v, 4) for v in value.tolist()] if value.dim() else round(value.item(), 4)})"
        return f"tensor {tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, np.ndarray):
        return f"ndarray {value.shape} {value.dtype}"
    if isinstance(value, (list, tuple)):
        return f"list of {len(value)} " + (f"({_describe(value[0])}, ...)" if value else "items")
    return repr(value)


def _inputs(names: Sequence[str], args: Sequence[Any]) -> str:
    return ", ".join(f"{n}={_describe(a)}" for n, a in zip(names, args))


def _fresh(value: Any) -> Any:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.clone() if isinstance(value, torch.Tensor) else value.copy()
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    return value


def _call(name: str, fn: Callable, names: Sequence[str], args: Sequence[Any]) -> Any:
    try:
        return fn(*[_fresh(a) for a in args])
    except NotImplementedError as exc:
        exc.add_note(f"{name}: your function is not written yet -- replace `raise NotImplementedError` "
                     "with your solution")
        raise
    except Exception as exc:
        exc.add_note(f"{name} called your function with {_inputs(names, args)}")
        raise


def _as_tensor(name: str, out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, tuple) and hasattr(out, "values") and hasattr(out, "indices"):
        raise AssertionError(f"{name}: expected a torch.Tensor, got {type(out).__name__} (values, indices): "
                             "torch.max(x, dim) returns both; take .values (or use amax)")
    hint = " (convert it with torch.as_tensor)" if isinstance(out, np.ndarray) else ""
    raise AssertionError(f"{name}: expected a torch.Tensor, got {type(out).__name__}{hint}")


def _as_indices(name: str, out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (list, tuple, np.ndarray)):
        try:
            return torch.as_tensor(np.asarray(out))
        except (TypeError, ValueError):
            pass
    raise AssertionError(f"{name}: expected unit indices (a tensor or list of ints), got {type(out).__name__}")


def _as_number(name: str, out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor) and out.numel() != 1:
        raise AssertionError(f"{name}: expected one number for the whole batch, got a tensor of shape "
                             f"{tuple(out.shape)}")
    try:
        return torch.tensor(float(out), dtype=torch.float64)
    except (TypeError, ValueError):
        raise AssertionError(f"{name}: expected a float, got {type(out).__name__}") from None


def _difference(got: torch.Tensor, want: torch.Tensor, rtol: float, atol: float) -> str:
    """'' when ``got`` matches ``want``, else what differs (shape, or the first differing value)."""
    if tuple(got.shape) != tuple(want.shape):
        return f"expected shape {tuple(want.shape)}, got {tuple(got.shape)}"
    if got.dtype == torch.bool or not (got.is_floating_point() or got.dtype in (torch.int64, torch.int32, torch.int16,
                                                                                  torch.int8, torch.uint8)):
        return f"expected a number type, got dtype {got.dtype}"
    g, w = got.detach().cpu().double(), want.detach().cpu().double()
    scale = float(w.abs().max()) if w.numel() else 0.0
    close = torch.isclose(g, w, rtol=rtol, atol=atol * max(scale, 1.0))
    if bool(close.all()):
        return ""
    bad = (~close).nonzero()
    idx = tuple(int(i) for i in bad[0])
    values = f"expected {float(w[idx]):.6g}, got {float(g[idx]):.6g}"
    if not idx:
        return values
    return f"values differ at {len(bad)} of {w.numel()} positions; first at index {idx}: {values}"


def _matches(got: torch.Tensor, wrong: Any, rtol: float, atol: float) -> bool:
    if not isinstance(wrong, torch.Tensor) or tuple(got.shape) != tuple(wrong.shape):
        return False
    g, w = got.detach().cpu().double(), wrong.detach().cpu().double()
    scale = float(w[torch.isfinite(w)].abs().max()) if bool(torch.isfinite(w).any()) else 1.0
    return bool(torch.isclose(g, w, rtol=rtol, atol=atol * max(scale, 1.0), equal_nan=True).all())


@dataclass(frozen=True)
class Spec:
    """One check split in three, so that a grader can run the student's function apart from it.

    ``trials`` are the inputs (argument tuples, named by ``names``), ``reference`` gives the right
    answer of one trial, and :func:`diagnose` compares the student's outputs with it (``convert``
    turns an output into a tensor; ``rtol``/``atol`` are the tolerances; ``mistakes`` are the
    plausible wrong answers it names). ``check_*`` runs all three in the student's kernel;
    ``coursekit.grade`` draws the trials with a fresh seed, sends them to the kernel, gets the
    outputs back as data and diagnoses them in its own process.
    """

    name: str
    names: tuple[str, ...]
    trials: list[tuple]
    reference: Callable
    mistakes: tuple[Mistake, ...]
    convert: Callable = _as_tensor
    rtol: float = 1e-4
    atol: float = 1e-5


@dataclass(frozen=True)
class Raised:
    """What a student's function raised on one trial, as a grader gets it back from the kernel."""

    ename: str
    evalue: str = ""

    def __str__(self) -> str:
        return f"{self.ename}: {self.evalue}" if self.evalue else self.ename


def _hints(spec: Spec, outputs: Sequence[Any]) -> list[str]:
    """The mistakes that match the student's (converted) answers on every trial (``None``: no answer)."""
    hints = []
    for text, wrong in spec.mistakes:
        ok = True
        for out, other in zip(outputs, spec.trials):
            try:
                ok = out is not None and _matches(out, wrong(*other), spec.rtol, spec.atol)
            except Exception:
                ok = False
            if not ok:
                break
        if ok:
            hints.append(text)
    return hints


def _failure(spec: Spec, t: int, problem: str, outputs: Sequence[Any]) -> str:
    return (f"{spec.name}: trial {t + 1} of {len(spec.trials)} ({_inputs(spec.names, spec.trials[t])}): {problem}."
            + "".join(f"\n  Looks like you {h}." for h in _hints(spec, outputs)))


def diagnose(spec: Spec, outputs: Sequence[Any]) -> str:
    """``''`` when ``outputs`` (the student's answer to each of ``spec.trials``, or :class:`Raised`)
    all match the reference; else what differs, with the mistakes it looks like (as a check says)."""
    if len(outputs) != len(spec.trials):
        raise ValueError(f"{spec.name}: expected one output per trial ({len(spec.trials)}), got {len(outputs)}")

    def converted(out: Any) -> Any:
        try:
            return None if isinstance(out, Raised) else spec.convert(spec.name, out)
        except AssertionError:
            return None

    for t, (args, out) in enumerate(zip(spec.trials, outputs)):
        if isinstance(out, Raised):
            if out.ename == "NotImplementedError":
                return f"{spec.name}: your function is not written yet (it raised NotImplementedError)"
            return (f"{spec.name}: trial {t + 1} of {len(spec.trials)}: your function raised {out} "
                    f"when called with {_inputs(spec.names, args)}")
        try:
            got = spec.convert(spec.name, out)
        except AssertionError as exc:
            return str(exc)
        problem = _difference(got, spec.reference(*args), spec.rtol, spec.atol)
        if problem:
            return _failure(spec, t, problem, [converted(o) for o in outputs])
    return ""


def _run(spec: Spec, fn: Callable) -> None:
    """Compare ``fn`` with the reference on every trial; on the first difference, diagnose and raise."""
    name = spec.name
    if not callable(fn):
        raise ValueError(f"{name} expects your function, got {type(fn).__name__}")
    for t, args in enumerate(spec.trials):
        want = spec.reference(*args)
        got = spec.convert(name, _call(name, fn, spec.names, args))
        problem = _difference(got, want, spec.rtol, spec.atol)
        if not problem:
            continue
        outputs = []  # the student's answers on every trial, to test each mistake everywhere
        for other in spec.trials:
            try:
                outputs.append(spec.convert(name, fn(*[_fresh(a) for a in other])))
            except Exception:
                outputs.append(None)
        raise AssertionError(_failure(spec, t, problem, outputs))
    print(f"{name}: OK -- your function matches the reference on {len(spec.trials)} random trials")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randint(g: torch.Generator, lo: int, hi: int) -> int:
    """An int in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, (1,), generator=g))


def _features(g: torch.Generator, b: int, k: int, h: int, w: int) -> torch.Tensor:
    """Non-negative (post-ReLU) feature maps with a few exact zeros, like a real last conv layer."""
    return torch.relu(torch.randn(b, k, h, w, generator=g) + 0.3)


def _sizes(g: torch.Generator, t: int) -> tuple[int, int, int, int]:
    b, k = _randint(g, 2, 5), _randint(g, 3, 12)
    h = _randint(g, 3, 7)
    w = h + _randint(g, 1, 3)  # h != w catches swapped axes
    return (b, k, w, h) if t % 2 else (b, k, h, w)


# ---------------------------------------------------------------------------------- lesson 01
def _ref_gap(features: torch.Tensor) -> torch.Tensor:
    return features.mean(dim=(2, 3))


def _ref_gmp(features: torch.Tensor) -> torch.Tensor:
    return features.amax(dim=(2, 3))


def _pool_trials(seed: int) -> list[tuple]:
    g = _gen(seed)
    return [(_features(g, *_sizes(g, t)),) for t in range(4)]


def _gap_spec(seed: int = 101) -> Spec:
    return Spec("check_gap", ("features",), _pool_trials(seed), _ref_gap, (
        ("used max instead of mean (that is GMP)", _ref_gmp),
        ("summed instead of averaging: divide by h*w (or use mean)", lambda f: f.sum(dim=(2, 3))),
        ("kept the pooled dimensions (keepdim=True): return shape (B, K)", lambda f: f.mean(dim=(2, 3), keepdim=True)),
        ("averaged over the channels too: pool only the spatial dimensions (2, 3)", lambda f: f.mean(dim=(1, 2, 3))),
        ("averaged over only one spatial dimension: pool over both (dim=(2, 3))", lambda f: f.mean(dim=3)),
    ))


def check_gap(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check ``fn(features (B, K, h, w)) -> (B, K)``, global average pooling.

    Lesson 01. The paper's Sec. 2: ``F_k = Σ_{x,y} f_k(x, y)`` (here the mean, which differs by 1/hw).
    """
    _run(_gap_spec(), fn)


def _gmp_spec(seed: int = 102) -> Spec:
    return Spec("check_gmp", ("features",), _pool_trials(seed), _ref_gmp, (
        ("used mean instead of max (that is GAP)", _ref_gap),
        ("kept the pooled dimensions (keepdim=True): return shape (B, K)", lambda f: f.amax(dim=(2, 3), keepdim=True)),
        ("took the max over only one spatial dimension: pool over both (dim=(2, 3))", lambda f: f.amax(dim=3)),
        ("took the max over the channels too: pool only the spatial dimensions (2, 3)", lambda f: f.amax(dim=(1, 2, 3))),
    ))


def check_gmp(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check ``fn(features (B, K, h, w)) -> (B, K)``, global max pooling (Oquab et al.; paper Sec. 2). Lesson 01."""
    _run(_gmp_spec(), fn)


# ---------------------------------------------------------------------------------- lesson 02
def _ref_cam(features: torch.Tensor, weight: Any, classes: torch.Tensor) -> torch.Tensor:
    w = torch.as_tensor(weight, dtype=features.dtype)
    return torch.einsum("bkhw,bk->bhw", features, w[classes])


def _ref_minmax(maps: torch.Tensor) -> torch.Tensor:
    """Lesson 02's min-max exercise: its reference is the library's one rule, ``camlib.cam.normalize``."""
    from .cam import normalize
    return normalize(maps)


def _cam_mistakes(weight_name: str) -> tuple[Mistake, ...]:
    def per_batch_position(f, w, c):
        return _ref_cam(f, w, torch.arange(f.shape[0]))

    return (
        ("applied a ReLU: the CAM keeps negative values (M_c = Σ_k w_k^c f_k, Sec. 2)",
         lambda f, w, c: torch.relu(_ref_cam(f, w, c))),
        (f"used {weight_name}[b] (the image's position in the batch) instead of {weight_name}[classes[b]]",
         per_batch_position),
        ("used class 0 for every image instead of classes[b]", lambda f, w, c: _ref_cam(f, w, torch.zeros_like(c))),
        ("computed the maps of every class: select the map of classes[b] for image b",
         lambda f, w, c: torch.einsum("bkhw,ck->bchw", f, torch.as_tensor(w, dtype=f.dtype))),
        ("averaged over the units instead of summing (divided by K): the map is a weighted sum",
         lambda f, w, c: _ref_cam(f, w, c) / f.shape[1]),
        ("normalized the maps: return the raw weighted sum", lambda f, w, c: _ref_minmax(_ref_cam(f, w, c))),
        ("swapped h and w: return (B, h, w) in the features' order", lambda f, w, c: _ref_cam(f, w, c).transpose(1, 2)),
    )


def _cam_trials(seed: int, numpy_weights: bool = False) -> list[tuple]:
    g = _gen(seed)
    trials = []
    for t in range(4):
        b, k, h, w = _sizes(g, t)
        n_classes = _randint(g, b + 1, b + 6)  # more classes than images, not equal to K
        if n_classes == k:
            n_classes += 1
        weight = torch.randn(n_classes, k, generator=g)
        classes = torch.randint(0, n_classes, (b,), generator=g)
        classes[0] = n_classes - 1  # never all the batch positions
        weight = weight.double().numpy() if numpy_weights else weight
        trials.append((_features(g, b, k, h, w), weight, classes))
    return trials


def check_cam(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``fn(features (B, K, h, w), weight (C, K), classes (B,)) -> maps (B, h, w)``.

    Lesson 02. The paper's class activation map, Sec. 2: ``M_c(x, y) = Σ_k w_k^c f_k(x, y)`` for
    ``c = classes[b]``.
    """
    _run(_cam_spec(), fn)


def _cam_spec(seed: int = 201) -> Spec:
    return Spec("check_cam", ("features", "weight", "classes"), _cam_trials(seed), _ref_cam, _cam_mistakes("weight"))


def check_minmax(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check ``fn(maps (B, h, w)) -> maps`` each scaled to [0, 1]; a constant map gives zeros.

    Lesson 02. The min-max convention of Choe et al. (2020) used before thresholds are swept.
    """
    _run(_minmax_spec(), fn)


def _minmax_spec(seed: int = 202) -> Spec:
    g = _gen(seed)
    trials = []
    for t in range(4):
        b, _, h, w = _sizes(g, t)
        maps = torch.randn(b, h, w, generator=g) * 3 - 1  # negative values, as raw CAMs have
        if t % 2 == 0:
            maps[-1] = float(torch.randn(1, generator=g))  # a constant map
        trials.append((maps,))

    def forgot_min(m):
        return m / m.amax(dim=(1, 2), keepdim=True)

    def batch_wide(m):
        return (m - m.min()) / (m.max() - m.min())

    return Spec("check_minmax", ("maps",), trials, _ref_minmax, (
        ("forgot to subtract the minimum: the maps are not min-max normalized (divide (m - min) by (max - min))",
         forgot_min),
        ("clipped negatives (ReLU) and divided by the max: min-max subtracts each map's minimum",
         lambda m: torch.relu(m) / m.amax(dim=(1, 2), keepdim=True)),
        ("used the min and max of the whole batch, not of each map", batch_wide),
        ("divided by zero on a constant map: a constant map must give zeros, not NaN",
         lambda m: (m - m.amin(dim=(1, 2), keepdim=True))
         / (m.amax(dim=(1, 2), keepdim=True) - m.amin(dim=(1, 2), keepdim=True))),
    ))


# ---------------------------------------------------------------------------------- lesson 03
def _component_box(mask: np.ndarray, connectivity: int = 8) -> torch.Tensor:
    from scipy import ndimage

    structure = np.ones((3, 3), bool) if connectivity == 8 else ndimage.generate_binary_structure(2, 1)
    labels, n = ndimage.label(mask, structure=structure)
    if n == 0:
        return torch.zeros(4)
    largest = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    ys, xs = np.nonzero(labels == largest)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


def _ref_largest_component_box(cam: torch.Tensor, fraction: float) -> torch.Tensor:
    return _component_box((cam >= fraction * cam.max()).numpy())


def _map_trials(seed: int) -> list[tuple]:
    """One hand-made map that separates the classic mistakes, then random blobby maps."""
    from scipy import ndimage

    g = _gen(seed)
    crafted = -0.5 * torch.rand(12, 16, generator=g)  # negative background
    crafted[2:5, 1:4] = 0.5 + 0.5 * torch.rand(3, 3, generator=g)  # two squares touching at a corner:
    crafted[5:8, 4:7] = 0.5 + 0.5 * torch.rand(3, 3, generator=g)  # one 18-px component with 8-connectivity
    crafted[7:11, 10:14] = 0.5 + 0.5 * torch.rand(4, 4, generator=g)  # a 16-px block
    crafted[3, 2] = 1.0
    trials = [(crafted, 0.3)]
    while len(trials) < 5:
        h = _randint(g, 10, 20)
        w = h + _randint(g, 2, 6)
        cam = torch.randn(h, w, generator=g) * 0.05 - 0.2
        yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
        for _ in range(_randint(g, 2, 4)):
            cy, cx = float(torch.rand(1, generator=g)) * h, float(torch.rand(1, generator=g)) * w
            sy, sx = 1 + float(torch.rand(1, generator=g)) * h / 6, 1 + float(torch.rand(1, generator=g)) * w / 6
            cam += (0.4 + float(torch.rand(1, generator=g))) * torch.exp(-((yy - cy) / sy) ** 2 - ((xx - cx) / sx) ** 2)
        fraction = round(0.15 + 0.4 * float(torch.rand(1, generator=g)), 2)
        threshold = fraction * float(cam.max())
        labels, n = ndimage.label((cam >= threshold).numpy(), structure=np.ones((3, 3)))
        sizes = sorted(np.bincount(labels.ravel())[1:], reverse=True)
        near = bool(((cam - threshold).abs() < 1e-3 * float(cam.max())).any())
        if n >= 2 and sizes[0] > sizes[1] and not near:  # a unique winner, no pixel on the fence
            trials.append((cam, fraction))
    return trials


def check_largest_component_box(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """Check ``fn(map (H, W), threshold_fraction) -> (4,)`` float pixel-edge box.

    Lesson 03. The paper's Sec. 3 rule: keep ``map >= fraction * max(map)``, take the largest
    8-connected component, return its bounding box ``(x1, y1, x2, y2)`` with ``x2 = last column + 1``.
    """
    _run(_largest_component_box_spec(), fn)


def _largest_component_box_spec(seed: int = 301) -> Spec:
    def all_pixels(cam, frac):
        ys, xs = np.nonzero((cam >= frac * cam.max()).numpy())
        return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)

    def minmax_threshold(cam, frac):
        lo, hi = cam.min(), cam.max()
        return _component_box((cam >= lo + frac * (hi - lo)).numpy())

    return Spec("check_largest_component_box", ("map", "threshold_fraction"), _map_trials(seed),
                _ref_largest_component_box, (
             ("used an inclusive x2 -- boxes here are pixel-edge, x2 = last column + 1 (and y2 = last row + 1)",
              lambda c, f: _ref_largest_component_box(c, f) - torch.tensor([0, 0, 1, 1])),
             ("used 4-connectivity: pixels touching diagonally belong to the same component (8-connectivity)",
              lambda c, f: _component_box((c >= f * c.max()).numpy(), connectivity=4)),
             ("boxed every pixel above the threshold, not only the largest connected component", all_pixels),
             ("returned (y1, x1, y2, x2): boxes here are (x1, y1, x2, y2), x along the columns",
              lambda c, f: _ref_largest_component_box(c, f)[[1, 0, 3, 2]]),
             ("thresholded the min-max normalized map: the paper's rule is map >= fraction * max of the raw map",
              minmax_threshold),
                ))


def _ref_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def _random_boxes(g: torch.Generator, n: int, size: int = 24) -> torch.Tensor:
    xy = torch.randint(0, size - 2, (n, 2), generator=g)
    wh = torch.randint(1, size // 2, (n, 2), generator=g)
    return torch.cat([xy, xy + wh], dim=1).float()


def check_box_iou(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``fn(a (N, 4), b (M, 4)) -> (N, M)`` intersection over union of pixel-edge boxes. Lesson 03."""
    _run(_box_iou_spec(), fn)


def _box_iou_spec(seed: int = 302) -> Spec:
    g = _gen(seed)
    trials = []
    for t in range(4):
        n, m = _randint(g, 3, 6), _randint(g, 2, 6)
        m = m + 1 if m == n else m
        a, b = _random_boxes(g, n), _random_boxes(g, m)
        b[0] = a[0]  # identical boxes: IoU 1
        b[1] = torch.tensor([40.0, 40, 44, 43])  # beyond every box of a: IoU 0
        a[1] = torch.tensor([41.0, 0, 43, 5])  # shares columns with b[1] but no row: IoU 0
        trials.append((a, b))

    def inclusive(a, b):
        return _ref_box_iou(a + torch.tensor([0, 0, 1, 1]), b + torch.tensor([0, 0, 1, 1]))

    def no_clamp(a, b):
        lt = torch.maximum(a[:, None, :2], b[None, :, :2])
        rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
        inter = (rb - lt).prod(dim=2)
        area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
        return inter / (area(a)[:, None] + area(b)[None, :] - inter)

    def union_is_sum(a, b):
        iou = _ref_box_iou(a, b)
        return iou / (1 + iou)  # inter / (A + B) written with IoU = inter / (A + B - inter)

    return Spec("check_box_iou", ("a", "b"), trials, _ref_box_iou, (
        ("computed areas with +1 (inclusive pixel convention); boxes here are pixel-edge: area = (x2 - x1) * (y2 - y1)",
         inclusive),
        ("did not clamp the intersection's width and height at 0: disjoint boxes must give IoU 0", no_clamp),
        ("forgot to subtract the intersection from the union (union = area_a + area_b - intersection)", union_is_sum),
        ("compared a[i] with b[i] only: return every pair, shape (N, M)",
         lambda a, b: _ref_box_iou(a, b).diagonal()),
    ))


def _ref_topk_loc_error(logits, boxes_per_class, gt_boxes, labels, k, *, strict=False, first_gt=False,
                        class_free=False, need_class=True):
    top = logits.topk(k, dim=1).indices
    hits = 0
    for b in range(logits.shape[0]):
        gts = gt_boxes[b][:1] if first_gt else gt_boxes[b]
        classes = top[b].tolist() if class_free else [int(labels[b])]
        ok = False
        for c in classes:
            if need_class and not class_free and c not in top[b].tolist():
                continue
            iou = _ref_box_iou(boxes_per_class[b, c][None], gts).max()
            ok = ok or bool(iou > 0.5 if strict else iou >= 0.5)
        hits += ok
    return torch.tensor(1 - hits / logits.shape[0], dtype=torch.float64)


def check_topk_loc_error(fn: Callable[..., float]) -> None:
    """Check ``fn(logits (B, C), boxes_per_class (B, C, 4), gt_boxes [(N_i, 4)], labels (B,), k) -> float``.

    Lesson 03. The paper's Sec. 3 metric: an image is localized when its true class is among the
    top-k predictions and *that class's* box has IoU >= 0.5 with one of the image's ground-truth
    boxes; the error is the fraction of images not localized.
    """
    _run(_topk_loc_error_spec(), fn)


def _topk_loc_error_spec(seed: int = 303) -> Spec:
    g = _gen(seed)
    trials = []
    for k in (1, 5, 3, 5):
        b, c = _randint(g, 24, 40), _randint(g, 7, 10)
        logits = torch.randn(b, c, generator=g)
        labels = torch.randint(0, c, (b,), generator=g)
        boost = torch.rand(b, generator=g) < 0.5
        logits[boost, labels[boost]] += 3.0  # about half the images have their class on top
        boxes = _random_boxes(g, b * c).reshape(b, c, 4)
        gts = []
        for i in range(b):
            gt = _random_boxes(g, _randint(g, 1, 3))
            j = _randint(g, 0, len(gt) - 1)
            kind = _randint(g, 0, 3)
            if kind == 0:  # the true class's box is exactly a ground-truth box
                boxes[i, labels[i]] = gt[j]
            elif kind == 1:  # twice as wide: IoU exactly 0.5
                boxes[i, labels[i]] = gt[j] + torch.tensor([0, 0, 1, 0]) * (gt[j, 2] - gt[j, 0])
            wrong = (int(labels[i]) + 1) % c  # another class often has a good box too
            if _randint(g, 0, 1):
                boxes[i, wrong] = gt[_randint(g, 0, len(gt) - 1)]
            gts.append(gt)
        trials.append((logits, boxes, gts, labels, k))

    def top1_only(lo, bx, gt, lb, k):
        return _ref_topk_loc_error(lo, bx, gt, lb, 1)

    def classification_error(lo, bx, gt, lb, k):
        return 1 - (lo.topk(k, 1).indices == lb[:, None]).any(1).double().mean()

    return Spec("check_topk_loc_error", ("logits", "boxes_per_class", "gt_boxes", "labels", "k"), trials,
                _ref_topk_loc_error, (
             ("counted IoU of exactly 0.5 as wrong: a box is correct when IoU >= 0.5",
              lambda *a: _ref_topk_loc_error(*a, strict=True)),
             ("compared only with the first ground-truth box: any of the image's boxes counts",
              lambda *a: _ref_topk_loc_error(*a, first_gt=True)),
             ("counted a good box of any top-k class: only the true class's box counts",
              lambda *a: _ref_topk_loc_error(*a, class_free=True)),
             ("counted images whose true class is not among the top-k predictions",
              lambda *a: _ref_topk_loc_error(*a, need_class=False)),
             ("returned the accuracy (1 - error)", lambda *a: 1 - _ref_topk_loc_error(*a)),
             ("ignored k and used only the top-1 class", top1_only),
             ("returned the classification error: the boxes must be checked too", classification_error),
                ), convert=_as_number, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------- lesson 04
def _ref_crop_box(box: torch.Tensor, margin: float, height: int, width: int, *, rounding: str = "out",
                  share: float = 1.0, clip: str = "edge", relative_to_image: bool = False) -> torch.Tensor:
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = (width, height) if relative_to_image else (x2 - x1, y2 - y1)
    x1, y1, x2, y2 = (x1 - share * margin * bw, y1 - share * margin * bh, x2 + share * margin * bw,
                      y2 + share * margin * bh)
    if rounding == "out":
        x1, y1, x2, y2 = math.floor(x1), math.floor(y1), math.ceil(x2), math.ceil(y2)
    elif rounding == "nearest":
        x1, y1, x2, y2 = (round(v) for v in (x1, y1, x2, y2))
    elif rounding == "floor":
        x1, y1, x2, y2 = (math.floor(v) for v in (x1, y1, x2, y2))
    if clip != "none":
        last = 1 if clip == "last-pixel" else 0
        x1, y1 = max(0, x1), max(0, y1)
        x2, y2 = min(width - last, x2), min(height - last, y2)
    return torch.tensor([x1, y1, x2, y2], dtype=torch.float64)


def check_crop_box(fn: Callable[[torch.Tensor, float, int, int], torch.Tensor]) -> None:
    """Check ``fn(box (4,), margin, height, width) -> (4,)`` the crop around a CAM box.

    Lesson 04 (the paper's Sec. 4.1 two-stage fine-grained pipeline): the box grows by
    ``margin * box width`` left and right and ``margin * box height`` above and below, is rounded
    outwards to whole pixels (floor x1, y1; ceil x2, y2) and clipped to the image ``[0, width] x [0, height]``.
    """
    _run(_crop_box_spec(), fn)


def _crop_box_spec(seed: int = 401) -> Spec:
    g = _gen(seed)
    trials = []
    while len(trials) < 6:
        height, width = _randint(g, 40, 90), _randint(g, 40, 90)
        x1 = float(torch.rand(1, generator=g)) * width * 0.6
        y1 = float(torch.rand(1, generator=g)) * height * 0.6
        x2 = x1 + 4 + float(torch.rand(1, generator=g)) * (width - x1 - 4)
        y2 = y1 + 4 + float(torch.rand(1, generator=g)) * (height - y1 - 4)
        margin = (0.1, 0.15, 0.2, 0.25)[len(trials) % 4]
        bw, bh = x2 - x1, y2 - y1
        edges = [x1 - margin * bw, y1 - margin * bh, x2 + margin * bw, y2 + margin * bh,
                 x1 - margin * bw / 2, x2 + margin * bw / 2, x1 - margin * width, y2 + margin * height]
        if any(abs(e - round(e)) < 1e-3 for e in edges + [x1, x2, y1, y2]):
            continue  # no coordinate on a pixel edge: floor, ceil and round all tell apart
        inside = 0 < edges[0] and edges[2] < width and 0 < edges[1] and edges[3] < height
        both_sides = (edges[0] < 0 or edges[1] < 0) and (edges[2] > width or edges[3] > height)
        if (inside, both_sides) != ((True, False) if len(trials) % 2 == 0 else (False, True)):
            continue  # half the trials stay inside the image, half are clipped at both ends
        trials.append((torch.tensor([x1, y1, x2, y2], dtype=torch.float32), margin, height, width))

    return Spec("check_crop_box", ("box", "margin", "height", "width"), trials, _ref_crop_box, (
        ("clipped x2 to width - 1 (y2 to height - 1): pixel-edge x2 may equal the width",
         lambda *a: _ref_crop_box(*a, clip="last-pixel")),
        ("did not clip the box to the image: keep 0 <= x1 < x2 <= width, 0 <= y1 < y2 <= height",
         lambda *a: _ref_crop_box(*a, clip="none")),
        ("added margin * box size in total: the margin goes on *each* side",
         lambda *a: _ref_crop_box(*a, share=0.5)),
        ("rounded to the nearest pixel: round outwards (floor x1, y1; ceil x2, y2) to keep the whole box",
         lambda *a: _ref_crop_box(*a, rounding="nearest")),
        ("rounded x2 and y2 down (int() or floor): round them up with ceil",
         lambda *a: _ref_crop_box(*a, rounding="floor")),
        ("did not round to whole pixels: floor x1, y1 and ceil x2, y2",
         lambda *a: _ref_crop_box(*a, rounding="none")),
        ("took the margin as a fraction of the image's size: it is a fraction of the box's width and height",
         lambda *a: _ref_crop_box(*a, relative_to_image=True)),
    ), rtol=0, atol=1e-4)


# ---------------------------------------------------------------------------------- lesson 05
def check_probe_cam(fn: Callable[[torch.Tensor, Any, torch.Tensor], torch.Tensor]) -> None:
    """Check ``fn(features (B, K, h, w), svm_coef (C, K), classes (B,)) -> maps (B, h, w)``.

    Lesson 05 (the paper's Sec. 4): a linear probe (SVM) trained on GAP features gives the
    ``w_k^c`` of a new CAM. ``svm_coef`` comes as scikit-learn gives it: a float64 NumPy array.
    """
    _run(_probe_cam_spec(), fn)


def _probe_cam_spec(seed: int = 501) -> Spec:
    return Spec("check_probe_cam", ("features", "svm_coef", "classes"), _cam_trials(seed, numpy_weights=True),
                _ref_cam, _cam_mistakes("svm_coef"))


# ---------------------------------------------------------------------------------- lesson 06
def _ref_rank_units(weight: torch.Tensor, c: int, k: int) -> torch.Tensor:
    return torch.argsort(weight[c], descending=True)[:k]


def check_rank_units(fn: Callable[[torch.Tensor, int, int], Any]) -> None:
    """Check ``fn(weight (C, K), c, k) -> (k,)`` the indices of class c's top-k units, by weight, descending.

    Lesson 06 (the paper's Sec. 5): ``w_k^c`` ranks the units by their importance for class c.
    """
    _run(_rank_units_spec(), fn)


def _rank_units_spec(seed: int = 601) -> Spec:
    g = _gen(seed)
    trials = []
    for _ in range(4):
        n_classes, units = _randint(g, 5, 9), _randint(g, 12, 30)
        weight = torch.randn(n_classes, units, generator=g)
        trials.append((weight, _randint(g, 1, n_classes - 1), _randint(g, 3, 5)))

    return Spec("check_rank_units", ("weight", "c", "k"), trials, _ref_rank_units, (
        ("sorted in ascending order: the most important unit (largest weight) comes first",
         lambda w, c, k: torch.argsort(w[c])[:k]),
        ("took the k smallest weights: rank by weight, descending", lambda w, c, k: torch.argsort(w[c])[:k].flip(0)),
        ("ranked by |weight|: a large negative weight argues *against* the class; rank by the signed weight",
         lambda w, c, k: torch.argsort(w[c].abs(), descending=True)[:k]),
        ("ranked column weight[:, c] (one unit's weights over the classes): class c's weights are row weight[c]",
         lambda w, c, k: torch.argsort(w[:, c], descending=True)[:k]),
        ("returned the weights themselves: return the unit indices (argsort or topk(...).indices)",
         lambda w, c, k: torch.sort(w[c], descending=True).values[:k]),
        ("found the right units but not in order: sort them by weight, descending",
         lambda w, c, k: torch.sort(torch.argsort(w[c], descending=True)[:k]).values),
    ), convert=_as_indices, rtol=0, atol=0)


SPECS: dict[str, Callable[..., Spec]] = {
    "check_gap": _gap_spec, "check_gmp": _gmp_spec, "check_cam": _cam_spec, "check_minmax": _minmax_spec,
    "check_largest_component_box": _largest_component_box_spec, "check_box_iou": _box_iou_spec,
    "check_topk_loc_error": _topk_loc_error_spec, "check_crop_box": _crop_box_spec,
    "check_probe_cam": _probe_cam_spec, "check_rank_units": _rank_units_spec,
}


def spec(check: str, seed: int | None = None) -> Spec:
    """The :class:`Spec` of the check named ``check`` (one of :data:`CHECKS`); ``seed`` draws other
    trials than the notebook's own check uses (``None``: the check's own)."""
    if check not in SPECS:
        raise ValueError(f"expected the name of a check, one of {list(CHECKS)}; got {check!r}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ValueError(f"expected a non-negative int seed, got {seed!r}")
    return SPECS[check]() if seed is None else SPECS[check](seed)
