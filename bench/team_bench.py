"""A team group at full speed: 3 users send 30 albums of 2 photos within 10 s into one
supergroup, against the emulator enforcing Telegram's default flood limits (30/s per bot, 1/s
per chat with a burst of 3, 20 a minute per group, edits counted). Bot and sandbox are real
processes on 127.0.0.1, fresh for each of the two runs:

- new: the defaults (GROUP_MODE=board: one live board per group, results combined when
  one-by-one would pass the group's limit);
- baseline: the old behaviour, GROUP_MODE=per_album (an "analysing" message per album, its
  edits and a results reply each) with the bot unaware of the group limit
  (TELEGRAM_GROUP_MESSAGES_PER_MINUTE very high), so it meets 429s and waits them out.

Everything else is equal: the same albums at the same moments, the same analysis times, webhooks
from the sandbox to the bot's relay (so completion reaches the bot at once, not at its next poll).

Analysis times are drawn per batch (seeded, uniform 1-5 s: 3 s ± 2 s). The sandbox has one fixed
`analysis_seconds` and no spread option, so the benchmark sets it to a cap (6 s) and finishes
each batch at its drawn time with `POST /sandbox/batches/{id}/complete`.

Measured from the emulator's action log for the group (every send, edit, delete and 429 with
its time) and its flood-limit counters, and the sandbox's batch completion times."""

from __future__ import annotations

import base64
import dataclasses
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import bot_settings, percentile, register_relay, sandbox_process, start_bot
from sandbox.data import fake_jpeg
from sandbox.telegram import FloodLimits, busiest

SECRET = "whsec_YmVuY2gtdGVhbS1ncm91cA"
GROUP_ID = -1001234599001
GROUP = {"id": GROUP_ID, "type": "supergroup", "title": "Bench market team"}
USERS = [
    {"id": 7101, "first_name": "Anna", "last_name": "Berg", "language_code": "en"},
    {"id": 7102, "first_name": "Ben", "language_code": "en"},
    {"id": 7103, "first_name": "Carla", "language_code": "en"},
]
# Sandbox collections without required manual fields (sandbox/data.py REQUIRED).
COLLECTIONS = ["Electronics", "Books", "Video Games", "Cameras", "Toys", "Vinyl Records"]
PHOTOS = 2  # per album
ANALYSIS = (1.0, 5.0)  # seconds, uniform: 3 s ± 2 s
ANALYSIS_CAP = 6.0  # the sandbox's analysis_seconds: no batch finishes by itself before this
RUN_LIMIT = 360.0  # seconds from the first photo: a run stops by itself here
QUIET_FALLBACK = 75.0  # all results in and nothing sent for this long: drained (429s wait ≤ 60 s)
COUNTED = ("send", "edit", "edit_markup", "document", "photo")  # what Telegram's limits count
SENT = ("send", "document", "photo")
GROUP_LIMIT = 20  # Telegram's messages a minute in one group
TARGET_PER_ALBUM = 1.3
SEED = 20261128
LINK = re.compile(r"t\.me/c/\d+(?:/\d+)?/(\d+)")


@dataclass(frozen=True)
class Album:
    at: float  # seconds after the first album
    user: dict[str, Any]
    collection: str
    index: int


@dataclass
class Run:
    mode: str
    actions: list[dict[str, Any]]
    limits: dict[str, Any]
    batches: list[dict[str, Any]]
    albums: list[list[int]]  # message ids of each album's photos
    first_photo: float
    last_photo: float
    ended: float
    end: str  # "drained", "quiet" (nothing more for QUIET_FALLBACK s) or "limit" (RUN_LIMIT)
    completed_by_bench: int
    log_problems: list[str]  # the bot's WARNING and ERROR lines
    figures: dict[str, float] = field(default_factory=dict)


def plan(count: int, seconds: float) -> tuple[list[Album], list[float]]:
    """`count` albums from 3 users at random moments within `seconds`, and one analysis time
    per batch (in the order the sandbox starts them); seeded, the same for both runs."""
    rng = random.Random(SEED)
    moments = sorted(rng.uniform(0, seconds) for _ in range(count))
    moments[0] = 0.0
    albums = [
        Album(at, USERS[i % len(USERS)], rng.choice(COLLECTIONS), i) for i, at in enumerate(moments)
    ]
    durations = [rng.uniform(*ANALYSIS) for _ in range(count)]
    return albums, durations


