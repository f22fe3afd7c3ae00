"""The one interface every de-biasing fix implements, its file format and the registry of methods by name.

A fix is a :class:`DebiasMethod`: construct it with its options, :meth:`~DebiasMethod.fit` it on training
examples (labelled yes/no), then use :meth:`~DebiasMethod.apply` as a context manager around any forward
pass of the model. Leaving the context removes everything the fix installed (also after an exception), so
the model gives bitwise its clean logits again. A fix that moves the decision instead of the model
(``threshold``) changes nothing inside the context and reports its cut-off in :attr:`DebiasMethod.threshold`
(0.5 for every other fix), which evaluation uses as the decision threshold on ``p_yes``.

Files (:meth:`DebiasMethod.save` / :func:`load_method`): a folder holding ``method.json`` (format, version,
method name, options, fitted state, the heads, the base model name and :func:`nasa_lens.models.weights_hash`)
and, where the fix has tensors, ``tensors.safetensors`` (its sha256 recorded in ``method.json``). Loading
onto another model (name or weights hash) or a corrupt file raises :class:`DebiasError`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from nasa_lens.heads import Head, format_head, parse_head
from nasa_lens.io import atomic_path, read_json, write_json
from nasa_lens.prompts import PromptFormat
from nasa_lens.vocab import InputError, check_format

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = [
    "DEBIAS_FORMAT",
    "DEBIAS_VERSION",
    "METHOD_FILE",
    "TENSOR_FILE",
    "DebiasError",
    "DebiasMethod",
    "METHODS",
    "register",
    "method_names",
    "make_method",
    "load_method",
    "read_method_meta",
    "gold_labels",
    "prompt_format",
    "predict_p_yes",
    "positive_int",
    "fit_key",
    "balanced_accuracy",
]

logger = logging.getLogger(__name__)

DEBIAS_FORMAT = "nasa-lens-debias"
DEBIAS_VERSION = 1
METHOD_FILE = "method.json"
TENSOR_FILE = "tensors.safetensors"


class DebiasError(InputError):
    """A de-biasing fix cannot be made, fitted, loaded or applied; the message says why."""


METHODS: dict[str, type[DebiasMethod]] = {}


def register(cls: type[DebiasMethod]) -> type[DebiasMethod]:
    """Class decorator: list a fix under its ``name`` in :data:`METHODS`."""
    if cls.name in METHODS:
        raise RuntimeError(f"de-biasing method {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls


def method_names() -> list[str]:
    return list(METHODS)


def make_method(name: str, **options: Any) -> DebiasMethod:
    """A fresh, unfitted fix by registry name (``options`` go to its constructor)."""
    cls = METHODS.get(name)
    if cls is None:
        raise DebiasError(f"unknown de-biasing method {name!r}; known: {', '.join(METHODS)}")
    return cls(**options)


def gold_labels(examples: Sequence[Any]) -> np.ndarray:
    """1 for gold "yes", 0 for "no"; both labels required (else :class:`DebiasError`)."""
    y = np.array([1 if getattr(ex, "label", None) == "yes" else 0 if getattr(ex, "label", None) == "no" else -1 for ex in examples])
    if (y < 0).any():
        raise DebiasError("every training example needs a gold label ('yes' or 'no')")
    if not ((y == 1).any() and (y == 0).any()):
        raise DebiasError("fitting a de-biasing fix needs training examples of both labels")
    return y


def prompt_format(name: str) -> PromptFormat:
    """The prompt-format preset ``name``; an unknown name is a :class:`DebiasError`."""
    check_format(name, DebiasError)
    return PromptFormat.named(name)


def predict_p_yes(model: LoadedModel, examples: Sequence[Any], fmt: PromptFormat, batch_size: int) -> np.ndarray:
    """``p_yes`` of every example (no progress bar), with whatever the model has attached."""
    from nasa_lens.evaluate import predict

    return predict(model, list(examples), fmt, batch_size=batch_size, progress=False)[0]


def positive_int(name: str, value: Any) -> int:
    """``value`` if it is a positive int (not a bool), else a :class:`DebiasError` naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DebiasError(f"{name} must be a positive int, got {value!r}")
    return value


