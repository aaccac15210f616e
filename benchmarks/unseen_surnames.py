"""Generalization: the shipped models on real surnames that appear in none of the 18 dataset files.

The fixed test split shares the dataset's sources and proportions (nearly half of it is Russian), so
its figures say little about names from elsewhere. `unseen_surnames.tsv` holds common surnames of
each language, picked by hand and absent from the 18 files; the labels are one curator's, so treat
the figures as a sanity check, not a benchmark of record. Beside the shipped GRU and RNN it scores
the two n-gram SVMs of `baseline_ngram.py`, trained on the fixed training split, and the shipped
models again with a uniform prior (`--prior uniform`), which removes the dataset's language proportions.

Prints accuracy, mean per-language recall and top-3 accuracy for each model (the shipped GRU and RNN,
each with the dataset's prior and a uniform one; the n-gram SVM, plain and class-balanced), then each
language's recall.

Run: python benchmarks/unseen_surnames.py [--data-dir DIR] [--checkpoint PATH ...]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from baseline_ngram import train_ngram_svm

from core.calibration import Prior
from core.data import Dataset, load_dataset
from core.predict import Guess, Predictor, shipped_checkpoint_path
from core.split import split_dataset
from core.text import parse_query

SURNAMES_FILE = Path(__file__).with_name("unseen_surnames.tsv")


def read_surnames(path: Path = SURNAMES_FILE) -> list[tuple[str, str]]:
    """The (surname, language) rows of the tab-separated file; ``#`` lines are comments."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not all(fields):
            raise ValueError(f"{path}:{number}: expected 'surname<TAB>language', got {line!r}")
        rows.append((fields[0], fields[1]))
    return rows


def names_in_dataset(rows: Sequence[tuple[str, str]], dataset: Dataset) -> list[str]:
    """The surnames of ``rows`` that the dataset does hold (compared case-insensitively)."""
    known = {example.name.lower() for example in dataset.examples}
    return [name for name, _ in rows if name.lower() in known]


def figures(top3: Sequence[Sequence[str]], truth: Sequence[str]) -> tuple[float, float, float, dict[str, float]]:
    """Accuracy, mean per-language recall, top-3 accuracy and recall per language of ranked guesses."""
    languages = sorted(set(truth))
    hits = np.array([guesses[0] == language for guesses, language in zip(top3, truth, strict=True)])
    in_top3 = np.array([language in guesses for guesses, language in zip(top3, truth, strict=True)])
    recall = {lang: float(hits[[t == lang for t in truth]].mean()) for lang in languages}
    return float(hits.mean()), float(np.mean(list(recall.values()))), float(in_top3.mean()), recall


def main() -> None:
    """Score the shipped models and the n-gram SVMs on the unseen surnames."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--checkpoint", nargs="*", default=[], help="more checkpoints to score")
    args = parser.parse_args()
    dataset = load_dataset(args.data_dir)
    rows = read_surnames()
    overlap = names_in_dataset(rows, dataset)
    if overlap:
        raise SystemExit(f"{SURNAMES_FILE.name} must hold unseen names only; in the dataset: {', '.join(overlap)}")
    unknown = {language for _, language in rows} - set(dataset.labels)
    if unknown:
        raise SystemExit(f"{SURNAMES_FILE.name} names languages the dataset lacks: {', '.join(sorted(unknown))}")
    raw_names, truth = [name for name, _ in rows], [language for _, language in rows]
    # Every model sees the surname the predictor would classify ("van den Berg" stays whole).
    surnames = [parse_query(name).surname for name in raw_names]

    ranked: list[tuple[str, list[list[str]]]] = []
    gru, rnn = shipped_checkpoint_path("gru"), shipped_checkpoint_path("rnn")
    models: list[tuple[str, Path, Prior]] = [
        ("gru", gru, "dataset"), ("gru uniform", gru, "uniform"),
        ("rnn", rnn, "dataset"), ("rnn uniform", rnn, "uniform"),
    ]  # fmt: skip
    models += [(Path(path).stem, Path(path), "dataset") for path in args.checkpoint]
    for label, path, prior in models:
        predictor = Predictor.from_path(path, torch.device("cpu"), prior=prior)
        top3 = []
        for name, guess in zip(raw_names, predictor.predict_many(raw_names, top_k=3), strict=True):
            if not isinstance(guess, Guess):
                raise SystemExit(f"{SURNAMES_FILE.name}: {name!r} is not a valid query: {guess.reason}")
            top3.append([g.language for g in guess.predictions])
        ranked.append((label, top3))
    split = split_dataset(dataset)
    for balanced in (False, True):
        svm, _ = train_ngram_svm(split, dataset.labels, balanced)
        order = np.argsort(-svm.probabilities(surnames), axis=1)[:, :3]
        label = f"svm{' balanced' if balanced else ''}"
        ranked.append((label, [[dataset.labels[i] for i in row] for row in order]))

    results = [(label, figures(top3, truth)) for label, top3 in ranked]
    counts = {language: truth.count(language) for language in sorted(set(truth))}
    print(f"{len(rows)} surnames absent from the dataset, {len(counts)} languages ({SURNAMES_FILE.name})")
    width = max(len(label) for label, _ in results) + 2
    print(f"{'model':<{width}}{'accuracy':>10}{'mean recall':>13}{'top-3':>9}")
    for label, (accuracy, mean_recall, top3_accuracy, _) in results:
        print(f"{label:<{width}}{accuracy:>10.1%}{mean_recall:>13.1%}{top3_accuracy:>9.1%}")
    print(f"\nrecall per language\n{'language':<12}{'names':>6}" + "".join(f"{label:>{width}}" for label, _ in results))
    for language, count in counts.items():
        print(f"{language:<12}{count:>6}" + "".join(f"{recall[language]:>{width}.0%}" for _, (*_, recall) in results))


if __name__ == "__main__":
    main()
