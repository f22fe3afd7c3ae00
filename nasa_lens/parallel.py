"""Data parallelism over ``torch.distributed``: rank/world facts, sharding, gathering, rank-0 writes.

Knows nothing about models or prompts. Under ``torchrun`` (or any initialised default process group with
more than one rank) a function decorated with :func:`over_examples` runs on this rank's shard of its
examples and returns the outputs of *all* examples, in the original order, on every rank (an
``all_gather_object``, which works on ``gloo`` and ``nccl``). Everything computed from those outputs
afterwards (means, bootstrap intervals, rankings) is therefore the same on every rank and the same as in one
process; only the writer (rank 0) writes files, shows progress bars and draws figures.

Sharding is **contiguous**: rank ``r`` takes the ``r``-th run of consecutive items (of the batch plan when
one is given, so every batch a rank runs is a batch one process would have run: the per-example outputs are
then bitwise equal to one process on CPU at the same thread count). Gathering scatters each rank's outputs
back by index, so the gathered order is the original order whatever the plan.

Without a process group (or with one rank) every helper is a no-op and a decorated function runs as is.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from nasa_lens.vocab import NasaLensError

__all__ = [
    "ParallelError",
    "World",
    "world",
    "is_writer",
    "shard",
    "gather_examples",
    "over_examples",
    "all_reduce_sum_",
    "split_batch",
    "weighted_sum",
    "barrier",
    "writer_only",
    "shows_progress",
    "launched_by_torchrun",
    "init_from_env",
]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class ParallelError(NasaLensError, ValueError):
    """A data-parallel run that cannot work as asked (e.g. more ranks than examples)."""


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``size`` processes; ``initialised`` when a default process
    group exists (``size`` is 1 and ``rank`` 0 otherwise)."""

    rank: int = 0
    size: int = 1
    initialised: bool = False

    @property
    def parallel(self) -> bool:
        """True when work is split over more than one process."""
        return self.initialised and self.size > 1


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() else None


def world() -> World:
    """Rank, world size and whether a default process group is initialised."""
    dist = _dist()
    if dist is None or not dist.is_initialized():
        return World()
    return World(rank=dist.get_rank(), size=dist.get_world_size(), initialised=True)


def is_writer() -> bool:
    """True on the one process that writes files, prints results and draws figures (rank 0)."""
    return world().rank == 0


# ------------------------------------------------------------------------------------------------ shard


