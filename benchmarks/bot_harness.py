"""What the bot benchmarks share: distinct names, ``nameorigin serve`` against the fake Bot API, latencies."""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import sys
from asyncio.subprocess import DEVNULL, Process
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fake server lives in tests/

from tests.fake_telegram import Call, FakeTelegram  # noqa: E402

STEMS = ["Nakamura", "Rossi", "Ivanov", "Schmidt", "Nguyen", "Papadopoulos", "Kowalski", "Dubois", "Garcia", "Murphy"]
BOLD = re.compile(r"<b>([^<]+)</b>")


def distinct_names(count: int, start: int = 0) -> list[str]:
    """``count`` different surname-like strings, so each reply can be matched to its update."""
    names = []
    for i in range(start, start + count):
        tag, n = "", i // len(STEMS)
        while n:  # a base-26 suffix: "", "b", "c", ..., "ba", ...
            tag, n = "abcdefghijklmnopqrstuvwxyz"[n % 26] + tag, n // 26
        names.append(STEMS[i % len(STEMS)] + tag)
    return names


async def start_bot(telegram: FakeTelegram, scratch: Path, **settings: str) -> Process:
    """``nameorigin serve`` in its own process, as deployed, pointed at the fake server; ``settings`` add env."""
    env = dict(
        os.environ,
        TELEGRAM_BOT_TOKEN=telegram.token,
        TELEGRAM_API_BASE_URL=telegram.base_url,
        DATABASE_URL=f"sqlite+aiosqlite:///{scratch / 'bot.db'}",
        MODEL_DIR=str(scratch / "models"),
        **settings,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "core.cli", "serve", env=env, cwd=scratch, stdout=DEVNULL, stderr=DEVNULL
    )
    try:
        await telegram.wait_for(lambda c: c.method == "setMyCommands", timeout=120)
    except BaseException:  # never ready (or interrupted): do not leave the bot running behind the benchmark
        process.kill()
        await process.wait()
        raise
    return process


def reply_latencies_ms(replies: Iterable[Call], injected: dict[str, float]) -> list[float]:
    """Milliseconds from injecting each name to the reply naming it; matched names are removed from ``injected``."""
    latencies = []
    for reply in replies:
        match = BOLD.search(str(reply.params.get("text", "")))
        if match and match[1] in injected:
            latencies.append((reply.at - injected.pop(match[1])) * 1000)
    return latencies


def percentile(values: list[float], q: int) -> float:
    """The ``q``-th percentile (inclusive method)."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]
