"""Incremental head selection: start from the top ``incremental_start`` NAS heads, train, rescan NAS on the
training examples with the adapter applied and, while the training-split ``pr_gap`` stays above
``incremental_gap`` (and fewer than ``incremental_max_rounds`` rounds ran), add the highest-NAS head not yet
selected and train another round (deltas carried over)."""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from nasa_lens.adapters import HeadAdapter
from nasa_lens.evaluate import bias_metrics
from nasa_lens.finetune.result import TrainResult
from nasa_lens.finetune.selection import nas_ranking
from nasa_lens.finetune.train import train_heads
from nasa_lens.heads import format_head, format_heads, ranked_heads
from nasa_lens.nas import scan_nas

logger = logging.getLogger("nasa_lens.finetune")


def train_incremental(model, train, val, cfg, fmt, ranking, checkpoint_dir, resume, callback, t0) -> TrainResult:
    if ranking is None:
        ranking = nas_ranking(model, train, fmt, limit=cfg.scan_limit, positions=cfg.nas_positions, batch_size=cfg.eval_batch_size)
    heads = ranked_heads(ranking)[: cfg.incremental_start]
    prev: HeadAdapter | None = None
    rounds: list[dict[str, Any]] = []
    scan_rows = train[: cfg.scan_limit]
    result: TrainResult | None = None
    for r in range(cfg.incremental_max_rounds):
        ck = Path(checkpoint_dir) / f"round{r}" if checkpoint_dir is not None else None
        result = train_heads(model, heads, train, val, cfg, fmt, init=prev, checkpoint_dir=ck, resume=resume, callback=callback, tag=f"round {r}")
        with result.adapter.applied(model):
            scan = scan_nas(model, scan_rows, fmt, positions=cfg.nas_positions, batch_size=cfg.eval_batch_size, progress=False)
        m = bias_metrics(scan.labels, scan.p_yes)
        # Nothing predicted "yes" leaves precision undefined; that is the strongest negative bias: count it as 1.
        gap = m["pr_gap"] if not math.isnan(m["pr_gap"]) else (1.0 if m["recall"] == 0 else math.nan)
        rounds.append({"round": r, "heads": [format_head(h) for h in heads], "train_pr_gap": gap, "steps": result.steps_done})
        logger.info("incremental round %d: heads %s, training pr_gap %.3f", r, format_heads(heads), gap)
        if not (gap > cfg.incremental_gap) or r + 1 == cfg.incremental_max_rounds:
            break
        nxt = next((h for h in ranked_heads(scan.mean) if h not in heads), None)
        if nxt is None:
            break
        rounds[-1]["added_next"] = format_head(nxt)
        heads = [*heads, nxt]
        prev = result.adapter
    assert result is not None
    result.rounds = rounds
    result.ranking = ranking
    result.seconds = time.perf_counter() - t0
    return result
