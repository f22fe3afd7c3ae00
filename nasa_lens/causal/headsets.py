"""Many head sets ablated on the same examples, each effect exact, the clean prompt run once per batch.

:func:`head_set_effects` is the entry point for studies that ablate hundreds of head sets (random head-set
nulls, knockout sweeps): per batch one clean forward through :class:`~nasa_lens.causal.suffix.SuffixRunner`,
then each head set recomputes only the suffix columns (``positions="after"`` or ``"last"``) from its first
layer, or every column from its first layer (``positions="all"``). It returns, per head set and example, the
change of ``logit(Yes) - logit(No)`` at the answer position. :func:`run_ablations` is the same loop for any
prepared interventions (a ``hooks(batch)`` and ``first_layer``), e.g. attention knockouts.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from jaxtyping import Float
from tqdm.auto import tqdm

from nasa_lens.heads import Head, format_head
from nasa_lens.interventions import HeadAblation, ZReference, check_heads, collect_z_reference
from nasa_lens.io import atomic_path, read_json, write_json
from nasa_lens.parallel import over_examples
from nasa_lens.prompts import PromptBatch, PromptFormat, by_batch_plan, iter_batches
from nasa_lens.vocab import ABLATION_MODES, ABLATION_POSITIONS

from nasa_lens.causal.config import CausalError
from nasa_lens.causal.runner import example_ids
from nasa_lens.causal.suffix import SuffixRunner

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = ["HeadSetEffects", "head_set_effects", "run_ablations", "runner_for"]

logger = logging.getLogger(__name__)


def runner_for(model: Any, batch: PromptBatch, positions: str, *, patterns: bool = False) -> SuffixRunner:
    """The runner that recomputes what an intervention at ``positions`` can change: the suffix (``after``),
    the last column (``last``) or every column (``all``), from the intervention's first layer."""
    if positions not in ABLATION_POSITIONS:
        raise CausalError(f"unknown positions {positions!r}; choose one of {list(ABLATION_POSITIONS)}")
    start = {"all": 0, "last": batch.seq_len - 1, "after": None}[positions]
    return SuffixRunner(model, batch, start=start, patterns=patterns)


