"""Safe checkpoints: safetensors weights with JSON metadata in the header, written atomically.

One file holds both, so a reader can never pair new weights with old metadata, and
``os.replace`` makes each write all-or-nothing. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import reprlib
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import nn

from core.calibration import PRIORS, Prior, uniform_prior_shift
from core.checkpoint_tensors import TensorMismatch, checked_weights
from core.device import usable_device
from core.encoding import Vocabulary
from core.metadata_fields import (
    class_prior_field,
    integer_field,
    labels_field,
    metrics_field,
    model_config_field,
    printable_field,
    temperature_field,
    version_field,
    vocabulary_field,
)
from core.models import (
    Classifier,
    ModelConfig,
    build_model,
    config_to_dict,
    model_kind,
)

FORMAT = "nameorigin.checkpoint/1"
_METADATA_KEY = "nameorigin"
# SHA-256 of the tensor data, beside the metadata: a flipped bit in a weight leaves a loadable file whose
# answers are quietly wrong. Files saved before it existed (none of ours now) have none and are not checked.
_WEIGHTS_DIGEST_KEY = "nameorigin.weights_sha256"
_MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit
# A language's smallest believable share of the class prior. Far below any real one (about 1 in 20,000
# here), and far above float32's smallest number, whose log would otherwise be -inf and every answer NaN.
MIN_PRIOR_SHARE = 1e-12


def utc_timestamp() -> str:
    """Now in UTC, ISO 8601 to the second: the ``created_at`` of new checkpoints."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt, or does not match the model it describes."""


