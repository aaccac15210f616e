"""Load test: many users sending /guess through the fake Bot API to the real bot Application.

The bot runs as ``nameorigin serve`` in its own process; every update is injected into the fake
server (long polling hands it to python-telegram-bot), and latency is measured from injection to
the bot's reply arriving at the server.

Run: python benchmarks/bot_load.py [--updates 500] [--users 100] [--rate 100]
(--rate 0 injects everything at once and prints the bot's capacity; a paced run prints its latency.)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
import time
from pathlib import Path

from bot_harness import FakeTelegram, distinct_names, percentile, reply_latencies_ms, start_bot


async def run(updates: int, users: int, rate: float, outgoing_limit: float) -> None:
    """Inject the updates at ``rate`` per second (0: all at once) and print the figures."""
    telegram = FakeTelegram()
    await telegram.start()
    with tempfile.TemporaryDirectory() as scratch:
        bot = await start_bot(
            telegram,
            Path(scratch),
            GUESSES_PER_MINUTE=str(max(20, updates // users + 1)),
            TELEGRAM_MESSAGES_PER_SECOND=str(outgoing_limit),
        )
        try:
            names = distinct_names(updates)
            injected: dict[str, float] = {}
            started = time.monotonic()
            for i, name in enumerate(names):
                if rate:
                    await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
                telegram.inject_message(1_000 + i % users, f"/guess {name}")
                injected[name] = time.monotonic()
            try:
                await telegram.wait_for_count("sendMessage", updates, timeout=120)
            except TimeoutError:  # some updates got no reply: count them as lost instead of printing nothing
                pass
            replies = telegram.sent("sendMessage")
            finished = max((r.at for r in replies), default=time.monotonic())
        finally:
            bot.send_signal(signal.SIGINT)
            await bot.wait()
    await telegram.stop()
    latencies = reply_latencies_ms(replies, injected)  # a guess's answer names it; other messages do not count
    if not latencies:
        raise SystemExit(f"none of the {updates} updates was answered within 120 s")
    limit = f"{outgoing_limit:g}/s" if outgoing_limit else "off"
    print(f"{updates} /guess updates from {users} users, injected at {rate or 'max'}/s, outgoing limit {limit}")
    # Paced, replies cannot outrun the injection: only --rate 0 (all at once) measures capacity.
    kind = "capacity" if not rate else "throughput (paced: at most the injection rate)"
    print(
        f"answered {len(latencies)}, lost {len(injected)} (no answer within 120 s), "
        f"{kind} {len(latencies) / (finished - started):.0f} updates/s"
    )
    print(
        f"latency injection → reply: p50 {percentile(latencies, 50):.0f} ms, p95 {percentile(latencies, 95):.0f} ms, "
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
