"""A Resell Scan-compatible REST API, written from the vendor guides (resell-scan-api.md).

Documented behaviour is reproduced as documented: bearer keys with per-resource permissions
(403), 429 when rate limited, `page`/`limit` (max 100)/`search`, product filters, required manual
fields enforced with a validation error, createAndAnalyze answering with a batchId, batch status
and results, and `analysis.completed` webhooks signed in `x-webhook-signature` and retried.
Where the guides are silent the sandbox makes a choice, listed in README "Sandbox". Some of
those choices can be switched (`POST /sandbox/config`), because the bot must not rely on them:
`honour_idempotency_key` (default true: a POST resent with the same `Idempotency-Key` and body
gets the first answer; false: every POST is processed anew, as by a server that ignores the
header) and `listing_file_names` (default true: product listings show each image's `fileName`
and `search` covers it; false: images carry only a content-named URL and search ignores them).
A third, `webhook_file_names` (default false), adds the images' file names to the webhook's
`product_data` (empty in the guide's example).

Dialects. Only the webhook payload and the request bodies are documented, so the real service may
answer in other shapes than the sandbox's guess. `POST /sandbox/config {"dialect": …}` picks how
every API answer (lists, objects, POST answers, batch status and results, 4xx bodies, the
webhook's `data`) is rendered; the state behind them is the same. Handlers build one canonical
record (the `standard` shape, with ids, timestamps and user data marked by `Ref`, `Stamp` and
`Raw`) and a `Dialect` renders it:

- `standard`: `{"data": …}` (lists add `pagination`), camelCase REST objects, snake_case batch
  results and webhook data, UUID strings, ISO 8601 UTC with milliseconds and `Z`.
- `snake`: bare JSON (lists are bare arrays without paging metadata), snake_case keys, integer
  ids (collections from 17, products from 501, batches from 9001), epoch seconds (webhook
  `data.completed_at` in milliseconds), batch-status counts as numeric strings and
  `"products": null`, manual field `required` as 0/1 and options as `{value, label}`, a failed
  product's `error` as a plain string, a product still processing with `status`/`result` null,
  results with `brand: {name, id}`, `price: {min, max, currency}` and `confidence` as a string.
- `envelope`: `{"success": true, "data": …, "meta": {…}}` (paging in `meta`), camelCase keys
  everywhere, UPPER CASE statuses, ISO 8601 without zone or fraction (UTC), booleans as
  `"true"`/`"false"` (manual field `isRequired`), product images as only a CDN `url` ending in
  the file name, results with `estimatedPrice: {value, currency}` and `confidence` 0-100; errors
  `{"success": false, "errors": [{field, message}], "message"}`.
- `webhook_only`: `standard`, except that batch status and results never report completion
  (only the webhook does) and product images carry `name` instead of `fileName`.

Path ids and body ids (`collectionId`, `productIds`) are accepted as the UUID, the integer alias,
or its decimal string, whatever the dialect.

Fault switches (`POST /sandbox/faults`, consumed by requests whose path contains `match` and
whose method is in `methods`): `error_burst` (or `error_rate`) answers `error_status`, BEFORE the
request is processed when `error_after_processing` is false, or after the handler ran (the
products and batch exist, the client only sees the error) when it is true; `drop_count` ends the
connection mid-answer, after processing when `drop_after_processing` is true (the default) or
before it; `storm_count` answers 429 with `Retry-After: storm_retry_after`; `latency` delays
every request; `webhook_duplicates`, `webhook_delay` and `webhook_delay_max` (random, so
deliveries reorder) shape the webhook deliveries. These apply alike in every dialect (the error
bodies take the dialect's shape).

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
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sandbox import data
from sandbox.data import read_json as _json

log = logging.getLogger("sandbox.resellscan")

API_PREFIX = "/api/v1"
MAX_IMAGE_BYTES = 20 * 1024 * 1024
CDN = "https://cdn.resell-scan.sandbox"
DATE_FILTERS = ("created_after", "created_before", "updated_after", "updated_before")


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
    # With a maximum, each batch takes its own time, uniform between the two, drawn from
    # `analysis_seed` and the batch's number (the same run draws the same times).
    analysis_seconds_max: float | None = None
    analysis_seed: int = 7
    failure_rate: float = 0.05
    rate_limit: int = 600  # requests per key per window
    rate_window: float = 60.0
    webhook_max_attempts: int = 8
    webhook_backoff: float = 0.5
    image_timeout: float = 10.0
    dialect: str = "standard"  # a key of DIALECTS
    # What the guide leaves open (resell-scan-api.md §9 #13, bot/reconcile.py): whether a
    # POST's Idempotency-Key is honoured (a resend answered with the first call's result),
    # and whether product listings show the images' file names (fields, URLs and search).
    honour_idempotency_key: bool = True
    listing_file_names: bool = True
    # The webhook's `product_data` is an empty object in the guide's example (contents
    # UNKNOWN, §5.3): the sandbox sends manual fields, and with this also the images' file
    # names (a dialect the bot must not count on, and may use where it sees it).
    webhook_file_names: bool = False


@dataclass
class Faults:
    """Switches for reliability tests. Counts are consumed by matching requests."""

    error_burst: int = 0
    error_status: int = 503
    error_rate: float = 0.0
    error_after_processing: bool | float = False  # a float: the share of errors that come after
    latency: float = 0.0
    drop_count: int = 0
    drop_after_processing: bool = True
    storm_count: int = 0
    storm_retry_after: str = "1"
    match: str = ""  # only requests whose path contains this
    pattern: str = ""  # or whose path matches this regular expression (re.search)
    methods: list[str] = field(default_factory=list)
    webhook_duplicates: int = 0  # extra copies of each delivery
    webhook_delay_max: float = 0.0  # random delay per delivery (reordering)
    webhook_delay: float = 0.0  # fixed delay before each delivery (late arrival)
    seed: int = 7
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def matches(self, method: str, path: str) -> bool:
        return (
            (not self.match or self.match in path)
            and (not self.pattern or re.search(self.pattern, path) is not None)
            and (not self.methods or method in self.methods)
        )


@dataclass
class Product:
    id: str
    collection_id: str
    manual_fields: dict[str, Any]
    images: list[dict[str, Any]]  # url, fileName (as sent), removeBackground, size, sha256
    blobs: list[bytes]
    created: datetime
    updated: datetime
    title: str | None = None  # set when an analysis of it succeeds

    def matches(self, needle: str, *, file_names: bool = True) -> bool:
        """`search`: a case-insensitive substring of the title, a manual field value or (when
        listings show them) the file name of one of its images."""
        texts = [self.title or ""]
        texts += [str(v) for v in self.manual_fields.values()]
        if file_names:
            texts += [str(i.get("fileName") or "") for i in self.images]
        return any(needle in text.lower() for text in texts)


@dataclass
class Batch:
    id: str
    collection_id: str
    collection_name: str
    product_ids: list[str]
    outcomes: list[dict[str, Any]]
    started: float  # monotonic
    started_at: datetime  # wall clock
    duration: float
    webhook_state: str = "pending"  # pending, delivered, failed, none
    event_id: str = field(default_factory=lambda: f"evt_{uuid.uuid4()}")
    applied: set[int] = field(default_factory=set)  # outcomes already applied to the products

    def progress_at(self, now: float) -> float:
        if self.duration <= 0:
            return 100.0
        return max(0.0, min(100.0, 100.0 * (now - self.started) / self.duration))

    def product_offset(self, index: int) -> float:
        """Seconds after the start at which product `index` is done."""
        return self.duration * (index + 1) / len(self.product_ids)

    def product_done(self, index: int, now: float) -> bool:
        return now - self.started >= self.product_offset(index)

    def finished(self, now: float) -> bool:
        return now - self.started >= self.duration

    @property
    def completed_at(self) -> datetime:
        return self.started_at + timedelta(seconds=self.duration)


def _now() -> datetime:
    """The wall clock in UTC, to the millisecond (the precision the standard dialect shows)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _iso_ms(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_instant(text: str) -> datetime | None:
    """An ISO 8601 date or time (`Z`, `+02:00`, fraction or not); naive means UTC."""
    value = text.strip()
    for candidate in (value, value.replace(" ", "+")):  # a `+` that arrived unencoded
        try:
            at = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at
    return None


# Canonical records and dialects ------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """An object id (UUID) in a canonical record; the dialect decides how it looks."""

    uuid: str


@dataclass(frozen=True)
class Stamp:
    """A point in time in a canonical record."""

    at: datetime


@dataclass(frozen=True)
class Raw:
    """User data (manual field values) that no dialect recases or retypes."""

    value: Any


@dataclass(frozen=True)
class Page:
    page: int
    limit: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.limit))


