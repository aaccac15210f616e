"""A fine-tune run on the real dataset: what it learns, what it refuses to learn, what it records."""

from __future__ import annotations

import asyncio
import inspect
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from bot import finetune_job, model_store
from bot.config import FinetuneSettings
from bot.db import migrate, versions
from bot.db.engine import create_engine, session_factory
from bot.finetune_job import run_finetune
from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from core.data import LANGUAGES, DatasetError, Example, load_dataset
from core.finetune import split_feedback
from core.pipeline import evaluate_examples
from core.predict import Predictor, shipped_checkpoint_path
from core.split import split_dataset
from core.text import parse_query
from tests.bot.models import trained_copy
from tests.bot.verdicts import PORTUGUESE_AO, UNSEEN_AO, agreed, finetune_settings, store_verdicts, version_rows

SHIPPED_VERSION = load_checkpoint(shipped_checkpoint_path("gru")).metadata.version


def share_called(predictor: Predictor, names: list[str], language: str) -> float:
    """Share of ``names`` whose top guess is ``language``."""
    guesses = [predictor.predict(name) for name in names]
    return sum(guess.predictions[0].language == language for guess in guesses) / len(names)


def test_agreed_corrections_teach_a_pattern_without_hurting_the_test_split(tmp_path: Path, real_data_dir: Path) -> None:
    settings = finetune_settings(tmp_path, real_data_dir)
    migrate.upgrade(settings.database_url)
    asyncio.run(store_verdicts(settings.database_url, agreed(PORTUGUESE_AO, "Portuguese")))

    report = run_finetune(settings)

    assert report.status == "promoted", report.message
    assert report.live and report.candidate and report.version
    moved = abs(report.candidate["test_accuracy"] - report.live["test_accuracy"]) * 100
    assert moved <= 0.5, f"test accuracy moved {moved:.2f} points"
    assert report.feedback["trusted"] == len(PORTUGUESE_AO)
    shipped = Predictor.shipped("gru")
    promoted = Predictor.from_path(settings.model_dir / "versions" / f"{report.version}.safetensors")
    assert share_called(shipped, PORTUGUESE_AO, "Portuguese") < 0.3
    assert share_called(promoted, PORTUGUESE_AO, "Portuguese") >= 0.8
    # The lesson is the pattern, not a list: names no one corrected move too.
    assert share_called(promoted, UNSEEN_AO, "Portuguese") > share_called(shipped, UNSEEN_AO, "Portuguese") + 0.3
    rows = version_rows(settings.database_url)
    assert [(r.version, r.decision, r.active) for r in rows] == [
        (report.version, "promoted", True),
        (SHIPPED_VERSION, "initial", False),
    ]
    assert rows[0].parent_version == SHIPPED_VERSION and rows[0].started_at is not None

    # Nothing new since: a scheduled run waits for FINETUNE_MIN_NEW more verdicts.
    again = run_finetune(settings)
    assert again.status == "skipped" and "20 needed" in again.message


def test_poisoning_is_filtered_out_or_rejected_and_the_live_model_keeps_its_accuracy(
    tmp_path: Path, real_data_dir: Path
) -> None:
    settings = finetune_settings(tmp_path, real_data_dir)
    migrate.upgrade(settings.database_url)
    split = split_dataset(load_dataset(real_data_dir))
    russian = [ex.name for ex in split.train if ex.languages == {"Russian"} and ex.name.endswith("ov")]

    # One user presses "Japanese" under 500 Russian names: the daily cap and the agreement rule drop all of it.
    asyncio.run(store_verdicts(settings.database_url, [(name, 66, "Japanese") for name in russian[:500]]))
    flood = run_finetune(settings, force=True)
    assert flood.status == "skipped" and flood.message == "no trusted feedback yet"
    assert flood.feedback["trusted"] == 0 and flood.feedback["over_daily_cap"] >= 400

    # Two users agree on the same wrong language for 5 names, and the run is set up to overfit them.
    asyncio.run(store_verdicts(settings.database_url, agreed(russian[500:505], "Japanese", first_user=70)))
    overfitting = finetune_settings(tmp_path, real_data_dir, finetune_feedback_weight=300, finetune_learning_rate=0.01)
    poisoned = run_finetune(overfitting, force=True)

    assert poisoned.feedback["trusted"] == 5
    assert poisoned.status == "rejected" and "test accuracy would drop" in poisoned.message
    assert poisoned.live and poisoned.candidate
    assert poisoned.candidate["test_accuracy"] < poisoned.live["test_accuracy"] - 0.005
    rows = version_rows(settings.database_url)
    assert [(r.decision, r.active, r.checkpoint_path) for r in rows] == [
        ("rejected", False, None),
        ("initial", True, "shipped:gru"),
    ]
    assert rows[0].reason == poisoned.message and rows[0].metrics["candidate"] == poisoned.candidate
    assert not list((settings.model_dir / "versions").glob("*.safetensors"))
    live = load_checkpoint(shipped_checkpoint_path("gru"))
    test_accuracy = evaluate_examples(live, split.test, torch.device("cpu")).accuracy
    assert round(test_accuracy, 4) == poisoned.live["test_accuracy"] == live.metadata.metrics["test"]["accuracy"]


