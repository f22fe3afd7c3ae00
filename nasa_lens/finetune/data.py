"""Training data for NASA: the validation hold-out and label-balanced batches that are a pure function of
``(seed, step)`` (so a resumed run sees exactly the batches an uninterrupted one would)."""
from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch

from nasa_lens.vocab import InputError


def holdout_split(examples: Sequence[Any], fraction: float, seed: int = 0) -> tuple[list[Any], list[Any]]:
    """``(train, validation)``: ``fraction`` of each label held out for validation, chosen by ``seed``."""
    if not 0 <= fraction < 1:
        raise InputError(f"validation fraction must be in [0, 1), got {fraction}")
    rng = random.Random(seed)
    train, val = [], []
    for label in ("yes", "no"):
        rows = [ex for ex in examples if getattr(ex, "label", None) == label]
        rng.shuffle(rows)
        k = int(round(fraction * len(rows)))
        val.extend(rows[:k])
        train.extend(rows[k:])
    rng.shuffle(train)
    rng.shuffle(val)
    return train, val


class BalancedBatches:
    """The rows of step ``s``: a pure function of ``(seed, s)`` (no sampler state, so resuming is exact).

    Each label's rows are walked through seeded permutations, epoch after epoch; a batch takes
    ``ceil(b/2)`` rows of one label and ``floor(b/2)`` of the other (the label with the extra row alternates)."""

    def __init__(self, labels: Sequence[str], batch_size: int, seed: int) -> None:
        self.by_label = {lab: [i for i, x in enumerate(labels) if x == lab] for lab in ("yes", "no")}
        for lab, rows in self.by_label.items():
            if not rows:
                raise InputError(f"the training data has no {lab!r} examples: NASA needs both labels")
        self.batch_size = batch_size
        self.seed = seed
        self._perm_cache: dict[tuple[str, int], list[int]] = {}

    def _perm(self, label: str, epoch: int) -> list[int]:
        key = (label, epoch)
        if key not in self._perm_cache:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 2 + (label == "no"))
            rows = self.by_label[label]
            self._perm_cache[key] = [rows[i] for i in torch.randperm(len(rows), generator=g).tolist()]
            if len(self._perm_cache) > 8:
                self._perm_cache.pop(next(iter(self._perm_cache)))
        return self._perm_cache[key]

    def _take(self, label: str, start: int, count: int) -> list[int]:
        n = len(self.by_label[label])
        return [self._perm(label, (start + j) // n)[(start + j) % n] for j in range(count)]

    def rows(self, step: int) -> list[int]:
        b = self.batch_size
        lo, hi = b // 2, b - b // 2
        # rows of each label used before this step (the odd row alternates between the labels)
        n_yes = step * lo + (step + 1) // 2 * (hi - lo)
        n_no = step * lo + step // 2 * (hi - lo)
        k_yes = hi if step % 2 == 0 else lo
        rows = self._take("yes", n_yes, k_yes) + self._take("no", n_no, b - k_yes)
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(self.seed * 7_919 + step)).tolist()
        return [rows[i] for i in order]
