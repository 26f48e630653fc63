"""Every analysed product as a row, kept for search and reports ("what did we analyse, what is
it worth, what did we pay").

One row per product of a finished submission, keyed by (submission_id, product_index), so
adding a submission's products again (a retry of the notifier, a restart) changes nothing. Rows
are a history: nothing here updates or deletes them, and they do not reference `submissions`
(no foreign key), so a later pruning of submissions keeps the history.

Search (`History.find`)
    An FTS5 table `results_history_fts` over title, brand, category, collection_name and
    sender_name with tokenizer `unicode61 remove_diacritics 2`: case-insensitive for every
    script (Ü = ü, ẞ = ß), diacritics folded (ü = u, é = e), emoji and punctuation are
    separators (so "👟 Nike Air" is found by "nike").
    German spellings: a text holding ä, ö, ü or ß is indexed three times over, as written,
    with ä/ö/ü/ß spelled ae/oe/ue/ss, and with only ß spelled ss; a search word holding them
    is looked up in the same spellings (OR). So "Größe" is found by "größe", "grösse",
    "groesse", "grosse" and "GRÖSSE"; "Müller" by "müller", "muller" and "mueller"; a title
    written "Mueller" by "müller" and "mueller" (not by "muller", a different word). Text is
    stored NFC-normalised, so a decomposed "u + ¨" from some keyboards matches as well.
    Inside words: a second FTS5 table, `results_history_trigram` (tokenizer `trigram`,
    case-insensitive for every script), indexes the same text (with the German spellings)
    and once more with diacritics dropped (`_FOLD`: é = e, ü = u, ß = ss), so a word of 3
    letters or more also matches inside a word: "schuh" finds "Lederschuhe" and
    "Kinderschuhe" (German compounds), "grosse" finds "Übergröße". A shorter word matches
    as a prefix only (a trigram index cannot look up fewer than 3 characters).
    Quoting: the user's text is never FTS5 syntax. It is split into words (runs of letters
    and digits; everything else, `"` `*` `-` `:` `(` `^` `_` included, separates), each word
    becomes a quoted prefix term `"word"*` (and a quoted string for the trigram index), and
    every word must match (AND), each anywhere in the row's text. `OR`, `NOT`, `NEAR` typed
    by a user are plain words. At most `MAX_SEARCH_WORDS` words are used.
    Order: best matches first. Rows where every word is a whole word come first, then rows
    where every word starts a word, then the rest (some word only inside a word); newest
    first within each. Empty text lists the chat's rows, newest first; text without any
    word (only emoji or punctuation) finds nothing. The total count comes along for paging.
    Paging: a query is kept behind a short token (`remember_query`, `recall_query`), which
    the page buttons carry instead of the text (64 bytes of callback data would cut it); a
    token unused for `QUERY_RETENTION` is forgotten.

When rows are kept (`owe_history`, `History.owed`)
    As soon as the results are known: the transition to `completed` (storage/transitions.py)
    owes the submission's rows in its own transaction (a row of `history_owed`), and the bot
    keeps them from there (bot/outbox.py `keep_owed_history`, run by the delivery loop), in
    the transaction that deletes the debt. So an analysis is found, reported and digested
    whether or not Telegram ever takes its results message (a closed topic, no right to
    send); the link to that message is added when it is sent (`History.link`).

Why the FTS tables keep their own copy of the text (neither external content nor contentless):
    the indexed text is not the column text (it carries the extra spellings), which an
    external-content table must mirror exactly, and a contentless table (SQLite < 3.43) needs
    the indexed values again to delete a row. Spelling the text in Python (`History.add`, in
    the row's transaction) keeps the migration literal SQL, and the copy lets the delete
    trigger remove a row by rowid alone, whatever spelling rules indexed it. A trigger refuses
    to change the searchable columns of a stored row, so the index cannot go stale. The copies
    cost a few hundred bytes per product, the trigram index about three times the text.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from storage.db import Database, Tx

MAX_SEARCH_WORDS = 16
QUERY_RETENTION = 30 * 86400.0  # a /find page button works this long after its last use
_MAX_SQL_INT = 2**63 - 1  # larger numbers (forged button data) are no rows, not an error
_FTS_COLUMNS = ("title", "brand", "category", "collection_name", "sender_name")
_TEXT_COLUMNS = ("sender_name", "collection_name", "title", "brand", "category")
_WORD = re.compile(r"[^\W_]+")
_GERMAN = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ẞ": "SS"}
)
_SHARP_S = str.maketrans({"ß": "ss", "ẞ": "SS"})
# Diacritics dropped for the trigram index (which, unlike unicode61, cannot). Migration 17
# indexed the rows kept before with the same table, in SQL: a change here needs a migration
# that indexes them again (tests/test_find_inside_words.py compares the two).
_FOLD = str.maketrans(
    {
        **dict.fromkeys("àáâãäå", "a"),
        **dict.fromkeys("ÀÁÂÃÄÅ", "A"),
        **dict.fromkeys("èéêë", "e"),
        **dict.fromkeys("ÈÉÊË", "E"),
        **dict.fromkeys("ìíîï", "i"),
        **dict.fromkeys("ÌÍÎÏ", "I"),
        **dict.fromkeys("òóôõö", "o"),
        **dict.fromkeys("ÒÓÔÕÖ", "O"),
        **dict.fromkeys("ùúûü", "u"),
        **dict.fromkeys("ÙÚÛÜ", "U"),
        **dict.fromkeys("ýÿ", "y"),
        "Ý": "Y",
        "ç": "c",
        "Ç": "C",
        "ñ": "n",
        "Ñ": "N",
        "ß": "ss",
        "ẞ": "SS",
    }
)
TRIGRAM = 3  # the shortest word the trigram index can look up
_UMLAUTS = frozenset("äöüßÄÖÜẞ")


HISTORY_SCHEMA: list[str] = [
    """
    CREATE TABLE results_history (
        id INTEGER PRIMARY KEY,
        chat_id INTEGER NOT NULL,
        thread_id INTEGER,
        submission_id INTEGER NOT NULL,
        product_index INTEGER NOT NULL,
        sender_id INTEGER NOT NULL,
        sender_name TEXT NOT NULL,
        collection_name TEXT,
        analysed_at REAL NOT NULL,
        title TEXT,
        brand TEXT,
        category TEXT,
        price_min REAL,
        price_max REAL,
        currency TEXT,
        purchase_price REAL,
        manual_fields TEXT NOT NULL DEFAULT '{}',
        photo_file_id TEXT,
        message_link TEXT,
        message_id INTEGER,
        UNIQUE (submission_id, product_index)
    )
    """,
    "CREATE INDEX results_history_chat_time ON results_history (chat_id, analysed_at)",
    """
    CREATE VIRTUAL TABLE results_history_fts USING fts5 (
        title, brand, category, collection_name, sender_name,
        tokenize = 'unicode61 remove_diacritics 2'
    )
    """,
    """
    CREATE TRIGGER results_history_fts_delete AFTER DELETE ON results_history BEGIN
        DELETE FROM results_history_fts WHERE rowid = old.id;
    END
    """,
    """
    CREATE TRIGGER results_history_fixed
    BEFORE UPDATE OF id, title, brand, category, collection_name, sender_name
    ON results_history BEGIN
        SELECT RAISE (ABORT, 'results_history: searchable columns are fixed once added');
    END
    """,
]


@dataclass(frozen=True, kw_only=True)
class NewHistoryRow:
    """One analysed product to keep. Prices are what Resell Scan estimated (`price_min`,
    `price_max` in `currency`); `purchase_price` is what the reseller paid (a manual field),
    taken to be in the same currency."""

    chat_id: int
    submission_id: int
    product_index: int  # the product's position in its submission, from 0 or 1 as the caller likes
    sender_id: int
    sender_name: str
    analysed_at: float  # unix seconds
    thread_id: int | None = None
    collection_name: str | None = None
    title: str | None = None
    brand: str | None = None
    category: str | None = None
    price_min: float | None = None
    price_max: float | None = None
    currency: str | None = None
    purchase_price: float | None = None
    manual_fields: dict[str, Any] = field(default_factory=dict)
    photo_file_id: str | None = None
    message_link: str | None = None  # t.me/c/… to the results message (supergroups only)
    message_id: int | None = None  # the results message, to reply to where no link works


@dataclass(frozen=True, kw_only=True)
class HistoryRow(NewHistoryRow):
    """A stored row: `NewHistoryRow`'s fields and the row id."""

    id: int


