"""Pure intake logic: caption parsing, field coercion, collection resolution, examples."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from pydantic import SecretStr

from bot.intake import (
    CaptionError,
    Catalog,
    NotForUs,
    ScanRequest,
    coerce_fields,
    example_caption,
    parse_caption,
    parse_number,
    resolve_collection,
    tokenize,
)
from bot.resellscan import Collection, ManualField, NotFound, ResellScanClient


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/scan Sneakers", ScanRequest("Sneakers", {}, True)),
        (
            "/scan Sneakers purchasePrice=12,5",
            ScanRequest("Sneakers", {"purchasePrice": "12,5"}, True),
        ),
        ("/scan@ResellBot Sneakers", ScanRequest("Sneakers", {}, True)),
        ("/SCAN sneakers", ScanRequest("sneakers", {}, True)),
        ("/scan Vintage Clothing size=M", ScanRequest("Vintage Clothing", {"size": "M"}, True)),
        ('/scan "Vintage Clothing" size=M', ScanRequest("Vintage Clothing", {"size": "M"}, True)),
        (
            "/scan „Trading Cards“ condition=used",
            ScanRequest("Trading Cards", {"condition": "used"}, True),
        ),
        (
            '/scan Levi\'s note="like new, no box"',
            ScanRequest("Levi's", {"note": "like new, no box"}, True),
        ),
        ("/scan", ScanRequest(None, {}, True)),
        ("/scan purchasePrice=3", ScanRequest(None, {"purchasePrice": "3"}, True)),
        ("purchasePrice=12.5 size=42", ScanRequest(None, {"purchasePrice": "12.5", "size": "42"})),
        ("  \n", None),
        (None, None),
        ("my new shoes", None),
    ],
)
def test_parse_caption(text: str | None, expected: ScanRequest | None) -> None:
    assert parse_caption(text, "ResellBot") == expected


def test_caption_for_another_bot_is_not_for_us() -> None:
    with pytest.raises(NotForUs):
        parse_caption("/scan@OtherBot Sneakers", "ResellBot")
    assert parse_caption("/scan@resellbot Sneakers", "ResellBot") == ScanRequest(
        "Sneakers", {}, True
    )


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('/scan "Vintage', "unbalanced_quotes"),
        ('/scan X note="open', "unbalanced_quotes"),
        ("/help me", "unknown_caption_command"),
        ("/scan Sneakers size=42 extra", "text_after_fields"),
        ("shoes purchasePrice=3", "text_before_fields"),
        ("/scan X 1bad=3", "bad_pair"),
        ("/scan X =3", "bad_pair"),
        ("/scan X price=", "empty_value"),
        ("/scan X a=1 a=2", "duplicate_field"),
        ("/scan " + "x" * 4080, "name_too_long"),
        ("/scan X note=" + "y" * 301, "value_too_long"),
    ],
)
def test_parse_caption_errors(text: str, code: str) -> None:
    with pytest.raises(CaptionError) as caught:
        parse_caption(text, "ResellBot")
    assert caught.value.code == code


def test_a_problem_quotes_at_most_a_short_piece_of_the_caption() -> None:
    """Before: `/scan X a=1` followed by 4,000 characters was quoted whole, and the reply
    was too long for Telegram ("something went wrong")."""
    with pytest.raises(CaptionError) as caught:
        parse_caption("/scan X a=1 " + "z" * 4000, "ResellBot")
    assert caught.value.code == "text_after_fields"
    assert len(caught.value.params["text"]) == 60 and caught.value.params["text"].endswith("…")


def test_tokenize_keeps_apostrophes_and_quoted_values() -> None:
    tokens = tokenize("Levi's  jeans note='two words'")
    assert [t.text for t in tokens] == ["Levi's", "jeans", "note=two words"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12.5", 12.5),
        ("12,5", 12.5),
        ("1.234,56", 1234.56),
        ("1,234.56", 1234.56),
        ("12 €", 12.0),
        ("-3", -3.0),
        (".5", 0.5),
        ("7", 7.0),
    ],
)
def test_parse_number(text: str, value: float) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1,2,3", "12.5.1", "1e5", "nan", "inf"])
def test_parse_number_rejects(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (the message is the input itself)
        parse_number(text)


FIELDS = [
    ManualField(key="purchasePrice", label="Price", type="number", required=True),
    ManualField(key="quantity", label="Qty", type="integer"),
    ManualField(key="boxIncluded", label="Box", type="boolean"),
    ManualField(
        key="condition", label="Condition", type="select", options=("new", "like_new", "used")
    ),
    ManualField(key="size", label="Size", type="text"),
]


def test_coerce_fields_typed_values() -> None:
    values, problems = coerce_fields(
        {
            "purchasePrice": "12,5",
            "quantity": "3",
            "boxIncluded": "ja",
            "condition": "USED",
            "size": "42",
        },
        FIELDS,
    )
    assert problems == []
    assert values == {
        "purchasePrice": 12.5,
        "quantity": 3,
        "boxIncluded": True,
        "condition": "used",
        "size": "42",
    }


def test_coerce_fields_every_problem() -> None:
    values, problems = coerce_fields(
        {"quantity": "2.5", "boxIncluded": "maybe", "condition": "mint", "purchasPrice": "1"},
        FIELDS,
    )
    assert values == {}
    codes = {(p.code, p.key) for p in problems}
    assert codes == {
        ("integer", "quantity"),
        ("boolean", "boxIncluded"),
        ("option", "condition"),
        ("unknown", "purchasPrice"),
        ("missing", "purchasePrice"),
    }
    unknown = next(p for p in problems if p.code == "unknown")
    assert unknown.suggestion == "purchasePrice"


def test_numbers_must_be_finite_and_sane() -> None:
    """310 nines parse as float infinity, which JSON cannot carry: a clear field problem
    before anything is sent, never a request that fails to encode."""
    for text in ("9" * 310, "9" * 30 + ",5", "10000000000000", "-2000000000000"):
        values, problems = coerce_fields({"purchasePrice": text}, FIELDS)
        assert values == {} and [(p.code, p.key) for p in problems] == [
            ("range", "purchasePrice")
        ], text
    values, _ = coerce_fields({"quantity": "999999999999"}, FIELDS)
    assert values == {"quantity": 999999999999}


@pytest.mark.parametrize(
    ("text", "code"),
    [("-5", "price_negative"), ("-0", "price_negative"), ("99999999999", "price_max")],
)
def test_prices_are_zero_or_more_and_below_the_ceiling(text: str, code: str) -> None:
    """Before: all three were accepted, and /report showed a margin of −99.999.998.846,00 €."""
    values, problems = coerce_fields({"purchasePrice": text}, FIELDS, max_price=1000)
    assert values == {} and [(p.code, p.key) for p in problems] == [(code, "purchasePrice")]
    assert code != "price_max" or problems[0].limit == 1000
    values, problems = coerce_fields({"purchasePrice": "1000"}, FIELDS, max_price=1000)
    assert values == {"purchasePrice": 1000.0} and problems == []
    assert coerce_fields({"purchasePrice": "0"}, FIELDS)[0] == {"purchasePrice": 0.0}


def test_field_keys_match_case_insensitively() -> None:
    values, problems = coerce_fields({"purchaseprice": "5"}, FIELDS)
    assert values == {"purchasePrice": 5.0} and problems == []


def test_the_german_example_writes_a_decimal_comma() -> None:
    """Before: German users were shown `purchasePrice=12.5` (which the bot also reads, but
    nobody there writes it so); given values keep their own digits, without a trailing .0."""
    assert example_caption("Sneakers", FIELDS, {}, "de").endswith("purchasePrice=12,5")
    assert (
        "purchasePrice=20 "
        in example_caption("Sneakers", FIELDS, {"purchasePrice": 20.0, "size": "M"}, "de") + " "
    )
    assert "purchasePrice=7,25" in example_caption(
        "Sneakers", FIELDS, {"purchasePrice": 7.25}, "de"
    )
    assert "purchasePrice=7.25" in example_caption("Sneakers", FIELDS, {"purchasePrice": 7.25})


def test_example_caption_shows_required_and_given_fields() -> None:
    assert example_caption("Vintage Clothing", FIELDS, {"size": "M"}) == (
        '/scan "Vintage Clothing" purchasePrice=12.5 size=M'
    )
    assert example_caption("Sneakers", FIELDS, {"boxIncluded": True}) == (
        "/scan Sneakers purchasePrice=12.5 boxIncluded=true"
    )


COLLECTIONS = [
    Collection(id=f"id-{n}", name=n)
    for n in (
        "Sneakers",
        "Sneakers Limited",
        "Trading Cards",
        "Trading Cards Japan",
        "Electronics",
        "Vinyl Records",
    )
]


@pytest.mark.parametrize(
    ("ref", "match", "candidates"),
    [
        ("id-Electronics", "Electronics", []),
        ("sneakers", "Sneakers", []),
        ("SNEAKERS LIMITED", "Sneakers Limited", []),
        ("elec", "Electronics", []),
        ("vinyl", "Vinyl Records", []),
        ("records", "Vinyl Records", []),
        ("trading", None, ["Trading Cards", "Trading Cards Japan"]),
        ("sneak", None, ["Sneakers", "Sneakers Limited"]),
        ("cards", None, ["Trading Cards", "Trading Cards Japan"]),
        ("spaceships", None, []),
    ],
)
def test_resolve_collection(ref: str, match: str | None, candidates: list[str]) -> None:
    result = resolve_collection(ref, COLLECTIONS)
    assert (result.match.name if result.match else None) == match
    assert [c.name for c in result.candidates] == candidates


async def test_catalog_fetches_once_per_key_under_a_burst() -> None:
    """A burst of photos with a cold cache: one pass through the collections, not one per
    photo; a failed fetch is not cached and the next caller tries again."""
    calls: list[str] = []
    fail = [True]

    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        await asyncio.sleep(0.01)  # the fetch takes a moment, so the burst overlaps it
        if request.url.path.endswith("/manual-fields"):
            if fail[0]:
                fail[0] = False
                return httpx.Response(404, json={"message": "nope"})
            return httpx.Response(200, json=[{"key": "size"}])
        page = int(request.url.params["page"])
        items = [
            {"id": f"c{page}-{i}", "name": f"C {page}.{i}"} for i in range(100 if page < 3 else 5)
        ]
        return httpx.Response(200, json=items)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        catalog = Catalog(
            ResellScanClient(http, api_key=SecretStr("k"), base_url="https://rs.test/api/v1")
        )
        found = await asyncio.gather(*(catalog.resolve("C 3.4") for _ in range(50)))
        assert all(r.match is not None and r.match.id == "c3-4" for r in found)
        assert calls == ["/api/v1/collections"] * 3, "three pages, fetched once"
        calls.clear()
        outcomes = await asyncio.gather(
            *(catalog.fields("c1-1") for _ in range(10)), return_exceptions=True
        )
        assert all(isinstance(o, NotFound) for o in outcomes) and len(calls) == 1
        assert [f.key for f in await catalog.fields("c1-1")] == ["size"] and len(calls) == 2
