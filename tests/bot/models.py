"""Model files for the bot's tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from core.checkpoint import load_checkpoint, save_checkpoint
from core.predict import shipped_checkpoint_path


def trained_copy(
    path: Path, version: str, test_accuracy: float | None = None, dataset_sha256: str | None = None
) -> Path:
    """The shipped GRU saved as if `nameorigin train` had produced ``version`` (recording ``test_accuracy``,
    on the dataset with ``dataset_sha256``)."""
    shipped = load_checkpoint(shipped_checkpoint_path("gru")).metadata
    metrics = shipped.metrics
    if test_accuracy is not None:
        metrics = {**metrics, "test": {**metrics["test"], "accuracy": test_accuracy}}
    metadata = replace(
        shipped, version=version, metrics=metrics, dataset_sha256=dataset_sha256 or shipped.dataset_sha256
    )
    return save_checkpoint(path, load_checkpoint(shipped_checkpoint_path("gru")).model, metadata)
