"""Characters to integer ids, with padding and unknown ids, learned from the training split."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

PAD_ID = 0
UNK_ID = 1
_RESERVED = 2


@dataclass(frozen=True)
class Vocabulary:
    """Maps lower-cased characters to ids; id 0 pads, id 1 stands for any unseen character."""

    characters: tuple[str, ...]

    @classmethod
    def from_names(cls, names: Iterable[str]) -> Vocabulary:
        """Build the vocabulary from every character of ``names`` (the training split)."""
        return cls(tuple(sorted({ch for name in names for ch in name.lower()})))

    @property
    def size(self) -> int:
        """Number of ids, including padding and unknown."""
        return len(self.characters) + _RESERVED

    @cached_property
    def _index(self) -> dict[str, int]:
        return {ch: i + _RESERVED for i, ch in enumerate(self.characters)}

    def encode(self, name: str) -> list[int]:
        """Return the ids of ``name``'s characters; unseen characters become ``UNK_ID``."""
        index = self._index
        return [index.get(ch, UNK_ID) for ch in name.lower()]

    def decode(self, ids: Sequence[int]) -> str:
        """Inverse of ``encode`` for known characters, in lower case; padding is dropped, unknowns become '?'."""
        return "".join("?" if i == UNK_ID else self.characters[i - _RESERVED] for i in ids if i != PAD_ID)

    def encode_batch(self, names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and right-pad ``names``: returns ids ``(B, T)`` and lengths ``(B,)``.

        An empty name becomes a single unknown id, so every row has at least one step.
        """
        index = self._index
        encoded = [[index.get(ch, UNK_ID) for ch in name.lower()] or [UNK_ID] for name in names]
        width = max((len(ids) for ids in encoded), default=0)
        # One tensor from nested lists: much faster than filling rows one by one.
        rows = [ids + [PAD_ID] * (width - len(ids)) for ids in encoded]
        tokens = torch.tensor(rows, dtype=torch.long).reshape(len(encoded), width)
        lengths = torch.tensor([len(ids) for ids in encoded], dtype=torch.long)
        return tokens, lengths
