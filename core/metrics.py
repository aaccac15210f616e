"""Set-aware classification metrics: a prediction is right if it is any of the name's languages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class LanguageScore:
    """Precision, recall and F1 of one language, with its support in the evaluated split."""

    language: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Metrics:
    """Headline figures plus the per-language table and confusion matrix they come from."""

    accuracy: float
    top3_accuracy: float
    macro_f1: float
    ece: float
    nll: float
    count: int
    per_language: tuple[LanguageScore, ...]
    confusion: IntArray  # (C, C): rows effective truth, columns prediction

    def headline(self) -> dict[str, float]:
        """The scalar figures, for checkpoint metadata and JSON output."""
        return {
            "accuracy": round(self.accuracy, 4),
            "top3_accuracy": round(self.top3_accuracy, 4),
            "macro_f1": round(self.macro_f1, 4),
            "ece": round(self.ece, 4),
            "nll": round(self.nll, 4),
            "count": self.count,
        }


def effective_truth(probabilities: FloatArray, truth: BoolArray) -> IntArray:
    """One label per example: the prediction when it is right, else the true label ranked highest.

    This reduces set-valued truth to single labels so that precision, recall and the
    confusion matrix follow the same rule as accuracy.
    """
    predicted = probabilities.argmax(axis=1)
    rows = np.arange(len(predicted))
    correct = truth[rows, predicted]
    best_true = np.where(truth, probabilities, -np.inf).argmax(axis=1)
    chosen: IntArray = np.where(correct, predicted, best_true).astype(np.int64)
    return chosen


def expected_calibration_error(probabilities: FloatArray, truth: BoolArray, bins: int = 15) -> float:
    """Weighted mean gap between top-1 confidence and accuracy over equal-width confidence bins."""
    confidence = probabilities.max(axis=1)
    rows = np.arange(len(confidence))
    correct = truth[rows, probabilities.argmax(axis=1)].astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(confidence[members].mean() - correct[members].mean())
    return float(total)


def set_nll(probabilities: FloatArray, truth: BoolArray) -> float:
    """Mean negative log of the probability given to the name's set of languages."""
    mass = np.where(truth, probabilities, 0.0).sum(axis=1)
    return float(-np.log(np.clip(mass, 1e-12, None)).mean())


def compute_metrics(probabilities: FloatArray, truth: BoolArray, labels: Sequence[str]) -> Metrics:
    """All evaluation figures for ``probabilities`` ``(N, C)`` against the truth mask ``(N, C)``."""
    count, classes = probabilities.shape
    if count == 0:
        raise ValueError("cannot compute metrics on an empty split")
    rows = np.arange(count)
    predicted = probabilities.argmax(axis=1)
    accuracy = float(truth[rows, predicted].mean())
    # Stable, so among tied probabilities the top 3 start where argmax does: top-3 never misses the top-1 answer.
    top3 = np.argsort(-probabilities, axis=1, kind="stable")[:, :3]
    top3_accuracy = float(np.take_along_axis(truth, top3, axis=1).any(axis=1).mean())
    actual = effective_truth(probabilities, truth)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (actual, predicted), 1)
    scores = []
    f1_values = []
    for c, language in enumerate(labels):
        tp = confusion[c, c]
        predicted_c = confusion[:, c].sum()
        support = confusion[c, :].sum()
        precision = tp / predicted_c if predicted_c else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores.append(LanguageScore(language, float(precision), float(recall), float(f1), int(support)))
        # A language counts if the split files any name under it, not only if it is some name's effective
        # truth: else a model that never predicts a language all of whose names have another one too
        # (Scottish, under English) drops it from the average, and scores higher than a model that tries.
        if truth[:, c].any() or predicted_c:
            f1_values.append(f1)
    return Metrics(
        accuracy=accuracy,
        top3_accuracy=top3_accuracy,
        macro_f1=float(np.mean(f1_values)),
        ece=expected_calibration_error(probabilities, truth),
        nll=set_nll(probabilities, truth),
        count=count,
        per_language=tuple(scores),
        confusion=confusion,
    )
