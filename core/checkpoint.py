"""Safe checkpoints: safetensors weights with JSON metadata in the header, written atomically.

One file holds both, so a reader can never pair new weights with old metadata, and
``os.replace`` makes each write all-or-nothing. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import nn

# Re-exported: callers import both from here (the metadata, and its errors, live in their own module).
from core.checkpoint_metadata import CheckpointError as CheckpointError
from core.checkpoint_metadata import CheckpointMetadata as CheckpointMetadata
from core.checkpoint_tensors import TensorMismatch, checked_weights
from core.device import usable_device
from core.models import Classifier, build_skeleton

_METADATA_KEY = "nameorigin"
# SHA-256 of the tensor data, beside the metadata: a flipped bit in a weight leaves a loadable file whose
# answers are quietly wrong. Files saved before it existed (none of ours now) have none and are not checked.
_WEIGHTS_DIGEST_KEY = "nameorigin.weights_sha256"
_MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit


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
    # Built on the meta device, its initial weights are never drawn: the caller's seeded torch.rand() sequence
    # stays as it was, also in another thread (a forked generator, restored afterwards, rewound that thread's).
    model = build_skeleton(metadata.model_config)
    model.load_state_dict(weights, assign=True)
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
