"""Start-up cost of ``nameorigin`` commands: seconds and peak memory of fresh processes.

Each command runs as a process of its own, ``--repeats`` times: help, a one-name prediction, ``serve``
refused for want of a token, and ``serve`` until it is ready (its commands set at the fake Bot API).
With ``--against DIR``, another checkout of the project (``git worktree add /tmp/old <commit>``), the
same commands also run from that tree, turn by turn, and the script prints both side by side.

Run: python benchmarks/startup.py [--repeats 5] [--against DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bot_harness import FakeTelegram, start_bot

HERE = Path(__file__).resolve().parents[1]
# name -> (arguments, exit status expected); serve without a token is refused with status 2.
COMMANDS = {
    "--help": (["--help"], 0),
    "predict Dostoevsky": (["predict", "Dostoevsky"], 0),
    "serve, no token": (["serve"], 2),
}


def run_command(tree: Path, arguments: list[str], expected: int) -> tuple[float, float]:
    """Seconds and peak resident MiB of ``python -m core.cli ARGUMENTS`` run from ``tree``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TELEGRAM_")}
    env["PYTHONPATH"] = str(tree)  # the tree's core and bot, whatever is installed
    # An empty working folder: `python -m` puts it first on the import path, and a `.env` there would be read.
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "core.cli", *arguments],
            env=env,
            cwd=scratch,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak memory, not the largest of all children
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != expected:
        raise SystemExit(f"{' '.join(arguments)} from {tree} exited {process.returncode}, expected {expected}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports kilobytes


async def serve_until_ready(tree: Path) -> tuple[float, float]:
    """Seconds until ``serve`` from ``tree`` has set its commands, and its peak resident MiB by then."""
    telegram = FakeTelegram()
    await telegram.start()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            started = time.perf_counter()
            bot = await start_bot(telegram, Path(scratch), PYTHONPATH=str(tree))
            seconds = time.perf_counter() - started
            status = Path(f"/proc/{bot.pid}/status").read_text()
            peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
            bot.terminate()
            await bot.wait()
    finally:
        await telegram.stop()
    return seconds, peak / 1024


def main() -> None:
    """Time every command from each tree, in turns, and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command from each tree")
    parser.add_argument("--against", type=Path, help="another checkout of the project, to compare with")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    trees = [HERE] + ([args.against.resolve()] if args.against else [])
    if args.against and not (args.against / "core" / "cli").is_dir():
        parser.error(f"--against {args.against}: not a checkout of this project")
    labels = [*COMMANDS, "serve until ready"]
    figures: dict[tuple[str, Path], list[tuple[float, float]]] = {(label, t): [] for label in labels for t in trees}
    for _ in range(args.repeats):  # turns, so that a burst of load on the machine hits every tree alike
        for tree in trees:
            for label, (arguments, expected) in COMMANDS.items():
                figures[label, tree].append(run_command(tree, arguments, expected))
            figures["serve until ready", tree].append(asyncio.run(serve_until_ready(tree)))
    print(f"median of {args.repeats} runs; peak resident memory in MiB")
    if args.against:
        print(f"ratios: {trees[0]} against {trees[1]}")
    print(f"{'command':<22}" + "".join(f"{tree.name[:18]:>20}{'MiB':>8}" for tree in trees))
    for label in labels:
        row = f"{label:<22}"
        for tree in trees:
            runs = figures[label, tree]
            row += f"{statistics.median(s for s, _ in runs):>19.2f}s{statistics.median(m for _, m in runs):>8.0f}"
        if args.against:
            (ours, our_memory), (theirs, their_memory) = (
                (statistics.median(s for s, _ in figures[label, t]), statistics.median(m for _, m in figures[label, t]))
                for t in trees
            )
            row += f"   {theirs / ours:.1f}x as fast, {our_memory / their_memory:.0%} of the memory"
        print(row)


if __name__ == "__main__":
    main()
