"""``nameorigin eval``: score a checkpoint on the fixed test split."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from core.choices import Prior
from core.cli.common import (
    CommandError,
    Subparsers,
    add_device_option,
    add_model_options,
    add_prior_option,
    device_from,
    non_empty_path,
    stdout_to_a_reader_that_may_leave,
    user_errors,
)
from core.data import Dataset, load_dataset
from core.split import SplitConfig, split_dataset

if TYPE_CHECKING:
    from core.checkpoint import CheckpointMetadata
    from core.metrics import Metrics

logger = logging.getLogger(__name__)


def register(commands: Subparsers) -> None:
    """Add the ``eval`` command."""
    parser = commands.add_parser("eval", help="evaluate a model on the fixed test split")
    add_model_options(parser)
    parser.add_argument(
        "--data-dir", type=non_empty_path, help="dataset folder (default: $NAMES_DATA_DIR or data/names)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--plot", metavar="PNG", type=non_empty_path, help="write a confusion-matrix image")
    add_prior_option(parser)
    add_device_option(parser)
    parser.set_defaults(handler=run)


def top_confusions(metrics: Metrics, labels: tuple[str, ...], count: int = 8) -> list[dict[str, Any]]:
    """The most frequent (truth, prediction) mistakes."""
    mistakes = [
        (int(metrics.confusion[r, c]), r, c)
        for r in range(len(labels))
        for c in range(len(labels))
        if r != c and metrics.confusion[r, c]
    ]
    mistakes.sort(key=lambda m: -m[0])
    return [{"true": labels[r], "predicted": labels[c], "count": n} for n, r, c in mistakes[:count]]


def check_same_languages(metadata: CheckpointMetadata, dataset: Dataset) -> None:
    """Fail in one line when the model knows other languages than the dataset has (a foreign checkpoint)."""
    missing = set(dataset.labels) - set(metadata.labels)
    extra = set(metadata.labels) - set(dataset.labels)
    if missing or extra:
        raise CommandError(
            f"model {metadata.version} was trained on other languages than this dataset's (missing from the "
            f"model: {', '.join(sorted(missing)) or 'none'}; not in the dataset: {', '.join(sorted(extra)) or 'none'})"
        )


def build_report(
    dataset: Dataset, metrics: Metrics, version: str, split_sizes: dict[str, int], prior: Prior = "dataset"
) -> dict[str, Any]:
    """Everything ``eval`` shows, as plain data."""
    labels = tuple(score.language for score in metrics.per_language)  # the model's order, as in the confusion matrix
    return {
        "model_version": version,
        "prior": prior,
        "dataset_sha256": dataset.sha256,
        "audit": asdict(dataset.audit),
        "split_sizes": split_sizes,
        "test": metrics.headline(),
        "per_language": [
            # Four places, as the headline figures: 0.3333, not 0.33333333333333326.
            {key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(score).items()}
            for score in metrics.per_language
        ],
        "top_confusions": top_confusions(metrics, labels),
    }


def print_report(report: dict[str, Any]) -> None:
    """Human-readable rendering of ``build_report``'s output."""
    audit = report["audit"]
    print(f"model {report['model_version']}, {report['prior']} prior")
    print(
        f"dataset: {audit['raw_lines']} lines, {audit['duplicate_pairs']} duplicate (name, language) pairs removed, "
        f"{audit['normalized_lines']} lines normalized, {audit['blank_lines']} blank; "
        f"{audit['distinct_pairs']} pairs, {audit['distinct_names']} names, "
        f"{audit['multi_language_names']} names under several languages"
    )
    sizes = report["split_sizes"]
    print(f"split (name-disjoint): train {sizes['train']}, validation {sizes['validation']}, test {sizes['test']}")
    test = report["test"]
    print(
        f"test: accuracy {test['accuracy']:.2%}, top-3 {test['top3_accuracy']:.2%}, "
        # Four places, as the report holds them: rounding a rounded figure again could move its last digit.
        f"macro-F1 {test['macro_f1']:.4f}, ECE {test['ece']:.4f}, NLL {test['nll']:.4f} ({test['count']} names)"
    )
    print(f"\n{'language':<12}{'names':>7}{'precision':>11}{'recall':>8}{'F1':>7}{'support':>9}")
    for score in report["per_language"]:
        names = audit["per_language"][score["language"]]
        print(
            f"{score['language']:<12}{names:>7}{score['precision']:>11.3f}{score['recall']:>8.3f}"
            f"{score['f1']:>7.3f}{score['support']:>9}"
        )
    # Support depends on the model: without this line, Scottish's 0 looks like an empty test split.
    print(
        "support: test names counted for the language, once each; a name filed under several languages counts\n"
        "for the one predicted when it is among them, else for the one of them the model ranks highest;\n"
        "macro-F1 averages every language the test split files a name under, or the model predicts"
    )
    print("\nmost frequent confusions (true → predicted):")
    for pair in report["top_confusions"]:
        print(f"  {pair['true']} → {pair['predicted']}: {pair['count']}")


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the report; optionally write the confusion plot."""
    from core.checkpoint import load_checkpoint
    from core.pipeline import evaluate_examples
    from core.plots import check_plot_path, save_confusion_plot
    from core.predict import shipped_checkpoint_path

    device = device_from(args)
    if args.plot is not None:
        with user_errors():
            check_plot_path(args.plot)  # before the slow part, so a bad path costs nothing
    with user_errors():
        path = args.checkpoint if args.checkpoint is not None else shipped_checkpoint_path(args.model)
        checkpoint = load_checkpoint(path, device)
        checkpoint.metadata.logit_shift(args.prior)  # fail before the slow part if the prior is unavailable
        dataset = load_dataset(args.data_dir)
    metadata = checkpoint.metadata
    check_same_languages(metadata, dataset)
    if metadata.dataset_sha256 != dataset.sha256:
        logger.warning("the dataset differs from the one this model was trained on; the test split may differ")
    with user_errors():
        split = split_dataset(dataset, SplitConfig(seed=metadata.split_seed))
    metrics = evaluate_examples(checkpoint, split.test, device, args.prior)
    sizes = {"train": len(split.train), "validation": len(split.validation), "test": len(split.test)}
    report = build_report(dataset, metrics, metadata.version, sizes, args.prior)
    with stdout_to_a_reader_that_may_leave():
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_report(report)
        sys.stdout.flush()
    if args.plot is not None:
        with user_errors():
            source = f"{metadata.version}, {args.prior} prior: accuracy {metrics.accuracy:.2%}"
            save_confusion_plot(metrics.confusion, metadata.labels, args.plot, source)
        if not args.json:
            with stdout_to_a_reader_that_may_leave():
                print(f"\nconfusion matrix written to {args.plot}", flush=True)
    return 0
