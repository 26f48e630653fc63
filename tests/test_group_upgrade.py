"""What a group keeps when Telegram upgrades it to a supergroup, through the real bot and the
emulator: the duplicate guard still knows the photos analysed in the group; a question the
group was asked and did not answer is asked again in the supergroup, where a reply answers
it; and an ALLOWED_CHAT_IDS that still names the group is pointed out by `run` at start and
by `check`.

Telegram does not move a group's messages into the supergroup: the supergroup numbers its
messages anew, the group becomes read-only, and a reply from the supergroup to a message of
the group comes as `external_reply`, which names the message only for supergroups and
channels (Bot API, ExternalReplyInfo). A question asked in the group cannot be answered by a
reply to it, so the bot asks it again."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from bot.config import Settings
from sandbox.data import fake_jpeg
from storage import Database, Problem, State, Store, Submission
from storage.outbox import Kind, Owed, Priority
from tests.conftest import eventually, new_photo
from tests.harness import ANNA, BEN, Harness, bot_running, results_replies
from tests.proc import ROOT, settings_env

pytestmark = pytest.mark.timeout(120)

OLD_GROUP: dict[str, Any] = {"id": -4002, "type": "group", "title": "Flea market"}
NEW_ID = -1004002  # the emulator's default: -100 and the old id's digits


async def upgrade(harness: Harness, chat_id: int) -> dict[str, Any]:
    """The group becomes a supergroup; Telegram's service messages reach the bot."""
    answer = await harness.rs(
        "/sandbox/telegram/upgrade", {"chat_id": chat_id, "from": ANNA, "updates": True}
    )
    chat: dict[str, Any] = answer["chat"]
    return chat


def buttons(action: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for row in (action["reply_markup"] or {}).get("inline_keyboard", []) for b in row]


def has(needle: str) -> Callable[[dict[str, Any]], bool]:
    return lambda a: a["kind"] == "send" and needle in (a.get("text") or "")


async def refused_sends(harness: Harness) -> list[dict[str, Any]]:
    """Calls the emulator answered with "upgraded to a supergroup" (a send to the old id)."""
    calls: list[dict[str, Any]] = (await harness.http.get("/sandbox/telegram/calls")).json()[
        "calls"
    ]
    return [c for c in calls if c.get("migrate_to_chat_id") is not None]


# The duplicate guard ----------------------------------------------------------------------------


