"""The ``nameorigin`` command line, driven through ``main`` as a user would run it."""

import io
import json
import os
import select
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from core.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from core.cli import main
from core.cli.predict_cmd import chunks_as_they_arrive
from core.cli.train_cmd import default_model_dir
from core.data import resolve_data_dir
from tests.conftest import must_not_run


def test_train_writes_a_checkpoint_with_its_figures(tiny_checkpoint: tuple[Path, Path]) -> None:
    metadata = read_metadata(tiny_checkpoint[1])
    assert metadata.kind == "gru"
    assert set(metadata.metrics) == {"validation", "test"}
    assert metadata.metrics["test"]["accuracy"] > 0.5
    assert metadata.temperature > 0
    # The synthetic dataset files the same number of names under each language.
    assert metadata.class_prior == pytest.approx((1 / 18,) * 18)


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


def test_predict_text_quotes_a_long_rejected_line_only_in_part(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "a" * 100_000, "b" * 80]) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first == f"'{'a' * 80}…': error: too long: 100000 characters, at most 64"
    assert second.startswith(f"'{'b' * 80}': error: too long")  # up to 80 characters, the whole line


def test_predict_text_shows_each_name_on_one_line_with_no_terminal_escapes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "Fyodor\nDostoevsky", "\x1b[31mSmith", "O\u2028Brien"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "Fyodor\\nDostoevsky (as Dostoevsky)",
        "'\\x1b[31mSmith'",  # an error, the escape shown as such
        "O\\u2028Brien (as Brien)",
    ]


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


def test_train_dry_run_for_the_rnn_saves_into_model_dir(
    tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))  # where the bot would look
    out = tmp_path / "models" / "rnn-dry-run.safetensors"
    assert main(["train", "--model", "rnn", "--dry-run", "--data-dir", str(tiny_data_dir)]) == 0
    assert read_metadata(out).kind == "rnn"
    assert "saved rnn-" in capsys.readouterr().out


@pytest.mark.parametrize("option", ["--epochs", "--batch-size", "--patience"])
def test_train_names_the_option_that_is_out_of_range(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["train", option, "0"])
    assert refused.value.code == 2
    assert f"error: argument {option}: must be at least 1, got 0" in capsys.readouterr().err


