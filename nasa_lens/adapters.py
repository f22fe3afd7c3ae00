"""NASA adapters: per-head additive deltas on the query (and key) projection rows, and their file format.

An adapter holds, for every selected query head ``(layer, head)``, a delta ``[d_head, d_model]`` for the
rows of ``q_proj.weight`` that produce that head's query (``rows head*d_head .. (head+1)*d_head``), and, for
every trained key/value group ``(layer, group)``, a delta for that group's rows of ``k_proj.weight``. A delta
is either a full matrix (``rank=None``) or a low-rank product ``A @ B`` with ``A: [d_head, r]`` and
``B: [r, d_model]`` (``A`` starts at zero, ``B`` random, so every adapter starts as the identity edit).

The base weights are never touched unless you :meth:`HeadAdapter.merge`. Three ways to use an adapter:

* **hooks** (:meth:`HeadAdapter.attach` / :meth:`HeadAdapter.applied`): a PyTorch forward hook on the wrapped
  ``nn.Linear`` of ``blocks.{l}.attn.q`` (and ``.k``) adds ``x @ delta.T`` to the selected heads' slice of the
  projection output. The hook sees the projection's *input* and *output* and lives on the Hugging Face
  module, so it is independent of the bridge's own hook points: ``bridge.reset_hooks()`` or a
  ``with bridge.hooks(...)`` block of another tool does not remove it. :meth:`HeadAdapter.applied` is the
  scoped form (removed on exit, even after an exception); :meth:`HeadAdapter.attach` stays until
  :meth:`HeadAdapter.remove`. The training loop uses exactly these hooks, so a loaded adapter reproduces the
  trained model's logits bit for bit.
* **merge** (:meth:`HeadAdapter.merge`): add the deltas into the weight rows in place (a copy of the
  original rows is kept; :meth:`HeadAdapter.remove` restores them bitwise). Merged logits equal the hooked
  ones up to float rounding (``x @ (W + D).T`` vs ``x @ W.T + x @ D.T``).
* **remove** undoes whichever of the two is active.

Every attached/merged adapter is listed in ``model.extra["nasa_adapters"]`` (with its state), so tools and
people can see that a model is not the base model.

Files (:func:`save_adapter` / :func:`load_adapter`): ``adapter.safetensors`` holds the tensors, named
``q.{layer}.{head}`` / ``k.{layer}.{group}`` (full) or ``q.{layer}.{head}.A`` / ``.B`` (low rank);
``adapter.json`` beside it holds the metadata: format and version, the base model name and
:func:`nasa_lens.models.weights_hash`, the model shape, the heads, the key groups, the rank, the sha256 of the
tensor file, and any config/metrics the caller passes. Both are written atomically (temp file, rename).
:func:`load_adapter` refuses another base model (name or weights hash), heads the model does not have, and a
corrupt or truncated file, each with an :class:`AdapterError` naming the file and the problem.

Limitation: the hooks need the bridge's default attention path (``q``/``k`` applied as linear layers). With
``cfg.use_split_qkv_input`` or ``cfg.use_attn_in`` the bridge reads the weight matrices directly, so
:meth:`HeadAdapter.attach` refuses (merge still works there).
"""
from __future__ import annotations

from nasa_lens.vocab import ADAPTER_FILE, ADAPTER_META_FILE, InputFileNotFoundError, NasaLensError

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import einops
import torch
from jaxtyping import Float
from torch import Tensor, nn

from nasa_lens.heads import Head, format_head, parse_head
from nasa_lens.io import atomic_path, read_json, write_json

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = [
    "ADAPTER_FILE",
    "ADAPTER_META_FILE",
    "ADAPTER_FORMAT",
    "ADAPTER_VERSION",
    "AdapterError",
    "HeadAdapter",
    "adapter_paths",
    "save_adapter",
    "load_adapter",
    "read_adapter_meta",
    "attached_adapters",
    "projection_module",
]

logger = logging.getLogger(__name__)

ADAPTER_FORMAT = "nasa-lens-adapter"
ADAPTER_VERSION = 1
KINDS = ("q", "k")


