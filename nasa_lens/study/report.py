"""The study report (``report.md``), one small function per section.

Each ``*_section(result)`` returns a :class:`Section` (its title and its markdown lines, the heading not
included); :data:`SECTIONS` lists them in report order and :func:`report_markdown` joins them. Another format
(e.g. an HTML report) can reuse the same sections and their titles. Every measured number appears with its
interval, and generated sentences say which way each result points.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasa_lens.study.common import fmt_number
from nasa_lens.vocab import SUMMARY_METRICS

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.study.result import StudyResult

__all__ = ["Section", "SECTIONS", "REPORT_TITLE", "report_sections", "report_markdown"]

REPORT_TITLE = "Negative bias in yes/no answers: study report"


@dataclass
class Section:
    """One section of the report: ``title`` (heading text), ``lines`` (markdown body, without the heading)
    and the heading ``level`` (1: the report title, 2: a section)."""

    title: str
    lines: list[str] = field(default_factory=list)
    level: int = 2

    @property
    def slug(self) -> str:
        """A stable anchor id from the title (``"1. Bias report..."`` -> ``"1-bias-report..."``)."""
        return "-".join("".join(c if c.isalnum() else " " for c in self.title.lower()).split())

    def markdown_lines(self) -> list[str]:
        return ["#" * self.level + " " + self.title, "", *self.lines]

    def markdown(self) -> str:
        return "\n".join(self.markdown_lines())


# ------------------------------------------------------------------------------------------- helpers


def _ci(m: dict[str, Any], k: str) -> str:
    lo, hi = (m.get("ci", {}).get(k) or [None, None])
    return f"{fmt_number(m.get(k))} [{fmt_number(lo)}, {fmt_number(hi)}]"


def _pct(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{100 * x:.0f}%"


def _figure_md(result: StudyResult, name: str | None, caption: str) -> str:
    if not name:
        return ""
    rel = Path(os.path.relpath(result.figures_dir, result.out_dir))
    png, html = result.figures_dir / f"{name}.png", rel / f"{name}.html"
    if png.is_file():
        return f"![{caption}]({(rel / f'{name}.png').as_posix()})\n\n*{caption}* ([interactive]({html.as_posix()}))\n"
    return f"*{caption}*: [{name}.html]({html.as_posix()})\n"


def _bias_sentence(model: str, ds: str, m: dict[str, Any]) -> str:
    """One sentence: the yes-rate (with its interval) against the 50% of label-balanced data, and the gap."""
    yes = m.get("yes_rate")
    lo, hi = (m.get("ci", {}).get("yes_rate") or [None, None])
    head = f"- {model} on {ds} (n={m.get('n')}): yes-rate {_pct(yes)} [{_pct(lo)}, {_pct(hi)}] on label-balanced data (unbiased: 50%)"
    if yes is not None and yes == 0:
        return head + ": it answers \"No\" to every question, recall 0 - the extreme form of the negative bias."
    if yes is not None and yes == 1:
        return head + ": it answers \"Yes\" to every question - a positive bias."
    if hi is not None and hi < 0.5:
        verdict = "a negative bias (the interval lies below 50%)"
    elif lo is not None and lo > 0.5:
        verdict = "a positive bias (the interval lies above 50%)"
    else:
        verdict = "no bias this sample can resolve (the interval contains 50%)"
    return (f"{head}: {verdict}; precision {fmt_number(m.get('precision'))} vs recall {fmt_number(m.get('recall'))}, "
            f"gap {_ci(m, 'pr_gap')} (positive: the negative-bias signature).")


def ablation_sentence(model: str, ab: dict[str, Any]) -> str:
    rows = ab.get("by_k", [])
    if not rows:
        return ""

    def finite(x: Any) -> bool:
        return x is not None and isinstance(x, (int, float)) and math.isfinite(x)

    more = [r for r in rows if finite(r["yes_rate_top_delta"]) and finite(r["yes_rate_random_mean_delta"])
            and r["yes_rate_top_delta"] > r["yes_rate_random_mean_delta"]]
    significant = [r for r in more if finite(r["p_top_vs_random"]) and r["p_top_vs_random"] < 0.05]
    if more:
        direction = (f"raises the yes-rate more than ablating as many random heads at {len(more)} of {len(rows)} head counts"
                     f" ({'significantly (permutation p < 0.05) at ' + str(len(significant)) + ' of them' if significant else 'at none of them significantly: every permutation p >= 0.05'})")
    else:
        direction = "does not raise the yes-rate more than ablating as many random heads at any head count"
    best = max(rows, key=lambda r: (r["yes_rate_top_delta"] - r["yes_rate_random_mean_delta"])
               if finite(r["yes_rate_top_delta"]) and finite(r["yes_rate_random_mean_delta"]) else -math.inf)
    lo, hi = best["yes_rate_top_delta_ci"]
    verdict = ("consistent with these heads causing part of the negative bias" if significant else
               "so this sample does not show that these heads cause the negative bias")
    last = rows[-1]
    ld_top, ld_rand = last.get("logit_diff_top_delta"), last.get("logit_diff_random_mean_delta")
    ld_dir = ("towards \"Yes\"" if finite(ld_top) and ld_top > 0 else "towards \"No\"" if finite(ld_top) and ld_top < 0 else "not at all")
    logit = (f" The logit difference logit(Yes) - logit(No), a finer measure than the thresholded yes-rate, moves {ld_dir} "
             f"with the top-{last['k']} heads ablated ({fmt_number(ld_top, '+.3f')}, vs {fmt_number(ld_rand, '+.3f')} for random heads; "
             f"p={fmt_number(last.get('p_logit_diff_top_vs_random'), '.3g')}).")
    return (f"- {model}: without ablation the yes-rate is {_pct(ab.get('baseline_yes_rate'))} (n={ab.get('n')}). Ablating the top-k "
            f"NAS heads {direction}. Largest margin at k={best['k']} (heads {best['heads_top']}): yes-rate "
            f"{_pct(best['yes_rate_top'])} (change {fmt_number(best['yes_rate_top_delta'], '+.3f')} [{fmt_number(lo, '+.3f')}, {fmt_number(hi, '+.3f')}]) "
            f"vs {_pct(best['yes_rate_random_mean'])} for random heads and {_pct(best['yes_rate_bottom'])} for the bottom-k heads "
            f"(p={fmt_number(best['p_top_vs_random'], '.3g')}); {verdict}.{logit}")


# ------------------------------------------------------------------------------------------- sections


def header_section(result: StudyResult) -> Section:
    """The title, what was studied (models, data, format, seed, config hash) and how to read the numbers."""
    cfg, res = result.config, result.results
    d = cfg.data
    L: list[str] = [
        f"nasa-lens {res.get('version')} - models: {', '.join(cfg.models)} - main dataset **{d.dataset}** "
        f"(train n={d.train_limit}, test n={d.test_limit}), generalisation: {', '.join(d.generalisation) or 'none'} - "
        f"prompt format {d.format} - seed {cfg.seed} - config hash `{cfg.hash()}`.",
        "",
        "Stages: bias report, NAS scan (negative attention score, Yu et al. NAACL 2025), instruction-agnostic checks, "
        "ablation against controls, NASA fine-tune of the flagged heads, after-report and generalisation. "
        "Intervals are 95% percentile bootstrap intervals over examples; NAS errors are +-1 standard error.",
        "",
    ]
    return Section(REPORT_TITLE, L, level=1)


def bias_section(result: StudyResult) -> Section:
    """Bias metrics with intervals per model and dataset, one sentence each on the direction of the bias."""
    res = result.results
    side = res.get("figures", {}).get("side_by_side", {})
    models = res.get("models", {})
    L: list[str] = []
    L += ["| model | dataset | n | accuracy | precision | recall | precision - recall | yes-rate | AUROC |",
          "|---|---|---|---|---|---|---|---|---|"]
    for m, r in models.items():
        for ds, x in r.get("bias", {}).get("datasets", {}).items():
            L.append(f"| {m} | {ds} | {x['n']} | {_ci(x, 'accuracy')} | {_ci(x, 'precision')} | {_ci(x, 'recall')} | "
                     f"{_ci(x, 'pr_gap')} | {_ci(x, 'yes_rate')} | {fmt_number(x.get('auroc'))} |")
    L.append("")
    for m, r in models.items():
        for ds, x in r.get("bias", {}).get("datasets", {}).items():
            L.append(_bias_sentence(m, ds, x))
    L += ["", _figure_md(result, side.get("bias_metrics"), "Bias metrics by model and dataset"), ""]
    return Section("1. Bias report (before any change)", L)


def nas_section(result: StudyResult) -> Section:
    """The top NAS heads of each model and the NAS heatmaps."""
    cfg, res = result.config, result.results
    side = res.get("figures", {}).get("side_by_side", {})
    models = res.get("models", {})
    figs = res.get("figures", {})
    L: list[str] = []
    for m, r in models.items():
        n = r.get("nas", {})
        if not n:
            continue
        top = n.get("top_heads", [])[: cfg.report.top_k]
        heads = ", ".join(f"{h['head']} ({fmt_number(h['nas_mean'])} +- {fmt_number(h['nas_stderr'])})" for h in top)
        L.append(f"- {m} ({n['shape'][0]} layers x {n['shape'][1]} heads, n={n['n']} train examples, positions={n['positions']}): "
                 f"top heads {heads}. {_pct(n.get('share_positive'))} of heads attend more to \"No\" than to \"Yes\" on average "
                 f"(positive mean NAS).")
        L.append("")
        L.append(_figure_md(result, figs.get(m, {}).get("nas_heatmap"), f"Mean NAS per head, {m} (red: attends to \"No\")"))
    if side.get("nas_heatmaps"):
        L += [_figure_md(result, side["nas_heatmaps"], "Mean NAS, models side by side (shared colour scale)"), ""]
    return Section("2. NAS scan", L)


def conditions_section(result: StudyResult) -> Section:
    """Whether the NAS ranking holds under other prompt formats and datasets."""
    res = result.results
    models = res.get("models", {})
    figs = res.get("figures", {})
    L: list[str] = [
          "Is the ranking of heads a property of the head or of one instruction? The same heads are scored under other "
          "prompt formats (candidate order, other words) and on other datasets; Spearman r compares the per-head mean NAS, "
          "the top-k overlap the sets of flagged heads.", ""]
    for m, r in models.items():
        c = r.get("conditions")
        if not c:
            continue
        L += ["| model | condition a | condition b | Spearman r | p | top-k overlap |", "|---|---|---|---|---|---|"]
        for row in c["correlations"]:
            L.append(f"| {m} | {row['a']} | {row['b']} | {fmt_number(row['spearman_r'])} | {fmt_number(row['spearman_p'], '.2g')} | "
                     f"{fmt_number(row['top_k_overlap'], '.2f')} (k={row['k']}) |")
        v = c["vs_main"]
        r_mean = v.get("spearman_mean")
        verdict = ("largely instruction-agnostic" if r_mean is not None and math.isfinite(r_mean) and r_mean >= 0.5
                   else "only partly shared across conditions" if r_mean is not None and math.isfinite(r_mean) and r_mean > 0
                   else "not shared across conditions")
        L += ["", f"- {m}: against the main condition ({c['main']}) the mean Spearman r is {fmt_number(r_mean)} (lowest {fmt_number(v.get('spearman_min'))}), "
                  f"mean top-{c['k']} overlap {fmt_number(v.get('top_k_overlap_mean'), '.2f')}: the NAS ranking is {verdict}.", ""]
        L.append(_figure_md(result, figs.get(m, {}).get("conditions_heatmaps"), f"Mean NAS by condition, {m}"))
    return Section("3. Instruction-agnostic checks", L)


def ablation_section(result: StudyResult) -> Section:
    """The ablation curve against random and bottom-k heads, with a generated verdict."""
    cfg, res = result.config, result.results
    models = res.get("models", {})
    figs = res.get("figures", {})
    L: list[str] = [
          f"The top-k NAS heads are ablated ({cfg.ablation.mode} ablation) on the test split and the yes-rate measured; controls: "
          f"{cfg.ablation.n_random} random head sets per k and the bottom-k heads. If the flagged heads cause the negative bias, "
          "ablating them should raise the yes-rate more than the controls.", ""]
    for m, r in models.items():
        ab = r.get("ablation")
        if not ab:
            continue
        L += ["| model | k | yes-rate top-k (change [95% CI]) | yes-rate random (mean +- sd) | yes-rate bottom-k | p top vs random | "
              "accuracy top-k / random | logit-diff change top-k / random |",
              "|---|---|---|---|---|---|---|---|"]
        for row in ab["by_k"]:
            lo, hi = row["yes_rate_top_delta_ci"]
            L.append(f"| {m} | {row['k']} | {fmt_number(row['yes_rate_top'])} ({fmt_number(row['yes_rate_top_delta'], '+.3f')} [{fmt_number(lo, '+.3f')}, "
                     f"{fmt_number(hi, '+.3f')}]) | {fmt_number(row['yes_rate_random_mean'])} +- {fmt_number(row['yes_rate_random_sd'])} | "
                     f"{fmt_number(row['yes_rate_bottom'])} | {fmt_number(row['p_top_vs_random'], '.3g')} | {fmt_number(row['accuracy_top'])} / "
                     f"{fmt_number(row['accuracy_random_mean'])} | {fmt_number(row['logit_diff_top_delta'], '+.3f')} / "
                     f"{fmt_number(row['logit_diff_random_mean_delta'], '+.3f')} |")
        L += ["", ablation_sentence(m, ab), ""]
        L.append(_figure_md(result, figs.get(m, {}).get("ablation"),
                            f"Change in yes-rate and in logit(Yes) - logit(No) vs the number of ablated heads, {m}"))
    return Section("4. Ablation against controls", L)


def finetune_section(result: StudyResult) -> Section:
    """The NASA fine-tune: what was trained, the training loss, validation before / after."""
    res = result.results
    models = res.get("models", {})
    figs = res.get("figures", {})
    L: list[str] = []
    any_ft = False
    for m, r in models.items():
        ft = r.get("finetune")
        if not ft:
            continue
        any_ft = True
        vb, va = ft.get("val_before") or {}, ft.get("val_after") or {}
        L += [f"- {m}: trained {ft.get('n_params', 0):,} parameters (the query rows of heads {ft.get('heads')}) for "
              f"{ft.get('steps_done')} steps (batch {ft.get('nasa', {}).get('batch_size')}, lr {ft.get('nasa', {}).get('lr')}) on "
              f"{ft.get('n_train')} training examples, {ft.get('n_val')} held out; training loss {fmt_number(ft.get('train_loss_first'))} -> "
              f"{fmt_number(ft.get('train_loss_last'))}; validation yes-rate {_pct(vb.get('yes_rate'))} -> {_pct(va.get('yes_rate'))}, "
              f"accuracy {fmt_number(vb.get('accuracy'))} -> {fmt_number(va.get('accuracy'))} (kept: step {ft.get('best_step')}"
              f"{', stopped early' if ft.get('stopped_early') else ''}).", ""]
        L.append(_figure_md(result, figs.get(m, {}).get("training_curve"), f"Training curve, {m}"))
    if not any_ft:
        L += ["The fine-tune is disabled in this config.", ""]
    return Section("5. NASA fine-tune", L)


def after_section(result: StudyResult) -> Section:
    """Bias metrics after the fine-tune with paired deltas, on the training task and on new datasets."""
    cfg, res = result.config, result.results
    side = res.get("figures", {}).get("side_by_side", {})
    models = res.get("models", {})
    figs = res.get("figures", {})
    L: list[str] = []
    for m, r in models.items():
        af = r.get("after")
        if not af:
            continue
        L += ["| model | dataset | metric | before | after | change [95% CI] |", "|---|---|---|---|---|---|"]
        before = r["bias"]["datasets"]
        for ds, v in af["datasets"].items():
            for k in SUMMARY_METRICS:
                dd = v["delta"][k]
                L.append(f"| {m} | {ds} | {k} | {fmt_number(before[ds].get(k))} | {fmt_number(v['after'].get(k))} | "
                         f"{fmt_number(dd['delta'], '+.3f')} [{fmt_number(dd['ci'][0], '+.3f')}, {fmt_number(dd['ci'][1], '+.3f')}] |")
        L.append("")
        for ds, v in af["datasets"].items():
            dg, dy, dacc = v["delta"]["pr_gap"], v["delta"]["yes_rate"], v["delta"]["accuracy"]
            role = "the training task (held-out test split)" if ds == cfg.data.dataset else "a dataset not trained on (generalisation)"
            def moved(dd: dict[str, Any]) -> str:
                lo, hi = dd["ci"]
                if dd["delta"] is None or lo is None or hi is None:
                    return "undefined on this sample"
                if lo > 0 or hi < 0:
                    return "a change the interval resolves"
                return "within noise (the interval contains 0)"
            mc = v["delta"]["mcnemar"]
            L.append(f"- {m} on {ds}, {role}: yes-rate {_pct(before[ds].get('yes_rate'))} -> {_pct(v['after'].get('yes_rate'))} "
                     f"({moved(dy)}); precision-recall gap {fmt_number(before[ds].get('pr_gap'))} -> {fmt_number(v['after'].get('pr_gap'))} "
                     f"({'n/a' if dg['delta'] is None else 'smaller' if dg['delta'] < 0 else 'larger' if dg['delta'] > 0 else 'unchanged'}, {moved(dg)}); "
                     f"accuracy {fmt_number(dacc['delta'], '+.3f')} ({moved(dacc)}); answers fixed {mc['fixed']}, broken {mc['broken']} "
                     f"(McNemar p={fmt_number(mc['p_value'], '.2g')}).")
        L += ["", _figure_md(result, figs.get(m, {}).get("before_after"), f"Before vs after the fine-tune, {m}"), ""]
    if side.get("bias_metrics_after"):
        L += [_figure_md(result, side["bias_metrics_after"], "Bias metrics after the fine-tune, models side by side"), ""]
    return Section("6. After the fine-tune, and generalisation", L)


def compare_section(result: StudyResult) -> Section | None:
    """De-biasing fixes side by side (the compare stage; None when it did not run)."""
    models = result.results.get("models", {})
    figs = result.results.get("figures", {})
    rows = [(m, row) for m, r in models.items() for row in (r.get("compare") or {}).get("rows", [])]
    if not rows:
        return None
    L = ["Every fix fitted on the train sample of the main dataset (heads and settings chosen there only) and "
         "evaluated on the test splits (docs/debias.md).", "",
         "| model | dataset | fix | accuracy | pr_gap | yes-rate | AUROC | params |", "|---|---|---|---|---|---|---|---|"]
    L += [f"| {m} | {r['dataset']} | {r['method']} | {fmt_number(r['accuracy'])} | {fmt_number(r['pr_gap'])} | {_pct(r['yes_rate'])} | "
          f"{fmt_number(r['auroc'])} | {int(r['params']):,} |" for m, r in rows]
    L += ["", "Fit times: `comparison.csv` in the compare stage's folder."]
    L.append("")
    for m in models:
        L.append(_figure_md(result, figs.get(m, {}).get("debias"), f"De-biasing fixes, {m}"))
    return Section("7. De-biasing fixes side by side", L)


def timings_section(result: StudyResult) -> Section:
    """Wall-clock and CPU seconds per stage, and the files written."""
    L: list[str] = [
          "Wall-clock and process CPU seconds of the run that computed each stage (CPU time counts every thread).", "",
          "| stage | seconds | CPU seconds | this run |", "|---|---|---|---|"]
    for name, s in result.stages.items():
        L.append(f"| {name} | {s.seconds:.1f} | {fmt_number(s.cpu_seconds, '.1f')} | {'reused (cached)' if s.cached else 'computed'} |")
    total = sum(s.seconds for s in result.stages.values())
    L.append(f"| total | {total:.1f} | {fmt_number(sum(s.cpu_seconds for s in result.stages.values()), '.1f')} | |")
    L += ["", f"Files: `results.json` (every number above), `bias_metrics.csv`, `nas_ranking.csv`, `conditions.csv`, `ablation.csv`, "
              f"`finetune_history.csv`, `deltas.csv`; stage outputs under `stages/`; figures in `{os.path.relpath(result.figures_dir, result.out_dir)}/`.", ""]
    return Section("Stages and timings", L)


SECTIONS: tuple[Callable[[StudyResult], Section | None], ...] = (
    header_section,
    bias_section,
    nas_section,
    conditions_section,
    ablation_section,
    finetune_section,
    after_section,
    compare_section,
    timings_section,
)
"""The report's sections in order."""


def report_sections(result: StudyResult) -> list[Section]:
    return [s for s in (section(result) for section in SECTIONS) if s is not None]


def report_markdown(result: StudyResult) -> str:
    """The text of ``report.md``: the :data:`SECTIONS` in order."""
    lines = [line for section in report_sections(result) for line in section.markdown_lines()]
    return "\n".join(line for line in lines if line is not None)
