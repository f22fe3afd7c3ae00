"""Direct logit attribution (DLA) per head, split by the source token the head reads.

The answer is decided by ``logit(Yes) - logit(No)`` at the answer (last prompt) position. With the final
norm's scale frozen from the clean run (TransformerLens' convention), that difference is a *linear* function
of the residual stream there, and the residual is a sum of components: the embedding, every attention head's
output, every MLP's output, and bias terms. For a pre-norm model with an RMS final norm

    logit_diff = sum_c  (c . u) / s        u = gamma_final * (W_U[yes] - W_U[no]),  s = final-norm scale

(LayerNorm: ``u`` is centred and the norm's bias adds a constant). One query head ``(l, h)`` writes
``z_h W_O_h`` with ``z_h = sum_k A[ans, k] v[k, g(h)]`` (``g(h)`` is the key/value head the query head reads
under grouped-query attention), so its contribution splits *exactly* by source position:

    DLA(l, h) = via_yes + via_no + via_other
    via_yes   = A[ans, t_yes] * (v[t_yes, g(h)] W_O_h . u) / s        (the instruction's "Yes" candidate)
    via_no    = A[ans, t_no]  * (v[t_no,  g(h)] W_O_h . u) / s        (its "No" candidate)
    via_other = DLA(l, h) - via_yes - via_no                           (every other source position)

Negative = pushes the answer towards "No". The non-head components (``embed``, ``mlp{l}``, ``attn_bias{l}``,
``unembed_bias``, ``ln_final_bias``) complete the sum; :attr:`DLAResult.residual` is ``logit_diff`` minus
the sum of everything, a check that nothing was missed (below 1e-4 on tiny-random and SmolLM2, tested).

Everything is computed *inside* the forward (:func:`dla_hooks`), like the streaming NAS scan: per layer the
hooks keep the value vectors at the two candidate positions, the two candidate entries of the answer row of
the pattern and the answer row of ``z``, and reduce them at once to ``[example, head, 3]``; no cache of
full activations outlives its layer.

:func:`nasa_lens.copying.ov_copying` is the weights-only companion: could a head carry the candidate it
attends to into the answer?
"""
from __future__ import annotations

import logging
import math
import re
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

from nasa_lens.heads import Head, format_head, ranked_heads
from nasa_lens.interventions import bridge_of
from nasa_lens.io import atomic_path, read_json, write_json
from nasa_lens.parallel import over_examples
from nasa_lens.prompts import PromptBatch, PromptFormat, by_batch_plan, iter_batches
from nasa_lens.vocab import (
    DLA_COMPONENTS_FILE,
    DLA_META_FILE,
    DLA_SCORES_FILE,
    DLA_TABLE_FILE,
    NasaLensError,
)

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = [
    "SOURCES",
    "DLA_TABLE_FILE",
    "COMPONENTS_FILE",
    "DLAError",
    "DLAResult",
    "dla_direction",
    "dla_hooks",
    "dla_for_batch",
    "scan_dla",
]

logger = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("via_yes", "via_no", "via_other")
COMPONENTS_FILE = DLA_COMPONENTS_FILE
SCORES_FILE = DLA_SCORES_FILE
META_FILE = DLA_META_FILE

DLAHook = tuple[str, Callable[..., None]]


class DLAError(NasaLensError, ValueError):
    """The model's architecture is outside what the linear decomposition covers (or the input is bad)."""


# ============================================================================================ weights


def original_module(module: Any) -> Any:
    return getattr(module, "original_component", module)


