"""Reports on the results history: what a chat analysed in a period, what it is worth, what
was paid. Pure functions (no I/O); the rows come from `storage.history.History`.

Periods (`parse_period`)
    Days are days in the chat's IANA time zone (`zoneinfo`; an unknown or empty zone is UTC).
    A period is [start, end) in unix seconds, from a local midnight to a local midnight, so a
    day is 23 or 25 hours long across a DST change. Forms (case-insensitive, English or
    German):

    ==========================  =========================================================
    empty, `today`, `heute`     today
    `yesterday`, `gestern`      yesterday
    `week`, `woche`             the last 7 days, today included
    `month`, `monat`            this calendar month so far (the 1st to today): bookkeeping
                                and the tax office count calendar months; `YYYY-MM` gives
                                a whole past month
    `YYYY-MM`                   that calendar month, whole
    `YYYY-MM-DD`, `DD.MM.YYYY`  that day
    `A..B`                      the days A to B, both included (A and B in either date form)
    ==========================  =========================================================

    A daily digest's window (`digest_period`, kind `digest`) runs from one instant to another
    instead; its label, `@<start>..<end>` in unix seconds, is what its CSV button carries.

    A bad form raises `PeriodError` with a `code` (`unknown`, `bad_date`, `reversed`,
    `too_long`: more than `MAX_PERIOD_DAYS`); `period_error_text` words it.

Sums (`summarise`)
    Per member (by sender id; the name of their newest row) and in total: products, the
    estimated value as the sum of midpoints ((min + max) / 2) and as a range (sum of mins,
    sum of maxes), the purchase prices of the rows that have one, and the estimated margin
    (midpoint minus purchase price) over the rows that have both, with those counts.
    Amounts are kept per currency and never added across currencies; a row names no currency
    only when Resell Scan named none, and then counts as EUR (as `bot.results.result_fields`
    does). A purchase price is taken to be in its row's currency.

Numbers (`report_text`, `report_csv`)
    English: `1,234.50 EUR` (grouping comma, decimal point, the ISO code after the number).
    German: `1.234,50 €` (grouping point, decimal comma, a symbol after the number for EUR,
    USD and GBP: €, $, £; other currencies by ISO code). Money always has 2 decimals in the
    text; dates are `2026-11-12` in English and `12.11.2026` in German. The CSV writes
    numbers without grouping, with a decimal comma for German, whole numbers without
    decimals and others with at least 2 (as `bot.export`).

Chart (`report_chart`)
    Estimated value (sum of midpoints) per local day of the period, stacked by member (the
    `CHART_MEMBERS` biggest, the rest as one "others" series), in the currency with the most
    rows. None when it would say no more than the text: no priced rows, or all of them on one
    day (whatever the number of members).

Daily digest (`digest_due`)
    A digest is due at `at` (local "HH:MM") every day. `digest_due` returns the local day of
    the latest scheduled time at or before `now` when that day is later than the day last
    sent, else None; the caller sends, then records the returned day. So a restart never sends
    twice (the recorded day is not later), a bot that was down at `at` sends as soon as it is
    up again (the same day, or the next morning for yesterday's; older missed days are not
    caught up), and with nothing recorded yet only today's time counts. A time that a DST
    change skips (02:30 on the spring-forward day) falls due just after the gap; one it
    repeats falls due at its first occurrence.

    Each digest covers exactly the time since the previous one (`digest_window`): from where
    the previous window ended to the scheduled time of the day it is due for, so nothing is
    in two digests and nothing in none, whatever the time of day (before, a digest at 20:00
    reported its calendar day, and what came after 20:00 was in no digest), and a digest sent
    late (the bot was down) still ends at its scheduled time. Without a previous window the
    digest covers the day before its time (24 hours); a digest that follows one sent by
    earlier versions (a calendar day: the day of a digest from noon on, the day before for
    one before noon) starts where that one's report ended. A window reaches back at most
    `DIGEST_MAX_DAYS` (a digest turned on again after weeks off is not a month's report).
"""

