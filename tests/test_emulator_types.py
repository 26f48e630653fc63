"""Every answer the emulator gives the bot parses with a second, independent Telegram library.

Real bot flows run through the emulator; then every Bot API answer in the calls log is validated
with aiogram's types (pydantic models written from the Bot API reference), not with
python-telegram-bot, which the bot itself uses and which forgives missing fields. A method the bot
calls that has no mapping here fails the test, so new methods get covered; a field aiogram does not
know (a typo, an invented field) fails too.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiogram import methods as am
from aiogram import types as at
from aiogram.methods.base import TelegramMethod
from pydantic import BaseModel, TypeAdapter

from sandbox.telegram import REACTION_EMOJI
from tests.conftest import eventually
from tests.harness import ANNA, BEN, CARLA, TOKEN, Harness, bot_running

ChatMember = (
    at.ChatMemberOwner
    | at.ChatMemberAdministrator
    | at.ChatMemberMember
    | at.ChatMemberRestricted
    | at.ChatMemberLeft
    | at.ChatMemberBanned
)
# Each Bot API method the bot (or this test) calls, and the type of its result.
RESULT_TYPES: dict[str, Any] = {
    "getMe": at.User,
    "logOut": bool,
    "close": bool,
    "getUpdates": list[at.Update],
    "setWebhook": bool,
    "deleteWebhook": bool,
    "getWebhookInfo": at.WebhookInfo,
    "sendMessage": at.Message,
    "editMessageText": at.Message | bool,
    "editMessageReplyMarkup": at.Message | bool,
    "deleteMessage": bool,
    "sendDocument": at.Message,
    "sendChatAction": bool,
    "setMessageReaction": bool,
    "answerCallbackQuery": bool,
    "setMyCommands": bool,
    "getMyCommands": list[at.BotCommand],
    "deleteMyCommands": bool,
    "getChat": at.ChatFullInfo,
    "getChatMember": ChatMember,
    "getChatAdministrators": list[ChatMember],
    "getFile": at.File,
}
MEMBER_BY_STATUS: dict[str, type[BaseModel]] = {
    "creator": at.ChatMemberOwner,
    "administrator": at.ChatMemberAdministrator,
    "member": at.ChatMemberMember,
    "restricted": at.ChatMemberRestricted,
    "left": at.ChatMemberLeft,
    "kicked": at.ChatMemberBanned,
}
TAGS = {
    "bold": "b|strong",
    "italic": "i|em",
    "underline": "u|ins",
    "strikethrough": "s|strike|del",
    "code": "code",
}
GROUP = {"id": -4004, "type": "supergroup", "title": "Typed team"}
BOT_ID = int(TOKEN.split(":", 1)[0])


def aiogram_returning() -> dict[str, Any]:
    """aiogram's own table: Bot API method name to the type it declares for the result."""
    table: dict[str, Any] = {}
    for name in dir(am):
        cls = getattr(am, name)
        if isinstance(cls, type) and issubclass(cls, TelegramMethod) and cls is not TelegramMethod:
            table[cls.__api_method__] = cls.__returning__
    return table


