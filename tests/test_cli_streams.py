"""The ``nameorigin`` command line with standard streams that are closed, broken or cannot show every character."""

import io
import json
import os
import subprocess
import sys
import types
from importlib.metadata import version
from pathlib import Path

import pytest

from core.cli import main
from core.cli.predict_cmd import chunks_as_they_arrive
from core.console import run

CLI = [sys.executable, "-m", "core.cli"]


def reports_no_error(stderr: bytes) -> bool:
    """Whether stderr is free of tracebacks and errors; progress bars and logged warnings may be there."""
    return not any(word in stderr for word in (b"Traceback", b"Exception", b"Error", b"error:"))


def test_train_stops_quietly_when_the_reader_has_left(tiny_data_dir: Path, tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -0`: whatever train prints has nobody to read it
    out = tmp_path / "gru.safetensors"
    args = ["train", "--dry-run", "--data-dir", str(tiny_data_dir), "--out", str(out)]
    try:
        result = subprocess.run([*CLI, *args], stdout=write_end, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert reports_no_error(result.stderr), result.stderr.decode()
    assert out.is_file()  # the reader left after the work was done: the checkpoint is kept


def test_eval_stops_quietly_when_the_reader_leaves_after_the_report(tiny_data_dir: Path, tmp_path: Path) -> None:
    plot = tmp_path / "confusion.png"
    # Block-buffered, as Python writes to a pipe by default: the whole report arrives, flushed, before the plot.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    process = subprocess.Popen(
        [*CLI, "eval", "--data-dir", str(tiny_data_dir), "--plot", str(plot), "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    try:
        assert process.stdout.readline().startswith(b"model gru-")
        process.stdout.close()  # like `| head -1`, gone before the plot is written and announced
        assert process.wait(timeout=120) == 141
        stderr = process.stderr.read()
        assert reports_no_error(stderr), stderr.decode()
        assert plot.read_bytes().startswith(b"\x89PNG")
    finally:
        process.kill()


@pytest.mark.parametrize(
    ("names", "redirect", "message"),
    [
        ("", "<&-", "cannot read standard input: it is closed"),
        ("", "0>>{tmp}/opened-for-writing.txt", "cannot read standard input: Bad file descriptor"),
        ("Smith", ">&-", "cannot write the output: standard output is closed"),
        ("Smith", ">/dev/full", "cannot write the output: No space left on device"),
    ],
)
def test_predict_reports_an_unusable_standard_stream_in_one_line(
    names: str, redirect: str, message: str, tmp_path: Path
) -> None:
    if "/dev/full" in redirect and not Path("/dev/full").exists():
        pytest.skip("this system has no /dev/full")
    command = f'"$PYTHON" -m core.cli predict {names} {redirect.format(tmp=tmp_path)}'
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(command, shell=True, stderr=subprocess.PIPE, env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.decode() == f"nameorigin predict: error: {message}\n"


def test_predict_shows_names_that_the_output_encoding_cannot() -> None:
    env = {**os.environ, "PYTHONIOENCODING": "cp1252"}
    text = subprocess.run([*CLI, "predict", "Достоевский"], capture_output=True, env=env, timeout=60)
    assert text.returncode == 0 and text.stderr == b""
    assert text.stdout.startswith(
        rb"\u0414\u043e\u0441\u0442\u043e\u0435\u0432\u0441\u043a\u0438\u0439 (as Dostoevskii)"
    )
    as_json = subprocess.run([*CLI, "predict", "--json", "Достоевский"], capture_output=True, env=env, timeout=60)
    assert as_json.returncode == 0 and as_json.stderr == b""
    assert json.loads(as_json.stdout)["name"] == "Достоевский"


def test_predict_json_is_one_line_per_input_whatever_the_separators_inside(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # str.splitlines() also breaks at these; a reader using it must still see one object per input.
    inputs = ["Dost\u2028oevsky", "Kim\x85", "Nakamura\u2029", "Smith\x1e", "Дост\x0cоевский"]
    assert main(["predict", "--json", *inputs]) == 0
    out = capsys.readouterr().out
    assert out.isascii()
    assert [json.loads(line)["name"] for line in out.splitlines()] == inputs


class TypedStdin(io.StringIO):
    """Standard input that is a terminal: names typed one per line."""

    def isatty(self) -> bool:
        return True


def test_predict_at_a_terminal_says_it_reads_names(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", TypedStdin("Smith\n"))
    assert main(["predict"]) == 0
    streams = capsys.readouterr()
    assert streams.out.startswith("Smith: English") and "one per line; end with Ctrl-D" in streams.err
    monkeypatch.setattr(sys, "stdin", io.StringIO("Smith\n"))  # a pipe or a file: nothing to explain
    assert main(["predict"]) == 0
    assert capsys.readouterr().err == ""


def test_version_prints_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"nameorigin {version('nameorigin')}\n"


def test_ctrl_c_while_the_command_starts_ends_it_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the CLI imports torch, a second or more: Ctrl-C then was a traceback from inside torch."""

    class Interrupted(types.ModuleType):
        def __getattr__(self, name: str) -> object:
            raise KeyboardInterrupt  # as if Ctrl-C came while the CLI was being imported

    monkeypatch.setitem(sys.modules, "core.cli", Interrupted("core.cli"))
    with pytest.raises(SystemExit) as exited:
        run()
    assert exited.value.code == 130


def test_a_line_ended_by_a_lone_cr_is_answered_before_the_next_read() -> None:
    """A program writing "Smith\\r" and waiting for the answer gets it: the CR is not held back for a LF."""
    reads = [b"Smith\r", b"\nRossi\r", b"\r\n", b""]
    chunks = chunks_as_they_arrive(lambda: reads.pop(0))
    assert next(chunks) == ["Smith"]
    assert len(reads) == 3  # answered with nothing more read
    assert list(chunks) == [["Rossi"], [""]]  # the LF after a CR ends no line of its own; CR, CRLF: one empty
