"""Marketplace listing text (bot/listing.py): pure functions, no I/O."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from telegram.constants import InlineKeyboardButtonLimit

from bot.listing import (
    COPY_TEXT_MAX_LENGTH,
    TITLE_LIMIT,
    Listing,
    fits_copy_button,
    listing_text,
    retail_price,
)

RICH: dict[str, Any] = {
    "title": "Nike Air Max 90 Sneakers",
    "brand": {"name": "Nike", "id": 7},
    "model": "Air Max 90",
    "size": {"value": "42"},
    "color": "white",
    "category": {"name": "Sneakers"},
    "condition": "like_new",
    "estimatedPrice": {"min": "40", "max": "70", "currency": "EUR"},
    "confidence": "0.9",
}


def lines(listing: Listing) -> list[str]:
    return listing.description.split("\n")


# Sparse results ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "item", "closing", "price_word"),
    [
        ("en", "Item", "See photos for details.", "Price"),
        ("de", "Artikel", "Details siehe Fotos.", "Preis"),
    ],
)
def test_nothing_at_all_gives_a_generic_listing(
    lang: str, item: str, closing: str, price_word: str
) -> None:
    listing = listing_text(lang, {}, {})
    assert listing == Listing(title=item, description=closing, price=None, lang=lang)
    assert listing.text() == f"{item}\n\n{closing}"
    assert price_word not in listing.text()


def test_nothing_at_all_uses_the_collection_name_as_title() -> None:
    assert listing_text("en", {}, {}, collection="  Sneakers ").title == "Sneakers"
    assert listing_text("de", {}, {}, collection="").title == "Artikel"


def test_only_a_title() -> None:
    listing = listing_text("en", {"title": "Vintage Denim Jacket"}, {}, collection="Jackets")
    assert listing.title == "Vintage Denim Jacket"
    assert listing.description == "See photos for details."
    assert listing.price is None
    assert listing.text() == "Vintage Denim Jacket\n\nSee photos for details."


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("en", "Watches\n\nSee photos for details.\n\nPrice: 49 EUR"),
        ("de", "Watches\n\nDetails siehe Fotos.\n\nPreis: 49 €"),
    ],
)
def test_only_a_price(lang: str, expected: str) -> None:
    listing = listing_text(lang, {"price": "49"}, {}, collection="Watches")
    assert listing.title == "Watches"
    assert listing.text() == expected


def test_one_fact_gets_the_closing_line_so_the_description_has_two_lines() -> None:
    assert lines(listing_text("de", {"condition": "used"}, {})) == [
        "Zustand: gebraucht",
        "Details siehe Fotos.",
    ]


# Rich results ---------------------------------------------------------------------------------


def test_rich_result_in_english() -> None:
    listing = listing_text("en", RICH, {"purchasePrice": "12.5"}, collection="Sneakers")
    assert listing.title == "Nike Air Max 90 Sneakers – Size 42"
    assert lines(listing) == [
        "Condition: like new",
        "Size: 42",
        "Colour: white",
        "Category: Sneakers",
        "Brand: Nike",
    ]
    assert listing.price == "59 EUR"  # 40 + 2/3 * 30 = 60 -> 59
    assert listing.text() == (
        "Nike Air Max 90 Sneakers – Size 42\n\n"
        "Condition: like new\nSize: 42\nColour: white\nCategory: Sneakers\nBrand: Nike\n\n"
        "Price: 59 EUR"
    )


def test_rich_result_in_german_uses_german_words() -> None:
    listing = listing_text("de", RICH, {}, collection="Sneakers")
    assert listing.title == "Nike Air Max 90 Sneakers – Gr. 42"
    assert lines(listing) == [
        "Zustand: wie neu",
        "Größe: 42",
        "Farbe: weiß",
        "Kategorie: Sneakers",
        "Marke: Nike",
    ]
    assert listing.price == "59 €"
    assert listing.text().endswith("\n\nPreis: 59 €")


@pytest.mark.parametrize("lang", ["de", "DE", "de-DE", "de_AT"])
def test_german_language_tags(lang: str) -> None:
    assert listing_text(lang, {"condition": "new"}, {}).description.startswith("Zustand: neu")


@pytest.mark.parametrize("lang", ["en", "fr", "", "EN-us"])
def test_other_languages_are_english(lang: str) -> None:
    assert listing_text(lang, {"condition": "new"}, {}).description.startswith("Condition: new")


@pytest.mark.parametrize(
    ("value", "en", "de"),
    [
        ("new", "new", "neu"),
        ("NEW", "new", "neu"),
        ("like_new", "like new", "wie neu"),
        ("Like New", "like new", "wie neu"),
        ("like-new", "like new", "wie neu"),
        ("used", "used", "gebraucht"),
        ("defective", "defective", "defekt"),
        ("good", "good", "gut"),
        ("fair", "fair", "akzeptabel"),
        ("wie neu", "like new", "wie neu"),
        ("worn", "worn", "abgenutzt"),
        ("Sammlerstück  ", "Sammlerstück", "Sammlerstück"),  # unknown values as they are
    ],
)
def test_conditions_are_translated(value: str, en: str, de: str) -> None:
    assert lines(listing_text("en", {"condition": value}, {}))[0] == f"Condition: {en}"
    assert lines(listing_text("de", {"condition": value}, {}))[0] == f"Zustand: {de}"


@pytest.mark.parametrize(
    ("value", "de"),
    [
        ("white", "weiß"),
        ("Black", "schwarz"),
        ("black/white", "schwarz/weiß"),
        ("red and blue", "rot und blau"),
        ("Off-White", "Off-White"),  # unknown words as they are
        ("sail/University Red", "sail/University Red"),
    ],
)
def test_colours_in_german(value: str, de: str) -> None:
    listing = listing_text("de", {"colour": value, "condition": "new"}, {})
    assert f"Farbe: {de}" in lines(listing)


@pytest.mark.parametrize("key", ["color", "colour", "Farbe", "COLOR"])
def test_colour_keys(key: str) -> None:
    assert "Colour: black" in lines(listing_text("en", {key: "black", "size": 1}, {}))


@pytest.mark.parametrize("key", ["model", "modelName", "model_name", "Model"])
def test_model_keys_and_brand_prefix(key: str) -> None:
    listing = listing_text("en", {key: "Air Jordan 1", "brand": "Nike", "title": "Sneaker"}, {})
    assert listing.title == "Nike Air Jordan 1"


def test_brand_is_not_repeated_when_the_title_has_it() -> None:
    result = {"title": "Nike Classic Sneakers", "brand": "nike"}
    assert listing_text("en", result, {}).title == "Nike Classic Sneakers"


def test_brand_is_added_to_a_title_without_it() -> None:
    assert listing_text("en", {"title": "Classic", "brand": "Puma"}, {}).title == "Puma Classic"


def test_without_title_the_category_names_the_item() -> None:
    result = {"brand": "Adidas", "category": "Sneakers", "size": "44"}
    assert listing_text("de", result, {}).title == "Adidas Sneakers – Gr. 44"


def test_brand_alone_is_the_title() -> None:
    assert listing_text("en", {"brand": {"name": "LEGO"}}, {}, collection="Toys").title == "LEGO"


def test_a_size_with_its_own_word_is_not_doubled() -> None:
    assert listing_text("en", {"title": "Tee", "size": "Size M"}, {}).title == "Tee – Size M"
    assert listing_text("de", {"title": "Tee", "size": "Gr. M"}, {}).title == "Tee – Gr. M"


def test_material_and_year_fill_the_description_up_to_five_lines() -> None:
    result = {"condition": "good", "material": "Leder", "year": 1998.0, "brand": "Omega"}
    assert lines(listing_text("de", result, {})) == [
        "Zustand: gut",
        "Marke: Omega",
        "Material: Leder",
        "Jahr: 1998",
    ]
    crowded = {**RICH, "material": "leather", "year": "2019"}
    assert len(lines(listing_text("en", crowded, {}))) == 5


# Manual fields --------------------------------------------------------------------------------


def test_descriptive_manual_fields_win_over_the_analysis() -> None:
    manual = {"Size": "43", "CONDITION": "used", "colour": "grey", "brand": "NIKE"}
    listing = listing_text("de", RICH, manual)
    assert listing.title == "Nike Air Max 90 Sneakers – Gr. 43"
    assert lines(listing) == [
        "Zustand: gebraucht",
        "Größe: 43",
        "Farbe: grau",
        "Kategorie: Sneakers",
        "Marke: NIKE",
    ]


def test_manual_brand_and_model_name_the_item() -> None:
    listing = listing_text("en", {"title": "Sneaker"}, {"Brand": "Asics", "model_name": "Gel"})
    assert listing.title == "Asics Gel"


def test_german_manual_field_names() -> None:
    manual = {"Größe": 38, "Zustand": "like_new", "Farbe": "blau", "Marke": "Carhartt"}
    listing = listing_text("en", {"title": "Jacket"}, manual)
    assert listing.title == "Carhartt Jacket – Size 38"
    assert lines(listing)[:3] == ["Condition: like new", "Size: 38", "Colour: blue"]


@pytest.mark.parametrize(
    "key",
    ["purchasePrice", "purchase_price", "PURCHASEPRICE", "Einkaufspreis", "cost", "notes"],
)
@pytest.mark.parametrize("lang", ["en", "de"])
def test_private_manual_fields_never_appear(key: str, lang: str) -> None:
    for result in ({}, RICH, {"title": "Tee"}):
        listing = listing_text(lang, result, {key: "98765.43", "size": "L"}, collection="Tops")
        text = listing.text()
        assert "98765" not in text
        assert "98.765" not in text
        assert key.lower() not in text.lower()


def test_purchase_price_is_not_a_price_estimate() -> None:
    listing = listing_text("en", {"title": "Tee"}, {"purchasePrice": 20, "price": 30})
    assert listing.price is None


def test_boolean_manual_fields_are_ignored() -> None:
    listing = listing_text("en", {"title": "Watch"}, {"size": True, "condition": False})
    assert listing.title == "Watch"
    assert listing.description == "See photos for details."


# Title length ---------------------------------------------------------------------------------


def test_title_is_cut_at_a_word_boundary_to_80_characters() -> None:
    words = ["Limited", "Edition", "Collector's", "Vintage", "Retro", "Special"] * 4
    long_title = " ".join(words)
    listing = listing_text("en", {"title": long_title}, {})
    assert len(listing.title) <= TITLE_LIMIT == 80
    assert long_title.startswith(listing.title)
    assert long_title[len(listing.title)] == " "  # cut before a space, not inside a word
    assert len(listing.title) > 60


def test_cut_title_keeps_the_size() -> None:
    long_title = "word " * 40
    listing = listing_text("de", {"title": long_title, "size": "42"}, {})
    assert len(listing.title) <= 80
    assert listing.title.endswith("word – Gr. 42")


def test_title_of_one_huge_word_is_cut_hard() -> None:
    listing = listing_text("en", {"title": "x" * 500}, {})
    assert listing.title == "x" * 80


def test_a_huge_one_word_title_after_the_brand_is_not_lost() -> None:
    """Before: "Nike " and a 200-character word became just "Nike"."""
    listing = listing_text("en", {"title": "y" * 200, "brand": "Nike"}, {})
    assert listing.title == ("Nike " + "y" * 200)[:80]


def test_a_huge_size_stays_out_of_the_title() -> None:
    size = "EU 42 / US 8.5 / UK 7.5 / CM 26.5 / Mondopoint 265"
    listing = listing_text("en", {"title": "Sneaker", "size": size}, {})
    assert listing.title == "Sneaker"
    assert f"Size: {size}" in lines(listing)


def test_title_and_description_are_single_clean_lines() -> None:
    result = {"title": "  Nike\n\tAir   Max ", "condition": "new\n", "color": "red\r\nblue"}
    listing = listing_text("en", result, {})
    assert listing.title == "Nike Air Max"
    assert lines(listing) == ["Condition: new", "Colour: red blue"]


def test_description_stays_short() -> None:
    result = dict.fromkeys(("condition", "size", "colour", "category", "brand"), "word " * 300)
    listing = listing_text("en", result, {})
    assert len(listing.description) < 900
    assert len(lines(listing)) == 5
    assert all(line.endswith("…") for line in lines(listing))


# Price ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (None, None, None),
        (0, 0, None),
        (-5, None, None),
        (0.2, None, 1),
        (4.6, None, 5),
        (14.4, None, 14),
        (14.6, None, 15),
        (15, None, 19),
        (45, None, 49),
        (61, None, 59),
        (99.99, None, 99),
        (10, 100, 69),  # target 70
        (100, 10, 69),  # a reversed range is put in order
        (61, 151, 119),  # target 121
        (199.9, None, 199),
        (200, None, 199),
        (275, None, 299),
        (999.99, None, 999),
        (1000, None, 999),
        (1234, None, 1199),
        (1000, 2000, 1699),  # target 1666.7
        (float("inf"), None, None),
    ],
)
def test_retail_price_rule(low: float | None, high: float | None, expected: int | None) -> None:
    assert retail_price(low, high) == expected


def test_retail_price_never_decreases() -> None:
    prices = [retail_price(x / 10) or 0 for x in range(1, 30000)]
    assert prices == sorted(prices)
    assert all(p >= 1 for p in prices)


@pytest.mark.parametrize(
    ("result", "en", "de"),
    [
        ({"estimatedPrice": {"min": 40, "max": 70}}, "59 EUR", "59 €"),
        ({"price": {"min": "40", "max": "70", "currency": "usd"}}, "59 USD", "59 USD"),
        (
            {"priceRange": {"low": 10, "high": 40, "currency": {"code": "x", "name": "GBP"}}},
            "29 GBP",
            "29 GBP",
        ),
        ({"estimated_value": {"value": "1234.5"}}, "1,199 EUR", "1.199 €"),
        ({"price_min": "5", "price_max": "8", "currency": "€"}, "7 EUR", "7 €"),
        ({"price_max": 45}, "49 EUR", "49 €"),
        ({"price": "n/a"}, None, None),
        ({"price": None}, None, None),
    ],
)
def test_price_text_per_language(result: dict[str, Any], en: str | None, de: str | None) -> None:
    assert listing_text("en", result, {}).price == en
    assert listing_text("de", result, {}).price == de


# Copy button ----------------------------------------------------------------------------------


def test_copy_text_limit_is_telegrams() -> None:
    assert COPY_TEXT_MAX_LENGTH == int(InlineKeyboardButtonLimit.MAX_COPY_TEXT) == 256


def test_short_listing_fits_a_copy_button() -> None:
    listing = listing_text("de", RICH, {})
    assert len(listing.text()) <= 256
    assert fits_copy_button(listing)


def test_long_listing_does_not_fit_a_copy_button() -> None:
    result = {
        **RICH,
        "title": "Nike Air Max 90 Premium Sneakers Limited Edition Infrared Retro Runner Low",
        "condition": "worn a few times, small scuff on the left toe, laces replaced, box damaged",
        "color": "white/infrared/cool grey/black",
    }
    listing = listing_text("en", result, {})
    assert len(listing.title) <= 80
    assert len(listing.text()) > 256
    assert not fits_copy_button(listing)


def test_copy_button_boundary_counts_utf16_units() -> None:
    exact = Listing(title="x" * 100, description="y" * 154)  # 100 + 2 + 154 = 256
    assert fits_copy_button(exact)
    assert not fits_copy_button(dataclasses.replace(exact, description="y" * 155))
    assert not fits_copy_button(dataclasses.replace(exact, description="y" * 153 + "👟"))
    assert not fits_copy_button(Listing(title="", description=""))


# Weird types ----------------------------------------------------------------------------------

WEIRD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    3.5,
    float("nan"),
    float("inf"),
    "",
    "   ",
    [],
    [None, {"name": "a"}, [1, 2]],
    {},
    {"name": None},
    {"name": {"deeper": 1}},
    {"value": [1]},
    "<b>&</b>",
]
RESULT_KEYS = [
    "title",
    "brand",
    "model",
    "size",
    "color",
    "category",
    "condition",
    "material",
    "year",
    "price",
    "estimatedPrice",
    "price_min",
    "price_max",
    "currency",
    "confidence",
]


@pytest.mark.parametrize("value", WEIRD_VALUES, ids=repr)
@pytest.mark.parametrize("lang", ["en", "de"])
def test_weird_values_never_raise(value: Any, lang: str) -> None:
    result = dict.fromkeys(RESULT_KEYS, value)
    manual = {"size": value, "condition": value, "purchasePrice": value, "brand": value}
    for listing in (
        listing_text(lang, result, manual, collection="Things"),
        listing_text(lang, {"price": {"min": value, "max": value, "currency": value}}, {}),
    ):
        assert listing.title
        assert len(listing.title) <= 80
        assert listing.description
        assert isinstance(fits_copy_button(listing), bool)
        assert listing.text().startswith(listing.title)


@pytest.mark.parametrize("bad", [None, [], "text", 42, [{"title": "x"}]], ids=repr)
def test_weird_containers_never_raise(bad: Any) -> None:
    listing = listing_text("en", bad, bad)
    assert listing.title == "Item"
    assert listing.price is None


def test_numbers_become_text() -> None:
    result = {"title": 12345, "size": 42.0, "year": 2020, "brand": {"name": 7}}
    listing = listing_text("en", result, {"condition": 3})
    assert listing.title == "7 12345 – Size 42"
    assert lines(listing) == ["Condition: 3", "Size: 42", "Brand: 7", "Year: 2020"]


def test_lists_are_joined() -> None:
    result = {"title": "Tee", "color": ["black", {"name": "white"}], "size": ["M", None]}
    listing = listing_text("de", result, {})
    assert listing.title == "Tee – Gr. M"
    assert "Farbe: schwarz, weiß" in lines(listing)


def test_text_is_plain_not_html() -> None:
    listing = listing_text("en", {"title": "<b>Tee</b> & more"}, {})
    assert listing.title == "<b>Tee</b> & more"  # the caller escapes
