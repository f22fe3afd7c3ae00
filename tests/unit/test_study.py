"""The study: config (TOML, validation), stage caching and invalidation, the real pipeline on tiny-random,
(an interrupted run resuming to the same results, and the Gemma 3 built-in: tests/integration/test_study.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nasa_lens import study
from nasa_lens.config import QUICK, ConfigError, StudyConfig, load_config, parse_override
from nasa_lens.study.stages import DONE_FILE, StageStore, stage_key

REPO = Path(__file__).resolve().parents[2]

# A small real config: tiny-random, two datasets, every stage, a fine-tune long enough to be killed midway.
TINY = {
    "models": ["tiny-random"],
    "batch_size": 8,
    "data": {"dataset": "arithmetic", "generalisation": ["comparison"], "train_limit": 16, "test_limit": 8},
    "bias": {"n_boot": 100},
    "nas": {"top_k": 4},
    "conditions": {"formats": ["yes-no", "no-yes"], "datasets": [], "limit": 6, "top_k": 3},
    "ablation": {"ks": [1, 2], "n_random": 2, "n_perm": 200},
    "finetune": {"heads": "top:2", "nasa": {"steps": 24, "batch_size": 4, "eval_every": 8, "checkpoint_every": 2}},
    "compare": {"enabled": True, "methods": ["base", "threshold", "steer"], "k": 2, "fit_limit": 8},
    "report": {"png": False, "top_k": 3},
}


def tiny_config() -> StudyConfig:
    return StudyConfig().with_overrides(TINY)


def write_toml(path: Path, cfg: StudyConfig) -> Path:
    path.write_text(cfg.to_toml(), encoding="utf-8")
    return path


# ============================================================================================ config


def test_default_toml_is_the_default_config() -> None:
    assert load_config(REPO / "configs" / "default.toml") == StudyConfig()


def test_quick_toml_is_the_quick_config() -> None:
    quick = load_config(REPO / "configs" / "quick.toml")
    assert quick == StudyConfig.quick() == load_config(quick=True)
    assert quick.data.train_limit == QUICK["data"]["train_limit"] == 16
    assert quick.finetune.nasa == {"steps": 2, "eval_every": 2}


def test_to_toml_round_trips(tmp_path: Path) -> None:
    cfg = tiny_config()
    assert load_config(write_toml(tmp_path / "c.toml", cfg)) == cfg


def test_unknown_key_is_named_with_file_and_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[nas]\npostions = "last"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg and "unknown key 'nas.postions'" in msg and "did you mean 'positions'" in msg
    assert "positions, limit, top_k" in msg


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('modles = ["tiny-random"]\n')
    with pytest.raises(ConfigError, match=r"unknown key 'modles'; did you mean 'models'\?"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[nas]\nlimit = "ten"\n', "key 'nas.limit' must be an integer, got 'ten' (str)"),
        ("batch_size = true\n", "key 'batch_size' must be an integer, got True (bool)"),
        ('models = "tiny-random"\n', "key 'models' must be a list of strings, got 'tiny-random' (str)"),
        ("[ablation]\nks = [1, 2.5]\n", "key 'ablation.ks[1]' must be an integer, got 2.5 (float)"),
        ("data = 3\n", "key 'data' must be a table, got 3 (int)"),
        ('[report]\npng = "yes"\n', "key 'report.png' must be true or false, got 'yes' (str)"),
    ],
)
def test_bad_type_is_named(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"ablation": {"ks": [4, 2]}}, "ablation.ks: must be strictly ascending, got [4, 2]"),
        ({"nas": {"positions": "first"}}, "nas.positions: must be one of ['after', 'last'], got 'first'"),
        ({"data": {"format": "maybe"}}, "data.format: must be one of"),
        ({"data": {"test_fraction": 1.5}}, "data.test_fraction: must be in (0, 1), got 1.5"),
        ({"models": ["a", "a"]}, "models: names a model twice"),
        ({"finetune": {"models": ["other"]}}, "finetune.models: ['other'] are not in models"),
        ({"conditions": {"formats": ["yes-no"], "datasets": []}}, "conditions: needs at least two conditions"),
    ],
)
def test_bad_value_is_named(overrides: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        StudyConfig().with_overrides(overrides)
    assert expected in str(info.value)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[nas\nlimit = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(FileNotFoundError, match="config file .*nope.toml not found"):
        load_config(tmp_path / "nope.toml")


def test_overrides_parse_and_apply() -> None:
    assert parse_override("nas.limit=16") == {"nas": {"limit": 16}}
    assert parse_override('models=["a", "b"]') == {"models": ["a", "b"]}
    assert parse_override("data.dataset=prime") == {"data": {"dataset": "prime"}}
    assert parse_override("finetune.nasa.lr=0.01") == {"finetune": {"nasa": {"lr": 0.01}}}
    cfg = load_config(quick=True, overrides={"nas": {"limit": 4}, "finetune": {"nasa": {"lr": 0.01}}})
    assert cfg.nas.limit == 4 and cfg.finetune.nasa == {"steps": 2, "eval_every": 2, "lr": 0.01}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("nas.limit")


def test_nasa_options_are_checked_before_any_stage() -> None:
    with pytest.raises(ConfigError, match=r"finetune.nasa.heads: set by the study; use finetune.heads instead"):
        study.plan_stages(StudyConfig().with_overrides({"finetune": {"nasa": {"heads": "top:1"}}}))
    with pytest.raises(ConfigError, match=r"stepz"):
        study.plan_stages(StudyConfig().with_overrides({"finetune": {"nasa": {"stepz": 3}}}))
    with pytest.raises(ConfigError, match=r"steps must be a positive int"):
        study.plan_stages(StudyConfig().with_overrides({"finetune": {"nasa": {"steps": 0}}}))


def test_cli_reports_a_config_error_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nasa_lens.cli import main

    path = tmp_path / "bad.toml"
    path.write_text("[ablation]\nks = [3, 1]\n")
    assert main(["study", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "nasa-lens study: error:" in err and "ablation.ks: must be strictly ascending" in err
    assert not (tmp_path / "out").exists()


def test_cli_print_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nasa_lens.cli import main

    assert main(["study", "--quick", "--set", "nas.top_k=3", "--model", "tiny-random", "--print-config"]) == 0
    out = capsys.readouterr().out
    path = tmp_path / "printed.toml"
    path.write_text(out)
    assert load_config(path) == StudyConfig.quick().with_overrides({"nas": {"top_k": 3}, "models": ["tiny-random"]})
    assert main(["study", "--quick"]) == 2
    assert "nasa-lens study: error: --out is required" in capsys.readouterr().err


# ============================================================================================ stage store


def test_stage_key_depends_on_inputs_upstream_and_version() -> None:
    base = stage_key("nas@m", {"a": 1, "b": [1, 2]}, {"bias@m": "k1"}, "0.1.0")
    assert base == stage_key("nas@m", {"b": [1, 2], "a": 1}, {"bias@m": "k1"}, "0.1.0")  # order-free
    assert base != stage_key("nas@m", {"a": 2, "b": [1, 2]}, {"bias@m": "k1"}, "0.1.0")
    assert base != stage_key("nas@m", {"a": 1, "b": [1, 2]}, {"bias@m": "k2"}, "0.1.0")
    assert base != stage_key("nas@m", {"a": 1, "b": [1, 2]}, {"bias@m": "k1"}, "0.2.0")
    assert base != stage_key("nas@other", {"a": 1, "b": [1, 2]}, {"bias@m": "k1"}, "0.1.0")


def test_store_runs_a_stage_once(tmp_path: Path) -> None:
    store = StageStore(tmp_path, "v")
    calls = []

    def fn(ctx):
        calls.append(ctx.name)
        (ctx.work / "x.txt").write_text("hello")
        return {"value": 1.5, "nan": float("nan"), "pair": (1, 2)}

    first = store.run("s", {"a": 1}, [], fn)
    second = store.run("s", {"a": 1}, [], fn)
    assert calls == ["s"]
    assert not first.cached and second.cached
    assert first.summary == second.summary == {"value": 1.5, "nan": None, "pair": [1, 2]}
    assert (second.path / "x.txt").read_text() == "hello"
    assert json.loads((second.path / DONE_FILE).read_text())["key"] == first.key
    # a downstream stage keyed on it
    down = store.run("t", {}, [first], lambda ctx: {"up": ctx.upstream["s"].summary["value"]})
    assert down.summary == {"up": 1.5}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folders left


def test_failed_stage_leaves_nothing_but_its_checkpoint(tmp_path: Path) -> None:
    store = StageStore(tmp_path, "v")

    def crash(ctx):
        (ctx.checkpoint_dir / "state.txt").write_text("step 3")
        (ctx.work / "half.txt").write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.run("ft", {"a": 1}, [], crash)
    key = store.key("ft", {"a": 1})
    assert store.lookup("ft", key) is None
    assert not store.folder("ft", key).exists()
    assert [p.name for p in tmp_path.glob(".ft-*")] == []  # the work folder is gone
    assert (store.checkpoint_dir("ft", key) / "state.txt").read_text() == "step 3"  # resumable state kept

    seen = []

    def resume(ctx):
        seen.append((ctx.checkpoint_dir / "state.txt").read_text())
        return {"ok": True}

    out = store.run("ft", {"a": 1}, [], resume)
    assert seen == ["step 3"] and out.summary == {"ok": True}
    assert not store.checkpoint_dir("ft", key).exists()  # removed once the stage is complete


def test_stale_partial_folder_of_a_killed_run_is_replaced(tmp_path: Path) -> None:
    store = StageStore(tmp_path, "v")
    key = store.key("s", {})
    stale = tmp_path / f".{store.folder('s', key).name}.partial-99999"
    stale.mkdir()
    (stale / "junk.txt").write_text("from a killed run")
    out = store.run("s", {}, [], lambda ctx: {"n": len(list(ctx.work.iterdir()))})
    assert out.summary == {"n": 0}  # the new run did not see the junk
    assert not stale.exists()


# ============================================================================================ plan + invalidation (fake stages)


@pytest.fixture()
def fake_stages(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace every stage function by a fast fake that records its calls."""
    calls: list[str] = []

    def make(kind: str):
        def fake(env, model, ctx):
            calls.append(ctx.name)
            if kind == "report":
                return {"version": "test", "config": env.cfg.to_dict(), "models": {}, "figures": {"side_by_side": {}}}
            return {"kind": kind, "model": model}

        return fake

    for kind in study.STAGE_ORDER:
        monkeypatch.setitem(study.STAGE_FUNCTIONS, kind, make(kind))
    return calls