class Aliases:
    """Stable integer aliases of collections, products and batches (the `snake` dialect's ids).

    Every lookup accepts the UUID, the integer or its decimal string, in any dialect."""

    FIRST: ClassVar[dict[str, int]] = {"collection": 17, "product": 501, "batch": 9001}

    def __init__(self) -> None:
        self.numbers: dict[str, int] = {}
        self.uuids: dict[tuple[str, int], str] = {}
        self.next = dict(self.FIRST)

    def add(self, kind: str, uid: str) -> int:
        number = self.next[kind]
        self.next[kind] += 1
        self.numbers[uid] = number
        self.uuids[(kind, number)] = uid
        return number

    def uuid(self, kind: str, raw: Any) -> str:
        """The UUID `raw` names; anything unknown comes back as text (which then finds nothing)."""
        if isinstance(raw, int) and not isinstance(raw, bool):
            return self.uuids.get((kind, raw), str(raw))
        text = str(raw).strip()
        if text.isascii() and text.isdigit():
            return self.uuids.get((kind, int(text)), text)
        return text


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)


def _snake(key: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()


class Dialect:
    """`standard`: the sandbox's first guess. Also the base of the others.

    The record hooks (`manual_field` … `webhook_data`) reshape a canonical record where a dialect
    differs in more than keys and value types (building new dicts, never touching the sandbox's
    state); `render` then applies the value rules (`key`, `ref`, `stamp`, `status`, `boolean`)
    all the way down; `one`, `many` and `error` wrap the result into a response body."""

    name = "standard"
    reports_completion = True  # False: status and results never say a batch finished

    def __init__(self, aliases: Aliases) -> None:
        self.aliases = aliases

    # Value rules -----------------------------------------------------------------------------

    def key(self, key: str) -> str:
        return key

    def ref(self, ref: Ref) -> Any:
        return ref.uuid

    def stamp(self, at: datetime) -> Any:
        return _iso_ms(at)

    def status(self, status: str) -> Any:
        return status

    def boolean(self, value: bool) -> Any:
        return value

    def render(self, value: Any) -> Any:
        if isinstance(value, Raw):
            return value.value
        if isinstance(value, Ref):
            return self.ref(value)
        if isinstance(value, Stamp):
            return self.stamp(value.at)
        if isinstance(value, bool):
            return self.boolean(value)
        if isinstance(value, dict):
            return {
                self.key(k): self.status(v)
                if k == "status" and isinstance(v, str)
                else self.render(v)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.render(v) for v in value]
        return value

    # Record hooks ----------------------------------------------------------------------------

    def manual_field(self, rec: dict[str, Any]) -> dict[str, Any]:
        return rec

    def product(self, rec: dict[str, Any]) -> dict[str, Any]:
        if "images" not in rec:
            return rec
        pid = rec["id"].uuid
        return {
            **rec,
            "images": [self.image(pid, i, image) for i, image in enumerate(rec["images"])],
        }

    def image(self, product_id: str, index: int, image: dict[str, Any]) -> dict[str, Any]:
        return image

    def batch_status(self, rec: dict[str, Any]) -> dict[str, Any]:
        return rec

    def results(self, rec: dict[str, Any]) -> dict[str, Any]:
        return {**rec, "products": [self.batch_product(p) for p in rec["products"]]}

    def batch_product(self, rec: dict[str, Any]) -> dict[str, Any]:
        return rec

    def webhook_data(self, rec: dict[str, Any]) -> dict[str, Any]:
        return self.results(rec)

    # Bodies ----------------------------------------------------------------------------------

    def one(self, data: Any, **top: Any) -> Any:
        return {**top, "data": self.render(data)}

    def many(self, items: list[Any], page: Page | None) -> Any:
        body: dict[str, Any] = {"data": self.render(items)}
        if page is not None:
            body["pagination"] = {
                "page": page.page,
                "limit": page.limit,
                "total": page.total,
                "totalPages": page.pages,
            }
        return body

    def error(self, status: int, message: str, label: str | None, extra: dict[str, Any]) -> Any:
        return {"error": label or message, "message": message, **extra}


class SnakeDialect(Dialect):
    """Bare JSON, snake_case, integer ids, epoch seconds, loosely typed values."""

    name = "snake"

    def key(self, key: str) -> str:
        return _snake(key)

    def ref(self, ref: Ref) -> Any:
        return self.aliases.numbers.get(ref.uuid, ref.uuid)

    def stamp(self, at: datetime) -> Any:
        return int(at.timestamp())

    def manual_field(self, rec: dict[str, Any]) -> dict[str, Any]:
        options = [{"value": o, "label": o.replace("_", " ").capitalize()} for o in rec["options"]]
        return {**rec, "required": int(rec["required"]), "options": options}

    def batch_status(self, rec: dict[str, Any]) -> dict[str, Any]:
        counts = ("totalProducts", "successfulProducts", "failedProducts")
        return {**rec, **{k: str(rec[k]) for k in counts}, "products": None}

    def batch_product(self, rec: dict[str, Any]) -> dict[str, Any]:
        if rec["status"] == "processing":
            return {**rec, "status": None, "result": None}
        error = rec["error"]
        return {
            **rec,
            "result": self._result(rec["result"]),
            "error": error["message"] if isinstance(error, dict) else error,
        }

    @staticmethod
    def _result(result: dict[str, Any]) -> dict[str, Any]:
        if not result:
            return result
        brand = result["brand"]
        return {
            "title": result["title"],
            "brand": {"name": brand, "id": data.BRANDS.index(brand) + 1},
            "category": result["category"],
            "condition": result["condition"],
            "price": dict(result["estimatedPrice"]),
            "confidence": f"{result['confidence']:.2f}",
        }

    def webhook_data(self, rec: dict[str, Any]) -> dict[str, Any]:
        out = self.results(rec)
        done = out["completed_at"]
        if isinstance(done, Stamp):
            out["completed_at"] = int(done.at.timestamp() * 1000)
        return out

    def one(self, data: Any, **top: Any) -> Any:
        return self.render(data)

    def many(self, items: list[Any], page: Page | None) -> Any:
        return self.render(items)

    def error(self, status: int, message: str, label: str | None, extra: dict[str, Any]) -> Any:
        return {"error": message, "status_code": status, **{_snake(k): v for k, v in extra.items()}}


class EnvelopeDialect(Dialect):
    """`{"success", "data", "meta"}`, camelCase, UPPER CASE statuses, naive ISO times."""

    name = "envelope"

    def key(self, key: str) -> str:
        return _camel(key)

    def stamp(self, at: datetime) -> Any:
        return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")

    def status(self, status: str) -> Any:
        return status.upper()

    def boolean(self, value: bool) -> Any:
        return "true" if value else "false"

    def manual_field(self, rec: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in rec.items() if k != "required"}
        out["isRequired"] = rec["required"]
        return out

    def image(self, product_id: str, index: int, image: dict[str, Any]) -> dict[str, Any]:
        name = image.get("fileName") or f"image-{index + 1}-{image['sha256'][:12]}"
        return {"url": f"{CDN}/products/{product_id}/{quote(str(name))}"}

    def batch_product(self, rec: dict[str, Any]) -> dict[str, Any]:
        result = rec["result"]
        if not result:
            return rec
        low, high = result["estimatedPrice"]["min"], result["estimatedPrice"]["max"]
        shaped = {k: v for k, v in result.items() if k != "estimatedPrice"}
        shaped["estimatedPrice"] = {
            "value": (low + high) / 2,
            "currency": result["estimatedPrice"]["currency"],
        }
        shaped["confidence"] = round(result["confidence"] * 100)
        return {**rec, "result": shaped}

    def one(self, data: Any, **top: Any) -> Any:
        return {"success": True, "data": self.render(data), "meta": {"requestId": _request_id()}}

    def many(self, items: list[Any], page: Page | None) -> Any:
        meta: dict[str, Any] = {"requestId": _request_id(), "total": len(items)}
        if page is not None:
            meta = {
                "page": page.page,
                "limit": page.limit,
                "total": page.total,
                "totalPages": page.pages,
            }
        return {"success": True, "data": self.render(items), "meta": meta}

    def error(self, status: int, message: str, label: str | None, extra: dict[str, Any]) -> Any:
        errors = extra.get("errors") or [{"field": extra.get("field"), "message": message}]
        return {"success": False, "errors": errors, "message": message}


class WebhookOnlyDialect(Dialect):
    """Standard, but only the webhook ever tells that a batch finished."""

    name = "webhook_only"
    reports_completion = False

    def image(self, product_id: str, index: int, image: dict[str, Any]) -> dict[str, Any]:
        return {("name" if k == "fileName" else k): v for k, v in image.items()}


DIALECTS: dict[str, type[Dialect]] = {
    d.name: d for d in (Dialect, SnakeDialect, EnvelopeDialect, WebhookOnlyDialect)
}


def _request_id() -> str:
    return f"req_{uuid.uuid4().hex[:16]}"


class ResellScanSandbox:
    """The state and HTTP handlers of the Resell Scan stand-in."""

    def __init__(self, *, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.collections = data.seed_collections()
        self.by_id = {c.id: c for c in self.collections}
        self.config = Config()
        self.faults = Faults()
        self.fault_rules: list[Faults] = []
        self.products: dict[str, Product] = {}
        self.batches: dict[str, Batch] = {}
        self.aliases = self._seed_aliases()
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

    def _seed_aliases(self) -> Aliases:
        aliases = Aliases()
        for c in self.collections:
            aliases.add("collection", c.id)
        return aliases

    @property
    def dialect(self) -> Dialect:
        return DIALECTS[self.config.dialect](self.aliases)

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
        self.fault_rules = []
        self.products.clear()
        self.batches.clear()
        self.aliases = self._seed_aliases()
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
        # The first rule that matches this request applies (one rule unless several were set).
        faults = next(
            (r for r in self.fault_rules if r.matches(request.method, entry["path"])),
            self.faults,
        )
        if faults.latency:
            await asyncio.sleep(faults.latency)
        matches = faults.matches(request.method, entry["path"])
        if matches and faults.storm_count > 0:
            faults.storm_count -= 1
            return self._error(
                429,
                "Rate limit exceeded",
                label="Too many requests",
                headers={"Retry-After": faults.storm_retry_after},
            )
        fail_now = False
        if matches and faults.error_burst > 0:
            faults.error_burst -= 1
            fail_now = True
        elif matches and faults.error_rate and faults.rng.random() < faults.error_rate:
            fail_now = True
        after = faults.error_after_processing
        if not isinstance(after, bool):
            after = faults.rng.random() < float(after)
        if fail_now and not after:
            return self._error(faults.error_status, "Internal error (sandbox fault)")
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
            return self._error(401, "Missing or invalid API key")
        if key.disabled:
            return self._error(401, "API key is disabled")
        if resource not in key.permissions:
            return self._error(
                403, f"API key lacks the '{resource}' permission", required_permission=resource
            )
        retry_after = self._rate_limited(key_name)
        if retry_after is not None:
            return self._error(
                429,
                "Rate limit exceeded",
                label="Too many requests",
                headers={"Retry-After": str(max(1, int(retry_after + 0.999)))},
            )
        honoured = self.config.honour_idempotency_key
        idem = request.headers.get("idempotency-key") if honoured else None
        if request.method == "POST" and idem:
            body_hash = hashlib.sha256(raw).hexdigest()
            cached = self.idempotency.get((key_name, idem))
            if cached is not None:
                if cached[0] != body_hash:
                    return self._error(422, "Idempotency-Key was used with a different body")
                entry["replayed"] = True
                return JSONResponse(cached[2], status_code=cached[1])
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return self._error(400, "Body is not valid JSON")
        response: Response = await handler(request, body)
        # Like Stripe's keys: a result is saved only when the endpoint did something; a
        # request refused by validation (4xx) can be retried with the same key.
        if request.method == "POST" and idem and response.status_code < 400:
            self.idempotency[(key_name, idem)] = (
                hashlib.sha256(raw).hexdigest(),
                response.status_code,
                json.loads(bytes(response.body)),
            )
        if fail_now:
            return self._error(
                faults.error_status, "Internal error after processing (sandbox fault)"
            )
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

    # Answers in the current dialect ------------------------------------------------------

    def _one(self, record: Any, status: int = 200, **top: Any) -> Response:
        return JSONResponse(self.dialect.one(record, **top), status_code=status)

    def _many(self, records: list[Any], page: Page | None = None) -> Response:
        return JSONResponse(self.dialect.many(records, page))

    def _error(
        self,
        status: int,
        message: str,
        *,
        label: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> Response:
        body = self.dialect.error(status, message, label, extra)
        return JSONResponse(body, status_code=status, headers=headers)

    # API handlers --------------------------------------------------------------------------

    async def list_collections(self, request: Request, _body: Any) -> Response:
        paging = _paging(request.query_params)
        if isinstance(paging, str):
            return self._error(400, paging)
        page, limit = paging
        search = request.query_params.get("search", "").strip().lower()
        found = [c for c in self.collections if search in c.name.lower()]
        shown = found[(page - 1) * limit : page * limit]
        records = [self._collection_record(c) for c in shown]
        return self._many(records, Page(page, limit, len(found)))

    def _collection(self, raw: Any) -> data.CollectionDef | None:
        return self.by_id.get(self.aliases.uuid("collection", raw))

    async def get_collection(self, request: Request, _body: Any) -> Response:
        found = self._collection(request.path_params["cid"])
        if found is None:
            return self._error(404, "Collection not found")
        return self._one(self._collection_record(found))

    async def manual_fields(self, request: Request, _body: Any) -> Response:
        found = self._collection(request.path_params["cid"])
        if found is None:
            return self._error(404, "Collection not found")
        return self._many([self.dialect.manual_field(f.as_json()) for f in found.fields])

    async def list_products(self, request: Request, _body: Any) -> Response:
        collection = self._collection(request.path_params["cid"])
        if collection is None:
            return self._error(404, "Collection not found")
        q = request.query_params
        paging = _paging(q)
        if isinstance(paging, str):
            return self._error(400, paging)
        page, limit = paging
        search = q.get("search", "").strip().lower()
        include_images = q.get("include_images", "false").strip().lower() in ("true", "1", "yes")
        bounds: dict[str, datetime] = {}
        for name in DATE_FILTERS:
            if name in q:
                bound = _parse_instant(q[name])
                if bound is None:
                    return self._error(400, f"{name} must be an ISO 8601 date", field=name)
                bounds[name] = bound
        self._settle()
        found = [
            p
            for p in self.products.values()
            if p.collection_id == collection.id
            and (not search or p.matches(search, file_names=self.config.listing_file_names))
            and _in_window(p, bounds)
        ]
        shown = found[(page - 1) * limit : page * limit]
        records = [
            self.dialect.product(
                self._product_record(p, include_images, self.config.listing_file_names)
            )
            for p in shown
        ]
        return self._many(records, Page(page, limit, len(found)))

    async def create_products(self, request: Request, body: Any) -> Response:
        checked = await self._check_products(body)
        if isinstance(checked, Response):
            return checked
        _collection, created = checked
        records = [self.dialect.product(self._product_record(p, True)) for p in created]
        return self._one({"products": records}, 201)

    def _collection_and_list(
        self, body: Any, key: str
    ) -> tuple[data.CollectionDef, list[Any]] | Response:
        """The body's known collection and its non-empty list `key`, or the validation error."""
        if not isinstance(body, dict):
            return self._error(422, "Body must be a JSON object")
        collection = self._collection(body.get("collectionId", ""))
        if collection is None:
            return self._error(
                422,
                "Unknown collectionId",
                errors=[{"field": "collectionId", "message": "unknown collection"}],
            )
        items = body.get(key)
        if not isinstance(items, list) or not items:
            return self._error(
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
        products: list[Product] = []
        for index, raw in enumerate(ids):
            product = self.products.get(self.aliases.uuid("product", raw))
            if product is None or product.collection_id != collection.id:
                message, problem = "Unknown product for this collection", "unknown"
            elif any(p.id == product.id for p in products):
                message, problem = "Product listed twice", "duplicate"
            else:
                products.append(product)
                continue
            field_name = f"productIds[{index}]"
            return self._error(422, message, errors=[{"field": field_name, "message": problem}])
        batch = self._start_batch(collection, products)
        record = {"batchId": Ref(batch.id), "productIds": [Ref(p) for p in batch.product_ids]}
        return self._one(record, 201)

    async def create_and_analyze(self, request: Request, body: Any) -> Response:
        checked = await self._check_products(body)
        if isinstance(checked, Response):
            return checked
        collection, created = checked
        batch = self._start_batch(collection, created)
        record = {
            "batchId": Ref(batch.id),
            "status": "processing",
            "productIds": [Ref(p) for p in batch.product_ids],
            "totalProducts": len(created),
        }
        return self._one(record, 201, success=True)

    def _batch(self, raw: Any) -> Batch | None:
        return self.batches.get(self.aliases.uuid("batch", raw))

    async def batch_status(self, request: Request, _body: Any) -> Response:
        batch = self._batch(request.path_params["bid"])
        if batch is None:
            return self._error(404, "Batch not found")
        d = self.dialect
        summary = self._batch_summary(batch, reveal=d.reports_completion)
        return self._one(d.batch_status({_camel(k): v for k, v in summary.items()}))

    async def batch_results(self, request: Request, _body: Any) -> Response:
        batch = self._batch(request.path_params["bid"])
        if batch is None:
            return self._error(404, "Batch not found")
        d = self.dialect
        return self._one(d.results(self._batch_payload(batch, reveal=d.reports_completion)))

    async def docs(self, request: Request) -> Response:
        return JSONResponse({"info": "Resell Scan sandbox; see the project README"})

    # Validation and creation ---------------------------------------------------------------

    async def _check_products(
        self, body: Any
    ) -> tuple[data.CollectionDef, list[Product]] | Response:
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
            return self._error(422, "Validation failed", errors=problems)
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
            return self._error(422, "Image could not be loaded", errors=problems)
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
    ) -> Product:
        pid = str(uuid.uuid4())
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
        now = _now()
        record = Product(
            id=pid,
            collection_id=collection.id,
            manual_fields=product.get("manual_fields", {}),
            images=images,
            blobs=blobs,
            created=now,
            updated=now,
        )
        self.products[pid] = record
        self.aliases.add("product", pid)
        return record

    def _start_batch(self, collection: data.CollectionDef, products: list[Product]) -> Batch:
        outcomes = [
            data.analyse(p.blobs, collection.name, self.config.failure_rate) for p in products
        ]
        batch = Batch(
            id=str(uuid.uuid4()),
            collection_id=collection.id,
            collection_name=collection.name,
            product_ids=[p.id for p in products],
            outcomes=outcomes,
            started=self.clock(),
            started_at=_now(),
            duration=self._analysis_duration(),
            webhook_state="pending" if self.webhook_url else "none",
        )
        self.batches[batch.id] = batch
        self.aliases.add("batch", batch.id)
        self._wake.set()
        return batch

    def _analysis_duration(self) -> float:
        low, high = self.config.analysis_seconds, self.config.analysis_seconds_max
        if high is None or high <= low:
            return low
        draw = random.Random(f"{self.config.analysis_seed}:{len(self.batches)}")
        return draw.uniform(low, high)

    def _settle(self) -> None:
        """Apply finished analyses to their products: `updatedAt` becomes the moment the
        product's analysis finished, and a successful one gives the product its title."""
        now = self.clock()
        for batch in self.batches.values():
            for index, pid in enumerate(batch.product_ids):
                if index in batch.applied or not batch.product_done(index, now):
                    continue
                batch.applied.add(index)
                product = self.products.get(pid)
                if product is None:
                    continue
                done_at = batch.started_at + timedelta(seconds=batch.product_offset(index))
                done_at = done_at.replace(microsecond=done_at.microsecond // 1000 * 1000)
                product.updated = max(product.updated, done_at)
                outcome = batch.outcomes[index]
                if outcome["status"] == "completed":
                    product.title = outcome["result"].get("title") or product.title

    # Canonical records (the standard shape, with Ref/Stamp/Raw for the dialect) -------------

    def _collection_record(self, c: data.CollectionDef) -> dict[str, Any]:
        count = sum(1 for p in self.products.values() if p.collection_id == c.id)
        record = c.as_json(count)
        created = datetime.fromisoformat(c.created_at)
        return {**record, "id": Ref(c.id), "createdAt": Stamp(created), "updatedAt": Stamp(created)}

    @staticmethod
    def _product_record(p: Product, with_images: bool, file_names: bool = True) -> dict[str, Any]:
        images = [dict(image) for image in p.images]
        if not file_names:  # an API that keeps only its own copy: a content-named CDN URL
            for image in images:
                image["fileName"] = None
                image["url"] = f"{CDN}/products/{p.id}/{image['sha256'][:16]}.jpg"
        record: dict[str, Any] = {
            "id": Ref(p.id),
            "collectionId": Ref(p.collection_id),
            "manualFields": Raw(dict(p.manual_fields)),
            "images": images,
            "title": p.title,
            "createdAt": Stamp(p.created),
            "updatedAt": Stamp(p.updated),
        }
        if not with_images:
            del record["images"]
        return record

    def _view(self, batch: Batch, reveal: bool) -> tuple[list[bool], bool, float]:
        """Which products are done, whether the batch is, and its progress. Unrevealed (the
        `webhook_only` dialect): nothing is ever done."""
        now = self.clock()
        if not reveal:
            return [False] * len(batch.product_ids), False, min(99.0, batch.progress_at(now))
        done = [batch.product_done(i, now) for i in range(len(batch.product_ids))]
        return done, batch.finished(now), batch.progress_at(now)

    def _batch_summary(self, batch: Batch, reveal: bool = True) -> dict[str, Any]:
        done, finished, progress = self._view(batch, reveal)
        ok = sum(1 for i, d in enumerate(done) if d and batch.outcomes[i]["status"] != "failed")
        failed = sum(done) - ok
        total = len(batch.product_ids)
        return {
            "batch_id": Ref(batch.id),
            "collection_id": Ref(batch.collection_id),
            "status": "completed"
            if finished
            else ("processing" if any(done) or self.clock() > batch.started else "pending"),
            "total_products": total,
            "successful_products": ok,
            "failed_products": failed,
            "success_rate": round(100 * ok / total, 1) if finished else None,
            "progress": round(progress, 1),
            "started_at": Stamp(batch.started_at),
            "completed_at": Stamp(batch.completed_at) if finished else None,
        }

    def _batch_payload(self, batch: Batch, reveal: bool = True) -> dict[str, Any]:
        """The webhook's `data` (and the standard results): the summary plus every product."""
        summary = self._batch_summary(batch, reveal)
        done, _finished, progress = self._view(batch, reveal)
        products = []
        for index, pid in enumerate(batch.product_ids):
            outcome = batch.outcomes[index]
            stored = self.products.get(pid)
            products.append(
                {
                    "product_id": Ref(pid),
                    "product_data": self._product_data(stored) if stored else {},
                    "status": outcome["status"] if done[index] else "processing",
                    "progress": 100 if done[index] else round(progress, 1),
                    "result": outcome["result"] if done[index] else {},
                    "error": outcome["error"] if done[index] else None,
                }
            )
        summary["products"] = products
        return summary

    def _product_data(self, stored: Product) -> dict[str, Any]:
        data: dict[str, Any] = {"manual_fields": Raw(dict(stored.manual_fields))}
        if self.config.webhook_file_names:
            data["images"] = [{"fileName": i.get("fileName")} for i in stored.images]
        return data

    # Batches and webhooks ------------------------------------------------------------------

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
            with contextlib.suppress(TimeoutError):  # not wait_for: see bot/tracker.py
                async with asyncio.timeout(max(0.005, timeout)):
                    await self._wake.wait()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def event_body(self, batch: Batch) -> bytes:
        """The `analysis.completed` event: `id` and `event` as documented, `created_at` and
        `data` in the current dialect."""
        d = self.dialect
        payload = {
            "id": batch.event_id,
            "event": "analysis.completed",
            "created_at": d.render(Stamp(_now())),
            "data": d.render(d.webhook_data(self._batch_payload(batch))),
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
        """The request log; `path`, `method` filter it, and `brief` leaves out bodies and
        queries (a benchmark watching a burst asks often, and must not load the sandbox)."""
        q = request.query_params
        items = [
            r
            for r in self.requests
            if ("path" not in q or r["path"] == q["path"])
            and ("method" not in q or r["method"] == q["method"])
        ]
        if q.get("brief"):
            items = [{k: v for k, v in r.items() if k not in ("body", "query")} for r in items]
        return JSONResponse({"requests": items, "count": len(items)})

    async def ctl_reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"ok": True})

    async def ctl_faults(self, request: Request) -> Response:
        """One rule (the body), or several: `{"rules": [{...}, {...}]}`, each with its own
        `match`/`methods`; a request gets the first rule that matches it. Webhook options are
        read from the first rule."""
        body = await _json(request)
        rules_spec = body.get("rules")
        specs: list[Any] = rules_spec if isinstance(rules_spec, list) else [body]
        rules = []
        for spec in specs:
            faults = Faults()
            for key, value in spec.items():
                if not hasattr(faults, key) or key == "rng":
                    return _control_error(f"unknown fault {key!r}")
                setattr(faults, key, value)
            faults.rng = random.Random(faults.seed)
            rules.append(faults)
        self.faults = rules[0] if rules else Faults()
        self.fault_rules = rules
        return JSONResponse({"ok": True})

    async def ctl_config(self, request: Request) -> Response:
        body = await _json(request)
        for key, value in body.items():
            if not hasattr(self.config, key):
                return _control_error(f"unknown setting {key!r}")
            if key == "dialect" and value not in DIALECTS:
                return _control_error(f"dialect must be one of {', '.join(DIALECTS)}")
        for key, value in body.items():
            setattr(self.config, key, value)
        return JSONResponse({"ok": True, "config": self.config.__dict__})

    async def ctl_webhooks(self, request: Request) -> Response:
        body = await _json(request)
        url, secret = str(body.get("url", "")), str(body.get("secret", ""))
        if url and not secret.startswith("whsec_"):
            return _control_error("secret must start with whsec_")
        self.webhook_url, self.webhook_secret = url, secret
        return JSONResponse({"ok": True})

    async def ctl_deliveries(self, request: Request) -> Response:
        return JSONResponse({"deliveries": self.deliveries})

    async def ctl_batches(self, request: Request) -> Response:
        """Every batch as it really is (whatever the dialect), in the standard shape, with its
        integer alias and webhook state."""
        standard = Dialect(self.aliases)
        out = []
        for batch in self.batches.values():
            summary = standard.render(self._batch_summary(batch))
            summary["alias"] = self.aliases.numbers.get(batch.id)
            summary["webhook_state"] = batch.webhook_state
            summary["event_id"] = batch.event_id
            summary["product_ids"] = list(batch.product_ids)
            out.append(summary)
        return JSONResponse({"batches": out})

    async def ctl_complete(self, request: Request) -> Response:
        """Finish a batch now (tests that should not wait for the analysis time)."""
        batch = self._batch(request.path_params["bid"])
        if batch is None:
            return _control_error("Batch not found", 404)
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


def _paging(query: QueryParams) -> tuple[int, int] | str:
    """`page` (from 1) and `limit` (at most 100), or what is wrong with them."""
    try:
        page = int(query.get("page", "1"))
        limit = int(query.get("limit", "20"))
    except ValueError:
        return "page and limit must be integers"
    if page < 1 or limit < 1:
        return "page and limit must be at least 1"
    return page, min(limit, 100)


def _in_window(product: Product, bounds: dict[str, datetime]) -> bool:
    """The date filters, inclusive; a bound without a fraction of a second covers its second."""
    for name, bound in bounds.items():
        at = product.created if name.startswith("created") else product.updated
        if bound.microsecond == 0:
            at = at.replace(microsecond=0)
        if (name.endswith("_after") and at < bound) or (name.endswith("_before") and at > bound):
            return False
    return True


def _control_error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message, "message": message}, status_code=status)


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
