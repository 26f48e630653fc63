"""The one codec for inline-button `callback_data`: a typed record per kind of button.

Telegram allows 1-64 **bytes** of callback data (not characters: an emoji is four). Data is
`prefix:arg:…`; buttons that act on a submission (pick a collection, page the picker, send
again, CSV, retry, listing, duplicate guard) also carry a short MAC over the prefix, the chat
and the arguments, `prefix:mac:arg:…`. A button pressed in another chat, a guessed submission
id, or data in an old or garbled format does not decode, and the handler answers that the
button is stale, changing nothing.

Each record is a frozen dataclass: its fields, in order, are the arguments (`int` fields must
be whole numbers; the last `str` field of a `searchable` record is search text, cut by bytes to
fit and possibly empty; any other field must be non-empty and free of ':'). `Button.pattern`
is the regular expression a `CallbackQueryHandler` is registered with, one handler per prefix.
Records that name a submission (`sub_id`) are `OnSubmission`: their handler checks the
presser's rights in one place (handlers.Handlers.button).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Self

MAX_BYTES = 64


class CallbackTooLong(ValueError):
    """The data cannot be made to fit in 64 bytes."""


def fit(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` of UTF-8, never inside a character."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[: max(0, max_bytes)].decode("utf-8", "ignore")


@dataclass(frozen=True)
class Button:
    """A kind of button. Subclasses set `prefix` (and `signed`, `searchable`)."""

    prefix: ClassVar[str] = ""
    signed: ClassVar[bool] = False  # carries a MAC: valid only in the chat it was made for
    searchable: ClassVar[bool] = False  # the last field is search text, cut to fit

    @classmethod
    def pattern(cls) -> str:
        return f"^{re.escape(cls.prefix)}:"

    def args(self) -> tuple[str, ...]:
        return tuple(str(getattr(self, f.name)) for f in dataclasses.fields(self))

    def data(self) -> str:
        """The callback data of an unsigned button (it names public things, such as a
        collection id or a settings switch; its handler checks the presser's rights)."""
        if self.signed:
            raise ValueError(f"{self.prefix} buttons are signed: use CallbackCodec.encode")
        return _encode(self, None)

    @classmethod
    def _parse(cls, parts: tuple[str, ...]) -> Self | None:
        values: dict[str, Any] = {}
        fields = dataclasses.fields(cls)
        for index, (field, part) in enumerate(zip(fields, parts, strict=True)):
            last_search = cls.searchable and index == len(fields) - 1
            if field.type in ("int", int):
                if not (part.isascii() and part.isdigit()) or len(part) > 18:
                    return None  # not an id SQLite can hold (forged: an OverflowError there)
                values[field.name] = int(part)
            elif not part and not last_search:
                return None
            else:
                values[field.name] = part
        return cls(**values)


class OnSubmission(Button):
    """A button that acts on (or shows) one submission: signed, and its handler checks that
    the presser may (the sender, or an admin in a group)."""

    signed: ClassVar[bool] = True
    sub_id: int


@dataclass(frozen=True)
class Pick(OnSubmission):
    prefix: ClassVar[str] = "pick"
    sub_id: int
    collection_id: str


@dataclass(frozen=True)
class PickerPage(OnSubmission):
    prefix: ClassVar[str] = "pp"
    searchable: ClassVar[bool] = True
    sub_id: int
    page: int
    search: str


@dataclass(frozen=True)
class Resubmit(OnSubmission):
    prefix: ClassVar[str] = "resub"
    sub_id: int


@dataclass(frozen=True)
class Csv(OnSubmission):
    prefix: ClassVar[str] = "csv"
    sub_id: int


@dataclass(frozen=True)
class RetryFailed(OnSubmission):
    prefix: ClassVar[str] = "retry"
    sub_id: int


@dataclass(frozen=True)
class Listing(OnSubmission):
    prefix: ClassVar[str] = "lst"
    sub_id: int
    index: int  # the product, from 1; 0: every product


@dataclass(frozen=True)
class Duplicate(OnSubmission):
    prefix: ClassVar[str] = "dup"
    sub_id: int
    choice: str  # "show" or "again"


@dataclass(frozen=True)
class CollectionsPage(Button):
    prefix: ClassVar[str] = "cp"
    searchable: ClassVar[bool] = True
    page: int
    search: str


@dataclass(frozen=True)
class UseCollection(Button):
    prefix: ClassVar[str] = "use"
    collection_id: str


@dataclass(frozen=True)
class ScanInto(Button):
    prefix: ClassVar[str] = "scan"
    collection_id: str


@dataclass(frozen=True)
class FieldsOf(Button):
    prefix: ClassVar[str] = "fields"
    collection_id: str


@dataclass(frozen=True)
class BatchInto(Button):
    prefix: ClassVar[str] = "batch"
    collection_id: str


@dataclass(frozen=True)
class Setting(Button):
    prefix: ClassVar[str] = "set"
    what: str  # rb, lang, admin, am, dg, nodef, dig


@dataclass(frozen=True)
class FindPage(Button):
    """/find: another page of a search. The query stays server-side behind a token
    (`History.remember_query`; 0: no text, every row), so a long one is never cut to fit.
    Results are always this chat's and a token is looked up in the pressing chat only, so
    the button needs no MAC. (Buttons of the earlier format, `fp:` with the text, are
    stale.)"""

    prefix: ClassVar[str] = "fq"
    offset: int
    query: int


@dataclass(frozen=True)
class FindShow(Button):
    """/find: reply to the results message of this history row (checked to be this chat's)."""

    prefix: ClassVar[str] = "fgo"
    row_id: int


@dataclass(frozen=True)
class ReportCsv(Button):
    prefix: ClassVar[str] = "rcsv"
    period: str  # the period's label (2026-11-01..2026-11-15)


BUTTONS: dict[str, type[Button]] = {
    kind.prefix: kind
    for kind in (
        Pick,
        PickerPage,
        Resubmit,
        Csv,
        RetryFailed,
        Listing,
        Duplicate,
        CollectionsPage,
        UseCollection,
        ScanInto,
        FieldsOf,
        BatchInto,
        Setting,
        FindPage,
        FindShow,
        ReportCsv,
    )
}


def _encode(button: Button, mac: Any) -> str:
    """`prefix[:mac]:args`. Search text is cut by bytes to fit; anything else too long raises
    CallbackTooLong (an id must never be cut)."""
    parts = button.args()
    if any(":" in p for p in parts[:-1]):
        raise ValueError("only the last argument may contain ':'")
    for _ in range(2):
        head = (button.prefix, mac(parts)) if mac is not None else (button.prefix,)
        data = ":".join((*head, *parts))
        overflow = len(data.encode("utf-8")) - MAX_BYTES
        if overflow <= 0:
            return data
        if not button.searchable:
            break
        last = parts[-1]
        parts = (*parts[:-1], fit(last, len(last.encode("utf-8")) - overflow))
    raise CallbackTooLong(f"{button.prefix} data longer than {MAX_BYTES} bytes")


def derive_callback_key(bot_token: str) -> bytes:
    return hmac.new(bot_token.encode(), b"resell-scan-bot callback v1", hashlib.sha256).digest()


class CallbackCodec:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, prefix: str, chat_id: int, args: tuple[str, ...]) -> str:
        message = "\x1f".join((prefix, str(chat_id), *args)).encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:6]).decode()  # 8 characters

    def encode(self, button: Button, *, chat_id: int) -> str:
        """Data for a button, valid only in chat `chat_id` when its kind is signed."""
        if not button.signed:
            return button.data()
        return _encode(button, lambda parts: self._mac(button.prefix, chat_id, parts))

    def decode(self, data: str | None, chat_id: int) -> Button | None:
        """The button's record, or None for data that is not ours, not from this chat, or
        not in the current format."""
        if not data or len(data.encode("utf-8")) > MAX_BYTES:
            return None
        prefix, _, rest = data.partition(":")
        kind = BUTTONS.get(prefix)
        if kind is None:
            return None
        mac = ""
        if kind.signed:
            mac, sep, rest = rest.partition(":")
            if not sep:
                return None
        arity = len(dataclasses.fields(kind))
        parts = tuple(rest.split(":", arity - 1)) if arity else ()
        if len(parts) != arity:
            return None
        if kind.signed:
            expected = self._mac(prefix, chat_id, parts).encode()
            # bytes against bytes: compare_digest raises on non-ASCII str (forged data)
            if not hmac.compare_digest(mac.encode("utf-8"), expected):
                return None
        return kind._parse(parts)
