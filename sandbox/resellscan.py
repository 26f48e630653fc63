"""A Resell Scan-compatible REST API, written from the vendor guides (resell-scan-api.md).

Documented behaviour is reproduced as documented: bearer keys with per-resource permissions
(403), 429 when rate limited, `page`/`limit` (max 100)/`search`, product filters, required manual
fields enforced with a validation error, createAndAnalyze answering with a batchId, batch status
and results, and `analysis.completed` webhooks signed in `x-webhook-signature` and retried.
Where the guides are silent the sandbox makes a choice, listed in README "Sandbox".

Control endpoints live under /sandbox/ (request log, faults, config, webhooks, reset).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sandbox import data
from sandbox.data import read_json as _json

log = logging.getLogger("sandbox.resellscan")

API_PREFIX = "/api/v1"
MAX_IMAGE_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class ApiKey:
    permissions: frozenset[str]
    disabled: bool = False


KEYS = {
    "rs_test_full": ApiKey(frozenset({"collections", "products"})),
    "rs_test_collections_only": ApiKey(frozenset({"collections"})),
    "rs_test_disabled": ApiKey(frozenset({"collections", "products"}), disabled=True),
}


@dataclass
class Config:
    analysis_seconds: float = 3.0
    failure_rate: float = 0.05
    rate_limit: int = 600  # requests per key per window
    rate_window: float = 60.0
    webhook_max_attempts: int = 8
    webhook_backoff: float = 0.5
    image_timeout: float = 10.0


@dataclass
class Faults:
    """Switches for reliability tests. Counts are consumed by matching requests."""

    error_burst: int = 0
    error_status: int = 503
    error_rate: float = 0.0
    error_after_processing: bool = False
    latency: float = 0.0
    drop_count: int = 0
    drop_after_processing: bool = True
    storm_count: int = 0
    storm_retry_after: str = "1"
    match: str = ""  # only requests whose path contains this
    methods: list[str] = field(default_factory=list)
    webhook_duplicates: int = 0  # extra copies of each delivery
    webhook_delay_max: float = 0.0  # random delay per delivery (reordering)
    webhook_delay: float = 0.0  # fixed delay before each delivery (late arrival)
    seed: int = 7
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def matches(self, method: str, path: str) -> bool:
        return (not self.match or self.match in path) and (
            not self.methods or method in self.methods
        )


@dataclass
class Batch:
    id: str
    collection_id: str
    collection_name: str
    product_ids: list[str]
    outcomes: list[dict[str, Any]]
    started: float  # monotonic
    started_iso: str
    duration: float
    webhook_state: str = "pending"  # pending, delivered, failed, none
    event_id: str = field(default_factory=lambda: f"evt_{uuid.uuid4()}")

    def progress_at(self, now: float) -> float:
        if self.duration <= 0:
            return 100.0
        return max(0.0, min(100.0, 100.0 * (now - self.started) / self.duration))

    def product_done(self, index: int, now: float) -> bool:
        share = (index + 1) / len(self.product_ids)
        return now - self.started >= self.duration * share

    def finished(self, now: float) -> bool:
        return now - self.started >= self.duration


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "message": message, **extra}, status_code=status)


class ResellScanSandbox:
    """The state and HTTP handlers of the Resell Scan stand-in."""

    def __init__(self, *, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.collections = data.seed_collections()
        self.by_id = {c.id: c for c in self.collections}
        self.config = Config()
        self.faults = Faults()
        self.products: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, Batch] = {}
        self.requests: list[dict[str, Any]] = []
        self.deliveries: list[dict[str, Any]] = []
        self.idempotency: dict[tuple[str, str], tuple[str, int, Any]] = {}
        self.rate: dict[str, list[float]] = {}
        self.webhook_url = ""
        self.webhook_secret = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # Lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=self.config.image_timeout)
        self._wake = asyncio.Event()
        self._dispatcher = asyncio.create_task(self._dispatch_loop())

    async def stop(self) -> None:
        if self._dispatcher:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http:
            await self._http.aclose()

    def reset(self) -> None:
        self.config = Config()
        self.faults = Faults()
        self.products.clear()
        self.batches.clear()
        self.requests.clear()
        self.deliveries.clear()
        self.idempotency.clear()
        self.rate.clear()
        self.webhook_url = ""
        self.webhook_secret = ""
        for task in list(self._tasks):
            task.cancel()

    # Routing -------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        api = [
            ("GET", "/collections", self.list_collections, "collections"),
            ("GET", "/collections/{cid}", self.get_collection, "collections"),
            ("GET", "/collections/{cid}/products", self.list_products, "products"),
            ("GET", "/collections/{cid}/manual-fields", self.manual_fields, "collections"),
            ("POST", "/products", self.create_products, "products"),
            ("POST", "/products/analyze", self.analyze, "products"),
            ("POST", "/products/createAndAnalyze", self.create_and_analyze, "products"),
            ("GET", "/products/analyze/{bid}", self.batch_status, "products"),
            ("GET", "/products/analyze/{bid}/results", self.batch_results, "products"),
        ]
        routes = [
            Route(API_PREFIX + path, self._guarded(handler, resource), methods=[method])
            for method, path, handler, resource in api
        ]
        routes.append(Route(API_PREFIX + "/docs", self.docs, methods=["GET"]))
        control = [
            ("GET", "/sandbox/requests", self.ctl_requests),
            ("POST", "/sandbox/reset", self.ctl_reset),
            ("POST", "/sandbox/faults", self.ctl_faults),
            ("POST", "/sandbox/config", self.ctl_config),
            ("POST", "/sandbox/webhooks", self.ctl_webhooks),
            ("GET", "/sandbox/webhooks/deliveries", self.ctl_deliveries),
            ("GET", "/sandbox/batches", self.ctl_batches),
            ("POST", "/sandbox/batches/{bid}/complete", self.ctl_complete),
        ]
        routes += [Route(path, handler, methods=[method]) for method, path, handler in control]
        return routes

    def _guarded(self, handler: Any, resource: str) -> Any:
        """Wrap an API handler with the request log, faults, auth and the rate limit."""

        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            entry: dict[str, Any] = {
                "method": request.method,
                "path": request.url.path.removeprefix(API_PREFIX),
                "query": dict(request.query_params),
                "idempotency_key": request.headers.get("idempotency-key"),
                "body": _summarise(raw),
                "at": time.time(),
            }
            self.requests.append(entry)
            response = await self._serve(request, raw, handler, resource, entry)
            entry["status"] = response.status_code
            return response

        return endpoint

    async def _serve(
        self, request: Request, raw: bytes, handler: Any, resource: str, entry: dict[str, Any]
    ) -> Response:
        faults = self.faults
        if faults.latency:
            await asyncio.sleep(faults.latency)
        matches = faults.matches(request.method, entry["path"])
        if matches and faults.storm_count > 0:
            faults.storm_count -= 1
            return JSONResponse(
                {"error": "Too many requests", "message": "Rate limit exceeded"},
                status_code=429,
                headers={"Retry-After": faults.storm_retry_after},
            )
        fail_now = False
        if matches and faults.error_burst > 0:
            faults.error_burst -= 1
            fail_now = True
        elif matches and faults.error_rate and faults.rng.random() < faults.error_rate:
            fail_now = True
        if fail_now and not faults.error_after_processing:
            return _error(faults.error_status, "Internal error (sandbox fault)")
        drop_now = matches and faults.drop_count > 0
        if drop_now:
            faults.drop_count -= 1
            if not faults.drop_after_processing:
                return _DroppedResponse()
        auth = request.headers.get("authorization", "")
        key_name = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        entry["key"] = key_name[:11]
        key = KEYS.get(key_name)
        if key is None:
            return _error(401, "Missing or invalid API key")
        if key.disabled:
            return _error(401, "API key is disabled")
        if resource not in key.permissions:
            return _error(
                403, f"API key lacks the '{resource}' permission", required_permission=resource
            )
        retry_after = self._rate_limited(key_name)
        if retry_after is not None:
            return JSONResponse(
                {"error": "Too many requests", "message": "Rate limit exceeded"},
                status_code=429,
                headers={"Retry-After": str(max(1, int(retry_after + 0.999)))},
            )
        idem = request.headers.get("idempotency-key")
        if request.method == "POST" and idem:
            body_hash = hashlib.sha256(raw).hexdigest()
            cached = self.idempotency.get((key_name, idem))
            if cached is not None:
                if cached[0] != body_hash:
                    return _error(422, "Idempotency-Key was used with a different body")
                entry["replayed"] = True
                return JSONResponse(cached[2], status_code=cached[1])
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return _error(400, "Body is not valid JSON")
        response: Response = await handler(request, body)
        if request.method == "POST" and idem and response.status_code < 500:
            self.idempotency[(key_name, idem)] = (
                hashlib.sha256(raw).hexdigest(),
                response.status_code,
                json.loads(bytes(response.body)),
            )
        if fail_now:
            return _error(faults.error_status, "Internal error after processing (sandbox fault)")
        if drop_now:
            return _DroppedResponse()
        return response

    def _rate_limited(self, key: str) -> float | None:
        now = self.clock()
        window = self.config.rate_window
        hits = [t for t in self.rate.get(key, []) if now - t < window]
        if len(hits) >= self.config.rate_limit:
            self.rate[key] = hits
            return float(window - (now - hits[0]))
        hits.append(now)
        self.rate[key] = hits
        return None

    # API handlers --------------------------------------------------------------------------

    async def list_collections(self, request: Request, _body: Any) -> Response:
        paging = _paging(request)
        if isinstance(paging, Response):
            return paging
        page, limit = paging
        search = request.query_params.get("search", "").strip().lower()
        items = [c for c in self.collections if search in c.name.lower()]
        return _paged([self._collection_json(c) for c in items], page, limit)

    async def get_collection(self, request: Request, _body: Any) -> Response:
        found = self.by_id.get(request.path_params["cid"])
        if found is None:
            return _error(404, "Collection not found")
        return JSONResponse({"data": self._collection_json(found)})

    async def manual_fields(self, request: Request, _body: Any) -> Response:
        found = self.by_id.get(request.path_params["cid"])
        if found is None:
            return _error(404, "Collection not found")
        return JSONResponse({"data": [f.as_json() for f in found.fields]})

    async def list_products(self, request: Request, _body: Any) -> Response:
        cid = request.path_params["cid"]
        if cid not in self.by_id:
            return _error(404, "Collection not found")
        paging = _paging(request)
        if isinstance(paging, Response):
            return paging
        page, limit = paging
        q = request.query_params
        search = q.get("search", "").strip().lower()
        include_images = q.get("include_images", "false").lower() in ("true", "1", "yes")
        bounds: dict[str, datetime] = {}
        for name in ("created_after", "created_before", "updated_after", "updated_before"):
            if name in q:
                try:
                    bounds[name] = datetime.fromisoformat(q[name].replace("Z", "+00:00"))
                except ValueError:
                    return _error(400, f"{name} must be an ISO 8601 date", field=name)
        items = []
        for product in self.products.values():
            if product["collectionId"] != cid:
                continue
            if (
                search
                and search not in json.dumps(product["manualFields"]).lower()
                and (search not in (product.get("title") or "").lower())
            ):
                continue
            created = datetime.fromisoformat(product["createdAt"].replace("Z", "+00:00"))
            if "created_after" in bounds and created < bounds["created_after"]:
                continue
            if "created_before" in bounds and created > bounds["created_before"]:
                continue
            if "updated_after" in bounds and created < bounds["updated_after"]:
                continue
            if "updated_before" in bounds and created > bounds["updated_before"]:
                continue
            shown = {k: v for k, v in product.items() if k != "_images"}
            if include_images:
                shown["images"] = product["images"]
            else:
                shown.pop("images", None)
            items.append(shown)
        return _paged(items, page, limit)

    async def create_products(self, request: Request, body: Any) -> Response:
        checked = await self._check_products(body)
        if isinstance(checked, Response):
            return checked
        _collection, created = checked
        return JSONResponse({"data": {"products": [self._public(p) for p in created]}}, 201)

    def _collection_and_list(
        self, body: Any, key: str
    ) -> tuple[data.CollectionDef, list[Any]] | Response:
        """The body's known collection and its non-empty list `key`, or the validation error."""
        if not isinstance(body, dict):
            return _error(422, "Body must be a JSON object")
        collection = self.by_id.get(str(body.get("collectionId", "")))
        if collection is None:
            return _error(
                422,
                "Unknown collectionId",
                errors=[{"field": "collectionId", "message": "unknown collection"}],
            )
        items = body.get(key)
        if not isinstance(items, list) or not items:
            return _error(
                422,
                f"{key} must be a non-empty array",
                errors=[{"field": key, "message": "required"}],
            )
        return collection, items

    async def analyze(self, request: Request, body: Any) -> Response:
        checked = self._collection_and_list(body, "productIds")
        if isinstance(checked, Response):
            return checked
        collection, ids = checked
        products = []
        for index, pid in enumerate(ids):
            product = self.products.get(str(pid))
            if product is None or product["collectionId"] != collection.id:
                return _error(
                    422,
                    "Unknown product for this collection",
                    errors=[{"field": f"productIds[{index}]", "message": "unknown"}],
                )
            products.append(product)
        batch = self._start_batch(collection, products)
        return JSONResponse({"data": {"batchId": batch.id, "productIds": batch.product_ids}}, 201)

    async def create_and_analyze(self, request: Request, body: Any) -> Response:
        checked = await self._check_products(body)
        if isinstance(checked, Response):
            return checked
        collection, created = checked
        batch = self._start_batch(collection, created)
        return JSONResponse(
            {
                "success": True,
                "data": {
                    "batchId": batch.id,
                    "status": "processing",
                    "productIds": batch.product_ids,
                    "totalProducts": len(created),
                },
            },
            status_code=201,
        )

    async def batch_status(self, request: Request, _body: Any) -> Response:
        batch = self.batches.get(request.path_params["bid"])
        if batch is None:
            return _error(404, "Batch not found")
        summary = self._batch_summary(batch)
        return JSONResponse({"data": {_camel(k): v for k, v in summary.items()}})

    async def batch_results(self, request: Request, _body: Any) -> Response:
        batch = self.batches.get(request.path_params["bid"])
        if batch is None:
            return _error(404, "Batch not found")
        return JSONResponse({"data": self._batch_payload(batch)})

    async def docs(self, request: Request) -> Response:
        return JSONResponse({"info": "Resell Scan sandbox; see the project README"})

    # Validation and creation ---------------------------------------------------------------

    async def _check_products(
        self, body: Any
    ) -> tuple[data.CollectionDef, list[dict[str, Any]]] | Response:
        checked = self._collection_and_list(body, "products")
        if isinstance(checked, Response):
            return checked
        collection, products = checked
        problems: list[dict[str, str]] = []
        for index, product in enumerate(products):
            where = f"products[{index}]"
            if not isinstance(product, dict):
                problems.append({"field": where, "message": "must be an object"})
                continue
            images = product.get("images")
            if not isinstance(images, list) or not images:
                problems.append({"field": f"{where}.images", "message": "at least one image"})
            else:
                for j, image in enumerate(images):
                    ok = isinstance(image, dict) and (
                        isinstance(image.get("url"), str) or isinstance(image.get("base64"), str)
                    )
                    if not ok:
                        problems.append(
                            {"field": f"{where}.images[{j}]", "message": "needs url or base64"}
                        )
            fields = product.get("manual_fields", {})
            if not isinstance(fields, dict):
                problems.append({"field": f"{where}.manual_fields", "message": "must be an object"})
                fields = {}
            problems += _check_fields(collection, fields, where)
        if problems:
            return _error(422, "Validation failed", errors=problems)
        fetched: list[list[bytes]] = []
        for index, product in enumerate(products):
            blobs = []
            for j, image in enumerate(product["images"]):
                got = await self._load_image(image)
                if isinstance(got, str):
                    problems.append({"field": f"products[{index}].images[{j}]", "message": got})
                else:
                    blobs.append(got)
            fetched.append(blobs)
        if problems:
            return _error(422, "Image could not be loaded", errors=problems)
        created = []
        for product, blobs in zip(products, fetched, strict=True):
            created.append(self._store_product(collection, product, blobs))
        return collection, created

    async def _load_image(self, image: dict[str, Any]) -> bytes | str:
        """The image bytes, or a message saying why not. URLs are really fetched."""
        url = image.get("url")
        encoded = image.get("base64")
        if isinstance(url, str) and url.startswith("data:"):
            header, _, encoded = url.partition(",")
            if ";base64" not in header:
                return "data URI must be base64"
        if isinstance(encoded, str):
            try:
                blob = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                return "base64 is not valid"
        elif isinstance(url, str):
            if not url.startswith(("http://", "https://")):
                return "url must be http(s)"
            assert self._http is not None
            try:
                async with self._http.stream("GET", url, timeout=self.config.image_timeout) as r:
                    if r.status_code != 200:
                        return f"fetching the image gave HTTP {r.status_code}"
                    chunks, size = [], 0
                    async for chunk in r.aiter_bytes():
                        size += len(chunk)
                        if size > MAX_IMAGE_BYTES:
                            return "image is larger than 20 MB"
                        chunks.append(chunk)
                    blob = b"".join(chunks)
            except httpx.HTTPError as exc:
                return f"fetching the image failed ({type(exc).__name__})"
        else:
            return "needs url or base64"
        if len(blob) > MAX_IMAGE_BYTES:
            return "image is larger than 20 MB"
        if data.sniff_image(blob) is None:
            return "not an image (JPEG, PNG, WebP or GIF expected)"
        return blob

    def _store_product(
        self, collection: data.CollectionDef, product: dict[str, Any], blobs: list[bytes]
    ) -> dict[str, Any]:
        pid = str(uuid.uuid4())
        now = _now_iso()
        images = []
        for image, blob in zip(product["images"], blobs, strict=True):
            url = image.get("url", "")
            images.append(
                {
                    "url": url
                    if url.startswith("http")
                    else f"sandbox://image/{hashlib.sha256(blob).hexdigest()[:16]}",
                    "fileName": image.get("fileName"),
                    "removeBackground": bool(image.get("removeBackground", False)),
                    "size": len(blob),
                    "sha256": hashlib.sha256(blob).hexdigest(),
                }
            )
        record = {
            "id": pid,
            "collectionId": collection.id,
            "manualFields": product.get("manual_fields", {}),
            "images": images,
            "title": None,
            "createdAt": now,
            "updatedAt": now,
            "_images": blobs,
        }
        self.products[pid] = record
        return record

    @staticmethod
    def _public(product: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in product.items() if not k.startswith("_")}

    def _start_batch(self, collection: data.CollectionDef, products: list[dict[str, Any]]) -> Batch:
        outcomes = [
            data.analyse(p["_images"], collection.name, self.config.failure_rate) for p in products
        ]
        batch = Batch(
            id=str(uuid.uuid4()),
            collection_id=collection.id,
            collection_name=collection.name,
            product_ids=[p["id"] for p in products],
            outcomes=outcomes,
            started=self.clock(),
            started_iso=_now_iso(),
            duration=self.config.analysis_seconds,
            webhook_state="pending" if self.webhook_url else "none",
        )
        self.batches[batch.id] = batch
        self._wake.set()
        return batch

    def _collection_json(self, c: data.CollectionDef) -> dict[str, Any]:
        count = sum(1 for p in self.products.values() if p["collectionId"] == c.id)
        return c.as_json(count)

    # Batches and webhooks ------------------------------------------------------------------

    def _batch_summary(self, batch: Batch) -> dict[str, Any]:
        now = self.clock()
        done = [i for i in range(len(batch.product_ids)) if batch.product_done(i, now)]
        failed = sum(1 for i in done if batch.outcomes[i]["status"] == "failed")
        finished = batch.finished(now)
        total = len(batch.product_ids)
        return {
            "batch_id": batch.id,
            "collection_id": batch.collection_id,
            "status": "completed"
            if finished
            else ("processing" if done or now > batch.started else "pending"),
            "total_products": total,
            "successful_products": len(done) - failed,
            "failed_products": failed,
            "success_rate": round(100 * (len(done) - failed) / total, 1) if finished else None,
            "progress": round(batch.progress_at(now), 1),
            "started_at": batch.started_iso,
            "completed_at": _now_iso() if finished else None,
        }

    def _batch_payload(self, batch: Batch) -> dict[str, Any]:
        now = self.clock()
        summary = self._batch_summary(batch)
        products = []
        for index, pid in enumerate(batch.product_ids):
            outcome = batch.outcomes[index]
            finished = batch.product_done(index, now)
            products.append(
                {
                    "product_id": pid,
                    "product_data": {"manual_fields": self.products[pid]["manualFields"]}
                    if pid in self.products
                    else {},
                    "status": outcome["status"] if finished else "processing",
                    "progress": 100 if finished else round(batch.progress_at(now), 1),
                    "result": outcome["result"] if finished else {},
                    "error": outcome["error"] if finished else None,
                }
            )
        summary["products"] = products
        return summary

    async def _dispatch_loop(self) -> None:
        while True:
            now = self.clock()
            waits = []
            for batch in list(self.batches.values()):
                if batch.webhook_state != "pending":
                    continue
                if batch.finished(now):
                    batch.webhook_state = "sending"
                    copies = 1 + self.faults.webhook_duplicates
                    for _ in range(copies):
                        self._spawn(self._deliver(batch))
                else:
                    waits.append(batch.started + batch.duration - now)
            timeout = min(waits) if waits else 1.0
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.005, timeout))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def event_body(self, batch: Batch) -> bytes:
        payload = {
            "id": batch.event_id,
            "event": "analysis.completed",
            "created_at": _now_iso(),
            "data": self._batch_payload(batch),
        }
        return json.dumps(payload).encode()

    async def _deliver(self, batch: Batch) -> None:
        """POST the signed event; retry with backoff on non-2xx or errors, same event id."""
        assert self._http is not None
        if self.faults.webhook_delay:
            await asyncio.sleep(self.faults.webhook_delay)
        if self.faults.webhook_delay_max:
            await asyncio.sleep(self.faults.rng.uniform(0, self.faults.webhook_delay_max))
        url, secret = self.webhook_url, self.webhook_secret
        body = self.event_body(batch)
        for attempt in range(1, self.config.webhook_max_attempts + 1):
            status: int | str
            sent_at = time.time()
            try:
                response = await self._http.post(
                    url,
                    content=body,
                    headers={
                        "content-type": "application/json",
                        "x-webhook-signature": sign(body, secret),
                    },
                    timeout=10.0,
                )
                status = response.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            self.deliveries.append(
                {
                    "event_id": batch.event_id,
                    "batch_id": batch.id,
                    "attempt": attempt,
                    "status": status,
                    "sent_at": sent_at,
                    "at": time.time(),
                }
            )
            if isinstance(status, int) and 200 <= status < 300:
                batch.webhook_state = "delivered"
                return
            await asyncio.sleep(self.config.webhook_backoff * 2 ** (attempt - 1))
        batch.webhook_state = "failed"

    # Control API ---------------------------------------------------------------------------

    async def ctl_requests(self, request: Request) -> Response:
        q = request.query_params
        items = [
            r
            for r in self.requests
            if ("path" not in q or r["path"] == q["path"])
            and ("method" not in q or r["method"] == q["method"])
        ]
        return JSONResponse({"requests": items, "count": len(items)})

    async def ctl_reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"ok": True})

    async def ctl_faults(self, request: Request) -> Response:
        body = await _json(request)
        faults = Faults()
        for key, value in body.items():
            if not hasattr(faults, key) or key == "rng":
                return _error(400, f"unknown fault {key!r}")
            setattr(faults, key, value)
        faults.rng = random.Random(faults.seed)
        self.faults = faults
        return JSONResponse({"ok": True})

    async def ctl_config(self, request: Request) -> Response:
        body = await _json(request)
        for key, value in body.items():
            if not hasattr(self.config, key):
                return _error(400, f"unknown setting {key!r}")
            setattr(self.config, key, value)
        return JSONResponse({"ok": True, "config": self.config.__dict__})

    async def ctl_webhooks(self, request: Request) -> Response:
        body = await _json(request)
        url, secret = str(body.get("url", "")), str(body.get("secret", ""))
        if url and not secret.startswith("whsec_"):
            return _error(400, "secret must start with whsec_")
        self.webhook_url, self.webhook_secret = url, secret
        return JSONResponse({"ok": True})

    async def ctl_deliveries(self, request: Request) -> Response:
        return JSONResponse({"deliveries": self.deliveries})

    async def ctl_batches(self, request: Request) -> Response:
        out = []
        for batch in self.batches.values():
            summary = self._batch_summary(batch)
            summary["webhook_state"] = batch.webhook_state
            summary["event_id"] = batch.event_id
            out.append(summary)
        return JSONResponse({"batches": out})

    async def ctl_complete(self, request: Request) -> Response:
        """Finish a batch now (tests that should not wait for the analysis time)."""
        batch = self.batches.get(request.path_params["bid"])
        if batch is None:
            return _error(404, "Batch not found")
        batch.duration = max(0.0, self.clock() - batch.started)
        self._wake.set()
        return JSONResponse({"ok": True})


