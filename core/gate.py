"""The promotion gate: a fine-tuned candidate replaces the live model only if it is no worse where it counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from core.calibration import Prior
from core.checkpoint import Checkpoint
from core.data import Example
from core.pipeline import evaluate_examples


@dataclass(frozen=True)
class GateScores:
    """One model's accuracy on the fixed test split and on the held-out trusted feedback, under ``prior``."""

    test_accuracy: float
    test_macro_f1: float
    feedback_accuracy: float | None  # None when no feedback was held out
    prior: Prior = "dataset"

    def as_dict(self) -> dict[str, float | str | None]:
        """Rounded figures (and the prior they were measured under) for the model-versions table and reports."""
        return {
            "test_accuracy": round(self.test_accuracy, 4),  # the figure change_in_points works from
            "test_macro_f1": round(self.test_macro_f1, 4),
            "feedback_accuracy": None if self.feedback_accuracy is None else round(self.feedback_accuracy, 4),
            "prior": self.prior,
        }


@dataclass(frozen=True)
class GateDecision:
    """Both models' scores and whether the candidate goes live, with the reason in words."""

    live: GateScores
    candidate: GateScores
    promoted: bool
    reason: str


def score(
    checkpoint: Checkpoint,
    test: Sequence[Example],
    holdout: Sequence[Example],
    device: torch.device,
    prior: Prior = "dataset",
) -> GateScores:
    """Calibrated accuracy of ``checkpoint`` on the test split and on held-out feedback, answering under ``prior``.

    Pass the prior the bot answers with: the gate then judges the answers users would see.
    """
    test_metrics = evaluate_examples(checkpoint, tuple(test), device, prior)
    feedback = evaluate_examples(checkpoint, tuple(holdout), device, prior).accuracy if holdout else None
    return GateScores(test_metrics.accuracy, test_metrics.macro_f1, feedback, prior)


def change_in_points(before: float, after: float) -> float:
    """``after - before`` in percentage points, from the 4-place figures reports show, to 0.01 points.

    The gate decides on this same figure, so a report never shows a change within the limit for a
    run the gate refused (or the other way round) through rounding or float error.
    """
    return round((round(after, 4) - round(before, 4)) * 100, 2)


def decide(
    live: GateScores, candidate: GateScores, max_test_drop_points: float, origin: GateScores | None = None
) -> GateDecision:
    """Promote when test accuracy falls by at most ``max_test_drop_points`` and feedback accuracy does not fall.

    ``origin`` scores the model the live one was fine-tuned from, through any number of runs. The limit
    holds against it too, so runs that each lose a little within it cannot add up to more.
    """
    drop = -change_in_points(live.test_accuracy, candidate.test_accuracy)
    if drop > max_test_drop_points:
        reason = f"test accuracy would drop {drop:.2f} points (limit {max_test_drop_points:.2f})"
        return GateDecision(live, candidate, promoted=False, reason=reason)
    if origin is not None:
        below_origin = -change_in_points(origin.test_accuracy, candidate.test_accuracy)
        if below_origin > max_test_drop_points:
            reason = (
                f"test accuracy would be {below_origin:.2f} points below the model fine-tuning started from "
                f"(limit {max_test_drop_points:.2f}, however many runs)"
            )
            return GateDecision(live, candidate, promoted=False, reason=reason)
    if live.feedback_accuracy is not None and candidate.feedback_accuracy is not None:
        if candidate.feedback_accuracy < live.feedback_accuracy:
            reason = (
                f"held-out feedback accuracy would fall from {live.feedback_accuracy:.1%} "
                f"to {candidate.feedback_accuracy:.1%}"
            )
            return GateDecision(live, candidate, promoted=False, reason=reason)
    change = -drop
    return GateDecision(live, candidate, promoted=True, reason=f"test accuracy {change:+.2f} points; feedback no worse")
