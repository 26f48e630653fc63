"""Purchase prices as resellers type them (`purchasePrice=12,5`, the README's own example) are
kept in the results history as numbers, so /report, its CSV and the digest count them; rows
kept before (text and no number) are repaired by migration 13, by the same rule."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from bot import report
from bot.resellscan import BatchStatus
from bot.resellscan.read import as_float
from bot.results import history_rows, purchase_price
from storage import Database
from storage.history import History
from storage.migrations import MIGRATIONS
from storage.models import Submission
from tests.conftest import eventually
from tests.harness import ANNA, Harness, bot_running

pytestmark = pytest.mark.timeout(60)

ANNA_ID = cast(int, ANNA["id"])

CHAT = -100_777
T0 = 1_790_000_000.0

# What a reseller may type, and the number it is (None: not a number).
TYPED: list[tuple[str, float | None]] = [
    ("12,5", 12.5),
    ("12.5", 12.5),
    (" 12,50 € ", 12.5),
    ("12,50€", 12.5),
    ("12.5 EUR", 12.5),
    ("1.234,56", 1234.56),
    ("1,234.56", 1234.56),
    ("1.234.567,89", 1234567.89),
    ("1,234,567.89", 1234567.89),
    ("1 234,5", 1234.5),
    ("1\u202f234,5", 1234.5),
    ("7", 7.0),
    ("+3", 3.0),
    ("-5", -5.0),
    (".5", 0.5),
    ("12.", 12.0),
    ("1.000", 1.0),  # as the intake reads it for Resell Scan
    ("0", 0.0),
    ("1,2.3,4", None),
    ("1,5,0", None),
    ("1e3", None),  # JSON notation, never a price a reseller types
    ("99999999999999", None),  # beyond any sane number
    ("abc", None),
    ("€", None),
    ("", None),
    ("12,5x", None),
    ("--5", None),
    ("+", None),
]


@pytest.mark.parametrize(("text", "number"), TYPED)
def test_purchase_price_reads_what_resellers_type(text: str, number: float | None) -> None:
    assert purchase_price({"size": "42", "purchasePrice": text}) == ("purchasePrice", number)


def test_purchase_price_key_in_any_spelling_and_json_numbers() -> None:
    assert purchase_price({"purchase_price": "12,5"}) == ("purchase_price", 12.5)
    assert purchase_price({"PurchasePrice": 12}) == ("PurchasePrice", 12.0)
    assert purchase_price({"purchasePrice": True}) == ("purchasePrice", None)
    assert purchase_price({"price": "12,5"}) == (None, None)
    assert purchase_price({"purchasePrice": "1", "purchase-price": "2"}) == ("purchasePrice", 1.0)


def _sub(manual_fields: dict[str, Any]) -> Submission:
    values: dict[str, Any] = dict.fromkeys(Submission.__dataclass_fields__)
    values.update(
        id=1,
        chat_id=CHAT,
        user_id=5,
        user_name="Lena",
        message_id=10,
        manual_fields=manual_fields,
        collection_name="Sneakers",
        completed_at=T0,
    )
    return Submission(**values)


def test_history_rows_keep_the_purchase_price_typed() -> None:
    status = BatchStatus.read(
        {"status": "completed", "products": [{"status": "completed", "result": {"title": "A"}}]}
    )
    [kept] = history_rows(_sub({"purchasePrice": "12,5", "size": "42"}), status, [None], None, T0)
    assert kept.purchase_price == 12.5
    assert kept.manual_fields == {"purchasePrice": 12.5, "size": "42"}
    [odd] = history_rows(_sub({"purchasePrice": "ask Ben"}), status, [None], None, T0)
    assert odd.purchase_price is None and odd.manual_fields == {"purchasePrice": "ask Ben"}


# Rows as the code before migration 13 wrote them ---------------------------------------------

_INSERT_V12 = (
    "INSERT INTO results_history (chat_id, thread_id, submission_id, product_index, sender_id,"
    " sender_name, collection_name, analysed_at, title, brand, category, price_min, price_max,"
    " currency, purchase_price, manual_fields, photo_file_id, message_link, message_id)"
    " VALUES (?, NULL, ?, 0, 5, 'Lena', 'Sneakers', ?, ?, NULL, NULL, 20.0, 40.0, 'EUR', ?, ?,"
    " NULL, NULL, NULL)"
)


def _before(text: Any) -> float | None:
    """The purchase_price the code before kept: JSON notation only (bot.resellscan.read)."""
    return as_float(text)


async def _written_before(path: Path, fields: list[dict[str, Any]]) -> None:
    """A version-12 database with one history row per `fields`, written as the bot did then:
    the row with the manual fields' text and `as_float` of purchasePrice, and its FTS copy."""
    db = await Database.open(path, MIGRATIONS[:12])
    try:
        async with db.transaction() as tx:
            for serial, manual in enumerate(fields, start=1):
                paid = next((v for k, v in manual.items() if k.lower() == "purchaseprice"), None)
                row_id = await tx.insert(
                    _INSERT_V12,
                    (
                        CHAT,
                        serial,
                        T0 + serial,
                        f"Item {serial}",
                        _before(paid),
                        json.dumps(manual),
                    ),
                )
                await tx.execute(
                    "INSERT INTO results_history_fts (rowid, title, brand, category,"
                    " collection_name, sender_name) VALUES (?, ?, NULL, NULL, 'Sneakers', 'Lena')",
                    (row_id, f"Item {serial}"),
                )
    finally:
        await db.close()


