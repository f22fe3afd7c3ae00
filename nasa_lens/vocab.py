"""Names only: the vocabulary every other module of nasa-lens shares.

Torch-free and import-free (standard library only), so the CLI can build its parsers and the configs can
validate values without loading torch. Every name, preset, mode, hook name, file name and colour scale that
more than one module needs is defined here once.
"""
from __future__ import annotations

# ------------------------------------------------------------------------------------------------ errors


class NasaLensError(Exception):
    """Base class of every error caused by the user's input (a bad argument, file, dataset, model name,
    adapter...). The CLI prints such an error as one line and exits with code 2; any other exception is an
    internal error (exit code 1)."""


class InputError(NasaLensError, ValueError):
    """A value given by the user is invalid (a config field, a CLI flag, an argument of a public function)."""


class ModelLoadError(NasaLensError, RuntimeError):
    """A model could not be loaded (or placed: a device or device map this machine lacks); the message names
    the model, the reason and how to get it."""


class InputFileNotFoundError(NasaLensError, FileNotFoundError):
    """A file or folder the user named does not exist (or is not what it should be)."""


def check_threshold(value: object, *, what: str = "threshold") -> float:
    """The one range check of a decision threshold on ``p_yes`` (the CLI's ``--threshold``, a saved fix's
    ``method.json``, the API's ``threshold=``): a real number strictly between 0 and 1 (NaN refused).
    Returns it as a float; raises :class:`InputError` starting with ``what``."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) < 1.0:
        raise InputError(f"{what} must be in (0, 1), got {value!r}")
    return float(value)


# ------------------------------------------------------------------------------------------------ models

DEFAULT_MODEL = "smollm2-135m-instruct"
"""The model every command and config uses unless told otherwise (embedded, no download)."""

# ------------------------------------------------------------------------------------------------ prompts

FORMATS: tuple[str, ...] = ("yes-no", "no-yes", "true-false", "false-true")
"""Prompt-format presets (:meth:`nasa_lens.prompts.PromptFormat.named`): candidate words and their order."""



def check_format(name: object, error: type[Exception] = InputError) -> str:
    """``name`` if it is a prompt-format preset of :data:`FORMATS`, else ``error`` (a :class:`NasaLensError`
    subclass: each config raises its own) with the one message every check gives."""
    if not isinstance(name, str) or name not in FORMATS:
        raise error(f"unknown prompt format {name!r}: format must be one of {list(FORMATS)}")
    return name


CONDITION_FORMATS: tuple[str, ...] = ("yes-no", "no-yes", "true-false")
"""The instruction-agnostic conditions scanned by default: Yes/No, the swapped order No/Yes, True/False."""

# ------------------------------------------------------------------------------------------------ metrics

VECTOR_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "pr_gap", "yes_rate", "mean_logit_diff")
"""The metrics computed from the answers and logit differences alone (no ranking, no calibration, unlike ``ece``
and ``auroc``): what an ablation curve or effect sweep can track, and what the study's paired deltas report."""

SUMMARY_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "pr_gap", "yes_rate")
"""The five metrics a summary shows (the study's figures, before/after tables and validation summaries)."""

# ------------------------------------------------------------------------------------------------ NAS

POSITIONS: tuple[str, ...] = ("after", "last")
"""NAS query positions: after the instruction's later candidate through the answer position, or the last only."""

# ------------------------------------------------------------------------------------------------ interventions

ABLATION_MODES: tuple[str, ...] = ("zero", "mean", "resample")
"""What an ablated head's output is replaced by."""

ABLATION_POSITIONS: tuple[str, ...] = ("all", "after", "last")
"""Where a head is ablated: every position; the suffix (after the instruction's later candidate through the
answer position, the NAS rows: what the suffix runner recomputes); the answer position only."""

SWEEP_POSITIONS: tuple[str, ...] = ("after", "all")
"""``nasa-lens sweep --positions``: ablate each head on the suffix (suffix runner) or on every position."""

SWEEP_METHODS: tuple[str, ...] = ("exact", "attribution")
"""``nasa-lens sweep --method``: each head ablated (exact) or the gradient estimate (attribution patching)."""

