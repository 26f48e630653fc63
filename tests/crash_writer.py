"""Subprocess for the crash-safety test: writes submissions forever, reporting each commit.

Usage: python -m tests.crash_writer DB_PATH START_CHAT
Prints "committed <submission_id>" after each transaction returns, flushed at once.
"""

from __future__ import annotations

import asyncio
import sys
import time

from storage import Database, NewPhoto, Store


async def main(path: str, start: int) -> None:
    db = await Database.open(path)
    store = Store(db)
    n = start
    while True:
        n += 1
        photo = NewPhoto(
            chat_id=n,
            message_id=1,
            user_id=1,
            user_name="w",
            file_id=f"f{n}",
            file_unique_id=f"u{n}",
            media_group_id=f"g{n}",
        )
        result = await store.add_photo(
            photo,
            caption=None,
            problem=None,
            language="en",
            remove_background=False,
            album_window=1.0,
            album_max_wait=5.0,
            now=time.time(),
        )
        await store.choose_collection(result.submission_id, "c", "C", time.time())
        await store.begin_submit(result.submission_id, time.time())
        print(f"committed {result.submission_id}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
