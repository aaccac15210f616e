"""Where GRU checkpoints live under ``MODEL_DIR``, and which one is live according to the database.

The model-versions table is the source of truth (several bot processes may share it); paths in it
are relative to ``MODEL_DIR`` so the folder can move, or ``shipped:gru`` for the packaged model.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import stat
import tempfile
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db import versions
from bot.db.versions import VersionRecord
from bot.model_comparison import adoption_refusal
from core.calibration import Prior
from core.checkpoint import CheckpointError, CheckpointMetadata, load_checkpoint, read_metadata
from core.data import LANGUAGES
from core.predict import shipped_checkpoint_path

logger = logging.getLogger(__name__)

SHIPPED_PREFIX = "shipped:"
SHIPPED_GRU = f"{SHIPPED_PREFIX}gru"  # the stored path of the GRU inside the package
TRAINED_GRU = "gru.safetensors"  # a model trained with `nameorigin train --out MODEL_DIR/gru.safetensors`


def resolve(model_dir: Path, stored: str) -> Path:
    """The file a stored checkpoint path points at; ``CheckpointError`` if it would lie outside ``model_dir``."""
    if stored.startswith(SHIPPED_PREFIX):
        try:
            return shipped_checkpoint_path(stored.removeprefix(SHIPPED_PREFIX))
        except ValueError as exc:  # "shipped:../x": refused like any other bad row, not raised past every caller
            raise CheckpointError(f"stored checkpoint path {stored!r} names no shipped model") from exc
    relative = Path(stored)
    # Rows are written by this code, but the database is shared: a row must not open files elsewhere.
    if relative.is_absolute() or ".." in relative.parts:
        raise CheckpointError(f"stored checkpoint path {stored!r} does not lie inside MODEL_DIR")
    return model_dir / relative


def unservable(metadata: CheckpointMetadata, path: Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be the bot's model, or None when it can: a GRU over the 18 languages."""
    if metadata.kind != "gru":
        return (
            f"{path} holds a {metadata.kind} model ({metadata.version}), but the bot answers and fine-tunes with a GRU"
        )
    # The buttons offer the dataset's languages and fine-tuning trains on them: with any other labels every
    # answer's keyboard, and every fine-tune, would fail.
    if set(metadata.labels) != set(LANGUAGES):
        others = ", ".join(sorted(set(metadata.labels) ^ set(LANGUAGES)))
        return (
            f"{path} ({metadata.version}) answers in other languages than the bot's 18 (differing: {others}), "
            "so its buttons and fine-tuning could not work"
        )
    return None


def initial_checkpoint(model_dir: Path) -> str:
    """The stored path of the GRU to start from when no version is live yet: a trained one, else the shipped one.

    Anything at ``MODEL_DIR/gru.safetensors`` counts as a trained one, so that a folder or a dangling link
    there (Docker creates a folder when it mounts a file that does not exist) is refused, not passed over.
    """
    return TRAINED_GRU if os.path.lexists(model_dir / TRAINED_GRU) else SHIPPED_GRU


def candidate_checkpoint(version: str) -> str:
    """The stored path a version's own copy is written to."""
    return f"versions/{version}.safetensors"


