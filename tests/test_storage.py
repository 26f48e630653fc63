"""The submission store: transitions, claims, webhook idempotency, concurrency, migrations."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from storage import (
    TRANSITIONS,
    AddResult,
    CaptionInfo,
    Counts,
    Database,
    Inbox,
    Migration,
    NewPhoto,
    NewUpdate,
    Problem,
    State,
    StorageError,
    Store,
)
from storage.migrations import MIGRATIONS
from storage.outbox import Kind, OutboxRow, Priority
from tests.conftest import apply_webhook, new_photo

NOW = 1_000_000.0


async def store_photo(store: Store, photo: NewPhoto, **overrides: Any) -> AddResult:
    """store.add_photo with the defaults these tests share; keywords override them."""
    values: dict[str, Any] = {
        "caption": None,
        "problem": None,
        "language": "en",
        "remove_background": False,
        "album_window": 1.0,
        "album_max_wait": 5.0,
        "now": NOW,
    }
    values.update(overrides)
    return await store.add_photo(photo, **values)


async def add_single(store: Store, *, chat_id: int = 1, caption: CaptionInfo | None = None) -> int:
    result = await store_photo(store, new_photo(chat_id=chat_id), caption=caption)
    return result.submission_id


async def force_state(store: Store, sub_id: int, state: State) -> None:
    """Put a submission into `state` directly (test set-up only)."""
    async with store.db.transaction() as tx:
        await tx.execute(
            "UPDATE submissions SET state = ?, batch_id = COALESCE(batch_id, ?) WHERE id = ?",
            (state.value, f"batch-{sub_id}" if state is not State.RECEIVED else None, sub_id),
        )


async def owed(store: Store, sub_id: int) -> list[OutboxRow]:
    """The outbox rows owed for a submission."""
    async with store.db.reading() as tx:
        rows = await tx.all("SELECT * FROM outbox WHERE submission_id = ? ORDER BY id", (sub_id,))
    return [OutboxRow.from_row(r) for r in rows]


async def completed(store: Store) -> int:
    """A submission taken through the real transitions to `completed`."""
    sub_id = await add_single(store)
    assert await store.choose_collection(sub_id, "c1", "C", NOW)
    assert await store.begin_submit(sub_id, NOW)
    await store.mark_submitted(sub_id, f"b-{sub_id}", NOW + 3, NOW)
    assert await store.complete(sub_id, {"products": []}, Counts(), "poll", NOW)
    return sub_id


async def state_of(store: Store, sub_id: int) -> State:
    sub = await store.get(sub_id)
    assert sub is not None
    return sub.state


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
@pytest.mark.parametrize("start", list(State))
async def test_every_transition_from_every_state(store: Store, name: str, start: State) -> None:
    sources, target = TRANSITIONS[name]
    sub_id = await add_single(store)
    await force_state(store, sub_id, start)
    won = await store.transition(sub_id, name, NOW + 1)
    assert won is (start in sources)
    assert await state_of(store, sub_id) == (target if won else start)


async def test_completed_cannot_go_back_to_submitting(store: Store) -> None:
    sub_id = await add_single(store)
    await force_state(store, sub_id, State.COMPLETED)
    assert not await store.begin_submit(sub_id, NOW)
    assert await state_of(store, sub_id) is State.COMPLETED


async def test_full_happy_path(store: Store) -> None:
    sub_id = await add_single(store, caption=CaptionInfo("Sneakers", {"purchasePrice": 12.5}))
    sub = await store.get(sub_id)
    assert sub is not None and sub.collection_ref == "Sneakers"
    assert sub.manual_fields == {"purchasePrice": 12.5}
    assert await store.choose_collection(sub_id, "c1", "Sneakers", NOW)
    assert await store.begin_submit(sub_id, NOW)
    assert not await store.begin_submit(sub_id, NOW), "a second submit must lose"
    assert not await store.mark_submitted(sub_id, "b-1", NOW + 3, NOW)
    assert (await store.by_batch("b-1")) is not None
    assert await store.complete(
        sub_id, {"status": "completed", "products": []}, Counts("completed", 0, 0, 0), "poll", NOW
    )
    [row] = await owed(store, sub_id)
    assert await store.notified(row, NOW)
    final = await store.get(sub_id)
    assert final is not None and final.state is State.NOTIFIED and final.notified_at == NOW
    assert final.attempts == 1


async def test_a_completion_owes_one_message_and_is_notified_once(store: Store) -> None:
    sub_id = await completed(store)
    [row] = await owed(store, sub_id)
    assert row.kind is Kind.NOTIFY and row.priority is Priority.RESULT
    assert not await store.complete(sub_id, {"products": []}, Counts(), "poll", NOW)
    assert len(await owed(store, sub_id)) == 1, "owed twice"
    assert await store.notified(row, NOW)
    assert await owed(store, sub_id) == []
    assert await state_of(store, sub_id) is State.NOTIFIED
    assert not await store.notified(row, NOW), "notified twice"


async def test_a_failed_delivery_waits_and_is_retried(store: Store) -> None:
    sub_id = await completed(store)
    [row] = await owed(store, sub_id)
    await store.retry_row(row, NOW + 5, "telegram timed out")
    assert await store.outbox_rows(1, NOW, 10) == []
    [again] = await store.outbox_rows(1, NOW + 5, 10)
    assert again.id == row.id and again.attempts == 1


async def test_only_states_that_owe_a_message_owe_one(store: Store) -> None:
    sub_id = await add_single(store)
    assert await store.choose_collection(sub_id, "c1", "C", NOW)
    assert await store.begin_submit(sub_id, NOW)
    await store.mark_submitted(sub_id, "b-only", NOW + 3, NOW)
    assert await owed(store, sub_id) == [], "received, submitting, submitted owe nothing"
    assert await store.reject(sub_id, Problem("x"), NOW) is False  # not from submitted
    assert await store.fail(sub_id, Problem("failed"), NOW)
    assert [r.kind for r in await owed(store, sub_id)] == [Kind.NOTIFY]


async def test_duplicate_webhook_event_changes_nothing(store: Store) -> None:
    sub_id = await add_single(store)
    await force_state(store, sub_id, State.SUBMITTING)
    await store.mark_submitted(sub_id, "b-1", NOW + 3, NOW)
    payload = {"id": "evt_1", "data": {"batch_id": "b-1", "total_products": 1, "products": []}}
    first = await apply_webhook(store, "evt_1", "b-1", payload, NOW)
    second = await apply_webhook(store, "evt_1", "b-1", payload, NOW + 1)
    assert first.kind == "applied" and first.submission_id == sub_id
    assert second.kind == "duplicate"
    sub = await store.get(sub_id)
    assert sub is not None and sub.completed_at == NOW and sub.completed_by == "webhook"


async def test_racing_webhook_and_poller_complete_once(store: Store) -> None:
    winners = []
    for round_ in range(20):
        sub_id = await add_single(store)
        await force_state(store, sub_id, State.SUBMITTING)
        batch = f"race-{round_}"
        await store.mark_submitted(sub_id, batch, NOW, NOW)
        payload = {"data": {"batch_id": batch, "products": []}}
        webhook, poll = await asyncio.gather(
            apply_webhook(store, f"evt_{round_}", batch, payload, NOW),
            store.complete(sub_id, {"products": []}, Counts(), "poll", NOW),
        )
        assert (webhook.kind == "applied") != poll, "exactly one of them must win"
        winners.append("webhook" if webhook.kind == "applied" else "poll")
        assert len(await owed(store, sub_id)) == 1, "one message owed, whoever won"
    assert set(winners) <= {"webhook", "poll"}


async def test_webhook_before_batch_id_is_stored_applies_on_submit(store: Store) -> None:
    payload = {"data": {"batch_id": "early", "status": "completed", "products": []}}
    outcome = await apply_webhook(
        store, "evt_e", "early", payload, NOW, counts=Counts("completed", 1, 1, 0)
    )
    assert outcome.kind == "unknown_batch"
    sub_id = await add_single(store)
    await force_state(store, sub_id, State.SUBMITTING)
    assert await store.mark_submitted(sub_id, "early", NOW + 3, NOW)
    assert await state_of(store, sub_id) is State.COMPLETED
    sub = await store.get(sub_id)
    assert sub is not None and sub.results == payload["data"]
    assert (sub.raw_status, sub.total_products, sub.successful_products) == ("completed", 1, 1)


async def test_album_members_join_one_submission_and_restart_the_window(store: Store) -> None:
    ids = []
    for i, at in enumerate((NOW, NOW + 0.5, NOW + 1.2)):
        result = await store_photo(
            store,
            new_photo(chat_id=7, message_id=100 - i, media_group_id="g1"),
            caption=CaptionInfo("Sneakers", {}) if i == 1 else None,
            now=at,
        )
        ids.append(result.submission_id)
    assert len(set(ids)) == 1
    sub = await store.get(ids[0])
    assert sub is not None
    assert sub.next_action_at == NOW + 2.2, "window restarts with each member"
    assert sub.message_id == 98, "the reply goes to the first message of the album"
    assert sub.collection_ref == "Sneakers"
    photos = await store.photos(ids[0])
    assert [p.message_id for p in photos] == [98, 99, 100]


async def test_album_window_is_capped_by_max_wait(store: Store) -> None:
    sub_id = None
    for i in range(10):
        result = await store_photo(
            store, new_photo(chat_id=8, media_group_id="g2"), album_max_wait=3.0, now=NOW + i * 0.9
        )
        sub_id = result.submission_id
    assert sub_id is not None
    sub = await store.get(sub_id)
    assert sub is not None and sub.next_action_at == NOW + 3.0


async def test_redelivered_photo_is_stored_once(store: Store) -> None:
    photo = new_photo(chat_id=3)
    first = await store_photo(store, photo)
    second = await store_photo(store, photo)
    assert not first.duplicate and second.duplicate
    assert second.submission_id == first.submission_id
    assert (await store.count_by_state()) == {"received": 1}


async def test_late_album_member_is_kept_but_marked_late(store: Store) -> None:
    first = await store_photo(store, new_photo(chat_id=4, media_group_id="g3"))
    await force_state(store, first.submission_id, State.SUBMITTED)
    late = await store_photo(store, new_photo(chat_id=4, media_group_id="g3"), now=NOW + 9)
    assert late.late and late.submission_id == first.submission_id
    assert len(await store.photos(first.submission_id)) == 2


async def test_caption_problem_rejects_and_owes_a_message(store: Store) -> None:
    result = await store_photo(
        store, new_photo(chat_id=5), problem=Problem("bad_pair", {"pair": "x"})
    )
    sub = await store.get(result.submission_id)
    assert sub is not None and sub.state is State.REJECTED
    assert sub.problem == Problem("bad_pair", {"pair": "x"})
    assert [r.kind for r in await owed(store, sub.id)] == [Kind.NOTIFY]


async def test_recover_reconciles_what_was_being_sent_and_keeps_what_is_owed(
    store: Store,
) -> None:
    mid_send = await add_single(store)
    await force_state(store, mid_send, State.SUBMITTING)
    mid_reply = await completed(store)
    counts = await store.recover(NOW + 10, NOW + 30)
    assert counts["reconciling"] == 1
    assert await state_of(store, mid_send) is State.RECONCILING
    assert len(await owed(store, mid_reply)) == 1, "the message owed stays owed"
    assert mid_send not in {s.id for s in await store.due(NOW + 10)}, "after the settle delay"
    assert mid_send in {s.id for s in await store.due(NOW + 30)}


async def test_due_and_next_due(store: Store) -> None:
    early = await add_single(store)
    late = await store_photo(store, new_photo(media_group_id="g9"), album_window=2.0)
    assert [s.id for s in await store.due(NOW)] == [early]
    assert await store.next_due_at() == NOW
    await store.await_choice(early, NOW)
    assert await store.next_due_at() == NOW + 2.0
    assert [s.id for s in await store.due(NOW + 2.0)] == [late.submission_id]


async def test_pending_scan_applies_to_next_photo_until_it_expires(store: Store) -> None:
    await store.set_pending_scan(1, 10, CaptionInfo("Books", {"quantity": 2}), NOW + 60)
    sub_id = await add_single(store)
    sub = await store.get(sub_id)
    assert (
        sub is not None and sub.collection_ref == "Books" and sub.manual_fields == {"quantity": 2}
    )
    late = await store_photo(store, new_photo(), now=NOW + 61)
    sub2 = await store.get(late.submission_id)
    assert sub2 is not None and sub2.collection_ref is None


async def test_chat_settings_round_trip(store: Store) -> None:
    assert (await store.chat(42)).default_collection_id is None
    await store.update_chat(42, NOW, default_collection_id="c", default_collection_name="Books")
    await store.update_chat(42, NOW, language="de", admin_only=True)
    chat = await store.chat(42)
    assert (chat.default_collection_name, chat.language, chat.admin_only) == ("Books", "de", True)
    with pytest.raises(ValueError, match="unknown chat settings"):
        await store.update_chat(42, NOW, token="x")


async def test_prune_forgets_old_events_and_keeps_recent_unknown_ones(store: Store) -> None:
    sub_id = await add_single(store)
    await force_state(store, sub_id, State.SUBMITTED)
    await apply_webhook(store, "evt_old", f"batch-{sub_id}", {}, NOW)
    await apply_webhook(store, "evt_dashboard", "started-elsewhere", {}, NOW)
    await apply_webhook(store, "evt_dashboard_new", "started-elsewhere-2", {}, NOW + 10)
    assert await store.unknown_events() == 2
    pruned = await store.prune(events_before=NOW + 1, unknown_before=NOW + 1)
    assert pruned == {"events": 1, "unknown_events": 1}
    assert await store.unknown_events() == 1


async def test_inbox_stores_each_update_once_in_arrival_order_and_prunes(store: Store) -> None:
    inbox = Inbox(store.db)

    def update(update_id: int, chat: int) -> NewUpdate:
        payload = {"update_id": update_id, "message": {"chat": {"id": chat}}}
        return NewUpdate(update_id, chat, json.dumps(payload))

    # update_id may jump (Telegram: after a quiet week): arrival order, not id order, counts.
    first = await inbox.add([update(900, 1), update(5, 2), update(901, 1)], NOW)
    assert [row.update_id for row in first] == [900, 5, 901]
    again = await inbox.add([update(901, 1), update(902, 1)], NOW + 1)
    assert [row.update_id for row in again] == [902], "a replayed update_id changes nothing"
    pending = await inbox.pending()
    assert [row.update_id for row in pending] == [900, 5, 901, 902]
    assert pending[0].payload["message"]["chat"]["id"] == 1
    assert await inbox.mark_done([pending[0].id, pending[1].id], NOW + 2) == 2
    assert [row.update_id for row in await inbox.pending()] == [901, 902]
    assert await inbox.counts() == {"total": 4, "pending": 2}
    assert await inbox.prune(done_before=NOW + 2) == 0, "done just now: kept"
    assert await inbox.prune(done_before=NOW + 3) == 2
    assert await inbox.add([update(900, 1)], NOW + 4) != [], "pruned ids are new again"


async def test_200_concurrent_tasks_mixed_writes(store: Store) -> None:
    async def worker(n: int) -> int:
        sub_id = await add_single(store, chat_id=1000 + n % 17)
        await store.update_chat(1000 + n % 17, NOW, language="de" if n % 2 else "en")
        assert await store.choose_collection(sub_id, "c", "C", NOW)
        assert await store.begin_submit(sub_id, NOW)
        await store.mark_submitted(sub_id, f"batch-c-{n}", NOW, NOW)
        if n % 3 == 0:
            payload = {"data": {"batch_id": f"batch-c-{n}", "products": []}}
            await apply_webhook(store, f"evt-c-{n}", f"batch-c-{n}", payload, NOW)
        else:
            await store.complete(sub_id, {"products": []}, Counts(), "poll", NOW)
        [row] = await owed(store, sub_id)
        assert await store.notified(row, NOW)
        return sub_id

    results = await asyncio.gather(*(worker(n) for n in range(200)))
    assert len(set(results)) == 200
    assert await store.count_by_state() == {"notified": 200}
    assert await store.db.integrity_check() == "ok"


async def test_a_failed_commit_rolls_back_and_the_connection_stays_usable(
    tmp_path: Path,
) -> None:
    """A COMMIT can fail (here: a deferred foreign key, checked only at COMMIT; in life: disk
    full or an I/O error). The single connection must not be left inside the transaction,
    or every later BEGIN IMMEDIATE fails until a restart."""
    schema = Migration(
        1,
        "a deferred foreign key",
        [
            "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER"
            " REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
        ],
    )
    db = await Database.open(tmp_path / "commit.sqlite3", [schema])
    try:
        with pytest.raises(sqlite3.IntegrityError):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO child (id, parent_id) VALUES (1, 42)")
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO parent (id) VALUES (42)")
            await tx.execute("INSERT INTO child (id, parent_id) VALUES (2, 42)")
        async with db.reading() as tx:
            rows = await tx.all("SELECT id FROM child")
        assert [row[0] for row in rows] == [2], "the failed transaction left nothing behind"
    finally:
        await db.close()


# Migrations ---------------------------------------------------------------------------------


async def test_empty_file_migrates_to_newest(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "new.sqlite3")
    try:
        assert await db.user_version() == max(m.version for m in MIGRATIONS)
    finally:
        await db.close()


@pytest.mark.parametrize("start", range(1, len(MIGRATIONS)))
async def test_each_older_version_migrates_to_newest(tmp_path: Path, start: int) -> None:
    path = tmp_path / "old.sqlite3"
    old = await Database.open(path, MIGRATIONS[:start])
    assert await old.user_version() == start
    await old.close()
    db = await Database.open(path)
    try:
        assert await db.user_version() == len(MIGRATIONS)
        assert await Store(db).count_by_state() == {}
        assert await Inbox(db).add([NewUpdate(1, 1, "{}")], NOW)
    finally:
        await db.close()


async def test_rebuild_migration_adds_a_state_and_keeps_every_row(tmp_path: Path) -> None:
    """Version 5 rebuilds `submissions` (SQLite cannot alter a CHECK): rows, their photos
    (which reference them), indexes and the old constraint's values survive; the new state
    is accepted; foreign keys are enforced again afterwards."""
    path = tmp_path / "v4.sqlite3"
    old = await Database.open(path, MIGRATIONS[:4])
    async with old.transaction() as tx:  # rows as version 4 wrote them
        sub_id = await tx.insert(
            "INSERT INTO submissions (chat_id, message_id, user_id, user_name, collection_id,"
            " collection_name, idempotency_key, state, created_at, updated_at)"
            " VALUES (1, 7, 10, 'Anna', 'c1', 'Sneakers', 'key-1', 'received', ?, ?)",
            (NOW, NOW),
        )
        await tx.execute(
            "INSERT INTO photos (submission_id, chat_id, message_id, product_key, file_id,"
            " file_unique_id, media_key) VALUES (?, 1, 7, '7', 'f', 'u', 'm')",
            (sub_id,),
        )
    await old.close()
    assert sub_id is not None
    db = await Database.open(path)
    try:
        assert await db.user_version() == len(MIGRATIONS)
        store = Store(db)
        sub = await store.get(sub_id)
        assert sub is not None and sub.collection_name == "Sneakers" and sub.requested_at is None
        assert [p.submission_id for p in await store.photos(sub_id)] == [sub_id]
        await force_state(store, sub_id, State.RECONCILING)
        async with db.reading() as tx:
            fks = await tx.one("PRAGMA foreign_keys")
            indexes = {r[1] for r in await tx.all("PRAGMA index_list(submissions)")}
            broken = await tx.all("PRAGMA foreign_key_check")
        assert fks is not None and fks[0] == 1 and broken == []
        assert {"submissions_album", "submissions_due", "submissions_collecting"} <= indexes
        with pytest.raises(sqlite3.IntegrityError):  # the CHECK is still there
            async with db.transaction() as tx:
                await tx.execute(
                    "UPDATE submissions SET state = 'nonsense' WHERE id = ?", (sub_id,)
                )
        with pytest.raises(sqlite3.IntegrityError):  # photos still point at submissions
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO photos (submission_id, chat_id, message_id,"
                " product_key, file_id, file_unique_id, media_key) VALUES (999, 1, 1, 'k',"
                " 'f', 'u', 'm')")  # fmt: skip
    finally:
        await db.close()


async def test_a_rebuild_that_breaks_a_foreign_key_is_rolled_back(tmp_path: Path) -> None:
    parent_child = Migration(
        1,
        "parent and child",
        [
            "CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT)",
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent)",
            "INSERT INTO parent VALUES (1, 'a')",
            "INSERT INTO child VALUES (1, 1)",
        ],
    )
    lossy = Migration(
        2,
        "a rebuild that forgets to copy the rows",
        [
            "CREATE TABLE parent_new (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
            "DROP TABLE parent",
            "ALTER TABLE parent_new RENAME TO parent",
        ],
        rebuild=True,
    )
    path = tmp_path / "fk.sqlite3"
    db = await Database.open(path, [parent_child])
    await db.close()
    with pytest.raises(StorageError, match="foreign key check failed"):
        await Database.open(path, [parent_child, lossy])
    db = await Database.open(path, [parent_child])
    try:
        assert await db.user_version() == 1
        async with db.reading() as tx:
            row = await tx.one("SELECT name FROM parent WHERE id = 1")
            fks = await tx.one("PRAGMA foreign_keys")
        assert row is not None and row[0] == "a" and fks is not None and fks[0] == 1
    finally:
        await db.close()


async def test_migrating_twice_changes_nothing(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "twice.sqlite3")
    try:
        version = await db.user_version()
        assert await db.migrate(MIGRATIONS) == version
    finally:
        await db.close()


async def test_failing_migration_leaves_version_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "fail.sqlite3"
    broken = [*MIGRATIONS, Migration(99, "broken", ["CREATE TABLE ok_table (x)", "NOT SQL"])]
    with pytest.raises(StorageError, match="migration 99"):
        await Database.open(path, broken)
    db = await Database.open(path)
    try:
        assert await db.user_version() == len(MIGRATIONS)
        async with db.reading() as tx:
            row = await tx.one("SELECT name FROM sqlite_master WHERE name = 'ok_table'")
        assert row is None, "the failed migration's first statement must be rolled back"
    finally:
        await db.close()


async def test_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 999")
    with pytest.raises(StorageError, match="newer than this program"):
        await Database.open(path)


async def test_pragmas(store: Store) -> None:
    async with store.db.reading() as tx:
        journal = await tx.one("PRAGMA journal_mode")
        fks = await tx.one("PRAGMA foreign_keys")
        sync = await tx.one("PRAGMA synchronous")
        busy = await tx.one("PRAGMA busy_timeout")
    assert journal is not None and journal[0] == "wal"
    assert fks is not None and fks[0] == 1
    assert sync is not None and sync[0] == 2  # FULL
    assert busy is not None and busy[0] >= 1000


async def test_resubmit_starts_the_message_bookkeeping_afresh(store: Store) -> None:
    sub_id = await add_single(store)
    await force_state(store, sub_id, State.SUBMITTING)
    await store.mark_reconciling(sub_id, "dropped", NOW, NOW, cause=Problem("ambiguous"))
    await store.ask_user(sub_id, Problem("uncertain_ask"), NOW)
    [row] = await owed(store, sub_id)
    await store.part_sent(row, 1)
    assert await store.notified(row, NOW)
    assert await store.resubmit(sub_id, NOW + 1)
    sub = await store.get(sub_id)
    assert sub is not None and sub.state is State.RECEIVED
    assert (sub.parts_sent, sub.notified_at, sub.notify_claimed_at) == (0, None, None)


async def test_the_chat_settings_cache_is_bounded(store: Store) -> None:
    """Any Telegram user can write to the bot: the cache keeps the recently used chats only,
    and a setting survives its chat leaving the cache."""
    from storage.chats import CHAT_CACHE

    await store.update_chat(1, NOW, language="de")
    for chat_id in range(2, CHAT_CACHE + 200):
        await store.chat(chat_id)
    assert len(store._chats) == CHAT_CACHE
    assert 1 not in store._chats
    assert (await store.chat(1)).language == "de"
