from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.batching import bucketed_batches, encode_examples
from core.calibration import class_prior
from core.data import load_dataset
from core.device import DeviceUnavailableError
from core.encoding import PAD_ID, UNK_ID, Vocabulary
from core.inference import predict_logits
from core.metrics import compute_metrics
from core.models import GRUConfig, build_model
from core.pipeline import train_and_save
from core.split import split_dataset
from core.train import SelectionMetric, TrainConfig, class_weights, drop_characters, make_optimizer, train_model


def tiny_training(data_dir: Path, out: Path, seed: int) -> dict[str, torch.Tensor]:
    trained = train_and_save(
        kind="gru",
        dataset=load_dataset(data_dir),
        out=out,
        train_config=TrainConfig(epochs=2, batch_size=32, seed=seed, show_progress=False),
        device=torch.device("cpu"),
        model_overrides={"hidden_size": 16, "embedding_dim": 8},
    )
    return load_file(trained.path)


def test_same_seed_gives_the_same_weights(tiny_data_dir: Path, tmp_path: Path) -> None:
    first = tiny_training(tiny_data_dir, tmp_path / "a.safetensors", seed=3)
    second = tiny_training(tiny_data_dir, tmp_path / "b.safetensors", seed=3)
    other = tiny_training(tiny_data_dir, tmp_path / "c.safetensors", seed=4)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_training_learns_the_tiny_dataset(tiny_data_dir: Path) -> None:
    dataset = load_dataset(tiny_data_dir)
    split = split_dataset(dataset)
    vocabulary = Vocabulary.from_names(ex.name for ex in split.train)
    train_set = encode_examples(split.train, vocabulary, dataset.labels)
    validation_set = encode_examples(split.validation, vocabulary, dataset.labels)
    model = build_model(GRUConfig(vocab_size=vocabulary.size, num_classes=18, hidden_size=32, embedding_dim=16))
    config = TrainConfig(epochs=25, batch_size=16, seed=0, show_progress=False, patience=25)
    result = train_model(model, train_set, validation_set, dataset.labels, config, torch.device("cpu"))
    assert result.validation_metrics.accuracy > 0.8
    assert result.history[-1].train_loss < result.history[0].train_loss / 3


def test_the_kept_epoch_is_the_best_by_the_chosen_figure(tiny_data_dir: Path) -> None:
    dataset = load_dataset(tiny_data_dir)
    split = split_dataset(dataset)
    vocabulary = Vocabulary.from_names(ex.name for ex in split.train)
    train_set, validation_set = (
        encode_examples(part, vocabulary, dataset.labels) for part in (split.train, split.validation)
    )
    kept: dict[str, int] = {}
    selections: tuple[SelectionMetric, ...] = ("accuracy", "macro_f1")
    for select_on in selections:
        torch.manual_seed(5)  # with this seed the two figures peak at different epochs (5 and 6)
        model = build_model(GRUConfig(vocab_size=vocabulary.size, num_classes=18, hidden_size=8, embedding_dim=4))
        config = TrainConfig(epochs=6, batch_size=16, seed=5, show_progress=False, select_on=select_on)
        result = train_model(model, train_set, validation_set, dataset.labels, config, torch.device("cpu"))
        scores = [record.validation[select_on] for record in result.history]
        assert result.best_epoch == 1 + scores.index(max(scores))
        probabilities = predict_logits(model, validation_set, torch.device("cpu")).softmax(dim=1).double().numpy()
        assert compute_metrics(probabilities, validation_set.truth.numpy(), dataset.labels).headline()[
            select_on
        ] == max(scores)
        kept[select_on] = result.best_epoch
    assert kept["accuracy"] != kept["macro_f1"]


def test_unknown_selection_figure_is_refused() -> None:
    with pytest.raises(ValueError, match="select_on"):
        TrainConfig(select_on="loss")  # type: ignore[arg-type]


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("setting", "message"),
    [({"learning_rate": NAN}, "learning_rate"), ({"learning_rate": INF}, "learning_rate"),
     ({"grad_clip": NAN}, "grad_clip"), ({"grad_clip": INF}, "grad_clip"), ({"grad_clip": 0.0}, "grad_clip"),
     ({"weight_decay": NAN}, "weight_decay"), ({"weight_decay": -0.1}, "weight_decay")],
)  # fmt: skip
def test_a_setting_training_cannot_use_is_refused_before_it_starts(setting: dict[str, float], message: str) -> None:
    # A NaN or infinite grad_clip or learning rate trained every epoch, then failed in calibration with
    # torch's "value cannot be converted to type float without overflow".
    with pytest.raises(ValueError, match=message):
        TrainConfig(**setting)  # type: ignore[arg-type]


@pytest.mark.parametrize("setting", [{"epochs": 2.5}, {"batch_size": 8.5}, {"patience": True}, {"epochs": "3"}])
def test_counts_in_the_train_config_must_be_whole_numbers(setting: dict[str, object]) -> None:
    # 2.5 epochs reached torch's OneCycleLR as "Expected positive integer total_steps, but got 35.0".
    with pytest.raises(TypeError, match="must be a whole number"):
        TrainConfig(**setting)  # type: ignore[arg-type]


