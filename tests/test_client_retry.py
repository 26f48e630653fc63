"""Retry and error-mapping edge cases at the transport seam (httpx.MockTransport)."""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot.resellscan import (
    AmbiguousWrite,
    APIError,
    AuthError,
    ConnectionFailed,
    NewProduct,
    PaymentRequired,
    ProtocolError,
    RateLimited,
    ResellScanClient,
    ResellScanError,
    RetryPolicy,
    ServerError,
    TransportError,
    ValidationFailed,
    parse_retry_after,
)

KEY = "rs_live_super_secret_key_123"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def make(
    handler: Callable[[httpx.Request], httpx.Response], clock: FakeClock | None = None, **kw: Any
) -> tuple[ResellScanClient, FakeClock]:
    clock = clock or FakeClock()
    policy = RetryPolicy(sleep=clock.sleep, clock=clock, **kw)
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = ResellScanClient(
        http, api_key=SecretStr(KEY), base_url="https://rs.test/api/v1", retry=policy
    )
    return client, clock


def sequence(
    *responses: httpx.Response | Exception,
) -> tuple[Callable[[httpx.Request], httpx.Response], list[httpx.Request]]:
    seen: list[httpx.Request] = []
    items = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = items.pop(0) if len(items) > 1 else items[0]
        if isinstance(item, Exception):
            raise item
        return item

    return handler, seen


OK_PAGE = httpx.Response(200, json={"data": [{"id": "c1", "name": "Sneakers"}]})


async def test_retry_after_seconds_is_honoured() -> None:
    handler, seen = sequence(httpx.Response(429, headers={"Retry-After": "7"}), OK_PAGE)
    client, clock = make(handler)
    await client.list_collections()
    assert clock.waits == [7.0] and len(seen) == 2


async def test_retry_after_http_date_is_honoured() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    handler, _ = sequence(httpx.Response(429, headers={"Retry-After": when}), OK_PAGE)
    client, clock = make(handler)
    await client.list_collections()
    assert len(clock.waits) == 1 and 25 <= clock.waits[0] <= 31


async def test_retry_after_is_clamped() -> None:
    handler, _ = sequence(httpx.Response(429, headers={"Retry-After": "86400"}), OK_PAGE)
    client, clock = make(handler, max_retry_after=20, total_timeout=100)
    await client.list_collections()
    assert clock.waits == [20.0]


async def test_retry_after_beyond_total_deadline_gives_up() -> None:
    handler, seen = sequence(httpx.Response(429, headers={"Retry-After": "50"}))
    client, clock = make(handler, total_timeout=30)
    with pytest.raises(RateLimited) as caught:
        await client.list_collections()
    assert caught.value.retry_after == 50 and clock.waits == [] and len(seen) == 1


async def test_total_deadline_bounds_many_attempts() -> None:
    handler, seen = sequence(httpx.Response(503))
    client, clock = make(handler, max_attempts=100, base_delay=1, max_delay=4, total_timeout=10)
    with pytest.raises(ServerError):
        await client.list_collections()
    assert clock.now <= 10 and 2 <= len(seen) < 100


async def test_backoff_is_capped_and_jittered() -> None:
    handler, _ = sequence(httpx.Response(502))
    client, clock = make(handler, max_attempts=8, base_delay=1, max_delay=4, total_timeout=1000)
    with pytest.raises(ServerError):
        await client.list_collections()
    assert len(clock.waits) == 7
    assert all(0.5 <= w <= 4 for w in clock.waits)
    assert all(w >= 2 for w in clock.waits[3:]), "later waits sit in the capped band"


@pytest.mark.parametrize("status", [500, 501])
async def test_get_does_not_retry_500_and_501(status: int) -> None:
    handler, seen = sequence(httpx.Response(status))
    client, _ = make(handler)
    with pytest.raises(ServerError):
        await client.list_collections()
    assert len(seen) == 1


async def test_ambiguous_post_after_read_timeout_is_not_retried() -> None:
    handler, seen = sequence(httpx.ReadTimeout("slow"))
    client, _ = make(handler)
    with pytest.raises(AmbiguousWrite) as caught:
        await client.create_and_analyze("c", [NewProduct([{"url": "u"}])])
    assert len(seen) == 1 and isinstance(caught.value.cause, TransportError)


async def test_post_connect_error_is_retried_with_the_same_idempotency_key() -> None:
    handler, seen = sequence(
        httpx.ConnectError("refused"), httpx.Response(201, json={"batchId": "b"})
    )
    client, _ = make(handler)
    started = await client.create_and_analyze(
        "c", [NewProduct([{"url": "u"}])], idempotency_key="k9"
    )
    assert started.batch_id == "b" and len(seen) == 2
    assert {r.headers["Idempotency-Key"] for r in seen} == {"k9"}


