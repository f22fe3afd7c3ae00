"""Issue #20 item 7: the default study (``configs/default.toml``, what ``make demo`` runs) as committed evidence.

Runs ``nasa-lens study --out STUDY --figures FIGURES`` (``make figures``: the default config, its figures written
into ``figures/``), then copies the study's report and tables (``report.md``, ``bias_metrics.csv``,
``deltas.csv``, ``ablation.csv``, ``nas_ranking.csv``, ``timings.json``) into ``DATA`` in one rename, so the
numbers docs/study.md quotes come from committed files that this command wrote. A rerun reuses the study's cached
stages (delete ``STUDY`` to recompute them).

Run: ``python experiments/study_default.py`` (about a quarter of an hour for SmolLM2 on one core).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ("report.md", "bias_metrics.csv", "deltas.csv", "ablation.csv", "nas_ranking.csv", "timings.json")


def relative_paths(timings: Path) -> None:
    """The study records its figures folder as an absolute path when it lies outside the study: written relative
    to the repository here, so the committed file names no machine's folders."""
    data = json.loads(timings.read_text(encoding="utf-8"))
    where = Path(str(data.get("figures_dir", "")))
    if where.is_absolute() and where.is_relative_to(ROOT):
        data["figures_dir"] = where.relative_to(ROOT).as_posix()
        timings.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", default="results/study", help="the study's folder (its stage cache)")
    ap.add_argument("--figures", default="figures", help="where the study's figures are written")
    ap.add_argument("--data", default="figures/data/study_default", help="where its report and tables are copied")
    args = ap.parse_args(argv)

    from nasa_lens.cli import main as cli
    from nasa_lens.io import atomic_output

    rc = cli(["study", "--out", args.study, "--figures", args.figures])
    if rc:
        return rc
    study = Path(args.study)
    missing = [f for f in FILES if not (study / f).is_file()]
    if missing:
        print(f"study_default: {study} lacks {', '.join(missing)}", file=sys.stderr)
        return 1
    with atomic_output(args.data) as tmp:
        for f in FILES:
            shutil.copyfile(study / f, tmp / f)
        relative_paths(tmp / "timings.json")
    print(f"copied {', '.join(FILES)} to {args.data}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
