"""``nasa-lens report DIR``: rebuild ``report.html`` from a finished study (see :mod:`nasa_lens.study.html`)."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="rebuild report.html (one self-contained, interactive, offline page) from a finished study",
        description="Write DIR/report.html from the finished study in DIR: the sections of report.md with every figure "
        "interactive and every table sortable, in one file that opens from disk without a network.",
    )
    p.add_argument("dir", help="a finished study folder (written by `nasa-lens study --out DIR`)")
    p.add_argument("--out", default=None, help="the HTML file to write (default: DIR/report.html)")
    p.add_argument("--plotlyjs", choices=("inline", "shared"), default="inline",
                   help="inline: plotly.js inside the page (one ~5 MB file, default); shared: load the study's "
                        "figures/plotly.min.js (a small page that needs that folder)")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from nasa_lens.study.html import write_report_html
    from nasa_lens.study.pipeline import load_finished_study

    path = write_report_html(load_finished_study(args.dir), args.out, plotlyjs=args.plotlyjs)
    print(path)
    return 0
