"""Shared fixtures: real SQLite files in a temp dir, and the sandbox on loopback."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, settings

from sandbox.server import SandboxThread
from storage import Counts, Database, NewPhoto, Store, WebhookOutcome

T = TypeVar("T")

# Property tests run the same examples on every run and every machine (seeded from each test's
# own code), so CI fails only for a change, never for a draw; no example database, no deadline
# or too-slow health check (both measure the machine's load, not the code). To search afresh:
# `pytest --hypothesis-profile=explore` (random examples, failures kept in .hypothesis/).
settings.register_profile(
    "deterministic",
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile("deterministic")


_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


def pytest_unconfigure(config: pytest.Config) -> None:
    """A test that leaves a database open (its aiosqlite thread is not a daemon) would make
    the run hang at exit instead of ending; end it, and fail a run that looked green."""
    leaked = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if leaked:
        status = (_exit_status or [0])[-1] or 3
        sys.stderr.write(
            f"\nerror: {len(leaked)} thread(s) left running by the tests (an unclosed database?):"
            f" {[t.name for t in leaked][:5]}\n"
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--large", action="store_true", help="run the reliability suite at its large size"
    )


@pytest.fixture
def large(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--large"))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = await Database.open(tmp_path / "bot.sqlite3")
    try:
        yield Store(db)
    finally:
        await db.close()


_message_ids = itertools.count(1)


def new_photo(chat_id: int = 1, user_id: int = 10, **extra: Any) -> NewPhoto:
    message_id = extra.pop("message_id", None) or next(_message_ids)
    return NewPhoto(
        chat_id=chat_id,
        message_id=message_id,
        user_id=user_id,
        user_name=f"User {user_id}",
        file_id=f"file-{chat_id}-{message_id}",
        file_unique_id=f"u-{chat_id}-{message_id}",
        **extra,
    )


async def apply_webhook(
    store: Store,
    event_id: str,
    batch_id: str | None,
    payload: dict[str, Any],
    now: float,
    *,
    counts: Counts | None = None,
) -> WebhookOutcome:
    """Store an `analysis.completed` event as the relay does: the raw body, its `data` part as
    the results, and the counts read from it (given, or none)."""
    return await store.apply_webhook(
        event_id,
        "analysis.completed",
        batch_id,
        json.dumps(payload),
        results=payload.get("data", payload),
        counts=counts or Counts(),
        now=now,
    )


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxThread]:
    with SandboxThread() as server:
        yield server


# Telegram allows about one message a second in a chat. The bot keeps to that by design, which
# makes a test that sends twenty photos to one private chat wait twenty seconds. Tests that are
# not about flood limits relax that one limit, in the emulator and in the bot alike (the group
# and overall limits stay Telegram's); tests marked `telegram_limits` get Telegram's figures.
RELAXED_CHAT_PER_SECOND = 50.0


@pytest.fixture
def sandbox(sandbox_server: SandboxThread, request: pytest.FixtureRequest) -> SandboxThread:
    """The shared sandbox, reset to its seeded state for this test."""
    with httpx.Client(base_url=sandbox_server.url, timeout=10) as http:
        http.post("/sandbox/reset").raise_for_status()
        http.post("/sandbox/telegram/reset").raise_for_status()
        http.post("/sandbox/config", json={"analysis_seconds": 0.3, "failure_rate": 0.0})
        if request.node.get_closest_marker("telegram_limits") is None:
            http.post(
                "/sandbox/telegram/limits",
                json={"per_chat_per_second": RELAXED_CHAT_PER_SECOND, "chat_burst": 50},
            ).raise_for_status()
    return sandbox_server


async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    within: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll `probe` until it returns something truthy, or fail after `within` seconds."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


@pytest.fixture
async def harness(sandbox: SandboxThread) -> AsyncIterator[Any]:
    from tests.harness import Harness

    async with httpx.AsyncClient(base_url=sandbox.url, timeout=10) as http:
        yield Harness(sandbox, http)


@pytest.fixture
def settings_for(
    sandbox: SandboxThread, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[..., Any]:
    from tests.harness import make_settings

    relaxed = request.node.get_closest_marker("telegram_limits") is None

    def build(**overrides: Any) -> Any:
        if relaxed:
            overrides.setdefault("telegram_chat_messages_per_second", RELAXED_CHAT_PER_SECOND)
        return make_settings(sandbox, tmp_path, **overrides)

    return build
