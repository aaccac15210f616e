"""What a ``nameorigin`` command imports: nothing heavy before it needs it.

Importing torch takes most of a second. Help, a mistyped setting or a command that never touches a
model should not wait for it, and a prediction should not pay for torch's compiler stack either.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "numpy", "telegram")
# sympy, dynamo and inductor take most of a second to import and are of no use to a prediction. Building a
# model on the meta device pulled them in (nn.Embedding's normal_ there is a Python decomposition).
COMPILER_STACK = ("sympy", "torch._dynamo", "torch._inductor")


def imported_after(
    arguments: list[str], watched: tuple[str, ...], cwd: Path, env: dict[str, str] | None = None, error: str = ""
) -> str:
    """``main(arguments)``'s exit status, then which of ``watched`` it imported, as one line from a fresh process.

    It runs in ``cwd``, a temporary folder: in the checkout, a developer's ``.env`` would give ``serve`` its
    settings (a token: the bot would start and create data/nameorigin.db there).
    """
    script = (
        "import sys\n"
        "from core.cli import main\n"
        "try:\n"
        f"    status = main({arguments!r})\n"
        "except SystemExit as exit:\n"  # --help and argparse's own errors
        "    status = exit.code\n"
        f"print(status, [module for module in {watched!r} if module in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env, cwd=cwd, check=False
    )
    assert result.stdout, result.stderr  # it crashed before printing: show why
    assert error in result.stderr  # refused for the reason the test means, not another
    return result.stdout.splitlines()[-1]


@pytest.mark.parametrize("arguments", [["--help"], ["predict", "--help"], ["train", "--help"], ["serve", "--help"]])
def test_help_imports_neither_torch_numpy_nor_telegram(arguments: list[str], tmp_path: Path) -> None:
    assert imported_after(arguments, HEAVY, tmp_path) == f"0 {[]}"


def test_a_missing_token_is_told_before_torch_is_imported(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TELEGRAM_")}
    assert imported_after(["serve"], HEAVY, tmp_path, env, error="TELEGRAM_BOT_TOKEN is required") == f"2 {[]}"


def test_a_fine_tune_into_a_model_dir_that_is_a_file_is_told_before_torch_is_imported(tmp_path: Path) -> None:
    (tmp_path / "models").write_text("not a folder")
    env = {**os.environ, "MODEL_DIR": str(tmp_path / "models")}
    assert imported_after(["finetune"], HEAVY, tmp_path, env, error="is not a folder") == f"2 {[]}"


@pytest.mark.parametrize("kind", ["gru", "rnn"])
def test_predicting_with_a_shipped_model_leaves_torch_s_compiler_stack_unimported(kind: str, tmp_path: Path) -> None:
    assert imported_after(["predict", "--model", kind, "Dostoevsky"], COMPILER_STACK, tmp_path) == f"0 {[]}"
