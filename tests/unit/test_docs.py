"""The documentation: README.md is the front door, docs/*.md hold the rest.

Checks that every relative link and image path resolves (and every #anchor names a heading), that the README's
first screen holds the two commands and a runnable quick start, that the README links every docs page, and that
every ``nasa-lens`` command line shown in a bash block parses with the real CLI parser (so a renamed flag shows
here). The README's Python quick start runs in tests/integration/test_docs.py.
"""
from __future__ import annotations

import re
import shlex
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
FIRST_SCREEN = 40

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_SRC = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _strip_code(text: str) -> str:
    """The text without fenced code blocks and inline code (links inside code are not links)."""
    text = FENCE.sub("", text)
    return re.sub(r"`[^`\n]*`", "", text)


def _links(text: str) -> list[str]:
    prose = _strip_code(text)
    return LINK.findall(prose) + HTML_SRC.findall(prose)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading.strip()).lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)) or target.startswith("//")


def test_docs_pages_exist() -> None:
    assert DOCS, "docs/ holds no .md page"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_and_images_resolve(page: Path) -> None:
    broken = []
    for target in _links(page.read_text(encoding="utf-8")):
        if _is_external(target):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target} (no such file: {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest})")
            continue
        if anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading with anchor #{anchor} in {_rel(dest)})")
    assert not broken, f"{_rel(page)}: broken links:\n  " + "\n  ".join(broken)


def test_link_checker_sees_links_and_skips_code() -> None:
    text = "![a](x.png) [b](docs/y.md#z) [c](https://e.org) `[d](no.md)`\n```\n[e](no2.md)\n```\n"
    assert _links(text) == ["x.png", "docs/y.md#z", "https://e.org"]
    assert _slug("Stages, cache and resume") == "stages-cache-and-resume"
    assert _slug("NAS: negative attention scores (`nas.py`)") == "nas-negative-attention-scores-naspy"


def test_readme_first_screen_has_the_two_commands_and_a_quick_start() -> None:
    first = "\n".join(README.read_text(encoding="utf-8").splitlines()[:FIRST_SCREEN]) + "\n"
    assert "make demo" in first and "make test" in first
    blocks = FENCE.findall(first)
    python = [body for lang, body in blocks if lang == "python"]
    assert any(re.search(r"^\s*(import nasa_lens|from nasa_lens\b)", body, re.MULTILINE) for body in python), (
        f"no complete ```python block importing nasa_lens in the README's first {FIRST_SCREEN} lines"
    )
    shell = [body for lang, body in blocks if lang in ("bash", "sh", "shell", "console")]
    assert any(re.search(r"^\s*nasa-lens \w", body, re.MULTILINE) for body in shell), (
        f"no ```bash block with a nasa-lens command in the README's first {FIRST_SCREEN} lines"
    )


def test_readme_documentation_list_links_every_docs_page() -> None:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"^## Documentation\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert m, "README.md has no '## Documentation' section"
    linked = {Path(t.partition("#")[0]).name for t in _links(m.group(1)) if t.startswith("docs/")}
    missing = [p.name for p in DOCS if p.name not in linked]
    assert not missing, f"docs pages not linked from README's Documentation list: {missing}"


def _cli_lines() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for lang, body in FENCE.findall(page.read_text(encoding="utf-8")):
            if lang not in ("bash", "sh", "shell", "console"):
                continue
            for line in body.splitlines():
                line = line.strip().removeprefix("$ ")
                if line.startswith("nasa-lens "):
                    out.append((_rel(page), line))
    return out


def test_every_shown_cli_line_parses() -> None:
    from nasa_lens.cli import build_parser

    lines = _cli_lines()
    assert len(lines) >= 5
    bad = []
    for page, line in lines:
        argv = shlex.split(line, comments=True)[1:]
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:  # argparse reports a bad flag with exit code 2
            bad.append(f"{page}: {line}  (exit {exc.code})")
    assert not bad, "command lines in the docs that the CLI rejects:\n  " + "\n  ".join(bad)
