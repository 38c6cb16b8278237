"""Lesson 06's exercises: class-specific units (the paper's Sec. 5)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ._engine import Mistake, Spec, gen, randint, random_features, random_sizes, run, _as_indices, _as_number  # noqa: F401


def _ref_rank_units(weight: torch.Tensor, c: int, k: int) -> torch.Tensor:
    return torch.argsort(weight[c], descending=True)[:k]


def check_rank_units(fn: Callable[[torch.Tensor, int, int], Any]) -> None:
    """Check ``fn(weight (C, K), c, k) -> (k,)`` the indices of class c's top-k units, by weight, descending.

    Lesson 06 (the paper's Sec. 5): ``w_k^c`` ranks the units by their importance for class c.
    """
    run(_rank_units_spec(), fn)


def _rank_units_spec(seed: int = 601) -> Spec:
    g = gen(seed)
    trials = []
    for _ in range(4):
        n_classes, units = randint(g, 5, 9), randint(g, 12, 30)
        weight = torch.randn(n_classes, units, generator=g)
        trials.append((weight, randint(g, 1, n_classes - 1), randint(g, 3, 5)))

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


SPECS = {"check_rank_units": _rank_units_spec}
