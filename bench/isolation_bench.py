"""Isolation: one chat under a flood wait must not hold up the others.

One supergroup has 30 results owed (30 photos, each its own analysis, all finished) while the
emulator answers every message the bot sends to that group with 429 `retry_after` 30 for 60 s
(a timed fault: POST /sandbox/telegram/faults with `chat_id`, `duration`, `methods`). During that
pause, 100 private chats each send one photo, one every 0.5 s. Bot and sandbox are real
processes on 127.0.0.1; the emulator keeps Telegram's default flood limits; analyses take 0.5 s
and webhooks bring completions to the bot's relay (its polls are pushed out of the way).

Measured for each private photo, from the sandbox's request log, its batches and webhook
deliveries, and the emulator's action log:
- sent -> at Resell Scan: from the photo being injected into the emulator to the sandbox
  receiving its createAndAnalyze (matched by a `quantity=<n>` manual field in each caption);
- completion -> results reply: from the sandbox sending the batch's analysis.completed webhook
  to the emulator receiving the chat's results message.
After the pause: every one of the group's 30 results must arrive exactly once (each batch's
short id counted over the group's results messages: missing and duplicates).

Baseline in the same run: the same private stream on a fresh sandbox and bot, without the group
and its pause."""

from __future__ import annotations

import base64
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    bot_settings,
    percentile,
    print_log_problems,
    register_relay,
    sandbox_process,
    start_bot,
    stop_bot,
)
from sandbox.data import collection_id, fake_jpeg
from sandbox.telegram import COUNTED_METHODS

SECRET = "whsec_YmVuY2gtaXNvbGF0aW9u"
GROUP_ID = -1001234599100
GROUP = {"id": GROUP_ID, "type": "supergroup", "title": "Bench paused team"}
GROUP_USER = {"id": 7201, "first_name": "Greta", "language_code": "en"}
GROUP_COLLECTION = "Books"  # the group's batches are told apart by their collection
PRIVATE_COLLECTION = "Electronics"
PRIVATE_BASE = 8_100_000  # user and chat id of the i-th private sender: PRIVATE_BASE + i
INTERVAL = 0.5  # seconds between two private photos
ANALYSIS = 0.5  # seconds, every batch
TARGET = 1.0  # seconds, both figures, each photo


@dataclass(frozen=True)
class Size:
    privates: int
    owed: int  # the group's results
    pause: float  # seconds the group is refused
    retry_after: int


@dataclass
class Run:
    paused: bool
    injected: list[float]  # wall time each private photo was injected
    requests: list[dict[str, Any]]
    batches: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    pause_started: float = float("nan")
    pause_ended: float = float("nan")
    stopped: str = ""
    owed_at_start: int = 0
    notes: list[str] = field(default_factory=list)


