"""Telegram handlers: parse the update, call the service, reply. Nothing else lives here."""

from __future__ import annotations

import html
import logging

from telegram import CallbackQuery, Message, Update, User
from telegram.constants import ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, TelegramError
from telegram.ext import ContextTypes

from bot import views
from bot.callback_data import Action, ButtonPayload, MalformedCallback, decode, guess_ids_on
from bot.keyed_locks import KeyedLocks
from bot.ratelimit import UserRateLimiter
from bot.redraws import MessageRedraws
from bot.service import GuessService, StoredGuess, VerdictRefused
from bot.update_log import LoggingApplication
from core.predict import Rejected
from core.text import LINE_END

logger = logging.getLogger(__name__)

SLOW_DOWN = "You're sending messages faster than I can take them. Please wait a minute and try again."
PRESSING_TOO_FAST = "You're pressing buttons faster than I can record them. Please wait a minute."
EMPTY_GUESS = "Send a surname after the command, for example: <code>/guess Nakamura</code>"
APOLOGY = "Sorry, something went wrong on my side. Please try again in a moment."
MAX_NAMES_PER_MESSAGE = 5  # a pasted list is answered line by line, up to this many replies


async def answer(query: CallbackQuery, text: str | None = None, *, show_alert: bool = False) -> None:
    """Answer a button press; an answer Telegram no longer takes (too late, after a backlog) or that could
    not be delivered (a time-out, an outage) is only logged.

    Whatever the press did is stored by then, and the message is still brought up to date after it; an
    apology ("try again") would tell the user it failed.
    """
    try:
        await query.answer(text, show_alert=show_alert)
    except BadRequest as exc:
        # PTB drops "Bad Request: " and capitalizes the rest: "Query is too old ... or query id is invalid".
        reason = exc.message.lower()
        if "query is too old" not in reason and "query id is invalid" not in reason:
            raise
        logger.info("button press answered too late: %s", exc.message)
    except NetworkError as exc:  # retried where that was safe already (bot/outgoing.py)
        logger.warning("could not answer a button press: %r", exc)


async def within_limit(limiter: UserRateLimiter, message: Message, key: int) -> bool:
    """Count ``message`` against ``key``'s limit; over it, say so once a minute and otherwise stay quiet."""
    if limiter.allow(key):
        return True
    if limiter.should_warn(key):
        await message.reply_text(SLOW_DOWN)
    return False


def sender_key(message: Message, user: User) -> int:
    """Whom a message counts against for rate limits: the chat it was sent as, else its user.

    Anonymous group admins all arrive as one user (GroupAnonymousBot), in every group; the chat they
    speak for (``sender_chat``) tells them apart.
    """
    return message.sender_chat.id if message.sender_chat is not None else user.id


