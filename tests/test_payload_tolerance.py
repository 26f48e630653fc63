"""Survive the real API's dialect: payloads that vary value types and nulls, not only key names.

Unit tests of the readers, then property-based tests that push generated `analysis.completed`
bodies through the real relay (Starlette app, real SQLite, real rendering) and generated status
answers through the real poller (the client over an httpx.MockTransport: the transport is the
seam, hundreds of examples must run in seconds). Properties: zero 5xx, zero exceptions escaping,
every batch reported (as results, or as finished-but-unreadable), every message within
Telegram's limit.
"""

from __future__ import annotations

import asyncio
import io
import json
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from bot.config import Settings
from bot.export import results_csv
from bot.intake import Catalog
from bot.media import MediaSigner
from bot.metrics import Metrics
from bot.resellscan import (
    BatchStarted,
    BatchStatus,
    Collection,
    ManualField,
    ResellScanClient,
    RetryPolicy,
)
from bot.resellscan.models import Product, WebhookEvent
from bot.resellscan.read import as_bool, as_float, as_id, as_time, shape
from bot.resellscan.webhooks import sign
from bot.telegram import render
from bot.telegram.callbacks import CallbackCodec
from bot.telegram.outbox import TelegramChat
from bot.tracker import MAX_UNREADABLE, Tracker
from bot.web import Health, build_web_app
from sandbox.data import fake_jpeg
from storage import Database, NewPhoto, State, Store

SECRET = "whsec_cHJvcGVydHktdGVzdHM"
T0 = 1_764_331_200.0  # 2025-11-28T12:00:00Z

# Readers ---------------------------------------------------------------------------------------


def test_value_readers() -> None:
    assert [as_id(v) for v in ("9fc8", 9001, 9001.0, "", None, True, {"a": 1})] == [
        "9fc8",
        "9001",
        "9001",
        None,
        None,
        None,
        None,
    ]
    assert [as_float(v) for v in (100, "100", "12.5", "12,5", "1e3", float("inf"), "NaN")] == [
        100.0,
        100.0,
        12.5,
        None,
        1000.0,
        None,
        None,
    ]
    assert [as_bool(v) for v in (True, 0, 1, "true", "FALSE", "yes", 2, "maybe")] == [
        True,
        False,
        True,
        True,
        False,
        True,
        None,
        None,
    ]
    for value in (
        "2025-11-28T12:00:00Z",
        "2025-11-28T12:00:00.000Z",
        "2025-11-28T12:00:00",
        "2025-11-28T13:00:00+01:00",
        T0,
        int(T0),
        int(T0 * 1000),
        str(int(T0)),
    ):
        assert as_time(value) == T0, value
    assert as_time("yesterday") is None and as_time(None) is None and as_time(-5) is None


def test_batch_status_reads_every_documented_field_in_other_types() -> None:
    """The issue's examples: epoch started_at, a null product status, a numeric product id,
    null products: read what can be read, unknown for the rest, nothing raised."""
    status = BatchStatus.read(
        {
            "batch_id": 9001,
            "status": "COMPLETED",
            "started_at": 1764331200,
            "completed_at": 1764331260123,
            "total_products": "2",
            "successful_products": 1,
            "failed_products": "1",
            "success_rate": "50",
            "products": [
                {"product_id": 501, "status": None, "result": {"title": "Nike Air"}},
                {"product_id": "p2", "status": "FAILED", "error": ["blurry", "dark"]},
            ],
        }
    )
    assert status.batch_id == "9001" and status.finished
    assert (status.started_at, status.completed_at) == (T0, T0 + 60.123)
    assert status.counts() == (2, 1, 1) and status.success_rate == 50.0
    first, second = status.products
    assert first.product_id == "501" and first.status == "unknown" and not first.failed
    assert second.failed and second.error_text == "blurry"
    assert not status.report.unknown

    null = BatchStatus.read({"batch_id": "b", "status": "completed", "products": None})
    assert null.finished and null.products == () and not null.products_unreadable
    odd = BatchStatus.read({"batchId": "b", "status": 5, "products": "oops", "started_at": "?"})
    assert odd.products_unreadable and odd.status == "unknown" and odd.started_at is None
    assert set(odd.report.unknown) == {"status", "products", "started_at"}
    assert not BatchStatus.read({"foo": 1}).readable
    assert not BatchStatus.read([1, 2, 3]).readable
    garbage_products = BatchStatus.read({"status": "done", "products": [1, "x"]})
    assert garbage_products.finished and garbage_products.products_unreadable


