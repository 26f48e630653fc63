"""What a user asked for: caption parsing, manual-field checks, collection resolution.

Pure functions, except `Catalog`, a small time-limited cache of collections and their fields in
front of the Resell Scan client.
"""

from __future__ import annotations

import asyncio
import difflib
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bot.resellscan import Collection, ManualField, ResellScanClient

T = TypeVar("T")

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_QUOTES = {'"': '"', "'": "'", "„": "“”", "“": "”", "”": "”", "«": "»", "‚": "‘’", "‘": "’"}
TRUE_WORDS = frozenset({"true", "yes", "y", "1", "ja", "j", "on", "wahr"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "nein", "off", "falsch"})


class CaptionError(Exception):
    """A caption we cannot understand; `code` and `params` name a text in texts.py."""

    def __init__(self, code: str, **params: Any) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


class NotForUs(Exception):
    """A caption addressed to another bot (`/scan@OtherBot …`): the photo is not for us."""


@dataclass(frozen=True)
class ScanRequest:
    """A parsed caption or /scan command: collection (as typed) and raw field strings."""

    collection_ref: str | None
    fields: dict[str, str] = field(default_factory=dict)
    is_command: bool = False


@dataclass(frozen=True)
class Token:
    text: str
    quoted: bool  # the whole token was in quotes (a name, never a pair)


