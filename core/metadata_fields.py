"""Type and range checks for the JSON fields of checkpoint metadata.

Values are checked, not coerced: ``str()`` and ``float()`` would accept almost anything, and a
checkpoint file may come from anywhere. Each check raises ``ValueError`` naming the field
(``model_config_field`` also ``TypeError``, for a config with unknown or missing fields).
"""

from __future__ import annotations

import math
import re
import reprlib
import typing
from typing import Any

from core.calibration import MAX_TEMPERATURE, MIN_TEMPERATURE
from core.models import ElmanConfig, GRUConfig, ModelConfig, config_from_dict

_CONFIG_CLASSES: dict[str, type[ModelConfig]] = {"gru": GRUConfig, "rnn": ElmanConfig}
# ngram_order shapes no tensor, so the file cannot bound it, yet every order costs time and memory per prediction.
_MAX_NGRAM_ORDER = 32


def is_json_number(value: Any) -> bool:
    """Whether ``value`` is a JSON number (``true`` and ``false`` are not, though Python counts them as ints)."""
    # bool is an int subclass, but a JSON true is no number.
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_finite_json_number(value: Any) -> bool:
    """Whether ``value`` is a JSON number that is finite as a float."""
    # json.loads accepts Infinity and NaN, and integers too large for a float.
    try:
        return is_json_number(value) and math.isfinite(value)
    except OverflowError:
        return False


def printable_field(name: str, value: Any) -> str:
    """``value``, which must be a printable string (no line break, no terminal escape); raises ``ValueError``."""
    # Messages quote these fields (the dataset digest when two models cannot be compared): a line break or an
    # escape there would forge log lines or drive the terminal of whoever reads them.
    if not isinstance(value, str) or not value.isprintable():
        raise ValueError(f"{name} must be a printable string, got {reprlib.repr(value)}")
    return value


# A version names a file (versions/<version>.safetensors) and a database key of at most 64 characters.
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def is_version_name(text: str) -> bool:
    """Whether ``text`` could name a model version (see ``version_field``)."""
    return _VERSION.fullmatch(text) is not None


def version_field(name: str, value: Any) -> str:
    """A model version: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."""
    # No '/' or leading '.': a version from a crafted file must not lead a path out of MODEL_DIR.
    if not isinstance(value, str) or not _VERSION.fullmatch(value):
        raise ValueError(
            f"{name} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, "
            f"got {reprlib.repr(value)}"
        )
    return value


def integer_field(name: str, value: Any) -> int:
    """``value``, which must be an integer; raises ``ValueError`` naming the field."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {reprlib.repr(value)}")
    return value


def vocabulary_field(value: Any) -> str:
    """The vocabulary: a string of distinct characters."""
    # A repeated character would shift the id of every character after it.
    if not isinstance(value, str) or len(set(value)) != len(value):
        raise ValueError(f"vocabulary must be a string of distinct characters, got {reprlib.repr(value)}")
    return value


def labels_field(value: Any) -> tuple[str, ...]:
    """The labels: a non-empty list of distinct, non-empty, printable strings."""
    # Printable: `predict` prints labels as they are, and a line break or a terminal escape in one would
    # split an answer over several lines or drive the terminal.
    if not isinstance(value, list) or not value or not all(_is_label(label) for label in value):
        raise ValueError(f"labels must be a non-empty list of non-empty printable strings, got {reprlib.repr(value)}")
    if len(set(value)) != len(value):
        raise ValueError(f"labels must be distinct, got {reprlib.repr(value)}")
    return tuple(value)


def _is_label(value: Any) -> bool:
    return isinstance(value, str) and value != "" and value.isprintable()


def temperature_field(value: Any) -> float:
    """The temperature: a number in the range ``fit_temperature`` clamps to."""
    # A huge temperature flattens every prediction to a uniform guess; a tiny one overflows the scaled
    # logits to infinity in float32, and every probability becomes NaN.
    if not is_finite_json_number(value) or not MIN_TEMPERATURE <= value <= MAX_TEMPERATURE:
        raise ValueError(
            f"temperature must be a number from {MIN_TEMPERATURE} to {MAX_TEMPERATURE}, got {reprlib.repr(value)}"
        )
    return float(value)


def metrics_field(value: Any) -> dict[str, dict[str, float]]:
    """The metrics: each split mapped to an object of finite numbers."""
    # Split name -> the figures of Metrics.headline(), whose "count" is an integer.
    if not isinstance(value, dict) or not all(
        isinstance(figures, dict) and all(map(is_finite_json_number, figures.values())) for figures in value.values()
    ):
        raise ValueError(f"metrics must map each split to an object of finite numbers, got {reprlib.repr(value)}")
    return value


def model_config_field(kind: Any, values: Any) -> ModelConfig:
    """The model config in ``values``, each field's type and range checked before anything is built from it."""
    config_class = _CONFIG_CLASSES.get(kind) if isinstance(kind, str) else None
    if config_class is None:
        raise ValueError(f"unknown model kind {reprlib.repr(kind)}")
    if not isinstance(values, dict):
        raise ValueError(f"model_config must be a JSON object, got {reprlib.repr(values)}")
    hints = typing.get_type_hints(config_class)
    for name, value in values.items():
        if name in hints:
            _check_config_value(name, hints[name], value)
    return config_from_dict(kind, values)  # unknown or missing fields raise TypeError


def _check_config_value(name: str, expected: Any, value: Any) -> None:
    if expected is bool:
        valid, wanted = isinstance(value, bool), "true or false"
    elif expected is int:
        # 0 buckets turns the n-gram branch off; every other size or count needs at least 1.
        low = 0 if name == "ngram_buckets" else 1
        high = _MAX_NGRAM_ORDER if name == "ngram_order" else math.inf
        valid = is_json_number(value) and isinstance(value, int) and low <= value <= high
        wanted = f"an integer from {low}" + (f" to {high}" if high < math.inf else "")
    elif expected is float:
        valid, wanted = is_json_number(value) and 0 <= value < 1, "a number in [0, 1)"  # dropout, a probability
    else:
        return
    if not valid:
        raise ValueError(f"model_config.{name} must be {wanted}, got {reprlib.repr(value)}")


def class_prior_field(value: Any) -> tuple[float, ...] | None:
    """The class prior, when present: a list of JSON numbers (their sum and signs are checked by the caller)."""
    if value is None:
        return None
    # JSON numbers only: float() would also accept strings such as "nan" or "0.5".
    if not isinstance(value, list) or not all(is_json_number(share) for share in value):
        raise ValueError(f"class_prior must be a list of numbers, got {reprlib.repr(value)}")
    return tuple(float(share) for share in value)