def check_architecture(model: Any) -> Any:
    cfg = bridge_of(model).cfg
    norm = str(getattr(cfg, "normalization_type", "RMS"))
    if norm not in ("RMS", "RMSPre", "LN", "LNPre"):
        raise DLAError(f"DLA needs an RMS or Layer norm before the unembedding; {cfg.model_name!r} has {norm!r}")
    if getattr(cfg, "use_normalization_before_and_after", False):
        raise DLAError(
            f"{cfg.model_name!r} normalises each attention/MLP output again before the residual (post-norms): "
            "the per-head split would need those scales frozen too, which this DLA does not do"
        )
    if float(getattr(cfg, "output_logits_soft_cap", -1.0) or -1.0) > 0:
        raise DLAError(f"{cfg.model_name!r} soft-caps its logits: the logit difference is not linear in the residual")
    if getattr(cfg, "parallel_attn_mlp", False):
        raise DLAError(f"{cfg.model_name!r} runs attention and MLP in parallel; not supported by this DLA")
    return cfg


def norm_weight(norm_module: Any, cfg: Any) -> Tensor | None:
    w = getattr(original_module(norm_module), "weight", None)
    if w is None:
        return None
    w = w.detach().double()
    return w + 1.0 if getattr(cfg, "rmsnorm_uses_offset", False) else w


def is_layernorm(cfg: Any) -> bool:
    return str(getattr(cfg, "normalization_type", "RMS")).startswith("LN")


def _answer_ids(batch_or_ids: PromptBatch | tuple[int, int]) -> tuple[int, int]:
    if isinstance(batch_or_ids, PromptBatch):
        return batch_or_ids.answer_yes_id, batch_or_ids.answer_no_id
    return int(batch_or_ids[0]), int(batch_or_ids[1])


def dla_direction(model: Any, answer_ids: PromptBatch | tuple[int, int]) -> tuple[Float[Tensor, " d_model"], float]:
    """``(u, constant)``: the residual direction whose dot product, divided by the final-norm scale, is a
    component's share of ``logit(yes) - logit(no)``, and the constant the final norm's and unembedding's
    biases add (float64). ``u = gamma_final * (W_U[yes] - W_U[no])``, centred for a LayerNorm."""
    cfg = check_architecture(model)
    bridge = bridge_of(model)
    yes, no = _answer_ids(answer_ids)
    unembed = original_module(bridge.unembed)
    w_u = unembed.weight.detach()
    if w_u.shape[0] != cfg.d_vocab_out and w_u.shape[-1] == cfg.d_vocab_out:  # stored [d_model, vocab]
        w_u = w_u.T
    d = (w_u[yes] - w_u[no]).double()
    gamma = norm_weight(bridge.ln_final, cfg)
    u = d * gamma if gamma is not None else d.clone()
    if is_layernorm(cfg):
        u = u - u.mean()
    const = 0.0
    beta = getattr(original_module(bridge.ln_final), "bias", None)
    if beta is not None:
        const += float(beta.detach().double() @ d)
    b_u = getattr(unembed, "bias", None)
    if b_u is not None:
        const += float(b_u.detach().double()[yes] - b_u.detach().double()[no])
    return u, const


def o_weight(model: Any, layer: int) -> tuple[Float[Tensor, "head d_head d_model"], Tensor | None]:
    """``W_O`` split per query head, ``[head, d_head, d_model]`` (float64), and the o_proj bias."""
    o = original_module(bridge_of(model).blocks[layer].attn.o)
    n_heads, d_head = int(model.n_heads), int(model.d_head)
    w = o.weight.detach().double()  # nn.Linear: [d_model, head * d_head]
    w_o = einops.rearrange(w, "d_model (head d_head) -> head d_head d_model", head=n_heads, d_head=d_head)
    bias = getattr(o, "bias", None)
    return w_o, None if bias is None else bias.detach().double()


# ============================================================================================ the hooks


@dataclass
class _Store:
    heads: dict[int, Tensor] = field(default_factory=dict)  # layer -> [example, head, 3] (unscaled)
    components: dict[str, Tensor] = field(default_factory=dict)  # name -> [example] (unscaled)
    constants: dict[str, float] = field(default_factory=dict)  # name -> value (already a logit: not scaled)
    scale: Tensor | None = None  # [example]
    v: dict[int, Tensor] = field(default_factory=dict)
    a: dict[int, Tensor] = field(default_factory=dict)

    def finish(self, layers: Sequence[int]) -> tuple[Tensor, dict[str, Tensor]]:
        if self.scale is None:
            raise RuntimeError("the final-norm scale hook (ln_final.hook_scale) did not fire")
        missing = [layer for layer in layers if layer not in self.heads]
        if missing:
            raise RuntimeError(f"the DLA hooks did not fire for layers {missing}")
        s = self.scale.double()
        heads = torch.stack([self.heads[layer].to(s.device) for layer in layers], dim=1) / s[:, None, None, None]
        comps = {name: value.to(s.device) / s for name, value in self.components.items()}
        for name, value in self.constants.items():
            comps[name] = torch.full_like(s, value)
        return heads, comps


