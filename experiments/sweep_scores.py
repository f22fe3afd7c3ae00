"""Scores against the exact effect: NAS, DLA ``via_no`` and attribution beside an exact sweep, per head and per
question, with bootstrap CIs over questions for their Spearman correlation with the effect.

Joins a committed exact sweep (``nasa-lens sweep``'s ``effects_by_example.csv.gz``) with per-question scores of
the same questions and writes into the sweep's folder:

* ``scores_by_example.csv.gz``: ``id,layer,head,effect`` and one column per score given (``nas``,
  ``attribution``, ``dla_via_no``, ``dla_total``, ``other_effect``), on the questions every input holds;
* ``sweep_vs_scores.csv``: one row per head, ``layer,head,effect_mean,effect_stderr,rank_effect`` and each
  score's mean (``nas_mean``, ``attribution``, ``dla_via_no``, ``dla_total``, ``other_effect``) over the shared
  questions, and ``effect_shared``, the effect's mean over the same questions (``effect_mean`` is over every
  question of the sweep); rank 1 = the head whose removal raises ``logit(Yes) - logit(No)`` most;
* ``spearman.csv``: per score, Spearman over heads of its per-head mean against ``effect_mean``, with a 95%
  percentile bootstrap over questions (:func:`nasa_lens.causal.bootstrap_rank_correlation`: 1000 resamples,
  seed 0; the same question draw for the effect and the score). ``tests/integration/test_evidence.py`` recomputes both the
  point value and the bounds from ``scores_by_example.csv.gz``.

Signs: a head whose removal raises "Yes" (effect > 0) is one that pushed towards "No", so DLA (negative = towards
"No") is expected to correlate *negatively* with the effect, NAS and attribution positively.

    python experiments/sweep_scores.py --sweep figures/data/sweep_smollm2_strategyqa-test200_zero_after \\
        --nas figures/data/scans/smollm2-135m-instruct_strategyqa-test200_yes-no \\
        --attribution figures/data/sweep_smollm2_strategyqa-test200_attribution \\
        --dla figures/data/dla_smollm2_strategyqa-test200

``--other SWEEP`` adds a second sweep's per-question effect (e.g. mean vs zero ablation, or all positions vs the
suffix) as the score ``other_effect``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

KEY = ["id", "layer", "head"]
SWEEP_FILE = "effects_by_example.csv.gz"  # what nasa-lens sweep writes per question


def by_example(folder: Path, file: str, column: str, name: str):
    """``folder/file`` (a per-question, per-head CSV) as ``id,layer,head,<name>``."""
    import pandas as pd

    if not (folder / file).is_file():
        raise SystemExit(f"{folder} holds no {file}")
    return pd.read_csv(folder / file)[KEY + [column]].rename(columns={column: name})


def dla_by_example(folder: Path):
    """``nasa-lens dla``'s per-example scores as ``id,layer,head,dla_via_no,dla_total``."""
    from nasa_lens.dla import DLAResult

    frame = DLAResult.load(folder).to_dataframe()
    return frame[KEY + ["via_no", "total"]].rename(columns={"via_no": "dla_via_no", "total": "dla_total"})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep", required=True, help="folder of an exact nasa-lens sweep")
    ap.add_argument("--nas", help="folder of a NAS scan of the same questions (nas_by_example.csv.gz)")
    ap.add_argument("--attribution", help="folder of an attribution sweep of the same questions")
    ap.add_argument("--dla", help="folder of a nasa-lens dla run on the same questions")
    ap.add_argument("--other", help="folder of a second exact sweep (its effect becomes the score other_effect)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import numpy as np
    import pandas as pd

    from nasa_lens.causal import bootstrap_rank_correlation
    from nasa_lens.io import atomic_path, write_csv_gz

    sweep = Path(args.sweep)
    frame = by_example(sweep, SWEEP_FILE, "effect", "effect")
    scores = []
    if args.nas:
        scores.append(by_example(Path(args.nas), "nas_by_example.csv.gz", "nas", "nas"))
    if args.attribution:
        scores.append(by_example(Path(args.attribution), SWEEP_FILE, "effect", "attribution"))
    if args.dla:
        scores.append(dla_by_example(Path(args.dla)))
    if args.other:
        scores.append(by_example(Path(args.other), SWEEP_FILE, "effect", "other_effect"))
    for s in scores:
        frame = frame.merge(s, on=KEY, how="inner")
    frame = frame.sort_values(KEY, kind="stable").reset_index(drop=True)
    names = [c for c in frame.columns if c not in KEY + ["effect"]]
    n_q = frame.id.nunique()
    if n_q < 3:
        raise SystemExit(f"only {n_q} questions are shared by the sweep and the scores")
    write_csv_gz(sweep / "scores_by_example.csv.gz", frame)

    heads = pd.read_csv(sweep / "effects.csv")[["layer", "head", "effect_mean", "effect_stderr"]]
    heads["rank_effect"] = heads.effect_mean.rank(ascending=False, method="first").astype(int)
    means = frame.groupby(["layer", "head"])[names + ["effect"]].mean().reset_index()
    means = means.rename(columns={"nas": "nas_mean", "effect": "effect_shared"})
    heads = heads.merge(means, on=["layer", "head"], how="left")
    heads = heads.sort_values("rank_effect")
    with atomic_path(sweep / "sweep_vs_scores.csv") as tmp:
        heads.to_csv(tmp, index=False, float_format="%.6g")

    rows = []
    for name in names:
        wide = {c: frame.pivot(index="id", columns=["layer", "head"], values=c).sort_index(axis=1)
                for c in ("effect", name)}
        r = bootstrap_rank_correlation(wide["effect"].to_numpy(), wide[name].to_numpy(), n_boot=args.n_boot, seed=args.seed)
        rows.append({"score": name, **r})
    table = pd.DataFrame(rows)
    with atomic_path(sweep / "spearman.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    print(heads.head(10).to_string(index=False))
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
