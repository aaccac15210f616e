"""Training throughput: the tutorial's one-name-per-step loop against our batched trainer.

The tutorial's loop is a copy of its code: each name a one-hot tensor (built beforehand, as its
current version's dataset does), a 2-layer ``nn.GRU`` with hidden size 64 over the whole name (its
current version; the original stepped a cell by hand), a linear read-out of the last state,
log-softmax and NLL loss, and a plain SGD update after every name (its original version; the
current one sums 64 names' losses per step, which measured about 8% slower here). Our trainer runs the same
network shape (a 2-layer unidirectional GRU, hidden size 64, the same read-out; a learned 32-wide
character embedding where the tutorial feeds one-hot vectors) through ``core.train`` with its
defaults. A third loop steps our model one name at a time, to separate what batching buys from what
the model's own per-call work (embedding, read-out) costs. All run for one epoch of the same training
split, in this one process, and the script prints names/s for each and the ratios.

Run: python benchmarks/train_speed.py [--data-dir DIR] [--device cpu|cuda] [--limit N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn

from core.batching import EncodedExamples, encode_examples
from core.data import load_dataset
from core.device import DEVICE_CHOICES, resolve_device
from core.encoding import Vocabulary
from core.models import GRUClassifier, GRUConfig
from core.split import split_dataset
from core.train import TrainConfig, class_weights, make_optimizer, seed_everything, train_epoch

TUTORIAL_HIDDEN = 64
TUTORIAL_LAYERS = 2
TUTORIAL_LEARNING_RATE = 0.005


def seconds_since(started: float, device: torch.device) -> float:
    """Seconds since ``started``, counting the device work queued meanwhile."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


class TutorialGRU(nn.Module):
    """The tutorial's network: one-hot characters ``(T, 1, A)`` in, log-probabilities ``(1, C)`` out."""

    def __init__(self, alphabet_size: int, num_classes: int) -> None:
        super().__init__()
        self.gru = nn.GRU(alphabet_size, TUTORIAL_HIDDEN, num_layers=TUTORIAL_LAYERS)
        self.h2o = nn.Linear(TUTORIAL_HIDDEN, num_classes)
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, line: torch.Tensor) -> torch.Tensor:
        """Read the whole name and classify it from the top layer's last state."""
        _, hidden = self.gru(line)  # (layers, 1, H)
        log_probabilities: torch.Tensor = self.softmax(self.h2o(hidden[-1]))
        return log_probabilities


def one_hot_lines(data: EncodedExamples, alphabet_size: int, device: torch.device) -> list[torch.Tensor]:
    """Each name as the tutorial feeds it: a one-hot tensor ``(T, 1, A)``, built once before timing."""
    return [
        nn.functional.one_hot(data.tokens[row, : int(data.lengths[row])], alphabet_size).float().unsqueeze(1).to(device)
        for row in range(len(data))
    ]


def tutorial_steps(
    model: TutorialGRU,
    lines: Sequence[torch.Tensor],
    targets: torch.Tensor,
    indices: torch.Tensor,
    device: torch.device,
) -> float:
    """Train on ``indices`` with the tutorial's loop: forward, NLL, backward, SGD, per name. Returns seconds."""
    loss_fn = nn.NLLLoss()
    started = time.perf_counter()
    for index in indices.tolist():
        model.zero_grad()
        loss = loss_fn(model(lines[index]), targets[index : index + 1])
        loss.backward()  # type: ignore[no-untyped-call]
        for parameter in model.parameters():
            assert parameter.grad is not None
            parameter.data.add_(parameter.grad.data, alpha=-TUTORIAL_LEARNING_RATE)
        loss.item()  # the tutorial returns each step's loss as a number
    return seconds_since(started, device)


def same_shape_gru(vocab_size: int, num_classes: int) -> GRUClassifier:
    """Our GRU classifier in the tutorial's shape: two layers, hidden 64, one direction, last-state read-out."""
    config = GRUConfig(
        vocab_size=vocab_size, num_classes=num_classes, embedding_dim=32, hidden_size=TUTORIAL_HIDDEN,
        num_layers=TUTORIAL_LAYERS, bidirectional=False, dropout=0.0, max_pool=False, bigrams=False,
    )  # fmt: skip
    return GRUClassifier(config)


