"""Safe checkpoints: safetensors weights with JSON metadata in the header, written atomically.

One file holds both, so a reader can never pair new weights with old metadata, and
``os.replace`` makes each write all-or-nothing. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from core.calibration import PRIORS, Prior, uniform_prior_shift
from core.encoding import Vocabulary
from core.models import Classifier, ModelConfig, build_model, config_from_dict, config_to_dict, model_kind

FORMAT = "nameorigin.checkpoint/1"
_METADATA_KEY = "nameorigin"


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
            data: dict[str, Any] = json.loads(text)
            if data.get("format") != FORMAT:
                raise CheckpointError(f"unsupported checkpoint format {data.get('format')!r}, expected {FORMAT}")
            config = config_from_dict(data["kind"], data["model_config"])
            metadata = cls(
                model_config=config,
                vocabulary=Vocabulary(tuple(data["vocabulary"])),
                labels=tuple(data["labels"]),
                temperature=float(data["temperature"]),
                metrics=data["metrics"],
                dataset_sha256=str(data["dataset_sha256"]),
                split_seed=int(data["split_seed"]),
                version=str(data["version"]),
                parent_version=data.get("parent_version"),
                created_at=str(data["created_at"]),
                class_prior=_optional_prior(data.get("class_prior")),
            )
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint metadata is malformed: {exc!r}") from exc
        if len(metadata.labels) != config.num_classes or metadata.vocabulary.size != config.vocab_size:
            raise CheckpointError("checkpoint metadata disagrees with its model config (labels or vocabulary)")
        if not metadata.temperature > 0:
            raise CheckpointError(f"checkpoint temperature must be positive, got {metadata.temperature}")
        prior = metadata.class_prior
        if prior is not None and (
            len(prior) != len(metadata.labels)
            or not all(math.isfinite(share) and share > 0 for share in prior)
            or abs(sum(prior) - 1.0) > 1e-6
        ):
            raise CheckpointError("checkpoint class prior must hold one positive share per label, summing to 1")
        return metadata


def _optional_prior(value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    # JSON numbers only: float() would also accept strings such as "nan" or "0.5".
    if not isinstance(value, list) or not all(
        isinstance(share, int | float) and not isinstance(share, bool) for share in value
    ):
        raise ValueError(f"class_prior must be a list of numbers, got {value!r}")
    return tuple(float(share) for share in value)


@dataclass(frozen=True)
class Checkpoint:
    """A model in eval mode on its device, with its metadata."""

    model: Classifier
    metadata: CheckpointMetadata


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, metadata: CheckpointMetadata) -> Path:
    """Write ``model``'s weights and ``metadata`` to ``path`` atomically; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp_name, metadata={_METADATA_KEY: metadata.to_json()})
        # Both mkstemp and safetensors create files 0600; a model is meant to be read by other users and services.
        os.chmod(tmp_name, 0o644)
        with open(tmp_name, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def read_metadata(path: str | os.PathLike[str]) -> CheckpointMetadata:
    """Read only the metadata of a checkpoint, without loading weights."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint {source} does not exist")
    try:
        with safe_open(str(source), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {source} is corrupt or not a safetensors file: {exc}") from exc
    if _METADATA_KEY not in header:
        raise CheckpointError(f"checkpoint {source} has no nameorigin metadata")
    return CheckpointMetadata.from_json(header[_METADATA_KEY])


def load_checkpoint(path: str | os.PathLike[str], device: torch.device | None = None) -> Checkpoint:
    """Load a checkpoint, check every tensor's name and shape, and return the model in eval mode."""
    source = Path(path)
    metadata = read_metadata(source)
    model = build_model(metadata.model_config)
    expected = model.state_dict()
    try:
        with safe_open(str(source), framework="pt") as handle:
            stored = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {source} is corrupt: {exc}") from exc
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    if missing or extra:
        raise CheckpointError(f"checkpoint {source} does not match its model: missing {missing}, unexpected {extra}")
    for name, tensor in expected.items():
        if stored[name].shape != tensor.shape:
            raise CheckpointError(
                f"checkpoint {source}: {name} has shape {tuple(stored[name].shape)}, "
                f"the model needs {tuple(tensor.shape)}"
            )
    model.load_state_dict({name: stored[name].to(tensor.dtype) for name, tensor in expected.items()})
    model.to(device or torch.device("cpu"))
    model.eval()
    return Checkpoint(model=model, metadata=metadata)
