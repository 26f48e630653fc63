"""`resell-scan-bot check --probe`: what the bot makes of the real API's answers.

Most response shapes are undocumented (resell-scan-api.md §2, §9), so the first real user runs
this once. For each endpoint it prints the envelope it found and, per field, whether the bot
understood it, had to leave it unknown (present, but of a type it cannot read), defaulted it
(absent) or ignored it (present, not used): key names and JSON types only, never values, so
the output can be pasted into an issue. It fails (exit 1) when something the bot needs is
missing: a collection id, a manual field key, a product id, a batch id, a readable status.

With `--analyze PHOTO --collection NAME` (explicit: it costs one analysis) it also sends one
real createAndAnalyze, polls the batch, and prints the same for the status and results answers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bot.images import is_heic, to_jpeg
from bot.intake import resolve_collection
from bot.reconcile import NAME_PREFIX
from bot.resellscan import (
    BatchStatus,
    Collection,
    ManualField,
    NewProduct,
    ResellScanClient,
    ResellScanError,
    image_from_bytes,
)
from bot.resellscan.client import LIST_KEYS, list_in
from bot.resellscan.models import BatchStarted, Product, read_list
from bot.resellscan.read import Report, norm, type_name, unwrap
from bot.results import KNOWN_RESULT_KEYS, extra_fields


@dataclass
class Finding:
    endpoint: str
    envelope: str
    report: Report
    needed_ok: bool
    summary: str
    notes: list[str] = field(default_factory=list)


def envelope_of(payload: Any) -> str:
    """How an answer is wrapped, by keys and types only."""
    if isinstance(payload, list):
        return f"bare array ({len(payload)} item(s))"
    if not isinstance(payload, dict):
        return f"bare {type_name(payload)}"
    inner = unwrap(payload)
    keys = ", ".join(f"{k}: {type_name(v)}" for k, v in list(payload.items())[:12])
    if inner is not payload:
        return f"envelope {{{keys}}}"
    return f"object {{{keys}}}"


def _strip(report: Report) -> Report:
    """Item reports merged as `[].key` read better as `key`."""

    def clean(key: str) -> str:
        return key[3:] if key.startswith("[].") else key

    return Report(
        understood={clean(k): v for k, v in report.understood.items()},
        unknown={clean(k): v for k, v in report.unknown.items()},
        missing=[clean(k) for k in report.missing],
        ignored={clean(k): v for k, v in report.ignored.items()},
    )


def _list_finding(
    endpoint: str, payload: Any, reader: Callable[[Any, Report | None], Any], what: str
) -> tuple[Finding, list[Any]]:
    items = list_in(payload, *LIST_KEYS) or []
    report = Report()
    parsed, skipped = read_list(items, reader, report)
    ok = bool(parsed) or not items
    summary = f"{len(parsed)} {what}(s) read" + (f", {skipped} unreadable" if skipped else "")
    if not items:
        summary = f"no {what}s in the answer (nothing to check)"
    return Finding(endpoint, envelope_of(payload), _strip(report), ok, summary), parsed


def print_finding(finding: Finding, out: TextIO) -> None:
    r = finding.report

    def fmt(pairs: dict[str, str]) -> str:
        return ", ".join(f"{k} ({v})" for k, v in sorted(pairs.items())) or "-"

    print(f"{'ok  ' if finding.needed_ok else 'FAIL'} {finding.endpoint}", file=out)
    print(f"     envelope:   {finding.envelope}", file=out)
    print(f"     understood: {fmt(r.understood)}", file=out)
    if r.unknown:
        print(f"     unreadable: {fmt(r.unknown)}  (left unknown)", file=out)
    print(f"     defaulted:  {', '.join(sorted(set(r.missing))) or '-'}", file=out)
    print(f"     ignored:    {fmt(r.ignored)}", file=out)
    for note in finding.notes:
        print(f"     note:       {note}", file=out)
    print(f"     -> {finding.summary}", file=out)


async def probe(
    client: ResellScanClient,
    out: TextIO,
    *,
    photo: Path | None = None,
    collection_ref: str | None = None,
    base64_field: str = "data_uri",
    poll_every: float = 3.0,
    poll_timeout: float = 300.0,
) -> bool:
    """Run the probe; True when everything the bot needs was understood."""
    findings: list[Finding] = []

    async def step(endpoint: str, path: str, params: dict[str, Any] | None = None) -> Any:
        try:
            return await client.get_json(endpoint, path, params)
        except ResellScanError as exc:
            findings.append(Finding(endpoint, "-", Report(), False, f"{type(exc).__name__}: {exc}"))
            print_finding(findings[-1], out)
            return None

    payload = await step("GET /collections", "/collections", {"page": 1, "limit": 5})
    if payload is None:
        return False
    finding, collections = _list_finding("GET /collections", payload, Collection.read, "collection")
    findings.append(finding)
    print_finding(finding, out)
    if not collections:
        return all(f.needed_ok for f in findings)
    first: Collection = collections[0]
    payload = await step("GET /collections/{id}", f"/collections/{first.id}")
    if payload is not None:
        report = Report()
        found = Collection.read(unwrap(payload), report)
        findings.append(
            Finding(
                "GET /collections/{id}",
                envelope_of(payload),
                report,
                found is not None,
                "collection read" if found else "no collection id found",
            )
        )
        print_finding(findings[-1], out)
    payload = await step(
        "GET /collections/{id}/manual-fields", f"/collections/{first.id}/manual-fields"
    )
    if payload is not None:
        finding, fields = _list_finding(
            "GET /collections/{id}/manual-fields", payload, ManualField.read, "manual field"
        )
        if fields and not any("required" in norm(k) for k in finding.report.understood):
            finding.notes.append("no 'required' flag found: every field is taken as optional")
        findings.append(finding)
        print_finding(finding, out)
    payload = await step(
        "GET /collections/{id}/products",
        f"/collections/{first.id}/products",
        {"page": 1, "limit": 5, "include_images": "true"},
    )
    if payload is not None:
        finding, products = _list_finding(
            "GET /collections/{id}/products", payload, Product.read, "product"
        )
        names = [name for p in products for name in p.file_names()]
        if any(name.startswith(NAME_PREFIX) for name in names):
            finding.notes.append(
                f"the bot's own image file names are listed ({NAME_PREFIX}…): an upload whose"
                " answer is lost can be proven absent and sent again"
            )
        elif products and not names:
            finding.notes.append(
                "no image file names found: an upload whose answer is lost cannot be proven"
                " absent, so its user is asked instead of paying twice"
            )
        elif products:
            finding.notes.append(
                "file names are listed, none of the bot's yet: its first upload will show"
                " whether they are kept"
            )
        findings.append(finding)
        print_finding(finding, out)
    if photo is not None and collection_ref is not None:
        ok = await _analyze(
            client, out, findings, photo, collection_ref, collections, base64_field,
            poll_every, poll_timeout,
        )  # fmt: skip
        if not ok:
            return False
    return all(f.needed_ok for f in findings)


async def _analyze(
    client: ResellScanClient,
    out: TextIO,
    findings: list[Finding],
    photo: Path,
    collection_ref: str,
    collections: list[Collection],
    base64_field: str,
    poll_every: float,
    poll_timeout: float,
) -> bool:
    everything = [c async for c in client.iter_collections()] or collections
    match = resolve_collection(collection_ref, everything).match
    if match is None:
        print(f"FAIL collection {collection_ref!r} not found (or ambiguous)", file=out)
        return False
    data = await asyncio.to_thread(photo.read_bytes)
    mime = "image/png" if photo.suffix.lower() == ".png" else "image/jpeg"
    if is_heic(None, photo.name):
        data = await asyncio.to_thread(to_jpeg, data)
        mime = "image/jpeg"
    image = image_from_bytes(
        data, f"probe-{uuid.uuid4().hex[:8]}.jpg", mime_type=mime, base64_field=base64_field
    )
    fields = await client.get_manual_fields(match.id)
    values = {f.key: _example(f) for f in fields if f.required}
    try:
        raw = await client.post_json(
            "POST /products/createAndAnalyze",
            "/products/createAndAnalyze",
            {"collectionId": match.id, "products": [NewProduct([image], values).body()]},
        )
    except ResellScanError as exc:
        print(f"FAIL POST /products/createAndAnalyze: {type(exc).__name__}: {exc}", file=out)
        return False
    report = Report()
    started = BatchStarted.read(raw, report)
    findings.append(
        Finding(
            "POST /products/createAndAnalyze",
            envelope_of(raw),
            report,
            started is not None,
            "batch id read" if started else "no batch id found: the bot cannot track analyses",
        )
    )
    print_finding(findings[-1], out)
    if started is None:
        return False
    deadline = time.monotonic() + poll_timeout
    first_status: Any = None
    status_raw: Any = None
    while time.monotonic() < deadline:
        status_raw = await client.get_json(
            "GET /products/analyze/{id}", f"/products/analyze/{started.batch_id}"
        )
        first_status = first_status if first_status is not None else status_raw
        if BatchStatus.read(status_raw).finished:
            break
        await asyncio.sleep(poll_every)
    status = BatchStatus.read(status_raw)
    notes = []
    if not status.finished:
        notes.append(
            "if the status never says finished, completion comes only by webhook: set it up "
            "(README, Real setup, step 7)"
        )
    findings.append(
        Finding(
            "GET /products/analyze/{id}",
            envelope_of(status_raw),
            _strip(status.report),
            status.readable,
            ("finished" if status.finished else f"not finished after {poll_timeout:.0f} s")
            + f" (status read as {status.status!r})",
            notes=notes,
        )
    )
    print_finding(findings[-1], out)
    results_raw = await client.get_json(
        "GET /products/analyze/{id}/results", f"/products/analyze/{started.batch_id}/results"
    )
    results = BatchStatus.read(results_raw)
    named = results_named(results)
    findings.append(
        Finding(
            "GET /products/analyze/{id}/results",
            envelope_of(results_raw),
            _strip(results.report),
            bool(results.products) and named,
            f"{len(results.products)} product result(s) read"
            + (
                ""
                if named
                else ", but no result field the bot shows by name (title, prices…):"
                " results replies would say nothing about the item"
            ),
            notes=result_notes(results),
        )
    )
    print_finding(findings[-1], out)
    return findings[-1].needed_ok


def results_named(results: BatchStatus) -> bool:
    """Some product's result has a field the results reply shows by name."""
    return any(norm(str(key)) in KNOWN_RESULT_KEYS for p in results.products for key in p.result)


def result_notes(results: BatchStatus) -> list[str]:
    """Which keys of the products' `result` objects the results reply shows by name, which
    as "key: value" lines, and which not at all (keys and types only)."""
    seen: dict[str, str] = {}
    extra: set[str] = set()
    for product in results.products:
        for key, value in product.result.items():
            seen.setdefault(str(key), type_name(value))
        extra.update(key for key, _ in extra_fields(product.result))
    known = {k: v for k, v in seen.items() if norm(k) in KNOWN_RESULT_KEYS}
    shown = {k: v for k, v in seen.items() if k in extra}
    hidden = {k: v for k, v in seen.items() if k not in known and k not in shown}

    def fmt(pairs: dict[str, str]) -> str:
        return ", ".join(f"{k} ({v})" for k, v in sorted(pairs.items())) or "-"

    return [
        f"result fields shown by name: {fmt(known)}",
        f"result fields shown as key: value: {fmt(shown)}",
        f"result fields not shown (in the CSV): {fmt(hidden)}",
    ]


def _example(definition: ManualField) -> Any:
    if definition.options:
        return definition.options[0]
    return {"number": 1, "integer": 1, "boolean": False}.get(definition.type, "probe")