def test_train_checks_where_it_saves_before_training(
    tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.pipeline.train_model", must_not_run)
    (tmp_path / "afile").write_text("keep me\n")
    train = ["train", "--dry-run", "--data-dir", str(tiny_data_dir), "--out"]
    assert main([*train, str(tmp_path)]) == 2
    assert "it is a folder" in capsys.readouterr().err
    assert main([*train, f"{tmp_path / 'newdir'}/"]) == 2  # a folder to be: never a file named newdir
    assert "that names a folder; give a file path" in capsys.readouterr().err
    assert not (tmp_path / "newdir").exists()
    assert main([*train, str(tmp_path / "afile" / "sub" / "gru.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "afile is not a folder" in err and err.count("\n") == 1
    assert (tmp_path / "afile").read_text() == "keep me\n"
    os.mkfifo(tmp_path / "pipe")
    assert main([*train, str(tmp_path / "pipe")]) == 2
    assert "pipe: it is a device, pipe or socket, not a file" in capsys.readouterr().err
    assert stat.S_ISFIFO((tmp_path / "pipe").stat().st_mode)
    # An existing file that is no checkpoint, such as the dataset the run reads, is never replaced.
    for precious in (tmp_path / "afile", tiny_data_dir / "English.txt"):
        before = precious.read_bytes()
        assert main([*train, str(precious)]) == 2
        assert "is not a nameorigin checkpoint, and only a checkpoint is replaced" in capsys.readouterr().err
        assert precious.read_bytes() == before


@pytest.mark.parametrize(
    "read_only",
    [False, pytest.param(True, marks=pytest.mark.skipif(os.geteuid() == 0, reason="to root nothing is read-only"))],
)
def test_train_replaces_an_earlier_checkpoint_unless_it_is_read_only(
    read_only: bool, tiny_checkpoint: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, checkpoint = tiny_checkpoint
    out = tmp_path / "gru.safetensors"
    out.write_bytes(checkpoint.read_bytes())
    if read_only:
        out.chmod(0o444)
    status = main(["train", "--dry-run", "--data-dir", str(data_dir), "--out", str(out)])
    if read_only:
        assert status == 2 and "the file is read-only" in capsys.readouterr().err
        assert out.read_bytes() == checkpoint.read_bytes()
        return
    assert status == 0
    assert read_metadata(out).version != read_metadata(checkpoint).version
    assert out.stat().st_size < 100_000  # a dry run's model is tiny: 1.1 MB while its n-gram table was full-size


@pytest.mark.parametrize("threads", ["0", "-1", "two"])
def test_train_rejects_a_thread_count_below_one(
    threads: str, tiny_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["train", "--dry-run", "--threads", threads, "--data-dir", str(tiny_data_dir)])
    assert exited.value.code == 2
    assert "argument --threads:" in capsys.readouterr().err


def test_train_and_eval_reject_a_dataset_too_small_to_split(
    tiny_checkpoint: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import write_dataset

    small = str(write_dataset(tmp_path / "small", per_language=4))
    out = tmp_path / "gru.safetensors"
    assert main(["train", "--dry-run", "--data-dir", small, "--out", str(out)]) == 2
    assert "too small to split" in capsys.readouterr().err
    assert not out.exists()
    assert main(["eval", "--checkpoint", str(tiny_checkpoint[1]), "--data-dir", small]) == 2
    assert "at least 6 names" in capsys.readouterr().err


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


def test_stdin_chunks_rejoin_lines_and_characters_split_between_reads() -> None:
    reads = iter([b"Sm", b"ith\r\nDvo\xc5", b"\x99\xc3\xa1k\nBad\xff\n", b"\n", b"Last", b""])
    chunks = list(chunks_as_they_arrive(lambda: next(reads), size=2))
    assert chunks == [["Smith"], ["Dvořák", "Bad\udcff"], [""], ["Last"]]
    # A byte-order mark opening the input (Excel's "CSV UTF-8") is no part of the first name.
    marked = iter([b"\xef\xbb", b"\xbfSmith\nRossi\n", b""])
    assert list(chunks_as_they_arrive(lambda: next(marked))) == [["Smith", "Rossi"]]
    big = iter([b"a\n" * 5, b""])
    assert list(chunks_as_they_arrive(lambda: next(big), size=2)) == [["a", "a"], ["a", "a"], ["a"]]
    # A lone CR ends a line too (old Mac files), as in the dataset's files; a CRLF split between reads is one end.
    mac = iter([b"Rossi\r", b"\nSmith\rKim\r", "Nguyen\u2028".encode(), b""])
    assert [name for chunk in chunks_as_they_arrive(lambda: next(mac)) for name in chunk] == [
        "Rossi", "Smith", "Kim", "Nguyen\u2028"
    ]  # fmt: skip


def test_predict_answers_each_line_as_it_arrives(tmp_path: Path) -> None:
    """A program that writes one name and waits for its answer must get it before it closes stdin."""
    process = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "predict", "--json"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    try:
        for name in ("Smith", "Nakamura"):
            process.stdin.write(f"{name}\n".encode())
            process.stdin.flush()
            ready, _, _ = select.select([process.stdout], [], [], 30)
            assert ready, f"no answer for {name} while stdin stays open"
            answer = json.loads(process.stdout.readline())
            assert answer["name"] == name
        process.stdin.close()
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()


def test_predict_json_stays_valid_utf8_on_bytes_that_are_not(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}  # the strictest decoding Python may be given
    result = subprocess.run(
        [sys.executable, "-m", "core.cli", "predict", "--json"],
        input=b"Smith\xff\nKim\n\xc3\n", capture_output=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    lines = [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]
    assert [line["name"] for line in lines] == ["Smith\ufffd", "Kim", "\ufffd"]
    assert "not valid UTF-8" in lines[0]["error"] and "not valid UTF-8" in lines[2]["error"]
    assert lines[1]["predictions"][0]["language"] == "Korean"


@pytest.mark.parametrize(
    ("option", "value"),
    [("--class-weight-power", "nan"), ("--class-weight-power", "inf"), ("--class-weight-power", "-1"),
     ("--class-weight-power", "2.01"), ("--class-weight-power", "20"),  # a prior no checkpoint can hold; overflow
     ("--seed", "-1"), ("--seed", str(2**32)), ("--seed", "1.5"), ("--threads", "1025")],  # 65536 crashed OpenMP
)  # fmt: skip
def test_train_rejects_settings_that_would_fail_after_training(
    option: str, value: str, tiny_data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.pipeline.train_model", must_not_run)
    with pytest.raises(SystemExit) as exited:
        main(["train", "--dry-run", f"{option}={value}", "--data-dir", str(tiny_data_dir)])
    assert exited.value.code == 2
    assert f"argument {option}:" in capsys.readouterr().err


def test_train_takes_the_largest_seed(tiny_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "gru.safetensors"
    args = ["train", "--dry-run", "--seed", str(2**32 - 1), "--class-weight-power", "0.5"]
    assert main([*args, "--data-dir", str(tiny_data_dir), "--out", str(out)]) == 0
    assert read_metadata(out).kind == "gru"


@pytest.mark.parametrize(
    "args",
    [
        ["predict", "--checkpoint", "", "Smith"],
        ["eval", "--checkpoint", ""],
        ["eval", "--plot", ""],
        ["eval", "--data-dir", ""],
        ["train", "--dry-run", "--out", ""],
        ["train", "--dry-run", "--data-dir", ""],
        ["data", "download", "--dir", ""],
    ],
)
def test_an_empty_path_is_rejected_rather_than_read_as_the_default(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # an empty path must not reach the default data/ folders; nothing may land here
    monkeypatch.setenv("NAMES_DATA_DIR", str(tmp_path / "no-data"))
    monkeypatch.setattr("core.pipeline.train_model", must_not_run)
    monkeypatch.setattr("core.pipeline.evaluate_examples", must_not_run)
    monkeypatch.setattr("core.cli.data_cmd.download_dataset", must_not_run)
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    assert "expected a path, got an empty string" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_blank_folder_variables_mean_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_DIR", " ")  # as the bot reads them: never a folder named " "
    monkeypatch.setenv("NAMES_DATA_DIR", "")
    assert (default_model_dir(), resolve_data_dir()) == (Path("data/models"), Path("data/names"))
    monkeypatch.setenv("MODEL_DIR", "/srv/models")
    assert default_model_dir() == Path("/srv/models")
