"""Message texts (HTML, every piece of user text escaped) and inline keyboards."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from html import escape as _escape

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.callback_data import Action, ButtonPayload
from bot.db.repository import Stats, UserData
from bot.service import Comparison, VerdictRecorded
from core.data import LANGUAGES
from core.predict import Guess
from core.text import displayable


def escape(text: str) -> str:
    """Escape user text for Telegram HTML (quotes need no escaping outside attributes)."""
    return _escape(text, quote=False)


# Explicit bidirectional embeddings, overrides and isolates (LRE..RLO, LRI..PDI): no name needs one, and
# echoed unclosed, an RLO would display the rest of the line backwards.
_BIDI_CONTROLS = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])

# Controls, format characters (bidi marks, zero-width joiners) and line or paragraph separators: an input is
# often refused for holding one, and echoed they would be invisible or reorder the line.
_UNSHOWN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
REFUSED_ECHO_CHARS = 40  # a refused input is named this far: enough to tell the lines of a pasted list apart

BAR_WIDTH = 10
_QUESTION = "Is the first one right?"
_NOTE_PREFIXES = ("✅ Recorded", "📝 Recorded")
FULL_KEYBOARD_COLUMNS = 3

HELP = (
    "Send me a surname and I'll guess the language it comes from.\n\n"
    "• <code>/guess Nakamura</code>, or in a private chat just <code>Nakamura</code> (or a list, one name a line)\n"
    "• <code>/compare Dostoevsky</code>: the GRU and the hand-written RNN side by side\n"
    "• <code>/stats</code>: how often I was right\n\n"
    "Press a button under an answer to confirm or correct it: your corrections teach me.\n"
    "<code>/privacy</code>: what I keep about you; <code>/forget</code> deletes it.\n"
    "<i>I guess the origin of a spelling, not anyone's nationality or ethnicity.</i>"
)

FORGET_CONFIRM_ARGUMENT = "confirm"
FORGET_AS_CHAT = (
    "You are writing as the group, not as yourself. What anonymous admins send me is kept under one account that "
    "all of them share, so I can't tell what is yours, nor delete it for you. "
    "Send /forget from your own account to delete what you sent as yourself."
)
FORGET_IN_PRIVATE = "Send /forget to me in a private chat: what I keep about you is no one else's business here."
FORGET_USAGE = f"To delete what I keep about you, send exactly: /forget {FORGET_CONFIRM_ARGUMENT}"


def _days(count: int) -> str:
    return f"{count} day{'' if count == 1 else 's'}"


def privacy_text(retention_days: int) -> str:
    """The /privacy reply; ``retention_days`` is GUESS_RETENTION_DAYS (0: names are kept until deleted)."""
    if retention_days:
        span = _days(retention_days)
        kept = (
            f"A name no one chose a language for under my answer is deleted after {span}; "
            "the rest is kept until you delete it."
        )
    else:
        kept = "All of it is kept until you delete it."
    return (
        "<b>What I keep</b>\n"
        "• each name you send me, with my answer, your Telegram user id and the chat you sent it in\n"
        "• each button you press under an answer: the language you chose\n\n"
        "I keep them to count how often I am right (<code>/stats</code>) and to learn from your corrections. "
        f"{kept} A model that has learned from them keeps what it learned after they are deleted.\n"
        "My logs hold neither the names nor your user id (only a one-way hash of it).\n\n"
        "<code>/forget</code> shows what I keep about you, and deletes it."
    )


def more_names_than_answered(answered: int, sent: int) -> str:
    """The note under the answers to a list longer than one message is answered for."""
    return f"That was {sent} names; I answered the first {answered}. Send the others in another message."


def bar(probability: float) -> str:
    """A 10-cell bar such as ``███████░░░``."""
    filled = min(BAR_WIDTH, max(0, round(probability * BAR_WIDTH)))
    return "█" * filled + "░" * (BAR_WIDTH - filled)


def _ranking(result: Guess) -> list[str]:
    return [
        f"<code>{bar(p.probability)}</code> {p.probability:>6.1%}  {escape(p.language)}" for p in result.predictions
    ]


def guess_text(result: Guess) -> str:
    """The answer to a name: the surname used, the top languages with bars, and an uncertainty note."""
    lines = [f"<b>{escape(result.query.surname)}</b>"]
    if result.query.from_full_name:
        lines[0] += f" (the surname in “{escape(result.query.raw.strip().translate(_BIDI_CONTROLS))}”)"
    lines += _ranking(result)
    if result.uncertain:
        lines.append("\n🤔 <i>Uncertain: this spelling fits several languages.</i>")
    lines.append("\n" + _QUESTION)
    return "\n".join(lines)


def refusal_text(raw: str, reason: str) -> str:
    """Plain text: why ``raw`` cannot be classified, naming it (shortened, its invisible characters left out), so
    a refusal among the answers to a pasted list says which line it is about."""
    shown = "".join(c for c in displayable(raw.strip()) if unicodedata.category(c) not in _UNSHOWN_CATEGORIES)
    if len(shown) > REFUSED_ECHO_CHARS:
        shown = shown[: REFUSED_ECHO_CHARS - 1] + "…"
    return f"I can't classify “{shown}”: {reason}." if shown.strip() else f"I can't classify that: {reason}."


def recorded_notice(verdict: VerdictRecorded) -> str:
    """The pop-up (plain text) answering a recorded press: it names what was stored, for a message too old for
    Telegram to send the bot, whose text then cannot be redrawn, keeps showing an earlier choice."""
    if verdict.confirmed:
        return f"Recorded: {verdict.language} is right. Thank you!"
    return f"Recorded: {verdict.surname} is {verdict.language}. Thank you!"


def recorded_text(original_html: str, verdict: VerdictRecorded) -> str:
    """The answer with a line saying what was recorded."""
    # Drop the question and any earlier verdict note, so pressing again replaces the note.
    lines = original_html.split("\n")
    while lines and (not lines[-1].strip() or lines[-1].startswith(_NOTE_PREFIXES) or lines[-1] == _QUESTION):
        lines.pop()
    body = "\n".join(lines)
    if verdict.confirmed:
        note = f"✅ Recorded: {escape(verdict.language)} is right. Thank you!"
    else:
        note = f"📝 Recorded: {escape(verdict.surname)} is {escape(verdict.language)}. Thank you!"
    return f"{body}\n\n{note}"


def comparison_text(comparison: Comparison) -> str:
    """Both models' answers, one block each."""
    query = comparison.gru.query
    header = f"<b>{escape(query.surname)}</b>"
    gru = "\n".join(_ranking(comparison.gru))
    rnn = "\n".join(_ranking(comparison.rnn))
    return f"{header}\n\n<b>GRU</b> (live model)\n{gru}\n\n<b>Elman RNN</b> (hand-written)\n{rnn}"


