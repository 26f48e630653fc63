"""Drive the real bot through the sandbox: act as Telegram users, read what the bot sent, and
read what reached Resell Scan. Every wait polls with a deadline; nothing sleeps blindly."""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bot.app import running
from bot.config import Settings
from sandbox.data import fake_jpeg
from sandbox.server import SandboxThread, free_port

# The composition root's own context manager: start the whole bot, stop it on the way out.
bot_running = running

TOKEN = "123456:TEST-token-abcdefghijklmnop"
WEBHOOK_SECRET = "whsec_dGVzdC13ZWJob29rLXNlY3JldA"


class MovedClock:
    """The bot's clock (`bot_running(settings, clock=...)`): wall time that can be moved.
    Real seconds pass as they do (album windows, polls, Telegram's send limits); `set` jumps
    to an instant, `advance` adds simulated seconds, so what is due comes due at once."""

    def __init__(self, when: datetime | None = None) -> None:
        self.offset = 0.0
        if when is not None:
            self.set(when)

    def set(self, when: datetime) -> None:
        self.offset = when.timestamp() - time.time()

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def __call__(self) -> float:
        return time.time() + self.offset


ANNA = {"id": 101, "first_name": "Anna", "last_name": "Berg", "language_code": "en"}
BEN = {"id": 102, "first_name": "Ben", "language_code": "en"}
CARLA = {"id": 103, "first_name": "Carla", "language_code": "de"}
MALLORY = {"id": 666, "first_name": "Mallory", "language_code": "en"}

_seeds = itertools.count(1)


