"""Checks on where a command will write, made before the slow work that produces the file."""

from __future__ import annotations

import os
from pathlib import Path


def unwritable_reason(folder: Path) -> str | None:
    """Why files cannot be written in ``folder`` (missing folders may still be created), or None if they can."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"folder {existing} is not writable"
    return None
