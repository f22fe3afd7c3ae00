"""Flags shared by several commands: the model (and adapter) and the data a job loads, generated from
:class:`~nasa_lens.jobs.common.ModelConfig` and :class:`~nasa_lens.jobs.common.DataConfig`."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from nasa_lens.commands.flags import add_config_flags, config_from_args
from nasa_lens.jobs.common import DataConfig, ModelConfig


def add_model_args(p: argparse.ArgumentParser, *, adapter: bool = True) -> None:
    add_config_flags(p, ModelConfig, exclude=() if adapter else ("adapter",))


def add_data_args(p: argparse.ArgumentParser, *, exclude: Sequence[str] = ()) -> None:
    add_config_flags(p, DataConfig, exclude=exclude)


def add_out_arg(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--out", required=True, help=help)


def model_spec(args: argparse.Namespace) -> ModelConfig:
    return config_from_args(ModelConfig, args)


def data_spec(args: argparse.Namespace) -> DataConfig:
    return config_from_args(DataConfig, args)


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
