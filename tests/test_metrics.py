"""Evaluation figures and temperature fitting on small cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.calibration import MAX_TEMPERATURE, MIN_TEMPERATURE, fit_temperature
from core.metrics import compute_metrics

LABELS = ("A", "B", "C", "D")


def hand_checked_case() -> tuple[np.ndarray, np.ndarray]:
    """Four names: right; wrong but in the top 3; right by its second language; wrong outside the top 3."""
    probabilities = np.array(
        [
            [0.70, 0.10, 0.10, 0.10],  # truth {A}: right at 0.70
            [0.10, 0.62, 0.18, 0.10],  # truth {C}: says B at 0.62, C second
            [0.20, 0.20, 0.50, 0.10],  # truth {A, C}: says C at 0.50, one of its languages
            [0.42, 0.30, 0.18, 0.10],  # truth {D}: says A at 0.42, D last
        ]
    )
    truth = np.zeros((4, 4), dtype=bool)
    for row, languages in enumerate(([0], [2], [0, 2], [3])):
        truth[row, languages] = True
    return probabilities, truth


def test_figures_follow_the_set_aware_rule() -> None:
    probabilities, truth = hand_checked_case()
    metrics = compute_metrics(probabilities, truth, LABELS)
    assert metrics.accuracy == 0.5
    assert metrics.top3_accuracy == 0.75
    # Effective truth A, C, C, D against predictions A, B, C, A: F1 of A 2/3, B 0, C 2/3, D 0.
    assert metrics.macro_f1 == pytest.approx((2 / 3 + 0 + 2 / 3 + 0) / 4)
    by_language = {score.language: score for score in metrics.per_language}
    assert (by_language["A"].precision, by_language["A"].recall, by_language["A"].support) == (0.5, 1.0, 1)
    assert (by_language["C"].precision, by_language["C"].recall, by_language["C"].support) == (1.0, 0.5, 2)
    assert metrics.confusion.tolist() == [[1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0]]
    # Each confidence sits alone in one of the 15 bins: ECE is the mean gap between confidence and being right.
    assert metrics.ece == pytest.approx((0.30 + 0.62 + 0.50 + 0.42) / 4)
    assert metrics.nll == pytest.approx(-(math.log(0.7) + math.log(0.18) + math.log(0.7) + math.log(0.1)) / 4)


def test_a_language_neither_present_nor_predicted_is_left_out_of_macro_f1() -> None:
    probabilities, truth = hand_checked_case()
    with_absent = np.hstack([probabilities, np.zeros((4, 1))])
    metrics = compute_metrics(with_absent, np.hstack([truth, np.zeros((4, 1), dtype=bool)]), (*LABELS, "E"))
    assert metrics.macro_f1 == pytest.approx(compute_metrics(probabilities, truth, LABELS).macro_f1)


def test_a_language_filed_but_never_predicted_counts_in_macro_f1() -> None:
    # Every name filed under E is also filed under another language, which the model says: E is never
    # predicted and never the effective truth, yet it is in the split and the model never finds it.
    probabilities, truth = hand_checked_case()
    with_e = np.hstack([probabilities, np.zeros((4, 1))])
    truth_e = np.hstack([truth, np.array([[True], [False], [True], [False]])])  # rows 0 and 2 are right already
    metrics = compute_metrics(with_e, truth_e, (*LABELS, "E"))
    assert metrics.accuracy == 0.5
    assert metrics.macro_f1 == pytest.approx((2 / 3 + 0 + 2 / 3 + 0 + 0) / 5)


def test_top3_always_holds_the_top_answer_when_probabilities_tie() -> None:
    # Eight languages tie at the top, scattered among the others; argmax takes the first, and the top 3
    # must hold it too (an unstable sort left it out of this row's).
    row = [0, 1, 0, 1, 3, 3, 3, 3, 0, 3, 2, 2, 3, 0, 3, 1, 3, 3]
    probabilities = np.array([row]) / sum(row)
    truth = np.zeros(probabilities.shape, dtype=bool)
    truth[0, 4] = True
    metrics = compute_metrics(probabilities, truth, [f"L{i}" for i in range(18)])
    assert metrics.accuracy == 1.0
    assert metrics.top3_accuracy == 1.0


def test_a_true_language_ranked_third_counts_for_top3() -> None:
    probabilities = np.array([[0.50, 0.30, 0.15, 0.05]])
    truth = np.array([[False, False, True, False]])  # C, ranked third
    metrics = compute_metrics(probabilities, truth, LABELS)
    assert (metrics.accuracy, metrics.top3_accuracy) == (0.0, 1.0)
    truth_last = np.array([[False, False, False, True]])  # D, ranked fourth
    assert compute_metrics(probabilities, truth_last, LABELS).top3_accuracy == 0.0


def test_a_wrong_answer_counts_against_the_true_language_ranked_highest_not_the_first_listed() -> None:
    # Truth {A, C}; the model says B, and ranks C above A: the miss is C's, so recall and confusion name C.
    probabilities = np.array([[0.10, 0.60, 0.25, 0.05]])
    truth = np.array([[True, False, True, False]])
    metrics = compute_metrics(probabilities, truth, LABELS)
    assert metrics.confusion.tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    by_language = {score.language: score for score in metrics.per_language}
    assert (by_language["C"].support, by_language["C"].recall) == (1, 0.0)
    assert by_language["A"].support == 0


def test_ece_pools_the_names_within_each_of_15_confidence_bins() -> None:
    # 0.61 (right) and 0.66 (wrong) share the bin (9/15, 10/15]: one gap, |0.635 - 0.5|, not each name's own.
    pooled = np.array([[0.61, 0.29, 0.10], [0.66, 0.24, 0.10]])
    truth = np.array([[True, False, False], [False, True, False]])
    assert compute_metrics(pooled, truth, LABELS[:3]).ece == pytest.approx(0.135)
    # 0.65 (right) and 0.68 (wrong) straddle the edge at 10/15: two bins, each with its own gap.
    apart = np.array([[0.65, 0.25, 0.10], [0.68, 0.22, 0.10]])
    assert compute_metrics(apart, truth, LABELS[:3]).ece == pytest.approx((0.35 + 0.68) / 2)


def test_nll_stays_finite_when_the_true_language_gets_no_probability() -> None:
    # float32 softmax underflows to exactly 0 for a language far below the top one.
    metrics = compute_metrics(np.array([[1.0, 0.0]]), np.array([[False, True]]), ("A", "B"))
    assert metrics.nll == pytest.approx(-math.log(1e-12))


def test_an_empty_split_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        compute_metrics(np.zeros((0, 4)), np.zeros((0, 4), dtype=bool), LABELS)


def test_the_fitted_temperature_undoes_overconfidence() -> None:
    generator = torch.Generator().manual_seed(0)
    calibrated = torch.randn(5_000, 5, generator=generator) * 2
    labels = torch.multinomial(calibrated.softmax(dim=1), 1, generator=generator).squeeze(1)
    truth = torch.nn.functional.one_hot(labels, 5).bool()
    assert fit_temperature(calibrated * 3, truth) == pytest.approx(3.0, rel=0.08)
    assert fit_temperature(calibrated / 2, truth) == pytest.approx(0.5, rel=0.08)


def test_the_temperature_stays_bounded_when_logits_carry_no_information() -> None:
    logits = torch.zeros(100, 5)
    logits[:, 0] = 1.0  # always says the first language, which is never right
    truth = torch.zeros(100, 5, dtype=torch.bool)
    truth[:, 1] = True
    temperature = fit_temperature(logits, truth)
    assert math.isfinite(temperature)
    assert temperature == MAX_TEMPERATURE  # the flattest answer it may give


def test_the_temperature_stays_bounded_when_logits_are_always_right() -> None:
    logits = torch.zeros(100, 5)
    logits[:, 0] = 0.01  # always right by a hair: sharpening without limit would always lower the loss
    truth = torch.zeros(100, 5, dtype=torch.bool)
    truth[:, 0] = True
    assert fit_temperature(logits, truth) == pytest.approx(MIN_TEMPERATURE)  # the sharpest answer it may give
