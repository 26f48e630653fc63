"""Pure presentation: message texts and keyboards from data, no I/O (testable as is)."""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Callable, Sequence
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.intake import FieldProblem
from bot.resellscan import BatchStatus, Collection, ManualField, ProductResult
from bot.resellscan.read import Fields, as_float, label, norm
from bot.telegram import callbacks
from bot.telegram.texts import Html, t
from storage import Problem, State, Submission

MESSAGE_LIMIT = 4096
SAFE_LIMIT = 3800  # room for a "(continued)" line and HTML entity slack
PAGE_SIZE = 8
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


_PRICE_KEYS = (
    "estimatedPrice",
    "estimated_price",
    "price",
    "priceRange",
    "price_range",
    "estimatedValue",
    "estimated_value",
    "priceEstimate",
    "price_estimate",
    "marketPrice",
    "market_price",
)
KNOWN_RESULT_KEYS = {
    norm(k)
    for k in (
        *_PRICE_KEYS,
        "title",
        "name",
        "product_name",
        "label",
        "brand",
        "manufacturer",
        "category",
        "categoryName",
        "category_name",
        "condition",
        "state",
        "confidence",
        "score",
        "certainty",
        "currency",
        "price_min",
        "min_price",
        "price_max",
        "max_price",
    )
}
MAX_EXTRA_LINES = 6  # other short fields of `result` shown as "key: value"
MAX_EXTRA_LENGTH = 80


def _pick(result: dict[str, Any], reader: Any, *keys: str) -> Any:
    """The first of `keys` (any casing) that `reader` can read."""
    f = Fields(result)
    for key in keys:
        value = f.get(reader, key)
        if value not in (None, ""):
            return value
    return None


def confidence_percent(value: Any) -> int | None:
    """Confidence as a whole percentage: 0-1 is a fraction, above 1 a percentage; numbers or
    numeric strings ("0.85", "85", "85%")."""
    if isinstance(value, str):
        value = value.strip().removesuffix("%").strip()
    number = as_float(value)
    if number is None or number < 0:
        return None
    if number <= 1:
        number *= 100
    return round(min(number, 100.0))


def result_fields(result: dict[str, Any]) -> dict[str, Any]:
    """Known facts from an undocumented `result` object, read tolerantly (§9 #5): values may
    be nested (`brand: {name: …}`, `price: {min, max, currency}`, `estimatedPrice: {value,
    currency}`), numbers may be strings."""
    price = _pick(result, lambda v: v, *_PRICE_KEYS)
    low = high = None
    currency = None
    if isinstance(price, dict):
        low = _pick(price, as_float, "min", "low", "from", "minimum")
        high = _pick(price, as_float, "max", "high", "to", "maximum")
        currency = _pick(price, label, "currency", "currencyCode", "currency_code")
        if low is None and high is None:
            low = high = _pick(price, as_float, "value", "amount", "avg", "average", "mid")
    else:
        low = high = as_float(price)
    if low is None:
        low = _pick(result, as_float, "price_min", "min_price")
    if high is None:
        high = _pick(result, as_float, "price_max", "max_price")
    if low is None and high is not None:
        low = high
    if high is None and low is not None:
        high = low
    currency = currency or _pick(result, label, "currency") or ("EUR" if low is not None else None)
    return {
        "title": _pick(result, label, "title", "name", "product_name", "productName", "label"),
        "brand": _pick(result, label, "brand", "manufacturer"),
        "category": _pick(result, label, "category", "categoryName", "category_name"),
        "condition": _pick(result, label, "condition", "state"),
        "price_min": low,
        "price_max": high,
        "currency": currency,
        "confidence": confidence_percent(
            _pick(result, lambda v: v, "confidence", "score", "certainty")
        ),
    }


def extra_fields(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Other short scalar fields of `result` ("key", "value"), so an unrecognised dialect
    still shows the user what Resell Scan said."""
    out: list[tuple[str, str]] = []
    for key, value in result.items():
        if norm(str(key)) in KNOWN_RESULT_KEYS or isinstance(value, bool):
            continue
        text = label(value) if not isinstance(value, list) else None
        if text is None or len(text) > MAX_EXTRA_LENGTH or len(str(key)) > 40:
            continue
        out.append((str(key), text))
        if len(out) >= MAX_EXTRA_LINES:
            break
    return out


def _money(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}"
    if isinstance(value, int | float):
        return str(int(value))
    return str(value)


def _product_block(lang: str, index: int, product: ProductResult) -> str:
    if product.failed:
        return t(lang, "result_failed", index=index, error=product.error_text)
    facts = result_fields(product.result)
    title = facts["title"] or t(lang, "result_title_unknown")
    lines = [f"<b>{index}. {html.escape(str(title))}</b>"]
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
    lang: str, sub: Submission, status: BatchStatus, photo_count: int, *, now: float
) -> list[str]:
    """The results reply, split into messages below Telegram's 4096-character limit."""
    sender = html.escape(sub.user_name)
    header = t(
        lang,
        "results_header",
        sender=Html(sender),
        collection=sub.collection_name or "?",
        photos=count_text(lang, photo_count, "photos_one", "photos_many"),
    )
    blocks = [_product_block(lang, i, p) for i, p in enumerate(status.products, start=1)]
    total, ok, failed = status.counts()
    rate = (
        status.success_rate
        if status.success_rate is not None
        else (round(100 * ok / total) if total else 0)
    )
    took = (sub.completed_at or now) - sub.submitted_at if sub.submitted_at else None
    summary = t(
        lang,
        "results_summary",
        ok=ok,
        total=total,
        failed=failed,
        rate=_money(rate),
        duration=duration_text(lang, took),
        batch=short_batch(sub.batch_id),
    )
    return split_message([header, *blocks, summary], continued=t(lang, "results_continued"))


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


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, list):
        out[prefix] = json.dumps(value, ensure_ascii=False)
    else:
        out[prefix] = value