FAKE = {"models": ["a", "b"], "report": {"png": False}}


def test_second_run_calls_no_stage(tmp_path: Path, fake_stages: list[str]) -> None:
    cfg = StudyConfig().with_overrides(FAKE)
    first = study.run_study(cfg, tmp_path / "out", progress=False)
    names = [p.name for p in study.plan_stages(cfg)]
    assert fake_stages == names == list(first.stages)
    assert names == ["bias@a", "nas@a", "conditions@a", "ablation@a", "finetune@a", "after@a",
                     "bias@b", "nas@b", "conditions@b", "ablation@b", "finetune@b", "after@b", "report"]
    fake_stages.clear()
    second = study.run_study(cfg, tmp_path / "out", progress=False)
    assert fake_stages == []
    assert second.executed == [] and second.cached == names


ALL_A = {"bias@a", "nas@a", "conditions@a", "ablation@a", "finetune@a", "after@a"}
ALL_B = {s.replace("@a", "@b") for s in ALL_A}


def _both(*kinds: str) -> set[str]:
    return {f"{k}@{m}" for k in kinds for m in ("a", "b")} | {"report"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"ablation": {"ks": [1, 3]}}, _both("ablation")),
        ({"ablation": {"mode": "zero"}}, _both("ablation")),
        ({"conditions": {"limit": 5}}, _both("conditions")),
        ({"nas": {"positions": "last"}}, _both("nas", "conditions", "ablation", "finetune", "after")),
        ({"nas": {"top_k": 3}}, _both("nas", "conditions", "ablation", "finetune", "after")),
        ({"bias": {"n_boot": 50}}, _both("bias", "ablation", "after")),
        ({"finetune": {"nasa": {"steps": 7}}}, _both("finetune", "after")),
        ({"finetune": {"heads": "top:2"}}, _both("finetune", "after")),
        ({"data": {"test_limit": 12}}, _both("bias", "ablation", "after")),
        ({"data": {"train_limit": 12}}, _both("nas", "conditions", "ablation", "finetune", "after")),
        ({"data": {"generalisation": ["prime"]}}, _both("bias", "after")),
        ({"report": {"png": True}}, {"report"}),
        ({"report": {"top_k": 2}}, {"report"}),
        ({"seed": 1}, ALL_A | ALL_B | {"report"}),
        ({"models": ["a", "b", "c"]}, {s.replace("@a", "@c") for s in ALL_A} | {"report"}),
        ({"finetune": {"models": ["a"]}}, {"report"}),
        ({"compare": {"enabled": True}}, {"compare@a", "compare@b", "report"}),
    ],
    ids=lambda v: json.dumps(v, sort_keys=True) if isinstance(v, dict) else "",
)
def test_config_change_reruns_exactly_the_downstream_stages(tmp_path: Path, fake_stages: list[str], change: dict, expected: set[str]) -> None:
    base = StudyConfig().with_overrides(FAKE)
    study.run_study(base, tmp_path / "out", progress=False)
    fake_stages.clear()
    changed = base.with_overrides(change)
    result = study.run_study(changed, tmp_path / "out", progress=False)
    assert set(fake_stages) == expected
    assert set(result.executed) == expected
    # and back: the old outputs are still there, nothing runs
    fake_stages.clear()
    study.run_study(base, tmp_path / "out", progress=False)
    assert fake_stages == []


