"""The study configuration: one typed, validated dataclass (:class:`StudyConfig`), loadable from TOML.

A config file mirrors the dataclasses: top-level keys (``models``, ``seed``, ``batch_size``...) and one
table per section (``[data]``, ``[bias]``, ``[nas]``, ``[conditions]``, ``[ablation]``, ``[finetune]``,
``[report]``). Every key is optional (the defaults are :class:`StudyConfig`'s, written out in
``configs/default.toml``); an unknown key or a value of the wrong type is an error that names the key,
the file and what was expected::

    >>> cfg = load_config("configs/quick.toml")                      # doctest: +SKIP
    >>> cfg = StudyConfig().with_overrides({"nas": {"limit": 16}})   # doctest: +SKIP
    >>> cfg.section("nas")                                           # doctest: +SKIP
    {'positions': 'after', 'limit': 16, 'top_k': 10}

``QUICK`` holds the ``--quick`` overrides (tiny sizes, ``configs/quick.toml`` is the default config with
them applied). :meth:`StudyConfig.section` is what a stage hashes for its cache key, so a change in one
section re-runs only the stages that read it (and the stages downstream of them).
"""
from __future__ import annotations

from nasa_lens.vocab import ABLATION_MODES, CONDITION_FORMATS, DEBIAS_METHODS, DEFAULT_MODEL, FORMATS, PLOTLYJS_MODES, InputError, InputFileNotFoundError, NasaLensError, POSITIONS, check_threshold

import copy
import dataclasses
import difflib
import hashlib
import json
import math
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "ConfigError",
    "StudyDataConfig",
    "StudyBiasConfig",
    "StudyNASConfig",
    "StudyConditionsConfig",
    "StudyAblationConfig",
    "StudyFinetuneConfig",
    "StudyCompareConfig",
    "StudyReportConfig",
    "StudyHTMLReportConfig",
    "StudyConfig",
    "QUICK",
    "FORMATS",
    "load_config",
    "parse_override",
]

_POSITIONS = POSITIONS
_ABLATION_MODES = ABLATION_MODES


class ConfigError(NasaLensError, ValueError):
    """A config file or override is invalid; the message names the key, the source and the problem."""


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


def _positive(value: int, key: str) -> None:
    _check(value >= 1, key, f"must be >= 1, got {value}")


def _known(value: str, allowed: tuple[str, ...], key: str) -> None:
    _check(value in allowed, key, f"must be one of {list(allowed)}, got {value!r}")


# ---------------------------------------------------------------------------------------------- sections


@dataclass
class StudyDataConfig:
    """Which examples every stage sees.

    Attributes:
        dataset: the main task. The NAS scan, the condition checks and the fine-tune use its *train* split;
            the bias report, the ablation and the after-report its *test* split (a stable hash split of
            ``test_fraction``, see :meth:`nasa_lens.datasets.YesNoDataset.split`).
        generalisation: further datasets evaluated (test split) before and after the fine-tune.
        train_limit, test_limit: label-balanced sample sizes of the two splits.
        test_fraction: share of the test split.
        options: per-dataset generator options, e.g. ``{"arithmetic": {"difficulty": 3}}``.
        format: the prompt format of every stage but the condition checks (a preset: yes-no, no-yes,
            true-false, false-true).
    """

    dataset: str = "lookup"  # difficulty 1 (``options``): the data SmolLM2 ranks well (AUROC ~0.89) yet answers "No"
    generalisation: list[str] = field(default_factory=lambda: ["strategyqa", "multistep"])
    train_limit: int = 64
    test_limit: int = 48
    test_fraction: float = 0.3
    options: dict[str, dict[str, Any]] = field(default_factory=lambda: {"lookup": {"difficulty": 1}})
    format: str = "yes-no"

    def __post_init__(self) -> None:
        _check(bool(self.dataset.strip()), "data.dataset", "must name a dataset")
        _known(self.format, FORMATS, "data.format")
        _positive(self.train_limit, "data.train_limit")
        _positive(self.test_limit, "data.test_limit")
        _check(0 < self.test_fraction < 1, "data.test_fraction", f"must be in (0, 1), got {self.test_fraction}")
        _check(self.dataset not in self.generalisation, "data.generalisation",
               f"must not contain the main dataset {self.dataset!r} (it is always evaluated)")
        _check(len(set(self.generalisation)) == len(self.generalisation), "data.generalisation", "names a dataset twice")

    @property
    def eval_datasets(self) -> list[str]:
        """The datasets of the bias and after reports: the main one first, then ``generalisation``."""
        return [self.dataset, *self.generalisation]

    def spec(self, name: str, split: str, limit: int, seed: int) -> dict[str, Any]:
        """What identifies one sample (hashed into the cache key of the stages that read it)."""
        return {"name": name, "split": split, "limit": limit, "seed": seed, "test_fraction": self.test_fraction,
                "options": dict(self.options.get(name, {}))}


