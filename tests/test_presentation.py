"""Texts, rendering and schedules: pure functions, no I/O."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from typing import Any

import pytest

from bot.config import Settings
from bot.export import results_csv
from bot.media import MediaSigner
from bot.resellscan import BatchStatus
from bot.results import result_fields
from bot.telegram import render
from bot.telegram.callbacks import CallbackCodec, Pick, PickerPage
from bot.telegram.handlers import Handlers
from bot.telegram.texts import COMMANDS, LANGUAGES, TEXTS, placeholders, t
from bot.tracker import Budget, poll_delay, products_of
from storage import Photo, State, Submission


def test_every_text_exists_in_both_languages_with_the_same_placeholders() -> None:
    assert set(TEXTS["en"]) == set(TEXTS["de"])
    for key in TEXTS["en"]:
        assert placeholders(TEXTS["en"][key]) == placeholders(TEXTS["de"][key]), key


def test_every_command_is_handled_described_and_in_help_in_both_languages() -> None:
    for name in COMMANDS:
        assert callable(getattr(Handlers, f"cmd_{name}"))
        for lang in LANGUAGES:
            assert t(lang, f"cmd_{name}")
            if name not in ("start", "help"):
                assert f"/{name}" in t(lang, "help"), (lang, name)


def test_texts_are_valid_telegram_html() -> None:
    from sandbox.telegram import parse_html

    for lang in LANGUAGES:
        for key, template in TEXTS[lang].items():
            filled = template.format(**dict.fromkeys(placeholders(template), "x"))
            parse_html(filled)  # raises like Telegram on bad markup
            assert len(filled) < 4096, key


def test_parameters_are_escaped() -> None:
    assert t("en", "unknown_collection", ref="<b>&") == (
        "❓ No collection matches “&lt;b&gt;&amp;”. See /collections, or check the spelling."
    )


def make_sub(**kw: Any) -> Submission:
    values: dict[str, Any] = dict(
        id=1,
        chat_id=1,
        thread_id=None,
        message_id=1,
        user_id=1,
        user_name="Anna <Admin>",
        media_group_id=None,
        collection_ref=None,
        collection_id="c",
        collection_name="Sneakers",
        manual_fields={},
        caption_seen=False,
        remove_background=False,
        language="en",
        idempotency_key="k",
        state=State.COMPLETED,
        batch_id="0123456789abcdef",
        attempts=1,
        next_action_at=None,
        gather_deadline=None,
        problem=None,
        last_error=None,
        created_at=0.0,
        updated_at=0.0,
        submitted_at=10.0,
        raw_status=None,
        total_products=None,
        successful_products=None,
        failed_products=None,
        progress=None,
        results=None,
        progress_message_id=None,
        progress_shown=None,
        progress_edited_at=None,
        poll_count=0,
        completed_at=75.0,
        completed_by="poll",
        notify_claimed_at=None,
        notified_at=None,
        notify_attempts=0,
        parts_sent=0,
    )
    values.update(kw)
    return Submission(**values)


def batch(
    n: int, *, title: str = "Nike Air Max 90 Essential", failed: set[int] | None = None
) -> BatchStatus:
    products = []
    for i in range(n):
        if failed and i in failed:
            products.append(
                {"product_id": f"p{i}", "status": "failed", "error": {"message": "blurry <photo>"}}
            )
        else:
            products.append(
                {
                    "product_id": f"p{i}",
                    "status": "completed",
                    "error": None,
                    "result": {
                        "title": f"{title} {i}",
                        "brand": "Nike",
                        "category": "Sneakers",
                        "condition": "good",
                        "estimatedPrice": {"min": 40, "max": 65.5, "currency": "EUR"},
                        "confidence": 0.87,
                    },
                }
            )
    return BatchStatus.read({"status": "completed", "products": products})


def test_results_show_every_fact_and_failures_escaped() -> None:
    [text] = render.render_results("en", make_sub(), batch(2, failed={1}), 3, now=100)
    assert "Anna &lt;Admin&gt;" in text
    assert "Brand: Nike" in text and "40–65.50 EUR" in text and "Confidence: 87%" in text
    assert "Product 2 failed: blurry &lt;photo&gt;" in text
    assert "1 of 2 analysed, 1 failed" in text and "1 min 5 s" in text
    assert "Batch <code>01234567</code>" in text


def test_success_rate_is_written_as_people_write_it() -> None:
    """Resell Scan's 33.3 for 1 of 3: "33.3%" (en) and "33,3 %" (de), never "33.30%"; 50:
    "50%"; none given: the bot's own, whole."""
    third = dataclasses.replace(batch(3, failed={1, 2}), success_rate=33.3)
    [en] = render.render_results("en", make_sub(), third, 3, now=100)
    [de] = render.render_results("de", make_sub(), third, 3, now=100)
    half = dataclasses.replace(batch(2, failed={1}), success_rate=50.0)
    [whole] = render.render_results("en", make_sub(), half, 2, now=100)
    [own] = render.render_results("en", make_sub(), batch(3, failed={1, 2}), 3, now=100)
    assert "success rate 33.3%" in en and "Erfolgsquote 33,3 %" in de, (en, de)
    assert "success rate 50%" in whole and "success rate 33%" in own


