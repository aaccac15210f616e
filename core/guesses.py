"""What a ``Predictor`` answers: plain values, free of torch, for whoever shows them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from core.text import SurnameQuery


class LanguageGuess(NamedTuple):
    """One candidate language with its calibrated probability (a tuple: cheap to build by the thousand)."""

    language: str
    probability: float


@dataclass(frozen=True)
class Guess:
    """The answer for one input: the surname used, the top-k languages, and whether to trust it."""

    query: SurnameQuery
    predictions: tuple[LanguageGuess, ...]
    uncertain: bool


@dataclass(frozen=True)
class Rejected:
    """An input that cannot be classified, with the reason to show the user."""

    raw: str
    reason: str
