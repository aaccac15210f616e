"""Pick the compute device once, at the entry point."""

from __future__ import annotations

import torch

from core.choices import DEVICE_CHOICES as DEVICE_CHOICES
from core.choices import DeviceChoice as DeviceChoice
from core.errors import DeviceUnavailableError as DeviceUnavailableError


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(choice: str = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|mps`` into a ``torch.device``; ``auto`` prefers cuda, then mps, then cpu."""
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError("--device cuda: no CUDA device is available here (try --device auto)")
        return torch.device("cuda")
    if choice == "mps":
        if not _mps_available():
            raise DeviceUnavailableError("--device mps: Apple MPS is not available here (try --device auto)")
        return torch.device("mps")
    raise ValueError(f"unknown device {choice!r}: expected one of {', '.join(DEVICE_CHOICES)}")


def usable_device(device: str | torch.device | None) -> torch.device:
    """``device`` (a ``torch.device``; a string such as ``"cuda:1"`` or ``"auto"``; None for the CPU), checked here.

    ``DeviceUnavailableError`` when it names an accelerator that is not here (torch itself fails with an
    ``AssertionError`` or a bare ``RuntimeError``, deep inside ``Module.to``); ``ValueError`` for anything else.
    """
    if device is None:
        return torch.device("cpu")
    if device == "auto":
        return resolve_device(device)
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}: expected cpu, cuda, cuda:N or mps") from exc
    if target.type == "cpu":
        return target
    if target.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(f"device {target}: no CUDA device is available here")
        if target.index is not None and target.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(f"device {target}: this machine has {torch.cuda.device_count()} CUDA devices")
        return target
    if target.type == "mps":
        if not _mps_available():
            raise DeviceUnavailableError(f"device {target}: Apple MPS is not available here")
        return target
    raise ValueError(f"unsupported device {target}: expected cpu, cuda, cuda:N or mps")