@dataclass(frozen=True)
class CheckpointMetadata:
    """Everything needed to rebuild and trust a model without the command line that trained it."""

    model_config: ModelConfig
    vocabulary: Vocabulary
    labels: tuple[str, ...]
    temperature: float
    metrics: dict[str, dict[str, float]]  # split name -> headline figures
    dataset_sha256: str
    split_seed: int
    version: str
    parent_version: str | None = None
    created_at: str = field(default_factory=utc_timestamp)
    # Each label's share of the training pairs; None in checkpoints saved before it was recorded.
    class_prior: tuple[float, ...] | None = None

    @property
    def kind(self) -> str:
        """``gru`` or ``rnn``."""
        return model_kind(self.model_config)

    def logit_shift(self, prior: Prior) -> torch.Tensor | None:
        """Offsets to add to temperature-scaled logits for ``prior``; None when there is nothing to add."""
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {', '.join(PRIORS)}, got {prior!r}")
        if prior == "dataset":
            return None
        if self.class_prior is None:
            raise CheckpointError(
                f"model {self.version} does not record its training class prior, so it cannot use prior "
                f"{prior!r}; retrain it with this version of nameorigin"
            )
        return uniform_prior_shift(self.class_prior)

    def to_json(self) -> str:
        """Serialize to the JSON stored in the safetensors header."""
        return json.dumps(
            {
                "format": FORMAT,
                "kind": self.kind,
                "model_config": config_to_dict(self.model_config),
                "vocabulary": "".join(self.vocabulary.characters),
                "labels": list(self.labels),
                "temperature": self.temperature,
                "metrics": self.metrics,
                "dataset_sha256": self.dataset_sha256,
                "split_seed": self.split_seed,
                "version": self.version,
                "parent_version": self.parent_version,
                "created_at": self.created_at,
                "class_prior": None if self.class_prior is None else list(self.class_prior),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> CheckpointMetadata:
        """Parse and validate header JSON; raises ``CheckpointError`` on anything unexpected."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise CheckpointError(f"checkpoint metadata is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise CheckpointError(f"checkpoint metadata must be a JSON object, got {reprlib.repr(data)}")
        if data.get("format") != FORMAT:
            raise CheckpointError(f"unsupported checkpoint format {data.get('format')!r}, expected {FORMAT}")
        try:
            metadata = cls._from_fields(data)
        except KeyError as exc:
            raise CheckpointError(f"checkpoint metadata is malformed: missing field {exc}") from exc
        # OverflowError: float() of a JSON integer too large for a double.
        except (TypeError, ValueError, OverflowError) as exc:
            raise CheckpointError(f"checkpoint metadata is malformed: {exc}") from exc
        metadata._check_consistency()
        return metadata

    @classmethod
    def _from_fields(cls, data: dict[str, Any]) -> CheckpointMetadata:
        # JSON types are checked, not coerced: str() and float() would accept almost anything.
        parent = data.get("parent_version")
        return cls(
            model_config=model_config_field(data["kind"], data["model_config"]),
            vocabulary=Vocabulary(tuple(vocabulary_field(data["vocabulary"]))),
            labels=labels_field(data["labels"]),
            temperature=temperature_field(data["temperature"]),
            metrics=metrics_field(data["metrics"]),
            dataset_sha256=printable_field("dataset_sha256", data["dataset_sha256"]),
            split_seed=integer_field("split_seed", data["split_seed"]),
            version=version_field("version", data["version"]),
            parent_version=None if parent is None else version_field("parent_version", parent),
            created_at=printable_field("created_at", data["created_at"]),
            class_prior=class_prior_field(data.get("class_prior")),
        )

    def _check_consistency(self) -> None:
        config = self.model_config
        if len(self.labels) != config.num_classes or self.vocabulary.size != config.vocab_size:
            raise CheckpointError("checkpoint metadata disagrees with its model config (labels or vocabulary)")
        prior = self.class_prior
        if prior is not None and (
            len(prior) != len(self.labels)
            or not all(math.isfinite(share) and share >= MIN_PRIOR_SHARE for share in prior)
            or abs(sum(prior) - 1.0) > 1e-6
        ):
            raise CheckpointError(
                f"checkpoint class prior must hold one share of at least {MIN_PRIOR_SHARE:g} per label, summing to 1"
            )


@dataclass(frozen=True)
class Checkpoint:
    """A model in eval mode on its device, with its metadata."""

    model: Classifier
    metadata: CheckpointMetadata


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, metadata: CheckpointMetadata) -> Path:
    """Write ``model``'s weights and ``metadata`` to ``path`` atomically; returns the path."""
    target = Path(path)
    if target.exists() and not target.is_file():  # os.replace would put a file where a device or pipe was
        raise CheckpointError(f"cannot save the checkpoint to {target}: it is not a regular file")
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        # safetensors lays the data out by dtype and name alone: the same bytes with any metadata.
        header = {_METADATA_KEY: metadata.to_json(), _WEIGHTS_DIGEST_KEY: _weights_digest(save(tensors))}
        # Serialized in memory and written here: safetensors' own save_file reports a full disk as a
        # SafetensorError, which callers expecting an OSError (errno and all) would let through as a traceback.
        with open(tmp_name, "wb") as handle:
            handle.write(save(tensors, metadata=header))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp creates files 0600; a model is meant to be read by other users and services
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def read_metadata(path: str | os.PathLike[str]) -> CheckpointMetadata:
    """Read only the metadata of a checkpoint, without loading weights; a file cut short is an error."""
    source = _existing_file(path)
    try:
        with source.open("rb") as stream:
            header = _read_header(source, stream)
            _check_complete(source, header, data_start=stream.tell(), file_size=os.fstat(stream.fileno()).st_size)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {source} cannot be read: {exc}") from exc
    return _metadata(source, header)


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device | None = None) -> Checkpoint:
    """Load a checkpoint, check the weights' checksum and every tensor's name, shape, dtype and values, and
    return the model in eval mode on ``device`` (the CPU by default; ``DeviceUnavailableError`` when it is not here).

    Metadata and weights are taken from one read of one open file, so they belong together even
    while ``save_checkpoint`` replaces the path.
    """
    target_device = usable_device(device)  # before the file is read: the mistake is the caller's, not the file's
    source = _existing_file(path)
    try:
        with source.open("rb") as stream:
            # The header is checked before the rest is read: a large file that is no checkpoint fails
            # without being read whole. One open file is one snapshot, even if the path is replaced meanwhile.
            _check_complete(
                source, _read_header(source, stream), stream.tell(), file_size=os.fstat(stream.fileno()).st_size
            )
            stream.seek(0)
            data = stream.read()
    except OSError as exc:
        raise CheckpointError(f"checkpoint {source} cannot be read: {exc}") from exc
    # Metadata and weights both come from these bytes: the header read above served only to fail early.
    header = _read_header(source, io.BytesIO(data))
    metadata = _metadata(source, header)
    _check_weights_digest(source, header, data)
    try:
        stored = load(data)
    except (SafetensorError, ValueError, RuntimeError, TypeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {source} is corrupt: {exc}") from exc
    try:
        weights = checked_weights(source, metadata.model_config, stored)
    except TensorMismatch as exc:
        raise CheckpointError(str(exc)) from exc
    # Only now is memory allocated: the shapes match the file's tensors, so the model is no bigger than the file.
    # Its random initial weights are overwritten at once: drawn from a forked generator, they leave the caller's
    # seeded torch.rand() sequence as it was.
    with torch.random.fork_rng(devices=[]):
        model = build_model(metadata.model_config)
    model.load_state_dict(weights)
    model.to(target_device)
    model.eval()
    return Checkpoint(model=model, metadata=metadata)


def _existing_file(path: str | os.PathLike[str]) -> Path:
    source = Path(path)
    if source.is_dir():
        raise CheckpointError(f"checkpoint {source} is a directory, not a file")
    if not source.exists():
        raise CheckpointError(f"checkpoint {source} does not exist")
    if not source.is_file():
        raise CheckpointError(f"checkpoint {source} is not a regular file")
    return source


def _read_header(source: Path, stream: BinaryIO) -> dict[str, Any]:
    """The safetensors header at the start of ``stream``: 8 bytes of little-endian length N, then N bytes of JSON."""
    prefix = stream.read(8)
    size = int.from_bytes(prefix, "little")
    # Checked before reading, so a corrupt length never asks for more memory than safetensors would allow.
    if len(prefix) < 8 or not 0 < size <= _MAX_HEADER_BYTES:
        raise CheckpointError(f"checkpoint {source} is corrupt or not a safetensors file: bad header length")
    raw = stream.read(size)
    try:
        header = json.loads(raw) if len(raw) == size else None
    except (ValueError, RecursionError):
        header = None
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint {source} is corrupt or not a safetensors file: unreadable header")
    return header


def _check_complete(source: Path, header: dict[str, Any], data_start: int, file_size: int) -> None:
    """Fail unless the file holds exactly the tensor data its header describes.

    A copy still in progress has a whole header but not all its data: its metadata alone
    would look fine, and a bot adopting it would register a model that cannot load.
    """
    try:
        data_end = max(
            (int(entry["data_offsets"][1]) for name, entry in header.items() if name != "__metadata__"), default=0
        )
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:  # OverflowError: 1e999 is JSON
        raise CheckpointError(f"checkpoint {source} is corrupt: unreadable tensor offsets ({exc!r})") from exc
    if data_start + data_end != file_size:
        raise CheckpointError(
            f"checkpoint {source} is truncated or corrupt: its header describes "
            f"{data_start + data_end} bytes, the file holds {file_size}"
        )


def _weights_digest(file: bytes) -> str:
    """SHA-256 of a safetensors file's tensor data: everything after its header."""
    data_start = 8 + int.from_bytes(file[:8], "little")
    return hashlib.sha256(memoryview(file)[data_start:]).hexdigest()


def _check_weights_digest(source: Path, header: dict[str, Any], file: bytes) -> None:
    extra = header.get("__metadata__")
    expected = extra.get(_WEIGHTS_DIGEST_KEY) if isinstance(extra, dict) else None
    if expected is not None and expected != _weights_digest(file):
        raise CheckpointError(f"checkpoint {source} is corrupt: its weights do not match the checksum saved with them")


def _metadata(source: Path, header: dict[str, Any]) -> CheckpointMetadata:
    extra = header.get("__metadata__")
    text = extra.get(_METADATA_KEY) if isinstance(extra, dict) else None
    if not isinstance(text, str):
        raise CheckpointError(f"checkpoint {source} has no nameorigin metadata")
    return CheckpointMetadata.from_json(text)