PAIR_KINDS: tuple[str, ...] = ("swap", "label")
"""Counterfactual pairs for activation patching."""

PATCH_TARGETS: tuple[str, ...] = ("z", "pattern")
"""What activation patching replaces per head: its output ``z`` or its attention pattern."""

# ------------------------------------------------------------------------------------------------ de-biasing

DEBIAS_METHODS: tuple[str, ...] = ("base", "threshold", "knockout", "mask", "steer", "nasa", "random", "all",
                                   "random-knockout", "random-mask", "random-steer")
"""The de-biasing fixes of :mod:`nasa_lens.debias` by registry name, in table order (a test checks the registry
matches): a comparison of several fixes runs and tables them in this order."""

# ------------------------------------------------------------------------------------------------ hook names


def pattern_hook_name(layer: int) -> str:
    """The hook point holding layer ``layer``'s attention probabilities ``[batch, head, q, k]``."""
    return f"blocks.{layer}.attn.hook_pattern"


def z_hook_name(layer: int) -> str:
    """The hook point holding layer ``layer``'s per-head attention output ``[batch, pos, head, d_head]``."""
    return f"blocks.{layer}.attn.hook_z"


# ------------------------------------------------------------------------------------------------ file names

NAS_SCORES_FILE = "nas_scores.npz"
NAS_META_FILE = "nas_scores.json"
NAS_RANKING_FILE = "nas.csv"
NAS_HEATMAP_FILE = "nas_heatmap"  # + .html / .png
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
HISTORY_FILE = "history.csv"
CHECKPOINT_FILE = "checkpoint.pt"
PATCHING_FILE = "patching.csv"
PATCHING_HEATMAP_FILE = "patching_heatmap"  # + .html / .png
DLA_TABLE_FILE = "dla.csv"
DLA_COMPONENTS_FILE = "components.csv"
DLA_SCORES_FILE = "dla_scores.npz"
DLA_META_FILE = "dla_scores.json"
COPYING_FILE = "copying.csv"
SWEEP_EFFECTS_FILE = "effects.csv"
SWEEP_EXAMPLES_FILE = "effects_by_example.csv"
SWEEP_META_FILE = "sweep.json"
SWEEP_HEATMAP_FILE = "sweep_heatmap"  # + .html / .png
SWEEP_PARTIAL_DIR = "sweep.partial"  # per-batch, per-layer results of an unfinished sweep (resume)
PATHS_FILE = "paths"  # + .csv / .npz / .json
COMPARISON_FILE = "comparison.csv"  # the de-biasing comparison table (one row per method and test set)
COMPARISON_META_FILE = "comparison.json"
COMPARISON_PREDICTIONS_FILE = "comparison_predictions.csv.gz"  # per question: method, dataset, id, label, p_yes, logit_diff, threshold
COMPARISON_PARTIAL_FILE = "comparison.partial.csv"  # the rows so far of a comparison still running
COMPARISON_FIGURE_FILE = "comparison"  # + .html / .png
FIXES_DIR = "methods"  # the fitted fixes of a comparison, one folder per method
REPORT_FILE = "report.md"
REPORT_HTML_FILE = "report.html"
ABLATION_FILE = "ablation.csv"
ADAPTER_FILE = "adapter.safetensors"
ADAPTER_META_FILE = "adapter.json"
CORRELATIONS_FILE = "correlations.csv"
CONDITION_LABELS_FILE = "labels.json"
MANIFEST_FILE = "manifest.json"  # a folder's list of files: the shipped datasets', a finished study's (written last)
PLOTLYJS_FILE = "plotly.min.js"  # the plotly.js bundle HTML figures of one folder share
VIAS = ("q", "k", "v")  # the receiver inputs of path patching

# ------------------------------------------------------------------------------------------------ colours

NAS_COLORSCALE = "RdBu_r"
"""Diverging scale of every signed heatmap (reversed RdBu: red = positive / No-leaning, blue = negative)."""

PLOTLYJS_MODES: tuple[str, ...] = ("inline", "shared")
"""How ``report.html`` gets plotly.js: inlined in the page, or the study's shared ``plotly.min.js``."""