class AdapterError(NasaLensError, ValueError):
    """An adapter cannot be built, loaded or applied; the message names the file (if any) and the problem."""


def model_shape(model: LoadedModel) -> dict[str, int]:
    d_model = int(model.bridge.cfg.d_model)
    return {
        "n_layers": int(model.n_layers),
        "n_heads": int(model.n_heads),
        "n_kv_heads": int(model.n_kv_heads),
        "d_head": int(model.d_head),
        "d_model": d_model,
    }


def projection_module(model: LoadedModel, layer: int, kind: str) -> nn.Linear:
    """The Hugging Face ``nn.Linear`` behind ``blocks.{layer}.attn.{kind}`` (``kind`` = ``"q"`` or ``"k"``)."""
    if kind not in KINDS:
        raise AdapterError(f"projection kind must be one of {KINDS}, got {kind!r}")
    attn = model.bridge.blocks[layer].attn
    wrapper = getattr(attn, kind, None)
    module = getattr(wrapper, "original_component", None)
    if not isinstance(module, nn.Linear):
        raise AdapterError(
            f"blocks.{layer}.attn.{kind} of {model.name!r} is not a linear projection "
            f"(got {type(module).__name__}); NASA adapters need separate q/k projections"
        )
    return module


def attached_adapters(model: LoadedModel) -> list[HeadAdapter]:
    """The adapters currently attached or merged into ``model`` (oldest first)."""
    return list(model.extra.get("nasa_adapters", []))