def dla_hooks(model: LoadedModel, batch: PromptBatch) -> tuple[list[DLAHook], _Store]:
    """Forward hooks that compute DLA inside the forward (see the module docstring).

    Returns ``(fwd_hooks, store)``; after the forward, ``store.finish(range(n_layers))`` gives
    ``(heads [example, layer, head, 3], components {name: [example]})`` in logit units. The hooks read
    ``blocks.{l}.attn.hook_v`` (values at the two candidates), ``hook_pattern`` (the answer row's two
    candidate entries), ``hook_z`` (the answer row), ``blocks.{l}.hook_mlp_out`` and
    ``blocks.0.hook_resid_pre`` (answer row) and ``ln_final.hook_scale``; none modifies its activation.
    """
    cfg = check_architecture(model)
    bridge = bridge_of(model)
    u, const = dla_direction(model, batch)
    n_layers, n_heads = int(model.n_layers), int(model.n_heads)
    group = n_heads // int(model.n_kv_heads)
    rows = torch.arange(len(batch))
    cand = torch.stack([batch.pos_yes, batch.pos_no], dim=-1)  # [example, 2]
    ans = batch.pos_answer
    store = _Store()
    if const:
        store.constants["final_bias"] = const
    ou: dict[int, Tensor] = {}
    o_bias: dict[int, Tensor | None] = {}
    for layer in range(n_layers):
        w_o, o_bias[layer] = o_weight(model, layer)
        ou[layer] = torch.einsum("hdm,m->hd", w_o, u.to(w_o.device))  # [head, d_head]

    def at_answer(x: Tensor) -> Tensor:
        return x[rows.to(x.device), ans.to(x.device)]

    def v_hook(v: Tensor, hook: Any) -> None:  # [example, pos, kv_head, d_head]
        layer = _layer(hook.name)
        c = cand.to(v.device)
        store.v[layer] = v.detach()[rows.to(v.device)[:, None], c].double()  # [example, 2, kv_head, d_head]

    def pattern_hook(pattern: Tensor, hook: Any) -> None:  # [example, head, q, k]
        layer = _layer(hook.name)
        r, a, c = rows.to(pattern.device), ans.to(pattern.device), cand.to(pattern.device)
        answer_row = pattern.detach()[r, :, a, :]  # [example, head, k]
        store.a[layer] = answer_row.gather(-1, einops.repeat(c, "e two -> e head two", head=answer_row.shape[1])).double()

    def z_hook(z: Tensor, hook: Any) -> None:  # [example, pos, head, d_head]
        layer = _layer(hook.name)
        w = ou[layer].to(z.device)
        z_ans = at_answer(z.detach()).double()  # [example, head, d_head]
        total = torch.einsum("ehd,hd->eh", z_ans, w)
        v = einops.repeat(store.v.pop(layer), "e two kv d -> e two (kv g) d", g=group)
        per_src = torch.einsum("ethd,hd->eth", v, w)  # [e, two, head]
        via = store.a.pop(layer) * einops.rearrange(per_src, "e two head -> e head two")  # [e, head, 2]
        store.heads[layer] = torch.cat([via, (total - via.sum(-1))[..., None]], dim=-1)
        if o_bias[layer] is not None:
            store.components[f"attn_bias{layer}"] = torch.full((z.shape[0],), float(o_bias[layer] @ u.to(o_bias[layer].device)),
                                                                dtype=torch.float64, device=z.device)

    def embed_hook(x: Tensor, hook: Any) -> None:
        store.components["embed"] = at_answer(x.detach()).double() @ u.to(x.device)

    def mlp_hook(x: Tensor, hook: Any) -> None:
        store.components[f"mlp{_layer(hook.name)}"] = at_answer(x.detach()).double() @ u.to(x.device)

    def scale_hook(scale: Tensor, hook: Any) -> None:  # [example, pos, 1]
        store.scale = at_answer(scale.detach()).double().reshape(-1)

    hooks: list[DLAHook] = [("blocks.0.hook_resid_pre", embed_hook)]
    for layer in range(n_layers):
        hooks += [
            (f"blocks.{layer}.attn.hook_v", v_hook),
            (f"blocks.{layer}.attn.hook_pattern", pattern_hook),
            (f"blocks.{layer}.attn.hook_z", z_hook),
        ]
        if not getattr(cfg, "attn_only", False):
            hooks.append((f"blocks.{layer}.hook_mlp_out", mlp_hook))
    hooks.append(("ln_final.hook_scale", scale_hook))
    missing = [name for name, _ in hooks if name not in bridge.hook_dict]
    if missing:
        raise DLAError(f"{getattr(model, 'name', 'the model')!r} lacks the hook points DLA reads: {missing[:4]}")
    return hooks, store


