"""Chats and their settings: default collection, language, who may use the bot, the digest.

A chat without a row has the defaults of `ChatSettings`; the first change creates its row.
Settings change only through `update_chat` in this process, so they are cached here: every
photo reads them. The cache keeps the CHAT_CACHE most recently used chats (any Telegram user can
write to the bot, so it must not grow with strangers).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from storage.db import Database
from storage.models import ChatSettings

CHAT_CACHE = 4096

# The columns `update_chat` may set (they are put into the SQL by name).
SETTINGS = frozenset(
    {
        "default_collection_id",
        "default_collection_name",
        "remove_background",
        "language",
        "admin_only",
        "reachable",
        "analysing_message",
        "reactions",
        "duplicate_guard",
        "digest_time",
        "timezone",
        "digest_last_day",
    }
)


class Chats:
    """The `chats` table; see the module doc."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._chats: OrderedDict[int, ChatSettings] = OrderedDict()

    async def chat(self, chat_id: int) -> ChatSettings:
        cached = self._chats.get(chat_id)
        if cached is not None:
            self._chats.move_to_end(chat_id)
            return cached
        async with self.db.reading() as tx:
            row = await tx.one("SELECT * FROM chats WHERE chat_id = ?", (chat_id,))
        newer = self._chats.get(chat_id)
        if newer is not None:  # an update_chat committed (and cached) while this read ran
            return newer
        settings = ChatSettings.from_row(row) if row else ChatSettings(chat_id=chat_id)
        self._cache(settings)
        return settings

    def _cache(self, settings: ChatSettings) -> None:
        self._chats[settings.chat_id] = settings
        self._chats.move_to_end(settings.chat_id)
        while len(self._chats) > CHAT_CACHE:
            self._chats.popitem(last=False)

    async def update_chat(self, chat_id: int, now: float, **values: Any) -> ChatSettings:
        unknown = set(values) - SETTINGS
        if unknown:
            raise ValueError(f"unknown chat settings: {sorted(unknown)}")
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO chats (chat_id, updated_at) VALUES (?, ?) "
                "ON CONFLICT (chat_id) DO NOTHING",
                (chat_id, now),
            )
            if values:
                sets = ", ".join(f"{k} = ?" for k in values)
                await tx.execute(
                    f"UPDATE chats SET {sets}, updated_at = ? WHERE chat_id = ?",  # noqa: S608 (names from SETTINGS)
                    (*values.values(), now, chat_id),
                )
            row = await tx.one("SELECT * FROM chats WHERE chat_id = ?", (chat_id,))
        assert row is not None
        settings = ChatSettings.from_row(row)
        self._cache(settings)
        return settings

    async def digest_chats(self) -> list[ChatSettings]:
        """Chats with a daily digest turned on (also those that blocked the bot: one try a
        day finds out whether it is back, as nothing else marks a chat reachable again)."""
        async with self.db.reading() as tx:
            rows = await tx.all(
                "SELECT * FROM chats WHERE digest_time IS NOT NULL ORDER BY chat_id"
            )
        return [ChatSettings.from_row(row) for row in rows]
