"""Each daily digest covers exactly the time since the previous one: a digest at 20:00 used to
report its calendar day, so what was analysed between 20:00 and midnight was in no digest."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot import report
from storage.history import NewHistoryRow
from tests.harness import ANNA, BEN, Harness, MovedClock, bot_running

pytestmark = pytest.mark.timeout(60)

BERLIN = ZoneInfo("Europe/Berlin")
ZONE = "Europe/Berlin"
GROUP = {"id": -1001234500031, "type": "supergroup", "title": "Abendteam"}


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).timestamp()


# The window -----------------------------------------------------------------------------------


def test_consecutive_digests_leave_no_hole_and_never_overlap() -> None:
    first = report.digest_window("2026-11-28", "20:00", ZONE, until=None, last_day=None)
    assert first == (at(2026, 11, 27, 20), at(2026, 11, 28, 20)), "the first: 24 hours"
    second = report.digest_window("2026-11-29", "20:00", ZONE, until=first[1], last_day=None)
    assert second == (at(2026, 11, 28, 20), at(2026, 11, 29, 20))


def test_a_late_digest_ends_at_its_time_and_the_next_starts_there() -> None:
    """Down at 20:00, up at 23:00: the digest still ends at 20:00 (what came after is the
    next one's); down for two days: the next covers both, nothing skipped."""
    late = report.digest_window(
        "2026-11-28", "20:00", ZONE, until=at(2026, 11, 27, 20), last_day=None
    )
    assert late == (at(2026, 11, 27, 20), at(2026, 11, 28, 20))
    after_days = report.digest_window(
        "2026-12-01", "20:00", ZONE, until=at(2026, 11, 28, 20), last_day=None
    )
    assert after_days == (at(2026, 11, 28, 20), at(2026, 12, 1, 20))


def test_a_moved_digest_time_leaves_no_hole() -> None:
    window = report.digest_window(
        "2026-11-29", "08:00", ZONE, until=at(2026, 11, 28, 21), last_day=None
    )
    assert window == (at(2026, 11, 28, 21), at(2026, 11, 29, 8))


def test_after_a_digest_of_an_earlier_version() -> None:
    """Earlier versions recorded only the day: one from noon on reported its own day up to
    when it was sent, one before noon the whole day before."""
    evening = report.digest_window("2026-11-29", "20:00", ZONE, until=None, last_day="2026-11-28")
    assert evening == (at(2026, 11, 28, 20), at(2026, 11, 29, 20)), "the evening's hole is in"
    morning = report.digest_window("2026-11-29", "08:00", ZONE, until=None, last_day="2026-11-28")
    assert morning == (at(2026, 11, 28, 0), at(2026, 11, 29, 8)), "nothing twice"


def test_a_window_reaches_back_a_week_at_most() -> None:
    window = report.digest_window("2026-11-29", "20:00", ZONE, until=at(2026, 9, 1), last_day=None)
    assert window == (at(2026, 11, 22, 20), at(2026, 11, 29, 20))


def test_a_window_across_a_dst_change_is_23_hours() -> None:
    start, end = report.digest_window("2026-03-29", "20:00", ZONE, until=None, last_day=None)
    assert end - start == 23 * 3600


def test_a_malformed_time_is_refused() -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        report.digest_window("2026-11-29", "25:00", ZONE, until=None, last_day=None)


def test_the_digest_period_reads_back_from_its_label() -> None:
    period = report.digest_period(at(2026, 11, 28, 20), at(2026, 11, 29, 20), ZONE)
    assert period.kind == "digest"
    assert (period.first_day, period.last_day) == (date(2026, 11, 28), date(2026, 11, 29))
    again = report.parse_period(period.label, time.time(), ZONE)
    assert again == period
    assert report.parse_period(f"@{int(at(2026, 11, 29))}..{int(at(2026, 11, 29))}", 0, ZONE)
    with pytest.raises(report.PeriodError, match="reversed"):
        report.parse_period(f"@{int(at(2026, 11, 29))}..{int(at(2026, 11, 28))}", 0, ZONE)
    with pytest.raises(report.PeriodError, match="too_long"):
        report.parse_period(f"@0..{int(at(2026, 11, 28))}", 0, ZONE)


def test_the_digest_heading_names_both_instants() -> None:
    period = report.digest_period(at(2026, 11, 28, 20), at(2026, 11, 29, 20), ZONE)
    summary = report.summarise([])
    assert "Since the last digest</b> · 2026-11-28 20:00 – 2026-11-29 20:00" in (
        report.report_text("en", summary, period)
    )
    assert "Seit dem letzten Bericht</b> · 28.11.2026 20:00 – 29.11.2026 20:00" in (
        report.report_text("de", summary, period)
    )


# End to end -----------------------------------------------------------------------------------


Clock = MovedClock


def item(chat_id: int, serial: int, title: str, when: float, user: dict[str, Any]) -> NewHistoryRow:
    return NewHistoryRow(
        chat_id=chat_id,
        submission_id=7000 + serial,
        product_index=0,
        sender_id=user["id"],
        sender_name=user["first_name"],
        analysed_at=when,
        title=title,
        price_min=10.0,
        price_max=30.0,
        currency="EUR",
    )


def digests(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in actions if a["kind"] == "send" and (a["text"] or "").startswith("🗓")]


async def test_what_comes_after_an_evening_digest_is_in_the_next(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    group = await harness.chat(**GROUP)
    chat_id = group["id"]
    clock = Clock(datetime(2026, 11, 28, 19, 58, tzinfo=BERLIN))
    async with bot_running(settings_for(digest_check_seconds=3600), clock=clock) as runtime:
        assert runtime.store is not None and runtime.team is not None
        await harness.text(ANNA, "/settings timezone Europe/Berlin", group)
        await harness.wait_text(chat_id, "time zone Europe/Berlin")
        await harness.text(ANNA, "/settings digest 20:00", group)
        await harness.wait_text(chat_id, "Daily digest: 20:00")
        # Each item is kept when it is analysed: none is there before its time.
        await runtime.store.history.add(
            [item(chat_id, 1, "Morning Lamp", at(2026, 11, 28, 10), ANNA)]
        )
        clock.set(datetime(2026, 11, 28, 20, 0, 5, tzinfo=BERLIN))
        assert await runtime.team.send_due_digests() == 1
        first = await harness.wait_text(chat_id, "🗓")
        assert "2026-11-27 20:00 – 2026-11-28 20:00" in first["text"]
        assert "Products: 1" in first["text"], "the morning lamp"

        await runtime.store.history.add(
            [
                item(chat_id, 2, "Late Vase", at(2026, 11, 28, 21, 30), BEN),  # after 20:00
                item(chat_id, 3, "Noon Radio", at(2026, 11, 29, 12), ANNA),
            ]
        )
        clock.set(datetime(2026, 11, 29, 20, 0, 5, tzinfo=BERLIN))
        assert await runtime.team.send_due_digests() == 1
        second = await harness.wait_sent(
            chat_id,
            lambda a: a in digests([a]) and a["message_id"] > first["message_id"],
            what="the second digest",
        )
        assert "2026-11-28 20:00 – 2026-11-29 20:00" in second["text"]
        assert "Products: 2" in second["text"], "the late vase and the radio"
        assert "Members: 2" in second["text"]
        await runtime.store.history.add(
            [item(chat_id, 4, "Evening Clock", at(2026, 11, 29, 20, 30), BEN)]  # the next's
        )

        # Its CSV has exactly the window's products.
        [csv_button] = [
            b
            for row in (second.get("reply_markup") or {}).get("inline_keyboard", [])
            for b in row
            if "CSV" in b["text"]
        ]
        await harness.press(ANNA, chat_id, second["message_id"], csv_button["callback_data"])
        document = await harness.wait_sent(
            chat_id, lambda a: a["kind"] == "document", what="the digest's CSV"
        )
        assert document["file_name"] == "resell-scan-digest-2026-11-29-2000.csv"
        text = base64.b64decode(document["content_b64"]).decode("utf-8-sig")
        assert "Late Vase" in text and "Noon Radio" in text
        assert "Morning Lamp" not in text and "Evening Clock" not in text
    chat = await _chat(settings_for, chat_id)
    assert chat.digest_last_day == "2026-11-29" and chat.digest_until == at(2026, 11, 29, 20)


async def _chat(settings_for: Callable[..., Any], chat_id: int) -> Any:
    from storage import Database, Store

    db = await Database.open(settings_for().database_path)
    try:
        return await Store(db).chat(chat_id)
    finally:
        await db.close()
