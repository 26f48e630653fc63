"""A batch's results as a CSV file for spreadsheet apps, German and English Excel first.

`results_csv(status, manual_fields=..., lang=...)` is a pure function (no I/O) that never raises
on what `BatchStatus.read` made of any JSON (resell-scan-api.md §9 #5): nulls, lists, nested
objects, numeric strings, NaN; a list nested deeper than Python can recurse is written `[…]`.

File format
    UTF-8 with a BOM (Excel needs it to read UTF-8), `;` between cells (German Excel splits on
    `;`; English Excel opens it with the same import), `\\r\\n` line ends, cells quoted only when
    they hold `;`, `"` or a line break (`csv.QUOTE_MINIMAL`). Headers are the same English
    identifiers in every language.

Columns, in this order
    1. `index` (1-based position in the batch), `product_id`, `status`, `error`, `title`,
       `brand`, `category`, `condition`, `price_min`, `price_max`, `currency`,
       `confidence_percent` (`KNOWN_COLUMNS`). Values are read by `results.result_fields`, the
       reader behind the chat message, so the file and the message agree (`currency` is "EUR"
       when a price has none, as in the message). Confidence is a whole percentage 0-100:
       0-1 is a fraction, above 1 a percentage (0.68 -> 68, "85" -> 85, 91.7 -> 92,
       "85%" -> 85).
    2. `field.<key>`, one per manual field: first the keys of `manual_fields` in their order,
       then keys that only a product's echo carries (`product_data.manual_fields`, any casing
       of `manual_fields`/`manualFields`/`manualFieldValues`/`fields`; also on the product
       item itself), in order of appearance. An echoed key that differs from an earlier one only
       in spelling (`purchase_price` vs `purchasePrice`, see `read.norm`) shares its column.
       A product's cell is its echoed value (what Resell Scan stored for that product) when
       present and not null, else the `manual_fields` value (what the bot sent for every
       product of the submission).
    3. `result.<dotted.path>`, every leaf of a product's `result` object that is not shown in
       a known column, in order of appearance across products. Nested objects become dotted
       paths (`result.details.size`), a list is one cell holding its JSON, an empty object is
       `{}`. Two different paths that would print the same (a key `a.b` beside `a: {b}`) get
       `#2`, `#3`... appended, so no header repeats.

What counts as "shown" (left out of `result.*`, per product)
    Exactly the raw leaves a known column of that product was read from, and only when that
    column's cell is non-empty:
    - `title`/`brand`/`category`/`condition`/`currency`: the key `result_fields` picked
      (`title`, `name`, `product_name`, `productName`, `label`; `brand`, `manufacturer`;
      `category`, `categoryName`, `category_name`; `condition`, `state`; the price object's
      `currency`/`currencyCode`/`currency_code`, else the top-level `currency`). For an object
      value only the leaf its label came from (`brand.name` is shown, `brand.id` stays as
      `result.brand.id`); a list value only when the cell shows all of it (at most 5 plain
      strings or numbers), else it stays as `result.<key>`.
    - `price_min`/`price_max`: the first price key present (`estimatedPrice`,
      `estimated_price`, `price`, `priceRange`, `price_range`, `estimatedValue`,
      `estimated_value`, `priceEstimate`, `price_estimate`, `marketPrice`, `market_price`):
      a plain number, or its object's `min`/`low`/`from`/`minimum` and `max`/`high`/`to`/
      `maximum`, or, without those, `value`/`amount`/`avg`/`average`/`mid`; else the
      top-level `price_min`/`min_price` and `price_max`/`max_price`.
    - `confidence_percent`: the `confidence`, `score` or `certainty` key that was read.
    Everything else stays: other keys of a price object (`price.source`), a second spelling
    the reader did not use (`name` beside `title`), and any value that could not be read
    (`confidence: "high"` leaves `confidence_percent` empty and appears as
    `result.confidence`). So a column like `result.confidence` appears only when some
    product's confidence was unreadable, and no value appears twice. A shown value appears as
    its column reads it: confidence as a whole percent (0.684 -> 68), labels without
    surrounding spaces. (Should `_read_known` and `results.result_fields` ever disagree on a
    column, that column's leaves count as not shown: printed twice, never lost.)

Failed products (`ProductResult.failed`)
    `index`, `product_id`, `status` and `error` are filled and so are the `field.*` cells (the
    user's own input, to tell the product apart); every cell read from the analysis (the
    other known columns and `result.*`) is empty, even when a partial result came along.

Unreadable batches
    When `status.products` is empty, the file is `field;value` rows instead: every leaf of
    `status.raw` flattened as above, in the order Resell Scan sent them, so nothing it said is
    out of reach.

Cells: one rule for every number
    A number is a JSON number (not a boolean), a `Decimal`, or a string in plain decimal
    notation (`-?(0|[1-9][0-9]*)(\\.[0-9]+)?`: "12.5", "85", "-3"; not "012", "1e5", "12,5").
    It is written without thousands separators and without exponent, with a decimal comma
    for `lang` "de" (or a "de-..." tag) and a decimal point otherwise:
    a whole value has no decimals (40, 40.0 and "40.00" -> `40`); any other value has at least
    2 decimals and as many more as it carries, never rounded (12.5 -> `12,50` / `12.50`,
    0.125 -> `0,125` / `0.125`). Confidence is already whole. No cell has a `%` sign.
    The rule applies to `index`, `price_min`, `price_max`, `confidence_percent`, `field.*`,
    `result.*` and the raw `value` column; the other known columns (`product_id`, `title`...)
    are always text. Inside a list's JSON numbers stay in JSON notation.
    Other cells: null is empty, booleans are `true`/`false`, lists and objects are JSON.
    Text that starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`,
    so Excel shows it instead of running it as a formula (titles and fields are written by
    an AI and by chat members; numbers are never affected).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from bot.resellscan import BatchStatus, ProductResult
from bot.resellscan.read import Fields, as_float, as_obj, label, norm
from bot.results import PRICE_KEYS, confidence_percent, result_fields

__all__ = ["FIELD_PREFIX", "KNOWN_COLUMNS", "RAW_COLUMNS", "RESULT_PREFIX", "results_csv"]

Path = tuple[str, ...]

KNOWN_COLUMNS = (
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
    "confidence_percent",
)
FIELD_PREFIX = "field."
RESULT_PREFIX = "result."
RAW_COLUMNS = ("field", "value")

# The keys `results.result_fields` reads, in its order. `_read_known` mirrors it to learn which
# raw leaves a value came from; a column counts its leaves as shown only when its value equals
# `result_fields`'s, so if the two ever drift apart a leaf is printed twice, never lost.
_TITLE_KEYS = ("title", "name", "product_name", "productName", "label")
_BRAND_KEYS = ("brand", "manufacturer")
_CATEGORY_KEYS = ("category", "categoryName", "category_name")
_CONDITION_KEYS = ("condition", "state")
_CONFIDENCE_KEYS = ("confidence", "score", "certainty")
_LOW_KEYS = ("min", "low", "from", "minimum")
_HIGH_KEYS = ("max", "high", "to", "maximum")
_CURRENCY_KEYS = ("currency", "currencyCode", "currency_code")
_VALUE_KEYS = ("value", "amount", "avg", "average", "mid")
_LABEL_KEYS = ("name", "label", "title", "value", "text", "displayName", "display_name")
_LABEL_LIST_MAX = 5  # read.label joins at most this many list items
_ECHO_KEYS = ("manual_fields", "manualFields", "manualFieldValues", "fields")

_PLAIN_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Known = dict[str, tuple[Any, list[Path]]]  # column -> (value, raw leaves it was read from)


def results_csv(
    status: BatchStatus, *, manual_fields: dict[str, Any] | None = None, lang: str = "en"
) -> bytes:
    """The batch's results as CSV bytes (UTF-8 with BOM, `;`, `\\r\\n`); see the module
    docstring for the columns, what counts as shown, and the number rule."""
    comma = _decimal_comma(lang)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    if not status.products:
        writer.writerow(RAW_COLUMNS)
        for path, value in _flatten(status.raw).items():
            writer.writerow([_text(".".join(path)), cell(value, comma)])
        return buffer.getvalue().encode("utf-8-sig")

    sent = {str(k): v for k, v in (manual_fields or {}).items()}
    echoes = [_echoed(p) for p in status.products]
    field_keys = _field_keys(sent, echoes)
    analysed = [_analyse(p) for p in status.products]
    result_names = _Names(RESULT_PREFIX)
    for _facts, extras in analysed:
        for path in extras:
            result_names.add(path)

    writer.writerow(
        [
            *KNOWN_COLUMNS,
            *(f"{FIELD_PREFIX}{key}" for key in field_keys),
            *result_names.columns(),
        ]
    )
    for index, (product, echo, (facts, extras)) in enumerate(
        zip(status.products, echoes, analysed, strict=True), start=1
    ):
        row = [
            cell(index, comma),
            _text(product.product_id),
            _text(product.status),
            _text(product.error_text if product.failed else None),
            _text(facts.get("title")),
            _text(facts.get("brand")),
            _text(facts.get("category")),
            _text(facts.get("condition")),
            cell(facts.get("price_min"), comma),
            cell(facts.get("price_max"), comma),
            _text(facts.get("currency")),
            cell(facts.get("confidence"), comma),
        ]
        row += [cell(_field_value(key, echo, sent), comma) for key in field_keys]
        row += [cell(extras.get(path), comma) for path in result_names.paths]
        writer.writerow(row)
    return buffer.getvalue().encode("utf-8-sig")


# Products -------------------------------------------------------------------------------------


def _analyse(product: ProductResult) -> tuple[dict[str, Any], dict[Path, Any]]:
    """The known columns' values and the result leaves not shown in them (both empty for a
    failed product)."""
    if product.failed:
        return {}, {}
    result = product.result
    try:
        facts = result_fields(result)
        known = _read_known(result)
    except RecursionError:  # a list nested deeper than Python recurses: keep it all as raw
        return {}, _flatten(result)
    shown: set[Path] = set()
    for column, (value, paths) in known.items():
        if value is not None and value == facts.get(column):
            shown.update(paths)
    return facts, {path: v for path, v in _flatten(result).items() if path not in shown}


def _read_known(result: Mapping[str, Any]) -> Known:
    """`results.result_fields` again, with the raw leaves each value was read from."""
    known: Known = {}
    for column, keys in (
        ("title", _TITLE_KEYS),
        ("brand", _BRAND_KEYS),
        ("category", _CATEGORY_KEYS),
        ("condition", _CONDITION_KEYS),
    ):
        value, key = _pick(result, label, keys)
        known[column] = (value, _label_paths(result[key], (key,)) if key else [])

    price, price_key = _pick(result, _same, PRICE_KEYS)
    low: float | None = None
    high: float | None = None
    currency: str | None = None
    low_paths: list[Path] = []
    high_paths: list[Path] = []
    currency_paths: list[Path] = []
    if isinstance(price, dict) and price_key:
        low, key = _pick(price, as_float, _LOW_KEYS)
        low_paths = [(price_key, key)] if key else []
        high, key = _pick(price, as_float, _HIGH_KEYS)
        high_paths = [(price_key, key)] if key else []
        currency, key = _pick(price, label, _CURRENCY_KEYS)
        currency_paths = _label_paths(price[key], (price_key, key)) if key else []
        if low is None and high is None:
            low, key = _pick(price, as_float, _VALUE_KEYS)
            high = low
            low_paths = high_paths = [(price_key, key)] if key else []
    elif price_key:
        low = high = as_float(price)
        low_paths = high_paths = [(price_key,)] if low is not None else []
    if low is None:
        low, key = _pick(result, as_float, ("price_min", "min_price"))
        low_paths = [(key,)] if key else []
    if high is None:
        high, key = _pick(result, as_float, ("price_max", "max_price"))
        high_paths = [(key,)] if key else []
    if low is None and high is not None:
        low, low_paths = high, high_paths
    if high is None and low is not None:
        high, high_paths = low, low_paths
    if currency is None:
        currency, key = _pick(result, label, ("currency",))
        currency_paths = _label_paths(result[key], (key,)) if key else []
    if currency is None and low is not None:
        currency, currency_paths = "EUR", []
    known["price_min"] = (low, low_paths)
    known["price_max"] = (high, high_paths)
    known["currency"] = (currency, currency_paths)

    raw, key = _pick(result, _same, _CONFIDENCE_KEYS)
    percent = confidence_percent(raw)
    known["confidence"] = (percent, [(key,)] if key and percent is not None else [])
    return known


def _same(value: Any) -> Any:
    return value


def _pick(
    data: Mapping[str, Any], reader: Callable[[Any], Any], names: Iterable[str]
) -> tuple[Any, str | None]:
    """Like `render._pick`: the first of `names` (any casing) that `reader` reads to something
    other than None or "", and the key as sent."""
    fields = Fields(data)
    for name in names:
        key, raw = fields.raw(name)
        if key is None or raw is None:
            continue
        value = reader(raw)
        if value is not None and not (isinstance(value, str) and value == ""):
            return value, key
    return None, None


def _label_paths(value: Any, path: Path) -> list[Path]:
    """The leaves `read.label(value)` shows in full: the value itself, an object's leaf its
    label came from, a list only when every item is in the label."""
    if isinstance(value, dict):
        for name in _LABEL_KEYS:
            key = next((k for k in value if norm(str(k)) == norm(name)), None)
            if key is None:
                continue
            found = value[key]
            if found is not None and not isinstance(found, dict | list):
                return [(*path, str(key))]
        return []
    if isinstance(value, list):
        whole = len(value) <= _LABEL_LIST_MAX and all(
            isinstance(v, str | int | float) and not isinstance(v, bool) and label(v) for v in value
        )
        return [path] if whole else []
    return [path]


def _flatten(value: Any) -> dict[Path, Any]:
    """Every leaf of a JSON value by its key path, in document order (iterative, so no depth
    raises). Leaves are scalars, lists and empty objects; the root of `{}` has none."""
    out: dict[Path, Any] = {}
    stack: list[tuple[Path, Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict) and (item or not path):
            stack.extend(reversed([((*path, str(k)), v) for k, v in item.items()]))
        else:
            out[path] = item
    return out


class _Names:
    """Column names for key paths: dotted, with `#2`, `#3`... when two paths print alike."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.paths: list[Path] = []
        self._names: dict[Path, str] = {}
        self._taken: set[str] = set()

    def add(self, path: Path) -> None:
        if path in self._names:
            return
        base = self.prefix + ".".join(path)
        name, n = base, 1
        while name in self._taken:
            n += 1
            name = f"{base}#{n}"
        self._taken.add(name)
        self._names[path] = name
        self.paths.append(path)

    def columns(self) -> list[str]:
        return [self._names[p] for p in self.paths]


