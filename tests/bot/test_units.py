"""Small pieces of the bot: callback payloads, rate limiting, message rendering, fine-tune reports."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from telegram.error import BadRequest, Forbidden, NetworkError

from bot.admin import AdminHandlers, send_report
from bot.admin_views import run_report
from bot.callback_data import MAX_GUESS_ID, Action, ButtonPayload, MalformedCallback, decode
from bot.config import Settings, load_settings
from bot.db.repository import Stats
from bot.finetune_runner import RunFailed, child_command, child_environment, failure_reason
from bot.handlers import answer
from bot.outgoing import outgoing_limiter
from bot.ratelimit import FORGET_IDLE_ABOVE, UserRateLimiter
from bot.run_report import RunReport
from bot.service import Comparison, VerdictRecorded
from bot.views import bar, comparison_text, guess_text, recorded_text, stats_text
from core.cli import main
from core.data import LANGUAGES
from core.gate import GateScores, decide
from core.predict import Guess, LanguageGuess
from core.text import parse_query


@pytest.mark.parametrize("language", LANGUAGES)
def test_payload_round_trip_fits_telegram(language: str) -> None:
    payload = ButtonPayload(Action.VERDICT, MAX_GUESS_ID, language)
    encoded = payload.encode()
    assert len(encoded.encode()) <= 64
    assert decode(encoded) == payload


@pytest.mark.parametrize(
    "data",
    [None, "", "v:1:18", "v:0:1", "v:-1:1", "v:1", "o:1:2", "b:1:2", "q:1", "v:1:1:1", "v:1:1 ", "v:1:0\n", "o:1\n",
     "v:1:x" * 30, f"v:{MAX_GUESS_ID + 1}:3", "o:99999999999", "b:10000000000000000000", "v:1:\ud800", "\udcff"],
)  # fmt: skip
def test_malformed_payloads_are_rejected(data: str | None) -> None:
    with pytest.raises(MalformedCallback):
        decode(data)


def test_stats_count_one_user_in_the_singular() -> None:
    assert "Guesses: 1 from 1 user\n" in stats_text(Stats(guesses=1, corrections=0, confirmed=0, users=1), "gru-a")
    assert "Guesses: 5 from 2 users\n" in stats_text(Stats(guesses=5, corrections=0, confirmed=0, users=2), "gru-a")


def test_stats_show_the_share_confirmed_the_live_model_and_zero_users_in_the_plural() -> None:
    text = stats_text(Stats(guesses=0, corrections=0, confirmed=0, users=0), "gru-20260101T000000Z")
    assert "Guesses: 0 from 0 users\n" in text and "Confirmed right: no verdicts yet" in text
    assert "Live model: <code>gru-20260101T000000Z</code>" in text
    some = Stats(guesses=9, corrections=4, confirmed=3, users=2)
    assert "Confirmed right: 75% of 4 verdicts" in stats_text(some, "g")
    one = Stats(guesses=1, corrections=1, confirmed=1, users=1)
    assert "Confirmed right: 100% of 1 verdict\n" in stats_text(one, "g")


def test_an_answer_asks_for_a_verdict_and_a_recorded_one_no_longer_does() -> None:
    ranking = (LanguageGuess("Italian", 0.9), LanguageGuess("Spanish", 0.05))
    result = Guess(parse_query("Rossi"), ranking, uncertain=False)
    html = guess_text(result)
    assert html.endswith("\n\nIs the first one right?") and "Uncertain" not in html
    recorded = recorded_text(html, VerdictRecorded("Rossi", "Italian", confirmed=True, top_languages=("Italian",)))
    assert "Is the first one right?" not in recorded
    assert recorded.endswith("Spanish\n\n✅ Recorded: Italian is right. Thank you!")


def test_the_echoed_full_name_carries_no_bidi_override() -> None:
    # An unclosed RLO (U+202E) in the echo would show the rest of the line, the closing quote too, backwards.
    result = Guess(parse_query("Fyodor \u202eyksveotsoD\u202c"), (LanguageGuess("Russian", 0.9),), uncertain=False)
    assert "(the surname in “Fyodor yksveotsoD”)" in guess_text(result)


def test_a_comparison_shows_each_model_s_own_ranking() -> None:
    query = parse_query("Dostoevsky")
    gru = Guess(query, (LanguageGuess("Russian", 0.81), LanguageGuess("Polish", 0.1)), uncertain=False)
    rnn = Guess(query, (LanguageGuess("Czech", 0.52), LanguageGuess("Russian", 0.3)), uncertain=False)
    text = comparison_text(Comparison(gru=gru, rnn=rnn))
    gru_block, rnn_block = text.split("<b>Elman RNN</b>")
    assert "<b>GRU</b>" in gru_block and "81.0%  Russian" in gru_block and "Czech" not in gru_block
    assert "52.0%  Czech" in rnn_block and "30.0%  Russian" in rnn_block and "81.0%" not in rnn_block


def test_finetune_may_lower_its_priority_but_not_raise_it(capsys: pytest.CaptureFixture[str]) -> None:
    for refused in ("-5", "20"):
        with pytest.raises(SystemExit) as exited:
            main(["finetune", "--nice", refused])
        assert exited.value.code == 2
        assert f"argument --nice: must be between 0 and 19, got {int(refused)}" in capsys.readouterr().err


async def test_a_press_answered_too_late_is_only_logged_and_other_refusals_still_raise() -> None:
    class Query:
        def __init__(self, refusal: str) -> None:
            self.refusal = refusal

        async def answer(self, text: str | None = None, show_alert: bool = False) -> None:
            raise BadRequest(self.refusal)

    # Telegram's own words, as PTB receives them; PTB rewrites them ("Query is too old ...").
    for late in ("Bad Request: query is too old and response timeout expired", "Bad Request: query ID is invalid"):
        await answer(Query(late))  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        await answer(Query("Bad Request: message text is empty"))  # type: ignore[arg-type]


def test_rate_limiter_slides() -> None:
    now = [0.0]
    limiter = UserRateLimiter(limit=2, window=60.0, clock=lambda: now[0])
    assert limiter.allow(1) and limiter.allow(1) and not limiter.allow(1)
    assert limiter.allow(2)
    now[0] = 59.9
    assert not limiter.allow(1)
    now[0] = 60.0
    assert limiter.allow(1)


def test_a_refused_user_is_told_once_a_window() -> None:
    now = [0.0]
    limiter = UserRateLimiter(limit=1, window=60.0, clock=lambda: now[0])
    assert limiter.allow(1) and not limiter.allow(1)
    assert limiter.should_warn(1) and not limiter.should_warn(1)
    assert limiter.should_warn(2)  # each user is told for themselves
    now[0] = 59.9
    assert not limiter.should_warn(1)
    now[0] = 60.0
    assert limiter.should_warn(1)


def test_rate_limiter_forgets_idle_users_at_most_once_a_window() -> None:
    now = [0.0]
    limiter = UserRateLimiter(limit=5, window=60.0, clock=lambda: now[0])
    scans: list[int] = []
    forget = limiter._forget_idle
    limiter._forget_idle = lambda at: (scans.append(len(limiter._events)), forget(at))[1]  # type: ignore[method-assign]
    for user in range(FORGET_IDLE_ABOVE + 2_000):  # all active in one window: a sweep frees nobody
        now[0] = user * 1e-3
        assert limiter.allow(user)
    assert scans == [FORGET_IDLE_ABOVE + 1]  # one scan, not one per message beyond the threshold
    now[0] = 200.0  # everyone has been idle for a whole window
    assert limiter.allow(-1)
    assert len(scans) == 2 and len(limiter._events) == 1


def test_refused_attempts_do_not_extend_a_block() -> None:
    now = [0.0]
    limiter = UserRateLimiter(limit=2, window=60.0, clock=lambda: now[0])
    assert limiter.allow(1) and limiter.allow(1)
    now[0] = 59.0
    assert not limiter.allow(1)  # refused: it must not count towards the next window
    now[0] = 60.0
    assert limiter.allow(1) and limiter.allow(1) and not limiter.allow(1)


def test_the_idle_sweep_keeps_a_user_whose_latest_event_is_recent() -> None:
    now = [0.0]
    limiter = UserRateLimiter(limit=2, window=60.0, clock=lambda: now[0])
    assert limiter.allow(0)  # idle by the time of the sweep
    assert limiter.allow(1)
    now[0] = 50.0
    assert limiter.allow(1)  # user 1: first event long ago, last one recent
    now[0] = 70.0
    for user in range(2, FORGET_IDLE_ABOVE + 2):  # the first sweep runs once the threshold is passed
        assert limiter.allow(user)
    assert 0 not in limiter._events  # the sweep ran
    # User 1's event at 50 still counts until 110: one more now, not two.
    assert limiter.allow(1) and not limiter.allow(1)


def test_views_escape_user_text_and_replace_notes() -> None:
    query = parse_query("Jean <b>O'Neil&Co</b>")
    result = Guess(query, (LanguageGuess("Irish", 0.42), LanguageGuess("English", 0.40)), uncertain=True)
    html = guess_text(result)
    assert "<b>bO'NeilCob</b>" in html  # the surname used: letters and apostrophes only
    assert "“Jean &lt;b&gt;O'Neil&amp;Co&lt;/b&gt;”" in html  # the raw input, escaped
    assert "Uncertain" in html
    top = ("Irish", "English")
    first = recorded_text(html, VerdictRecorded(query.surname, "Irish", confirmed=True, top_languages=top))
    second = recorded_text(first, VerdictRecorded(query.surname, "Scottish", confirmed=False, top_languages=top))
    assert "✅ Recorded" not in second and second.count("Recorded") == 1 and "Scottish" in second
    assert bar(0.0) == "░" * 10 and bar(1.0) == "█" * 10 and bar(0.46) == "█████░░░░░"


@pytest.mark.parametrize("rate", [0.25, 0.5, 1.0, 2.5, 30.0, 0.0])
async def test_the_outgoing_limit_sends_at_every_allowed_rate(rate: float) -> None:
    """Below one message a second the limiter used to refuse every request: the bot went silent."""
    settings = load_settings(Settings, telegram_bot_token="1:x", telegram_messages_per_second=rate)
    limiter = outgoing_limiter(settings.telegram_messages_per_second)
    await limiter.initialize()
    sent = []

    async def send(*_: object, **__: object) -> bool:
        sent.append(True)
        return True

    request = limiter.process_request(send, (), {}, "sendMessage", {"chat_id": 1}, None)
    assert await asyncio.wait_for(request, timeout=5) is True
    assert sent == [True]
    await limiter.shutdown()


def test_fine_tune_reports_name_a_prior_other_than_the_dataset_s() -> None:
    def report(prior: str | None) -> str:
        scores = {"test_accuracy": 0.7806, "test_macro_f1": 0.532, "feedback_accuracy": None}
        live, candidate = ({**scores, "prior": prior} if prior else dict(scores) for _ in range(2))
        candidate["test_accuracy"] = 0.781
        feedback = {"holdout": 1, "trusted": 1}
        return run_report(RunReport("promoted", "ok", "gru-a", "gru-b", live, candidate, feedback, 1.0))

    assert "Test accuracy (uniform prior): 78.06% → 78.10% (+0.04 pts)" in report("uniform")
    assert "Test accuracy: 78.06% → 78.10% (+0.04 pts)" in report("dataset")
    assert "Held-out feedback (1 name):" in report("dataset") and "Feedback: 1 trusted name," in report("dataset")
    assert "Test accuracy: 78.06% → 78.10% (+0.04 pts)" in report(None)  # runs recorded before the prior was


def test_a_fine_tune_report_shows_the_change_the_gate_decided_on() -> None:
    live, candidate = GateScores(1529 / 1741, 0.6, None), GateScores(1524 / 1741, 0.6, None)
    decision = decide(live, candidate, max_test_drop_points=0.5)
    report = RunReport("promoted", "ok", "gru-a", "gru-b", live.as_dict(), candidate.as_dict(), {"holdout": 0}, 1.0)
    assert decision.reason.startswith("test accuracy -0.28 points")
    assert "Test accuracy: 87.82% → 87.54% (-0.28 pts)" in run_report(report)


def test_a_failed_fine_tune_is_reported_by_its_error_line_not_a_trailing_link() -> None:
    traceback = [
        "Traceback (most recent call last):",
        '  File "/app/bot/finetune_job.py", line 150, in _gather',
        "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) unable to open database file",
        "(Background on this error at: https://sqlalche.me/e/20/e3q8)",
    ]
    assert failure_reason(traceback) == traceback[2]
    cli_error = ["nameorigin finetune: error: cannot fine-tune: dataset folder data/names does not exist"]
    assert failure_reason(cli_error) == cli_error[0]
    assert failure_reason(["Segmentation fault"]) == "Segmentation fault"
    assert failure_reason([]) is None


def test_the_fine_tune_child_ignores_packages_in_the_bot_s_working_folder(tmp_path: Path) -> None:
    decoy = tmp_path / "core"  # say, a Django app named core in the folder the bot runs from
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise ImportError('the decoy core package was imported')")
    command = [*child_command(force=True)[:4], "finetune", "--help"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: nameorigin finetune")


def test_the_fine_tune_child_gets_its_settings_but_none_of_the_bot_s_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in [("TELEGRAM_BOT_TOKEN", "9:xyzzy-token"), ("telegram_bot_token", "9:xyzzy-token"),
                        ("WEBHOOK_SECRET", "xyzzy-webhook-secret"), ("LOG_SALT", "xyzzy-salt-for-hashes")]:  # fmt: skip
        monkeypatch.setenv(name, value)
    settings = load_settings(Settings, finetune_threads=2, prediction_prior="uniform")
    environment = child_environment(settings)
    assert not [value for value in environment.values() if "xyzzy" in value]
    assert environment["FINETUNE_THREADS"] == environment["OMP_NUM_THREADS"] == "2"
    assert environment["PREDICTION_PRIOR"] == "uniform"


class ReportBot:
    """A Bot whose send_message records each attempt and raises the queued errors first."""

    def __init__(self, errors: dict[int, list[Exception]] | None = None) -> None:
        self.errors = errors or {}
        self.attempts: list[int] = []

    async def send_message(self, chat_id: int, text: str, parse_mode: str | None = None) -> None:
        self.attempts.append(chat_id)
        queued = self.errors.get(chat_id)
        if queued:
            raise queued.pop(0)


async def test_a_report_is_sent_once_again_after_a_network_failure_and_never_after_a_refusal() -> None:
    bot = ReportBot({2: [NetworkError("reset")], 3: [NetworkError("reset")] * 5, 4: [BadRequest("chat not found")]})
    await send_report(bot, 1, "report", backoff=0)  # type: ignore[arg-type]
    await send_report(bot, 2, "report", backoff=0)  # type: ignore[arg-type]
    with pytest.raises(NetworkError):
        await send_report(bot, 3, "report", backoff=0)  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        await send_report(bot, 4, "report", backoff=0)  # type: ignore[arg-type]
    assert bot.attempts == [1, 2, 2, 3, 3, 3, 4]  # a delivered report is not sent again


class ScriptedRunner:
    """A FinetuneRunner whose runs end when the test says so, with the outcome it gives."""

    def __init__(self) -> None:
        self.stopping = False
        self.started: list[bool] = []  # force, per run started
        self.runs: list[asyncio.Future[object]] = []

    def start(self, *, force: bool) -> asyncio.Task[object] | None:
        if self.runs and not self.runs[-1].done():
            return None
        self.started.append(force)
        run: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.runs.append(run)

        async def outcome() -> object:
            return await run

        return asyncio.create_task(outcome())


async def until_reported(admin: AdminHandlers) -> None:
    for _ in range(100):
        await asyncio.sleep(0)
    await asyncio.gather(*admin._reporters)


async def test_a_scheduled_run_reports_to_every_admin_and_a_skipped_one_to_nobody() -> None:
    runner = ScriptedRunner()
    admin = AdminHandlers(
        runner=runner,  # type: ignore[arg-type]
        live=None,  # type: ignore[arg-type]
        admin_ids=frozenset({5, 3, 9}),
        limiter=UserRateLimiter(20),
    )
    bot = ReportBot({3: [Forbidden("bot was blocked by the user")]})
    context = type("Context", (), {"bot": bot})()

    await admin.scheduled_finetune(context)
    runner.runs[-1].set_result(RunReport("promoted", "ok", "gru-a", "gru-b"))
    await until_reported(admin)
    assert bot.attempts == [3, 5, 9]  # an admin who blocked the bot does not keep the others from hearing
    assert runner.started == [False] and admin._current is None

    for status in ("skipped", "busy"):
        bot.attempts.clear()
        await admin.scheduled_finetune(context)
        runner.runs[-1].set_result(RunReport(status, "3 new usable verdicts since the last run; 20 needed"))
        await until_reported(admin)
        assert bot.attempts == []  # nothing to tell every admin every night

    await admin.scheduled_finetune(context)
    runner.stopping = True  # the bot is shutting down: the run's end goes unreported
    runner.runs[-1].set_result(RunFailed("killed by SIGTERM"))
    await until_reported(admin)
    assert bot.attempts == []