def test_training_on_an_accelerator_that_is_not_here_is_a_device_unavailable_error(
    tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    dataset = load_dataset(tiny_data_dir)
    split = split_dataset(dataset)
    vocabulary = Vocabulary.from_names(ex.name for ex in split.train)
    train_set = encode_examples(split.train, vocabulary, dataset.labels)
    model = build_model(GRUConfig(vocab_size=vocabulary.size, num_classes=18, hidden_size=8, embedding_dim=4))
    config = TrainConfig(epochs=1, show_progress=False)
    with pytest.raises(DeviceUnavailableError):
        train_model(model, train_set, train_set, dataset.labels, config, torch.device("cuda"))


def test_buckets_cover_every_index_once_with_similar_lengths() -> None:
    lengths = torch.randint(1, 20, (1000,), generator=torch.Generator().manual_seed(0))
    batches = list(bucketed_batches(lengths, 32, torch.Generator().manual_seed(1)))
    assert sorted(torch.cat(batches).tolist()) == list(range(1000))
    spread = sum(int(lengths[b].max() - lengths[b].min()) for b in batches) / len(batches)
    assert spread < 3  # a random batch of 32 would span most of 1..19


def test_buckets_come_in_shuffled_order_and_a_new_mix_each_epoch() -> None:
    lengths = torch.randint(1, 20, (1000,), generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    first, second = (list(bucketed_batches(lengths, 32, generator)) for _ in range(2))
    longest = [int(lengths[b].max()) for b in first]
    assert longest != sorted(longest)  # not shortest names first
    assert {frozenset(b.tolist()) for b in first} != {frozenset(b.tolist()) for b in second}


def test_buckets_cover_every_index_once_across_several_pools() -> None:
    lengths = torch.randint(1, 20, (100,), generator=torch.Generator().manual_seed(0))
    batches = list(bucketed_batches(lengths, 4, torch.Generator().manual_seed(1), pool_batches=3))  # 9 pools
    assert sorted(torch.cat(batches).tolist()) == list(range(100))
    assert max(len(b) for b in batches) == 4


def test_predictions_come_back_in_input_order_whatever_the_batching(tiny_data_dir: Path) -> None:
    dataset = load_dataset(tiny_data_dir)
    vocabulary = Vocabulary.from_names(ex.name for ex in dataset.examples)
    examples = encode_examples(dataset.examples, vocabulary, dataset.labels)
    torch.manual_seed(0)
    model = build_model(GRUConfig(vocab_size=vocabulary.size, num_classes=18, hidden_size=8, embedding_dim=4))
    batched = predict_logits(model, examples, torch.device("cpu"), batch_size=3)
    assert len(set(examples.lengths.tolist())) > 3  # batches of mixed lengths, sorted, then put back in order
    model.eval()
    with torch.no_grad():
        one_by_one = torch.cat([model(*examples.batch(torch.tensor([row]))[:2]) for row in range(len(examples))])
    torch.testing.assert_close(batched, one_by_one)


def test_a_failed_prediction_pass_leaves_the_model_in_training_mode(tiny_data_dir: Path) -> None:
    dataset = load_dataset(tiny_data_dir)
    vocabulary = Vocabulary.from_names(ex.name for ex in dataset.examples)
    examples = encode_examples(dataset.examples, vocabulary, dataset.labels)
    model = build_model(GRUConfig(vocab_size=vocabulary.size, num_classes=18, hidden_size=8, embedding_dim=4))

    def fail(module: torch.nn.Module, args: object) -> None:
        raise RuntimeError("out of memory")

    model.register_forward_pre_hook(fail)
    with pytest.raises(RuntimeError, match="out of memory"):
        predict_logits(model, examples, torch.device("cpu"))
    assert model.training  # training that catches the error goes on with dropout, as before the pass


def test_adamw_uses_the_fused_kernel_on_cpu() -> None:
    model = build_model(GRUConfig(vocab_size=10, num_classes=3, hidden_size=4, embedding_dim=2))
    optimizer, _ = make_optimizer(model, TrainConfig(epochs=1), examples=10)
    assert optimizer.defaults["fused"] is True


def test_class_weights_favour_rare_languages() -> None:
    truth = torch.zeros(110, 2, dtype=torch.bool)
    truth[:100, 0] = True
    truth[100:, 1] = True
    weights = class_weights(truth, power=0.5)
    assert torch.isclose(weights[1] / weights[0], torch.tensor(10**0.5))
    assert torch.allclose(class_weights(truth, power=0.0), torch.ones(2))
    # A language the training split lacks (a small --data-dir) weighs like one seen once, not infinitely.
    truth[100:] = torch.tensor([True, False])
    weights = class_weights(truth, power=0.5)
    assert torch.isfinite(weights).all() and torch.isclose(weights[1] / weights[0], torch.tensor(110**0.5))


def test_character_dropout_never_touches_padding() -> None:
    tokens = torch.tensor([[5, 6, 7, PAD_ID, PAD_ID]] * 200)
    dropped = drop_characters(tokens, 0.5, torch.Generator().manual_seed(0))
    assert (dropped[:, 3:] == PAD_ID).all()
    share = (dropped[:, :3] == UNK_ID).float().mean()
    assert 0.4 < share < 0.6


def test_the_recorded_prior_is_what_the_weighted_loss_taught() -> None:
    # 6 pairs of language 0, 2 of language 1, 1 of language 2 (a name under 0 and 1 counts for both).
    truth = torch.tensor([[1, 0, 0]] * 5 + [[1, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.bool)
    assert class_prior(truth) == pytest.approx((6 / 9, 2 / 9, 1 / 9))
    # Weights (count / max) ** -power turn each count into count ** (1 - power), up to a constant.
    shares = torch.tensor([6.0, 2.0, 1.0]).sqrt()
    assert class_prior(truth, weight_power=0.5) == pytest.approx(tuple((shares / shares.sum()).tolist()))
    assert class_prior(truth, weight_power=1.0) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    # A language without a single pair still gets a finite share.
    assert min(class_prior(torch.tensor([[1, 0]], dtype=torch.bool))) > 0
