"""Serve both stand-ins on one port: the Resell Scan API at /api/v1 and the Telegram Bot API
emulator at /bot<token>/ and /file/bot<token>/, with their control APIs under /sandbox/.

`SandboxThread` runs the server on its own event loop in a background thread, so tests and the
demo can use it from any loop; `serve()` runs it in the foreground for `resell-scan-bot sandbox`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette

from sandbox.resellscan import ResellScanSandbox
from sandbox.telegram import TelegramEmulator

log = logging.getLogger("sandbox")


class Sandbox:
    """Both stand-ins and the Starlette app that serves them."""

    def __init__(self, *, bot_username: str = "ResellScanSandboxBot") -> None:
        self.resellscan = ResellScanSandbox()
        self.telegram = TelegramEmulator(bot_username=bot_username)

        @contextlib.asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            await self.resellscan.start()
            try:
                yield
            finally:
                await self.telegram.stop()
                await self.resellscan.stop()

        self.app = Starlette(
            routes=[*self.telegram.routes(), *self.resellscan.routes()], lifespan=lifespan
        )


class _DroppedConnectionFilter(logging.Filter):
    """Hide the error uvicorn logs when a fault switch drops a connection on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (exc is not None and "Too little data for declared Content-Length" in str(exc))


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for a server that needs its URL before it starts)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this. Without it, a server given a pre-bound socket answers
    # with Nagle's algorithm on: headers and body in two writes meet the client's delayed ACK,
    # and every request on a kept-alive connection takes ~40 ms more on loopback.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def make_server(app: Any, *, log_level: str = "warning") -> uvicorn.Server:
    error_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DroppedConnectionFilter) for f in error_log.filters):
        error_log.addFilter(_DroppedConnectionFilter())
    config = uvicorn.Config(
        app,
        http="h11",
        lifespan="on",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    return uvicorn.Server(config)


class SandboxThread:
    """The sandbox on 127.0.0.1 (a free port unless given) in a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sandbox = Sandbox()
        self._sock = bind(host, port)
        self.host, self.port = self._sock.getsockname()[:2]
        self._server = make_server(self.sandbox.app)
        self._thread = threading.Thread(target=self._run, name="sandbox", daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v1"

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._server.serve(sockets=[self._sock]))
        self.loop.close()

    def start(self) -> SandboxThread:
        self._thread.start()
        for _ in range(500):
            if self._server.started:
                return self
            self._thread.join(0.01)
        raise RuntimeError("sandbox did not start")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()

    def __enter__(self) -> SandboxThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def serve(host: str, port: int) -> None:
    """Foreground server for `resell-scan-bot sandbox`; returns on Ctrl-C."""
    sandbox = Sandbox()
    server = make_server(sandbox.app, log_level="info")
    await server.serve(sockets=[bind(host, port)])