@dataclass
class StudyBiasConfig:
    """The bias report (before and after the fine-tune): metrics with bootstrap intervals.

    Attributes:
        threshold: ``p_yes > threshold`` means "yes".
        n_boot: bootstrap resamples per interval.
    """

    threshold: float = 0.5
    n_boot: int = 1000

    def __post_init__(self) -> None:
        try:
            check_threshold(self.threshold)  # the one range check (CLI, method.json, API, config)
        except InputError:
            _check(False, "bias.threshold", f"must be in (0, 1), got {self.threshold}")
        _check(self.n_boot >= 0, "bias.n_boot", f"must be >= 0, got {self.n_boot}")


@dataclass
class StudyNASConfig:
    """The NAS scan on the train split.

    Attributes:
        positions: query positions NAS sums over, ``"after"`` or ``"last"``.
        limit: examples scanned (at most ``data.train_limit``; 0: all of them).
        top_k: heads listed in the report.
    """

    positions: str = "after"
    limit: int = 0
    top_k: int = 10

    def __post_init__(self) -> None:
        _known(self.positions, _POSITIONS, "nas.positions")
        _check(self.limit >= 0, "nas.limit", f"must be >= 0 (0: all train examples), got {self.limit}")
        _positive(self.top_k, "nas.top_k")


@dataclass
class StudyConditionsConfig:
    """Instruction-agnostic checks: the NAS ranking under other prompt formats (and other datasets).

    Attributes:
        formats: prompt formats compared (the one equal to ``data.format`` is the main scan itself).
        datasets: further datasets scanned in the ``yes-no`` format (train split).
        limit: examples per extra scan.
        top_k: the top-k overlap reported.
    """

    formats: list[str] = field(default_factory=lambda: list(CONDITION_FORMATS))
    datasets: list[str] = field(default_factory=lambda: ["strategyqa"])
    limit: int = 32
    top_k: int = 10

    def __post_init__(self) -> None:
        for f in self.formats:
            _known(f, FORMATS, "conditions.formats")
        _check(len(set(self.formats)) == len(self.formats), "conditions.formats", "names a format twice")
        _check(len(self.formats) + len(self.datasets) >= 2, "conditions", "needs at least two conditions to compare")
        _positive(self.limit, "conditions.limit")
        _positive(self.top_k, "conditions.top_k")


