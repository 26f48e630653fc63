"""The state machine of a submission: the only code that writes `submissions.state`.

`TRANSITIONS` names every change of state with the states it may start from and the state it
ends in; the whole machine is that one table. `move` applies a transition to one submission,
`move_all` to every submission in one of its source states (both optionally narrowed by more
conditions), as one conditional `UPDATE ... WHERE state IN (...)` in the caller's transaction.
The row count says whether the caller won: one that lost (a racing webhook and poller, a
duplicate event) learns it from the return value and does nothing. Every move
stamps `updated_at`.

Rows are created in `received` (or, for a retry of failed products, in `submitted`); every other
UPDATE in storage leaves `state` alone, and most are guarded by `state = ?` so that they apply
only where they mean something.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from storage.db import Tx
from storage.history import owe_history
from storage.models import MESSAGE_STATES, Counts, State
from storage.owed import owe_notifications

# name: (states it may start from, state it ends in).
TRANSITIONS: dict[str, tuple[frozenset[State], State]] = {
    "begin_submit": (frozenset({State.RECEIVED}), State.SUBMITTING),
    "submit_retry": (frozenset({State.SUBMITTING}), State.RECEIVED),
    "mark_submitted": (frozenset({State.SUBMITTING}), State.SUBMITTED),
    # The answer was lost: look our photos up.
    "reconcile": (frozenset({State.SUBMITTING}), State.RECONCILING),
    # Not there: the request never took effect.
    "reconcile_resend": (frozenset({State.RECONCILING}), State.RECEIVED),
    # There: its batch is known (webhook) or started anew.
    "attach": (frozenset({State.RECONCILING}), State.SUBMITTED),
    # The API cannot tell: the user decides, with the facts.
    "ask": (frozenset({State.RECONCILING, State.RECEIVED}), State.UNCERTAIN),
    "reject": (frozenset({State.RECEIVED, State.SUBMITTING}), State.REJECTED),
    # The user let a submission go before it was sent (/cancel, or /done on an empty /batch).
    "cancel": (frozenset({State.RECEIVED}), State.REJECTED),
    # The user fixed a rejected caption (edit or reply).
    "revise": (frozenset({State.REJECTED}), State.RECEIVED),
    "complete": (frozenset({State.SUBMITTED}), State.COMPLETED),
    "fail": (
        frozenset({State.RECEIVED, State.SUBMITTING, State.SUBMITTED, State.RECONCILING}),
        State.FAILED,
    ),
    "expire": (frozenset({State.SUBMITTED}), State.EXPIRED),
    "resubmit": (frozenset({State.UNCERTAIN, State.FAILED}), State.RECEIVED),
    # The results were sent (the other states that owe a message keep their state).
    "mark_notified": (frozenset({State.COMPLETED}), State.NOTIFIED),
}


class Raw(str):
    """A SQL expression to use as a column's new value instead of a bound parameter."""

    __slots__ = ()


def assignments(values: dict[str, Any]) -> tuple[str, list[Any]]:
    """`, col = ?` (or `= <expression>` for Raw values) for each value, and the bound ones."""
    sets = "".join(
        f", {k} = {v}" if isinstance(v, Raw) else f", {k} = ?" for k, v in values.items()
    )
    return sets, [v for v in values.values() if not isinstance(v, Raw)]


async def move(
    tx: Tx,
    sub_id: int,
    name: str,
    now: float,
    *,
    where: str = "",
    where_args: Sequence[Any] = (),
    **values: Any,
) -> bool:
    """The transition `name` for one submission, setting `values` too; True if it moved.
    `where` (with `where_args`) is a further condition the row must meet."""
    condition = f"id = ? AND ({where})" if where else "id = ?"
    return await _update(tx, name, now, values, condition, (sub_id, *where_args)) == 1


async def move_all(
    tx: Tx,
    name: str,
    now: float,
    *,
    where: str = "",
    where_args: Sequence[Any] = (),
    **values: Any,
) -> int:
    """The transition `name` for every submission in one of its source states (and meeting
    `where`, if given), setting `values` too; returns how many moved."""
    return await _update(tx, name, now, values, where, where_args)


async def _update(
    tx: Tx, name: str, now: float, values: dict[str, Any], where: str, where_args: Sequence[Any]
) -> int:
    sources, target = TRANSITIONS[name]
    sets, bound = assignments(values)
    marks = ", ".join("?" for _ in sources)
    extra = f" AND ({where})" if where else ""
    moved = await tx.all(
        f"UPDATE submissions SET state = ?, updated_at = ?{sets}"  # noqa: S608 (column names and conditions are ours)
        f" WHERE state IN ({marks}){extra} RETURNING id",
        (target.value, now, *bound, *(s.value for s in sources), *where_args),
    )
    if target in MESSAGE_STATES:
        # The message this state owes, in the same transaction (the outbox's rule).
        await owe_notifications(tx, [row[0] for row in moved], now)
    if target is State.COMPLETED:
        # The results are known: their history rows are owed now, not once delivered.
        await owe_history(tx, [row[0] for row in moved], now)
    return len(moved)


async def complete(
    tx: Tx, sub_id: int, counts: Counts, results: str, source: str, now: float
) -> bool:
    """submitted -> completed, with the results as Resell Scan sent them (JSON text, kept
    as it came) and the counts the caller read from them. `source` says who saw the end
    first ("poll", "webhook"). False if the submission was not waiting for its results."""
    return await move(
        tx,
        sub_id,
        "complete",
        now,
        raw_status=counts.status,
        total_products=counts.total,
        successful_products=counts.successful,
        failed_products=counts.failed,
        progress=100.0,
        results=results,
        completed_at=now,
        completed_by=source,
        next_action_at=now,
    )
