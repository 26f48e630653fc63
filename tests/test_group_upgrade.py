"""What a group keeps when Telegram upgrades it to a supergroup, through the real bot and the
emulator: the duplicate guard still knows the photos analysed in the group (they keep the
group's id as their address)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sandbox.data import fake_jpeg
from storage import State
from tests.conftest import eventually
from tests.harness import ANNA, Harness, bot_running, results_replies

pytestmark = pytest.mark.timeout(120)

OLD_GROUP: dict[str, Any] = {"id": -4002, "type": "group", "title": "Flea market"}


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
    results" shows the group's results in the supergroup; nothing is uploaded twice."""
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
        await harness.wait_sent(
            new["id"], lambda a: bool(results_replies([a])), what="the results shown again"
        )
    assert len(await harness.creates()) == 1
    assert not await refused_sends(harness)
