"""Model files for the bot's tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.live_model import LiveModel
from bot.service import Predictors
from core.checkpoint import load_checkpoint, save_checkpoint
from core.predict import Predictor, shipped_checkpoint_path


def trained_copy(path: Path, version: str, test_accuracy: float | None = None, **changes: Any) -> Path:
    """The shipped GRU saved as if `nameorigin train` had produced ``version``, recording ``test_accuracy``
    and any other metadata ``changes`` (``dataset_sha256``, ``split_seed``)."""
    shipped = load_checkpoint(shipped_checkpoint_path("gru"))
    metrics = shipped.metadata.metrics
    if test_accuracy is not None:
        metrics = {**metrics, "test": {**metrics["test"], "accuracy": test_accuracy}}
    metadata = replace(shipped.metadata, version=version, metrics=metrics, **changes)
    return save_checkpoint(path, shipped.model, metadata)


def shipped_live_model(sessions: async_sessionmaker[AsyncSession], model_dir: Path) -> LiveModel:
    """A live model as `serve` starts one with no trained GRU: the shipped GRU and RNN, not yet synced."""
    predictors = Predictors(gru=Predictor.shipped("gru"), rnn=Predictor.shipped("rnn"))
    return LiveModel(predictors=predictors, sessions=sessions, model_dir=model_dir, uncertain_below=0.5)
