"""Async client for the Resell Scan REST API (resell-scan-api.md §2), over an injected httpx client.

Every documented endpoint has one method. Requests carry `Authorization: Bearer <key>`; the key
lives in a SecretStr and is put into a header per request, never into a URL, log line or message.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from pydantic import SecretStr

from bot.resellscan import errors
from bot.resellscan.models import (
    BatchStarted,
    BatchStatus,
    Collection,
    ManualField,
    Page,
    Product,
    read_list,
)
from bot.resellscan.read import (
    Fields,
    as_bool,
    as_error,
    as_int,
    as_list,
    as_obj,
    as_text,
    norm,
    shape,
    unwrap,
)
from bot.resellscan.retry import RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://app.resell-scan.de/api/v1"
MAX_LIMIT = 100  # documented maximum page size
GET_RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Told of every retry the client is about to wait for (the error, the wait), in the context
# that set it: the tracker marks an upload as waiting for a busy Resell Scan meanwhile.
RETRY_OBSERVER: ContextVar[Callable[[errors.ResellScanError, float], Awaitable[None]] | None] = (
    ContextVar("resellscan_retry_observer", default=None)
)


def unavailable(exc: Exception) -> bool:
    """A 503: the service is unavailable and did not process the request (resell-scan-api.md
    §9 #13 counts it with 429 and a refused connection as failing *before* processing; 500,
    502 and 504 may come after it)."""
    return isinstance(exc, errors.ServerError) and exc.status == 503


# Where a list endpoint's items may be (besides a bare array), assumed (§9 #6).
LIST_KEYS = ("data", "items", "results", "collections", "products", "fields")
CallObserver = Callable[[str, str], None]  # (endpoint, outcome) for metrics


@dataclass(frozen=True)
class NewProduct:
    """One product for createAndAnalyze / POST /products: its images and manual field values."""

    images: list[dict[str, Any]]
    manual_fields: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"images": self.images, "manual_fields": self.manual_fields}


def image_from_url(url: str, file_name: str, *, remove_background: bool = False) -> dict[str, Any]:
    """An image entry exactly as the guide's createAndAnalyze example shows it."""
    return {"url": url, "fileName": file_name, "removeBackground": remove_background}


def image_from_bytes(
    data: bytes,
    file_name: str,
    *,
    mime_type: str = "image/jpeg",
    remove_background: bool = False,
    base64_field: str = "data_uri",
) -> dict[str, Any]:
    """An image entry carrying the bytes as base64. The field is undocumented (§9 #7):
    `data_uri` puts a data: URI into `url`; `base64` sends a separate `base64` key."""
    encoded = base64.b64encode(data).decode("ascii")
    entry: dict[str, Any] = {"fileName": file_name, "removeBackground": remove_background}
    if base64_field == "base64":
        entry.update(base64=encoded, mimeType=mime_type)
    else:
        entry["url"] = f"data:{mime_type};base64,{encoded}"
    return entry


