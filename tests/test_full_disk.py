"""A checkpoint that cannot be written (a full disk, a file-size limit) is one clear line, and no file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from core.cli import main
from tests.file_limits import file_size_limit

LIMIT = 4096  # bytes: a tiny model's header alone is larger


def test_train_on_a_full_disk_says_so_in_one_line_and_leaves_no_file(
    tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Not a mocked save: safetensors' own writer reported a full disk as a SafetensorError, not an OSError.
    out = tmp_path / "models" / "gru.safetensors"
    with file_size_limit(LIMIT):
        status = main(["train", "--dry-run", "--data-dir", str(tiny_data_dir), "--out", str(out)])
    assert status == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"nameorigin train: error: cannot save the checkpoint to {out}: {os.strerror(errno.EFBIG)}"
    )
    assert not list(out.parent.iterdir())  # no temporary file, no half a checkpoint
