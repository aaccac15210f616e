"""End-to-end recipes shared by the CLI, the benchmarks and the bot: train-and-save, evaluate."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from core.batching import EncodedExamples, encode_examples
from core.calibration import Prior, calibrated_probabilities, class_prior, fit_temperature
from core.checkpoint import Checkpoint, CheckpointError, CheckpointMetadata, read_metadata, save_checkpoint
from core.data import Dataset, Example
from core.encoding import Vocabulary
from core.inference import predict_logits
from core.metrics import Metrics, compute_metrics
from core.models import ModelKind, build_model, default_config
from core.paths import unwritable_reason
from core.split import Split, split_dataset
from core.train import TrainConfig, TrainResult, seed_everything, train_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainedModel:
    """A trained, calibrated model with the figures recorded in its checkpoint."""

    path: Path
    metadata: CheckpointMetadata
    result: TrainResult


def new_version(kind: str) -> str:
    """A sortable, human-readable version id: kind and UTC time to the microsecond (``gru-20261128T150102123456Z``)."""
    return f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"


def evaluate_examples(
    checkpoint: Checkpoint, examples: tuple[Example, ...], device: torch.device, prior: Prior = "dataset"
) -> Metrics:
    """Metrics of ``checkpoint`` on ``examples`` with its calibrated probabilities under ``prior``."""
    metadata = checkpoint.metadata
    encoded = encode_examples(examples, metadata.vocabulary, metadata.labels)
    shift = metadata.logit_shift(prior)
    return calibrated_metrics(checkpoint.model, encoded, metadata.labels, metadata.temperature, device, shift)


def calibrated_metrics(
    model: torch.nn.Module,
    encoded: EncodedExamples,
    labels: tuple[str, ...],
    temperature: float,
    device: torch.device,
    logit_shift: torch.Tensor | None = None,
) -> Metrics:
    """Metrics of ``model`` on encoded examples after dividing its logits by ``temperature``.

    ``logit_shift`` ``(C,)``, when given, is added after the division (see ``CheckpointMetadata.logit_shift``).
    """
    probabilities = calibrated_probabilities(predict_logits(model, encoded, device), temperature, logit_shift)
    return compute_metrics(probabilities.double().numpy(), encoded.truth.numpy(), labels)


def check_output_path(out: str | os.PathLike[str]) -> Path:
    """Fail before training if no checkpoint can be saved at ``out``, or if saving would destroy something else.

    Refused: a folder (or a path ending in a separator), a device or pipe, a folder that cannot be written,
    a read-only file, and an existing file that is not a checkpoint (a dataset file, say). An existing
    checkpoint is replaced.
    """
    target = Path(out)
    if str(out).endswith(("/", os.sep)):  # Path() drops the slash: "models/" would become a file named models
        raise CheckpointError(f"cannot save the checkpoint to {out}: that names a folder; give a file path")
    if target.is_dir():
        raise CheckpointError(f"cannot save the checkpoint to {target}: it is a folder; give a file path")
    if target.exists() and not target.is_file():  # saving would replace /dev/null or a pipe with a file
        raise CheckpointError(f"cannot save the checkpoint to {target}: it is a device, pipe or socket, not a file")
    if target.is_file():  # a checkpoint is written to a new file and renamed over it: no permission would stop that
        if not os.access(target, os.W_OK):
            raise CheckpointError(f"cannot save the checkpoint to {target}: the file is read-only")
        try:
            read_metadata(target)
        except CheckpointError:
            raise CheckpointError(
                f"cannot save the checkpoint to {target}: that file is not a nameorigin checkpoint, and only a "
                "checkpoint is replaced; remove it first or give another path"
            ) from None
    reason = unwritable_reason(target.parent)
    if reason is not None:
        raise CheckpointError(f"cannot save the checkpoint to {target}: {reason}")
    return target


def train_and_save(
    *,
    kind: ModelKind,
    dataset: Dataset,
    out: str | os.PathLike[str],
    train_config: TrainConfig,
    device: torch.device,
    model_overrides: dict[str, Any] | None = None,
) -> TrainedModel:
    """Split, train, fit the temperature on validation, score validation and test, save atomically.

    Raises ``CheckpointError`` before training when ``out`` cannot take the checkpoint, and
    ``DatasetError`` when the dataset is too small to split.
    """
    check_output_path(out)
    split: Split = split_dataset(dataset)  # the fixed split: eval and the fine-tune gate rebuild it from the seed
    vocabulary = Vocabulary.from_names(ex.name for ex in split.train)
    train_set, validation_set, test_set = (
        encode_examples(part, vocabulary, dataset.labels) for part in (split.train, split.validation, split.test)
    )
    config = replace(default_config(kind, vocabulary.size, len(dataset.labels)), **(model_overrides or {}))
    seed_everything(train_config.seed)  # before building, so initial weights follow the seed too
    model = build_model(config)
    result = train_model(model, train_set, validation_set, dataset.labels, train_config, device)
    temperature = fit_temperature(predict_logits(model, validation_set, device), validation_set.truth)
    metrics = {
        "validation": calibrated_metrics(model, validation_set, dataset.labels, temperature, device).headline(),
    }
    if len(test_set):
        metrics["test"] = calibrated_metrics(model, test_set, dataset.labels, temperature, device).headline()
    metadata = CheckpointMetadata(
        model_config=config,
        vocabulary=vocabulary,
        labels=dataset.labels,
        temperature=temperature,
        metrics=metrics,
        dataset_sha256=dataset.sha256,
        split_seed=split.seed,
        version=new_version(kind),
        class_prior=class_prior(train_set.truth, train_config.class_weight_power),
    )
    try:
        path = save_checkpoint(out, model, metadata)
    except OSError as exc:
        raise CheckpointError(f"cannot save the checkpoint to {out}: {exc.strerror or exc}") from exc
    logger.info("saved %s to %s (temperature %.3f, metrics %s)", metadata.version, path, temperature, metrics)
    return TrainedModel(path=path, metadata=metadata, result=result)
