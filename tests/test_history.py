"""The results history: one row per analysed product, deduplicated, searchable, by period."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from storage.db import Database, Migration
from storage.history import HISTORY_SCHEMA, History, NewHistoryRow, fts_query
from storage.migrations import MIGRATIONS

CHAT = -100_123
OTHER_CHAT = -100_999
T0 = 1_790_000_000.0  # 2026-09-21


def with_history() -> list[Migration]:
    """The project's migrations with the history's: as they are once it is one of them, else
    with HISTORY_SCHEMA as the next version (7 when it was written)."""
    if any(list(m.statements) == HISTORY_SCHEMA for m in MIGRATIONS):
        return list(MIGRATIONS)
    version = max(m.version for m in MIGRATIONS) + 1
    return [*MIGRATIONS, Migration(version, "results history", HISTORY_SCHEMA)]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "bot.sqlite3", with_history())
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def history(db: Database) -> History:
    return History(db)


_serial = iter(range(1, 1_000_000))


def row(title: str | None = "Item", **overrides: Any) -> NewHistoryRow:
    values: dict[str, Any] = {
        "chat_id": CHAT,
        "submission_id": next(_serial),
        "product_index": 0,
        "sender_id": 1,
        "sender_name": "Lena",
        "analysed_at": T0,
        "collection_name": "Sneakers",
        "title": title,
        "price_min": 10.0,
        "price_max": 20.0,
        "currency": "EUR",
    }
    values.update(overrides)
    return NewHistoryRow(**values)


async def titles(history: History, text: str, chat_id: int = CHAT) -> list[str | None]:
    found, total = await history.find(chat_id, text, limit=100)
    assert total == len(found)
    return [r.title for r in found]


async def test_schema_applies_as_a_migration(db: Database) -> None:
    assert await db.user_version() == max(m.version for m in with_history())
    assert await db.integrity_check() == "ok"
    async with db.reading() as tx:
        names = {r[0] for r in await tx.all("SELECT name FROM sqlite_master")}
    assert {"results_history", "results_history_fts", "results_history_chat_time"} <= names


async def test_add_stores_every_field_and_reads_it_back(history: History) -> None:
    new = row(
        "Nike Air Max",
        thread_id=7,
        product_index=2,
        sender_id=42,
        brand="Nike",
        category="Sneakers",
        currency="eur",
        purchase_price=12.5,
        manual_fields={"purchasePrice": 12.5, "size": "42", "note": "Größe"},
        photo_file_id="AgAD",
        message_link="https://t.me/c/123/45",
    )
    assert await history.add([new]) == 1
    [stored] = await history.between(CHAT, T0, T0 + 1)
    assert stored.id > 0
    assert stored.currency == "EUR"  # normalised
    assert stored.manual_fields == {"purchasePrice": 12.5, "size": "42", "note": "Größe"}
    for name in NewHistoryRow.__dataclass_fields__:
        if name in ("currency", "manual_fields"):
            continue
        assert getattr(stored, name) == getattr(new, name), name


async def test_add_is_one_transaction_and_a_duplicate_changes_nothing(history: History) -> None:
    first = row("Jacke", submission_id=500, product_index=0)
    second = row("Hose", submission_id=500, product_index=1)
    assert await history.add([first, second]) == 2
    again = row("Renamed", submission_id=500, product_index=0, price_min=99.0)
    assert await history.add([again, second]) == 0
    assert await history.add([]) == 0
    stored = await history.between(CHAT, 0, T0 + 1)
    assert [(r.title, r.price_min) for r in stored] == [("Jacke", 10.0), ("Hose", 10.0)]
    assert await titles(history, "renamed") == []
    assert await titles(history, "jacke") == ["Jacke"]  # indexed once, not twice


async def test_a_failed_add_keeps_nothing(history: History) -> None:
    broken = row("Broken", sender_name=None)  # NOT NULL
    with pytest.raises(sqlite3.IntegrityError):
        await history.add([row("Fine"), broken])
    assert await history.between(CHAT, 0, T0 + 1) == []
    assert await titles(history, "fine") == []


async def test_not_finite_prices_are_stored_as_unknown(history: History) -> None:
    await history.add([row("Odd", price_min=float("nan"), price_max=float("inf"))])
    [stored] = await history.between(CHAT, 0, T0 + 1)
    assert (stored.price_min, stored.price_max) == (None, None)


async def test_find_ignores_case_and_umlauts(history: History) -> None:
    await history.add(
        [
            row("Müller Jacke"),
            row("Größe 42 Hemd"),
            row("Mueller Mantel"),
            row("STRAẞENSCHUHE"),
            row("Plain Shirt"),
        ]
    )
    assert set(await titles(history, "müller")) == {"Müller Jacke", "Mueller Mantel"}
    assert set(await titles(history, "MÜLLER")) == {"Müller Jacke", "Mueller Mantel"}
    assert set(await titles(history, "mueller")) == {"Müller Jacke", "Mueller Mantel"}
    assert await titles(history, "muller") == ["Müller Jacke"]
    for spelling in ("Größe", "größe", "grösse", "groesse", "grosse", "GRÖSSE", "gro"):
        assert await titles(history, spelling) == ["Größe 42 Hemd"], spelling
    for spelling in ("straße", "strasse", "STRASSEN"):
        assert await titles(history, spelling) == ["STRAẞENSCHUHE"], spelling
    decomposed = "mu\u0308ller"  # "ü" as u + combining diaeresis
    assert set(await titles(history, decomposed)) == {"Müller Jacke", "Mueller Mantel"}


async def test_decomposed_umlauts_in_a_title_are_found(history: History) -> None:
    await history.add([row("Mu\u0308ller Tasche")])
    assert await titles(history, "müller") == ["Müller Tasche"]  # stored NFC


async def test_find_titles_with_emoji(history: History) -> None:
    await history.add([row("👟 Nike Air"), row("Adidas 🔥🔥 Samba")])
    assert await titles(history, "nike") == ["👟 Nike Air"]
    assert await titles(history, "samba adidas") == ["Adidas 🔥🔥 Samba"]
    assert await titles(history, "👟") == []  # no word: nothing, not everything
    assert await titles(history, "👟 nike") == ["👟 Nike Air"]


async def test_find_searches_brand_category_collection_and_sender(history: History) -> None:
    await history.add(
        [
            row("A", brand="Levi's", category="Jeans"),
            row("B", collection_name="Vintage Clothing"),
            row("C", sender_name="Jürgen"),
        ]
    )
    assert await titles(history, "levi") == ["A"]
    assert await titles(history, "jeans") == ["A"]
    assert await titles(history, "vintage") == ["B"]
    assert await titles(history, "jurgen") == ["C"]
    assert await titles(history, "juergen") == ["C"]


@pytest.mark.parametrize(
    "text",
    [
        '" OR * -x:',
        '"',
        '""',
        "*",
        "-",
        ":",
        "OR",
        "AND",
        "NOT nike",
        "NEAR(nike air)",
        "title:nike",
        "^nike",
        "nike*",
        "(nike",
        "nike)",
        "+",
        "'",
        "\\",
        "a" * 300,
        "\x00",
        "{title brand}: nike",
        "x " * 100,
    ],
)
async def test_hostile_search_text_never_raises(history: History, text: str) -> None:
    await history.add([row("Nike Air"), row("Orange x-large Coat")])
    await history.find(CHAT, text, limit=10)


async def test_hostile_words_are_plain_words(history: History) -> None:
    await history.add([row("Nike Air"), row("Orange x-large Coat"), row("Nothing")])
    assert await titles(history, '" OR * -x:') == ["Orange x-large Coat"]  # "or"* and "x"*
    assert await titles(history, "title:nike") == []  # "title" is a word too, not a column
    assert await titles(history, "NOT") == ["Nothing"]
    assert await titles(history, "nike*") == ["Nike Air"]


def test_fts_query_quotes_every_word_as_a_prefix() -> None:
    assert fts_query("Nike air") == '"nike"* AND "air"*'
    assert fts_query('" OR * -x:') == '"or"* AND "x"*'
    assert fts_query("Größe") == '("größe"* OR "groesse"* OR "grösse"*)'
    assert fts_query("nike NIKE") == '"nike"*'
    assert fts_query("👟 -- :") is None
    assert fts_query("") is None
    many = fts_query(" ".join(f"w{i}" for i in range(40)))
    assert many is not None and many.count("*") == 16


async def test_every_word_must_match(history: History) -> None:
    await history.add([row("Nike Air Max"), row("Nike Dunk"), row("Air Jordan")])
    assert set(await titles(history, "nik")) == {"Nike Air Max", "Nike Dunk"}
    assert await titles(history, "nik ai") == ["Nike Air Max"]
    assert await titles(history, "air nike") == ["Nike Air Max"]
    assert set(await titles(history, "ike")) == {"Nike Air Max", "Nike Dunk"}  # inside a word
    assert await titles(history, "ik") == []  # shorter than 3 letters: a prefix only
    assert await titles(history, "nike puma") == []


async def test_find_pages_newest_first_with_the_total(history: History) -> None:
    await history.add([row(f"Shirt {i}", analysed_at=T0 + i) for i in range(25)])
    await history.add([row("Shirt same time", analysed_at=T0 + 24)])  # a later id breaks the tie
    await history.add([row("Hose", analysed_at=T0 + 100)])
    page, total = await history.find(CHAT, "shirt", limit=10)
    assert total == 26
    assert [r.title for r in page[:3]] == ["Shirt same time", "Shirt 24", "Shirt 23"]
    second, total = await history.find(CHAT, "shirt", limit=10, offset=10)
    assert total == 26 and len(second) == 10
    last, total = await history.find(CHAT, "shirt", limit=10, offset=20)
    assert total == 26 and [r.title for r in last][-1] == "Shirt 0"
    seen = [r.id for r in page + second + last]
    assert len(set(seen)) == 26
    beyond, total = await history.find(CHAT, "shirt", limit=10, offset=30)
    assert beyond == [] and total == 26


async def test_empty_text_lists_the_chat_newest_first(history: History) -> None:
    await history.add([row("Old", analysed_at=T0), row("New", analysed_at=T0 + 5)])
    await history.add([row("Elsewhere", chat_id=OTHER_CHAT)])
    found, total = await history.find(CHAT, "  ", limit=1)
    assert [r.title for r in found] == ["New"] and total == 2


async def test_find_keeps_chats_apart(history: History) -> None:
    await history.add([row("Nike Here"), row("Nike There", chat_id=OTHER_CHAT)])
    assert await titles(history, "nike") == ["Nike Here"]
    assert await titles(history, "nike", OTHER_CHAT) == ["Nike There"]
    assert await titles(history, "there") == []


async def test_between_is_half_open_oldest_first_and_per_chat(history: History) -> None:
    await history.add(
        [
            row("before", analysed_at=T0 - 0.001),
            row("start", analysed_at=T0),
            row("middle", analysed_at=T0 + 50),
            row("end", analysed_at=T0 + 100),
            row("other chat", analysed_at=T0 + 10, chat_id=OTHER_CHAT),
        ]
    )
    found = await history.between(CHAT, T0, T0 + 100)
    assert [r.title for r in found] == ["start", "middle"]
    assert await history.between(CHAT, T0 + 200, T0 + 300) == []


async def test_chats_with_rows(history: History) -> None:
    assert await history.chats_with_rows() == []
    await history.add([row("a"), row("b"), row("c", chat_id=OTHER_CHAT)])
    assert await history.chats_with_rows() == sorted([CHAT, OTHER_CHAT])


async def test_deleting_a_row_removes_it_from_the_index(db: Database, history: History) -> None:
    await history.add([row("Nike One"), row("Nike Two")])
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM results_history WHERE title = 'Nike One'")
    assert await titles(history, "nike") == ["Nike Two"]
    async with db.reading() as tx:
        check = await tx.one(
            "INSERT INTO results_history_fts (results_history_fts, rank)"
            " VALUES ('integrity-check', 1)"
        )
    assert check is None


async def test_searchable_columns_cannot_go_stale(db: Database, history: History) -> None:
    await history.add([row("Nike One")])
    with pytest.raises(sqlite3.IntegrityError, match="fixed"):
        async with db.transaction() as tx:
            await tx.execute("UPDATE results_history SET title = 'Puma'")
    async with db.transaction() as tx:  # other columns may change
        await tx.execute("UPDATE results_history SET purchase_price = 5")
    [stored] = await history.between(CHAT, 0, T0 + 1)
    assert stored.purchase_price == 5