def unknown_fields(value: Any, path: str = "result") -> list[str]:
    """Fields aiogram does not know anywhere in a parsed answer (its models allow extras)."""
    found: list[str] = []
    if isinstance(value, BaseModel):
        found += [f"{path}.{key}" for key in value.model_extra or {}]
        for name in type(value).model_fields:
            found += unknown_fields(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found += unknown_fields(item, f"{path}[{index}]")
    return found


def check_member(member: dict[str, Any]) -> None:
    model = MEMBER_BY_STATUS[member["status"]]
    parsed = model.model_validate(member)
    assert unknown_fields(parsed) == [], member


async def validated_calls(harness: Harness) -> list[dict[str, Any]]:
    """Validate every answer in the calls log; returns the Bot API calls."""
    calls: list[dict[str, Any]] = (await harness.http.get("/sandbox/telegram/calls")).json()[
        "calls"
    ]
    # downloads are no Bot API calls; a long poll the stopped bot left behind has no answer yet
    api_calls = [c for c in calls if c["method"] != "download" and "answered_at" in c]
    unmapped = sorted({c["method"] for c in api_calls} - RESULT_TYPES.keys())
    assert unmapped == [], f"add these methods to RESULT_TYPES: {unmapped}"
    problems: list[str] = []
    for call in api_calls:
        method = call["method"]
        if not call["ok"]:
            assert isinstance(call["description"], str) and call["description"], call
            continue
        result = call["result"]
        expected = RESULT_TYPES[method]
        if expected is bool:
            if result is not True:
                problems.append(f"{method}: {result!r} is not true")
            continue
        try:
            parsed = TypeAdapter(expected).validate_python(result)
        except ValueError as exc:
            problems.append(f"{method}: {exc}")
            continue
        problems += [f"{method}: unknown field {f}" for f in unknown_fields(parsed)]
        if method == "getChatMember":
            check_member(result)
        if method == "getChatAdministrators":
            for member in result:
                check_member(member)
    assert problems == [], "\n".join(problems)
    return api_calls


def tag_contents(markup: str, tags: str) -> list[str]:
    """The plain text inside each <tag>…</tag> pair of the markup (not nested in itself)."""
    pieces = re.findall(rf"<({tags})(\s[^>]*)?>(.*?)</\1\s*>", markup, flags=re.DOTALL)
    texts = [
        html.unescape(re.sub(r"<[^>]*>", "", inner))
        for _, attributes, inner in pieces
        if "language-" not in attributes  # <pre><code class="language-x">: one pre entity
    ]
    return [t for t in texts if t]


def utf16_slice(text: str, offset: int, length: int) -> str:
    units = text.encode("utf-16-le")
    return units[2 * offset : 2 * (offset + length)].decode("utf-16-le")


def check_formatting(calls: list[dict[str, Any]]) -> int:
    """Each message sent or edited with parse_mode HTML carries plain text and entities that
    match its markup, counted in UTF-16 code units; returns how many carried entities."""
    formatted = 0
    for call in calls:
        params = call.get("params") or {}
        if not call.get("ok") or str(params.get("parse_mode", "")).upper() != "HTML":
            continue
        if not isinstance(call["result"], dict):
            continue
        key = "caption" if call["method"] == "sendDocument" else "text"
        markup = str(params.get(key, ""))
        message = call["result"]
        text = message.get(key, "")
        entities = message.get("entities" if key == "text" else "caption_entities", [])
        assert text == html.unescape(re.sub(r"<[^>]*>", "", markup)), (text, markup)
        for kind, tags in TAGS.items():
            got = [
                utf16_slice(text, e["offset"], e["length"]) for e in entities if e["type"] == kind
            ]
            assert Counter(got) == Counter(tag_contents(markup, tags)), (kind, markup, entities)
        formatted += bool(entities)
    return formatted


async def test_results_of_private_scans_parse(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    settings = settings_for(poll_initial_seconds=0.1, poll_max_seconds=0.2)
    async with bot_running(settings):
        await harness.album(BEN, count=2, caption="/scan Books")
        await harness.photo(ANNA, caption="/scan Electronics purchasePrice=12,5")
        analysing = await harness.wait_text(ANNA["id"], "Analysing")
        batch = analysing["text"].rsplit(" ", 1)[1]
        await harness.wait_text(ANNA["id"], "Results")
        await harness.wait_text(BEN["id"], "Results")
        await harness.text(ANNA, f"/results {batch}")
        again = await harness.wait_sent(
            ANNA["id"], lambda a: "Results" in (a["text"] or "") and bool(a["reply_markup"])
        )
        csv = again["reply_markup"]["inline_keyboard"][-1][0]["callback_data"]
        await harness.press(ANNA, ANNA["id"], again["message_id"], csv)
        await harness.wait_sent(ANNA["id"], lambda a: a["kind"] == "document")
        await harness.text(ANNA, "/status")
        await harness.wait_text(ANNA["id"], "Recently finished")
    calls = await validated_calls(harness)
    methods = {c["method"] for c in calls}
    assert {"getMe", "getUpdates", "sendMessage", "getFile", "sendDocument"} <= methods
    assert {"answerCallbackQuery", "setMyCommands"} <= methods
    assert check_formatting(calls) >= 2, "the replies are HTML and carry entities"


async def test_group_admin_checks_parse(harness: Harness, settings_for: Callable[..., Any]) -> None:
    await harness.chat(**GROUP, owner=ANNA["id"], admins=[BEN["id"], BOT_ID])
    async with bot_running(settings_for()):
        await harness.text(ANNA, "/start", GROUP)
        await harness.wait_text(GROUP["id"], "Resell Scan bot")
        await harness.text(ANNA, "/settings", GROUP)
        view = await harness.wait_text(GROUP["id"], "Settings of this chat")
        rows = view["reply_markup"]["inline_keyboard"]
        message_id = view["message_id"]
        await harness.press(ANNA, GROUP["id"], message_id, rows[2][0]["callback_data"])
        await harness.wait_sent(
            GROUP["id"], lambda a: a["kind"] == "edit" and "admins only" in (a["text"] or "")
        )
        await harness.press(BEN, GROUP["id"], message_id, rows[0][0]["callback_data"])
        await harness.wait_sent(
            GROUP["id"],
            lambda a: a["kind"] == "edit" and "Background removal: on" in (a["text"] or ""),
        )
        await harness.press(CARLA, GROUP["id"], message_id, rows[0][0]["callback_data"])

        async def carla_checked() -> bool:
            calls = (await harness.http.get("/sandbox/telegram/calls")).json()["calls"]
            return any(
                c["method"] == "getChatMember"
                and c.get("params", {}).get("user_id") == CARLA["id"]
                and "result" in c
                for c in calls
            )

        await eventually(carla_checked, what="the bot asking about Carla")
    calls = await validated_calls(harness)
    statuses = {
        c["params"]["user_id"]: c["result"]["status"]
        for c in calls
        if c["method"] == "getChatMember" and c["ok"]
    }
    assert statuses[ANNA["id"]] == "creator"
    assert statuses[BEN["id"]] == "administrator"
    assert statuses[CARLA["id"]] == "member"
    assert check_formatting(calls) >= 1


async def test_collection_pages_parse(harness: Harness, settings_for: Callable[..., Any]) -> None:
    async with bot_running(settings_for()):
        await harness.text(CARLA, "/collections")
        first = await harness.wait_text(CARLA["id"], "Sammlungen")
        forward = [b for b in first["reply_markup"]["inline_keyboard"][-1] if b["text"] == "▶"]
        await harness.press(CARLA, CARLA["id"], first["message_id"], forward[0]["callback_data"])
        await harness.wait_sent(CARLA["id"], lambda a: a["kind"] == "edit")
        await harness.text(CARLA, "/collections trad")
        await harness.wait_sent(
            CARLA["id"], lambda a: a["kind"] == "send" and "Trading" in str(a["reply_markup"])
        )
    calls = await validated_calls(harness)
    assert "editMessageText" in {c["method"] for c in calls}
    assert check_formatting(calls) >= 1


async def test_answers_the_bot_does_not_ask_for_yet_parse(harness: Harness) -> None:
    """Methods and updates the emulator offers beyond today's flows: reactions, edited messages,
    administrators, chat info, webhook info."""
    await harness.chat(**GROUP, owner=ANNA["id"], admins=[BEN["id"], BOT_ID])

    async def bot_api(method: str, **params: Any) -> Any:
        body = (await harness.http.post(f"/bot{TOKEN}/{method}", json=params)).json()
        assert body["ok"], body
        return body["result"]

    message_id = await harness.photo(ANNA, GROUP, caption="/scan Books", media_group_id="m1")
    await harness.text(BEN, "/status", GROUP)
    await harness.http.post(
        "/sandbox/telegram/edit",
        json={"chat_id": GROUP["id"], "message_id": message_id, "caption": "/scan Toys"},
    )
    updates = await bot_api("getUpdates", timeout=0, allowed_updates=[])
    assert [next(iter(u.keys() - {"update_id"})) for u in updates] == [
        "message",
        "message",
        "edited_message",
    ]
    await bot_api(
        "setMessageReaction",
        chat_id=GROUP["id"],
        message_id=message_id,
        reaction=[{"type": "emoji", "emoji": REACTION_EMOJI[0]}],
    )
    await bot_api("getChatAdministrators", chat_id=GROUP["id"])
    await bot_api("getChatMember", chat_id=GROUP["id"], user_id=ANNA["id"])
    await bot_api("getChat", chat_id=GROUP["id"])
    await bot_api("getWebhookInfo")
    await bot_api(
        "sendMessage",
        chat_id=GROUP["id"],
        text="<b>b</b> <i>i</i> <u>u</u> <s>s</s> <tg-spoiler>p</tg-spoiler> <code>c</code> "
        '<pre><code class="language-py">x</code></pre> <a href="https://example.com">l</a> '
        "<blockquote expandable>q</blockquote> 👀 <b>after emoji</b>",
        parse_mode="HTML",
        reply_markup={
            "inline_keyboard": [[{"text": "copy", "copy_text": {"text": "12345"}}]],
        },
    )
    calls = await validated_calls(harness)
    assert check_formatting(calls) == 1


def test_the_mapping_agrees_with_aiogram() -> None:
    table = aiogram_returning()
    for method, expected in RESULT_TYPES.items():
        assert method in table, f"{method} is no Bot API method aiogram knows"
        assert table[method] == expected, (method, table[method], expected)