def test_envelopes_and_errors_of_every_shape() -> None:
    wrapped = {"success": True, "data": {"batchId": "b", "status": "PROCESSING"}, "meta": {}}
    assert BatchStatus.read(wrapped).status == "processing"
    # A product result with a `result` key is not an envelope.
    assert BatchStatus.read({"status": "completed", "result": {"x": 1}}).status == "completed"
    for error, text in (
        (None, None),
        ("blurry", "blurry"),
        ({"code": "E42", "message": "too dark"}, "too dark"),
        ({"code": 7}, "7"),
        ([{"msg": "first"}, "second"], "first"),
        ([], None),
        (False, None),
    ):
        product = BatchStatus.read({"products": [{"error": error}]}).products[0]
        assert product.error == text, error


def test_other_models_read_other_dialects() -> None:
    assert BatchStarted.read({"batch_id": 9001, "product_ids": [501, "502"]}) == BatchStarted(
        "9001", ("501", "502")
    )
    assert BatchStarted.read({"data": {"batch": {"id": "x"}}}) == BatchStarted("x", ())
    assert BatchStarted.read({"ok": True}) is None
    assert Collection.read({"id": 17, "name": {"label": "Sneakers"}}) == Collection(
        "17", "Sneakers"
    )
    assert Collection.read({"name": "no id"}) is None
    field = ManualField.read(
        {
            "name": "condition",
            "isRequired": "true",
            "type": "SELECT",
            "options": [{"value": "new", "label": "New"}, "used", None],
        }
    )
    assert field == ManualField("condition", "condition", "select", True, ("new", "used"))
    assert ManualField.read({"key": "size", "required": 0}) == ManualField("size", "size")
    product = Product.read(
        {
            "id": 501,
            "createdAt": "2025-11-28T12:00:00",
            "images": [
                {"fileName": "a.jpg"},
                {"file_name": "b.jpg"},
                {"name": "c.png"},
                {"url": "https://cdn.example/p/501/d%20e.jpg?sig=1"},
                "https://cdn.example/f.webp",
                {"url": "data:image/jpeg;base64,xx"},
            ],
        }
    )
    assert product is not None and product.created_at == T0
    assert product.file_names() == ["a.jpg", "b.jpg", "c.png", "d e.jpg", "f.webp"]
    event = WebhookEvent.read({"batch_id": 5, "status": "done"})
    assert event.id is None and event.batch().batch_id == "5"


def test_shape_shows_keys_and_types_never_values() -> None:
    secret_value = "Nike Air Max, paid 12.50"
    seen = json.dumps(shape({"title": secret_value, "n": [1, 2], "x": {"y": None}}))
    assert secret_value not in seen and "12.5" not in seen
    assert json.loads(seen) == {
        "title": "string",
        "n": ["array(2) of", "number"],
        "x": {"y": "null"},
    }


# Rendering -------------------------------------------------------------------------------------


def test_nested_result_values_render_by_name_and_confidence_is_normalised() -> None:
    status = BatchStatus.read(
        {
            "status": "completed",
            "products": [
                {
                    "result": {
                        "title": {"name": "Air Max 90"},
                        "brand": {"name": "Nike", "id": 7},
                        "category": {"label": "Sneakers", "path": ["Shoes", "Sneakers"]},
                        "price": {"min": "40", "max": 61.5, "currency": {"code": "EUR"}},
                        "confidence": "0.85",
                        "colour": "white",
                        "model_year": 2019,
                        "description": "x" * 500,
                    }
                },
                {"result": {"estimatedPrice": {"value": "42.5", "currency": "USD"}, "score": 91}},
                {"result": {"confidence": "85%"}},
            ],
        }
    )
    blocks = [render._product_block("en", i, p) for i, p in enumerate(status.products, 1)]
    first = blocks[0]
    assert "Air Max 90" in first and "Brand: Nike" in first and "Category: Sneakers" in first
    assert "{" not in first and "'" not in first
    assert "40–61.50" in first and "Confidence: 85%" in first
    assert "colour: white" in first and "model_year: 2019" in first
    assert "description" not in first  # too long for a line
    assert "42.50 USD" in blocks[1] and "Confidence: 91%" in blocks[1]
    assert "Confidence: 85%" in blocks[2]


