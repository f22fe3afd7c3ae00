"""Activation patching on counterfactual pairs (``nasa-lens patch``): candidate order swapped, or gold answer
flipped; per head, on the head output ``z`` or its attention pattern, normalised like TransformerLens:
``(patched - corrupted) / (clean - corrupted)`` of the mean logit difference."""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import einops
import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from nasa_lens.heads import Head
from nasa_lens.interventions import bridge_of, check_heads
from nasa_lens.io import atomic_path, read_json, write_json
from nasa_lens.parallel import over_examples
from nasa_lens.prompts import PromptFormat, build_batch
from nasa_lens.vocab import PATCHING_FILE, pattern_hook_name, z_hook_name

from nasa_lens.causal.config import CausalError, PatchingConfig
from nasa_lens.causal.runner import BatchRunner, example_ids, percentile_interval

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

logger = logging.getLogger(__name__)


@dataclass
class PairSet:
    """Counterfactual pairs: ``clean[i]`` (rendered with ``clean_fmt``) against ``corrupted[i]`` (with
    ``corrupted_fmt``); every pair has the same token length."""

    clean: list[Any]
    corrupted: list[Any]
    clean_fmt: PromptFormat
    corrupted_fmt: PromptFormat
    kind: str

    def __post_init__(self) -> None:
        if len(self.clean) != len(self.corrupted):
            raise CausalError(f"{len(self.clean)} clean but {len(self.corrupted)} corrupted examples")
        if not self.clean:
            raise CausalError(f"no {self.kind} pairs to patch")

    def __len__(self) -> int:
        return len(self.clean)

    @property
    def ids(self) -> list[str]:
        return [f"{c}|{x}" for c, x in zip(example_ids(self.clean), example_ids(self.corrupted))]


def swap_pairs(examples: Sequence[Any], fmt: PromptFormat | None = None) -> PairSet:
    """Each question in ``fmt`` ("Yes or No", clean) against itself with the candidates swapped ("No or Yes",
    corrupted)."""
    fmt = fmt or PromptFormat()
    ex = list(examples)
    return PairSet(ex, list(ex), fmt, fmt.swapped(), "swap")


def _template_key(example: Any) -> str:
    """Examples of one generator share the id up to the trailing number (``arithmetic-d2-0007``)."""
    import re

    return re.sub(r"[-_]?\d+$", "", str(getattr(example, "id", "")))


def label_pairs(model: LoadedModel, examples: Sequence[Any], fmt: PromptFormat | None = None) -> PairSet:
    """Pairs of questions with opposite gold labels from the same generator/template (id prefix) and the same
    token length: clean = the "yes" question, corrupted = the "no" one (each used once, in dataset order).
    When no id prefix is shared by two examples (e.g. a real dataset), only the token length is matched."""
    fmt = fmt or PromptFormat()
    ex = list(examples)
    keys = [_template_key(e) for e in ex]
    shared = {k for k in keys if keys.count(k) > 1}
    buckets: dict[tuple[str, int], dict[str, list[Any]]] = {}
    for e, key in zip(ex, keys):
        label = getattr(e, "label", None)
        if label not in ("yes", "no"):
            continue
        length = build_batch(model, [e], fmt).seq_len
        buckets.setdefault((key if key in shared else "", length), {"yes": [], "no": []})[label].append(e)
    clean, corrupted = [], []
    for b in buckets.values():
        for y, n_ in zip(b["yes"], b["no"]):
            clean.append(y)
            corrupted.append(n_)
    if not clean:
        raise CausalError(
            "no label pairs: no two examples of the same generator have the same token length and opposite labels "
            f"(in {len(ex)} examples); use more examples or --pairs swap"
        )
    return PairSet(clean, corrupted, fmt, fmt, "label")


