"""The CSV export (bot/export.py): a pure function, read back as Excel would split it."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.export import KNOWN_COLUMNS, results_csv
from bot.resellscan import BatchStatus
from bot.results import result_fields

BOM = "\ufeff"


def parse(data: bytes) -> list[list[str]]:
    text = data.decode("utf-8")
    assert text.startswith(BOM)
    return list(csv.reader(io.StringIO(text.removeprefix(BOM), newline=""), delimiter=";"))


def table(data: bytes) -> list[dict[str, str]]:
    header, *rows = parse(data)
    assert len(set(header)) == len(header), "a column is repeated"
    assert all(len(row) == len(header) for row in rows)
    return [dict(zip(header, row, strict=True)) for row in rows]


def header_of(data: bytes) -> list[str]:
    return parse(data)[0]


def product(pid: str, result: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"product_id": pid, "status": "completed", "result": result, **extra}


SNEAKER = {
    "title": "Nike Air Max 90",
    "brand": {"name": "Nike", "id": 7},
    "category": "Sneakers",
    "condition": "used",
    "estimatedPrice": {"min": 40, "max": 61.5, "currency": "EUR", "source": "ebay"},
    "confidence": 0.68,
    "details": {"colour": "white", "size": {"eu": 42, "us": 8.5}},
    "tags": ["running", "retro"],
}


def batch(*products: Any) -> BatchStatus:
    return BatchStatus.read({"batch_id": "b1", "status": "completed", "products": list(products)})


# File format ----------------------------------------------------------------------------------


def test_bom_semicolons_and_crlf_line_ends() -> None:
    data = results_csv(batch(product("p1", {**SNEAKER, "note": 'a; "b"\nc'})))
    assert data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig")
    header, row = text.split("\r\n")[0], text.split("\r\n")[1]
    assert header.startswith("index;product_id;status;error;title;") and "," not in header
    assert row.startswith("1;p1;completed;;Nike Air Max 90;Nike;Sneakers;used;40;61.50;EUR;68;")
    assert text.endswith('"a; ""b""\nc"\r\n')  # quoted only where needed
    assert table(data)[0]["result.note"] == 'a; "b"\nc'


def test_header_order_is_known_then_fields_then_result_and_the_same_in_german() -> None:
    status = batch(product("p1", SNEAKER), product("p2", {"title": "Bag", "material": "leather"}))
    fields = {"purchasePrice": "12.50", "storage": "Shelf 3"}
    english = header_of(results_csv(status, manual_fields=fields, lang="en"))
    assert english == [
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
        "field.purchasePrice",
        "field.storage",
        "result.brand.id",
        "result.estimatedPrice.source",
        "result.details.colour",
        "result.details.size.eu",
        "result.details.size.us",
        "result.tags",
        "result.material",
    ]
    assert tuple(english[: len(KNOWN_COLUMNS)]) == KNOWN_COLUMNS
    assert header_of(results_csv(status, manual_fields=fields, lang="de")) == english


# Manual fields --------------------------------------------------------------------------------


def test_manual_fields_are_columns_with_their_values() -> None:
    status = batch(product("p1", SNEAKER), product("p2", {"title": "Bag"}))
    rows = table(results_csv(status, manual_fields={"purchasePrice": 12.5, "storage": "Shelf 3"}))
    assert [r["field.purchasePrice"] for r in rows] == ["12.50", "12.50"]
    assert [r["field.storage"] for r in rows] == ["Shelf 3", "Shelf 3"]


def test_echoed_manual_fields_win_and_add_columns_and_share_spellings() -> None:
    status = batch(
        product(
            "p1",
            SNEAKER,
            product_data={"manual_fields": {"purchase_price": 9, "size": "42", "empty": None}},
        ),
        product("p2", {"title": "Bag"}, product_data={"manualFields": {"purchasePrice": 20}}),
        product("p3", {"title": "Cap"}),
    )
    data = results_csv(status, manual_fields={"purchasePrice": "15"})
    fields = [c for c in header_of(data) if c.startswith("field.")]
    assert fields == ["field.purchasePrice", "field.size", "field.empty"]
    rows = table(data)
    assert [r["field.purchasePrice"] for r in rows] == ["9", "20", "15"]
    assert [r["field.size"] for r in rows] == ["42", "", ""]


def test_no_manual_fields_means_no_field_columns() -> None:
    header = header_of(results_csv(batch(product("p1", SNEAKER))))
    assert not [c for c in header if c.startswith("field.")]


# No duplicated columns ------------------------------------------------------------------------


def test_values_shown_in_known_columns_are_not_repeated_as_result_columns() -> None:
    data = results_csv(batch(product("p1", SNEAKER)))
    header = header_of(data)
    for shown in (
        "result.title",
        "result.brand",
        "result.brand.name",
        "result.category",
        "result.condition",
        "result.confidence",
        "result.estimatedPrice.min",
        "result.estimatedPrice.max",
        "result.estimatedPrice.currency",
        "confidence",
    ):
        assert shown not in header
    row = table(data)[0]
    assert row["result.brand.id"] == "7"  # the part of `brand` the brand column does not show
    assert row["result.estimatedPrice.source"] == "ebay"


@pytest.mark.parametrize(
    ("result", "shown", "kept"),
    [
        ({"price": 12.5, "currency": "USD"}, {"result.price", "result.currency"}, set()),
        ({"price_min": 5, "max_price": 9}, {"result.price_min", "result.max_price"}, set()),
        (
            {"estimatedPrice": {"value": 50, "currency": "EUR"}},
            {"result.estimatedPrice.value"},
            set(),
        ),
        ({"title": "A", "name": "B"}, {"result.title"}, {"result.name"}),
        ({"condition": "", "state": "new"}, {"result.state"}, {"result.condition"}),
        ({"confidence": "high", "score": 0.9}, set(), {"result.confidence", "result.score"}),
        ({"brand": ["Nike", "Jordan"]}, {"result.brand"}, set()),
        ({"brand": [{"name": "Nike", "id": 1}]}, set(), {"result.brand"}),
        ({"brand": list("abcdef")}, set(), {"result.brand"}),  # the label joins only 5
        ({"price": "n/a", "price_min": 3}, {"result.price_min"}, {"result.price"}),
    ],
)
def test_exactly_the_leaves_a_known_column_was_read_from_count_as_shown(
    result: dict[str, Any], shown: set[str], kept: set[str]
) -> None:
    header = set(header_of(results_csv(batch(product("p1", result)))))
    assert not shown & header
    assert kept <= header


def test_unreadable_value_in_one_product_is_a_column_blank_where_it_was_shown() -> None:
    rows = table(
        results_csv(
            batch(product("p1", {"confidence": 0.9}), product("p2", {"confidence": "high"}))
        )
    )
    assert [(r["confidence_percent"], r["result.confidence"]) for r in rows] == [
        ("90", ""),
        ("", "high"),
    ]


def test_known_columns_agree_with_the_chat_message_reader_in_every_sandbox_dialect() -> None:
    shapes: list[dict[str, Any]] = [
        SNEAKER,
        {  # snake dialect
            "title": "T",
            "brand": {"name": "Adidas", "id": 2},
            "category": "Shoes",
            "condition": "new",
            "price": {"min": 5, "max": 9, "currency": "EUR"},
            "confidence": "0.85",
        },
        {  # envelope dialect
            "title": "T",
            "brand": "Puma",
            "estimatedPrice": {"value": 42.5, "currency": "USD"},
            "confidence": 91,
        },
    ]
    rows = table(results_csv(batch(*(product(f"p{i}", r) for i, r in enumerate(shapes)))))
    for row, result in zip(rows, shapes, strict=True):
        facts = result_fields(result)
        for column in ("title", "brand", "category", "condition", "currency"):
            assert row[column] == (facts[column] or "")
        assert row["confidence_percent"] == str(facts["confidence"])
    assert [(r["price_min"], r["price_max"]) for r in rows] == [
        ("40", "61.50"),
        ("5", "9"),
        ("42.50", "42.50"),
    ]
    assert [r["confidence_percent"] for r in rows] == ["68", "85", "91"]
    assert not {"result.brand.name", "result.price.min", "result.estimatedPrice.value"} & set(
        rows[0]
    )


# Numbers --------------------------------------------------------------------------------------


NUMBERS = {
    "whole": 40,
    "whole_float": 40.0,
    "half": 12.5,
    "fine": 0.125,
    "negative": -3.75,
    "big": 1e20,
    "tiny": 1e-7,
    "numeric_string": "12.5",
    "whole_string": "40.00",
    "leading_zero": "0123",
    "exponent_string": "1e5",
    "comma_string": "12,5",
}
EXPECTED = {
    "whole": ("40", "40"),
    "whole_float": ("40", "40"),
    "half": ("12.50", "12,50"),
    "fine": ("0.125", "0,125"),
    "negative": ("-3.75", "-3,75"),
    "big": ("100000000000000000000", "100000000000000000000"),
    "tiny": ("0.0000001", "0,0000001"),
    "numeric_string": ("12.50", "12,50"),
    "whole_string": ("40", "40"),
    "leading_zero": ("0123", "0123"),  # text: a number would lose the zero
    "exponent_string": ("1e5", "1e5"),
    "comma_string": ("12,5", "12,5"),
}


@pytest.mark.parametrize(("lang", "position"), [("en", 0), ("de", 1), ("DE-de", 1), ("fr", 0)])
def test_one_number_rule_decimal_point_in_english_comma_in_german(lang: str, position: int) -> None:
    status = batch(
        product("p1", {"price": {"min": 12.5, "max": 40}, "confidence": 0.917, **NUMBERS})
    )
    row = table(results_csv(status, manual_fields={"purchasePrice": 9.9}, lang=lang))[0]
    assert (row["price_min"], row["price_max"]) == (EXPECTED["half"][position], "40")
    assert row["confidence_percent"] == "92"
    assert row["field.purchasePrice"] == ("9.90", "9,90")[position]
    for key, expected in EXPECTED.items():
        assert row[f"result.{key}"] == expected[position], key
    assert row["index"] == "1"


def test_no_cell_has_a_percent_sign_and_no_money_mixes_styles() -> None:
    status = batch(
        product("p1", {"price": 100, "confidence": "85%"}),
        product("p2", {"price": 91.7, "confidence": 91.7}),
    )
    text = results_csv(status, lang="de").decode("utf-8-sig")
    assert "%" not in text
    rows = table(results_csv(status, lang="de"))
    assert [(r["price_min"], r["confidence_percent"]) for r in rows] == [
        ("100", "85"),
        ("91,70", "92"),
    ]


@pytest.mark.parametrize(
    ("confidence", "percent"),
    [
        (0.68, "68"),
        ("85", "85"),
        (91.7, "92"),
        ("0.85", "85"),
        ("85%", "85"),
        (1, "100"),
        (0, "0"),
        (250, "100"),
        ("high", ""),
        (None, ""),
        (-1, ""),
        ([0.5], ""),
    ],
)
def test_confidence_is_one_whole_percentage(confidence: Any, percent: str) -> None:
    row = table(results_csv(batch(product("p1", {"title": "T", "confidence": confidence}))))[0]
    assert row["confidence_percent"] == percent


def test_text_columns_are_not_read_as_numbers() -> None:
    row = table(results_csv(batch(product("007", {"title": "1.5", "brand": 3.0})), lang="de"))[0]
    assert (row["product_id"], row["title"], row["brand"]) == ("007", "1.5", "3")


# Nested, failed, unreadable, odd --------------------------------------------------------------


def test_nested_result_values_are_flattened_to_dotted_columns() -> None:
    row = table(results_csv(batch(product("p1", SNEAKER)), lang="de"))[0]
    assert row["result.details.colour"] == "white"
    assert row["result.details.size.eu"] == "42"
    assert row["result.details.size.us"] == "8,50"
    assert json.loads(row["result.tags"]) == ["running", "retro"]


def test_a_failed_product_has_status_and_error_and_no_analysis() -> None:
    status = batch(
        product("p1", SNEAKER),
        {
            "product_id": "p2",
            "status": "failed",
            "error": {"code": "analysis_failed", "message": "blurry photo"},
            "result": {"title": "half a guess", "confidence": 0.1, "extra": 1},
        },
        {"product_id": "p3", "status": "FAILED", "error": None},
    )
    rows = table(results_csv(status, manual_fields={"purchasePrice": 5}))
    failed = rows[1]
    assert (failed["index"], failed["product_id"], failed["status"]) == ("2", "p2", "failed")
    assert failed["error"] == "blurry photo"
    assert failed["field.purchasePrice"] == "5"
    analysis = [c for c in failed if c not in ("index", "product_id", "status", "error")]
    assert all(failed[c] == "" for c in analysis if not c.startswith("field."))
    assert "result.extra" not in failed  # only a failed product had it
    assert (rows[2]["status"], rows[2]["error"]) == ("failed", "failed")
    assert rows[0]["error"] == ""


def test_a_batch_without_readable_products_lists_every_raw_field() -> None:
    status = BatchStatus.read(
        {"batch": "weird", "items": "nope", "n": {"deep": 3.5, "list": [1, 2]}, "e": {}, "z": None}
    )
    assert not status.products
    for lang, deep in (("en", "3.50"), ("de", "3,50")):
        header, *rows = parse(results_csv(status, lang=lang))
        assert header == ["field", "value"]
        assert rows == [
            ["batch", "weird"],
            ["items", "nope"],
            ["n.deep", deep],
            ["n.list", "[1, 2]"],
            ["e", "{}"],
            ["z", ""],
        ]


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "text",
        42,
        [],
        {},
        {"products": []},
        {"products": "nope"},
        {"products": [1, "x", None]},
        {"data": {"products": [{"result": None}]}},
        [{"product_id": 7, "status": None, "result": {"confidence": float("nan")}}],
        [{"result": {"price": {"min": "n/a", "max": [1]}, "brand": {"id": 3}, "a": {"b": {}}}}],
        [{"result": {"title": None, "estimatedPrice": None, "x": True, "y": [None, {"z": 1}]}}],
        [{"result": {"a.b": 1, "a": {"b": 2}}}],
        [{"result": {"price": float("inf"), "n": -0.0, "m": 10**30}}],
        [{"result": {"title": ["a"] * 1000, "brand": [[[["deep"]]]]}}],
        [{"error": ["", {"detail": "x"}], "product_data": {"manual_fields": "no"}}],
    ],
)
def test_odd_payloads_never_raise_and_read_back(payload: Any) -> None:
    status = BatchStatus.read(payload)
    for lang in ("en", "de"):
        data = results_csv(
            status, manual_fields={"n": 1.5, "x": None, "l": [1], "d": {}}, lang=lang
        )
        if status.products:
            table(data)
        else:
            assert parse(data)[0] == ["field", "value"]


def test_nesting_deeper_than_python_recurses_does_not_raise() -> None:
    deep_list: list[Any] = []
    deep_dict: dict[str, Any] = {"v": 1}
    for _ in range(5000):
        deep_list, deep_dict = [deep_list], {"k": deep_dict}
    status = batch(product("p1", {"title": deep_list, "x": deep_dict, "price": 3}))
    row = table(results_csv(status))[0]
    assert row["result.title"] == "[…]"  # the reader gives up, the cell says so
    assert row["result.x" + ".k" * 5000 + ".v"] == "1"


def test_dotted_keys_that_print_alike_get_distinct_columns() -> None:
    data = results_csv(batch(product("p1", {"a.b": 1, "a": {"b": 2}})))
    row = table(data)[0]
    assert (row["result.a.b"], row["result.a.b#2"]) == ("1", "2")


def test_text_that_excel_would_run_as_a_formula_is_prefixed() -> None:
    status = batch(product("p1", {"title": '=HYPERLINK("x")', "note": "@cmd", "n": -5}))
    row = table(results_csv(status, manual_fields={"phone": "+49 170 1234567"}))[0]
    assert row["title"] == '\'=HYPERLINK("x")'
    assert row["result.note"] == "'@cmd"
    assert row["field.phone"] == "'+49 170 1234567"
    assert row["result.n"] == "-5"  # numbers are never prefixed


def test_it_is_pure() -> None:
    status = batch(product("p1", SNEAKER))
    fields = {"purchasePrice": 12.5}
    before = (json.dumps(status.raw), dict(fields))
    assert results_csv(status, manual_fields=fields) == results_csv(status, manual_fields=fields)
    assert (json.dumps(status.raw), fields) == before


# Any JSON -------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "0.5", "85", "85%", "012", "12,5", "=x", "a;b", 'q"\n'])
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "title",
                    "name",
                    "brand",
                    "price",
                    "min",
                    "max",
                    "value",
                    "currency",
                    "confidence",
                    "score",
                    "a",
                    "a.b",
                    "b",
                    "id",
                    "state",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=15,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    results=st.lists(
        st.dictionaries(st.sampled_from(["title", "price", "brand", "x"]), JSON) | JSON, max_size=4
    ),
    fields=st.dictionaries(st.text(min_size=1, max_size=5), JSON, max_size=3),
    lang=st.sampled_from(["en", "de"]),
)
def test_any_result_reads_back_and_loses_no_leaf(
    results: list[Any], fields: dict[str, Any], lang: str
) -> None:
    status = batch(
        *(product(f"p{i}", r) if isinstance(r, dict) else r for i, r in enumerate(results))
    )
    data = results_csv(status, manual_fields=fields, lang=lang)
    if not status.products:
        assert parse(data)[0] == ["field", "value"]
        return
    rows = table(data)
    assert len(rows) == len(status.products)
    for row, item in zip(rows, status.products, strict=True):
        for key, value in fields.items():
            assert (row[f"field.{key}"] == "") == (value is None or value == ""), key
        if item.failed:
            continue
        known = any(row[c] for c in KNOWN_COLUMNS[4:])
        for key, value in item.result.items():
            column = f"result.{key}"
            if isinstance(value, dict) or "." in key:
                continue
            if column not in row or not row[column]:  # left out: shown in a known column
                assert value is None or value == "" or known, (key, value)