@dataclass
class HeadSetEffects:
    """``effects[set, example]``: ablated minus clean ``logit(Yes) - logit(No)`` at the answer position
    (positive = the set pushes towards "No": removing it raises the difference).

    Attributes:
        effects: ``[set, example]``.
        head_sets: the ablated heads of each set.
        clean_logit_diff: ``[example]`` of the clean run.
        ids: example ids.
        mode, positions: the ablation.
        seconds: wall time of the runs (the reference included).
    """

    effects: Float[np.ndarray, "set example"]
    head_sets: list[list[Head]]
    clean_logit_diff: Float[np.ndarray, " example"]
    ids: list[str]
    mode: str
    positions: str
    seconds: float = float("nan")
    model: str = ""
    dataset: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> Float[np.ndarray, " set"]:
        return self.effects.mean(1)

    def to_dataframe(self) -> pd.DataFrame:
        """Long format: one row per (set, example): ``set, heads, id, effect, clean_logit_diff``."""
        n_sets, n = self.effects.shape
        names = [",".join(format_head(h) for h in hs) for hs in self.head_sets]
        return pd.DataFrame({
            "set": np.repeat(np.arange(n_sets), n),
            "heads": np.repeat(names, n),
            "id": np.tile(self.ids, n_sets),
            "effect": self.effects.ravel(),
            "clean_logit_diff": np.tile(self.clean_logit_diff, n_sets),
        })

    def save(self, out_dir: str | Path) -> Path:
        """Write ``head_sets.npz`` (effects, clean) and ``head_sets.json`` (sets, ids, settings)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "head_sets.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, effects=self.effects, clean_logit_diff=self.clean_logit_diff)
        write_json(out / "head_sets.json", {
            "head_sets": [[list(h) for h in hs] for hs in self.head_sets], "ids": self.ids, "mode": self.mode,
            "positions": self.positions, "seconds": self.seconds, "model": self.model, "dataset": self.dataset, "meta": self.meta,
        })
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> HeadSetEffects:
        out = Path(out_dir)
        if not (out / "head_sets.npz").is_file():
            raise FileNotFoundError(f"{out / 'head_sets.npz'} not found: not a HeadSetEffects folder (HeadSetEffects.save)")
        meta = read_json(out / "head_sets.json")
        with np.load(out / "head_sets.npz") as z:
            effects, clean = z["effects"], z["clean_logit_diff"]
        return cls(effects, [[tuple(h) for h in hs] for hs in meta["head_sets"]], clean, meta["ids"], meta["mode"],
                   meta["positions"], float(meta["seconds"]), meta.get("model", ""), meta.get("dataset", ""), meta.get("meta", {}))


def head_set_effects(
    model: LoadedModel,
    examples: Sequence[Any],
    head_sets: Sequence[Sequence[Head]],
    *,
    mode: str = "zero",
    positions: str = "after",
    reference: ZReference | None = None,
    fmt: PromptFormat | str | None = None,
    batch_size: int = 16,
    seed: int = 0,
    pool_size: int = 32,
    progress: bool = True,
) -> HeadSetEffects:
    """Ablate each head set (``zero``, ``mean`` or ``resample``) at ``positions`` and return every example's
    effect on ``logit(Yes) - logit(No)``: exact, each set run on its own, the clean prompt run once per batch.

    ``positions="after"`` (default) ablates the suffix (after the later candidate through the answer) and
    recomputes only those columns; ``"last"`` the answer position; ``"all"`` every position (every column is
    recomputed, from the set's first layer). ``reference`` for mean/resample is collected over ``examples``
    when not given. Data-parallel under torchrun (ranks take whole batches). Cost per set and batch: the
    suffix columns of the layers from the set's first layer on; memory: per batch, the prefix keys/values,
    the clean ``z`` before the suffix and the window residual of every layer.
    """
    dataset_name = str(getattr(examples, "name", ""))
    examples = list(examples)
    if not examples:
        raise CausalError("cannot ablate head sets on an empty dataset")
    if mode not in ABLATION_MODES:
        raise CausalError(f"unknown ablation mode {mode!r}; choose one of {list(ABLATION_MODES)}")
    sets = [list(hs) for hs in head_sets]
    if not sets:
        raise CausalError("give at least one head set")
    for hs in sets:
        check_heads(model, hs)
    fmt_ = PromptFormat.of(fmt)
    t0 = time.perf_counter()
    if mode != "zero" and reference is None:
        reference = collect_z_reference(model, examples, fmt_, batch_size=batch_size, pool_size=pool_size, progress=progress)
    ablations = [HeadAblation(tuple(hs), mode, reference, seed=seed, positions=positions) for hs in sets]
    clean, effects = run_ablations(model, examples, fmt_, ablations, positions, batch_size=batch_size, progress=progress)
    return HeadSetEffects(effects.T.copy(), sets, clean, example_ids(examples), mode, positions, time.perf_counter() - t0,
                          getattr(model, "name", ""), dataset_name)


@over_examples(groups=by_batch_plan)
def run_ablations(
    model: LoadedModel,
    examples: Sequence[Any],
    fmt: PromptFormat | None,
    interventions: Sequence[Any],
    positions: str,
    *,
    batch_size: int = 16,
    partial: str | Path | None = None,
    progress: bool = True,
) -> tuple[Float[np.ndarray, " example"], Float[np.ndarray, "example set"]]:
    """Per example: the clean ``logit(Yes) - logit(No)`` and its change under each intervention (anything with
    ``hooks(batch)`` and ``first_layer``, confined to ``positions``). Data-parallel (whole batches per rank).

    ``partial``: a folder where each batch's finished interventions are saved (one file per batch, rewritten
    atomically after each layer's interventions); a rerun with the same folder skips them (resume after a
    kill). The caller keys the folder by everything the numbers depend on (model, data, settings)."""
    examples = list(examples)
    n, k = len(examples), len(interventions)
    clean = np.full(n, np.nan)
    out = np.full((n, k), np.nan)
    patterns = _uses_patterns(interventions)
    order = sorted(range(k), key=lambda j: interventions[j].first_layer)
    bar = tqdm(total=n * k, desc=f"{k} interventions ({positions})", disable=not progress, leave=False)
    for idx, batch in iter_batches(model, examples, fmt, batch_size):
        store = _BatchPartial(Path(partial), batch.ids, k) if partial is not None else None
        done_clean, done = store.load() if store is not None else (None, {})
        todo = [j for j in order if j not in done]
        if todo:
            runner = runner_for(model, batch, positions, patterns=patterns)
            clean[idx] = runner.clean_diff.cpu().numpy()
        else:
            clean[idx] = done_clean
        for j, eff in done.items():
            out[idx, j] = eff
        bar.update(len(idx) * (k - len(todo)))
        for pos, j in enumerate(todo):
            iv = interventions[j]
            out[idx, j] = (runner.diff(iv.hooks(batch), iv.first_layer) - runner.clean_diff).cpu().numpy()
            done[j] = out[idx, j]
            bar.update(len(idx))
            last_of_layer = pos + 1 == len(todo) or interventions[todo[pos + 1]].first_layer != iv.first_layer
            if store is not None and last_of_layer:
                store.save(clean[idx], done)
    bar.close()
    return clean, out


def _uses_patterns(interventions: Sequence[Any]) -> bool:
    """Whether any intervention hooks attention patterns (the runner must then cache the clean rows)."""
    from nasa_lens.interventions import Compose

    def one(iv: Any) -> bool:
        if isinstance(iv, Compose):
            return any(one(p) for p in iv.parts)
        return not isinstance(iv, HeadAblation)

    return any(one(iv) for iv in interventions)


class _BatchPartial:
    """The finished interventions of one batch in ``folder/batch-<hash of its ids>.npz``."""

    def __init__(self, folder: Path, ids: Sequence[str], k: int):
        self.k = k
        self.path = folder / f"batch-{hashlib.sha256(chr(10).join(ids).encode()).hexdigest()[:16]}.npz"

    def load(self) -> tuple[np.ndarray | None, dict[int, np.ndarray]]:
        if not self.path.is_file():
            return None, {}
        try:
            with np.load(self.path) as z:
                clean, which, eff = z["clean"], z["which"], z["effects"]
        except Exception as exc:  # noqa: BLE001 - a damaged partial is recomputed, never trusted
            logger.warning("ignoring unreadable partial results %s: %s", self.path, exc)
            return None, {}
        return clean, {int(j): eff[:, i] for i, j in enumerate(which) if 0 <= int(j) < self.k}

    def save(self, clean: np.ndarray, done: dict[int, np.ndarray]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        which = np.array(sorted(done), dtype=np.int64)
        with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
            np.savez(f, clean=clean, which=which, effects=np.stack([done[j] for j in which], axis=1))