_LAYER_RE = re.compile(r"^blocks\.(\d+)\.")


def _layer(name: str) -> int:
    m = _LAYER_RE.match(name or "")
    if m is None:
        raise RuntimeError(f"DLA hook attached to {name!r}, not a blocks.L point")
    return int(m.group(1))


def dla_for_batch(
    model: LoadedModel, batch: PromptBatch, *, hooks: Sequence[tuple[Any, Callable[..., Any]]] = ()
) -> tuple[Float[Tensor, "example layer head 3"], dict[str, Tensor], Float[Tensor, " example"]]:
    """One no-grad forward: ``(heads, components, logit_diff)``, float64 on the model's device.

    ``heads[..., 0/1/2]`` = via_yes / via_no / via_other; ``components`` maps ``embed``, ``mlp{l}``... to
    ``[example]``; ``logit_diff`` is the model's own ``logit(yes) - logit(no)`` at the answer position.
    ``hooks``: extra forward hooks for the same run (an intervention), installed before the DLA hooks.
    """
    bridge = bridge_of(model)
    dla, store = dla_hooks(model, batch)
    last_only = bool((batch.pos_answer == batch.seq_len - 1).all()) and "ln_final.hook_out" in bridge.hook_dict
    extra = [("ln_final.hook_out", lambda x, hook=None: x[:, -1:])] if last_only else []
    with torch.no_grad():
        logits = bridge.run_with_hooks(batch.input_ids, fwd_hooks=[*hooks, *dla, *extra], **batch.forward_kwargs())
    rows = torch.arange(len(batch), device=logits.device)
    last = logits[:, -1] if last_only else logits[rows, batch.pos_answer.to(logits.device)]
    diff = (last[:, batch.answer_yes_id] - last[:, batch.answer_no_id]).double()
    heads, comps = store.finish(range(int(model.n_layers)))
    return heads, comps, diff


# ============================================================================================ the result


