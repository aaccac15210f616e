"""Does a fine-tune slow the bot down? /guess latency while idle and while a fine-tune runs, in one run.

The bot runs as ``nameorigin serve`` against the fake Bot API, with 1,000 trusted corrections in its
database (1,000 training-split surnames with their dataset language, each chosen by two users: 2,000
verdicts). After an untimed warm-up, each round sends /guess at a steady rate while a fine-tune runs
(an admin's /retrain until its report arrives), then as many /guess again with the bot idle. Idle and
busy samples are thus equal in number and taken in turns, so the machine's drift hits both alike; one
fine-tune lasts only seconds, so a single round's p95 rests on a handful of slow replies. It prints
both latency distributions, their p95 ratio (target <= 2x), each round's, and how long the fine-tunes took.

Run: python benchmarks/finetune_latency.py [--rate 10] [--rounds 3] [--warm-up 20] [--corrections 1000]
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


async def guess_stream(
    telegram: FakeTelegram, names: list[str], rate: float, stop: Callable[[], bool] = lambda: False
) -> list[float]:
    """Send /guess at ``rate`` per second from rotating users, one per name or until ``stop()``; latencies in ms."""
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
    latencies: list[float] = []
    deadline = time.monotonic() + 10.0
    while len(latencies) < sent and time.monotonic() < deadline:  # let the last replies arrive
        await asyncio.sleep(0.05)
        replies = [c for c in telegram.sent("sendMessage") if id(c) not in seen]
        latencies += reply_latencies_ms(replies, injected)  # matched names leave ``injected``
    if len(latencies) != sent:
        print(f"warning: {sent - len(latencies)} of {sent} guesses got no reply within 10 s")
    return latencies


def admin_reports(telegram: FakeTelegram) -> list[str]:
    """The texts of the fine-tune reports sent to the admin so far."""
    texts = [str(call.params["text"]) for call in telegram.sent("sendMessage", chat_id=ADMIN)]
    return [text for text in texts if "Fine-tune" in text and "started" not in text]


def reported_after(telegram: FakeTelegram, done: int) -> Callable[[], bool]:
    """A check of whether the admin has more than ``done`` fine-tune reports."""
    return lambda: len(admin_reports(telegram)) > done


async def run(rate: float, rounds: int, warm_up: int, count: int, data_dir: Path) -> None:
    """Measure during a fine-tune, then idle with as many requests, ``rounds`` times, and print the figures."""
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
            names = iter(distinct_names(warm_up + 20_000 * rounds))
            # Untimed: the first replies pay one-off costs (connections, the first database writes).
            await guess_stream(telegram, [next(names) for _ in range(warm_up)], rate)
            idle: list[float] = []
            during: list[float] = []
            turns: list[tuple[float, float, float]] = []  # per round: busy p95, idle p95, seconds to the report
            reports: list[str] = []
            for _ in range(rounds):
                began, done = time.monotonic(), len(admin_reports(telegram))
                telegram.inject_message(ADMIN, "/retrain")
                batch = [next(names) for _ in range(10_000)]
                busy = await guess_stream(telegram, batch, rate, reported_after(telegram, done))
                reports.append(admin_reports(telegram)[done])
                wall = max(c.at for c in telegram.sent("sendMessage", chat_id=ADMIN)) - began
                if len(busy) < 2:  # too few for a percentile: the fine-tune was over at once, or no reply came
                    raise SystemExit(f"only {len(busy)} /guess answered during the fine-tune: try a higher --rate")
                calm = await guess_stream(telegram, [next(names) for _ in range(len(busy))], rate)
                turns.append((percentile(busy, 95), percentile(calm, 95), wall))
                during += busy
                idle += calm
        finally:
            bot.send_signal(signal.SIGINT)
            await bot.wait()
    await telegram.stop()
    idle_p95, during_p95 = percentile(idle, 95), percentile(during, 95)
    print(f"/guess at {rate:g}/s through the fake Bot API; bot = nameorigin serve; {os.cpu_count()} CPUs")
    print(f"{rounds} rounds: a fine-tune, then idle for as many /guess; {warm_up} untimed /guess before them")
    print(f"idle:            n={len(idle):4d}  p50 {percentile(idle, 50):5.0f} ms  p95 {idle_p95:5.0f} ms")
    print(f"during finetune: n={len(during):4d}  p50 {percentile(during, 50):5.0f} ms  p95 {during_p95:5.0f} ms")
    print(f"p95 ratio during/idle: {during_p95 / idle_p95:.2f}x (target <= 2x)")
    for number, ((busy_p95, calm_p95, wall), report) in enumerate(zip(turns, reports, strict=True), start=1):
        took = re.search(r"Took ([\d.]+) s", report)
        decision = re.sub(r"<[^>]+>", "", report.split("\n", 1)[0])
        print(
            f"round {number}: p95 {busy_p95:.0f} / {calm_p95:.0f} ms = {busy_p95 / calm_p95:.2f}x; fine-tune on "
            f"{count} trusted corrections ({2 * count} verdicts): {took[1] if took else '?'} s in the child process, "
            f"{wall:.1f} s from /retrain to the report; {decision}"
        )


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=10.0, help="/guess updates per second")
    parser.add_argument("--rounds", type=int, default=3, help="fine-tunes, each followed by as long an idle stream")
    parser.add_argument("--warm-up", type=int, default=20, help="untimed /guess before the first round")
    parser.add_argument("--corrections", type=int, default=1000, help="trusted surnames in the database")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("NAMES_DATA_DIR", "data/names")))
    args = parser.parse_args()
    if args.rounds < 1 or args.warm_up < 0:
        parser.error("--rounds must be at least 1 and --warm-up at least 0")
    asyncio.run(run(args.rate, args.rounds, args.warm_up, args.corrections, args.data_dir))


if __name__ == "__main__":
    main()
