"""Resell Scan's webhook events: each kept as it came, each applied at most once.

An event is stored with its raw body, the part of it that describes the batch (`results`) and
the counts the caller read from it (`summary`, a `Counts`); storage parses none of them. Its
unique event id makes a redelivered event a no-op. When its batch is known, the event
completes that submission in the transaction that stores it. When it is not (yet), the event
waits, unapplied, for one of two submissions:
- the one that stores the batch id later (`apply_early`, from `mark_submitted`): the webhook
  overtook the answer to createAndAnalyze;
- the one that finds the event's products while reconciling a lost answer
  (`attach_by_products`, from `reconcile_found`, or at once in `apply_webhook` if it already
  found them): it adopts the batch id and completes.
Applied events, and unapplied ones for batches that are not ours (started from the dashboard
on the same account), are pruned after a while.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage.db import Database, Tx
from storage.models import Counts, State
from storage.transitions import complete, move


@dataclass(frozen=True)
class WebhookOutcome:
    # "applied", "attached" (to a reconciling submission), "duplicate", "unknown_batch",
    # "already_done"
    kind: str
    submission_id: int | None = None


@dataclass(frozen=True)
class KeptCompletion:
    """A completion kept for a batch no submission has (yet)."""

    event_id: str
    batch_id: str
    results: str  # the batch part of the payload, as JSON text (the caller reads it)
    received_at: float


class Webhooks:
    """The `webhook_events` table; see the module doc."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def apply_webhook(
        self,
        event_id: str,
        event: str,
        batch_id: str | None,
        raw: str,
        *,
        results: Any,
        counts: Counts,
        now: float,
        product_ids: Sequence[str] = (),
    ) -> WebhookOutcome:
        """Store the event (its raw body, whatever its shape) and apply its completion in one
        transaction.

        A duplicate id changes nothing. An event for a batch we do not know yet is kept and
        applied when `mark_submitted` stores that batch id; `results` is the part of the body
        that describes the batch, `counts` what the caller read from it."""
        results_text = json.dumps(results)
        async with self.db.transaction() as tx:
            inserted = await tx.execute(
                "INSERT INTO webhook_events (event_id, event, batch_id, payload, received_at,"
                " results, summary, product_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (event_id) DO NOTHING",
                (
                    event_id,
                    event,
                    batch_id,
                    raw,
                    now,
                    results_text,
                    counts.dumps(),
                    json.dumps(list(product_ids)) if product_ids else None,
                ),
            )
            if not inserted:
                return WebhookOutcome("duplicate")
            if batch_id is None:
                return WebhookOutcome("unknown_batch")
            row = await tx.one("SELECT id FROM submissions WHERE batch_id = ?", (batch_id,))
            if row is None and product_ids:
                # A batch we never got the id of: ours if it carries the products we found
                # while reconciling an ambiguous upload.
                wanted = set(product_ids)
                for candidate in await tx.all(
                    "SELECT id, product_ids FROM submissions WHERE state = ?"
                    " AND product_ids IS NOT NULL",
                    (State.RECONCILING.value,),
                ):
                    if wanted & set(json.loads(candidate["product_ids"])):
                        return await _attach(
                            tx, candidate["id"], event_id, batch_id, results_text, counts, now
                        )
            if row is None:
                return WebhookOutcome("unknown_batch")
            await _mark_applied(tx, event_id)
            won = await complete(tx, row["id"], counts, results_text, "webhook", now)
            return WebhookOutcome("applied" if won else "already_done", row["id"])

    async def prune(self, *, events_before: float, unknown_before: float) -> dict[str, int]:
        """Forget applied webhook events, and events for batches we never knew (started from
        the dashboard on the same account), older than the given times."""
        async with self.db.transaction() as tx:
            events = await tx.execute(
                "DELETE FROM webhook_events WHERE received_at < ? AND applied = 1",
                (events_before,),
            )
            unknown = await tx.execute(
                "DELETE FROM webhook_events WHERE received_at < ? AND applied = 0",
                (unknown_before,),
            )
        return {"events": events, "unknown_events": unknown}

    async def kept_completions(self, since: float) -> list[KeptCompletion]:
        """Completions for batches no submission has, received since `since`, oldest first:
        a reconciling submission may find its own among them (bot/tracker.py)."""
        async with self.db.reading() as tx:
            rows = await tx.all(
                "SELECT event_id, batch_id, results, received_at FROM webhook_events"
                " WHERE applied = 0 AND batch_id IS NOT NULL AND received_at >= ?"
                " ORDER BY received_at",
                (since,),
            )
        return [
            KeptCompletion(r["event_id"], r["batch_id"], r["results"], r["received_at"])
            for r in rows
        ]

    async def attach_event(self, sub_id: int, event_id: str, now: float) -> bool:
        """The reconciling `sub_id` recognised the kept completion `event_id` as its own:
        adopt its batch and apply it. False when either moved on meanwhile."""
        async with self.db.transaction() as tx:
            row = await tx.one(
                "SELECT batch_id, results, summary FROM webhook_events"
                " WHERE event_id = ? AND applied = 0",
                (event_id,),
            )
            sub = await tx.one("SELECT state FROM submissions WHERE id = ?", (sub_id,))
            if row is None or sub is None or sub["state"] != State.RECONCILING.value:
                return False
            outcome = await _attach(
                tx,
                sub_id,
                event_id,
                row["batch_id"],
                row["results"],
                Counts.loads(row["summary"]),
                now,
            )
        return outcome.kind == "attached"

    async def unknown_events(self) -> int:
        """Webhook events kept for batches no submission has (yet)."""
        async with self.db.reading() as tx:
            row = await tx.one("SELECT COUNT(*) FROM webhook_events WHERE applied = 0")
        return int(row[0]) if row else 0


