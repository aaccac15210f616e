"""Load test: many users sending /guess through the fake Bot API to the real bot Application.

The bot runs as ``nameorigin serve`` in its own process; every update is injected into the fake
server (long polling hands it to python-telegram-bot), and latency is measured from injection to
the bot's reply arriving at the server.

Run: python benchmarks/bot_load.py [--updates 500] [--users 100] [--rate 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from asyncio.subprocess import DEVNULL, Process
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fake server lives in tests/

from tests.fake_telegram import FakeTelegram  # noqa: E402

STEMS = ["Nakamura", "Rossi", "Ivanov", "Schmidt", "Nguyen", "Papadopoulos", "Kowalski", "Dubois", "Garcia", "Murphy"]
BOLD = re.compile(r"<b>([^<]+)</b>")


def distinct_names(count: int) -> list[str]:
    """``count`` different surname-like strings, so each reply can be matched to its update."""
    names = []
    for i in range(count):
        tag, n = "", i // len(STEMS)
        while n:  # a base-26 suffix: "", "b", "c", ..., "ba", ...
            tag, n = "abcdefghijklmnopqrstuvwxyz"[n % 26] + tag, n // 26
        names.append(STEMS[i % len(STEMS)] + tag)
    return names


async def start_bot(telegram: FakeTelegram, scratch: Path, per_user: int, outgoing_limit: float) -> Process:
    """``nameorigin serve`` in its own process, as deployed, pointed at the fake server."""
    env = dict(
        os.environ,
        TELEGRAM_BOT_TOKEN=telegram.token,
        TELEGRAM_API_BASE_URL=telegram.base_url,
        DATABASE_URL=f"sqlite+aiosqlite:///{scratch / 'bot.db'}",
        MODEL_DIR=str(scratch / "models"),
        GUESSES_PER_MINUTE=str(per_user),
        TELEGRAM_MESSAGES_PER_SECOND=str(outgoing_limit),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "core.cli", "serve", env=env, cwd=scratch, stdout=DEVNULL, stderr=DEVNULL
    )
    await telegram.wait_for(lambda c: c.method == "setMyCommands", timeout=120)
    return process


async def run(updates: int, users: int, rate: float, outgoing_limit: float) -> None:
    """Inject the updates at ``rate`` per second (0: all at once) and print the figures."""
    telegram = FakeTelegram()
    await telegram.start()
    with tempfile.TemporaryDirectory() as scratch:
        bot = await start_bot(telegram, Path(scratch), max(20, updates // users + 1), outgoing_limit)
        try:
            names = distinct_names(updates)
            injected: dict[str, float] = {}
            started = time.monotonic()
            for i, name in enumerate(names):
                if rate:
                    await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
                telegram.inject_message(1_000 + i % users, f"/guess {name}")
                injected[name] = time.monotonic()
            replies = await telegram.wait_for_count("sendMessage", updates, timeout=120)
            finished = max(r.at for r in replies)
        finally:
            bot.send_signal(signal.SIGINT)
            await bot.wait()
    await telegram.stop()
    latencies = []
    for reply in replies:
        match = BOLD.search(str(reply.params["text"]))
        if match and match[1] in injected:
            latencies.append((reply.at - injected.pop(match[1])) * 1000)
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    limit = f"{outgoing_limit:g}/s" if outgoing_limit else "off"
    print(f"{updates} /guess updates from {users} users, injected at {rate or 'max'}/s, outgoing limit {limit}")
    print(f"answered {len(latencies)}, lost {len(injected)}, throughput {updates / (finished - started):.0f} updates/s")
    print(
        f"latency injection → reply: p50 {quantiles[49]:.0f} ms, p95 {quantiles[94]:.0f} ms, "
        f"max {max(latencies):.0f} ms (target p95 <= 300 ms)"
    )


def main() -> None:
    """Parse arguments and run the load test."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0, help="updates per second; 0 sends all at once")
    parser.add_argument(
        "--outgoing-limit",
        type=float,
        default=0.0,
        help="the bot's TELEGRAM_MESSAGES_PER_SECOND: 0 (default) measures the bot alone; Telegram allows ~30",
    )
    args = parser.parse_args()
    asyncio.run(run(args.updates, args.users, args.rate, args.outgoing_limit))


if __name__ == "__main__":
    main()
