"""Pure presentation: message texts and keyboards from data, no I/O (testable as is)."""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from telegram import CopyTextButton, InlineKeyboardButton, InlineKeyboardMarkup

from bot.intake import FieldProblem
from bot.listing import condition_text, fits_copy_button, listing_text
from bot.report import money
from bot.resellscan import BatchStatus, Collection, ManualField, ProductResult
from bot.results import extra_fields, message_link, result_fields
from bot.telegram import callbacks
from bot.telegram.callbacks import CallbackCodec
from bot.telegram.texts import Html, t
from storage import ChatSettings, Problem, State, Submission

MESSAGE_LIMIT = 4096
SAFE_LIMIT = 3800  # room for a "(continued)" line and HTML entity slack
PAGE_SIZE = 8
BOARD_LINES = 12  # the live board lists the oldest this many analyses; the rest are counted
BOARD_NAME_CHARS = 32  # a sender's or collection's name on the board is cut to this
STATE_ICONS = {
    State.RECEIVED: "🕓",
    State.SUBMITTING: "📤",
    State.SUBMITTED: "⏳",
    State.COMPLETED: "✅",
    State.NOTIFIED: "✅",
    State.REJECTED: "⚠️",
    State.FAILED: "❌",
    State.EXPIRED: "⌛",
    State.UNCERTAIN: "❔",
    State.RECONCILING: "🔎",
}


def short_batch(batch_id: str | None) -> str:
    return (batch_id or "-")[:8]


def count_text(lang: str, count: int, one: str, many: str) -> str:
    return t(lang, one) if count == 1 else t(lang, many, count=count)


# Results --------------------------------------------------------------------------------------


def _money(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}"
    if isinstance(value, int | float):
        return str(int(value))
    return str(value)


def _product_block(lang: str, index: int | str, product: ProductResult) -> str:
    if product.failed:
        return t(lang, "result_failed", index=index, error=product.error_text)
    facts = result_fields(product.result)
    title = facts["title"] or t(lang, "result_title_unknown")
    label = f"{index}." if isinstance(index, int) else index  # 1. alone, 1.1 in a block
    lines = [f"<b>{label} {html.escape(str(title))}</b>"]
    if facts["condition"]:  # common conditions in the user's language (worn: abgenutzt)
        facts["condition"] = condition_text(lang, str(facts["condition"]))
    for key, name in (
        ("brand", "result_brand"),
        ("category", "result_category"),
        ("condition", "result_condition"),
    ):
        if facts[key]:
            lines.append(f"{t(lang, name)}: {html.escape(str(facts[key]))}")
    if facts["price_min"] is not None:
        low, high = _money(facts["price_min"]), _money(facts["price_max"])
        span = low if low == high else f"{low}–{high}"
        lines.append(
            f"💶 {t(lang, 'result_price')}: <b>{html.escape(span)} "
            f"{html.escape(str(facts['currency'] or ''))}</b>"
        )
    if facts["confidence"] is not None:
        lines.append(f"{t(lang, 'result_confidence')}: {facts['confidence']}%")
    for key, value in extra_fields(product.result):
        lines.append(f"{html.escape(key)}: {html.escape(value)}")
    return "\n".join(lines)


def unreadable_text(lang: str, sub: Submission) -> str:
    """A completion whose products could not be read: say it finished, and where to look."""
    return t(
        lang,
        "results_unreadable",
        sender=sub.user_name,
        collection=sub.collection_name or "?",
        batch=short_batch(sub.batch_id),
    )