# ============================================================================================ pure helpers


def test_paired_deltas_hand_computed() -> None:
    from nasa_lens.evaluate import result_from_predictions

    labels = np.array([1, 1, 1, 0])
    before = result_from_predictions(["a", "b", "c", "d"], labels, np.array([0.2, 0.2, 0.8, 0.2]), np.array([-1.0, -1.0, 1.0, -1.0]), n_boot=0)
    after = result_from_predictions(["a", "b", "c", "d"], labels, np.array([0.8, 0.8, 0.8, 0.2]), np.array([1.0, 1.0, 1.0, -1.0]), n_boot=0)
    d = study.paired_deltas(before, after, n_boot=50, seed=0)
    # before: predictions 0,0,1,0 -> accuracy 2/4, recall 1/3, yes-rate 1/4; after: 1,1,1,0 -> 4/4, 3/3, 3/4
    assert d["accuracy"]["delta"] == pytest.approx(0.5)
    assert d["recall"]["delta"] == pytest.approx(2 / 3)
    assert d["yes_rate"]["delta"] == pytest.approx(0.5)
    assert d["mean_logit_diff"]["delta"] == pytest.approx(1.0)  # (-0.5) -> (+0.5)
    assert d["precision"]["delta"] == pytest.approx(0.0)  # 1/1 -> 3/3
    assert d["mcnemar"] == {"fixed": 2, "broken": 0, "p_value": pytest.approx(0.5)}  # two-sided binomial, 2 of 2
    lo, hi = d["yes_rate"]["ci"]
    assert 0.0 <= lo <= 0.5 <= hi <= 1.0
    with pytest.raises(ValueError, match="same examples"):
        study.paired_deltas(before, result_from_predictions(["x", "b", "c", "d"], labels, np.full(4, 0.5), np.zeros(4), n_boot=0))


