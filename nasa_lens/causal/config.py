"""The configs of the causal studies: one validated dataclass per procedure. Torch-free (the CLI builds its
flags from them, :mod:`nasa_lens.commands.flags`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from nasa_lens.heads import Head, HeadSpecError, check_head_spec
from nasa_lens.vocab import (
    ABLATION_MODES,
    ABLATION_POSITIONS,
    SWEEP_METHODS,
    SWEEP_POSITIONS,
    VECTOR_METRICS,
    InputError,
    NasaLensError,
    check_format,
    check_threshold,
)

__all__ = ["CURVE_METRICS", "VECTOR_METRICS", "CausalError", "AblationConfig", "AblationCurveConfig", "EffectSweepConfig", "PatchingConfig"]

CURVE_METRICS: tuple[str, ...] = ("yes_rate", "recall", "precision", "pr_gap", "accuracy", "mean_logit_diff")
"""The metrics :func:`nasa_lens.causal.runner.vector_metrics` computes for many resamples at once."""


class CausalError(NasaLensError, ValueError):
    """A causal study is mis-specified (bad config, ranking of the wrong shape, no counterfactual pairs)."""


@dataclass
class AblationConfig:
    """One ablation (``nasa-lens ablate``).

    Attributes:
        heads: a head spec (``top:K``, ``bottom:K``, ``random:K[:SEED]``, ``L.H,L.H``) or a list of heads.
        mode: ``zero``, ``mean`` or ``resample`` (the reference for mean/resample is the evaluated data).
        format: prompt format preset.
        positions: ``all`` (every position), ``after`` (the suffix: after the later candidate through the
            answer) or ``last`` (the answer position); only the columns the ablation can change are recomputed.
        batch_size: examples per forward.
        n_boot: bootstrap resamples per interval (examples resampled).
        seed: seed of the bootstrap, the random head sets and the resample sources.
        threshold: ``p_yes > threshold`` means "yes".
        pool_size: reference examples kept whole for resample ablation.
    """

    heads: str | list[Head] = "top:4"
    mode: str = "zero"
    positions: str = "all"
    format: str = "yes-no"
    batch_size: int = 16
    n_boot: int = 1000
    seed: int = 0
    threshold: float = 0.5
    pool_size: int = 32

    def __post_init__(self) -> None:
        if self.mode not in ABLATION_MODES:
            raise CausalError(f"unknown ablation mode {self.mode!r}; choose one of {list(ABLATION_MODES)}")
        check_format(self.format, CausalError)
        _check_common(self.batch_size, self.n_boot, self.threshold)
        if self.mode == "resample" and self.pool_size < 2:
            raise CausalError(f"resample ablation needs pool_size >= 2, got {self.pool_size}")
        _check_positions(self.positions)
        if isinstance(self.heads, str):
            if not self.heads.strip():
                raise CausalError("heads must be a head spec like top:4 or 18.4,20.1")
            try:
                check_head_spec(self.heads)  # its form, before any model is loaded or any scan runs
            except HeadSpecError as exc:
                raise CausalError(f"--heads: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not isinstance(self.heads, str):
            d["heads"] = [list(h) for h in self.heads]
        return d


def _check_positions(positions: str) -> None:
    if positions not in ABLATION_POSITIONS:
        raise CausalError(f"unknown ablation positions {positions!r}; choose one of {list(ABLATION_POSITIONS)}")


def _check_common(batch_size: int, n_boot: int, threshold: float) -> None:
    if batch_size < 1:
        raise CausalError(f"batch_size must be >= 1, got {batch_size}")
    if n_boot < 1:
        raise CausalError(f"n_boot must be >= 1, got {n_boot}")
    try:
        check_threshold(threshold)
    except InputError as exc:
        raise CausalError(str(exc)) from None


@dataclass
class AblationCurveConfig:
    """The ablation curve: top-k NAS heads against random-k and bottom-k controls.

    Attributes:
        ks: head counts (strictly ascending, >= 1).
        mode: ``zero``, ``mean`` or ``resample`` (reference = the evaluated data).
        n_random_seeds: random head sets per k (0: no random control, no p-values).
        exclude_top_from_random: draw the random heads from outside the top-k (a cleaner control).
        metrics: which metrics the table reports (keys of :func:`vector_metrics`).
        n_boot: bootstrap draws (examples resampled; the same draw for the clean and ablated runs).
        n_perm: permutation draws for the top-k (and bottom-k) vs random p-value.
        positions: where the heads are ablated: ``all``, ``after`` (the suffix) or ``last`` (see
            :class:`AblationConfig`).
        seed: seed of the bootstrap, the permutations, the random head sets and the resample sources.
        batch_size: examples per forward.
        threshold: ``p_yes > threshold`` means "yes".
        format: prompt format preset.
        pool_size: reference examples kept whole for resample ablation.
    """

    ks: tuple[int, ...] = (1, 2, 4, 8, 16)
    mode: str = "zero"
    positions: str = "all"
    n_random_seeds: int = 3
    exclude_top_from_random: bool = True
    metrics: tuple[str, ...] = CURVE_METRICS
    n_boot: int = 1000
    n_perm: int = 1000
    seed: int = 0
    batch_size: int = 16
    threshold: float = 0.5
    format: str = "yes-no"
    pool_size: int = 32

    def __post_init__(self) -> None:
        self.ks = tuple(int(k) for k in self.ks)
        self.metrics = tuple(self.metrics)
        if not self.ks:
            raise CausalError("ks must list at least one head count")
        if any(k < 1 for k in self.ks):
            raise CausalError(f"every k must be >= 1, got ks={list(self.ks)}")
        if list(self.ks) != sorted(set(self.ks)):
            raise CausalError(f"ks must be strictly ascending, got {list(self.ks)}")
        if self.mode not in ABLATION_MODES:
            raise CausalError(f"unknown ablation mode {self.mode!r}; choose one of {list(ABLATION_MODES)}")
        _check_positions(self.positions)
        if self.n_random_seeds < 0:
            raise CausalError(f"n_random_seeds must be >= 0, got {self.n_random_seeds}")
        unknown = [m for m in self.metrics if m not in VECTOR_METRICS]
        if unknown:
            raise CausalError(f"unknown metrics {unknown}; choose from {list(VECTOR_METRICS)}")
        if self.n_perm < 1:
            raise CausalError(f"n_perm must be >= 1, got {self.n_perm}")
        check_format(self.format, CausalError)
        _check_common(self.batch_size, self.n_boot, self.threshold)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ks"], d["metrics"] = list(self.ks), list(self.metrics)
        return d


@dataclass
class EffectSweepConfig:
    """Per-head ablation effect on ``logit(Yes) - logit(No)`` at the answer position (``nasa-lens sweep``).

    Attributes:
        method: ``exact`` (ablate each head alone) or ``attribution`` (gradient approximation).
        mode: the ablation the effect is of: ``zero``, ``mean`` or ``resample``.
        positions: ``after`` (ablate the suffix: after the later candidate through the answer; the suffix
            runner recomputes only those columns) or ``all`` (every position).
        heads: ``all`` or a head spec ``L.H,L.H`` / ``random:K[:SEED]`` (the heads to sweep).
        batch_size: examples per forward.
        format: prompt format preset.
        pool_size: reference examples kept whole for resample ablation.
        seed: seed of the resample sources and of random head sets.
    """

    method: str = "exact"
    mode: str = "zero"
    positions: str = "after"
    heads: str = "all"
    batch_size: int = 16
    format: str = "yes-no"
    pool_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in SWEEP_METHODS:
            raise CausalError(f"unknown sweep method {self.method!r}; choose one of {list(SWEEP_METHODS)}")
        if self.mode not in ABLATION_MODES:
            raise CausalError(f"unknown ablation mode {self.mode!r}; choose one of {list(ABLATION_MODES)}")
        if self.positions not in SWEEP_POSITIONS:
            raise CausalError(f"unknown positions {self.positions!r}; choose one of {list(SWEEP_POSITIONS)}")
        if self.batch_size < 1:
            raise CausalError(f"batch_size must be >= 1, got {self.batch_size}")
        check_format(self.format, CausalError)
        if self.mode == "resample" and self.pool_size < 2:
            raise CausalError(f"resample ablation needs pool_size >= 2, got {self.pool_size}")
        try:
            spec = check_head_spec(self.heads, also=("all",))
        except HeadSpecError as exc:
            raise CausalError(f"--heads: {exc}") from None
        if spec.split(":")[0] in ("top", "bottom"):
            raise CausalError(f"--heads {spec}: a sweep takes all, L.H,L.H or random:K[:SEED] (top/bottom need a NAS ranking)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PatchingConfig:
    """Activation patching on counterfactual pairs (``nasa-lens patch``).

    Attributes:
        pairs: ``swap`` (the same question, candidates in the other order) or ``label`` (two questions of one
            generator with the same token length and opposite gold labels).
        what: ``z`` (head output) or ``pattern`` (attention pattern).
        max_pairs: use at most this many pairs (None: all).
        format: prompt format preset.
        batch_size: examples per forward.
        n_boot: bootstrap resamples per interval (pairs resampled).
        n_perm: permutation draws per p-value.
        seed: seed of the pairing, the bootstrap and the permutations.
    """

    pairs: str = "swap"
    what: str = "z"
    max_pairs: int | None = None
    format: str = "yes-no"
    batch_size: int = 16
    n_boot: int = 1000
    n_perm: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pairs not in ("swap", "label"):
            raise CausalError(f"unknown pairs {self.pairs!r}; choose 'swap' or 'label'")
        if self.what not in ("z", "pattern"):
            raise CausalError(f"unknown patch target {self.what!r}; choose 'z' or 'pattern'")
        if self.max_pairs is not None and self.max_pairs < 1:
            raise CausalError(f"max_pairs must be >= 1 (or None), got {self.max_pairs}")
        check_format(self.format, CausalError)
        _check_common(self.batch_size, self.n_boot, 0.5)
