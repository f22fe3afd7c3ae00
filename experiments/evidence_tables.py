"""Issue #20 items 4 and 6: the tables (and the figure) derived from the committed scans and comparisons.

Reads ``figures/data/scans/<model>_<data>_<format>/`` (written by ``experiments/model_scan.py``) and
``figures/data/debias_*/comparison.csv`` (``experiments/debias_lookup.py``); writes

* ``figures/data/nas_order_<model>_<data>.csv``: every head's NAS with "Yes or No" and with "No or Yes" on the
  same questions, and its kind: ``no-both`` (leans to "No" in both orders: NAS > 0.5 and z > 3 in both),
  ``yes-both``, ``second`` (leans to the second-named candidate: "No" in yes-no, "Yes" in no-yes), ``first``,
  or ``weak`` (not clearly signed in one order);
* ``figures/data/nas_order_summary.csv``: per model and data, Pearson and Spearman of the two orders' head NAS
  with 95% bootstrap intervals over questions (1000 resamples, seed 0) and the count of each kind;
* ``figures/data/nas_conditions_<model>.csv``: every head's mean NAS under each scan of the model in
  ``scans/`` and ``scans/conditions/`` on 200 test questions (the default scan, NAS at the last position only,
  another data set, other candidate words and orders), one ``nas_<condition>`` and ``rank_<condition>`` column each
  (rank 1 = the most "No"-leaning head): how much the ranking depends on the data, the positions and the words;
* ``figures/data/models_side_by_side.csv``: per model and data set, the bias metrics (95% bootstrap intervals,
  recomputed from ``predictions.csv`` as ``nasa-lens eval`` does), the top-5 NAS heads (positions after the
  candidates), and, where a comparison exists, the in-domain threshold's accuracy;
* ``figures/data/comparison.csv``: every ``figures/data/debias_*/comparison.csv`` (``experiments/debias_lookup.py``)
  in one table, with its ``model``, ``seed`` and ``train`` columns and ``run`` (the folder);
* ``figures/data/predictions.csv.gz``: every ``debias_*/predictions.csv.gz`` in one file, with ``run``;
* ``figures/data/runtimes.csv``: every committed run's wall time (from its ``run.json``);
* ``figures/models_side_by_side.html`` (and ``.png`` when a Chromium is found).

Run: ``python experiments/evidence_tables.py`` (seconds).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "figures" / "data"


def write_csv(frame: pd.DataFrame, target: Path, float_format: str | None = "%.6g") -> None:
    """``frame`` to ``target`` through a temporary file and a rename: a killed run leaves the old table whole."""
    from nasa_lens.io import atomic_path

    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False, float_format=float_format)


def per_example(folder: Path) -> tuple[list[str], np.ndarray, list[tuple[int, int]]]:
    long = pd.read_csv(folder / "nas_by_example.csv.gz", dtype={"id": str})
    wide = long.pivot_table(index="id", columns=["layer", "head"], values="nas", sort=True)
    return list(wide.index), wide.to_numpy(float), [tuple(map(int, c)) for c in wide.columns]


def kind(m1: float, s1: float, m2: float, s2: float) -> str:
    def sign(m: float, s: float) -> int:
        return int(np.sign(m)) if abs(m) > 0.5 and abs(m) > 3 * max(s, 1e-12) else 0

    a, b = sign(m1, s1), sign(m2, s2)
    if a == 0 or b == 0:
        return "weak"
    return {(1, 1): "no-both", (-1, -1): "yes-both", (1, -1): "second", (-1, 1): "first"}[(a, b)]


def order_tables(model: str, data: str, n_boot: int = 1000) -> dict:
    from scipy.stats import spearmanr

    a_dir, b_dir = DATA / "scans" / f"{model}_{data}_yes-no", DATA / "scans" / f"{model}_{data}_no-yes"
    ids_a, xa, heads = per_example(a_dir)
    ids_b, xb, heads_b = per_example(b_dir)
    assert ids_a == ids_b and heads == heads_b, "the two orders were scanned on different questions"
    ma, mb = xa.mean(0), xb.mean(0)
    sa, sb = xa.std(0, ddof=1) / np.sqrt(len(xa)), xb.std(0, ddof=1) / np.sqrt(len(xb))
    frame = pd.DataFrame({"layer": [h[0] for h in heads], "head": [h[1] for h in heads], "nas_yes_no": ma, "se_yes_no": sa,
                          "nas_no_yes": mb, "se_no_yes": sb})
    frame["rank_yes_no"] = frame.nas_yes_no.rank(ascending=False, method="first").astype(int)
    frame["rank_no_yes"] = frame.nas_no_yes.rank(ascending=False, method="first").astype(int)
    frame["kind"] = [kind(*r) for r in frame[["nas_yes_no", "se_yes_no", "nas_no_yes", "se_no_yes"]].to_numpy()]
    frame["min_nas"] = frame[["nas_yes_no", "nas_no_yes"]].min(axis=1)
    for k in ("no-both", "second"):  # rank within the kind: by the smaller |NAS| of the two orders, largest first
        strength = frame[["nas_yes_no", "nas_no_yes"]].abs().min(axis=1).where(frame.kind == k)
        frame[f"{k.replace('-', '_')}_rank"] = strength.rank(ascending=False, method="first")
    frame = frame.sort_values("rank_yes_no").reset_index(drop=True)
    write_csv(frame, DATA / f"nas_order_{model}_{data}.csv")
    rng = np.random.default_rng(0)
    pear, spear = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, len(xa), len(xa))
        a, b = xa[idx].mean(0), xb[idx].mean(0)
        pear.append(np.corrcoef(a, b)[0, 1])
        spear.append(spearmanr(a, b).statistic)
    row = {"model": model, "data": data, "n": len(xa), "heads": len(heads),
           "pearson": float(np.corrcoef(ma, mb)[0, 1]), "pearson_lo": float(np.quantile(pear, 0.025)),
           "pearson_hi": float(np.quantile(pear, 0.975)), "spearman": float(spearmanr(ma, mb).statistic),
           "spearman_lo": float(np.quantile(spear, 0.025)), "spearman_hi": float(np.quantile(spear, 0.975))}
    for k in ("no-both", "yes-both", "second", "first", "weak"):
        row[f"n_{k}"] = int((frame.kind == k).sum())
    top = frame[frame.rank_yes_no <= 10]
    row["top10_second"] = int((top.kind == "second").sum())
    row["top10_no_both"] = int((top.kind == "no-both").sum())
    return row


def nas_conditions(model: str) -> pd.DataFrame | None:
    """Every head's mean NAS and rank under each committed scan of ``model`` (the condition is the folder name
    after the model: ``strategyqa-test200_yes-no``, ``strategyqa-test200_yes-no_last``, ...)."""
    folders = sorted(f for d in (DATA / "scans", DATA / "scans" / "conditions") if d.is_dir()
                     for f in d.glob(f"{model}_*") if (f / "nas.csv").is_file())
    if len(folders) < 2:
        return None
    frame = None
    for folder in folders:
        cond = folder.name.removeprefix(f"{model}_")
        nas = pd.read_csv(folder / "nas.csv")[["layer", "head", "nas_mean", "rank"]]
        nas = nas.rename(columns={"nas_mean": f"nas_{cond}", "rank": f"rank_{cond}"})
        frame = nas if frame is None else frame.merge(nas, on=["layer", "head"], how="outer", validate="one_to_one")
    frame = frame.sort_values(["layer", "head"]).reset_index(drop=True)
    write_csv(frame, DATA / f"nas_conditions_{model}.csv")
    return frame


def side_by_side() -> pd.DataFrame:
    from nasa_lens.evaluate import result_from_predictions

    rows = []
    for folder in sorted((DATA / "scans").glob("*_yes-no")):
        model, data = folder.name.rsplit("_", 2)[:2]
        pred = pd.read_csv(folder / "predictions.csv", dtype={"id": str})
        res = result_from_predictions(pred.id.tolist(), (pred.label == "yes").to_numpy(int), pred.p_yes.to_numpy(float),
                                      pred.logit_diff.to_numpy(float), n_boot=1000, seed=0)
        nas = pd.read_csv(folder / "nas.csv")
        row = {"model": model, "data": data, "n": len(pred)}
        for k in ("yes_rate", "pr_gap", "accuracy", "auroc", "precision", "recall"):
            row[k] = res.metrics[k]
            row[f"{k}_lo"], row[f"{k}_hi"] = res.ci[k]
        row["top5_nas"] = " ".join(f"{r.layer}.{r.head}" for r in nas.head(5).itertuples())
        row["top1_nas"] = float(nas.nas_mean.iloc[0])
        rows.append(row)
    comp = DATA / "comparison.csv"
    if comp.is_file():  # the in-domain lookup rows: the base row (bias metrics) and the in-domain threshold's accuracy
        c = pd.read_csv(comp)
        c = c[c.train.str.startswith("lookup") & c.dataset.str.startswith("lookup")]  # in-domain only
        for (model, ds), sub in c[c.method.isin(["base", "threshold"])].groupby(["model", "dataset"]):
            base, thr = sub[sub.method == "base"].iloc[0], sub[sub.method == "threshold"]
            row = {"model": model, "data": f"{ds}{int(base.n)}", "n": int(base.n)}
            for k in ("yes_rate", "pr_gap", "accuracy", "auroc", "precision", "recall"):
                row[k], row[f"{k}_lo"], row[f"{k}_hi"] = base[k], base[f"{k}_lo"], base[f"{k}_hi"]
            if len(thr):
                t = thr.iloc[0]
                row.update({"threshold": t.threshold, "threshold_accuracy": t.accuracy, "threshold_accuracy_lo": t.accuracy_lo,
                            "threshold_accuracy_hi": t.accuracy_hi})
            rows.append(row)
    return pd.DataFrame(rows)


def runs_combined(file: str) -> pd.DataFrame | None:
    """Every ``debias_*`` run's ``file`` in one frame, with ``run`` (the run's folder name)."""
    parts = [pd.read_csv(p, dtype={"id": str}).assign(run=p.parent.name) for p in sorted(DATA.glob(f"debias_*/{file}"))]
    return pd.concat(parts, ignore_index=True) if parts else None


def comparison() -> pd.DataFrame | None:
    """Every ``debias_*`` run's ``comparison.csv`` in one table (``model``, ``seed``, ``train`` columns kept, and
    ``run``: the run's folder name)."""
    frame = runs_combined("comparison.csv")
    if frame is not None:
        write_csv(frame, DATA / "comparison.csv")
    return frame