from __future__ import annotations

import csv
import html
import io
import math
import re
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.export import cell
from storage.history import HistoryRow

DEFAULT_CURRENCY = "EUR"
MAX_PERIOD_DAYS = 366
MAX_MEMBER_LINES = 25  # keeps a report far below Telegram's 4096 characters
CHART_SIZE = (8.0, 4.5)  # inches at 100 dpi: 800 x 450 px
CHART_DPI = 100
CHART_MEMBERS = 6  # members drawn on their own; the rest are stacked as "others"
DIGEST_MAX_DAYS = 7  # a digest's window reaches back at most this many days

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title_today": "Today",
        "title_yesterday": "Yesterday",
        "title_week": "Last 7 days",
        "title_month": "This month",
        "title_calendar_month": "Month",
        "title_day": "Day",
        "title_range": "Period",
        "title_digest": "Since the last digest",
        "heading": "📊 <b>{title}</b> · {dates}",
        "empty": "No products were analysed in this period.",
        "counts": "📦 Products: <b>{items}</b>{unpriced} · Members: {members}",
        "unpriced": "({count} without a price estimate)",
        "mixed": "⚠️ {count} currencies: each is summed on its own, never converted.",
        "currency": "<b>{currency}</b>",
        "value": "💶 Estimated value: <b>{mid}</b> (range {range})",
        "purchase": "🧾 Purchase prices: {sum} (given for {count} of {items})",
        "no_purchase": "🧾 No purchase prices (add purchasePrice=… to the caption)",
        "margin": "📈 Estimated margin: <b>{margin}</b>"
        " (over {count} with estimate and purchase price)",
        "members": "👥 <b>By member</b>",
        "member": "• <b>{name}</b>: 📦 {items}",
        "member_value": "{mid} ({range})",
        "member_margin": "margin {margin} ({count} with purchase price)",
        "more_members": "… and {count} more",
        "chart_title": "Estimated value per day",
        "chart_axis": "Estimated value ({currency})",
        "chart_only": "{currency} only",
        "chart_others": "Others",
        "period_unknown": "I don't know that period. Try today, yesterday, week, month,"
        " 2026-11-12, 2026-11 or 2026-11-01..2026-11-15.",
        "period_bad_date": "There is no such date.",
        "period_reversed": "The period ends before it starts.",
        "period_too_long": "A report covers at most {days} days.",
    },
    "de": {
        "title_today": "Heute",
        "title_yesterday": "Gestern",
        "title_week": "Letzte 7 Tage",
        "title_month": "Dieser Monat",
        "title_calendar_month": "Monat",
        "title_day": "Tag",
        "title_range": "Zeitraum",
        "title_digest": "Seit dem letzten Bericht",
        "heading": "📊 <b>{title}</b> · {dates}",
        "empty": "In diesem Zeitraum wurden keine Produkte analysiert.",
        "counts": "📦 Produkte: <b>{items}</b>{unpriced} · Mitglieder: {members}",
        "unpriced": "({count} ohne Preisschätzung)",
        "mixed": "⚠️ {count} Währungen: jede wird für sich summiert, nie umgerechnet.",
        "currency": "<b>{currency}</b>",
        "value": "💶 Geschätzter Wert: <b>{mid}</b> (Spanne {range})",
        "purchase": "🧾 Einkaufspreise: {sum} (bei {count} von {items} angegeben)",
        "no_purchase": "🧾 Keine Einkaufspreise (purchasePrice=… in die Bildunterschrift)",
        "margin": "📈 Geschätzte Marge: <b>{margin}</b>"
        " (über {count} mit Schätzung und Einkaufspreis)",
        "members": "👥 <b>Nach Mitglied</b>",
        "member": "• <b>{name}</b>: 📦 {items}",
        "member_value": "{mid} ({range})",
        "member_margin": "Marge {margin} ({count} mit Einkaufspreis)",
        "more_members": "… und {count} weitere",
        "chart_title": "Geschätzter Wert pro Tag",
        "chart_axis": "Geschätzter Wert ({currency})",
        "chart_only": "nur {currency}",
        "chart_others": "Andere",
        "period_unknown": "Diesen Zeitraum kenne ich nicht. Versuche heute, gestern, woche,"
        " monat, 12.11.2026, 2026-11 oder 01.11.2026..15.11.2026.",
        "period_bad_date": "Dieses Datum gibt es nicht.",
        "period_reversed": "Der Zeitraum endet, bevor er beginnt.",
        "period_too_long": "Ein Bericht umfasst höchstens {days} Tage.",
    },
}
_SYMBOLS_DE = {"EUR": "€", "USD": "$", "GBP": "£"}
_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _lang(lang: str) -> str:
    return "de" if re.split(r"[-_]", lang.strip().lower(), maxsplit=1)[0] == "de" else "en"


