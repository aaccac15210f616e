"""The two character-level classifiers. Both map padded character ids to language logits."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence
from torch.overrides import TorchFunctionMode

from core.choices import MODEL_KINDS as MODEL_KINDS
from core.choices import ModelKind as ModelKind

# 8,192 buckets for ~70k distinct training n-grams: as accurate on validation as 16,384, and the
# checkpoint stays under 2 MB.
SHIPPED_NGRAM_BUCKETS = 8192


@dataclass(frozen=True)
class ElmanConfig:
    """Shape of the hand-written Elman RNN."""

    vocab_size: int  # character ids, including padding and unknown
    num_classes: int  # languages
    embedding_dim: int = 48  # width of x_t, the learned stand-in for the tutorial's one-hot
    hidden_size: int = 256  # width of h_t
    dropout: float = 0.2  # on embeddings and on the final state


@dataclass(frozen=True)
class GRUConfig:
    """Shape of the ``nn.GRU`` classifier."""

    vocab_size: int  # character ids, including padding and unknown
    num_classes: int  # languages
    embedding_dim: int = 64  # character (and character-pair) embedding width
    # Per direction. With the n-gram branch, 96 scored as well on validation as 128 and predicts ~20% faster.
    hidden_size: int = 96
    # One layer: a second one measured no more accurate on validation and halves prediction throughput.
    num_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.3  # on embeddings, between GRU layers and on the read-out
    max_pool: bool = True  # read out max-over-time of the top layer's outputs beside the final states
    bigrams: bool = True  # add an embedding of each (previous, current) character pair to the input
    # Hashed character n-grams (orders 1..ngram_order, name boundaries included) pooled beside the GRU's
    # features: 0 buckets turns the branch off.
    ngram_buckets: int = 0
    ngram_order: int = 5
    ngram_dim: int = 32

    def __post_init__(self) -> None:
        if self.ngram_buckets < 0 or self.ngram_order < 1 or self.ngram_dim < 1:
            raise ValueError("ngram_buckets must be >= 0, ngram_order and ngram_dim >= 1")


class ElmanCell(nn.Module):
    """One Elman step: ``h_t = tanh(W_in·x_t + b_in + W_h·h_{t-1} + b_h)``, as in ``nn.RNN``."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.x2h = nn.Linear(input_size, hidden_size)
        self.h2h = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Advance the state one character: ``x`` is ``(B, E)``, ``h`` is ``(B, H)``."""
        h_next: torch.Tensor = torch.tanh(self.x2h(x) + self.h2h(h))  # (B, H)
        return h_next


class ElmanRNN(nn.Module):
    """The tutorial's recurrent cell, written by hand, run over padded batches with masking."""

    def __init__(self, config: ElmanConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=0)
        self.cell = ElmanCell(config.embedding_dim, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.num_classes)

    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Run the cell over already-embedded ``inputs`` ``(B, T, E)``; return each name's last state."""
        batch, steps, _ = inputs.shape
        h = inputs.new_zeros(batch, self.config.hidden_size)  # (B, H)
        lengths = lengths.to(inputs.device)
        for t in range(steps):
            h_next = self.cell(inputs[:, t], h)  # (B, H)
            # Padded positions keep the previous state, so h ends as the state after the last real character.
            still_reading = (lengths > t).unsqueeze(1)  # (B, 1)
            h = torch.where(still_reading, h_next, h)
        return h

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Return logits ``(B, C)`` for character ids ``(B, T)`` with true ``lengths`` ``(B,)``."""
        embedded = self.dropout(self.embedding(tokens))  # (B, T, E)
        logits: torch.Tensor = self.head(self.dropout(self.encode(embedded, lengths)))  # (B, C)
        return logits


def max_over_time(packed: PackedSequence) -> torch.Tensor:
    """Element-wise max over each sequence's real steps, straight from packed data: ``(B, F)``.

    Unpacking to a padded tensor first costs more than the GRU itself on CPU; a scatter
    over the packed rows never materializes the padding.
    """
    # Packed data is time-major: step t holds rows for the first batch_sizes[t] (length-sorted) sequences.
    owner = torch.cat([torch.arange(int(n)) for n in packed.batch_sizes]).to(packed.data.device)  # (sum_len,)
    batch, width = int(packed.batch_sizes[0]), packed.data.shape[1]
    pooled = packed.data.new_full((batch, width), float("-inf"))
    pooled = pooled.scatter_reduce(0, owner.unsqueeze(1).expand(-1, width), packed.data, reduce="amax")
    return pooled if packed.unsorted_indices is None else pooled[packed.unsorted_indices]


def hashed_ngrams(tokens: torch.Tensor, lengths: torch.Tensor, order: int, buckets: int) -> torch.Tensor:
    """Bucket ids ``(B, order * (T + 1))`` of every character n-gram of orders 1..``order``; -1 marks none.

    Id 0 (padding) doubles as the boundary before and after a name, so ``"^ab"`` and ``"b$"``
    are n-grams too. The hash is plain integer arithmetic: identical on every machine and run.
    """
    batch, steps = tokens.shape
    # int64 throughout: in int32 the products below would overflow and change every hash.
    chars = torch.nn.functional.pad(tokens.long(), (order - 1, 1)) + 1  # (B, T + order): boundaries, then 1-based ids
    # Rolling polynomial hash: code_n at position e extends code_{n-1} at e - 1 by the character at e.
    code = chars
    codes = [code]
    for _ in range(2, order + 1):
        code = (torch.nn.functional.pad(code[:, :-1], (1, 0)) * 1_000_003 + chars) % 2_147_483_647
        codes.append(code)
    # Keep the windows that end on a character (or on the boundary after the last one): (B, order, T + 1).
    ends = torch.stack(codes, dim=1)[:, :, order - 1 :]
    orders = torch.arange(1, order + 1, device=tokens.device).view(1, order, 1)
    ids = (ends * 31 + orders) % buckets
    positions = torch.arange(steps + 1, device=tokens.device).view(1, 1, steps + 1)
    limit = lengths.to(tokens.device).view(batch, 1, 1) - (orders == 1).long()  # a lone "$" is no unigram
    return ids.masked_fill(positions > limit, -1).reshape(batch, -1)


class GRUClassifier(nn.Module):
    """Embedding, a (bidirectional) ``nn.GRU`` over the characters, and a linear read-out.

    With ``ngram_buckets`` set, the read-out also sees the mean embedding of the name's hashed
    character n-grams: the local spelling evidence a character n-gram SVM uses, learned jointly.
    """

    def __init__(self, config: GRUConfig) -> None:
        super().__init__()
        self.config = config
        directions = 2 if config.bidirectional else 1
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=0)
        self.bigram_embedding = (
            nn.Embedding(config.vocab_size * config.vocab_size, config.embedding_dim) if config.bigrams else None
        )
        self.dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(
            config.embedding_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        features = directions * config.hidden_size * (2 if config.max_pool else 1)
        self.ngram_embedding = (
            # One extra row, excluded from every sum, stands for "no n-gram here".
            nn.EmbeddingBag(config.ngram_buckets + 1, config.ngram_dim, mode="sum", padding_idx=config.ngram_buckets)
            if config.ngram_buckets
            else None
        )
        features += config.ngram_dim if config.ngram_buckets else 0
        self.head = nn.Linear(features, config.num_classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Return logits ``(B, C)`` for character ids ``(B, T)`` with true ``lengths`` ``(B,)``."""
        embedded = self.embedding(tokens)  # (B, T, E)
        if self.bigram_embedding is not None:
            previous = torch.nn.functional.pad(tokens[:, :-1], (1, 0))  # (B, T), 0 before the first character
            embedded = embedded + self.bigram_embedding(previous * self.config.vocab_size + tokens)
        features = self.features(self.dropout(embedded), lengths)
        if self.ngram_embedding is not None:
            # Dropped here and again with the other features below: an effective rate of about 0.5 in
            # training. The shipped GRU was trained (and chosen) this way; applying dropout to them
            # only once scored no better on validation (seeds 0-3: mean 87.31% against 87.42%).
            features = torch.cat([features, self.dropout(self.ngrams(tokens, lengths))], dim=1)
        logits: torch.Tensor = self.head(self.dropout(features))  # (B, C)
        return logits

    def features(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The GRU's read-out ``(B, F)`` of embedded names ``(B, T, E)``: the top layer's final state(s),
        then, with ``max_pool``, the max of its outputs over each name's real steps.

        ``nn.GRU`` runs fastest on a plain tensor: on CPU it then projects every step's input in one
        matrix product, where a packed sequence costs a product per step. A packed sequence is used
        only where skipping it would change the answer: names of different lengths read backwards too.
        (Between stacked layers, training dropout then draws its mask over the padded tensor: the same
        distribution, but other random numbers than a packed run.)
        """
        batch, steps, _ = embedded.shape
        directions = 2 if self.config.bidirectional else 1
        if bool((lengths == steps).all()):  # no padding at all
            outputs, h_n = self.gru(embedded)  # outputs: (B, T, directions * H); h_n: (layers * directions, B, H)
            last = h_n[-directions:].transpose(0, 1).reshape(batch, -1)  # (B, directions * H)
            pooled = outputs.amax(dim=1) if self.config.max_pool else None
        elif directions == 1:
            # Reading forwards, a name's outputs are complete before its padding starts; the padding steps
            # after them change nothing that is read.
            outputs, _ = self.gru(embedded)  # (B, T, H)
            ends = lengths.to(outputs.device).view(batch, 1, 1) - 1
            last = outputs.gather(1, ends.expand(-1, 1, outputs.shape[2])).squeeze(1)  # (B, H)
            padding = torch.arange(steps, device=outputs.device).view(1, steps, 1) > ends  # (B, T, 1)
            pooled = outputs.masked_fill(padding, float("-inf")).amax(dim=1) if self.config.max_pool else None
        else:
            packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_outputs, h_n = self.gru(packed)
            last = h_n[-directions:].transpose(0, 1).reshape(batch, -1)
            pooled = max_over_time(packed_outputs) if self.config.max_pool else None
        return last if pooled is None else torch.cat([last, pooled], dim=1)  # (B, (1 or 2) * directions * H)

    def ngrams(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean embedding ``(B, ngram_dim)`` of each name's hashed character n-grams."""
        assert self.ngram_embedding is not None
        buckets = self.config.ngram_buckets
        ids = hashed_ngrams(tokens, lengths, self.config.ngram_order, buckets)  # (B, W)
        present = ids >= 0
        # A sum divided by the count: twice as fast on CPU as the bag's own "mean" mode.
        summed: torch.Tensor = self.ngram_embedding(ids.masked_fill(~present, buckets))
        return summed / present.sum(dim=1, keepdim=True)


ModelConfig = ElmanConfig | GRUConfig
Classifier = ElmanRNN | GRUClassifier


def default_config(kind: ModelKind, vocab_size: int, num_classes: int) -> ModelConfig:
    """The shipped architecture for ``kind``, sized for the given vocabulary and labels."""
    if kind == "gru":
        # The n-gram branch stays off in the dataclass, so checkpoints saved before it existed still load.
        return GRUConfig(vocab_size=vocab_size, num_classes=num_classes, ngram_buckets=SHIPPED_NGRAM_BUCKETS)
    if kind == "rnn":
        return ElmanConfig(vocab_size=vocab_size, num_classes=num_classes)
    raise ValueError(f"unknown model kind {kind!r}: expected one of {', '.join(MODEL_KINDS)}")


def build_model(config: ModelConfig) -> Classifier:
    """Instantiate the model that ``config`` describes."""
    if isinstance(config, GRUConfig):
        return GRUClassifier(config)
    return ElmanRNN(config)


class _SkipRandomFills(TorchFunctionMode):
    """Returns the tensor untouched where ``nn.init.normal_`` or ``nn.init.uniform_`` would fill it."""

    # What nn.Embedding, nn.EmbeddingBag, nn.GRU and nn.Linear's biases call. (nn.Linear's kaiming_uniform_
    # still runs: its Tensor.uniform_ does not reach this mode, and on meta it is a cheap C++ kernel.)
    FILLS = frozenset({nn.init.normal_, nn.init.uniform_})

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        if func in self.FILLS:  # nn.init hands its functions to a mode with the tensor as a keyword
            return (kwargs or {})["tensor"]
        return func(*args, **(kwargs or {}))


def build_skeleton(config: ModelConfig) -> Classifier:
    """The model ``config`` describes on the meta device: every parameter's name, shape and dtype, and no memory.

    Its random fills are skipped, since meta tensors hold no values to fill. That is not only less work:
    ``normal_`` (``nn.Embedding``'s initialization) runs on the meta device as a Python decomposition,
    whose first use imports torch's compiler stack (sympy, dynamo, inductor): most of a second.
    """
    with torch.device("meta"), _SkipRandomFills():
        return build_model(config)


def model_kind(config: ModelConfig) -> ModelKind:
    """The CLI/checkpoint name of the architecture ``config`` describes."""
    return "gru" if isinstance(config, GRUConfig) else "rnn"


def config_to_dict(config: ModelConfig) -> dict[str, Any]:
    """Serialize a model config for checkpoint metadata."""
    return asdict(config)


def config_from_dict(kind: str, values: dict[str, Any]) -> ModelConfig:
    """Rebuild a model config from checkpoint metadata; raises ``TypeError`` on unknown or missing fields,
    ``ValueError`` on an unknown kind."""
    if kind == "gru":
        return GRUConfig(**values)
    if kind == "rnn":
        return ElmanConfig(**values)
    raise ValueError(f"unknown model kind {kind!r}")