def predictions() -> pd.DataFrame | None:
    """Every ``debias_*`` run's per-question ``predictions.csv.gz`` in one file (with ``run``, the folder), so
    that two fixes of different runs can be compared on the same questions."""
    from nasa_lens.io import write_csv_gz

    frame = runs_combined("predictions.csv.gz")
    if frame is not None:
        write_csv_gz(DATA / "predictions.csv.gz", frame)
    return frame


def runtimes() -> pd.DataFrame:
    """The wall time of every committed run (its ``run.json``), in minutes: what ``make results`` costs."""
    import json

    rows = []
    for p in sorted(DATA.glob("**/run.json")):
        r = json.loads(p.read_text())
        rows.append({"folder": str(p.parent.relative_to(DATA)), "command": r.get("command", ""),
                     "minutes": round(float(r.get("seconds", 0)) / 60, 2)})
    frame = pd.DataFrame(rows)
    write_csv(frame, DATA / "runtimes.csv", float_format=None)
    return frame


def figure(frame: pd.DataFrame):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    metrics = ["yes_rate", "accuracy", "auroc", "threshold_accuracy"]
    titles = ["yes-rate", "accuracy", "AUROC", "accuracy, in-domain threshold"]
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=titles)
    colors = {m: c for m, c in zip(sorted(frame.model.unique()), ["#1f77b4", "#d62728", "#2ca02c"])}
    for j, metric in enumerate(metrics, start=1):
        for model, sub in frame.groupby("model"):
            if metric not in sub or sub[metric].isna().all():
                continue
            sub = sub[sub[metric].notna()]
            fig.add_trace(go.Bar(x=sub.data, y=sub[metric], name=model, legendgroup=model, showlegend=j == 1 or (j == 2 and False),
                                 marker_color=colors[model],
                                 error_y=dict(type="data", symmetric=False, array=sub[f"{metric}_hi"] - sub[metric],
                                              arrayminus=sub[metric] - sub[f"{metric}_lo"])), row=1, col=j)
    fig.update_layout(barmode="group", title="Two models side by side (95% bootstrap intervals)", height=420, width=1400)
    return fig


