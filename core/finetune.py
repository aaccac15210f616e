"""Fine-tune a trained GRU on trusted user feedback without forgetting what it knew.

Feedback names are mixed with a replay sample of the original training split, so a few
epochs at a low learning rate move the model towards the corrections while the replay
holds the rest of its knowledge in place. Replayed names are trained towards the live
model's own probabilities, not their dataset labels (learning without forgetting), with
dropout off: the replay then exerts no pull until the model drifts from what it said, and
the candidate changes few answers beyond the corrected pattern. Trained on labels with
dropout, a GRU with the n-gram branch changed ~30 test answers per run and lost 0.3-1.3 points; this way
~10 and under 0.15. The temperature is refitted afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import random
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from core.batching import EncodedExamples, encode_examples
from core.calibration import fit_temperature
from core.checkpoint import Checkpoint, CheckpointMetadata
from core.checkpoint_metadata import utc_timestamp
from core.data import Example
from core.inference import predict_logits
from core.pipeline import new_version
from core.split import Split
from core.train import TrainConfig, make_optimizer, optimize_epoch, seed_everything

logger = logging.getLogger(__name__)

FINETUNE_GRAD_CLIP = 1.0  # max global gradient norm, as in full training


@dataclass(frozen=True)
class FinetuneConfig:
    """How a fine-tune run trains; the defaults take a few seconds on one CPU thread."""

    epochs: int = 4
    learning_rate: float = 1e-3  # peak of the one-cycle schedule: a third of full training's
    replay_size: int = 4000  # original training names mixed into each run so the model does not forget
    feedback_weight: int = 5  # each trusted correction is seen this many times per epoch
    batch_size: int = 64
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
    metadata: CheckpointMetadata,
    model: nn.Module,
    split: Split,
    feedback: Sequence[Example],
    config: FinetuneConfig,
    exclude: Collection[str],
    device: torch.device,
) -> tuple[EncodedExamples, torch.Tensor]:
    """Replay plus repeated feedback, encoded, with each name's target distribution ``(N, C)``.

    A replayed name's target is the probabilities (untempered) of ``model``, the live model's copy
    before any training; a correction's is spread evenly over its languages.
    """
    keep_out = {example.key for example in feedback} | set(exclude)
    replay = replay_sample(split, keep_out, config.replay_size, config.seed)
    mixed = encode_examples(replay + list(feedback) * config.feedback_weight, metadata.vocabulary, metadata.labels)
    targets = mixed.truth.float() / mixed.truth.sum(dim=1, keepdim=True)
    if replay:
        replayed = torch.arange(len(replay))
        tokens, lengths, truth = mixed.batch(replayed)
        live_view = EncodedExamples(tokens=tokens, lengths=lengths, truth=truth)
        targets[replayed] = predict_logits(model, live_view, device).softmax(dim=1)
    return mixed, targets


@contextlib.contextmanager
def training_without_dropout(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in training mode with every dropout off; in evaluation mode again on leaving.

    Training mode, because cuDNN's recurrent backward pass requires it. Off are the ``nn.Dropout``
    layers and the recurrent layers' own dropout between stacked layers, which ``nn.GRU`` applies
    whenever it is in training mode; their rates are restored on leaving.
    """
    recurrent = [(module, module.dropout) for module in model.modules() if isinstance(module, nn.RNNBase)]
    model.train()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.eval()
    for module, _ in recurrent:
        module.dropout = 0.0  # nn.GRU reads the rate at every call
    try:
        yield
    finally:
        for module, rate in recurrent:
            module.dropout = rate
        model.eval()


def _train_towards(
    model: nn.Module,
    examples: EncodedExamples,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    config: FinetuneConfig,
    generator: torch.Generator,
    device: torch.device,
) -> float:
    """One epoch of soft-target cross-entropy over length-bucketed batches; returns the mean loss.

    Call it inside ``training_without_dropout``: a replayed name's loss then starts at its minimum,
    so its gradient is zero until the model drifts. Only the corrections push; the replay pulls back.
    """

    def batch_loss(indices: torch.Tensor) -> torch.Tensor:
        tokens, lengths, _ = examples.batch(indices)
        log_probabilities = model(tokens.to(device), lengths).log_softmax(dim=1)  # (B, C)
        loss: torch.Tensor = -(targets[indices].to(device) * log_probabilities).sum(dim=1).mean()
        return loss

    return optimize_epoch(
        model, examples.lengths, batch_loss, optimizer, schedule, config.batch_size, FINETUNE_GRAD_CLIP, generator
    )


def fine_tune(
    live: Checkpoint,
    split: Split,
    feedback: Sequence[Example],
    config: FinetuneConfig,
    device: torch.device,
    exclude: Collection[str] = (),
) -> Checkpoint:
    """A new checkpoint trained from ``live`` on ``feedback`` plus replay; ``live`` itself is not touched.

    Names whose key is in ``exclude`` (held-out feedback) are left out of the replay sample too. Seeds the
    global ``random``, NumPy and torch generators from ``config.seed``. The new model is in eval mode.
    """
    if not feedback:
        raise ValueError("fine-tuning needs at least one feedback example")
    unknown = {lang for example in feedback for lang in example.languages} - set(live.metadata.labels)
    if unknown:
        raise ValueError(f"feedback uses languages the model does not know: {sorted(unknown)}")
    seed_everything(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = copy.deepcopy(live.model).to(device)
    train_set, targets = _mixed_training_set(live.metadata, model, split, feedback, config, exclude, device)
    train_config = TrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        seed=config.seed,
        show_progress=False,
    )
    optimizer, schedule = make_optimizer(model, train_config, len(train_set))
    with training_without_dropout(model):
        for epoch in range(1, config.epochs + 1):
            loss = _train_towards(model, train_set, targets, optimizer, schedule, config, generator, device)
            logger.info("fine-tune epoch %d/%d: loss %.4f on %d names", epoch, config.epochs, loss, len(train_set))
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
