"""Checks on where a command will write, made before the slow work that produces the file."""

from __future__ import annotations

import os
from pathlib import Path

# Where `train` writes by default and the bot looks for a trained GRU and keeps its versions.
DEFAULT_MODEL_DIR = Path("data/models")


def _nearest_existing(path: Path) -> Path:
    """``path`` itself if it exists, else its nearest existing ancestor."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def file_in_the_way(folder: Path) -> Path | None:
    """The nearest existing part of ``folder``'s path if it is no folder (so nothing can be made there), else None."""
    existing = _nearest_existing(folder)
    return None if existing.is_dir() else existing


def unwritable_reason(folder: Path) -> str | None:
    """Why files cannot be written in ``folder`` (missing folders may still be created), or None if they can."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"folder {existing} is not writable"
    return None
