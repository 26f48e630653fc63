"""Memory and resume: resident memory of the bot with many open submissions, and the time from
start to "all resumed" (recovery done, the tracker's loop running, /healthz answering).
Baseline in the same run: the same bot started on an empty database.

Strangers: resident memory growth of a running bot while many distinct unauthorised senders
(private chats, user ids not on the allowlist) each send one message, half a /start and half a
photo, and the refusals the emulator recorded per sender (at most one each). Baseline: the
bot's own RSS after a warm-up of a few thousand such senders. The emulator's flood limits are
off and the bot's overall pace raised for this part (each refusal is a message: at Telegram's 30
a second, 100,000 refusals would take almost an hour); each chat still gets one message. The
part is bounded in time (160 s at full size, 90 s quick; BENCH_STRANGERS_SECONDS overrides):
at the deadline it reports what was handled and the growth projected per sender."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    ROOT,
    bot_settings,
    create_batches,
    print_log_problems,
    rss_mb,
    sandbox_process,
    seed_submitted,
    start_bot,
    stop_bot,
)
from sandbox.data import fake_jpeg
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


BATCH = 5_000  # messages a POST /sandbox/telegram/messages/batch; at most two queued at once
STRANGER_BASE = 20_000_000  # user (and private chat) ids of the unauthorised senders
ALLOWED = 4242  # the allowlist's only user
TARGET_GROWTH_MB = 20.0
DEADLINE_ENV = "BENCH_STRANGERS_SECONDS"  # overrides the strangers part's time bound


class Refusals:
    """What the bot sent to the strangers' chats, read incrementally from the emulator."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.since = 0
        self.per_chat: Counter[int] = Counter()
        self.other = 0  # anything else the bot sent to them
        self.other_texts: list[str] = []

    def poll(self) -> int:
        page = self.http.get(
            "/sandbox/telegram/sent", params={"since": self.since, "kind": "send"}
        ).json()
        for action in page["actions"]:
            if action["chat_id"] >= STRANGER_BASE:
                if (action.get("text") or "").startswith("⛔"):
                    self.per_chat[action["chat_id"]] += 1
                else:
                    self.other += 1
                    if len(self.other_texts) < 3:
                        self.other_texts.append((action.get("text") or "")[:60])
        self.since = page["total"]
        return self.total

    @property
    def total(self) -> int:
        return sum(self.per_chat.values())


