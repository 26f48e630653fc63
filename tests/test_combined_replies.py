"""Combined results in a team group: each analysis mentions its sender (a `text_mention`,
which notifies them; the combined reply replies to no photo), and its products are numbered
within it (1.1, 1.2, then 2.1), so two analyses never read as one list."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from bot.telegram import render
from bot.telegram.callbacks import CallbackCodec
from sandbox.telegram import parse_html_entities
from storage import State
from tests.conftest import eventually
from tests.harness import ANNA, BEN, CARLA, Harness, bot_running
from tests.test_presentation import batch, make_sub

pytestmark = pytest.mark.timeout(120)

USERS = [ANNA, BEN, CARLA]
GROUP = {"id": -1001234500078, "type": "supergroup", "title": "Market team"}


def entity_text(plain: str, entity: dict[str, Any]) -> str:
    """The text an entity covers (Telegram counts offsets in UTF-16 code units)."""
    units = plain.encode("utf-16-le")
    start, end = 2 * entity["offset"], 2 * (entity["offset"] + entity["length"])
    return units[start:end].decode("utf-16-le")


def test_each_analysis_mentions_its_sender_and_numbers_its_products_within_it() -> None:
    anna = make_sub(id=1, user_id=101, user_name="Anna <Berg>", collection_name="Electronics")
    ben = make_sub(id=2, user_id=102, user_name="Ben", collection_name="Fußball")
    items = [(anna, batch(2, failed={1}), 3), (ben, batch(1, title="Adidas Ball"), 1)]
    for lang in ("en", "de"):
        text, markup = render.combined_results(lang, items, CallbackCodec(b"k" * 32), now=100)
        plain, entities = parse_html_entities(text)
        mentions = [e for e in entities if e["type"] == "text_mention"]
        assert [(e["user"]["id"], entity_text(plain, e)) for e in mentions] == [
            (101, "Anna <Berg>"),
            (102, "Ben"),
        ]
        lines = plain.splitlines()
        assert "1. 👤 Anna <Berg> – Electronics (3 photos)" in lines or (
            "1. 👤 Anna <Berg> – Electronics (3 Fotos)" in lines
        )
        assert any(line.startswith("1.1 Nike Air Max 90 Essential 0") for line in lines)
        assert any(re.match(r"❌ \w+ 1\.2 ", line) for line in lines), lines
        assert any(line.startswith("2. 👤 Ben – Fußball") for line in lines)
        assert any(line.startswith("2.1 Adidas Ball 0") for line in lines)
        assert not any(re.match(r"\d+\. (Nike|Adidas)", line) for line in lines), lines
        assert markup.inline_keyboard[0][0].text.startswith("1.")


def test_a_sender_who_is_not_a_user_is_named_without_a_mention() -> None:
    assert render.mention(-1001, "Market team") == "Market team"
    assert render.mention(7, "A&B") == '<a href="tg://user?id=7">A&amp;B</a>'


@pytest.mark.telegram_limits
async def test_combined_results_in_a_group_mention_every_sender(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """A group limited to 4 messages per 8 s (in the emulator and the bot): 6 photos from
    three members finishing together. Every combined reply mentions each sender it answers
    (Telegram's text_mention for that user), and numbers their products 1.1, 2.1 …"""
    group = await harness.chat(**GROUP)
    await harness.rs("/sandbox/telegram/limits", {"per_group_per_minute": 4, "group_window": 8})
    await harness.rs("/sandbox/config", {"analysis_seconds": 0.5})
    settings = settings_for(
        telegram_group_messages_per_minute=4,
        telegram_group_window_seconds=8,
        board_interval_seconds=60,
    )
    async with bot_running(settings) as runtime:
        for i in range(6):
            await harness.photo(USERS[i % 3], group, caption="/scan Electronics")

        async def all_notified() -> bool:
            counts: dict[str, int] = await runtime.store.count_by_state()
            return counts == {State.NOTIFIED.value: 6}

        await eventually(all_notified, within=90, interval=0.2, what="every result delivered")
    actions = await harness.sent(group["id"])
    combined = [a for a in actions if a["kind"] == "send" and "Results of" in (a["text"] or "")]
    assert combined, "some results were combined"
    names = {user["id"]: " ".join(filter(None, (user["first_name"], user.get("last_name"))))
             for user in USERS}  # fmt: skip
    for message in combined:
        text = message["text"] or ""
        blocks = re.findall(r"^(\d+)\. 👤 (.+?) – Electronics", text, flags=re.MULTILINE)
        count = int(text.split(" of ", 1)[1].split()[0])
        assert len(blocks) == count >= 2
        mentions = [e for e in message["entities"] if e["type"] == "text_mention"]
        assert [names[e["user"]["id"]] for e in mentions] == [name for _, name in blocks]
        for number, _ in blocks:
            assert re.search(rf"^{number}\.1 ", text, flags=re.MULTILINE), text
        assert message["reply_to"] is None
