"""The one codec for inline-button `callback_data`.

Telegram allows 1-64 **bytes** of callback data (not characters: an emoji is four). Data is
`kind:arg:…`; buttons that act on a submission (pick a collection, page the picker, send again,
CSV) also carry a short MAC over the kind, the chat and the arguments, `kind:mac:arg:…`. A
button pressed in another chat, a guessed submission id, or data in an old or garbled format
does not decode, and the handler answers that the button is stale, changing nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

MAX_BYTES = 64

# kind -> (number of arguments, signed). The last argument may contain ':' (search text).
KINDS: dict[str, tuple[int, bool]] = {
    "pick": (2, True),  # submission id, collection id
    "pp": (3, True),  # picker page: submission id, page, search
    "resub": (1, True),  # submission id
    "csv": (1, True),  # submission id
    "retry": (1, True),  # "Retry failed" of this submission's results
    "lst": (2, True),  # listing text: submission id, product index (0: all)
    "dup": (2, True),  # duplicate guard: submission id, "show" or "again"
    "cp": (2, False),  # /collections page: page, search
    "use": (1, False),  # collection id
    "scan": (1, False),
    "fields": (1, False),
    "batch": (1, False),
    "set": (1, False),  # rb, lang, admin, am, dg, nodef, dig
    "fp": (2, False),  # /find page: offset, search (results are always this chat's)
    "fgo": (1, False),  # /find: reply to the results message of this history row
    "rcsv": (1, False),  # /report CSV: the period's label (2026-11-01..2026-11-15)
}
# Kinds whose last argument is search text: cut by bytes to fit, may be empty.
SEARCHABLE = frozenset({"cp", "pp", "fp"})
# Arguments that must be whole numbers, by kind and position.
_NUMERIC = {
    ("pick", 0),
    ("pp", 0),
    ("pp", 1),
    ("resub", 0),
    ("csv", 0),
    ("cp", 0),
    ("retry", 0),
    ("lst", 0),
    ("lst", 1),
    ("dup", 0),
    ("fp", 0),
    ("fgo", 0),
}


class CallbackTooLong(ValueError):
    """The data cannot be made to fit in 64 bytes."""


def fit(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` of UTF-8, never inside a character."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[: max(0, max_bytes)].decode("utf-8", "ignore")


@dataclass(frozen=True)
class Callback:
    kind: str
    args: tuple[str, ...]

    def number(self, index: int) -> int:
        return int(self.args[index])


def plain(kind: str, *args: object) -> str:
    """Data for a button of an unsigned kind (valid in any chat: it names public things, such
    as a collection id or a settings switch, and its handler checks the presser's rights)."""
    if KINDS[kind][1]:
        raise ValueError(f"{kind} buttons must be signed (CallbackCodec.encode)")
    return _encode(kind, args, None)


def _encode(
    kind: str, args: tuple[object, ...], sign: Callable[[tuple[str, ...]], str] | None
) -> str:
    """`kind[:mac]:args`. Search text (the last argument of SEARCHABLE kinds) is cut by bytes
    to fit; anything else too long raises CallbackTooLong (an id must never be cut)."""
    arity, _ = KINDS[kind]
    if len(args) != arity:
        raise ValueError(f"{kind} takes {arity} argument(s)")
    parts = tuple(str(a) for a in args)
    if any(":" in p for p in parts[:-1]):
        raise ValueError("only the last argument may contain ':'")
    for _ in range(2):
        head = (kind, sign(parts)) if sign is not None else (kind,)
        data = ":".join((*head, *parts))
        overflow = len(data.encode("utf-8")) - MAX_BYTES
        if overflow <= 0:
            return data
        if kind not in SEARCHABLE:
            break
        last = parts[-1]
        parts = (*parts[:-1], fit(last, len(last.encode("utf-8")) - overflow))
    raise CallbackTooLong(f"{kind} data longer than {MAX_BYTES} bytes")


def derive_callback_key(bot_token: str) -> bytes:
    return hmac.new(bot_token.encode(), b"resell-scan-bot callback v1", hashlib.sha256).digest()


class CallbackCodec:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, kind: str, chat_id: int, args: tuple[str, ...]) -> str:
        message = "\x1f".join((kind, str(chat_id), *args)).encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:6]).decode()  # 8 characters

    def encode(self, kind: str, *args: object, chat_id: int) -> str:
        """Data for a button of a signed kind, valid only in chat `chat_id`."""
        return _encode(kind, args, lambda parts: self._mac(kind, chat_id, parts))

    def decode(self, data: str | None, chat_id: int) -> Callback | None:
        """The button's meaning, or None for data that is not ours, not from this chat, or
        not in the current format."""
        if not data or len(data.encode("utf-8")) > MAX_BYTES:
            return None
        kind, _, rest = data.partition(":")
        spec = KINDS.get(kind)
        if spec is None:
            return None
        arity, signed = spec
        mac = ""
        if signed:
            mac, sep, rest = rest.partition(":")
            if not sep:
                return None
        parts = tuple(rest.split(":", arity - 1)) if arity else ()
        if len(parts) != arity:
            return None
        for index, part in enumerate(parts):
            if (kind, index) in _NUMERIC and not (part.isascii() and part.isdigit()):
                return None
        if any(not p for p in (parts[:-1] if kind in SEARCHABLE else parts)):
            return None
        if signed:
            expected = self._mac(kind, chat_id, parts).encode()
            # bytes against bytes: compare_digest raises on non-ASCII str (forged data)
            if not hmac.compare_digest(mac.encode("utf-8"), expected):
                return None
        return Callback(kind, parts)