def _t(lang: str, name: str, /, **params: Any) -> str:
    """The text `name` in `lang`, parameters escaped for Telegram HTML unless `_Html`."""
    safe = {
        key: value if isinstance(value, _Html) else html.escape(str(value), quote=False)
        for key, value in params.items()
    }
    return TEXTS[_lang(lang)][name].format(**safe)


class _Html(str):
    """Text that is HTML already (built from escaped parts)."""


# Periods ----------------------------------------------------------------------------------


class PeriodError(ValueError):
    """A period the user wrote that `parse_period` cannot read; `code` names the problem."""

    def __init__(self, code: str, text: str = "") -> None:
        super().__init__(f"{code}: {text!r}")
        self.code = code
        self.text = text


@dataclass(frozen=True)
class Period:
    start: float  # unix seconds, included: local midnight of first_day (digest: any instant)
    end: float  # unix seconds, excluded: local midnight after last_day (digest: any instant)
    label: str  # language-neutral: "2026-11-12", "2026-11", "2026-11-06..2026-11-12"
    kind: str  # today, yesterday, week, month, calendar_month, day, range, digest
    first_day: date  # the local day of `start`
    last_day: date  # the local day of the last instant before `end`
    tz: str  # the zone the days are in ("UTC" when the chat's was unknown)

    @property
    def days(self) -> list[date]:
        count = (self.last_day - self.first_day).days + 1
        return [self.first_day + timedelta(days=i) for i in range(count)]


_WORDS = {
    "": "today",
    "today": "today",
    "heute": "today",
    "yesterday": "yesterday",
    "gestern": "yesterday",
    "week": "week",
    "woche": "week",
    "month": "month",
    "monat": "month",
}
_ISO_DAY = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_GERMAN_DAY = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})")
_ISO_MONTH = re.compile(r"(\d{4})-(\d{1,2})")
_WINDOW = re.compile(r"@(\d{1,12})\.\.(\d{1,12})")