def sign(body: bytes, secret: str) -> str:
    """The sandbox's signing scheme: lowercase hex HMAC-SHA256 of the raw body, keyed with the
    whole `whsec_` secret. (An assumption; the vendor does not document it.)"""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _check_fields(
    collection: data.CollectionDef, values: dict[str, Any], where: str
) -> list[dict[str, str]]:
    problems = []
    by_key = {f.key: f for f in collection.fields}
    for f in collection.fields:
        if f.required and (f.key not in values or values[f.key] in (None, "")):
            problems.append(
                {"field": f"{where}.manual_fields.{f.key}", "message": "required field missing"}
            )
    for key, value in values.items():
        definition = by_key.get(key)
        path = f"{where}.manual_fields.{key}"
        if definition is None:
            problems.append({"field": path, "message": "unknown field"})
        elif value is None:
            continue
        elif definition.type == "number" and not (
            isinstance(value, int | float) and not isinstance(value, bool)
        ):
            problems.append({"field": path, "message": "must be a number"})
        elif definition.type == "integer" and not (
            isinstance(value, int) and not isinstance(value, bool)
        ):
            problems.append({"field": path, "message": "must be an integer"})
        elif definition.type == "boolean" and not isinstance(value, bool):
            problems.append({"field": path, "message": "must be true or false"})
        elif definition.type == "select" and value not in definition.options:
            problems.append(
                {"field": path, "message": "must be one of " + ", ".join(definition.options)}
            )
        elif definition.type == "text" and not isinstance(value, str):
            problems.append({"field": path, "message": "must be text"})
    return problems


