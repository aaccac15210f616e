"""Character 1–5-gram TF-IDF + LinearSVC on the fixed split, beside the shipped GRU and RNN.

Run: python benchmarks/baseline_ngram.py [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from core.checkpoint import load_checkpoint
from core.data import load_dataset
from core.metrics import Metrics, compute_metrics
from core.pipeline import evaluate_examples
from core.predict import shipped_checkpoint_path
from core.split import Split, split_dataset


@dataclass(frozen=True)
class NgramSVM:
    """A character n-gram TF-IDF + LinearSVC trained on the fixed training split."""

    vectorizer: TfidfVectorizer
    classifier: LinearSVC

    def probabilities(self, names: Sequence[str]) -> np.ndarray:
        """A softmax over the SVM's margins ``(N, C)``: it orders languages for top-k, it is not calibrated."""
        scores = self.classifier.decision_function(self.vectorizer.transform([name.lower() for name in names]))
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def train_ngram_svm(split: Split, labels: Sequence[str], balanced: bool = False) -> tuple[NgramSVM, float]:
    """Fit the n-gram SVM on ``split.train``; returns it and its training seconds.

    ``balanced`` weights classes inversely to their frequency (higher macro-F1, lower accuracy).
    """
    label_index = {label: i for i, label in enumerate(labels)}
    # A LinearSVC needs one label per name: a multi-language name is repeated once per language.
    train_names = [ex.name.lower() for ex in split.train for _ in ex.languages]
    train_labels = [label_index[lang] for ex in split.train for lang in sorted(ex.languages)]
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), sublinear_tf=True)
    started = time.perf_counter()
    features = vectorizer.fit_transform(train_names)
    classifier = LinearSVC(C=1.0, class_weight="balanced" if balanced else None).fit(features, train_labels)
    return NgramSVM(vectorizer, classifier), time.perf_counter() - started


def ngram_baseline(data_dir: str | None, balanced: bool = False) -> tuple[Metrics, float]:
    """Train the n-gram SVM on the training split; return its test metrics and training seconds."""
    dataset = load_dataset(data_dir)
    split = split_dataset(dataset)
    svm, seconds = train_ngram_svm(split, dataset.labels, balanced)
    probabilities = svm.probabilities([ex.name for ex in split.test])  # its ECE is not meaningful
    truth = np.array([[label in ex.languages for label in dataset.labels] for ex in split.test])
    return compute_metrics(probabilities, truth, dataset.labels), seconds


def main() -> None:
    """Print the baseline's and the shipped models' test figures side by side."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    rows: list[tuple[str, Metrics]] = []
    for balanced in (False, True):
        baseline, seconds = ngram_baseline(args.data_dir, balanced)
        rows.append((f"ngram-svm{' balanced' if balanced else ''} ({seconds:.1f}s)", baseline))
    split = split_dataset(load_dataset(args.data_dir))
    for kind in ("gru", "rnn"):
        checkpoint = load_checkpoint(shipped_checkpoint_path(kind))
        rows.append((f"shipped {kind}", evaluate_examples(checkpoint, split.test, torch.device("cpu"))))
    print(f"{'model':<26}{'accuracy':>10}{'top-3':>9}{'macro-F1':>10}{'ECE':>8}")
    for name, metrics in rows:
        print(
            f"{name:<26}{metrics.accuracy:>10.2%}{metrics.top3_accuracy:>9.2%}"
            f"{metrics.macro_f1:>10.3f}{metrics.ece:>8.3f}"
        )
    gru = rows[2][1]
    baselines = [metrics for _, metrics in rows[:2]]
    beats = all(gru.accuracy > b.accuracy and gru.macro_f1 > b.macro_f1 for b in baselines)
    print(f"\nshipped GRU beats both n-gram SVMs on accuracy and macro-F1: {'yes' if beats else 'NO'}")
    print("targets for the GRU: accuracy >= 89%, macro-F1 >= 0.62, top-3 >= 97%, ECE <= 0.03")


if __name__ == "__main__":
    main()
