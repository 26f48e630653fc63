"""Reading undocumented JSON field by field (resell-scan-api.md §9 #5, #6; RELIABILITY.md).

Most Resell Scan response shapes are unknown, and the real service will differ from any guess in
value types as well as key names: ids as numbers, nulls, epoch times, numeric strings, nested
objects, upper-case statuses. So nothing here raises on a surprise. Each `as_*` function turns
one value into the type we want or None ("unknown"); `Fields` reads one JSON object by any
spelling of a key (`batchId`, `batch_id`, `BatchID` are one key) and keeps a `Report` of what
it understood, what it had to leave unknown, and what it ignored: keys and value types only,
never values, so the report can be logged and printed by `check --probe`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T")

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off", ""})
# Epoch values above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_MS_THRESHOLD = 1e11


def norm(key: str) -> str:
    """One spelling for every casing of a key: `batchId`, `batch_id`, `Batch-ID` -> `batchid`."""
    return re.sub(r"[_\-\s]", "", key).lower()


def type_name(value: Any) -> str:
    """A JSON type name for reports (never the value itself)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def shape(value: Any, depth: int = 2) -> Any:
    """The shape of a JSON value: keys and value types, never values (for logs and reports)."""
    if isinstance(value, dict):
        if depth <= 0:
            return "object"
        return {str(k): shape(v, depth - 1) for k, v in list(value.items())[:30]}
    if isinstance(value, list):
        if not value:
            return "array(0)"
        if depth <= 0:
            return f"array({len(value)})"
        return [f"array({len(value)}) of", shape(value[0], depth - 1)]
    return type_name(value)


# Values ---------------------------------------------------------------------------------------


def as_text(value: Any) -> str | None:
    """A string; numbers become their decimal text; anything else is unknown."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else str(value)
    return None


def as_id(value: Any) -> str | None:
    """An identifier: a non-empty string or an integer (as its decimal text)."""
    text = as_text(value)
    return text.strip() or None if text is not None else None


def as_float(value: Any) -> float | None:
    """A finite number, or a string holding one in JSON's notation (`"12.5"`; `"12,5"` is
    not a number here: it could be a decimal comma or a thousands separator)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        number = float(value.strip())
    else:
        return None
    return number if math.isfinite(number) else None


def as_int(value: Any) -> int | None:
    number = as_float(value)
    if number is None or not number.is_integer():
        return None
    return int(number)


def as_bool(value: Any) -> bool | None:
    """true/false, 0/1, or their strings (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    return None


def as_time(value: Any) -> float | None:
    """Unix seconds from ISO 8601 (with or without zone or fraction; no zone means UTC) or
    from epoch seconds or milliseconds (numbers or numeric strings)."""
    number = as_float(value)
    if number is not None:
        if number <= 0:
            return None
        return number / 1000.0 if number > _MS_THRESHOLD else number
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def as_status(value: Any) -> str | None:
    """A status word in lower case (`COMPLETED`, `Completed` and `completed` are one)."""
    text = as_text(value) if not isinstance(value, int | float) else None
    return text.strip().lower() or None if text is not None else None


def as_obj(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def as_list(value: Any) -> list[Any] | None:
    return value if isinstance(value, list) else None


def as_error(value: Any) -> str | None:
    """An error as text: null or empty means none; a string; an object's message/error/
    detail/code; a list's first readable entry. False and "" are no error."""
    if value is None or value is False:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, dict):
        for key in ("message", "msg", "error", "detail", "description", "reason", "code"):
            found = _lookup(value, key)
            inner = as_error(found) if isinstance(found, str | dict | list) else as_text(found)
            if inner:
                return inner
        return "error" if value else None
    if isinstance(value, list):
        for item in value:
            inner = as_error(item)
            if inner:
                return inner
        return None
    return as_text(value)


def label(value: Any) -> str | None:
    """A short human text for a result value that may be nested: `{"name": "Nike", "id": 7}`
    is "Nike"; a list of such is "a, b"; numbers and strings as they are."""
    if isinstance(value, dict):
        for key in ("name", "label", "title", "value", "text", "displayName", "display_name"):
            found = _lookup(value, key)
            if found is not None and not isinstance(found, dict | list):
                return label(found)
        return None
    if isinstance(value, list):
        parts = [p for p in (label(v) for v in value[:5]) if p]
        return ", ".join(parts) or None
    if isinstance(value, bool):
        return None
    text = as_text(value)
    return text.strip() or None if text is not None else None


