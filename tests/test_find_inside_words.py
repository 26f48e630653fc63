"""/find matches inside words (German compounds: `schuh` finds "Lederschuhe" and
"Kinderschuhe"), through a trigram index beside the word index, best matches first; words
shorter than 3 letters still match as prefixes; migration 17 indexes the rows kept before."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from storage import Database
from storage.history import _FOLD, History, NewHistoryRow, _indexed
from storage.migrations import MIGRATIONS
from tests.harness import ANNA, Harness, bot_running

pytestmark = pytest.mark.timeout(60)

CHAT = -100_555
T0 = 1_790_000_000.0
ANNA_ID = cast(int, ANNA["id"])

_serial = iter(range(1, 1_000_000))


def row(title: str, at: float = T0, **overrides: Any) -> NewHistoryRow:
    values: dict[str, Any] = {
        "chat_id": CHAT,
        "submission_id": next(_serial),
        "product_index": 0,
        "sender_id": 1,
        "sender_name": "Ben",
        "analysed_at": at,
        "collection_name": "Mode",
        "title": title,
    }
    values.update(overrides)
    return NewHistoryRow(**values)


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[History]:
    db = await Database.open(tmp_path / "bot.sqlite3")
    try:
        yield History(db)
    finally:
        await db.close()


async def titles(history: History, text: str) -> list[str | None]:
    found, total = await history.find(CHAT, text, limit=100)
    assert total == len(found)
    return [r.title for r in found]


async def test_schuh_finds_german_compounds_best_matches_first(history: History) -> None:
    await history.add(
        [
            row("Schuh Größe 38", at=T0),
            row("Schuhe Nike", at=T0 + 1),
            row("Lederschuhe braun", at=T0 + 3),  # newer, yet after the better matches
            row("Kinderschuhe Klett", at=T0 + 2),
            row("Handschuh", at=T0 + 4),
            row("Stiefel", at=T0 + 5),
        ]
    )
    assert await titles(history, "schuh") == [
        "Schuh Größe 38",  # a whole word
        "Schuhe Nike",  # a word starting with it
        "Handschuh",  # inside words, newest first
        "Lederschuhe braun",
        "Kinderschuhe Klett",
    ]
    assert await titles(history, "SCHUHE") == [
        "Schuhe Nike",
        "Lederschuhe braun",
        "Kinderschuhe Klett",
    ]
    assert await titles(history, "leder schuh") == ["Lederschuhe braun"]


async def test_short_words_still_match_as_prefixes(history: History) -> None:
    await history.add([row("Lederschuhe"), row("Kinderschuhe"), row("Le Creuset Topf")])
    assert set(await titles(history, "le")) == {"Lederschuhe", "Le Creuset Topf"}
    assert await titles(history, "sc") == [], "inside a word from 3 letters on"
    assert set(await titles(history, "l")) == {"Lederschuhe", "Le Creuset Topf"}
    assert await titles(history, "kinder sc") == [], "every word must match"
    assert await titles(history, "schuh ki") == ["Kinderschuhe"]


async def test_inside_words_umlauts_and_accents_fold(history: History) -> None:
    await history.add(
        [
            row("Übergröße Mantel"),
            row("Damen-Übergrösse"),
            row("Crème brûlée Förmchen"),
            row("Schmüller Jacke"),
        ]
    )
    for spelling in ("größe", "grösse", "groesse", "grosse", "GRÖSSE"):
        assert set(await titles(history, spelling)) == {"Übergröße Mantel", "Damen-Übergrösse"}
    assert await titles(history, "rulee") == ["Crème brûlée Förmchen"]
    assert await titles(history, "ormchen") == ["Crème brûlée Förmchen"]
    assert await titles(history, "müller") == ["Schmüller Jacke"]
    assert await titles(history, "mueller") == ["Schmüller Jacke"]
    assert await titles(history, "muller") == ["Schmüller Jacke"]


async def test_inside_words_of_every_searched_column(history: History) -> None:
    await history.add(
        [
            row("A", brand="Birkenstock"),
            row("B", category="Damenschuhe"),
            row("C", collection_name="Winterjacken"),
            row("D", sender_name="Hans-Jürgen"),
        ]
    )
    assert await titles(history, "stock") == ["A"]
    assert await titles(history, "schuh") == ["B"]
    assert await titles(history, "jacken") == ["C"]
    assert await titles(history, "urgen") == ["D"]


async def test_a_deleted_row_leaves_the_trigram_index(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "bot.sqlite3")
    try:
        history = History(db)
        await history.add([row("Lederschuhe"), row("Kinderschuhe")])
        async with db.transaction() as tx:
            await tx.execute("DELETE FROM results_history WHERE title = 'Lederschuhe'")
        assert await titles(history, "schuh") == ["Kinderschuhe"]
        async with db.reading() as tx:
            left = await tx.all("SELECT rowid FROM results_history_trigram")
            check = await tx.one(
                "INSERT INTO results_history_trigram (results_history_trigram, rank)"
                " VALUES ('integrity-check', 1)"
            )
        assert len(left) == 1 and check is None
    finally:
        await db.close()


# Migration 17 on rows kept before it ---------------------------------------------------------

EVERY_FOLDED = "".join(chr(c) for c in _FOLD)  # every character the fold changes


async def test_migration_17_indexes_rows_kept_before_as_new_rows_are(tmp_path: Path) -> None:
    """Version 16 as the bot wrote it (the row, its word index copy with the German spellings);
    after migration 17 those rows are found inside words, and their trigram text is exactly
    what the code writes for a row added now (the SQL fold and `_FOLD` agree)."""
    path = tmp_path / "bot.sqlite3"
    texts = [
        ("Lederschuhe", "Birkenstock", None, "Kleidung", "Hans-Jürgen"),
        (f"Alle {EVERY_FOLDED} Zeichen", "Größe", "Crème", None, "Ñandú"),
        ("Plain", None, None, None, "Lena"),
    ]
    old = await Database.open(path, MIGRATIONS[:16])
    try:
        async with old.transaction() as tx:
            for serial, (title, brand, category, collection, sender) in enumerate(texts, 1):
                row_id = await tx.insert(
                    "INSERT INTO results_history (chat_id, submission_id, product_index,"
                    " sender_id, sender_name, collection_name, analysed_at, title, brand,"
                    " category) VALUES (?, ?, 0, 1, ?, ?, ?, ?, ?, ?)",
                    (CHAT, serial, sender, collection, T0 + serial, title, brand, category),
                )
                await tx.execute(
                    "INSERT INTO results_history_fts (rowid, title, brand, category,"
                    " collection_name, sender_name) VALUES (?, ?, ?, ?, ?, ?)",
                    (row_id, *(_indexed(t) for t in (title, brand, category, collection, sender))),
                )
    finally:
        await old.close()

    db = await Database.open(path)
    try:
        history = History(db)
        assert await titles(history, "schuh") == ["Lederschuhe"]
        assert await titles(history, "stock") == ["Lederschuhe"]
        assert await titles(history, "urgen") == ["Lederschuhe"]
        assert await titles(history, "nandu") == [f"Alle {EVERY_FOLDED} Zeichen"]
        # The same texts added now, in another chat: the same trigram text.
        await history.add(
            [
                row(title, chat_id=CHAT - 1, brand=brand, category=category,
                    collection_name=collection, sender_name=sender or "")
                for title, brand, category, collection, sender in texts
            ]
        )  # fmt: skip
        async with db.reading() as tx:
            indexed = await tx.all(
                "SELECT h.chat_id, t.title, t.brand, t.category, t.collection_name,"
                " t.sender_name FROM results_history_trigram t"
                " JOIN results_history h ON h.id = t.rowid ORDER BY h.chat_id, h.id"
            )
        added = [tuple(r)[1:] for r in indexed if r[0] == CHAT - 1]
        migrated = [tuple(r)[1:] for r in indexed if r[0] == CHAT]
        assert len(migrated) == 3 and migrated == added
    finally:
        await db.close()


# End to end -----------------------------------------------------------------------------------


async def test_find_in_the_chat_shows_best_matches_first(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()) as runtime:
        assert runtime.store is not None
        now = time.time()
        await runtime.store.history.add(
            [
                row(title, at=now - 60 * age, chat_id=ANNA_ID, sender_name="Anna Berg")
                for title, age in (
                    ("Kinderschuhe Klett", 1),
                    ("Lederschuhe braun", 2),
                    ("Schuh Größe 38", 5),
                    ("Stiefel", 0),
                )
            ]
        )
        await harness.text(ANNA, "/find schuh")
        answer = await harness.wait_text(ANNA_ID, "🔎")
        text = answer["text"]
        assert "“schuh”: 3 found, 1–3 (best matches first)" in text, text
        assert text.index("Schuh Größe 38") < text.index("Kinderschuhe") < text.index("Leder")
        assert "Stiefel" not in text
