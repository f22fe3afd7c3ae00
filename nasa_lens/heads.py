"""Heads: a head is ``(layer, head)`` everywhere; its string form is ``"L.H"`` (``"18.4"``).

:func:`parse_heads` turns a CLI/config spec into a list of heads:

* ``"L.H,L.H,..."``: an explicit list;
* ``"top:K"``: the K heads with the highest mean NAS (needs a ranking);
* ``"bottom:K"``: the K heads with the lowest mean NAS (needs a ranking);
* ``"random:K"`` or ``"random:K:SEED"``: K heads drawn uniformly without replacement.
"""
from __future__ import annotations

from nasa_lens.vocab import NasaLensError

import random
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["Head", "HeadSpecError", "check_head", "check_head_spec", "check_receivers_after", "explicit_heads", "format_head", "format_heads", "parse_head", "parse_heads", "random_heads", "ranked_heads"]

Head = tuple[int, int]


class HeadSpecError(NasaLensError, ValueError):
    """A head specification cannot be parsed or names a head the model does not have."""


def format_head(head: Head) -> str:
    return f"{head[0]}.{head[1]}"


def format_heads(heads: Iterable[Head]) -> str:
    return ",".join(format_head(h) for h in heads)


def parse_head(text: str, n_layers: int | None = None, n_heads: int | None = None) -> Head:
    try:
        layer_s, head_s = text.strip().split(".")
        head = (int(layer_s), int(head_s))
    except ValueError:
        raise HeadSpecError(f"bad head {text!r}: expected LAYER.HEAD, e.g. 18.4") from None
    if head[0] < 0 or head[1] < 0:
        raise HeadSpecError(f"bad head {text!r}: layer and head must be >= 0")
    check_head(head, n_layers, n_heads, name=repr(text))
    return head


def check_head(
    head: Head, n_layers: int | None, n_heads: int | None, *, error: type[Exception] = HeadSpecError, name: str | None = None
) -> None:
    """Raise ``error`` (default :class:`HeadSpecError`) when ``head`` is not a head of a model with
    ``n_layers`` layers and ``n_heads`` heads per layer (``None``: not checked). The one range check of heads;
    ``name`` is how the message names the head (default ``L.H``)."""
    layer, idx = head
    name = name or format_head(head)
    if n_layers is not None and not 0 <= layer < n_layers:
        raise error(f"head {name}: layer {layer} out of range (the model has {n_layers} layers)")
    if n_heads is not None and not 0 <= idx < n_heads:
        raise error(f"head {name}: head {idx} out of range (the model has {n_heads} heads per layer)")


