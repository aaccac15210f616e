"""``nameorigin eval``: its report, its plot, and the checkpoints it refuses, driven through ``main``."""

import errno
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from core.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from core.cli import main
from core.predict import shipped_checkpoint_path
from tests.conftest import must_not_run


def _eval_json(checkpoint: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert (
        main(["eval", "--json", "--checkpoint", str(checkpoint), "--data-dir", str(data_dir), "--plot", "c.png"]) == 0
    )
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


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
    assert all(round(row["recall"], 4) == row["recall"] for row in report["per_language"])  # as the headline
    assert report["audit"]["distinct_names"] == 540
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_eval_text_report(tiny_checkpoint: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    data_dir, checkpoint = tiny_checkpoint
    assert main(["eval", "--checkpoint", str(checkpoint), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "test: accuracy" in out and "macro-F1" in out and "Vietnamese" in out
    assert "support: test names counted for the language, once each" in out  # what a support of 0 means
    assert "macro-F1 averages every language the test split files a name under" in out
    assert main(["eval", "--checkpoint", str(checkpoint), "--data-dir", str(data_dir), "--json"]) == 0
    test = json.loads(capsys.readouterr().out)["test"]
    # The figures the JSON holds, not those rounded again: 0.6675 must not show as 0.667 beside a 0.668 elsewhere.
    assert f"macro-F1 {test['macro_f1']:.4f}, ECE {test['ece']:.4f}, NLL {test['nll']:.4f}" in out


@pytest.mark.parametrize(
    ("plot", "message"),
    [("nowhere/c.png", "folder .*nowhere does not exist"), ("c.txt", "unsupported format 'txt'"), ("c", "no file"),
     ("c.pgf", "unsupported format 'pgf'"),  # needs LaTeX, found missing only at the end
     ("afile/c.png", "afile is not a folder"), ("", "it is a folder; give a file such as .*confusion.png")],
)  # fmt: skip
def test_eval_checks_the_plot_path_before_evaluating(
    plot: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.pipeline.evaluate_examples", must_not_run)
    (tmp_path / "afile").write_text("keep me\n")
    assert main(["eval", "--data-dir", str(tmp_path / "unused"), "--plot", str(tmp_path / plot)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert re.search(message, captured.err) and captured.err.count("\n") == 1


def test_eval_plot_that_fails_to_save_keeps_the_old_image(
    tiny_checkpoint: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import matplotlib.figure

    def half_written(figure: object, path: str, **kwargs: object) -> None:
        Path(path).write_bytes(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", half_written)
    data_dir, checkpoint = tiny_checkpoint
    plot = tmp_path / "confusion.png"
    plot.write_bytes(b"old image")
    assert (
        main(["eval", "--json", "--checkpoint", str(checkpoint), "--data-dir", str(data_dir), "--plot", str(plot)]) == 2
    )
    assert "No space left on device" in capsys.readouterr().err
    assert plot.read_bytes() == b"old image"
    assert [p.name for p in tmp_path.iterdir()] == ["confusion.png"]


def test_eval_names_every_figure_in_the_models_label_order(
    tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped model with its outputs and labels both reversed is the same model: eval must say the same."""
    shipped = load_checkpoint(shipped_checkpoint_path("gru"))
    metadata = shipped.metadata
    assert metadata.class_prior is not None
    model = shipped.model
    with torch.no_grad():  # reverse the output rows, so output i now means the reversed list's label i
        model.head.weight.copy_(model.head.weight.flip(0))
        model.head.bias.copy_(model.head.bias.flip(0))
    reversed_metadata = replace(metadata, labels=metadata.labels[::-1], class_prior=metadata.class_prior[::-1])
    reversed_path = save_checkpoint(tmp_path / "reversed.safetensors", model, reversed_metadata)
    plotted: list[dict[tuple[str, str], int]] = []

    sources: list[str] = []

    def named_cells(confusion: Any, labels: tuple[str, ...], path: str, source: str) -> None:
        plotted.append({(t, p): int(confusion[r, c]) for r, t in enumerate(labels) for c, p in enumerate(labels)})
        sources.append(source)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("core.plots.save_confusion_plot", named_cells)
    original = _eval_json(shipped_checkpoint_path("gru"), tiny_data_dir, capsys)
    flipped = _eval_json(reversed_path, tiny_data_dir, capsys)
    assert plotted[1] == plotted[0]
    assert sources[0].startswith(f"{metadata.version}, dataset prior: accuracy ")  # the image says what it shows
    assert flipped["per_language"] == original["per_language"][::-1]
    assert flipped["test"] == pytest.approx(original["test"])
    # Equal counts may be listed in another order, so check each listed mistake against the model's real ones.
    assert original["top_confusions"], "the shipped model should make mistakes on synthetic names"
    for pair in flipped["top_confusions"]:
        assert pair["count"] == plotted[0][pair["true"], pair["predicted"]]
    assert [p["count"] for p in flipped["top_confusions"]] == [p["count"] for p in original["top_confusions"]]


def test_eval_rejects_a_checkpoint_for_other_languages(
    tiny_checkpoint: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, trained = tiny_checkpoint
    loaded = load_checkpoint(trained)
    labels = tuple("Martian" if label == "Russian" else label for label in loaded.metadata.labels)
    foreign = save_checkpoint(tmp_path / "foreign.safetensors", loaded.model, replace(loaded.metadata, labels=labels))
    assert main(["eval", "--checkpoint", str(foreign), "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert "trained on other languages" in err and "Russian" in err and "Martian" in err
    assert err.count("\n") == 1