def tokenize(text: str) -> list[Token]:
    """Split on whitespace; quotes group words at the start of a token or right after '='.
    An apostrophe inside a word (Levi's) is just a letter."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        if text[i] in _QUOTES:
            close = _QUOTES[text[i]]
            end = next((j for j in range(i + 1, n) if text[j] in close), -1)
            if end < 0:
                raise CaptionError("unbalanced_quotes")
            tokens.append(Token(text[i + 1 : end], quoted=True))
            i = end + 1
            continue
        buf: list[str] = []
        while i < n and not text[i].isspace():
            ch = text[i]
            if ch == "=" and i + 1 < n and text[i + 1] in _QUOTES and "=" not in "".join(buf):
                buf.append(ch)
                close = _QUOTES[text[i + 1]]
                end = next((j for j in range(i + 2, n) if text[j] in close), -1)
                if end < 0:
                    raise CaptionError("unbalanced_quotes")
                buf.append(text[i + 2 : end])
                i = end + 1
                break
            buf.append(ch)
            i += 1
        tokens.append(Token("".join(buf), quoted=False))
    return tokens


def _pair(token: Token) -> tuple[str, str] | None:
    if token.quoted or "=" not in token.text:
        return None
    key, _, value = token.text.partition("=")
    return key, value


MAX_NAME_CHARS = 100  # a collection name in a caption or /scan
MAX_VALUE_CHARS = 300  # one field's value
QUOTE_CHARS = 60  # of the user's own text, quoted back in a problem


def _quoted(text: str) -> str:
    """The user's text as a problem quotes it: short enough for any message (a /scan can
    be 4,096 characters, and its echo must fit in a reply with the rest)."""
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 1] + "…"


def parse_caption(text: str | None, bot_username: str | None = None) -> ScanRequest | None:
    """Understand a caption or a /scan command.

    Returns None when there is no instruction: no caption, or a plain note without pairs.
    Raises NotForUs for a command addressed to another bot (in a group with several bots the
    photo belongs to that bot), and CaptionError for something we cannot accept."""
    if text is None or not text.strip():
        return None
    tokens = tokenize(text.strip())
    if not tokens:
        return None
    is_command = False
    first = tokens[0]
    if not first.quoted and first.text.startswith("/"):
        command, _, addressee = first.text[1:].partition("@")
        if addressee and bot_username and addressee.lower() != bot_username.lower():
            raise NotForUs(addressee)
        if command.lower() != "scan":
            raise CaptionError("unknown_caption_command", command="/" + command)
        is_command = True
        tokens = tokens[1:]
    name_words: list[str] = []
    pairs: dict[str, str] = {}
    for token in tokens:
        pair = _pair(token)
        if pair is None:
            if pairs:
                raise CaptionError("text_after_fields", text=_quoted(token.text))
            name_words.append(token.text)
            continue
        key, value = pair
        if not _KEY.match(key):
            raise CaptionError("bad_pair", pair=_quoted(token.text))
        if not value.strip():
            raise CaptionError("empty_value", key=key)
        if key in pairs:
            raise CaptionError("duplicate_field", key=key)
        if len(value.strip()) > MAX_VALUE_CHARS:
            raise CaptionError("value_too_long", key=key, limit=MAX_VALUE_CHARS)
        pairs[key] = value.strip()
    if not is_command:
        if not pairs:
            return None  # a note on the photo, not an instruction
        if name_words:
            raise CaptionError("text_before_fields", text=_quoted(" ".join(name_words)))
    name = " ".join(name_words).strip() or None
    if name is not None and len(name) > MAX_NAME_CHARS:
        raise CaptionError("name_too_long", limit=MAX_NAME_CHARS)
    return ScanRequest(collection_ref=name, fields=pairs, is_command=is_command)


# Manual fields --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldProblem:
    code: str  # missing, unknown, number, integer, boolean, option, text
    key: str
    value: str | None = None
    options: tuple[str, ...] = ()
    suggestion: str | None = None
    limit: float | None = None  # code "price_max": the highest price allowed


MAX_NUMBER = 1e12  # a sane bound for any price, size or count a reseller types
DEFAULT_MAX_PRICE = 1_000_000.0  # euros: the MAX_PRICE setting's default


def is_price(key: str, kind: str) -> bool:
    """A field holding a price: typed as one, or named so (purchasePrice, price, Preis)."""
    lowered = key.lower()
    return kind in ("price", "currency") or "price" in lowered or "preis" in lowered


class OutOfRange(ValueError):
    """A number that parses but is not finite or too large to mean anything."""


def parse_number(text: str) -> float:
    """A number as resellers type it: 12.5, 12,5, 1.234,56, 1,234.56, 12 €. Finite and at
    most MAX_NUMBER in size (310 nines parse as infinity, which JSON cannot carry)."""
    cleaned = (
        text.strip().replace("€", "").replace("EUR", "").replace(" ", "").replace("\u202f", "")
    )
    if "," in cleaned and "." in cleaned:
        if cleaned.rfind(",") > cleaned.rfind("."):
            cleaned = cleaned.replace(".", "").replace(",", ".")
        else:
            cleaned = cleaned.replace(",", "")
    elif cleaned.count(",") == 1:
        cleaned = cleaned.replace(",", ".")
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", cleaned):
        raise ValueError(text)
    number = float(cleaned)
    if not math.isfinite(number) or abs(number) > MAX_NUMBER:
        raise OutOfRange(text)
    return number


def coerce_fields(
    raw: dict[str, Any], definitions: Sequence[ManualField], max_price: float = DEFAULT_MAX_PRICE
) -> tuple[dict[str, Any], list[FieldProblem]]:
    """Typed values for the API, and every problem found (missing, unknown, wrong type, a
    price below zero or above `max_price`)."""
    by_key = {d.key: d for d in definitions}
    by_lower = {d.key.lower(): d for d in definitions}
    values: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    for key, value in raw.items():
        definition = by_key.get(key) or by_lower.get(key.lower())
        if definition is None:
            close = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.6)
            problems.append(FieldProblem("unknown", key, suggestion=close[0] if close else None))
            continue
        text = str(value)
        kind = definition.type
        try:
            if kind in ("number", "float", "decimal", "price", "currency"):
                number = parse_number(text)
                if is_price(definition.key, kind):
                    if number < 0 or text.strip().startswith("-"):  # -0 too
                        problems.append(FieldProblem("price_negative", definition.key, text))
                        continue
                    if number > max_price:
                        problems.append(
                            FieldProblem("price_max", definition.key, text, limit=max_price)
                        )
                        continue
                values[definition.key] = number
            elif kind in ("integer", "int"):
                number = parse_number(text)
                if number != int(number):
                    raise ValueError(text)
                values[definition.key] = int(number)
            elif kind in ("boolean", "bool", "checkbox"):
                word = text.strip().lower()
                if word in TRUE_WORDS:
                    values[definition.key] = True
                elif word in FALSE_WORDS:
                    values[definition.key] = False
                else:
                    raise ValueError(text)
            elif kind in ("select", "enum", "option", "dropdown") and definition.options:
                match = next(
                    (o for o in definition.options if o.lower() == text.strip().lower()), None
                )
                if match is None:
                    problems.append(
                        FieldProblem("option", definition.key, text, tuple(definition.options))
                    )
                    continue
                values[definition.key] = match
            else:
                values[definition.key] = text
        except OutOfRange:
            problems.append(FieldProblem("range", definition.key, text[:40]))
        except ValueError:
            code = {"integer": "integer", "int": "integer"}.get(kind, kind)
            if code in ("boolean", "bool", "checkbox"):
                code = "boolean"
            elif code not in ("integer",):
                code = "number"
            problems.append(FieldProblem(code, definition.key, text))
    for definition in definitions:
        if (
            definition.required
            and definition.key not in values
            and not any(p.key == definition.key for p in problems)
        ):
            problems.append(FieldProblem("missing", definition.key))
    return values, problems


def example_value(definition: ManualField, lang: str = "en") -> str:
    if definition.options:
        return definition.options[0]
    decimal = "12,5" if lang == "de" else "12.5"  # as people there write it (both are read)
    return {
        "number": decimal,
        "integer": "1",
        "boolean": "ja" if lang == "de" else "yes",
        "int": "1",
        "float": decimal,
    }.get(definition.type, "text")


def quote_name(name: str) -> str:
    return f'"{name}"' if any(ch.isspace() for ch in name) else name


def example_caption(
    collection_name: str,
    definitions: Sequence[ManualField],
    given: dict[str, Any] | None = None,
    lang: str = "en",
) -> str:
    """A caption that would work: the collection, then every required field (and the fields
    the user gave that are fine), numbers written the way `lang` writes them."""
    parts = ["/scan", quote_name(collection_name)]
    given = given or {}
    for definition in definitions:
        if definition.required or definition.key in given:
            value = given.get(definition.key)
            shown: str | None
            if isinstance(value, bool):
                shown = str(value).lower()
            elif isinstance(value, float):
                plain = format(value, "f").rstrip("0").rstrip(".") or "0"
                shown = plain.replace(".", ",") if lang == "de" else plain
            else:
                shown = value if value is None else str(value)
            parts.append(f"{definition.key}={shown or example_value(definition, lang)}")
    return " ".join(parts)


# Collections ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolution:
    match: Collection | None
    candidates: list[Collection]


def resolve_collection(ref: str, collections: Sequence[Collection], limit: int = 8) -> Resolution:
    """By id, then exact name (case-insensitive), then unique prefix, then unique substring."""
    wanted = ref.strip()
    lower = wanted.lower()
    for c in collections:
        if c.id == wanted:
            return Resolution(c, [])
    exact = [c for c in collections if c.name.lower() == lower]
    if len(exact) == 1:
        return Resolution(exact[0], [])
    for rule in (
        lambda c: c.name.lower().startswith(lower),
        lambda c: lower in c.name.lower(),
    ):
        found = [c for c in collections if rule(c)]
        if len(found) == 1:
            return Resolution(found[0], [])
        if found:
            return Resolution(None, found[:limit])
    return Resolution(None, exact[:limit])


class Catalog:
    """Collections and manual fields, cached briefly (they change rarely; every lookup would
    otherwise cost an API call per photo). Single flight: a burst of photos with a cold cache
    waits for one fetch per key instead of paging through the collections once per photo."""

    def __init__(
        self,
        client: ResellScanClient,
        *,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, Any]] = {}
        self._inflight: dict[str, asyncio.Future[Any]] = {}

    async def _cached(self, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] <= self._ttl:
            value: T = hit[1]
            return value
        running = self._inflight.get(key)
        if running is not None:
            # shield: one waiter being cancelled must not cancel the fetch the others share
            shared: T = await asyncio.shield(running)
            return shared
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await fetch()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            self._inflight.pop(key, None)
        self._cache[key] = (self._clock(), result)
        future.set_result(result)
        return result

    async def collections(self) -> list[Collection]:
        async def fetch() -> list[Collection]:
            return [c async for c in self._client.iter_collections()]

        return await self._cached("collections", fetch)

    async def fields(self, collection_id: str) -> list[ManualField]:
        return await self._cached(
            f"fields:{collection_id}", lambda: self._client.get_manual_fields(collection_id)
        )

    async def resolve(self, ref: str) -> Resolution:
        return resolve_collection(ref, await self.collections())

    async def by_id(self, collection_id: str) -> Collection | None:
        return next((c for c in await self.collections() if c.id == collection_id), None)

    async def search(self, text: str | None) -> list[Collection]:
        items = await self.collections()
        if not text:
            return items
        lower = text.lower()
        return [c for c in items if lower in c.name.lower()]