@dataclass
class StudyAblationConfig:
    """Ablate the top-k NAS heads against controls (random heads, the bottom-k heads) on the test split.

    Attributes:
        ks: head counts, ascending.
        mode: ``"mean"`` (a head's output replaced by its mean over the data, per position from the end),
            ``"zero"`` or ``"resample"`` (another example's output).
        n_random: random head sets drawn per k (the control; drawn outside the top-k).
        n_perm: permutation draws of the top-k vs random p-value.
        limit: test examples used (at most ``data.test_limit``; 0: all of them).
        positions: where the heads are ablated: ``"all"`` (every position), ``"after"`` (the suffix, after
            the later candidate through the answer: only those columns are recomputed, much faster) or
            ``"last"`` (the answer position).
    """

    ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    mode: str = "mean"
    n_random: int = 3
    n_perm: int = 1000
    limit: int = 0
    positions: str = "all"

    def __post_init__(self) -> None:
        _check(len(self.ks) >= 1, "ablation.ks", "must list at least one head count")
        for k in self.ks:
            _positive(k, "ablation.ks")
        _check(list(self.ks) == sorted(set(self.ks)), "ablation.ks", f"must be strictly ascending, got {self.ks}")
        _known(self.mode, _ABLATION_MODES, "ablation.mode")
        _check(self.n_random >= 0, "ablation.n_random", f"must be >= 0, got {self.n_random}")
        _positive(self.n_perm, "ablation.n_perm")
        _check(self.limit >= 0, "ablation.limit", f"must be >= 0 (0: all test examples), got {self.limit}")
        _known(self.positions, ("all", "after", "last"), "ablation.positions")


@dataclass
class StudyFinetuneConfig:
    """The NASA fine-tune of the flagged heads (on the train split), then the after-report.

    Attributes:
        enabled: run the fine-tune and after-report stages at all.
        heads: which heads to tune: ``"top:K"`` (by the NAS scan of the study), ``"bottom:K"``,
            ``"random:K[:SEED]"``, ``"incremental"``, ``"all"`` or ``"L.H,L.H"``.
        models: which of ``models`` to fine-tune (empty: all).
        val_fraction: share of the train split held out for validation / early stopping.
        nasa: further options of :class:`nasa_lens.finetune.NASAConfig` (``steps``, ``lr``, ``rank``...; the
            study sets ``heads``, ``format``, ``seed`` and ``progress`` itself); checked before any stage runs.
    """

    enabled: bool = True
    heads: str = "top:4"
    models: list[str] = field(default_factory=list)
    val_fraction: float = 0.25
    nasa: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(bool(self.heads.strip()), "finetune.heads", "must be a head spec such as 'top:4'")
        _check(0 < self.val_fraction < 1, "finetune.val_fraction", f"must be in (0, 1), got {self.val_fraction}")


@dataclass
class StudyCompareConfig:
    """De-biasing fixes side by side (:func:`nasa_lens.debias.compare_fixes`, as ``nasa-lens compare``): each
    fitted on the train sample of ``data.dataset`` (heads and settings chosen there only), applied, and evaluated
    on the test split of the main and generalisation datasets. Off by default (it adds the fixes' fit time).

    Attributes:
        enabled: run the compare stage.
        methods: fixes by registry name (base, threshold, knockout, mask, steer, nasa, random, random-knockout,
            random-mask, random-steer).
        k: heads of steer / nasa / random (knockout and mask choose 2-16 on the training sample).
        fit_limit: training examples each fix's setting is chosen on.
        steps: optimizer steps of nasa / random.
    """

    enabled: bool = False
    methods: list[str] = field(default_factory=lambda: ["base", "threshold", "knockout", "steer"])
    k: int = 8
    fit_limit: int = 32
    steps: int = 30

    def __post_init__(self) -> None:
        _check(len(self.methods) >= 1, "compare.methods", "must list at least one fix")
        for m in self.methods:
            _known(m, DEBIAS_METHODS, "compare.methods")
        _check(len(set(self.methods)) == len(self.methods), "compare.methods", "names a fix twice")
        _positive(self.k, "compare.k")
        _check(self.fit_limit >= 4, "compare.fit_limit", f"must be >= 4 (both labels in both halves), got {self.fit_limit}")
        _positive(self.steps, "compare.steps")


@dataclass
class StudyReportConfig:
    """The report stage.

    Attributes:
        png: also write every figure as PNG (needs a Chromium; HTML is always written).
        top_k: heads named in the report text.
    """

    png: bool = True
    top_k: int = 5

    def __post_init__(self) -> None:
        _positive(self.top_k, "report.top_k")


