"""CLI flags generated from the config dataclasses, so each default lives in one place: the config.

:func:`add_config_flags` adds one flag per field of a config dataclass: ``--field-name`` (``rename`` maps a
field to another flag name), its default the field's default, its help the field's ``metadata["help"]`` (else
the entry of the class docstring's ``Attributes:`` section; plain text, and one default: the field's unless
the help states its own), its type from the annotation: ``int``,
``float``, ``str``, ``X | None``, ``Literal[...]`` (choices; or ``metadata["choices"]``), and ``bool`` as
``--name`` (default False) or ``--no-name`` (default True). :func:`config_from_args` builds the config back
from the parsed namespace (the flag's ``dest`` is the field name).

A field several configs share (``seed``, ``format``...) is added once, by the first config; every config
that reads it is recorded, and their defaults must agree (else building the parser fails). The record,
``parser._config_flags`` (``dest -> [(config class, field), ...]``), lets a test compare every flag's default
with its configs' defaults.

Torch-free: it only reads dataclass fields and annotations.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from nasa_lens.commands.helptext import plain_text

__all__ = ["add_config_flags", "config_from_args", "config_flags"]

_MISSING = dataclasses.MISSING


def config_flags(parser: argparse.ArgumentParser) -> dict[str, list[tuple[type, str]]]:
    """``dest -> [(config class, field name), ...]`` for every flag :func:`add_config_flags` added to ``parser``."""
    if not hasattr(parser, "_config_flags"):
        parser._config_flags = {}  # type: ignore[attr-defined]
    return parser._config_flags  # type: ignore[attr-defined]


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return _MISSING


def docstring_help(cls: type) -> dict[str, str]:
    """``field -> text`` from the ``Attributes:`` section of ``cls``'s docstring (Google style; an entry may
    name several fields, ``a, b: text``)."""
    doc = inspect.getdoc(cls) or ""
    if "Attributes:" not in doc:
        return {}
    out: dict[str, str] = {}
    names: list[str] = []
    for line in doc.split("Attributes:", 1)[1].splitlines():
        if not line.strip():
            continue
        m = re.match(r"^    (\w+(?:, \w+)*): (.*)$", line)
        if m:
            names = m.group(1).split(", ")
            for n in names:
                out[n] = m.group(2).strip()
        elif line.startswith("        ") and names:
            for n in names:
                out[n] += " " + line.strip()
        elif not line.startswith(" "):
            break
    return out


def _resolve(tp: Any) -> tuple[type | None, tuple[Any, ...] | None, bool]:
    """``(scalar type, choices, optional)`` of an annotation."""
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        # ``str | list[Head]`` (a spec or a list): the CLI gives the string form
        scalar = [a for a in args if typing.get_origin(a) is None or typing.get_origin(a) is Literal]
        if not scalar:
            return None, None, optional
        tp = scalar[0]
        origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        return type(choices[0]), tuple(choices), optional
    if tp in (int, float, str, bool):
        return tp, None, optional
    return None, None, optional


def add_config_flags(
    parser: argparse.ArgumentParser,
    config_cls: type,
    *,
    exclude: Sequence[str] = (),
    rename: Mapping[str, str] | None = None,
) -> None:
    """Add one flag per field of the dataclass ``config_cls`` to ``parser`` (see the module docstring).

    Args:
        exclude: fields that get no flag (the command sets them itself, or they have no CLI form).
        rename: ``{field: flag name}`` without the dashes, e.g. ``{"top_k": "top"}`` gives ``--top``.

    Raises:
        TypeError: a field's type has no flag form (exclude it), or a shared flag's defaults disagree.
    """
    rename = dict(rename or {})
    unknown = (set(exclude) | set(rename)) - {f.name for f in dataclasses.fields(config_cls)}
    if unknown:
        raise TypeError(f"{config_cls.__name__} has no fields {sorted(unknown)}")
    hints = typing.get_type_hints(config_cls)
    doc = docstring_help(config_cls)
    record = config_flags(parser)
    for f in dataclasses.fields(config_cls):
        if f.name in exclude or not f.init:
            continue
        default = _field_default(f)
        if f.name in record:  # shared with a config added before: one flag, the defaults must agree
            other_cls, other_field = record[f.name][0]
            other = _field_default({g.name: g for g in dataclasses.fields(other_cls)}[other_field])
            if other != default:
                raise TypeError(
                    f"flag for {f.name!r}: {config_cls.__name__} defaults to {default!r} but "
                    f"{other_cls.__name__}.{other_field} to {other!r}"
                )
            record[f.name].append((config_cls, f.name))
            continue
        scalar, choices, _optional = _resolve(hints[f.name])
        choices = tuple(f.metadata.get("choices", ())) or choices
        if scalar is None:
            raise TypeError(f"{config_cls.__name__}.{f.name}: type {hints[f.name]} has no flag form; exclude it")
        name = rename.get(f.name, f.name).replace("_", "-")
        text = plain_text(f.metadata.get("help") or doc.get(f.name, "")).replace("%", "%%").rstrip(".")
        kwargs: dict[str, Any] = {"dest": f.name}
        if scalar is bool:
            if default is True:
                flag = f"--no-{name}"
                kwargs.update(action="store_false", default=True, help=f"turn off: {text}" if text else None)
            else:
                flag = f"--{name}"
                kwargs.update(action="store_true", default=False, help=text or None)
        else:
            flag = f"--{name}"
            kwargs["type"] = scalar
            if choices:
                kwargs["choices"] = list(choices)
            if default is _MISSING:
                kwargs["required"] = True
                kwargs["help"] = text or None
            else:
                kwargs["default"] = default
                states_default = re.search(r"\bdefault\b", text)  # "(default: the bridge's choice)": one is enough
                kwargs["help"] = text if states_default else (text + " " if text else "") + "(default: %(default)s)"
        parser.add_argument(flag, **kwargs)
        record[f.name] = [(config_cls, f.name)]


def config_from_args(config_cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """Build ``config_cls`` from the parsed flags (every field whose name is an attribute of ``args``),
    with ``extra`` fields on top; the config validates the values."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls) if f.init and hasattr(args, f.name)}
    values.update(extra)
    return config_cls(**values)
