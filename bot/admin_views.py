"""Texts of the admin commands: fine-tune reports, the version list, rollbacks (HTML, escaped)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.db.versions import PROMOTED, VersionRecord
from bot.finetune_runner import RunFailed, RunOutcome
from bot.live_model import RollbackRefused, RolledBack
from bot.run_report import RunReport
from bot.views import escape
from core.gate import change_in_points

NOT_ADMIN = "Sorry, only the bot's admins can do that."
ALREADY_RUNNING = "A fine-tune is already running. I'll report to you when it ends."
STARTED = "Fine-tune started. I'll report before/after figures when it ends."
SCHEDULED_RUNNING = (
    "The scheduled fine-tune is running. If it skips for lack of new feedback, yours starts right after it; "
    "either way I'll report to you when it ends."
)
STOPPING = "The bot is stopping, so no fine-tune can start now. Try again once it is back."
NOT_A_VERSION = "That is not a version name (1-64 letters, digits, '.', '_' or '-'). /models lists them."


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _under_prior(scores: dict[str, Any]) -> str:
    """The suffix ``" (uniform prior)"`` for figures measured under a prior other than the dataset's.

    Runs recorded before the gate took the bot's prior have no ``prior`` entry: theirs was the dataset's.
    """
    prior = scores.get("prior", "dataset")
    return "" if prior == "dataset" else f" ({escape(str(prior))} prior)"


def _names(count: int, kind: str = "") -> str:
    return f"{count} {kind}name{'' if count == 1 else 's'}"


def figure_lines(live: dict[str, Any], candidate: dict[str, Any], feedback: dict[str, int]) -> list[str]:
    """The gate's figures, before → after (no markup: also the text report of ``nameorigin finetune``)."""
    change = change_in_points(live["test_accuracy"], candidate["test_accuracy"])  # the gate's own figure
    return [
        f"Test accuracy{_under_prior(candidate)}: {_percent(live['test_accuracy'])} → "
        f"{_percent(candidate['test_accuracy'])} ({change:+.2f} pts)",
        f"Test macro-F1: {live['test_macro_f1']:.3f} → {candidate['test_macro_f1']:.3f}",
        f"Held-out feedback ({_names(feedback.get('holdout', 0))}): "
        f"{_percent(live['feedback_accuracy'])} → {_percent(candidate['feedback_accuracy'])}",
    ]


def feedback_line(feedback: dict[str, int]) -> str:
    """What became of the collected verdicts (no markup, as ``figure_lines``)."""
    return (
        f"Feedback: {_names(feedback.get('trusted', 0), 'trusted ')}, {feedback.get('train', 0)} trained on; "
        f"left out: {feedback.get('over_daily_cap', 0)} over the daily cap, "
        f"{feedback.get('without_agreement', 0)} without agreement, {feedback.get('tied', 0)} tied, "
        f"{feedback.get('in_test_split', 0)} in the test split"
    )


def run_report(outcome: RunOutcome) -> str:
    """What a fine-tune run did, for the admin who asked or for every admin after a scheduled run."""
    if isinstance(outcome, RunFailed):
        return f"❌ <b>Fine-tune failed</b>: {escape(outcome.message)}. The live model is unchanged."
    report: RunReport = outcome
    if report.status in ("skipped", "busy"):
        return f"⏭ <b>Fine-tune skipped</b>: {escape(report.message)}."
    lines = []
    if report.status == "promoted":
        lines.append(f"✅ <b>Fine-tune promoted</b>: <code>{escape(report.version or '')}</code> is now live.")
    else:
        lines.append(f"🛑 <b>Fine-tune rejected</b>: {escape(report.message)}.")
        lines.append(f"The live model stays <code>{escape(report.live_version or '')}</code>.")
    if report.live and report.candidate:
        lines += figure_lines(report.live, report.candidate, report.feedback)
    lines.append(feedback_line(report.feedback))
    lines.append(f"Took {report.seconds:.1f} s.")
    return "\n".join(lines)


def _version_line(record: VersionRecord) -> str:
    marker = "▶" if record.active else "•"
    test = record.metrics.get("candidate", record.metrics.get("test", {}))
    accuracy = test.get("test_accuracy", test.get("accuracy"))
    figures = f"test {_percent(accuracy)}{_under_prior(test)}" if accuracy is not None else "no test figures"
    when = record.created_at.strftime("%Y-%m-%d %H:%M")
    # A promoted run without a checkpoint had it deleted under MODEL_KEEP_VERSIONS: /rollback cannot go there.
    gone = ", checkpoint deleted" if record.decision == PROMOTED and not record.servable else ""
    return f"{marker} <code>{escape(record.version)}</code> {escape(record.decision or '?')}{gone}, {figures}, {when}"


def versions_text(records: Sequence[VersionRecord], total: int) -> str:
    """The /models reply: newest first, ▶ marks the live one; says how many of ``total`` are left out."""
    if not records:
        return "No model versions recorded yet."
    lines = ["<b>Model versions</b> (newest first, ▶ live, times in UTC)", *(_version_line(r) for r in records)]
    if total > len(records):
        lines.append(f"… and {total - len(records)} older, not shown. /rollback takes any version by name.")
    return "\n".join(lines)


def rollback_text(outcome: RolledBack | RollbackRefused) -> str:
    """The /rollback reply."""
    if isinstance(outcome, RollbackRefused):
        return escape(outcome.reason)
    return f"↩️ <code>{escape(outcome.version)}</code> is live again (was <code>{escape(outcome.previous)}</code>)."
