"""The training-speed benchmark: its copy of the tutorial's loop trains, and the script runs end to end."""

import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from core.batching import encode_examples
from core.data import load_dataset
from core.encoding import Vocabulary
from core.split import split_dataset

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from train_speed import TutorialGRU, one_hot_lines, tutorial_steps  # noqa: E402


def test_one_hot_lines_are_the_tutorial_input(tiny_data_dir: Path) -> None:
    split = split_dataset(load_dataset(tiny_data_dir))
    vocabulary = Vocabulary.from_names(ex.name for ex in split.train)
    data = encode_examples(split.train[:5], vocabulary, load_dataset(tiny_data_dir).labels)
    lines = one_hot_lines(data, vocabulary.size, torch.device("cpu"))
    for row, line in enumerate(lines):
        length = int(data.lengths[row])
        assert line.shape == (length, 1, vocabulary.size)
        assert torch.equal(line.argmax(dim=2).squeeze(1), data.tokens[row, :length])
        assert torch.equal(line.sum(dim=2), torch.ones(length, 1))


def test_the_tutorial_loop_learns(tiny_data_dir: Path) -> None:
    dataset = load_dataset(tiny_data_dir)
    split = split_dataset(dataset)
    vocabulary = Vocabulary.from_names(ex.name for ex in split.train)
    data = encode_examples(split.train[:36], vocabulary, dataset.labels)
    lines = one_hot_lines(data, vocabulary.size, torch.device("cpu"))
    targets = data.truth.float().argmax(dim=1)
    torch.manual_seed(0)
    model = TutorialGRU(vocabulary.size, len(dataset.labels))

    def mean_loss() -> float:
        with torch.no_grad():
            return float(
                torch.stack(
                    [nn.functional.nll_loss(model(line), targets[i : i + 1]) for i, line in enumerate(lines)]
                ).mean()
            )

    before = mean_loss()
    for _ in range(15):
        seconds = tutorial_steps(model, lines, targets, torch.randperm(len(lines)), torch.device("cpu"))
        assert seconds > 0
    assert mean_loss() < before * 0.5


def test_the_script_prints_every_loop_and_the_ratios(tiny_data_dir: Path) -> None:
    script = [sys.executable, str(BENCHMARKS / "train_speed.py"), "--data-dir", str(tiny_data_dir)]
    result = subprocess.run(
        [*script, "--limit", "80", "--repeats", "2"], capture_output=True, text=True, check=True, cwd=BENCHMARKS.parent
    )
    output = result.stdout
    assert "80 training names" in output
    for label in ("tutorial's code: one name per step", "our model: one name per step", "batched trainer"):
        assert label in output
    assert "speed-up over the tutorial's code:" in output
    assert "speed-up over our model one name per step:" in output
