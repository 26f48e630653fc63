"""Chats and their settings: default collection, language, who may use the bot, the digest;
and where Telegram moved a chat.

A chat without a row has the defaults of `ChatSettings`; the first change creates its row.
Settings change only through `update_chat` in this process, so they are cached here: every
photo reads them. The cache keeps the CHAT_CACHE most recently used chats (any Telegram user can
write to the bot, so it must not grow with strangers).

A group upgraded to a supergroup gets a new id (Telegram says so in a service message of each
chat, and answers sends to the old id with the new one). `migrate_chat` moves everything kept
under the old id to the new one in one transaction, and remembers the pair (`chat_migrations`):
the old id on the allowlist admits the new one. Message ids stay where they were sent: a
photo's `(chat_id, message_id)` is its address in the old chat (the supergroup numbers its
messages anew, so moving them could make a later photo there look like one already stored);
what would point into the new chat with an old chat's message id (a reply target, an edit, a
reaction, a link) is dropped, and the chat port asks `made_elsewhere` whether a submission's
photos were sent in the old chat (they keep its id) before it replies or reacts. A question
the old chat was asked and did not answer is asked again in the new one (a reply there cannot
name the old message). The duplicate guard (storage/choices.py) looks for a chat's earlier
photos under every id the chat had.

A forum topic's name is remembered when a message shows it (`topics`), so results for a topic
that was deleted or closed can name it where they go instead.

A daily digest to a chat that is gone counts its failed tries (`digest_failures`); past a bound
no digest is owed until the chat speaks again (`chat_spoke`).
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from storage.db import Database, Tx
from storage.models import ChatSettings, State
from storage.owed import Kind, board_row, owe

CHAT_CACHE = 4096
TOPIC_CACHE = 4096

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
        "reactions_refused_at",
        "duplicate_guard",
        "digest_time",
        "timezone",
        "digest_last_day",
        "digest_until",
        "digest_failures",
    }
)


class Chats:
    """The `chats` table; see the module doc."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._chats: OrderedDict[int, ChatSettings] = OrderedDict()
        # Group upgrades (few: one per group, ever), loaded at first use: old id -> new id,
        # and new id -> when it took the old one's rows.
        self._successors: dict[int, int] | None = None
        self._moved_at: dict[int, float] = {}
        self._topics: OrderedDict[tuple[int, int], str] = OrderedDict()
        # Chats whose digest stopped (gone, too many failed tries): `chat_spoke` looks here
        # first, so an ordinary update costs no database trip. None: not loaded yet.
        self._silenced: set[int] | None = None

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
        if self._silenced is not None:
            if settings.reachable and not row["digest_failures"]:
                self._silenced.discard(chat_id)
            else:
                self._silenced.add(chat_id)
        return settings

    async def digest_chats(self) -> list[ChatSettings]:
        """Chats with a daily digest turned on (also those that blocked the bot: their digest
        is tried a few times; `digests_stopped` names those where that failed)."""
        async with self.db.reading() as tx:
            rows = await tx.all(
                "SELECT * FROM chats WHERE digest_time IS NOT NULL ORDER BY chat_id"
            )
        return [ChatSettings.from_row(row) for row in rows]

    # Groups upgraded to supergroups ------------------------------------------------------

    async def _migrations(self) -> dict[int, int]:
        if self._successors is None:
            async with self.db.reading() as tx:
                rows = await tx.all("SELECT * FROM chat_migrations")
            successors: dict[int, int] = {}
            moved: dict[int, float] = {}
            for row in rows:
                successors[int(row["old_chat_id"])] = int(row["new_chat_id"])
                new = int(row["new_chat_id"])
                moved[new] = min(moved.get(new, row["migrated_at"]), row["migrated_at"])
            self._successors, self._moved_at = successors, moved
        return self._successors

    async def predecessors(self, chat_id: int) -> list[int]:
        """The ids this chat had before Telegram upgraded it (oldest last)."""
        successors = await self._migrations()
        found: list[int] = []
        frontier = [chat_id]
        while frontier:
            current = frontier.pop()
            for old, new in successors.items():
                if new == current and old not in found:
                    found.append(old)
                    frontier.append(old)
        return found

    async def successor(self, chat_id: int) -> int | None:
        """Where this chat went, if Telegram upgraded it (followed to the end)."""
        return _followed(await self._migrations(), [chat_id]).get(chat_id)

    async def successors_of(self, chat_ids: Iterable[int]) -> dict[int, int]:
        """Those of `chat_ids` that Telegram upgraded, with the id each ended up with."""
        return _followed(await self._migrations(), chat_ids)

    async def moved_at(self, chat_id: int) -> float | None:
        """When this chat took over the rows of the group it was upgraded from (None: never).
        A submission created before then has its message ids in the old chat."""
        await self._migrations()
        return self._moved_at.get(chat_id)

    async def made_elsewhere(self, sub_id: int, chat_id: int) -> bool:
        """Whether a submission's photos were sent in another chat than `chat_id` (the
        group it came from before an upgrade): its message ids are that chat's."""
        if await self.moved_at(chat_id) is None:
            return False  # the common case, without a database trip
        async with self.db.reading() as tx:
            row = await tx.one(
                "SELECT p.chat_id FROM submissions s JOIN photos p"
                " ON p.submission_id = COALESCE(s.retry_of, s.id) WHERE s.id = ? LIMIT 1",
                (sub_id,),
            )
        return row is not None and int(row[0]) != chat_id

    async def migrate_chat(self, old: int, new: int, now: float) -> dict[str, int]:
        """Move everything kept under `old` to `new` (a group upgraded to a supergroup), in
        one transaction; idempotent (a second call moves what was written for `old` since).
        Returns how many rows of each kind moved ("questions": submissions made due to be
        asked again in the new chat)."""
        if old == new:
            return {}
        async with self.db.transaction() as tx:
            moved = await _migrate(tx, old, new, now)
            row = await tx.one(
                "SELECT migrated_at FROM chat_migrations WHERE old_chat_id = ?", (old,)
            )
        await self._migrations()
        assert self._successors is not None
        self._successors[old] = new
        if row is not None:
            self._moved_at[new] = min(self._moved_at.get(new, row[0]), row[0])
        for chat_id in (old, new):
            self._chats.pop(chat_id, None)
        if self._silenced is not None:
            self._silenced.discard(old)
        return moved

    # Forum topics ------------------------------------------------------------------------

    async def remember_topic(self, chat_id: int, thread_id: int, name: str) -> None:
        """A topic's name as a message showed it (written only when it changed)."""
        key = (chat_id, thread_id)
        if self._topics.get(key) == name:
            self._topics.move_to_end(key)
            return
        async with self.db.transaction(durable=False) as tx:
            await tx.execute(
                "INSERT INTO topics (chat_id, thread_id, name) VALUES (?, ?, ?)"
                " ON CONFLICT (chat_id, thread_id) DO UPDATE SET name = excluded.name",
                (chat_id, thread_id, name),
            )
        self._cache_topic(key, name)

    async def topic_name(self, chat_id: int, thread_id: int) -> str | None:
        key = (chat_id, thread_id)
        if key in self._topics:
            self._topics.move_to_end(key)
            return self._topics[key]
        async with self.db.reading() as tx:
            row = await tx.one("SELECT name FROM topics WHERE chat_id = ? AND thread_id = ?", key)
        if row is None:
            return None
        self._cache_topic(key, str(row[0]))
        return str(row[0])

    def _cache_topic(self, key: tuple[int, int], name: str) -> None:
        self._topics[key] = name
        self._topics.move_to_end(key)
        while len(self._topics) > TOPIC_CACHE:
            self._topics.popitem(last=False)

    # Digests to chats that are gone ------------------------------------------------------

    async def _silenced_chats(self) -> set[int]:
        if self._silenced is None:
            async with self.db.reading() as tx:
                rows = await tx.all(
                    "SELECT chat_id FROM chats WHERE digest_failures > 0 OR reachable = 0"
                )
            self._silenced = {int(r[0]) for r in rows}
        return self._silenced

    async def digest_failed(self, chat_id: int, now: float) -> int:
        """A digest could not be delivered (the chat is gone): one more failed try; how
        many in a row."""
        async with self.db.transaction(durable=False) as tx:
            await tx.execute(
                "INSERT INTO chats (chat_id, updated_at) VALUES (?, ?)"
                " ON CONFLICT (chat_id) DO NOTHING",
                (chat_id, now),
            )
            await tx.execute(
                "UPDATE chats SET digest_failures = digest_failures + 1 WHERE chat_id = ?",
                (chat_id,),
            )
            row = await tx.one("SELECT digest_failures FROM chats WHERE chat_id = ?", (chat_id,))
        (await self._silenced_chats()).add(chat_id)
        return int(row[0]) if row else 0

    async def digests_stopped(self, tries: int) -> set[int]:
        """Chats whose digest failed `tries` times in a row (gone): none is owed to them."""
        async with self.db.reading() as tx:
            rows = await tx.all("SELECT chat_id FROM chats WHERE digest_failures >= ?", (tries,))
        return {int(r[0]) for r in rows}

    async def digest_failures(self, chat_id: int) -> int:
        async with self.db.reading() as tx:
            row = await tx.one("SELECT digest_failures FROM chats WHERE chat_id = ?", (chat_id,))
        return int(row[0]) if row else 0

    async def chat_spoke(self, chat_id: int, now: float) -> bool:
        """An update came from this chat: it is there again (reachable, its digest tried
        again). Costs nothing for a chat that was never silenced. True if it was."""
        silenced = await self._silenced_chats()
        if chat_id not in silenced:
            return False
        async with self.db.transaction(durable=False) as tx:
            n = await tx.execute(
                "UPDATE chats SET digest_failures = 0, reachable = 1, updated_at = ?"
                " WHERE chat_id = ? AND (digest_failures > 0 OR reachable = 0)",
                (now, chat_id),
            )
        silenced.discard(chat_id)
        self._chats.pop(chat_id, None)
        return n > 0

    async def chat_reachable_again(self, chat_id: int, now: float) -> None:
        """A message reached the chat: it takes messages again, its digest too."""
        await self.update_chat(chat_id, now, reachable=True, digest_failures=0)
        if self._silenced is not None:
            self._silenced.discard(chat_id)


