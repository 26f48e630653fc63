"""What an undocumented `result` object says: the facts the bot shows by name (title, brand,
category, condition, price estimate, confidence) and other short fields, read tolerantly
(resell-scan-api.md §9 #5): values may be nested (`brand: {name: …}`, `price: {min, max,
currency}`, `estimatedPrice: {value, currency}`), numbers may be strings. Shared by the results
reply, the listing text, the CSV and `check --probe`.
"""

from __future__ import annotations

from typing import Any

from bot.resellscan.read import Fields, as_float, label, norm

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
