"""Paid calls (bot/paid.py, storage/ledger.py): never paid twice on a guess, at most two per
user decision, whatever the API does. Through the real bot and the sandbox, whose request log
and product store prove what reached Resell Scan and what it made.

The sandbox is switched to the least convenient behaviour the guide allows: it ignores
`Idempotency-Key` (every POST is processed anew) and, where a test says so, its product
listings show no file names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import bot.reconcile as reconcile
from bot.paid import KEY_HONOURED, LISTING_FILE_NAMES, NO, YES
from sandbox.data import fake_jpeg
from storage import State
from tests.conftest import eventually
from tests.harness import ANNA, BEN, WEBHOOK_SECRET, Harness, bot_running, results_replies

pytestmark = pytest.mark.timeout(60)

FAST = {"reconcile_settle_seconds": 0.3, "reconcile_margin_seconds": 60}
ASKED = "do not know whether the analysis started"
FOUND = "so the upload worked, but I could not start or confirm their analysis"


async def _products(harness: Harness) -> int:
    batches = (await harness.http.get("/sandbox/batches")).json()["batches"]
    return len({pid for b in batches for pid in b["product_ids"]})


async def _posts(harness: Harness, path: str) -> list[dict[str, Any]]:
    return [r for r in await harness.rs_requests(path, method="POST") if r["path"].endswith(path)]


async def _learned(bot: Any, name: str) -> str | None:
    value: str | None = await bot.store.fact(name)
    return value


async def test_the_bot_learns_whether_listings_show_its_file_names(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """After its first upload the bot looks its products up once (free GETs) and keeps what
    it saw: listings that show file names make an absence a proof later; listings that do
    not never will."""
    async with bot_running(settings_for()) as bot:
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "Results", within=20)
        assert await _learned(bot, LISTING_FILE_NAMES) == YES
    await harness.rs("/sandbox/config", {"listing_file_names": False})
    second = settings_for().database_path.with_name("second.sqlite3")  # a fresh bot
    async with bot_running(settings_for(database_path=second)) as bot:
        await harness.photo(BEN, caption="/scan Electronics")
        await harness.wait_text(BEN["id"], "Results", within=20)
        assert await _learned(bot, LISTING_FILE_NAMES) == NO


async def test_a_failing_listing_lookup_is_not_repeated_on_every_upload(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """The lookup of what listings show fails (here: 403 on the listing): the bot does not
    repeat it after every upload, and keeps uploading (before: one failing GET per upload,
    without bound)."""
    await harness.rs(
        "/sandbox/faults",
        {
            "error_rate": 1.0,
            "error_status": 403,
            "pattern": "/collections/[^/]+/products$",
            "methods": ["GET"],
        },
    )
    async with bot_running(settings_for()) as bot:
        for count in (1, 2, 3):  # one after the other (uploads at once may look up at once)
            await harness.photo(ANNA, caption="/scan Electronics")
            await eventually_results(harness, count)
        assert await _learned(bot, LISTING_FILE_NAMES) is None
    lookups = [
        r for r in await harness.rs_requests(method="GET") if r["path"].endswith("/products")
    ]
    assert len(lookups) == 1, lookups


async def test_a_lost_analyze_answer_is_never_posted_again(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """The createAndAnalyze answer is lost (its products exist), the analyze of exactly those
    products is lost too, and the server ignores keys: the bot has made its two paid calls
    for this photo and asks the user; it never POSTs analyze again (before: until its checks
    ran out, 6 analyze calls for one photo)."""
    await harness.rs("/sandbox/config", {"honour_idempotency_key": False})
    await harness.rs(
        "/sandbox/faults",
        {
            "rules": [
                {"drop_count": 1, "match": "createAndAnalyze", "methods": ["POST"]},
                {"drop_count": 1, "pattern": "/products/analyze$", "methods": ["POST"]},
            ]
        },
    )
    async with bot_running(settings_for(**FAST)) as bot:
        await harness.photo(ANNA, caption="/scan Electronics")
        question = await harness.wait_text(ANNA["id"], FOUND, within=30)
        assert "Electronics" in question["text"]
        sub = await bot.store.get(1)  # type: ignore[union-attr]
        assert sub is not None and sub.state is State.UNCERTAIN
    assert len(await _posts(harness, "/products/createAndAnalyze")) == 1
    assert len(await _posts(harness, "/products/analyze")) == 1
    assert await _products(harness) == 1, "never created twice"
    assert results_replies(await harness.sent(ANNA["id"])) == []


async def test_a_listing_without_file_names_is_no_proof(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """The upload's answer is lost after it took effect; the listings show no file names,
    so the lookup cannot find the products: the bot asks, with that fact, instead of
    uploading again (before: a second product and a second paid analysis)."""
    await harness.rs(
        "/sandbox/config", {"honour_idempotency_key": False, "listing_file_names": False}
    )
    await harness.rs(
        "/sandbox/faults",
        {
            "error_burst": 1,
            "error_status": 502,
            "error_after_processing": True,
            "match": "createAndAnalyze",
        },
    )
    async with bot_running(settings_for(**FAST)):
        await harness.photo(ANNA, caption="/scan Electronics")
        question = await harness.wait_text(ANNA["id"], ASKED, within=30)
        assert "do not show file names" in question["text"]
        assert question["reply_markup"]["inline_keyboard"][0][0]["text"] == "🔁 Send again"
    assert len(await _posts(harness, "/products/createAndAnalyze")) == 1
    assert await _products(harness) == 1


async def test_a_listing_cut_off_is_no_proof(
    harness: Harness, settings_for: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listings are known to show file names (a first upload showed them), but the lookup
    after a lost answer cannot read the listing to its end (more products than its page
    limit): not found there is no proof, and the bot asks instead of sending again."""
    monkeypatch.setattr(reconcile, "PAGE_SIZE", 2)
    monkeypatch.setattr(reconcile, "LISTING_PAGES", 1)
    await harness.rs("/sandbox/config", {"honour_idempotency_key": False})
    async with bot_running(settings_for(**FAST)) as bot:
        await harness.photo(ANNA, caption="/scan Electronics")  # learns: names are listed
        await harness.wait_text(ANNA["id"], "Results", within=20)
        assert await _learned(bot, LISTING_FILE_NAMES) == YES
        for _ in range(3):  # the listing outgrows one page of two
            await harness.photo(ANNA, caption="/scan Electronics")

        async def uploaded() -> bool:
            return len(await _posts(harness, "/products/createAndAnalyze")) == 4

        await eventually(uploaded, what="four uploads", within=30)
        await harness.rs(
            "/sandbox/faults",
            {
                "error_burst": 1,
                "error_status": 502,
                "error_after_processing": False,  # not processed: the truth is "not there"
                "match": "createAndAnalyze",
            },
        )
        await harness.photo(ANNA, caption="/scan Electronics")
        question = await harness.wait_text(ANNA["id"], ASKED, within=30)
        assert "too long to read to its end" in question["text"]
    creates = await _posts(harness, "/products/createAndAnalyze")
    assert [r["status"] for r in creates].count(502) == 1
    assert len(creates) == 5, "the last photo was not sent again"


