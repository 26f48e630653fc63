"""Reports on the results history: periods, sums, text, CSV, chart and the daily digest."""

from __future__ import annotations

import csv
import io
import struct
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.report import (
    CSV_COLUMNS,
    MAX_PERIOD_DAYS,
    TEXTS,
    Period,
    PeriodError,
    digest_due,
    money,
    parse_period,
    period_error_text,
    report_chart,
    report_csv,
    report_text,
    summarise,
)
from bot.telegram.texts import placeholders
from storage.history import HistoryRow

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def at(text: str, tz: str = BERLIN) -> float:
    """Unix seconds of a local time "YYYY-MM-DD HH:MM[:SS]" in `tz`."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


_ids = iter(range(1, 1_000_000))


def hrow(**overrides: Any) -> HistoryRow:
    row_id = next(_ids)
    values: dict[str, Any] = {
        "id": row_id,
        "chat_id": 1,
        "submission_id": row_id,
        "product_index": 0,
        "sender_id": 1,
        "sender_name": "Lena",
        "analysed_at": at("2026-11-12 10:00"),
        "title": "Item",
        "price_min": 10.0,
        "price_max": 20.0,
        "currency": "EUR",
    }
    values.update(overrides)
    return HistoryRow(**values)


# Texts ------------------------------------------------------------------------------------


def test_both_languages_have_the_same_texts() -> None:
    assert set(TEXTS) == {"en", "de"}
    assert TEXTS["en"].keys() == TEXTS["de"].keys()
    for key, english in TEXTS["en"].items():
        assert placeholders(english) == placeholders(TEXTS["de"][key]), key


# Periods ----------------------------------------------------------------------------------

NOW = at("2026-11-12 15:30")  # a Thursday


@pytest.mark.parametrize("text", [None, "", "  ", "today", "TODAY", "heute", "Heute"])
def test_today(text: str | None) -> None:
    period = parse_period(text, NOW, BERLIN)
    assert (period.start, period.end) == (at("2026-11-12 00:00"), at("2026-11-13 00:00"))
    assert period.kind == "today" and period.label == "2026-11-12"
    assert period.days == [date(2026, 11, 12)]


@pytest.mark.parametrize("text", ["yesterday", "gestern", " Gestern "])
def test_yesterday(text: str) -> None:
    period = parse_period(text, NOW, BERLIN)
    assert (period.start, period.end) == (at("2026-11-11 00:00"), at("2026-11-12 00:00"))
    assert period.label == "2026-11-11"


@pytest.mark.parametrize("text", ["week", "woche", "WOCHE"])
def test_week_is_the_last_seven_days_with_today(text: str) -> None:
    period = parse_period(text, NOW, BERLIN)
    assert (period.start, period.end) == (at("2026-11-06 00:00"), at("2026-11-13 00:00"))
    assert len(period.days) == 7 and period.label == "2026-11-06..2026-11-12"


@pytest.mark.parametrize("text", ["month", "monat", "Monat"])
def test_month_is_this_calendar_month_so_far(text: str) -> None:
    period = parse_period(text, NOW, BERLIN)
    assert (period.start, period.end) == (at("2026-11-01 00:00"), at("2026-11-13 00:00"))
    assert period.kind == "month" and period.label == "2026-11-01..2026-11-12"
    first = parse_period(text, at("2026-11-01 00:00"), BERLIN)
    assert first.days == [date(2026, 11, 1)]


def test_a_calendar_month() -> None:
    period = parse_period("2026-02", NOW, BERLIN)
    assert (period.start, period.end) == (at("2026-02-01 00:00"), at("2026-03-01 00:00"))
    assert period.kind == "calendar_month" and period.label == "2026-02"
    december = parse_period("2025-12", NOW, BERLIN)
    assert december.last_day == date(2025, 12, 31)


@pytest.mark.parametrize("text", ["2026-10-03", "03.10.2026", "3.10.2026", "2026-10-3"])
def test_one_day_in_either_form(text: str) -> None:
    period = parse_period(text, NOW, BERLIN)
    assert (period.start, period.end) == (at("2026-10-03 00:00"), at("2026-10-04 00:00"))
    assert period.kind == "day" and period.label == "2026-10-03"


@pytest.mark.parametrize(
    "text",
    ["2026-10-01..2026-10-31", "01.10.2026..31.10.2026", "2026-10-01 .. 31.10.2026"],
)
def test_a_range_includes_its_end_day(text: str) -> None:
    period = parse_period(text, NOW, BERLIN)
    assert (period.start, period.end) == (at("2026-10-01 00:00"), at("2026-11-01 00:00"))
    assert period.kind == "range" and period.label == "2026-10-01..2026-10-31"
    assert len(period.days) == 31


def test_days_follow_the_chat_time_zone() -> None:
    now = at("2026-11-12 01:00", BERLIN)  # still the 11th in New York
    berlin = parse_period("today", now, BERLIN)
    new_york = parse_period("heute", now, NEW_YORK)
    assert berlin.label == "2026-11-12" and new_york.label == "2026-11-11"
    assert new_york.start == at("2026-11-11 00:00", NEW_YORK)
    assert new_york.tz == NEW_YORK


@pytest.mark.parametrize("tz", ["Mars/Olympus", "", "../../etc/passwd", "not a zone"])
def test_an_unknown_zone_is_utc(tz: str) -> None:
    period = parse_period("2026-11-12", NOW, tz)
    assert period.tz == "UTC"
    assert (period.start, period.end) == (at("2026-11-12 00:00", "UTC"), at("2026-11-13", "UTC"))


def test_a_dst_day_is_23_or_25_hours() -> None:
    spring = parse_period("2026-03-29", NOW, BERLIN)
    autumn = parse_period("25.10.2026", NOW, BERLIN)
    assert spring.end - spring.start == 23 * 3600
    assert autumn.end - autumn.start == 25 * 3600
    week = parse_period("woche", at("2026-03-31 12:00"), BERLIN)
    assert week.end - week.start == 7 * 86400 - 3600


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("tomorrow", "unknown"),
        ("letzte woche", "unknown"),
        ("12/11/2026", "unknown"),
        ("2026-11-12..", "unknown"),
        ("..2026-11-12", "unknown"),
        ("2026-11-12..week", "unknown"),
        ("20261112", "unknown"),
        ("2026-02-30", "bad_date"),
        ("31.04.2026", "bad_date"),
        ("2026-13", "bad_date"),
        ("2026-01-01..2026-13-01", "bad_date"),
        ("9999-12-31", "bad_date"),
        ("0000-01-01", "bad_date"),
        ("9999-12", "bad_date"),
        ("2026-11-12..2026-11-01", "reversed"),
        ("2020-01-01..2026-01-01", "too_long"),
    ],
)
def test_bad_periods(text: str, code: str) -> None:
    with pytest.raises(PeriodError) as caught:
        parse_period(text, NOW, BERLIN)
    assert caught.value.code == code
    for lang in ("en", "de"):
        assert period_error_text(lang, caught.value)
    assert str(MAX_PERIOD_DAYS) in period_error_text("de", PeriodError("too_long"))


def test_a_year_is_not_too_long() -> None:
    assert len(parse_period("2024-01-01..2024-12-31", NOW, BERLIN).days) == MAX_PERIOD_DAYS


# Sums -------------------------------------------------------------------------------------


def mixed_rows() -> list[HistoryRow]:
    return [
        # Lena: two EUR rows, one with a purchase price; one USD row
        hrow(sender_id=1, sender_name="Lena", price_min=10.0, price_max=20.0, purchase_price=5.0),
        hrow(sender_id=1, sender_name="Lena", price_min=30.0, price_max=50.0),
        hrow(sender_id=1, sender_name="Lena", price_min=100, price_max=200, currency="usd"),
        # Tom: one EUR row with purchase price; one without any estimate but a purchase price
        hrow(sender_id=2, sender_name="Tom", price_min=1.0, price_max=3.0, purchase_price=4.0),
        hrow(sender_id=2, sender_name="Tom", price_min=None, price_max=None, purchase_price=7.0),
        # Ana: one row without estimate, no purchase; one with only a max and no currency
        hrow(sender_id=3, sender_name="Ana", price_min=None, price_max=None, currency=None),
        hrow(sender_id=3, sender_name="Ana", price_min=None, price_max=8.0, currency=None),
    ]


def test_summarise_totals_per_currency() -> None:
    report = summarise(mixed_rows())
    assert report.currencies == ("EUR", "USD")
    assert report.mixed_currencies
    total = report.total
    assert (total.items, total.priced, total.purchased, total.compared) == (7, 5, 3, 2)
    eur = total.amounts_in("EUR")
    assert eur is not None
    assert (eur.rows, eur.priced) == (5, 4)  # the row with neither is in no currency
    assert (eur.low, eur.mid, eur.high) == (49.0, 15 + 40 + 2 + 8, 81.0)
    assert (eur.purchased, eur.purchase) == (3, 16.0)
    assert (eur.compared, eur.margin) == (2, (15 - 5) + (2 - 4))
    usd = total.amounts_in("USD")
    assert usd is not None
    assert (usd.priced, usd.low, usd.mid, usd.high, usd.purchased, usd.compared) == (
        1, 100, 150, 200, 0, 0
    )  # fmt: skip
    assert total.amounts_in("GBP") is None


def test_summarise_per_member() -> None:
    report = summarise(mixed_rows())
    assert [(m.name, m.items) for m in report.members] == [("Lena", 3), ("Ana", 2), ("Tom", 2)]
    lena, ana, tom = report.members
    assert lena.sender_id == 1 and [a.currency for a in lena.amounts] == ["EUR", "USD"]
    tom_eur = tom.amounts_in("EUR")
    assert tom_eur is not None
    assert (tom_eur.purchased, tom_eur.purchase, tom_eur.compared, tom_eur.margin) == (
        2, 11.0, 1, -2.0
    )  # fmt: skip
    assert (ana.items, ana.priced, ana.purchased) == (2, 1, 0)


def test_a_member_is_named_by_their_newest_row() -> None:
    rows = [
        hrow(sender_id=9, sender_name="Old Name", analysed_at=at("2026-11-10 10:00")),
        hrow(sender_id=9, sender_name="New Name", analysed_at=at("2026-11-11 10:00")),
    ]
    assert [m.name for m in summarise(rows).members] == ["New Name"]


def test_summarise_nothing() -> None:
    report = summarise([])
    assert report.total.items == 0 and report.members == () and report.currencies == ()


# Text -------------------------------------------------------------------------------------


def week() -> Period:
    return parse_period("week", NOW, BERLIN)


def test_money_per_language() -> None:
    assert money(12.5, "EUR", "en") == "12.50 EUR"
    assert money(12.5, "EUR", "de") == "12,50 €"
    assert money(1234567.891, "EUR", "de") == "1.234.567,89 €"
    assert money(1234.5, "USD", "en") == "1,234.50 USD"
    assert money(1234.5, "USD", "de-DE") == "1.234,50 $"
    assert money(-0.001, "CHF", "de") == "0,00 CHF"
    assert money(-3, "EUR", "en") == "-3.00 EUR"


def test_report_text_english() -> None:
    rows = [
        hrow(sender_name="Lena <admin>", price_min=10.0, price_max=20.0, purchase_price=5.0),
        hrow(sender_id=2, sender_name="Tom", price_min=1000.0, price_max=2000.0),
    ]
    text = report_text("en", summarise(rows), week())
    assert "📊 <b>Last 7 days</b> · 2026-11-06 – 2026-11-12" in text
    assert "Products: <b>2</b> · Members: 2" in text
    assert "Estimated value: <b>1,515.00 EUR</b> (range 1,010.00–2,020.00 EUR)" in text
    assert "Purchase prices: 5.00 EUR (given for 1 of 2)" in text
    assert "Estimated margin: <b>10.00 EUR</b> (over 1 with estimate and purchase price)" in text
    assert (
        "<b>Lena &lt;admin&gt;</b>: 📦 1 · 15.00 EUR (10.00–20.00 EUR) · margin 10.00 EUR" in text
    )  # user content escaped
    assert "<admin>" not in text
    assert "currencies" not in text


def test_report_text_german() -> None:
    text = report_text("de", summarise(mixed_rows()), week())
    assert "📊 <b>Letzte 7 Tage</b> · 06.11.2026 – 12.11.2026" in text
    assert "Produkte: <b>7</b> (2 ohne Preisschätzung) · Mitglieder: 3" in text
    assert "⚠️ 2 Währungen" in text
    assert "<b>EUR</b>\n💶 Geschätzter Wert: <b>65,00 €</b> (Spanne 49,00–81,00 €)" in text
    assert "<b>USD</b>\n💶 Geschätzter Wert: <b>150,00 $</b> (Spanne 100,00–200,00 $)" in text
    assert "Einkaufspreise: 16,00 € (bei 3 von 5 angegeben)" in text
    assert "Geschätzte Marge: <b>8,00 €</b>" in text
    assert (
        "• <b>Lena</b>: 📦 3 · 55,00 € (40,00–70,00 €) · Marge 10,00 € (1 mit Einkaufspreis)"
        in text
    )
    assert "150,00 $ (100,00–200,00 $)" in text


def test_report_text_without_purchase_prices_says_how_to_add_them() -> None:
    for lang in ("en", "de"):
        text = report_text(lang, summarise([hrow()]), week())
        assert "purchasePrice=" in text


def test_report_text_for_nothing() -> None:
    assert "No products" in report_text("en", summarise([]), week())
    assert "keine Produkte" in report_text("de", summarise([]), parse_period("", NOW, BERLIN))


def test_report_text_titles_every_period_kind() -> None:
    kinds = ("heute", "gestern", "woche", "monat", "2026-10", "2026-10-01", "1.1.2026..2.1.2026")
    for text in kinds:
        period = parse_period(text, NOW, BERLIN)
        assert report_text("en", summarise([]), period).startswith("📊 <b>")
        assert report_text("de", summarise([]), period).startswith("📊 <b>")


def test_report_text_caps_the_member_list() -> None:
    rows = [hrow(sender_id=i, sender_name=f"M{i}") for i in range(40)]
    text = report_text("en", summarise(rows), week())
    assert "… and 15 more" in text and len(text) < 4096


# CSV --------------------------------------------------------------------------------------


def read_csv(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig")
    assert "\r\n" in text
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))


def test_csv_german_uses_a_decimal_comma_and_semicolons() -> None:
    rows = [
        hrow(
            title="Müller; Jacke",
            price_min=10.1,
            price_max=20.2,
            purchase_price=12.5,
            manual_fields={"purchasePrice": 12.5, "size": "42"},
            message_link="https://t.me/c/1/2",
        ),
        hrow(title="=HYPERLINK()", price_min=None, price_max=None, manual_fields={"note": "x"}),
    ]
    table = read_csv(report_csv(rows, "de", tz=BERLIN))
    header, first, second = table
    assert header == [*CSV_COLUMNS, "field.purchasePrice", "field.size", "field.note"]
    cell = dict(zip(header, first, strict=True))
    assert cell["analysed_at"] == "2026-11-12 10:00:00"
    assert cell["title"] == "Müller; Jacke"
    assert (cell["price_min"], cell["price_max"], cell["price_mid"]) == ("10,10", "20,20", "15,15")
    assert (cell["purchase_price"], cell["margin"]) == ("12,50", "2,65")
    assert (cell["currency"], cell["field.purchasePrice"], cell["field.size"]) == (
        "EUR", "12,50", "42"
    )  # fmt: skip
    other = dict(zip(header, second, strict=True))
    assert other["title"] == "'=HYPERLINK()"  # not a formula in Excel
    assert other["price_mid"] == other["currency"] == other["field.size"] == ""
    assert other["field.note"] == "x"


def test_csv_english_uses_a_decimal_point_and_utc_by_default() -> None:
    rows = [hrow(price_min=10.0, price_max=15.0, analysed_at=at("2026-11-12 10:00", "UTC"))]
    header, line = read_csv(report_csv(rows, "en"))
    cell = dict(zip(header, line, strict=True))
    assert (cell["price_min"], cell["price_mid"]) == ("10", "12.50")
    assert cell["analysed_at"] == "2026-11-12 10:00:00"


def test_csv_of_nothing_is_a_header() -> None:
    assert read_csv(report_csv([], "de")) == [list(CSV_COLUMNS)]


# Chart ------------------------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_chart_for_several_days_is_a_small_png() -> None:
    rows = [
        hrow(sender_id=i % 3, sender_name=f"👟 Member ${i % 3}$", analysed_at=NOW - i * 86400)
        for i in range(6)
    ] + [hrow(currency="USD", price_min=5.0, price_max=5.0)]
    period = week()
    for lang in ("en", "de"):
        png = report_chart(summarise(rows), rows, period, lang)
        assert png is not None and png_size(png) == (800, 450)


def test_chart_has_an_others_series_for_many_members() -> None:
    rows = [hrow(sender_id=i, analysed_at=NOW - (i % 3) * 86400) for i in range(10)]
    png = report_chart(summarise(rows), rows, week(), "en")
    assert png is not None and png_size(png) == (800, 450)


def test_no_chart_when_it_says_nothing_more() -> None:
    period = week()
    assert report_chart(summarise([]), [], period, "en") is None
    one = [hrow(), hrow()]
    assert report_chart(summarise(one), one, period, "en") is None
    same_day_members = [hrow(sender_id=1), hrow(sender_id=2, analysed_at=NOW)]
    assert report_chart(summarise(same_day_members), same_day_members, period, "de") is None
    unpriced = [hrow(price_min=None, price_max=None, analysed_at=NOW - i * 86400) for i in range(3)]
    assert report_chart(summarise(unpriced), unpriced, period, "en") is None


# Daily digest -----------------------------------------------------------------------------


def test_digest_is_due_once_after_its_time() -> None:
    assert digest_due(None, at("2026-11-12 19:59"), BERLIN, "20:00") is None
    day = digest_due(None, at("2026-11-12 20:00"), BERLIN, "20:00")
    assert day == "2026-11-12"
    # after sending, the day is recorded: a restart (same or later call) sends nothing more
    assert digest_due(day, at("2026-11-12 20:00"), BERLIN, "20:00") is None
    assert digest_due(day, at("2026-11-12 23:59"), BERLIN, "20:00") is None
    assert digest_due(day, at("2026-11-13 19:59"), BERLIN, "20:00") is None
    assert digest_due(day, at("2026-11-13 20:01"), BERLIN, "20:00") == "2026-11-13"


def test_a_digest_missed_while_down_is_sent_late() -> None:
    last = "2026-11-11"
    assert digest_due(last, at("2026-11-12 23:30"), BERLIN, "20:00") == "2026-11-12"
    # down across midnight: yesterday's is due the next morning, once
    assert digest_due(last, at("2026-11-13 08:00"), BERLIN, "20:00") == "2026-11-12"
    assert digest_due("2026-11-12", at("2026-11-13 08:00"), BERLIN, "20:00") is None
    # down for days: only the latest missed one, no backlog
    assert digest_due("2026-11-01", at("2026-11-13 08:00"), BERLIN, "20:00") == "2026-11-12"
    # a clock that went back sends nothing twice
    assert digest_due("2026-11-14", at("2026-11-13 21:00"), BERLIN, "20:00") is None


def test_digest_around_midnight() -> None:
    assert digest_due("2026-11-11", at("2026-11-11 23:59"), BERLIN, "00:00") is None
    assert digest_due("2026-11-11", at("2026-11-12 00:00"), BERLIN, "00:00") == "2026-11-12"
    assert digest_due("2026-11-11", at("2026-11-12 00:00"), BERLIN, "23:59") is None
    assert digest_due("2026-11-10", at("2026-11-12 00:00"), BERLIN, "23:59") == "2026-11-11"
    # the zone decides the day: 23:30 UTC is already tomorrow in Berlin
    now = at("2026-11-12 23:30", "UTC")
    assert digest_due("2026-11-12", now, "UTC", "23:00") is None
    assert digest_due("2026-11-12", now, BERLIN, "00:15") == "2026-11-13"


def test_digest_across_dst_changes() -> None:
    # spring forward, 2026-03-29: 02:00 -> 03:00; 02:30 does not exist that day
    assert digest_due("2026-03-28", at("2026-03-29 01:59"), BERLIN, "02:30") is None
    assert digest_due("2026-03-28", at("2026-03-29 03:29"), BERLIN, "02:30") is None
    assert digest_due("2026-03-28", at("2026-03-29 03:30"), BERLIN, "02:30") == "2026-03-29"
    # an evening time stays at its local hour on both sides of the change
    assert digest_due("2026-03-28", at("2026-03-29 19:59"), BERLIN, "20:00") is None
    assert digest_due("2026-03-28", at("2026-03-29 20:00"), BERLIN, "20:00") == "2026-03-29"
    # fall back, 2026-10-25: 03:00 -> 02:00; 02:30 happens twice, due at the first
    first_0230 = datetime(2026, 10, 25, 0, 30, tzinfo=ZoneInfo("UTC")).timestamp()
    second_0230 = first_0230 + 3600
    assert digest_due("2026-10-24", first_0230 - 1, BERLIN, "02:30") is None
    assert digest_due("2026-10-24", first_0230, BERLIN, "02:30") == "2026-10-25"
    assert digest_due("2026-10-25", second_0230, BERLIN, "02:30") is None  # not twice
    assert digest_due("2026-10-24", at("2026-10-25 20:00"), BERLIN, "20:00") == "2026-10-25"


def test_digest_steps_one_day_at_a_time_through_a_year() -> None:
    """Simulated every 10 minutes for a year in Berlin: exactly one digest per day, each sent
    at the first tick at or after 20:00 local time."""
    sent: list[str] = []
    last: str | None = None
    tick = at("2026-01-01 00:00")
    end = at("2027-01-01 00:00")
    while tick < end:
        if (day := digest_due(last, tick, BERLIN, "20:00")) is not None:
            local = datetime.fromtimestamp(tick, ZoneInfo(BERLIN))
            assert (local.hour, local.minute) == (20, 0) and local.date().isoformat() == day
            sent.append(day)
            last = day
        tick += 600
    assert len(sent) == 365 == len(set(sent))


@pytest.mark.parametrize("bad", ["24:00", "20", "8:5", "20:60", "", "ab:cd"])
def test_digest_time_must_be_hh_mm(bad: str) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        digest_due(None, NOW, BERLIN, bad)


def test_digest_with_an_unknown_zone_is_utc() -> None:
    now = at("2026-11-12 20:00", "UTC")
    assert digest_due(None, now, "Nowhere/City", "20:00") == "2026-11-12"
