"""What every job loads: a model (with an optional adapter) and a dataset, each described by a small
validated config that the CLI fills from its flags (:mod:`nasa_lens.commands.flags`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nasa_lens.vocab import DEFAULT_MODEL, InputError

__all__ = ["ModelConfig", "DataConfig", "load_job_model", "attach_job_adapter", "load_job_data"]


@dataclass
class ModelConfig:
    """Which model a job runs, where, and with which adapter."""

    model: str = field(default=DEFAULT_MODEL, metadata={"help": "built-in name, local folder, .gguf file or hub id"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1... (default: the bridge's choice)"})
    device_map: str | None = field(
        default=None, metadata={"help": "Hugging Face device map, e.g. auto (spreads a large model over GPUs)"}
    )
    adapter: str | None = field(default=None, metadata={"help": "a NASA adapter (.safetensors) to apply first"})

    def __post_init__(self) -> None:
        if not str(self.model).strip():
            raise InputError("model must be a model name or path")
        if self.device is not None and self.device_map is not None:
            raise InputError("give either device or device_map, not both")

    def load(self) -> Any:
        """Load the model and attach the adapter (if any); the adapter's metadata, a user file, is read and
        checked first, before the model loads."""
        if self.adapter:
            from nasa_lens.adapters import read_adapter_meta

            read_adapter_meta(self.adapter)
        model = load_job_model(self.model, device=self.device, device_map=self.device_map)
        attach_job_adapter(model, self.adapter)
        return model


@dataclass
class DataConfig:
    """Which examples a job reads."""

    data: str = field(metadata={"help": "dataset name (see `nasa-lens data list`) or a .jsonl path"})
    limit: int | None = field(default=None, metadata={"help": "a label-balanced sample of exactly N examples (N//2 no, the rest yes); an error when either label has too few"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})
    split: str | None = field(default=None, metadata={"help": "train or test split (default: all examples)", "choices": ("train", "test")})

    def __post_init__(self) -> None:
        if not str(self.data).strip():
            raise InputError("data must name a dataset or a JSONL path")
        if self.limit is not None and self.limit <= 0:
            raise InputError(f"limit must be > 0 (or None for all examples), got {self.limit}")
        if self.split not in (None, "train", "test"):
            raise InputError(f"split must be 'train', 'test' or None, got {self.split!r}")

    def load(self) -> Any:
        return load_job_data(self.data, limit=self.limit, seed=self.seed, split=self.split)


def load_job_model(name: str, *, device: str | None = None, device_map: str | None = None) -> Any:
    from nasa_lens.models import load_model

    return load_model(name, device=device, device_map=device_map)


def attach_job_adapter(model: Any, adapter: str | None) -> None:
    """Attach ``adapter`` (if given) to ``model``; a mismatched or corrupt adapter raises a clear error."""
    if adapter:
        from nasa_lens.adapters import load_adapter

        load_adapter(model, adapter)


def load_job_data(name: str, *, limit: int | None = None, seed: int = 0, split: str | None = None) -> Any:
    from nasa_lens.datasets import load_dataset

    return load_dataset(name, limit=limit, seed=seed, split=split)