@dataclass
class StudyHTMLReportConfig:
    """``nasa-lens report DIR``: how ``report.html`` is (re)built from a finished study (not a study section:
    it changes no stage).

    Attributes:
        plotlyjs: inline: plotly.js inside the page (one self-contained ~5 MB file); shared: load the study's
            figures/plotly.min.js (a small page that needs that folder beside it).
    """

    plotlyjs: str = field(default="inline", metadata={"choices": PLOTLYJS_MODES})

    def __post_init__(self) -> None:
        _known(self.plotlyjs, PLOTLYJS_MODES, "plotlyjs")


# ---------------------------------------------------------------------------------------------- the config

_SECTIONS = ("data", "bias", "nas", "conditions", "ablation", "finetune", "compare", "report")


@dataclass
class StudyConfig:
    """Everything ``nasa-lens study`` does, in one place (see the module docstring).

    Attributes:
        models: models studied side by side (built-in names, folders, .gguf files or hub ids).
        seed: the seed of every sample, head draw and fine-tune.
        batch_size: examples per forward pass.
        device: where to run the models (None: the bridge's choice).
    """

    models: list[str] = field(default_factory=lambda: [DEFAULT_MODEL])
    seed: int = 0
    batch_size: int = 16
    device: str | None = None
    data: StudyDataConfig = field(default_factory=StudyDataConfig)
    bias: StudyBiasConfig = field(default_factory=StudyBiasConfig)
    nas: StudyNASConfig = field(default_factory=StudyNASConfig)
    conditions: StudyConditionsConfig = field(default_factory=StudyConditionsConfig)
    ablation: StudyAblationConfig = field(default_factory=StudyAblationConfig)
    finetune: StudyFinetuneConfig = field(default_factory=StudyFinetuneConfig)
    compare: StudyCompareConfig = field(default_factory=StudyCompareConfig)
    report: StudyReportConfig = field(default_factory=StudyReportConfig)

    def __post_init__(self) -> None:
        _check(len(self.models) >= 1, "models", "must list at least one model")
        _check(all(m.strip() for m in self.models), "models", "must not contain an empty name")
        _check(len(set(self.models)) == len(self.models), "models", f"names a model twice: {self.models}")
        _positive(self.batch_size, "batch_size")
        unknown = [m for m in self.finetune.models if m not in self.models]
        _check(not unknown, "finetune.models", f"{unknown} are not in models {self.models}")

    # ------------------------------------------------------------------ views

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["device"] is None:
            del d["device"]
        return d

    def section(self, name: str) -> dict[str, Any]:
        """One section as a plain dict (what a stage hashes into its cache key)."""
        if name not in _SECTIONS:
            raise ConfigError(f"unknown config section {name!r}; known: {list(_SECTIONS)}")
        return dataclasses.asdict(getattr(self, name))

    def finetuned_models(self) -> list[str]:
        if not self.finetune.enabled:
            return []
        return list(self.finetune.models) or list(self.models)

    def hash(self) -> str:
        """A short hash of the whole config."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def with_overrides(self, overrides: dict[str, Any], source: str = "overrides") -> StudyConfig:
        """A new config: this one with ``overrides`` (nested dicts, like a TOML file) applied and validated."""
        merged = _deep_merge(self.to_dict(), overrides)
        return _build(StudyConfig, merged, source, prefix="")

    def to_toml(self) -> str:
        """The config as TOML (what ``configs/default.toml`` holds, comments aside)."""
        return _to_toml(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> StudyConfig:
        return _build(cls, data, source, prefix="")

    @classmethod
    def quick(cls) -> StudyConfig:
        """The ``--quick`` config: the defaults with :data:`QUICK` applied."""
        return cls().with_overrides(QUICK, source="--quick")


QUICK: dict[str, Any] = {
    "data": {"train_limit": 16, "test_limit": 12, "generalisation": ["strategyqa"]},
    "bias": {"n_boot": 200},
    "nas": {"top_k": 5},
    "conditions": {"formats": ["yes-no", "no-yes"], "datasets": [], "limit": 8, "top_k": 5},
    "ablation": {"ks": [2], "n_random": 1, "limit": 8},
    "finetune": {"heads": "top:2", "nasa": {"steps": 2, "eval_every": 2}},
}
"""What ``--quick`` changes: tiny samples, fewer conditions, a few fine-tune steps (see ``configs/quick.toml``)."""


def load_config(path: str | os.PathLike[str] | None = None, *, quick: bool = False,
                overrides: dict[str, Any] | None = None) -> StudyConfig:
    """Read a TOML config (None: the defaults), then apply ``--quick`` and ``overrides`` (in that order).

    Raises:
        ConfigError: the file is not valid TOML, has an unknown key or a value of the wrong type; the message
            names the file and the key.
        FileNotFoundError: no such file.
    """
    cfg = StudyConfig()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputFileNotFoundError(f"config file {p} not found")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {p}: not valid TOML: {exc}") from None
        cfg = StudyConfig.from_dict(data, source=str(p))
    if quick:
        cfg = cfg.with_overrides(QUICK, source="--quick")
    if overrides:
        cfg = cfg.with_overrides(overrides, source="--set")
    return cfg


def parse_override(text: str) -> dict[str, Any]:
    """``"nas.limit=16"`` -> ``{"nas": {"limit": 16}}``; the value is read as TOML (``'["a", "b"]'``, ``true``),
    a bare word as a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. nas.limit=16")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


