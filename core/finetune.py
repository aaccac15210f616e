"""Fine-tune a trained GRU on trusted user feedback without forgetting what it knew.

Feedback names are mixed with a replay sample of the original training split, so a few
epochs at a low learning rate move the model towards the corrections while the replay
holds the rest of its knowledge in place. The temperature is refitted afterwards.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

import torch

from core.batching import EncodedExamples, encode_examples
from core.calibration import fit_temperature
from core.checkpoint import Checkpoint, CheckpointMetadata, utc_timestamp
from core.data import Example
from core.inference import predict_logits
from core.pipeline import new_version
from core.split import Split
from core.train import TrainConfig, class_weights, make_optimizer, seed_everything, train_epoch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneConfig:
    """How a fine-tune run trains; the defaults take a few seconds on one CPU thread."""

    epochs: int = 4
    learning_rate: float = 1e-3  # peak of the one-cycle schedule: a third of full training's
    replay_size: int = 4000  # original training names mixed into each run so the model does not forget
    feedback_weight: int = 5  # each trusted correction is seen this many times per epoch
    batch_size: int = 64
    char_dropout: float = 0.2
    class_weight_power: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.replay_size < 0 or self.feedback_weight < 1 or self.batch_size < 1:
            raise ValueError("epochs, feedback_weight and batch_size must be at least 1; replay_size at least 0")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")


@dataclass(frozen=True)
class FeedbackSplit:
    """Trusted feedback divided into names to learn from and names that only judge the result."""

    train: tuple[Example, ...]
    holdout: tuple[Example, ...]


def split_feedback(feedback: Sequence[Example], holdout_fraction: float = 0.2, seed: int = 0) -> FeedbackSplit:
    """Hash each name into train or holdout, so a name stays on the same side from run to run."""
    train: list[Example] = []
    holdout: list[Example] = []
    for example in feedback:
        digest = hashlib.sha256(f"{seed}:{example.key}".encode()).digest()
        bucket = int.from_bytes(digest[:4], "big") / 2**32
        (holdout if bucket < holdout_fraction else train).append(example)
    return FeedbackSplit(train=tuple(train), holdout=tuple(holdout))


def replay_sample(split: Split, exclude: set[str], size: int, seed: int) -> list[Example]:
    """Up to ``size`` training-split names, none of them in ``exclude`` (feedback overrides the dataset)."""
    candidates = [example for example in split.train if example.key not in exclude]
    rng = random.Random(seed)
    return rng.sample(candidates, min(size, len(candidates)))


def _mixed_training_set(
    live: CheckpointMetadata,
    split: Split,
    feedback: Sequence[Example],
    config: FinetuneConfig,
    exclude: Collection[str],
) -> EncodedExamples:
    keep_out = {example.key for example in feedback} | set(exclude)
    replay = replay_sample(split, keep_out, config.replay_size, config.seed)
    examples = replay + list(feedback) * config.feedback_weight
    return encode_examples(examples, live.vocabulary, live.labels)


def fine_tune(
    live: Checkpoint,
    split: Split,
    feedback: Sequence[Example],
    config: FinetuneConfig,
    device: torch.device,
    exclude: Collection[str] = (),
) -> Checkpoint:
    """A new checkpoint trained from ``live`` on ``feedback`` plus replay; ``live`` itself is not touched.

    Names whose key is in ``exclude`` (held-out feedback) are left out of the replay sample too.
    """
    if not feedback:
        raise ValueError("fine-tuning needs at least one feedback example")
    unknown = {lang for example in feedback for lang in example.languages} - set(live.metadata.labels)
    if unknown:
        raise ValueError(f"feedback uses languages the model does not know: {sorted(unknown)}")
    seed_everything(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train_set = _mixed_training_set(live.metadata, split, feedback, config, exclude)
    model = copy.deepcopy(live.model).to(device)
    train_config = TrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        char_dropout=config.char_dropout,
        class_weight_power=config.class_weight_power,
        seed=config.seed,
        show_progress=False,
    )
    weights = class_weights(train_set.truth, config.class_weight_power).to(device)
    optimizer, schedule = make_optimizer(model, train_config, len(train_set))
    for epoch in range(1, config.epochs + 1):
        loss = train_epoch(model, train_set, weights, optimizer, schedule, train_config, generator, device)
        logger.info("fine-tune epoch %d/%d: loss %.4f on %d names", epoch, config.epochs, loss, len(train_set))
    model.eval()
    validation = encode_examples(split.validation, live.metadata.vocabulary, live.metadata.labels)
    temperature = fit_temperature(predict_logits(model, validation, device), validation.truth)
    metadata = replace(
        live.metadata,
        temperature=temperature,
        metrics={},
        version=new_version(live.metadata.kind),
        parent_version=live.metadata.version,
        created_at=utc_timestamp(),
    )
    return Checkpoint(model=model, metadata=metadata)