def test_unreadable_completion_is_rendered_and_its_csv_keeps_the_raw_fields() -> None:
    status = BatchStatus.read({"batch": "weird", "items": "nope", "n": {"deep": 3}})
    assert not status.products
    csv_text = results_csv(status).decode("utf-8-sig")
    assert "n.deep;3" in csv_text and "items;nope" in csv_text


# Property-based: relay and poller --------------------------------------------------------------

ID_FORMS = st.sampled_from(["int", "str"])
STATUS_DONE = st.sampled_from(["completed", "COMPLETED", "Completed", "done", "Finished"])
NUMBERS = st.one_of(
    st.integers(0, 5), st.integers(0, 5).map(str), st.none(), st.just("two"), st.just(2.0)
)
TIMES = st.one_of(
    st.just("2025-11-28T12:00:00.000Z"),
    st.just("2025-11-28T12:00:00"),
    st.just("2025-11-28T13:00:00+01:00"),
    st.just(int(T0)),
    st.just(int(T0 * 1000)),
    st.just(str(int(T0))),
    st.none(),
    st.just("yesterday"),
    st.just({"iso": "x"}),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10_000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
NESTED_LABEL = st.one_of(
    st.text(min_size=1, max_size=20),
    st.builds(lambda n: {"name": n, "id": 7}, st.text(min_size=1, max_size=20)),
    st.builds(lambda n: {"label": n}, st.text(max_size=20)),
    st.none(),
    st.integers(),
    st.lists(st.text(max_size=5), max_size=3),
)
PRICES = st.one_of(
    st.none(),
    st.integers(0, 999),
    st.just("42.5"),
    st.just("12,5"),
    st.fixed_dictionaries(
        {"min": NUMBERS, "max": NUMBERS, "currency": st.sampled_from(["EUR", None, 5])}
    ),
    st.fixed_dictionaries(
        {"value": NUMBERS, "currency": st.sampled_from(["EUR", {"code": "EUR"}])}
    ),
    st.just([1, 2]),
)
RESULTS = st.one_of(
    st.none(),
    st.just("a string"),
    st.lists(SCALARS, max_size=3),
    st.fixed_dictionaries(
        {},
        optional={
            "title": NESTED_LABEL,
            "brand": NESTED_LABEL,
            "category": NESTED_LABEL,
            "condition": NESTED_LABEL,
            "price": PRICES,
            "estimatedPrice": PRICES,
            "confidence": st.one_of(SCALARS, st.just("0.85"), st.just("85%")),
            "colour": SCALARS,
            "extra": st.dictionaries(st.text(max_size=8), SCALARS, max_size=3),
        },
    ),
)
ERRORS = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.fixed_dictionaries({"code": SCALARS, "message": SCALARS}),
    st.lists(st.one_of(st.text(max_size=10), st.fixed_dictionaries({"msg": SCALARS})), max_size=3),
    st.booleans(),
)


@st.composite
def product_entries(draw: st.DrawFn, pid: int) -> Any:
    if draw(st.integers(0, 20)) == 0:
        return draw(SCALARS)  # not even an object
    key_id = draw(st.sampled_from(["product_id", "productId", "id"]))
    entry: dict[str, Any] = {
        key_id: draw(st.sampled_from([pid, str(pid), None])),
        draw(st.sampled_from(["status", "STATUS", "state"])): draw(
            st.one_of(STATUS_DONE, st.just("failed"), st.none(), st.integers())
        ),
        "progress": draw(st.one_of(st.just(100), st.just("100"), st.none(), st.just("done"))),
        "result": draw(RESULTS),
        "product_data": draw(st.one_of(st.none(), st.just({}), st.just("x"), st.just([1]))),
        "error": draw(ERRORS),
    }
    for key in draw(st.sets(st.sampled_from(list(entry)), max_size=2)):
        del entry[key]  # missing, not only null
    return entry