def test_a_different_dataset_is_refused_because_its_test_split_would_differ(
    tmp_path: Path, real_data_dir: Path
) -> None:
    changed = tmp_path / "names"
    shutil.copytree(real_data_dir, changed)
    with open(changed / "Greek.txt", "a", encoding="utf-8") as handle:
        handle.write("Newname\n")
    settings = finetune_settings(tmp_path, changed)
    migrate.upgrade(settings.database_url)
    asyncio.run(store_verdicts(settings.database_url, agreed(PORTUGUESE_AO, "Portuguese")))
    with pytest.raises(DatasetError, match="not the one the live model was trained on"):
        run_finetune(settings, force=True)
    assert [r.decision for r in version_rows(settings.database_url)] == ["initial"]


def test_the_gate_judges_under_the_prior_the_bot_answers_with(tmp_path: Path, real_data_dir: Path) -> None:
    settings = finetune_settings(tmp_path, real_data_dir, prediction_prior="uniform")
    migrate.upgrade(settings.database_url)
    asyncio.run(store_verdicts(settings.database_url, agreed(PORTUGUESE_AO, "Portuguese")))
    test = split_dataset(load_dataset(real_data_dir)).test
    shipped = load_checkpoint(shipped_checkpoint_path("gru"))
    cpu = torch.device("cpu")
    uniform = evaluate_examples(shipped, test, cpu, prior="uniform").accuracy
    dataset = evaluate_examples(shipped, test, cpu).accuracy
    assert abs(uniform - dataset) > 0.05  # the two priors give clearly different figures on the test split

    report = run_finetune(settings)

    assert report.live and report.candidate and report.version
    assert report.live["prior"] == report.candidate["prior"] == "uniform"
    assert report.live["test_accuracy"] == round(uniform, 4)
    # The saved checkpoint keeps its own figures under the dataset prior, as `train` records them.
    promoted = load_checkpoint(settings.model_dir / "versions" / f"{report.version}.safetensors")
    assert promoted.metadata.metrics["test"] == evaluate_examples(promoted, test, cpu).headline()


