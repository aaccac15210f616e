"""Temperature scaling (Guo et al., 2017) fitted on the validation split, and the class prior."""

from __future__ import annotations

import torch

from core.choices import PRIORS as PRIORS
from core.choices import Prior as Prior

# The range a fitted temperature is clamped to, and a checkpoint's temperature must lie in.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


def set_log_likelihood_loss(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-example ``-log P(language in truth set)`` for logits ``(N, C)`` and a bool mask ``(N, C)``."""
    true_mass = torch.logsumexp(logits.masked_fill(~truth, float("-inf")), dim=1)  # (N,)
    return torch.logsumexp(logits, dim=1) - true_mass


def fit_temperature(logits: torch.Tensor, truth: torch.Tensor, max_iter: int = 200) -> float:
    """Return the temperature ``T`` minimizing the set-aware NLL of ``softmax(logits / T)``."""
    logits = logits.detach().float().clone()  # inference-mode tensors cannot enter autograd
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = set_log_likelihood_loss(logits / log_t.exp(), truth).mean()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]
    # Clamp so one degenerate validation split cannot produce an absurd temperature.
    return float(log_t.detach().exp().clamp(MIN_TEMPERATURE, MAX_TEMPERATURE))


def language_loss_weights(truth: torch.Tensor, power: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Each language's training loss weight ``(C,)`` before normalization: ``(count / largest count) ** -power``.

    ``truth`` is the bool mask ``(N, C)`` of the training split; a language with no pair counts as one.
    """
    counts = truth.sum(dim=0).to(dtype).clamp(min=1.0)
    return (counts / counts.max()).pow(-power)


def class_prior(truth: torch.Tensor, weight_power: float = 0.0) -> tuple[float, ...]:
    """The language proportions a model trained on the bool mask ``truth`` ``(N, C)`` has learned.

    Each language's share of the (name, language) pairs, times the loss weight training gave it:
    with ``TrainConfig.class_weight_power`` ``p`` a language counts ``count ** (1 - p)``, so a fully
    balanced model (``p = 1``) has learned a uniform prior already. A language with no pair counts
    as one, so its share, and its logarithm, stay finite.
    """
    counts = truth.sum(dim=0).double().clamp(min=1.0)
    effective = counts * language_loss_weights(truth, weight_power, torch.float64)
    return tuple(float(share) for share in effective / effective.sum())


def uniform_prior_shift(prior: tuple[float, ...]) -> torch.Tensor:
    """Logit offsets ``(C,)`` that turn probabilities under ``prior`` into ones under a uniform prior.

    By Bayes' rule ``p_uniform(y | x)`` is proportional to ``p(y | x) / prior(y)``: add ``-log prior(y)``.
    """
    return -torch.tensor(prior, dtype=torch.float32).log()


def calibrated_probabilities(
    logits: torch.Tensor, temperature: float, logit_shift: torch.Tensor | None = None
) -> torch.Tensor:
    """``softmax(logits / temperature + logit_shift)`` over ``(N, C)`` logits, in float32.

    ``logit_shift`` ``(C,)`` moves the answers to another prior (``CheckpointMetadata.logit_shift``).
    """
    scaled = logits.float() / temperature
    if logit_shift is not None:
        scaled = scaled + logit_shift.to(scaled.device)
    return scaled.softmax(dim=1)
