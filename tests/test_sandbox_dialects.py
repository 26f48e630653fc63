"""The Resell Scan sandbox on its own, over raw HTTP: every dialect's shapes, numeric ids, the
product filters, analysing existing products, faults before and after processing, and the
webhook per dialect. Nothing here uses the bot's client."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.data import collection_id, fake_jpeg
from sandbox.server import SandboxThread, bind, make_server
from tests.conftest import eventually

SNEAKERS = collection_id("Sneakers")  # the first seeded collection: alias 17
ELECTRONICS = collection_id("Electronics")  # the seventh: alias 23
SECRET = "whsec_dialect-test-secret"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ISO_NAIVE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")
DIALECTS = ["standard", "snake", "envelope", "webhook_only"]


def image(seed: str, name: str | None = None, *, fail: bool = False) -> dict[str, Any]:
    blob = fake_jpeg(seed) + (b"FAIL" if fail else b"")
    return {
        "url": "data:image/jpeg;base64," + base64.b64encode(blob).decode(),
        "fileName": name or f"{seed}.jpg",
        "removeBackground": False,
    }


class RS:
    """Raw HTTP to the sandbox: the API with the full key, and the control API."""

    def __init__(self, api: httpx.AsyncClient, ctl: httpx.AsyncClient) -> None:
        self.api = api
        self.ctl = ctl

    async def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.ctl.post(path, json=body or {})
        response.raise_for_status()
        return response.json()

    async def dialect(self, name: str, **config: Any) -> None:
        await self.control("/sandbox/config", {"dialect": name, **config})

    async def batches(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self.ctl.get("/sandbox/batches")).json()["batches"]
        return items

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.api.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def post(self, path: str, body: Any, status: int = 201) -> Any:
        response = await self.api.post(path, json=body)
        assert response.status_code == status, response.text
        return response.json()


@pytest.fixture
async def rs(sandbox: SandboxThread) -> AsyncIterator[RS]:
    headers = {"Authorization": "Bearer rs_test_full"}
    async with (
        httpx.AsyncClient(base_url=sandbox.api_url, headers=headers, timeout=10) as api,
        httpx.AsyncClient(base_url=sandbox.url, timeout=10) as ctl,
    ):
        yield RS(api, ctl)


@dataclass
class Receiver:
    """A tiny webhook endpoint on loopback, recording every raw body and signature."""

    url: str = ""
    bodies: list[bytes] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)

    async def event(self) -> dict[str, Any]:
        async def arrived() -> bool:
            return bool(self.bodies)

        await eventually(arrived, within=10, what="a webhook delivery")
        body, signature = self.bodies[0], self.signatures[0]
        assert hmac.compare_digest(signature, hmac.new(SECRET.encode(), body, "sha256").hexdigest())
        event: dict[str, Any] = json.loads(body)
        return event


@pytest.fixture
async def receiver(rs: RS) -> AsyncIterator[Receiver]:
    got = Receiver()

    async def hook(request: Request) -> Response:
        got.bodies.append(await request.body())
        got.signatures.append(request.headers.get("x-webhook-signature", ""))
        return JSONResponse({"received": True})

    sock = bind("127.0.0.1", 0)
    server = make_server(Starlette(routes=[Route("/hook", hook, methods=["POST"])]))
    task = asyncio.create_task(server.serve(sockets=[sock]))

    async def started() -> bool:
        return bool(server.started)

    await eventually(started, within=5, what="the webhook receiver")
    got.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    await rs.control("/sandbox/webhooks", {"url": got.url, "secret": SECRET})
    try:
        yield got
    finally:
        server.should_exit = True
        await task
        sock.close()


async def start_batch(rs: RS, collection: Any = ELECTRONICS, *, fail_second: bool = True) -> Any:
    """createAndAnalyze with two products (the second one fails); the answer's JSON."""
    body = {
        "collectionId": collection,
        "products": [
            {"images": [image("ok", "Ok-Shot.JPG")], "manual_fields": {"quantity": 3}},
            {"images": [image("bad", fail=fail_second)], "manual_fields": {}},
        ],
    }
    return await rs.post("/products/createAndAnalyze", body)


