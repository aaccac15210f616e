"""Load test: many users sending /guess through the fake Bot API to the real bot Application.

Every update is injected into the fake server (long polling hands it to python-telegram-bot),
and latency is measured from injection to the bot's reply arriving at the server.

Run: python benchmarks/bot_load.py [--updates 500] [--users 100] [--rate 100]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fake server lives in tests/

from bot.service import Predictors  # noqa: E402
from core.predict import Predictor  # noqa: E402
from tests.bot.conftest import running_bot, settings_for  # noqa: E402
from tests.fake_telegram import FakeTelegram  # noqa: E402

STEMS = ["Nakamura", "Rossi", "Ivanov", "Schmidt", "Nguyen", "Papadopoulos", "Kowalski", "Dubois", "Garcia", "Murphy"]
BOLD = re.compile(r"<b>([^<]+)</b>")


def distinct_names(count: int) -> list[str]:
    """``count`` different surname-like strings, so each reply can be matched to its update."""
    suffixes = ["", "a", "o", "i", "e", "as", "ov", "ski", "son", "elli"]
    names = [f"{stem}{a}{b}" for a in suffixes for b in suffixes for stem in STEMS]
    return names[:count]


async def run(updates: int, users: int, rate: float) -> None:
    """Inject the updates at ``rate`` per second (0: all at once) and print the figures."""
    predictors = Predictors(gru=Predictor.shipped("gru"), rnn=Predictor.shipped("rnn"))
    telegram = FakeTelegram()
    await telegram.start()
    with tempfile.TemporaryDirectory() as scratch:
        settings = settings_for(telegram, Path(scratch), guesses_per_minute=max(20, updates // users + 1))
        async with running_bot(settings, predictors):
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
    await telegram.stop()
    latencies = []
    for reply in replies:
        match = BOLD.search(str(reply.params["text"]))
        if match and match[1] in injected:
            latencies.append((reply.at - injected.pop(match[1])) * 1000)
    lost = len(injected)
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    print(f"{updates} /guess updates from {users} users, injected at {rate or 'max'} per second")
    print(f"answered {len(latencies)}, lost {lost}, throughput {updates / (finished - started):.0f} updates/s")
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
    args = parser.parse_args()
    asyncio.run(run(args.updates, args.users, args.rate))


if __name__ == "__main__":
    main()