def read_successors(path: Path, chat_ids: Iterable[int]) -> dict[int, int]:
    """`Chats.successors_of` read-only, without migrating (the bot may be running; `check`):
    empty when the database does not exist or knows no upgrade yet."""
    if not path.exists():
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "chat_migrations" not in tables:
            return {}
        rows = conn.execute("SELECT old_chat_id, new_chat_id FROM chat_migrations").fetchall()
    finally:
        conn.close()
    return _followed({int(old): int(new) for old, new in rows}, chat_ids)


def _followed(successors: Mapping[int, int], chat_ids: Iterable[int]) -> dict[int, int]:
    """Each of `chat_ids` that moved, followed to the id it has now (a chain ends where it
    loops or stops)."""
    found: dict[int, int] = {}
    for chat_id in chat_ids:
        current, seen = chat_id, {chat_id}
        while current in successors and successors[current] not in seen:
            current = successors[current]
            seen.add(current)
        if current != chat_id:
            found[chat_id] = current
    return found


async def _migrate(tx: Tx, old: int, new: int, now: float) -> dict[str, int]:
    """The moves of `migrate_chat`, inside its transaction."""
    moved: dict[str, int] = {}
    await tx.execute(
        "INSERT INTO chat_migrations (old_chat_id, new_chat_id, migrated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (old_chat_id) DO NOTHING",
        (old, new, now),
    )
    # Settings: the old group's (set deliberately by the team) win over a row the new id
    # may have got meanwhile (reachability, reactions seen); the new id takes messages.
    if await tx.one("SELECT 1 FROM chats WHERE chat_id = ?", (old,)) is not None:
        await tx.execute("DELETE FROM chats WHERE chat_id = ?", (new,))
        moved["chats"] = await tx.execute(
            "UPDATE chats SET chat_id = ?, reachable = 1, digest_failures = 0, updated_at = ?"
            " WHERE chat_id = ?",
            (new, now, old),
        )
    # A question asked there (a collection to pick, fields to give, the duplicate guard)
    # cannot be answered any more: the group is read-only now, and a reply from the new chat
    # does not say which message it answers (the supergroup numbers its messages anew, and
    # a reply across chats names the message only when it is in a supergroup or channel:
    # the Bot API's `external_reply`). So a submission that waits for the user, and whose
    # question went out, is due again: the tracker asks afresh, in the new chat. One whose
    # question is still owed gets it there (the outbox moves below).
    moved["questions"] = await tx.execute(
        "UPDATE submissions SET next_action_at = ?, updated_at = ? WHERE chat_id = ?"
        " AND state = ? AND next_action_at IS NULL AND collecting = 0 AND NOT EXISTS"
        " (SELECT 1 FROM outbox o WHERE o.submission_id = submissions.id AND o.kind = ?)",
        (now, now, old, State.RECEIVED.value, Kind.QUESTION.value),
    )
    # Submissions: the message ids they recorded are the old chat's. A prompt cannot be
    # answered there any more and an analysing message not edited; the results message id
    # stays (history keeps its own copy, cleared below).
    moved["submissions"] = await tx.execute(
        "UPDATE submissions SET chat_id = ?, prompt_message_id = NULL,"
        " progress_message_id = NULL WHERE chat_id = ?",
        (new, old),
    )
    moved["history"] = await tx.execute(
        "UPDATE results_history SET chat_id = ?, message_id = NULL, message_link = NULL"
        " WHERE chat_id = ?",
        (new, old),
    )
    # A pending `/scan` choice: a newer one in the new chat stays.
    moved["pending_scans"] = await tx.execute(
        "UPDATE OR IGNORE pending_scans SET chat_id = ? WHERE chat_id = ?", (new, old)
    )
    await tx.execute("DELETE FROM pending_scans WHERE chat_id = ?", (old,))
    # Boards: their messages are in the old chat (neither editable nor deletable now); the
    # new chat gets its own at the next refresh, owed here for each topic that had one.
    threads = await tx.all("SELECT thread_id FROM boards WHERE chat_id = ?", (old,))
    await tx.execute("DELETE FROM boards WHERE chat_id = ?", (old,))
    # The outbox: edits and reactions aim at the old chat's messages (gone with it); what
    # is still to be sent goes to the new id, replying to nothing (its reply targets are
    # in the old chat).
    await tx.execute(
        "DELETE FROM outbox WHERE chat_id = ? AND kind IN (?, ?, ?, ?)",
        (old, Kind.EDIT.value, Kind.REACT.value, Kind.PROGRESS.value, Kind.BOARD.value),
    )
    moved["outbox"] = await tx.execute(
        "UPDATE outbox SET chat_id = ?, reply_to = NULL, not_before = 0 WHERE chat_id = ?",
        (new, old),
    )
    if moved["outbox"]:
        tx.owed.add(new)  # wakes the delivery loop for the new id
    await owe(tx, [board_row(new, r[0] or None) for r in threads], now)
    await tx.execute("UPDATE OR IGNORE topics SET chat_id = ? WHERE chat_id = ?", (new, old))
    await tx.execute("DELETE FROM topics WHERE chat_id = ?", (old,))
    return moved