async def complete_all(rs: RS) -> None:
    for batch in await rs.batches():
        await rs.control(f"/sandbox/batches/{batch['batch_id']}/complete")


# Configuration -------------------------------------------------------------------------------


async def test_unknown_dialect_is_refused_and_reset_goes_back_to_standard(rs: RS) -> None:
    refused = await rs.ctl.post("/sandbox/config", json={"dialect": "xml"})
    assert refused.status_code == 400 and "dialect" in refused.json()["message"]
    await rs.dialect("snake")
    assert isinstance(await rs.get("/collections"), list)
    await rs.control("/sandbox/reset")
    body = await rs.get("/collections")
    assert set(body) == {"data", "pagination"}


# Standard ------------------------------------------------------------------------------------


async def test_standard_shapes(rs: RS) -> None:
    listing = await rs.get("/collections", limit=7, page=2)
    assert listing["pagination"] == {"page": 2, "limit": 7, "total": 30, "totalPages": 5}
    assert UUID.match(listing["data"][0]["id"]) and ISO_MS_Z.match(listing["data"][0]["createdAt"])
    fields = {f["key"]: f for f in (await rs.get(f"/collections/{SNEAKERS}/manual-fields"))["data"]}
    assert fields["purchasePrice"]["required"] is True and fields["size"]["required"] is False
    assert fields["condition"]["options"] == ["new", "like_new", "used", "defective"]
    started = await start_batch(rs)
    assert started["success"] is True and UUID.match(started["data"]["batchId"])
    assert started["data"]["status"] == "processing" and started["data"]["totalProducts"] == 2
    await complete_all(rs)
    status = (await rs.get(f"/products/analyze/{started['data']['batchId']}"))["data"]
    assert status["status"] == "completed" and status["totalProducts"] == 2
    assert ISO_MS_Z.match(status["startedAt"]) and ISO_MS_Z.match(status["completedAt"])
    results = (await rs.get(f"/products/analyze/{started['data']['batchId']}/results"))["data"]
    ok, bad = results["products"]
    assert ok["result"]["estimatedPrice"]["currency"] == "EUR" and ok["error"] is None
    assert bad["status"] == "failed" and bad["error"]["code"] == "analysis_failed"
    products = await rs.get(f"/collections/{ELECTRONICS}/products", include_images="true")
    assert products["data"][0]["images"][0]["fileName"] == "Ok-Shot.JPG"
    missing = await rs.api.get("/collections/nope")
    assert missing.status_code == 404 and missing.json()["message"] == "Collection not found"


# Snake ---------------------------------------------------------------------------------------


