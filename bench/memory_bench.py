"""Memory and resume: resident memory of the bot with many open submissions, and the time from
start to "all resumed" (recovery done, the tracker's loop running, /healthz answering).

Baseline in the same run: the same bot started on an empty database."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, bot_settings, rss_mb, sandbox_process
from sandbox.data import collection_id, fake_jpeg
from storage import Database, NewPhoto, Store
from tests.proc import settings_env


def create_batches(http: httpx.Client, count: int) -> list[str]:
    from concurrent.futures import ThreadPoolExecutor

    image = {
        "url": "data:image/jpeg;base64," + base64.b64encode(fake_jpeg("m")).decode(),
        "fileName": "m.jpg",
        "removeBackground": False,
    }
    body = {
        "collectionId": collection_id("Electronics"),
        "products": [{"images": [image], "manual_fields": {}}],
    }

    def one(_: int) -> str:
        response = http.post(
            "/api/v1/products/createAndAnalyze",
            json=body,
            headers={"Authorization": "Bearer rs_test_full"},
        )
        batch_id: str = response.json()["data"]["batchId"]
        return batch_id

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


async def seed(settings: Any, batch_ids: list[str]) -> None:
    """Open submissions in every state the bot resumes: most submitted (their next poll spread
    over the next hour, as a running bot leaves them), some albums still gathering."""
    db = await Database.open(settings.database_path)
    store = Store(db)
    now = time.time()
    chunk = 500
    for start in range(0, len(batch_ids), chunk):
        part = batch_ids[start : start + chunk]
        results = await asyncio.gather(
            *(
                store.add_photo(
                    NewPhoto(
                        chat_id=10_000 + start + i,
                        message_id=1,
                        user_id=10_000 + start + i,
                        user_name="s",
                        file_id="f",
                        file_unique_id=f"u{start + i}",
                    ),
                    caption=None,
                    problem=None,
                    language="en",
                    remove_background=False,
                    album_window=0,
                    album_max_wait=1,
                    now=now,
                )
                for i in range(len(part))
            )
        )
        for offset, (result, batch_id) in enumerate(zip(results, part, strict=True)):
            await store.choose_collection(
                result.submission_id, collection_id("Electronics"), "Electronics", now
            )
            await store.begin_submit(result.submission_id, now)
            spread = now + 30 + (start + offset) * 3600 / len(batch_ids)
            await store.mark_submitted(result.submission_id, batch_id, spread, now)
    await db.close()


def measure(settings: Any, log: Path, settle: float) -> tuple[float, float]:
    """Seconds from spawn to /healthz answering, and resident MB after `settle` seconds."""
    started = time.monotonic()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run"],
            cwd=ROOT,
            env=settings_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{settings.http_port}/healthz"
            while True:
                try:
                    httpx.get(url, timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() - started > 120:
                        raise
                    time.sleep(0.01)
            resumed = time.monotonic() - started
            time.sleep(settle)
            rss = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return resumed, rss


def main(tmp: Path, quick: bool) -> dict[str, float]:
    count = 1000 if quick else 10_000
    with sandbox_process() as url:
        http = httpx.Client(base_url=url, timeout=60)
        http.post("/sandbox/config", json={"analysis_seconds": 7200, "rate_limit": 10**9})
        (tmp / "empty").mkdir()
        (tmp / "full").mkdir()
        empty = bot_settings(url, tmp / "empty")
        base_resume, base_rss = measure(empty, tmp / "empty.log", settle=10)
        batch_ids = create_batches(http, count)
        full = bot_settings(url, tmp / "full")
        asyncio.run(seed(full, batch_ids))
        resume, rss = measure(full, tmp / "full.log", settle=10)
    print(f"memory and resume ({count} open submissions, measured 10 s after start):")
    print(
        f"  empty database (baseline)   start to resumed {base_resume:5.2f} s"
        f"   RSS {base_rss:6.1f} MB"
    )
    print(
        f"  {count:5d} open submissions     start to resumed {resume:5.2f} s   RSS {rss:6.1f} MB"
        f"  (targets: < 2 s, < 150 MB)"
    )
    return {"resume": resume, "rss": rss, "base_resume": base_resume, "base_rss": base_rss}
