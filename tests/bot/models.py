"""Model files for the bot's tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from core.checkpoint import load_checkpoint, save_checkpoint
from core.predict import shipped_checkpoint_path


def trained_copy(path: Path, version: str, test_accuracy: float | None = None, **changes: Any) -> Path:
    """The shipped GRU saved as if `nameorigin train` had produced ``version``, recording ``test_accuracy``
    and any other metadata ``changes`` (``dataset_sha256``, ``split_seed``)."""
    shipped = load_checkpoint(shipped_checkpoint_path("gru"))
    metrics = shipped.metadata.metrics
    if test_accuracy is not None:
        metrics = {**metrics, "test": {**metrics["test"], "accuracy": test_accuracy}}
    metadata = replace(shipped.metadata, version=version, metrics=metrics, **changes)
    return save_checkpoint(path, shipped.model, metadata)
