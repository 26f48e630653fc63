"""Typed views of Resell Scan responses, parsed tolerantly.

Response shapes are mostly undocumented (resell-scan-api.md §9 #5, #6, #16), so every model:
accepts camelCase or snake_case keys, keeps unknown fields (`model_extra`), keeps unknown status
strings as they are (treated as not finished), and accepts `error` as null, a string or an object.
Envelopes (`{"data": ...}`) are unwrapped by `unwrap()` before a model sees the payload.
"""

from __future__ import annotations

import re
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

T = TypeVar("T")

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")

# Batch and product status strings we know to be final. `completed` is documented; `failed`
# and the rest are assumptions (resell-scan-api.md §9 #4). Anything else counts as running.
FINISHED_STATUSES = frozenset({"completed", "complete", "done", "finished", "failed", "error"})
FAILED_STATUSES = frozenset({"failed", "error"})


def snake(key: str) -> str:
    return _CAMEL.sub(r"_\1", key).lower()


def unwrap(payload: Any) -> Any:
    """The object inside a `{"data": ...}` envelope, or the payload itself."""
    if isinstance(payload, dict) and "data" in payload and isinstance(payload["data"], dict | list):
        return payload["data"]
    return payload


class Tolerant(BaseModel):
    """Base: snake_case every top-level key, keep what we do not know."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _normalise_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {snake(str(k)): v for k, v in data.items()}
        return data

    def raw(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _first(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if data.get(key) is not None:
            return data[key]
    return None


class Collection(Tolerant):
    id: str
    name: str
    description: str | None = None
    product_count: int | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_str(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class ManualField(Tolerant):
    """A collection's user-defined field; `key` is what goes into `manual_fields`."""

    key: str
    label: str
    type: str = "text"
    required: bool = False
    options: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = {snake(str(k)): v for k, v in data.items()}
        key = _first(data, "key", "field_key", "name", "id")
        label = _first(data, "label", "display_name", "title", "name") or key
        required = _first(data, "required", "is_required")
        kind = _first(data, "type", "field_type", "data_type") or "text"
        options = _first(data, "options", "choices", "values") or []
        data.update(
            key=str(key) if key is not None else key,
            label=str(label) if label is not None else label,
            required=bool(required),
            type=str(kind).lower(),
            options=[
                str(o.get("value", o.get("label", ""))) if isinstance(o, dict) else str(o)
                for o in options
            ],
        )
        return data


class Page(BaseModel, Generic[T]):
    """One page of a list endpoint; `has_more` from metadata when present, else from its size."""

    model_config = ConfigDict(frozen=True)

    items: list[T]
    page: int
    limit: int
    total: int | None = None
    has_more: bool


class Product(Tolerant):
    id: str
    collection_id: str | None = None
    manual_fields: dict[str, Any] = Field(default_factory=dict)
    images: list[Any] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {snake(str(k)): v for k, v in data.items()}
            data.setdefault("id", _first(data, "product_id", "uuid"))
        return data


class BatchStarted(Tolerant):
    """The answer to starting an analysis: a batch id (key name assumed, §9 #6)."""

    batch_id: str
    product_ids: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {snake(str(k)): v for k, v in data.items()}
            batch_id = _first(data, "batch_id", "id")
            data["batch_id"] = str(batch_id) if batch_id is not None else None
            ids = data.get("product_ids")
            if ids is None and isinstance(data.get("products"), list):
                ids = [
                    p.get("id") or p.get("product_id") or p.get("productId")
                    for p in data["products"]
                    if isinstance(p, dict)
                ]
            data["product_ids"] = [str(i) for i in ids or [] if i is not None]
        return data


class ProductResult(Tolerant):
    product_id: str | None = None
    status: str = "unknown"
    progress: float | None = None
    result: dict[str, Any] = Field(default_factory=dict)
    product_data: dict[str, Any] = Field(default_factory=dict)
    error: str | dict[str, Any] | None = None

    @field_validator("result", "product_data", mode="before")
    @classmethod
    def _obj(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else {}

    @field_validator("error", mode="before")
    @classmethod
    def _error(cls, value: Any) -> Any:
        if value is None or isinstance(value, str | dict):
            return value
        return str(value)

    @property
    def failed(self) -> bool:
        return self.error is not None or self.status.lower() in FAILED_STATUSES

    @property
    def error_text(self) -> str:
        if isinstance(self.error, dict):
            return str(_first(self.error, "message", "error", "code") or self.error)
        return self.error or self.status


class BatchStatus(Tolerant):
    """Batch status or results. Mirrors the webhook `data` object (assumed, §2.6b, §2.7)."""

    batch_id: str | None = None
    collection_id: str | None = None
    status: str = "unknown"
    total_products: int | None = None
    successful_products: int | None = None
    failed_products: int | None = None
    success_rate: float | None = None
    progress: float | None = None
    started_at: str | None = None
    completed_at: str | None = None
    products: list[ProductResult] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {snake(str(k)): v for k, v in data.items()}
            if data.get("batch_id") is None and data.get("id") is not None:
                data["batch_id"] = str(data["id"])
            if not isinstance(data.get("status"), str):
                data["status"] = "unknown"
            if data.get("products") is None and isinstance(data.get("results"), list):
                data["products"] = data["results"]
        return data

    @property
    def finished(self) -> bool:
        return self.status.lower() in FINISHED_STATUSES

    @property
    def percent(self) -> float | None:
        """Progress 0-100: the batch's own figure, else from product progress or counts."""
        if self.progress is not None:
            return max(0.0, min(100.0, self.progress))
        if self.products:
            values = [p.progress if p.progress is not None else 0.0 for p in self.products]
            return sum(values) / len(values)
        if self.total_products:
            done = (self.successful_products or 0) + (self.failed_products or 0)
            return 100.0 * done / self.total_products
        return None

    def counts(self) -> tuple[int, int, int]:
        """(total, successful, failed), from the summary fields or the products."""
        total = self.total_products if self.total_products is not None else len(self.products)
        failed = self.failed_products
        if failed is None:
            failed = sum(1 for p in self.products if p.failed)
        ok = self.successful_products
        if ok is None:
            ok = max(0, len(self.products) - failed)
        return total, ok, failed


class WebhookEvent(Tolerant):
    """The documented `analysis.completed` payload (webhooks guide, resell-scan-api.md §5.3)."""

    id: str
    event: str
    created_at: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    def batch(self) -> BatchStatus:
        return BatchStatus.model_validate(self.data)