def test_test_split_names_are_not_learned_and_a_live_model_changed_meanwhile_wins(
    tmp_path: Path, real_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = finetune_settings(tmp_path, real_data_dir)
    migrate.upgrade(settings.database_url)
    test_names = [ex.name for ex in split_dataset(load_dataset(real_data_dir)).test[:5]]
    verdicts = agreed(PORTUGUESE_AO, "Portuguese") + agreed(test_names, "Japanese", first_user=500)
    asyncio.run(store_verdicts(settings.database_url, verdicts))
    learned: list[str] = []
    fine_tune = finetune_job.fine_tune

    def fine_tune_while_another_replica_rolls_forward(live: Any, split: Any, feedback: Any, *args: Any) -> Any:
        learned.extend(example.name for example in feedback)
        candidate = fine_tune(live, split, feedback, *args)
        with sqlite3.connect(settings.database_url.split("///", 1)[1]) as connection:  # another process's switch
            connection.execute("UPDATE model_versions SET active = 0")
            connection.execute(
                "INSERT INTO model_versions (version, kind, checkpoint_path, metrics, active, created_at) "
                "VALUES ('gru-elsewhere', 'gru', 'shipped:gru', '{}', 1, CURRENT_TIMESTAMP)"
            )
        return candidate

    monkeypatch.setattr(finetune_job, "fine_tune", fine_tune_while_another_replica_rolls_forward)
    report = run_finetune(settings)

    assert report.feedback["in_test_split"] == len(test_names)  # the judge's names are never trained on
    assert learned and not set(learned) & set(test_names)
    assert report.status == "rejected" and report.message == "the live model changed during the run"
    assert not list((settings.model_dir / "versions").glob("*.safetensors"))  # no file without a live row
    rows = version_rows(settings.database_url)
    assert [(r.version, r.active) for r in rows if r.active] == [("gru-elsewhere", True)]


async def promote_by_hand(settings: FinetuneSettings, version: str) -> None:
    """Record ``version`` as a fine-tune promoted from the shipped GRU, and make it live."""
    engine = create_engine(settings.database_url)
    try:
        sessions = session_factory(engine)
        await model_store.live_record(sessions, settings.model_dir)  # the shipped GRU, the initial version
        async with sessions.begin() as session:
            await versions.release_live(session=session, expected=SHIPPED_VERSION)
            await versions.add_version(
                session=session, version=version, kind="gru", checkpoint_path=f"versions/{version}.safetensors",
                parent_version=SHIPPED_VERSION, metrics={}, decision=versions.PROMOTED, active=True,
            )  # fmt: skip
    finally:
        await engine.dispose()


def test_runs_that_each_lose_a_little_cannot_add_up_past_the_limit(tmp_path: Path, real_data_dir: Path) -> None:
    settings = finetune_settings(tmp_path, real_data_dir, finetune_max_drop=1.0)
    migrate.upgrade(settings.database_url)
    asyncio.run(store_verdicts(settings.database_url, agreed(PORTUGUESE_AO, "Portuguese")))
    # Earlier runs, each within the limit, left the live model 1.38 points below the shipped GRU.
    drifted = load_checkpoint(shipped_checkpoint_path("gru"))
    drifted.model.head.bias.data[drifted.metadata.labels.index("English")] += 2.0
    metadata = replace(drifted.metadata, version="gru-drifted", parent_version=SHIPPED_VERSION)
    save_checkpoint(settings.model_dir / "versions" / "gru-drifted.safetensors", drifted.model, metadata)
    asyncio.run(promote_by_hand(settings, "gru-drifted"))

    report = run_finetune(settings, force=True)

    assert report.live and report.candidate
    step = (report.live["test_accuracy"] - report.candidate["test_accuracy"]) * 100
    assert step <= settings.finetune_max_drop  # compared with the live model alone, this run would pass
    assert report.status == "rejected"
    assert "below the model fine-tuning started from (limit 1.00, however many runs)" in report.message
    rows = version_rows(settings.database_url)
    assert (rows[0].decision, rows[0].metrics["origin"]["version"]) == ("rejected", SHIPPED_VERSION)
    assert rows[0].metrics["origin"]["test_accuracy"] - report.candidate["test_accuracy"] > 0.01
    assert [r.version for r in rows if r.active] == ["gru-drifted"]


class TrainingStarted(Exception):
    """Raised in place of training: the run got as far as fine-tuning."""


def stop_at_fine_tune(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Make the run stop where it would train; the returned dict then holds fine_tune's arguments by name."""
    arguments: dict[str, Any] = {}
    signature = inspect.signature(finetune_job.fine_tune)

    def record_and_stop(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments.update(bound.arguments)
        raise TrainingStarted

    monkeypatch.setattr(finetune_job, "fine_tune", record_and_stop)
    return arguments


def test_exactly_finetune_min_new_verdicts_start_a_run(
    tmp_path: Path, real_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = finetune_settings(tmp_path, real_data_dir)
    migrate.upgrade(settings.database_url)
    names = PORTUGUESE_AO[: settings.finetune_min_new // 2]
    asyncio.run(store_verdicts(settings.database_url, agreed(names, "Portuguese")))  # two users a name
    assert 2 * len(names) == settings.finetune_min_new
    arguments = stop_at_fine_tune(monkeypatch)
    with pytest.raises(TrainingStarted):
        run_finetune(settings)
    assert arguments["feedback"]


def test_held_out_feedback_is_kept_out_of_the_replay(
    tmp_path: Path, real_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = finetune_settings(tmp_path, real_data_dir)
    migrate.upgrade(settings.database_url)
    names = PORTUGUESE_AO[:10]
    asyncio.run(store_verdicts(settings.database_url, agreed(names, "Portuguese")))
    holdout = split_feedback([Example(parse_query(name).surname, frozenset({"Portuguese"})) for name in names]).holdout
    assert holdout  # some of these names only judge the candidate
    arguments = stop_at_fine_tune(monkeypatch)
    with pytest.raises(TrainingStarted):
        run_finetune(settings, force=True)
    held_out = {example.key for example in holdout}
    assert set(arguments["exclude"]) == held_out
    assert not held_out & {example.key for example in arguments["feedback"]}


def test_a_live_model_in_other_languages_is_refused_in_one_line(tmp_path: Path, real_data_dir: Path) -> None:
    # Made live by a release that did not check labels: encoding the split for it raised a KeyError.
    settings = finetune_settings(tmp_path, real_data_dir)
    migrate.upgrade(settings.database_url)
    stored = "versions/gru-klingon.safetensors"
    trained_copy(settings.model_dir / stored, "gru-klingon", labels=(*LANGUAGES[:-1], "Klingon"))

    async def make_it_live() -> None:
        engine = create_engine(settings.database_url)
        async with session_factory(engine).begin() as session:
            await versions.add_version(
                session=session, version="gru-klingon", kind="gru", checkpoint_path=stored, parent_version=None,
                metrics={}, decision=versions.INITIAL, reason="old release", active=True,
            )  # fmt: skip
        await engine.dispose()

    asyncio.run(make_it_live())
    asyncio.run(store_verdicts(settings.database_url, agreed(PORTUGUESE_AO, "Portuguese")))
    with pytest.raises(CheckpointError, match="differing: Klingon, Vietnamese"):
        run_finetune(settings, force=True)
