"""One fine-tune run, start to finish: select trusted feedback, train, gate, save, record.

It runs in its own process (``nameorigin finetune``, started by the bot or by cron), so a crash or
an out-of-memory kill cannot take the bot down. The checkpoint is written atomically before its
row is committed, and the row is written in one transaction: a run killed at any point leaves the
database as it was and, at worst, an unreferenced file.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import model_store
from bot.config import FinetuneSettings
from bot.db import repository, versions
from bot.db.engine import create_engine, session_factory
from bot.db.models import utcnow
from bot.db.versions import VersionRecord
from bot.feedback import FeedbackPolicy, select_trusted
from bot.model_pruning import prune_checkpoints
from bot.run_report import RunReport, Status
from core.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from core.data import DatasetError, Example, load_dataset
from core.finetune import FinetuneConfig, fine_tune, split_feedback
from core.gate import GateDecision, decide, score
from core.pipeline import evaluate_examples
from core.split import Split, SplitConfig, split_dataset

logger = logging.getLogger(__name__)

LOCK_FILE = ".finetune.lock"


def policy_from(settings: FinetuneSettings) -> FeedbackPolicy:
    """The feedback policy the settings describe."""
    return FeedbackPolicy(
        min_agreement=settings.feedback_min_agreement,
        user_daily_cap=settings.feedback_user_daily_cap,
        admin_ids=settings.bot_admin_ids,
    )


def config_from(settings: FinetuneSettings) -> FinetuneConfig:
    """The training recipe the settings describe."""
    return FinetuneConfig(
        epochs=settings.finetune_epochs,
        learning_rate=settings.finetune_learning_rate,
        replay_size=settings.finetune_replay,
        feedback_weight=settings.finetune_feedback_weight,
    )


@contextmanager
def exclusive_lock(path: Path) -> Iterator[bool]:
    """Hold an advisory lock on ``path`` if no other process does; yields whether it was acquired.

    The kernel drops the lock when its holder dies, so a killed run never blocks the next one. The
    holder writes its pid into the file while it runs, so an operator can see which process it is.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Never through a link: whoever may drop files into MODEL_DIR could otherwise make every run empty (truncate)
    # any file the bot may write, its database included.
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    state = os.fstat(descriptor)
    if not stat.S_ISREG(state.st_mode) or state.st_nlink != 1:
        os.close(descriptor)
        raise OSError(errno.EPERM, "the lock file is not a regular file of its own (a link?): remove it", str(path))
    with os.fdopen(descriptor, "r+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield True
        finally:
            handle.truncate(0)  # an empty file: nobody is running
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_finetune(settings: FinetuneSettings, *, force: bool = False) -> RunReport:
    """Run once if no other run holds the lock. ``force`` (admin /retrain) ignores ``FINETUNE_MIN_NEW``."""
    with exclusive_lock(settings.model_dir / LOCK_FILE) as acquired:
        if not acquired:
            return RunReport(status="busy", message="another fine-tune is already running")
        return asyncio.run(_run(settings, force=force))


@dataclass(frozen=True)
class _Inputs:
    """Everything a run decides from, gathered before any training."""

    live_version: str
    live: Checkpoint
    split: Split
    train: tuple[Example, ...]
    holdout: tuple[Example, ...]
    counts: dict[str, int]
    origin: tuple[str, Checkpoint] | None  # the model the live one was fine-tuned from, if it is a fine-tune


def _load_fixed_split(settings: FinetuneSettings, live: Checkpoint) -> Split:
    dataset = load_dataset(settings.names_data_dir)
    if dataset.sha256 != live.metadata.dataset_sha256:
        # Another dataset gives another "fixed" test split: the gate would judge on names it may have trained on.
        raise DatasetError(
            f"the dataset in {settings.names_data_dir} (sha256 {dataset.sha256[:12]}…) is not the one the live "
            f"model was trained on ({live.metadata.dataset_sha256[:12]}…)"
        )
    return split_dataset(dataset, SplitConfig(seed=live.metadata.split_seed))


async def _gather(settings: FinetuneSettings, sessions: async_sessionmaker[AsyncSession]) -> tuple[_Inputs, int]:
    """The live model, the fixed split and the trusted feedback; also how many verdicts are new."""
    live_row = await model_store.live_record(sessions, settings.model_dir, prior=settings.prediction_prior)
    async with sessions() as session:
        votes = await repository.fetch_votes(session=session)
        since = await versions.last_run_started(session=session)
        origin_row = await versions.fine_tuning_origin(session=session, version=live_row.version)
    assert live_row.checkpoint_path is not None  # a live version always has a checkpoint
    live_path = model_store.resolve(settings.model_dir, live_row.checkpoint_path)
    live = load_checkpoint(live_path)
    problem = model_store.unservable(live.metadata, live_path)  # else encoding the split fails with a KeyError
    if problem is not None:
        raise CheckpointError(problem)
    split = _load_fixed_split(settings, live)
    selection = select_trusted(votes, policy_from(settings), frozenset(ex.key for ex in split.test))
    known = [label for label in selection.trusted if label.language in live.metadata.labels]
    examples = [Example(label.surname, frozenset({label.language})) for label in known]
    parts = split_feedback(examples)
    # Too little feedback to hold any out: learn from all of it and let the test split judge alone.
    train, holdout = (parts.train, parts.holdout) if parts.train else (tuple(examples), ())
    new_votes = selection.new_votes_since(since)
    counts = {
        "trusted": len(examples),
        "new_votes": new_votes,
        "train": len(train),
        "holdout": len(holdout),
        "over_daily_cap": selection.over_daily_cap,
        "without_agreement": selection.without_agreement,
        "tied": selection.tied,
        "in_test_split": selection.in_test_split,
        "unknown_language": len(selection.trusted) - len(known),
    }
    origin = _fine_tuning_origin(settings, live_row.version, origin_row)
    return _Inputs(live_row.version, live, split, train, holdout, counts, origin), new_votes


def _fine_tuning_origin(
    settings: FinetuneSettings, live_version: str, origin: VersionRecord | None
) -> tuple[str, Checkpoint] | None:
    """The version and checkpoint of ``origin`` when the live model is a fine-tune of it; else None."""
    if origin is None:
        logger.warning("no origin found for %s: the gate compares with the live model alone", live_version)
        return None
    if origin.version == live_version or origin.checkpoint_path is None:
        return None
    try:
        return origin.version, load_checkpoint(model_store.resolve(settings.model_dir, origin.checkpoint_path))
    except CheckpointError as exc:
        logger.warning("cannot load %s, where fine-tuning started (%s): the gate compares with the live model alone",
                       origin.version, exc)  # fmt: skip
        return None


async def _record(
    sessions: async_sessionmaker[AsyncSession],
    inputs: _Inputs,
    candidate: Checkpoint,
    decision: GateDecision,
    metrics: dict[str, Any],
    started: datetime,
) -> tuple[bool, str]:
    """Write the run's row (and make the candidate live if promoted) in one transaction; returns the outcome."""
    promoted, reason = decision.promoted, decision.reason
    async with sessions.begin() as session:
        if promoted and not await versions.release_live(session=session, expected=inputs.live_version):
            # Someone rolled back or promoted meanwhile: this candidate grew from a model no longer live.
            promoted, reason = False, "the live model changed during the run"
        await versions.add_version(
            session=session,
            version=candidate.metadata.version,
            kind=candidate.metadata.kind,
            checkpoint_path=model_store.candidate_checkpoint(candidate.metadata.version) if promoted else None,
            parent_version=inputs.live_version,
            metrics=metrics,
            decision=versions.PROMOTED if promoted else versions.REJECTED,
            reason=reason,
            started_at=started,
            active=promoted,
        )
    return promoted, reason


async def _discard_unless_recorded(sessions: async_sessionmaker[AsyncSession], path: Path, version: str) -> None:
    """Remove the candidate's file after its row failed to commit, unless a row points at it after all.

    A failed COMMIT is not always one that did not happen (a connection lost as PostgreSQL committed):
    when the database cannot say, the file stays, unreferenced at worst.
    """
    try:
        async with sessions() as session:
            recorded = await versions.get_version(session=session, version=version)
    except Exception:
        logger.warning("kept %s: cannot tell whether its row was committed", path)
        return
    if recorded is None or recorded.checkpoint_path is None:
        path.unlink(missing_ok=True)


async def _run(settings: FinetuneSettings, *, force: bool) -> RunReport:
    started, clock = utcnow(), time.perf_counter()
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        inputs, new_votes = await _gather(settings, sessions)
        if not inputs.train:
            return RunReport("skipped", "no trusted feedback yet", inputs.live_version, feedback=inputs.counts)
        if not force and new_votes < settings.finetune_min_new:
            verdicts = "verdict" if new_votes == 1 else "verdicts"
            message = f"{new_votes} new usable {verdicts} since the last run; {settings.finetune_min_new} needed"
            return RunReport("skipped", message, inputs.live_version, feedback=inputs.counts)

        device = torch.device("cpu")
        held_out = {example.key for example in inputs.holdout}  # judged on, so never replayed either
        candidate = fine_tune(inputs.live, inputs.split, inputs.train, config_from(settings), device, held_out)
        prior = settings.prediction_prior
        live_scores = score(inputs.live, inputs.split.test, inputs.holdout, device, prior)
        candidate_scores = score(candidate, inputs.split.test, inputs.holdout, device, prior)
        origin_scores = score(inputs.origin[1], inputs.split.test, (), device, prior) if inputs.origin else None
        decision = decide(live_scores, candidate_scores, settings.finetune_max_drop, origin_scores)
        path = model_store.resolve(settings.model_dir, model_store.candidate_checkpoint(candidate.metadata.version))
        if decision.promoted:  # written before its row is committed: a row never points at a missing file
            # The checkpoint's own figures are under the dataset prior, as `train` records them, whatever the gate's.
            test_figures = evaluate_examples(candidate, inputs.split.test, device).headline()
            save_checkpoint(path, candidate.model, replace(candidate.metadata, metrics={"test": test_figures}))
        seconds = round(time.perf_counter() - clock, 2)
        metrics: dict[str, Any] = {
            "live": live_scores.as_dict(),
            "candidate": candidate_scores.as_dict(),
            "feedback": inputs.counts,
            "seconds": seconds,
        }
        if inputs.origin is not None and origin_scores is not None:
            metrics["origin"] = {"version": inputs.origin[0], **origin_scores.as_dict()}
        # The file goes when its row did not commit, but not on Ctrl-C (a cancellation) or SystemExit: those may
        # land just after COMMIT, the row pointing at it. A stopped run leaves at worst an unreferenced file.
        try:
            promoted, reason = await _record(sessions, inputs, candidate, decision, metrics, started)
        except Exception:
            await _discard_unless_recorded(sessions, path, candidate.metadata.version)
            raise
        if decision.promoted and not promoted:
            path.unlink(missing_ok=True)
        if promoted:
            await prune_checkpoints(sessions, settings.model_dir, settings.model_keep_versions)
        status: Status = "promoted" if promoted else "rejected"
        logger.info("fine-tune %s: %s (%s)", candidate.metadata.version, status, reason)
        return RunReport(
            status,
            reason,
            inputs.live_version,
            candidate.metadata.version,
            live_scores.as_dict(),
            candidate_scores.as_dict(),
            inputs.counts,
            seconds,
        )
    finally:
        await engine.dispose()


def limit_resources(threads: int, niceness: int) -> None:
    """Keep a fine-tune from starving the bot: few threads, lower CPU priority."""
    torch.set_num_threads(threads)
    # Torch takes this once per process, before any inter-op work: a second run in one process keeps the first's.
    if torch.get_num_interop_threads() != threads:
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError as exc:
            logger.info("inter-op threads stay at %d: %s", torch.get_num_interop_threads(), exc)
    if niceness:
        os.nice(niceness)