class HeadAdapter(nn.Module):
    """Trainable deltas for the q rows of some heads (and the k rows of some key/value groups).

    Args:
        heads: query heads ``(layer, head)`` whose ``q_proj`` rows get a delta.
        key_groups: key/value heads ``(layer, group)`` whose ``k_proj`` rows get a delta (see
            :func:`nasa_lens.finetune.key_groups_for` for the grouped-query rule).
        shape: the model shape (``n_layers, n_heads, n_kv_heads, d_head, d_model``), e.g. from a model.
        rank: ``None`` for full ``[d_head, d_model]`` deltas, else the rank ``r`` of ``A @ B``.
        base_model: the name of the model the adapter belongs to (checked on load).
        generator: seeds the random ``B`` factors of a low-rank adapter (full deltas start at zero).
        init_scale: standard deviation of ``B`` is ``init_scale / sqrt(d_model)``.
    """

    def __init__(
        self,
        heads: Sequence[Head],
        key_groups: Sequence[Head] = (),
        *,
        shape: Mapping[str, int],
        rank: int | None = None,
        base_model: str = "",
        generator: torch.Generator | None = None,
        init_scale: float = 1.0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        missing = {"n_layers", "n_heads", "n_kv_heads", "d_head", "d_model"} - set(shape)
        if missing:
            raise AdapterError(f"adapter shape lacks {sorted(missing)}")
        self.shape = {k: int(shape[k]) for k in ("n_layers", "n_heads", "n_kv_heads", "d_head", "d_model")}
        if rank is not None and (not isinstance(rank, int) or isinstance(rank, bool) or rank < 1):
            raise AdapterError(f"rank must be a positive int or None (full rows), got {rank!r}")
        if rank is not None and rank > min(self.d_head, self.d_model):
            raise AdapterError(f"rank {rank} exceeds min(d_head, d_model) = {min(self.d_head, self.d_model)}")
        self.rank = rank
        self.base_model = base_model
        self.heads: list[Head] = self._check_units(heads, self.shape["n_heads"], "head")
        self.key_groups: list[Head] = self._check_units(key_groups, self.shape["n_kv_heads"], "key group")
        if not self.heads and not self.key_groups:
            raise AdapterError("an adapter needs at least one head or key group")
        self.params = nn.ParameterDict()
        for kind, units in (("q", self.heads), ("k", self.key_groups)):
            for layer, idx in units:
                for name, tensor in self._init_tensors(generator, init_scale, dtype).items():
                    self.params[_key(kind, layer, idx, name)] = nn.Parameter(tensor.to(device) if device else tensor)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._saved_rows: dict[tuple[str, int, int], Tensor] = {}
        self._model: LoadedModel | None = None
        self.state = "detached"  # "hooked" | "merged"

    # ------------------------------------------------------------------ shape

    @property
    def d_head(self) -> int:
        return self.shape["d_head"]

    @property
    def d_model(self) -> int:
        return self.shape["d_model"]

    @property
    def n_params(self) -> int:
        """Trainable parameters (what the optimizer sees)."""
        return sum(p.numel() for p in self.params.values())

    @property
    def layers(self) -> list[int]:
        return sorted({layer for layer, _ in self.heads} | {layer for layer, _ in self.key_groups})

    def units(self, kind: str) -> list[Head]:
        return self.heads if kind == "q" else self.key_groups

    def _check_units(self, units: Sequence[Head], per_layer: int, what: str) -> list[Head]:
        out: list[Head] = []
        for unit in units:
            try:
                layer, idx = (int(unit[0]), int(unit[1]))
            except (TypeError, ValueError, IndexError):
                raise AdapterError(f"bad {what} {unit!r}: expected (layer, index)") from None
            if not (0 <= layer < self.shape["n_layers"] and 0 <= idx < per_layer):
                raise AdapterError(
                    f"{what} {layer}.{idx} out of range: the model has {self.shape['n_layers']} layers and "
                    f"{per_layer} {what}s per layer"
                )
            out.append((layer, idx))
        if len(set(out)) != len(out):
            raise AdapterError(f"{what}s listed twice: {[format_head(u) for u in out]}")
        return sorted(out)

    def _init_tensors(self, generator: torch.Generator | None, init_scale: float, dtype: torch.dtype) -> dict[str, Tensor]:
        if self.rank is None:
            return {"": torch.zeros(self.d_head, self.d_model, dtype=dtype)}
        b = torch.randn(self.rank, self.d_model, generator=generator, dtype=torch.float32) * (init_scale / self.d_model**0.5)
        return {"A": torch.zeros(self.d_head, self.rank, dtype=dtype), "B": b.to(dtype)}

    def delta(self, kind: str, layer: int, idx: int) -> Float[Tensor, "d_head d_model"]:
        """The delta added to the ``d_head`` weight rows of one query head (``"q"``) or key group (``"k"``)."""
        if self.rank is None:
            return self.params[_key(kind, layer, idx, "")]
        return self.params[_key(kind, layer, idx, "A")] @ self.params[_key(kind, layer, idx, "B")]

    def deltas(self) -> dict[tuple[str, int, int], Tensor]:
        """Every delta, keyed ``(kind, layer, index)``."""
        return {(kind, layer, idx): self.delta(kind, layer, idx) for kind in KINDS for layer, idx in self.units(kind)}

    # ------------------------------------------------------------------ tensors / files

    def to_tensors(self) -> dict[str, Tensor]:
        """Named CPU float tensors for ``adapter.safetensors`` (``q.L.H``, ``k.L.G``, ``q.L.H.A``...)."""
        return {_file_name(k): p.detach().to("cpu").contiguous().clone() for k, p in self.params.items()}

    def load_tensors(self, tensors: Mapping[str, Tensor], *, source: str = "tensors") -> None:
        """Copy named tensors (as written by :meth:`to_tensors`) into the parameters; names and shapes must match."""
        want = {_file_name(k): k for k in self.params}
        extra, missing = sorted(set(tensors) - set(want)), sorted(set(want) - set(tensors))
        if extra or missing:
            raise AdapterError(f"{source}: tensor names do not match the adapter's heads (missing {missing}, unexpected {extra})")
        with torch.no_grad():
            for name, key in want.items():
                p = self.params[key]
                t = tensors[name]
                if tuple(t.shape) != tuple(p.shape):
                    raise AdapterError(f"{source}: tensor {name} has shape {tuple(t.shape)}, expected {tuple(p.shape)}")
                p.copy_(t.to(p.device, p.dtype))

    def metadata(self) -> dict[str, Any]:
        return {
            "format": ADAPTER_FORMAT,
            "version": ADAPTER_VERSION,
            "base_model": self.base_model,
            "shape": dict(self.shape),
            "rank": self.rank,
            "heads": [format_head(h) for h in self.heads],
            "key_groups": [format_head(g) for g in self.key_groups],
            "n_params": self.n_params,
        }

    # ------------------------------------------------------------------ applying

    def _check_model(self, model: LoadedModel) -> None:
        got = model_shape(model)
        if got != self.shape:
            raise AdapterError(f"adapter shape {self.shape} does not match model {model.name!r} {got}")
        cfg = model.bridge.cfg
        for flag in ("use_split_qkv_input", "use_attn_in"):
            if getattr(cfg, flag, False):
                raise AdapterError(
                    f"cannot hook an adapter while cfg.{flag} is set: the bridge then reads q/k weights directly; "
                    "turn it off, or merge() the adapter instead"
                )

    def _device_to(self, model: LoadedModel) -> None:
        device = (module := projection_module(model, self.layers[0], "q")).weight.device  # "meta" when offloaded:
        if device.type == "meta":  # then the device Accelerate's offload hook runs the layer on
            device = torch.device(getattr(getattr(module, "_hf_hook", None), "execution_device", None) or model.device)
        if any(p.device != device for p in self.params.values()):
            self.to(device)

    def attach(self, model: LoadedModel) -> HeadAdapter:
        """Add the deltas with forward hooks; they stay until :meth:`remove` (returns ``self``)."""
        if self.state != "detached":
            raise AdapterError(f"adapter is already {self.state} on {self._model.name if self._model else '?'}; remove() it first")
        self._check_model(model)
        self._device_to(model)
        handles = []
        try:
            for kind in KINDS:
                by_layer: dict[int, list[int]] = {}
                for layer, idx in self.units(kind):
                    by_layer.setdefault(layer, []).append(idx)
                for layer, idxs in by_layer.items():
                    module = projection_module(model, layer, kind)
                    handles.append(module.register_forward_hook(self._make_hook(kind, layer, idxs)))
        except BaseException:
            for h in handles:
                h.remove()
            raise
        self._handles = handles
        self._bind(model, "hooked")
        return self

    @contextlib.contextmanager
    def applied(self, model: LoadedModel) -> Iterator[HeadAdapter]:
        """``with adapter.applied(model): ...``: hooks for the block only (removed even after an exception)."""
        self.attach(model)
        try:
            yield self
        finally:
            self.remove()

    def _make_hook(self, kind: str, layer: int, idxs: list[int]):
        index = torch.tensor(idxs, dtype=torch.long)
        d_head = self.d_head

        def hook(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> Tensor:
            x = args[0]
            deltas = torch.stack([self.delta(kind, layer, i) for i in idxs]).to(device=x.device, dtype=x.dtype)
            correction = einops.einsum(x, deltas, "... d_model, unit d_head d_model -> ... unit d_head")
            per_unit = einops.rearrange(output, "... (unit d_head) -> ... unit d_head", d_head=d_head)
            per_unit = per_unit.index_add(per_unit.ndim - 2, index.to(output.device), correction.to(output.dtype))
            return einops.rearrange(per_unit, "... unit d_head -> ... (unit d_head)")

        return hook

    def merge(self, model: LoadedModel) -> HeadAdapter:
        """Add the deltas into the base weight rows in place (the original rows are kept for :meth:`remove`)."""
        if self.state != "detached":
            raise AdapterError(f"adapter is already {self.state}; remove() it first")
        self._check_model(model)
        saved: dict[tuple[str, int, int], Tensor] = {}
        with torch.no_grad():
            for (kind, layer, idx), delta in self.deltas().items():
                weight = projection_module(model, layer, kind).weight
                rows = slice(idx * self.d_head, (idx + 1) * self.d_head)
                saved[(kind, layer, idx)] = weight[rows].clone()
                weight[rows] += delta.to(weight.device, weight.dtype)
        self._saved_rows = saved
        self._bind(model, "merged")
        logger.info("merged NASA adapter (%s) into %s", ", ".join(self.metadata()["heads"]), model.name)
        return self

    def remove(self) -> None:
        """Undo :meth:`attach` (hooks removed) or :meth:`merge` (original rows restored bitwise). Idempotent."""
        if self.state == "hooked":
            for h in self._handles:
                h.remove()
            self._handles = []
        elif self.state == "merged" and self._model is not None:
            with torch.no_grad():
                for (kind, layer, idx), rows in self._saved_rows.items():
                    weight = projection_module(self._model, layer, kind).weight
                    weight[idx * self.d_head : (idx + 1) * self.d_head] = rows
            self._saved_rows = {}
        if self._model is not None:
            listed = self._model.extra.get("nasa_adapters", [])
            self._model.extra["nasa_adapters"] = [a for a in listed if a is not self]
        self._model = None
        self.state = "detached"

    def _bind(self, model: LoadedModel, state: str) -> None:
        self._model = model
        self.state = state
        model.extra.setdefault("nasa_adapters", []).append(self)

    def extra_repr(self) -> str:
        return (
            f"heads={[format_head(h) for h in self.heads]}, key_groups={[format_head(g) for g in self.key_groups]}, "
            f"rank={self.rank}, n_params={self.n_params}, state={self.state}"
        )

    def __deepcopy__(self, memo):  # noqa: ANN001 - a detached copy (handles / bindings are not copied)
        clone = HeadAdapter(self.heads, self.key_groups, shape=self.shape, rank=self.rank, base_model=self.base_model)
        clone.load_tensors(self.to_tensors())
        return clone

    def copy(self) -> HeadAdapter:
        """A detached copy with the same tensors."""
        return self.__deepcopy__({})


def _key(kind: str, layer: int, idx: int, factor: str) -> str:
    return f"{kind}_{layer}_{idx}" + (f"_{factor}" if factor else "")


def _file_name(key: str) -> str:
    return key.replace("_", ".")


# ------------------------------------------------------------------------------------------- files


def adapter_paths(path: str | Path) -> tuple[Path, Path]:
    """``(tensor file, metadata file)`` for a folder or a ``.safetensors`` file (its ``.json`` twin or
    ``adapter.json`` beside it)."""
    p = Path(path).expanduser()
    if p.is_dir():
        return p / ADAPTER_FILE, p / ADAPTER_META_FILE
    if p.suffix == ".json":
        return p.with_suffix(".safetensors"), p
    if p.suffix != ".safetensors" and not p.exists():
        raise InputFileNotFoundError(f"no adapter at {p}: expected a folder holding {ADAPTER_FILE} + {ADAPTER_META_FILE}, or a .safetensors file")
    if p.suffix != ".safetensors":
        raise AdapterError(f"{p}: an adapter path is a folder or a .safetensors file")
    twin = p.with_suffix(".json")
    return p, twin if twin.exists() or not (p.parent / ADAPTER_META_FILE).exists() else p.parent / ADAPTER_META_FILE


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_adapter(
    path: str | Path,
    adapter: HeadAdapter,
    model: LoadedModel,
    *,
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    base_weights_hash: str | None = None,
) -> Path:
    """Write ``adapter.safetensors`` and ``adapter.json`` (each atomically) into the folder ``path``, or as
    ``path`` (``.safetensors``) and its ``.json`` twin. Returns the tensor file.

    ``base_weights_hash`` defaults to :func:`nasa_lens.models.weights_hash` of ``model``; it must be the hash
    of the *base* weights, so an adapter cannot be saved while one is merged (pass the hash you recorded
    before merging)."""
    from safetensors.torch import save_file

    from nasa_lens.models import weights_hash

    p = Path(path).expanduser()
    tensor_file, meta_file = (p / ADAPTER_FILE, p / ADAPTER_META_FILE) if p.suffix != ".safetensors" else (p, p.with_suffix(".json"))
    if base_weights_hash is None:
        merged = [a for a in attached_adapters(model) if a.state == "merged"]
        if merged:
            raise AdapterError("cannot hash the base weights while an adapter is merged; remove() it or pass base_weights_hash")
        base_weights_hash = weights_hash(model)
    with atomic_path(tensor_file) as tmp:
        # One metadata key only: safetensors serialises its metadata map in hash order, so two keys make the
        # file bytes differ from run to run for the same adapter.
        save_file(adapter.to_tensors(), str(tmp), metadata={"format": f"{ADAPTER_FORMAT}/{ADAPTER_VERSION}"})
    meta = {
        **adapter.metadata(),
        "base_model": model.name,
        "base_weights_hash": base_weights_hash,
        "tensor_file": tensor_file.name,
        "tensor_sha256": _sha256(tensor_file),
        "config": dict(config or {}),
        "metrics": dict(metrics or {}),
        **dict(extra or {}),
    }
    write_json(meta_file, meta)
    return tensor_file


_SHAPE_KEYS = ("n_layers", "n_heads", "n_kv_heads", "d_head", "d_model")


def _check_meta_fields(meta: dict[str, Any], meta_file: Path) -> None:
    """Every field :func:`load_adapter` reads has the type it needs; else an :class:`AdapterError` naming the
    file and the field (a hand-edited or foreign ``adapter.json`` must never reach a traceback)."""

    def bad(field: str, want: str, value: Any) -> AdapterError:
        got = json.dumps(value, ensure_ascii=False, default=str)[:120]
        return AdapterError(f"adapter metadata {meta_file}: field {field!r} must be {want}, got {got}")

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    for key in ("base_model", "base_weights_hash", "tensor_sha256"):
        if not isinstance(meta[key], str) or not meta[key]:
            raise bad(key, "a non-empty string", meta[key])
    if not isinstance(meta["shape"], dict):
        raise bad("shape", f"an object with the integer fields {', '.join(_SHAPE_KEYS)}", meta["shape"])
    for key in _SHAPE_KEYS:
        if key not in meta["shape"]:
            raise AdapterError(f"adapter metadata {meta_file}: field 'shape' lacks {key!r}")
        if not is_int(meta["shape"][key]) or meta["shape"][key] < 1:
            raise bad(f"shape.{key}", "a positive integer", meta["shape"][key])
    for key in ("heads", "key_groups"):
        if not isinstance(meta[key], list) or not all(isinstance(u, str) for u in meta[key]):
            raise bad(key, 'a list of "LAYER.HEAD" strings such as ["18.4"]', meta[key])
        for u in meta[key]:
            try:
                parse_head(u)
            except ValueError as exc:
                raise AdapterError(f"adapter metadata {meta_file}: field {key!r}: {exc}") from None
    if meta.get("rank") is not None and (not is_int(meta["rank"]) or meta["rank"] < 1):
        raise bad("rank", "a positive integer or null (full rows)", meta["rank"])


def read_adapter_meta(path: str | Path) -> dict[str, Any]:
    """The metadata (``adapter.json``) of an adapter folder or file, checked for format, version and the
    type of every field it needs (an :class:`AdapterError` names the file and the field)."""
    _, meta_file = adapter_paths(path)
    if not meta_file.is_file():
        raise InputFileNotFoundError(f"adapter metadata {meta_file} not found (an adapter is adapter.safetensors + adapter.json)")
    try:
        meta = read_json(meta_file)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(f"adapter metadata {meta_file} is corrupt (not valid JSON: {exc})") from None
    except (ValueError, RecursionError) as exc:
        raise AdapterError(f"adapter metadata {meta_file} is corrupt (not valid JSON: {type(exc).__name__})") from None
    except OSError as exc:
        raise AdapterError(f"cannot read adapter metadata {meta_file}: {exc.strerror or exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != ADAPTER_FORMAT:
        raise AdapterError(f"{meta_file} is not a nasa-lens adapter file (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != ADAPTER_VERSION or isinstance(meta.get("version"), bool):
        raise AdapterError(f"{meta_file}: adapter format version {meta.get('version')!r}; this nasa-lens reads {ADAPTER_VERSION}")
    for key in ("base_model", "base_weights_hash", "shape", "heads", "key_groups", "tensor_sha256"):
        if key not in meta:
            raise AdapterError(f"adapter metadata {meta_file} is corrupt: it lacks {key!r}")
    _check_meta_fields(meta, meta_file)
    return meta


def load_adapter(
    model: LoadedModel,
    path: str | Path,
    *,
    mode: str = "hooks",
    check_weights: bool = True,
) -> HeadAdapter:
    """Load an adapter written by :func:`save_adapter` and (by default) attach it to ``model`` persistently.

    Args:
        model: the base model; its name and :func:`nasa_lens.models.weights_hash` must match the metadata.
        path: the adapter folder, its ``adapter.safetensors`` or its ``adapter.json``.
        mode: ``"hooks"`` (attach as forward hooks, until ``adapter.remove()``), ``"merge"`` (add into the
            weights in place, until ``adapter.remove()``) or ``"none"`` (just return it).
        check_weights: compare the weights hash (hashing SmolLM2 takes about a second).

    Raises:
        AdapterError: another base model, heads out of range, a corrupt/truncated file (named), bad mode.
        FileNotFoundError: a file is missing.
    """
    if mode not in ("hooks", "merge", "none"):
        raise AdapterError(f"mode must be 'hooks', 'merge' or 'none', got {mode!r}")
    tensor_file, meta_file = adapter_paths(path)
    meta = read_adapter_meta(path)
    if meta["base_model"] != model.name:
        raise AdapterError(
            f"adapter {meta_file} was trained on base model {meta['base_model']!r}, not on {model.name!r}; "
            "load it onto the model it was trained on"
        )
    shape = model_shape(model)
    try:
        heads = [parse_head(h, shape["n_layers"], shape["n_heads"]) for h in meta["heads"]]
        groups = [parse_head(g, shape["n_layers"], shape["n_kv_heads"]) for g in meta["key_groups"]]
    except ValueError as exc:
        raise AdapterError(f"adapter {meta_file} names a head the model {model.name!r} does not have: {exc}") from None
    if {k: int(v) for k, v in meta["shape"].items()} != shape:
        raise AdapterError(f"adapter {meta_file} was made for shape {meta['shape']}, but {model.name!r} has {shape}")
    if not tensor_file.is_file():
        raise InputFileNotFoundError(f"adapter tensor file {tensor_file} not found")
    try:
        tensor_sha = _sha256(tensor_file)
    except OSError as exc:
        raise AdapterError(f"cannot read adapter tensor file {tensor_file}: {exc.strerror or exc}") from None
    if tensor_sha != meta["tensor_sha256"]:
        raise AdapterError(
            f"adapter tensor file {tensor_file} is corrupt or truncated: its sha256 does not match {meta_file.name} "
            f"({tensor_file.stat().st_size} bytes)"
        )
    try:
        from safetensors.torch import load_file

        tensors = load_file(str(tensor_file))
    except Exception as exc:  # noqa: BLE001 - any parse failure is a corrupt file
        raise AdapterError(f"adapter tensor file {tensor_file} is corrupt or truncated: {exc}") from None
    if check_weights:
        from nasa_lens.models import weights_hash

        got = weights_hash(model)
        if got != meta["base_weights_hash"]:
            merged = [a for a in attached_adapters(model) if a.state == "merged"]
            note = " (an adapter is merged into it: remove() it first)" if merged else ""
            raise AdapterError(
                f"adapter {meta_file} was trained on other weights of {model.name!r}: base weights hash "
                f"{meta['base_weights_hash']}, this model {got}{note}"
            )
    try:
        adapter = HeadAdapter(heads, groups, shape=shape, rank=meta.get("rank"), base_model=model.name)
    except AdapterError as exc:
        raise AdapterError(f"adapter metadata {meta_file}: {exc}") from None
    adapter.load_tensors(tensors, source=str(tensor_file))
    adapter.file_meta = meta
    if mode == "hooks":
        adapter.attach(model)
    elif mode == "merge":
        adapter.merge(model)
    logger.info("loaded NASA adapter %s (%s) onto %s [%s]", tensor_file, ", ".join(meta["heads"]), model.name, mode)
    return adapter