async def test_a_proven_absence_is_sent_again_with_the_same_key(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """Listings show file names (seen on the first upload) and the lookup reads them to the
    end: the lost upload is proven absent and sent again with the key of its first send."""
    async with bot_running(settings_for(**FAST)):
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "Results", within=20)
        await harness.rs(
            "/sandbox/faults", {"error_burst": 1, "error_status": 502, "match": "createAndAnalyze"}
        )
        await harness.photo(ANNA, caption="/scan Electronics")
        await eventually_results(harness, 2)
    creates = await _posts(harness, "/products/createAndAnalyze")
    assert [r["status"] for r in creates] == [201, 502, 201]
    assert creates[1]["idempotency_key"] == creates[2]["idempotency_key"], "the call's own key"
    assert creates[1]["body"] == creates[2]["body"], "the same body: the same call"


LOST_AFTER_PROCESSING = {
    "error_burst": 1,
    "error_status": 502,
    "error_after_processing": True,
    "match": "createAndAnalyze",
}


def _with_webhooks(settings_for: Callable[..., Any], wait: float) -> Any:
    return settings_for(
        **FAST,
        resell_scan_webhook_secrets=WEBHOOK_SECRET,
        reconcile_webhook_wait_seconds=wait,
        poll_initial_seconds=600,
    )


async def _webhooks_to(harness: Harness, bot: Any) -> None:
    await harness.rs(
        "/sandbox/webhooks",
        {"url": f"http://127.0.0.1:{bot.port}/webhooks/resell-scan", "secret": WEBHOOK_SECRET},
    )


