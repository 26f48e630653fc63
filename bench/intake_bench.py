"""Intake: a burst of photo updates (singles and albums from many users) through the emulator.

Measures, for the real bot as a process against the sandbox as another process: the time from
its first getUpdates until every update is durable (in the inbox), until every photo is stored
(committed as a photo of a submission), and until every album is at Resell Scan (the last
createAndAnalyze the sandbox received). Baselines in the same run: a bare PTB Application with a
trivial photo handler against the same emulator and the same updates (for durable and stored),
and a plain httpx client that uploads the same albums (bench/direct_upload.py: getFile and the
download from the emulator, createAndAnalyze with the same products and images, at the bot's
WORKER_CONCURRENCY; timed from its start to the last createAndAnalyze the sandbox received).

The three run in ROUNDS rounds (one with --quick), each with a fresh sandbox; each ratio's verdict
is on the median of the rounds, and every round is printed: on a shared 2-core VM one pair of
runs moves by ±0.2 from the machine's drift alone."""

from __future__ import annotations

import asyncio
import base64
import random
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    ROOT,
    bot_settings,
    print_log_problems,
    sandbox_process,
    start_bot,
    stop_bot,
)
from bench.direct_upload import albums_from_requests, upload
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


def inject(url: str, groups: list[list[dict[str, Any]]]) -> list[str]:
    """Queue every message in the emulator, each photo a file of its own (as a phone's are:
    the bot's duplicate guard holds a photo sent again while its first copy is analysed, so
    a burst that reused a few files would be mostly held); the file ids, in message order."""
    messages = [message for group in groups for message in group]
    with httpx.Client(base_url=url, timeout=30) as http:

        def upload(index: int) -> str:
            answer = http.post(
                "/sandbox/telegram/files",
                json={
                    "data_b64": base64.b64encode(fake_jpeg(f"bench-{index}")).decode(),
                    "mime_type": "image/jpeg",
                },
            )
            file_id: str = answer.json()["file_id"]
            return file_id

        with ThreadPoolExecutor(8) as pool:
            files = list(pool.map(upload, range(len(messages))))
        numbered = iter(range(len(messages)))
        per_group = [[next(numbered) for _ in group] for group in groups]

        def send(group_numbers: tuple[list[dict[str, Any]], list[int]]) -> None:
            group, numbers = group_numbers
            for message, number in zip(group, numbers, strict=True):
                http.post(
                    "/sandbox/telegram/messages",
                    json={**message, "photo_file_id": files[number]},
                )

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, zip(groups, per_group, strict=True)))
    return files


def first_get_updates(url: str) -> float:
    calls = httpx.get(url + "/sandbox/telegram/calls").json()["calls"]
    return min(c["at"] for c in calls if c["method"] == "getUpdates")


def count(db: Path, sql: str) -> int:
    from tests.proc import db_rows

    rows = db_rows(db, sql)
    return int(rows[0][0]) if rows else 0


def create_and_analyze(url: str, *, brief: bool = False) -> list[dict[str, Any]]:
    """The createAndAnalyze calls the sandbox received; `brief`: without their bodies (while the
    bot runs, so that watching it does not load the sandbox it shares the machine with)."""
    params = {"path": "/products/createAndAnalyze", "method": "POST"}
    requests: list[dict[str, Any]] = httpx.get(
        url + "/sandbox/requests", params={**params, "brief": "1"} if brief else params, timeout=60
    ).json()["requests"]
    return requests


