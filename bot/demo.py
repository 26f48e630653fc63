"""`resell-scan-bot demo`: the whole flow offline, with the real bot against the sandbox.

Plays one short chat (an album with a caption, /status, the signed webhook completing the batch,
the results reply) and prints it as a person would read it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bot.app import BotRuntime
from bot.config import Settings
from bot.logs import setup_logging
from sandbox.data import fake_jpeg
from sandbox.server import SandboxThread, free_port

DEMO_TOKEN = "424242:demo-token-not-a-real-one"  # noqa: S105 (sandbox-only token)
DEMO_SECRET = "whsec_ZGVtby13ZWJob29rLXNlY3JldA"  # noqa: S105 (sandbox-only secret)
LENA: dict[str, Any] = {"id": 4242, "first_name": "Lena", "language_code": "en"}
CAPTION = "/scan Sneakers purchasePrice=12,5 size=42"


def _indent(text: str, prefix: str = "     ") -> str:
    return "\n".join(prefix + line if line else "" for line in text.splitlines())


class Transcript:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, who: str, text: str) -> None:
        stamp = f"{time.monotonic() - self.started:5.1f}s"
        first, *rest = text.splitlines() or [""]
        print(f"[{stamp}] {who}: {first}")
        if rest:
            print(_indent("\n".join(rest), " " * (len(stamp) + len(who) + 5)))
        sys.stdout.flush()


async def _wait_for(
    http: httpx.AsyncClient, chat_id: int, seen: int, needle: str, within: float = 30.0
) -> tuple[dict[str, Any], int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        actions = (await http.get("/sandbox/telegram/sent", params={"chat_id": chat_id})).json()[
            "actions"
        ]
        for index, action in enumerate(actions[seen:], start=seen):
            if needle in (action.get("text") or ""):
                return action, index + 1
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the bot did not answer with {needle!r} within {within:.0f}s")


async def run_demo(*, verbose: bool = False) -> int:
    setup_logging("INFO" if verbose else "ERROR", "text", [DEMO_TOKEN, DEMO_SECRET])
    log = logging.getLogger("demo")
    out = Transcript()
    print(
        "resell-scan-bot demo: the real bot, a local Resell Scan sandbox and a Telegram "
        "emulator, all on 127.0.0.1.\n"
    )
    with SandboxThread() as sandbox, tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        settings = Settings(
            _env_file=None,
            telegram_bot_token=DEMO_TOKEN,
            telegram_api_base_url=sandbox.url,
            telegram_poll_timeout=1,
            resell_scan_api_key="rs_test_full",
            resell_scan_base_url=sandbox.api_url,
            resell_scan_webhook_secrets=DEMO_SECRET,
            public_base_url=f"http://127.0.0.1:{port}",
            http_port=port,
            database_path=Path(tmp) / "demo.sqlite3",
            allowed_user_ids=[LENA["id"]],
            album_window_seconds=0.5,
            poll_initial_seconds=5,
            log_level="INFO" if verbose else "ERROR",
        )
        async with httpx.AsyncClient(base_url=sandbox.url, timeout=10) as http:
            await http.post("/sandbox/config", json={"analysis_seconds": 2.5, "failure_rate": 0})
            await http.post(
                "/sandbox/webhooks",
                json={
                    "url": f"http://127.0.0.1:{port}/webhooks/resell-scan",
                    "secret": DEMO_SECRET,
                },
            )
            runtime = BotRuntime(settings)
            await runtime.start()
            try:
                seen = 0
                files = []
                for i in range(3):
                    data = base64.b64encode(fake_jpeg(f"demo-sneaker-{i}")).decode()
                    response = await http.post(
                        "/sandbox/telegram/files",
                        json={"data_b64": data, "mime_type": "image/jpeg"},
                    )
                    files.append(response.json()["file_id"])
                out.say("Lena", f'sends an album of 3 photos, caption "{CAPTION}"')
                for i, file_id in enumerate(files):
                    await http.post(
                        "/sandbox/telegram/messages",
                        json={
                            "from": LENA,
                            "photo_file_id": file_id,
                            "media_group_id": "demo-album",
                            "caption": CAPTION if i == 0 else None,
                        },
                    )
                action, seen = await _wait_for(http, LENA["id"], seen, "Analysing")
                out.say("bot ", action["text"])
                out.say("Lena", "/status")
                await http.post(
                    "/sandbox/telegram/messages", json={"from": LENA, "text": "/status"}
                )
                action, seen = await _wait_for(http, LENA["id"], seen, "Open analyses")
                out.say("bot ", action["text"])
                results, seen = await _wait_for(http, LENA["id"], seen, "Results")
                deliveries = (await http.get("/sandbox/webhooks/deliveries")).json()["deliveries"]
                if deliveries:
                    first = deliveries[0]
                    out.say(
                        "Resell Scan",
                        f"POST /webhooks/resell-scan analysis.completed "
                        f"(batch {first['batch_id'][:8]}, signed) -> HTTP {first['status']}",
                    )
                out.say("bot ", results["text"])
                creates = (
                    await http.get(
                        "/sandbox/requests", params={"path": "/products/createAndAnalyze"}
                    )
                ).json()
                print(
                    f"\nResell Scan received {creates['count']} createAndAnalyze request(s); "
                    "the bot served each photo at a signed URL the sandbox fetched."
                )
                print("Next: README.md, 'Real setup', to run it with your own bot and API key.")
                return 0
            except TimeoutError as exc:
                log.error("demo failed: %s", exc)
                print(f"\ndemo failed: {exc}", file=sys.stderr)
                return 1
            finally:
                await runtime.stop()
