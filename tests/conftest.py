"""Shared fixtures: a synthetic 18-language dataset, and the real one when it is present."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.data import LANGUAGES
from tests.databases import postgres_database, sqlite_database

# Set by CI, so that a dataset missing there fails the run instead of skipping the fine-tuning and gate tests.
REQUIRE_DATASET_ENV = "REQUIRE_DATASET"
# Made absolute once, from the folder pytest starts in: tests that change folder still find a relative one.
REAL_DATA_DIR = Path(os.environ.get("NAMES_DATA_DIR", Path(__file__).parents[2] / "shared" / "data" / "names"))
REAL_DATA_DIR = REAL_DATA_DIR.absolute()


def synthetic_names(language: str, count: int, seed: int = 0) -> list[str]:
    """Deterministic, easily separable names: each language has its own suffix and letter pool."""
    index = LANGUAGES.index(language)
    rng = random.Random(seed * 100 + index)
    pool = "abcdefghijklmnopqrstuvwxyz"[index : index + 8]
    suffix = ["ov", "ez", "ski", "son", "elli", "moto", "ang", "nen", "ou", "escu", "berg", "ic", "ard", "ey",
              "ides", "ini", "sen", "yk"][index]  # fmt: skip
    names = set()
    while len(names) < count:
        stem = "".join(rng.choice(pool) for _ in range(rng.randint(2, 5)))
        names.add((stem + suffix).capitalize())
    return sorted(names)


def write_dataset(folder: Path, per_language: int = 30) -> Path:
    """Write the 18 language files of a synthetic dataset into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for language in LANGUAGES:
        (folder / f"{language}.txt").write_text("\n".join(synthetic_names(language, per_language)) + "\n")
    return folder


@pytest.fixture
def tiny_data_dir(tmp_path: Path) -> Path:
    """A synthetic dataset of 30 names per language."""
    return write_dataset(tmp_path / "names")


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real dataset (``NAMES_DATA_DIR``); tests needing it skip when it is absent, or fail under CI."""
    if not (REAL_DATA_DIR / "Russian.txt").is_file():
        if os.environ.get(REQUIRE_DATASET_ENV):
            pytest.fail(f"real dataset not found at {REAL_DATA_DIR}, and {REQUIRE_DATASET_ENV} is set")
        pytest.skip(f"real dataset not found at {REAL_DATA_DIR}")
    return REAL_DATA_DIR.resolve()  # absolute: tests run commands from other working directories


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend: an SQLite file, and a fresh PostgreSQL database when one is configured."""
    if request.param == "sqlite":
        yield sqlite_database(tmp_path)
    else:
        yield from postgres_database()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Train a small GRU once per run on the synthetic dataset: (data dir, checkpoint path)."""
    from core.cli import main

    root = tmp_path_factory.mktemp("cli")
    data_dir = write_dataset(root / "names")
    out = root / "models" / "gru.safetensors"
    status = main(["train", "--model", "gru", "--data-dir", str(data_dir), "--epochs", "12", "--out", str(out),
                   "--batch-size", "16", "--device", "cpu"])  # fmt: skip
    assert status == 0
    return data_dir, out


def must_not_run(*args: object, **kwargs: object) -> None:
    """Stands in for slow work (training, evaluation, download) that a command bound to fail must not start."""
    raise AssertionError("slow work started although the command was bound to fail")
