"""Intake: a burst of photo updates (singles and albums from many users) through the emulator.

Measures, for the real bot as a process against the sandbox as another process: the time from
its first getUpdates until every photo is stored in SQLite, and until every submission is
submitted to Resell Scan. Baseline in the same run: a bare PTB Application with a trivial photo
handler against the same emulator and the same updates."""

from __future__ import annotations

import base64
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, bot_settings, sandbox_process, start_bot
from sandbox.data import fake_jpeg


def plan(total: int, users: int, rng: random.Random) -> list[list[dict[str, Any]]]:
    """Groups of messages: singles (40%) and albums of 2-5 photos, from `users` users."""
    groups: list[list[dict[str, Any]]] = []
    count = 0
    while count < total:
        user = {"id": 5000 + rng.randrange(users), "first_name": "Seller"}
        size = 1 if rng.random() < 0.4 else rng.randint(2, 5)
        size = min(size, total - count)
        album = f"bench-{len(groups)}" if size > 1 else None
        groups.append(
            [
                {
                    "from": user,
                    "caption": "/scan Electronics" if i == 0 else None,
                    "media_group_id": album,
                }
                for i in range(size)
            ]
        )
        count += size
    return groups


def inject(url: str, groups: list[list[dict[str, Any]]]) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        files = [
            http.post(
                "/sandbox/telegram/files",
                json={
                    "data_b64": base64.b64encode(fake_jpeg(f"bench-{i}")).decode(),
                    "mime_type": "image/jpeg",
                },
            ).json()["file_id"]
            for i in range(64)
        ]

        def send(index_group: tuple[int, list[dict[str, Any]]]) -> None:
            index, group = index_group
            for message in group:
                http.post(
                    "/sandbox/telegram/messages",
                    json={**message, "photo_file_id": files[index % len(files)]},
                )

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, enumerate(groups)))


def first_get_updates(url: str) -> float:
    calls = httpx.get(url + "/sandbox/telegram/calls").json()["calls"]
    return min(c["at"] for c in calls if c["method"] == "getUpdates")


def count(db: Path, sql: str) -> int:
    from tests.proc import db_rows

    rows = db_rows(db, sql)
    return int(rows[0][0]) if rows else 0


def main(tmp: Path, quick: bool) -> dict[str, float]:
    total = 300 if quick else 2000
    rng = random.Random(7)
    groups = plan(total, 50, rng)
    with sandbox_process() as url:
        httpx.post(url + "/sandbox/config", json={"analysis_seconds": 3600, "rate_limit": 10**9})
        # Baseline: bare PTB, same updates.
        inject(url, groups)
        proc = subprocess.run(
            [sys.executable, "-m", "bench.baseline_bot", url, str(total)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        done_at = float(proc.stdout.split()[1])
        baseline = done_at - first_get_updates(url)
        httpx.post(url + "/sandbox/telegram/reset")
        # Ours.
        inject(url, groups)
        settings = bot_settings(url, tmp, album_window_seconds=0.2, worker_concurrency=16)
        bot = start_bot(settings, tmp / "bot.log")
        try:
            db = settings.database_path
            deadline = time.monotonic() + 900
            durable_at = stored_at = submitted_at = None
            while time.monotonic() < deadline and submitted_at is None:
                if durable_at is None and count(db, "SELECT COUNT(*) FROM inbox") >= total:
                    durable_at = time.time()
                if stored_at is None and count(db, "SELECT COUNT(*) FROM photos") >= total:
                    stored_at = time.time()
                if (
                    stored_at is not None
                    and count(db, "SELECT COUNT(*) FROM submissions WHERE state != 'submitted'")
                    == 0
                ):
                    submitted_at = time.time()
                time.sleep(0.01)
            start = first_get_updates(url)
            submissions = count(db, "SELECT COUNT(*) FROM submissions")
        finally:
            bot.terminate()
    assert durable_at is not None, "the updates never reached the inbox"
    assert stored_at is not None and submitted_at is not None, "the run did not finish"
    durable = durable_at - start
    stored = stored_at - start
    submitted = submitted_at - start
    ratio = stored / baseline
    durable_ratio = durable / baseline
    print(f"intake ({total} photo updates, {len(groups)} singles and albums, 50 users):")
    print(
        f"  bare PTB baseline, all handled   {baseline:6.2f} s  {total / baseline:7.0f} updates/s"
    )
    print(
        f"  bot, every update durable        {durable:6.2f} s  {total / durable:7.0f} updates/s"
        f"  ratio {durable_ratio:.2f}x per update (target <= 1.5x: the inbox commit)"
    )
    print(
        f"  bot, every photo stored          {stored:6.2f} s  {total / stored:7.0f} updates/s"
        f"  ratio {ratio:.2f}x per update (handled: photos, albums, submissions)"
    )
    print(
        f"  bot, every submission submitted  {submitted:6.2f} s  ({submissions} createAndAnalyze,"
        f" each with its 'analysing' message under Telegram's 30 msg/s limit)"
    )
    return {
        "baseline": baseline,
        "durable": durable,
        "stored": stored,
        "submitted": submitted,
        "ratio": ratio,
        "durable_ratio": durable_ratio,
    }
