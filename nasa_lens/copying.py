"""OV copying score (weights only, no data): could a head carry the candidate it attends to into the answer?

See :func:`ov_copying` for the exact definition. The companion of :mod:`nasa_lens.dla` (which measures what a
head *does* carry on data): a head with a large copying score and a high NAS is a candidate carrier of the
instruction's "No"; DLA's ``via_no`` says whether it carries it in fact.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import einops
import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from nasa_lens.dla import DLAError, check_architecture, is_layernorm, norm_weight, o_weight, original_module, dla_direction
from nasa_lens.interventions import bridge_of
from nasa_lens.io import atomic_path, read_json, write_json
from nasa_lens.prompts import PromptFormat, build_batch
from nasa_lens.vocab import COPYING_FILE

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = ["CopyingResult", "ov_copying"]


@dataclass
class CopyingResult:
    """Weights-only OV copying scores, ``[layer, head]`` each (see :func:`ov_copying`)."""

    copy_no: np.ndarray
    copy_yes: np.ndarray
    model: str = ""
    format: str = "Yes/No"
    tokens: dict[str, int] = field(default_factory=dict)

    @property
    def copying(self) -> Float[np.ndarray, "layer head"]:
        """``(copy_no + copy_yes) / 2``: how much the head copies whichever candidate it reads."""
        return (self.copy_no + self.copy_yes) / 2

    def table(self) -> pd.DataFrame:
        """``layer, head, copy_no, copy_yes, copying`` (``copying.csv``)."""
        L, H = self.copy_no.shape
        return pd.DataFrame({"layer": np.repeat(np.arange(L), H), "head": np.tile(np.arange(H), L),
                             "copy_no": self.copy_no.reshape(-1), "copy_yes": self.copy_yes.reshape(-1),
                             "copying": self.copying.reshape(-1)})

    to_dataframe = table

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / COPYING_FILE) as tmp:
            self.table().to_csv(tmp, index=False)
        write_json(out / "copying.json", {"model": self.model, "format": self.format, "tokens": self.tokens})
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> CopyingResult:
        out = Path(out_dir)
        if not (out / COPYING_FILE).is_file():
            raise FileNotFoundError(f"{out / COPYING_FILE} not found: not a copying result (CopyingResult.save)")
        df = pd.read_csv(out / COPYING_FILE)
        meta = read_json(out / "copying.json") if (out / "copying.json").is_file() else {}
        L, H = int(df.layer.max()) + 1, int(df["head"].max()) + 1
        grid = lambda col: df.sort_values(["layer", "head"])[col].to_numpy().reshape(L, H)  # noqa: E731
        return cls(grid("copy_no"), grid("copy_yes"), meta.get("model", ""), meta.get("format", ""), meta.get("tokens", {}))


def _rms_norm_apply(x: Tensor, norm_module: Any, cfg: Any) -> Tensor:
    """A norm applied to a bare vector (no data-dependent shift beyond the vector itself), float64."""
    x = x.double()
    if is_layernorm(cfg):
        x = x - x.mean(-1, keepdim=True)
    x = x / torch.sqrt((x * x).mean(-1, keepdim=True) + float(getattr(cfg, "eps", 1e-5)))
    gamma = norm_weight(norm_module, cfg)
    if gamma is not None:
        x = x * gamma.to(x.device)
    beta = getattr(original_module(norm_module), "bias", None)
    if beta is not None:
        x = x + beta.detach().double().to(x.device)
    return x


def ov_copying(model: LoadedModel, fmt: PromptFormat | None = None) -> CopyingResult:
    """OV copying score of every head, from the weights alone (no data).

    For a candidate token ``c`` of the instruction ("Yes"/"No" as tokenized *inside* the prompt):

    * ``x_c = norm1_l(W_E[c])``: the embedding row through the head's own layer's input norm (RMS to 1, times
      its gain), i.e. the candidate as the head would read it if the residual there were the bare embedding;
    * ``o_c = (x_c W_V[g(h)] + b_V) W_O_h``: what the head writes when it attends only to ``c``;
    * ``d = gamma_final * (W_U[No answer] - W_U[Yes answer])``: the answer direction through the final norm's
      gain, with its data-dependent scale left out (set to 1);

    ``copy_no = o_No . d`` and ``copy_yes = o_Yes . (-d)``, in logit units per unit final-norm scale.
    Positive ``copy_no``: a head attending to the instruction's "No" pushes the answer towards "No" (it copies
    it); negative: it suppresses it. ``copying = (copy_no + copy_yes) / 2``. Every head of any pre-norm model
    with separate ``v``/``o`` projections, in milliseconds.
    """
    fmt = fmt or PromptFormat()
    cfg = check_architecture(model)
    bridge = bridge_of(model)
    probe = build_batch(model, ["Is it?"], fmt)
    tok_yes = int(probe.input_ids[0, probe.pos_yes[0]])
    tok_no = int(probe.input_ids[0, probe.pos_no[0]])
    u, _ = dla_direction(model, probe)  # gamma_f * (W_U[yes] - W_U[no]) = -d
    d = -u
    w_e = original_module(bridge.embed).weight.detach()
    e = torch.stack([w_e[tok_yes], w_e[tok_no]]).double()  # [2, d_model]
    L, H, group = int(model.n_layers), int(model.n_heads), int(model.n_heads) // int(model.n_kv_heads)
    copy = np.zeros((2, L, H))
    for layer in range(L):
        block = bridge.blocks[layer]
        x = _rms_norm_apply(e, block.ln1, cfg)
        v_lin = original_module(block.attn.v)
        if not isinstance(v_lin, torch.nn.Linear):
            raise DLAError(f"blocks.{layer}.attn.v of {getattr(model, 'name', '')!r} is not a linear projection")
        v = x @ v_lin.weight.detach().double().T.to(x.device)
        if v_lin.bias is not None:
            v = v + v_lin.bias.detach().double()
        v = einops.repeat(v.reshape(2, int(model.n_kv_heads), -1), "c kv dh -> c (kv g) dh", g=group)
        w_o, _ = o_weight(model, layer)
        out = torch.einsum("chd,hdm->chm", v, w_o.to(v.device))  # [2, head, d_model]
        proj = out @ d.to(out.device)  # [2, head]
        copy[0, layer] = -proj[0].cpu().numpy()  # Yes read, pushed towards Yes = -d
        copy[1, layer] = proj[1].cpu().numpy()
    return CopyingResult(copy_no=copy[1], copy_yes=copy[0], model=getattr(model, "name", ""), format=fmt.label,
                         tokens={"candidate_yes": tok_yes, "candidate_no": tok_no, "answer_yes": probe.answer_yes_id,
                                 "answer_no": probe.answer_no_id})
