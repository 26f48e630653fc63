"""Processes and helpers shared by the benchmarks: the sandbox and the bot as real processes."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
