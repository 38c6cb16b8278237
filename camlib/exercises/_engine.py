"""The engine of the exercise checks: :class:`Spec`, :func:`diagnose` and the check runner.

A lesson's module (``lesson01`` ...) writes each check as a :class:`Spec` (trials, reference,
plausible mistakes) and a ``check_*`` that runs it with :func:`run`; the package collects them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

Mistake = tuple[str, Callable[..., Any]]


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
    plausible wrong answers it names; ``also_right`` are other answers accepted as correct when they
    match on every trial, each with what to tell the student). ``check_*`` runs all three in the student's kernel;
    ``coursekit.grade`` draws the trials with a fresh seed, sends them to the kernel, gets the
    outputs back as data and diagnoses them in its own process.
    """

    name: str
    names: tuple[str, ...]
    trials: list[tuple]
    reference: Callable
    mistakes: tuple[Mistake, ...]
    convert: Callable = _as_tensor
    also_right: tuple[Mistake, ...] = ()
    rtol: float = 1e-4
    atol: float = 1e-5


@dataclass(frozen=True)
class Raised:
    """What a student's function raised on one trial, as a grader gets it back from the kernel."""

    ename: str
    evalue: str = ""

    def __str__(self) -> str:
        return f"{self.ename}: {self.evalue}" if self.evalue else self.ename


def _hints(spec: Spec, outputs: Sequence[Any], answers: Sequence[Mistake] | None = None) -> list[str]:
    """The ``answers`` (default: the mistakes) that match the student's (converted) answers on every
    trial (``None``: no answer)."""
    hints = []
    for text, wrong in spec.mistakes if answers is None else answers:
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
            answers = [converted(o) for o in outputs]
            if _hints(spec, answers, spec.also_right):
                return ""
            return _failure(spec, t, problem, answers)
    return ""


def run(spec: Spec, fn: Callable) -> None:
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
        accepted = _hints(spec, outputs, spec.also_right)
        if accepted:
            print(f"{name}: OK on {len(spec.trials)} random trials -- your function {accepted[0]}")
            return
        raise AssertionError(_failure(spec, t, problem, outputs))
    print(f"{name}: OK -- your function matches the reference on {len(spec.trials)} random trials")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randint(g: torch.Generator, lo: int, hi: int) -> int:
    """An int in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, (1,), generator=g))


def random_features(g: torch.Generator, b: int, k: int, h: int, w: int) -> torch.Tensor:
    """Non-negative (post-ReLU) feature maps with a few exact zeros, like a real last conv layer."""
    return torch.relu(torch.randn(b, k, h, w, generator=g) + 0.3)


def random_sizes(g: torch.Generator, t: int) -> tuple[int, int, int, int]:
    b, k = randint(g, 2, 5), randint(g, 3, 12)
    h = randint(g, 3, 7)
    w = h + randint(g, 1, 3)  # h != w catches swapped axes
    return (b, k, w, h) if t % 2 else (b, k, h, w)


