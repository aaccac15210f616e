"""How a model is trained: the optimization settings, free of torch so the CLI can show their defaults fast."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

SelectionMetric = Literal["accuracy", "macro_f1"]
SELECTION_METRICS: tuple[SelectionMetric, ...] = ("accuracy", "macro_f1")
# 1 fully inverts the imbalance; 2 inverts it twice over. Far beyond, the weights overflow float32 and a
# rare language's share of the class prior falls below what a checkpoint may hold.
MAX_CLASS_WEIGHT_POWER = 2.0


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings; the defaults train the shipped models."""

    epochs: int = 60  # the one-cycle schedule spans them all; 60 beat 40 on validation
    batch_size: int = 64
    learning_rate: float = 3e-3  # peak of the one-cycle schedule
    weight_decay: float = 0.01  # AdamW, decoupled
    grad_clip: float = 1.0  # max global gradient norm
    # Loss weight per class is (count / max count) ** -power: 0 ignores imbalance, 1 fully inverts it.
    # The shipped models use 0: weighting bought rare-language recall with more accuracy than it was worth.
    class_weight_power: float = 0.0
    # Share of characters replaced by the unknown id during training: teaches robustness to unseen spellings.
    char_dropout: float = 0.2
    patience: int = 20  # epochs without a better validation score before stopping
    # Validation figure that picks the best epoch: "macro_f1" favours rare languages, "accuracy" the common ones.
    select_on: SelectionMetric = "accuracy"
    seed: int = 0
    show_progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int | numbers.Integral) or isinstance(value, bool):
                raise TypeError(f"{name} must be a whole number, got {type(value).__name__}")
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("epochs, batch_size and patience must be at least 1")
        # Checked here, not left to torch: a NaN or infinite grad_clip trains every epoch, then fails in calibration.
        if not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise ValueError(f"grad_clip must be a positive number, got {self.grad_clip}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be zero or more, got {self.weight_decay}")
        if not 0.0 <= self.char_dropout < 1.0:
            raise ValueError(f"char_dropout must be in [0, 1), got {self.char_dropout}")
        if not 0 <= self.class_weight_power <= MAX_CLASS_WEIGHT_POWER:  # also refuses NaN
            raise ValueError(
                f"class_weight_power must be from 0 to {MAX_CLASS_WEIGHT_POWER:g}, got {self.class_weight_power}"
            )
        if self.select_on not in SELECTION_METRICS:
            raise ValueError(f"select_on must be one of {', '.join(SELECTION_METRICS)}, got {self.select_on!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
