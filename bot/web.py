"""The bot's HTTP side: Resell Scan webhook relay, signed media URLs, health, metrics, and
optionally Telegram updates by webhook. One Starlette app, served by uvicorn in the bot's loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from telegram import Bot
from telegram.error import TelegramError

from bot.chat import PhotoUnavailable
from bot.config import Settings
from bot.images import is_heic
from bot.media import MediaSigner
from bot.metrics import Metrics
from bot.resellscan.read import shape
from bot.resellscan.webhooks import EVENT_COMPLETED, PayloadError, SignatureError, verify
from bot.telegram.inbox import UpdateInbox
from bot.tracker import Tracker, counts_of
from storage import Counts, Photo, State, Store

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/resell-scan"
TELEGRAM_PATH = "/telegram/updates"
MEDIA_STATES = frozenset({State.RECEIVED, State.SUBMITTING, State.SUBMITTED})


MAX_MEDIA_BYTES = 20 * 1024 * 1024  # Telegram's download limit for bots
# A photo up to this size is read whole and answered at once (Telegram's photos are a few
# hundred KB); larger files stream chunk by chunk, so memory stays bounded either way.
WHOLE_MEDIA_BYTES = 1024 * 1024


class BodyTooLarge(Exception):
    pass


async def _limited(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """Pass chunks on, stopping (the response is then cut short) past `limit` bytes."""
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            log.warning("media larger than %d bytes: stopped", limit)
            return
        yield chunk


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refusing more than `limit` bytes: by Content-Length first, then by counting
    as it streams in (uvicorn sets no limit of its own, and a chunked body has no length)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise BodyTooLarge
        except ValueError as exc:
            raise BodyTooLarge from exc
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class Health:
    """Last known state of the outside services, updated as calls happen."""

    resellscan_ok: bool = True
    resellscan_detail: str = "no call yet"
    telegram_checked: float = 0.0
    telegram_ok: bool = True
    telegram_detail: str = "not checked yet"

    def observe_resellscan(self, endpoint: str, outcome: str) -> None:
        # Auth, permission and connection problems mean degraded; a 404 or 422 does not.
        bad = outcome in ("ConnectionFailed", "AuthError", "TransportError", "ServerError")
        self.resellscan_ok = not bad
        self.resellscan_detail = f"{endpoint}: {outcome}"


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the bot's runtime owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build_web_app(
    *,
    settings: Settings,
    store: Store,
    tracker: Tracker,
    metrics: Metrics,
    media: MediaSigner,
    bot: Bot,
    health: Health,
    http: httpx.AsyncClient,
    inbox: UpdateInbox | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    secrets = list(settings.resell_scan_webhook_secrets)

    async def resell_scan_webhook(request: Request) -> Response:
        if not secrets:
            return JSONResponse({"error": "webhooks are not configured"}, status_code=404)
        try:
            raw = await read_limited(request, settings.webhook_max_body_bytes)
        except BodyTooLarge:
            metrics.webhooks.labels(result="too_large").inc()
            return JSONResponse({"error": "body too large"}, status_code=413)
        try:
            verified = verify(raw, request.headers, secrets)
        except SignatureError as exc:
            metrics.webhooks.labels(result="bad_signature").inc()
            log.warning("webhook refused: %s", exc)
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        except PayloadError as exc:
            metrics.webhooks.labels(result="bad_payload").inc()
            return JSONResponse({"error": str(exc)}, status_code=400)
        event = verified.event
        if event is not None and event.event not in (None, EVENT_COMPLETED):
            metrics.webhooks.labels(result="ignored").inc()
            log.info("webhook event %s ignored (type %s)", event.id, event.event)
            return JSONResponse({"ok": True, "result": "ignored"})
        # Without an event id (undocumented, but possible) the body's digest dedupes retries.
        event_id = (event.id if event else None) or f"sha256:{hashlib.sha256(raw).hexdigest()}"
        batch = event.batch() if event is not None else None
        if batch is None or batch.report.unknown or not batch.readable:
            log.warning(
                "webhook %s kept, partly unreadable: %s",
                event_id,
                sorted(batch.report.unknown) if batch else shape(verified.payload),
            )
        try:
            outcome = await store.apply_webhook(
                event_id,
                EVENT_COMPLETED if batch is not None else "unreadable",
                batch.batch_id if batch is not None else None,
                raw.decode("utf-8", "replace"),
                results=event.data if event is not None else verified.payload,
                counts=counts_of(batch) if batch is not None else Counts(),
                now=clock(),
                product_ids=batch.product_ids() if batch is not None else (),
            )
        except Exception:
            log.exception("webhook %s could not be stored", event_id)
            return JSONResponse({"error": "try again"}, status_code=503)
        metrics.webhooks.labels(result=outcome.kind).inc()
        extra: dict[str, Any] = {
            "batch_id": batch.batch_id if batch else None,
            "submission_id": outcome.submission_id,
        }
        if outcome.kind == "unknown_batch":
            log.warning("webhook %s for unknown batch (kept)", event_id, extra=extra)
        else:
            log.info("webhook %s: %s (%s)", event_id, outcome.kind, verified.variant, extra=extra)
        if outcome.kind in ("applied", "attached"):
            tracker.wake()
        return JSONResponse({"ok": True, "result": outcome.kind})

    async def unavailable(photo: Photo, error: str) -> Response:
        """Telegram would not hand the photo over: a 502 to Resell Scan, and the failed fetch
        counted on its submission where it happens (as the tracker counts its own in base64
        mode), so the upload that asked for it knows why it was refused."""
        error = f"photo fetch failed: {error}"[:300]
        extra = {"submission_id": photo.submission_id, "chat_id": photo.chat_id}
        try:
            failures = await store.photo_failed(photo.submission_id, None, error)
            log.warning("media: %s (%d so far)", error, failures, extra=extra)
        except Exception:  # the 502 is the answer either way
            log.exception("media: %s, and counting it failed", error, extra=extra)
        return Response(b"unavailable", status_code=502, media_type="text/plain")

    async def media_file(request: Request) -> Response:
        """A photo for Resell Scan, streamed from Telegram chunk by chunk (a 20 MB file is
        never held in memory); HEIC is converted to JPEG, which needs the whole file."""
        media_key = media.check(request.path_params["token"], clock())
        found = await store.photo_by_media_key(media_key) if media_key else None
        if found is None or found[1] not in MEDIA_STATES:
            return Response(b"not found", status_code=404, media_type="text/plain")
        photo, _ = found
        headers = {"Cache-Control": "private, max-age=300"}
        try:
            if is_heic(photo.mime_type, photo.file_name):
                data, mime = await tracker.photo_bytes(photo)
                return Response(data, media_type=mime, headers=headers)
            file = await bot.get_file(photo.file_id)
            if not file.file_path:
                return await unavailable(photo, "getFile gave no file path")
            # The file URL carries the bot token: fetched here, it never leaves the process
            # (nor does it reach the log or the database: an httpx error is named, not quoted).
            upstream = await http.send(http.build_request("GET", file.file_path), stream=True)
        except (TelegramError, PhotoUnavailable) as exc:
            return await unavailable(photo, f"{type(exc).__name__}: {exc}")
        except httpx.HTTPError as exc:
            return await unavailable(photo, f"download: {type(exc).__name__}")
        if upstream.status_code != 200:
            await upstream.aclose()
            return await unavailable(photo, f"download: HTTP {upstream.status_code}")
        length = upstream.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) <= WHOLE_MEDIA_BYTES:
            try:
                data = await upstream.aread()
            finally:
                await upstream.aclose()
            return Response(data, media_type=photo.mime_type or "image/jpeg", headers=headers)
        if length is not None:
            headers["Content-Length"] = length
        return StreamingResponse(
            _limited(upstream.aiter_bytes(), MAX_MEDIA_BYTES),
            media_type=photo.mime_type or "image/jpeg",
            headers=headers,
            background=BackgroundTask(upstream.aclose),
        )

    async def healthz(request: Request) -> Response:
        checks: dict[str, Any] = {}
        try:
            async with store.db.reading() as tx:
                await tx.one("SELECT 1")
            checks["database"] = {"ok": True}
        except Exception as exc:
            checks["database"] = {"ok": False, "detail": type(exc).__name__}
        now = time.monotonic()
        if now - health.telegram_checked > 30:
            health.telegram_checked = now
            try:
                await bot.get_me()
                health.telegram_ok, health.telegram_detail = True, "getMe ok"
            except TelegramError as exc:
                health.telegram_ok, health.telegram_detail = False, type(exc).__name__
        checks["telegram"] = {"ok": health.telegram_ok, "detail": health.telegram_detail}
        checks["resell_scan"] = {"ok": health.resellscan_ok, "detail": health.resellscan_detail}
        ok = all(c["ok"] for c in checks.values())
        return JSONResponse({"ok": ok, "checks": checks}, status_code=200 if ok else 503)

    async def metrics_endpoint(request: Request) -> Response:
        metrics.set_states(await store.count_by_state(), [s.value for s in State])
        metrics.unknown_events.set(await store.unknown_events())
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    async def telegram_webhook(request: Request) -> Response:
        """Telegram's webhook POST: the update is committed to the inbox before the 200 (a
        200 tells Telegram it is delivered; it will never send it again)."""
        expected = settings.telegram_webhook_secret.get_secret_value().encode()
        given = request.headers.get("x-telegram-bot-api-secret-token", "").encode(
            "utf-8", "replace"
        )
        if inbox is None or not hmac.compare_digest(given, expected):
            return Response(status_code=403)
        try:
            payload = json.loads(await read_limited(request, settings.webhook_max_body_bytes))
        except BodyTooLarge:
            return Response(status_code=413)
        except ValueError:
            return Response(status_code=400)
        if not isinstance(payload, dict) or not isinstance(payload.get("update_id"), int):
            return Response(status_code=400)
        try:
            await inbox.store([payload])
        except Exception:
            log.exception("update %s could not be stored", payload.get("update_id"))
            return Response(status_code=503)  # Telegram retries it
        return Response(status_code=200)

    routes = [
        Route(WEBHOOK_PATH, resell_scan_webhook, methods=["POST"]),
        Route("/media/{token}", media_file, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    if inbox is not None:
        routes.append(Route(TELEGRAM_PATH, telegram_webhook, methods=["POST"]))
    return Starlette(routes=routes)