async def test_snake_shapes(rs: RS) -> None:
    await rs.dialect("snake", analysis_seconds=30)
    first = await rs.get("/collections")
    assert isinstance(first, list) and len(first) == 20
    assert len(await rs.get("/collections", page=2)) == 10  # the short page is the last
    sneakers = first[0]
    assert sneakers["id"] == 17 and sneakers["name"] == "Sneakers"
    assert isinstance(sneakers["created_at"], int) and sneakers["product_count"] == 0
    for path_id in ("17", SNEAKERS):
        assert (await rs.get(f"/collections/{path_id}"))["id"] == 17
    fields = {f["key"]: f for f in await rs.get("/collections/17/manual-fields")}
    assert fields["purchasePrice"]["required"] == 1 and fields["size"]["required"] == 0
    assert fields["condition"]["options"][1] == {"value": "like_new", "label": "Like new"}

    started = await start_batch(rs, 23)
    assert started == {
        "batch_id": 9001,
        "status": "processing",
        "product_ids": [501, 502],
        "total_products": 2,
    }
    status = await rs.get("/products/analyze/9001")
    assert status["batch_id"] == 9001 and status["collection_id"] == 23
    assert status["status"] == "processing" and status["products"] is None
    assert (status["total_products"], status["failed_products"]) == ("2", "0")
    assert isinstance(status["started_at"], int) and status["completed_at"] is None
    pending = await rs.get("/products/analyze/9001/results")
    assert [(p["product_id"], p["status"], p["result"]) for p in pending["products"]] == [
        (501, None, None),
        (502, None, None),
    ]

    await rs.control("/sandbox/batches/9001/complete")
    status = await rs.get("/products/analyze/9001")
    assert status["status"] == "completed" and status["products"] is None
    assert (status["successful_products"], status["failed_products"]) == ("1", "1")
    results = await rs.get("/products/analyze/9001/results")
    assert isinstance(results["completed_at"], int) and results["total_products"] == 2
    ok, bad = results["products"]
    assert ok["status"] == "completed" and ok["error"] is None
    assert ok["product_data"] == {"manual_fields": {"quantity": 3}}
    assert set(ok["result"]["brand"]) == {"name", "id"} and isinstance(
        ok["result"]["brand"]["id"], int
    )
    assert set(ok["result"]["price"]) == {"min", "max", "currency"}
    assert isinstance(ok["result"]["confidence"], str) and 0 < float(ok["result"]["confidence"]) < 1
    assert bad["status"] == "failed" and isinstance(bad["error"], str) and bad["error"]

    listed = await rs.get("/collections/23/products", include_images="1")
    item = listed[0]
    assert item["id"] == 501 and item["collection_id"] == 23
    assert item["manual_fields"] == {"quantity": 3}
    assert isinstance(item["created_at"], int) and isinstance(item["updated_at"], int)
    assert item["images"][0]["file_name"] == "Ok-Shot.JPG" and "fileName" not in item["images"][0]
    assert "images" not in (await rs.get("/collections/23/products"))[0]

    created = await rs.post(
        "/products", {"collectionId": "23", "products": [{"images": [image("c")]}]}
    )
    assert [p["id"] for p in created["products"]] == [503]

    missing = await rs.api.get("/collections/999")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Collection not found", "status_code": 404}
    invalid = await rs.post(
        "/products/createAndAnalyze",
        {"collectionId": 17, "products": [{"images": [image("d")]}]},
        422,
    )
    assert invalid["errors"][0]["field"] == "products[0].manual_fields.purchasePrice"
    denied = await rs.api.get(
        "/collections/17/products", headers={"Authorization": "Bearer rs_test_collections_only"}
    )
    assert denied.status_code == 403 and denied.json()["required_permission"] == "products"


# Envelope ------------------------------------------------------------------------------------