async def test_the_duplicate_guard_knows_photos_analysed_before_the_upgrade(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """A photo analysed in the group, sent again in the supergroup: held with the question
    (photos keep the group's id as their address, the guard looks under both ids); "Show
    results" shows the group's results in the supergroup, and their CSV button sends the
    file there replying to nothing; nothing is uploaded twice."""
    photo = fake_jpeg("upgrade-dup")
    old = await harness.chat(**OLD_GROUP)
    async with bot_running(settings_for()) as runtime:
        store = runtime.store
        assert store is not None
        await harness.photo(ANNA, old, caption="/scan Electronics", data=photo)
        await harness.wait_sent(old["id"], lambda a: bool(results_replies([a])), what="results")

        async def notified() -> bool:
            return (await store.count_by_state()) == {State.NOTIFIED.value: 1}

        await eventually(notified, what="the first analysis notified")
        new = await upgrade(harness, old["id"])
        await eventually(lambda: store.successor(old["id"]), what="the upgrade followed")
        again = await harness.photo(ANNA, new, caption="/scan Electronics", data=photo)
        question = await harness.wait_sent(new["id"], has("already analysed"), what="the guard")
        assert question["reply_to"] == again and "Electronics" in question["text"]
        assert len(await harness.creates()) == 1, "held: nothing uploaded"
        show = next(b for b in buttons(question) if b["text"] == "Show results")
        await harness.press(ANNA, new["id"], question["message_id"], show["callback_data"])
        shown = await harness.wait_sent(
            new["id"], lambda a: bool(results_replies([a])), what="the results shown again"
        )
        # What its buttons send replies to nothing: the photo is the group's message, and the
        # supergroup's message with that number is another one.
        csv = next(b for b in buttons(shown) if b["text"].startswith("📄"))
        await harness.press(ANNA, new["id"], shown["message_id"], csv["callback_data"])
        document = await harness.wait_sent(
            new["id"], lambda a: a["kind"] == "document", what="the CSV"
        )
        assert document["reply_to"] is None
    assert len(await harness.creates()) == 1
    assert not await refused_sends(harness)


# Questions asked in the group -------------------------------------------------------------------


async def test_questions_the_group_left_open_are_asked_again_in_the_supergroup(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """Two photos wait in the group: one for its required field (a question answered by a
    reply), one for a collection (buttons). After the upgrade both questions are asked again
    in the supergroup; a reply to the new question gives the field, a button there picks the
    collection, and both are analysed there."""
    old = await harness.chat(**OLD_GROUP)
    async with bot_running(settings_for()):
        await harness.photo(ANNA, old, caption="/scan Sneakers", data=fake_jpeg("upgrade-shoe"))
        await harness.photo(BEN, old, data=fake_jpeg("upgrade-lamp"))
        await harness.wait_sent(old["id"], has("needs more details"), what="the fields question")
        await harness.wait_sent(old["id"], has("Which collection"), what="the collection picker")
        new = await upgrade(harness, old["id"])

        fields = await harness.wait_sent(
            new["id"], has("needs more details"), what="the fields question asked again"
        )
        assert "purchasePrice=…" in fields["text"] and "Anna" in fields["text"]
        assert fields["reply_to"] is None, "the photo is the group's message: no reply across"
        await harness.text(ANNA, "purchasePrice=7", new, reply_to_message_id=fields["message_id"])
        picker = await harness.wait_sent(
            new["id"], has("Which collection"), what="the collection picker asked again"
        )
        electronics = next(b for b in buttons(picker) if b["text"] == "Electronics")
        await harness.press(BEN, new["id"], picker["message_id"], electronics["callback_data"])

        async def both_answered() -> bool:
            return len(results_replies(await harness.sent(new["id"]))) == 2

        await eventually(both_answered, within=30, what="both analysed in the supergroup")
    creates = await harness.creates()
    assert sorted(str(c["body"]["products"][0]["manual_fields"]) for c in creates) == [
        "{'purchasePrice': 7.0}",
        "{}",
    ]
    old_questions = [
        a for a in await harness.sent(old["id"]) if "needs more details" in (a["text"] or "")
    ]
    assert len(old_questions) == 1, "asked once in the group"
    assert not await refused_sends(harness), "nothing sent to the old id after the upgrade"


async def test_only_questions_that_went_out_are_asked_again(store: Store) -> None:
    """Storage alone: a submission whose question reached the group is due again (the
    tracker asks afresh in the new chat); one whose question is still owed keeps waiting (its
    row moves to the new chat); one that waits for nobody is left alone."""
    old, new, now = -4003, -1004003, 1_000.0

    async def waiting(message_id: int, question_owed: bool) -> int:
        added = await store.add_photo(
            new_photo(chat_id=old, message_id=message_id),
            caption=None,
            problem=None,
            language="en",
            remove_background=False,
            album_window=0.0,
            album_max_wait=0.0,
            now=now,
        )
        sub_id = added.submission_id
        key = f"question:{sub_id}"
        owed = [Owed(old, Kind.QUESTION, Priority.RESULT, submission_id=sub_id, key=key)]
        problem = Problem("fields_wanted", {"missing": ["purchasePrice"]})
        await store.await_fields(sub_id, problem, now, owed=owed if question_owed else ())
        return sub_id

    asked = await waiting(1, question_owed=False)
    still_owed = await waiting(2, question_owed=True)
    due = (
        await store.add_photo(
            new_photo(chat_id=old, message_id=3),
            caption=None,
            problem=None,
            language="en",
            remove_background=False,
            album_window=5.0,
            album_max_wait=5.0,
            now=now,
        )
    ).submission_id

    moved = await store.migrate_chat(old, new, now + 1)
    assert moved["questions"] == 1

    async def moved_sub(sub_id: int) -> Submission:
        sub = await store.get(sub_id)
        assert sub is not None and sub.chat_id == new
        return sub

    assert (await moved_sub(asked)).next_action_at == now + 1, "asked again"
    assert (await moved_sub(still_owed)).next_action_at is None, "its question is owed"
    assert (await moved_sub(due)).next_action_at == now, "not waiting: untouched"
    rows = await store.outbox_rows(new, now + 2, 10)
    assert [r.submission_id for r in rows if r.kind is Kind.QUESTION] == [still_owed]
    assert (await store.migrate_chat(old, new, now + 3))["questions"] == 0


# ALLOWED_CHAT_IDS naming the group ------------------------------------------------------------


async def _remember_upgrade(settings: Settings, old: int, new: int) -> None:
    db = await Database.open(settings.database_path)
    try:
        await Store(db).migrate_chat(old, new, time.time())
    finally:
        await db.close()


async def test_run_warns_at_start_when_the_allowlist_names_an_upgraded_group(
    settings_for: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(allowed_chat_ids=[OLD_GROUP["id"]])
    await _remember_upgrade(settings, OLD_GROUP["id"], NEW_ID)
    caplog.set_level(logging.WARNING, logger="bot.app")
    async with bot_running(settings):
        warned = [r for r in caplog.records if r.name == "bot.app" and r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warned] == [
        f"ALLOWED_CHAT_IDS lists {OLD_GROUP['id']}, which Telegram upgraded to supergroup"
        f" {NEW_ID}: it admits the new id meanwhile; replace {OLD_GROUP['id']} with {NEW_ID}"
        " in the setting"
    ]


async def test_check_names_an_allowlisted_group_that_was_upgraded(
    settings_for: Callable[..., Any],
) -> None:
    """`check` reads the database without changing it: nothing to say before the database
    exists or when the allowlist is current; the old id named (FAIL, exit 1) when it is not,
    and "remove" when the new id is listed too."""
    from bot.cli import _allowlist_lines

    old = OLD_GROUP["id"]
    settings = settings_for(allowed_chat_ids=[old])
    assert _allowlist_lines(settings) == [], "no database yet"
    await _remember_upgrade(settings, old, NEW_ID)
    assert _allowlist_lines(settings_for(allowed_chat_ids=[NEW_ID])) == []
    both = _allowlist_lines(settings_for(allowed_chat_ids=[old, NEW_ID]))
    assert both == [
        (
            False,
            f"ALLOWED_CHAT_IDS lists {old}, which Telegram upgraded to supergroup {NEW_ID}"
            f" (listed too): remove {old} from the setting",
        )
    ]
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "check"],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT), **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"FAIL ALLOWED_CHAT_IDS lists {old}, which Telegram upgraded to supergroup {NEW_ID}:"
        f" it admits the new id meanwhile; replace {old} with {NEW_ID} in the setting"
    ) in result.stdout.splitlines()
    assert "1 check(s) failed" in result.stdout
    rows = await _migrations(settings)
    assert rows == [(old, NEW_ID)], "check changed nothing"


async def _migrations(settings: Settings) -> list[tuple[int, int]]:
    db = await Database.open(settings.database_path)
    try:
        async with db.reading() as tx:
            found = await tx.all("SELECT old_chat_id, new_chat_id FROM chat_migrations")
        return [(int(r[0]), int(r[1])) for r in found]
    finally:
        await db.close()
