"""The report stage: figures (``ctx.work/figures``) and tables (``ctx.work/tables``) from the upstream stages,
and the results dictionary that becomes ``results.json``."""
from __future__ import annotations

from typing import Any

import pandas as pd

from nasa_lens.config import StudyConfig
from nasa_lens.study.stages import StageContext, safe_name

from nasa_lens.vocab import COMPARISON_FILE, CORRELATIONS_FILE, HISTORY_FILE
from nasa_lens.study.common import (
    CURVE_DIR,
    STAGE_ORDER,
    TRAINING_CURVE_COLUMNS,
    load_conditions,
    load_nas,
    stage_name,
    package_version,
    write_csv,
    bias_frame,
)


def build_report(cfg: StudyConfig, ctx: StageContext) -> dict[str, Any]:
    """Write figures (``ctx.work/figures``) and tables (``ctx.work/tables``) from the upstream stages;
    return the results dictionary (config + per-model stage summaries + figure names)."""
    from nasa_lens import plots
    from nasa_lens.plots import study as plots_study

    figdir, tables = ctx.work / "figures", ctx.work / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"version": package_version(), "config": cfg.to_dict(), "models": {}, "figures": {}}
    frames: dict[str, list[pd.DataFrame]] = {"nas_ranking": [], "conditions": [], "ablation": [], "finetune_history": [], "deltas": [], "debias": []}
    nas_by_model: dict[str, Any] = {}

    pending: list[tuple[Any, str]] = []

    def save(fig: Any, name: str) -> str:  # written below, all at once
        pending.append((fig, name))
        return name

    def tagged(frame: pd.DataFrame, model: str) -> pd.DataFrame:
        frame = frame.copy()
        frame.insert(0, "model", model)
        return frame

    for m in cfg.models:
        sm = safe_name(m)
        stages = {kind: ctx.upstream.get(stage_name(kind, m)) for kind in STAGE_ORDER[:-1]}
        summary = {kind: st.summary for kind, st in stages.items() if st is not None}
        figs: dict[str, str] = {}
        nas = load_nas(stages["nas"])
        nas_by_model[m] = nas
        figs["nas_heatmap"] = save(plots.nas_heatmap(nas, title=f"Mean NAS: {m} on {nas.dataset} ({nas.format}, {nas.positions}, n={nas.n})"),
                                   f"nas_heatmap_{sm}")
        figs["nas_top_heads"] = save(plots.top_heads_bar(nas, k=min(cfg.nas.top_k, nas.n_layers * nas.n_heads),
                                                         title=f"Top NAS heads of {m} (bars: +-1 stderr)"), f"nas_top_heads_{sm}")
        frames["nas_ranking"].append(tagged(nas.ranking_frame(), m))
        if stages["conditions"] is not None:
            conds = load_conditions(stages["conditions"])
            figs["conditions_heatmaps"] = save(plots.heatmap_grid(conds, title=f"Mean NAS of {m} by condition (shared scale)"),
                                               f"conditions_heatmaps_{sm}")
            corr = pd.read_csv(stages["conditions"].path / CORRELATIONS_FILE)
            frames["conditions"].append(tagged(corr, m))
            figs["condition_agreement"] = save(plots_study.condition_agreement(corr, title=f"{m}: agreement of the NAS ranking across conditions"),
                                               f"condition_agreement_{sm}")
        if stages["ablation"] is not None:
            from nasa_lens.causal import AblationCurveResult
            from nasa_lens.plots.causal import ablation_curve_figure

            curve = AblationCurveResult.load(stages["ablation"].path / CURVE_DIR)
            frames["ablation"].append(tagged(curve.to_dataframe(), m))
            figs["ablation"] = save(
                ablation_curve_figure(curve, title=f"{m}: ablating k heads ({cfg.ablation.mode}): top NAS heads vs random and "
                                                   f"bottom heads, n={len(curve.ids)}, 95% paired bootstrap bands"),
                f"ablation_{sm}",
            )
        if stages["finetune"] is not None:
            hist = pd.read_csv(stages["finetune"].path / HISTORY_FILE)
            frames["finetune_history"].append(tagged(hist, m))
            cols = [c for c in TRAINING_CURVE_COLUMNS if c in hist.columns]
            figs["training_curve"] = save(plots_study.training_curve(hist, columns=cols or None,
                                                                     title=f"{m}: NASA fine-tune of heads {summary['finetune'].get('heads', '')}"),
                                          f"training_curve_{sm}")
        if stages["after"] is not None:
            for ds, v in summary["after"]["datasets"].items():
                for metric, d in v["delta"].items():
                    if metric == "mcnemar":
                        continue
                    frames["deltas"].append(pd.DataFrame([{"model": m, "dataset": ds, "metric": metric, "delta": d["delta"],
                                                           "ci_low": d["ci"][0], "ci_high": d["ci"][1],
                                                           "mcnemar_p": v["delta"]["mcnemar"]["p_value"]}]))
        if stages.get("compare") is not None:
            from nasa_lens.plots.debias import comparison_figure

            comp = pd.read_csv(stages["compare"].path / COMPARISON_FILE)
            frames["debias"].append(tagged(comp, m))
            figs["debias"] = save(comparison_figure(comp, title=f"{m}: de-biasing fixes fitted on the train sample, test splits"),
                                  f"debias_{sm}")
        results["models"][m] = summary
        if stages["after"] is not None:
            figs["before_after"] = save(plots_study.before_after_bars(bias_frame({"models": {m: summary}}), m), f"before_after_{sm}")
        results["figures"][m] = figs
    bias = bias_frame(results)
    side: dict[str, str] = {"bias_metrics": save(plots_study.metrics_by_model(bias), "models_bias_metrics")}
    if len(cfg.models) > 1:
        side["nas_heatmaps"] = save(plots_study.nas_heatmaps_by_model(nas_by_model), "models_nas_heatmaps")
        if (bias["phase"] == "after").any():
            side["bias_metrics_after"] = save(plots_study.metrics_by_model(bias, phase="after"), "models_bias_metrics_after")
    results["figures"]["side_by_side"] = side
    # Each PNG export starts a browser in a child process: two at a time keeps both cores busy.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda item: plots.save_figure(item[0], figdir / item[1], png=cfg.report.png, include_plotlyjs="directory"), pending))
    write_csv(tables / "bias_metrics.csv", bias)
    for name, parts in frames.items():
        if parts:
            write_csv(tables / f"{name}.csv", pd.concat(parts, ignore_index=True))
    return results