async def test_envelope_shapes(rs: RS) -> None:
    await rs.dialect("envelope", analysis_seconds=30)
    listing = await rs.get("/collections", limit=5, page=2)
    assert listing["success"] is True
    assert listing["meta"] == {"page": 2, "limit": 5, "total": 30, "totalPages": 6}
    item = listing["data"][0]
    assert UUID.match(item["id"]) and ISO_NAIVE.match(item["createdAt"]) and "productCount" in item
    one = await rs.get(f"/collections/{SNEAKERS}")
    assert one["data"]["name"] == "Sneakers" and one["meta"]["requestId"]
    fields = {f["key"]: f for f in (await rs.get(f"/collections/{SNEAKERS}/manual-fields"))["data"]}
    assert (
        fields["purchasePrice"]["isRequired"] == "true" and fields["size"]["isRequired"] == "false"
    )
    assert "required" not in fields["size"]

    started = await start_batch(rs)
    assert started["success"] is True and set(started["meta"]) == {"requestId"}
    batch_id = started["data"]["batchId"]
    assert UUID.match(batch_id) and started["data"]["status"] == "PROCESSING"
    assert started["data"]["totalProducts"] == 2 and all(
        UUID.match(p) for p in started["data"]["productIds"]
    )
    status = (await rs.get(f"/products/analyze/{batch_id}"))["data"]
    assert status["status"] == "PROCESSING" and ISO_NAIVE.match(status["startedAt"])
    assert status["completedAt"] is None and status["totalProducts"] == 2
    pending = (await rs.get(f"/products/analyze/{batch_id}/results"))["data"]
    assert {p["status"] for p in pending["products"]} == {"PROCESSING"}

    await complete_all(rs)
    results = (await rs.get(f"/products/analyze/{batch_id}/results"))["data"]
    assert results["status"] == "COMPLETED" and ISO_NAIVE.match(results["completedAt"])
    assert (results["successfulProducts"], results["failedProducts"]) == (1, 1)
    assert results["batchId"] == batch_id and "batch_id" not in results
    ok, bad = results["products"]
    assert ok["status"] == "COMPLETED" and ok["productData"] == {"manualFields": {"quantity": 3}}
    assert set(ok["result"]["estimatedPrice"]) == {"value", "currency"}
    assert isinstance(ok["result"]["confidence"], int) and 1 < ok["result"]["confidence"] <= 100
    assert bad["status"] == "FAILED" and set(bad["error"]) == {"code", "message"}

    listed = (await rs.get(f"/collections/{ELECTRONICS}/products", include_images="true"))["data"]
    product = next(p for p in listed if p["id"] == started["data"]["productIds"][0])
    assert set(product) >= {"id", "collectionId", "manualFields", "createdAt", "updatedAt"}
    [shown] = product["images"]
    assert list(shown) == ["url"]
    parts = urlsplit(shown["url"])
    assert parts.scheme == "https" and unquote(parts.path.rsplit("/", 1)[1]) == "Ok-Shot.JPG"
    assert product["id"] in parts.path

    missing = await rs.api.get("/collections/nope")
    assert missing.status_code == 404
    assert missing.json() == {
        "success": False,
        "errors": [{"field": None, "message": "Collection not found"}],
        "message": "Collection not found",
    }
    invalid = await rs.post(
        "/products/createAndAnalyze",
        {"collectionId": SNEAKERS, "products": [{"images": [image("d")]}]},
        422,
    )
    assert invalid["success"] is False
    assert invalid["errors"][0]["field"] == "products[0].manual_fields.purchasePrice"


# webhook_only --------------------------------------------------------------------------------


async def test_webhook_only_never_finishes_on_the_status_endpoint(
    rs: RS, receiver: Receiver
) -> None:
    await rs.dialect("webhook_only")
    started = await start_batch(rs)
    batch_id = started["data"]["batchId"]
    await complete_all(rs)
    event = await receiver.event()
    assert event["data"]["batch_id"] == batch_id and event["data"]["status"] == "completed"
    [real] = await rs.batches()
    assert real["status"] == "completed" and real["webhook_state"] == "delivered"
    status = (await rs.get(f"/products/analyze/{batch_id}"))["data"]
    assert status["status"] == "processing" and status["completedAt"] is None
    assert status["progress"] < 100 and status["successfulProducts"] == 0
    results = (await rs.get(f"/products/analyze/{batch_id}/results"))["data"]
    assert results["status"] == "processing"
    assert [(p["status"], p["result"]) for p in results["products"]] == [("processing", {})] * 2
    listed = (await rs.get(f"/collections/{ELECTRONICS}/products", include_images="true"))["data"]
    shown = next(p for p in listed if p["images"][0].get("name") == "Ok-Shot.JPG")
    assert "fileName" not in shown["images"][0]