def test_a_common_condition_is_shown_in_the_users_language() -> None:
    """Before: "Zustand: worn" in a German results reply."""
    status = batch(1)
    product = dataclasses.replace(
        status.products[0], result={**status.products[0].result, "condition": "worn"}
    )
    worn = dataclasses.replace(status, products=[product])
    [de] = render.render_results("de", make_sub(), worn, 1, now=100)
    [en] = render.render_results("en", make_sub(), worn, 1, now=100)
    assert "Zustand: abgenutzt" in de and "Condition: worn" in en
    [odd] = render.render_results(
        "de",
        make_sub(),
        dataclasses.replace(
            status,
            products=[
                dataclasses.replace(product, result={**product.result, "condition": "B-Ware"})
            ],
        ),
        1,
        now=100,
    )
    assert "Zustand: B-Ware" in odd, "an unknown one as it came"


def test_one_is_singular_in_both_languages() -> None:
    """Before: "Alle 1 Produkte", "In welche Sammlung sollen 1 Foto", "All 1 products"."""

    def products(lang: str, n: int) -> str:
        return render.count_text(lang, n, "products_one", "products_many")

    assert t("de", "results_csv_caption", products=products("de", 1)).startswith("1 Produkt mit")
    assert t("en", "results_csv_caption", products=products("en", 1)).startswith("1 product,")
    assert t("de", "results_csv_caption", products=products("de", 3)).startswith("3 Produkte")
    photo = render.count_text("de", 1, "photos_one", "photos_many")
    assert "für 1 Foto von Anna" in t("de", "pick_collection", photos=photo, sender="Anna")


def test_a_combined_analysis_that_failed_whole_says_so() -> None:
    """Before: "✔️ 0 of 1" under an analysis whose one product failed."""
    codec = CallbackCodec(b"k" * 32)
    failed = (make_sub(id=1), batch(1, failed={0}), 1)
    half = (make_sub(id=2), batch(2, failed={1}), 2)
    text, _ = render.combined_results("en", [failed, half], codec, now=100)
    assert "❌ none of 1 analysed" in text and "✔️ 1 of 2" in text and "✔️ 0 of" not in text
    german, _ = render.combined_results("de", [failed], codec, now=100)
    assert "❌ keins von 1 analysiert" in german


