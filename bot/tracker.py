"""The tracker: moves every submission from `received` to `notified`.

One loop asks storage what is due (`next_action_at <= now`) and handles each submission by its
state: `received` is resolved, checked and submitted; `submitted` is polled on an adaptive
schedule within a shared request budget; states that owe the chat a message are notified
exactly once through the storage claim. Webhooks only store the completion and wake the loop.
After a restart the same loop resumes everything, since all it needs is in SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

from bot.config import Settings
from bot.images import is_heic, to_jpeg, upload_name
from bot.intake import Catalog, coerce_fields, example_caption
from bot.media import MediaSigner
from bot.metrics import Metrics
from bot.resellscan import (
    AmbiguousWrite,
    APIError,
    AuthError,
    BatchStatus,
    Collection,
    ConnectionFailed,
    InvalidRequest,
    NewProduct,
    NotFound,
    PaymentRequired,
    PermissionDenied,
    ProtocolError,
    RateLimited,
    ResellScanClient,
    ResellScanError,
    TransportError,
    ValidationFailed,
    image_from_bytes,
    image_from_url,
)
from bot.resellscan.models import UNKNOWN
from bot.resellscan.read import shape
from bot.telegram import render
from bot.telegram.callbacks import CallbackCodec
from bot.telegram.texts import t
from storage import MESSAGE_STATES, Counts, Photo, Problem, State, Store, Submission

log = logging.getLogger(__name__)

MAX_SUBMIT_ATTEMPTS = 5
WAKE_COALESCE = 0.005  # seconds
MAX_NOTIFY_BACKOFF = 300.0
# Status answers in a row that cannot be read before the chat is told (never the deadline).
MAX_UNREADABLE = 3


def counts_of(status: BatchStatus) -> Counts:
    """What storage keeps of a batch's summary."""
    total, ok, failed = status.counts()
    known = status.total_products is not None or bool(status.products)
    return Counts(
        status=None if status.status == UNKNOWN else status.status,
        total=total if known else None,
        successful=ok if known else None,
        failed=failed if known else None,
    )


_REQUEST_PATH = re.compile(
    r"\b(?:body\.)?products\[(\d+)\](?:\.images\[(\d+)\])?(?:\.manual_fields\.?)?"
)


def humane(detail: str) -> str:
    """A server validation message without our request's internal paths: `products[0].
    images[1]: not an image` becomes `photo 2: not an image`, `products[0].manual_fields.
    size: required` becomes `size: required`."""

    def replace(match: re.Match[str]) -> str:
        return f"photo {int(match.group(2)) + 1}" if match.group(2) is not None else ""

    text = _REQUEST_PATH.sub(replace, detail)
    text = re.sub(r"^\s*[:.]\s*", "", text)
    return re.sub(r"\s+", " ", text).strip() or detail


def photo_problem(exc: TelegramError) -> str:
    """Which text explains a photo we could not fetch from Telegram."""
    text = str(exc).lower()
    if "too big" in text or "too large" in text:
        return "photo_too_big"
    return "photo_unavailable"


def retry_after_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def products_of(photos: list[Photo]) -> list[list[Photo]]:
    """One product per album or single photo, in the order they were sent."""
    groups: dict[str, list[Photo]] = {}
    for photo in sorted(photos, key=lambda p: p.message_id):
        groups.setdefault(photo.product_key, []).append(photo)
    return list(groups.values())


def request_window(created_at: float, now: float, ttl: float) -> int:
    """Which validity window a request made now falls in (1, 2, …, each one TTL long, counted
    from the submission's creation): the smallest whose end leaves at least half a TTL for
    Resell Scan to fetch the photos. A resend in the same window builds the very same body
    (same signed URLs), so it carries the same Idempotency-Key; a later resend gets fresh URLs
    and, since its body differs, a fresh key."""
    return max(1, math.ceil((now + ttl / 2 - created_at) / ttl))


