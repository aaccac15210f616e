"""The checkpoints that ship inside the package."""

import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from core.batching import encode_examples
from core.calibration import class_prior
from core.checkpoint import load_checkpoint
from core.data import load_dataset
from core.metrics import Metrics
from core.pipeline import evaluate_examples
from core.predict import Predictor, shipped_checkpoint_path
from core.split import SplitConfig, split_dataset


@pytest.mark.parametrize("kind", ["gru", "rnn"])
def test_shipped_checkpoint_is_small_and_loads(kind: str) -> None:
    path = shipped_checkpoint_path(kind)
    assert path.stat().st_size < 2 * 1024 * 1024
    checkpoint = load_checkpoint(path)
    assert checkpoint.metadata.kind == kind
    assert len(checkpoint.metadata.labels) == 18
    assert {"validation", "test"} <= set(checkpoint.metadata.metrics)
    with safe_open(path, "pt") as stored:  # so a damaged copy fails to load instead of answering wrongly
        assert len(stored.metadata()["nameorigin.weights_sha256"]) == 64


@pytest.mark.parametrize("kind", ["gru", "rnn"])
def test_shipped_figures_reproduce_on_the_fixed_test_split(kind: str, real_data_dir: Path) -> None:
    checkpoint = load_checkpoint(shipped_checkpoint_path(kind))
    dataset = load_dataset(real_data_dir)
    assert dataset.sha256 == checkpoint.metadata.dataset_sha256
    split = split_dataset(dataset, SplitConfig(seed=checkpoint.metadata.split_seed))
    metrics = evaluate_examples(checkpoint, split.test, torch.device("cpu")).headline()
    stored = checkpoint.metadata.metrics["test"]
    for figure in ("accuracy", "top3_accuracy", "macro_f1", "ece"):
        assert metrics[figure] == pytest.approx(stored[figure], abs=2e-4)


@pytest.mark.parametrize("kind", ["gru", "rnn"])
def test_shipped_class_prior_is_the_training_splits(kind: str, real_data_dir: Path) -> None:
    metadata = load_checkpoint(shipped_checkpoint_path(kind)).metadata
    split = split_dataset(load_dataset(real_data_dir), SplitConfig(seed=metadata.split_seed))
    train = encode_examples(split.train, metadata.vocabulary, metadata.labels)
    assert metadata.class_prior == pytest.approx(class_prior(train.truth))  # both trained unweighted
    assert metadata.class_prior is not None and max(metadata.class_prior) == metadata.class_prior[14]  # Russian


@pytest.fixture(scope="module")
def gru_and_baselines(real_data_dir: Path) -> tuple[Metrics, list[Metrics]]:
    """The shipped GRU's test figures and both n-gram SVMs' (plain, class-balanced), computed once."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from baseline_ngram import ngram_baseline

    baselines = [ngram_baseline(str(real_data_dir), balanced)[0] for balanced in (False, True)]
    checkpoint = load_checkpoint(shipped_checkpoint_path("gru"))
    split = split_dataset(load_dataset(real_data_dir), SplitConfig(seed=checkpoint.metadata.split_seed))
    return evaluate_examples(checkpoint, split.test, torch.device("cpu")), baselines


def test_shipped_gru_beats_the_ngram_baselines_on_macro_f1(gru_and_baselines: tuple[Metrics, list[Metrics]]) -> None:
    gru, baselines = gru_and_baselines
    assert all(gru.macro_f1 > baseline.macro_f1 for baseline in baselines)
    assert gru.ece <= 0.03


def test_shipped_gru_beats_the_ngram_baselines_on_accuracy(gru_and_baselines: tuple[Metrics, list[Metrics]]) -> None:
    gru, baselines = gru_and_baselines
    assert all(gru.accuracy > baseline.accuracy for baseline in baselines)
    assert gru.macro_f1 >= 0.62


@pytest.mark.xfail(
    strict=True,
    reason="open in issue 2: the shipped GRU is below the 89% accuracy and 97% top-3 targets on the test split",
)
def test_shipped_gru_meets_the_accuracy_targets() -> None:
    stored = load_checkpoint(shipped_checkpoint_path("gru")).metadata.metrics["test"]
    assert stored["accuracy"] >= 0.89 and stored["top3_accuracy"] >= 0.97


@pytest.mark.parametrize(
    ("name", "language"),
    [("Dostoevsky", "Russian"), ("Достоевский", "Russian"), ("Nakamura", "Japanese"), ("O'Brien", "Irish"),
     ("Rossi", "Italian"), ("Nguyen", "Vietnamese"), ("Schmidt", "German"), ("Papadopoulos", "Greek")],
)  # fmt: skip
def test_shipped_gru_knows_famous_surnames(name: str, language: str) -> None:
    guess = Predictor.shipped("gru").predict(name)
    assert guess.predictions[0].language == language


@pytest.mark.slow
def test_full_training_run_from_the_cli(real_data_dir: Path, tmp_path: Path) -> None:
    from core.checkpoint import read_metadata
    from core.cli import main

    out = tmp_path / "rnn.safetensors"
    assert main(["train", "--model", "rnn", "--data-dir", str(real_data_dir), "--epochs", "3", "--out", str(out)]) == 0
    assert read_metadata(out).metrics["test"]["accuracy"] > 0.75