def accepted(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each upload once: the first createAndAnalyze answered 2xx per idempotency key."""
    seen: set[str] = set()
    out = []
    for entry in requests:
        key = entry.get("idempotency_key") or str(id(entry))
        if entry.get("status") in (200, 201) and key not in seen:
            seen.add(key)
            out.append(entry)
    return out


SANDBOX_CONFIG = {"analysis_seconds": 3600, "rate_limit": 10**9}
TARGET_STORED = 2.5  # every photo stored, against the bare PTB handler
TARGET_DURABLE = 1.5  # every update durable, against the bare PTB handler
TARGET_UPLOADED = 1.5  # every album at Resell Scan, against the plain httpx client


def one_round(tmp: Path, quick: bool) -> dict[str, Any]:
    """One run of the three: the bare PTB handler, the bot, the plain httpx client."""
    total = 300 if quick else 2000
    rng = random.Random(7)
    groups = plan(total, 50, rng)
    deadline_s = 120 if quick else 240
    with sandbox_process() as url:
        httpx.post(url + "/sandbox/config", json=SANDBOX_CONFIG)
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
        file_ids = inject(url, groups)
        settings = bot_settings(url, tmp, album_window_seconds=0.2, worker_concurrency=16)
        bot = start_bot(settings, tmp / "bot.log")
        try:
            db = settings.database_path
            deadline = time.monotonic() + deadline_s
            durable_at = stored_at = submitted_at = None
            uploads = 0
            next_look = 0.0
            while time.monotonic() < deadline and submitted_at is None:
                if durable_at is None and count(db, "SELECT COUNT(*) FROM inbox") >= total:
                    durable_at = time.time()
                if stored_at is None and count(db, "SELECT COUNT(*) FROM photos") >= total:
                    stored_at = time.time()
                if stored_at is not None and time.monotonic() >= next_look:
                    # Done: every album at Resell Scan (as the sandbox saw it), or every
                    # submission past submitting (as the bot's database says).
                    next_look = time.monotonic() + 0.5
                    uploads = len(accepted(create_and_analyze(url, brief=True)))
                    open_ = count(db, "SELECT COUNT(*) FROM submissions WHERE state != 'submitted'")
                    known = count(db, "SELECT COUNT(*) FROM submissions")
                    if uploads >= len(groups) or (uploads and known and open_ == 0):
                        submitted_at = time.time()
                time.sleep(0.01)
            start = first_get_updates(url)
            submissions = count(db, "SELECT COUNT(*) FROM submissions")
        finally:
            exit_note = stop_bot(bot)
        assert durable_at is not None, "the updates never reached the inbox"
        assert stored_at is not None and submitted_at is not None, (
            f"the run did not finish in {deadline_s} s ({uploads} of {len(groups)} uploads)"
        )
        bot_uploads = accepted(create_and_analyze(url))
        uploaded = max(r["at"] for r in bot_uploads) - start
        albums = albums_from_requests(bot_uploads)
        images = sum(len(p.images) for a in albums for p in a.products)
        products = sum(len(a.products) for a in albums)
        # Baseline: a plain httpx client uploads the same albums (same products and images,
        # the same image delivery) at the bot's concurrency, against a fresh Resell Scan side.
        httpx.post(url + "/sandbox/reset")
        httpx.post(url + "/sandbox/config", json=SANDBOX_CONFIG)
        direct_start, _direct_last, direct_failed = asyncio.run(
            upload(
                url,
                settings.telegram_bot_token.get_secret_value(),
                albums,
                file_ids,
                concurrency=settings.worker_concurrency,
                image_urls=settings.uses_image_urls,
                base64_field=settings.image_base64_field.value,
            )
        )
        direct_uploads = accepted(create_and_analyze(url))
        direct = max(r["at"] for r in direct_uploads) - direct_start
    durable = durable_at - start
    stored = stored_at - start
    submitted = submitted_at - start
    ratio = stored / baseline
    durable_ratio = durable / baseline
    upload_ratio = uploaded / direct
    return {
        "total": total,
        "groups": len(groups),
        "baseline": baseline,
        "durable": durable,
        "stored": stored,
        "submitted": submitted,
        "submissions": submissions,
        "uploaded": uploaded,
        "direct": direct,
        "direct_uploads": len(direct_uploads),
        "direct_failed": direct_failed,
        "bot_uploads": len(bot_uploads),
        "products": products,
        "images": images,
        "delivery": "image URLs" if settings.uses_image_urls else "base64 images",
        "concurrency": settings.worker_concurrency,
        "ratio": ratio,
        "durable_ratio": durable_ratio,
        "upload_ratio": upload_ratio,
        "exit_note": exit_note,
    }


ROUNDS = 3  # the machine's speed drifts between runs: each verdict is on the median round


def main(tmp: Path, quick: bool) -> dict[str, float]:
    rounds = []
    for index in range(1 if quick else ROUNDS):
        round_dir = tmp / f"round-{index + 1}"
        round_dir.mkdir()
        rounds.append(one_round(round_dir, quick))
        print_log_problems(f"intake round {index + 1}", round_dir / "bot.log")
        if rounds[-1]["exit_note"]:
            print(f"  note: {rounds[-1]['exit_note']}")

    def verdict(value: float, target: float) -> str:
        return f"target <= {target}x: {'met' if value <= target else 'MISSED'}"

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    def each(key: str) -> str:
        return ", ".join(f"{r[key]:.2f}" for r in rounds)

    first = rounds[0]
    print(
        f"intake ({first['total']} photo updates, {first['groups']} singles and albums, 50 users;"
        f" {len(rounds)} round(s), each a baseline and the bot; verdicts on the median ratio):"
    )
    for n, r in enumerate(rounds, 1):
        print(
            f"  round {n}: bare PTB {r['baseline']:.2f} s; durable {r['durable']:.2f} s"
            f" ({r['durable_ratio']:.2f}x), stored {r['stored']:.2f} s ({r['ratio']:.2f}x);"
            f" httpx baseline {r['direct']:.2f} s ({r['direct_uploads']} createAndAnalyze,"
            f" {r['products']} products, {r['images']} images, {r['delivery']},"
            f" {r['concurrency']} at a time; {r['direct_failed']} refused), bot at Resell Scan"
            f" {r['uploaded']:.2f} s ({r['bot_uploads']} createAndAnalyze;"
            f" {r['upload_ratio']:.2f}x), every submission submitted {r['submitted']:.2f} s"
        )
    durable_ratio, ratio, upload_ratio = (
        median("durable_ratio"),
        median("ratio"),
        median("upload_ratio"),
    )
    print(
        f"  bot, every update durable        median {durable_ratio:.2f}x ({each('durable_ratio')})"
        f"  ({verdict(durable_ratio, TARGET_DURABLE)}; the inbox commit, against the bare PTB"
        " handler)"
    )
    print(
        f"  bot, every photo stored          median {ratio:.2f}x ({each('ratio')})"
        f"  ({verdict(ratio, TARGET_STORED)}; photos, albums, submissions)"
    )
    print(
        f"  bot, every album at Resell Scan  median {upload_ratio:.2f}x ({each('upload_ratio')})"
        f"  ({verdict(upload_ratio, TARGET_UPLOADED)}; first getUpdates -> last"
        " createAndAnalyze, against the plain httpx client)"
    )
    return {
        "baseline": median("baseline"),
        "durable": median("durable"),
        "stored": median("stored"),
        "submitted": median("submitted"),
        "uploaded": median("uploaded"),
        "direct": median("direct"),
        "ratio": ratio,
        "durable_ratio": durable_ratio,
        "upload_ratio": upload_ratio,
    }
