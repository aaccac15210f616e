"""Training throughput: the tutorial's one-name-per-step loop against our batched trainer.

Both train the same architecture (a 2-layer unidirectional GRU, hidden size 64) for one epoch on
the same training split, in this one process, and the script prints names/s for each and the ratio.
The two take turns (a batched epoch, then a slice of the tutorial's epoch) so that both are timed
under the same machine load.

Run: python benchmarks/train_speed.py [--data-dir DIR] [--device cpu|cuda] [--limit N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from core.batching import EncodedExamples, encode_examples
from core.data import load_dataset
from core.device import DEVICE_CHOICES, resolve_device
from core.encoding import Vocabulary
from core.models import GRUClassifier, GRUConfig
from core.split import split_dataset
from core.train import TrainConfig, class_weights, make_optimizer, seed_everything, train_epoch


def tutorial_architecture(vocab_size: int, num_classes: int) -> GRUClassifier:
    """The tutorial's GRU: two layers, hidden size 64, one direction, read-out of the last state."""
    config = GRUConfig(
        vocab_size=vocab_size, num_classes=num_classes, embedding_dim=32, hidden_size=64, num_layers=2,
        bidirectional=False, dropout=0.0, max_pool=False,
    )  # fmt: skip
    return GRUClassifier(config)


def per_sample_steps(
    model: nn.Module,
    data: EncodedExamples,
    indices: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> float:
    """Train on ``indices`` as the tutorial does: one name per forward, backward and SGD step. Returns seconds."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    started = time.perf_counter()
    for index in indices.tolist():
        length = int(data.lengths[index])
        tokens = data.tokens[index : index + 1, :length].to(device)  # (1, T): no padding at all
        target = data.truth[index].nonzero()[0].to(device)  # (1,)
        loss = loss_fn(model(tokens, data.lengths[index : index + 1]), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def batched_epoch(model: nn.Module, train: EncodedExamples, device: torch.device) -> float:
    """One training pass of ``core.train`` with its defaults (buckets, AdamW, clipping); returns seconds.

    Like the tutorial loop it is timed without a validation pass.
    """
    config = TrainConfig(epochs=1, show_progress=False)
    model.to(device)
    optimizer, schedule = make_optimizer(model, config, len(train))
    weights = class_weights(train.truth, config.class_weight_power).to(device)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    train_epoch(model, train, weights, optimizer, schedule, config, generator, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    """Time both loops and print names/s and the speed-up."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="cpu")
    parser.add_argument("--limit", type=int, help="use only the first N training names (quick runs)")
    parser.add_argument("--repeats", type=int, default=5, help="turns: batched epochs timed, tutorial slices")
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

    # On a shared machine speed drifts by tens of percent within a minute. So the two loops take turns:
    # the tutorial's epoch is cut into `repeats` slices, and a batched epoch (on a fresh model each time)
    # runs before each slice, so both see the same conditions. The batched figure is their median.
    seed_everything(0)
    tutorial_model = tutorial_architecture(vocabulary.size, 18).to(device)
    sgd = torch.optim.SGD(tutorial_model.parameters(), lr=0.005)
    slices = torch.randperm(len(train)).tensor_split(args.repeats)
    batched_runs, slice_seconds = [], []
    for indices in slices:
        seed_everything(0)
        batched_runs.append(batched_epoch(tutorial_architecture(vocabulary.size, 18), train, device))
        slice_seconds.append(per_sample_steps(tutorial_model, train, indices, sgd, device))
    batched_seconds = statistics.median(batched_runs)
    per_sample_seconds = sum(slice_seconds)
    # The speed-up each turn measured on its own: the slice's pace scaled to a whole epoch.
    turn_ratios = [
        seconds * len(train) / len(indices) / batched
        for seconds, indices, batched in zip(slice_seconds, slices, batched_runs, strict=True)
    ]

    names = len(train)
    print(f"device {device}, torch threads {torch.get_num_threads()}, {names} training names, one epoch each")
    print(f"{'loop':<34}{'seconds':>9}{'names/s':>11}")
    print(f"{'tutorial: one name per step':<34}{per_sample_seconds:>9.1f}{names / per_sample_seconds:>11.0f}")
    print(f"{'batched (buckets, batch 64)':<34}{batched_seconds:>9.2f}{names / batched_seconds:>11.0f}")
    print(f"batched epochs: {', '.join(f'{seconds:.2f}' for seconds in batched_runs)} s (median used)")
    print(f"speed-up turn by turn: {', '.join(f'{ratio:.1f}x' for ratio in turn_ratios)}")
    print(f"speed-up: {per_sample_seconds / batched_seconds:.1f}x (target >= 30x)")


if __name__ == "__main__":
    main()
