"""Arguments shared by several commands."""
from __future__ import annotations

import argparse
import json
import sys


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2-135m-instruct", help="built-in name, local folder, .gguf file or hub id")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: the bridge's choice)")
    p.add_argument("--device-map", default=None, help="Hugging Face device map, e.g. auto (spreads a large model over GPUs)")


def add_data_args(p: argparse.ArgumentParser, flag: str = "--data", required: bool = True) -> None:
    p.add_argument(flag, required=required, help="dataset name (see `nasa-lens data list`) or a .jsonl path")
    p.add_argument("--limit", type=int, default=None, help="label-balanced sample of at most N examples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", choices=["train", "test"], default=None)
    p.add_argument("--format", default="yes-no", help="prompt format: yes-no, no-yes, true-false, false-true")
    p.add_argument("--batch-size", type=int, default=16)


def add_adapter_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapter", default=None, help="a NASA adapter (.safetensors) to apply first")


def apply_adapter_from_args(model, args: argparse.Namespace) -> None:
    """Attach ``--adapter`` (if given) to ``model``; a mismatched or corrupt adapter raises a clear error."""
    if getattr(args, "adapter", None):
        from nasa_lens.nasa import load_adapter

        load_adapter(model, args.adapter)


def load_model_from_args(args: argparse.Namespace):
    from nasa_lens.models import load_model

    return load_model(args.model, device=args.device, device_map=args.device_map)


def load_data_from_args(args: argparse.Namespace, flag: str = "data"):
    from nasa_lens.datasets import load_dataset

    return load_dataset(getattr(args, flag), limit=args.limit, seed=args.seed, split=args.split)


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
