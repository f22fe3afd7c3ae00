"""Helpers shared by the CLI input-error tests of tests/unit (imported by name: tests/ is on sys.path under pytest)."""
from __future__ import annotations


def one_line_error(capsys) -> str:
    """The command's stderr, which must be one line with no traceback."""
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err
