"""Completion latency: from the sandbox sending a signed analysis.completed webhook to the
emulator receiving the results reply, over many batches (bot and sandbox as processes).

Photos are paced so the bot's messages stay under Telegram's 30 messages/s: the figure is the
bot's own latency, without rate-limit waits. Baseline in the same run: one round trip of the
same webhook request to the bot's relay for an unknown batch (store and acknowledge only)."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

import httpx

from bench.common import bot_settings, percentile, sandbox_process, start_bot
from bot.resellscan.webhooks import sign
from sandbox.data import fake_jpeg

SECRET = "whsec_YmVuY2gtbGF0ZW5jeQ"


def main(tmp: Path, quick: bool) -> dict[str, float]:
    batches = 60 if quick else 500
    pace = 8.0  # photos per second: ~3 bot messages each, under 30/s
    with sandbox_process() as url:
        http = httpx.Client(base_url=url, timeout=30)
        http.post(
            "/sandbox/config",
            json={"analysis_seconds": 2.0, "rate_limit": 10**9, "failure_rate": 0},
        )
        settings = bot_settings(
            url,
            tmp,
            resell_scan_webhook_secrets=SECRET,
            poll_initial_seconds=600,
            poll_max_seconds=600,
            album_window_seconds=0.2,
        )
        http.post(
            "/sandbox/webhooks",
            json={
                "url": f"http://127.0.0.1:{settings.http_port}/webhooks/resell-scan",
                "secret": SECRET,
            },
        )
        bot = start_bot(settings, tmp / "bot.log")
        try:
            file_id = http.post(
                "/sandbox/telegram/files",
                json={
                    "data_b64": base64.b64encode(fake_jpeg("latency")).decode(),
                    "mime_type": "image/jpeg",
                },
            ).json()["file_id"]
            started = time.monotonic()
            for i in range(batches):
                http.post(
                    "/sandbox/telegram/messages",
                    json={
                        "from": {"id": 9000 + i, "first_name": f"S{i}"},
                        "photo_file_id": file_id,
                        "caption": "/scan Electronics",
                    },
                )
                time.sleep(max(0.0, started + (i + 1) / pace - time.monotonic()))
            replies: dict[str, float] = {}
            deadline = time.monotonic() + 120
            while len(replies) < batches and time.monotonic() < deadline:
                replies = {}
                for action in http.get("/sandbox/telegram/sent").json()["actions"]:
                    text = action.get("text") or ""
                    if action["kind"] == "send" and text.startswith("📊"):
                        match = re.search(r"Batch (\w{8})", text)
                        if match:
                            replies[match.group(1)] = action["at"]
                time.sleep(0.5)
            deliveries = http.get("/sandbox/webhooks/deliveries").json()["deliveries"]
            sent = {}
            for d in deliveries:
                sent.setdefault(d["batch_id"][:8], d["sent_at"])
            latencies = [replies[b] - sent[b] for b in replies if b in sent]
            # Baseline: the relay's own round trip (verify, store, acknowledge) for an event
            # whose batch the bot does not know: no notification work at all.
            relay = f"http://127.0.0.1:{settings.http_port}/webhooks/resell-scan"
            baseline = []
            with httpx.Client() as client:  # kept alive, as the sandbox's webhook sender is
                for i in range(200):
                    body = json.dumps(
                        {
                            "id": f"evt_base_{i}",
                            "event": "analysis.completed",
                            "data": {"batch_id": f"unknown-{i}"},
                        }
                    ).encode()
                    t0 = time.time()
                    client.post(
                        relay, content=body, headers={"x-webhook-signature": sign(body, SECRET)}
                    )
                    baseline.append(time.time() - t0)
        finally:
            bot.terminate()
    p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
    b50, b99 = percentile(baseline, 50) * 1000, percentile(baseline, 99) * 1000
    print(f"completion latency, webhook sent -> results reply received ({len(latencies)} batches):")
    print(f"  baseline: relay round trip only   median {b50:6.1f} ms   p99 {b99:6.1f} ms")
    print(
        f"  webhook to results reply          median {p50:6.1f} ms   p99 {p99:6.1f} ms"
        f"  (target p99 < 100 ms)  ratio {p50 / b50:.1f}x median"
    )
    return {
        "p50": p50,
        "p99": p99,
        "baseline_p50": b50,
        "baseline_p99": b99,
        "n": float(len(latencies)),
    }
