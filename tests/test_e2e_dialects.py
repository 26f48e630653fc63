"""Photo in, one results reply out, whatever dialect Resell Scan speaks: the sandbox's four
dialects vary envelopes, key casing, id and time types, status case, nested result values and
nulls (README, "The sandbox"), on the polling path and the webhook path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import eventually
from tests.harness import ANNA, WEBHOOK_SECRET, Harness, bot_running, results_replies

DIALECTS = ("standard", "snake", "envelope", "webhook_only")
CASES = [
    (dialect, path)
    for dialect in DIALECTS
    for path in ("polling", "webhook")
    # webhook_only: the status endpoint never says finished, by definition
    if not (dialect == "webhook_only" and path == "polling")
]


@pytest.mark.parametrize(("dialect", "path"), CASES)
async def test_photo_to_one_results_reply(
    harness: Harness, settings_for: Callable[..., Any], dialect: str, path: str
) -> None:
    await harness.rs("/sandbox/config", {"dialect": dialect, "analysis_seconds": 0.3})
    overrides: dict[str, Any] = {}
    if path == "webhook":  # polling so slow that only the webhook can finish it in time
        overrides = {
            "resell_scan_webhook_secrets": WEBHOOK_SECRET,
            "poll_initial_seconds": 600,
            "poll_max_seconds": 600,
        }
    async with bot_running(settings_for(**overrides)) as bot:
        if path == "webhook":
            await harness.rs(
                "/sandbox/webhooks",
                {
                    "url": f"http://127.0.0.1:{bot.port}/webhooks/resell-scan",
                    "secret": WEBHOOK_SECRET,
                },
            )
        await harness.album(ANNA, count=2, caption="/scan Electronics")
        reply = await harness.wait_text(ANNA["id"], "Results", within=20)
        assert bot.store is not None
        sub = await bot.store.get(1)
        assert sub is not None
        assert sub.completed_by == ("webhook" if path == "webhook" else "poll")
        # What /find and /report read is kept whatever the dialect: title, brand, price.
        store = bot.store

        async def kept() -> list[Any]:
            # Kept when the results were known, linked to the reply once that was sent.
            rows, _ = await store.history.find(ANNA["id"], "")
            return rows if all(r.message_id is not None for r in rows) else []

        if "failed" not in reply["text"]:
            [row] = await eventually(kept, what="the product kept for /find and /report")
            assert row.title and row.brand and row.currency == "EUR"
            assert row.price_min is not None and row.price_max is not None
            assert row.price_min <= row.price_max
            assert row.message_id is not None
    text = reply["text"]
    assert "Electronics" in text
    assert "1 of 1 analysed" in text or "failed" in text
    assert "{'" not in text and "': " not in text, "values, not Python dicts"
    assert "could not read" not in text
    if "failed" not in text:
        assert "Brand:" in text and "💶" in text and "%" in text
    assert len(results_replies(await harness.sent(ANNA["id"]))) == 1