# Webhook per dialect -------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_webhook_payload_per_dialect(rs: RS, receiver: Receiver, dialect: str) -> None:
    await rs.dialect(dialect)
    await start_batch(rs)
    await complete_all(rs)
    event = await receiver.event()
    assert set(event) == {"id", "event", "created_at", "data"}
    assert event["id"].startswith("evt_") and event["event"] == "analysis.completed"
    data = event["data"]
    if dialect in ("standard", "webhook_only"):
        assert ISO_MS_Z.match(event["created_at"]) and UUID.match(data["batch_id"])
        assert data["status"] == "completed" and ISO_MS_Z.match(data["completed_at"])
        assert data["products"][1]["error"]["code"] == "analysis_failed"
        assert data["products"][0]["product_data"] == {"manual_fields": {"quantity": 3}}
    elif dialect == "snake":
        assert isinstance(event["created_at"], int)
        assert (data["batch_id"], data["collection_id"]) == (9001, 23)
        assert isinstance(data["started_at"], int) and data["started_at"] < 10**11
        assert data["completed_at"] > 10**12  # epoch milliseconds
        assert data["completed_at"] // 1000 >= data["started_at"]
        assert [p["product_id"] for p in data["products"]] == [501, 502]
        assert isinstance(data["products"][1]["error"], str)
        assert data["products"][0]["result"]["brand"]["name"]
    else:
        assert ISO_NAIVE.match(event["created_at"]) and UUID.match(data["batchId"])
        assert data["status"] == "COMPLETED" and ISO_NAIVE.match(data["completedAt"])
        assert (data["totalProducts"], data["successRate"]) == (2, 50.0)
        ok = data["products"][0]
        assert ok["status"] == "COMPLETED" and ok["productData"] == {
            "manualFields": {"quantity": 3}
        }
        assert UUID.match(ok["productId"]) and "estimatedPrice" in ok["result"]


# Numeric ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["standard", "snake", "envelope"])
async def test_numeric_ids_in_paths_and_bodies(rs: RS, dialect: str) -> None:
    await rs.dialect(dialect)
    await rs.post("/products", {"collectionId": 23, "products": [{"images": [image("n1")]}] * 2})
    await rs.post("/products/analyze", {"collectionId": "23", "productIds": [501, "502"]})
    [batch] = await rs.batches()
    assert batch["alias"] == 9001 and batch["total_products"] == 2
    for path_id in (9001, "9001", batch["batch_id"]):
        response = await rs.api.get(f"/products/analyze/{path_id}/results")
        assert response.status_code == 200
    assert (await rs.api.get("/collections/23")).status_code == 200
    assert (await rs.api.get(f"/collections/{ELECTRONICS}/manual-fields")).status_code == 200
    assert (await rs.api.get("/products/analyze/9002")).status_code == 404
    assert (await rs.api.get("/collections/16")).status_code == 404


# Product filters -----------------------------------------------------------------------------


def _sizes(body: Any) -> list[str]:
    items = body if isinstance(body, list) else body["data"]
    return sorted(
        (item.get("manualFields") or item.get("manual_fields") or {}).get("size", "?")
        for item in items
    )


async def _wait_past(moment: datetime) -> None:
    async def passed() -> bool:
        return datetime.now(UTC) > moment + timedelta(milliseconds=5)

    await eventually(passed, within=2, what="the clock to move on")