def shard(
    n: int | Sequence[Any],
    *,
    groups: Sequence[Sequence[int]] | None = None,
    rank: int | None = None,
    size: int | None = None,
) -> list[int]:
    """The indices (into ``n`` items, or into the sequence ``n``) that ``rank`` of ``size`` processes runs.

    Contiguous: rank ``r`` takes items ``[r * n / size, (r + 1) * n / size)``. With ``groups`` (a batch plan:
    lists of indices that must stay together, in run order) whole groups are dealt out contiguously instead,
    group ``j`` going to the rank whose share of the items its first item falls in; the indices come back in
    plan order (a rank may get none when there are fewer groups than ranks).

    Raises:
        ParallelError: more ranks than items.
    """
    n_items = n if isinstance(n, int) else len(n)
    w = world()
    rank = w.rank if rank is None else rank
    size = w.size if size is None else size
    if size < 1 or not 0 <= rank < size:
        raise ParallelError(f"rank {rank} is not in a world of {size} processes")
    if size > n_items:
        raise ParallelError(
            f"{size} processes but only {n_items} examples: run with at most {n_items} processes "
            f"(torchrun --nproc-per-node) or give more examples"
        )
    if groups is None:
        return list(range(rank * n_items // size, (rank + 1) * n_items // size))
    out: list[int] = []
    start = 0
    for g in groups:
        if (start * size) // n_items == rank:
            out.extend(int(i) for i in g)
        start += len(g)
    if start != n_items:
        raise ValueError(f"the batch plan covers {start} items, expected {n_items}")
    return out


# ------------------------------------------------------------------------------------------------ gather


def _concat(parts: list[Any]) -> Any:
    """Concatenate per-example outputs along their first axis, recursing into tuples, lists of arrays
    and dicts. Plain lists (of ids, strings...) are concatenated as lists."""
    first = parts[0]
    if isinstance(first, tuple):
        return tuple(_concat([p[k] for p in parts]) for k in range(len(first)))
    if isinstance(first, dict):
        return {k: _concat([p[k] for p in parts]) for k in first}
    if isinstance(first, np.ndarray):
        return np.concatenate(parts, axis=0)
    if isinstance(first, list):
        return [x for p in parts for x in p]
    import torch

    if isinstance(first, torch.Tensor):
        return torch.cat(parts, dim=0)
    raise TypeError(f"cannot gather per-example outputs of type {type(first).__name__}")


def _take(value: Any, order: np.ndarray) -> Any:
    """Reorder the first axis of every leaf of ``value`` by ``order``."""
    if isinstance(value, tuple):
        return tuple(_take(v, order) for v in value)
    if isinstance(value, dict):
        return {k: _take(v, order) for k, v in value.items()}
    if isinstance(value, list):
        return [value[i] for i in order]
    if isinstance(value, np.ndarray):
        return value[order]
    import torch

    if isinstance(value, torch.Tensor):
        return value[torch.as_tensor(order, dtype=torch.long, device=value.device)]
    raise TypeError(f"cannot reorder per-example outputs of type {type(value).__name__}")


def gather_examples(local: Any, indices: Sequence[int], n: int) -> Any:
    """Outputs of all ``n`` examples, in the original order, on every rank.

    ``local`` holds this rank's per-example outputs (an array, tensor or list, or a tuple/dict of them; the
    first axis is the example, in the order of ``indices``); ``indices`` are their positions in the original
    sequence (``None`` outputs on a rank with no examples). Without a process group: ``local`` as given.
    """
    w = world()
    if not w.parallel:
        return local
    dist = _dist()
    if hasattr(local, "cpu") and not isinstance(local, np.ndarray):
        local = local.cpu()
    parts: list[Any] = [None] * w.size
    dist.all_gather_object(parts, (list(indices), local))
    got = [(idx, out) for idx, out in parts if len(idx)]
    all_idx = np.asarray([i for idx, _ in got for i in idx], dtype=np.int64)
    if len(all_idx) != n or set(all_idx.tolist()) != set(range(n)):
        raise RuntimeError(f"gathered {len(all_idx)} example outputs for {n} examples (ranks disagree on the data?)")
    merged = _concat([out for _, out in got])
    return _take(merged, np.argsort(all_idx, kind="stable"))


def over_examples(
    *, arg: str = "examples", groups: Callable[[dict[str, Any]], Sequence[Sequence[int]]] | None = None
) -> Callable[[F], F]:
    """Make a per-example function data-parallel.

    The decorated function takes a sequence of examples as its argument ``arg`` and returns per-example
    outputs (first axis = example, in input order; arrays, tensors, lists, or tuples/dicts of them). Inside
    a process group of several ranks it runs on this rank's contiguous shard (:func:`shard`; ``groups``
    maps the bound arguments to the batch plan so batches stay whole) and returns the gathered outputs of
    all examples on every rank (:func:`gather_examples`). A ``progress`` argument is switched off on every
    rank but the writer. Outside a process group the function runs unchanged.
    """

    def wrap(fn: F) -> F:
        sig = inspect.signature(fn)
        has_progress = "progress" in sig.parameters

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            w = world()
            if not w.parallel:
                return fn(*args, **kwargs)
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            items = list(bound.arguments[arg])
            plan = groups(dict(bound.arguments)) if groups is not None else None
            mine = shard(len(items), groups=plan)
            bound.arguments[arg] = [items[i] for i in mine]
            if has_progress and not w.rank == 0:
                bound.arguments["progress"] = False
            local = fn(*bound.args, **bound.kwargs) if mine else None
            return gather_examples(local, mine, len(items))

        run.__wrapped_parallel__ = True  # type: ignore[attr-defined]
        return run  # type: ignore[return-value]

    return wrap


# ------------------------------------------------------------------------------------------------ reduce


def all_reduce_sum_(tensors: Sequence[Any]) -> None:
    """Sum ``tensors`` over all ranks in place (no-op without a process group). One flat all-reduce."""
    w = world()
    tensors = [t for t in tensors if t is not None]
    if not w.parallel or not tensors:
        return
    import torch

    flat = torch.cat([t.reshape(-1) for t in tensors])
    _dist().all_reduce(flat)
    offset = 0
    for t in tensors:
        k = t.numel()
        t.copy_(flat[offset : offset + k].view_as(t))
        offset += k


def split_batch(rows: Sequence[Any]) -> tuple[list[Any], float]:
    """This rank's contiguous slice of a global batch and its weight ``len(slice) / len(rows)``: a loss that
    is a mean over the batch equals the sum over ranks of ``weight * local mean``, so scaling the local loss
    by the weight and summing the gradients (:func:`all_reduce_sum_`) gives the global batch's gradient.
    One process: ``(rows, 1.0)``.

    Raises:
        ParallelError: more ranks than rows in the batch.
    """
    rows = list(rows)
    if not world().parallel:
        return rows, 1.0
    mine = [rows[i] for i in shard(len(rows))]
    return mine, len(mine) / len(rows)


def weighted_sum(values: dict[str, float], weight: float) -> dict[str, float]:
    """``sum over ranks of weight * value`` for every key (the same keys on every rank): the global mean of
    per-rank means weighted by :func:`split_batch`. One process: ``values`` unchanged."""
    if not world().parallel:
        return dict(values)
    import torch

    keys = list(values)  # the same insertion order on every rank (one code path)
    t = torch.tensor([float(values[k]) * weight for k in keys], dtype=torch.float64)
    _dist().all_reduce(t)
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if world().parallel:
        _dist().barrier()


def shows_progress(progress: bool) -> bool:
    """Whether this process draws a progress bar it was asked for: only the writer (rank 0) does, so a
    ``torchrun`` log holds one bar per loop, not one per rank (a loop every rank runs in full, such as the
    NASA steps or the mean-ablation reference, would otherwise draw it once per rank)."""
    return bool(progress) and is_writer()


@contextlib.contextmanager
def writer_only() -> Iterator[bool]:
    """``with writer_only() as write: if write: ...``: yields True on the writer only, then waits for every
    rank, so nobody reads a file rank 0 has not finished writing."""
    try:
        yield is_writer()
    finally:
        barrier()


# ------------------------------------------------------------------------------------------------ launch


def launched_by_torchrun(env: dict[str, str] | None = None) -> bool:
    """True when ``torchrun`` (or another launcher) set ``RANK`` and ``WORLD_SIZE`` for this process."""
    env = os.environ if env is None else env
    return "RANK" in env and "WORLD_SIZE" in env


def init_from_env(device: str | None = None, device_map: Any = None) -> World:
    """Initialise the default process group from the launcher's environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``/``MASTER_PORT`` or torchrun's rendezvous), once.

    Backend: ``gloo`` when this rank computes on the CPU; on CUDA, ``cpu:gloo,cuda:nccl`` (object gathers go
    over gloo, tensor all-reduces over NCCL) with this rank's GPU (``LOCAL_RANK``) made current.
    Returns the resulting :class:`World` (unchanged when not launched by torchrun or already initialised).
    """
    dist = _dist()
    if dist is None or not launched_by_torchrun() or dist.is_initialized():
        return world()
    import torch

    on_cuda = (device is not None and str(device).startswith("cuda")) or (device_map is not None and torch.cuda.is_available())
    if on_cuda:
        if not torch.cuda.is_available():
            raise ParallelError(f"device {device!r} asked for but CUDA is not available here")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device_map is None:
            torch.cuda.set_device(local)
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend)
    w = world()
    logger.info("process group: rank %d of %d (%s)", w.rank, w.size, backend)
    return w


def rank_device(device: str | None) -> str | None:
    """Under torchrun, a bare ``cuda`` means this rank's GPU (``cuda:LOCAL_RANK``); anything else as given."""
    if device == "cuda" and launched_by_torchrun():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def destroy() -> None:
    """Tear down the default process group if this module's caller created it (idempotent)."""
    dist = _dist()
    if dist is not None and dist.is_initialized():
        dist.destroy_process_group()