async def test_migration_13_repairs_rows_kept_with_a_decimal_comma(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    await _written_before(
        path,
        [
            {"purchasePrice": "12,5", "size": "42"},
            {"purchasePrice": "8"},
            {"size": "M"},
            {"purchase_price": "1.234,56", "note": "Größe"},
            {"purchasePrice": "ask Ben"},
            {"purchasePrice": 3.5},
        ],
    )
    db = await Database.open(path)
    try:
        assert await db.user_version() >= 13
        rows = await History(db).between(CHAT, 0, T0 + 100)
        assert [(r.purchase_price, r.manual_fields) for r in rows] == [
            (12.5, {"purchasePrice": 12.5, "size": "42"}),
            (8.0, {"purchasePrice": 8.0}),
            (None, {"size": "M"}),
            (1234.56, {"purchase_price": 1234.56, "note": "Größe"}),
            (None, {"purchasePrice": "ask Ben"}),
            (3.5, {"purchasePrice": 3.5}),
        ]
        _, total = await History(db).find(CHAT, "item")
        assert total == 6, "the search index is untouched"
        summary = report.summarise(rows)
        assert summary.total.purchased == 4
        assert summary.total.amounts[0].purchase == pytest.approx(12.5 + 8 + 1234.56 + 3.5)
        csv = report.report_csv(rows, "de").decode("utf-8-sig").splitlines()
        header = csv[0].split(";")
        first = dict(zip(header, csv[1].split(";"), strict=True))
        assert first["purchase_price"] == "12,50" and first["margin"] == "17,50"
        assert first["field.purchasePrice"] == "12,50"
    finally:
        await db.close()


@pytest.mark.parametrize(("text", "number"), TYPED)
async def test_migration_13_reads_text_as_new_rows_do(
    tmp_path: Path, text: str, number: float | None
) -> None:
    """The SQL repair and bot.results.purchase_price agree on every form."""
    path = tmp_path / "bot.sqlite3"
    await _written_before(path, [{"purchasePrice": text}])
    db = await Database.open(path)
    try:
        [kept] = await History(db).between(CHAT, 0, T0 + 100)
    finally:
        await db.close()
    assert kept.purchase_price == number == purchase_price({"purchasePrice": text})[1]
    assert kept.manual_fields == {"purchasePrice": text if number is None else number}


# End to end ----------------------------------------------------------------------------------


async def test_a_decimal_comma_price_reaches_the_report(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """The README's example caption: Resell Scan gets 12.5, and /report counts it."""
    async with bot_running(settings_for()) as runtime:
        store = runtime.store
        assert store is not None
        await harness.photo(ANNA, caption="/scan Sneakers purchasePrice=12,5 size=42")

        async def kept() -> bool:
            _, total = await store.history.find(ANNA_ID, "")
            return total == 1

        await eventually(kept, what="the product kept")
        [create] = await harness.creates()
        assert create["body"]["products"][0]["manual_fields"]["purchasePrice"] == 12.5
        [row], _ = await store.history.find(ANNA_ID, "")
        assert row.purchase_price == 12.5 and row.manual_fields["purchasePrice"] == 12.5
        await harness.text(ANNA, "/report")
        answer = await harness.wait_text(ANNA_ID, "Purchase prices")
        assert "12.50 EUR (given for 1 of 1)" in answer["text"]