def test_a_listing_sent_as_a_message_does_not_look_like_a_copy_button(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A listing too long for a copy button is sent as a message: its button says so (before:
    both were "📋 Listing text", one copying, one sending)."""
    import bot.listing

    codec = CallbackCodec(b"k" * 32)
    [copy] = [
        b
        for row in render.results_keyboard("en", make_sub(), batch(1), codec).inline_keyboard
        for b in row
        if b.copy_text is not None
    ]
    assert copy.text == "📋 Listing text"
    monkeypatch.setattr(bot.listing, "COPY_TEXT_MAX_LENGTH", 10)
    for lang, label in (("en", "💬 Listing text as a message"), ("de", "💬 Anzeigentext als")):
        rows = render.results_keyboard(lang, make_sub(), batch(1), codec).inline_keyboard
        [sent] = [b for row in rows for b in row if b.text.startswith("💬")]
        assert sent.text.startswith(label) and sent.callback_data and sent.copy_text is None
    rows = render.results_keyboard("en", make_sub(), batch(2), codec).inline_keyboard
    assert [b.text for row in rows for b in row if b.text.startswith("💬")] == ["💬 1", "💬 2"]


def test_long_results_split_below_the_limit_at_product_boundaries() -> None:
    parts = render.render_results(
        "de", make_sub(language="de"), batch(60, title="X" * 120), 60, now=100
    )
    assert len(parts) > 2
    assert all(len(p) < 4096 for p in parts)
    assert all(p.startswith("(Fortsetzung)") for p in parts[1:])
    joined = "\n".join(parts)
    assert all(f"<b>{i}. " in joined for i in range(1, 61))
    for part in parts:
        assert part.count("<b>") == part.count("</b>"), "no block is cut inside its markup"


def test_split_cuts_a_single_huge_block() -> None:
    parts = render.split_message(["a" * 9000])
    assert [len(p) for p in parts] == [3800, 3800, 1400]


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"name": "Camera", "price": 120}, ("Camera", 120, 120, "EUR")),
        (
            {"productName": "Lamp", "price_min": 5, "price_max": 9, "currency": "USD"},
            ("Lamp", 5, 9, "USD"),
        ),
        (
            {"title": "Watch", "estimated_price": {"low": 1, "high": 2, "currency": "CHF"}},
            ("Watch", 1, 2, "CHF"),
        ),
        ({"title": "Card", "priceRange": {"value": 3}}, ("Card", 3, 3, "EUR")),
        ({}, (None, None, None, None)),
    ],
)
def test_result_fields_are_read_tolerantly(
    result: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    facts = result_fields(result)
    assert (facts["title"], facts["price_min"], facts["price_max"], facts["currency"]) == expected


def test_csv_has_every_product_and_the_manual_fields() -> None:
    status = batch(3, failed={2})
    data = results_csv(status, manual_fields={"purchasePrice": 12.5}, lang="de")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    assert [r["product_id"] for r in rows] == ["p0", "p1", "p2"]
    assert rows[0]["price_max"] == "65,50" and rows[0]["confidence_percent"] == "87"
    assert rows[0]["field.purchasePrice"] == "12,50"
    assert rows[2]["error"] == "blurry <photo>" and rows[2]["title"] == ""


def test_collections_keyboard_pages_and_fits_callback_limits() -> None:
    from bot.resellscan import Collection

    items = [
        Collection(id=f"6f1c2a7e-3b0d-4a52-9a51-2f8d9b7c1e{i:02d}", name=f"C{i}") for i in range(30)
    ]
    codec = CallbackCodec(b"k" * 32)
    chat = -1001234567890
    for search in ("a search that is rather long indeed", "👟🥾👠" * 10, "運動鞋" * 12):
        text, markup = render.collections_page(
            "en",
            items,
            2,
            search,
            button=lambda c: codec.encode(Pick(1234567, c.id), chat_id=chat),
            nav=lambda page, q: codec.encode(PickerPage(1234567, page, q), chat_id=chat),
        )
        assert markup is not None
        buttons = [b for row in markup.inline_keyboard for b in row]
        assert [b.text for b in buttons[:8]] == [f"C{i}" for i in range(8, 16)]
        assert [b.text for b in buttons[8:]] == ["◀", "▶"]
        # Telegram counts bytes, not characters: emoji and CJK are 3-4 bytes each.
        assert all(len((b.callback_data or "").encode()) <= 64 for b in buttons)
        for button in buttons[8:]:
            opened = codec.decode(str(button.callback_data), chat)
            assert isinstance(opened, PickerPage) and opened.sub_id == 1234567
            assert search.startswith(opened.search) and opened.search
        assert "page 2/4" in text


def test_poll_delay_grows_geometrically_to_the_cap(tmp_path: Any) -> None:
    settings = Settings(
        _env_file=None,
        telegram_bot_token="1:x",
        resell_scan_api_key="k",  # type: ignore[call-arg]
        allow_all_users=True,
        poll_initial_seconds=3,
        poll_backoff_factor=2,
        poll_max_seconds=60,
    )
    assert [poll_delay(n, settings) for n in range(7)] == [3, 6, 12, 24, 48, 60, 60]
    with_webhooks = settings.model_copy(update={"resell_scan_webhook_secrets": ["whsec_x"]})
    assert poll_delay(0, with_webhooks) == 3 * settings.webhook_poll_factor


def test_budget_refills_and_pauses() -> None:
    now = [0.0]
    budget = Budget(2.0, clock=lambda: now[0])
    assert budget.take() == 0.0
    assert budget.take() == pytest.approx(0.5), "no burst: the next token comes 1/rate later"
    now[0] = 0.5
    assert budget.take() == 0.0
    now[0] = 10.0
    assert [budget.take() for _ in range(2)] == [0.0, pytest.approx(0.5)], "idle time adds no burst"
    budget.pause(10)
    assert budget.take() == pytest.approx(10)


def test_products_of_groups_albums_in_message_order() -> None:
    def photo(message_id: int, key: str) -> Photo:
        return Photo(
            id=message_id,
            submission_id=1,
            chat_id=1,
            message_id=message_id,
            product_key=key,
            file_id="f",
            file_unique_id="u",
            file_size=None,
            mime_type=None,
            file_name=None,
            media_key=str(message_id),
        )

    groups = products_of([photo(5, "g2"), photo(1, "g1"), photo(3, "3"), photo(2, "g1")])
    assert [[p.message_id for p in g] for g in groups] == [[1, 2], [3], [5]]


def test_media_signer_round_trip_and_refusals() -> None:
    signer = MediaSigner(b"k" * 32, "https://bot.example", ttl=60)
    token = signer.token("abc", now=1000)
    assert signer.check(token, now=1059) == "abc"
    assert signer.check(token, now=1061) is None
    assert signer.check(token.replace("abc", "abd"), now=1000) is None
    assert signer.check(token + "x", now=1000) is None
    assert signer.check("a.b", now=1000) is None
    assert signer.check("ä.1.x", now=1000) is None
    other = MediaSigner(b"j" * 32, "https://bot.example", ttl=60)
    assert other.check(token, now=1000) is None
    assert re.fullmatch(r"https://bot\.example/media/abc\.\d+\.[\w-]+", signer.url("abc", 1000))
