"""Batched forward passes without gradients."""

from __future__ import annotations

import torch
from torch import nn

from core.batching import EncodedExamples, equal_length_batches


@torch.inference_mode()
def predict_logits(
    model: nn.Module, examples: EncodedExamples, device: torch.device, batch_size: int = 1024
) -> torch.Tensor:
    """Logits ``(N, C)`` on the CPU for every encoded example, in order; restores the model's mode."""
    was_training = model.training
    model.eval()
    # Batches of one length each: no padding, so no packing either (see GRUClassifier.features).
    batches = list(equal_length_batches(examples.lengths, batch_size))
    outputs = []
    for indices in batches:
        tokens, lengths, _ = examples.batch(indices)
        outputs.append(model(tokens.to(device), lengths).float().cpu())
    model.train(was_training)
    if not outputs:
        return torch.empty(0)
    logits = torch.empty(len(examples), outputs[0].shape[1])
    logits[torch.cat(batches)] = torch.cat(outputs)
    return logits
