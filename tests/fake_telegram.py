"""A fake Telegram Bot API server on 127.0.0.1 for driving the real python-telegram-bot stack.

It answers the methods the bot uses, holds updates for ``getUpdates`` long polling, renders
HTML replies into text + entities as Telegram does, records every request, and can be told to
fail the next calls of a method with 429 or 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, web

from tests.telegram_html import render, utf16_len

BOT_USER = {
    "id": 1000,
    "is_bot": True,
    "first_name": "nameorigin",
    "username": "nameorigin_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}


@dataclass
class Call:
    """One request the bot made."""

    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


class FakeTelegram:
    """The fake server. ``await start()`` returns the base URL to hand to ``ApplicationBuilder().base_url``."""

    def __init__(self, token: str = "123456:TEST-token") -> None:
        self.token = token
        self.calls: list[Call] = []
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.injected_at: dict[int, float] = {}  # update id -> injection time
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._query_ids = itertools.count(1)
        self._answered: set[str] = set()  # callback query ids: Telegram takes one answer per press
        self._changed = asyncio.Event()  # set, and replaced by a fresh one, at every change
        self._failures: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self._delays: dict[str, list[float]] = {}
        self._disconnects: list[str] = []
        self.webhook: dict[str, str] | None = None  # what setWebhook registered
        # Where webhook deliveries go, in turn (a load balancer in front of replicas); default: the registered URL.
        self.webhook_targets: list[str] = []
        self.deliveries: list[tuple[int, str, int]] = []  # (update id, target, HTTP status)
        self._delivery_turn = itertools.count()
        self._client: ClientSession | None = None
        self._closing = False
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> str:
        """Listen on an ephemeral loopback port."""
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/bot"
        return self.base_url

    async def stop(self) -> None:
        """Close the server, first releasing long polls still waiting (a stopped bot leaves one behind)."""
        self._closing = True
        self._notify()
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- scripting -------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int,
        *,
        times: int = 1,
        retry_after: int | None = None,
        description: str | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with an error ``status`` (and Telegram's ``description``)."""
        text = description or f"Injected error {status}"
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": text}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        self._failures.setdefault(method, []).extend([(status, body)] * times)

    def disconnect_next(self, method: str) -> None:
        """Carry out the next call of ``method``, then drop the connection before answering (a lost reply)."""
        self._disconnects.append(method)

    def delay_next(self, method: str, seconds: float) -> None:
        """Answer the next call of ``method`` only after ``seconds`` (a slow Telegram)."""
        self._delays.setdefault(method, []).append(seconds)

    def inject(self, update: dict[str, Any]) -> int:
        """Send the bot a raw update of any kind (an edit, a business message...); returns its id."""
        update_id = next(self._update_ids)
        update["update_id"] = update_id
        self.injected_at[update_id] = time.monotonic()
        if self.webhook is not None:  # as Telegram does: a webhook replaces getUpdates
            targets = self.webhook_targets or [self.webhook["url"]]
            target = targets[next(self._delivery_turn) % len(targets)]
            asyncio.get_running_loop().create_task(self._deliver(update, target, self.webhook.get("secret_token")))
            return update_id
        self._updates.append(update)
        self._notify()
        return update_id

    async def post_update(self, update: dict[str, Any], url: str, secret: str | None) -> int:
        """POST one update to ``url`` with ``secret`` in Telegram's header; returns the HTTP status."""
        if self._client is None:
            self._client = ClientSession()
        headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
        async with self._client.post(url, json=update, headers=headers) as response:
            return response.status

    async def _deliver(self, update: dict[str, Any], target: str, secret: str | None) -> None:
        status = await self.post_update(update, target, secret)
        self.deliveries.append((update["update_id"], target, status))
        self._notify()

    def _notify(self) -> None:
        # Without awaiting: a handler records a call and answers it in one step, so no waiter sees the call
        # before its message is stored (a Condition's lock, held by a waiter just woken, made the handler yield).
        self._changed.set()
        self._changed = asyncio.Event()

    async def _next_change(self, deadline: float) -> None:
        """Wait for the next change, or until ``deadline``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), max(0.0, deadline - time.monotonic()))

    def user(self, user_id: int) -> dict[str, Any]:
        """A user object."""
        return {"id": user_id, "is_bot": False, "first_name": f"User{user_id}", "language_code": "en"}

    def inject_message(self, user_id: int, text: str, chat_id: int | None = None) -> int:
        """A user sends ``text``; returns the update id."""
        chat_id = user_id if chat_id is None else chat_id
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group", "title": "chat"},
            "from": self.user(user_id),
            "text": text,
        }
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": utf16_len(command)}]
        return self.inject({"message": message})

    def inject_callback(self, user_id: int, chat_id: int, message_id: int, data: str, *, with_text: bool = True) -> int:
        """A user presses a button carrying ``data`` under message ``message_id``.

        ``with_text=False`` sends the message as Telegram does once it no longer shows it to the bot:
        chat and id only, date 0.
        """
        message = self.messages.get((chat_id, message_id)) or {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": BOT_USER,
            "text": "old message",
        }
        if not with_text:
            message = {"message_id": message_id, "date": 0, "chat": message["chat"]}
        query = {
            "id": str(next(self._query_ids)),
            "from": self.user(user_id),
            "message": message,
            "chat_instance": str(chat_id),
            "data": data,
        }
        return self.inject({"callback_query": query})

    # ---- reading back ----------------------------------------------------------------------------

    def last_bot_message_id(self, chat_id: int) -> int:
        """Id of the newest message the bot sent to ``chat_id``."""
        return max(message_id for (chat, message_id) in self.messages if chat == chat_id)

    def sent(self, method: str | None = None, chat_id: int | None = None) -> list[Call]:
        """Recorded calls, optionally of one method and to one chat."""
        return [
            c
            for c in self.calls
            if (method is None or c.method == method)
            and (chat_id is None or int(c.params.get("chat_id", 0)) == chat_id)
        ]

    async def wait_for(self, predicate: Callable[[Call], bool], timeout: float = 10.0) -> Call:
        """The first recorded call matching ``predicate``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for call in self.calls:
                if predicate(call):
                    return call
            if time.monotonic() >= deadline:
                raise TimeoutError("no matching call to the fake Bot API")
            await self._next_change(deadline)

    async def wait_for_count(self, method: str, count: int, timeout: float = 30.0) -> list[Call]:
        """Wait until at least ``count`` calls of ``method`` were made."""
        deadline = time.monotonic() + timeout
        while len(self.sent(method)) < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"only {len(self.sent(method))} of {count} {method} calls")
            await self._next_change(deadline)
        return self.sent(method)

    # ---- the API ---------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params = await self._params(request)
        call = Call(method, params)
        if method != "getUpdates":
            self.calls.append(call)
            self._notify()
        delays = self._delays.get(method)
        if delays:
            await asyncio.sleep(delays.pop(0))
        failures = self._failures.get(method)
        if failures:
            status, body = failures.pop(0)
            return web.json_response(body, status=status)
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return web.json_response({"ok": True, "result": True})
        try:
            result = await handler(params)
        except ValueError as exc:
            return web.json_response({"ok": False, "error_code": 400, "description": str(exc)}, status=400)
        if method in self._disconnects:
            self._disconnects.remove(method)
            assert request.transport is not None
            request.transport.close()  # done, but the bot never hears so
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            data: dict[str, Any] = await request.json()
            return data
        form = await request.post()
        params: dict[str, Any] = {}
        for key, value in form.items():
            text = str(value)
            try:
                params[key] = json.loads(text) if text[:1] in "[{" else text
            except json.JSONDecodeError:
                params[key] = text
        return params

    async def _api_getMe(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return BOT_USER

    async def _api_setWebhook(self, params: dict[str, Any]) -> bool:  # noqa: N802
        self.webhook = {"url": str(params["url"]), "secret_token": str(params.get("secret_token", ""))}
        return True

    async def _api_deleteWebhook(self, params: dict[str, Any]) -> bool:  # noqa: N802
        self.webhook = None
        return True

    async def _api_getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:  # noqa: N802
        offset = int(params.get("offset", 0) or 0)
        timeout = float(params.get("timeout", 0) or 0)
        limit = int(params.get("limit", 100) or 100)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        deadline = time.monotonic() + timeout
        while not self._updates and not self._closing and time.monotonic() < deadline:
            await self._next_change(deadline)
        return self._updates[:limit]

    def _store(self, chat_id: int, text: str, params: dict[str, Any], message_id: int | None = None) -> dict[str, Any]:
        plain, entities = render(text, params.get("parse_mode"))
        if not plain.strip():
            raise ValueError("Bad Request: message text is empty")
        if len(plain) > 4096:
            raise ValueError("Bad Request: message is too long")
        message: dict[str, Any] = {
            "message_id": message_id or next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group", "title": "chat"},
            "from": BOT_USER,
            "text": plain,
        }
        if entities:
            message["entities"] = entities
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        self.messages[(chat_id, message["message_id"])] = message
        return message

    async def _api_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return self._store(int(params["chat_id"]), str(params["text"]), params)

    async def _api_answerCallbackQuery(self, params: dict[str, Any]) -> bool:  # noqa: N802
        if str(params["callback_query_id"]) in self._answered:
            raise ValueError("Bad Request: query is too old and response timeout expired or query ID is invalid")
        self._answered.add(str(params["callback_query_id"]))
        return True

    async def _api_editMessageText(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        key = (int(params["chat_id"]), int(params["message_id"]))
        if key not in self.messages:
            raise ValueError("Bad Request: message to edit not found")
        old = self.messages[key]
        plain, _ = render(str(params["text"]), params.get("parse_mode"))
        if plain == old["text"] and params.get("reply_markup") == old.get("reply_markup"):
            raise ValueError("Bad Request: message is not modified")
        return self._store(key[0], str(params["text"]), params, message_id=key[1])

    async def _api_editMessageReplyMarkup(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        key = (int(params["chat_id"]), int(params["message_id"]))
        if key not in self.messages:
            raise ValueError("Bad Request: message to edit not found")
        message = self.messages[key]
        if params.get("reply_markup") == message.get("reply_markup"):
            raise ValueError("Bad Request: message is not modified")
        message["reply_markup"] = params.get("reply_markup")
        return message