@pytest.mark.parametrize("dialect", ["standard", "snake", "envelope"])
async def test_product_date_filters_and_search(rs: RS, dialect: str) -> None:
    path = f"/collections/{ELECTRONICS}/products"

    async def create(size: str, file_name: str) -> str:
        body = {
            "collectionId": ELECTRONICS,
            "products": [{"images": [image(size, file_name)], "manual_fields": {"size": size}}],
        }
        product_id: str = (await rs.post("/products", body))["data"]["products"][0]["id"]
        return product_id

    alpha = await create("Alpha", "Red-Sneaker_0042.JPG")
    listed = (await rs.get(path))["data"]
    created_a = datetime.fromisoformat(listed[0]["createdAt"])
    await _wait_past(created_a)
    await create("Bravo", "blue.png")
    listed = {p["manualFields"]["size"]: p for p in (await rs.get(path))["data"]}
    created_b = datetime.fromisoformat(listed["Bravo"]["createdAt"])
    await _wait_past(created_b)
    await rs.post("/products/analyze", {"collectionId": ELECTRONICS, "productIds": [alpha]})
    await complete_all(rs)

    async def alpha_updated() -> dict[str, Any] | None:
        items = {p["manualFields"]["size"]: p for p in (await rs.get(path))["data"]}
        alpha_item = items["Alpha"]
        return alpha_item if alpha_item["updatedAt"] != alpha_item["createdAt"] else None

    analysed = await eventually(alpha_updated, within=5, what="Alpha's analysis to finish")
    updated_a = datetime.fromisoformat(analysed["updatedAt"])
    assert updated_a > created_b and analysed["title"]
    brand = analysed["title"].split()[0].upper()

    await rs.dialect(dialect)
    # Bounds with a fraction of a second (a whole second would cover that whole second).
    mid = created_a + (created_b - created_a) / 2 + timedelta(microseconds=1)
    late = created_b + (updated_a - created_b) / 2 + timedelta(microseconds=1)

    async def sizes(**query: str) -> list[str]:
        return _sizes(await rs.get(path, **query))

    plus_two = timezone(timedelta(hours=2))
    assert await sizes(created_after=mid.isoformat().replace("+00:00", "Z")) == ["Bravo"]
    assert await sizes(created_before=mid.astimezone(plus_two).isoformat()) == ["Alpha"]
    assert await sizes(created_after=mid.replace(tzinfo=None).isoformat()) == ["Bravo"]
    whole_second = created_a.replace(microsecond=0)
    assert await sizes(created_after=whole_second.isoformat()) == ["Alpha", "Bravo"]
    assert await sizes(created_before="2000-01-01") == []
    assert await sizes(created_after="2000-01-01T00:00:00Z", created_before=mid.isoformat()) == [
        "Alpha"
    ]
    assert await sizes(updated_after=late.isoformat()) == ["Alpha"]
    assert await sizes(updated_before=late.isoformat()) == ["Bravo"]
    # An unencoded `+` in a query string arrives as a space; the sandbox still reads it.
    raw = mid.astimezone(plus_two).isoformat()
    response = await rs.api.get(f"{path}?created_after={raw}")
    assert response.status_code == 200 and _sizes(response.json()) == ["Bravo"]
    bad = await rs.api.get(path, params={"updated_before": "yesterday"})
    assert bad.status_code in (400, 422)

    assert await sizes(search="red-sneaker_00") == ["Alpha"]  # an image's file name
    assert await sizes(search=".PNG") == ["Bravo"]
    assert await sizes(search="bRAVO") == ["Bravo"]  # a manual field value
    assert await sizes(search=brand) == ["Alpha"]  # the title from the analysis
    assert await sizes(search="nothing-like-this") == []
    assert await sizes(search="size") == []  # field names are not searched


@pytest.mark.parametrize("dialect", ["standard", "snake", "envelope"])
async def test_product_paging_and_images_flag(rs: RS, dialect: str) -> None:
    products = [{"images": [image(f"p{i}")], "manual_fields": {"size": f"S{i}"}} for i in range(5)]
    await rs.post("/products", {"collectionId": ELECTRONICS, "products": products})
    await rs.dialect(dialect)
    path = f"/collections/{ELECTRONICS}/products"
    pages = [await rs.get(path, limit=2, page=n) for n in (1, 2, 3, 4)]
    assert [len(_sizes(p)) for p in pages] == [2, 2, 1, 0]
    assert [size for p in pages for size in _sizes(p)] == [f"S{i}" for i in range(5)]
    if dialect == "standard":
        assert pages[0]["pagination"] == {"page": 1, "limit": 2, "total": 5, "totalPages": 3}
    elif dialect == "envelope":
        assert pages[2]["meta"] == {"page": 3, "limit": 2, "total": 5, "totalPages": 3}
    else:
        assert all(isinstance(p, list) for p in pages)
    assert len(_sizes(await rs.get(path, limit=500))) == 5
    assert (await rs.api.get(path, params={"page": 0})).status_code == 400
    for flag in ("true", "1"):
        body = await rs.get(path, include_images=flag)
        items = body if isinstance(body, list) else body["data"]
        assert all(item["images"] for item in items)
    body = await rs.get(path)
    assert not any("images" in item for item in (body if isinstance(body, list) else body["data"]))


