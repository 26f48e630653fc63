"""Polling cost: status requests per batch as a function of the analysis time, and the peak
request rate with many batches open at once (bot and sandbox as processes, no webhooks).

Time is scaled 1:20 so the 5-minute case takes 15 s: every poll setting and analysis time is
divided by 20, which leaves the number of requests per batch unchanged. Beside each measured
figure: the count the schedule itself predicts (the baseline), and the budget."""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.common import (
    bot_settings,
    create_batches,
    sandbox_process,
    seed_submitted,
    start_bot,
)
from bot.tracker import poll_delay
from sandbox.data import fake_jpeg

SCALE = 20.0


def predicted(duration: float, settings: object) -> int:
    """Polls the schedule makes before a batch of `duration` seconds is seen finished."""
    elapsed, polls = 0.0, 0
    while True:
        elapsed += poll_delay(polls, settings)  # type: ignore[arg-type]
        polls += 1
        if elapsed >= duration:
            return polls


def status_counts(http: httpx.Client) -> tuple[Counter[str], list[float]]:
    """Status and results requests per batch id, and when each was made."""
    counts: Counter[str] = Counter()
    times = []
    for request in http.get("/sandbox/requests", params={"method": "GET"}).json()["requests"]:
        path = request["path"]
        if path.startswith("/products/analyze/"):
            counts[path.split("/")[3]] += 1
            times.append(request["at"])
    return counts, times


def peak_rate(times: list[float], window: float = 1.0) -> float:
    times = sorted(times)
    best, start = 0, 0
    for end in range(len(times)):
        while times[end] - times[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best / window


def main(tmp: Path, quick: bool) -> dict[str, float]:
    per_duration = 3 if quick else 10
    durations = (5.0, 30.0, 300.0)
    open_batches = 200 if quick else 1000
    budget = 5.0
    results: dict[str, float] = {}
    with sandbox_process() as url:
        http = httpx.Client(base_url=url, timeout=30)
        http.post("/sandbox/config", json={"rate_limit": 10**9, "failure_rate": 0})
        settings = bot_settings(
            url,
            tmp,
            poll_initial_seconds=3 / SCALE,
            poll_max_seconds=60 / SCALE,
            poll_budget_per_second=budget * SCALE,
            album_window_seconds=0.05,
        )
        bot = start_bot(settings, tmp / "bot.log")
        try:
            file_id = http.post(
                "/sandbox/telegram/files",
                json={
                    "data_b64": base64.b64encode(fake_jpeg("poll")).decode(),
                    "mime_type": "image/jpeg",
                },
            ).json()["file_id"]
            batch_duration: dict[str, float] = {}
            for duration in durations:
                http.post("/sandbox/config", json={"analysis_seconds": duration / SCALE})
                before = {b["batch_id"] for b in http.get("/sandbox/batches").json()["batches"]}
                for i in range(per_duration):
                    http.post(
                        "/sandbox/telegram/messages",
                        json={
                            "from": {"id": 7000 + i + int(duration), "first_name": "P"},
                            "photo_file_id": file_id,
                            "caption": "/scan Electronics",
                        },
                    )
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    now = {b["batch_id"] for b in http.get("/sandbox/batches").json()["batches"]}
                    if len(now - before) >= per_duration:
                        break
                    time.sleep(0.05)
                for batch_id in now - before:
                    batch_duration[batch_id] = duration
            deadline = time.monotonic() + max(durations) / SCALE * 3 + 30
            while time.monotonic() < deadline:
                replies = sum(
                    1
                    for a in http.get("/sandbox/telegram/sent").json()["actions"]
                    if (a.get("text") or "").startswith("📊")
                )
                if replies >= per_duration * len(durations):
                    break
                time.sleep(0.2)
            counts, _ = status_counts(http)
        finally:
            bot.terminate()
        real = bot_settings(url, tmp)  # the defaults, for the prediction
    print(f"polling cost (time scaled 1:{SCALE:.0f}, defaults: first poll 3 s, x1.6, cap 60 s):")
    for duration in durations:
        calls = [counts[b] for b, d in batch_duration.items() if d == duration]
        mean = sum(calls) / len(calls) if calls else float("nan")
        print(
            f"  analysis {duration:5.0f} s: {mean:5.1f} requests per batch, status polls plus one"
            f" results fetch (the schedule predicts {predicted(duration, real)} + 1)"
        )
        results[f"calls_{int(duration)}"] = mean
    peak = peak_open(tmp, open_batches, budget)
    results["peak"] = peak
    return results


def peak_open(tmp: Path, open_batches: int, budget: float) -> float:
    """Many batches open at once, all due: the request rate must stay within the budget."""
    with sandbox_process() as url:
        http = httpx.Client(base_url=url, timeout=60)
        http.post("/sandbox/config", json={"analysis_seconds": 3600, "rate_limit": 10**9})
        batch_ids = create_batches(http, open_batches)
        (tmp / "peak").mkdir(exist_ok=True)
        settings = bot_settings(url, tmp / "peak", poll_budget_per_second=budget)
        now = time.time()
        asyncio.run(seed_submitted(settings, batch_ids, lambda _: now))
        bot = start_bot(settings, tmp / "peak.log")
        started = time.monotonic()
        try:
            time.sleep(10)  # the measurement window: requests made while the bot runs
        finally:
            bot.terminate()
        elapsed = time.monotonic() - started
        _, times = status_counts(http)
    peak = peak_rate(times)
    print(
        f"  {open_batches} batches open at once, all due: peak {peak:.0f} status requests/s in"
        f" any 1 s window, {len(times) / elapsed:.1f}/s on average (budget {budget:.0f}/s)"
    )
    return peak