def zone(tz: str | None) -> tuple[tzinfo, str]:
    """The IANA zone `tz` and its name, or UTC for an unknown, empty or malformed name."""
    try:
        return ZoneInfo(tz or ""), str(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        return UTC, "UTC"


def _midnight(day: date, zone_info: tzinfo) -> float:
    return datetime.combine(day, time(0), tzinfo=zone_info).timestamp()


def _period(kind: str, first: date, last: date, label: str, zone_info: tzinfo, name: str) -> Period:
    if last < first:
        raise PeriodError("reversed", label)
    if (last - first).days + 1 > MAX_PERIOD_DAYS:
        raise PeriodError("too_long", label)
    try:
        start = _midnight(first, zone_info)
        end = _midnight(last + timedelta(days=1), zone_info)
    except (OverflowError, ValueError, OSError):  # the ends of the calendar
        raise PeriodError("bad_date", label) from None
    return Period(
        start=start,
        end=end,
        label=label,
        kind=kind,
        first_day=first,
        last_day=last,
        tz=name,
    )


def digest_period(start: float, end: float, tz: str) -> Period:
    """The window [start, end) a daily digest covers, as a period of kind `digest`."""
    zone_info, name = zone(tz)
    start, end = int(start), int(max(start, end))
    first = datetime.fromtimestamp(start, zone_info).date()
    last = datetime.fromtimestamp(max(start, end - 1), zone_info).date()
    return Period(start, end, f"@{start}..{end}", "digest", first, last, name)


def _day(text: str) -> date | None:
    """A day written YYYY-MM-DD or DD.MM.YYYY; None for another form; PeriodError for a date
    that does not exist."""
    if match := _ISO_DAY.fullmatch(text):
        year, month, day = (int(g) for g in match.groups())
    elif match := _GERMAN_DAY.fullmatch(text):
        day, month, year = (int(g) for g in match.groups())
    else:
        return None
    try:
        return date(year, month, day)
    except ValueError:
        raise PeriodError("bad_date", text) from None


def parse_period(text: str | None, now: float, tz: str) -> Period:
    """The period a user asked for (see the module doc), in zone `tz`, relative to `now`."""
    zone_info, name = zone(tz)
    today = datetime.fromtimestamp(now, zone_info).date()
    raw = " ".join((text or "").split())
    word = raw.lower()
    if match := _WINDOW.fullmatch(word):  # a digest's window (its CSV button)
        start, end = int(match[1]), int(match[2])
        if end < start:
            raise PeriodError("reversed", raw)
        if end - start > MAX_PERIOD_DAYS * 86400:
            raise PeriodError("too_long", raw)
        return digest_period(start, end, tz)
    kind = _WORDS.get(word)
    if kind == "today":
        return _period(kind, today, today, today.isoformat(), zone_info, name)
    if kind == "yesterday":
        day = today - timedelta(days=1)
        return _period(kind, day, day, day.isoformat(), zone_info, name)
    if kind == "week":
        first = today - timedelta(days=6)
        return _period(kind, first, today, f"{first}..{today}", zone_info, name)
    if kind == "month":
        first = today.replace(day=1)
        return _period(kind, first, today, f"{first}..{today}", zone_info, name)
    if ".." in word:
        left, _, right = (part.strip() for part in word.partition(".."))
        first_day, last_day = _day(left), _day(right)
        if first_day is None or last_day is None:
            raise PeriodError("unknown", raw)
        label = f"{first_day}..{last_day}"
        return _period("range", first_day, last_day, label, zone_info, name)
    if (single := _day(word)) is not None:
        return _period("day", single, single, single.isoformat(), zone_info, name)
    if match := _ISO_MONTH.fullmatch(word):
        year, month = (int(g) for g in match.groups())
        try:
            first = date(year, month, 1)
            last = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
        except ValueError:
            raise PeriodError("bad_date", raw) from None
        return _period("calendar_month", first, last, f"{first:%Y-%m}", zone_info, name)
    raise PeriodError("unknown", raw)


def period_error_text(lang: str, error: PeriodError) -> str:
    """What to tell the user about a period `parse_period` refused (Telegram HTML)."""
    return _t(lang, f"period_{error.code}", days=MAX_PERIOD_DAYS)


# Sums -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Amounts:
    """The sums of one currency."""

    currency: str
    rows: int  # rows in this currency (with an estimate or a purchase price)
    priced: int  # rows with an estimate
    low: float  # sum of the estimates' minimums
    mid: float  # sum of the estimates' midpoints
    high: float  # sum of the estimates' maximums
    purchased: int  # rows with a purchase price
    purchase: float  # sum of those purchase prices
    compared: int  # rows with an estimate and a purchase price
    margin: float  # sum over those rows of midpoint minus purchase price


@dataclass(frozen=True)
class Totals:
    """The sums of one member, or of everyone (`sender_id` None, `name` "")."""

    sender_id: int | None
    name: str
    items: int  # every product, priced or not
    priced: int
    purchased: int
    compared: int
    amounts: tuple[Amounts, ...]  # most rows first

    def amounts_in(self, currency: str) -> Amounts | None:
        return next((a for a in self.amounts if a.currency == currency), None)


@dataclass(frozen=True)
class Report:
    total: Totals
    members: tuple[Totals, ...]  # most products first, then by name
    currencies: tuple[str, ...]  # most rows first

    @property
    def mixed_currencies(self) -> bool:
        return len(self.currencies) > 1


def estimate(row: HistoryRow) -> tuple[float, float, float] | None:
    """(min, midpoint, max) of a row's estimate; one known bound stands for both."""
    low = _finite(row.price_min)
    high = _finite(row.price_max)
    if low is None:
        return None if high is None else (high, high, high)
    if high is None:
        return low, low, low
    return low, (low + high) / 2, high


def currency_of(row: HistoryRow) -> str:
    return (row.currency or "").strip().upper() or DEFAULT_CURRENCY


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _totals(sender_id: int | None, name: str, rows: Sequence[HistoryRow]) -> Totals:
    by_currency: dict[str, list[HistoryRow]] = {}
    for row in rows:
        if estimate(row) is not None or _finite(row.purchase_price) is not None:
            by_currency.setdefault(currency_of(row), []).append(row)
    amounts = []
    for currency, group in by_currency.items():
        estimates = [e for e in map(estimate, group) if e is not None]
        paid = [(estimate(r), p) for r in group if (p := _finite(r.purchase_price)) is not None]
        both = [(e[1], p) for e, p in paid if e is not None]
        amounts.append(
            Amounts(
                currency=currency,
                rows=len(group),
                priced=len(estimates),
                low=math.fsum(e[0] for e in estimates),
                mid=math.fsum(e[1] for e in estimates),
                high=math.fsum(e[2] for e in estimates),
                purchased=len(paid),
                purchase=math.fsum(p for _, p in paid),
                compared=len(both),
                margin=math.fsum(mid - p for mid, p in both),
            )
        )
    amounts.sort(key=lambda a: (-a.rows, a.currency))
    return Totals(
        sender_id=sender_id,
        name=name,
        items=len(rows),
        priced=sum(a.priced for a in amounts),
        purchased=sum(a.purchased for a in amounts),
        compared=sum(a.compared for a in amounts),
        amounts=tuple(amounts),
    )


def summarise(rows: Sequence[HistoryRow]) -> Report:
    """Sums per member and in total, per currency (see the module doc)."""
    by_sender: dict[int, list[HistoryRow]] = {}
    for row in rows:
        by_sender.setdefault(row.sender_id, []).append(row)
    members = [
        _totals(sender, max(group, key=lambda r: (r.analysed_at, r.id)).sender_name, group)
        for sender, group in by_sender.items()
    ]
    members.sort(key=lambda m: (-m.items, m.name.casefold(), m.sender_id or 0))
    total = _totals(None, "", rows)
    return Report(
        total=total, members=tuple(members), currencies=tuple(a.currency for a in total.amounts)
    )


# Text -------------------------------------------------------------------------------------


def number(value: float, lang: str, decimals: int = 2) -> str:
    """`value` grouped and rounded for `lang`: 1,234.50 (en) or 1.234,50 (de)."""
    text = f"{value:,.{decimals}f}"
    if text.startswith("-") and not any(c in "123456789" for c in text):
        text = text[1:]  # no "-0.00"
    if _lang(lang) == "de":
        text = text.translate(str.maketrans(",.", ".,"))
    return text


def _unit(currency: str, lang: str) -> str:
    return _SYMBOLS_DE.get(currency, currency) if _lang(lang) == "de" else currency


def money(value: float, currency: str, lang: str) -> str:
    """12.50 EUR (en) or 12,50 € (de)."""
    return f"{number(value, lang)} {_unit(currency, lang)}"


def money_range(low: float, high: float, currency: str, lang: str) -> str:
    """10.00–20.00 EUR (en) or 10,00–20,00 € (de)."""
    return f"{number(low, lang)}–{number(high, lang)} {_unit(currency, lang)}"


def _date(day: date, lang: str) -> str:
    return f"{day:%d.%m.%Y}" if _lang(lang) == "de" else day.isoformat()


def _dates(period: Period, lang: str) -> str:
    if period.kind == "digest":  # from an instant to an instant
        zone_info, _ = zone(period.tz)
        start = datetime.fromtimestamp(period.start, zone_info)
        end = datetime.fromtimestamp(period.end, zone_info)
        return f"{_date(start.date(), lang)} {start:%H:%M} – {_date(end.date(), lang)} {end:%H:%M}"
    if period.first_day == period.last_day:
        return _date(period.first_day, lang)
    return f"{_date(period.first_day, lang)} – {_date(period.last_day, lang)}"


def report_text(lang: str, report: Report, period: Period) -> str:
    """The report as a Telegram HTML message in `lang` ("en" or "de")."""
    lines = [
        _t(lang, "heading", title=_t(lang, f"title_{period.kind}"), dates=_dates(period, lang))
    ]
    total = report.total
    if total.items == 0:
        return "\n".join([*lines, _t(lang, "empty")])
    unpriced = total.items - total.priced
    note = _Html(" " + _t(lang, "unpriced", count=unpriced) if unpriced else "")
    lines.append(_t(lang, "counts", items=total.items, unpriced=note, members=len(report.members)))
    if report.mixed_currencies:
        lines.append(_t(lang, "mixed", count=len(report.currencies)))
    for amounts in total.amounts:
        lines.append("")
        if report.mixed_currencies:
            lines.append(_t(lang, "currency", currency=amounts.currency))
        items = amounts.rows if report.mixed_currencies else total.items
        lines.extend(_amount_lines(lang, amounts, items))
    if not total.purchased:
        lines.extend(["", _t(lang, "no_purchase")])
    lines.extend(["", _t(lang, "members")])
    for member in report.members[:MAX_MEMBER_LINES]:
        lines.append(_member_line(lang, member))
    if len(report.members) > MAX_MEMBER_LINES:
        lines.append(_t(lang, "more_members", count=len(report.members) - MAX_MEMBER_LINES))
    return "\n".join(lines)


def _amount_lines(lang: str, a: Amounts, items: int) -> list[str]:
    lines = []
    if a.priced:
        lines.append(
            _t(
                lang,
                "value",
                mid=money(a.mid, a.currency, lang),
                range=money_range(a.low, a.high, a.currency, lang),
            )
        )
    if a.purchased:
        purchase = money(a.purchase, a.currency, lang)
        lines.append(_t(lang, "purchase", sum=purchase, count=a.purchased, items=items))
    if a.compared:
        margin = money(a.margin, a.currency, lang)
        lines.append(_t(lang, "margin", margin=margin, count=a.compared))
    return lines


def _member_line(lang: str, member: Totals) -> str:
    parts = [_t(lang, "member", name=member.name, items=member.items)]
    for a in member.amounts:
        if a.priced:
            mid = money(a.mid, a.currency, lang)
            span = money_range(a.low, a.high, a.currency, lang)
            parts.append(_t(lang, "member_value", mid=mid, range=span))
        if a.compared:
            margin = money(a.margin, a.currency, lang)
            parts.append(_t(lang, "member_margin", margin=margin, count=a.compared))
    return " · ".join(parts)


# CSV --------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "analysed_at",
    "sender",
    "sender_id",
    "collection",
    "title",
    "brand",
    "category",
    "price_min",
    "price_max",
    "price_mid",
    "currency",
    "purchase_price",
    "margin",
    "message_link",
    "submission_id",
    "product_index",
)


