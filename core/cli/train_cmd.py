"""``nameorigin train``: train and save a checkpoint."""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import replace
from pathlib import Path

from core.choices import MODEL_KINDS
from core.cli.common import (
    CommandError,
    Subparsers,
    add_device_option,
    device_from,
    non_empty_path,
    sigterm_unwinds,
    stdout_to_a_reader_that_may_leave,
    user_errors,
    whole_number,
)
from core.data import load_dataset
from core.paths import DEFAULT_MODEL_DIR
from core.train_config import MAX_CLASS_WEIGHT_POWER, SELECTION_METRICS, TrainConfig

MODEL_DIR_ENV = "MODEL_DIR"  # where the bot looks for a trained GRU: train writes there by default
MAX_SEED = 2**32 - 1  # numpy's seeds are unsigned 32-bit integers
MAX_THREADS = 1024


def default_model_dir() -> Path:
    """``$MODEL_DIR`` when set, the folder the bot starts its GRU from; else ``data/models``."""
    return Path(os.environ.get(MODEL_DIR_ENV, "").strip() or DEFAULT_MODEL_DIR)  # blank: unset, as the bot reads it


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    return whole_number(text, 1)


def random_seed(text: str) -> int:
    """An argparse type: a random seed every generator training seeds accepts, 0 to 2**32 - 1."""
    return whole_number(text, 0, MAX_SEED)


def thread_count(text: str) -> int:
    """An argparse type: torch threads, 1 to ``MAX_THREADS`` (tens of thousands crash OpenMP outright)."""
    return whole_number(text, 1, MAX_THREADS)


def class_weight_power(text: str) -> float:
    """An argparse type: a finite power from 0 to ``MAX_CLASS_WEIGHT_POWER`` (``nan`` passes a ``< 0`` check)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_CLASS_WEIGHT_POWER:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to {MAX_CLASS_WEIGHT_POWER:g}, got {text!r}")
    return value


def register(commands: Subparsers) -> None:
    """Add the ``train`` command."""
    defaults = TrainConfig()
    parser = commands.add_parser("train", help="train a model on the fixed training split")
    parser.add_argument("--model", choices=MODEL_KINDS, default="gru", help="architecture (default: gru)")
    parser.add_argument(
        "--data-dir", type=non_empty_path, help="dataset folder (default: $NAMES_DATA_DIR or data/names)"
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=defaults.epochs, help="maximum epochs (default: %(default)s)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=defaults.batch_size, help="names per batch (default: %(default)s)"
    )
    parser.add_argument(
        "--out", type=non_empty_path, help="checkpoint path (default: $MODEL_DIR or data/models, /<model>.safetensors)"
    )
    parser.add_argument(
        "--class-weight-power",
        type=class_weight_power,
        default=defaults.class_weight_power,
        help="class-imbalance weighting: 0 none, 1 inverse frequency (default: %(default)s)",
    )
    parser.add_argument(
        "--select-on",
        choices=SELECTION_METRICS,
        default=defaults.select_on,
        help="validation figure that picks the best epoch (default: %(default)s)",
    )
    parser.add_argument(
        "--patience",
        type=positive_int,
        default=defaults.patience,
        help="epochs without improvement before stopping (default: %(default)s)",
    )
    parser.add_argument("--seed", type=random_seed, default=defaults.seed, help="random seed (default: 0)")
    parser.add_argument("--threads", type=thread_count, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="smoke test: one epoch of a tiny model, saved like any other "
        "(default: $MODEL_DIR or data/models, /<model>-dry-run.safetensors)",
    )
    add_device_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Train, calibrate, evaluate and save."""
    import torch

    from core.pipeline import train_and_save

    device = device_from(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = replace(
            TrainConfig(),
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            class_weight_power=args.class_weight_power,
            select_on=args.select_on,
            patience=args.patience,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    overrides = None
    if args.dry_run:
        config = replace(config, epochs=1)
        overrides = {"hidden_size": 16, "embedding_dim": 8}
        if args.model == "gru":  # the n-gram table would otherwise hold most of a "tiny" model's weights
            overrides["ngram_buckets"] = 256
    out = args.out
    if out is None:
        out = default_model_dir() / f"{args.model}{'-dry-run' if args.dry_run else ''}.safetensors"
    with sigterm_unwinds(), user_errors():  # a checkpoint's temporary file goes with a stopped run
        dataset = load_dataset(args.data_dir)
        trained = train_and_save(
            kind=args.model,
            dataset=dataset,
            out=out,
            train_config=config,
            device=device,
            model_overrides=overrides,
        )
    figures = trained.metadata.metrics
    with stdout_to_a_reader_that_may_leave():
        print(f"saved {trained.metadata.version} to {trained.path}")
        print(f"best epoch {trained.result.best_epoch}, temperature {trained.metadata.temperature:.3f}")
        for split_name, values in figures.items():
            print(f"{split_name}: " + ", ".join(f"{k} {v}" for k, v in values.items()))
        sys.stdout.flush()
    return 0
