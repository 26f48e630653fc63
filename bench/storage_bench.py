"""Storage hot paths: store a received photo, claim a notification (transitions per second),
beside a bare aiosqlite INSERT + COMMIT loop with the same pragmas (the floor SQLite sets)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiosqlite

from storage import Database, NewPhoto, Problem, Store


async def bare_inserts(path: Path, n: int) -> float:
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        for pragma in ("journal_mode = WAL", "synchronous = FULL", "foreign_keys = ON"):
            await conn.execute(f"PRAGMA {pragma}")
        await conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b TEXT)")
        started = time.perf_counter()
        for i in range(n):
            await conn.execute("BEGIN IMMEDIATE")
            await conn.execute("INSERT INTO t (a, b) VALUES (?, ?)", (i, "x" * 40))
            await conn.execute("COMMIT")
        return n / (time.perf_counter() - started)


async def ours(path: Path, n: int) -> tuple[float, float, float]:
    db = await Database.open(path)
    store = Store(db)
    try:
        started = time.perf_counter()
        ids = []
        for i in range(n):
            result = await store.add_photo(
                NewPhoto(
                    chat_id=i % 50,
                    message_id=i,
                    user_id=1,
                    user_name="u",
                    file_id=f"f{i}",
                    file_unique_id=f"u{i}",
                ),
                caption=None,
                problem=None,
                language="en",
                remove_background=False,
                album_window=1,
                album_max_wait=5,
                now=1.0,
            )
            ids.append(result.submission_id)
        photos_per_s = n / (time.perf_counter() - started)
        async with db.transaction() as tx:
            await tx.execute("UPDATE submissions SET state = 'submitting'")
        started = time.perf_counter()
        for sub_id in ids:  # the outbox row is written with the transition
            assert await store.fail(sub_id, Problem("failed"), 2.0)
        owed_per_s = n / (time.perf_counter() - started)
        rows = []
        for chat_id in range(50):
            rows += await store.outbox_rows(chat_id, 3.0, n)
        started = time.perf_counter()
        for row in rows:  # what delivery records once Telegram took the message
            assert await store.notified(row, 3.0)
        notified_per_s = len(rows) / (time.perf_counter() - started)
        return photos_per_s, owed_per_s, notified_per_s
    finally:
        await db.close()


async def run(tmp: Path, quick: bool) -> dict[str, float]:
    n = 300 if quick else 2000
    bare = await bare_inserts(tmp / "bare.sqlite3", n)
    photos, owed, notified = await ours(tmp / "ours.sqlite3", n)
    print(f"storage ({n} each, synchronous=FULL, WAL):")
    print(f"  bare INSERT+COMMIT          {bare:8.0f}/s  (baseline)")
    print(
        f"  store a received photo      {photos:8.0f}/s"
        f"  ratio {bare / photos:.2f}x the baseline's time (no fsync: the inbox is durable)"
    )
    print(f"  end in a message owed       {owed:8.0f}/s  ratio {bare / owed:.2f}x")
    print(f"  record it delivered         {notified:8.0f}/s  ratio {bare / notified:.2f}x")
    return {"bare": bare, "photos": photos, "owed": owed, "notified": notified}


def main(tmp: Path, quick: bool) -> dict[str, float]:
    return asyncio.run(run(tmp, quick))