def _wall(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class Completer(threading.Thread):
    """Finishes every batch at its drawn analysis time (the sandbox has no spread option)."""

    def __init__(self, url: str, durations: list[float]) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.durations = durations
        self.stop = threading.Event()
        self.due: dict[str, float] = {}
        self.completed: set[str] = set()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            while not self.stop.is_set():
                batches = http.get("/sandbox/batches").json()["batches"]
                for batch in sorted(batches, key=lambda b: (b["started_at"], b["alias"] or 0)):
                    if batch["batch_id"] not in self.due:
                        duration = self.durations[len(self.due) % len(self.durations)]
                        self.due[batch["batch_id"]] = _wall(batch["started_at"]) + duration
                open_ = {b["batch_id"] for b in batches if b["status"] != "completed"}
                now = time.time()
                for batch_id, due in self.due.items():
                    if batch_id in open_ and batch_id not in self.completed and now >= due:
                        http.post(f"/sandbox/batches/{batch_id}/complete")
                        self.completed.add(batch_id)
                self.stop.wait(0.05)


def _is_result(action: dict[str, Any]) -> bool:
    return action["kind"] in SENT and (action.get("text") or "").startswith("📊")


def _is_combined(action: dict[str, Any]) -> bool:
    html = action.get("html") or ""
    return _is_result(action) and ("Results</b> of" in html or "Ergebnisse</b> von" in html)


def _answered(actions: list[dict[str, Any]], albums: list[list[int]]) -> list[bool]:
    """Each album: a results reply to one of its photos, or a combined reply linking to one."""
    replied: set[int] = set()
    for action in actions:
        if not _is_result(action):
            continue
        if action.get("reply_to") is not None:
            replied.add(int(action["reply_to"]))
        replied.update(int(m) for m in LINK.findall(action.get("html") or ""))
    return [bool(replied & set(ids)) for ids in albums]


def _drained(mode: str, actions: list[dict[str, Any]]) -> bool:
    """Nothing left to send: the board deleted (new), every "analysing" message edited to
    "finished" (baseline)."""
    if mode == "board":
        return not _boards_left(actions)
    analysing = {a["message_id"] for a in actions if a["kind"] == "send"
                 and (a.get("text") or "").startswith("⏳")}  # fmt: skip
    finished = {a["message_id"] for a in actions if a["kind"] == "edit"
                and (a.get("text") or "").startswith("✅")}  # fmt: skip
    return analysing <= finished


def group_actions(http: httpx.Client) -> list[dict[str, Any]]:
    actions: list[dict[str, Any]] = http.get(
        "/sandbox/telegram/sent", params={"chat_id": GROUP_ID}
    ).json()["actions"]
    return actions


def _boards_left(actions: list[dict[str, Any]]) -> set[int]:
    """Board messages still in the chat at the end (the board should go when nothing is open)."""
    boards = {a["message_id"] for a in actions if a["kind"] == "send"
              and (a.get("text") or "").startswith("📋")}  # fmt: skip
    return boards - {a["message_id"] for a in actions if a["kind"] == "delete"}


def run_once(tmp: Path, mode: str, albums: list[Album], durations: list[float]) -> Run:
    workdir = tmp / mode
    workdir.mkdir()
    with sandbox_process() as url, httpx.Client(base_url=url, timeout=30) as http:
        http.post(
            "/sandbox/config", json={"analysis_seconds": ANALYSIS_CAP, "failure_rate": 0.0}
        ).raise_for_status()
        limits = http.get("/sandbox/telegram/limits").json()["limits"]
        if limits != dataclasses.asdict(FloodLimits()):
            raise RuntimeError(f"the emulator's flood limits are not Telegram's defaults: {limits}")
        http.post("/sandbox/telegram/chats", json=GROUP).raise_for_status()
        overrides: dict[str, Any] = {"group_mode": mode, "resell_scan_webhook_secrets": SECRET}
        if mode == "per_album":
            overrides["telegram_group_messages_per_minute"] = 1_000_000  # unaware of the limit
        settings = bot_settings(url, workdir, **overrides)
        register_relay(http, settings, SECRET)
        files = [
            [
                http.post(
                    "/sandbox/telegram/files",
                    json={
                        "data_b64": base64.b64encode(fake_jpeg(f"team-{a.index}-{p}")).decode(),
                        "mime_type": "image/jpeg",
                    },
                ).json()["file_id"]
                for p in range(PHOTOS)
            ]
            for a in albums
        ]
        bot = start_bot(settings, workdir / "bot.log")
        completer = Completer(url, durations)
        completer.start()
        try:
            sent_ids: list[list[int]] = []
            first = time.time()
            for album, file_ids in zip(albums, files, strict=True):
                time.sleep(max(0.0, first + album.at - time.time()))
                ids = []
                for p, file_id in enumerate(file_ids):
                    answer = http.post(
                        "/sandbox/telegram/messages",
                        json={
                            "from": album.user,
                            "chat": GROUP,
                            "photo_file_id": file_id,
                            "media_group_id": f"team-{mode}-{album.index}",
                            "caption": f"/scan {album.collection}" if p == 0 else None,
                        },
                    )
                    answer.raise_for_status()
                    ids.append(int(answer.json()["message_id"]))
                sent_ids.append(ids)
            last = time.time()
            end = "limit"
            while time.time() < first + RUN_LIMIT:
                actions = group_actions(http)
                quiet = time.time() - max((a["at"] for a in actions), default=last)
                if all(_answered(actions, sent_ids)):
                    if _drained(mode, actions) and quiet >= 3.0:
                        end = "drained"
                        break
                    if quiet >= QUIET_FALLBACK:
                        end = "quiet"
                        break
                time.sleep(0.5)
            ended = time.time()
        finally:
            completer.stop.set()
            completer.join(timeout=10)
            bot.terminate()
        actions = group_actions(http)
        report = http.get("/sandbox/telegram/limits").json()
        batches = http.get("/sandbox/batches").json()["batches"]
    return Run(
        mode,
        actions,
        report,
        batches,
        sent_ids,
        first,
        last,
        ended,
        end,
        len(completer.completed),
        [
            line
            for line in (workdir / "bot.log").read_text(errors="replace").splitlines()
            if " WARNING " in line or " ERROR " in line or "Traceback" in line
        ],
    )


def measure(run: Run) -> dict[str, float]:
    actions, n = run.actions, len(run.albums)
    kinds = Counter(a["kind"] for a in actions)
    sends = sum(kinds[k] for k in SENT)
    edits = kinds["edit"] + kinds["edit_markup"]
    counted_at = [a["at"] for a in actions if a["kind"] in COUNTED]
    chat = run.limits["chats"].get(str(GROUP_ID), {})
    results = [a for a in actions if _is_result(a)]
    combined = [a for a in results if _is_combined(a)]
    delivered_at: dict[str, float] = {}
    for action in results:
        for batch in run.batches:
            short = batch["batch_id"][:8]
            if short in (action.get("text") or "") and short not in delivered_at:
                delivered_at[short] = action["at"]
    latencies = [
        delivered_at[b["batch_id"][:8]] - _wall(b["completed_at"])
        for b in run.batches
        if b.get("completed_at") and b["batch_id"][:8] in delivered_at
    ]
    answered = _answered(actions, run.albums)
    last_result = max(delivered_at.values(), default=float("nan"))
    last_action = max(
        (a["at"] for a in actions if a["kind"] in (*COUNTED, "delete")), default=float("nan")
    )
    # Edits refused with 429 that never came afterwards (dropped, not waited out).
    lost = [
        f
        for f in actions
        if f["kind"] == "flood"
        and str(f.get("method", "")).lower().startswith("edit")
        and not any(
            a["kind"] in ("edit", "edit_markup")
            and a["message_id"] == f["message_id"]
            and a["at"] > f["at"]
            for a in actions
        )
    ]
    return {
        "albums": float(n),
        "batches": float(len(run.batches)),
        "sends": float(sends),
        "edits": float(edits),
        "deletes": float(kinds["delete"]),
        "results_single": float(len(results) - len(combined)),
        "results_combined_messages": float(len(combined)),
        "per_album": (sends + edits) / n,
        "counted_emulator": float(chat.get("counted", 0)),
        "busiest_minute": float(busiest(counted_at, 60.0)),
        "busiest_minute_emulator": float(chat.get("busiest_minute", 0)),
        "floods": float(run.limits["floods"]),
        "flood_actions": float(kinds["flood"]),
        "edits_lost_after_429": float(len(lost)),
        "attempts_per_album": (sends + edits + kinds["flood"]) / n,
        "albums_answered": float(sum(answered)),
        "batches_reported": float(len(delivered_at)),
        "latency_p50": percentile(latencies, 50),
        "latency_p95": percentile(latencies, 95),
        "latency_max": max(latencies, default=float("nan")),
        "burst_to_last_result": last_result - run.last_photo,
        "first_photo_to_last_message": last_action - run.first_photo,
        "run_seconds": run.ended - run.first_photo,
        "stopped_at_limit": float(run.end == "limit"),
        "boards_left": float(len(_boards_left(actions))),
        "bot_log_problems": float(len(run.log_problems)),
    }


def breakdown(run: Run) -> str:
    """What the bot sent to the group, by kind and by what the text is."""

    def what(action: dict[str, Any]) -> str:
        text = action.get("text") or ""
        if action["kind"] == "flood":
            return f"429 ({action.get('method')}, {action.get('scope')})"
        if text.startswith("📋"):
            return "board"
        if _is_combined(action):
            return "combined results"
        if _is_result(action):
            return "single results"
        if text.startswith("⏳"):
            return "analysing"
        if text.startswith("✅"):
            return "finished"
        return (text[:30] or "-").replace("\n", " ")

    counts = Counter(f"{a['kind']} {what(a)}" for a in run.actions if a["kind"] != "reaction")
    return ", ".join(f"{name} ×{count}" for name, count in sorted(counts.items()))


def per_minute(run: Run) -> list[int]:
    """Counted messages in each minute from the first photo."""
    buckets: Counter[int] = Counter(
        int((a["at"] - run.first_photo) // 60) for a in run.actions if a["kind"] in COUNTED
    )
    return [buckets[m] for m in range(max(buckets, default=-1) + 1)]


def main(tmp: Path, quick: bool) -> dict[str, float]:
    count, seconds = (12, 5.0) if quick else (30, 10.0)
    albums, durations = plan(count, seconds)
    runs = {}
    for mode in ("board", "per_album"):
        started = time.monotonic()
        runs[mode] = run_once(tmp, mode, albums, durations)
        runs[mode].figures = measure(runs[mode])
        runs[mode].figures["wall_seconds"] = time.monotonic() - started
    new, old = runs["board"].figures, runs["per_album"].figures
    print(
        f"team group: {len(USERS)} users, {count} albums of {PHOTOS} photos within {seconds:.0f} s"
        f" into one supergroup; analyses {ANALYSIS[0]:.0f}-{ANALYSIS[1]:.0f} s (uniform, seeded;"
        " the sandbox has no spread option: each batch finished at its time through"
        " POST /sandbox/batches/{id}/complete); webhooks on; the emulator at Telegram's default"
        " limits (30/s bot, 1/s chat burst 3, 20/min group, edits count)"
    )
    print(
        "  new: GROUP_MODE=board, default settings; baseline: GROUP_MODE=per_album,"
        " TELEGRAM_GROUP_MESSAGES_PER_MINUTE=1000000 (unaware of the group limit)"
    )

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    rows: list[tuple[str, str, str, str, str]] = [
        ("messages sent (send/document/photo)", f"{new['sends']:.0f}", f"{old['sends']:.0f}",
         "", ""),
        ("edits", f"{new['edits']:.0f}", f"{old['edits']:.0f}", "", ""),
        ("deletes (not counted by Telegram)", f"{new['deletes']:.0f}", f"{old['deletes']:.0f}",
         "", ""),
        ("results: single replies / combined msgs",
         f"{new['results_single']:.0f} / {new['results_combined_messages']:.0f}",
         f"{old['results_single']:.0f} / {old['results_combined_messages']:.0f}", "", ""),
        ("messages per album, edits included", f"{new['per_album']:.2f}",
         f"{old['per_album']:.2f}", f"<= {TARGET_PER_ALBUM}",
         verdict(new["per_album"] <= TARGET_PER_ALBUM)),
        ("busiest minute (rolling 60 s)", f"{new['busiest_minute_emulator']:.0f}",
         f"{old['busiest_minute_emulator']:.0f}", f"<= {GROUP_LIMIT}",
         verdict(new["busiest_minute_emulator"] <= GROUP_LIMIT)),
        ("calls per album, 429-refused included", f"{new['attempts_per_album']:.2f}",
         f"{old['attempts_per_album']:.2f}", "", ""),
        ("429s received", f"{new['floods']:.0f}", f"{old['floods']:.0f}", "0",
         verdict(new["floods"] == 0 and new["flood_actions"] == 0)),
        ("edits refused with 429, never made", f"{new['edits_lost_after_429']:.0f}",
         f"{old['edits_lost_after_429']:.0f}", "", ""),
        ("results delivered (albums answered)",
         f"{new['albums_answered']:.0f}/{count}", f"{old['albums_answered']:.0f}/{count}",
         "all", verdict(new["albums_answered"] == count and new["batches_reported"] == count)),
        ("completion -> result, median", f"{new['latency_p50']:.1f} s",
         f"{old['latency_p50']:.1f} s", "", ""),
        ("completion -> result, p95", f"{new['latency_p95']:.1f} s",
         f"{old['latency_p95']:.1f} s", "", ""),
        ("last photo -> last result", f"{new['burst_to_last_result']:.1f} s",
         f"{old['burst_to_last_result']:.1f} s", "", ""),
        ("first photo -> last message, edit or delete",
         f"{new['first_photo_to_last_message']:.0f} s",
         f"{old['first_photo_to_last_message']:.0f} s", "", ""),
        ("board messages left in the chat at the end", f"{new['boards_left']:.0f}",
         f"{old['boards_left']:.0f}", "", ""),
        ("run stopped (first photo -> stop)",
         f"{runs['board'].end} {new['run_seconds']:.0f} s",
         f"{runs['per_album'].end} {old['run_seconds']:.0f} s", "", ""),
    ]  # fmt: skip
    print(f"  {'':42} {'new (board)':>14} {'baseline':>14} {'target':>8}  verdict")
    for name, a, b, target, ok in rows:
        print(f"  {name:42} {a:>14} {b:>14} {target:>8}  {ok}")
    for mode, label in (("board", "new"), ("per_album", "baseline")):
        run = runs[mode]
        print(f"  {label}: counted per minute from the first photo {per_minute(run)}")
        print(f"  {label}: {breakdown(run)}")
    for mode, label in (("board", "new"), ("per_album", "baseline")):
        problems = runs[mode].log_problems
        if problems:
            print(f"  {label}: bot log, {len(problems)} warnings/errors, e.g.: {problems[0][:160]}")
    print(
        f"  wall time per run, start-up included: new {new['wall_seconds']:.0f} s,"
        f" baseline {old['wall_seconds']:.0f} s (a run stops once every result is in and the"
        f" bot has nothing left to send, or after {QUIET_FALLBACK:.0f} s without a message,"
        f" or {RUN_LIMIT:.0f} s after the first photo)"
    )
    if runs["board"].completed_by_bench < count or runs["per_album"].completed_by_bench < count:
        print(
            "  note: some batches finished by themselves at the cap "
            f"({runs['board'].completed_by_bench}, {runs['per_album'].completed_by_bench}"
            f" of {count} finished at their drawn time)"
        )
    out = dict(new)
    out.update({f"baseline_{k}": v for k, v in old.items()})
    return out