_COLUMNS = (
    "chat_id",
    "thread_id",
    "submission_id",
    "product_index",
    "sender_id",
    "sender_name",
    "collection_name",
    "analysed_at",
    "title",
    "brand",
    "category",
    "price_min",
    "price_max",
    "currency",
    "purchase_price",
    "manual_fields",
    "photo_file_id",
    "message_link",
    "message_id",
)
_SELECT = (
    "SELECT h.id, h.chat_id, h.thread_id, h.submission_id, h.product_index, h.sender_id,"
    " h.sender_name, h.collection_name, h.analysed_at, h.title, h.brand, h.category,"
    " h.price_min, h.price_max, h.currency, h.purchase_price, h.manual_fields,"
    " h.photo_file_id, h.message_link, h.message_id FROM results_history h"
)
_INSERT = (
    "INSERT INTO results_history (chat_id, thread_id, submission_id, product_index, sender_id,"
    " sender_name, collection_name, analysed_at, title, brand, category, price_min, price_max,"
    " currency, purchase_price, manual_fields, photo_file_id, message_link, message_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (submission_id, product_index) DO NOTHING"
)
_NEWEST_FIRST = " ORDER BY h.analysed_at DESC, h.id DESC"
_IN_WORDS = "h.id IN (SELECT rowid FROM results_history_fts WHERE results_history_fts MATCH ?)"
_IN_TRIGRAMS = (
    "h.id IN (SELECT rowid FROM results_history_trigram WHERE results_history_trigram MATCH ?)"
)


