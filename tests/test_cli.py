"""The ``nameorigin`` command line, driven through ``main`` as a user would run it."""

import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from core.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from core.cli import main


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Train a small GRU once on the synthetic dataset: (data dir, checkpoint path)."""
    from tests.conftest import write_dataset

    root = tmp_path_factory.mktemp("cli")
    data_dir = write_dataset(root / "names")
    out = root / "models" / "gru.safetensors"
    status = main(["train", "--model", "gru", "--data-dir", str(data_dir), "--epochs", "12", "--out", str(out),
                   "--batch-size", "16", "--device", "cpu"])  # fmt: skip
    assert status == 0
    return data_dir, out


def test_train_writes_a_checkpoint_with_its_figures(tiny_checkpoint: tuple[Path, Path]) -> None:
    metadata = read_metadata(tiny_checkpoint[1])
    assert metadata.kind == "gru"
    assert set(metadata.metrics) == {"validation", "test"}
    assert metadata.metrics["test"]["accuracy"] > 0.5
    assert metadata.temperature > 0
    # The synthetic dataset files the same number of names under each language.
    assert metadata.class_prior == pytest.approx((1 / 18,) * 18)


def test_eval_reports_json_and_writes_a_plot(
    tiny_checkpoint: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, checkpoint = tiny_checkpoint
    plot = tmp_path / "confusion.png"
    args = [
        "eval",
        "--checkpoint",
        str(checkpoint),
        "--data-dir",
        str(data_dir),
        "--json",
        "--plot",
        str(plot),
    ]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split_sizes"] == {"train": 432, "validation": 54, "test": 54}
    assert report["test"]["count"] == 54
    assert 0.0 <= report["test"]["ece"] <= 1.0
    assert {row["language"] for row in report["per_language"]} == set(read_metadata(checkpoint).labels)
    assert report["audit"]["distinct_names"] == 540
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_eval_text_report(tiny_checkpoint: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    data_dir, checkpoint = tiny_checkpoint
    assert main(["eval", "--checkpoint", str(checkpoint), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "test: accuracy" in out and "macro-F1" in out and "Vietnamese" in out


def test_predict_json_format_for_good_and_bad_input(
    tiny_checkpoint: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, checkpoint = tiny_checkpoint
    inputs = ["Abcov", "Jean Abcov", "", "12345", "x" * 65, "🙂"]
    assert main(["predict", "--json", "--checkpoint", str(checkpoint), "--top-k", "2", *inputs]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["name"] for line in lines] == inputs
    good, full_name = lines[0], lines[1]
    assert set(good) == {"name", "normalized", "predictions"}
    assert good["normalized"] == "Abcov"
    assert full_name["normalized"] == "Abcov"
    assert len(good["predictions"]) == 2
    assert all(set(p) == {"language", "probability"} for p in good["predictions"])
    assert good["predictions"][0]["probability"] >= good["predictions"][1]["probability"]
    for bad in lines[2:]:
        assert set(bad) == {"name", "error"} and bad["error"]


def test_predict_reads_stdin_in_order_without_skipping(
    tiny_checkpoint: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, checkpoint = tiny_checkpoint
    lines = ["Abcov", "", "Достоевский", "<b>", "Smith"] * 300  # longer than one chunk
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["predict", "--json", "--checkpoint", str(checkpoint)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["name"] for o in out] == lines
    assert out[2]["normalized"] == "Dostoevskii"
    assert "error" in out[1] and "predictions" in out[3]


def test_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--checkpoint", str(tmp_path / "none.safetensors"), "Smith"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert main(["eval", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_shipped_model_predicts_without_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--json", "Dostoevsky", "Достоевский", "Nakamura"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["predictions"][0]["language"] for r in results] == ["Russian", "Russian", "Japanese"]


def test_predict_and_eval_take_a_uniform_prior(
    tiny_checkpoint: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, trained = tiny_checkpoint
    # The synthetic data is balanced, so claim Russian was almost absent from training: dividing
    # that prior out must boost Russian enough to flip answers the model was sure of.
    loaded = load_checkpoint(trained)
    rare = 1e-12
    skewed = ((1 - rare) / 17,) * 14 + (rare,) + ((1 - rare) / 17,) * 3
    checkpoint = save_checkpoint(
        tmp_path / "skewed.safetensors", loaded.model, replace(loaded.metadata, class_prior=skewed)
    )
    reports = {}
    for prior in ("dataset", "uniform"):
        args = ["eval", "--json", "--prior", prior, "--checkpoint", str(checkpoint), "--data-dir", str(data_dir)]
        assert main(args) == 0
        reports[prior] = json.loads(capsys.readouterr().out)
    assert reports["uniform"]["prior"] == "uniform"
    assert reports["uniform"]["test"]["accuracy"] < reports["dataset"]["test"]["accuracy"]
    assert main(["predict", "--json", "--prior", "uniform", "Dostoevsky", "Nakamura"]) == 0
    uniform = [json.loads(line)["predictions"] for line in capsys.readouterr().out.splitlines()]
    assert main(["predict", "--json", "Dostoevsky", "Nakamura"]) == 0
    dataset = [json.loads(line)["predictions"] for line in capsys.readouterr().out.splitlines()]
    assert [p[0]["language"] for p in uniform] == ["Russian", "Japanese"]
    # Russian is half the training data: without that prior the shipped model is less sure of it.
    assert uniform[0][0]["probability"] < dataset[0][0]["probability"]


def test_train_dry_run_for_the_rnn(tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rnn.safetensors"
    args = ["train", "--model", "rnn", "--dry-run", "--data-dir", str(tiny_data_dir), "--out", str(out)]
    assert main(args) == 0
    assert read_metadata(out).kind == "rnn"
    assert "saved rnn-" in capsys.readouterr().out


def test_train_rejects_bad_settings(tiny_data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--epochs", "0", "--data-dir", str(tiny_data_dir)]) == 2
    assert "at least 1" in capsys.readouterr().err


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("Smith\nNakamura\n" * 20_000)  # far more output than a pipe buffers
    with names.open("rb") as stdin:
        process = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "predict"], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline().startswith(b"Smith: English")
        process.stdout.close()  # like `| head -1`
        assert process.wait(timeout=60) == 141
        assert process.stderr.read() == b""
