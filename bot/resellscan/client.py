"""Async client for the Resell Scan REST API (resell-scan-api.md §2), over an injected httpx client.

Every documented endpoint has one method. Requests carry `Authorization: Bearer <key>`; the key
lives in a SecretStr and is put into a header per request, never into a URL, log line or message.
"""

from __future__ import annotations

import base64
import logging
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, SecretStr
from pydantic import ValidationError as PydanticValidationError

from bot.resellscan import errors
from bot.resellscan.models import (
    BatchStarted,
    BatchStatus,
    Collection,
    ManualField,
    Page,
    Product,
    unwrap,
)
from bot.resellscan.retry import RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://app.resell-scan.de/api/v1"
MAX_LIMIT = 100  # documented maximum page size
GET_RETRY_STATUSES = frozenset({429, 502, 503, 504})

M = TypeVar("M", bound=BaseModel)
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
    """The first of message / error / errors[0] in a JSON error body, else the raw text (§9 #8)."""
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
        errs = body.get("errors")
        if isinstance(errs, list) and errs:
            first = errs[0]
            if isinstance(first, dict):
                return str(first.get("message") or first)
            return str(first)
    return text.strip()[:300] or "no message"


def _validation_details(body: Any) -> tuple[list[str], list[str]]:
    details: list[str] = []
    fields: list[str] = []
    if isinstance(body, dict):
        for item in body.get("errors") or body.get("details") or []:
            if isinstance(item, dict):
                name = item.get("field") or item.get("path") or item.get("name")
                message = item.get("message") or item.get("msg") or ""
                if name:
                    fields.append(str(name))
                details.append(f"{name}: {message}" if name else str(message))
            else:
                details.append(str(item))
        for name in body.get("fields") or []:
            if str(name) not in fields:
                fields.append(str(name))
    return details, fields


def _resource_of(path: str) -> str:
    head = path.strip("/").split("/", 1)[0]
    return head or "unknown"


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
        return await self._page("GET /collections", "/collections", params, Collection)

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
        return self._model(Collection, unwrap(data))

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
        return await self._page("GET /collections/{id}/products", path, params, Product)

    async def get_manual_fields(self, collection_id: str) -> list[ManualField]:
        path = f"/collections/{_seg(collection_id)}/manual-fields"
        data = unwrap(await self._request("GET /collections/{id}/manual-fields", "GET", path))
        if isinstance(data, dict):
            data = data.get("fields") or data.get("manual_fields") or data.get("items") or []
        if not isinstance(data, list):
            raise errors.ProtocolError("manual fields: expected a list")
        return [self._model(ManualField, item) for item in data]

    # Products and analyses -----------------------------------------------------------------

    async def create_products(
        self,
        collection_id: str,
        products: Sequence[NewProduct],
        *,
        idempotency_key: str | None = None,
    ) -> list[Product]:
        body = {"collectionId": collection_id, "products": [p.body() for p in products]}
        data = unwrap(
            await self._request(
                "POST /products", "POST", "/products", json=body, idempotency_key=idempotency_key
            )
        )
        if isinstance(data, dict):
            data = data.get("products") or data.get("items") or []
        if not isinstance(data, list):
            raise errors.ProtocolError("create products: expected a list of products")
        return [self._model(Product, item) for item in data]

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
        return self._model(BatchStarted, unwrap(data))

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
        return self._model(BatchStarted, unwrap(data))

    async def get_batch(self, batch_id: str) -> BatchStatus:
        path = f"/products/analyze/{_seg(batch_id)}"
        data = await self._request("GET /products/analyze/{id}", "GET", path)
        return self._model(BatchStatus, unwrap(data))

    async def get_batch_results(self, batch_id: str) -> BatchStatus:
        path = f"/products/analyze/{_seg(batch_id)}/results"
        data = unwrap(await self._request("GET /products/analyze/{id}/results", "GET", path))
        if isinstance(data, list):  # a bare list of product results
            data = {"batch_id": batch_id, "products": data}
        return self._model(BatchStatus, data)

    # Plumbing ------------------------------------------------------------------------------

    async def _page(
        self, endpoint: str, path: str, params: Mapping[str, Any], model: type[M]
    ) -> Page[M]:
        payload = await self._request(endpoint, "GET", path, params=params)
        items: Any = payload
        meta: dict[str, Any] = {}
        if isinstance(payload, dict):
            items = next(
                (
                    payload[k]
                    for k in ("data", "items", "results", "collections", "products")
                    if isinstance(payload.get(k), list)
                ),
                None,
            )
            if items is None:
                raise errors.ProtocolError(f"{endpoint}: no list in the response")
            raw_meta = payload.get("pagination") or payload.get("meta") or payload
            meta = raw_meta if isinstance(raw_meta, dict) else {}
        if not isinstance(items, list):
            raise errors.ProtocolError(f"{endpoint}: expected a list")
        parsed = [self._model(model, item) for item in items]
        page, limit = int(params["page"]), int(params["limit"])
        total = meta.get("total") if isinstance(meta.get("total"), int) else None
        pages = meta.get("totalPages", meta.get("total_pages", meta.get("pages")))
        if isinstance(meta.get("hasMore", meta.get("has_more")), bool):
            has_more = bool(meta.get("hasMore", meta.get("has_more")))
        elif isinstance(pages, int):
            has_more = page < pages
        elif total is not None:
            has_more = page * limit < total
        else:  # no metadata: a short page is the last one (§9 #11)
            has_more = len(parsed) >= limit
        return Page[M](items=parsed, page=page, limit=limit, total=total, has_more=has_more)

    @staticmethod
    def _model(model: type[M], data: Any) -> M:
        try:
            return model.model_validate(data)
        except PydanticValidationError as exc:
            raise errors.ProtocolError(
                f"unexpected {model.__name__} shape: {exc.error_count()} problem(s)"
            ) from exc

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
                elif isinstance(exc, errors.ConnectionFailed):
                    retryable = True
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
                        isinstance(exc, errors.ServerError)
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
        try:
            response = await self._http.request(
                method, url, params=params, json=body, headers=headers
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
            raise errors.PermissionDenied(status, message, payload, resource=_resource_of(path))
        if status == 404:
            raise errors.NotFound(status, message, payload)
        if status in (400, 422):
            details, fields = _validation_details(payload)
            raise errors.ValidationFailed(status, message, payload, details=details, fields=fields)
        if status >= 500:
            raise errors.ServerError(status, message, payload)
        raise errors.APIError(status, message, payload)


def _seg(value: str) -> str:
    """A path segment, quoted so an id can never change the path."""
    return urllib.parse.quote(value, safe="")
