"""What a checkpoint says about its model: the JSON metadata in its safetensors header, validated field by field."""

from __future__ import annotations

import json
import math
import reprlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import torch

from core.calibration import PRIORS, Prior, uniform_prior_shift
from core.encoding import Vocabulary
from core.errors import CheckpointError as CheckpointError
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
from core.models import ModelConfig, config_to_dict, model_kind

FORMAT = "nameorigin.checkpoint/1"
# A language's smallest believable share of the class prior. Far below any real one (about 1 in 20,000
# here), and far above float32's smallest number, whose log would otherwise be -inf and every answer NaN.
MIN_PRIOR_SHARE = 1e-12


def utc_timestamp() -> str:
    """Now in UTC, ISO 8601 to the second: the ``created_at`` of new checkpoints."""
    return datetime.now(UTC).isoformat(timespec="seconds")


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