def poll_delay(poll_count: int, settings: Settings) -> float:
    """Gap before the next status request: geometric growth up to a cap, so the number of
    requests grows with the logarithm of the analysis time (then linearly past the cap).
    Slower when webhooks are configured, since polling is only the safety net then."""
    gap = settings.poll_initial_seconds * settings.poll_backoff_factor ** max(0, poll_count)
    gap = min(settings.poll_max_seconds, gap)
    if settings.webhooks_enabled:
        gap *= settings.webhook_poll_factor
    return gap


class Budget:
    """Token bucket shared by all batches: at most `rate` status requests per second, and a
    pause for everyone when Resell Scan answers 429."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = 1.0  # no bursts: requests are spaced at least 1/rate apart
        self.tokens = self.capacity
        self.clock = clock
        self.last = clock()
        self.paused_until = 0.0

    def take(self) -> float:
        """0 when a request may go now (and takes a token), else seconds to wait."""
        now = self.clock()
        if now < self.paused_until:
            return self.paused_until - now
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, self.clock() + seconds)


@dataclass(frozen=True)
class Outgoing:
    text: str
    markup: InlineKeyboardMarkup | None = None
    document: tuple[str, bytes] | None = None  # (file name, content)


class Tracker:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        client: ResellScanClient,
        catalog: Catalog,
        bot: Bot,
        metrics: Metrics,
        media: MediaSigner | None,
        callbacks: CallbackCodec,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.catalog = catalog
        self.bot = bot
        self.metrics = metrics
        self.media = media
        self.callbacks = callbacks
        self.clock = clock
        self.rng = rng or random.Random()
        self.budget = Budget(settings.poll_budget_per_second)
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._stopping = False

    # Lifecycle -----------------------------------------------------------------------------

    async def start(self) -> dict[str, int]:
        counts = await self.store.recover(self.clock())
        if any(counts.values()):
            log.info("resuming open submissions: %s", counts)
        self._stopping = False
        self._loop_task = asyncio.create_task(self._run(), name="tracker")
        return counts

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking work; let in-flight handlers finish their transaction (bounded)."""
        self._stopping = True
        self._wake.set()
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        pending = list(self._inflight.values())
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        limit = self.settings.worker_concurrency
        while not self._stopping:
            self._wake.clear()
            now = self.clock()
            try:
                due = await self.store.due(now, limit=limit * 4)
                for sub in due:
                    if len(self._inflight) >= limit:
                        break
                    if sub.id not in self._inflight:
                        task = asyncio.create_task(self._guarded(sub), name=f"sub-{sub.id}")
                        self._inflight[sub.id] = task
                        task.add_done_callback(self._done_callback(sub.id))
                next_at = await self.store.next_due_at()
            except Exception:
                log.exception("tracker loop failed; retrying")
                next_at = now + 1.0
            timeout = 5.0 if next_at is None else min(5.0, max(0.0, next_at - now))
            if next_at is not None and next_at <= now:
                timeout = 1.0  # everything due is in flight: a finishing task wakes us
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.001, timeout))
            # A burst of photos wakes the loop once per photo: gather them for a moment so the
            # due query runs once per burst, not once per photo, and intake keeps the database.
            await asyncio.sleep(WAKE_COALESCE)

    def _done_callback(self, sub_id: int) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            self._inflight.pop(sub_id, None)
            self._wake.set()

        return done

    async def _guarded(self, sub: Submission) -> None:
        try:
            await self.handle(sub)
        except Exception as exc:  # one bad submission must not stop the others
            log.exception(
                "handling submission %d failed",
                sub.id,
                extra={"submission_id": sub.id, "chat_id": sub.chat_id},
            )
            with contextlib.suppress(Exception):
                await self.store.defer(sub.id, self.clock() + 30.0, f"internal: {exc!r}"[:300])

    async def handle(self, sub: Submission) -> None:
        if sub.state is State.RECEIVED:
            await self.process(sub)
        elif sub.state is State.SUBMITTED:
            await self.poll(sub)
        elif sub.state in MESSAGE_STATES:
            await self.notify(sub.id)
        else:  # submitting is only due after a crash, and recover() already moved it
            await self.store.defer(sub.id, None)

    # Received: resolve, check, submit ------------------------------------------------------

    async def process(self, sub: Submission) -> None:
        now = self.clock()
        ctx = {"submission_id": sub.id, "chat_id": sub.chat_id}
        photos = await self.store.photos(sub.id)
        if not sub.collection_id:
            ref = sub.collection_ref
            if not ref:
                chat = await self.store.chat(sub.chat_id)
                if chat.default_collection_id:
                    await self.store.choose_collection(
                        sub.id,
                        chat.default_collection_id,
                        chat.default_collection_name or chat.default_collection_id,
                        now,
                    )
                    return await self._continue(sub.id)
                return await self.ask_collection(sub, photos, None)
            try:
                resolution = await self.catalog.resolve(ref)
            except ResellScanError as exc:
                return await self._api_trouble(sub, exc)
            if resolution.match is not None:
                await self.store.choose_collection(
                    sub.id, resolution.match.id, resolution.match.name, now
                )
                return await self._continue(sub.id)
            if resolution.candidates:
                return await self.ask_collection(sub, photos, resolution.candidates, ref=ref)
            await self.store.reject(sub.id, Problem("unknown_collection", {"ref": ref}), now)
            return await self.notify(sub.id)
        assert sub.collection_id is not None
        groups = products_of(photos)
        biggest = max((len(g) for g in groups), default=0)
        if biggest > self.settings.max_photos_per_product or not groups:
            problem = Problem(
                "too_many_photos",
                {"limit": self.settings.max_photos_per_product, "count": biggest},
            )
            await self.store.reject(sub.id, problem, now)
            return await self.notify(sub.id)
        try:
            definitions = await self.catalog.fields(sub.collection_id)
        except ResellScanError as exc:
            return await self._api_trouble(sub, exc)
        values, problems = coerce_fields(sub.manual_fields, definitions)
        if problems:
            example = example_caption(sub.collection_name or sub.collection_id, definitions, values)
            problem = Problem(
                "fields",
                {"problems": [dataclasses.asdict(p) for p in problems], "example": example},
            )
            await self.store.reject(sub.id, problem, now)
            log.info("fields rejected: %s", [p.code for p in problems], extra=ctx)
            return await self.notify(sub.id)
        if len(groups) > self.settings.max_products_per_batch:
            problem = Problem(
                "too_many_products",
                {"limit": self.settings.max_products_per_batch, "count": len(groups)},
            )
            await self.store.reject(sub.id, problem, now)
            return await self.notify(sub.id)
        try:
            window = self.request_window(sub)
            products = [
                NewProduct(await self._images(sub, group, window), values) for group in groups
            ]
        except TelegramError as exc:
            if isinstance(exc, BadRequest) or sub.attempts >= MAX_SUBMIT_ATTEMPTS:
                await self.store.reject(sub.id, Problem(photo_problem(exc)), now)
                return await self.notify(sub.id)
            await self.store.defer(sub.id, now + self._backoff(sub.attempts), str(exc)[:300])
            return None
        except Exception:
            # A request we cannot build will not build on the next try either: say so, once.
            log.exception("building the request failed", extra=ctx)
            await self.store.reject(sub.id, Problem("request_invalid"), now)
            return await self.notify(sub.id)
        await self.submit(sub, products, f"{sub.idempotency_key}.{window}")
        return None

    async def _continue(self, sub_id: int) -> None:
        fresh = await self.store.get(sub_id)
        if fresh is not None and fresh.state is State.RECEIVED and fresh.collection_id:
            await self.process(fresh)

    def request_window(self, sub: Submission) -> int:
        return request_window(sub.created_at, self.clock(), self.settings.media_url_ttl_seconds)

    async def _images(
        self, sub: Submission, photos: list[Photo], window: int
    ) -> list[dict[str, Any]]:
        images = []
        expires = int(sub.created_at + self.settings.media_url_ttl_seconds * window)
        for photo in photos:
            ext = {"image/png": "png", "image/webp": "webp"}.get(photo.mime_type or "", "jpg")
            name = photo.file_name or f"telegram-{photo.chat_id}-{photo.message_id}.{ext}"
            name = upload_name(name, is_heic(photo.mime_type, photo.file_name))
            if self.media is not None and self.settings.uses_image_urls:
                images.append(
                    image_from_url(
                        self.media.url_until(photo.media_key, expires),
                        name,
                        remove_background=sub.remove_background,
                    )
                )
            else:
                data, mime = await self.photo_bytes(photo)
                images.append(
                    image_from_bytes(
                        data,
                        name,
                        mime_type=mime,
                        remove_background=sub.remove_background,
                        base64_field=self.settings.image_base64_field.value,
                    )
                )
        return images

    async def download(self, file_id: str) -> bytes:
        """A photo's bytes from Telegram (the file URL carries the bot token: it stays here)."""
        file = await self.bot.get_file(file_id)
        return bytes(await file.download_as_bytearray())

    async def photo_bytes(self, photo: Photo) -> tuple[bytes, str]:
        """The bytes and type Resell Scan gets for a photo: HEIC/HEIF becomes JPEG."""
        data = await self.download(photo.file_id)
        if is_heic(photo.mime_type, photo.file_name):
            return await asyncio.to_thread(to_jpeg, data), "image/jpeg"
        return data, photo.mime_type or "image/jpeg"

    async def submit(
        self, sub: Submission, products: list[NewProduct], idempotency_key: str
    ) -> None:
        ctx: dict[str, Any] = {"submission_id": sub.id, "chat_id": sub.chat_id}
        now = self.clock()
        if not await self.store.begin_submit(sub.id, now):
            return
        assert sub.collection_id is not None
        try:
            started = await self.client.create_and_analyze(
                sub.collection_id,
                products,
                idempotency_key=idempotency_key,
            )
        except (ConnectionFailed, RateLimited) as exc:
            # Provably not processed: safe to try again later, within a bound.
            if sub.attempts + 1 >= MAX_SUBMIT_ATTEMPTS:
                problem = Problem("api_unreachable", {"attempts": sub.attempts + 1})
                await self.store.fail(sub.id, problem, self.clock())
                return await self.notify(sub.id)
            wait = exc.retry_after if isinstance(exc, RateLimited) and exc.retry_after else None
            retry_at = self.clock() + (wait or self._backoff(sub.attempts))
            await self.store.submit_retry(sub.id, str(exc)[:300], retry_at, self.clock())
            log.warning("submit deferred: %s", exc, extra=ctx)
            return None
        except InvalidRequest as exc:
            log.error("request not buildable: %s", exc, extra=ctx)
            await self.store.reject(sub.id, Problem("request_invalid"), self.clock())
            return await self.notify(sub.id)
        except (AmbiguousWrite, ProtocolError, TransportError) as exc:
            # It may have been processed: never resend silently (no documented idempotency).
            await self.store.mark_uncertain(sub.id, str(exc)[:300], self.clock())
            log.warning("submission uncertain: %s", exc, extra=ctx)
            return await self.notify(sub.id)
        except APIError as exc:
            await self.store.reject(sub.id, self._api_problem(exc), self.clock())
            log.info("submission rejected by Resell Scan: %s", exc, extra=ctx)
            return await self.notify(sub.id)
        ctx["batch_id"] = started.batch_id
        completed = await self.store.mark_submitted(
            sub.id, started.batch_id, self.clock() + poll_delay(0, self.settings), self.clock()
        )
        log.info("submitted", extra=ctx)
        fresh = await self.store.get(sub.id)
        if fresh is not None and fresh.progress_message_id is None:
            try:
                message = await self.send(
                    fresh,
                    Outgoing(render.analysing_text(fresh.language, fresh, len(products), None)),
                )
                await self.store.set_progress_message(sub.id, message.message_id)
            except TelegramError as exc:
                log.warning("analysing message not sent: %s", exc, extra=ctx)
        if completed:
            await self.notify(sub.id)
        return None

    @staticmethod
    def _api_problem(exc: APIError) -> Problem:
        if isinstance(exc, PermissionDenied):
            return Problem("api_permission", {"resource": exc.resource})
        if isinstance(exc, AuthError):
            return Problem("api_auth")
        if isinstance(exc, PaymentRequired):
            return Problem("api_tokens")
        if isinstance(exc, ValidationFailed):
            details = "; ".join(humane(d) for d in exc.details) or humane(exc.message)
            return Problem("api_validation", {"message": details[:500]})
        if isinstance(exc, NotFound):
            return Problem("api_error", {"message": exc.message[:300]})
        return Problem("api_error", {"message": f"{exc.status} {exc.message}"[:300]})

    async def _api_trouble(self, sub: Submission, exc: ResellScanError) -> None:
        """A lookup (collections, fields) failed before submitting: reject for good on
        auth/permission problems, otherwise try again a little later."""
        now = self.clock()
        if isinstance(exc, APIError) and not exc.retryable and not isinstance(exc, NotFound):
            await self.store.reject(sub.id, self._api_problem(exc), now)
            await self.notify(sub.id)
            return
        await self.store.defer(sub.id, now + self._backoff(sub.attempts + 1), str(exc)[:300])

    def _backoff(self, attempt: int) -> float:
        ceiling = min(MAX_NOTIFY_BACKOFF, 2.0 * 2 ** max(0, attempt))
        return self.rng.uniform(ceiling / 2, ceiling)

    async def ask_collection(
        self, sub: Submission, photos: list[Photo], candidates: list[Any] | None, *, ref: str = ""
    ) -> None:
        lang = sub.language
        markup: InlineKeyboardMarkup | None
        if candidates:
            text = t(lang, "pick_ambiguous", ref=ref)
            markup = render.choice_keyboard(candidates, self._pick_button(sub))
        else:
            try:
                items = await self.catalog.collections()
            except ResellScanError as exc:
                return await self._api_trouble(sub, exc)
            text = t(
                lang,
                "pick_collection",
                sender=sub.user_name,
                photos=render.count_text(lang, len(photos), "photos_one", "photos_many"),
            )
            _, markup = render.collections_page(
                lang,
                items,
                1,
                None,
                button=self._pick_button(sub),
                nav=lambda page, q: self.callbacks.encode(
                    "pp", sub.id, page, q, chat_id=sub.chat_id
                ),
            )
        try:
            await self.send(sub, Outgoing(text, markup))
        except TelegramError as exc:
            await self.store.defer(sub.id, self.clock() + self._backoff(1), str(exc)[:300])
            return None
        await self.store.await_choice(sub.id, self.clock())
        return None

    def _pick_button(self, sub: Submission) -> Callable[[Collection], str]:
        def data(collection: Collection) -> str:
            return self.callbacks.encode("pick", sub.id, collection.id, chat_id=sub.chat_id)

        return data

    # Submitted: poll -------------------------------------------------------------------------

    async def poll(self, sub: Submission) -> None:
        now = self.clock()
        assert sub.batch_id is not None
        if (
            sub.submitted_at is not None
            and now >= sub.submitted_at + self.settings.poll_deadline_seconds
        ):
            if await self.store.expire(sub.id, now):
                log.info("batch expired", extra={"submission_id": sub.id, "batch_id": sub.batch_id})
                await self.notify(sub.id)
            return
        wait = self.budget.take()
        if wait > 0:
            await self.store.defer(sub.id, now + wait + self.rng.uniform(0, 0.05))
            return
        try:
            status = await self.client.get_batch(sub.batch_id)
            if (status.finished and not status.products) or not status.readable:
                results = await self.client.get_batch_results(sub.batch_id)
                if results.readable or not status.readable:
                    status = results
        except RateLimited as exc:
            pause = exc.retry_after or 5.0
            self.budget.pause(pause)
            await self.store.defer(sub.id, self.clock() + pause, str(exc))
            return
        except NotFound:
            await self.store.fail(
                sub.id, Problem("failed", {"reason": "batch_missing"}), self.clock()
            )
            await self.notify(sub.id)
            return
        except ProtocolError as exc:  # not JSON at all
            await self._unreadable(sub, None, str(exc))
            return
        except ResellScanError as exc:
            gap = poll_delay(sub.poll_count, self.settings)
            await self.store.defer(sub.id, self.clock() + gap, str(exc)[:300])
            return
        if not status.readable:
            await self._unreadable(sub, status, "unreadable status")
            return
        if status.finished:
            if await self.store.complete(
                sub.id, status.raw, counts_of(status), "poll", self.clock()
            ):
                log.info(
                    "batch completed (poll)",
                    extra={"submission_id": sub.id, "batch_id": sub.batch_id},
                )
                await self.notify(sub.id)
            return
        total, ok, failed = status.counts()
        gap = poll_delay(sub.poll_count + 1, self.settings) * self.rng.uniform(0.9, 1.1)
        await self.store.record_poll(
            sub.id,
            raw_status=status.status,
            counts=(status.total_products, ok, failed),
            progress=status.percent,
            next_poll_at=self.clock() + gap,
            now=self.clock(),
        )
        await self._show_progress(sub, status.percent, max(1, total))

    async def _unreadable(self, sub: Submission, status: BatchStatus | None, error: str) -> None:
        """An answer about this batch we cannot read. Logged once with its shape (keys and
        types, never values), asked again a few times, then the chat is told what is true:
        Resell Scan answered, and the answer could not be read (never a silent expiry)."""
        count = sub.unreadable_count + 1
        ctx = {"submission_id": sub.id, "batch_id": sub.batch_id}
        if count == 1:
            log.warning(
                "unreadable answer about the batch (%s): %s",
                error,
                shape(status.raw) if status is not None else "not JSON",
                extra=ctx,
            )
        if count < MAX_UNREADABLE:
            gap = poll_delay(sub.poll_count, self.settings)
            await self.store.note_unreadable(sub.id, self.clock() + gap, error, self.clock())
            return
        raw = status.raw if status is not None else None
        if await self.store.complete(sub.id, raw, Counts(), "poll", self.clock()):
            log.warning("batch reported as unreadable after %d answers", count, extra=ctx)
            await self.notify(sub.id)

    async def _show_progress(self, sub: Submission, percent: float | None, products: int) -> None:
        """Edit the analysing message only on a real change, and not too often."""
        if sub.progress_message_id is None or percent is None:
            return
        shown = int(sub.progress_shown or 0)
        now = self.clock()
        if int(percent) <= shown:
            return
        if sub.progress_edited_at is not None and (
            now - sub.progress_edited_at < self.settings.progress_edit_interval_seconds
        ):
            return
        text = render.analysing_text(sub.language, sub, products, percent)
        try:
            await self.bot.edit_message_text(
                text,
                chat_id=sub.chat_id,
                message_id=sub.progress_message_id,
                parse_mode=ParseMode.HTML,
            )
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                log.info("progress edit refused: %s", exc)
        except TelegramError as exc:
            log.info("progress edit failed: %s", exc)
            return
        await self.store.note_progress_shown(sub.id, float(int(percent)), now)

    # Messages: exactly once ------------------------------------------------------------------

    async def notify(self, sub_id: int) -> None:
        """Claim, send, mark. A failed send releases the claim and is retried with backoff."""
        now = self.clock()
        if not await self.store.claim_notification(sub_id, now):
            return
        sub = await self.store.get(sub_id)
        assert sub is not None
        ctx = {"submission_id": sub.id, "chat_id": sub.chat_id, "batch_id": sub.batch_id}
        try:
            messages = await self.messages_for(sub)
            for index in range(sub.parts_sent, len(messages)):
                await self.send(sub, messages[index])
                await self.store.mark_part_sent(sub.id, index + 1)
        except RetryAfter as exc:
            wait = retry_after_seconds(exc)
            self.metrics.telegram_sends.labels(outcome="retry_after").inc()
            await self.store.release_claim(sub.id, str(exc), self.clock() + wait, self.clock())
            return
        except Forbidden as exc:
            # The chat blocked or removed the bot: remember it and move on.
            self.metrics.telegram_sends.labels(outcome="forbidden").inc()
            await self.store.update_chat(sub.chat_id, self.clock(), reachable=False)
            await self.store.mark_notified(sub.id, self.clock(), error=f"unreachable: {exc}")
            log.warning("chat unreachable: %s", exc, extra=ctx)
            return
        except BadRequest as exc:
            self.metrics.telegram_sends.labels(outcome="bad_request").inc()
            await self.store.mark_notified(sub.id, self.clock(), error=f"refused: {exc}")
            log.error("message refused by Telegram: %s", exc, extra=ctx)
            return
        except TelegramError as exc:
            self.metrics.telegram_sends.labels(outcome="error").inc()
            wait = self._backoff(sub.notify_attempts)
            await self.store.release_claim(
                sub.id, str(exc)[:300], self.clock() + wait, self.clock()
            )
            log.warning("send failed, retry in %.1fs: %s", wait, exc, extra=ctx)
            return
        except Exception as exc:
            # Our own fault (rendering, a text key, the database): release what we hold and
            # back off, so the row is neither stuck claimed nor retried in a tight loop.
            wait = self._backoff(sub.notify_attempts)
            log.exception("notification failed, retry in %.1fs", wait, extra=ctx)
            with contextlib.suppress(Exception):
                await self.store.release_claim(
                    sub.id, f"internal: {exc!r}"[:300], self.clock() + wait, self.clock()
                )
            return
        await self.store.mark_notified(sub.id, self.clock())
        self.metrics.telegram_sends.labels(outcome="ok").inc()
        if sub.state is State.COMPLETED:
            if sub.completed_at is not None:
                self.metrics.completion_to_reply.observe(max(0.0, self.clock() - sub.completed_at))
            log.info("results sent", extra=ctx)
            await self._finish_progress(sub)

    async def messages_for(self, sub: Submission) -> list[Outgoing]:
        lang = sub.language
        if sub.state is State.COMPLETED:
            status = BatchStatus.read(sub.results, batch_id=sub.batch_id)
            if not status.products:
                return [Outgoing(render.unreadable_text(lang, sub))]
            photos = len(await self.store.photos(sub.id))
            parts = [
                Outgoing(text)
                for text in render.render_results(lang, sub, status, photos, now=self.clock())
            ]
            total = status.counts()[0]
            if total > self.settings.csv_threshold:
                name = f"resell-scan-{render.short_batch(sub.batch_id)}.csv"
                parts.append(
                    Outgoing(
                        t(lang, "results_csv_caption", count=total),
                        document=(name, render.results_csv(status)),
                    )
                )
            return parts
        if sub.state is State.UNCERTAIN:
            button = InlineKeyboardButton(
                t(lang, "resubmit_button"),
                callback_data=self.callbacks.encode("resub", sub.id, chat_id=sub.chat_id),
            )
            return [
                Outgoing(
                    t(lang, "uncertain", sender=sub.user_name), InlineKeyboardMarkup([[button]])
                )
            ]
        if sub.state is State.EXPIRED:
            minutes = int(self.settings.poll_deadline_seconds // 60) or 1
            return [
                Outgoing(
                    t(
                        lang,
                        "expired",
                        sender=sub.user_name,
                        batch=render.short_batch(sub.batch_id),
                        minutes=minutes,
                    )
                )
            ]
        return [Outgoing(render.problem_text(lang, sub, sub.problem))]

    async def send(self, sub: Submission, out: Outgoing) -> Message:
        """Reply to the original photo message, in its forum topic."""
        reply = ReplyParameters(message_id=sub.message_id, allow_sending_without_reply=True)
        if out.document is not None:
            name, content = out.document
            message = await self.bot.send_document(
                chat_id=sub.chat_id,
                document=content,
                filename=name,
                caption=out.text,
                parse_mode=ParseMode.HTML,
                message_thread_id=sub.thread_id,
                reply_parameters=reply,
            )
        else:
            message = await self.bot.send_message(
                chat_id=sub.chat_id,
                text=out.text,
                parse_mode=ParseMode.HTML,
                message_thread_id=sub.thread_id,
                reply_parameters=reply,
                reply_markup=out.markup,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        return message

    async def _finish_progress(self, sub: Submission) -> None:
        if sub.progress_message_id is None:
            return
        text = t(
            sub.language,
            "analysis_done",
            sender=sub.user_name,
            batch=render.short_batch(sub.batch_id),
        )
        with contextlib.suppress(TelegramError):
            await self.bot.edit_message_text(
                text,
                chat_id=sub.chat_id,
                message_id=sub.progress_message_id,
                parse_mode=ParseMode.HTML,
            )
