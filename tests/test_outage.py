"""An outage is a wait, not a drop (bot/tracker.py `_wait_for_resell_scan`): Resell Scan
answering 503 or refusing connections has not processed the upload (resell-scan-api.md §9 #13),
so the photos wait, the chat is told once, /status shows them waiting, and they go out when it
answers; only past RATE_LIMIT_DEADLINE_SECONDS does the user get a Send again button."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from bot.outbox import question_row
from storage import Store, Submission
from tests.conftest import eventually, new_photo
from tests.harness import ANNA, BEN, Harness, MovedClock, bot_running, results_replies

pytestmark = pytest.mark.timeout(90)

NOTICE = "cannot be reached right now"
WAITING = "Resell Scan cannot be reached; they go out"
OUTAGE_STEP = 10.0  # seconds of the bot's clock the 10-minute outage moves on at a time


async def _results(harness: Harness, count: int) -> bool:
    return len(results_replies(await harness.sent(ANNA["id"]))) >= count


async def test_an_outage_keeps_the_photos_and_sends_them_when_it_is_over(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    await harness.rs(
        "/sandbox/faults", {"error_burst": 12, "error_status": 503, "match": "createAndAnalyze"}
    )
    async with bot_running(settings_for(resell_scan_max_attempts=2)):
        for _ in range(3):
            await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], NOTICE, within=20)
        await harness.text(ANNA, "/status")
        await harness.wait_text(ANNA["id"], "Resell Scan cannot be reached; they go out")
        await eventually(lambda: _results(harness, 3), what="every album's results", within=60)
    texts = [a["text"] or "" for a in await harness.sent(ANNA["id"]) if a["kind"] == "send"]
    assert not [t for t in texts if "stopped trying" in t or "send the photos again" in t]
    assert len([t for t in texts if NOTICE in t]) <= 3, "told once per album at most"
    creates = await harness.rs_requests("/products/createAndAnalyze")
    assert [r["status"] for r in creates].count(201) == 3, "each album sent once"
    assert len(results_replies(await harness.sent(ANNA["id"]))) == 3


SteppedClock = MovedClock  # wall time that also jumps (`advance`)


async def test_a_ten_minute_outage_is_waited_out_and_every_album_answered_once(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """createAndAnalyze answers 503 for 10 minutes of the bot's (injected) clock while Anna
    sends two albums and Ben one: the bot keeps trying, less and less often, says once per
    chat that Resell Scan cannot be reached, /status shows the albums waiting, and when it
    answers again every album is accepted once and answered with one results reply. Ten
    minutes is well inside RATE_LIMIT_DEADLINE_SECONDS (6 hours by default)."""
    clock = SteppedClock()
    await harness.rs(
        "/sandbox/faults", {"error_rate": 1.0, "error_status": 503, "match": "createAndAnalyze"}
    )
    settings = settings_for(resell_scan_max_attempts=1)
    assert settings.rate_limit_deadline_seconds > 600
    async with bot_running(settings, clock=clock) as runtime:
        store, tracker = runtime.store, runtime.tracker
        assert store is not None and tracker is not None

        async def settled() -> bool:
            """Nothing due at the bot's time, and no upload waiting for its answer."""
            busy = (await store.count_by_state()).get("submitting", 0)
            return not busy and not await store.due(clock(), limit=1)

        async def simulate(seconds: float, *, until: Callable[[], Any] | None = None) -> None:
            """Move the bot's clock on by `seconds` in steps, letting it do what came due at
            each step; stop early once `until` holds."""
            for _ in range(int(seconds // OUTAGE_STEP)):
                if until is not None and await until():
                    return
                clock.advance(OUTAGE_STEP)
                tracker.wake()
                await eventually(settled, what="the bot done with what came due", within=20)

        albums = {
            ANNA["id"]: [
                (await harness.album(ANNA, count=2, caption="/scan Electronics"))[0],
                (await harness.album(ANNA, count=3, caption="/scan Electronics"))[0],
            ],
            BEN["id"]: [(await harness.album(BEN, count=2, caption="/scan Electronics"))[0]],
        }
        for chat_id in albums:
            await harness.wait_text(chat_id, NOTICE, within=20)
        await simulate(300)  # five minutes into the outage
        for chat_id, firsts in albums.items():
            user = ANNA if chat_id == ANNA["id"] else BEN
            await harness.text(user, "/status")
            status = await harness.wait_text(chat_id, "Open analyses", within=20)
            assert status["text"].count(WAITING) == len(firsts), status["text"]
        await simulate(300)  # ten minutes
        assert await harness.creates() == [], "nothing accepted during the outage"
        await harness.rs("/sandbox/faults", {})  # it answers again

        async def answered() -> bool:
            replies = [len(results_replies(await harness.sent(c))) for c in albums]
            return replies == [len(firsts) for firsts in albums.values()]

        await simulate(900, until=answered)  # its next try is at most a few minutes away
        await eventually(answered, what="every album's results", within=30)

    for chat_id, firsts in albums.items():
        actions = await harness.sent(chat_id)
        texts = [a["text"] or "" for a in actions if a["kind"] == "send"]
        assert len([t for t in texts if NOTICE in t]) == 1, "told once per chat"
        assert not [t for t in texts if "stopped trying" in t or "send the photos again" in t]
        replies = results_replies(actions)
        assert sorted(r["reply_to"] for r in replies) == sorted(firsts), "one reply per album"
    creates = await harness.rs_requests("/products/createAndAnalyze")
    accepted = [r["idempotency_key"] for r in creates if r["status"] == 201]
    assert len(accepted) == len(set(accepted)) == 3, "each album accepted once"
    refused = [r for r in creates if r["status"] == 503]
    assert len(refused) > 3 * 5, "tried again and again through the outage"


async def test_a_chat_waiting_for_resell_scan_is_told_once(store: Store) -> None:
    """Storage's part of "say it once per chat" (submit_retry's `once_per_chat`): albums of one
    chat refused by an outage owe the notice with the first one only, whichever order their
    answers come in; another chat, or another cause (a rate limit), is told on its own; once
    the first one is sent, the next outage is told again."""
    now = 1_000_000.0

    async def upload(chat_id: int) -> Submission:
        added = await store.add_photo(
            new_photo(chat_id=chat_id),
            caption=None,
            problem=None,
            language="en",
            remove_background=False,
            album_window=1.0,
            album_max_wait=5.0,
            now=now,
        )
        assert await store.choose_collection(added.submission_id, "c1", "C", now)
        assert await store.begin_submit(added.submission_id, now)
        sub = await store.get(added.submission_id)
        assert sub is not None
        return sub

    async def refused(sub: Submission, cause: str) -> None:
        notice = question_row(sub, cause)
        await store.submit_retry(
            sub.id, f"{cause}: 503", now + 5, now, rate_limited=True, once_per_chat=[notice]
        )

    async def told(sub: Submission) -> int:
        async with store.db.reading() as tx:
            row = await tx.one("SELECT COUNT(*) FROM outbox WHERE submission_id = ?", (sub.id,))
        return int(row[0])

    first, second, elsewhere = await upload(1), await upload(1), await upload(2)
    await refused(first, "unreachable")
    await refused(second, "unreachable")
    await refused(elsewhere, "unreachable")
    assert [await told(first), await told(second), await told(elsewhere)] == [1, 0, 1]
    busy = await upload(1)
    await refused(busy, "busy")
    assert await told(busy) == 1, "another cause is news"
    for sub in (first, second):  # both go out; a later outage is news again
        assert await store.begin_submit(sub.id, now)
        await store.mark_submitted(sub.id, f"b-{sub.id}", now + 3, now)
    later = await upload(1)
    await refused(later, "unreachable")
    assert await told(later) == 1


async def test_past_the_deadline_the_user_may_send_them_again(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    await harness.rs(
        "/sandbox/faults", {"error_rate": 1.0, "error_status": 503, "match": "createAndAnalyze"}
    )
    settings = settings_for(resell_scan_max_attempts=1, rate_limit_deadline_seconds=3)
    async with bot_running(settings):
        await harness.photo(ANNA, caption="/scan Electronics")
        failed = await harness.wait_text(ANNA["id"], "so I stopped trying", within=40)
        [[button]] = failed["reply_markup"]["inline_keyboard"]
        assert button["text"] == "🔁 Send again"
        await harness.rs("/sandbox/faults", {})  # it is back
        await harness.press(ANNA, ANNA["id"], failed["message_id"], button["callback_data"])
        await eventually(lambda: _results(harness, 1), what="the results", within=30)
    creates = await harness.rs_requests("/products/createAndAnalyze")
    assert [r["status"] for r in creates].count(201) == 1


async def test_a_photo_telegram_will_not_hand_over_is_given_up_with_a_message(
    harness: Harness, settings_for: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """getFile answering 500 every time: tried a bounded number of times with a growing pause
    (counted where it fails, not only when an upload starts), then the user is told to send
    the photos again; nothing reached Resell Scan (before: every ~1.5 s, forever, silently)."""
    import bot.tracker as tracker

    monkeypatch.setattr(tracker, "PHOTO_FETCH_ATTEMPTS", 3)
    await harness.rs(
        "/sandbox/telegram/faults", {"kind": "error", "methods": ["getFile"], "count": 100}
    )
    async with bot_running(settings_for(image_delivery="base64")):
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "could not download the photos", within=40)
    calls = (await harness.http.get("/sandbox/telegram/calls")).json()["calls"]
    assert len([c for c in calls if c["method"] == "getFile"]) == 3
    assert await harness.rs_requests("/products/createAndAnalyze") == []


@pytest.mark.parametrize(
    ("fault", "fetch"),
    [
        # Slower than the bot waits for an answer (PTB's read timeout, 5 s): a TimedOut.
        ({"kind": "timeout", "seconds": 7, "methods": ["getFile"]}, "getFile"),
        # getFile answers, the file's download does not (a file path Telegram forgot).
        ({"kind": "error", "error_code": 404, "methods": ["download"]}, "download"),
        # A flood wait on getFile, again and again.
        ({"kind": "429", "retry_after": 1, "methods": ["getFile"]}, "getFile"),
    ],
    ids=["getFile-timeout", "download-404", "getFile-429"],
)
async def test_every_way_telegram_keeps_a_photo_ends_in_a_message(
    harness: Harness,
    settings_for: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    fault: dict[str, Any],
    fetch: str,
) -> None:
    """A getFile that times out, a download answered 404, a getFile answered 429, every
    time (base64 mode: the bot fetches the photo itself): each is tried PHOTO_FETCH_ATTEMPTS
    times, then the user is told to send the photos again; nothing reached Resell Scan."""
    import bot.tracker as tracker

    monkeypatch.setattr(tracker, "PHOTO_FETCH_ATTEMPTS", 3)
    await harness.rs("/sandbox/telegram/faults", {**fault, "count": 100})
    async with bot_running(settings_for(image_delivery="base64")):
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "could not download the photos", within=60)
    calls = (await harness.http.get("/sandbox/telegram/calls")).json()["calls"]
    assert len([c for c in calls if c["method"] == fetch]) == 3
    assert await harness.rs_requests("/products/createAndAnalyze") == []


async def test_with_image_urls_a_photo_telegram_will_not_hand_over_is_counted_where_it_fails(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """With PUBLIC_BASE_URL, Resell Scan fetches the photo from the bot's /media route, which
    answers 502 when getFile fails: that failed fetch counts on the submission (bot/web.py),
    where it happens, so the upload it belongs to can tell why Resell Scan refused it."""
    await harness.rs(
        "/sandbox/telegram/faults", {"kind": "error", "methods": ["getFile"], "count": 100}
    )
    async with bot_running(settings_for(image_delivery="url")) as runtime:
        message_id = await harness.photo(ANNA, caption="/scan Electronics")

        async def refused() -> bool:
            creates = await harness.rs_requests("/products/createAndAnalyze")
            return any(r.get("status") == 422 for r in creates)

        await eventually(refused, what="Resell Scan refusing the upload", within=30)
        assert runtime.store is not None
        sub = await runtime.store.by_photo(ANNA["id"], message_id)
        assert sub is not None
        assert sub.photo_failures >= 1
        assert (sub.last_error or "").startswith("photo fetch failed: NetworkError")


async def test_a_flood_wait_on_getfile_is_waited_out_before_the_next_try(
    harness: Harness, settings_for: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """getFile answered 429 "retry after 3" every time: the next try comes no sooner than
    that (before: after the photo backoff's 1-2 s, into the same flood wait)."""
    import bot.tracker as tracker

    monkeypatch.setattr(tracker, "PHOTO_FETCH_ATTEMPTS", 3)
    await harness.rs(
        "/sandbox/telegram/faults",
        {"kind": "429", "retry_after": 3, "methods": ["getFile"], "count": 100},
    )
    async with bot_running(settings_for(image_delivery="base64")):
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "could not download the photos", within=40)
    calls = (await harness.http.get("/sandbox/telegram/calls")).json()["calls"]
    tries = [c["at"] for c in calls if c["method"] == "getFile"]
    assert len(tries) == 3
    assert min(b - a for a, b in itertools.pairwise(tries)) >= 2.9


async def test_with_image_urls_a_photo_telegram_will_not_hand_over_ends_like_in_base64_mode(
    harness: Harness, settings_for: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """getFile failing every time, with image URLs: Resell Scan gets a 502 from /media and
    refuses the upload (the sandbox answers 422); the upload is tried PHOTO_FETCH_ATTEMPTS
    times with a growing pause, then the user gets the base64 mode's message (send them
    again), nothing was created, and no refusal counted as a paid call. Before: refused at
    once with "Resell Scan refused the photos: … HTTP 502", which says nothing to do."""
    import bot.tracker as tracker

    monkeypatch.setattr(tracker, "PHOTO_FETCH_ATTEMPTS", 3)
    await harness.rs(
        "/sandbox/telegram/faults", {"kind": "error", "methods": ["getFile"], "count": 100}
    )
    async with bot_running(settings_for(image_delivery="url")) as runtime:
        message_id = await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "could not download the photos", within=40)
        assert runtime.store is not None
        sub = await runtime.store.by_photo(ANNA["id"], message_id)
        assert sub is not None
        calls = await runtime.store.paid_calls(sub.id)
    texts = [a["text"] or "" for a in await harness.sent(ANNA["id"]) if a["kind"] == "send"]
    assert not [t for t in texts if "refused" in t]
    creates = await harness.rs_requests("/products/createAndAnalyze")
    assert [r["status"] for r in creates] == [422, 422, 422]
    assert sum(c.sends for c in calls) == 0, "a refusal before processing is no paid call"
    telegram = (await harness.http.get("/sandbox/telegram/calls")).json()["calls"]
    assert len([c for c in telegram if c["method"] == "getFile"]) == 3


async def test_with_image_urls_a_photo_telegram_hands_over_late_is_analysed(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """getFile failing once, with image URLs: the upload Resell Scan refused for it is sent
    again after a pause and analysed, once (before: refused for good at the first glitch)."""
    await harness.rs(
        "/sandbox/telegram/faults", {"kind": "error", "methods": ["getFile"], "count": 1}
    )
    async with bot_running(settings_for(image_delivery="url")):
        await harness.photo(ANNA, caption="/scan Electronics")
        await eventually(lambda: _results(harness, 1), what="the results", within=30)
    creates = await harness.rs_requests("/products/createAndAnalyze")
    assert [r["status"] for r in creates] == [422, 201]
    texts = [a["text"] or "" for a in await harness.sent(ANNA["id"]) if a["kind"] == "send"]
    assert not [t for t in texts if "refused" in t or "could not download" in t]


async def test_an_outage_is_told_once_per_chat(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """Two albums of one chat refused by the same outage: one notice (the tracker hands it to
    submit_retry as `once_per_chat`); before, one per album."""
    await harness.rs(
        "/sandbox/faults", {"error_burst": 6, "error_status": 503, "match": "createAndAnalyze"}
    )
    async with bot_running(settings_for(resell_scan_max_attempts=1)):
        await harness.album(ANNA, count=2, caption="/scan Electronics")
        await harness.album(ANNA, count=2, caption="/scan Electronics")
        await eventually(lambda: _results(harness, 2), what="both albums' results", within=60)
    texts = [a["text"] or "" for a in await harness.sent(ANNA["id"]) if a["kind"] == "send"]
    assert len([t for t in texts if NOTICE in t]) == 1
