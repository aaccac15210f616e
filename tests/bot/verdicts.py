"""Helpers that store users' verdicts directly, as the bot's buttons would, and read model versions back."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bot.config import FinetuneSettings, load_settings
from bot.db import repository, versions
from bot.db.engine import create_engine, session_factory
from bot.db.repository import NewGuess
from bot.db.versions import VersionRecord
from core.text import parse_query

# Portuguese surnames ending in -ão: the shipped GRU calls most of them Italian, Russian, Japanese...
PORTUGUESE_AO = (
    "Falcão Leitão Brandão Simão Galvão Assunção Conceição Damião Gusmão Sebastião Adão Aragão Cardão Frazão "
    "Girão Jordão Julião Lobão Mourão Negrão Pinhão Quintão Rolão Serrão Tristão Valadão Varão Pavão Pilão "
    "Estevão Gavião Leão Lourenção Mendão Monção Pimentão Sardão Seixão Torrão Ascensão"
).split()
# More of the same pattern that no one corrected: does the lesson generalize?
UNSEEN_AO = "Encarnação Anunciação Purificação Salvação Visitação Cristão Espadão Fradão Carvalhão Pegão".split()


def finetune_settings(tmp_path: Path, data_dir: Path, **overrides: Any) -> FinetuneSettings:
    """Fine-tune settings on an SQLite file and a model folder in ``tmp_path``."""
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        "model_dir": tmp_path / "models",
        "names_data_dir": data_dir,
        "bot_admin_ids": "1",
        **overrides,
    }
    return load_settings(FinetuneSettings, **values)


async def store_verdicts(database_url: str, verdicts: Iterable[tuple[str, int, str]]) -> None:
    """For each (raw name, user id, language): a guess by that user and their verdict on it."""
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        async with sessions.begin() as session:
            for raw, user_id, language in verdicts:
                surname = parse_query(raw).surname
                new = NewGuess(user_id, user_id, 1, raw, surname, ("Italian", "Spanish", "Russian"), 0.5, "test")
                [guess_id] = await repository.add_guesses(session=session, guesses=[new])
                guess = await repository.get_guess(session=session, guess_id=guess_id)
                assert guess is not None
                await repository.upsert_correction(session=session, guess=guess, user_id=user_id, language=language)
    finally:
        await engine.dispose()


def agreed(names: Iterable[str], language: str, first_user: int = 100) -> list[tuple[str, int, str]]:
    """Two distinct users choosing ``language`` for each name."""
    return [
        (name, user, language) for i, name in enumerate(names) for user in (first_user + 2 * i, first_user + 2 * i + 1)
    ]


async def read_versions(database_url: str) -> list[VersionRecord]:
    """Every model-versions row, newest first."""
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            return await versions.list_versions(session=session, limit=100)
    finally:
        await engine.dispose()


def version_rows(database_url: str) -> list[VersionRecord]:
    """``read_versions`` for synchronous tests."""
    return asyncio.run(read_versions(database_url))