class History:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, rows: Sequence[NewHistoryRow]) -> int:
        """Keep `rows` in one transaction; returns how many were new (a (submission_id,
        product_index) stored already changes nothing)."""
        if not rows:
            return 0
        async with self.db.transaction() as tx:
            return await _add(tx, rows)

    async def keep(self, sub_id: int, rows: Sequence[NewHistoryRow]) -> int:
        """`add` the rows of submission `sub_id` and settle what it owed (`history_owed`),
        in one transaction; returns how many rows were new."""
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM history_owed WHERE submission_id = ?", (sub_id,))
            return await _add(tx, rows)

    async def owed(self, limit: int) -> list[int]:
        """Submissions whose results are known and whose rows are not kept yet, oldest first."""
        async with self.db.reading() as tx:
            found = await tx.all(
                "SELECT submission_id FROM history_owed ORDER BY owed_at, submission_id LIMIT ?",
                (limit,),
            )
        return [int(r[0]) for r in found]

    async def link(self, sub_id: int, message_link: str | None, message_id: int) -> int:
        """The results message of submission `sub_id` was sent: its rows that point at no
        message yet point at this one. Returns how many changed."""
        async with self.db.transaction(durable=False) as tx:
            return await tx.execute(
                "UPDATE results_history SET message_id = ?, message_link = ?"
                " WHERE submission_id = ? AND message_id IS NULL",
                (message_id, message_link, sub_id),
            )

    async def find(
        self, chat_id: int, text: str, *, limit: int = 10, offset: int = 0
    ) -> tuple[list[HistoryRow], int]:
        """The chat's rows matching every word of `text`, best matches first (see the module
        doc), `limit` from `offset`; and how many match in all."""
        limit, offset = (min(max(0, int(n)), _MAX_SQL_INT) for n in (limit, offset))
        source = " WHERE h.chat_id = ?"
        params: list[Any] = [chat_id]
        order, ranking = _NEWEST_FIRST, []
        if text.strip():
            words = _search_words(text)
            if not words:
                return [], 0
            for spellings in words:
                prefix = _any(spellings, "*")
                if len(spellings[0]) < TRIGRAM:
                    source += f" AND {_IN_WORDS}"
                    params.append(prefix)
                else:
                    source += f" AND ({_IN_WORDS} OR {_IN_TRIGRAMS})"
                    params += [prefix, _any(_folded(spellings), "")]
            order = (
                f" ORDER BY CASE WHEN {_IN_WORDS} THEN 0 WHEN {_IN_WORDS} THEN 1 ELSE 2 END,"
                " h.analysed_at DESC, h.id DESC"
            )
            ranking = [_all(words, ""), _all(words, "*")]
        async with self.db.reading() as tx:
            count = await tx.one(
                "SELECT COUNT(*) FROM results_history h" + source,  # noqa: S608 (literals only)
                params,
            )
            found = await tx.all(
                _SELECT + source + order + " LIMIT ? OFFSET ?",
                [*params, *ranking, limit, offset],
            )
        return [_row(r) for r in found], int(count[0]) if count else 0

    async def remember_query(self, chat_id: int, query: str, now: float) -> int:
        """The token of `query` in this chat (the same query keeps its token), its use
        recorded; queries unused for QUERY_RETENTION are forgotten meanwhile."""
        async with self.db.transaction(durable=False) as tx:
            await tx.execute("DELETE FROM find_queries WHERE used_at < ?", (now - QUERY_RETENTION,))
            row = await tx.one(
                "INSERT INTO find_queries (chat_id, query, used_at) VALUES (?, ?, ?)"
                " ON CONFLICT (chat_id, query) DO UPDATE SET used_at = excluded.used_at"
                " RETURNING id",
                (chat_id, query, now),
            )
        assert row is not None
        return int(row[0])

    async def recall_query(self, chat_id: int, token: int, now: float) -> str | None:
        """The query behind `token` in this chat, its use recorded; None for a token this chat
        does not have (forgotten, another chat's, forged)."""
        if not 0 < token <= _MAX_SQL_INT:
            return None
        async with self.db.transaction(durable=False) as tx:
            row = await tx.one(
                "UPDATE find_queries SET used_at = ? WHERE id = ? AND chat_id = ? RETURNING query",
                (now, token, chat_id),
            )
        return None if row is None else str(row[0])

    async def get(self, row_id: int) -> HistoryRow | None:
        async with self.db.reading() as tx:
            found = await tx.one(f"{_SELECT} WHERE h.id = ?", (row_id,))
        return _row(found) if found else None

    async def between(self, chat_id: int, start: float, end: float) -> list[HistoryRow]:
        """The chat's rows analysed in [start, end), oldest first."""
        async with self.db.reading() as tx:
            found = await tx.all(
                f"{_SELECT} WHERE h.chat_id = ? AND h.analysed_at >= ? AND h.analysed_at < ?"
                " ORDER BY h.analysed_at, h.id",
                (chat_id, start, end),
            )
        return [_row(r) for r in found]

    async def chats_with_rows(self) -> list[int]:
        """Every chat that has at least one row, ascending."""
        async with self.db.reading() as tx:
            found = await tx.all("SELECT DISTINCT chat_id FROM results_history ORDER BY chat_id")
        return [int(r[0]) for r in found]


