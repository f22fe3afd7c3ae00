"""``--help`` as plain text: no Sphinx markup, wrapped to the terminal, one example line per command.

The commands' descriptions and flag helps come from docstrings and config metadata written for Sphinx
(``:func:`nasa_lens.evaluate.evaluate```, ````OUT/x.csv````); :func:`plain_text` turns them into what a
terminal should show (``evaluate``, ``OUT/x.csv``). :class:`CommandParser` is the parser class of every
``nasa-lens`` command: its help goes through :class:`PlainHelpFormatter`, and :func:`add_examples` gives each
command the example of :data:`EXAMPLES` as its epilog (a test parses every example with the real parser).

Torch-free (standard library only).
"""
from __future__ import annotations

import argparse
import re

__all__ = ["EXAMPLES", "CommandParser", "PlainHelpFormatter", "add_examples", "plain_text"]

EXAMPLES: dict[str, str] = {
    "": "nasa-lens eval --model tiny-random --data arithmetic --limit 8 --out results/eval",
    "models": "nasa-lens models --json",
    "data": "nasa-lens data list",
    "data list": "nasa-lens data list --json",
    "data fetch": "nasa-lens data fetch strategyqa boolq",
    "data pull": "nasa-lens data pull strategyqa",
    "eval": "nasa-lens eval --data strategyqa --limit 40 --out results/eval",
    "scan": "nasa-lens scan --data strategyqa --limit 40 --top 5 --out results/scan",
    "ablate": "nasa-lens ablate --data strategyqa --limit 40 --heads top:1 --nas results/scan --out results/a1",
    "patch": "nasa-lens patch --data strategyqa --limit 16 --pairs swap --max-pairs 2 --out results/patch",
    "sweep": "nasa-lens sweep --data strategyqa --limit 64 --mode zero --positions after --out results/sweep",
    "dla": "nasa-lens dla --data strategyqa --limit 40 --out results/dla",
    "paths": "nasa-lens paths --data strategyqa --limit 16 --senders top:4 --out results/paths",
    "finetune": "nasa-lens finetune --train strategyqa --limit 32 --steps 4 --out results/nasa",
    "study": "nasa-lens study --quick --out results/quick",
    "report": "nasa-lens report results/quick --plotlyjs shared",
    "compare": "nasa-lens compare --train arithmetic --test arithmetic,comparison --steps 4 --out results/cmp",
}
"""One example command line per command path (``""`` is ``nasa-lens`` itself); each must parse and, indented,
fit 100 columns."""

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|ref|doc|term):`(~?)([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``", re.S)


def plain_text(text: str | None) -> str | None:
    """``text`` without Sphinx roles and double-backtick literals: ``:func:`a.b.c``` -> ``a.b.c``,
    ``:class:`~a.b.C``` -> ``C``, ````x```` -> ``x``. Single backticks (markdown code) stay."""
    if not text:
        return text

    def role(m: re.Match[str]) -> str:
        target = m.group(2).split("<")[-1].rstrip(">").strip()  # :ref:`text <target>` -> target
        return target.rsplit(".", 1)[-1] if m.group(1) else target

    return _LITERAL.sub(r"\1", _ROLE.sub(role, text))


class PlainHelpFormatter(argparse.HelpFormatter):
    """Help text as plain text: markup stripped (:func:`plain_text`), prose paragraphs wrapped to the terminal
    (argparse reads its width from ``$COLUMNS`` / the terminal), indented lines (the examples) kept as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for para in (plain_text(text) or "").split("\n\n"):
            lines = para.splitlines()
            if lines and (lines[0].startswith("  ") or lines[0].strip() in ("example:", "examples:")):
                paragraphs.append("\n".join(indent + line for line in lines))  # an example block: as written
            else:
                paragraphs.append(super()._fill_text(para, width, indent))
        return "\n\n".join(paragraphs)

    def _expand_help(self, action: argparse.Action) -> str:
        return plain_text(super()._expand_help(action)) or ""


class CommandParser(argparse.ArgumentParser):
    """The parser of ``nasa-lens`` and of each command (sub-parsers inherit the class): plain-text help."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", PlainHelpFormatter)
        super().__init__(*args, **kwargs)


def command_parsers(parser: argparse.ArgumentParser, path: str = ""):
    """``(command path, parser)`` for ``parser`` and every sub-parser below it (``"data list"``...)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from command_parsers(sub, f"{path} {name}".strip())


def add_examples(parser: argparse.ArgumentParser) -> None:
    """Give every command of ``parser`` its example from :data:`EXAMPLES` as the help's last lines (a command
    without one gets none; the test of the help lists it)."""
    for path, sub in command_parsers(parser):
        example = EXAMPLES.get(path)
        if example and not sub.epilog:
            sub.epilog = f"example:\n  {example}"