def stats_text(stats: Stats, model_version: str, retention_days: int = 0) -> str:
    """The /stats reply; with ``retention_days`` (GUESS_RETENTION_DAYS) it says the count omits deleted guesses."""
    share = stats.confirmed_share
    verdicts = f"{stats.corrections} verdict{'' if stats.corrections == 1 else 's'}"
    right = f"{share:.0%} of {verdicts}" if share is not None else "no verdicts yet"
    kept = f" (one with no verdict is kept {_days(retention_days)})" if retention_days else ""
    return (
        "<b>Statistics</b>\n"
        f"Guesses: {stats.guesses} from {stats.users} user{'' if stats.users == 1 else 's'}{kept}\n"
        f"Corrections and confirmations: {stats.corrections}\n"
        f"Confirmed right: {right}\n"
        f"Live model: <code>{escape(model_version)}</code>"
    )


def _button(text: str, payload: ButtonPayload) -> InlineKeyboardButton:
    return InlineKeyboardButton(text, callback_data=payload.encode())


def short_keyboard(guess_id: int, top_languages: Sequence[str]) -> InlineKeyboardMarkup:
    """✅ for the top guess, the other top languages, and "Other…"."""
    first, *others = top_languages
    rows = [
        [_button(f"✅ {first}", ButtonPayload(Action.VERDICT, guess_id, first))],
        [_button(language, ButtonPayload(Action.VERDICT, guess_id, language)) for language in others],
        [_button("Other…", ButtonPayload(Action.OTHER, guess_id))],
    ]
    return InlineKeyboardMarkup([row for row in rows if row])


def full_keyboard(guess_id: int) -> InlineKeyboardMarkup:
    """All 18 languages in compact rows, and a back button."""
    buttons = [_button(language, ButtonPayload(Action.VERDICT, guess_id, language)) for language in LANGUAGES]
    rows = [buttons[i : i + FULL_KEYBOARD_COLUMNS] for i in range(0, len(buttons), FULL_KEYBOARD_COLUMNS)]
    rows.append([_button("« Back", ButtonPayload(Action.BACK, guess_id))])
    return InlineKeyboardMarkup(rows)


def _names_and_verdicts(data: UserData) -> str:
    names = f"{data.guesses} name{'' if data.guesses == 1 else 's'} you sent (with my answers)"
    verdicts = f"{data.verdicts} answer{'' if data.verdicts == 1 else 's'} you confirmed or corrected"
    return f"{names} and {verdicts}"


def forget_preview(stored: UserData) -> str:
    """The reply to /forget: what would be deleted, and how to delete it."""
    if not (stored.guesses or stored.verdicts):
        return "I keep nothing about you."
    return (
        f"I keep {_names_and_verdicts(stored)}. Others' buttons pressed under those answers go with them.\n"
        f"To delete all of it, send: /forget {FORGET_CONFIRM_ARGUMENT}"
    )


def forgotten_text(deleted: UserData) -> str:
    """The reply to /forget confirm: what was deleted."""
    if not (deleted.guesses or deleted.verdicts):
        return "There was nothing to delete: I keep nothing about you."
    return f"Deleted {_names_and_verdicts(deleted)}. Messages already sent stay in their chats."