async def _add(tx: Tx, rows: Sequence[NewHistoryRow]) -> int:
    added = 0
    for row in rows:
        params = _params(row)
        row_id = await tx.insert(_INSERT, params)
        if row_id is None:
            continue
        added += 1
        indexed = [_indexed(params[_COLUMNS.index(c)]) for c in _FTS_COLUMNS]
        await tx.execute(
            "INSERT INTO results_history_fts"
            " (rowid, title, brand, category, collection_name, sender_name)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (row_id, *indexed),
        )
        await tx.execute(
            "INSERT INTO results_history_trigram"
            " (rowid, title, brand, category, collection_name, sender_name)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (row_id, *(_with_folded(text) for text in indexed)),
        )
    return added


async def owe_history(tx: Tx, sub_ids: Sequence[int], now: float) -> None:
    """The rows of these submissions are owed to the history (their results are known), in
    the caller's transaction (the one that completed them)."""
    for sub_id in sub_ids:
        await tx.execute(
            "INSERT INTO history_owed (submission_id, owed_at) VALUES (?, ?)"
            " ON CONFLICT (submission_id) DO NOTHING",
            (sub_id, now),
        )


def fts_query(text: str) -> str | None:
    """An FTS5 MATCH expression for what a user typed, or None when it holds no word: every
    word a quoted prefix term, German spellings as alternatives, words joined by AND. Never
    a syntax error, whatever `text` holds."""
    words = _search_words(text)
    return _all(words, "*") if words else None