def report_csv(rows: Sequence[HistoryRow], lang: str, *, tz: str = "UTC") -> bytes:
    """One line per product, oldest first: UTF-8 with a BOM (Excel), `;` between cells,
    `\\r\\n` line ends, a decimal comma for German. Headers are the same English identifiers
    in every language: `CSV_COLUMNS`, then `field.<key>` for every manual field key in order
    of appearance. `analysed_at` is local time in `tz` ("YYYY-MM-DD HH:MM:SS"). A text cell
    that Excel would read as a formula starts with `'`."""
    comma = _lang(lang) == "de"
    zone_info, _ = zone(tz)
    keys = list(dict.fromkeys(key for row in rows for key in row.manual_fields))
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow([*CSV_COLUMNS, *(f"field.{key}" for key in keys)])
    for row in sorted(rows, key=lambda r: (r.analysed_at, r.id)):
        guess = estimate(row)
        purchase = _finite(row.purchase_price)
        has_amount = guess is not None or purchase is not None
        margin = guess[1] - purchase if guess is not None and purchase is not None else None
        analysed = datetime.fromtimestamp(row.analysed_at, zone_info)
        cells: list[Any] = [
            f"{analysed:%Y-%m-%d %H:%M:%S}",
            row.sender_name,
            row.sender_id,
            row.collection_name,
            row.title,
            row.brand,
            row.category,
            guess[0] if guess else None,
            guess[2] if guess else None,
            guess[1] if guess else None,
            currency_of(row) if has_amount else None,
            purchase,
            margin,
            row.message_link,
            row.submission_id,
            row.product_index,
            *(row.manual_fields.get(key) for key in keys),
        ]
        writer.writerow([cell(_rounded(value), comma) for value in cells])
    return buffer.getvalue().encode("utf-8-sig")