def _copy_and_place(source: Path, model_dir: Path, prior: Prior) -> tuple[Path, CheckpointMetadata]:
    """Copy ``source`` to ``versions/<its version>.safetensors``, atomically; returns the path and metadata.

    The copy is loaded in full first, weights included, and must be a GRU that can answer under
    ``prior``; otherwise ``CheckpointError`` and nothing is placed, as no replica could serve it.
    The metadata is read from the copy, not the source: a model retrained over the source meanwhile
    cannot leave a file named after one version that holds another.
    """
    folder = model_dir / "versions"
    folder.mkdir(parents=True, exist_ok=True)
    # A temporary name of its own: two bot processes adopting the same model must not write into one file.
    handle, name = tempfile.mkstemp(dir=folder, prefix=f".{source.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(handle, "wb") as copy, source.open("rb") as original:
            shutil.copyfileobj(original, copy)
            copy.flush()
            os.fsync(copy.fileno())  # on disk before the rename makes it visible
        metadata = load_checkpoint(temporary).metadata
        problem = unservable(metadata, source)
        if problem is not None:
            raise CheckpointError(problem)
        metadata.logit_shift(prior)  # raises when the model cannot answer under the bot's prior
        os.chmod(temporary, 0o644)  # mkstemp makes it owner-only; save_checkpoint's files are readable by all
        target = model_dir / candidate_checkpoint(metadata.version)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target, metadata


async def _register(
    sessions: async_sessionmaker[AsyncSession], metadata: CheckpointMetadata, stored: str, reason: str
) -> None:
    """Insert ``metadata``'s version as live (releasing whatever was live); a no-op if another process won."""
    try:
        async with sessions.begin() as session:
            current = await versions.active_version(session=session)
            if current is not None:
                await versions.release_live(session=session, expected=current.version)
            await versions.add_version(
                session=session,
                version=metadata.version,
                kind=metadata.kind,
                checkpoint_path=stored,
                parent_version=current.version if current else metadata.parent_version,
                metrics=metadata.metrics,
                decision=versions.IMPORTED if current else versions.INITIAL,
                reason=reason,
                active=True,
            )
    except IntegrityError:  # another process registered this version, or made another one live, first
        logger.info("version %s was registered by another process", metadata.version)


def _warn_once(warned: set[str] | None, key: str, message: str) -> None:
    """Warn ``message`` unless ``key`` is in ``warned``, the set a caller that asks at every refresh keeps."""
    if warned is None or key not in warned:
        logger.warning("%s", message)
    if warned is not None:
        warned.add(key)


async def _too_far_below_live(
    sessions: async_sessionmaker[AsyncSession], model_dir: Path, trained: CheckpointMetadata, max_drop: float
) -> str | None:
    """``adoption_refusal`` against the live version (the shipped model while none is live yet)."""
    if max_drop >= 100:
        return None
    async with sessions() as session:
        live = await versions.active_version(session=session)
    stored = SHIPPED_GRU if live is None else live.checkpoint_path
    if stored is None:
        return None
    try:
        live_metadata = await asyncio.to_thread(read_metadata, resolve(model_dir, stored))
    except CheckpointError:  # nothing to beat: a live model that cannot be read is reported where it is loaded
        return None
    return adoption_refusal(trained, live_metadata, max_drop)


async def _adopt_new_model(
    sessions: async_sessionmaker[AsyncSession],
    model_dir: Path,
    prior: Prior,
    warned: set[str] | None,
    adopt: bool,
    max_drop: float,
) -> None:
    """Make the model in place live if its version is new: ``MODEL_DIR/gru.safetensors``, else the shipped GRU.

    Only with ``adopt`` (the bot starting), so it goes live when the bot is (re)started, not when a
    training run happens to write there; otherwise a new one is only reported. Its test accuracy, as
    ``train`` recorded it, may fall at most ``max_drop`` points below the live model's: a one-epoch
    trial run saved there by mistake must not go live for every user at the next restart. A file that
    cannot serve (half copied, corrupt, not a GRU, no use under ``prior``) is not adopted,
    and the live model stays. (``serve`` loads the file before this runs and refuses to start with such
    a file; this guards against one replaced in between.) It is copied, so a later overwrite changes nothing.

    Without a trained file, the shipped GRU is considered only if the database registered it (at the first
    start, see ``live_record``) as another version: an upgrade replaced it since. A bot started from its
    own model never registered it, and keeps its model when the file is removed. The live model is often
    the registered one, whose file the upgrade replaced: the new GRU answers already, and takes its place.
    """
    source = model_dir / TRAINED_GRU
    try:
        state = source.stat()
    except OSError:
        source = shipped_checkpoint_path("gru")
        if not await _shipped_model_replaced(sessions, source):  # also False when the file cannot be read
            return
        state = source.stat()
    if not stat.S_ISREG(state.st_mode):
        return
    try:
        metadata = await asyncio.to_thread(read_metadata, source)
    except CheckpointError as exc:  # e.g. still being copied in; its size and time change until it is whole
        _warn_once(warned, f"{state.st_size}:{state.st_mtime_ns}", f"not adopting {source} (yet): {exc}")
        return
    if warned is not None and metadata.version in warned:
        return  # refused before, and said why; a new training run writes a new version
    problem = unservable(metadata, source)
    if problem is not None:  # `serve` refuses to start with it; a running bot keeps its model and says why
        _warn_once(warned, metadata.version, f"not adopting it: {problem}")
        return
    if await _known(sessions, metadata.version):
        return  # already known (it may have been rolled back on purpose)
    if not adopt and warned is not None and f"waiting:{metadata.version}" in warned:
        return  # said already; the comparison need not run at every refresh
    refusal = await _too_far_below_live(sessions, model_dir, metadata, max_drop)
    if not adopt:
        if refusal is None:
            message = f"{source} holds {metadata.version}, which is not live: restart the bot to start with it"
        else:
            message = f"{source} holds {metadata.version}, which the next start will not adopt: {refusal}"
        _warn_once(warned, f"waiting:{metadata.version}", message)  # said once; a start decides
        return
    if refusal is not None:
        _warn_once(warned, metadata.version, f"not adopting {source}: {refusal}")
        return
    try:
        _, copied = await asyncio.to_thread(_copy_and_place, source, model_dir, prior)
    except CheckpointError as exc:
        _warn_once(warned, metadata.version, f"not adopting {source}: {exc}")
        return
    except OSError as exc:  # a full disk, versions/ unwritable: the live model answers on; the next start tries again
        reason = f"cannot copy it into {model_dir / 'versions'}: {exc.strerror or exc}"
        _warn_once(warned, metadata.version, f"not adopting {source}: {reason}")
        return
    if copied.version != metadata.version and await _known(sessions, copied.version):
        return  # retrained meanwhile, into a version already known
    await _register(sessions, copied, candidate_checkpoint(copied.version), f"new model found at {source}")


async def _shipped_model_replaced(sessions: async_sessionmaker[AsyncSession], shipped: Path) -> bool:
    """Whether the database registered the shipped GRU as another version than ``shipped`` holds now."""
    try:
        version = (await asyncio.to_thread(read_metadata, shipped)).version
    except CheckpointError:  # a damaged installation: `serve` and the load at start say so
        return False
    async with sessions() as session:
        stored = SHIPPED_GRU
        return await versions.another_version_at(session=session, checkpoint_path=stored, version=version)


async def _known(sessions: async_sessionmaker[AsyncSession], version: str) -> bool:
    async with sessions() as session:
        return await versions.get_version(session=session, version=version) is not None


def _warn_of_models_from_another_database(model_dir: Path, warned: set[str] | None) -> None:
    """Say so when a database with no model yet meets a MODEL_DIR that versions were saved to: a new
    ``DATABASE_URL`` (SQLite to PostgreSQL, a mistyped path) starts over from the shipped model, without the
    verdicts and versions the old database holds, and nothing else would tell."""
    try:
        found = sorted(path.name for path in (model_dir / "versions").glob("*.safetensors"))
    except OSError:
        return
    if found:
        _warn_once(
            warned,
            "models-without-database",
            f"the database holds no model versions, but {model_dir / 'versions'} holds {len(found)} (e.g. "
            f"{found[-1]}): is DATABASE_URL a new database? It starts from the shipped model, without the old "
            "one's verdicts and versions; to keep them, stop the bot and copy the old database over first",
        )


async def live_record(
    sessions: async_sessionmaker[AsyncSession],
    model_dir: Path,
    *,
    prior: Prior = "dataset",
    warned: set[str] | None = None,
    adopt_trained: bool = False,
    adopt_max_drop: float = math.inf,
) -> VersionRecord:
    """The live version; with ``adopt_trained``, after adopting a new ``MODEL_DIR/gru.safetensors`` that can serve.

    ``adopt_trained`` is for the bot's start; ``adopt_max_drop`` limits how much worse on the test split,
    in points, the trained model may be than the live one. With neither a live version nor a trained
    model, the shipped GRU is registered as the live one. A caller that asks again and again passes the
    same ``warned`` set each time, so a trained file it cannot or may not adopt is warned about once.
    """
    await _adopt_new_model(sessions, model_dir, prior, warned, adopt_trained, adopt_max_drop)
    async with sessions() as session:
        active = await versions.active_version(session=session)
    if active is None:
        _warn_of_models_from_another_database(model_dir, warned)
        stored = SHIPPED_GRU
        metadata = await asyncio.to_thread(read_metadata, resolve(model_dir, stored))
        await _register(sessions, metadata, stored, "the model the package ships with")
        async with sessions() as session:
            active = await versions.active_version(session=session)
    if active is None:
        raise CheckpointError("no model version is live and none could be registered")
    return active
