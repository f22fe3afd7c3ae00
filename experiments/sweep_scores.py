"""Scores against the exact effect: one row per head, the exact sweep's effect beside NAS and attribution.

Joins a committed exact sweep (``nasa-lens sweep``'s ``effects.csv``) with the NAS scan of the same questions
(``nas.csv``) and, when given, an attribution sweep of the same questions, and writes ``sweep_vs_scores.csv``
(``layer,head,effect_mean,effect_stderr,rank_effect,nas_mean,attribution``; rank 1 = the head whose removal
raises ``logit(Yes) - logit(No)`` most). Spearman over heads is then a one-line recomputation
(``tests/integration/test_evidence.py``). A bootstrap over questions for that correlation is not computed here.

    python experiments/sweep_scores.py --sweep figures/data/sweep_smollm2_strategyqa-test200_zero_after \\
        --nas figures/data/scans/smollm2-135m-instruct_strategyqa-test200_yes-no/nas.csv \\
        --attribution figures/data/sweep_smollm2_strategyqa-test200_attribution/effects.csv
"""
from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep", required=True, help="folder of an exact nasa-lens sweep")
    ap.add_argument("--nas", required=True, help="nas.csv of the same questions")
    ap.add_argument("--attribution", help="effects.csv of an attribution sweep of the same questions")
    args = ap.parse_args(argv)

    import pandas as pd

    from nasa_lens.io import atomic_path

    sweep = Path(args.sweep)
    effects = pd.read_csv(sweep / "effects.csv")
    table = effects[["layer", "head", "effect_mean", "effect_stderr"]].copy()
    table["rank_effect"] = table.effect_mean.rank(ascending=False, method="first").astype(int)
    table = table.merge(pd.read_csv(args.nas)[["layer", "head", "nas_mean"]], on=["layer", "head"], how="left")
    if args.attribution:
        attribution = pd.read_csv(args.attribution)[["layer", "head", "effect_mean"]]
        table = table.merge(attribution.rename(columns={"effect_mean": "attribution"}), on=["layer", "head"], how="left")
    table = table.sort_values("rank_effect")
    with atomic_path(sweep / "sweep_vs_scores.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    print(table.head(10).to_string(index=False))
    for col in [c for c in ("nas_mean", "attribution") if c in table]:
        print(f"Spearman(effect_mean, {col}) over {len(table)} heads: {table.effect_mean.corr(table[col], method='spearman'):+.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
