"""``nasa-lens report DIR``: rebuild ``report.html`` from a finished study (see :mod:`nasa_lens.study.html`)."""
from __future__ import annotations

import argparse

from nasa_lens.commands.flags import add_config_flags, config_from_args
from nasa_lens.config import StudyHTMLReportConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="rebuild report.html (one self-contained, interactive, offline page) from a finished study",
        description="Write DIR/report.html from the finished study in DIR: the sections of report.md with every figure "
        "interactive and every table sortable, in one file that opens from disk without a network.",
    )
    p.add_argument("dir", help="a finished study folder (written by `nasa-lens study --out DIR`)")
    add_config_flags(p, StudyHTMLReportConfig)
    p.add_argument("--out", default=None, help="the HTML file to write (default: DIR/report.html)")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nasa_lens.study.html import write_report_html
    from nasa_lens.study.common import REPORT_HTML_FILE
    from nasa_lens.io import check_out_file
    from nasa_lens.study.pipeline import load_finished_study, refresh_manifest

    cfg = config_from_args(StudyHTMLReportConfig, args)
    # the file to write is checked (not a folder, its folder writable) before anything is built
    if args.out is not None:
        check_out_file(args.out)
    study = load_finished_study(args.dir, rebuilding=(REPORT_HTML_FILE,))  # the file this command writes again
    if args.out is None:
        check_out_file(study.out_dir / REPORT_HTML_FILE, flag="report file")
    path = write_report_html(study, args.out, plotlyjs=cfg.plotlyjs)
    if Path(path).resolve() == (study.out_dir / REPORT_HTML_FILE).resolve():
        refresh_manifest(study.out_dir, REPORT_HTML_FILE)  # the folder stays a finished study
    print(path)
    return 0
