"""Regenerate the screenshots of docs/explore.md (``make screenshots``).

    python docs/make_screenshots.py STUDY_DIR OUT_DIR

* ``report_*.png``: STUDY_DIR/report.html opened from disk in headless Chromium (offline; the page check of
  :func:`nasa_lens.browser.check_page` must find no problem), the top of the page and two sections;
* ``viewer_attention.png`` and ``head_card.png``: the attention viewer and the head card of the study model's
  top NAS head on a few of the study's training questions (PNG through kaleido).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch

SHOTS = {  # file -> (CSS selector to scroll to, or None for the top)
    "report_top.png": None,
    "report_nas.png": "#section-2-nas-scan",
    "report_ablation.png": "#section-4-ablation-against-controls",
}


def main(study_dir: str, out_dir: str) -> int:
    from nasa_lens.browser import check_page
    from nasa_lens.datasets import load_dataset
    from nasa_lens.models import load_model
    from nasa_lens.nas import scan_nas
    from nasa_lens.plots import save_figure
    from nasa_lens.study.common import REPORT_HTML_FILE
    from nasa_lens.study.pipeline import load_finished_study
    from nasa_lens.plots.attention import show_attention
    from nasa_lens.plots.head_card import head_card

    torch.set_num_threads(1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = Path(study_dir) / REPORT_HTML_FILE
    for name, selector in SHOTS.items():
        report = check_page(page, width=1100, height=720, scroll_to=selector)
        problems = report.problems()
        if problems:
            print(f"{page}: {problems}", file=sys.stderr)
            return 1
        (out / name).write_bytes(report.screenshot)
        print(f"{out / name}: {len(report.screenshot) // 1024} KiB, {report.n_colors} colours, {len(report.figures)} figures drawn")
    study = load_finished_study(study_dir)
    cfg = study.config
    model = load_model(cfg.models[0])
    data = load_dataset(cfg.data.dataset, limit=12, seed=cfg.seed, split="train")
    nas = scan_nas(model, data, progress=False)
    top = nas.top_heads(3)
    view = show_attention(model, data[0], top, mode="both", rows="nas")
    card = head_card(model, data, top[0], nas=nas)
    for fig, name in ((view, "viewer_attention"), (card, "head_card")):
        for path in save_figure(fig, out / name, scale=1.0):
            if path.suffix == ".html":
                path.unlink()  # the docs keep the PNG only
            else:
                print(f"{path}: {path.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main(*sys.argv[1:3]))
