"""Paid calls: each one keyed, written down before it is sent, and capped per user decision.

Every createAndAnalyze and analyze may cost the account owner an analysis. The API documents
no idempotency key (resell-scan-api.md §9 #13), so the bot cannot count on a resend being
recognised. The rules (storage/ledger.py keeps the rows):

- A call's `Idempotency-Key` names the call, not the attempt: the submission's key, its
  decision and the call's number. A resend of the same call (after a lookup proved that it took
  no effect) sends the same body with the same key; image URLs carry the call's own expiry, so
  the body stays the same as long as the URLs live (`url_expiry`).
- No decision of the user (a photo sent, "Send again") causes more than MAX_PAID_PER_DECISION
  sends that may have been processed, whatever the API does: the next one raises `CapReached`
  (logged as an error with the submission) and the caller asks the user instead. A send
  refused before processing (429, connection refused, a validation error) is not counted.
- A lookup that finds nothing proves that a call took no effect only where listings are
  known to show our file names (`listing_file_names`, learnt from the bot's own first upload)
  and the listing was read to its end (bot/reconcile.py); otherwise the user is asked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.metrics import Metrics
from bot.resellscan import (
    APIError,
    BatchStarted,
    ConnectionFailed,
    RateLimited,
    ServerError,
)
from bot.resellscan.client import unavailable
from storage import Store, Submission
from storage.ledger import ACCEPTED, NOT_TAKEN, PENDING, REFUSED, UNKNOWN, CallSpec

log = logging.getLogger(__name__)

MAX_PAID_PER_DECISION = 2
RESEND_MARGIN = 120.0  # seconds an image URL must still live for its call to be resent
CREATE = "createAndAnalyze"
ANALYZE = "analyze"

# Facts about the account's API (storage/ledger.py), observed, never assumed.
LISTING_FILE_NAMES = "listing_file_names"
KEY_HONOURED = "idempotency_key_honoured"  # yes: a resend was answered with an earlier batch
YES, NO = "yes", "no"


class CapReached(Exception):
    """The decision had its paid calls: nothing more is sent for it."""

    def __init__(self, sub_id: int, paid: int) -> None:
        super().__init__(f"submission {sub_id}: {paid} paid calls for this decision already")
        self.paid = paid


@dataclass(frozen=True)
class Planned:
    """The call to send next: its key, and when its image URLs expire."""

    key: str
    url_expiry: float
    # Batches that existed before this send for its key (an earlier answer, or a completion
    # webhook kept meanwhile): an answer naming one of them shows the key honoured.
    earlier_batches: frozenset[str] = frozenset()
    answered: bool = False  # one of them is the answer to an earlier send of this key


class PaidCalls:
    def __init__(
        self,
        *,
        store: Store,
        metrics: Metrics,
        url_ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.url_ttl = url_ttl
        self.clock = clock
        self._facts: dict[str, str] = {}

    async def plan(self, sub: Submission, endpoint: str) -> Planned:
        """The next call of the submission to `endpoint`. The last one again (same key, same
        body) while its image URLs live, when it took no proven effect in this decision (a
        lookup proved it absent, or it was refused before processing) or when it belongs to an
        earlier decision ("Send again": a server that honours keys then answers with the first
        call's batch instead of analysing twice); else a new call. Raises CapReached when its
        send could be one paid call too many for this decision."""
        now = self.clock()
        # A submission never sent has no calls: its first upload costs no read.
        fresh = sub.requested_at is None  # stored by begin_submit, never cleared
        calls = [] if fresh else await self.store.paid_calls(sub.id)
        paid = sum(c.sends for c in calls if c.decision == sub.decision)
        same = [c for c in calls if c.endpoint == endpoint]
        last = same[-1] if same else None
        planned = None
        if last is not None:
            born = min(c.created_at for c in same if c.key == last.key)
            alive = born + self.url_ttl - RESEND_MARGIN > now
            unproven = last.outcome in (NOT_TAKEN, REFUSED, PENDING) or (
                # Its answer was lost, but a resend with its key is known to be recognised.
                last.outcome == UNKNOWN and await self.fact(KEY_HONOURED) == YES
            )
            if alive and (unproven or last.decision != sub.decision):
                # A pending one (a crash before its answer) was reconciled before this.
                since = sub.requested_at or sub.created_at
                answers = {c.batch_id for c in same if c.key == last.key and c.batch_id}
                kept = {k.batch_id for k in await self.store.kept_completions(since)}
                planned = Planned(
                    last.key, born + self.url_ttl, frozenset(answers | kept), bool(answers)
                )
        if planned is None:
            number = sum(1 for c in same if c.decision == sub.decision) + 1
            key = f"{sub.idempotency_key}.{sub.decision}.{endpoint}.{number}"
            planned = Planned(key, now + self.url_ttl)
        if paid >= MAX_PAID_PER_DECISION:
            self.metrics.paid_calls.labels(endpoint=endpoint, outcome="capped").inc()
            log.error(
                "paid-call cap reached: %d paid calls for this decision, %s not sent",
                paid,
                endpoint,
                extra={"submission_id": sub.id, "chat_id": sub.chat_id},
            )
            raise CapReached(sub.id, paid)
        return planned

    def call(self, sub: Submission, endpoint: str, planned: Planned) -> CallSpec:
        return CallSpec(sub.decision, endpoint, planned.key)

    async def send(
        self,
        sub: Submission,
        endpoint: str,
        planned: Planned,
        post: Callable[[str], Awaitable[BatchStarted]],
    ) -> BatchStarted:
        """Write the call down (durably), POST it with its key, and record what became of
        it, each in a transaction of its own. (An upload does the first and the last in the
        transactions of its state changes instead: `begin_submit`, `mark_submitted`.)"""
        call = self.call(sub, endpoint, planned)
        await self.store.send_call(sub.id, call, self.clock())
        started = await self.post(sub, call, post)
        replayed = await self.learn_from_answer(sub, planned, started.batch_id)
        await self.store.call_answered(
            sub.id, call, ACCEPTED, self.clock(), batch_id=started.batch_id, processed=not replayed
        )
        return started

    async def post(
        self, sub: Submission, call: CallSpec, post: Callable[[str], Awaitable[BatchStarted]]
    ) -> BatchStarted:
        """POST a call already written down as sent. A failure is recorded here (the
        client's exceptions pass through unchanged); an answer is the caller's to record."""
        try:
            started = await post(call.key)
        except (RateLimited, ConnectionFailed):
            await self._failed(sub, call, REFUSED, processed=False)
            raise
        except APIError as exc:
            if isinstance(exc, ServerError) and not unavailable(exc):
                await self._failed(sub, call, UNKNOWN)
            else:  # 4xx or 503: refused before processing (validation, auth, an outage)
                await self._failed(sub, call, REFUSED, processed=False)
            raise
        except BaseException:
            await self._failed(sub, call, UNKNOWN)
            raise
        self.metrics.paid_calls.labels(endpoint=call.endpoint, outcome=ACCEPTED).inc()
        return started

    async def learn_from_answer(self, sub: Submission, planned: Planned, batch_id: str) -> bool:
        """A resend of a call answered: with a batch that existed before it (the key was
        honoured: observed, from now on a lost answer may be resent with its key), or with a
        new one where the first call's batch is known (ignored). True when honoured: that
        send processed nothing new."""
        honoured = batch_id in planned.earlier_batches
        if not honoured and not planned.answered:
            return False  # a new batch: the first send may never have been processed
        if await self.fact(KEY_HONOURED) != (YES if honoured else NO):
            await self.observe(KEY_HONOURED, YES if honoured else NO)
            log.warning(
                "Idempotency-Key %s: a resend was answered with %s",
                "honoured" if honoured else "ignored",
                "the first call's batch" if honoured else "a new batch",
                extra={"submission_id": sub.id, "chat_id": sub.chat_id},
            )
        return honoured

    async def _failed(
        self, sub: Submission, call: CallSpec, outcome: str, *, processed: bool = True
    ) -> None:
        self.metrics.paid_calls.labels(endpoint=call.endpoint, outcome=outcome).inc()
        await self.store.call_answered(sub.id, call, outcome, self.clock(), processed=processed)

    async def not_taken(self, sub: Submission, endpoint: str) -> None:
        """A lookup proved the last call to `endpoint` took no effect (it may be resent)."""
        calls = [
            c
            for c in await self.store.paid_calls(sub.id)
            if c.endpoint == endpoint and c.decision == sub.decision
        ]
        if calls:  # that send was not processed: it is not a paid call
            last = CallSpec(sub.decision, endpoint, calls[-1].key)
            await self.store.call_answered(sub.id, last, NOT_TAKEN, self.clock(), processed=False)

    async def fact(self, name: str) -> str | None:
        """What the bot has seen (storage/ledger.py); once seen, kept in memory too: every
        upload asks, and only `observe` changes it."""
        if name not in self._facts:
            value = await self.store.fact(name)
            if value is None:
                return None
            self._facts[name] = value
        return self._facts[name]

    async def observe(self, name: str, value: str) -> None:
        await self.store.observe(name, value, self.clock())
        self._facts[name] = value
