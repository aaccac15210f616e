"""Model files for the bot's tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from core.checkpoint import load_checkpoint, save_checkpoint
from core.predict import shipped_checkpoint_path


def trained_copy(path: Path, version: str) -> Path:
    """The shipped GRU saved as if `nameorigin train` had produced ``version``."""
    shipped = load_checkpoint(shipped_checkpoint_path("gru"))
    return save_checkpoint(path, shipped.model, replace(shipped.metadata, version=version))