def _rounded(value: Any) -> Any:
    """Computed amounts to 6 places, so 20.1 - 12.5 is written 7.60, not 7.600000000000001."""
    return round(value, 6) if isinstance(value, float) else value


# Chart ------------------------------------------------------------------------------------


def report_chart(
    report: Report, rows: Sequence[HistoryRow], period: Period, lang: str
) -> bytes | None:
    """A PNG (800 x 450) of the estimated value per day of the period, stacked by member, in
    the currency with the most rows (the title says so when there are others). None when it
    would say nothing the text does not: no priced rows, or all of them on one day; and for a
    digest of two days or less (its evening and its next day say nothing as bars).

    Imports matplotlib (Agg, no pyplot) on first use; CPU-bound for ~0.1 s, so a caller on an
    event loop runs it in a thread (`asyncio.to_thread`)."""
    if not report.currencies or (period.kind == "digest" and len(period.days) <= 2):
        return None
    currency = report.currencies[0]
    zone_info, _ = zone(period.tz)
    days = period.days
    index = {day: i for i, day in enumerate(days)}
    values: dict[int, list[float]] = {}
    seen_days: set[date] = set()
    for row in rows:
        guess = estimate(row)
        if guess is None or currency_of(row) != currency:
            continue
        day = datetime.fromtimestamp(row.analysed_at, zone_info).date()
        if day not in index:
            continue
        seen_days.add(day)
        values.setdefault(row.sender_id, [0.0] * len(days))[index[day]] += guess[1]
    if len(seen_days) < 2:
        return None
    names = {m.sender_id: m.name for m in report.members}
    order = sorted(values, key=lambda s: (-sum(values[s]), names.get(s, "").casefold()))
    series = [(names.get(s, str(s)), values[s]) for s in order[:CHART_MEMBERS]]
    rest = order[CHART_MEMBERS:]
    if rest:
        summed = [math.fsum(values[s][i] for s in rest) for i in range(len(days))]
        series.append((_t(lang, "chart_others"), summed))
    title = _t(lang, "chart_title")
    if report.mixed_currencies:
        title += " · " + _t(lang, "chart_only", currency=currency)
    return _draw(
        days=days,
        series=series,
        title=html.unescape(title),
        axis=html.unescape(_t(lang, "chart_axis", currency=_unit(currency, lang))),
        tick=lambda day: f"{day:%d.%m.}" if _lang(lang) == "de" else _english_day(day),
        amount=lambda value: number(value, lang, decimals=0),
    )