def duration_text(lang: str, seconds: float | None) -> str:
    if seconds is None:
        return "–"
    whole = max(0, round(seconds))
    if whole < 60:
        return t(lang, "duration_seconds", seconds=whole)
    return t(lang, "duration_minutes", minutes=whole // 60, seconds=whole % 60)


def render_results(
    lang: str,
    sub: Submission,
    status: BatchStatus,
    photo_count: int,
    *,
    now: float,
    numbers: Mapping[str, int] | None = None,
) -> list[str]:
    """The results reply, split into messages below Telegram's 4096-character limit;
    `numbers`: each product's number in the album (a retry keeps the original's numbers)."""
    sender = html.escape(sub.user_name)
    header = t(
        lang,
        "results_header",
        sender=Html(sender),
        collection=sub.collection_name or "?",
        photos=count_text(lang, photo_count, "photos_one", "photos_many"),
    )
    numbers = numbers or {}
    blocks = [
        _product_block(lang, numbers.get(p.product_id or "", i), p)
        for i, p in enumerate(status.products, start=1)
    ]
    total, ok, failed = status.counts()
    rate = (
        status.success_rate
        if status.success_rate is not None
        else (round(100 * ok / total) if total else 0)
    )
    took = (sub.completed_at or now) - sub.submitted_at if sub.submitted_at else None
    if total and not ok:  # nothing analysed: say so, and what helps
        summary = t(lang, "results_all_failed", count=total, batch=short_batch(sub.batch_id))
        return split_message([header, *blocks, summary], continued=t(lang, "results_continued"))
    summary = t(
        lang,
        "results_summary",
        ok=ok,
        total=total,
        failed=failed,
        rate=percent(lang, rate),
        duration=duration_text(lang, took),
        batch=short_batch(sub.batch_id),
    )
    return split_message([header, *blocks, summary], continued=t(lang, "results_continued"))


def photo_link(sub: Submission) -> str | None:
    """A link to a submission's first photo (supergroups only, see `message_link`)."""
    return message_link(sub.chat_id, sub.thread_id, sub.message_id)


def percent(lang: str, value: Any) -> str:
    """A share as people write it: 33 or 33.3 (33,3 in German), never 33.30."""
    try:
        number = round(float(value), 1)
    except (TypeError, ValueError):
        return str(value)
    text = f"{number:.0f}" if number == int(number) else f"{number:.1f}"
    return text.replace(".", ",") if lang == "de" else text


def mention(user_id: int, name: str) -> Html:
    """A user's name that mentions them (Telegram notifies them, as a bold name does not):
    an inline link to `tg://user?id=`, which Telegram turns into a `text_mention`."""
    if user_id <= 0:  # not a user (a chat posting as itself): the name alone
        return Html(html.escape(name))
    return Html(f'<a href="tg://user?id={user_id}">{html.escape(name)}</a>')


CombinedItem = tuple[Submission, BatchStatus, int]  # submission, its results, its photos


def _combined_block(lang: str, number: int, item: CombinedItem, now: float) -> str:
    """One analysis of a combined reply: `number.` with its sender mentioned and a link to
    the photos, its products numbered within it (1.1, 1.2, then 2.1 …), and its summary."""
    sub, status, photos = item
    link = photo_link(sub)
    photos_text = count_text(lang, photos, "photos_one", "photos_many")
    shown = html.escape(photos_text)
    if link:
        shown = f'<a href="{html.escape(link)}">{shown}</a>'
    head = f"<b>{number}.</b> " + t(
        lang,
        "combined_item",
        sender=mention(sub.user_id, sub.user_name),
        collection=sub.collection_name or "?",
        photos=Html(shown),
    )
    blocks = [
        _product_block(lang, f"{number}.{i}", p) for i, p in enumerate(status.products, start=1)
    ]
    total, ok, _ = status.counts()
    summary = "combined_summary" if ok or not total else "combined_all_failed"
    tail = t(lang, summary, ok=ok, total=total, batch=short_batch(sub.batch_id))
    return "\n".join([head, *blocks, tail])


def combined_fit(
    lang: str, items: Sequence[CombinedItem], codec: CallbackCodec, *, now: float
) -> int:
    """How many of `items` (at least one) fit one message together: measured on the very text
    `combined_results` writes, so nothing is ever cut."""
    for count in range(len(items), 1, -1):
        text, _ = combined_results(lang, items[:count], codec, now=now)
        if len(text) <= SAFE_LIMIT:
            return count
    return 1


def combined_results(
    lang: str, items: Sequence[CombinedItem], codec: CallbackCodec, *, now: float
) -> tuple[str, InlineKeyboardMarkup]:
    """Several results in one reply (a group at its message limit, replying to nothing): each
    mentions its sender (who is notified) and links to the first photo, with one row of
    buttons per analysis."""
    blocks = [t(lang, "combined_header", count=len(items))]
    rows: list[list[InlineKeyboardButton]] = []
    for number, item in enumerate(items, start=1):
        sub, status, _ = item
        blocks.append(_combined_block(lang, number, item, now))
        row = []
        failed = status.failed_product_ids()
        if failed and sub.retried_at is None:
            row.append(
                InlineKeyboardButton(
                    f"{number}. 🔁 {len(failed)}",
                    callback_data=codec.encode(callbacks.RetryFailed(sub.id), chat_id=sub.chat_id),
                )
            )
        if any(not p.failed for p in status.products):
            row.append(
                InlineKeyboardButton(
                    f"{number}. 📋",
                    callback_data=codec.encode(callbacks.Listing(sub.id, 0), chat_id=sub.chat_id),
                )
            )
        row.append(
            InlineKeyboardButton(
                f"{number}. 📄",
                callback_data=codec.encode(callbacks.Csv(sub.id), chat_id=sub.chat_id),
            )
        )
        rows.append(row)
    return "\n\n".join(blocks), InlineKeyboardMarkup(rows)


def split_message(
    blocks: Sequence[str], *, continued: str = "", limit: int = SAFE_LIMIT
) -> list[str]:
    """Join blocks with blank lines into as few messages as fit; a block never straddles two
    messages unless it alone is too long (then it is cut at line ends, or hard)."""
    parts: list[str] = []
    current = ""
    for block in blocks:
        for piece in _cut(block, limit):
            candidate = f"{current}\n\n{piece}" if current else piece
            if len(candidate) <= limit:
                current = candidate
            else:
                parts.append(current)
                current = f"{continued}\n{piece}" if continued else piece
    if current:
        parts.append(current)
    return parts


def _cut(block: str, limit: int) -> list[str]:
    if len(block) <= limit:
        return [block]
    pieces, current = [], ""
    for line in block.split("\n"):
        while len(line) > limit:
            pieces.append(line[:limit])
            line = line[limit:]
        if len(current) + len(line) + 1 > limit:
            pieces.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        pieces.append(current)
    return pieces


# Progress and problems ------------------------------------------------------------------------


def analysing_text(lang: str, sub: Submission, products: int, percent: float | None) -> str:
    params: dict[str, Any] = {
        "products": count_text(lang, products, "products_one", "products_many"),
        "collection": sub.collection_name or "?",
        "sender": sub.user_name,
        "batch": short_batch(sub.batch_id),
    }
    if percent is None or percent <= 0:
        return t(lang, "analysing", **params)
    return t(lang, "analysing_progress", percent=int(percent), **params)


def field_problems_text(
    lang: str,
    sender: str,
    collection: str,
    problems: Sequence[FieldProblem],
    example: str,
    *,
    header: str = "fields_problem_header",
) -> str:
    lines = [t(lang, header, sender=sender, collection=collection)]
    for p in problems:
        if p.code == "unknown" and p.suggestion:
            lines.append(t(lang, "field_unknown_suggest", key=p.key, suggestion=p.suggestion))
        elif p.code == "option":
            lines.append(
                t(
                    lang,
                    "field_option",
                    key=p.key,
                    value=p.value or "",
                    options=", ".join(p.options),
                )
            )
        elif p.code == "price_max":
            limit = money(p.limit or 0.0, "EUR", lang)
            lines.append(t(lang, "field_price_max", key=p.key, value=p.value or "", limit=limit))
        else:
            lines.append(t(lang, f"field_{p.code}", key=p.key, value=p.value or ""))
    lines.append(t(lang, "field_example", example=example))
    return "\n".join(lines)


def caption_of(sub: Submission) -> str:
    """What a submission was asked for, as a caption would say it: `Sneakers size=42`."""
    name = sub.collection_name or sub.collection_ref or ""
    pairs = " ".join(f"{k}={v}" for k, v in sub.manual_fields.items())
    return " ".join(part for part in (name, pairs) if part) or "–"


def uncertain_text(lang: str, sub: Submission) -> str:
    """The bot could not find out whether an upload took effect: what happened to the
    request, what the lookup found, and what the user can do."""
    params = sub.problem.params if sub.problem and sub.problem.code == "uncertain_ask" else {}
    if not params:  # from an older version of the bot
        return t(lang, "uncertain", sender=sub.user_name)
    cause = t(lang, f"cause_{params.get('cause', 'interrupted')}", status=params.get("status", ""))
    collection = sub.collection_name or "?"
    if params.get("found"):
        return t(
            lang,
            "uncertain_found",
            sender=sub.user_name,
            cause=cause,
            count=params["found"],
            collection=collection,
        )
    lookup = params.get("lookup") or {}
    found = t(
        lang,
        f"lookup_{lookup.get('code', 'unreachable')}",
        resource=lookup.get("resource", ""),
        error=lookup.get("error", ""),
    )
    if lookup.get("waited"):  # waited for its webhook first (bot/tracker.py `_no_proof`)
        seconds = int(lookup["waited"])
        duration = f"{seconds} s" if seconds < 120 else f"{round(seconds / 60)} min"
        found += t(lang, "lookup_waited", duration=duration, unmatched=lookup.get("unmatched", 0))
    return t(
        lang,
        "uncertain_ask",
        sender=sub.user_name,
        cause=cause,
        lookup=found,
        collection=collection,
    )


def problem_text(lang: str, sub: Submission, problem: Problem | None) -> str:
    """The message for a rejected or failed submission."""
    params = problem.params if problem else {}
    code = problem.code if problem else "error_generic"
    if code == "fields":
        return field_problems_text(
            lang,
            sub.user_name,
            sub.collection_name or "?",
            [FieldProblem(**p) for p in params.get("problems", [])],
            params.get("example", ""),
        )
    if code == "caption":
        reason = t(
            lang, f"caption_{params.get('reason', 'bad_pair')}", **params.get("reason_params", {})
        )
        return t(lang, "caption_problem", reason=Html(reason))
    if code == "failed":
        reason = params.get("reason", "")
        if reason == "batch_missing":
            reason = t(lang, "batch_missing")
        return t(lang, "failed", sender=sub.user_name, reason=reason)
    return t(lang, code, **params)


def field_list_text(lang: str, collection: str, fields: Sequence[ManualField], example: str) -> str:
    if not fields:
        return t(lang, "fields_none", collection=collection)
    lines = [t(lang, "fields_header", collection=collection)]
    for f in fields:
        lines.append(
            t(
                lang,
                "fields_line",
                key=f.key,
                required="*" if f.required else "",
                label=f.label,
                kind=f.type,
            )
        )
        if f.options:
            lines.append(t(lang, "fields_options", options=", ".join(f.options)))
    lines.append(t(lang, "field_example", example=example))
    return "\n".join(lines)


# Status ---------------------------------------------------------------------------------------


def age_text(lang: str, seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return t(lang, "age_seconds", n=int(seconds))
    if seconds < 5400:
        return t(lang, "age_minutes", n=int(seconds // 60))
    return t(lang, "age_hours", n=int(seconds // 3600))


def state_text(lang: str, sub: Submission) -> str:
    if sub.state is State.RECEIVED and sub.rate_limited_since is not None:
        outage = (sub.last_error or "").startswith("unreachable")  # see Tracker
        return t(lang, "status_unreachable" if outage else "status_queued")
    if sub.state is State.SUBMITTING and (sub.last_error or "").startswith("busy"):
        return t(lang, "status_queued")  # the client waits out a 429 to send it again
    return t(lang, f"state_{sub.state}")


def status_line(lang: str, sub: Submission, now: float, photos: int | None = None) -> str:
    progress = f" · {int(sub.progress)}%" if sub.progress is not None and sub.is_open else ""
    if sub.collecting:  # an open /batch: how far it got, and how to send it
        progress = " · " + t(
            lang, "status_collecting", photos=count_text(lang, photos or 0, "photos_one",
                                                         "photos_many")
        )  # fmt: skip
    # Finished ones: the age since they finished (the order they are listed in).
    since = sub.created_at if sub.is_open else (sub.completed_at or sub.updated_at)
    return t(
        lang,
        "status_line",
        state_icon=STATE_ICONS[sub.state],
        batch=short_batch(sub.batch_id) if sub.batch_id else state_text(lang, sub),
        collection=sub.collection_name or sub.collection_ref or "?",
        sender=sub.user_name,
        age=age_text(lang, now - since),
        progress=progress,
    )


def status_text(
    lang: str,
    open_: Sequence[Submission],
    recent: Sequence[Submission],
    now: float,
    photos: dict[int, int] | None = None,
    waiting: int = 0,
) -> str:
    """This chat's open analyses and the last finished ones; `waiting`: completed analyses
    whose results are owed but wait for Telegram's limits."""
    counts = photos or {}
    lines = [t(lang, "status_header")]
    lines += [status_line(lang, s, now, counts.get(s.id)) for s in open_] or [
        t(lang, "status_none")
    ]
    if waiting:
        analyses = count_text(lang, waiting, "analyses_one", "analyses_many")
        lines += ["", t(lang, "status_waiting", count=analyses)]
    if recent:
        lines += ["", t(lang, "status_recent")]
        lines += [status_line(lang, s, now) for s in recent]
    return "\n".join(lines)


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def board_state(sub: Submission) -> str:
    """What a board line says of a submission's state, without its progress and age: when
    this changes, the board shows a change of state (bot/telegram/board.py)."""
    return "collecting" if sub.collecting else f"{sub.state.value}:{state_text('en', sub)}"


def board_text(
    lang: str,
    open_: Sequence[Submission],
    photos: dict[int, int],
    now: float,
    *,
    total: int | None = None,
    limit: int = SAFE_LIMIT,
) -> str:
    """The live board: the oldest BOARD_LINES open analyses of a group (topic), one line
    each (names cut to BOARD_NAME_CHARS), the rest counted ("… and 38 more"); `total`: how
    many are open in all. Always one message: lines are dropped until it fits `limit`."""
    total = len(open_) if total is None else total
    lines = [_board_line(lang, sub, photos, now) for sub in open_[:BOARD_LINES]]
    while True:
        more = total - len(lines)
        text = "\n".join(
            [
                t(lang, "board_header", count=total),
                *lines,
                *([t(lang, "board_more", count=more)] if more > 0 else []),
            ]
        )
        if len(text) <= limit or len(lines) <= 1:
            return text
        lines.pop()


def _board_line(lang: str, sub: Submission, photos: dict[int, int], now: float) -> str:
    if sub.collecting:
        what = t(lang, "status_collecting", photos=count_text(
            lang, photos.get(sub.id, 0), "photos_one", "photos_many"
        ))  # fmt: skip
    elif sub.state is State.SUBMITTED and sub.progress:
        what = f"{int(sub.progress)}%"
    else:
        what = state_text(lang, sub)
    return t(
        lang,
        "board_line",
        state_icon=STATE_ICONS[sub.state],
        sender=_clip(sub.user_name, BOARD_NAME_CHARS),
        collection=_clip(sub.collection_name or sub.collection_ref or "?", BOARD_NAME_CHARS),
        photos=count_text(lang, photos.get(sub.id, 0), "photos_one", "photos_many"),
        what=what,
        age=age_text(lang, now - sub.created_at),
    )


def status_detail(lang: str, sub: Submission, photos: int, now: float) -> str:
    progress = f"{int(sub.progress)}%" if sub.progress is not None else "–"
    return t(
        lang,
        "status_detail",
        batch=sub.batch_id or "-",
        collection=sub.collection_name or "?",
        sender=sub.user_name,
        state=state_text(lang, sub),
        progress=progress,
        photos=photos,
        age=age_text(lang, now - sub.created_at),
    )


# Keyboards -----------------------------------------------------------------------------------
# Callback data comes from bot/telegram/callbacks.py (64 bytes, checked in bytes).

ButtonData = Callable[[Collection], str]
PageData = Callable[[int, str], str]


def _use_button(collection: Collection) -> str:
    return callbacks.UseCollection(collection.id).data()


def _collections_nav(page: int, search: str) -> str:
    return callbacks.CollectionsPage(page, search).data()


def collections_page(
    lang: str,
    items: Sequence[Collection],
    page: int,
    search: str | None,
    *,
    button: ButtonData = _use_button,
    nav: PageData = _collections_nav,
) -> tuple[str, InlineKeyboardMarkup | None]:
    """A page of collections as buttons (`button(collection)`) with ◀ ▶ (`nav(page, q)`)."""
    if not items:
        return t(lang, "collections_none", search=search or ""), None
    pages = max(1, -(-len(items) // PAGE_SIZE))
    page = min(max(1, page), pages)
    shown = items[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    rows = [[InlineKeyboardButton(c.name, callback_data=button(c))] for c in shown]
    q = search or ""
    arrows = []
    if page > 1:
        arrows.append(InlineKeyboardButton(t(lang, "page_prev"), callback_data=nav(page - 1, q)))
    if page < pages:
        arrows.append(InlineKeyboardButton(t(lang, "page_next"), callback_data=nav(page + 1, q)))
    if arrows:
        rows.append(arrows)
    key = "collections_header_search" if search else "collections_header"
    text = t(lang, key, count=len(items), page=page, pages=pages, search=search or "")
    return text, InlineKeyboardMarkup(rows)


def choice_keyboard(items: Sequence[Collection], button: ButtonData) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(c.name, callback_data=button(c))] for c in items]
    )


MAX_LISTING_BUTTONS = 8  # one 📋 button per product up to this many; beyond, one for all


def results_keyboard(
    lang: str, sub: Submission, status: BatchStatus, codec: CallbackCodec
) -> InlineKeyboardMarkup:
    """Under every results reply: 🔁 Retry failed (n) while unused, 📋 listing text per
    product (a copy button where the text fits Telegram's limit, else a button that sends it),
    📄 CSV. Buttons that act carry signed data tied to this chat and submission."""
    rows: list[list[InlineKeyboardButton]] = []
    failed = status.failed_product_ids()
    if failed and sub.retried_at is None:
        rows.append(
            [
                InlineKeyboardButton(
                    t(lang, "retry_button", count=len(failed)),
                    callback_data=codec.encode(callbacks.RetryFailed(sub.id), chat_id=sub.chat_id),
                )
            ]
        )
    analysed = [(i, p) for i, p in enumerate(status.products, start=1) if not p.failed]
    listing_buttons: list[InlineKeyboardButton] = []
    if len(analysed) > MAX_LISTING_BUTTONS:
        listing_buttons.append(
            InlineKeyboardButton(
                t(lang, "listing_all_button"),
                callback_data=codec.encode(callbacks.Listing(sub.id, 0), chat_id=sub.chat_id),
            )
        )
    else:
        for index, product in analysed:
            label = t(lang, "listing_button") if len(analysed) == 1 else f"📋 {index}"
            listing = listing_text(
                lang, product.result, sub.manual_fields, collection=sub.collection_name
            )
            if fits_copy_button(listing):
                listing_buttons.append(
                    InlineKeyboardButton(label, copy_text=CopyTextButton(listing.text()))
                )
            else:  # too long to copy from a button: sent as a message, and looks it
                single = len(analysed) == 1
                sent = t(lang, "listing_send_button") if single else f"💬 {index}"
                listing_buttons.append(
                    InlineKeyboardButton(
                        sent,
                        callback_data=codec.encode(
                            callbacks.Listing(sub.id, index), chat_id=sub.chat_id
                        ),
                    )
                )
    rows += [listing_buttons[i : i + 4] for i in range(0, len(listing_buttons), 4)]
    rows.append(
        [
            InlineKeyboardButton(
                t(lang, "csv_button"),
                callback_data=codec.encode(callbacks.Csv(sub.id), chat_id=sub.chat_id),
            )
        ]
    )
    return InlineKeyboardMarkup(rows)


def listing_messages(lang: str, sub: Submission, status: BatchStatus, index: int) -> list[str]:
    """Listing texts as messages (each in a code block, easy to copy on a phone): product
    `index` (from 1), or every analysed product for 0."""
    chosen = [
        (i, p) for i, p in enumerate(status.products, start=1) if not p.failed and index in (0, i)
    ]
    blocks = []
    for i, product in chosen:
        listing = listing_text(
            lang, product.result, sub.manual_fields, collection=sub.collection_name
        )
        blocks.append(f"<b>📋 {i}</b>\n<pre>{html.escape(listing.text())}</pre>")
    return split_message(blocks or [t(lang, "listing_none")])


def duplicate_question(
    lang: str, sub: Submission, earlier: Submission, codec: CallbackCodec
) -> tuple[str, InlineKeyboardMarkup]:
    """The duplicate guard's question, with Show results / Analyse again."""
    when = time.strftime("%d.%m.%Y" if lang == "de" else "%d %b %Y", time.gmtime(
        earlier.completed_at or earlier.created_at
    ))  # fmt: skip
    text = t(
        lang,
        "duplicate_found" if earlier.results is not None else "duplicate_running",
        when=when,
        collection=earlier.collection_name or "?",
        batch=short_batch(earlier.batch_id),
        sender=sub.user_name,
    )
    markup = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    t(lang, "duplicate_show"),
                    callback_data=codec.encode(
                        callbacks.Duplicate(sub.id, "show"), chat_id=sub.chat_id
                    ),
                ),
                InlineKeyboardButton(
                    t(lang, "duplicate_again"),
                    callback_data=codec.encode(
                        callbacks.Duplicate(sub.id, "again"), chat_id=sub.chat_id
                    ),
                ),
            ]
        ]
    )
    return text, markup


def settings_keyboard(lang: str, settings: ChatSettings, analysing: bool) -> InlineKeyboardMarkup:
    """The /settings buttons; `analysing`: whether the chat gets the "analysing" message."""

    def on_off(value: bool) -> str:
        return t(lang, "settings_on" if value else "settings_off")

    def button(text: str, what: str) -> list[InlineKeyboardButton]:
        return [InlineKeyboardButton(text, callback_data=callbacks.Setting(what).data())]

    who = t(lang, "settings_admins" if settings.admin_only else "settings_everyone")
    rows = [
        button(t(lang, "settings_bg_button", state=on_off(settings.remove_background)), "rb"),
        button(t(lang, "settings_lang_button"), "lang"),
        button(t(lang, "settings_admin_button", who=who), "admin"),
        button(
            t(lang, "settings_analysing_button", state=on_off(analysing)),
            "am",
        ),
        button(t(lang, "settings_guard_button", state=on_off(settings.duplicate_guard)), "dg"),
        button(
            t(lang, "settings_digest_button", state=settings.digest_time or on_off(False)), "dig"
        ),
    ]
    if settings.default_collection_id:
        rows.append(button(t(lang, "settings_clear_default"), "nodef"))
    return InlineKeyboardMarkup(rows)