async def test_no_proof_waits_for_the_webhook_then_asks_with_what_came(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """The upload's answer is lost after it took effect, listings show no file names, and
    the completion webhook carries none either: the bot waits for it (bounded), cannot tie
    it to the photos, and asks, saying that it waited and what came; nothing paid twice."""
    await harness.rs(
        "/sandbox/config", {"honour_idempotency_key": False, "listing_file_names": False}
    )
    await harness.rs("/sandbox/config", {"analysis_seconds": 0.2})
    await harness.rs("/sandbox/faults", LOST_AFTER_PROCESSING)
    async with bot_running(_with_webhooks(settings_for, wait=3)) as bot:
        await _webhooks_to(harness, bot)
        await harness.photo(ANNA, caption="/scan Electronics")
        question = await harness.wait_text(ANNA["id"], ASKED, within=30)
        assert "I waited 3 s for Resell Scan's completion message" in question["text"]
        assert "1 completion(s) came that I cannot tie to these photos" in question["text"]
    deliveries = await harness.deliveries()
    assert deliveries, "the completion came (and was kept, unmatched)"
    assert len(await _posts(harness, "/products/createAndAnalyze")) == 1
    assert await _products(harness) == 1


async def test_a_completion_that_names_our_files_is_adopted_without_asking(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """The same, but the completion webhook's product data shows the images' file names (a
    dialect: the guide's example leaves product_data empty): positive proof, so the bot
    adopts that batch and answers with its results; no question, nothing sent again."""
    await harness.rs(
        "/sandbox/config",
        {
            "honour_idempotency_key": False,
            "listing_file_names": False,
            "webhook_file_names": True,
            "analysis_seconds": 0.2,
        },
    )
    await harness.rs("/sandbox/faults", LOST_AFTER_PROCESSING)
    async with bot_running(_with_webhooks(settings_for, wait=60)) as bot:
        await _webhooks_to(harness, bot)
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "Results", within=30)
        sub = await bot.store.get(1)  # type: ignore[union-attr]
        batches = (await harness.http.get("/sandbox/batches")).json()["batches"]
        assert sub is not None and sub.batch_id == batches[0]["batch_id"]
    texts = [a.get("text") or "" for a in await harness.sent(ANNA["id"])]
    assert not [t for t in texts if ASKED in t]
    assert len(await _posts(harness, "/products/createAndAnalyze")) == 1
    assert await _products(harness) == 1


async def test_a_key_seen_honoured_lifts_the_proof_rule(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """A server that honours keys, listings without file names. The first lost answer is a
    question (no proof); "Send again" resends the call with its key and is answered with the
    batch whose completion came meanwhile: the bot has now *seen* the key honoured. The
    next lost answer is resent with its key at once, without asking; every photo was
    processed once (two products, two analyses)."""
    await harness.rs(
        "/sandbox/config",
        {"honour_idempotency_key": True, "listing_file_names": False, "analysis_seconds": 0.2},
    )
    await harness.rs("/sandbox/faults", LOST_AFTER_PROCESSING)
    async with bot_running(_with_webhooks(settings_for, wait=1)) as bot:
        await _webhooks_to(harness, bot)
        await harness.photo(ANNA, caption="/scan Electronics")
        question = await harness.wait_text(ANNA["id"], ASKED, within=30)
        assert await _learned(bot, KEY_HONOURED) is None
        [[again]] = question["reply_markup"]["inline_keyboard"]
        await harness.press(ANNA, ANNA["id"], question["message_id"], again["callback_data"])
        await eventually_results(harness, 1)
        assert await _learned(bot, KEY_HONOURED) == YES
        await harness.rs("/sandbox/faults", LOST_AFTER_PROCESSING)
        await harness.photo(ANNA, caption="/scan Electronics")
        await eventually_results(harness, 2)
    texts = [a.get("text") or "" for a in await harness.sent(ANNA["id"])]
    assert len([t for t in texts if ASKED in t]) == 1, "the second loss was not a question"
    creates = await _posts(harness, "/products/createAndAnalyze")
    assert [r["status"] for r in creates] == [502, 201, 502, 201]
    assert creates[0]["idempotency_key"] == creates[1]["idempotency_key"]
    assert creates[2]["idempotency_key"] == creates[3]["idempotency_key"]
    assert await _products(harness) == 2, "each photo became one product"
    assert len((await harness.http.get("/sandbox/batches")).json()["batches"]) == 2


async def eventually_results(harness: Harness, count: int) -> None:
    async def enough() -> bool:
        return len(results_replies(await harness.sent(ANNA["id"]))) >= count

    await eventually(enough, what=f"{count} results replies", within=30)


async def _callback_answers(harness: Harness) -> list[str]:
    calls = (await harness.http.get("/sandbox/telegram/calls")).json()["calls"]
    return [
        str(c["params"].get("text") or "")
        for c in calls
        if c["method"] == "answerCallbackQuery" and "answered_at" in c
    ]


async def test_retry_failed_is_used_once_even_when_its_answer_is_lost(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """🔁 Retry failed, against a server that ignores keys and loses the analyze answer: the
    first press is sent and its button is used up before the call goes out (the analysis may
    be running); later presses are told so. A press refused before processing (503) gives
    the button back. Resell Scan got one analyze call that may have been processed (before:
    one per press, without bound)."""
    await harness.rs("/sandbox/config", {"honour_idempotency_key": False})
    async with bot_running(settings_for(resell_scan_max_attempts=1)):
        await harness.text(ANNA, "/batch Electronics")
        await harness.wait_text(ANNA["id"], "Collecting")
        await harness.photo(ANNA)
        await harness.photo(ANNA, data=fake_jpeg("this one fails") + b"FAIL")
        await harness.text(ANNA, "/done")
        results = await harness.wait_sent(
            ANNA["id"], lambda a: bool(results_replies([a])) and bool(a["reply_markup"])
        )
        [retry] = [
            b
            for row in results["reply_markup"]["inline_keyboard"]
            for b in row
            if b["text"].startswith("🔁")
        ]

        async def press(count: int) -> str:
            await harness.press(ANNA, ANNA["id"], results["message_id"], retry["callback_data"])

            async def answered() -> bool:
                return len(await _callback_answers(harness)) >= count

            await eventually(answered, what=f"press {count} answered", within=20)
            return (await _callback_answers(harness))[-1]

        await harness.rs(
            "/sandbox/faults",
            {"error_burst": 1, "error_status": 503, "pattern": "/products/analyze$"},
        )
        assert "could not start the retry" in await press(1)  # refused: not used up
        await harness.rs(
            "/sandbox/faults",
            {"drop_count": 10, "pattern": "/products/analyze$", "methods": ["POST"]},
        )
        assert "could not start the retry" in await press(2)  # lost: used up
        assert await press(3) == "Already retried."
        assert await press(4) == "Already retried."
    analyze = await _posts(harness, "/products/analyze")
    assert analyze[0]["status"] == 503
    assert len(analyze) == 2, "the refused call, then one that may have been processed"


async def test_check_reports_the_days_paid_calls_and_what_listings_show(
    settings_for: Callable[..., Any],
) -> None:
    """`check` reads the ledger without changing the database: the paid calls of the last
    24 hours (refused ones are not paid) and the fact seen about listings."""
    import time

    from bot.cli import _ledger_lines
    from storage import Database, Store
    from storage.ledger import ACCEPTED, REFUSED, UNKNOWN, CallSpec

    settings = settings_for()
    assert _ledger_lines(settings) == [], "no database yet: nothing to say"
    db = await Database.open(settings.database_path)
    try:
        store = Store(db)
        now = time.time()
        for n, outcome in enumerate((ACCEPTED, UNKNOWN, REFUSED)):
            call = CallSpec(0, "createAndAnalyze", f"k{n}")
            await store.send_call(1, call, now)
            await store.call_answered(1, call, outcome, now, processed=outcome != REFUSED)
        await store.observe(LISTING_FILE_NAMES, NO, now)
    finally:
        await db.close()
    lines = [text for ok, text in _ledger_lines(settings) if ok]
    assert lines[0].startswith("paid calls in the last 24 h: 2 ("), lines
    assert "createAndAnalyze accepted 1" in lines[0] and "unknown 1" in lines[0]
    assert "show no file names" in lines[1]
    assert not [line for line in lines if "Idempotency-Key" in line], "not seen: not said"
    db = await Database.open(settings.database_path)
    try:
        await Store(db).observe(KEY_HONOURED, YES, now)
    finally:
        await db.close()
    lines = [text for ok, text in _ledger_lines(settings) if ok]
    assert "seen to have honoured Idempotency-Key on a resend" in lines[-1]
