"""Whether a trained GRU may replace the live one when the bot starts: their recorded test figures compared."""

from __future__ import annotations

from core.checkpoint import CheckpointMetadata


def recorded_test_accuracy(metadata: CheckpointMetadata) -> float | None:
    """The test-split accuracy the checkpoint records (as ``train`` or a fine-tune measured it), if any."""
    accuracy = metadata.metrics.get("test", {}).get("accuracy")
    return float(accuracy) if accuracy is not None else None


def adoption_refusal(trained: CheckpointMetadata, live: CheckpointMetadata, max_drop: float) -> str | None:
    """Why ``trained`` may not replace ``live`` at start: its recorded test accuracy is more than ``max_drop``
    points lower, or cannot be compared with it. None when it may (always with ``max_drop`` 100)."""
    ours, theirs = recorded_test_accuracy(trained), recorded_test_accuracy(live)
    if max_drop >= 100 or theirs is None:
        return None
    anyway = (
        "to start with it all the same, start once with FINETUNE_MAX_DROP=100, then again with the usual value "
        "(it also limits what fine-tunes may lose)"
    )
    if ours is None:
        return f"it records no test accuracy to compare with that of the live {live.version}; {anyway}"
    if trained.dataset_sha256 != live.dataset_sha256:
        return (
            f"it was trained on another dataset than the live {live.version} (SHA-256 "
            f"{trained.dataset_sha256[:12]}… against {live.dataset_sha256[:12]}…), so their test "
            f"figures cannot be compared; {anyway}"
        )
    if trained.split_seed != live.split_seed:
        return (
            f"it was tested on another split than the live {live.version} (seed {trained.split_seed} against "
            f"{live.split_seed}), so their test figures cannot be compared; {anyway}"
        )
    drop = (theirs - ours) * 100
    if drop <= max_drop:
        return None
    return (
        f"its test accuracy, {ours:.2%}, is {drop:.2f} points below that of the live {live.version}, "
        f"{theirs:.2%} (FINETUNE_MAX_DROP is {max_drop:g}); {anyway}"
    )
