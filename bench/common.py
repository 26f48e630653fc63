"""Processes and helpers shared by the benchmarks: the sandbox and the bot as real processes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from sandbox.server import free_port

ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def sandbox_process() -> Iterator[str]:
    """`resell-scan-bot sandbox` as its own process; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "sandbox", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(url + "/sandbox/requests", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="rsb-bench-") as tmp:
        yield Path(tmp)


def bot_settings(sandbox_url: str, tmp: Path, **overrides: Any) -> Any:
    from bot.config import Settings

    port = overrides.pop("http_port", None) or free_port()
    values: dict[str, Any] = {
        "telegram_bot_token": "777000:bench-token",
        "telegram_api_base_url": sandbox_url,
        "telegram_poll_timeout": 1,
        "resell_scan_api_key": "rs_test_full",
        "resell_scan_base_url": sandbox_url + "/api/v1",
        "http_port": port,
        "public_base_url": f"http://127.0.0.1:{port}",
        "database_path": tmp / "bench.sqlite3",
        "allow_all_users": True,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def start_bot(settings: Any, log: Path) -> Any:
    from tests.proc import BotProcess

    return BotProcess(settings, log).start(timeout=60)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def env_summary() -> str:
    cpus = os.cpu_count()
    return f"{sys.platform}, {cpus} cores, Python {sys.version.split()[0]}"


def create_batches(http: httpx.Client, count: int) -> list[str]:
    """`count` one-product batches created straight at the sandbox's API."""
    import base64
    from concurrent.futures import ThreadPoolExecutor

    from sandbox.data import collection_id, fake_jpeg

    image = {
        "url": "data:image/jpeg;base64," + base64.b64encode(fake_jpeg("b")).decode(),
        "fileName": "b.jpg",
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


async def seed_submitted(
    settings: Any, batch_ids: list[str], next_poll: Callable[[int], float]
) -> None:
    """One open `submitted` submission per batch in the bot's database, through the storage
    API; the i-th is next polled at next_poll(i)."""
    import asyncio

    from sandbox.data import collection_id
    from storage import Database, NewPhoto, Store

    db = await Database.open(settings.database_path)
    store = Store(db)
    now = time.time()
    electronics = collection_id("Electronics")
    try:
        for start in range(0, len(batch_ids), 500):
            part = batch_ids[start : start + 500]
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
                sub_id = result.submission_id
                await store.choose_collection(sub_id, electronics, "Electronics", now)
                await store.begin_submit(sub_id, now)
                await store.mark_submitted(sub_id, batch_id, next_poll(start + offset), now)
    finally:
        await db.close()


def log_problems(log: Path, ignore: str | None = None) -> list[str]:
    """The WARNING and ERROR lines (and tracebacks) of a bot's log; none containing `ignore`."""
    if not log.exists():
        return []
    return [
        line
        for line in log.read_text(errors="replace").splitlines()
        if (" WARNING " in line or " ERROR " in line or "Traceback" in line)
        and not (ignore and ignore in line)
    ]


def print_log_problems(label: str, log: Path, limit: int = 3, ignore: str | None = None) -> None:
    problems = log_problems(log, ignore)
    if problems:
        distinct = list(dict.fromkeys(p[24:][:200] for p in problems))  # without the time
        print(f"  {label}: bot log, {len(problems)} warnings/errors, e.g.: {distinct[:limit]}")


def stop_bot(bot: Any, timeout: float = 15.0) -> str | None:
    """SIGTERM the bot process and wait; SIGKILL it when it does not exit in time. None when it
    exited by itself, else what happened (for the benchmark to print)."""
    try:
        bot.terminate(timeout=timeout)
        return None
    except subprocess.TimeoutExpired:
        bot.kill()
        return f"the bot did not exit within {timeout:.0f} s of SIGTERM (killed)"


def register_relay(http: httpx.Client, settings: Any, secret: str) -> None:
    """Point the sandbox's analysis.completed webhooks at the bot's relay, signed with `secret`."""
    http.post(
        "/sandbox/webhooks",
        json={
            "url": f"http://127.0.0.1:{settings.http_port}/webhooks/resell-scan",
            "secret": secret,
        },
    ).raise_for_status()