@st.composite
def batch_payloads(draw: st.DrawFn, batch_id: str, finished: bool) -> dict[str, Any]:
    """A batch object in some dialect. `finished`: it carries a recognisable sign of having
    finished (a done status in any case, or no status but a completion time)."""
    numeric = draw(ID_FORMS) == "int"
    count = draw(st.integers(0, 3))
    products_value: Any = [draw(product_entries(500 + i)) for i in range(count)]
    products_value = draw(
        st.sampled_from([products_value, products_value, products_value, None, "oops", {}])
    )
    data: dict[str, Any] = {
        draw(st.sampled_from(["batch_id", "batchId", "BatchID"])): int(batch_id)
        if numeric
        else batch_id,
        "collection_id": draw(st.sampled_from([17, "17", None, {"id": 17}])),
        "total_products": draw(NUMBERS),
        "successful_products": draw(NUMBERS),
        "failed_products": draw(NUMBERS),
        "success_rate": draw(st.one_of(NUMBERS, st.just("90.5"))),
        "started_at": draw(TIMES),
        draw(st.sampled_from(["products", "results", "items"])): products_value,
        "unknown_" + draw(st.text("abc", max_size=3)): draw(SCALARS),
    }
    if finished and draw(st.booleans()):
        data["status"] = draw(STATUS_DONE)
        data["completed_at"] = draw(TIMES)
    elif finished:
        data["status"] = draw(st.sampled_from([None, 7, ["x"]]))
        data["completed_at"] = draw(st.sampled_from(["2025-11-28T12:01:00Z", int(T0 * 1000)]))
    else:
        data["status"] = draw(st.one_of(STATUS_DONE, st.none(), st.integers()))
    return data


class FakeMessage:
    def __init__(self, message_id: int) -> None:
        self.message_id = message_id