def main(argv: list[str] | None = None) -> int:
    global DATA
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--figures", default=str(ROOT / "figures"))
    ap.add_argument("--data-dir", default=None, help="where scans/ is read and the tables are written")
    args = ap.parse_args(argv)
    DATA = Path(args.data_dir) if args.data_dir else DATA
    rows = []
    for folder in sorted((DATA / "scans").glob("*_no-yes")):
        model, data = folder.name.rsplit("_", 2)[:2]
        if (DATA / "scans" / f"{model}_{data}_yes-no").is_dir():
            rows.append(order_tables(model, data))
    if rows:
        write_csv(pd.DataFrame(rows), DATA / "nas_order_summary.csv")
        print(pd.DataFrame(rows).to_string(index=False))
    for model in sorted({f.name.split("_")[0] for f in (DATA / "scans").glob("*_yes-no")}):
        nas_conditions(model)
    runtimes()
    comp = comparison()  # before side_by_side(), which reads it
    predictions()
    if comp is not None:
        print(comp[["model", "seed", "method", "n", "accuracy", "yes_rate", "auroc", "pr_gap"]].to_string(index=False))
    frame = side_by_side()
    write_csv(frame, DATA / "models_side_by_side.csv")
    print(frame.drop(columns=[c for c in frame.columns if c.endswith(("_lo", "_hi"))]).to_string(index=False))
    from nasa_lens.plots import save_figure

    save_figure(figure(frame), Path(args.figures) / "models_side_by_side", include_plotlyjs="directory")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