def _paging(request: Request) -> tuple[int, int] | Response:
    try:
        page = int(request.query_params.get("page", "1"))
        limit = int(request.query_params.get("limit", "20"))
    except ValueError:
        return _error(400, "page and limit must be integers")
    if page < 1 or limit < 1:
        return _error(400, "page and limit must be at least 1")
    return page, min(limit, 100)


def _paged(items: list[dict[str, Any]], page: int, limit: int) -> Response:
    start = (page - 1) * limit
    total = len(items)
    return JSONResponse(
        {
            "data": items[start : start + limit],
            "pagination": {
                "page": page,
                "limit": limit,
                "total": total,
                "totalPages": max(1, -(-total // limit)),
            },
        }
    )


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)


def _summarise(raw: bytes) -> Any:
    """The request body for the log, with long strings (base64) shortened."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_raw_bytes": len(raw)}

    def shorten(v: Any) -> Any:
        if isinstance(v, str) and len(v) > 256:
            return f"<{len(v)} chars>"
        if isinstance(v, dict):
            return {k: shorten(x) for k, x in v.items()}
        if isinstance(v, list):
            return [shorten(x) for x in v]
        return v

    return shorten(value)


class _DroppedResponse(Response):
    """Announce a body, send part of it and stop: the client sees the connection end mid-reply."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        # uvicorn's h11 refuses to end a short body and closes the connection: exactly the
        # failure the client should see. sandbox.server filters the error uvicorn logs for it.
        await send({"type": "http.response.body", "body": b'{"data":', "more_body": False})
