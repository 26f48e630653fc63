"""One SQLite connection (the single writer), its pragmas, transactions and migrations.

Choices, per RELIABILITY.md:
- WAL, so status readers never block the writer.
- synchronous=FULL: our write volume is tiny (a few rows per photo), and a photo the bot has
  acknowledged to Telegram must survive a power loss too, because Telegram will not send it again.
  NORMAL would be faster but can lose the last commits on power loss.
- One connection for everything, guarded by an asyncio lock: statements of two coroutines never
  interleave inside one transaction, and a single writer avoids SQLITE_BUSY inside the process and
  the WAL-reset bug that needs two writers.
- BEGIN IMMEDIATE for every write transaction: a deferred one that upgrades can fail with
  SQLITE_BUSY at once, ignoring busy_timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000

T = TypeVar("T")
_BEGIN = "BEGIN IMMEDIATE"
_FULL = "PRAGMA synchronous = FULL"


class StorageError(Exception):
    """The database cannot be used (newer than this code, or a migration failed)."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: Sequence[str]
    # A table rebuild (new table, copy, drop, rename): foreign key enforcement must be off,
    # and since that pragma is a no-op inside a transaction, it is switched outside of it.
    rebuild: bool = False


class Database:
    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        # asyncio.Lock binds to a loop on first use (3.10+), so building it here is safe.
        self._lock = asyncio.Lock()
        # Called after a COMMIT that wrote outbox rows, with their chats (wakes delivery).
        self.on_owed: Callable[[set[int]], None] | None = None

    @classmethod
    async def open(
        cls, path: Path | str, migrations: Sequence[Migration] | None = None
    ) -> Database:
        from storage.migrations import MIGRATIONS

        path = Path(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        conn.row_factory = sqlite3.Row
        db = cls(conn, path)
        try:
            await db._configure()
            await db.migrate(MIGRATIONS if migrations is None else migrations)
        except BaseException:
            await conn.close()
            raise
        return db

    async def _configure(self) -> None:
        await self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await self._conn.execute("PRAGMA journal_mode = WAL")
        await self._conn.execute("PRAGMA synchronous = FULL")
        await self._conn.execute("PRAGMA foreign_keys = ON")
        log.info("sqlite %s opened %s", sqlite3.sqlite_version, self.path)

    async def close(self) -> None:
        await self._conn.close()

    @contextlib.asynccontextmanager
    async def transaction(self, *, durable: bool = True) -> AsyncIterator[Tx]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any failure, the COMMIT's included: a
        failed COMMIT (disk full, I/O error) leaves the connection inside the transaction, and
        every later BEGIN on this single connection would fail until the process restarts.

        `durable=False` commits without an fsync (synchronous=NORMAL for this transaction):
        it survives the process dying, but a power loss may undo it, and it becomes durable
        with the next durable commit (the WAL is written in order). For what can be derived
        again: a photo from the inbox's update that is not marked done before it, a message
        that was delivered (sent again after a power loss), a poll's progress."""
        async with self._lock:
            begin = ("BEGIN IMMEDIATE",) if durable else ("PRAGMA synchronous = NORMAL", _BEGIN)
            try:
                await self._statements(*begin)  # one hop to the database thread
            except BaseException:
                if not durable:
                    with contextlib.suppress(sqlite3.Error, ValueError):
                        await self._conn.execute(_FULL)
                raise
            tx = Tx(self._conn)
            try:
                yield tx
                await self._statements("COMMIT", *(() if durable else (_FULL,)))
            except BaseException:
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        await self._conn.execute("ROLLBACK")
                if not durable:
                    with contextlib.suppress(sqlite3.Error, ValueError):
                        await self._conn.execute(_FULL)
                raise
        if tx.owed and self.on_owed is not None:
            self.on_owed(tx.owed)

    async def _statements(self, *sql: str) -> None:
        """Statements without parameters or results, run together in one hop."""
        if len(sql) == 1:
            await self._conn.execute(sql[0])
            return

        def run() -> None:
            for statement in sql:
                self._conn._conn.execute(statement)

        execute: Callable[..., Awaitable[None]] = self._conn._execute
        await execute(run)

    async def in_one_hop(
        self, work: Callable[[Tx], Coroutine[Any, Any, T]], *, durable: bool = True
    ) -> T:
        """One write transaction run whole on the database's thread: `work` gets a `Tx` whose
        statements run at once there, so its awaits never wait, and the transaction costs
        one hop to that thread instead of one per statement (the photo writer's group commit:
        hundreds of statements). `work` must await nothing but the `Tx`.

        aiosqlite has no public way to run a function on its thread; `_execute` and `_conn`
        are its own, and aiosqlite's version is locked (requirements*.lock)."""

        def run() -> tuple[T, set[int]]:
            raw = self._conn._conn
            tx = _DirectTx(raw)
            if not durable:
                raw.execute("PRAGMA synchronous = NORMAL")
            try:
                raw.execute("BEGIN IMMEDIATE")
                try:
                    result = _run_without_waiting(work(tx))
                    raw.execute("COMMIT")
                except BaseException:
                    if raw.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            raw.execute("ROLLBACK")
                    raise
            finally:
                if not durable:
                    raw.execute("PRAGMA synchronous = FULL")
            return result, tx.owed

        async with self._lock:
            execute: Callable[..., Awaitable[tuple[T, set[int]]]] = self._conn._execute
            result, owed = await execute(run)
        if owed and self.on_owed is not None:
            self.on_owed(owed)
        return result

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[Tx]:
        """Reads outside a write transaction (still serialised with writes on this connection)."""
        async with self._lock:
            yield Tx(self._conn)

    async def user_version(self) -> int:
        async with self.reading() as tx:
            row = await tx.one("PRAGMA user_version")
        return int(row[0]) if row else 0

    async def migrate(self, migrations: Sequence[Migration]) -> int:
        """Apply pending migrations, each with its user_version bump in one transaction."""
        current = await self.user_version()
        newest = max((m.version for m in migrations), default=0)
        if current > newest:
            raise StorageError(
                f"{self.path} has schema version {current}, newer than this program knows "
                f"({newest}); upgrade resell-scan-bot or use another DATABASE_PATH"
            )
        for migration in sorted(migrations, key=lambda m: m.version):
            if migration.version <= current:
                continue
            try:
                await self._apply(migration)
            except sqlite3.Error as exc:
                raise StorageError(
                    f"migration {migration.version} ({migration.description}) failed: {exc}"
                ) from exc
            log.info(
                "database migrated to version %d: %s", migration.version, migration.description
            )
            current = migration.version
        return current

    async def _apply(self, migration: Migration) -> None:
        """One migration and its user_version bump in one transaction. A rebuild follows
        SQLite's procedure (sqlite.org/lang_altertable.html#otheralter): foreign keys off
        outside the transaction, the statements, `PRAGMA foreign_key_check` (any violation
        rolls everything back), commit, foreign keys on again."""
        if migration.rebuild:
            await self._conn.execute("PRAGMA foreign_keys = OFF")
        try:
            async with self.transaction() as tx:
                for statement in migration.statements:
                    await tx.execute(statement)
                if migration.rebuild:
                    broken = await tx.all("PRAGMA foreign_key_check")
                    if broken:
                        raise sqlite3.IntegrityError(
                            f"foreign key check failed after rebuild: {len(broken)} row(s),"
                            f" first in table {broken[0][0]}"
                        )
                await tx.execute(f"PRAGMA user_version = {int(migration.version)}")
        finally:
            if migration.rebuild:
                await self._conn.execute("PRAGMA foreign_keys = ON")

    async def integrity_check(self) -> str:
        async with self.reading() as tx:
            row = await tx.one("PRAGMA integrity_check")
        return str(row[0]) if row else "no answer"


def _changed(raw: sqlite3.Connection, sql: str, params: Sequence[Any]) -> int:
    cursor = raw.execute(sql, params)
    count = cursor.rowcount
    cursor.close()
    return count


def _inserted(raw: sqlite3.Connection, sql: str, params: Sequence[Any]) -> int | None:
    cursor = raw.execute(sql, params)
    rowid = cursor.lastrowid if cursor.rowcount > 0 else None
    cursor.close()
    return rowid


def _first(raw: sqlite3.Connection, sql: str, params: Sequence[Any]) -> sqlite3.Row | None:
    cursor = raw.execute(sql, params)
    row: sqlite3.Row | None = cursor.fetchone()
    cursor.close()
    return row


def _every(raw: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
    cursor = raw.execute(sql, params)
    rows = cursor.fetchall()
    cursor.close()
    return list(rows)


class Tx:
    """Statements on the connection while the lock is held: each one statement, its rows and
    its cursor's close in one hop to the database's thread (aiosqlite's cursor API takes two
    or three: execute, fetch, close)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self.owed: set[int] = set()  # chats this transaction wrote outbox rows for

    async def _hop(self, fn: Callable[..., T], sql: str, params: Sequence[Any]) -> T:
        # aiosqlite's own queue to its thread (see Database.in_one_hop for why it is used).
        execute: Callable[..., Awaitable[T]] = self._conn._execute
        return await execute(fn, self._conn._conn, sql, params)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; return the number of rows changed."""
        return await self._hop(_changed, sql, params)

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int | None:
        return await self._hop(_inserted, sql, params)

    async def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        return await self._hop(_first, sql, params)

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return await self._hop(_every, sql, params)


class _DirectTx(Tx):
    """A `Tx` on the raw connection, for code already running on the database's thread
    (`Database.in_one_hop`): every statement runs at once."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._raw = raw
        self.owed = set()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return _changed(self._raw, sql, params)

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int | None:
        return _inserted(self._raw, sql, params)

    async def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        return _first(self._raw, sql, params)

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return _every(self._raw, sql, params)


def _run_without_waiting(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (its awaits finish at once) to its result."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError("in_one_hop: the work awaited something that waits")