# Manual fields --------------------------------------------------------------------------------


def _echoed(product: ProductResult) -> dict[str, Any]:
    """The manual fields Resell Scan echoes for one product, if any."""
    for source in (product.product_data, product.raw):
        found = Fields(source).get(as_obj, *_ECHO_KEYS) if isinstance(source, dict) else None
        if found:
            return {str(k): v for k, v in found.items()}
    return {}


def _field_keys(sent: Mapping[str, Any], echoes: Iterable[Mapping[str, Any]]) -> list[str]:
    keys = list(sent)
    spellings = {norm(k) for k in keys}
    for echo in echoes:
        for key in echo:
            if key not in keys and norm(key) not in spellings:
                keys.append(key)
                spellings.add(norm(key))
    return keys


def _field_value(key: str, echo: Mapping[str, Any], sent: Mapping[str, Any]) -> Any:
    if echo.get(key) is not None:
        return echo[key]
    for other, value in echo.items():
        if value is not None and norm(other) == norm(key):
            return value
    return sent.get(key)


# Cells ----------------------------------------------------------------------------------------


def _decimal_comma(lang: str) -> bool:
    return re.split(r"[-_]", lang.strip().lower(), maxsplit=1)[0] == "de"


def cell(value: Any, comma: bool) -> str:
    """One cell by the module's rule: numbers localised, null empty, JSON for containers."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return _number(value, comma)
    if isinstance(value, str):
        if _PLAIN_NUMBER.fullmatch(value):
            return _number(Decimal(value), comma)
        return _text(value)
    if isinstance(value, dict | list | tuple):
        return _text(_json(value))
    return _text(str(value))


def _number(value: int | float | Decimal, comma: bool) -> str:
    """Whole: no decimals; else at least 2 decimals and every digit the value has."""
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(int(value))  # exact, and no int-to-str digit limit
    else:
        number = Decimal(float.__repr__(value))  # the shortest text that reads back the same
    if not number.is_finite():
        return _text(str(value))
    whole, _, fraction = f"{number:f}".partition(".")
    fraction = fraction.rstrip("0")
    if not fraction:
        return "0" if whole == "-0" else whole
    return f"{whole}{',' if comma else '.'}{fraction.ljust(2, '0')}"


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (RecursionError, ValueError):  # nested deeper than Python recurses
        return "[…]" if isinstance(value, list | tuple) else "{…}"


def _text(value: Any) -> str:
    """Text as it is, except a leading `'` where Excel would read a formula."""
    if value is None:
        return ""
    text = str(value)
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text