def _search_words(text: str) -> list[list[str]]:
    """The words of `text` (at most MAX_SEARCH_WORDS, each once), each in its spellings: as
    typed (lower case), with ä/ö/ü/ß spelled ae/oe/ue/ss, with only ß spelled ss."""
    words: list[list[str]] = []
    seen: set[str] = set()
    for word in _WORD.findall(unicodedata.normalize("NFC", text)):
        lower = word.lower()
        if lower in seen:
            continue
        seen.add(lower)
        words.append(
            list(dict.fromkeys((lower, lower.translate(_GERMAN), lower.translate(_SHARP_S))))
        )
        if len(words) >= MAX_SEARCH_WORDS:
            break
    return words


def _any(spellings: Sequence[str], suffix: str) -> str:
    """One word's spellings as alternatives, each quoted (a word holds no quote: _WORD) and
    with `suffix` ("*": a prefix term)."""
    quoted = [f'"{s}"{suffix}' for s in spellings]
    return quoted[0] if len(quoted) == 1 else f"({' OR '.join(quoted)})"


def _all(words: Sequence[Sequence[str]], suffix: str) -> str:
    return " AND ".join(_any(spellings, suffix) for spellings in words)


def _folded(spellings: Sequence[str]) -> list[str]:
    """A word's spellings for the trigram index: also with diacritics dropped."""
    return list(dict.fromkeys([*spellings, *(s.translate(_FOLD) for s in spellings)]))


def _with_folded(text: str | None) -> str | None:
    """The text indexed for the trigram index: the indexed text, and again with diacritics
    dropped when that differs."""
    if text is None:
        return None
    folded = text.translate(_FOLD)
    return text if folded == text else f"{text} {folded}"


def _params(row: NewHistoryRow) -> tuple[Any, ...]:
    values = {name: getattr(row, name) for name in _COLUMNS}
    for name in _TEXT_COLUMNS:
        if values[name] is not None:
            values[name] = unicodedata.normalize("NFC", str(values[name]))
    for name in ("price_min", "price_max", "purchase_price"):
        values[name] = _finite(values[name])
    currency = (row.currency or "").strip().upper()
    values["currency"] = currency or None
    values["manual_fields"] = json.dumps(row.manual_fields, ensure_ascii=False, default=str)
    return tuple(values[name] for name in _COLUMNS)


def _indexed(text: str | None) -> str | None:
    """The text indexed for a column: as written, and in the other German spellings."""
    if text is None or _UMLAUTS.isdisjoint(text):
        return text
    return f"{text} {text.translate(_GERMAN)} {text.translate(_SHARP_S)}"


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _row(r: sqlite3.Row) -> HistoryRow:
    try:
        fields = json.loads(r["manual_fields"] or "{}")
    except ValueError:
        fields = {}
    return HistoryRow(
        id=int(r["id"]),
        chat_id=int(r["chat_id"]),
        thread_id=r["thread_id"],
        submission_id=int(r["submission_id"]),
        product_index=int(r["product_index"]),
        sender_id=int(r["sender_id"]),
        sender_name=str(r["sender_name"]),
        collection_name=r["collection_name"],
        analysed_at=float(r["analysed_at"]),
        title=r["title"],
        brand=r["brand"],
        category=r["category"],
        price_min=r["price_min"],
        price_max=r["price_max"],
        currency=r["currency"],
        purchase_price=r["purchase_price"],
        manual_fields=fields if isinstance(fields, dict) else {},
        photo_file_id=r["photo_file_id"],
        message_link=r["message_link"],
        message_id=r["message_id"],
    )