def _iso(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    text = value.isoformat()
    return text.replace("+00:00", "Z")


def _error_message(body: Any, text: str) -> str:
    """The first of message / error / errors[0] in a JSON error body (each may be a string,
    an object or a list), else the raw text (§9 #8)."""
    if isinstance(body, dict):
        f = Fields(body)
        for key in ("message", "error", "detail", "errors", "description"):
            found = f.get(as_error, key)
            if found:
                return found[:300]
    return text.strip()[:300] or "no message"


def _validation_details(body: Any) -> tuple[list[str], list[str]]:
    """Per-field problems of a validation error: `errors`/`details` as a list of objects
    (`field`/`path`/`name` + `message`) or strings, or an object of field -> message(s)."""
    details: list[str] = []
    fields: list[str] = []
    if not isinstance(body, dict):
        return details, fields
    f = Fields(body)
    items: Any = f.take("errors", "details", "validation_errors")
    error_obj = f.get(as_obj, "error")
    if items is None and error_obj is not None:
        items = Fields(error_obj).take("details", "errors", "fields")
    if isinstance(items, dict):
        items = [{"field": k, "message": as_error(v) or ""} for k, v in items.items()]
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            g = Fields(item)
            name = g.get(as_text, "field", "path", "name", "loc", "param")
            message = g.get(as_error, "message", "msg", "error") or ""
            if name:
                fields.append(name)
            details.append(f"{name}: {message}" if name else message)
        elif as_text(item):
            details.append(str(item))
    for name in as_list(f.take("fields")) or []:
        if as_text(name) and str(name) not in fields:
            fields.append(str(name))
    return details, fields


def _resource_of(path: str, body: Any) -> str:
    """The permission a 403 is about: as the server names it, else guessed from the path
    (`/collections/{id}/products` needs "products")."""
    if isinstance(body, dict):
        named = Fields(body).get(as_text, "required_permission", "permission", "resource")
        if named:
            return named
    parts = path.strip("/").split("/")
    if "products" in parts:
        return "products"
    return parts[0] or "unknown"


class ResellScanClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: SecretStr,
        base_url: str = DEFAULT_BASE_URL,
        retry: RetryPolicy | None = None,
        observe: CallObserver | None = None,
    ) -> None:
        self._http = http
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._retry = retry or RetryPolicy()
        self._observe = observe

    def __repr__(self) -> str:
        return f"ResellScanClient(base_url={self._base_url!r})"

    # Collections ---------------------------------------------------------------------------

    async def list_collections(
        self, *, page: int = 1, limit: int = 20, search: str | None = None
    ) -> Page[Collection]:
        params = {"page": page, "limit": min(max(1, limit), MAX_LIMIT), "search": search}
        return await self._page("GET /collections", "/collections", params, Collection.read)

    async def iter_collections(
        self, *, search: str | None = None, limit: int = MAX_LIMIT
    ) -> AsyncIterator[Collection]:
        page = 1
        while True:
            result = await self.list_collections(page=page, limit=limit, search=search)
            for item in result.items:
                yield item
            if not result.has_more or not result.items:
                return
            page += 1

    async def get_collection(self, collection_id: str) -> Collection:
        path = f"/collections/{_seg(collection_id)}"
        data = await self._request("GET /collections/{id}", "GET", path)
        found = Collection.read(unwrap(data))
        if found is None:
            raise errors.ProtocolError(
                f"GET /collections/{{id}}: no collection id in {shape(data)}"
            )
        return found

    async def list_products(
        self,
        collection_id: str,
        *,
        page: int = 1,
        limit: int = 20,
        search: str | None = None,
        include_images: bool | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        updated_after: datetime | str | None = None,
        updated_before: datetime | str | None = None,
    ) -> Page[Product]:
        params: dict[str, Any] = {
            "page": page,
            "limit": min(max(1, limit), MAX_LIMIT),
            "search": search,
            "include_images": None if include_images is None else str(include_images).lower(),
            "created_after": _iso(created_after),
            "created_before": _iso(created_before),
            "updated_after": _iso(updated_after),
            "updated_before": _iso(updated_before),
        }
        path = f"/collections/{_seg(collection_id)}/products"
        return await self._page("GET /collections/{id}/products", path, params, Product.read)

    async def get_manual_fields(self, collection_id: str) -> list[ManualField]:
        path = f"/collections/{_seg(collection_id)}/manual-fields"
        payload = await self._request("GET /collections/{id}/manual-fields", "GET", path)
        data = list_in(payload, "fields", "manual_fields", "manualFields", "items")
        if data is None:
            raise errors.ProtocolError(f"manual fields: no list in {shape(payload)}")
        fields, skipped = read_list(data, ManualField.read)
        if skipped:
            log.warning("manual fields: %d of %d unreadable", skipped, len(data))
        return fields

    # Products and analyses -----------------------------------------------------------------

    async def create_products(
        self,
        collection_id: str,
        products: Sequence[NewProduct],
        *,
        idempotency_key: str | None = None,
    ) -> list[Product]:
        body = {"collectionId": collection_id, "products": [p.body() for p in products]}
        payload = await self._request(
            "POST /products", "POST", "/products", json=body, idempotency_key=idempotency_key
        )
        data = list_in(payload, "products", "items", "created")
        if data is None:
            raise errors.ProtocolError(f"create products: no list in {shape(payload)}")
        return read_list(data, Product.read)[0]

    async def analyze_products(
        self,
        collection_id: str,
        product_ids: Sequence[str],
        *,
        idempotency_key: str | None = None,
    ) -> BatchStarted:
        body = {"collectionId": collection_id, "productIds": list(product_ids)}
        data = await self._request(
            "POST /products/analyze",
            "POST",
            "/products/analyze",
            json=body,
            idempotency_key=idempotency_key,
        )
        return _started("POST /products/analyze", data)

    async def create_and_analyze(
        self,
        collection_id: str,
        products: Sequence[NewProduct],
        *,
        idempotency_key: str | None = None,
    ) -> BatchStarted:
        body = {"collectionId": collection_id, "products": [p.body() for p in products]}
        data = await self._request(
            "POST /products/createAndAnalyze",
            "POST",
            "/products/createAndAnalyze",
            json=body,
            idempotency_key=idempotency_key,
        )
        return _started("POST /products/createAndAnalyze", data)

    async def get_batch(self, batch_id: str) -> BatchStatus:
        path = f"/products/analyze/{_seg(batch_id)}"
        data = await self._request("GET /products/analyze/{id}", "GET", path)
        return BatchStatus.read(data, batch_id=batch_id)

    async def get_batch_results(self, batch_id: str) -> BatchStatus:
        path = f"/products/analyze/{_seg(batch_id)}/results"
        data = await self._request("GET /products/analyze/{id}/results", "GET", path)
        return BatchStatus.read(data, batch_id=batch_id)

    async def post_json(
        self, endpoint: str, path: str, body: Any, *, idempotency_key: str | None = None
    ) -> Any:
        """A POST's JSON as sent, for `check --probe --analyze`."""
        return await self._request(
            endpoint, "POST", path, json=body, idempotency_key=idempotency_key
        )

    async def get_json(
        self, endpoint: str, path: str, params: Mapping[str, Any] | None = None
    ) -> Any:
        """A GET's JSON as sent, for `check --probe` (which reads it with the models itself)."""
        return await self._request(endpoint, "GET", path, params=params)

    # Plumbing ------------------------------------------------------------------------------

    async def _page(
        self,
        endpoint: str,
        path: str,
        params: Mapping[str, Any],
        reader: Callable[[Any, Any], Any],
    ) -> Page[Any]:
        payload = await self._request(endpoint, "GET", path, params=params)
        items = list_in(payload, *LIST_KEYS)
        if items is None:
            raise errors.ProtocolError(f"{endpoint}: no list in {shape(payload)}")
        parsed, skipped = read_list(items, reader)
        if skipped:
            log.warning("%s: %d of %d items unreadable", endpoint, skipped, len(items))
        page, limit = int(params["page"]), int(params["limit"])
        total, has_more = _paging(payload, page, limit, len(items))
        return Page(
            items=parsed, page=page, limit=limit, total=total, has_more=has_more, skipped=skipped
        )

    async def _request(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Send with the retry policy. GETs retry transport errors, 429, 502-504; POSTs retry
        only what provably did not reach the server (connect errors) or was refused as a whole
        (429). A POST that may have been processed raises AmbiguousWrite."""
        is_write = method != "GET"
        headers = {"Accept": "application/json"}
        key = self._api_key.get_secret_value().strip()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if is_write:
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        policy = self._retry
        started = policy.clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await self._send(method, path, clean, json, headers)
            except errors.ResellScanError as exc:
                retry_after: float | None = None
                if isinstance(exc, errors.RateLimited):
                    retryable, retry_after = True, exc.retry_after
                elif isinstance(exc, errors.ConnectionFailed) or unavailable(exc):
                    retryable = True  # not processed (a 503: the guide's assumption, §9 #13)
                elif is_write:
                    retryable = False
                else:
                    retryable = isinstance(exc, errors.TransportError) or (
                        isinstance(exc, errors.ServerError) and exc.status in GET_RETRY_STATUSES
                    )
                wait = policy.wait_for(attempt, retry_after)
                out_of_time = policy.clock() - started + wait > policy.total_timeout
                if not retryable or attempt >= policy.max_attempts or out_of_time:
                    self._note(endpoint, type(exc).__name__)
                    if is_write and (
                        (isinstance(exc, errors.ServerError) and not unavailable(exc))
                        or (isinstance(exc, errors.TransportError) and exc.sent)
                    ):
                        raise errors.AmbiguousWrite(
                            f"{endpoint} may have been processed: {exc}", cause=exc
                        ) from exc
                    raise
                log.info(
                    "resell scan %s failed (%s), retry %d in %.2fs",
                    endpoint,
                    type(exc).__name__,
                    attempt,
                    wait,
                )
                observer = RETRY_OBSERVER.get()
                if observer is not None:  # the caller's say in what the user sees meanwhile
                    await observer(exc, wait)
                await policy.sleep(wait)
                continue
            self._note(endpoint, "ok")
            return result

    def _note(self, endpoint: str, outcome: str) -> None:
        if self._observe is not None:
            self._observe(endpoint, outcome)

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        body: Any,
        headers: Mapping[str, str],
    ) -> Any:
        """One HTTP exchange; translates httpx errors and error statuses into our tree."""
        url = f"{self._base_url}{path}"
        content: bytes | None = None
        if body is not None:
            try:  # encoded here, so a value JSON cannot carry fails before anything is sent
                content = json.dumps(body, allow_nan=False, ensure_ascii=False).encode()
            except (TypeError, ValueError) as exc:
                raise errors.InvalidRequest(f"{method} {path}: body not encodable: {exc}") from exc
            headers = {**headers, "Content-Type": "application/json"}
        try:
            response = await self._http.request(
                method, url, params=params, content=content, headers=headers
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise errors.ConnectionFailed(f"cannot connect: {type(exc).__name__}") from exc
        except httpx.UnsupportedProtocol as exc:
            raise errors.ConnectionFailed(f"bad base URL: {exc}") from exc
        except httpx.LocalProtocolError as exc:  # we could not even form the request
            raise errors.ProtocolError(f"request not sendable: {type(exc).__name__}") from exc
        except httpx.TimeoutException as exc:
            raise errors.TransportError(f"timed out: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise errors.TransportError(f"network error: {type(exc).__name__}") from exc
        except (httpx.DecodingError, httpx.TooManyRedirects) as exc:
            raise errors.ProtocolError(f"unusable response: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:  # anything httpx adds later
            raise errors.TransportError(f"HTTP error: {type(exc).__name__}") from exc
        try:
            payload: Any = response.json() if response.content else None
        except ValueError:
            payload = None
        status = response.status_code
        if status < 400:
            if payload is None:
                raise errors.ProtocolError(f"{method} {path}: {status} without a JSON body")
            return payload
        message = _error_message(payload, response.text)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise errors.RateLimited(status, message, payload, retry_after=retry_after)
        if status == 401:
            raise errors.AuthError(status, message, payload)
        if status == 402:
            raise errors.PaymentRequired(status, message, payload)
        if status == 403:
            raise errors.PermissionDenied(
                status, message, payload, resource=_resource_of(path, payload)
            )
        if status == 404:
            raise errors.NotFound(status, message, payload)
        if status in (400, 422):
            details, fields = _validation_details(payload)
            raise errors.ValidationFailed(status, message, payload, details=details, fields=fields)
        if status >= 500:
            raise errors.ServerError(status, message, payload)
        raise errors.APIError(status, message, payload)


def _started(endpoint: str, payload: Any) -> BatchStarted:
    started = BatchStarted.read(payload)
    if started is None:
        raise errors.ProtocolError(f"{endpoint}: no batch id in {shape(payload)}")
    return started


def list_in(payload: Any, *keys: str) -> list[Any] | None:
    """The list a response carries: the payload itself, or under one of `keys`, possibly
    inside a `data` envelope (`{"data": {"items": [...]}}`)."""
    for candidate in (payload, unwrap(payload)):
        if isinstance(candidate, list):
            return candidate
        if isinstance(candidate, dict):
            wanted = {norm(k) for k in keys}
            for key, value in candidate.items():
                if norm(str(key)) in wanted and isinstance(value, list):
                    return value
    return None


def _paging(payload: Any, page: int, limit: int, count: int) -> tuple[int | None, bool]:
    """(total, has_more) from metadata when present (`pagination`, `meta` or top level),
    else a short page is the last one (§9 #11)."""
    meta: dict[str, Any] = {}
    if isinstance(payload, dict):
        for key, value in payload.items():
            if norm(str(key)) in ("pagination", "meta", "paging") and isinstance(value, dict):
                meta = {**value}
        meta = {**{k: v for k, v in payload.items() if not isinstance(v, list | dict)}, **meta}
    by = {norm(str(k)): v for k, v in meta.items()}
    total = as_int(by.get("total") if by.get("total") is not None else by.get("totalcount"))
    pages = as_int(by.get("totalpages") if by.get("totalpages") is not None else by.get("pages"))
    more = as_bool(by.get("hasmore")) if by.get("hasmore") is not None else None
    if more is None and by.get("hasnext") is not None:
        more = as_bool(by.get("hasnext"))
    if more is not None:
        return total, more
    if pages is not None:
        return total, page < pages
    if total is not None:
        return total, page * limit < total
    return total, count >= limit


def _seg(value: str) -> str:
    """A path segment, quoted so an id can never change the path."""
    return urllib.parse.quote(value, safe="")