def make_settings(sandbox: SandboxThread, tmp_path: Path, **overrides: Any) -> Settings:
    port = overrides.pop("http_port", None) or free_port()
    values: dict[str, Any] = {
        "telegram_bot_token": TOKEN,
        "telegram_api_base_url": sandbox.url,
        "telegram_poll_timeout": 1,
        "resell_scan_api_key": "rs_test_full",
        "resell_scan_base_url": sandbox.api_url,
        "resell_scan_max_attempts": 3,
        "resell_scan_retry_total": 10,
        "http_host": "127.0.0.1",
        "http_port": port,
        "public_base_url": f"http://127.0.0.1:{port}",
        "database_path": tmp_path / "bot.sqlite3",
        "allowed_user_ids": [ANNA["id"], BEN["id"], CARLA["id"]],
        "album_window_seconds": 0.3,
        "album_max_wait_seconds": 3.0,
        "poll_initial_seconds": 0.2,
        "poll_max_seconds": 1.0,
        "poll_budget_per_second": 50,
        "progress_edit_interval_seconds": 0,
        "reconcile_settle_seconds": 0.3,
        "log_level": "INFO",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


class Harness:
    def __init__(self, sandbox: SandboxThread, http: httpx.AsyncClient) -> None:
        self.sandbox = sandbox
        self.http = http

    # Acting as users --------------------------------------------------------------------------

    async def upload(
        self, data: bytes | None = None, *, mime: str = "image/jpeg", file_size: int | None = None
    ) -> str:
        data = fake_jpeg(f"photo-{next(_seeds)}") if data is None else data
        body: dict[str, Any] = {"data_b64": base64.b64encode(data).decode(), "mime_type": mime}
        if file_size is not None:
            body["file_size"] = file_size
        response = await self.http.post("/sandbox/telegram/files", json=body)
        response.raise_for_status()
        file_id: str = response.json()["file_id"]
        return file_id

    async def message(
        self, user: dict[str, Any], chat: dict[str, Any] | None = None, **fields: Any
    ) -> int:
        body = {"from": user, **fields}
        if chat is not None:
            body["chat"] = chat
        response = await self.http.post("/sandbox/telegram/messages", json=body)
        response.raise_for_status()
        message_id: int = response.json()["message_id"]
        return message_id

    async def photo(
        self,
        user: dict[str, Any],
        chat: dict[str, Any] | None = None,
        *,
        caption: str | None = None,
        data: bytes | None = None,
        **fields: Any,
    ) -> int:
        file_id = await self.upload(data)
        return await self.message(user, chat, photo_file_id=file_id, caption=caption, **fields)

    async def album(
        self,
        user: dict[str, Any],
        chat: dict[str, Any] | None = None,
        *,
        count: int,
        caption: str | None = None,
        caption_on: int = 0,
        order: list[int] | None = None,
        group_id: str | None = None,
        base_message_id: int = 0,
        **fields: Any,
    ) -> list[int]:
        """Send `count` photos sharing a media_group_id, delivered in `order` (indexes)."""
        group = group_id or f"album-{next(_seeds)}"
        file_ids = [await self.upload() for _ in range(count)]
        ids = []
        for index in order or list(range(count)):
            extra = dict(fields)
            if base_message_id:
                extra["message_id"] = base_message_id + index
            ids.append(
                await self.message(
                    user,
                    chat,
                    photo_file_id=file_ids[index],
                    media_group_id=group,
                    caption=caption if index == caption_on else None,
                    **extra,
                )
            )
        return ids

    async def text(
        self, user: dict[str, Any], text: str, chat: dict[str, Any] | None = None, **fields: Any
    ) -> int:
        return await self.message(user, chat, text=text, **fields)

    async def document(
        self,
        user: dict[str, Any],
        *,
        name: str,
        mime: str,
        data: bytes | None = None,
        file_size: int | None = None,
        chat: dict[str, Any] | None = None,
        caption: str | None = None,
    ) -> int:
        file_id = await self.upload(
            data if data is not None else fake_jpeg(name), mime=mime, file_size=file_size
        )
        return await self.message(
            user,
            chat,
            document={"file_id": file_id, "file_name": name, "mime_type": mime},
            caption=caption,
        )

    async def press(self, user: dict[str, Any], chat_id: int, message_id: int, data: str) -> None:
        response = await self.http.post(
            "/sandbox/telegram/callback",
            json={"from": user, "chat_id": chat_id, "message_id": message_id, "data": data},
        )
        response.raise_for_status()

    async def chat(self, **spec: Any) -> dict[str, Any]:
        response = await self.http.post("/sandbox/telegram/chats", json=spec)
        response.raise_for_status()
        chat: dict[str, Any] = response.json()["chat"]
        return chat

    # Reading what happened --------------------------------------------------------------------

    async def sent(self, chat_id: int) -> list[dict[str, Any]]:
        response = await self.http.get("/sandbox/telegram/sent", params={"chat_id": chat_id})
        actions: list[dict[str, Any]] = response.json()["actions"]
        return actions

    async def wait_sent(
        self,
        chat_id: int,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        within: float = 15.0,
        what: str = "a message",
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for action in await self.sent(chat_id):
                if predicate(action):
                    return action
            await asyncio.sleep(0.03)
        seen = [(a["kind"], (a.get("text") or "")[:80]) for a in await self.sent(chat_id)]
        raise AssertionError(f"timed out waiting for {what} in chat {chat_id}; saw {seen}")

    async def wait_text(self, chat_id: int, needle: str, **kw: Any) -> dict[str, Any]:
        return await self.wait_sent(
            chat_id,
            lambda a: a["kind"] in ("send", "document") and needle in (a.get("text") or ""),
            what=repr(needle),
            **kw,
        )

    async def rs_requests(
        self, path: str | None = None, method: str | None = None
    ) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("path", path), ("method", method)) if v}
        response = await self.http.get("/sandbox/requests", params=params)
        items: list[dict[str, Any]] = response.json()["requests"]
        return items

    async def deliveries(self) -> list[dict[str, Any]]:
        """Every webhook delivery attempt the sandbox made."""
        response = await self.http.get("/sandbox/webhooks/deliveries")
        items: list[dict[str, Any]] = response.json()["deliveries"]
        return items

    async def creates(self) -> list[dict[str, Any]]:
        return [
            r
            for r in await self.rs_requests("/products/createAndAnalyze")
            if r.get("status") == 201
        ]

    async def lose_next_upload_answer(self) -> None:
        """The next createAndAnalyze loses its answer (dropped before Resell Scan processed
        it) and looking the photos up is refused (403): the one case where the bot must ask."""
        await self.rs(
            "/sandbox/faults",
            {
                "rules": [
                    {"drop_count": 1, "drop_after_processing": False, "match": "createAndAnalyze"},
                    {
                        "error_rate": 1.0,
                        "error_status": 403,
                        "pattern": "^/collections/.+/products$",
                    },
                ]
            },
        )

    async def rs(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post(path, json=body)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


def results_replies(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        a
        for a in actions
        if (a["kind"] == "send" and "Results" in (a.get("text") or ""))
        or (a["kind"] == "send" and "Ergebnisse" in (a.get("text") or ""))
    ]