class DebiasMethod:
    """Base class of every fix. Subclasses set ``name`` and implement ``_fit``, ``_hooks`` (or override
    ``apply``), ``_state``/``_tensors`` and ``_restore``.

    Attributes:
        heads: the heads the fix acts on (chosen on the training split; empty for ``base``/``threshold``).
        threshold: the decision threshold on ``p_yes`` evaluation should use with this fix.
        fit_seconds: wall time of :meth:`fit` (head selection included).
        model_name, base_weights_hash: the model it was fitted on (set by :meth:`fit`).
        info: free-form facts about the fit (candidates tried, training-split scores), saved with it.
    """

    name: ClassVar[str] = ""
    changes_model: ClassVar[bool] = True
    fits_threshold: ClassVar[bool] = False
    """True for a fix whose fitted state is its decision threshold (``threshold``)."""
    option_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.heads: list[Head] = []
        self.threshold: float = 0.5
        self.fit_seconds: float = float("nan")
        self.model_name: str | None = None
        self.base_weights_hash: str | None = None
        self.info: dict[str, Any] = {}
        self._val: list[Any] | None = None

    # ------------------------------------------------------------------ interface

    @property
    def fitted(self) -> bool:
        return self.model_name is not None

    @property
    def n_params(self) -> int:
        """How many numbers the fix fitted on the training data and stores (head indices not counted)."""
        return 0

    def options(self) -> dict[str, Any]:
        return {k: _jsonable(getattr(self, k)) for k in self.option_names}

    def fit(self, model: LoadedModel, train: Sequence[Any], *, val: Sequence[Any] | None = None) -> DebiasMethod:
        """Fit on labelled training examples (heads, directions, thresholds...); returns ``self``. ``val``:
        validation examples for the fixes that train (they hold some training examples out otherwise)."""
        from nasa_lens.models import weights_hash

        train = list(train)
        gold_labels(train)
        t0 = time.perf_counter()
        self._val = None if val is None else list(val)
        try:
            self._fit(model, train)
        finally:
            self._val = None
        self.fit_seconds = time.perf_counter() - t0
        self.model_name = model.name
        self.base_weights_hash = weights_hash(model)
        logger.info("fitted %s in %.1f s (heads %s)", self.name, self.fit_seconds, ",".join(map(format_head, self.heads)))
        return self

    @contextlib.contextmanager
    def apply(self, model: LoadedModel) -> Iterator[LoadedModel]:
        """Apply the fix to ``model`` for the duration of the block; everything is removed on exit. A fix is
        applied once at a time: ``fix.apply`` nested inside itself (which would apply it twice, e.g. steering
        twice as far) raises :class:`DebiasError`, for every method."""
        self._check_fitted(model)
        if getattr(self, "_applying", False):
            raise DebiasError(f"{self.name}: this fix is already applied (a nested fix.apply() would apply it twice); "
                              "leave the outer block first")
        self._applying = True
        try:
            with self._apply(model):
                yield model
        finally:
            self._applying = False

    @contextlib.contextmanager
    def _apply(self, model: LoadedModel) -> Iterator[LoadedModel]:
        """The fix's own application (default: its forward hooks for the block); subclasses may override."""
        hooks = self._hooks(model)
        if not hooks:
            yield model
            return
        with model.bridge.hooks(fwd_hooks=hooks):
            yield model

    def save(self, out_dir: str | Path) -> Path:
        """Write ``method.json`` (+ ``tensors.safetensors``) into ``out_dir`` atomically; returns the folder."""
        if not self.fitted:
            raise DebiasError(f"{self.name}: cannot save a fix that was not fitted")
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self._tensors().items()}
        sha = None
        if tensors:
            with atomic_path(out / TENSOR_FILE) as tmp:
                save_file(tensors, str(tmp), metadata={"format": f"{DEBIAS_FORMAT}/{DEBIAS_VERSION}"})
            sha = _sha256(out / TENSOR_FILE)
        self._save_extra(out)
        meta = {
            "format": DEBIAS_FORMAT,
            "version": DEBIAS_VERSION,
            "method": self.name,
            "base_model": self.model_name,
            "base_weights_hash": self.base_weights_hash,
            "heads": [format_head(h) for h in self.heads],
            "threshold": self.threshold,
            "fit_seconds": self.fit_seconds,
            "n_params": self.n_params,
            "options": self.options(),
            "state": self._state(),
            "info": _jsonable(self.info),
            "tensor_sha256": sha,
        }
        write_json(out / METHOD_FILE, meta)
        return out

    # ------------------------------------------------------------------ for subclasses

    def _fit(self, model: LoadedModel, train: list[Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _hooks(self, model: LoadedModel) -> list[tuple[str, Callable[..., Tensor | None]]]:
        return []

    def _state(self) -> dict[str, Any]:
        return {}

    def _tensors(self) -> dict[str, Tensor]:
        return {}

    def _save_extra(self, out: Path) -> None:
        """Write files beside ``method.json`` (the NASA adapter)."""

    def _restore(self, state: Mapping[str, Any], tensors: Mapping[str, Tensor], folder: Path, model: LoadedModel) -> None:
        """Set the fitted state from ``method.json``'s ``state`` and the tensors."""

    def _check_fitted(self, model: LoadedModel) -> None:
        if not self.fitted:
            raise DebiasError(f"{self.name}: fit() (or load_method) the fix before applying it")
        if model.name != self.model_name:
            raise DebiasError(f"{self.name}: fitted on {self.model_name!r}, cannot be applied to {model.name!r}")

    def __repr__(self) -> str:
        heads = ",".join(map(format_head, self.heads))
        return f"{type(self).__name__}({self.options()}, heads=[{heads}], fitted={self.fitted})"


def _jsonable(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_method_meta(folder: str | Path) -> dict[str, Any]:
    """``method.json`` of a saved fix, checked for format and version."""
    folder = Path(folder).expanduser()
    meta_file = folder / METHOD_FILE if folder.suffix != ".json" else folder
    if not meta_file.is_file():
        raise DebiasError(f"no saved de-biasing fix at {folder}: expected a folder holding {METHOD_FILE}")
    try:
        meta = read_json(meta_file)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DebiasError(f"{meta_file} is corrupt (not valid JSON: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != DEBIAS_FORMAT:
        raise DebiasError(f"{meta_file} is not a nasa-lens de-biasing fix (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != DEBIAS_VERSION:
        raise DebiasError(f"{meta_file}: format version {meta.get('version')!r}; this nasa-lens reads {DEBIAS_VERSION}")
    _check_meta_fields(meta_file, meta)
    return meta


def _check_meta_fields(meta_file: Path, meta: dict[str, Any]) -> None:
    """The fields of ``method.json`` that steer evaluation, checked before any model loads: ``threshold`` (the
    one range check, :func:`nasa_lens.vocab.check_threshold`) and the numbers of ``state``."""
    from nasa_lens.vocab import check_threshold

    def bad(field: str, want: str, got: Any) -> DebiasError:
        return DebiasError(f"{meta_file}: field {field!r} must be {want}, got {got!r}")

    if "threshold" in meta:
        try:
            check_threshold(meta["threshold"])
        except InputError:
            raise bad("threshold", "a number in (0, 1)", meta["threshold"]) from None
    for key in ("heads", "options", "state"):
        if key in meta and not isinstance(meta[key], (list if key == "heads" else dict)):
            raise bad(key, "a list of \"LAYER.HEAD\" strings" if key == "heads" else "an object", meta[key])
    state = meta.get("state") or {}
    if "alpha" in state:
        a = state["alpha"]
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a):
            raise bad("state.alpha", "a finite number", a)
    if "n_reference" in state:
        n = state["n_reference"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise bad("state.n_reference", "a non-negative integer", n)
    if state.get("candidate_ids") is not None:
        ids = state["candidate_ids"]
        if not isinstance(ids, list) or len(ids) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            raise bad("state.candidate_ids", "a list of two token ids", ids)


def load_method(folder: str | Path, model: LoadedModel, *, check_weights: bool = True) -> DebiasMethod:
    """Load a fix saved by :meth:`DebiasMethod.save` for ``model`` (same name and weights hash, else
    :class:`DebiasError`). The fix is returned unapplied: use ``with fix.apply(model): ...``."""
    from nasa_lens.models import weights_hash

    folder = Path(folder).expanduser()
    meta = read_method_meta(folder)
    name = meta.get("method")
    if name not in METHODS:
        raise DebiasError(f"{folder / METHOD_FILE}: unknown de-biasing method {name!r}; known: {', '.join(METHODS)}")
    if meta.get("base_model") != model.name:
        raise DebiasError(
            f"the fix at {folder} was fitted on base model {meta.get('base_model')!r}, not on {model.name!r}; "
            "load it onto the model it was fitted on"
        )
    if check_weights:
        got = weights_hash(model)
        if got != meta.get("base_weights_hash"):
            raise DebiasError(
                f"the fix at {folder} was fitted on other weights of {model.name!r}: base weights hash "
                f"{meta.get('base_weights_hash')}, this model {got}"
            )
    tensors: dict[str, Tensor] = {}
    if meta.get("tensor_sha256"):
        tfile = folder / TENSOR_FILE
        if not tfile.is_file():
            raise DebiasError(f"{tfile} is missing (method.json records a tensor file)")
        if _sha256(tfile) != meta["tensor_sha256"]:
            raise DebiasError(f"{tfile} is corrupt or truncated: its sha256 does not match {METHOD_FILE}")
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(tfile))
        except Exception as exc:  # noqa: BLE001 - any parse failure is a corrupt file
            raise DebiasError(f"{tfile} is corrupt: {exc}") from None
    try:
        fix = METHODS[name](**meta.get("options", {}))
        fix.heads = [parse_head(h, model.n_layers, model.n_heads) for h in meta.get("heads", [])]
    except (TypeError, ValueError) as exc:
        raise DebiasError(f"{folder / METHOD_FILE} does not fit {model.name!r}: {exc}") from None
    fix.threshold = float(meta.get("threshold", 0.5))
    fix.fit_seconds = float(meta.get("fit_seconds") or float("nan"))
    fix.info = dict(meta.get("info") or {})
    fix.model_name = meta["base_model"]
    fix.base_weights_hash = meta.get("base_weights_hash")
    fix._restore(meta.get("state", {}), tensors, folder, model)
    return fix


def balanced_accuracy(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    pred = p > threshold
    tpr = (pred & (y == 1)).sum() / max((y == 1).sum(), 1)
    tnr = (~pred & (y == 0)).sum() / max((y == 0).sum(), 1)
    return float((tpr + tnr) / 2)


def fit_key(y: np.ndarray, p: np.ndarray, size: float) -> tuple[float, float, float]:
    """The criterion every fix uses to pick its free setting on the training split (higher is better):
    balanced accuracy at ``p_yes > 0.5``, then the smaller ``|pr_gap|``, then the smaller ``size`` (fewer
    heads, a smaller steering strength)."""
    from nasa_lens.evaluate import bias_metrics

    gap = bias_metrics(y, p)["pr_gap"]
    return (round(balanced_accuracy(y, p), 9), -(abs(gap) if gap == gap else 1.0), -float(size))