def _lookup(data: Mapping[str, Any], key: str) -> Any:
    wanted = norm(key)
    for k, v in data.items():
        if norm(str(k)) == wanted:
            return v
    return None


def unwrap(payload: Any) -> Any:
    """The object inside a `{"data": …}` (or `result`/`payload`) envelope, or the payload."""
    if isinstance(payload, dict):
        for key in ("data", "result", "payload"):
            inner = _lookup(payload, key)
            if isinstance(inner, dict | list) and _looks_like_envelope(payload, key):
                return inner
    return payload


def _looks_like_envelope(payload: Mapping[str, Any], key: str) -> bool:
    """An envelope carries its content under one key plus metadata only (success, meta…).
    `{"status": "completed", "result": {…}}` is a product result, not an envelope: beside
    `result`/`payload`, a `status` counts as metadata only when it reads like one ("success",
    "ok", an HTTP code); beside `data` it always does (`{"status": …, "data": {…}}`)."""
    meta = {"success", "ok", "meta", "message", "pagination", "links", "requestid", "status"}
    others = {norm(str(k)) for k in payload} - {norm(key)}
    if not others <= meta:
        return False
    if "status" in others and norm(key) != "data":
        status = _lookup(payload, "status")
        return isinstance(status, int) or str(status).lower() in ("success", "ok")
    return True


# Objects --------------------------------------------------------------------------------------


@dataclass
class Report:
    """What a reader made of one JSON object: keys and types only."""

    understood: dict[str, str] = field(default_factory=dict)  # key as sent -> JSON type
    unknown: dict[str, str] = field(default_factory=dict)  # present but unreadable -> type
    missing: list[str] = field(default_factory=list)  # wanted, absent: defaulted
    ignored: dict[str, str] = field(default_factory=dict)  # present, not used -> type

    def merge(self, other: Report, prefix: str) -> None:
        for target, source in (
            (self.understood, other.understood),
            (self.unknown, other.unknown),
            (self.ignored, other.ignored),
        ):
            for key, kind in source.items():
                target.setdefault(f"{prefix}.{key}", kind)
        for key in other.missing:
            if f"{prefix}.{key}" not in self.missing:
                self.missing.append(f"{prefix}.{key}")


class Fields:
    """One JSON object, read by any spelling of its keys, noting what was used."""

    def __init__(self, data: Any, report: Report | None = None) -> None:
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        self.report = report if report is not None else Report()
        self._keys: dict[str, str] = {}
        for key in self.data:
            self._keys.setdefault(norm(str(key)), str(key))
        self._used: set[str] = set()

    def raw(self, *names: str) -> tuple[str | None, Any]:
        """The first present (non-null) key among `names` and its value."""
        for name in names:
            key = self._keys.get(norm(name))
            if key is not None and self.data[key] is not None:
                return key, self.data[key]
        for name in names:  # present but null: still "seen"
            key = self._keys.get(norm(name))
            if key is not None:
                return key, None
        return None, None

    def get(self, reader: Callable[[Any], T | None], *names: str) -> T | None:
        """Read the first of `names` with `reader`; None (unknown) when absent or unreadable."""
        key, value = self.raw(*names)
        if key is None:
            if names[0] not in self.report.missing:
                self.report.missing.append(names[0])
            return None
        self._used.add(key)
        if value is None:
            self.report.understood[key] = "null"
            return None
        result = reader(value)
        if result is None:
            self.report.unknown[key] = type_name(value)
        else:
            self.report.understood[key] = type_name(value)
        return result

    def take(self, *names: str) -> Any:
        """The raw value of the first present key (for nested objects read elsewhere)."""
        key, value = self.raw(*names)
        if key is not None:
            self._used.add(key)
            self.report.understood.setdefault(key, type_name(value))
        return value

    def finish(self) -> Report:
        """Note every key that was not used as ignored; return the report."""
        for key, value in self.data.items():
            if str(key) not in self._used:
                self.report.ignored.setdefault(str(key), type_name(value))
        return self.report


def first(values: Iterable[T | None]) -> T | None:
    for value in values:
        if value is not None:
            return value
    return None