def _wall(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _is_result(action: dict[str, Any]) -> bool:
    text = action.get("text") or ""
    return action["kind"] in ("send", "document", "photo") and text.startswith("📊")


def _file(http: httpx.Client, seed: str) -> str:
    file_id: str = http.post(
        "/sandbox/telegram/files",
        json={"data_b64": base64.b64encode(fake_jpeg(seed)).decode(), "mime_type": "image/jpeg"},
    ).json()["file_id"]
    return file_id


def _batches(http: httpx.Client) -> list[dict[str, Any]]:
    batches: list[dict[str, Any]] = http.get("/sandbox/batches").json()["batches"]
    return batches


def _group_batches(batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    group = collection_id(GROUP_COLLECTION)
    return [b for b in batches if b["collection_id"] == group]


def _private_replies(http: httpx.Client, since: int, seen: dict[int, dict[str, Any]]) -> int:
    """Add the first results message of each private chat to `seen`; the new log length."""
    page = http.get("/sandbox/telegram/sent", params={"since": since}).json()
    for action in page["actions"]:
        chat = action.get("chat_id")
        if isinstance(chat, int) and chat >= PRIVATE_BASE and _is_result(action):
            seen.setdefault(chat, action)
    total: int = page["total"]
    return total


def run_once(tmp: Path, size: Size, paused: bool) -> Run:
    workdir = tmp / ("paused" if paused else "baseline")
    workdir.mkdir()
    with sandbox_process() as url, httpx.Client(base_url=url, timeout=30) as http:
        http.post(
            "/sandbox/config",
            json={"analysis_seconds": ANALYSIS, "rate_limit": 10**9, "failure_rate": 0.0},
        ).raise_for_status()
        settings = bot_settings(
            url,
            workdir,
            resell_scan_webhook_secrets=SECRET,
            poll_initial_seconds=600,
            poll_max_seconds=600,
        )
        register_relay(http, settings, SECRET)
        private_file = _file(http, "isolation-private")
        group_files = [_file(http, f"isolation-group-{i}") for i in range(size.owed)]
        run = Run(paused, [], [], [], [], [])
        bot = start_bot(settings, workdir / "bot.log")
        try:
            if paused:
                http.post("/sandbox/telegram/chats", json=GROUP).raise_for_status()
                http.post(
                    "/sandbox/telegram/faults",
                    json={
                        "kind": "429",
                        "chat_id": GROUP_ID,
                        "retry_after": size.retry_after,
                        "duration": size.pause,
                        "methods": sorted(COUNTED_METHODS),
                    },
                ).raise_for_status()
                run.pause_started = time.time()
                run.pause_ended = run.pause_started + size.pause
                for i, file_id in enumerate(group_files):
                    http.post(
                        "/sandbox/telegram/messages",
                        json={
                            "from": GROUP_USER,
                            "chat": GROUP,
                            "photo_file_id": file_id,
                            "caption": f"/scan {GROUP_COLLECTION} quantity={i + 1}",
                        },
                    ).raise_for_status()
                    time.sleep(0.02)
                # Owed: every group analysis finished (the bot knows by webhook) while the
                # group is refused.
                deadline = time.monotonic() + min(10.0, size.pause / 4)
                done: list[dict[str, Any]] = []
                while time.monotonic() < deadline:
                    done = [b for b in _group_batches(_batches(http)) if b["status"] == "completed"]
                    if len(done) >= size.owed:
                        break
                    time.sleep(0.1)
                run.owed_at_start = len(done)
                if run.owed_at_start < size.owed:
                    run.notes.append(
                        f"only {run.owed_at_start} of {size.owed} group analyses had finished"
                        f" {time.time() - run.pause_started:.1f} s into the pause, when the"
                        " private photos began (the rest were not at Resell Scan yet)"
                    )
            started = time.monotonic()
            for i in range(size.privates):
                time.sleep(max(0.0, started + i * INTERVAL - time.monotonic()))
                run.injected.append(time.time())
                http.post(
                    "/sandbox/telegram/messages",
                    json={
                        "from": {"id": PRIVATE_BASE + i, "first_name": f"P{i}"},
                        "photo_file_id": private_file,
                        "caption": f"/scan {PRIVATE_COLLECTION} quantity={i + 1}",
                    },
                ).raise_for_status()
            if paused and time.time() < run.pause_ended - 5:
                run.notes.append(
                    f"the private photos ended {run.pause_ended - time.time():.0f} s before the"
                    " pause did"
                )
            # Wait for every private reply and, after the pause, every group result.
            replies: dict[int, dict[str, Any]] = {}
            since = 0
            limit = max(time.time(), run.pause_ended if paused else 0.0) + 90.0
            run.stopped = "limit"
            while time.time() < limit:
                since = _private_replies(http, since, replies)
                privates_done = len(replies) >= size.privates
                group_done = True
                if paused:
                    owed = {b["batch_id"][:8] for b in _group_batches(_batches(http))}
                    texts = [
                        a.get("text") or ""
                        for a in http.get(
                            "/sandbox/telegram/sent", params={"chat_id": GROUP_ID}
                        ).json()["actions"]
                        if _is_result(a)
                    ]
                    group_done = len(owed) >= size.owed and all(
                        any(short in text for text in texts) for short in owed
                    )
                if privates_done and group_done:
                    time.sleep(3.0)  # and a moment for duplicates to show
                    run.stopped = "done"
                    break
                time.sleep(0.5)
        finally:
            exit_note = stop_bot(bot)
            if exit_note:
                run.notes.append(exit_note)
        run.requests = http.get(
            "/sandbox/requests", params={"path": "/products/createAndAnalyze", "method": "POST"}
        ).json()["requests"]
        run.batches = _batches(http)
        run.deliveries = http.get("/sandbox/webhooks/deliveries").json()["deliveries"]
        run.actions = http.get("/sandbox/telegram/sent").json()["actions"]
    return run


def measure(run: Run, size: Size) -> dict[str, Any]:
    # sent -> createAndAnalyze, by the quantity in each private caption
    at_resell_scan: dict[int, float] = {}
    electronics = collection_id(PRIVATE_COLLECTION)
    for entry in run.requests:
        body = entry.get("body")
        if not isinstance(body, dict) or body.get("collectionId") != electronics:
            continue
        for product in body.get("products", []):
            quantity = (product.get("manual_fields") or {}).get("quantity")
            try:
                index = int(quantity) - 1
            except (TypeError, ValueError):
                continue
            at_resell_scan.setdefault(index, entry["at"])
    intake = [
        at_resell_scan[i] - run.injected[i] for i in range(len(run.injected)) if i in at_resell_scan
    ]
    # completion -> results reply: the first webhook for the batch named in each chat's reply
    webhook: dict[str, float] = {}
    for delivery in run.deliveries:
        webhook.setdefault(delivery["batch_id"][:8], delivery["sent_at"])
    completed = {
        b["batch_id"][:8]: _wall(b["completed_at"]) for b in run.batches if b.get("completed_at")
    }
    first_reply: dict[int, dict[str, Any]] = {}
    for action in run.actions:
        chat = action.get("chat_id")
        if isinstance(chat, int) and chat >= PRIVATE_BASE and _is_result(action):
            first_reply.setdefault(chat, action)
    reply = []
    unmatched = 0
    for action in first_reply.values():
        text = action.get("text") or ""
        short = next((s for s in completed if s in text), None)
        if short is None:
            unmatched += 1
            continue
        reply.append(action["at"] - webhook.get(short, completed[short]))
    # The group: each owed result exactly once, after the pause.
    group_actions = [a for a in run.actions if a.get("chat_id") == GROUP_ID]
    group_results = [a for a in group_actions if _is_result(a)]
    shorts = [b["batch_id"][:8] for b in _group_batches(run.batches)]
    counts = Counter(
        {short: sum(short in (a.get("text") or "") for a in group_results) for short in shorts}
    )
    refused = [a for a in group_actions if a["kind"] == "flood"]
    delivered_during_pause = [
        a
        for a in group_actions
        if a["kind"] not in ("flood", "reaction") and a["at"] < run.pause_ended
    ]
    first_group = min((a["at"] for a in group_results), default=float("nan"))
    last_group = max((a["at"] for a in group_results), default=float("nan"))
    return {
        "intake": intake,
        "reply": reply,
        "privates_at_resell_scan": len(at_resell_scan),
        "privates_replied": len(first_reply),
        "replies_unmatched": unmatched,
        "group_batches": len(shorts),
        "group_missing": sum(1 for s in shorts if counts[s] == 0),
        "group_duplicates": sum(max(0, c - 1) for c in counts.values()),
        "group_result_messages": len(group_results),
        "group_refused": len(refused),
        "group_refused_methods": Counter(str(a.get("method")) for a in refused),
        "group_sent_during_pause": len(delivered_during_pause),
        "first_group_result_after_pause": first_group - run.pause_ended,
        "last_group_result_after_pause": last_group - run.pause_ended,
    }


def _stats(values: list[float]) -> tuple[float, float, float, int]:
    """max, p95, median (seconds) and how many exceed the target."""
    return (
        max(values, default=float("nan")),
        percentile(values, 95),
        percentile(values, 50),
        sum(1 for v in values if v > TARGET),
    )


def main(tmp: Path, quick: bool) -> dict[str, float]:
    size = Size(40, 10, 20.0, 10) if quick else Size(100, 30, 60.0, 30)
    paused = run_once(tmp, size, paused=True)
    baseline = run_once(tmp, size, paused=False)
    new, base = measure(paused, size), measure(baseline, size)
    print(
        f"isolation: {size.privates} private chats send one photo each, one every"
        f" {INTERVAL} s, while a group with {size.owed} results owed is refused (429"
        f" retry_after {size.retry_after}) for {size.pause:.0f} s; analyses {ANALYSIS} s,"
        " webhooks on, Telegram's default flood limits"
    )
    print(f"  {'':44} {'paused group':>14} {'baseline':>14}  target")

    def row(name: str, a: str, b: str, target: str = "") -> None:
        print(f"  {name:44} {a:>14} {b:>14}  {target}")

    for key, label in (
        ("intake", "private photo sent -> at Resell Scan"),
        ("reply", "private completion -> results reply"),
    ):
        n_max, n_p95, n_p50, n_over = _stats(new[key])
        b_max, b_p95, b_p50, b_over = _stats(base[key])
        ok = n_max <= TARGET and len(new[key]) == size.privates
        row(
            f"{label}, max",
            f"{n_max:.2f} s",
            f"{b_max:.2f} s",
            f"<= {TARGET:.0f} s each: {'met' if ok else 'MISSED'}",
        )
        row(f"{label}, p95", f"{n_p95:.2f} s", f"{b_p95:.2f} s")
        row(f"{label}, median", f"{n_p50:.2f} s", f"{b_p50:.2f} s")
        row(
            f"{label}, over {TARGET:.0f} s",
            f"{n_over}/{len(new[key])}",
            f"{b_over}/{len(base[key])}",
        )
    row(
        "private photos at Resell Scan / replied",
        f"{new['privates_at_resell_scan']}/{new['privates_replied']}",
        f"{base['privates_at_resell_scan']}/{base['privates_replied']}",
        f"{size.privates} each",
    )
    group_ok = new["group_missing"] == 0 and new["group_duplicates"] == 0
    row(
        "group: results owed (analyses finished)",
        f"{paused.owed_at_start}/{size.owed}",
        "-",
    )
    row(
        "group: results missing / duplicated",
        f"{new['group_missing']} / {new['group_duplicates']}",
        "-",
        f"0 / 0: {'met' if group_ok and new['group_batches'] == size.owed else 'MISSED'}",
    )
    row(
        "group: results messages / 429s answered",
        f"{new['group_result_messages']} / {new['group_refused']}",
        "-",
    )
    row(
        "group: first / last result after the pause",
        f"{new['first_group_result_after_pause']:.1f} / "
        f"{new['last_group_result_after_pause']:.1f} s",
        "-",
    )
    refused = ", ".join(f"{m} ×{c}" for m, c in sorted(new["group_refused_methods"].items()))
    print(f"  group: refused calls by method: {refused or 'none'}")
    print(f"  run stopped: paused {paused.stopped}, baseline {baseline.stopped}")
    print_log_problems("paused", tmp / "paused" / "bot.log")
    print_log_problems("baseline", tmp / "baseline" / "bot.log")
    for note in paused.notes + baseline.notes:
        print(f"  note: {note}")
    if new["group_sent_during_pause"]:
        print(f"  note: {new['group_sent_during_pause']} group messages got through the pause")
    if new["replies_unmatched"] or base["replies_unmatched"]:
        print(
            f"  note: results replies naming no known batch: {new['replies_unmatched']} /"
            f" {base['replies_unmatched']}"
        )
    out: dict[str, float] = {}
    for prefix, figures in (("", new), ("baseline_", base)):
        for key in ("intake", "reply"):
            top, p95, _p50, _over = _stats(figures[key])
            out[f"{prefix}{key}_max"] = top
            out[f"{prefix}{key}_p95"] = p95
    out.update(
        group_missing=float(new["group_missing"]),
        group_duplicates=float(new["group_duplicates"]),
    )
    return out
