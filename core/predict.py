"""Calibrated prediction for raw user input."""

from __future__ import annotations

import gc
import math
import numbers
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import torch

from core.calibration import Prior, calibrated_probabilities
from core.checkpoint import Checkpoint, load_checkpoint
from core.guesses import Guess as Guess
from core.guesses import LanguageGuess as LanguageGuess
from core.guesses import Rejected as Rejected
from core.models import MODEL_KINDS
from core.text import MAX_INPUT_CHARS, SurnameQuery, parse_query
from core.text import InvalidNameError as InvalidNameError  # what predict() raises: importable from here

DEFAULT_UNCERTAIN_BELOW = 0.5
# Inputs are classified in chunks of this many names: measured fastest on CPU (larger batches fall out of cache).
CHUNK_SIZE = 512


# Threads share one collector: only the first to pause it records whether it was on, and only the last to
# leave restores that. Each thread reading and setting the flag itself raced: one could read "off" (another
# thread's pause), the other re-enable, then the first disable it again for good.
_gc_pause_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextmanager
def garbage_collection_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a burst of small objects is built.

    Thousands of new tuples trigger collections that walk the whole heap, torch's objects included:
    they took four fifths of the time to build 40,000 guesses. Nothing built meanwhile forms a cycle,
    so reference counting frees all of it as before. The collector's state is restored on exit, when
    the last of the threads pausing it at once leaves.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_pause_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_pause_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def shipped_checkpoint_path(kind: str = "gru") -> Path:
    """Path of the checkpoint that ships inside the package for ``kind`` (``gru`` or ``rnn``)."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}: expected one of {', '.join(MODEL_KINDS)}")
    return Path(str(resources.files("core") / "shipped" / f"{kind}.safetensors"))


def _names(inputs: Iterable[str]) -> list[str]:
    """``inputs`` as a list, after checking that it holds ``str`` alone: a lone string would be read letter by letter.

    A list, read once: an iterator (a generator, an open file) checked in place would leave nothing to answer.
    """
    if isinstance(inputs, str | bytes):
        raise TypeError(f"expected a list of names, not one string: use [{inputs!r}], or predict() for one name")
    names = list(inputs)
    for position, item in enumerate(names):
        if not isinstance(item, str):
            hint = ": decode it first (.decode('utf-8'))" if isinstance(item, bytes | bytearray) else ""
            raise TypeError(f"input {position} is {type(item).__name__}, not str{hint}")
    return names


class Predictor:
    """Wraps a checkpoint: validates input, runs the model, applies the fitted temperature.

    ``prior="uniform"`` removes the training data's language proportions from every answer (Bayes'
    rule), for populations of names unlike the dataset's; it needs a checkpoint that records them.
    An answer whose top probability is below ``uncertain_below`` (0 to 1) is marked uncertain.
    The checkpoint's model must be in eval mode. One predictor may serve several threads at once.
    """

    def __init__(
        self, checkpoint: Checkpoint, uncertain_below: float = DEFAULT_UNCERTAIN_BELOW, prior: Prior = "dataset"
    ) -> None:
        # numbers.Real: NumPy's float32 is one, though not a float (float named too, for mypy).
        if not isinstance(uncertain_below, float | numbers.Real) or isinstance(uncertain_below, bool):
            raise TypeError(f"uncertain_below must be a number, got {type(uncertain_below).__name__}")
        if math.isnan(uncertain_below) or not 0.0 <= uncertain_below <= 1.0:
            raise ValueError(f"uncertain_below must be a probability from 0 to 1, got {uncertain_below}")
        if checkpoint.model.training:  # dropout would change every answer from one call to the next
            raise ValueError("the checkpoint's model is in training mode: call model.eval() first")
        self.checkpoint = checkpoint
        self.uncertain_below = float(uncertain_below)
        self._prior = prior
        self._device = next(checkpoint.model.parameters()).device
        self._logit_shift = checkpoint.metadata.logit_shift(prior)

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device | None = None,
        uncertain_below: float = DEFAULT_UNCERTAIN_BELOW,
        prior: Prior = "dataset",
    ) -> Predictor:
        """Load the checkpoint at ``path``."""
        return cls(load_checkpoint(path, device), uncertain_below, prior)

    @classmethod
    def shipped(
        cls,
        kind: str = "gru",
        device: str | torch.device | None = None,
        uncertain_below: float = DEFAULT_UNCERTAIN_BELOW,
        prior: Prior = "dataset",
    ) -> Predictor:
        """Load the model that ships with the package."""
        return cls.from_path(shipped_checkpoint_path(kind), device, uncertain_below, prior)

    @property
    def prior(self) -> Prior:
        """The prior every answer assumes: fixed at construction."""
        return self._prior

    @property
    def version(self) -> str:
        """Version string of the loaded checkpoint."""
        return self.checkpoint.metadata.version

    @property
    def labels(self) -> tuple[str, ...]:
        """The languages this model can answer."""
        return self.checkpoint.metadata.labels

    def predict(self, raw: str, top_k: int = 3) -> Guess:
        """Classify one input; raises ``InvalidNameError`` when it cannot be classified."""
        if not isinstance(raw, str):
            hint = (
                ": decode it first (.decode('utf-8'))"
                if isinstance(raw, bytes | bytearray)
                else "; predict_many() takes a list of names"
                if isinstance(raw, list | tuple)
                else ""
            )
            raise TypeError(f"predict() takes one name as str, got {type(raw).__name__}{hint}")
        result = self.predict_many([raw], top_k)[0]
        if isinstance(result, Rejected):
            raise InvalidNameError(result.reason)
        return result

    def probabilities(self, surnames: Iterable[str]) -> torch.Tensor:
        """Calibrated probabilities ``(N, C)``, rows in input order, for already-normalized surnames
        (``Guess.query.surname``; raw input is not parsed or transliterated here).

        Names run in chunks of ``CHUNK_SIZE``, so memory stays bounded however many are given. A surname
        longer than ``MAX_INPUT_CHARS`` (none that ``predict`` reads is) is a ``ValueError``: each chunk is
        padded to its longest name, and one line of text in 512 would take gigabytes.
        """
        names = _names(surnames)
        for position, name in enumerate(names):
            if len(name) > MAX_INPUT_CHARS:
                raise ValueError(
                    f"surname {position} has {len(name)} characters, at most {MAX_INPUT_CHARS}: "
                    "give normalized surnames (Guess.query.surname), or raw input to predict_many()"
                )
        return self._probabilities(names)

    def _probabilities(self, surnames: Sequence[str]) -> torch.Tensor:
        # Chunks of similar lengths: each runs only as many recurrent steps as its own names need.
        order = sorted(range(len(surnames)), key=lambda i: len(surnames[i]))
        ordered = [surnames[i] for i in order]
        chunks = [self._chunk_probabilities(ordered[i : i + CHUNK_SIZE]) for i in range(0, len(ordered), CHUNK_SIZE)]
        probabilities = torch.empty(len(surnames), len(self.labels))
        if chunks:
            probabilities[torch.tensor(order)] = torch.cat(chunks)
        return probabilities

    @torch.inference_mode()
    def _chunk_probabilities(self, surnames: Sequence[str]) -> torch.Tensor:
        metadata = self.checkpoint.metadata
        tokens, lengths = metadata.vocabulary.encode_batch(surnames)
        logits: torch.Tensor = self.checkpoint.model(tokens.to(self._device), lengths)  # (N, C)
        return calibrated_probabilities(logits.cpu(), metadata.temperature, self._logit_shift)

    def predict_many(self, inputs: Iterable[str], top_k: int = 3) -> list[Guess | Rejected]:
        """Classify many inputs in one batch; each result is a ``Guess`` or a ``Rejected``, in order.

        ``inputs`` is a list (or tuple, or any iterable) of strings: ``TypeError`` for one bare string or an item
        that is not a ``str``; ``ValueError`` when ``top_k`` is not from 1 to the number of languages.
        """
        names = _names(inputs)
        if not isinstance(top_k, int | numbers.Integral) or isinstance(top_k, bool):  # NumPy's int64 is Integral
            raise TypeError(f"top_k must be an int, got {type(top_k).__name__}")
        if not 1 <= top_k <= len(self.labels):
            raise ValueError(f"top_k must be between 1 and {len(self.labels)}, got {top_k}")
        parsed: list[SurnameQuery | Rejected] = []
        for raw in names:
            try:
                parsed.append(parse_query(raw))
            except InvalidNameError as exc:
                parsed.append(Rejected(raw, str(exc)))
        guesses = iter(self._classify([p for p in parsed if isinstance(p, SurnameQuery)], top_k))
        return [next(guesses) if isinstance(p, SurnameQuery) else p for p in parsed]

    def _classify(self, queries: Sequence[SurnameQuery], top_k: int) -> list[Guess]:
        if not queries:
            return []
        top = self._probabilities([query.surname for query in queries]).topk(top_k, dim=1)
        # Locals and map(): this loop builds five small objects per name, by the thousand.
        language_of, threshold = self.labels.__getitem__, self.uncertain_below
        with garbage_collection_paused():
            return [
                Guess(query, tuple(map(LanguageGuess, map(language_of, idx), values)), uncertain=values[0] < threshold)
                for query, values, idx in zip(queries, top.values.tolist(), top.indices.tolist(), strict=True)
            ]
