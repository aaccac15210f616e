"""A fixed, name-disjoint, stratified train/validation/test split."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass

from core.data import Dataset, DatasetError, Example

DEFAULT_SPLIT_SEED = 20240611


@dataclass(frozen=True)
class SplitConfig:
    """Fractions of each language stratum held out, and the seed that orders names."""

    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = DEFAULT_SPLIT_SEED


@dataclass(frozen=True)
class Split:
    """Three disjoint sets of examples; no surname appears in two of them."""

    train: tuple[Example, ...]
    validation: tuple[Example, ...]
    test: tuple[Example, ...]
    seed: int


def _order_key(seed: int, name_key: str) -> str:
    # Hash ordering makes a name's position independent of the rest of the data and of Python's RNG.
    return hashlib.sha256(f"{seed}:{name_key}".encode()).hexdigest()


def smallest_stratum(config: SplitConfig) -> int:
    """The fewest names a language needs to put at least one in every part that ``config`` holds out."""
    fractions = [f for f in (config.validation_fraction, config.test_fraction) if f > 0]
    size = max(1, int(0.5 / min(fractions))) if fractions else 1  # a lower bound: n * f <= 0.5 rounds to 0
    while any(round(size * f) < 1 for f in fractions):
        size += 1
    return size


def split_dataset(dataset: Dataset, config: SplitConfig | None = None) -> Split:
    """Split names 80/10/10, stratified by each name's rarest language.

    Examples are already unique by name, so the parts are name-disjoint; stratifying
    by the rarest language keeps small classes (Vietnamese, Portuguese) in every part.
    Raises ``DatasetError`` when the dataset is too small for a part to get any name.
    """
    config = config or SplitConfig()
    class_sizes = Counter(lang for ex in dataset.examples for lang in ex.languages)
    strata: dict[str, list[Example]] = defaultdict(list)
    for example in dataset.examples:
        rarest = min(example.languages, key=lambda lang: (class_sizes[lang], lang))
        strata[rarest].append(example)
    train: list[Example] = []
    validation: list[Example] = []
    test: list[Example] = []
    for language in sorted(strata):
        members = sorted(strata[language], key=lambda ex: _order_key(config.seed, ex.key))
        n_test = round(len(members) * config.test_fraction)
        n_validation = round(len(members) * config.validation_fraction)
        test.extend(members[:n_test])
        validation.extend(members[n_test : n_test + n_validation])
        train.extend(members[n_test + n_validation :])
    held_out = {"validation": (validation, config.validation_fraction), "test": (test, config.test_fraction)}
    empty = [name for name, (part, fraction) in held_out.items() if fraction > 0 and not part]
    if empty:
        raise DatasetError(
            f"the dataset is too small to split: its {len(dataset.examples)} names leave the {' and '.join(empty)} "
            f"split{'s' if len(empty) > 1 else ''} empty; give each language at least {smallest_stratum(config)} names"
        )
    return Split(
        train=tuple(sorted(train, key=lambda ex: ex.key)),
        validation=tuple(sorted(validation, key=lambda ex: ex.key)),
        test=tuple(sorted(test, key=lambda ex: ex.key)),
        seed=config.seed,
    )
