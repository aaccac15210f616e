"""The names users choose among: devices, model kinds, priors. Free of torch, so arguments parse fast."""

from __future__ import annotations

from typing import Literal

DeviceChoice = Literal["auto", "cpu", "cuda", "mps"]
DEVICE_CHOICES: tuple[DeviceChoice, ...] = ("auto", "cpu", "cuda", "mps")

ModelKind = Literal["rnn", "gru"]
MODEL_KINDS: tuple[ModelKind, ...] = ("gru", "rnn")

# What a prediction assumes about how common each language is before reading the name:
# "dataset" keeps the training data's proportions (about half Russian), "uniform" makes them equal.
Prior = Literal["dataset", "uniform"]
PRIORS: tuple[Prior, ...] = ("dataset", "uniform")