def results_csv(status: BatchStatus) -> bytes:
    """Every product with every result field (nested fields as dotted columns). When no
    product could be read, the raw answer's fields instead, so nothing Resell Scan said is
    out of reach."""
    if not status.products:
        flat_raw: dict[str, Any] = {}
        _flatten("", status.raw, flat_raw)
        raw_buffer = io.StringIO()
        raw_writer = csv.writer(raw_buffer)
        raw_writer.writerow(["field", "value"])
        raw_writer.writerows(sorted(flat_raw.items()))
        return raw_buffer.getvalue().encode("utf-8-sig")
    rows = []
    extra_columns: list[str] = []
    for index, product in enumerate(status.products, start=1):
        flat: dict[str, Any] = {}
        _flatten("", product.result, flat)
        for key in flat:
            if f"result.{key}" not in extra_columns:
                extra_columns.append(f"result.{key}")
        facts = result_fields(product.result)
        row = {
            "index": index,
            "product_id": product.product_id,
            "status": product.status,
            "error": product.error_text if product.failed else "",
            **{k: ("" if v is None else v) for k, v in facts.items()},
            **{f"result.{k}": v for k, v in flat.items()},
        }
        rows.append(row)
    columns = [
        "index",
        "product_id",
        "status",
        "error",
        "title",
        "brand",
        "category",
        "condition",
        "price_min",
        "price_max",
        "currency",
        "confidence",
        *extra_columns,
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8-sig")  # BOM so spreadsheet apps read UTF-8


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
    lang: str, sender: str, collection: str, problems: Sequence[FieldProblem], example: str
) -> str:
    lines = [t(lang, "fields_problem_header", sender=sender, collection=collection)]
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
        else:
            lines.append(t(lang, f"field_{p.code}", key=p.key, value=p.value or ""))
    lines.append(t(lang, "field_example", example=example))
    return "\n".join(lines)


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
        return t(lang, "status_queued")
    return t(lang, f"state_{sub.state}")


def status_line(lang: str, sub: Submission, now: float) -> str:
    progress = f" · {int(sub.progress)}%" if sub.progress is not None and sub.is_open else ""
    return t(
        lang,
        "status_line",
        state_icon=STATE_ICONS[sub.state],
        batch=short_batch(sub.batch_id) if sub.batch_id else state_text(lang, sub),
        collection=sub.collection_name or sub.collection_ref or "?",
        sender=sub.user_name,
        age=age_text(lang, now - sub.created_at),
        progress=progress,
    )


def status_text(
    lang: str, open_: Sequence[Submission], recent: Sequence[Submission], now: float
) -> str:
    lines = [t(lang, "status_header")]
    lines += [status_line(lang, s, now) for s in open_] or [t(lang, "status_none")]
    if recent:
        lines += ["", t(lang, "status_recent")]
        lines += [status_line(lang, s, now) for s in recent]
    return "\n".join(lines)


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
    return callbacks.plain("use", collection.id)


def _collections_nav(page: int, search: str) -> str:
    return callbacks.plain("cp", page, search)


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


def settings_keyboard(lang: str, remove_background: bool, admin_only: bool) -> InlineKeyboardMarkup:
    state = t(lang, "settings_on" if remove_background else "settings_off")
    who = t(lang, "settings_admins" if admin_only else "settings_everyone")
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    t(lang, "settings_bg_button", state=state),
                    callback_data=callbacks.plain("set", "rb"),
                )
            ],
            [
                InlineKeyboardButton(
                    t(lang, "settings_lang_button"), callback_data=callbacks.plain("set", "lang")
                )
            ],
            [
                InlineKeyboardButton(
                    t(lang, "settings_admin_button", who=who),
                    callback_data=callbacks.plain("set", "admin"),
                )
            ],
        ]
    )
