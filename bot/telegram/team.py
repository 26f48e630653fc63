"""What a team analysed: `/find`, `/report` and the daily digest, read from the results history
(`storage.history`), kept as soon as results are known (delivered or not: bot/outbox.py
`keep_owed_history`). Nothing here asks Resell Scan.

Texts and sums come from `bot.report` (pure); this module reads the store, builds messages and
keyboards, and sends the digest through the chat's send queue.

The digest is sent at most once per local day and never skipped for a day it was due on while
the bot ran or was down for less than a day (`report.digest_due`): the day is recorded in the
chat's row only after Telegram accepted the message, so a crash in between sends it again (a
late duplicate is the one failure mode left, confined to that crash window, rather than a lost
digest). Each digest covers exactly the time since the previous one (`report.digest_window`);
the end of its window is recorded with its day. A digest to a chat that is gone (it blocked or
removed the bot) is tried MAX_DIGEST_TRIES times (bot/outbox.py counts them); then none is
owed to that chat until it speaks again (any update from it: bot/telegram/handlers.py
`arrival`).
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
)

from bot import report
from bot.config import Settings
from bot.outbox import MAX_DIGEST_TRIES
from bot.report import Period
from bot.telegram import callbacks
from bot.telegram.outbox import text_row
from bot.telegram.texts import language_for, t
from storage import Store
from storage.history import HistoryRow

log = logging.getLogger(__name__)

FIND_PAGE = 8  # hits per /find page
MAX_TITLE = 60


@dataclass(frozen=True)
class ReportOut:
    text: str
    markup: InlineKeyboardMarkup | None
    chart: bytes | None
    period: report.Period


class Team:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        bot: Bot,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.store = store
        self.bot = bot
        self.clock = clock

    async def zone(self, chat_id: int) -> str:
        return (await self.store.chat(chat_id)).timezone or self.settings.default_timezone

    # /find -------------------------------------------------------------------------------

    async def find_page(
        self, chat_id: int, lang: str, token: int, offset: int
    ) -> tuple[str, InlineKeyboardMarkup | None]:
        """A page of the search behind `token` (a page button), or why it cannot be shown."""
        text = (
            ""
            if token == 0
            else await self.store.history.recall_query(chat_id, token, self.clock())
        )
        if text is None:
            return t(lang, "find_expired"), None
        return await self.find_view(chat_id, lang, text, offset)

    async def find_view(
        self, chat_id: int, lang: str, text: str, offset: int = 0
    ) -> tuple[str, InlineKeyboardMarkup | None]:
        """One page of the chat's results matching `text`, best matches first (all of them
        newest first when `text` is empty); its page buttons carry the query's token
        (`History.remember_query`), never the text."""
        rows, total = await self.store.history.find(chat_id, text, limit=FIND_PAGE, offset=offset)
        query = " ".join(text.split())
        if not total:
            return t(lang, "find_none" if query else "find_empty", query=query), None
        zone = await self.zone(chat_id)
        head = t(
            lang,
            "find_head" if query else "find_head_all",
            query=query,
            total=total,
            first=offset + 1,
            last=offset + len(rows),
        )
        lines = [head]
        replies: list[InlineKeyboardButton] = []
        for number, row in enumerate(rows, start=offset + 1):
            lines.append(self._hit(lang, number, row, zone))
            if row.message_link is None and row.message_id is not None:
                replies.append(
                    InlineKeyboardButton(
                        f"↩ {number}", callback_data=callbacks.FindShow(row.id).data()
                    )
                )
        keyboard = [replies[i : i + 4] for i in range(0, len(replies), 4)]
        nav: list[InlineKeyboardButton] = []
        if offset > 0 or offset + len(rows) < total:
            token = (
                await self.store.history.remember_query(chat_id, query, self.clock())
                if query
                else 0
            )
            if offset > 0:
                back = callbacks.FindPage(max(0, offset - FIND_PAGE), token)
                nav.append(InlineKeyboardButton("◀", callback_data=back.data()))
            if offset + len(rows) < total:
                ahead = callbacks.FindPage(offset + FIND_PAGE, token)
                nav.append(InlineKeyboardButton("▶", callback_data=ahead.data()))
        if nav:
            keyboard.append(nav)
        return "\n".join(lines), InlineKeyboardMarkup(keyboard) if keyboard else None

    @staticmethod
    def _hit(lang: str, number: int, row: HistoryRow, zone: str) -> str:
        title = row.title or row.brand or row.category or t(lang, "find_untitled")
        if len(title) > MAX_TITLE:
            title = title[: MAX_TITLE - 1] + "…"
        shown = html.escape(title, quote=False)
        if row.message_link:
            shown = f'<a href="{html.escape(row.message_link)}">{shown}</a>'
        else:
            shown = f"<b>{shown}</b>"
        guess = report.estimate(row)
        currency = report.currency_of(row)
        if guess is None:
            price = t(lang, "find_no_price")
        elif guess[0] == guess[2]:
            price = report.money(guess[0], currency, lang)
        else:
            price = report.money_range(guess[0], guess[2], currency, lang)
        zone_info, _ = report.zone(zone)
        day = datetime.fromtimestamp(row.analysed_at, zone_info).date()
        when = f"{day:%d.%m.%Y}" if lang == "de" else day.isoformat()
        return f"{number}. {shown} · {html.escape(price, quote=False)} · {when} · " + html.escape(
            row.sender_name, quote=False
        )

    async def history_row(self, chat_id: int, row_id: int) -> HistoryRow | None:
        row = await self.store.history.get(row_id)
        return row if row is not None and row.chat_id == chat_id else None

    # /report -----------------------------------------------------------------------------

    async def report(self, chat_id: int, lang: str, text: str | None) -> ReportOut:
        """The chat's report for the period `text` names; raises report.PeriodError."""
        period = report.parse_period(text, self.clock(), await self.zone(chat_id))
        return await self.report_of(chat_id, lang, period)

    async def report_of(self, chat_id: int, lang: str, period: Period) -> ReportOut:
        """The chat's report for `period`."""
        rows = await self.store.history.between(chat_id, period.start, period.end)
        summary = report.summarise(rows)
        markup = None
        if rows:
            button = InlineKeyboardButton(
                t(lang, "report_csv_button"), callback_data=callbacks.ReportCsv(period.label).data()
            )
            markup = InlineKeyboardMarkup([[button]])
        chart = await asyncio.to_thread(report.report_chart, summary, rows, period, lang)
        return ReportOut(report.report_text(lang, summary, period), markup, chart, period)

    async def report_csv(self, chat_id: int, lang: str, label: str) -> tuple[str, bytes]:
        zone = await self.zone(chat_id)
        period = report.parse_period(label, self.clock(), zone)
        rows = await self.store.history.between(chat_id, period.start, period.end)
        if period.kind == "digest":
            zone_info, _ = report.zone(period.tz)
            end = datetime.fromtimestamp(period.end, zone_info)
            name = f"resell-scan-digest-{end:%Y-%m-%d-%H%M}.csv"
        else:
            name = f"resell-scan-report-{period.label.replace('..', '_')}.csv"
        return name, report.report_csv(rows, lang, tz=period.tz)

    async def send_report(
        self,
        chat_id: int,
        lang: str,
        out: ReportOut,
        *,
        reply_to: int | None = None,
        thread_id: int | None = None,
        digest: bool = False,
    ) -> None:
        """The report's text (with its CSV button), then its chart when it has one, owed to
        the outbox (they go in this order: same priority, written in order)."""
        rows = [
            text_row(
                chat_id,
                out.text,
                out.markup,
                reply_to=reply_to,
                thread_id=thread_id,
                digest=digest,
            )
        ]
        if out.chart is not None:
            rows.append(
                text_row(
                    chat_id,
                    t(lang, "report_chart_caption"),
                    reply_to=reply_to,
                    thread_id=thread_id,
                    document=out.chart,
                    filename="report.png",
                    photo=True,
                    digest=digest,
                )
            )
        await self.store.owe(*rows, now=self.clock())

    # The daily digest --------------------------------------------------------------------

    async def send_due_digests(self) -> int:
        """Send every digest due now; returns how many were sent. A chat that is gone (its
        digest failed MAX_DIGEST_TRIES times) is skipped until it speaks again."""
        sent = 0
        stopped = await self.store.digests_stopped(MAX_DIGEST_TRIES)
        for chat in await self.store.digest_chats():
            if chat.chat_id in stopped:
                continue
            assert chat.digest_time is not None
            zone = chat.timezone or self.settings.default_timezone
            try:
                day = report.digest_due(chat.digest_last_day, self.clock(), zone, chat.digest_time)
                if day is None:
                    continue
                # Exactly the time since the previous digest (report.digest_window).
                start, end = report.digest_window(
                    day,
                    chat.digest_time,
                    zone,
                    until=chat.digest_until,
                    last_day=chat.digest_last_day,
                )
            except ValueError:
                log.warning("chat %s has a malformed digest setting", chat.chat_id)
                continue
            lang = language_for(chat.language, None, self.settings.default_language, group=True)
            period = report.digest_period(start, end, zone)
            out = await self.report_of(chat.chat_id, lang, period)
            heading = t(lang, "digest_heading")
            # Owed, then the day recorded: a crash between the two owes it again (twice
            # rather than never); the outbox delivers it whenever the chat can take it.
            await self.send_report(
                chat.chat_id,
                lang,
                ReportOut(f"{heading}\n{out.text}", out.markup, out.chart, out.period),
                digest=True,
            )
            await self.store.update_chat(
                chat.chat_id, self.clock(), digest_last_day=day, digest_until=period.end
            )
            sent += 1
            log.info("digest sent", extra={"chat_id": chat.chat_id, "day": day})
        return sent

    async def run_digests(self, every: float) -> None:
        while True:
            try:
                await self.send_due_digests()
            except Exception:
                log.exception("digest round failed")
            await asyncio.sleep(every)
