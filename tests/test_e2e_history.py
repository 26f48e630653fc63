"""What a team analysed, end to end through the emulator and the sandbox: every analysed
product is kept (storage/history.py), `/find` searches it (umlauts, emoji, paging, a link or a
reply to the results), `/report` sums it for every period form with a CSV and a chart, and the
daily digest goes out once a day across restarts."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.app import BotRuntime
from sandbox.data import fake_jpeg
from storage.history import NewHistoryRow
from tests.conftest import eventually
from tests.harness import ANNA, BEN, Harness, MovedClock, bot_running

GROUP = {"id": -1001234500002, "type": "supergroup", "title": "Flohmarkt-Team"}
BERLIN = ZoneInfo("Europe/Berlin")


def photo_titled(title: str) -> bytes:
    """A photo the sandbox analyses as `title` (sandbox/data.py)."""
    return fake_jpeg(title) + f"TITLE:{title}\n".encode()


def buttons(action: dict[str, Any]) -> list[dict[str, Any]]:
    markup = action.get("reply_markup") or {}
    return [b for row in markup.get("inline_keyboard", []) for b in row]


async def history_count(runtime: BotRuntime, chat_id: int, wanted: int) -> bool:
    """At least `wanted` rows kept, each pointing at its results message (kept when the
    results are known, linked once the message is sent)."""
    assert runtime.store is not None
    rows, total = await runtime.store.history.find(chat_id, "", limit=100)
    return total >= wanted and all(row.message_id is not None for row in rows)


async def found(harness: Harness, chat_id: int, needle: str, after: int) -> dict[str, Any]:
    """The /find answer (a new message, not an edit) containing `needle`."""
    return await harness.wait_sent(
        chat_id,
        lambda a: (
            a["kind"] == "send"
            and a["message_id"] > after
            and (a["text"] or "").startswith("🔎")
            and needle in (a["text"] or "")
        ),
        what=f"a /find answer with {needle!r}",
    )


async def test_find_in_a_group_links_to_the_results(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    group = await harness.chat(**GROUP)
    async with bot_running(settings_for()) as runtime:
        await harness.photo(ANNA, group, caption="/scan Electronics", data=photo_titled(
            "Größe 42 Müller-Jacke"))  # fmt: skip
        await harness.photo(BEN, group, caption="/scan Electronics", data=photo_titled(
            "👟 Nike Air Max 90"))  # fmt: skip
        await eventually(lambda: history_count(runtime, group["id"], 2), what="both kept")
        assert runtime.store is not None
        [row], _ = await runtime.store.history.find(group["id"], "müller")
        assert row.sender_name == "Anna Berg" and row.collection_name == "Electronics"
        assert row.price_min is not None and row.currency == "EUR"
        assert row.message_link == f"https://t.me/c/1234500002/{row.message_id}"
        results = [a for a in await harness.sent(group["id"]) if a["message_id"] == row.message_id]
        assert results and "Größe 42 Müller-Jacke" in (results[0]["text"] or "")

        for query, needle in (
            ("muller", "Müller-Jacke"),
            ("MUELLER", "Müller-Jacke"),
            ("grösse", "Müller-Jacke"),
            ("nike air", "Nike Air Max 90"),
            ("👟 nike", "Nike Air Max 90"),
        ):
            mark = max(a["message_id"] for a in await harness.sent(group["id"]))
            await harness.text(ANNA, f"/find {query}", group)
            answer = await found(harness, group["id"], needle, mark)
            assert "1 found" in answer["text"], answer["text"]
            assert 'href="https://t.me/c/1234500002/' in answer["html"]
            assert "Anna Berg" in answer["text"] or "Ben" in answer["text"]
        mark = max(a["message_id"] for a in await harness.sent(group["id"]))
        await harness.text(BEN, "/find gibtsnicht", group)
        await found(harness, group["id"], "Nothing analysed here matches", mark)


async def test_find_in_a_private_chat_replies_to_the_results_and_pages(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()) as runtime:
        await harness.photo(ANNA, caption="/scan Electronics", data=photo_titled("Ölgemälde Öl"))
        await eventually(lambda: history_count(runtime, ANNA["id"], 1), what="the result kept")
        await harness.text(ANNA, "/find olgemalde")
        answer = await found(harness, ANNA["id"], "Ölgemälde", 0)
        assert "href" not in (answer["html"] or ""), "private chats have no message links"
        [back] = [b for b in buttons(answer) if b["text"] == "↩ 1"]
        await harness.press(ANNA, ANNA["id"], answer["message_id"], back["callback_data"])
        assert runtime.store is not None
        [row], _ = await runtime.store.history.find(ANNA["id"], "öl")
        here = await harness.wait_text(ANNA["id"], "☝️")
        assert here["reply_to"] == row.message_id and "Ölgemälde" in here["text"]

        # Paging: nine more rows, eight hits a page.
        now = time.time()
        await runtime.store.history.add(
            [
                NewHistoryRow(chat_id=ANNA["id"], submission_id=9000, product_index=i,
                              sender_id=ANNA["id"], sender_name="Anna Berg",
                              analysed_at=now - 60 * (i + 1), title=f"Vinyl {i}",
                              price_min=10, price_max=20, currency="EUR")
                for i in range(9)
            ]
        )  # fmt: skip
        mark = max(a["message_id"] for a in await harness.sent(ANNA["id"]))
        await harness.text(ANNA, "/find")
        first = await found(harness, ANNA["id"], "Analysed here: 10, 1–8", mark)
        assert "Ölgemälde" in first["text"], "newest first"
        [ahead] = [b for b in buttons(first) if b["text"] == "▶"]
        await harness.press(ANNA, ANNA["id"], first["message_id"], ahead["callback_data"])
        second = await harness.wait_sent(
            ANNA["id"],
            lambda a: a["kind"] == "edit" and a["message_id"] == first["message_id"]
            and "9–10" in (a["text"] or ""),
            what="the second page",
        )  # fmt: skip
        assert "Vinyl 7" in second["text"] and "Vinyl 8" in second["text"]
        assert [b["text"] for b in buttons(second) if b["text"] in "◀▶"] == ["◀"]


def _rows(chat_id: int, now: float) -> list[NewHistoryRow]:
    """Anna: two today (one with a purchase price), one 3 days ago; Ben: one yesterday."""
    spec = [
        (ANNA, 0, "Nike Air", 40, 60, 20.0),
        (ANNA, 0, "Sony Walkman", 100, 140, None),
        (ANNA, 3, "LEGO Set", 30, 50, 10.0),
        (BEN, 1, "Omega Uhr", 500, 700, 300.0),
    ]
    return [
        NewHistoryRow(
            chat_id=chat_id,
            submission_id=8000,
            product_index=index,
            sender_id=user["id"],
            sender_name=user["first_name"],
            analysed_at=now - days * 86400 - 60,
            title=title,
            price_min=low,
            price_max=high,
            currency="EUR",
            purchase_price=paid,
            manual_fields={"purchasePrice": paid} if paid is not None else {},
        )
        for index, (user, days, title, low, high, paid) in enumerate(spec)
    ]


async def test_report_for_every_period_form_with_csv_and_chart(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    group = await harness.chat(**GROUP)
    async with bot_running(settings_for()) as runtime:
        assert runtime.store is not None
        now = time.time()
        rows = _rows(group["id"], now)
        await runtime.store.history.add(rows)
        today = datetime.fromtimestamp(now, BERLIN).date()

        def days_ago(n: int) -> date:
            return datetime.fromtimestamp(now - n * 86400 - 60, BERLIN).date()

        def expected(first: date, last: date) -> int:
            return sum(1 for n in (0, 0, 3, 1) if first <= days_ago(n) <= last)

        month_start = today.replace(day=1)
        forms = {
            "": (today, today),
            "heute": (today, today),
            "yesterday": (days_ago(1), days_ago(1)),
            "week": (today - timedelta(days=6), today),
            "month": (month_start, today),
            f"{today:%Y-%m}": (month_start, month_start + timedelta(days=40)),
            days_ago(3).isoformat(): (days_ago(3), days_ago(3)),
            f"{days_ago(1):%d.%m.%Y}": (days_ago(1), days_ago(1)),
            f"{days_ago(3)}..{today}": (days_ago(3), today),
        }
        for form, (first, last) in forms.items():
            mark = max([0, *(a["message_id"] for a in await harness.sent(group["id"]))])
            await harness.text(ANNA, f"/report {form}".strip(), group)
            answer = await harness.wait_sent(
                group["id"],
                lambda a, mark=mark: a["kind"] == "send" and a["message_id"] > mark
                and (a["text"] or "").startswith("📊"),
                what=f"the report for {form!r}",
            )  # fmt: skip
            items = expected(first, last)
            if items:
                assert f"Products: {items}" in answer["text"], (form, answer["text"])
            else:
                assert "No products were analysed" in answer["text"], (form, answer["text"])

        # The week: both members, value, purchase prices and margin; the CSV; the chart.
        mark = max(a["message_id"] for a in await harness.sent(group["id"]))
        await harness.text(BEN, "/report week", group)
        week = await harness.wait_sent(
            group["id"],
            lambda a: a["kind"] == "send" and a["message_id"] > mark
            and (a["text"] or "").startswith("📊"),
            what="the week's report",
        )  # fmt: skip
        text = week["text"]
        assert "Products: 4" in text and "Anna" in text and "Ben" in text
        assert "Estimated value: 810.00 EUR" in text, text  # 50 + 120 + 40 + 600
        assert "Estimated margin" in text
        chart = await harness.wait_sent(  # right after the text, answering the same command
            group["id"], lambda a: a["kind"] == "photo" and a["message_id"] > week["message_id"]
        )
        assert chart["reply_to"] == week["reply_to"]
        assert base64.b64decode(chart["content_b64"]).startswith(b"\x89PNG")
        [csv_button] = buttons(week)
        await harness.press(BEN, group["id"], week["message_id"], csv_button["callback_data"])
        document = await harness.wait_sent(group["id"], lambda a: a["kind"] == "document")
        lines = base64.b64decode(document["content_b64"]).decode("utf-8-sig").splitlines()
        assert len(lines) == 1 + 4 and any("Omega Uhr" in line for line in lines)

        mark = max(a["message_id"] for a in await harness.sent(group["id"]))
        await harness.text(ANNA, "/report someday", group)
        await harness.wait_sent(
            group["id"],
            lambda a: a["message_id"] > mark and "I don't know that period" in (a["text"] or ""),
        )
        await harness.text(ANNA, "/report 2026-02-30", group)
        await harness.wait_text(group["id"], "There is no such date")
        await harness.text(ANNA, f"/report {today}..{days_ago(3)}", group)
        await harness.wait_text(group["id"], "ends before it starts")


Clock = MovedClock


def digests(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in actions if a["kind"] == "send" and (a["text"] or "").startswith("🗓")]


async def test_the_digest_is_sent_once_a_day_across_restarts(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    group = await harness.chat(**GROUP)
    clock = Clock(datetime(2026, 11, 28, 19, 58, tzinfo=BERLIN))
    settings = settings_for(digest_check_seconds=0.05)
    async with bot_running(settings, clock=clock) as runtime:
        await harness.text(ANNA, "/settings", group)
        view = await harness.wait_text(group["id"], "Daily digest: off")
        [toggle] = [b for b in buttons(view) if b["text"].startswith("Daily digest")]
        await harness.press(ANNA, group["id"], view["message_id"], toggle["callback_data"])
        await harness.wait_sent(
            group["id"],
            lambda a: a["kind"] == "edit" and "Daily digest: 20:00" in (a["text"] or ""),
            what="the digest on at 20:00",
        )
        await harness.text(ANNA, "/settings digest 25:00", group)
        await harness.wait_text(group["id"], "Give the digest a time of day")
        await harness.text(ANNA, "/settings timezone Mars/Olympus", group)
        await harness.wait_text(group["id"], "is not a time zone I know")
        await harness.text(ANNA, "/settings timezone europe/vienna", group)  # as typed
        await harness.wait_text(group["id"], "time zone Europe/Vienna")
        await harness.text(ANNA, "/settings digest 20:00", group)
        await harness.wait_text(group["id"], "Daily digest: 20:00 (time zone Europe/Vienna)")
        assert runtime.store is not None and runtime.team is not None
        await runtime.store.history.add(_rows(group["id"], clock()))
        assert await runtime.team.send_due_digests() == 0, "not yet: 19:58"

    # Down at 20:00; up at 20:05: the digest is sent late, once.
    clock.set(datetime(2026, 11, 28, 20, 5, tzinfo=BERLIN))
    async with bot_running(settings, clock=clock) as runtime:
        await eventually(lambda: _digest_count(harness, group["id"], 1), what="the late digest")
        [digest] = digests(await harness.sent(group["id"]))
        assert "Products: 2" in digest["text"] and "2026-11-28" in digest["text"]
        assert runtime.team is not None
        assert await runtime.team.send_due_digests() == 0
    async with bot_running(settings, clock=clock) as runtime:
        assert runtime.team is not None
        assert await runtime.team.send_due_digests() == 0, "a restart sends nothing again"
        assert len(digests(await harness.sent(group["id"]))) == 1
        # Moved to a later time the same evening: today's is not sent again.
        await harness.text(ANNA, "/settings digest 21:00", group)
        await harness.wait_text(group["id"], "Daily digest: 21:00")
        clock.set(datetime(2026, 11, 28, 21, 0, 5, tzinfo=BERLIN))
        assert await runtime.team.send_due_digests() == 0, "moving the time resends nothing"
        # A chat once marked unreachable (it had blocked the bot) is tried again each day.
        assert runtime.store is not None
        await runtime.store.update_chat(group["id"], clock(), reachable=False)
        # The next evening: the next digest.
        clock.set(datetime(2026, 11, 29, 21, 0, 5, tzinfo=BERLIN))
        await eventually(
            lambda: _digest_count(harness, group["id"], 2), what="the next day's digest"
        )
    assert len(digests(await harness.sent(group["id"]))) == 2


async def _digest_count(harness: Harness, chat_id: int, wanted: int) -> bool:
    return len(digests(await harness.sent(chat_id))) >= wanted
