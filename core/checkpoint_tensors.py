"""A checkpoint's tensors checked against the model its config describes, before any memory is allocated."""

from __future__ import annotations

from pathlib import Path

import torch

from core.models import GRUConfig, ModelConfig, build_skeleton

# The largest weight a checkpoint may hold. Trained ones stay far below (the shipped models: under 6);
# up to here the logits stay finite for any input, so no answer can be NaN.
MAX_ABS_WEIGHT = 1e4


class TensorMismatch(ValueError):
    """The file's tensors do not make the model its config describes; the message names the file."""


def checked_weights(source: Path, config: ModelConfig, stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``stored`` as the state_dict of the model ``config`` describes: every name, shape, dtype and value checked."""
    expected = _expected_tensors(source, config, len(stored))
    _check_names_and_shapes(source, stored, expected)
    return {name: _checked_weight(source, name, stored[name], like.dtype) for name, like in expected.items()}


def _expected_tensors(source: Path, config: ModelConfig, stored_count: int) -> dict[str, torch.Tensor]:
    """The state_dict ``config`` describes, on the meta device: every name, shape and dtype, no memory.

    A corrupt config can describe a model of many gigabytes; comparing it with the file's
    tensors first means only a model the file actually holds is ever allocated.
    """
    # Building nn.GRU takes time quadratic in its layers, even on the meta device (10,000 layers: over a
    # minute). Each layer has four tensors per direction, so the file's tensor count bounds the layers.
    if isinstance(config, GRUConfig) and config.num_layers * 4 * (2 if config.bidirectional else 1) > stored_count:
        raise TensorMismatch(
            f"checkpoint {source}: model_config.num_layers is {config.num_layers}, "
            f"more layers than the file's {stored_count} tensors can hold"
        )
    try:
        return dict(build_skeleton(config).state_dict())
    except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
        raise TensorMismatch(f"checkpoint {source}: its model config describes no valid model: {exc}") from exc


def _check_names_and_shapes(source: Path, stored: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    if missing or extra:
        raise TensorMismatch(f"checkpoint {source} does not match its model: missing {missing}, unexpected {extra}")
    for name, tensor in expected.items():
        if stored[name].shape != tensor.shape:
            raise TensorMismatch(
                f"checkpoint {source}: {name} has shape {tuple(stored[name].shape)}, "
                f"the model needs {tuple(tensor.shape)}"
            )


def _checked_weight(source: Path, name: str, tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``tensor`` in the model's ``dtype``, provided it holds floating-point numbers, finite and of sane size."""
    # load_state_dict would cast integers silently, and one NaN or Inf makes every prediction NaN.
    if not tensor.dtype.is_floating_point:
        raise TensorMismatch(f"checkpoint {source}: {name} holds {tensor.dtype}, not floating-point weights")
    weight = tensor.to(dtype)  # checked after the cast: float64 values beyond float32's range become Inf
    if not bool(torch.isfinite(weight).all()):
        raise TensorMismatch(f"checkpoint {source}: {name} holds NaN or infinite values")
    # Finite but huge weights overflow the logits to Inf, and the probabilities to NaN.
    if weight.numel() and float(weight.abs().max()) > MAX_ABS_WEIGHT:
        raise TensorMismatch(
            f"checkpoint {source}: {name} holds values beyond ±{MAX_ABS_WEIGHT:g}: not a trained model"
        )
    return weight
