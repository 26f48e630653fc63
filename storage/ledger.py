"""The ledger of paid calls, and what the bot has observed about the account's API.

Every analysis costs the account owner, and the API documents no idempotency key
(resell-scan-api.md §9 #13). So each paid POST (createAndAnalyze, analyze) is a row, written
before the POST: its own `Idempotency-Key`, the same for every resend of that call, how many
times it was sent in a way that may have been processed (`sends`: a send refused before
processing, 429 or a connection refused, is taken back), and what became of it. A submission's
`decision` (a photo sent, "Send again") scopes the cap on paid calls (bot/paid.py).

Facts are what the bot has seen the API do, never assumed: whether product listings show our
image file names (`listing_file_names`), "yes" or "no" with the time it was observed.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from storage.db import Database, Tx

# What became of a call.
PENDING = "pending"  # written; not sent yet, or sent with no answer yet
ACCEPTED = "accepted"  # answered with a batch
REFUSED = "refused"  # answered with an error that says it was not processed
UNKNOWN = "unknown"  # the answer was lost: it may have been processed
NOT_TAKEN = "not_taken"  # a lookup proved it took no effect (it may be resent, same key)


@dataclass(frozen=True)
class PaidCall:
    id: int
    submission_id: int
    decision: int
    endpoint: str
    key: str
    sends: int
    outcome: str
    batch_id: str | None
    created_at: float

    @classmethod
    def from_row(cls, row: Any) -> PaidCall:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class CallSpec:
    """Which call a send is: the submission's decision, the endpoint, the call's key."""

    decision: int
    endpoint: str
    key: str


async def record_send(tx: Tx, sub_id: int, call: CallSpec, now: float) -> None:
    """The call (written if new) counted as sent once more, in the caller's transaction:
    committed (durably) before the POST goes out, so a crash can never hide a paid call. A
    later decision may send the same call again (same key): a row of its own."""
    await tx.execute(
        "INSERT INTO paid_calls (submission_id, decision, endpoint, key, sends, outcome,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?)"
        " ON CONFLICT (submission_id, decision, key) DO UPDATE SET sends = sends + 1,"
        " outcome = excluded.outcome, updated_at = excluded.updated_at",
        (sub_id, call.decision, call.endpoint, call.key, PENDING, now, now),
    )


async def record_answer(
    tx: Tx,
    sub_id: int,
    call: CallSpec,
    outcome: str,
    now: float,
    *,
    batch_id: str | None = None,
    processed: bool = True,
) -> None:
    """What became of the call's last send; `processed=False`: the answer proves the server
    did not process it (429, connection refused, a validation error), so that send is not
    counted."""
    await tx.execute(
        "UPDATE paid_calls SET outcome = ?, batch_id = COALESCE(?, batch_id),"
        " sends = sends - ?, updated_at = ?"
        " WHERE submission_id = ? AND decision = ? AND key = ?",
        (outcome, batch_id, 0 if processed else 1, now, sub_id, call.decision, call.key),
    )


class Ledger:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def paid_calls(self, sub_id: int) -> list[PaidCall]:
        """The calls of a submission, every decision's, oldest first."""
        async with self.db.reading() as tx:
            rows = await tx.all(
                "SELECT * FROM paid_calls WHERE submission_id = ? ORDER BY id", (sub_id,)
            )
        return [PaidCall.from_row(r) for r in rows]

    async def send_call(self, sub_id: int, call: CallSpec, now: float) -> None:
        """`record_send` in a transaction of its own."""
        async with self.db.transaction() as tx:
            await record_send(tx, sub_id, call, now)

    async def call_answered(
        self,
        sub_id: int,
        call: CallSpec,
        outcome: str,
        now: float,
        *,
        batch_id: str | None = None,
        processed: bool = True,
    ) -> None:
        """`record_answer` in a transaction of its own."""
        async with self.db.transaction() as tx:
            await record_answer(
                tx, sub_id, call, outcome, now, batch_id=batch_id, processed=processed
            )

    async def claim_retry(self, sub_id: int, now: float) -> bool:
        """🔁 Retry failed is used up before its paid call goes out (one press, one decision):
        False when it was used already."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET retried_at = ? WHERE id = ? AND retried_at IS NULL",
                (now, sub_id),
            )
        return n == 1

    async def release_retry(self, sub_id: int) -> None:
        """The retry was refused before anything was processed: the button is usable again."""
        async with self.db.transaction() as tx:
            await tx.execute("UPDATE submissions SET retried_at = NULL WHERE id = ?", (sub_id,))

    async def fact(self, name: str) -> str | None:
        async with self.db.reading() as tx:
            row = await tx.one("SELECT value FROM account_facts WHERE name = ?", (name,))
        return str(row[0]) if row else None

    async def observe(self, name: str, value: str, now: float) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO account_facts (name, value, observed_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " observed_at = excluded.observed_at",
                (name, value, now),
            )


@dataclass(frozen=True)
class LedgerSummary:
    """What `check` reports of a database: paid calls since a moment, the facts observed."""

    paid: dict[tuple[str, str], int]  # (endpoint, outcome) -> sends that may have been paid
    facts: dict[str, str]


def read_summary(path: Path, since: float) -> LedgerSummary | None:
    """Read-only, without migrating (the bot may be running): None when the database does not
    exist or has no ledger yet."""
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "paid_calls" not in tables:
            return None
        rows = conn.execute(
            "SELECT endpoint, outcome, SUM(sends) FROM paid_calls WHERE created_at >= ?"
            " GROUP BY endpoint, outcome",
            (since,),
        ).fetchall()
        facts = dict(conn.execute("SELECT name, value FROM account_facts").fetchall())
    finally:
        conn.close()
    paid = {(str(r[0]), str(r[1])): int(r[2] or 0) for r in rows if r[2]}
    return LedgerSummary(paid, {str(k): str(v) for k, v in facts.items()})