@dataclass
class PatchingResult:
    """Per-pair logit differences: ``patched[pair, layer, head]`` (clean activation patched into the
    corrupted run), ``clean[pair]``, ``corrupted[pair]``."""

    patched: Float[np.ndarray, "pair layer head"]
    clean: np.ndarray
    corrupted: np.ndarray
    what: str
    kind: str
    ids: list[str] = field(default_factory=list)
    n_boot: int = 1000
    n_perm: int = 1000
    seed: int = 0
    model: str = ""
    dataset: str = ""

    @property
    def n(self) -> int:
        return int(self.patched.shape[0])

    @property
    def gap(self) -> float:
        """``mean(clean) - mean(corrupted)``: the denominator of the normalised effect."""
        return float(self.clean.mean() - self.corrupted.mean())

    def normalized(self) -> Float[np.ndarray, "layer head"]:
        """``(mean patched - mean corrupted) / (mean clean - mean corrupted)``: 0 = no change, 1 = the clean
        logit difference restored (TransformerLens' normalisation, on batch means)."""
        return (self.patched.mean(0) - self.corrupted.mean()) / self.gap

    def effect(self) -> Float[np.ndarray, "pair layer head"]:
        """``patched - corrupted`` per pair (unnormalised)."""
        return self.patched - self.corrupted[:, None, None]

    def _boot(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        idx = rng.integers(0, self.n, (self.n_boot, self.n))
        num = self.patched[idx].mean(1) - self.corrupted[idx].mean(1)[:, None, None]
        den = (self.clean[idx].mean(1) - self.corrupted[idx].mean(1))[:, None, None]
        with np.errstate(all="ignore"):
            norm = num / den
        return norm, den[:, 0, 0]

    def p_values(self) -> Float[np.ndarray, "layer head"]:
        """Sign-flip permutation p-value that the mean per-pair effect is zero (TransformerLens'
        ``sign_flip_permutation_pvalue``)."""
        from transformer_lens.utilities.statistics import derive_generator, sign_flip_permutation_pvalue

        eff = torch.as_tensor(einops.rearrange(self.effect(), "pair layer head -> layer head pair"), dtype=torch.float64)
        if self.n < 2:
            return np.full(eff.shape[:2], np.nan)
        return sign_flip_permutation_pvalue(eff, dim=-1, n_permutations=self.n_perm, generator=derive_generator(self.seed, "patch")).numpy()

    def to_dataframe(self) -> pd.DataFrame:
        """One row per head: ``normalized`` with its bootstrap ``ci_low`` / ``ci_high`` (pairs resampled),
        ``effect`` (mean patched - corrupted logit diff) with ``effect_stderr``, ``p_value``, and the run's
        ``clean_mean`` / ``corrupted_mean``."""
        norm = self.normalized()
        boot, _ = self._boot()
        eff = self.effect()
        se = eff.std(0, ddof=1) / math.sqrt(self.n) if self.n > 1 else np.full(norm.shape, np.nan)
        pv = self.p_values()
        L, H = norm.shape
        rows = []
        for layer in range(L):
            for h in range(H):
                lo, hi = percentile_interval(boot[:, layer, h])
                rows.append({"layer": layer, "head": h, "head_name": f"{layer}.{h}", "normalized": norm[layer, h],
                             "ci_low": lo, "ci_high": hi, "effect": eff[:, layer, h].mean(), "effect_stderr": se[layer, h],
                             "p_value": pv[layer, h], "clean_mean": self.clean.mean(), "corrupted_mean": self.corrupted.mean(),
                             "what": self.what, "pairs": self.kind, "n": self.n})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        _, den = self._boot()
        lo, hi = percentile_interval(den)
        top = self.to_dataframe().sort_values("normalized", ascending=False).head(5)
        heads = ", ".join(f"{r.head_name} {r.normalized:+.2f}" for r in top.itertuples())
        return (f"{self.kind} pairs (n={self.n}), patching {self.what}: clean logit diff {self.clean.mean():+.3f}, corrupted "
                f"{self.corrupted.mean():+.3f}, gap {self.gap:+.3f} [95% CI {lo:+.3f}, {hi:+.3f}]; top heads: {heads}")

    def save(self, out_dir: str | Path) -> Path:
        """Write ``patching.csv`` (:meth:`to_dataframe`), ``patching.npz`` and ``patching.json``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / PATCHING_FILE) as tmp:
            self.to_dataframe().to_csv(tmp, index=False)
        with atomic_path(out / "patching.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, patched=self.patched, clean=self.clean, corrupted=self.corrupted)
        write_json(out / "patching.json", {"what": self.what, "kind": self.kind, "ids": self.ids, "n_boot": self.n_boot,
                                           "n_perm": self.n_perm, "seed": self.seed, "model": self.model, "dataset": self.dataset,
                                           "gap": self.gap})
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> PatchingResult:
        out = Path(out_dir)
        if not (out / "patching.npz").is_file():
            raise FileNotFoundError(f"{out / 'patching.npz'} not found: not a patching result (PatchingResult.save)")
        meta = read_json(out / "patching.json")
        with np.load(out / "patching.npz") as z:
            arrays = {k: z[k] for k in z.files}
        return cls(arrays["patched"], arrays["clean"], arrays["corrupted"], meta["what"], meta["kind"], meta["ids"],
                   meta["n_boot"], meta["n_perm"], meta["seed"], meta.get("model", ""), meta.get("dataset", ""))


PatchSetter = Callable[[Tensor, Sequence[int], Tensor], Tensor]


def generic_head_patch(
    model: LoadedModel,
    pairs: PairSet,
    hook_name: Callable[[int], str],
    patch_setter: PatchSetter,
    *,
    what: str,
    heads: Sequence[Head] | None = None,
    batch_size: int = 16,
    progress: bool = True,
    n_boot: int = 1000,
    n_perm: int = 1000,
    seed: int = 0,
) -> PatchingResult:
    """Patch each head's activation ``hook_name(layer)`` from the clean run into the corrupted run, one head
    at a time, and record the logit difference ``logit(Yes) - logit(No)`` at the last position.

    The same shape as :func:`transformer_lens.patching.generic_activation_patch` (and its patch setters
    ``layer_head_vector_patch_setter`` / ``layer_head_pattern_patch_setter`` are used as they are), but not
    that function itself: it calls ``model.run_with_hooks(corrupted_tokens, fwd_hooks=...)`` with no
    ``attention_mask``, so on a left-padded batch of prompts of different lengths the padding is attended to
    and the logits are wrong (a TransformerBridge does not infer the mask from pad tokens; SmolLM2's pad
    token is ``<|im_end|>``, which also occurs inside its chat template). It also reruns the whole model for
    every head. On an *unpadded* batch it works with a TransformerBridge and agrees with this function
    (checked in the tests). Here each pair batch runs with its mask, pairs are batched by length, and the
    patched forward starts at the head's layer from the cached corrupted residual.

    Heads not in ``heads`` (default: all) are NaN in the result.
    """
    L, H = model.n_layers, model.n_heads
    todo = list(heads) if heads is not None else [(layer, h) for layer in range(L) for h in range(H)]
    check_heads(model, todo)
    rows = list(zip(pairs.clean, pairs.corrupted, pairs.ids))
    patched, clean_d, corr_d = _patch_rows(
        model, rows, hook_name, patch_setter, todo=todo, formats=(pairs.clean_fmt, pairs.corrupted_fmt),
        desc=f"patch {what} ({pairs.kind})", batch_size=batch_size, progress=progress,
    )
    return PatchingResult(patched, clean_d, corr_d, what, pairs.kind, pairs.ids, n_boot, n_perm, seed, getattr(model, "name", ""))


def _pair_plan(arguments: dict[str, Any]) -> list[list[int]]:
    """Pairs batched by the clean question's length (the batches :func:`_patch_rows` runs)."""
    rows, size = arguments["rows"], arguments["batch_size"]
    order = sorted(range(len(rows)), key=lambda i: len(str(getattr(rows[i][0], "question", rows[i][0]))))
    return [order[start : start + size] for start in range(0, len(order), size)]


@over_examples(arg="rows", groups=_pair_plan)
def _patch_rows(
    model: LoadedModel,
    rows: Sequence[tuple[Any, Any, str]],
    hook_name: Callable[[int], str],
    patch_setter: PatchSetter,
    *,
    todo: list[Head],
    formats: tuple[PromptFormat, PromptFormat],
    desc: str,
    batch_size: int,
    progress: bool,
) -> tuple[Float[np.ndarray, "pair layer head"], Float[np.ndarray, " pair"], Float[np.ndarray, " pair"]]:
    """Per (clean, corrupted, id) pair: the patched logit difference of every head in ``todo``, the clean and
    the corrupted logit differences. Data-parallel in a process group (:mod:`nasa_lens.parallel`)."""
    L, H = model.n_layers, model.n_heads
    n = len(rows)
    patched = np.full((n, L, H), np.nan)
    clean_d, corr_d = np.full(n, np.nan), np.full(n, np.nan)
    layers = sorted({layer for layer, _ in todo})
    names = {hook_name(layer) for layer in layers}
    bridge = bridge_of(model)
    clean_fmt, corrupted_fmt = formats
    bar = tqdm(total=n * len(todo), desc=desc, disable=not progress)
    for idx in _pair_plan({"rows": rows, "batch_size": batch_size}):
        cb = build_batch(model, [rows[i][0] for i in idx], clean_fmt)
        xb = build_batch(model, [rows[i][1] for i in idx], corrupted_fmt)
        if cb.input_ids.shape != xb.input_ids.shape or not torch.equal(cb.attention_mask, xb.attention_mask):
            lengths = cb.attention_mask.sum(-1) != xb.attention_mask.sum(-1)
            bad = [rows[idx[r]][2] for r in torch.nonzero(lengths).flatten().tolist()] or [rows[idx[0]][2]]
            raise CausalError(f"counterfactual pairs must have the same token length; these do not: {bad}")
        with torch.no_grad():
            logits, cache = bridge.run_with_cache(cb.input_ids, names_filter=lambda nm: nm in names, **cb.forward_kwargs())
        c_pair = logits[:, -1][:, [cb.answer_yes_id, cb.answer_no_id]].float()
        clean_act = {nm: cache[nm] for nm in names}
        del logits, cache
        runner = BatchRunner(model, xb)
        clean_d[idx] = (c_pair[:, 0] - c_pair[:, 1]).cpu().double().numpy()
        corr_d[idx] = (runner.clean[:, 0] - runner.clean[:, 1]).cpu().double().numpy()
        for layer, h in todo:
            src = clean_act[hook_name(layer)]

            def hook(act: Tensor, hook: Any = None, index: list[int] = [layer, h], src: Tensor = src) -> Tensor:  # noqa: B006
                return patch_setter(act.clone(), index, src)

            pair = runner.pair([(hook_name(layer), hook)], layer)
            patched[idx, layer, h] = (pair[:, 0] - pair[:, 1]).cpu().double().numpy()
            bar.update(len(idx))
    bar.close()
    return patched, clean_d, corr_d


def patch_head_outputs(model: LoadedModel, pairs: PairSet, **kwargs: Any) -> PatchingResult:
    """Per-head output patching on ``hook_z`` (all positions), TransformerLens' ``layer_head_vector_patch_setter``."""
    from transformer_lens.patching import layer_head_vector_patch_setter

    return generic_head_patch(model, pairs, z_hook_name, layer_head_vector_patch_setter, what="z", **kwargs)


def patch_head_patterns(model: LoadedModel, pairs: PairSet, **kwargs: Any) -> PatchingResult:
    """Per-head attention-pattern patching on ``hook_pattern`` (all query rows), TransformerLens'
    ``layer_head_pattern_patch_setter``."""
    from transformer_lens.patching import layer_head_pattern_patch_setter

    return generic_head_patch(model, pairs, pattern_hook_name, layer_head_pattern_patch_setter, what="pattern", **kwargs)


def patch_heads(model: LoadedModel, dataset: Sequence[Any], config: PatchingConfig | None = None, *, progress: bool = True) -> PatchingResult:
    """Build the pairs ``config.pairs`` from ``dataset`` and patch every head's ``config.what``."""
    cfg = config or PatchingConfig()
    fmt = PromptFormat.named(cfg.format)
    examples = list(dataset)
    pairs = swap_pairs(examples, fmt) if cfg.pairs == "swap" else label_pairs(model, examples, fmt)
    if cfg.max_pairs is not None and len(pairs) > cfg.max_pairs:
        pairs = PairSet(pairs.clean[: cfg.max_pairs], pairs.corrupted[: cfg.max_pairs], pairs.clean_fmt, pairs.corrupted_fmt, pairs.kind)
    fn = patch_head_outputs if cfg.what == "z" else patch_head_patterns
    result = fn(model, pairs, batch_size=cfg.batch_size, progress=progress, n_boot=cfg.n_boot, n_perm=cfg.n_perm, seed=cfg.seed)
    result.dataset = str(getattr(dataset, "name", ""))
    return result
