"""``nasa-lens report DIR``: rebuild ``report.html`` from a finished study (see :mod:`nasa_lens.study.html`)."""
from __future__ import annotations

import argparse

from nasa_lens.commands.flags import add_config_flags, config_from_args
from nasa_lens.config import HTMLReportConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="rebuild report.html (one self-contained, interactive, offline page) from a finished study",
        description="Write DIR/report.html from the finished study in DIR: the sections of report.md with every figure "
        "interactive and every table sortable, in one file that opens from disk without a network.",
    )
    p.add_argument("dir", help="a finished study folder (written by `nasa-lens study --out DIR`)")
    add_config_flags(p, HTMLReportConfig)
    p.add_argument("--out", default=None, help="the HTML file to write (default: DIR/report.html)")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from nasa_lens.study.html import write_report_html
    from nasa_lens.study.pipeline import load_finished_study

    cfg = config_from_args(HTMLReportConfig, args)
    path = write_report_html(load_finished_study(args.dir), args.out, plotlyjs=cfg.plotlyjs)
    print(path)
    return 0