def test_ablation_summary_hand_computed() -> None:
    rows = []

    def add(k, cond, seed, metric, value, delta, p=float("nan"), heads=""):
        rows.append({"k": k, "condition": cond, "seed": seed, "metric": metric, "value": value, "ci_low": value - 0.1,
                     "ci_high": value + 0.1, "delta": delta, "delta_ci_low": delta - 0.05, "delta_ci_high": delta + 0.05,
                     "p_value": p, "n": 8, "heads": heads})

    for metric, clean in (("yes_rate", 0.25), ("accuracy", 0.5), ("mean_logit_diff", -1.0)):
        add(0, "clean", float("nan"), metric, clean, 0.0)
        add(2, "top", float("nan"), metric, clean + 0.5, 0.5, p=0.01 if metric == "yes_rate" else 0.2, heads="1.3,0.2")
        add(2, "bottom", float("nan"), metric, clean, 0.0, p=0.9)
        add(2, "random", 0.0, metric, clean + 0.125, 0.125)
        add(2, "random", 1.0, metric, clean + 0.375, 0.375)
        add(2, "random_mean", float("nan"), metric, clean + 0.25, 0.25)
    s = study.ablation_summary(pd.DataFrame(rows))
    assert s["baseline_yes_rate"] == 0.25 and s["baseline_accuracy"] == 0.5 and s["n"] == 8
    (row,) = s["by_k"]
    assert row["k"] == 2 and row["heads_top"] == "1.3,0.2"
    assert row["yes_rate_top"] == 0.75 and row["yes_rate_top_delta"] == 0.5
    assert row["yes_rate_top_delta_ci"] == [pytest.approx(0.45), pytest.approx(0.55)]
    assert row["yes_rate_random_mean"] == 0.5 and row["yes_rate_bottom"] == 0.25
    assert row["yes_rate_random_draws"] == [0.375, 0.625]
    assert row["yes_rate_random_sd"] == pytest.approx(np.std([0.375, 0.625], ddof=1))  # 0.1768
    assert row["p_top_vs_random"] == 0.01 and row["p_bottom_vs_random"] == 0.9
    assert row["logit_diff_top_delta"] == 0.5 and row["p_logit_diff_top_vs_random"] == 0.2
    text = study.ablation_sentence("m", s)
    assert "raises the yes-rate more than ablating as many random heads at 1 of 1 head counts" in text
    assert "(significantly (permutation p < 0.05) at 1 of them)" in text and "yes-rate 75%" in text
    s["by_k"][0]["p_top_vs_random"] = 0.06
    text = study.ablation_sentence("m", s)
    assert "(at none of them significantly: every permutation p >= 0.05)" in text
    assert "does not show that these heads cause" in text