def strangers(start: int, count: int, file_id: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for n in range(start, start + count):
        sender = {"id": STRANGER_BASE + n, "first_name": f"Stranger {n}"}
        if n % 2:
            messages.append({"from": sender, "photo_file_id": file_id})
        else:
            messages.append({"from": sender, "text": "/start"})
    return messages


def pending(http: httpx.Client) -> int:
    value: int = http.get("/sandbox/telegram/pending").json()["pending"]
    return value


@dataclass
class Phase:
    ok: bool = False  # every sender refused (or refusals stopped) before the deadline
    peak: float = 0.0  # highest RSS seen, MB
    injected: int = 0  # messages queued in the emulator
    taken_at: float | None = None  # monotonic: the emulator held none of them any more
    refused_when_taken: int = 0  # refusals of this phase by then


def send_strangers(
    http: httpx.Client,
    refusals: Refusals,
    start: int,
    count: int,
    file_id: str,
    deadline: float,
    pid: int,
) -> Phase:
    """Queue `count` strangers' messages in batches (never more than two batches waiting at
    Telegram), then wait until Telegram holds none of them and the refusals stop growing (or
    every sender has one), or the deadline."""
    phase = Phase(peak=rss_mb(pid))
    before = refusals.poll()
    for first in range(start, start + count, BATCH):
        size = min(BATCH, start + count - first)
        while pending(http) > BATCH and time.monotonic() < deadline:
            phase.peak = max(phase.peak, rss_mb(pid))
            refusals.poll()
            time.sleep(0.2)
        if time.monotonic() >= deadline:
            return phase
        http.post(
            "/sandbox/telegram/messages/batch",
            json={"messages": strangers(first, size, file_id)},
        ).raise_for_status()
        phase.injected += size
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        phase.peak = max(phase.peak, rss_mb(pid))
        total = refusals.poll()
        if total != last:
            last, quiet_since = total, time.monotonic()
        if pending(http) == 0:
            if phase.taken_at is None:
                phase.taken_at, phase.refused_when_taken = time.monotonic(), total - before
            if total - before >= count or time.monotonic() - quiet_since > 5.0:
                phase.ok = True
                return phase
        time.sleep(0.25)
    return phase


def strangers_part(tmp: Path, url: str, count: int, warmup: int) -> dict[str, float]:
    (tmp / "strangers").mkdir()
    with httpx.Client(base_url=url, timeout=120) as http:
        http.post("/sandbox/telegram/limits", json={"enabled": False}).raise_for_status()
        file_id = http.post(
            "/sandbox/telegram/files",
            json={
                "data_b64": base64.b64encode(fake_jpeg("stranger")).decode(),
                "mime_type": "image/jpeg",
            },
        ).json()["file_id"]
        settings = bot_settings(
            url,
            tmp / "strangers",
            allow_all_users=False,
            allowed_user_ids=[ALLOWED],
            telegram_messages_per_second=100_000,
        )
        bot = start_bot(settings, tmp / "strangers.log")
        pid = bot.proc.pid
        refusals = Refusals(http)
        # Bounded: the whole part (warm-up included) stops here, handled or not.
        limit = float(os.environ.get(DEADLINE_ENV) or (90 if count <= 10_000 else 160))
        deadline = time.monotonic() + limit
        try:
            warm = send_strangers(http, refusals, 0, warmup, file_id, deadline, pid)
            time.sleep(2.0)
            warm_rss = rss_mb(pid)
            warm_refusals = refusals.poll()
            main_started = time.monotonic()
            phase = send_strangers(http, refusals, warmup, count, file_id, deadline, pid)
            handled_at = time.monotonic()
            time.sleep(2.0)
            end_rss = rss_mb(pid)
            refusals.poll()
            left = pending(http)
        finally:
            exit_note = stop_bot(bot)
    senders = warmup + count
    answered = len(refusals.per_chat)
    repeated = sum(1 for c in refusals.per_chat.values() if c > 1)
    most = max(refusals.per_chat.values(), default=0)
    growth = end_rss - warm_rss
    handled = refusals.total - warm_refusals
    taken = phase.injected - left  # the bot confirmed them to Telegram (stored in its inbox)
    complete = phase.ok and warm.ok and handled >= count
    print(
        f"  strangers: {count:,} distinct unauthorised senders (private chats, half /start, half"
        f" a photo) after a warm-up of {warmup:,}; emulator flood limits off"
    )
    print(
        f"    bot RSS after the warm-up (baseline) {warm_rss:6.1f} MB   at the end"
        f" {end_rss:6.1f} MB   peak {max(phase.peak, end_rss):6.1f} MB"
    )
    verdict = "met" if growth <= TARGET_GROWTH_MB else "MISSED"
    if not complete:
        verdict += f", but only {handled:,} of {count:,} refused: incomplete"
    print(
        f"    growth {growth:+6.1f} MB (target <= {TARGET_GROWTH_MB:.0f} MB: {verdict});"
        f" {growth * 1024 * 1024 / max(1, taken):,.0f} bytes per sender taken in"
    )
    verdict = "met" if most <= 1 else "MISSED"
    print(
        f"    refusals: {refusals.total:,} to {answered:,} of {senders:,} senders"
        f" ({warm_refusals:,} in the warm-up), {repeated} senders refused more than once,"
        f" at most {most} each (target <= 1: {verdict}); {refusals.other} other messages"
    )
    if phase.taken_at is not None:
        intake = phase.taken_at - main_started
        after = (handled - phase.refused_when_taken) / max(0.001, handled_at - phase.taken_at)
        print(
            f"    Telegram held none after {intake:.0f} s ({phase.injected / intake:,.0f}"
            f" updates/s taken in); {phase.refused_when_taken:,} refusals sent by then"
            f" ({phase.refused_when_taken / intake:,.0f}/s), the rest"
            f" {after:,.0f}/s after"
        )
    seconds = handled_at - main_started
    if complete:
        print(f"    all {count:,} refused in {seconds:.0f} s ({count / seconds:,.0f} senders/s)")
    else:
        projected = growth / max(1, taken) * count
        print(
            f"    DEADLINE reached after {seconds:.0f} s: {taken:,} of {count:,} senders taken in"
            f" by the bot, {handled:,} refused ({handled / seconds:,.0f}/s), {left:,} updates"
            f" still at Telegram; {projected:,.0f} MB growth projected for {count:,} at the same"
            f" bytes per sender taken in ({DEADLINE_ENV} raises the bound)"
        )
    if refusals.other_texts:
        print(f"    other messages to strangers, e.g.: {refusals.other_texts}")
    print_log_problems("  strangers", tmp / "strangers.log")
    if exit_note:
        print(f"    note: {exit_note}")
    return {
        "strangers_warm_rss": warm_rss,
        "strangers_end_rss": end_rss,
        "strangers_growth": growth,
        "strangers_refused": float(refusals.total),
        "strangers_repeated": float(repeated),
        "strangers_unanswered": float(senders - answered),
        "strangers_complete": float(complete),
    }


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
    with sandbox_process() as url:  # a fresh one, without the batches above
        out = strangers_part(tmp, url, 10_000 if quick else 100_000, 2_000)
    out.update(resume=resume, rss=rss, base_resume=base_resume, base_rss=base_rss)
    return out
