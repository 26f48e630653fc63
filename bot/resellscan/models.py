"""Typed views of Resell Scan responses, read field by field so that no surprise loses a payload.

Response shapes are mostly undocumented (resell-scan-api.md §2, §9 #4-#6, #16). Every model has a
`read(payload)` that never raises on a JSON value: it accepts any casing of a key, ids as strings
or numbers, nulls anywhere, numeric strings, epoch or ISO times, statuses in any case and errors
as null, string, object or list (see `read.py`). A field it cannot read is unknown (None or a
default) for that field alone; the rest is used, and the original payload is kept in `raw`.
Only a model without the one field it exists for (a batch start without a batch id, a collection
without an id) reads as None, and the caller decides what that means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import unquote, urlsplit

from bot.resellscan.read import (
    Fields,
    Report,
    as_bool,
    as_error,
    as_float,
    as_id,
    as_int,
    as_list,
    as_obj,
    as_status,
    as_text,
    as_time,
    label,
    unwrap,
)

T = TypeVar("T")

# Batch and product status strings we know to be final. `completed` is documented; `failed`
# and the rest are assumptions (resell-scan-api.md §9 #4). Anything else counts as running.
FINISHED_STATUSES = frozenset(
    {"completed", "complete", "done", "finished", "success", "succeeded", "failed", "error"}
)
FAILED_STATUSES = frozenset({"failed", "error", "errored"})
UNKNOWN = "unknown"

__all__ = ["unwrap"]


@dataclass(frozen=True)
class Collection:
    id: str
    name: str
    description: str | None = None
    product_count: int | None = None

    @classmethod
    def read(cls, data: Any, report: Report | None = None) -> Collection | None:
        f = Fields(data, report)
        cid = f.get(as_id, "id", "collection_id", "uuid")
        name = f.get(label, "name", "title", "label")
        description = f.get(as_text, "description")
        count = f.get(as_int, "product_count", "products_count", "count")
        f.finish()
        if cid is None:
            return None
        return cls(id=cid, name=name or cid, description=description, product_count=count)


@dataclass(frozen=True)
class ManualField:
    """A collection's user-defined field; `key` is what goes into `manual_fields`."""

    key: str
    label: str
    type: str = "text"
    required: bool = False
    options: tuple[str, ...] = ()

    @classmethod
    def read(cls, data: Any, report: Report | None = None) -> ManualField | None:
        f = Fields(data, report)
        key = f.get(as_id, "key", "field_key", "name", "slug", "id")
        shown = f.get(label, "label", "display_name", "title", "name")
        kind = f.get(as_status, "type", "field_type", "data_type", "kind")
        required = f.get(as_bool, "required", "is_required", "mandatory")
        options = f.get(as_list, "options", "choices", "values") or []
        f.finish()
        if key is None:
            return None
        texts = []
        for option in options:
            if isinstance(option, dict):
                text = label({"value": option.get("value")}) or label(option)
            else:
                text = label(option)
            if text:
                texts.append(text)
        return cls(
            key=key,
            label=shown or key,
            type=kind or "text",
            required=bool(required),
            options=tuple(texts),
        )


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list endpoint; `has_more` from metadata when present, else from its size."""

    items: list[T]
    page: int
    limit: int
    total: int | None
    has_more: bool
    skipped: int = 0  # items that could not be read at all


def image_file_name(image: Any) -> str | None:
    """The file name of a product image as Resell Scan shows it: `fileName`, `file_name`,
    `name` or `filename`, else the last segment of its URL (assumed; shapes unknown)."""
    if isinstance(image, str):
        url: Any = image
    elif isinstance(image, dict):
        f = Fields(image)
        name = f.get(as_text, "fileName", "file_name", "filename", "name", "originalName")
        if name:
            return name
        url = f.get(as_text, "url", "src", "href", "path")
    else:
        return None
    if not isinstance(url, str) or url.startswith("data:"):
        return None
    path = urlsplit(url).path
    tail = unquote(path.rsplit("/", 1)[-1]) if path else ""
    return tail or None


@dataclass(frozen=True)
class Product:
    id: str
    collection_id: str | None = None
    manual_fields: dict[str, Any] = field(default_factory=dict)
    images: tuple[Any, ...] = ()
    created_at: float | None = None

    @classmethod
    def read(cls, data: Any, report: Report | None = None) -> Product | None:
        f = Fields(data, report)
        pid = f.get(as_id, "id", "product_id", "uuid")
        collection = f.get(as_id, "collection_id")
        fields = f.get(as_obj, "manual_fields", "manualFieldValues", "fields") or {}
        images = f.get(as_list, "images", "photos") or []
        created = f.get(as_time, "created_at", "createdAt", "created")
        f.finish()
        if pid is None:
            return None
        return cls(
            id=pid,
            collection_id=collection,
            manual_fields=fields,
            images=tuple(images),
            created_at=created,
        )

    def file_names(self) -> list[str]:
        return [n for n in (image_file_name(i) for i in self.images) if n]


@dataclass(frozen=True)
class BatchStarted:
    """The answer to starting an analysis: a batch id (key name assumed, §9 #6)."""

    batch_id: str
    product_ids: tuple[str, ...] = ()

    @classmethod
    def read(cls, data: Any, report: Report | None = None) -> BatchStarted | None:
        f = Fields(unwrap(data), report)
        batch_id = f.get(as_id, "batch_id", "batchId", "id")
        if batch_id is None:  # {"batch": {"id": …}} (assumed alternative)
            nested = as_obj(f.take("batch"))
            batch_id = Fields(nested).get(as_id, "id", "batch_id") if nested else None
        ids = f.get(as_list, "product_ids", "productIds")
        if ids is None:
            products = f.get(as_list, "products") or []
            ids = [Fields(p).get(as_id, "id", "product_id") for p in products]
        f.finish()
        if batch_id is None:
            return None
        return cls(batch_id=batch_id, product_ids=tuple(i for i in map(as_id, ids) if i))


@dataclass(frozen=True)
class ProductResult:
    product_id: str | None = None
    status: str = UNKNOWN
    progress: float | None = None
    result: dict[str, Any] = field(default_factory=dict)
    product_data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # as text; None when the product has no error
    raw: Any = None

    @classmethod
    def read(cls, data: Any, report: Report | None = None) -> ProductResult:
        f = Fields(data, report)
        product_id = f.get(as_id, "product_id", "productId", "id")
        status = f.get(as_status, "status", "state")
        progress = f.get(as_float, "progress", "percent")
        result = f.get(as_obj, "result", "analysis", "analysis_result")
        product_data = f.get(as_obj, "product_data", "product")
        error = f.get(as_error, "error", "errors", "error_message")
        f.finish()
        return cls(
            product_id=product_id,
            status=status or UNKNOWN,
            progress=progress,
            result=result or {},
            product_data=product_data or {},
            error=error,
            raw=data,
        )

    @property
    def failed(self) -> bool:
        return self.error is not None or self.status in FAILED_STATUSES

    @property
    def error_text(self) -> str:
        return self.error or self.status


@dataclass(frozen=True)
class BatchStatus:
    """Batch status or results. Mirrors the webhook `data` object (assumed, §2.6b, §2.7)."""

    batch_id: str | None = None
    collection_id: str | None = None
    status: str = UNKNOWN
    total_products: int | None = None
    successful_products: int | None = None
    failed_products: int | None = None
    success_rate: float | None = None
    progress: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    products: tuple[ProductResult, ...] = ()
    products_unreadable: bool = False  # `products` not a list, or holding non-objects
    raw: Any = None
    report: Report = field(default_factory=Report, compare=False, repr=False)

    @classmethod
    def read(cls, payload: Any, *, batch_id: str | None = None) -> BatchStatus:
        """Never raises. A bare list is a list of product results."""
        report = Report()
        data = unwrap(payload)
        if isinstance(data, list):
            data = {"products": data}
        f = Fields(data, report)
        nested = as_obj(f.raw("batch")[1])
        if nested is not None:  # {"batch": {...summary...}, "results": [...]}
            merged = {**nested, **{k: v for k, v in f.data.items() if k != "batch"}}
            f = Fields(merged, report)
        found_id = f.get(as_id, "batch_id", "batchId", "id")
        key, raw_products = f.raw("products", "results", "items", "product_results")
        products: list[ProductResult] = []
        unreadable = False
        if key is not None:
            f.take(key)
            if isinstance(raw_products, list):
                for item in raw_products:
                    if not isinstance(item, dict):  # a product is an object, whatever else
                        unreadable = True
                        continue
                    item_report = Report()
                    products.append(ProductResult.read(item, item_report))
                    report.merge(item_report, f"{key}[]")
                if unreadable:
                    report.unknown[f"{key}[]"] = "non-object item"
            elif raw_products is not None:
                unreadable = True
                report.understood.pop(key, None)
                report.unknown[key] = type(raw_products).__name__
        status = BatchStatus(
            batch_id=found_id or batch_id,
            collection_id=f.get(as_id, "collection_id"),
            status=f.get(as_status, "status", "state") or UNKNOWN,
            total_products=f.get(as_int, "total_products", "total", "product_count"),
            successful_products=f.get(
                as_int, "successful_products", "successful", "completed_products", "succeeded"
            ),
            failed_products=f.get(as_int, "failed_products", "failed"),
            success_rate=f.get(as_float, "success_rate"),
            progress=f.get(as_float, "progress", "percent"),
            started_at=f.get(as_time, "started_at", "created_at"),
            completed_at=f.get(as_time, "completed_at", "finished_at"),
            products=tuple(products),
            products_unreadable=unreadable,
            raw=payload,
            report=report,
        )
        f.finish()
        return status

    @property
    def finished(self) -> bool:
        if self.status in FINISHED_STATUSES:
            return True
        # No readable status, but a completion time: finished (assumed).
        return self.status == UNKNOWN and self.completed_at is not None

    @property
    def readable(self) -> bool:
        """Whether anything useful could be read: a status, counts or product results."""
        return (
            self.status != UNKNOWN
            or self.completed_at is not None
            or bool(self.products)
            or self.total_products is not None
        )

    @property
    def percent(self) -> float | None:
        """Progress 0-100: the batch's own figure, else from product progress or counts."""
        if self.progress is not None:
            return max(0.0, min(100.0, self.progress))
        if self.products:
            values = [p.progress if p.progress is not None else 0.0 for p in self.products]
            return max(0.0, min(100.0, sum(values) / len(values)))
        if self.total_products:
            done = (self.successful_products or 0) + (self.failed_products or 0)
            return max(0.0, min(100.0, 100.0 * done / self.total_products))
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
        return max(0, total), max(0, ok), max(0, failed)

    def failed_product_ids(self) -> list[str]:
        return [p.product_id for p in self.products if p.failed and p.product_id]

    def product_ids(self) -> list[str]:
        return [p.product_id for p in self.products if p.product_id]


@dataclass(frozen=True)
class WebhookEvent:
    """The documented `analysis.completed` payload (webhooks guide, resell-scan-api.md §5.3),
    read tolerantly: a missing `data` means the batch fields are at the top level."""

    id: str | None
    event: str | None
    created_at: float | None
    data: dict[str, Any]
    raw: dict[str, Any]

    @classmethod
    def read(cls, payload: dict[str, Any]) -> WebhookEvent:
        f = Fields(payload)
        event_id = f.get(as_id, "id", "event_id", "eventId")
        event = f.get(as_text, "event", "type", "event_type")
        created = f.get(as_time, "created_at", "createdAt", "timestamp")
        data = f.get(as_obj, "data", "payload")
        if data is None:
            data = payload
        return cls(
            id=event_id,
            event=event.strip().lower() if event else None,
            created_at=created,
            data=data,
            raw=payload,
        )

    def batch(self) -> BatchStatus:
        return BatchStatus.read(self.data)


def read_list(
    items: Sequence[Any], reader: Any, report: Report | None = None
) -> tuple[list[Any], int]:
    """Read each item; unreadable ones are counted, not raised."""
    out: list[Any] = []
    skipped = 0
    for item in items:
        item_report = Report()
        value = reader(item, item_report)
        if report is not None:
            report.merge(item_report, "[]")
        if value is None:
            skipped += 1
        else:
            out.append(value)
    return out, skipped