# ============================================================================================ the real pipeline (tiny-random)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("study")
    cfg = tiny_config()
    result = study.run_study(cfg, out / "run", figures_dir=out / "figures", progress=False)
    return cfg, result


def test_real_study_writes_every_output(tiny_study) -> None:
    cfg, result = tiny_study
    out = result.out_dir
    assert result.executed == [p.name for p in study.plan_stages(cfg)]
    for name in ("report.md", "results.json", "timings.json", "bias_metrics.csv", "nas_ranking.csv", "conditions.csv",
                 "ablation.csv", "finetune_history.csv", "deltas.csv"):
        assert (out / name).is_file(), name
    figures = {p.name for p in result.figures_dir.iterdir()}
    for stem in ("nas_heatmap_tiny-random", "nas_top_heads_tiny-random", "conditions_heatmaps_tiny-random", "ablation_tiny-random",
                 "training_curve_tiny-random", "before_after_tiny-random", "models_bias_metrics"):
        assert f"{stem}.html" in figures
        assert 'src="plotly.min.js"' in (result.figures_dir / f"{stem}.html").read_text()
    assert "plotly.min.js" in figures  # the one bundle the HTML figures load, beside them: viewable offline
    assert not any(name.endswith(".png") for name in figures)  # report.png = false
    assert [p.name for p in (out / "stages").iterdir() if p.name.startswith(".")] == []  # no temp folders, no checkpoints


def test_real_study_compare_stage(tiny_study) -> None:
    cfg, result = tiny_study
    r = result.results["models"]["tiny-random"]
    rows = pd.DataFrame(r["compare"]["rows"])
    assert set(rows.method) == {"base", "threshold", "steer"} and set(rows.dataset) == set(cfg.data.eval_datasets)
    for ds in cfg.data.eval_datasets:  # the compare stage's base rows are the bias report's numbers
        base = rows[(rows.method == "base") & (rows.dataset == ds)].iloc[0]
        assert base.accuracy == pytest.approx(r["bias"]["datasets"][ds]["accuracy"])
        assert base.auroc == pytest.approx(r["bias"]["datasets"][ds]["auroc"])
    folder = result.stages["compare@tiny-random"].path
    assert (folder / "comparison.csv").is_file() and (folder / "methods" / "steer" / "method.json").is_file()
    assert "debias_tiny-random.html" in {p.name for p in result.figures_dir.iterdir()}
    assert "De-biasing fixes side by side" in (result.out_dir / "report.md").read_text()


