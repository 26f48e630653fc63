"""The tracker: moves every submission from `received` to a state that owes the chat a message.

One loop asks storage what is due (`next_action_at <= now`) and handles each submission by its
state: `received` is resolved, checked and submitted; `submitted` is polled on an adaptive
schedule within a shared request budget; a lost upload is reconciled. Whatever a step owes the
chat (results, a refusal, a question, the "analysing" message, a reaction) is written to the
outbox with the step's own transaction and delivered by the delivery loop: the tracker's slots
wait only for Resell Scan and photo downloads, never for Telegram. Webhooks only store the
completion and wake the loop. After a restart the same loop resumes everything, since all it
needs is in SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot import reconcile
from bot.chat import Chat, PhotoUnavailable, analysing_message_wanted
from bot.config import GroupMode, Settings
from bot.images import is_heic, to_jpeg
from bot.intake import Catalog, coerce_fields, example_caption
from bot.media import MediaSigner
from bot.metrics import Metrics
from bot.outbox import (
    REACTION_SEEN,
    analysing_row,
    products_of,
    progress_row,
    question_row,
    reaction_row,
)
from bot.paid import (
    ANALYZE,
    CREATE,
    KEY_HONOURED,
    LISTING_FILE_NAMES,
    NO,
    YES,
    CapReached,
    PaidCalls,
    Planned,
)
from bot.resellscan import (
    AmbiguousWrite,
    APIError,
    AuthError,
    BatchStarted,
    BatchStatus,
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
    ServerError,
    TransportError,
    ValidationFailed,
    image_from_bytes,
    image_from_url,
)
from bot.resellscan.client import RETRY_OBSERVER, unavailable
from bot.resellscan.models import UNKNOWN
from bot.resellscan.read import shape
from storage import MESSAGE_STATES, Counts, Photo, Problem, State, Store, Submission
from storage.ledger import ACCEPTED, CallSpec
from storage.outbox import Owed

log = logging.getLogger(__name__)

MAX_SUBMIT_ATTEMPTS = 5
PHOTO_FETCH_ATTEMPTS = 6  # failed fetches of a photo from Telegram (2 s … 64 s apart)
WAKE_COALESCE = 0.005  # seconds
INTAKE_FIRST_MAX_SECONDS = 2.0  # the longest new work waits for a burst of updates
UNREACHABLE = "unreachable"  # last_error's prefix while an outage keeps an upload waiting
BUSY = "busy"  # last_error's prefix while Resell Scan's 429s keep an upload waiting
RETRY_DECISION = -1  # the ledger's decision for "🔁 Retry failed" of a submission's results
BACKLOG_LOOKAHEAD = 4  # due submissions read beyond the free slots, to see uploads waiting
UPLOAD_STATES = frozenset({State.RECEIVED, State.SUBMITTING})
MAX_BACKOFF = 300.0
LEARN_RETRY_SECONDS = 3600.0  # after a failed lookup of what listings show
WEBHOOK_CHECK_SECONDS = 10.0  # while a lost upload waits for its webhook: kept events read again
# How long a lookup of an ambiguous upload may keep failing on outages (5xx, network, 429)
# before the user is asked; a refusal (403, 401) asks at once.
LOOKUP_BUDGET_SECONDS = 900.0
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


def ambiguity(exc: ResellScanError) -> dict[str, Any]:
    """What happened to a request whose answer was lost, for the user (truthfully)."""
    cause = exc.cause if isinstance(exc, AmbiguousWrite) and exc.cause is not None else exc
    if isinstance(cause, APIError):
        return {"cause": "server_error", "status": cause.status}
    if isinstance(cause, ProtocolError):
        return {"cause": "unreadable"}
    if "timed out" in str(cause).lower():
        return {"cause": "timeout"}
    return {"cause": "dropped"}


def lookup_problem(exc: ResellScanError) -> dict[str, Any]:
    """Why looking our photos up failed, for the user."""
    if isinstance(exc, PermissionDenied):
        return {"code": "permission", "resource": exc.resource}
    if isinstance(exc, AuthError):
        return {"code": "auth"}
    return {"code": "unreachable", "error": type(exc).__name__}


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


class RetryUsed(Exception):
    """🔁 Retry failed of these results was pressed already."""

    def __init__(self, sub_id: int) -> None:
        super().__init__(f"submission {sub_id}: retried already")


class Tracker:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        client: ResellScanClient,
        catalog: Catalog,
        chat: Chat,
        shows_board: Callable[[int], bool] = lambda chat_id: chat_id < 0,
        metrics: Metrics,
        media: MediaSigner | None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        intake_quiet: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.catalog = catalog
        self.chat = chat  # photo downloads only: what the chat is owed goes to the outbox
        self.shows_board = shows_board  # whether a chat lists open analyses on a live board
        self.metrics = metrics
        self.media = media
        self.clock = clock
        self.rng = rng or random.Random()
        self.intake_quiet = intake_quiet
        self.budget = Budget(settings.poll_budget_per_second)
        self.paid = PaidCalls(
            store=store, metrics=metrics, url_ttl=settings.media_url_ttl_seconds, clock=clock
        )
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._stopping = False
        # Photos due for upload wait for a free slot: optional output yields to them
        # (bot/telegram/delivery.py); polls waiting do not count.
        self.backlog = False
        self._learn_after = 0.0  # when to look up what listings show again, after a failure
        self.on_backlog_cleared: Callable[[], None] | None = None

    # Lifecycle -----------------------------------------------------------------------------

    async def start(self) -> dict[str, int]:
        now = self.clock()
        counts = await self.store.recover(now, now + self.settings.reconcile_settle_seconds)
        if any(counts.values()):
            log.info("resuming open submissions: %s", counts)
        self._stopping = False
        self._loop_task = asyncio.create_task(self._run(), name="tracker")
        return counts

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking work; let in-flight handlers finish their transaction (bounded)."""
        self._stopping = True
        self._set_backlog(False)
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
            await self._let_intake_finish()
            self._wake.clear()
            now = self.clock()
            try:
                room = limit - len(self._inflight)
                # A few more than there is room for: whether photos wait for a slot.
                due = await self.store.due(
                    now, limit=room + BACKLOG_LOOKAHEAD, exclude=list(self._inflight)
                )
                self._set_backlog(any(sub.state in UPLOAD_STATES for sub in due[room:]))
                for sub in due[:room]:
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
            # asyncio.timeout, not wait_for: in 3.11 wait_for loses a cancel that comes as
            # the event is set (stop() right after a wake), and the loop would run on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.001, timeout)):
                    await self._wake.wait()
            # A burst of photos wakes the loop once per photo: gather them for a moment so the
            # due query runs once per burst, not once per photo, and intake keeps the database.
            await asyncio.sleep(WAKE_COALESCE)

    def _set_backlog(self, waiting: bool) -> None:
        cleared = self.backlog and not waiting
        self.backlog = waiting
        if cleared and self.on_backlog_cleared is not None:
            self.on_backlog_cleared()

    async def _let_intake_finish(self) -> None:
        """Intake first: while a burst of updates is being fetched, stored and handled, new
        work waits (at most INTAKE_FIRST_MAX_SECONDS), so photos reach their submissions at the
        pace of Telegram and the database, not behind uploads; work in flight goes on."""
        if self.intake_quiet is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(INTAKE_FIRST_MAX_SECONDS):
                    await self.intake_quiet()

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
        elif sub.state is State.RECONCILING:
            await self.reconcile(sub)
        elif sub.state in MESSAGE_STATES:
            # Its message was owed (an outbox row) by the transition into this state.
            await self.store.defer(sub.id, None)
        else:  # submitting is only due after a crash, and recover() already moved it
            await self.store.defer(sub.id, None)

    # Received: resolve, check, submit ------------------------------------------------------

    async def process(
        self, sub: Submission, *, first: bool = True, photos: list[Photo] | None = None
    ) -> None:
        """Resolve, check and submit a received submission; `first`: not a continuation
        after its collection was chosen here (the board and duplicate guard ran already, and
        `photos` were read)."""
        now = self.clock()
        ctx = {"submission_id": sub.id, "chat_id": sub.chat_id}
        if sub.collecting:
            # A /batch at its deadline: close it before reading its photos, so a photo that
            # comes now starts the next batch instead of joining one that is being sent.
            await self.store.stop_collecting(sub.id, now)
        if photos is None:
            photos = await self.store.photos(sub.id)
        if first:
            await self.board_changed(sub)
            if await self._held_as_duplicate(sub):
                return None
        if not sub.collection_id:
            ref = sub.collection_ref
            if not ref:
                chat = await self.store.chat(sub.chat_id)
                if chat.default_collection_id:
                    name = chat.default_collection_name or chat.default_collection_id
                    return await self._chosen(sub, photos, chat.default_collection_id, name)
                return await self.ask_collection(sub, photos, None)
            try:
                resolution = await self.catalog.resolve(ref)
            except ResellScanError as exc:
                return await self._api_trouble(sub, exc)
            if resolution.match is not None:
                match = resolution.match
                return await self._chosen(sub, photos, match.id, match.name)
            if resolution.candidates:
                return await self.ask_collection(sub, photos, resolution.candidates, ref=ref)
            await self.store.reject(sub.id, Problem("unknown_collection", {"ref": ref}), now)
            return None
        assert sub.collection_id is not None
        groups = products_of(photos)
        biggest = max((len(g) for g in groups), default=0)
        if biggest > self.settings.max_photos_per_product or not groups:
            problem = Problem(
                "too_many_photos",
                {"limit": self.settings.max_photos_per_product, "count": biggest},
            )
            await self.store.reject(sub.id, problem, now)
            return None
        try:
            definitions = await self.catalog.fields(sub.collection_id)
        except ResellScanError as exc:
            return await self._api_trouble(sub, exc)
        values, problems = coerce_fields(sub.manual_fields, definitions, self.settings.max_price)
        if problems:
            name = sub.collection_name or sub.collection_id
            example = example_caption(name, definitions, values, sub.language)
            problem = Problem(
                "fields",
                {"problems": [dataclasses.asdict(p) for p in problems], "example": example},
            )
            if not sub.manual_fields and all(p.code == "missing" for p in problems):
                # No caption fields at all (a plain photo into a collection that requires
                # some): ask, and keep the photos until answered or cancelled.
                return await self._ask_fields(sub, [p.key for p in problems], example)
            await self.store.reject(sub.id, problem, now)
            log.info("fields rejected: %s", [p.code for p in problems], extra=ctx)
            return None
        if len(groups) > self.settings.max_products_per_batch:
            problem = Problem(
                "too_many_products",
                {"limit": self.settings.max_products_per_batch, "count": len(groups)},
            )
            await self.store.reject(sub.id, problem, now)
            return None
        try:
            planned = await self.paid.plan(sub, CREATE)
        except CapReached:
            return await self._ask(sub, capped=True)
        try:
            names = reconcile.file_names(sub, groups)
            expires = int(planned.url_expiry)
            products = [
                NewProduct(await self._images(sub, group, group_names, expires), values)
                for group, group_names in zip(groups, names, strict=True)
            ]
        except PhotoUnavailable as exc:
            # Counted where it happens (not only when an upload starts), with a growing pause:
            # after PHOTO_FETCH_ATTEMPTS the user is told to send the photos again.
            if exc.final or sub.photo_failures + 1 >= PHOTO_FETCH_ATTEMPTS:
                await self.store.reject(sub.id, Problem(exc.reason), now)
                log.warning("photo unavailable, gave up: %s", exc, extra=ctx)
                return None
            retry_at = now + max(self._backoff(sub.photo_failures), exc.retry_after)
            failures = await self.store.photo_failed(sub.id, retry_at, str(exc)[:300])
            log.info("photo fetch failed (%d so far): %s", failures, exc, extra=ctx)
            return None
        except Exception:
            # A request we cannot build will not build on the next try either: say so, once.
            log.exception("building the request failed", extra=ctx)
            await self.store.reject(sub.id, Problem("request_invalid"), now)
            return None
        await self.submit(sub, products, planned)
        return None

    async def _chosen(
        self, sub: Submission, photos: list[Photo], collection_id: str, name: str
    ) -> None:
        """The collection is known: store it and go on with the photos read (nothing else of
        the submission changed; if it moved on meanwhile, the choice changes nothing)."""
        if await self.store.choose_collection(sub.id, collection_id, name, self.clock()):
            chosen = dataclasses.replace(
                sub, collection_id=collection_id, collection_name=name, collecting=False
            )
            await self.process(chosen, first=False, photos=photos)

    async def _images(
        self, sub: Submission, photos: list[Photo], names: list[str], expires: int
    ) -> list[dict[str, Any]]:
        """The image entries of one product. Each `fileName` is unique to the submission
        (reconcile.upload_file_name), so an ambiguous upload can be looked up later; image
        URLs live until the call's own expiry, so a resend of the call is the same body."""
        images = []
        for photo, name in zip(photos, names, strict=True):
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

    async def photo_bytes(self, photo: Photo) -> tuple[bytes, str]:
        """The bytes and type Resell Scan gets for a photo: HEIC/HEIF becomes JPEG."""
        data = await self.chat.download(photo.file_id)
        if is_heic(photo.mime_type, photo.file_name):
            return await asyncio.to_thread(to_jpeg, data), "image/jpeg"
        return data, photo.mime_type or "image/jpeg"

    async def submit(self, sub: Submission, products: list[NewProduct], planned: Planned) -> None:
        ctx: dict[str, Any] = {"submission_id": sub.id, "chat_id": sub.chat_id}
        now = self.clock()
        call = self.paid.call(sub, CREATE, planned)
        if not await self.store.begin_submit(sub.id, now, owed=await self._seen(sub), call=call):
            return
        collection_id = sub.collection_id
        assert collection_id is not None
        try:
            started = await self._post_upload(sub, call, collection_id, products)
        except (RateLimited, ConnectionFailed, ServerError) as exc:
            if isinstance(exc, ServerError) and not unavailable(exc):
                # May have been processed (the client wraps these as AmbiguousWrite).
                return await self._reconcile_later(sub, exc)
            await self._wait_for_resell_scan(sub, exc, now)
            return None
        except InvalidRequest as exc:
            log.error("request not buildable: %s", exc, extra=ctx)
            await self.store.reject(sub.id, Problem("request_invalid"), self.clock())
            return None
        except (AmbiguousWrite, ProtocolError, TransportError) as exc:
            return await self._reconcile_later(sub, exc)
        except APIError as exc:
            if await self._photos_withheld(sub):
                return None
            await self.store.reject(sub.id, self._api_problem(exc), self.clock())
            log.info("submission rejected by Resell Scan: %s", exc, extra=ctx)
            return None
        ctx["batch_id"] = started.batch_id
        if await self.paid.learn_from_answer(sub, planned, started.batch_id):
            # Answered with a batch that existed before: nothing was processed anew.
            await self.store.call_answered(
                sub.id, call, ACCEPTED, self.clock(), batch_id=started.batch_id, processed=False
            )
        await self.store.mark_submitted(
            sub.id,
            started.batch_id,
            self.clock() + poll_delay(0, self.settings),
            self.clock(),
            owed=await self._analysing(sub, len(products)),
            call=call,
        )
        log.info("submitted", extra=ctx)
        await self.board_changed(sub)
        await self._learn_listings(sub, collection_id, products)
        return None

    async def _post_upload(
        self, sub: Submission, call: CallSpec, collection_id: str, products: list[NewProduct]
    ) -> BatchStarted:
        """The createAndAnalyze call. While the client waits out a 429 to send it again,
        /status says the upload waits for a busy Resell Scan (not "sending")."""

        async def waiting(exc: ResellScanError, _wait: float) -> None:
            if isinstance(exc, RateLimited):
                await self.store.note_waiting(sub.id, f"{BUSY}: {exc}"[:300])

        observing = RETRY_OBSERVER.set(waiting)
        try:
            return await self.paid.post(
                sub,
                call,
                lambda key: self.client.create_and_analyze(
                    collection_id, products, idempotency_key=key
                ),
            )
        finally:
            RETRY_OBSERVER.reset(observing)

    async def _photos_withheld(self, sub: Submission) -> bool:
        """With image URLs, Resell Scan fetches the photos from the /media route while the
        upload waits for its answer, and a fetch Telegram would not serve is counted there
        (bot/web.py). An upload refused (4xx) after such a fetch was refused for want of our
        photos: like a failed fetch in base64 mode it goes again after a growing pause, and
        after PHOTO_FETCH_ATTEMPTS uploads the user is told to send the photos again. A
        refusal is no paid call (bot/paid.py); the resend carries the same key and body."""
        fresh = await self.store.get(sub.id)
        if fresh is None or fresh.photo_failures <= sub.photo_failures:
            return False  # refused for something else
        now = self.clock()
        ctx = {"submission_id": sub.id, "chat_id": sub.chat_id}
        if fresh.attempts >= PHOTO_FETCH_ATTEMPTS:
            await self.store.reject(sub.id, Problem("photo_unavailable"), now)
            log.warning("Resell Scan could not fetch a photo, gave up", extra=ctx)
            return True
        error = fresh.last_error or "photo fetch failed"
        await self.store.submit_retry(sub.id, error, now + self._backoff(fresh.attempts - 1), now)
        log.info("Resell Scan could not fetch a photo (upload %d)", fresh.attempts, extra=ctx)
        return True

    async def _learn_listings(
        self, sub: Submission, collection_id: str, products: list[NewProduct]
    ) -> None:
        """Until the bot has seen whether product listings show our file names, look this
        upload's products up once (free GETs): a lookup that finds nothing proves nothing
        until that is known (reconcile)."""
        if await self.paid.fact(LISTING_FILE_NAMES) is not None:
            return
        if self.clock() < self._learn_after:  # the last lookup failed: not on every upload
            return
        names = [[str(image.get("fileName")) for image in p.images] for p in products]
        try:
            found = await reconcile.find_products(
                self.client,
                collection_id,
                names,
                reconcile.file_name_prefix(sub),
                (sub.requested_at or self.clock()) - self.settings.reconcile_margin_seconds,
            )
        except ResellScanError as exc:
            log.info("could not look the upload up (%s); in an hour, then", exc)
            self._learn_after = self.clock() + LEARN_RETRY_SECONDS
            return
        if found.product_ids:
            await self.paid.observe(LISTING_FILE_NAMES, YES)
        elif found.listed and not found.named:
            await self.paid.observe(LISTING_FILE_NAMES, NO)
            log.warning(
                "product listings show no image file names: an upload whose answer is lost"
                " cannot be proven absent, so its user is asked instead of paying twice"
            )

    async def _reconcile_later(self, sub: Submission, exc: ResellScanError) -> None:
        """The upload may have been processed: never resend blindly (no documented
        idempotency); look our file names up after a settle delay instead (reconcile())."""
        cause = ambiguity(exc)
        await self.store.mark_reconciling(
            sub.id,
            str(exc)[:300],
            self.clock() + self.settings.reconcile_settle_seconds,
            self.clock(),
            cause=Problem("ambiguous", cause),
        )
        log.warning(
            "answer lost (%s): reconciling",
            cause["cause"],
            extra={"submission_id": sub.id, "chat_id": sub.chat_id},
        )

    async def _wait_for_resell_scan(
        self, sub: Submission, exc: RateLimited | ConnectionFailed | ServerError, now: float
    ) -> None:
        """Resell Scan refused the upload before processing it (429), or cannot be reached
        (connection refused, 503): the photos wait and go out when it answers, within
        RATE_LIMIT_DEADLINE_SECONDS; the chat is told once that an outage keeps them
        (/status shows them waiting). Past the deadline: failed, with a Send again button."""
        ctx = {"submission_id": sub.id, "chat_id": sub.chat_id}
        refused = isinstance(exc, RateLimited)
        deadline = self.settings.rate_limit_deadline_seconds
        since = sub.rate_limited_since or now
        if self.clock() - since > deadline:
            hours = max(1, round(deadline / 3600))
            code = "api_rate_limited" if refused else "api_outage"
            await self.store.fail(sub.id, Problem(code, {"hours": hours}), now)
            log.warning("gave up after %d hour(s) of %s", hours, code, extra=ctx)
            return
        if isinstance(exc, RateLimited) and exc.retry_after:
            wait = exc.retry_after
        else:  # the longer it lasts, the less often it is tried (2 s up to MAX_BACKOFF)
            wait = self.rng.uniform(0.5, 1.0) * min(MAX_BACKOFF, max(4.0, (now - since) / 4))
        owed: list[Owed] = []
        if not refused and sub.rate_limited_since is None:  # say it once (per chat)
            owed.append(question_row(sub, "unreachable"))
        cause = BUSY if refused else UNREACHABLE
        await self.store.submit_retry(
            sub.id,
            f"{cause}: {exc}"[:300],
            self.clock() + wait,
            self.clock(),
            rate_limited=True,
            once_per_chat=owed,
        )
        log.warning("Resell Scan %s: the upload waits %.0fs", cause, wait, extra=ctx)

    async def _analysing(self, sub: Submission, products: int) -> list[Owed]:
        """The per-album "analysing" message, owed with the batch: the chat's setting
        (default: on in private chats, off in groups, where 20 messages a minute is the
        limit), and always where reactions cannot stand in for it. Delivery drops it if the
        results are owed first."""
        if sub.progress_message_id is not None or self.shows_board(sub.chat_id):
            return []  # a group's live board lists it instead
        chat = await self.store.chat(sub.chat_id)
        in_groups = self.settings.group_mode is GroupMode.PER_ALBUM
        refused = chat.reactions_refused(self.clock())
        if analysing_message_wanted(chat, in_groups=in_groups) or refused:
            return [analysing_row(sub, products)]
        return []

    async def board_changed(self, sub: Submission) -> None:
        """Something the chat's live board shows changed: refresh it (rendered when
        delivered, when the board's budget allows: bot/telegram/board.py)."""
        if self.shows_board(sub.chat_id) or sub.chat_id > 0:
            await self.store.owe_board(sub.chat_id, sub.thread_id, self.clock())

    async def _seen(self, sub: Submission) -> list[Owed]:
        """👀 on the submission's first photo as it is sent (👌, 👎 or 🤔 follow with its
        message): optional output, owed with the upload; where Telegram refuses reactions,
        delivery remembers the chat as one without them."""
        if sub.reaction == REACTION_SEEN:
            return []
        if (await self.store.chat(sub.chat_id)).reactions_refused(self.clock()):
            return []
        return [reaction_row(sub, REACTION_SEEN)]

    # Reconciling: an answer was lost --------------------------------------------------------

    async def reconcile(self, sub: Submission) -> None:
        """Find out whether the lost createAndAnalyze took effect (see bot/reconcile.py)."""
        now = self.clock()
        ctx = {"submission_id": sub.id, "chat_id": sub.chat_id}
        assert sub.collection_id is not None
        if sub.product_ids:  # found earlier; the webhook we waited for did not come
            return await self._analyze_found(sub)
        if await self._kept_completion(sub, now):
            return None
        until = sub.reconcile_until
        if until is not None and now < until:  # not found, no proof: waiting for its webhook
            await self.store.defer(sub.id, min(until, now + WEBHOOK_CHECK_SECONDS))
            return None
        groups = products_of(await self.store.photos(sub.id))
        settings = self.settings
        try:
            found = await reconcile.find_products(
                self.client,
                sub.collection_id,
                reconcile.file_names(sub, groups),
                reconcile.file_name_prefix(sub),
                (sub.requested_at or sub.created_at) - settings.reconcile_margin_seconds,
            )
        except ResellScanError as exc:
            since = sub.requested_at or sub.created_at
            transient = isinstance(exc, TransportError | RateLimited | ServerError)
            if transient and now - since < LOOKUP_BUDGET_SECONDS:
                log.info("reconcile lookup failed (%s); trying again", exc, extra=ctx)
                wait = exc.retry_after if isinstance(exc, RateLimited) else None
                await self.store.defer(sub.id, now + (wait or self._backoff(2)), str(exc)[:300])
                return None
            log.warning("reconcile lookup failed: %s", exc, extra=ctx)
            return await self._ask(sub, lookup=lookup_problem(exc))
        if not found.product_ids:
            listings = await self.paid.fact(LISTING_FILE_NAMES)
            if listings is None and found.named:  # our earlier products show their names
                await self.paid.observe(LISTING_FILE_NAMES, YES)
                listings = YES
            if not (found.complete and listings == YES):
                return await self._no_proof(sub, found.complete, listings, now)
            if sub.reconcile_checks < 1:  # Resell Scan may still be creating them
                await self.store.reconcile_again(
                    sub.id, now + settings.reconcile_settle_seconds, now
                )
                return None
            if sub.attempts >= MAX_SUBMIT_ATTEMPTS:
                problem = Problem("api_unreachable", {"attempts": sub.attempts})
                await self.store.fail(sub.id, problem, now)
                return None
            log.info("not created (proven): sending again (same key)", extra=ctx)
            await self.paid.not_taken(sub, CREATE)
            await self.store.reconcile_resend(sub.id, now)
            self.wake()
            return None
        await self.paid.observe(LISTING_FILE_NAMES, YES)
        log.info(
            "found %d of %d products: the upload took effect",
            len(found.product_ids),
            found.products_expected,
            extra=ctx,
        )
        wait = settings.reconcile_webhook_wait_seconds if settings.webhooks_enabled else 0.0
        outcome = await self.store.reconcile_found(
            sub.id, found.product_ids, now + wait if wait > 0 else None, now
        )
        if outcome is not None:  # its completion webhook had come already
            return None
        if wait <= 0:
            fresh = await self.store.get(sub.id)
            if fresh is not None and fresh.state is State.RECONCILING:
                return await self._analyze_found(fresh)
        return None

    async def _no_proof(
        self, sub: Submission, complete: bool, listings: str | None, now: float
    ) -> None:
        """Not found, but the absence proves nothing (the listing was cut off, or listings
        are not known to show file names): never pay twice on a guess. Where Resell Scan has
        been seen to honour `Idempotency-Key`, the same call is sent again (it cannot be
        processed twice); where webhooks come, wait for the completion for a while
        (RECONCILE_WEBHOOK_WAIT_SECONDS; reconcile() recognises it by our file names); then
        ask the user, with what was found."""
        ctx = {"submission_id": sub.id, "chat_id": sub.chat_id}
        why = "read to its end" if complete else "cut off"
        if await self.paid.fact(KEY_HONOURED) == YES:
            log.info(
                "not found, no proof (listing %s); keys are honoured: resending", why, extra=ctx
            )
            await self.store.reconcile_resend(sub.id, now)
            self.wake()
            return None
        wait = self.settings.reconcile_webhook_wait_seconds if self.settings.webhooks_enabled else 0
        if wait > 0 and sub.reconcile_until is None:
            log.info("not found, no proof (listing %s): waiting for its webhook", why, extra=ctx)
            await self.store.reconcile_found(sub.id, [], now + wait, now)
            await self.store.defer(sub.id, now + min(wait, WEBHOOK_CHECK_SECONDS))
            return None
        log.info(
            "not found, but no proof (listing %s, file names in listings: %s): asking",
            why,
            listings or "not seen yet",
            extra=ctx,
        )
        lookup: dict[str, Any] = {"code": "no_proof_names" if complete else "no_proof_cut"}
        if sub.reconcile_until is not None:  # waited for its webhook: what came instead
            since = sub.requested_at or sub.created_at
            kept = await self.store.kept_completions(since)
            lookup["waited"] = round(wait)
            lookup["unmatched"] = len(kept)
        return await self._ask(sub, lookup=lookup)

    async def _kept_completion(self, sub: Submission, now: float) -> bool:
        """A completion webhook kept for a batch we never got the id of, whose products
        carry this submission's image file names (where the payload shows them): ours.
        Adopt it. Only a positive match counts; a batch of the right size is no proof."""
        prefix = reconcile.file_name_prefix(sub)
        for kept in await self.store.kept_completions(sub.requested_at or sub.created_at):
            if prefix in kept.results and await self.store.attach_event(sub.id, kept.event_id, now):
                log.info(
                    "its completion webhook came (batch %s): attached",
                    kept.batch_id,
                    extra={"submission_id": sub.id, "chat_id": sub.chat_id},
                )
                return True
        return False

    async def _analyze_found(self, sub: Submission) -> None:
        """The products exist, but no batch id reached us: analyse exactly those products
        (POST /products/analyze), never create them again. This may analyse them a second
        time when the first analysis was in fact running (README: RECONCILE_ANALYZE)."""
        now = self.clock()
        ctx = {"submission_id": sub.id, "chat_id": sub.chat_id}
        assert sub.collection_id is not None
        if not self.settings.reconcile_analyze:
            return await self._ask(sub, found=len(sub.product_ids))
        collection_id, product_ids = sub.collection_id, sub.product_ids
        try:
            planned = await self.paid.plan(sub, ANALYZE)
            started = await self.paid.send(
                sub,
                ANALYZE,
                planned,
                lambda key: self.client.analyze_products(
                    collection_id, product_ids, idempotency_key=key
                ),
            )
        except CapReached:
            return await self._ask(sub, found=len(sub.product_ids), capped=True)
        except (ConnectionFailed, RateLimited) as exc:
            wait = exc.retry_after if isinstance(exc, RateLimited) else None
            await self.store.defer(sub.id, now + (wait or self._backoff(1)), str(exc)[:300])
            return None
        except (AmbiguousWrite, ProtocolError, TransportError) as exc:
            # It may be running: a second analyze would be paid again on a guess. Wait for its
            # webhook where there is one (reconcile_until), then ask; never POST it again.
            log.warning("analyze answer lost: %s", exc, extra=ctx)
            return await self._ask(sub, found=len(sub.product_ids), lookup=None)
        except ResellScanError as exc:
            return await self._ask(sub, found=len(sub.product_ids), lookup=lookup_problem(exc))
        await self.store.attach_batch(
            sub.id,
            started.batch_id,
            now + poll_delay(0, self.settings),
            now,
            owed=await self._analysing(sub, len(sub.product_ids)),
        )
        log.info("analysing the found products", extra={**ctx, "batch_id": started.batch_id})
        await self.board_changed(sub)
        return None

    async def retry_failed(self, sub: Submission, failed: list[str]) -> BatchStarted:
        """🔁 Retry failed: analyse exactly the failed products (POST /products/analyze), as a
        decision of its own whose paid calls are capped like any other. The button is used
        up before the call goes out: a press whose answer was lost is not pressed again (its
        analysis may be running); one refused before processing (429, 503, no connection, a
        validation error) gives the button back. Raises RetryUsed, CapReached, or the
        client's errors."""
        collection_id = sub.collection_id
        assert collection_id is not None
        retry = dataclasses.replace(sub, decision=RETRY_DECISION)
        planned = await self.paid.plan(retry, ANALYZE)
        if not await self.store.claim_retry(sub.id, self.clock()):
            raise RetryUsed(sub.id)
        try:
            return await self.paid.send(
                retry,
                ANALYZE,
                planned,
                lambda key: self.client.analyze_products(
                    collection_id, failed, idempotency_key=key
                ),
            )
        except (RateLimited, ConnectionFailed, APIError) as exc:
            if not isinstance(exc, ServerError) or unavailable(exc):
                await self.store.release_retry(sub.id)  # not processed: not a decision used
            raise

    async def _ask(
        self,
        sub: Submission,
        *,
        lookup: dict[str, Any] | None = None,
        found: int = 0,
        capped: bool = False,
    ) -> None:
        """The bot cannot find out (or may not pay again): the user decides, told what was
        and was not found."""
        params: dict[str, Any] = dict(sub.problem.params) if sub.problem else {}
        params.setdefault("cause", "interrupted")
        params.update(found=found, lookup=lookup or {})
        if capped:
            params["lookup"] = {"code": "capped"}
        await self.store.ask_user(sub.id, Problem("uncertain_ask", params), self.clock())

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
            return
        await self.store.defer(sub.id, now + self._backoff(sub.attempts + 1), str(exc)[:300])

    def _backoff(self, attempt: int) -> float:
        ceiling = min(MAX_BACKOFF, 2.0 * 2 ** max(0, attempt))
        return self.rng.uniform(ceiling / 2, ceiling)

    async def ask_collection(
        self, sub: Submission, photos: list[Photo], candidates: list[Any] | None, *, ref: str = ""
    ) -> None:
        if not candidates:
            try:  # the picker lists them when delivered (cached): fail here, not there
                await self.catalog.collections()
            except ResellScanError as exc:
                return await self._api_trouble(sub, exc)
        question = question_row(
            sub,
            "collection",
            photos=len(photos),
            ref=ref,
            candidates=[{"id": c.id, "name": c.name} for c in candidates or []],
        )
        await self.store.await_choice(sub.id, self.clock(), owed=[question])
        return None

    async def _held_as_duplicate(self, sub: Submission) -> bool:
        """The duplicate guard: photos this chat had analysed already are not sent again
        silently; the user chooses (show those results, or analyse again)."""
        if sub.guard_passed or sub.retry_of is not None:
            return False
        chat = await self.store.chat(sub.chat_id)
        if not chat.duplicate_guard:
            return False
        earlier = await self.store.previous_analysis(sub)
        if earlier is None:
            return False
        question = question_row(sub, "duplicate", earlier=earlier.id)
        await self.store.hold_duplicate(sub.id, earlier.id, self.clock(), owed=[question])
        log.info("held as a duplicate of %d", earlier.id, extra={"submission_id": sub.id})
        return True

    async def _ask_fields(self, sub: Submission, missing: list[str], example: str) -> None:
        await self.store.await_fields(
            sub.id,
            Problem("fields_wanted", {"missing": missing}),
            self.clock(),
            owed=[question_row(sub, "fields", missing=missing, example=example)],
        )

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
        await self.board_changed(sub)

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
        await self.store.owe(progress_row(sub), now=now)
        await self.store.note_progress_shown(sub.id, float(int(percent)), now)