# Analysing existing products -----------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_analyze_existing_products(rs: RS, receiver: Receiver, dialect: str) -> None:
    await rs.dialect(dialect)
    snake = dialect == "snake"
    created = await rs.post(
        "/products",
        {"collectionId": ELECTRONICS, "products": [{"images": [image(f"e{i}")]} for i in range(3)]},
    )
    ids = [p["id"] for p in (created if snake else created["data"])["products"]]
    chosen = [ids[2], ids[0]]
    answer = await rs.post("/products/analyze", {"collectionId": ELECTRONICS, "productIds": chosen})
    started = answer if snake else answer["data"]
    batch_id = started["batch_id" if snake else "batchId"]
    assert started["product_ids" if snake else "productIds"] == chosen
    [batch] = await rs.batches()
    assert batch["total_products"] == 2
    await complete_all(rs)
    event = await receiver.event()
    data = event["data"]
    key = "productId" if dialect == "envelope" else "product_id"
    assert [p[key] for p in data["products"]] == chosen
    if dialect != "webhook_only":
        results = await rs.get(f"/products/analyze/{batch_id}/results")
        body = results if snake else results["data"]
        assert [p[key] for p in body["products"]] == chosen

    other = await rs.post(
        "/products",
        {
            "collectionId": SNEAKERS,
            "products": [{"images": [image("o")], "manual_fields": {"purchasePrice": 1}}],
        },
    )
    other_id = (other if snake else other["data"])["products"][0]["id"]
    for wrong in ([other_id], ["no-such-product"], [ids[0], ids[0]]):
        refused = await rs.api.post(
            "/products/analyze", json={"collectionId": ELECTRONICS, "productIds": wrong}
        )
        assert refused.status_code == 422, wrong
    for body in ({"collectionId": ELECTRONICS, "productIds": []}, {"productIds": ids}):
        assert (await rs.api.post("/products/analyze", json=body)).status_code == 422
    assert len(await rs.batches()) == 1


# Faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("endpoint", ["/products/createAndAnalyze", "/products/analyze"])
async def test_faults_before_and_after_processing(rs: RS, dialect: str, endpoint: str) -> None:
    await rs.dialect(dialect)
    created = await rs.post(
        "/products", {"collectionId": ELECTRONICS, "products": [{"images": [image("f")]}]}
    )
    product_id = (created if dialect == "snake" else created["data"])["products"][0]["id"]
    if endpoint.endswith("createAndAnalyze"):
        body: dict[str, Any] = {"collectionId": ELECTRONICS, "products": [{"images": [image("g")]}]}
    else:
        body = {"collectionId": ELECTRONICS, "productIds": [product_id]}
    faults = {"match": endpoint, "methods": ["POST"]}
    cases = [
        ({"error_burst": 1, "error_status": 503, "error_after_processing": False}, False),
        ({"error_burst": 1, "error_status": 503, "error_after_processing": True}, True),
        ({"drop_count": 1, "drop_after_processing": False}, False),
        ({"drop_count": 1, "drop_after_processing": True}, True),
    ]
    for switches, processed in cases:
        before = len(await rs.batches())
        await rs.control("/sandbox/faults", {**faults, **switches})
        if "error_burst" in switches:
            response = await rs.api.post(endpoint, json=body)
            assert response.status_code == 503
            error = response.json()
            if dialect == "snake":
                assert error["status_code"] == 503 and "sandbox fault" in error["error"]
            elif dialect == "envelope":
                assert error["success"] is False and "sandbox fault" in error["message"]
            else:
                assert "sandbox fault" in error["message"]
        else:
            with pytest.raises(httpx.TransportError):
                await rs.api.post(endpoint, json=body)
        assert len(await rs.batches()) == before + int(processed), switches
    await rs.control("/sandbox/faults", {})
    await rs.post(endpoint, body)  # and without faults it works
