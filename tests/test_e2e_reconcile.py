"""Reconciling ambiguous uploads without the user, one test per branch, through the real bot
and the sandbox (whose request log proves what reached Resell Scan).

A createAndAnalyze whose answer is lost (5xx, dropped connection, timeout) may or may not have
created products. The bot looks its own file names up among the collection's products created
since the request: not there (and that proves it: tests/test_paid_calls.py) -> resent once with
the same Idempotency-Key; there + webhook ->
attached by product ids; there, no webhook -> POST /products/analyze of exactly those products;
lookup refused -> the user is asked, with the facts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from storage import State
from tests.conftest import eventually
from tests.harness import ANNA, WEBHOOK_SECRET, Harness, bot_running, results_replies

FAST = {"reconcile_settle_seconds": 0.3, "reconcile_margin_seconds": 60}
ASKED = "do not know whether the analysis started"


async def _no_question(harness: Harness, chat: int) -> None:
    texts = [a["text"] or "" for a in await harness.sent(chat)]
    assert not [t for t in texts if "❔" in t], texts


async def _sandbox_product_ids(harness: Harness) -> list[str]:
    batches = (await harness.http.get("/sandbox/batches")).json()["batches"]
    return [pid for batch in batches for pid in batch["product_ids"]]


async def test_not_created_is_sent_again_with_the_same_key(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """A first upload shows that listings carry the bot's file names; the second's answer is
    lost before Resell Scan processed it: looked up (a settle delay, one re-check), proven
    absent, and sent again with the same key and body (tests/test_paid_calls.py has the
    cases where an absence proves nothing)."""
    async with bot_running(settings_for(**FAST)):
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "Results", within=20)
        await harness.rs(
            "/sandbox/faults",
            {
                "error_burst": 1,
                "error_status": 502,
                "match": "createAndAnalyze",
            },  # before processing
        )
        await harness.photo(ANNA, caption="/scan Electronics")

        async def both() -> bool:
            return len(results_replies(await harness.sent(ANNA["id"]))) == 2

        await eventually(both, what="both results", within=20)
        await _no_question(harness, ANNA["id"])
    requests = (await harness.rs_requests("/products/createAndAnalyze"))[1:]
    assert [r["status"] for r in requests] == [502, 201]
    assert len({r["idempotency_key"] for r in requests}) == 1, "the resend keeps its key"
    assert requests[0]["body"] == requests[1]["body"]
    [image] = requests[1]["body"]["products"][0]["images"]
    assert image["fileName"].startswith("rsb-2-") and image["fileName"].endswith("-1.jpg")
    lookups = [
        r
        for r in await harness.rs_requests(method="GET")
        if r["path"].endswith("/products") and "rsb-2-" in str(r["query"])
    ]
    assert len(lookups) >= 2, "looked twice (settle delay, one re-check) before resending"
    assert all("created_after" in r["query"] for r in lookups)


async def test_created_then_webhook_attaches_by_product_ids(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    await harness.rs(
        "/sandbox/faults",
        {
            "error_burst": 1,
            "error_status": 502,
            "error_after_processing": True,
            "match": "createAndAnalyze",
        },
    )
    settings = settings_for(
        **FAST,
        resell_scan_webhook_secrets=WEBHOOK_SECRET,
        reconcile_webhook_wait_seconds=60,
        poll_initial_seconds=600,
    )
    async with bot_running(settings) as bot:
        await harness.rs(
            "/sandbox/webhooks",
            {"url": f"http://127.0.0.1:{bot.port}/webhooks/resell-scan", "secret": WEBHOOK_SECRET},
        )
        await harness.photo(ANNA, caption="/scan Electronics")
        reply = await harness.wait_text(ANNA["id"], "Results", within=20)
        await _no_question(harness, ANNA["id"])
        assert bot.store is not None
        sub = await bot.store.get(1)
        batches = (await harness.http.get("/sandbox/batches")).json()["batches"]
        assert sub is not None and sub.batch_id == batches[0]["batch_id"], "the sandbox's batch"
        assert sub.completed_by == "webhook" and sub.product_ids == batches[0]["product_ids"]
    assert "Batch" in reply["text"] or "batch" in reply["text"]
    assert len(await harness.rs_requests("/products/createAndAnalyze")) == 1
    assert await harness.rs_requests("/products/analyze", method="POST") == []
    assert len(results_replies(await harness.sent(ANNA["id"]))) == 1


async def test_created_without_webhook_analyses_exactly_those_products(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    await harness.rs(
        "/sandbox/faults",
        {"drop_count": 1, "drop_after_processing": True, "match": "createAndAnalyze"},
    )
    async with bot_running(settings_for(**FAST)):
        await harness.album(ANNA, count=2, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "Results", within=20)
        await _no_question(harness, ANNA["id"])
    creates = await harness.rs_requests("/products/createAndAnalyze")
    assert len(creates) == 1, "the products are never created twice"
    [analyze] = await harness.rs_requests("/products/analyze", method="POST")
    created = (await harness.http.get("/sandbox/batches")).json()["batches"][0]["product_ids"]
    assert analyze["body"]["productIds"] == created
    assert len(results_replies(await harness.sent(ANNA["id"]))) == 1


async def test_lookup_refused_asks_the_user_with_the_facts(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    await harness.lose_next_upload_answer()
    async with bot_running(settings_for(**FAST)) as bot:
        await harness.photo(ANNA, caption="/scan Electronics")
        question = await harness.wait_text(ANNA["id"], ASKED, within=20)
        assert "connection broke off" in question["text"]
        assert "lacks the “products” permission" in question["text"]
        assert "Electronics" in question["text"]
        assert question["reply_markup"]["inline_keyboard"][0][0]["text"] == "🔁 Send again"
        await harness.text(ANNA, "/status")
        status = await harness.wait_text(ANNA["id"], "Open analyses")
        assert "uncertain" in status["text"], "the message points to /status: it is there"
        assert bot.store is not None
        sub = await bot.store.get(1)
        assert sub is not None and sub.state is State.UNCERTAIN
    assert await harness.rs_requests("/products/analyze", method="POST") == []


async def test_rate_limited_upload_waits_queued_and_is_never_dropped(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    await harness.rs(
        "/sandbox/faults",
        {"storm_count": 9, "storm_retry_after": "1", "match": "createAndAnalyze"},
    )
    async with bot_running(settings_for(resell_scan_max_attempts=2)) as bot:
        await harness.photo(ANNA, caption="/scan Electronics")
        assert bot.store is not None

        async def queued() -> bool:
            sub = await bot.store.get(1)  # type: ignore[union-attr]
            return sub is not None and sub.rate_limited_since is not None

        await eventually(queued, what="the submission queued by the 429s")
        await harness.text(ANNA, "/status")
        await harness.wait_text(ANNA["id"], "waiting: Resell Scan is busy")
        await harness.wait_text(ANNA["id"], "Results", within=30)
    texts = [a["text"] or "" for a in await harness.sent(ANNA["id"])]
    assert not [t for t in texts if "cannot be reached" in t]
    statuses = [r["status"] for r in await harness.rs_requests("/products/createAndAnalyze")]
    assert statuses == [429] * 9 + [201]


async def test_while_the_client_waits_out_429s_status_says_waiting_not_sending(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """The client itself retries a 429 (here up to 10 times): meanwhile /status says the
    upload waits for a busy Resell Scan (before: "sending" for that whole time)."""
    await harness.rs(
        "/sandbox/faults",
        {"storm_count": 30, "storm_retry_after": "1", "match": "createAndAnalyze"},
    )
    async with bot_running(settings_for(resell_scan_max_attempts=10)) as bot:
        await harness.photo(ANNA, caption="/scan Electronics")
        assert bot.store is not None

        async def busy() -> bool:
            sub = await bot.store.get(1)  # type: ignore[union-attr]
            return sub is not None and (sub.last_error or "").startswith("busy")

        await eventually(busy, what="the client waiting out a 429")
        sub = await bot.store.get(1)
        assert sub is not None and sub.state is State.SUBMITTING
        await harness.text(ANNA, "/status")
        status = await harness.wait_text(ANNA["id"], "Open analyses")
        assert "waiting: Resell Scan is busy" in status["text"], status["text"]
        await harness.rs("/sandbox/faults", {})


async def test_a_photo_just_after_done_starts_the_next_batch(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """A phone uploads late: the photo that reaches the bot as the /batch is being sent is
    neither stored silently in it nor sent somewhere else; it starts the next batch."""
    async with bot_running(settings_for()):
        await harness.text(ANNA, "/batch Electronics")
        await harness.wait_text(ANNA["id"], "Collecting")
        await harness.photo(ANNA)
        await harness.photo(ANNA)
        await harness.text(ANNA, "/done")
        late = await harness.photo(ANNA)
        note = await harness.wait_text(ANNA["id"], "starts a new batch there")
        assert note["reply_to"] == late and "Electronics" in note["text"]
        await harness.wait_text(ANNA["id"], "Results")
        await harness.text(ANNA, "/done")
        await harness.wait_sent(
            ANNA["id"], lambda a: len(results_replies([a])) == 1 and "1 photo" in a["text"],
            what="the second batch's results",
        )  # fmt: skip
    creates = await harness.rs_requests("/products/createAndAnalyze")
    assert [len(c["body"]["products"]) for c in creates] == [2, 1]