def ranked_heads(mean: np.ndarray, *, descending: bool = True) -> list[Head]:
    """All heads of a ``[layer, head]`` score array, highest first (lowest first if not ``descending``).
    NaN scores go last. Ties are broken by (layer, head) order, so the ranking is deterministic."""
    mean = np.asarray(mean, dtype=float)
    n_layers, n_heads = mean.shape
    key = -mean if descending else mean
    key = np.where(np.isnan(key), np.inf, key)
    flat = np.lexsort((np.arange(n_layers * n_heads), key.reshape(-1)))
    return [(int(i // n_heads), int(i % n_heads)) for i in flat]


def random_heads(k: int, n_layers: int, n_heads: int, seed: int = 0, exclude: Sequence[Head] = ()) -> list[Head]:
    pool = [(layer, h) for layer in range(n_layers) for h in range(n_heads) if (layer, h) not in set(exclude)]
    if k > len(pool):
        raise HeadSpecError(f"cannot draw {k} random heads from {len(pool)}")
    return sorted(random.Random(seed).sample(pool, k))


def parse_heads(spec: str | Sequence[Head], n_layers: int, n_heads: int, ranking: np.ndarray | None = None) -> list[Head]:
    """Parse a head spec (see module doc). ``ranking`` is a ``[layer, head]`` array of mean NAS."""
    if not isinstance(spec, str):
        return [parse_head(format_head(tuple(h)), n_layers, n_heads) for h in spec]
    text = spec.strip()
    kind, _, rest = text.partition(":")
    if kind in ("top", "bottom", "random"):
        parts = rest.split(":")
        try:
            k = int(parts[0])
            seed = int(parts[1]) if len(parts) > 1 else 0
        except (ValueError, IndexError):
            raise HeadSpecError(f"bad head spec {spec!r}: expected {kind}:K with K an integer") from None
        if k < 1 or k > n_layers * n_heads:
            raise HeadSpecError(f"bad head spec {spec!r}: K must be in 1..{n_layers * n_heads}")
        if kind == "random":
            return random_heads(k, n_layers, n_heads, seed)
        if ranking is None:
            raise HeadSpecError(f"head spec {spec!r} needs a NAS ranking (run a scan first)")
        if np.asarray(ranking).shape != (n_layers, n_heads):
            raise HeadSpecError(f"ranking shape {np.asarray(ranking).shape} does not match the model ({n_layers}, {n_heads})")
        return ranked_heads(ranking, descending=(kind == "top"))[:k]
    if not text:
        raise HeadSpecError("empty head spec")
    heads = [parse_head(t, n_layers, n_heads) for t in text.split(",") if t.strip()]
    if len(set(heads)) != len(heads):
        raise HeadSpecError(f"head spec {spec!r} names a head twice")
    return heads


def check_head_spec(spec: str, *, also: Sequence[str] = ()) -> str:
    """Check the *form* of a head spec before any model is loaded or any scan runs: ``top:K`` /
    ``bottom:K`` / ``random:K[:SEED]`` with an integer ``K >= 1``, or a list ``L.H,L.H`` of distinct heads (or
    one of the words in ``also``). Ranges against a model are checked later by :func:`parse_heads`.
    Returns the stripped spec; raises :class:`HeadSpecError`."""
    text = str(spec).strip()
    if not text:
        raise HeadSpecError("empty head spec: give top:K, bottom:K, random:K[:SEED] or L.H,L.H")
    if text in also:
        return text
    kind, sep, rest = text.partition(":")
    if sep and kind in ("top", "bottom", "random"):
        parts = rest.split(":")
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            raise HeadSpecError(f"bad head spec {spec!r}: expected {kind}:K with K an integer") from None
        if len(numbers) > 2:
            raise HeadSpecError(f"bad head spec {spec!r}: expected {kind}:K or {kind}:K:SEED")
        if numbers[0] < 1:
            raise HeadSpecError(f"bad head spec {spec!r}: K must be >= 1")
        return text
    heads = [parse_head(t) for t in text.split(",") if t.strip()]
    if not heads:
        raise HeadSpecError(f"bad head spec {spec!r}: no head in it")
    if len(set(heads)) != len(heads):
        raise HeadSpecError(f"head spec {spec!r} names a head twice")
    return text


def explicit_heads(spec: str) -> list[Head] | None:
    """The heads of a spec that lists them (``"L.H,L.H"``, form checked by :func:`check_head_spec`); None for
    ``top:K`` / ``bottom:K`` / ``random:K`` (they need a model or a ranking)."""
    text = check_head_spec(spec)
    kind, sep, _ = text.partition(":")
    if sep and kind in ("top", "bottom", "random"):
        return None
    return [parse_head(t) for t in text.split(",") if t.strip()]


def check_receivers_after(senders: Sequence[Head], receivers: Sequence[Head]) -> None:
    """Path patching: every receiver must sit in a layer after some sender (a path runs from a sender into a
    later layer; a receiver in the senders' first layer or before would only give NaN). Raises
    :class:`HeadSpecError` naming the first receiver that is after no sender."""
    if not senders:
        return
    first = min(senders)
    for r in receivers:
        if not any(r[0] > s[0] for s in senders):
            raise HeadSpecError(
                f"receiver {format_head(r)} is not after any sender: a path runs from a sender head to a receiver "
                f"in a later layer, and the earliest sender {format_head(first)} is in layer {first[0]}; choose "
                f"receivers in layers after {first[0]} (or leave --receivers out: every head after the first sender)"
            )