def _english_day(day: date) -> str:
    return f"{_MONTHS_EN[day.month - 1]} {day.day}"


def _draw(
    *,
    days: Sequence[date],
    series: Iterable[tuple[str, list[float]]],
    title: str,
    axis: str,
    tick: Callable[[date], str],
    amount: Callable[[float], str],
) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    figure = Figure(figsize=CHART_SIZE, dpi=CHART_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    positions = list(range(len(days)))
    bottom = [0.0] * len(days)
    for name, heights in series:
        label = _plain(name) or "?"
        axes.bar(positions, heights, bottom=bottom, label=label, width=0.8)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    step = max(1, math.ceil(len(days) / 12))
    axes.set_xticks(positions[::step], [tick(day) for day in days[::step]])
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: amount(value)))
    axes.set_title(title)
    axes.set_ylabel(axis)
    handles, labels = axes.get_legend_handles_labels()  # top of the stack first
    figure.legend(
        handles[::-1], labels[::-1], loc="outside right upper", fontsize="small", frameon=False
    )
    axes.spines[["top", "right"]].set_visible(False)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a glyph the font lacks (an emoji in a name)
        figure.savefig(buffer, format="png", dpi=CHART_DPI)
    return buffer.getvalue()


def _plain(name: str) -> str:
    """A name for the chart's legend: without emoji and other symbols (the font has none) and
    with `$` escaped (`$…$` would be read as mathtext)."""
    kept = "".join(c for c in name if unicodedata.category(c) not in ("So", "Cs", "Co", "Cf"))
    return " ".join(kept.split()).replace("$", r"\$")


