"""The Resell Scan client against the sandbox over real loopback HTTP."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot.resellscan import (
    AmbiguousWrite,
    AuthError,
    ConnectionFailed,
    NewProduct,
    NotFound,
    PermissionDenied,
    RateLimited,
    ResellScanClient,
    RetryPolicy,
    ServerError,
    ValidationFailed,
    image_from_bytes,
    image_from_url,
)
from sandbox.data import collection_id, fake_jpeg
from sandbox.server import SandboxThread

SNEAKERS = collection_id("Sneakers")
ELECTRONICS = collection_id("Electronics")


async def _no_sleep(_: float) -> None:
    return None


def fast_retry(**kw: Any) -> RetryPolicy:
    return RetryPolicy(sleep=_no_sleep, **kw)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def client_for(
    sandbox: SandboxThread, http: httpx.AsyncClient, key: str = "rs_test_full", **kw: Any
) -> ResellScanClient:
    return ResellScanClient(
        http, api_key=SecretStr(key), base_url=sandbox.api_url, retry=kw.pop("retry", fast_retry())
    )


def control(sandbox: SandboxThread, path: str, body: dict[str, Any]) -> None:
    httpx.post(sandbox.url + path, json=body, timeout=5).raise_for_status()


def requests_log(sandbox: SandboxThread, **query: str) -> list[dict[str, Any]]:
    response = httpx.get(sandbox.url + "/sandbox/requests", params=query, timeout=5)
    items: list[dict[str, Any]] = response.json()["requests"]
    return items


def product(seed: str, **fields: Any) -> NewProduct:
    return NewProduct([image_from_bytes(fake_jpeg(seed), f"{seed}.jpg")], fields)


async def test_list_collections_pages_and_search(
    sandbox: SandboxThread, http: httpx.AsyncClient
) -> None:
    client = client_for(sandbox, http)
    first = await client.list_collections(limit=20)
    assert len(first.items) == 20 and first.has_more and first.total == 30
    everything = [c async for c in client.iter_collections(limit=7)]
    assert len(everything) == 30 and len({c.id for c in everything}) == 30
    found = await client.list_collections(search="trading")
    assert [c.name for c in found.items] == ["Trading Cards", "Trading Cards Japan"]
    assert not found.has_more


async def test_get_collection_and_manual_fields(
    sandbox: SandboxThread, http: httpx.AsyncClient
) -> None:
    client = client_for(sandbox, http)
    collection = await client.get_collection(SNEAKERS)
    assert collection.name == "Sneakers"
    fields = {f.key: f for f in await client.get_manual_fields(SNEAKERS)}
    assert fields["purchasePrice"].required and fields["purchasePrice"].type == "number"
    assert fields["condition"].options == ("new", "like_new", "used", "defective")
    with pytest.raises(NotFound):
        await client.get_collection("no-such-id")


async def test_create_and_analyze_then_status_and_results(
    sandbox: SandboxThread, http: httpx.AsyncClient
) -> None:
    client = client_for(sandbox, http)
    started = await client.create_and_analyze(
        SNEAKERS, [product("a", purchasePrice=12.5)], idempotency_key="k-1"
    )
    assert started.batch_id and len(started.product_ids) == 1
    control(sandbox, f"/sandbox/batches/{started.batch_id}/complete", {})
    status = await client.get_batch(started.batch_id)
    assert status.finished and status.counts() == (1, 1, 0)
    results = await client.get_batch_results(started.batch_id)
    assert results.products[0].result["title"]
    assert results.products[0].result["estimatedPrice"]["currency"] == "EUR"
    log = requests_log(sandbox, path="/products/createAndAnalyze")
    assert len(log) == 1 and log[0]["idempotency_key"] == "k-1"
    assert log[0]["body"]["products"][0]["manual_fields"] == {"purchasePrice": 12.5}
    (brief,) = requests_log(sandbox, path="/products/createAndAnalyze", brief="1")
    assert "body" not in brief and brief["idempotency_key"] == "k-1" and brief["status"] == 201


async def test_products_create_list_and_analyze(
    sandbox: SandboxThread, http: httpx.AsyncClient
) -> None:
    client = client_for(sandbox, http)
    created = await client.create_products(ELECTRONICS, [product("p1"), product("p2")])
    assert len(created) == 2
    page = await client.list_products(ELECTRONICS, include_images=True, limit=50)
    assert {p.id for p in page.items} == {p.id for p in created}
    assert page.items[0].images
    hidden = await client.list_products(ELECTRONICS)
    assert not hidden.items[0].images
    future = datetime.now(UTC) + timedelta(days=1)
    assert (await client.list_products(ELECTRONICS, created_after=future)).items == []
    assert len((await client.list_products(ELECTRONICS, created_before=future)).items) == 2
    assert len((await client.list_products(ELECTRONICS, updated_before=future)).items) == 2
    batch = await client.analyze_products(ELECTRONICS, [p.id for p in created])
    assert (await client.get_batch(batch.batch_id)).total_products == 2


async def test_image_url_is_fetched_for_real(
    sandbox: SandboxThread, http: httpx.AsyncClient
) -> None:
    # The sandbox's own Telegram file endpoint serves as "a local file server" here.
    upload = httpx.post(
        sandbox.url + "/sandbox/telegram/files",
        json={"data_b64": base64.b64encode(fake_jpeg("u")).decode(), "mime_type": "image/jpeg"},
    ).json()
    path = "files/file_" + upload["file_id"].rsplit("_", 1)[-1]
    url = f"{sandbox.url}/file/bot1:x/files/" + _file_path(sandbox, upload["file_id"])
    del path
    client = client_for(sandbox, http)
    started = await client.create_and_analyze(
        ELECTRONICS, [NewProduct([image_from_url(url, "u.jpg")], {})]
    )
    assert started.batch_id
    with pytest.raises(ValidationFailed) as caught:
        await client.create_and_analyze(
            ELECTRONICS, [NewProduct([image_from_url(sandbox.url + "/nope.jpg", "x.jpg")], {})]
        )
    assert caught.value.fields == ["products[0].images[0]"]


def _file_path(sandbox: SandboxThread, file_id: str) -> str:
    info = httpx.post(f"{sandbox.url}/bot1:x/getFile", data={"file_id": file_id}).json()
    path: str = info["result"]["file_path"]
    return path.removeprefix("files/")


async def test_base64_as_separate_key(sandbox: SandboxThread, http: httpx.AsyncClient) -> None:
    client = client_for(sandbox, http)
    image = image_from_bytes(fake_jpeg("b"), "b.jpg", base64_field="base64")
    assert "url" not in image and image["mimeType"] == "image/jpeg"
    started = await client.create_and_analyze(ELECTRONICS, [NewProduct([image], {})])
    assert started.batch_id


async def test_missing_required_field_names_it(
    sandbox: SandboxThread, http: httpx.AsyncClient
) -> None:
    client = client_for(sandbox, http)
    with pytest.raises(ValidationFailed) as caught:
        await client.create_and_analyze(SNEAKERS, [product("c")])
    assert caught.value.status == 422
    assert caught.value.fields == ["products[0].manual_fields.purchasePrice"]
    assert "required" in caught.value.details[0]
    with pytest.raises(ValidationFailed) as typed:
        await client.create_and_analyze(SNEAKERS, [product("d", purchasePrice="cheap")])
    assert "number" in typed.value.details[0]
    assert not [r for r in requests_log(sandbox) if r.get("status") == 201]


async def test_no_key_and_disabled_key_are_auth_errors(
    sandbox: SandboxThread, http: httpx.AsyncClient
) -> None:
    for key in ("", "rs_unknown", "rs_test_disabled"):
        with pytest.raises(AuthError) as caught:
            await client_for(sandbox, http, key=key).list_collections()
        assert caught.value.status == 401
    response = httpx.get(sandbox.api_url + "/collections?limit=20")
    assert response.status_code == 401


async def test_missing_permission_is_403_naming_the_resource(
    sandbox: SandboxThread, http: httpx.AsyncClient
) -> None:
    client = client_for(sandbox, http, key="rs_test_collections_only")
    assert (await client.list_collections()).items
    with pytest.raises(PermissionDenied) as caught:
        await client.create_and_analyze(ELECTRONICS, [product("e")])
    assert caught.value.status == 403 and caught.value.resource == "products"


async def test_rate_limit_gives_429_with_retry_after(
    sandbox: SandboxThread, http: httpx.AsyncClient
) -> None:
    control(sandbox, "/sandbox/config", {"rate_limit": 3, "rate_window": 30})
    client = client_for(sandbox, http, retry=fast_retry(max_attempts=1))
    for _ in range(3):
        await client.list_collections()
    with pytest.raises(RateLimited) as caught:
        await client.list_collections()
    assert caught.value.retry_after is not None and 1 <= caught.value.retry_after <= 30
    raw = httpx.get(
        sandbox.api_url + "/collections", headers={"Authorization": "Bearer rs_test_full"}
    )
    assert raw.status_code == 429 and int(raw.headers["Retry-After"]) >= 1


async def test_get_retries_a_5xx_burst(sandbox: SandboxThread, http: httpx.AsyncClient) -> None:
    control(sandbox, "/sandbox/faults", {"error_burst": 2, "error_status": 503})
    client = client_for(sandbox, http)
    assert (await client.list_collections()).items
    assert [r["status"] for r in requests_log(sandbox)] == [503, 503, 200]


async def test_get_gives_up_after_max_attempts(
    sandbox: SandboxThread, http: httpx.AsyncClient
) -> None:
    control(sandbox, "/sandbox/faults", {"error_burst": 10, "error_status": 502})
    with pytest.raises(ServerError):
        await client_for(sandbox, http, retry=fast_retry(max_attempts=3)).list_collections()
    assert len(requests_log(sandbox)) == 3


async def test_post_5xx_is_ambiguous_and_not_retried(
    sandbox: SandboxThread, http: httpx.AsyncClient
) -> None:
    """500, 502 and 504 may come after processing: ambiguous, never resent by the client."""
    control(
        sandbox,
        "/sandbox/faults",
        {
            "error_burst": 1,
            "error_status": 502,
            "error_after_processing": True,
            "match": "createAndAnalyze",
        },
    )
    with pytest.raises(AmbiguousWrite) as caught:
        await client_for(sandbox, http).create_and_analyze(ELECTRONICS, [product("f")])
    assert isinstance(caught.value.cause, ServerError)
    assert len(requests_log(sandbox, path="/products/createAndAnalyze")) == 1


async def test_post_503_is_not_processed_and_retried(
    sandbox: SandboxThread, http: httpx.AsyncClient
) -> None:
    """A 503 is failing before processing (resell-scan-api.md §9 #13): retried with the same
    key within the policy, and when it lasts, raised as the ServerError it is (not ambiguous)."""
    control(
        sandbox,
        "/sandbox/faults",
        {"error_burst": 1, "error_status": 503, "match": "createAndAnalyze"},
    )
    started = await client_for(sandbox, http).create_and_analyze(ELECTRONICS, [product("f2")])
    assert started.batch_id
    log = requests_log(sandbox, path="/products/createAndAnalyze")
    assert [r["status"] for r in log] == [503, 201]
    assert log[0]["idempotency_key"] == log[1]["idempotency_key"]
    control(
        sandbox,
        "/sandbox/faults",
        {"error_rate": 1.0, "error_status": 503, "match": "createAndAnalyze"},
    )
    with pytest.raises(ServerError) as caught:
        await client_for(sandbox, http).create_and_analyze(ELECTRONICS, [product("f3")])
    assert caught.value.status == 503


async def test_dropped_connection_after_post_is_ambiguous(
    sandbox: SandboxThread, http: httpx.AsyncClient
) -> None:
    control(sandbox, "/sandbox/faults", {"drop_count": 1, "match": "createAndAnalyze"})
    with pytest.raises(AmbiguousWrite):
        await client_for(sandbox, http).create_and_analyze(ELECTRONICS, [product("g")])
    assert len(requests_log(sandbox, path="/products/createAndAnalyze")) == 1


async def test_dropped_connection_on_get_is_retried(
    sandbox: SandboxThread, http: httpx.AsyncClient
) -> None:
    control(sandbox, "/sandbox/faults", {"drop_count": 1})
    assert (await client_for(sandbox, http).list_collections()).items
    assert len(requests_log(sandbox)) == 2


async def test_post_429_storm_is_retried_and_sent_once(
    sandbox: SandboxThread, http: httpx.AsyncClient
) -> None:
    control(sandbox, "/sandbox/faults", {"storm_count": 2, "storm_retry_after": "1"})
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    client = client_for(sandbox, http, retry=RetryPolicy(sleep=record))
    started = await client.create_and_analyze(ELECTRONICS, [product("h")])
    assert started.batch_id and waits == [1.0, 1.0]
    statuses = [r["status"] for r in requests_log(sandbox, path="/products/createAndAnalyze")]
    assert statuses == [429, 429, 201]


async def test_same_idempotency_key_returns_same_answer(
    sandbox: SandboxThread, http: httpx.AsyncClient
) -> None:
    client = client_for(sandbox, http)
    one = await client.create_and_analyze(ELECTRONICS, [product("i")], idempotency_key="same")
    two = await client.create_and_analyze(ELECTRONICS, [product("i")], idempotency_key="same")
    assert one.batch_id == two.batch_id
    batches = httpx.get(sandbox.url + "/sandbox/batches").json()["batches"]
    assert len(batches) == 1


async def test_connection_refused_is_connection_failed(http: httpx.AsyncClient) -> None:
    client = ResellScanClient(
        http,
        api_key=SecretStr("k"),
        base_url="http://127.0.0.1:9/api/v1",
        retry=fast_retry(max_attempts=2),
    )
    with pytest.raises(ConnectionFailed):
        await client.list_collections()


def test_analysis_times_spread_between_the_bounds_and_repeat_per_seed(
    sandbox: SandboxThread,
) -> None:
    """`analysis_seconds_max` gives each batch its own time, uniform between the bounds and
    drawn from the seed and the batch's number: a run repeats itself."""
    from bench.common import create_batches

    def durations(seed: int) -> list[float]:
        control(sandbox, "/sandbox/reset", {})
        control(
            sandbox,
            "/sandbox/config",
            {"analysis_seconds": 1, "analysis_seconds_max": 5, "analysis_seed": seed},
        )
        with httpx.Client(base_url=sandbox.url, timeout=10) as http:
            ids = set(create_batches(http, 12))
        batches = sandbox.sandbox.resellscan.batches
        return sorted(batches[b].duration for b in ids)

    first = durations(3)
    assert all(1 <= d <= 5 for d in first) and len(set(first)) == len(first)
    assert max(first) - min(first) > 1, "spread over the range"
    assert durations(3) == first, "the same seed draws the same times"
    assert durations(4) != first
    control(sandbox, "/sandbox/reset", {})
    control(sandbox, "/sandbox/config", {"analysis_seconds": 2})
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        ids = set(create_batches(http, 3))
    assert {sandbox.sandbox.resellscan.batches[b].duration for b in ids} == {2}
