"""/privacy says what the bot keeps about a user; /forget shows it, and with ``confirm`` deletes it."""

from __future__ import annotations

from telegram import Update
from telegram.constants import ChatType
from telegram.ext import ContextTypes

from bot import views
from bot.handlers import sender_key, within_limit
from bot.ratelimit import UserRateLimiter
from bot.service import GuessService


class PrivacyHandlers:
    """The privacy commands, counted against the same per-user limit as guesses."""

    def __init__(self, service: GuessService, limiter: UserRateLimiter, *, retention_days: int = 0) -> None:
        self.service = service
        self.limiter = limiter
        self.retention_days = retention_days  # GUESS_RETENTION_DAYS, which /privacy states

    async def privacy(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/privacy: what is kept, why, and how to delete it."""
        message, user = update.effective_message, update.effective_user
        if message and user and await within_limit(self.limiter, message, sender_key(message, user)):
            await message.reply_html(views.privacy_text(self.retention_days))

    async def forget(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/forget: what is kept about the sender; /forget confirm: delete it."""
        message, user = update.effective_message, update.effective_user
        if not (message and user and await within_limit(self.limiter, message, sender_key(message, user))):
            return
        if message.sender_chat is not None:
            # Anonymous group admins all arrive as one user, in every group: their guesses cannot be told apart.
            await message.reply_text(views.FORGET_AS_CHAT)
            return
        if message.chat.type != ChatType.PRIVATE:  # the counts, and the deletion, concern no one else there
            await message.reply_text(views.FORGET_IN_PRIVATE)
            return
        arguments = [argument.lower() for argument in context.args or []]
        if not arguments:
            await message.reply_text(views.forget_preview(await self.service.stored_about(user.id)))
        elif arguments == [views.FORGET_CONFIRM_ARGUMENT]:
            await message.reply_text(views.forgotten_text(await self.service.forget(user.id)))
        else:
            await message.reply_text(views.FORGET_USAGE)
