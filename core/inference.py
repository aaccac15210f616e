"""Batched forward passes without gradients."""

from __future__ import annotations

import torch
from torch import nn

from core.batching import EncodedExamples, sequential_batches


@torch.inference_mode()
def predict_logits(
    model: nn.Module, examples: EncodedExamples, device: torch.device, batch_size: int = 1024
) -> torch.Tensor:
    """Logits ``(N, C)`` on the CPU for every encoded example, in order; restores the model's mode."""
    was_training = model.training
    model.eval()
    outputs = []
    # Sorting by length keeps padding small; the inverse permutation restores input order.
    order = torch.argsort(examples.lengths, stable=True)
    try:
        for indices in sequential_batches(len(examples), batch_size):
            tokens, lengths, _ = examples.batch(order[indices])
            outputs.append(model(tokens.to(device), lengths).float().cpu())
    finally:  # also when a batch fails (out of memory, say): a caller training on must not go on without dropout
        model.train(was_training)
    logits = torch.cat(outputs) if outputs else torch.empty(0)
    restored = torch.empty_like(logits)
    restored[order] = logits
    return restored