class Handlers:
    """The bot's callbacks, bound to one service and per-user rate limiters (messages, button presses)."""

    def __init__(
        self,
        service: GuessService,
        limiter: UserRateLimiter,
        button_limiter: UserRateLimiter,
        *,
        retention_days: int = 0,
    ) -> None:
        self.service = service
        self.limiter = limiter
        self.button_limiter = button_limiter
        self.retention_days = retention_days  # GUESS_RETENTION_DAYS, which /stats mentions
        self.presses = KeyedLocks()  # per guess: one message's presses in turn
        self.redraws = MessageRedraws()  # the messages pressed on, brought up to date apart from the presses

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Explain what the bot does."""
        if update.effective_message and await self._within_limit(update):
            await update.effective_message.reply_html(views.HELP)

    async def _within_limit(self, update: Update) -> bool:
        """Count the message against its sender's limit; over it, say so once a minute and otherwise stay quiet."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return False
        return await within_limit(self.limiter, message, sender_key(message, user))

    async def guess_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/guess <name>, or a name per line after it."""
        message = update.effective_message
        if not (message and message.text):
            return
        # The text after the command, newlines kept: context.args would join a pasted list into one name.
        _command, *rest = message.text.split(maxsplit=1)
        text = rest[0] if rest else ""
        if not text.strip():
            if await self._within_limit(update):  # a bare /guess in a group, sent again and again
                await message.reply_html(EMPTY_GUESS)
            return
        await self._answer_lines(update, message, text)

    async def guess_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A plain message (private chats only) is a name to guess; a pasted list gets an answer per line."""
        message = update.effective_message
        if message and message.text:
            await self._answer_lines(update, message, message.text)

    async def _answer_lines(self, update: Update, message: Message, text: str) -> None:
        """Answer each non-blank line of ``text`` as a name, up to ``MAX_NAMES_PER_MESSAGE``."""
        names = [line for line in LINE_END.split(text) if line.strip()]
        for name in names[:MAX_NAMES_PER_MESSAGE]:
            if not await self._answer_guess(update, name):
                return
        if len(names) > MAX_NAMES_PER_MESSAGE:
            await message.reply_text(views.more_names_than_answered(MAX_NAMES_PER_MESSAGE, len(names)))

    async def _answer_guess(self, update: Update, text: str) -> bool:
        """Guess ``text`` and reply; False when the user is over their rate limit (and was told so)."""
        if update.effective_chat is None or not await self._within_limit(update):
            return False
        message, user, chat = update.effective_message, update.effective_user, update.effective_chat
        assert message is not None and user is not None  # _within_limit needs both
        outcome = await self.service.guess(user_id=user.id, chat_id=chat.id, message_id=message.message_id, text=text)
        if isinstance(outcome, Rejected):
            await message.reply_text(views.refusal_text(text, outcome.reason))
            return True
        await self._send_guess(update, outcome)
        return True

    async def _send_guess(self, update: Update, stored: StoredGuess) -> None:
        assert update.effective_message is not None
        languages = [p.language for p in stored.result.predictions]
        await update.effective_message.reply_html(
            views.guess_text(stored.result), reply_markup=views.short_keyboard(stored.guess_id, languages)
        )

    async def button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Inline-button presses: verdicts, and switching between the short and full keyboards."""
        query = update.callback_query
        if query is None:
            return
        if not self.button_limiter.allow(query.from_user.id):
            # Every press must be answered (or its button spins); the alert, though, once a minute.
            warn = self.button_limiter.should_warn(query.from_user.id)
            await answer(query, PRESSING_TOO_FAST if warn else None, show_alert=warn)
            return
        chat_id = query.message.chat.id if query.message else None
        try:
            payload = decode(query.data)
        except MalformedCallback:
            logger.warning("malformed callback data")  # the update's log line carries the hashed user
            await answer(query, "That button is not one of mine.", show_alert=True)
            return
        if chat_id is None:
            await answer(query, "That message is too old to change.", show_alert=True)
            return
        # callback_data is whatever the client sends, but the message comes from Telegram, keyboard and all: a
        # press must name a guess its message's buttons are about. (A message Telegram no longer shows the bot
        # comes without them, and cannot be checked.)
        message = query.message
        if (
            isinstance(message, Message)
            and message.is_accessible
            and payload.guess_id not in guess_ids_on(message.reply_markup)
        ):
            logger.warning("a press naming a guess its message does not show")
            await answer(query, "That button is not one of mine.", show_alert=True)
            return
        # Presses on one message run one after another. Each stores, answers, then asks for the message to be
        # redrawn; when they interleave, an earlier press's redraw can come last and show a choice no longer stored.
        async with self.presses.hold(payload.guess_id):
            if payload.action is Action.VERDICT:
                await self._record_verdict(query, payload, chat_id)
            else:
                await self._switch_keyboard(query, payload, chat_id)

    async def _switch_keyboard(self, query: CallbackQuery, payload: ButtonPayload, chat_id: int) -> None:
        languages = await self.service.guess_languages(guess_id=payload.guess_id, chat_id=chat_id)
        if languages is None:
            await answer(query, "I can't find that guess any more. Send the name again?", show_alert=True)
            return
        await answer(query)
        keyboard = (
            views.full_keyboard(payload.guess_id)
            if payload.action is Action.OTHER
            else views.short_keyboard(payload.guess_id, languages)
        )

        async def redraw() -> None:
            try:
                await query.edit_message_reply_markup(reply_markup=keyboard)
            except BadRequest as exc:  # "message is not modified" when pressed twice quickly
                logger.info("keyboard unchanged: %s", exc)
            except TelegramError as exc:  # the press was answered; an apology now would say it failed
                logger.warning("could not switch the keyboard: %s", exc)

        self.redraws.request(chat_id, payload.guess_id, redraw, keyboard_only=True)

    async def _record_verdict(self, query: CallbackQuery, payload: ButtonPayload, chat_id: int) -> None:
        assert payload.language is not None
        verdict = await self.service.record_verdict(
            guess_id=payload.guess_id, chat_id=chat_id, user_id=query.from_user.id, language=payload.language
        )
        if isinstance(verdict, VerdictRefused):
            await answer(query, verdict.reason, show_alert=True)
            return
        await answer(query, views.recorded_notice(verdict))
        message = query.message
        # Telegram may send the message without its text (too old to show the bot): then only the buttons change.
        original = message.text_html if isinstance(message, Message) and message.text is not None else None
        markup = views.short_keyboard(payload.guess_id, verdict.top_languages)
        text = None if original is None else views.recorded_text(original, verdict)
        # The same choice again, on a message that shows it: an edit would change nothing, yet count against
        # the chat's limit. Only then: the message is as it was when pressed, and a press in between may
        # have changed it; so may a redraw still waiting or under way, which this one must follow.
        # (PTB's HTML writes ' as &#x27;, ours does not: compared as text.)
        unchanged = text is None or original is None or html.unescape(text) == html.unescape(original)
        shown = isinstance(message, Message) and message.reply_markup == markup and unchanged
        if not verdict.changed and shown and not self.redraws.pending(chat_id, payload.guess_id):
            return

        async def redraw() -> None:
            try:
                if text is None:
                    await query.edit_message_reply_markup(reply_markup=markup)
                else:
                    await query.edit_message_text(text, parse_mode=ParseMode.HTML, reply_markup=markup)
            except BadRequest as exc:  # the same verdict pressed again: the text is already right
                logger.info("message unchanged: %s", exc)
            except TelegramError as exc:  # stored and confirmed: an apology ("try again") would be wrong
                logger.warning("could not show the recorded verdict: %s", exc)

        self.redraws.request(chat_id, payload.guess_id, redraw)

    async def compare(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/compare <name>: GRU and RNN side by side."""
        message = update.effective_message
        if message is None:
            return
        if not await self._within_limit(update):
            return
        text = " ".join(context.args or [])
        if not text.strip():
            await message.reply_html("Send a surname after the command, for example: <code>/compare Rossi</code>")
            return
        outcome = await self.service.compare(text)
        if isinstance(outcome, Rejected):
            await message.reply_text(views.refusal_text(text, outcome.reason))
            return
        await message.reply_html(views.comparison_text(outcome))

    async def stats(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/stats: counts and the live model version."""
        if update.effective_message and await self._within_limit(update):
            stats = await self.service.stats()
            text = views.stats_text(stats, self.service.model_version, self.retention_days)
            await update.effective_message.reply_html(text)

    async def error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log the failure and apologize to the user, if there is one."""
        if isinstance(context.application, LoggingApplication):
            context.application.mark_failed(update)
        # The user blocked the bot, it left the group, or the group became a supergroup: no one to tell here.
        if isinstance(context.error, Forbidden | ChatMigrated):
            logger.info("could not reply: %s", context.error.message)
            return
        logger.error("update failed: %r", context.error, exc_info=context.error)
        if not isinstance(update, Update):
            return
        if update.callback_query is not None:
            # Until a press is answered the user's button spins; an answered press cannot be answered
            # again, and then the apology goes out as a message below.
            try:
                await update.callback_query.answer(APOLOGY, show_alert=True)
                return
            except Exception as exc:  # any failure: the apology goes out as a message instead
                logger.info("could not answer the failed button press: %r", exc)
        if update.effective_message:
            try:
                await update.effective_message.reply_text(APOLOGY)
            except Exception:  # the apology itself failed (network down): logged, never raised
                logger.exception("could not send the apology")
