"""What an undocumented `result` object says: the facts the bot shows by name (title, brand,
category, condition, price estimate, confidence) and other short fields, read tolerantly
(resell-scan-api.md §9 #5): values may be nested (`brand: {name: …}`, `price: {min, max,
currency}`, `estimatedPrice: {value, currency}`), numbers may be strings. Shared by the results
reply, the listing text, the CSV and `check --probe`.
"""

from __future__ import annotations

from typing import Any

from bot.intake import parse_number
from bot.resellscan.models import BatchStatus
from bot.resellscan.read import Fields, as_float, label, norm
from storage.history import NewHistoryRow
from storage.models import Submission

PRICE_KEYS = (
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
        *PRICE_KEYS,
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
    price = _pick(result, lambda v: v, *PRICE_KEYS)
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


def message_link(chat_id: int, thread_id: int | None, message_id: int) -> str | None:
    """A `t.me/c/…` link to a message: it works in supergroups (ids -100…) for their members;
    other chats have no message links (a reply to the message is the way there)."""
    text = str(chat_id)
    if not text.startswith("-100"):
        return None
    thread = f"/{thread_id}" if thread_id else ""
    return f"https://t.me/c/{text[4:]}{thread}/{message_id}"


def purchase_price(fields: dict[str, Any]) -> tuple[str | None, float | None]:
    """The manual field holding the purchase price (`purchasePrice`, the key in any casing,
    `_` `-` and spaces ignored; the first if several) and its value as a number: text as
    resellers type it and as it was typed for Resell Scan (`bot.intake.parse_number`: `12,5`,
    `1.234,56`, `12 €`), a JSON number as it is. (None, None) without such a field; a value
    that is no number is None. Storage's migration 13 re-read the rows kept before by the
    same rule, in SQL."""
    for key, value in fields.items():
        if norm(str(key)) != "purchaseprice":
            continue
        if isinstance(value, str):
            try:
                return key, parse_number(value)
            except ValueError:  # OutOfRange too
                return key, None
        return key, as_float(value)
    return None, None


def history_rows(
    sub: Submission,
    status: BatchStatus,
    photo_ids: list[str | None],
    message_id: int | None,
    now: float,
) -> list[NewHistoryRow]:
    """The analysed products of a finished submission as rows of the results history: one per
    product that has a result (failed ones are not history), with its first photo when the
    products line up with the photos sent (`photo_ids`, one per product, in order). The
    purchase price is kept typed, as a number (`purchase_price`, and in `manual_fields`)."""
    fields = dict(sub.manual_fields)
    key, paid = purchase_price(fields)
    if key is not None and paid is not None:
        fields[key] = paid  # the number Resell Scan got, not the text typed
    link = message_link(sub.chat_id, sub.thread_id, message_id) if message_id else None
    rows: list[NewHistoryRow] = []
    line_up = len(photo_ids) == len(status.products)
    for index, product in enumerate(status.products):
        if product.failed or not product.result:
            continue
        facts = result_fields(product.result)
        rows.append(
            NewHistoryRow(
                chat_id=sub.chat_id,
                thread_id=sub.thread_id,
                submission_id=sub.id,
                product_index=index,
                sender_id=sub.user_id,
                sender_name=sub.user_name,
                analysed_at=sub.completed_at or now,
                collection_name=sub.collection_name,
                title=facts["title"],
                brand=facts["brand"],
                category=facts["category"],
                price_min=facts["price_min"],
                price_max=facts["price_max"],
                currency=facts["currency"],
                purchase_price=paid,
                manual_fields=dict(fields),
                photo_file_id=photo_ids[index] if line_up else None,
                message_link=link,
                message_id=message_id,
            )
        )
    return rows
