"""The baseline for the intake benchmark: a bare python-telegram-bot Application with a trivial
photo handler (same emulator, same concurrency), printing the time its N-th photo arrived.

Usage: python -m bench.baseline_bot BASE_URL N
"""

from __future__ import annotations

import asyncio
import sys
import time

from telegram import Update
from telegram.ext import ApplicationBuilder, ContextTypes, MessageHandler, filters


async def main(base_url: str, expected: int) -> None:
    done = asyncio.Event()
    seen = 0

    async def on_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        nonlocal seen
        seen += 1
        if seen == expected:
            print(f"done {time.time():.6f}", flush=True)
            done.set()

    app = (
        ApplicationBuilder()
        .token("777001:baseline")
        .base_url(base_url + "/bot")
        .base_file_url(base_url + "/file/bot")
        .concurrent_updates(16)
        .build()
    )
    app.add_handler(MessageHandler(filters.PHOTO, on_photo))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(timeout=1)
        await asyncio.wait_for(done.wait(), timeout=300)
        await app.updater.stop()
        await app.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