# ---------------------------------------------------------------------------------------------- building


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "options" and k != "nasa":
            out[k] = _deep_merge(out[k], v)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **copy.deepcopy(v)}
        else:
            out[k] = copy.deepcopy(v)
    return out


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is list:
        item = typing.get_args(tp)[0]
        plural = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(item)
        return f"a list of {plural}" if plural else f"a list (each {_type_name(item)})"
    if origin is dict:
        return "a table"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, getattr(tp, "__name__", str(tp)))


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    """``value`` checked against the annotation ``tp`` (ints are accepted where a number is expected)."""
    bad = ConfigError(f"config {source}: key {key!r} must be {_type_name(tp)}, got {_describe(value)}")
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key, source)
            except ConfigError:
                continue
        raise bad
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad
        return _build(tp, value, source, prefix=key + ".")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        _, vt = typing.get_args(tp)
        return {str(k): _convert(v, vt, f"{key}.{k}", source) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise bad  # pragma: no cover - an annotation this builder does not know


def _build(cls: type, data: dict[str, Any], source: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config {source}: {prefix.rstrip('.') or 'the file'} must be a table, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            where = f"[{prefix.rstrip('.')}]" if prefix else "the top level"
            raise ConfigError(
                f"config {source}: unknown key {prefix + key!r}{hint} (known keys in {where}: {', '.join(names)})"
            )
    kwargs = {k: _convert(v, hints[k], prefix + k, source) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"config {source}: {exc}") from None


# ---------------------------------------------------------------------------------------------- TOML out


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def _to_toml(d: dict[str, Any]) -> str:
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict) and v is not None]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"]
            lines += [f"{_toml_key(kk)} = {_toml_value(vv)}" for kk, vv in v.items() if vv is not None]
    return "\n".join(lines) + "\n"


_OLD_NAMES = {old: f"Study{old.replace('Section', 'Config')}" for old in ("DataConfig", "BiasConfig", "NASSection", "ConditionsConfig",
              "AblationConfig", "FinetuneConfig", "CompareSection", "ReportConfig", "HTMLReportConfig")}
"""The sections' names before the ``Study*Config`` ones (``AblationConfig`` also named the causal one)."""


def __getattr__(name: str) -> Any:
    if name in _OLD_NAMES:
        import warnings

        warnings.warn(f"nasa_lens.config.{name} is deprecated; use nasa_lens.config.{_OLD_NAMES[name]}", DeprecationWarning, stacklevel=2)
        return globals()[_OLD_NAMES[name]]
    raise AttributeError(f"module 'nasa_lens.config' has no attribute {name!r}")
