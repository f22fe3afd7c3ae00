"""The study pipeline: the plan of stages (each with the exact config it reads), running it through the
stage cache, and the finished :class:`~nasa_lens.study.result.StudyResult`.

against controls -> NASA fine-tune -> after-report and generalisation -> report, for one or more models.

Every stage is cached and resumable (:mod:`nasa_lens.study.stages`): its output folder under ``OUT/stages/`` is keyed
by the config it reads, the keys of its upstream stages and the package version, so a second run reuses
every finished stage, a config change re-runs exactly the stages downstream of it, and an interrupted run
resumes at the first unfinished stage (the fine-tune from its last checkpoint).

Stages, per model ``M`` (``STAGE_ORDER``)::

    bias@M        metrics with bootstrap intervals on the test split of every dataset     (data, bias)
    nas@M         NAS of every head on the train split                                    (data, nas)
    conditions@M  the NAS ranking under other prompt formats / datasets, correlations     (conditions; nas@M)
    ablation@M    yes-rate when the top-k NAS heads are ablated, vs random / bottom heads  (ablation; nas@M)
    finetune@M    NASA fine-tune of the flagged heads, checkpointed                       (finetune; nas@M)
    after@M       the bias report again with the adapter, paired deltas                   (bias; finetune@M, bias@M)
    report        side-by-side figures, CSVs and results.json                             (report; everything)

Then, always (cheap, no model): ``OUT/report.md``, ``OUT/results.json``, ``OUT/*.csv``, ``OUT/timings.json``
and the figures copied to ``figures_dir`` (HTML, and PNG when a Chromium exists).

    >>> from nasa_lens.config import StudyConfig
    >>> from nasa_lens.study import run_study
    >>> result = run_study(StudyConfig.quick(), "results/quick")     # doctest: +SKIP
    >>> print(result.summary())                                      # doctest: +SKIP
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from nasa_lens.config import StudyConfig
from nasa_lens.vocab import PLOTLYJS_FILE
from nasa_lens.io import atomic_path, check_out_dir, file_lock, read_json, remove_stale_temporaries, write_json, write_text
from nasa_lens.study.result import StudyResult
from nasa_lens.study.stages import DONE_FILE, StageOutput, StageStore

from nasa_lens.study.common import (
    LOCK_FILE,
    MANIFEST_FILE,
    REPORT_FILE,
    REPORT_HTML_FILE,
    RESULTS_FILE,
    STAGES_DIR,
    TIMINGS_FILE,
    StudyNotFinishedError,
    stage_name,
    package_version,
)
from nasa_lens.study.steps import STAGE_FUNCTIONS, StudyEnv, nasa_config

logger = logging.getLogger("nasa_lens.study")


@dataclass(frozen=True)
class PlannedStage:
    """One stage of the plan: its name, kind, model, the inputs hashed into its key and its upstream names."""

    name: str
    kind: str
    model: str | None
    inputs: dict[str, Any]
    upstream: tuple[str, ...]


def plan_stages(cfg: StudyConfig) -> list[PlannedStage]:
    """The stages of a study in run order, each with the exact config it reads (see the module docstring)."""
    d = cfg.data
    env = StudyEnv(cfg)
    common = {"seed": cfg.seed, "batch_size": cfg.batch_size, "device": cfg.device, "format": d.format}
    test_specs = [d.spec(ds, "test", d.test_limit, cfg.seed) for ds in d.eval_datasets]
    nasa_options = None
    if cfg.finetuned_models():  # resolved and validated now, before any stage runs
        nasa_options = {k: v for k, v in nasa_config(cfg).to_dict().items() if k != "progress"}
    plan: list[PlannedStage] = []
    for m in cfg.models:
        name = lambda kind: stage_name(kind, m)  # noqa: E731
        plan.append(PlannedStage(name("bias"), "bias", m, {"model": m, **common, "data": test_specs, "bias": cfg.section("bias")}, ()))
        plan.append(
            PlannedStage(
                name("nas"), "nas", m,
                {"model": m, **common, "data": d.spec(d.dataset, "train", env.n_nas, cfg.seed), "nas": cfg.section("nas")}, (),
            )
        )
        c = cfg.conditions
        plan.append(
            PlannedStage(
                name("conditions"), "conditions", m,
                {
                    "model": m, **common, "conditions": cfg.section("conditions"), "positions": cfg.nas.positions,
                    "data": [d.spec(ds, "train", c.limit, cfg.seed) for ds in [d.dataset, *c.datasets]],
                },
                (name("nas"),),
            )
        )
        plan.append(
            PlannedStage(
                name("ablation"), "ablation", m,
                {"model": m, **common, "ablation": cfg.section("ablation"), "threshold": cfg.bias.threshold,
                 "n_boot": cfg.bias.n_boot, "data": d.spec(d.dataset, "test", env.n_ablation, cfg.seed)},
                (name("nas"),),
            )
        )
        if m in cfg.finetuned_models():
            plan.append(
                PlannedStage(
                    name("finetune"), "finetune", m,
                    {"model": m, **common, "val_fraction": cfg.finetune.val_fraction, "nasa": nasa_options,
                     "data": d.spec(d.dataset, "train", d.train_limit, cfg.seed)},
                    (name("nas"),),
                )
            )
            plan.append(
                PlannedStage(
                    name("after"), "after", m,
                    {"model": m, **common, "data": test_specs, "bias": cfg.section("bias")},
                    (name("finetune"), name("bias")),
                )
            )
        if cfg.compare.enabled:
            plan.append(
                PlannedStage(
                    name("compare"), "compare", m,
                    {"model": m, **common, "compare": cfg.section("compare"), "n_boot": cfg.bias.n_boot,
                     "train": d.spec(d.dataset, "train", d.train_limit, cfg.seed), "data": test_specs},
                    (),
                )
            )
    plan.append(
        PlannedStage("report", "report", None, {"report": cfg.section("report"), "models": list(cfg.models)},
                     tuple(p.name for p in plan))
    )
    return plan


# ============================================================================================ stages


def load_finished_study(out_dir: str | os.PathLike[str], *, rebuilding: Sequence[str] = ()) -> StudyResult:
    """The finished study in ``out_dir``; :class:`StudyNotFinishedError` naming every missing piece otherwise
    (``results.json``, ``timings.json``, ``report.md``, a stage's ``done.json``, ``manifest.json`` or a file it
    lists, a figure file). ``rebuilding``: published files the caller is about to write again (``nasa-lens
    report`` rebuilds ``report.html``), which may be missing or changed."""
    out = Path(out_dir)
    hint = f"(run `nasa-lens study --out {out}` with its config to finish it)"
    if out.exists() and not out.is_dir():
        raise StudyNotFinishedError(f"{out} is not a study folder: it is a file (give the --out folder of a study)")
    if not out.is_dir():
        raise StudyNotFinishedError(f"{out} is not a study folder: it does not exist")
    missing = [name for name in (RESULTS_FILE, TIMINGS_FILE, REPORT_FILE) if not (out / name).is_file()]
    if missing:
        raise StudyNotFinishedError(f"{out} is not a finished study: missing {', '.join(missing)} {hint}")
    timings = read_json(out / TIMINGS_FILE)
    missing = [f"{STAGES_DIR}/{t['folder']}/{DONE_FILE}" for t in timings.get("stages", [])
               if not (out / STAGES_DIR / t["folder"] / DONE_FILE).is_file()]
    if missing:
        raise StudyNotFinishedError(f"{out} is not a finished study: missing {', '.join(missing)} {hint}")
    check_published(out, ignore=rebuilding)
    result = StudyResult.load(out)
    names = [n for figs in result.results.get("figures", {}).values() for n in figs.values()]
    missing = [f"{n}.html" for n in names if not (result.figures_dir / f"{n}.html").is_file()]
    if missing:
        raise StudyNotFinishedError(f"{out}: the study's figures are missing from {result.figures_dir}: {', '.join(missing)}")
    return result


def run_study(
    cfg: StudyConfig,
    out_dir: str | os.PathLike[str],
    *,
    figures_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> StudyResult:
    """Run (or resume) the study ``cfg`` into ``out_dir``; copy the figures into ``figures_dir``
    (default ``out_dir/figures``). See the module docstring for the stages and files. One process: inside a
    process group of several ranks it raises :class:`~nasa_lens.parallel.ParallelError` before writing anything."""
    from nasa_lens.parallel import ParallelError, world

    if world().parallel:
        raise ParallelError("run_study runs as one process, not inside a process group of several ranks (one run "
                            "owns the study folder, its lock and its stage cache)")
    out = check_out_dir(out_dir)
    figs = Path(figures_dir) if figures_dir is not None else out / "figures"
    check_out_dir(figs, flag="figures folder")
    out.mkdir(parents=True, exist_ok=True)
    # One run per study folder: a second one fails at once (it would redo and race on every file).
    with file_lock(out / LOCK_FILE, wait=False, what=f"study folder {out}"):
        return _run_locked(cfg, out, figs, progress)


def _run_locked(cfg: StudyConfig, out: Path, figs: Path, progress: bool) -> StudyResult:
    for folder in (out, out / STAGES_DIR, figs):
        for stale in remove_stale_temporaries(folder):
            logger.info("removed %s, left by a killed run", stale.name)
    (out / MANIFEST_FILE).unlink(missing_ok=True)  # from here until the end the published files may be mixed
    store = StageStore(out / STAGES_DIR, package_version())
    store.remove_all_stale()
    env = StudyEnv(cfg, progress=progress)
    done: dict[str, StageOutput] = {}
    plan = plan_stages(cfg)
    t0 = time.perf_counter()
    # the overall bar (stages done of all); each stage's own work draws its bars below it
    overall = tqdm(total=len(plan), desc="study", unit="stage", disable=not progress, dynamic_ncols=True)
    for i, st in enumerate(plan):
        upstream = [done[u] for u in st.upstream]
        fn = STAGE_FUNCTIONS[st.kind]
        logger.info("[%d/%d] %s", i + 1, len(plan), st.name)
        overall.set_postfix_str(st.name)
        done[st.name] = store.run(st.name, st.inputs, upstream, lambda ctx, fn=fn, st=st: fn(env, st.model, ctx))
        overall.update()
        if st.model is not None and not any(p.model == st.model for p in plan[i + 1:]):
            env.drop_model(st.model)  # its last stage: free the memory
    overall.close()
    results = done["report"].summary
    figures = _publish(cfg, out, figs, done, results)
    write_json(
        out / TIMINGS_FILE,
        {
            "total_seconds_this_run": time.perf_counter() - t0,
            "figures_dir": _relative(figs, out),
            "stages": [
                {"stage": n, "key": s.key, "folder": s.path.name, "seconds": s.seconds, "cpu_seconds": s.cpu_seconds,
                 "cached": s.cached}
                for n, s in done.items()
            ],
        },
    )
    result = StudyResult(out, figs, cfg, done, results, figures)
    from nasa_lens.study.report import report_markdown

    write_text(out / REPORT_FILE, report_markdown(result))
    from nasa_lens.study.html import write_report_html

    write_report_html(result)  # report.html beside report.md: the same sections, figures interactive, offline
    names = [RESULTS_FILE, TIMINGS_FILE, REPORT_FILE, REPORT_HTML_FILE, *sorted(p.name for p in (done["report"].path / "tables").glob("*.csv"))]
    write_json(out / MANIFEST_FILE, {"files": {n: (out / n).stat().st_size for n in names},
                                     "figures": {_relative(p, out): p.stat().st_size for p in figures}})
    logger.info("study finished: %s", out / REPORT_FILE)
    return result


def _relative(path: Path, out: Path) -> str:
    """``path`` as recorded in ``timings.json`` / ``manifest.json``: relative to the study folder when inside it
    (a copied or moved study then reads its own files), else absolute (``--figures`` elsewhere)."""
    path, out = Path(os.path.abspath(path)), Path(os.path.abspath(out))
    return path.relative_to(out).as_posix() if path.is_relative_to(out) else str(path)


def refresh_manifest(out: str | os.PathLike[str], name: str) -> None:
    """Record the new size of the published file ``name`` in ``manifest.json`` after it was rebuilt in place."""
    out = Path(out)
    manifest = read_json(out / MANIFEST_FILE)
    manifest.setdefault("files", {})[name] = (out / name).stat().st_size
    write_json(out / MANIFEST_FILE, manifest)


class StudyIncompleteError(StudyNotFinishedError):
    """A study folder whose published files are not one run's finished set (no or a mismatched
    ``manifest.json``: a run interrupted while publishing, or still running)."""


def check_published(out: str | os.PathLike[str], *, ignore: Sequence[str] = ()) -> None:
    """Raise :class:`StudyIncompleteError` unless ``out`` holds a finished study: a ``manifest.json`` (written
    last) whose files are all there with their sizes (except those named in ``ignore``)."""
    out = Path(out)
    manifest = out / MANIFEST_FILE
    if not manifest.is_file():
        raise StudyIncompleteError(
            f"study folder {out} is not a finished study: no {MANIFEST_FILE} (the run was interrupted or is still "
            "running); run the study again to finish it"
        )
    for name, size in (read_json(manifest).get("files") or {}).items():  # (the figures are checked by name)
        if name in ignore:
            continue
        path = out / name
        if not path.is_file() or path.stat().st_size != size:
            raise StudyIncompleteError(f"study folder {out} is incomplete: {name} is missing or changed since {MANIFEST_FILE}; run the study again")
    for name, size in (read_json(manifest).get("figures") or {}).items():  # relative to the study (older: absolute)
        path = out / name
        if not path.is_file() or path.stat().st_size != size:
            raise StudyIncompleteError(f"study folder {out} is incomplete: the figure {name} is missing or changed since "
                                       f"{MANIFEST_FILE}; run the study again")


def _publish(cfg: StudyConfig, out: Path, figs: Path, done: dict[str, StageOutput], results: dict[str, Any]) -> list[Path]:
    """Copy the report stage's results.json, CSVs and figures to their public places (atomically)."""
    report = done["report"].path
    write_json(out / RESULTS_FILE, results)
    for csv in sorted((report / "tables").glob("*.csv")):
        _copy(csv, out / csv.name)
    written = []
    for fig in sorted((report / "figures").glob("*")):
        if fig.suffix in (".html", ".png") or fig.name == PLOTLYJS_FILE:  # the HTML figures share that bundle
            written.append(_copy(fig, figs / fig.name))
    return written


def _copy(src: Path, dst: Path) -> Path:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


# ============================================================================================ report
