"""Marketplace listing text for one analysed product: pure functions, no I/O.

`listing_text(lang, result, manual_fields)` turns Resell Scan's undocumented `result` object
(read as tolerantly as the results message: `bot.results.result_fields` plus a few more
keys, each read with `bot.resellscan.read.label`) and the seller's manual fields into a title,
a short description and a suggested asking price, in English ("en") or German ("de"; any
language tag starting with "de"). Everything is plain text: the caller escapes it for HTML.

Conventions
-----------
* Title: "Brand Model – Size 42" ("… – Gr. 42" in German), at most 80 characters (eBay's cap),
  cut at a word boundary, never empty (falls back to the category, then the collection name,
  then "Item"/"Artikel").
* Description: one "Label: value" line per known fact, at most 5, in this order: condition,
  size, colour, category, brand, material, year. With fewer than two facts a closing line
  ("See photos for details." / "Details siehe Fotos.") is added, so it is never empty.
  Common conditions and colours are translated; any other value is shown as it is.
* Manual fields: only descriptive ones are used (`DESCRIPTIVE_MANUAL_FIELDS`, any casing), and
  they win over the analysis (the seller has the item in hand). Anything else, above all the
  purchase price, never reaches the listing.
* Suggested price: see `retail_price`. English writes "1,299 EUR" (amount, ISO code, as in the
  results message); German writes "1.299 €" (euro sign for EUR, otherwise the code).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from telegram.constants import InlineKeyboardButtonLimit

from bot.resellscan.read import Fields, as_float, label, norm
from bot.results import result_fields

TITLE_LIMIT = 80  # eBay's title cap; other marketplaces allow as much or more
DESCRIPTION_LIMIT = 900
MAX_DESCRIPTION_LINES = 5
MAX_VALUE_LENGTH = 100  # one description value; longer ones are cut with "…"
MAX_SIZE_SUFFIX = 30  # a longer size is left out of the title (it stays in the description)
# Telegram Bot API, CopyTextButton.text: "The text to be copied to the clipboard; 1-256
# characters" (https://core.telegram.org/bots/api#copytextbutton; PTB mirrors it here).
COPY_TEXT_MIN_LENGTH = int(InlineKeyboardButtonLimit.MIN_COPY_TEXT)  # 1
COPY_TEXT_MAX_LENGTH = int(InlineKeyboardButtonLimit.MAX_COPY_TEXT)  # 256

# Manual field keys (normalised with `norm`: casing, "_", "-" and spaces do not matter) that
# describe the item, and the fact each one gives. Everything else is private or internal.
DESCRIPTIVE_MANUAL_FIELDS: dict[str, str] = {
    "size": "size",
    "größe": "size",
    "grösse": "size",
    "groesse": "size",
    "color": "colour",
    "colour": "colour",
    "farbe": "colour",
    "brand": "brand",
    "marke": "brand",
    "model": "model",
    "modelname": "model",
    "modell": "model",
    "condition": "condition",
    "zustand": "condition",
    "material": "material",
    "year": "year",
    "jahr": "year",
}

_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "condition": "Condition",
        "size": "Size",
        "colour": "Colour",
        "category": "Category",
        "brand": "Brand",
        "material": "Material",
        "year": "Year",
        "price": "Price",
        "size_short": "Size",
        "item": "Item",
        "closing": "See photos for details.",
    },
    "de": {
        "condition": "Zustand",
        "size": "Größe",
        "colour": "Farbe",
        "category": "Kategorie",
        "brand": "Marke",
        "material": "Material",
        "year": "Jahr",
        "price": "Preis",
        "size_short": "Gr.",
        "item": "Artikel",
        "closing": "Details siehe Fotos.",
    },
}


def _table(
    groups: tuple[tuple[tuple[str, ...], tuple[str, str]], ...],
) -> dict[str, tuple[str, str]]:
    """{spelling: (English, German)} from (spellings, (English, German)) groups."""
    return {word: names for words, names in groups for word in words}


# Condition spellings (lower case, runs of spaces/"_"/"-" as one space) -> (English, German).
_CONDITIONS = _table(
    (
        (("new", "brand new", "neu"), ("new", "neu")),
        (
            ("like new", "likenew", "as new", "mint", "wie neu", "neuwertig"),
            ("like new", "wie neu"),
        ),
        (("very good", "sehr gut"), ("very good", "sehr gut")),
        (("good", "gut"), ("good", "gut")),
        (("fair", "acceptable", "akzeptabel"), ("fair", "akzeptabel")),
        (("used", "gebraucht"), ("used", "gebraucht")),
        (("worn", "well worn", "abgenutzt"), ("worn", "abgenutzt")),
        (("heavily used", "stark gebraucht"), ("heavily used", "stark gebraucht")),
        (("defective", "broken", "for parts", "defekt"), ("defective", "defekt")),
    )
)
# Common colour words -> (English, German); combinations like "black/white" are translated
# word by word when every word is known, anything else is shown as sent.
_COLOURS = _table(
    (
        (("black", "schwarz"), ("black", "schwarz")),
        (("white", "weiß", "weiss"), ("white", "weiß")),
        (("grey", "gray", "grau"), ("grey", "grau")),
        (("red", "rot"), ("red", "rot")),
        (("blue", "blau"), ("blue", "blau")),
        (("navy", "navy blue", "marineblau", "dunkelblau"), ("navy", "marineblau")),
        (("green", "grün", "gruen"), ("green", "grün")),
        (("yellow", "gelb"), ("yellow", "gelb")),
        (("brown", "braun"), ("brown", "braun")),
        (("beige",), ("beige", "beige")),
        (("pink", "rosa"), ("pink", "rosa")),
        (("purple", "violet", "lila"), ("purple", "lila")),
        (("orange",), ("orange", "orange")),
        (("silver", "silber"), ("silver", "silber")),
        (("gold",), ("gold", "gold")),
        (
            ("multicolour", "multicolor", "multi", "bunt", "mehrfarbig"),
            ("multicolour", "mehrfarbig"),
        ),
    )
)
_COLOUR_SEPARATORS = re.compile(r"(\s*(?:/|,|&|\+|\band\b|\bund\b)\s*)")
_CURRENCY_SIGNS = {"€": "EUR", "$": "USD", "£": "GBP", "CHF": "CHF"}
_SPACES = re.compile(r"\s+")
_TRAILING = " \t-–—,;:/|·"


@dataclass(frozen=True)
class Listing:
    """A ready-to-paste marketplace listing (plain text)."""

    title: str
    description: str
    price: str | None = None  # "49 EUR" (en) / "49 €" (de); None without a price estimate
    lang: str = "en"  # the language of the price line's label in `text()`

    def text(self) -> str:
        """Title, blank line, description, and (with a price) blank line, price line."""
        parts = [self.title, self.description]
        if self.price:
            parts.append(f"{_WORDS[_language(self.lang)]['price']}: {self.price}")
        return "\n\n".join(p for p in parts if p)


def listing_text(
    lang: str,
    result: dict[str, Any],
    manual_fields: dict[str, Any],
    *,
    collection: str | None = None,
) -> Listing:
    """The listing for one analysed product (see the module docstring for the rules)."""
    language = _language(lang)
    facts = _facts(result, manual_fields)
    description_lines = _description_lines(language, facts)
    return Listing(
        title=_title(language, facts, collection),
        description=_limit("\n".join(description_lines), DESCRIPTION_LIMIT),
        price=_price_text(language, facts),
        lang=language,
    )


def fits_copy_button(listing: Listing) -> bool:
    """Whether `listing.text()` can be a CopyTextButton's text (1-256 characters). Counted
    conservatively in UTF-16 code units (the unit of Telegram's text offsets): never fewer than
    the code points, so an emoji can only make the answer "no" sooner, never wrongly "yes"."""
    text = listing.text()
    units = len(text.encode("utf-16-le")) // 2
    return COPY_TEXT_MIN_LENGTH <= units <= COPY_TEXT_MAX_LENGTH


def retail_price(low: float | None, high: float | None = None) -> int | None:
    """A suggested asking price from an estimate, as a whole "retail" number.

    The target is the upper third of the range: `low + 2/3 * (high - low)` (one value alone is
    the target itself; a reversed range is put in order). The target is then rounded, half up,
    to the nearest retail number of its tier:

    * below 15: whole units, at least 1 (4.6 -> 5);
    * 15 to below 200: numbers ending in 9: 19, 29, … 199 (45 -> 49, 61 -> 59, 121 -> 119);
    * 200 to below 1000: numbers ending in 49 or 99: 199, 249, … 999 (275 -> 299);
    * 1000 and above: numbers ending in 99: 999, 1099, 1199, … (1234 -> 1199).

    Never below 1; None without a positive finite estimate. The rounding may step a little
    outside a narrow range (61–62 -> 59); it never decreases when the target increases."""
    values = [v for v in (low, high) if v is not None and math.isfinite(v)]
    if not values:
        return None
    lo, hi = min(values), max(values)
    target = lo + (hi - lo) * 2 / 3
    if target <= 0:
        return None
    if target < 15:
        return max(1, _half_up(target))
    if target < 200:
        return _half_up((target + 1) / 10) * 10 - 1
    if target < 1000:
        return _half_up((target + 1) / 50) * 50 - 1
    return _half_up((target + 1) / 100) * 100 - 1


# Reading ---------------------------------------------------------------------------------------


def _language(lang: str) -> str:
    return "de" if isinstance(lang, str) and lang.strip().lower().startswith("de") else "en"


def _clean(value: Any) -> str | None:
    """`label(value)` on one line (runs of whitespace as one space), or None."""
    text = label(value)
    if text is None:
        return None
    return _SPACES.sub(" ", text).strip() or None


def _read(data: dict[str, Any], *keys: str) -> str | None:
    """The first of `keys` (any casing) with a readable text."""
    fields = Fields(data)
    for key in keys:
        text = _clean(fields.get(lambda v: v, key))
        if text:
            return text
    return None


def _facts(result: Any, manual_fields: Any) -> dict[str, Any]:
    result = result if isinstance(result, dict) else {}
    manual = manual_fields if isinstance(manual_fields, dict) else {}
    known = result_fields(result)
    facts: dict[str, Any] = {
        "title": _clean(known["title"]),
        "brand": _clean(known["brand"]),
        "category": _clean(known["category"]),
        "condition": _clean(known["condition"]),
        "price_min": as_float(known["price_min"]),
        "price_max": as_float(known["price_max"]),
        "currency": _clean(known["currency"]),
        "model": _read(result, "model", "modelName", "model_name"),
        "size": _read(result, "size"),
        "colour": _read(result, "color", "colour", "farbe"),
        "material": _read(result, "material"),
        "year": _read(result, "year"),
    }
    for key, value in manual.items():
        fact = DESCRIPTIVE_MANUAL_FIELDS.get(norm(str(key)))
        text = _clean(value) if fact else None  # label() reads no booleans
        if fact and text:
            facts[fact] = text
    return facts


# Writing ---------------------------------------------------------------------------------------


def _contains(text: str, part: str) -> bool:
    pattern = rf"(?<!\w){re.escape(part.casefold())}(?!\w)"
    return re.search(pattern, text.casefold()) is not None


def _title(lang: str, facts: dict[str, Any], collection: str | None) -> str:
    words = _WORDS[lang]
    brand, model, title = facts["brand"], facts["model"], facts["title"]
    if model and not (title and _contains(title, model)):
        name = model
    else:
        name = title or facts["category"]
    if brand and name and not _contains(name, brand):
        name = f"{brand} {name}"
    name = name or brand or _clean(collection) or words["item"]
    suffix = ""
    size = facts["size"]
    if size:
        size_text = size
        if not re.match(r"(?i)(size|größe|groesse|gr)\b", size):
            size_text = f"{words['size_short']} {size}"
        if len(size_text) + 3 <= MAX_SIZE_SUFFIX and not _contains(name, size_text):
            suffix = f" – {size_text}"
    return _cut_words(name, TITLE_LIMIT - len(suffix)) + suffix


def _cut_words(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, cut at the last space that fits (hard cut when
    that would keep less than half: a 200-character word after the brand must not leave just
    the brand), without trailing separators."""
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    cut = head.rfind(" ")
    kept = head[:cut] if cut > limit // 2 else text[:limit]
    return kept.rstrip(_TRAILING) or text[:limit]


def _limit(text: str, limit: int) -> str:
    """`text` in at most `limit` characters: cut at a word boundary, ending in "…"."""
    if len(text) <= limit:
        return text
    return _cut_words(text, limit - 1) + "…"


def condition_text(lang: str, value: str) -> str:
    """A common condition in the user's language (`worn` is `abgenutzt`); any other value
    as it came."""
    key = _SPACES.sub(" ", re.sub(r"[_\-]+", " ", value.casefold())).strip()
    names = _CONDITIONS.get(key)
    if names is None:
        return value
    return names[1] if lang == "de" else names[0]


def _colour(lang: str, value: str) -> str:
    parts = _COLOUR_SEPARATORS.split(value)
    out = []
    for index, part in enumerate(parts):
        if index % 2:  # a separator, kept as sent ("und"/"and" become the language's word)
            word = part.strip().casefold()
            if word in ("and", "und"):
                part = f" {'und' if lang == 'de' else 'and'} "
            out.append(part)
            continue
        names = _COLOURS.get(part.strip().casefold())
        if names is None:
            return value
        out.append(names[1] if lang == "de" else names[0])
    return "".join(out)


def _description_lines(lang: str, facts: dict[str, Any]) -> list[str]:
    words = _WORDS[lang]
    lines = []
    for fact in ("condition", "size", "colour", "category", "brand", "material", "year"):
        value = facts[fact]
        if not value:
            continue
        if fact == "condition":
            value = condition_text(lang, value)
        elif fact == "colour":
            value = _colour(lang, value)
        lines.append(f"{words[fact]}: {_limit(value, MAX_VALUE_LENGTH)}")
        if len(lines) >= MAX_DESCRIPTION_LINES:
            break
    if len(lines) < 2:
        lines.append(words["closing"])
    return lines


def _currency(value: str | None) -> str:
    if not value:
        return "EUR"
    text = value.strip()
    if text in _CURRENCY_SIGNS:
        return _CURRENCY_SIGNS[text]
    if re.fullmatch(r"[A-Za-z]{3}", text):
        return text.upper()
    return _limit(text, 12)


def _price_text(lang: str, facts: dict[str, Any]) -> str | None:
    amount = retail_price(facts["price_min"], facts["price_max"])
    if amount is None:
        return None
    currency = _currency(facts["currency"])
    if lang == "de":
        return f"{amount:,}".replace(",", ".") + f" {'€' if currency == 'EUR' else currency}"
    return f"{amount:,} {currency}"


def _half_up(value: float) -> int:
    return math.floor(value + 0.5)
