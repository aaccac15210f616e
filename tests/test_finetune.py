"""Fine-tuning and the promotion gate, on the synthetic dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.checkpoint import Checkpoint, load_checkpoint
from core.data import Dataset, Example, load_dataset
from core.finetune import FinetuneConfig, fine_tune, split_feedback, training_without_dropout
from core.gate import GateScores, change_in_points, decide
from core.models import GRUConfig, build_model
from core.pipeline import train_and_save
from core.split import split_dataset
from core.train import TrainConfig

CPU = torch.device("cpu")


def test_feedback_split_is_stable_and_disjoint() -> None:
    feedback = [Example(f"Name{i}", frozenset({"Greek"})) for i in range(200)]
    first, again = split_feedback(feedback), split_feedback(list(reversed(feedback)))
    assert {e.key for e in first.holdout} == {e.key for e in again.holdout}
    assert not {e.key for e in first.train} & {e.key for e in first.holdout}
    assert 20 <= len(first.holdout) <= 60  # about a fifth


def test_gate_promotes_only_within_the_allowed_drop_and_without_feedback_loss() -> None:
    live = GateScores(test_accuracy=0.860, test_macro_f1=0.6, feedback_accuracy=0.5)
    assert decide(live, GateScores(0.856, 0.6, 0.9), max_test_drop_points=0.5).promoted
    too_much = decide(live, GateScores(0.854, 0.6, 0.9), max_test_drop_points=0.5)
    assert not too_much.promoted and "0.60 points" in too_much.reason
    worse_feedback = decide(live, GateScores(0.870, 0.6, 0.4), max_test_drop_points=0.5)
    assert not worse_feedback.promoted and "feedback" in worse_feedback.reason
    assert decide(live, GateScores(0.860, 0.6, None), max_test_drop_points=0.5).promoted
    assert decide(live, GateScores(0.860, 0.6, 0.5), max_test_drop_points=0.5).promoted  # equal is "no worse"


def test_the_allowed_drop_holds_against_where_fine_tuning_started_however_many_runs() -> None:
    origin = GateScores(test_accuracy=0.878, test_macro_f1=0.6, feedback_accuracy=None)
    live = GateScores(test_accuracy=0.875, test_macro_f1=0.6, feedback_accuracy=0.5)  # after earlier runs
    small_step = GateScores(0.872, 0.6, 0.9)  # 0.3 below the live model, 0.6 below the origin
    assert decide(live, small_step, max_test_drop_points=0.5).promoted
    drifted = decide(live, small_step, max_test_drop_points=0.5, origin=origin)
    assert not drifted.promoted
    assert drifted.reason == (
        "test accuracy would be 0.60 points below the model fine-tuning started from (limit 0.50, however many runs)"
    )
    assert decide(live, GateScores(0.874, 0.6, 0.9), max_test_drop_points=0.5, origin=origin).promoted
    assert decide(live, GateScores(0.873, 0.6, 0.9), max_test_drop_points=0.5, origin=origin).promoted  # at the limit


@pytest.mark.parametrize(
    ("live", "candidate", "limit", "promoted", "reason"),
    [
        # (0.860 - 0.855) * 100 is 0.5000000000000004 in floats: a drop of exactly the limit.
        (0.860, 0.855, 0.5, True, "test accuracy -0.50 points; feedback no worse"),
        # 1529 and 1524 of 1,741 names: 0.2872 points exactly, 0.28 between the 4-place figures shown.
        (1529 / 1741, 1524 / 1741, 0.28, True, "test accuracy -0.28 points; feedback no worse"),
        (1529 / 1741, 1523 / 1741, 0.28, False, "test accuracy would drop 0.34 points (limit 0.28)"),
    ],
)
def test_the_gate_decides_on_the_figures_reports_show(
    live: float, candidate: float, limit: float, promoted: bool, reason: str
) -> None:
    decision = decide(GateScores(live, 0.6, None), GateScores(candidate, 0.6, None), max_test_drop_points=limit)
    assert (decision.promoted, decision.reason) == (promoted, reason)
    before, after = decision.live.as_dict()["test_accuracy"], decision.candidate.as_dict()["test_accuracy"]
    assert isinstance(before, float) and isinstance(after, float)
    assert f"{abs(change_in_points(before, after)):.2f} points" in reason  # what a report shows


def trained_gru(dataset: Dataset, out: Path, epochs: int, hidden_size: int) -> Checkpoint:
    """A small GRU trained on ``dataset`` and loaded back, to fine-tune."""
    trained = train_and_save(
        kind="gru",
        dataset=dataset,
        out=out,
        train_config=TrainConfig(epochs=epochs, show_progress=False),
        device=CPU,
        model_overrides={"hidden_size": hidden_size, "embedding_dim": hidden_size // 2},
    )
    return load_checkpoint(trained.path)


def test_fine_tune_learns_feedback_and_leaves_the_live_model_alone(tiny_data_dir: Path, tmp_path: Path) -> None:
    dataset = load_dataset(tiny_data_dir)
    live = trained_gru(dataset, tmp_path / "gru.safetensors", epochs=15, hidden_size=32)
    before = {name: tensor.clone() for name, tensor in live.model.state_dict().items()}
    split = split_dataset(dataset)
    # Teach it that names ending in "-ov" (Arabic's synthetic suffix) are Greek.
    feedback = [Example(example.name, frozenset({"Greek"})) for example in split.train if "Arabic" in example.languages]
    candidate = fine_tune(live, split, feedback, FinetuneConfig(epochs=8, learning_rate=1e-2, replay_size=200), CPU)
    assert all(torch.equal(before[name], tensor) for name, tensor in live.model.state_dict().items())
    assert candidate.metadata.parent_version == live.metadata.version
    assert candidate.metadata.version != live.metadata.version
    assert isinstance(candidate.metadata.model_config, GRUConfig)
    tokens, lengths = live.metadata.vocabulary.encode_batch([example.name for example in feedback])
    greek = live.metadata.labels.index("Greek")
    with torch.inference_mode():
        learned = (candidate.model(tokens, lengths).argmax(dim=1) == greek).float().mean().item()
        before_share = (live.model(tokens, lengths).argmax(dim=1) == greek).float().mean().item()
    assert before_share < 0.2 and learned > 0.8


def test_fine_tune_refuses_unknown_languages_and_empty_feedback(tiny_data_dir: Path, tmp_path: Path) -> None:
    dataset = load_dataset(tiny_data_dir)
    live, split = trained_gru(dataset, tmp_path / "gru.safetensors", epochs=1, hidden_size=8), split_dataset(dataset)
    with pytest.raises(ValueError, match="at least one"):
        fine_tune(live, split, [], FinetuneConfig(), CPU)
    with pytest.raises(ValueError, match="Klingon"):
        fine_tune(live, split, [Example("Worf", frozenset({"Klingon"}))], FinetuneConfig(), CPU)


def test_fine_tune_without_replay_trains_on_the_corrections_alone(tiny_data_dir: Path, tmp_path: Path) -> None:
    dataset = load_dataset(tiny_data_dir)
    live, split = trained_gru(dataset, tmp_path / "gru.safetensors", epochs=1, hidden_size=8), split_dataset(dataset)
    feedback = [Example("Papadakis", frozenset({"Greek"}))]
    candidate = fine_tune(live, split, feedback, FinetuneConfig(epochs=1, replay_size=0), CPU)
    changed = [
        name
        for name, tensor in candidate.model.state_dict().items()
        if not torch.equal(tensor, live.model.state_dict()[name])
    ]
    assert changed  # it trained, on the one correction, without a replay sample to compute targets for


def test_fine_tuning_turns_off_the_dropout_between_stacked_gru_layers() -> None:
    config = GRUConfig(
        vocab_size=20, num_classes=4, embedding_dim=8, hidden_size=16, num_layers=2, bidirectional=False,
        dropout=0.5, max_pool=False, bigrams=False,
    )  # fmt: skip
    model = build_model(config)
    tokens = torch.randint(2, 20, (6, 7), generator=torch.Generator().manual_seed(0))
    lengths = torch.full((6,), 7)
    model.train()
    assert not torch.equal(model(tokens, lengths), model(tokens, lengths))  # the stacked GRU's own dropout is on
    with training_without_dropout(model):
        assert model.training
        assert torch.equal(model(tokens, lengths), model(tokens, lengths))
    assert not model.training
    assert model.gru.dropout == 0.5  # the rate comes back for later training
    with torch.no_grad():
        evaluated = model(tokens, lengths)
    with training_without_dropout(model), torch.no_grad():
        assert torch.allclose(model(tokens, lengths), evaluated)