def test_real_study_numbers_agree_with_the_predictions(tiny_study) -> None:
    from nasa_lens.evaluate import bias_metrics

    cfg, result = tiny_study
    res = json.loads((result.out_dir / "results.json").read_text())
    assert res == result.results
    r = res["models"]["tiny-random"]
    main = r["bias"]["datasets"]["arithmetic"]
    preds = pd.read_csv(result.stages["bias@tiny-random"].path / "eval" / "arithmetic" / "predictions.csv")
    assert len(preds) == main["n"] == cfg.data.test_limit
    y = (preds["label"] == "yes").to_numpy(int)
    assert main["accuracy"] == pytest.approx(float(((preds["p_yes"] > 0.5).to_numpy(int) == y).mean()))
    assert main["yes_rate"] == pytest.approx(float((preds["p_yes"] > 0.5).mean()))
    assert main["accuracy"] == pytest.approx(bias_metrics(y, preds["p_yes"].to_numpy())["accuracy"])
    # the ablation's clean run is the bias report's main test sample again
    assert r["ablation"]["baseline_yes_rate"] == pytest.approx(main["yes_rate"])
    assert r["ablation"]["n"] == main["n"]
    # deltas are after - before
    for ds, v in r["after"]["datasets"].items():
        before = r["bias"]["datasets"][ds]
        assert v["delta"]["accuracy"]["delta"] == pytest.approx(v["after"]["accuracy"] - before["accuracy"])
    # the fine-tune trained the top heads of the NAS scan
    top = [h["head"] for h in r["nas"]["top_heads"][:2]]
    assert r["finetune"]["heads"] == ",".join(top)
    assert r["finetune"]["steps_done"] == 24
    # the long CSV holds the same numbers
    bias = pd.read_csv(result.out_dir / "bias_metrics.csv")
    row = bias[(bias["dataset"] == "arithmetic") & (bias["phase"] == "before") & (bias["metric"] == "accuracy")]
    assert float(row["value"].iloc[0]) == pytest.approx(main["accuracy"])
    # the report states them
    report = (result.out_dir / "report.md").read_text()
    sentence = next(line for line in report.splitlines() if line.startswith("- tiny-random on arithmetic"))
    assert f"yes-rate {100 * main['yes_rate']:.0f}%" in sentence
    assert f"heads {r['finetune']['heads']}" in report
    assert "## 4. Ablation against controls" in report and "the yes-rate is" in report


def test_real_second_run_reuses_every_stage(tiny_study, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, result = tiny_study
    calls: list[str] = []
    for kind, fn in list(study.STAGE_FUNCTIONS.items()):
        def counted(env, model, ctx, fn=fn):
            calls.append(ctx.name)
            return fn(env, model, ctx)

        monkeypatch.setitem(study.STAGE_FUNCTIONS, kind, counted)
    again = study.run_study(cfg, result.out_dir, figures_dir=result.figures_dir, progress=False)
    assert calls == []
    assert again.executed == [] and len(again.cached) == len(result.stages)
    assert again.results == result.results
    loaded = study.StudyResult.load(result.out_dir)
    assert loaded.config == cfg and loaded.results == result.results


def test_cli_study_writes_figures_under_out_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make demo` must leave the checkout clean: without --figures the figures go to OUT/figures, never to
    the committed figures/ folder (`make figures` passes --figures figures explicitly)."""
    from nasa_lens.cli import main

    seen = {}

    class Done:
        def summary(self) -> str:
            return "ok"

        def timings_frame(self):
            import pandas as pd

            return pd.DataFrame()

    def fake_run_study(cfg, out, *, figures_dir=None, progress=True):
        seen["figures_dir"] = figures_dir
        return Done()

    monkeypatch.setattr(study, "run_study", fake_run_study)
    assert main(["study", "--quick", "--model", "tiny-random", "--out", str(tmp_path / "o")]) == 0
    assert seen["figures_dir"] is None  # run_study's default: OUT/figures
    assert main(["study", "--quick", "--model", "tiny-random", "--out", str(tmp_path / "o"), "--figures", "figs"]) == 0
    assert seen["figures_dir"] == "figs"
    makefile = (REPO / "Makefile").read_text()
    demo = makefile.split("\ndemo:")[1].split("\n\n")[0]
    assert "--figures" not in demo and "--out results/" in demo
    assert "--figures figures" in makefile.split("\nfigures:")[1].split("\n\n")[0]