class FakeTelegram:
    """A Bot-shaped stand-in that records what was sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.reactions: list[tuple[int, int, Any]] = []
        self.counter = 0

    async def send_message(
        self, *, chat_id: int, text: str, reply_parameters: Any, **_: Any
    ) -> FakeMessage:
        self.counter += 1
        self.sent.append(
            {"chat_id": chat_id, "text": text, "reply_to": reply_parameters.message_id}
        )
        return FakeMessage(self.counter)

    async def send_document(self, **kw: Any) -> FakeMessage:
        return await self.send_message(
            chat_id=kw["chat_id"],
            text=kw.get("caption") or "",
            reply_parameters=kw["reply_parameters"],
        )

    async def edit_message_text(self, *args: Any, **kw: Any) -> None:
        return None

    async def set_message_reaction(self, chat_id: int, message_id: int, **kw: Any) -> bool:
        self.reactions.append((chat_id, message_id, kw.get("reaction")))
        return True


class Rig:
    """The relay, the store and the tracker of one bot, with Telegram replaced by a recorder
    and Resell Scan by a transport the test fills in."""

    def __init__(self, root: Path, *, webhooks: bool) -> None:
        self.root = root
        self.answer: Any = None  # what the fake Resell Scan answers to status and results
        self.settings = Settings(
            _env_file=None,
            telegram_bot_token="1:x",
            resell_scan_api_key="k",  # type: ignore[call-arg]
            allow_all_users=True,
            resell_scan_webhook_secrets=SECRET if webhooks else "",
            database_path=root / "bot.sqlite3",
            poll_budget_per_second=1e6,
        )
        self.telegram = FakeTelegram()
        self.clock = lambda: T0
        self.seq = 0

    async def start(self) -> None:
        self.db = await Database.open(self.settings.database_path)
        self.store = Store(self.db)

        def handler(request: httpx.Request) -> httpx.Response:
            if isinstance(self.answer, bytes):
                return httpx.Response(200, content=self.answer)
            return httpx.Response(200, json=self.answer)

        async def no_sleep(_: float) -> None:
            return None

        self.http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        client = ResellScanClient(
            self.http,
            api_key=SecretStr("k"),
            base_url="https://rs.test/api/v1",
            retry=RetryPolicy(sleep=no_sleep, max_attempts=1),
        )
        self.chat = TelegramChat(
            settings=self.settings,
            store=self.store,
            catalog=Catalog(client),
            bot=self.telegram,  # type: ignore[arg-type]
            callbacks=CallbackCodec(b"c" * 32),
            clock=self.clock,
        )
        self.tracker = Tracker(
            settings=self.settings,
            store=self.store,
            client=client,
            catalog=Catalog(client),
            chat=self.chat,
            metrics=Metrics(),
            media=MediaSigner(b"k" * 32, "https://bot.test", 3600),
            clock=self.clock,
        )
        app = build_web_app(
            settings=self.settings,
            store=self.store,
            tracker=self.tracker,
            metrics=Metrics(),
            media=MediaSigner(b"k" * 32, "https://bot.test", 3600),
            bot=self.telegram,  # type: ignore[arg-type]
            health=Health(),
            http=self.http,
            clock=self.clock,
        )
        self.relay = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bot.test"
        )

    async def stop(self) -> None:
        await self.relay.aclose()
        await self.http.aclose()
        await self.db.close()

    async def submitted(self) -> tuple[int, str]:
        """A fresh submission in `submitted`, with a numeric-looking batch id."""
        self.seq += 1
        batch_id = str(9000 + self.seq)
        result = await self.store.add_photo(
            NewPhoto(1, self.seq, 7, "Anna", f"f{self.seq}", f"u{self.seq}"),
            caption=None,
            problem=None,
            language="en",
            remove_background=False,
            album_window=0,
            album_max_wait=1,
            now=T0,
        )
        sub_id = result.submission_id
        assert await self.store.choose_collection(sub_id, "17", "Sneakers", T0)
        assert await self.store.begin_submit(sub_id, T0)
        await self.store.mark_submitted(sub_id, batch_id, T0, T0)
        return sub_id, batch_id

    async def reported(self, sub_id: int) -> list[str]:
        """What the chat is told about this submission: sent (the poller notifies at once),
        or rendered as notify would send it (the relay leaves that to the tracker's loop)."""
        sub = await self.store.get(sub_id)
        assert sub is not None
        if sub.state is State.NOTIFIED:
            texts = [m["text"] for m in self.telegram.sent if m["reply_to"] == sub.message_id]
        else:
            assert sub.state is State.COMPLETED, sub.state
            texts = [out.text for out in await self.chat.messages_for(sub)]
        assert texts and all(0 < len(text) <= render.MESSAGE_LIMIT for text in texts)
        return texts


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _examples(large: bool) -> int:
    return 1000 if large else 150


def run_property(
    loop: asyncio.AbstractEventLoop,
    *,
    webhooks: bool,
    large: bool,
    example: Callable[[Rig, st.DataObject], Awaitable[int]],
) -> dict[str, int]:
    """Run `example` (which returns the reported submission) on many generated inputs
    against one rig; count how each was reported."""
    seen = {"examples": 0, "results": 0, "unreadable": 0}
    with tempfile.TemporaryDirectory() as tmp:
        rig = Rig(Path(tmp), webhooks=webhooks)
        loop.run_until_complete(rig.start())

        @settings(
            max_examples=_examples(large),
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(data=st.data())
        def check(data: st.DataObject) -> None:
            async def run() -> None:
                texts = await rig.reported(await example(rig, data))
                seen["unreadable" if "could not read" in texts[0] else "results"] += 1
                seen["examples"] += 1

            loop.run_until_complete(run())

        try:
            check()
        finally:
            loop.run_until_complete(rig.stop())
    return seen


def test_relay_keeps_and_reports_any_signed_completion(
    loop: asyncio.AbstractEventLoop, large: bool
) -> None:
    async def example(rig: Rig, data: st.DataObject) -> int:
        sub_id, batch_id = await rig.submitted()
        batch = data.draw(batch_payloads(batch_id, finished=True))
        envelope = data.draw(st.booleans())
        body: dict[str, Any] = (
            {"event": "analysis.completed", "data": batch} if envelope else dict(batch)
        )
        event_id = data.draw(st.sampled_from(["str", "int", None]))
        if event_id == "str":
            body["id"] = f"evt_{batch_id}"
        elif event_id == "int":
            body["id"] = int(batch_id)
        raw = json.dumps(body).encode()
        response = await rig.relay.post(
            "/webhooks/resell-scan", content=raw, headers={"x-webhook-signature": sign(raw, SECRET)}
        )
        assert response.status_code == 200, response.text
        return sub_id

    seen = run_property(loop, webhooks=True, large=large, example=example)
    print(f"relay: {seen}")
    assert seen["results"] > 0 and seen["unreadable"] > 0


def test_poller_reports_any_finished_or_unreadable_answer(
    loop: asyncio.AbstractEventLoop, large: bool
) -> None:
    async def example(rig: Rig, data: st.DataObject) -> int:
        sub_id, batch_id = await rig.submitted()
        batch = data.draw(batch_payloads(batch_id, finished=True))
        wrap = data.draw(st.sampled_from(["bare", "data", "envelope", "garbage"]))
        if wrap == "data":
            rig.answer = {"data": batch}
        elif wrap == "envelope":
            rig.answer = {"success": True, "data": batch, "meta": {"requestId": "r"}}
        elif wrap == "garbage":
            rig.answer = data.draw(
                st.sampled_from([b"<html>oops</html>", b"", [1, 2], "text", {"a": {}}])
            )
        else:
            rig.answer = batch
        for _ in range(MAX_UNREADABLE + 1):  # bounded: never waits for the deadline
            sub = await rig.store.get(sub_id)
            assert sub is not None
            if sub.state is not State.SUBMITTED:
                break
            await rig.tracker.poll(sub)
        return sub_id

    seen = run_property(loop, webhooks=False, large=large, example=example)
    print(f"poller: {seen}")
    assert seen["results"] > 0 and seen["unreadable"] > 0


# check --probe --------------------------------------------------------------------------------


async def test_probe_says_what_it_understood_and_fails_without_ids() -> None:
    from bot.probe import probe

    answers: dict[str, Any] = {
        "/collections": {"items": [{"uuid": 17, "title": "Sneakers", "colour": "red"}]},
        "/collections/17": {"collection": "?"},
        "/collections/17/manual-fields": [{"label": "Price"}],
        "/collections/17/products": {"data": [{"id": 5, "images": [{"size": 10}]}]},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answers[request.url.path.removeprefix("/api/v1")])

    out = io.StringIO()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = ResellScanClient(http, api_key=SecretStr("k"), base_url="https://rs.test/api/v1")
        assert not await probe(client, out)
    text = out.getvalue()
    assert "ok   GET /collections\n" in text and "uuid (number)" in text
    assert "colour (string)" in text.split("ignored:")[1]
    assert "FAIL GET /collections/{id}\n" in text, "no id in the one-collection answer"
    assert "FAIL GET /collections/{id}/manual-fields" in text and "1 unreadable" in text
    assert "no image file names found" in text
    assert "Sneakers" not in text and "Price" not in text, "keys and types, never values"


@pytest.mark.parametrize("result", [{}, {"colour": "red"}, {"title": "Air Max"}])
async def test_probe_passes_an_analysis_only_with_result_fields_it_shows(
    tmp_path: Path, result: dict[str, Any]
) -> None:
    """check --probe --analyze: results whose products carry no field the results reply
    shows by name (empty, or only unknown keys) fail the probe, saying why (before: "all
    checks passed" with nothing read)."""
    from bot.probe import probe

    collection = {"id": "c1", "name": "Sneakers"}
    answers: dict[str, Any] = {
        "/collections": {"data": [collection], "pagination": {"has_more": False}},
        "/collections/c1": collection,
        "/collections/c1/manual-fields": [],
        "/collections/c1/products": {"data": [], "pagination": {"has_more": False}},
        "/products/createAndAnalyze": {"batchId": "b1", "productIds": ["p1"]},
        "/products/analyze/b1": {"batchId": "b1", "status": "completed"},
        "/products/analyze/b1/results": {
            "batchId": "b1",
            "status": "completed",
            "products": [{"productId": "p1", "status": "completed", "result": result}],
        },
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answers[request.url.path.removeprefix("/api/v1")])

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(fake_jpeg("probe"))
    out = io.StringIO()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = ResellScanClient(http, api_key=SecretStr("k"), base_url="https://rs.test/api/v1")
        passed = await probe(client, out, photo=photo, collection_ref="Sneakers", poll_every=0)
    text = out.getvalue()
    assert passed is ("title" in result), text
    assert ("no result field the bot shows by name" in text) is ("title" not in result)


def test_a_download_refused_for_size_says_send_it_as_a_photo() -> None:
    from telegram.error import BadRequest

    from bot.telegram.outbox import photo_problem
    from bot.telegram.texts import t

    assert photo_problem(BadRequest("File is too big")) == "photo_too_big"
    assert photo_problem(BadRequest("Wrong file_id")) == "photo_unavailable"
    assert "as a photo" in t("en", "photo_too_big") and "20 MB" in t("en", "photo_too_big")
