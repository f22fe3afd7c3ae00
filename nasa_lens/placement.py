"""Where a model runs: device names and Hugging Face / Accelerate device maps, checked before anything loads.

``check_device`` says whether a device exists here; ``parse_device_map`` reads a map (a strategy, a dict, JSON
text or a ``.json`` file) and checks every device it names; ``placement_kwargs`` / ``dispatch`` place a model by
a map (``cpu`` and ``disk`` offload included). Used by :mod:`nasa_lens.models`.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from nasa_lens.vocab import ModelLoadError

__all__ = ["check_device", "parse_device_map", "placement_kwargs", "dispatch", "offload_folder"]

_DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
_OFFLOAD_TARGETS = ("cpu", "disk")


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device` that exists here, else a :class:`ModelLoadError` saying why
    (an invalid name such as ``"foo"``, or a device this machine lacks such as ``"cuda:7"``). Cheap: no
    model is loaded."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ModelLoadError(
            f"invalid device {str(device)!r}: expected cpu, cuda, cuda:N, mps or another torch device name"
        ) from None
    if dev.type == "meta":
        raise ModelLoadError("device 'meta' holds no weights; choose cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {str(device)!r} is not available: this machine has no CUDA GPU (torch sees none)")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ModelLoadError(f"device {str(device)!r} is not available: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
        return dev
    if dev.type == "cpu":
        return dev
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(f"device {str(device)!r} is not available: torch sees no Apple MPS device here")
    try:
        torch.empty(0, device=dev)
    except Exception as exc:  # noqa: BLE001 - any failure means the device is not usable here
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ModelLoadError(f"device {str(device)!r} is not available here: {type(exc).__name__}: {first}") from None
    return dev


# --------------------------------------------------------------------------------------------- booting


def parse_device_map(device_map: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """A device map as given (``auto``/``balanced``/``balanced_low_0``/``sequential`` or a dict module ->
    device), or parsed from JSON text / a ``.json`` file; every device it names is checked to exist here
    (``cpu`` and ``disk`` are offload targets, always available; ``meta`` holds no weights and is refused).

    Raises:
        ModelLoadError: an unknown strategy, unreadable JSON, or a device this machine does not have.
    """
    if device_map is None or isinstance(device_map, dict):
        parsed = device_map
    elif isinstance(device_map, str) and device_map.strip().startswith("{"):
        import json

        try:
            parsed = json.loads(device_map)
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"device map {device_map!r} is not valid JSON: {exc}") from None
    elif isinstance(device_map, str) and device_map.endswith(".json"):
        import json

        try:
            parsed = json.loads(Path(device_map).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"device map file {device_map!r} cannot be read: {exc}") from None
    elif isinstance(device_map, str):
        if device_map not in _DEVICE_MAP_STRATEGIES:
            raise ModelLoadError(
                f"device map {device_map!r} is not one of {list(_DEVICE_MAP_STRATEGIES)}, JSON text or a .json file"
            )
        return device_map
    else:
        raise ModelLoadError(f"device map {device_map!r} must be a strategy name, a dict, JSON text or a .json file")
    if parsed is None:
        return None
    if not isinstance(parsed, dict) or not parsed:
        raise ModelLoadError(f"device map {device_map!r} must map module names to devices")
    for module, dev in parsed.items():
        if isinstance(dev, str) and dev in _OFFLOAD_TARGETS:
            continue
        if str(dev) == "meta":
            raise ModelLoadError(f"device map entry {module!r} -> 'meta': meta holds no weights; offload to 'cpu' or 'disk'")
        try:
            check_device(f"cuda:{dev}" if isinstance(dev, int) else dev)
        except ModelLoadError as exc:
            raise ModelLoadError(f"device map entry {module!r} -> {dev!r}: {exc}") from None
    return parsed


def offload_folder(device_map: Any, bridge_kwargs: dict[str, Any]) -> str | None:
    """``offload_folder`` from ``bridge_kwargs`` (popped), or a fresh temporary folder when the map sends
    modules to ``disk`` and none was given (removed when the process exits)."""
    folder = bridge_kwargs.pop("offload_folder", None)
    to_disk = isinstance(device_map, dict) and any(v == "disk" for v in device_map.values())
    if folder is None and (to_disk or (isinstance(device_map, str) and "max_memory" in bridge_kwargs)):
        import atexit

        folder = tempfile.mkdtemp(prefix="nasa-lens-offload-")
        atexit.register(shutil.rmtree, folder, True)
    return folder


def placement_kwargs(device_map: Any, bridge_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``from_pretrained`` keywords that place a model by ``device_map`` (with ``max_memory`` and
    ``offload_folder`` taken out of ``bridge_kwargs``: the bridge refuses them beside a loaded model)."""
    if device_map is None:
        return {}
    extra: dict[str, Any] = {"device_map": device_map}
    if "max_memory" in bridge_kwargs:
        extra["max_memory"] = bridge_kwargs.pop("max_memory")
    folder = offload_folder(device_map, bridge_kwargs)
    if folder is not None:
        extra["offload_folder"] = folder
    return extra


def dispatch(hf_model: Any, device_map: str | dict[str, Any], bridge_kwargs: dict[str, Any]) -> Any:
    """Place an already-built model by ``device_map`` with Accelerate (a dict, or a strategy resolved with
    ``max_memory``); modules on ``disk`` are offloaded to ``offload_folder``."""
    from accelerate import dispatch_model, infer_auto_device_map

    max_memory = bridge_kwargs.pop("max_memory", None)
    folder = offload_folder(device_map, bridge_kwargs)
    if isinstance(device_map, str):
        no_split = getattr(hf_model, "_no_split_modules", None) or []
        device_map = infer_auto_device_map(hf_model, max_memory=max_memory, no_split_module_classes=no_split)
        if any(v == "disk" for v in device_map.values()) and folder is None:
            folder = offload_folder({"": "disk"}, bridge_kwargs)
    try:
        model = dispatch_model(hf_model, device_map=device_map, offload_dir=folder)
    except Exception as exc:  # noqa: BLE001 - a map that does not fit the model
        raise ModelLoadError(f"device map {device_map!r} cannot place this model: {type(exc).__name__}: {exc}") from exc
    model.hf_device_map = dict(device_map)
    return model