async def test_every_post_carries_an_idempotency_key() -> None:
    handler, seen = sequence(httpx.Response(201, json={"data": {"id": "b2"}}))
    client, _ = make(handler)
    await client.analyze_products("c", ["p"])
    await client.analyze_products("c", ["p"])
    keys = [r.headers["Idempotency-Key"] for r in seen]
    assert all(keys) and keys[0] != keys[1], "a fresh key per logical request"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ValidationFailed),
        (401, AuthError),
        (402, PaymentRequired),
        (422, ValidationFailed),
        (418, APIError),
    ],
)
async def test_client_errors_are_not_retried(status: int, kind: type[APIError]) -> None:
    handler, seen = sequence(httpx.Response(status, json={"message": "nope"}))
    client, _ = make(handler)
    with pytest.raises(kind) as caught:
        await client.list_collections()
    assert caught.value.message == "nope" and len(seen) == 1


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("x"),
        httpx.ConnectTimeout("x"),
        httpx.PoolTimeout("x"),
        httpx.ReadTimeout("x"),
        httpx.WriteTimeout("x"),
        httpx.ReadError("x"),
        httpx.WriteError("x"),
        httpx.RemoteProtocolError("x"),
        httpx.LocalProtocolError("x"),
        httpx.ProxyError("x"),
        httpx.UnsupportedProtocol("x"),
        httpx.DecodingError("x"),
        httpx.TooManyRedirects("x"),
        httpx.NetworkError("x"),
        httpx.TimeoutException("x"),
        httpx.ProtocolError("x"),
        httpx.TransportError("x"),
    ],
)
async def test_every_httpx_error_maps_into_our_tree(exc: Exception) -> None:
    handler, _ = sequence(exc)
    client, _ = make(handler, max_attempts=1)
    with pytest.raises(ResellScanError) as caught:
        await client.list_collections()
    assert caught.value.__cause__ is exc
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        assert isinstance(caught.value, ConnectionFailed)


async def test_non_json_success_is_a_protocol_error() -> None:
    handler, _ = sequence(httpx.Response(200, text="<html>"))
    client, _ = make(handler)
    with pytest.raises(ProtocolError):
        await client.get_batch("b")


async def test_error_message_falls_back_to_errors_list_and_text() -> None:
    handler, _ = sequence(
        httpx.Response(422, json={"errors": [{"field": "x", "message": "bad x"}]})
    )
    client, _ = make(handler)
    with pytest.raises(ValidationFailed) as caught:
        await client.list_collections()
    assert caught.value.message == "bad x" and caught.value.fields == ["x"]
    handler2, _ = sequence(httpx.Response(500, text="upstream exploded"))
    client2, _ = make(handler2, max_attempts=1)
    with pytest.raises(ServerError, match="upstream exploded"):
        await client2.list_collections()


async def test_tolerant_parsing_of_envelopes_and_casing() -> None:
    handler, _ = sequence(
        httpx.Response(
            200,
            json={
                "batch_id": "b1",
                "status": "Processing",
                "totalProducts": 4,
                "products": [{"productId": "p", "error": "blurry", "status": "x"}],
            },
        )
    )
    client, _ = make(handler)
    status = await client.get_batch("b1")
    assert status.batch_id == "b1" and status.total_products == 4 and not status.finished
    assert status.products[0].product_id == "p" and status.products[0].failed
    assert status.products[0].error_text == "blurry"
    assert status.raw["products"][0]["status"] == "x"  # the payload is kept as sent


async def test_page_without_metadata_stops_on_short_page() -> None:
    pages = [
        httpx.Response(200, json=[{"id": str(i), "name": f"n{i}"} for i in range(3)]),
        httpx.Response(200, json=[{"id": "9", "name": "last"}]),
    ]
    handler, seen = sequence(*pages)
    client, _ = make(handler)
    names = [c.name async for c in client.iter_collections(limit=3)]
    assert names == ["n0", "n1", "n2", "last"] and len(seen) == 2
    assert seen[0].url.params["page"] == "1" and seen[1].url.params["page"] == "2"


async def test_limit_is_clamped_to_100() -> None:
    handler, seen = sequence(OK_PAGE)
    client, _ = make(handler)
    await client.list_collections(limit=500)
    assert seen[0].url.params["limit"] == "100"


async def test_key_never_in_repr_message_or_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    handler, seen = sequence(httpx.Response(503, json={"message": "down"}))
    client, _ = make(handler, max_attempts=3)
    with pytest.raises(ServerError) as caught:
        await client.list_collections()
    assert seen[0].headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(client) and KEY not in str(caught.value)
    assert KEY not in caplog.text and "retry" in caplog.text


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("-1") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
