"""Memory and resume: resident memory of the bot with many open submissions, and the time from
start to "all resumed" (recovery done, the tracker's loop running, /healthz answering).

Baseline in the same run: the same bot started on an empty database."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    ROOT,
    bot_settings,
    create_batches,
    rss_mb,
    sandbox_process,
    seed_submitted,
)
from tests.proc import settings_env


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
        spread = 3600 / len(batch_ids)  # next polls spread over an hour, as a running bot has them
        asyncio.run(seed_submitted(full, batch_ids, lambda i: time.time() + 30 + i * spread))
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
