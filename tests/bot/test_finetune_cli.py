"""``nameorigin finetune`` as cron would run it: exit codes, JSON, clear errors."""

from __future__ import annotations

import fcntl
import json
import subprocess
from pathlib import Path

from bot.finetune_job import LOCK_FILE
from tests.bot.commands import nameorigin


def finetune(tmp_path: Path, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return nameorigin(
        tmp_path,
        "finetune",
        *args,
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        MODEL_DIR=str(tmp_path / "models"),
        NAMES_DATA_DIR=str(data_dir),
    )


def test_without_feedback_the_run_is_skipped_and_says_why(tmp_path: Path, real_data_dir: Path) -> None:
    result = finetune(tmp_path, real_data_dir, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == "skipped" and report["message"] == "no trusted feedback yet"
    assert report["live_version"].startswith("gru-")


def test_a_missing_dataset_is_one_clear_line(tmp_path: Path) -> None:
    result = finetune(tmp_path, tmp_path / "nowhere")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("nameorigin finetune: error: cannot fine-tune:")
    assert "nowhere" in result.stderr and "Traceback" not in result.stderr


def test_a_second_run_while_one_holds_the_lock_exits_busy(tmp_path: Path, real_data_dir: Path) -> None:
    lock = tmp_path / "models" / LOCK_FILE
    lock.parent.mkdir(parents=True)
    with open(lock, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # as a running fine-tune would
        result = finetune(tmp_path, real_data_dir, "--json")
        text = finetune(tmp_path, real_data_dir)
    assert result.returncode == 75
    assert json.loads(result.stdout)["status"] == "busy"
    assert (text.returncode, text.stdout) == (75, "busy: another fine-tune is already running\n")


def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path, real_data_dir: Path) -> None:
    result = nameorigin(
        tmp_path,
        "finetune",
        DATABASE_URL="postgresql+asyncpg://bot:hunter2@127.0.0.1:1/bot",  # nothing listens on port 1
        MODEL_DIR=str(tmp_path / "models"),
        NAMES_DATA_DIR=str(real_data_dir),
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(
        "nameorigin finetune: error: cannot fine-tune: cannot use the database postgresql+asyncpg://bot:***@"
    )
    assert "hunter2" not in result.stderr


def test_an_unusable_model_dir_is_one_line_that_names_the_file_in_the_way(tmp_path: Path, real_data_dir: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    for model_dir in (tmp_path / "a-file", tmp_path / "a-file" / "models"):
        result = nameorigin(
            tmp_path,
            "finetune",
            DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
            MODEL_DIR=str(model_dir),
            NAMES_DATA_DIR=str(real_data_dir),
        )
        assert result.returncode == 2
        reason = f"MODEL_DIR {model_dir}: {tmp_path / 'a-file'} is not a folder"
        assert result.stderr.splitlines() == [f"nameorigin finetune: error: cannot fine-tune: {reason}"]
