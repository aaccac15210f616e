"""Does a fine-tune slow the bot down? /guess latency while idle and while a fine-tune runs, in one run.

The bot runs as ``nameorigin serve`` against the fake Bot API, with 1,000 trusted corrections in its
database (1,000 training-split surnames with their dataset language, each chosen by two users: 2,000
verdicts). The benchmark sends /guess at a steady rate for a while (idle), then an admin sends
/retrain and the same stream continues until the fine-tune's report arrives. It prints both latency
distributions, their p95 ratio (target <= 2x), and how long the fine-tune took.

Run: python benchmarks/finetune_latency.py [--rate 10] [--idle-seconds 20] [--corrections 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bot_harness import FakeTelegram, distinct_names, percentile, reply_latencies_ms, start_bot

from bot.db import migrate
from core.data import load_dataset
from core.split import split_dataset
from tests.bot.verdicts import store_verdicts

ADMIN = 1


def corrections(data_dir: Path, count: int) -> list[tuple[str, int, str]]:
    """``count`` training-split names with their first language, each chosen by two distinct users."""
    split = split_dataset(load_dataset(data_dir))
    examples = [ex for ex in split.train if " " not in ex.name][:count]
    return [
        (ex.name, user, sorted(ex.languages)[0])
        for i, ex in enumerate(examples)
        for user in (10_000 + 2 * i, 10_001 + 2 * i)
    ]


async def guess_stream(telegram: FakeTelegram, names: list[str], rate: float, stop: Callable[[], bool]) -> list[float]:
    """Send /guess at ``rate`` per second from rotating users until ``stop()``; latencies in ms."""
    injected: dict[str, float] = {}
    seen = {id(call) for call in telegram.calls}
    started = time.monotonic()
    for i, name in enumerate(names):
        if stop():
            break
        await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
        telegram.inject_message(100 + i % 50, f"/guess {name}")
        injected[name] = time.monotonic()
    sent = len(injected)
    await asyncio.sleep(2.0)  # let the last replies arrive
    replies = [c for c in telegram.sent("sendMessage") if id(c) not in seen]
    latencies = reply_latencies_ms(replies, injected)
    if len(latencies) != sent:
        print(f"warning: {sent - len(latencies)} of {sent} guesses got no reply")
    return latencies


def admin_report(telegram: FakeTelegram) -> str | None:
    """The text of the fine-tune report sent to the admin, once it exists."""
    for call in telegram.sent("sendMessage", chat_id=ADMIN):
        text = str(call.params["text"])
        if "Fine-tune" in text and "started" not in text:
            return text
    return None


async def run(rate: float, idle_seconds: float, count: int, data_dir: Path) -> None:
    """Measure idle, then during a fine-tune, and print the figures."""
    telegram = FakeTelegram()
    await telegram.start()
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        url = f"sqlite+aiosqlite:///{scratch / 'bot.db'}"
        await asyncio.to_thread(migrate.upgrade, url)
        await store_verdicts(url, corrections(data_dir, count))
        bot = await start_bot(
            telegram,
            scratch,
            NAMES_DATA_DIR=str(data_dir.resolve()),
            BOT_ADMIN_IDS=str(ADMIN),
            GUESSES_PER_MINUTE="1000",
            FINETUNE_CRON="",
        )
        try:
            names = distinct_names(10_000)
            idle_until = time.monotonic() + idle_seconds
            idle = await guess_stream(telegram, names[:5000], rate, lambda: time.monotonic() > idle_until)
            began = time.monotonic()
            telegram.inject_message(ADMIN, "/retrain")
            during = await guess_stream(telegram, names[5000:], rate, lambda: admin_report(telegram) is not None)
            report = admin_report(telegram) or ""
            wall = max(c.at for c in telegram.sent("sendMessage", chat_id=ADMIN)) - began
        finally:
            bot.send_signal(signal.SIGINT)
            await bot.wait()
    await telegram.stop()
    took = re.search(r"Took ([\d.]+) s", report)
    decision = re.sub(r"<[^>]+>", "", report.split("\n", 1)[0])
    idle_p95, during_p95 = percentile(idle, 95), percentile(during, 95)
    print(f"/guess at {rate:g}/s through the fake Bot API; bot = nameorigin serve; {os.cpu_count()} CPUs")
    print(f"idle:           n={len(idle):4d}  p50 {percentile(idle, 50):5.0f} ms  p95 {idle_p95:5.0f} ms")
    print(f"during finetune: n={len(during):4d}  p50 {percentile(during, 50):5.0f} ms  p95 {during_p95:5.0f} ms")
    print(f"p95 ratio during/idle: {during_p95 / idle_p95:.2f}x (target <= 2x)")
    print(f"fine-tune on {count} trusted corrections ({2 * count} verdicts): {took[1] if took else '?'} s in the")
    print(f"child process, {wall:.1f} s from /retrain to the admin's report; outcome: {decision}")


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=10.0, help="/guess updates per second")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--corrections", type=int, default=1000, help="trusted surnames in the database")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("NAMES_DATA_DIR", "data/names")))
    args = parser.parse_args()
    asyncio.run(run(args.rate, args.idle_seconds, args.corrections, args.data_dir))


if __name__ == "__main__":
    main()