# Daily digest -----------------------------------------------------------------------------


def digest_due(last_sent_day: str | None, now: float, tz: str, at: str) -> str | None:
    """The local day (YYYY-MM-DD) whose digest is due at `now`, or None (see the module doc).
    `at` is "HH:MM" local time; ValueError for a malformed `at` or `last_sent_day`."""
    at_time = _digest_time(at)
    last = date.fromisoformat(last_sent_day) if last_sent_day else None
    zone_info, _ = zone(tz)
    today = datetime.fromtimestamp(now, zone_info).date()
    due_day = today
    if now < datetime.combine(today, at_time, tzinfo=zone_info).timestamp():
        if last is None:
            return None  # nothing sent yet: no catching up on a day before
        due_day = today - timedelta(days=1)
    if last is not None and due_day <= last:
        return None
    return due_day.isoformat()


def digest_window(
    day: str, at: str, tz: str, *, until: float | None, last_day: str | None
) -> tuple[float, float]:
    """[start, end) in unix seconds that the digest due for local `day` (`digest_due`) at
    local time `at` covers (see the module doc): it ends at `day`'s time `at`, and starts
    where the previous window ended (`until`), else where the previous digest of an earlier
    version ended its report (`last_day`), else 24 hours of local days before; at most
    DIGEST_MAX_DAYS back. ValueError for a malformed `at` or `day`."""
    at_time = _digest_time(at)
    zone_info, _ = zone(tz)
    due = date.fromisoformat(day)

    def scheduled(local_day: date) -> float:
        return datetime.combine(local_day, at_time, tzinfo=zone_info).timestamp()

    end = scheduled(due)
    if until is not None:
        start = until
    elif last_day is not None:
        previous = date.fromisoformat(last_day)
        # A digest from noon on reported its own day, up to the moment it was sent; one
        # before noon the whole day before.
        start = scheduled(previous) if at_time.hour >= 12 else _midnight(previous, zone_info)
    else:
        start = scheduled(due - timedelta(days=1))
    start = max(start, scheduled(due - timedelta(days=DIGEST_MAX_DAYS)))
    return min(start, end), end


def _digest_time(at: str) -> time:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", at.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError(f"digest time must be HH:MM, not {at!r}")
    return time(int(match[1]), int(match[2]))
