"""Turn examples into padded tensors and length-bucketed mini-batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from core.data import Example
from core.encoding import Vocabulary


@dataclass(frozen=True)
class EncodedExamples:
    """A split encoded once: ids ``(N, T)``, lengths ``(N,)`` and the truth mask ``(N, C)``."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    truth: torch.Tensor  # bool; several True entries when a name has several languages

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Select rows and trim padding to the longest selected name."""
        lengths = self.lengths[indices]
        width = int(lengths.max())
        return self.tokens[indices, :width], lengths, self.truth[indices]


def encode_examples(examples: Sequence[Example], vocabulary: Vocabulary, labels: Sequence[str]) -> EncodedExamples:
    """Encode names and build the multi-hot truth matrix in ``labels`` order."""
    tokens, lengths = vocabulary.encode_batch([ex.name for ex in examples])
    label_index = {label: i for i, label in enumerate(labels)}
    truth = torch.zeros(len(examples), len(labels), dtype=torch.bool)
    for row, example in enumerate(examples):
        for language in example.languages:
            truth[row, label_index[language]] = True
    return EncodedExamples(tokens=tokens, lengths=lengths, truth=truth)


def bucketed_batches(
    lengths: torch.Tensor, batch_size: int, generator: torch.Generator, pool_batches: int = 50
) -> Iterator[torch.Tensor]:
    """Yield shuffled index batches whose names have similar lengths.

    Indices are shuffled, cut into pools of ``pool_batches`` batches, each pool sorted by
    length and cut into batches, and the batch order shuffled again: little padding,
    yet every epoch sees a different mix.
    """
    order = torch.randperm(len(lengths), generator=generator)
    pool_size = batch_size * pool_batches
    batches: list[torch.Tensor] = []
    for start in range(0, len(order), pool_size):
        pool = order[start : start + pool_size]
        pool = pool[torch.argsort(lengths[pool], stable=True)]
        batches.extend(torch.split(pool, batch_size))
    for i in torch.randperm(len(batches), generator=generator).tolist():
        yield batches[i]


def sequential_batches(count: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Yield index batches in order, for evaluation."""
    yield from torch.split(torch.arange(count), batch_size)