def per_sample_steps(
    model: nn.Module,
    data: EncodedExamples,
    indices: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> float:
    """Train our model on ``indices`` one name per forward, backward and SGD step. Returns seconds."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    started = time.perf_counter()
    for index in indices.tolist():
        length = int(data.lengths[index])
        tokens = data.tokens[index : index + 1, :length].to(device)  # (1, T): no padding at all
        target = data.truth[index].nonzero()[0].to(device)  # (1,)
        loss = loss_fn(model(tokens, data.lengths[index : index + 1]), target)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    return seconds_since(started, device)


def batched_epoch(model: nn.Module, train: EncodedExamples, device: torch.device) -> float:
    """One training pass of ``core.train`` with its defaults (buckets, AdamW, clipping); returns seconds.

    Like the per-name loops it is timed without a validation pass.
    """
    config = TrainConfig(epochs=1, show_progress=False)
    model.to(device)
    optimizer, schedule = make_optimizer(model, config, len(train))
    weights = class_weights(train.truth, config.class_weight_power).to(device)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    train_epoch(model, train, weights, optimizer, schedule, config, generator, device)
    return seconds_since(started, device)


def main() -> None:
    """Time the three loops and print names/s and the speed-ups."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="cpu")
    parser.add_argument("--limit", type=int, help="use only the first N training names (quick runs)")
    parser.add_argument("--repeats", type=int, default=5, help="turns: batched epochs timed, per-name slices")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    device = resolve_device(args.device)
    dataset = load_dataset(args.data_dir)
    split = split_dataset(dataset)
    train_examples = split.train[: args.limit] if args.limit else split.train
    vocabulary = Vocabulary.from_names(ex.name for ex in split.train)
    train = encode_examples(train_examples, vocabulary, dataset.labels)
    if len(train) < args.repeats:
        parser.error(f"--repeats {args.repeats} needs at least as many training names, got {len(train)}")
    classes = len(dataset.labels)
    lines = one_hot_lines(train, vocabulary.size, device)
    targets = train.truth.float().argmax(dim=1).to(device)  # the tutorial has one language per name: the first

    # On a shared machine speed drifts by tens of percent within a minute. So the loops take turns: the
    # per-name epochs are cut into `repeats` slices, and a batched epoch (on a fresh model each time)
    # runs before each pair of slices, so all see the same conditions. The batched figure is their median.
    # Untimed: the first optimizer step and the first GRU call pay one-off costs (lazy imports, allocator).
    warm_up = torch.arange(min(len(train), 8))
    batched_epoch(same_shape_gru(vocabulary.size, classes), train, device)
    tutorial_steps(TutorialGRU(vocabulary.size, classes).to(device), lines, targets, warm_up, device)
    scratch = same_shape_gru(vocabulary.size, classes).to(device)
    per_sample_steps(scratch, train, warm_up, torch.optim.SGD(scratch.parameters()), device)

    seed_everything(0)
    tutorial_model = TutorialGRU(vocabulary.size, classes).to(device)
    our_model = same_shape_gru(vocabulary.size, classes).to(device)
    sgd = torch.optim.SGD(our_model.parameters(), lr=TUTORIAL_LEARNING_RATE)
    slices = torch.randperm(len(train)).tensor_split(args.repeats)
    batched_runs, tutorial_seconds, ours_seconds = [], [], []
    for indices in slices:
        seed_everything(0)
        batched_runs.append(batched_epoch(same_shape_gru(vocabulary.size, classes), train, device))
        tutorial_seconds.append(tutorial_steps(tutorial_model, lines, targets, indices, device))
        ours_seconds.append(per_sample_steps(our_model, train, indices, sgd, device))
    batched_seconds = statistics.median(batched_runs)

    def turn_ratios(slice_seconds: list[float]) -> list[float]:
        """The speed-up each turn measured on its own: the slice's pace scaled to a whole epoch."""
        return [
            seconds * len(train) / len(indices) / batched
            for seconds, indices, batched in zip(slice_seconds, slices, batched_runs, strict=True)
        ]

    over_tutorial, over_ours = turn_ratios(tutorial_seconds), turn_ratios(ours_seconds)
    names = len(train)
    rows = [
        ("tutorial's code: one name per step", sum(tutorial_seconds)),
        ("our model: one name per step", sum(ours_seconds)),
        (f"batched trainer (buckets, batch {TrainConfig().batch_size})", batched_seconds),
    ]
    print(f"device {device}, torch threads {torch.get_num_threads()}, {names} training names, one epoch each")
    print(f"{'loop':<38}{'seconds':>9}{'names/s':>11}")
    for label, seconds in rows:
        print(f"{label:<38}{seconds:>9.2f}{names / seconds:>11.0f}")
    print(f"batched epochs: {', '.join(f'{seconds:.2f}' for seconds in batched_runs)} s (median used)")
    # The headline is the median turn: a burst of load that hits one long slice moves a total, not a median.
    for label, ratios, target in (
        ("the tutorial's code", over_tutorial, " (target >= 30x)"),
        ("our model one name per step", over_ours, ""),
    ):
        turns = ", ".join(f"{ratio:.1f}x" for ratio in ratios)
        print(f"speed-up over {label}: {statistics.median(ratios):.1f}x{target}; turn by turn {turns}")


if __name__ == "__main__":
    main()