async def apply_early(tx: Tx, sub_id: int, batch_id: str, now: float) -> bool:
    """`sub_id` has just stored `batch_id`: apply the first completion for that batch that
    came before, if any, in the caller's transaction. True when that completed it."""
    early = await tx.one(
        "SELECT event_id, results, summary FROM webhook_events"
        " WHERE batch_id = ? AND applied = 0 ORDER BY received_at LIMIT 1",
        (batch_id,),
    )
    if early is None:
        return False
    done = await complete(
        tx, sub_id, Counts.loads(early["summary"]), early["results"], "webhook", now
    )
    await _mark_applied(tx, early["event_id"])
    return done


async def attach_by_products(
    tx: Tx, sub_id: int, product_ids: Sequence[str], now: float
) -> WebhookOutcome | None:
    """The reconciling `sub_id` found its photos as `product_ids`: if a completion for any
    of them came under a batch id we never got, adopt that batch and apply the completion,
    in the caller's transaction. None when no such event is kept."""
    rows = await tx.all(
        "SELECT event_id, batch_id, product_ids, results, summary FROM webhook_events"
        " WHERE applied = 0 AND product_ids IS NOT NULL ORDER BY received_at"
    )
    for row in rows:
        if set(json.loads(row["product_ids"])) & set(product_ids) and row["batch_id"]:
            return await _attach(
                tx,
                sub_id,
                row["event_id"],
                row["batch_id"],
                row["results"],
                Counts.loads(row["summary"]),
                now,
            )
    return None


async def _attach(
    tx: Tx,
    sub_id: int,
    event_id: str,
    batch_id: str,
    results: str,
    counts: Counts,
    now: float,
) -> WebhookOutcome:
    """A completion for our products under a batch id we never got: adopt the batch id and
    apply the completion."""
    await move(tx, sub_id, "attach", now, batch_id=batch_id, submitted_at=now)
    await _mark_applied(tx, event_id)
    won = await complete(tx, sub_id, counts, results, "webhook", now)
    return WebhookOutcome("attached" if won else "already_done", sub_id)


async def _mark_applied(tx: Tx, event_id: str) -> None:
    await tx.execute("UPDATE webhook_events SET applied = 1 WHERE event_id = ?", (event_id,))
