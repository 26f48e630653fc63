"""A hypothesis state machine over the real store and tracker.

Steps: photos arrive (singles and album members), Resell Scan finishes batches, webhooks arrive
(duplicated, reordered, late), poll ticks, Telegram sends fail (429, timeout, or the process dies
just before or just after Telegram accepted a message), and the process crashes and restarts.

Invariants (RELIABILITY.md): nothing received is lost; a batch never gets two results replies
except after a crash inside the send window (counted); every completed batch is eventually
notified; createAndAnalyze is never sent twice for one submission unless the user resubmits.

Telegram and Resell Scan are fakes here, at the seams the tracker already has (the tracker's
chat port, and an httpx.MockTransport behind the real client): hundreds of examples with crashes
must run in seconds, deterministically. The end-to-end suites cover the real HTTP paths.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from pydantic import SecretStr

from bot.chat import BoardShown, ChatError, Outgoing, RetryLater, Role
from bot.config import Settings
from bot.intake import Catalog
from bot.media import MediaSigner
from bot.metrics import Metrics
from bot.outbox import Deliverer
from bot.resellscan import ResellScanClient, RetryPolicy
from bot.tracker import Tracker
from storage import CaptionInfo, Database, NewPhoto, State, Store, Submission
from storage.outbox import OutboxRow
from tests.conftest import apply_webhook

COLLECTION = {"id": "col-1", "name": "Electronics"}


class Crash(BaseException):
    """The process dies here (BaseException: nothing in the bot catches it)."""


class FakeResellScan:
    """Just enough of Resell Scan: collections, createAndAnalyze (which may die after creating
    the products), batch status, and what reconciling needs: the product listing with image
    file names and `created_after`, and POST /products/analyze."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.batches: dict[str, dict[str, Any]] = {}
        self.creates: list[str] = []  # idempotency keys, one per createAndAnalyze received
        self.products: dict[str, dict[str, Any]] = {}  # id -> file names, creation time
        self.analyses: list[list[str]] = []  # product ids of each POST /products/analyze
        self.crash_after_create = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1")
        if path == "/collections":
            return httpx.Response(200, json={"data": [COLLECTION]})
        if path.endswith("/manual-fields"):
            return httpx.Response(200, json={"data": []})
        if path.endswith("/products") and request.method == "GET":
            return self.listing(request)
        if path == "/products/analyze" and request.method == "POST":
            ids = json.loads(request.content)["productIds"]
            self.analyses.append(ids)
            batch_id = str(uuid.uuid4())
            self.batches[batch_id] = {"done": False, "products": len(ids)}
            return httpx.Response(201, json={"batchId": batch_id})
        if path == "/products/createAndAnalyze":
            key = request.headers["Idempotency-Key"]
            self.creates.append(key)
            batch_id = str(uuid.uuid4())
            body = json.loads(request.content)
            for product in body["products"]:
                self.products[str(uuid.uuid4())] = {
                    "names": [image["fileName"] for image in product["images"]],
                    "created": self.clock(),
                }
            self.batches[batch_id] = {"done": False, "products": len(body["products"])}
            if self.crash_after_create:
                self.crash_after_create = False
                raise Crash
            return httpx.Response(201, json={"batchId": batch_id})
        if path.startswith("/products/analyze/"):
            batch_id = path.split("/")[3]
            batch = self.batches[batch_id]
            return httpx.Response(
                200,
                json=self.payload(batch_id)
                if batch["done"]
                else {"batchId": batch_id, "status": "processing", "progress": 50},
            )
        return httpx.Response(404, json={"message": "no"})

    def listing(self, request: httpx.Request) -> httpx.Response:
        query = request.url.params
        after = datetime.fromisoformat(query["created_after"].replace("Z", "+00:00")).timestamp()
        search = query.get("search", "")
        items = [
            {"id": pid, "images": [{"fileName": name} for name in p["names"]]}
            for pid, p in self.products.items()
            if p["created"] >= after and any(search in name for name in p["names"])
        ]
        return httpx.Response(200, json={"data": items})

    def payload(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches[batch_id]
        return {
            "batch_id": batch_id,
            "status": "completed",
            "total_products": batch["products"],
            "products": [
                {
                    "product_id": f"{batch_id}-{i}",
                    "status": "completed",
                    "result": {"title": "Thing"},
                    "error": None,
                }
                for i in range(batch["products"])
            ],
        }


class FakeChat:
    """The chat port (bot.chat.Chat, type-checked): records what was sent, fails on demand
    like Telegram (or like a process dying just before or after Telegram took a message)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.reactions: list[tuple[int, int, str]] = []
        self.failure: str | None = None
        self.counter = 0

    async def download(self, file_id: str) -> bytes:
        return b"\xff\xd8\xff" + file_id.encode()

    async def react(self, chat_id: int, message_id: int, emoji: str) -> None:
        self.reactions.append((chat_id, message_id, emoji))

    async def messages_for(self, sub: Submission) -> list[Outgoing]:
        if sub.state is State.COMPLETED:
            return [Outgoing(f"📊 results of {sub.batch_id}", role=Role.RESULTS)]
        return [Outgoing(f"{sub.state.value}: {sub.problem}", role=Role.PROMPT)]

    async def question(self, sub: Submission, payload: dict[str, Any]) -> Outgoing:
        return Outgoing(f"question {payload['question']}", role=Role.PROMPT)

    def analysing(self, sub: Submission, products: int) -> Outgoing:
        return Outgoing(f"⏳ analysing {products}")

    async def send(self, sub: Submission, out: Outgoing) -> int:
        return self._sent(sub.chat_id, out.text, sub.message_id)

    def _sent(self, chat_id: int, text: str, reply_to: int | None) -> int:
        failure, self.failure = self.failure, None
        if failure == "429":
            raise RetryLater(3)
        if failure == "timeout":
            raise ChatError("Timed out")
        if failure == "crash_before":
            raise Crash
        self.counter += 1
        self.sent.append({"chat_id": chat_id, "text": text, "reply_to": reply_to})
        if failure == "crash_after":
            raise Crash
        return self.counter

    async def send_combined(self, subs: list[Submission]) -> tuple[int, int]:
        raise AssertionError("private chats never combine")

    async def edit_progress(self, sub: Submission) -> None:
        return None

    async def refresh_board(self, chat_id: int, thread: int) -> BoardShown:
        return BoardShown()

    async def post(self, row: OutboxRow) -> int | None:
        return self._sent(row.chat_id, str(row.payload.get("text", "")), row.reply_to)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class SubmissionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory()
        self.path = Path(self.tmp.name) / "sm.sqlite3"
        self.clock = Clock()
        self.api = FakeResellScan(self.clock)
        self.telegram = FakeChat()
        self.settings = Settings(
            _env_file=None,
            telegram_bot_token="1:x",
            resell_scan_api_key="k",
            allow_all_users=True,
            public_base_url="https://bot.test",
            album_window_seconds=1,
            album_max_wait_seconds=4,
            poll_initial_seconds=2,
            poll_max_seconds=8,
            poll_budget_per_second=1000,
            poll_deadline_seconds=10_000,
        )
        self.photos_added = 0
        self.next_message = 1
        self.crash_repeats: dict[int, int] = {}  # reply_to -> results repeats caused by crashes
        self.db: Database | None = None
        self.http = httpx.AsyncClient(transport=httpx.MockTransport(self.api.handler))
        self.run(self._boot())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _boot(self) -> None:
        self.db = await Database.open(self.path)
        self.store = Store(self.db)

        async def no_sleep(_: float) -> None:
            return None

        client = ResellScanClient(
            self.http,
            api_key=SecretStr("k"),
            base_url="https://rs.test/api/v1",
            retry=RetryPolicy(sleep=no_sleep, max_attempts=2),
        )
        self.tracker = Tracker(
            settings=self.settings,
            store=self.store,
            client=client,
            catalog=Catalog(client),
            chat=self.telegram,
            metrics=Metrics(),
            media=MediaSigner(b"k" * 32, "https://bot.test", 3600),
            clock=self.clock,
        )
        self.deliverer = Deliverer(
            store=self.store, chat=self.telegram, metrics=Metrics(), clock=self.clock
        )
        await self.store.recover(self.clock(), self.clock() + 1.0)

    async def deliver_all(self) -> None:
        """What the delivery loop does, without Telegram's budget: every chat's due rows,
        in order; a chat paused by a 429 waits."""
        now = self.clock()
        for chat_id in await self.store.outbox_due_chats(now, 10):
            for _ in range(50):  # bounded
                rows = await self.store.outbox_rows(chat_id, now, 16)
                if not rows:
                    break
                done = await self.deliverer.deliver(rows[0])
                if done.pause is not None:
                    await self.store.hold_chat(chat_id, now + done.pause)
                    break

    # Rules ---------------------------------------------------------------------------------

    @rule(album=st.sampled_from([None, "a", "b", "c"]), caption=st.booleans())
    def photo_arrives(self, album: str | None, caption: bool) -> None:
        message_id = self.next_message
        self.next_message += 1
        photo = NewPhoto(
            chat_id=1,
            message_id=message_id,
            user_id=7,
            user_name="U",
            file_id=f"f{message_id}",
            file_unique_id=f"u{message_id}",
            media_group_id=f"{album}-{message_id // 10}" if album else None,
        )
        self.run(
            self.store.add_photo(
                photo,
                caption=CaptionInfo("Electronics", {}) if caption or album is None else None,
                problem=None,
                language="en",
                remove_background=False,
                album_window=1,
                album_max_wait=4,
                now=self.clock(),
            )
        )
        self.photos_added += 1

    @rule(seconds=st.sampled_from([0.5, 1, 3, 10]))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(data=st.data())
    def resell_scan_finishes_a_batch(self, data: st.DataObject) -> None:
        open_ = [b for b, v in self.api.batches.items() if not v["done"]]
        if open_:
            self.api.batches[data.draw(st.sampled_from(open_))]["done"] = True

    @rule(data=st.data(), copies=st.integers(1, 3))
    def webhook_arrives(self, data: st.DataObject, copies: int) -> None:
        done = [b for b, v in self.api.batches.items() if v["done"]]
        if not done:
            return
        batch_id = data.draw(st.sampled_from(done))
        event: dict[str, Any] = {
            "id": f"evt_{batch_id}",
            "event": "analysis.completed",
            "data": self.api.payload(batch_id),
        }
        for _ in range(copies):
            self.run(apply_webhook(self.store, event["id"], batch_id, event, self.clock()))

    @rule(failure=st.sampled_from(["429", "timeout", "crash_before", "crash_after"]))
    def telegram_will_fail(self, failure: str) -> None:
        self.telegram.failure = failure

    @rule()
    def resell_scan_will_die_mid_create(self) -> None:
        self.api.crash_after_create = True

    @rule()
    def tick(self) -> None:
        """The tracker handles everything due now, one by one, as its loop would; then the
        delivery loop sends what is owed."""
        before = len(self.telegram.sent)
        failure = self.telegram.failure
        try:
            for sub in self.run(self.store.due(self.clock(), limit=50)):
                self.run(self.tracker.handle(sub))
            self.run(self.deliver_all())
        except Crash:
            if failure == "crash_after" and len(self.telegram.sent) > before:
                reply_to = self.telegram.sent[-1]["reply_to"]
                self.crash_repeats[reply_to] = self.crash_repeats.get(reply_to, 0) + 1
            self.restart()

    @rule()
    def user_picks_a_collection(self) -> None:
        """What the picker button does (handlers._picked): choose, and the tracker goes on."""
        for sub in self.run(self._all()):
            if sub.state is State.RECEIVED and sub.next_action_at is None:
                self.run(self.store.choose_collection(sub.id, "col-1", "Electronics", self.clock()))

    @rule()
    def crash_and_restart(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.api.crash_after_create = False
        self.telegram.failure = None
        assert self.db is not None
        self.run(self.db.close())
        self.run(self._boot())

    # Invariants ----------------------------------------------------------------------------

    def results_by_reply(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for message in self.telegram.sent:
            if message["text"].startswith("📊"):
                counts[message["reply_to"]] = counts.get(message["reply_to"], 0) + 1
        return counts

    @invariant()
    def nothing_received_is_lost(self) -> None:
        rows = self.run(self._photo_count())
        assert rows == self.photos_added

    async def _photo_count(self) -> int:
        assert self.db is not None
        async with self.db.reading() as tx:
            row = await tx.one("SELECT COUNT(*) FROM photos")
        return int(row[0]) if row else 0

    @invariant()
    def at_most_one_results_reply_per_batch(self) -> None:
        for reply_to, count in self.results_by_reply().items():
            assert count <= 1 + self.crash_repeats.get(reply_to, 0), (reply_to, count)

    @invariant()
    def one_create_per_submission_key(self) -> None:
        assert len(self.api.creates) == len(set(self.api.creates))

    def teardown(self) -> None:
        try:
            # Quiescence: Resell Scan finishes everything, Telegram works, time goes on.
            self.telegram.failure = None
            self.api.crash_after_create = False
            for _ in range(60):  # bounded
                for batch in self.api.batches.values():
                    batch["done"] = True
                self.user_picks_a_collection()
                self.clock.now += 10
                self.tick()
            subs = self.run(self._all())
            for sub in subs:
                if sub.state in (
                    State.RECEIVED,
                    State.SUBMITTING,
                    State.SUBMITTED,
                    State.COMPLETED,
                    State.RECONCILING,
                ):
                    raise AssertionError(f"submission {sub.id} stuck in {sub.state}")
                assert sub.state is not State.UNCERTAIN, "the bot found out by itself"
                if sub.state in (State.NOTIFIED, State.UNCERTAIN, State.REJECTED):
                    assert sub.notified_at is not None or sub.problem is not None
            replies = self.results_by_reply()
            for sub in subs:
                if sub.state is State.NOTIFIED:
                    assert replies.get(sub.message_id, 0) >= 1, "every completed batch notified"
        finally:
            assert self.db is not None
            self.run(self.db.close())
            self.run(self.http.aclose())
            self.loop.close()
            self.tmp.cleanup()

    async def _all(self) -> list[Any]:
        assert self.db is not None
        async with self.db.reading() as tx:
            ids = [r[0] for r in await tx.all("SELECT id FROM submissions")]
        return [await self.store.get(i) for i in ids]


@pytest.mark.timeout(1200)  # the large size (--large) runs 400 examples; CI's 40 take seconds
def test_state_machine(large: bool) -> None:
    run_state_machine_as_test(
        SubmissionMachine,
        settings=settings(
            max_examples=400 if large else 40,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            derandomize=not large,
        ),
    )