def _mean_se(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[0]
    mean = x.mean(axis=0) if n else np.full(x.shape[1:], np.nan)
    se = x.std(axis=0, ddof=1) / math.sqrt(n) if n >= 2 else np.full(x.shape[1:], np.nan)
    return mean, se


@dataclass
class DLAResult:
    """Per-example direct logit attribution of every head (split by source) and of every other component.

    Attributes:
        heads: ``[example, layer, head, 3]``: via_yes, via_no, via_other (logit units; negative = towards "No").
        components: ``[example, component]`` for :attr:`component_names` (embed, mlp{l}, biases).
        component_names: names of the columns of ``components``.
        logit_diff: ``[example]``, the model's ``logit(yes) - logit(no)`` at the answer position.
        ids, labels: example ids and gold labels (1 yes / 0 no / -1 unknown).
        format, model, dataset: names; kv_group: ``[head]`` key/value head of each query head.
        nas: optional ``[example, layer, head]`` NAS from the same forward (positions ``nas_positions``).
    """

    heads: np.ndarray
    components: np.ndarray
    component_names: list[str]
    logit_diff: np.ndarray
    ids: list[str]
    labels: np.ndarray
    format: str = "Yes/No"
    model: str = ""
    dataset: str = ""
    kv_group: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    nas: np.ndarray | None = None
    nas_positions: str | None = None

    def __post_init__(self) -> None:
        self.heads = np.asarray(self.heads, dtype=np.float64)
        if self.heads.ndim != 4 or self.heads.shape[-1] != 3:
            raise ValueError(f"heads must be [example, layer, head, 3], got shape {self.heads.shape}")
        n = self.heads.shape[0]
        self.components = np.asarray(self.components, dtype=np.float64).reshape(n, -1)
        self.component_names = [str(c) for c in self.component_names]
        if self.components.shape[1] != len(self.component_names):
            raise ValueError(f"{self.components.shape[1]} component columns but {len(self.component_names)} names")
        self.logit_diff = np.asarray(self.logit_diff, dtype=np.float64).reshape(-1)
        self.ids = [str(i) for i in self.ids]
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if not (len(self.logit_diff) == len(self.ids) == len(self.labels) == n):
            raise ValueError(f"{n} rows of heads but {len(self.logit_diff)} logit diffs, {len(self.ids)} ids, {len(self.labels)} labels")
        self.kv_group = np.arange(self.n_heads) if self.kv_group is None else np.asarray(self.kv_group, dtype=np.int64)
        if self.nas is not None:
            self.nas = np.asarray(self.nas, dtype=np.float64)
            if self.nas.shape != self.heads.shape[:3]:
                raise ValueError(f"nas has shape {self.nas.shape}, expected {self.heads.shape[:3]}")

    # ------------------------------------------------------------------ shape and summaries

    @property
    def n(self) -> int:
        return int(self.heads.shape[0])

    @property
    def n_layers(self) -> int:
        return int(self.heads.shape[1])

    @property
    def n_heads(self) -> int:
        return int(self.heads.shape[2])

    @property
    def total(self) -> Float[np.ndarray, "example layer head"]:
        """Each head's whole direct contribution, ``via_yes + via_no + via_other``."""
        return self.heads.sum(-1)

    def source(self, name: str) -> Float[np.ndarray, "example layer head"]:
        """One source split (``via_yes`` / ``via_no`` / ``via_other``) or ``total``."""
        if name == "total":
            return self.total
        if name not in SOURCES:
            raise ValueError(f"source must be one of {[*SOURCES, 'total']}, got {name!r}")
        return self.heads[..., SOURCES.index(name)]

    def mean(self, name: str = "total") -> Float[np.ndarray, "layer head"]:
        return _mean_se(self.source(name))[0]

    def stderr(self, name: str = "total") -> Float[np.ndarray, "layer head"]:
        return _mean_se(self.source(name))[1]

    @property
    def residual(self) -> Float[np.ndarray, " example"]:
        """``logit_diff`` minus the sum of every head and every component (0 up to float rounding)."""
        return self.logit_diff - self.total.sum(axis=(1, 2)) - self.components.sum(axis=1)

    def top_heads(self, k: int = 10, by: str = "via_no", descending: bool = False) -> list[Head]:
        """The ``k`` heads with the lowest mean ``by`` (the strongest push towards "No"), or highest."""
        return ranked_heads(self.mean(by), descending=descending)[:k]

    def table(self) -> pd.DataFrame:
        """One row per head (what ``dla.csv`` holds): ``layer, head, dla_mean, dla_stderr, via_yes, via_no,
        via_other, n`` (means over examples; ``dla_mean = via_yes + via_no + via_other``)."""
        L, H = self.n_layers, self.n_heads
        mean, se = _mean_se(self.total)
        parts = self.heads.mean(axis=0) if self.n else np.full((L, H, 3), np.nan)
        return pd.DataFrame(
            {
                "layer": np.repeat(np.arange(L), H),
                "head": np.tile(np.arange(H), L),
                "dla_mean": mean.reshape(-1),
                "dla_stderr": se.reshape(-1),
                "via_yes": parts[..., 0].reshape(-1),
                "via_no": parts[..., 1].reshape(-1),
                "via_other": parts[..., 2].reshape(-1),
                "n": self.n,
            }
        )

    def component_table(self) -> pd.DataFrame:
        """One row per non-head component, then ``heads`` (their sum), ``residual`` and ``logit_diff``:
        ``component, dla_mean, dla_stderr, n`` (``components.csv``)."""
        names = [*self.component_names, "heads", "residual", "logit_diff"]
        cols = np.column_stack([self.components, self.total.sum(axis=(1, 2)), self.residual, self.logit_diff]) if self.n else np.zeros((0, len(names)))
        mean, se = _mean_se(cols)
        return pd.DataFrame({"component": names, "dla_mean": mean, "dla_stderr": se, "n": self.n})

    def to_dataframe(self) -> pd.DataFrame:
        """Long format, one row per example x layer x head: ``id, label, logit_diff, layer, head, via_yes,
        via_no, via_other, total``."""
        n, L, H = self.n, self.n_layers, self.n_heads
        per = L * H
        flat = einops.rearrange(self.heads, "e l h s -> (e l h) s")
        return pd.DataFrame(
            {
                "id": np.repeat(np.asarray(self.ids, dtype=object), per),
                "label": np.repeat(self.labels, per),
                "logit_diff": np.repeat(self.logit_diff, per),
                "layer": np.tile(np.repeat(np.arange(L), H), n),
                "head": np.tile(np.arange(H), n * L),
                "via_yes": flat[:, 0],
                "via_no": flat[:, 1],
                "via_other": flat[:, 2],
                "total": flat.sum(-1),
            }
        )

    def summary(self, k: int = 5) -> str:
        res = np.abs(self.residual).max() if self.n else float("nan")
        top = ", ".join(f"{format_head(h)} ({self.mean('via_no')[h]:+.3f})" for h in self.top_heads(min(k, self.n_layers * self.n_heads)))
        return (f"DLA of {self.model} on {self.dataset} ({self.format}, n={self.n}); mean logit diff "
                f"{self.logit_diff.mean():+.3f}, max |residual| {res:.2e}; most negative via_no: {top}")

    # ------------------------------------------------------------------ files

    def save(self, out_dir: str | Path) -> Path:
        """Write ``dla_scores.npz`` (arrays) and ``dla_scores.json`` (ids, names, metadata) atomically."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / SCORES_FILE) as tmp, open(tmp, "wb") as f:
            extra = {} if self.nas is None else {"nas": self.nas}
            np.savez_compressed(f, heads=self.heads, components=self.components, logit_diff=self.logit_diff,
                                labels=self.labels, kv_group=self.kv_group, **extra)
        write_json(out / META_FILE, {"ids": self.ids, "component_names": self.component_names, "format": self.format,
                                     "model": self.model, "dataset": self.dataset, "meta": self.meta,
                                     "nas_positions": self.nas_positions})
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> DLAResult:
        out = Path(out_dir)
        for name in (SCORES_FILE, META_FILE):
            if not (out / name).is_file():
                raise FileNotFoundError(f"{out / name} not found: not a DLA result folder (written by DLAResult.save)")
        meta = read_json(out / META_FILE)
        with np.load(out / SCORES_FILE) as z:
            a = {k: z[k] for k in z.files}
        return cls(a["heads"], a["components"], meta["component_names"], a["logit_diff"], meta["ids"], a["labels"],
                   meta.get("format", ""), meta.get("model", ""), meta.get("dataset", ""), a["kv_group"], meta.get("meta") or {},
                   a.get("nas"), meta.get("nas_positions"))


# ============================================================================================ the scan


def component_order(model: LoadedModel, names: Sequence[str]) -> list[str]:
    order = ["embed"]
    for layer in range(int(model.n_layers)):
        order += [f"attn_bias{layer}", f"mlp{layer}"]
    order.append("final_bias")
    known = [n for n in order if n in names]
    return known + sorted(set(names) - set(known))


@over_examples(groups=by_batch_plan)
def _dla_rows(
    model: LoadedModel,
    examples: Sequence[Any],
    fmt: PromptFormat,
    *,
    batch_size: int,
    progress: bool,
    hooks: Sequence[tuple[Any, Callable[..., Any]]],
    nas_positions: str | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Per example: the heads' split ``[example, layer, head, 3]``, the logit difference, the label, each
    component's DLA and (with ``nas_positions``, else NaN) the NAS of every head. Data-parallel in a process
    group (ranks take whole batches; :func:`nasa_lens.parallel.over_examples`)."""
    from nasa_lens.nas import stack_layers, nas_hooks

    n, L, H = len(examples), int(model.n_layers), int(model.n_heads)
    heads = np.full((n, L, H, 3), np.nan)
    diff = np.full(n, np.nan)
    labels = np.full(n, -1, dtype=np.int64)
    comps: dict[str, np.ndarray] = {}
    nas = np.full((n, L, H), np.nan)
    bar = tqdm(total=n, desc=f"DLA {fmt.label}", disable=not progress, leave=False)
    for idx, batch in iter_batches(model, examples, fmt, batch_size):
        batch = batch.to(model.device)
        extra, store = nas_hooks(batch, positions=nas_positions) if nas_positions else ([], {})
        h, c, d = dla_for_batch(model, batch, hooks=[*hooks, *extra])
        if nas_positions:
            nas[idx] = stack_layers(store, range(L)).cpu().double().numpy()
        heads[idx] = h.cpu().numpy()
        diff[idx] = d.cpu().numpy()
        labels[idx] = batch.labels.cpu().numpy()
        for name, value in c.items():
            comps.setdefault(name, np.full(n, np.nan))[idx] = value.cpu().numpy()
        bar.update(len(idx))
    bar.close()
    return heads, diff, labels, comps, nas


def scan_dla(
    model: LoadedModel,
    dataset: Sequence[Any],
    fmt: PromptFormat | None = None,
    *,
    batch_size: int = 16,
    progress: bool = True,
    hooks: Sequence[tuple[Any, Callable[..., Any]]] = (),
    nas_positions: str | None = None,
) -> DLAResult:
    """DLA of every head (split by source) and every component on every example of ``dataset``.

    One no-grad forward per batch (:func:`dla_for_batch`); a prompt without a candidate raises the prompt
    module's ``PromptError``. ``hooks``: an intervention to run under (scoped to each forward).
    ``nas_positions`` (``"after"`` / ``"last"``): also compute NAS in the same forwards (``result.nas``).
    """
    fmt = fmt or PromptFormat()
    examples = list(dataset)
    if not examples:
        raise DLAError("cannot compute DLA on an empty dataset")
    check_architecture(model)
    n, L, H = len(examples), int(model.n_layers), int(model.n_heads)
    heads, diff, labels, comps, nas = _dla_rows(
        model, examples, fmt, batch_size=batch_size, progress=progress, hooks=hooks, nas_positions=nas_positions
    )
    nas = nas if nas_positions else None
    names = component_order(model, list(comps))
    return DLAResult(
        heads=heads,
        components=np.column_stack([comps[c] for c in names]) if names else np.zeros((n, 0)),
        component_names=names,
        logit_diff=diff,
        ids=[str(getattr(ex, "id", i)) for i, ex in enumerate(examples)],
        labels=labels,
        format=fmt.label,
        model=getattr(model, "name", ""),
        dataset=str(getattr(dataset, "name", "")),
        kv_group=np.array([model.kv_group(h) for h in range(H)]),
        nas=nas,
        nas_positions=nas_positions,
    )
