"""Run ``nameorigin`` as a separate process, as a person or cron would, with only the settings a test gives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bot.config import Settings

# Every bot setting, by its environment name: one from the developer's shell must not leak in.
_SETTINGS = frozenset(name.upper() for name in Settings.model_fields)


def nameorigin(cwd: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """``nameorigin ARGS`` in ``cwd`` with ``settings`` as its only bot settings; output captured as text."""
    clean = {k: v for k, v in os.environ.items() if k.upper() not in _SETTINGS}  # settings ignore case
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        env={**clean, **settings},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
