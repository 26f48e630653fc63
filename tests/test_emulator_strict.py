"""The Telegram emulator is as strict as the real Bot API where the bot meets it: direct HTTP
calls, no bot. Each rule the emulator enforces is checked here on both sides of its limit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.server import SandboxThread
from sandbox.telegram import REACTION_EMOJI, parse_html_entities

TOKEN = "123456:TEST-token-abcdefghijklmnop"
BOT_ID = 123456
USER = {"id": 501, "first_name": "Uma", "language_code": "en"}
GROUP = {"id": -3003, "type": "supergroup", "title": "Strict", "is_forum": True}


class Api:
    """The Bot API as a bot sees it, plus the emulator's control API."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        body: dict[str, Any] = self.http.post(f"/bot{TOKEN}/{method}", json=params).json()
        return body

    def ok(self, method: str, **params: Any) -> Any:
        body = self.call(method, **params)
        assert body["ok"], body
        return body["result"]

    def error(self, method: str, **params: Any) -> str:
        body = self.call(method, **params)
        assert body["ok"] is False, body
        assert body["error_code"] == 400, body
        description: str = body["description"]
        return description

    def ctl(self, path: str, **body: Any) -> dict[str, Any]:
        response = self.http.post(f"/sandbox/telegram/{path}", json=body)
        result: dict[str, Any] = response.json()
        assert response.status_code == 200, result
        return result

    def ctl_refused(self, path: str, **body: Any) -> dict[str, Any]:
        response = self.http.post(f"/sandbox/telegram/{path}", json=body)
        assert response.status_code == 400, response.text
        result: dict[str, Any] = response.json()
        return result

    def sent(self, chat_id: int) -> list[dict[str, Any]]:
        actions: list[dict[str, Any]] = self.http.get(
            "/sandbox/telegram/sent", params={"chat_id": chat_id}
        ).json()["actions"]
        return actions

    def user_message(self, **fields: Any) -> int:
        message_id: int = self.ctl("messages", **{"from": USER, **fields})["message_id"]
        return message_id

    def photo(self, **fields: Any) -> int:
        file_id = self.ctl("files", data_b64="AAEC", mime_type="image/jpeg")["file_id"]
        return self.user_message(photo_file_id=file_id, **fields)

    def updates(self, **params: Any) -> list[dict[str, Any]]:
        """Everything pending, acknowledged so the next call starts fresh."""
        updates: list[dict[str, Any]] = self.ok("getUpdates", timeout=0, **params)
        if updates:
            self.ok("getUpdates", timeout=0, offset=updates[-1]["update_id"] + 1)
        return updates


@pytest.fixture
def api(sandbox: SandboxThread) -> Iterator[Api]:
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        api = Api(http)
        api.ctl("chats", id=USER["id"], type="private", first_name=USER["first_name"])
        yield api


def keyboard(**button: Any) -> dict[str, Any]:
    return {"inline_keyboard": [[{"text": "press", **button}]]}


def send(api: Api, markup: dict[str, Any]) -> dict[str, Any]:
    return api.call("sendMessage", chat_id=USER["id"], text="hi", reply_markup=markup)


# Inline keyboards --------------------------------------------------------------------------------


def test_callback_data_is_limited_to_64_bytes_not_characters(api: Api) -> None:
    assert send(api, keyboard(callback_data="x" * 64))["ok"]
    assert send(api, keyboard(callback_data="👀" * 16))["ok"], "16 emoji are 64 bytes"
    for too_long in ("x" * 65, "👀" * 40, "ü" * 33):
        answer = send(api, keyboard(callback_data=too_long))
        assert answer == {
            "ok": False,
            "error_code": 400,
            "description": "Bad Request: BUTTON_DATA_INVALID",
        }, too_long
    sent = api.sent(USER["id"])
    assert len(sent) == 2, "refused messages are not sent"
    assert [a["message_id"] for a in sent] == [1, 2], "and take no message id"


def test_empty_callback_data_is_refused_as_telegram_does(api: Api) -> None:
    answer = send(api, keyboard(callback_data=""))
    assert answer["description"] == (
        "Bad Request: can't parse inline keyboard button: "
        "Text buttons are unallowed in the inline keyboard"
    )


def test_every_method_with_a_keyboard_checks_it(api: Api) -> None:
    too_long = keyboard(callback_data="é" * 33)  # 33 characters, 66 bytes
    fine = keyboard(callback_data="é" * 32)
    message = api.ok("sendMessage", chat_id=USER["id"], text="hi", reply_markup=fine)
    target = {"chat_id": USER["id"], "message_id": message["message_id"]}
    assert api.error("editMessageText", **target, text="new", reply_markup=too_long) == (
        "Bad Request: BUTTON_DATA_INVALID"
    )
    assert api.error("editMessageReplyMarkup", **target, reply_markup=too_long) == (
        "Bad Request: BUTTON_DATA_INVALID"
    )
    api.ok("editMessageReplyMarkup", **target, reply_markup=keyboard(callback_data="other"))
    multipart = api.http.post(
        f"/bot{TOKEN}/sendDocument",
        data={"chat_id": str(USER["id"]), "reply_markup": json.dumps(too_long)},
        files={"document": ("a.csv", b"a,b\n", "text/csv")},
    ).json()
    assert multipart["description"] == "Bad Request: BUTTON_DATA_INVALID"
    form = api.http.post(
        f"/bot{TOKEN}/sendMessage",
        data={"chat_id": str(USER["id"]), "text": "hi", "reply_markup": json.dumps(too_long)},
    ).json()
    assert form["description"] == "Bad Request: BUTTON_DATA_INVALID", "as PTB sends it"


@pytest.mark.parametrize(
    ("markup", "description"),
    [
        ({"inline_keyboard": "no"}, 'Bad Request: field "inline_keyboard" must be of type Array'),
        (
            {"inline_keyboard": [{"text": "a", "callback_data": "a"}]},
            'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup should be an Array '
            "of Arrays",
        ),
        (
            {"inline_keyboard": [["a"]]},
            "Bad Request: can't parse inline keyboard button: InlineKeyboardButton should be an "
            "Object",
        ),
        (
            {"inline_keyboard": [[{"callback_data": "a"}]]},
            "Bad Request: can't parse inline keyboard button: Can't find field \"text\"",
        ),
        (
            {"inline_keyboard": [[{"text": 5, "callback_data": "a"}]]},
            'Bad Request: can\'t parse inline keyboard button: Field "text" must be of type String',
        ),
        (
            keyboard(),
            "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the "
            "inline keyboard",
        ),
        (
            keyboard(callback_data="a", url="https://example.com"),
            "Bad Request: can't parse inline keyboard button: exactly one of the optional fields "
            "must be used, found url, callback_data",
        ),
        (
            keyboard(url="ftp://example.com"),
            "Bad Request: inline keyboard button URL 'ftp://example.com' is invalid: "
            "Unsupported URL protocol",
        ),
        (
            keyboard(url="not-a-url"),
            "Bad Request: inline keyboard button URL 'not-a-url' is invalid: Wrong HTTP URL",
        ),
        ("not an object", "Bad Request: can't parse reply keyboard markup JSON object"),
    ],
)
def test_keyboard_structure_is_validated(api: Api, markup: Any, description: str) -> None:
    answer = api.call("sendMessage", chat_id=USER["id"], text="hi", reply_markup=markup)
    assert answer["description"] == description
    assert api.sent(USER["id"]) == []


def test_copy_text_buttons_take_1_to_256_characters(api: Api) -> None:
    for good in ("a", "ä" * 256, "👀" * 256):
        assert send(api, keyboard(copy_text={"text": good}))["ok"], len(good)
    for bad in ("", "a" * 257):
        assert send(api, keyboard(copy_text={"text": bad}))["description"] == (
            "Bad Request: BUTTON_COPY_TEXT_INVALID"
        ), len(bad)
    assert send(api, keyboard(copy_text={}))["ok"] is False
    assert send(api, keyboard(copy_text="text"))["ok"] is False


# Chat members -------------------------------------------------------------------------------------

ADMIN_FIELDS = {
    "status",
    "user",
    "can_be_edited",
    "is_anonymous",
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
    "can_send_welcome_messages",
}


def test_owner_admin_and_member_carry_every_required_field(api: Api) -> None:
    chat = api.ctl("chats", **GROUP, owner=601, admins=[602, BOT_ID])["chat"]
    owner = api.ok("getChatMember", chat_id=chat["id"], user_id=601)
    assert owner["status"] == "creator"
    assert owner["is_anonymous"] is False
    assert owner["user"]["id"] == 601 and owner["user"]["is_bot"] is False
    admin = api.ok("getChatMember", chat_id=chat["id"], user_id=602)
    assert admin["status"] == "administrator"
    assert admin.keys() >= ADMIN_FIELDS
    assert all(isinstance(admin[k], bool) for k in ADMIN_FIELDS - {"status", "user"})
    assert {"can_pin_messages", "can_manage_topics"} <= admin.keys(), "a forum supergroup"
    assert not {"can_post_messages", "can_edit_messages"} & admin.keys(), "channels only"
    me = api.ok("getChatMember", chat_id=chat["id"], user_id=BOT_ID)
    assert me["status"] == "administrator" and me["user"]["is_bot"] is True
    member = api.ok("getChatMember", chat_id=chat["id"], user_id=603)
    assert member == {
        "status": "member",
        "user": {"id": 603, "is_bot": False, "first_name": "User 603"},
    }
    admins = api.ok("getChatAdministrators", chat_id=chat["id"])
    assert [(a["status"], a["user"]["id"]) for a in admins] == [
        ("creator", 601),
        ("administrator", 602),
    ], "the owner first; bots are left out as Telegram does"
    assert api.error("getChatMember", chat_id=-999, user_id=601) == "Bad Request: chat not found"


def test_owner_can_be_changed_and_removed(api: Api) -> None:
    api.ctl("chats", **GROUP, owner=601)
    api.ctl("chats", id=GROUP["id"], owner=602)
    assert api.ok("getChatMember", chat_id=GROUP["id"], user_id=601)["status"] == "member"
    assert api.ok("getChatMember", chat_id=GROUP["id"], user_id=602)["status"] == "creator"
    api.ctl("chats", id=GROUP["id"], owner=None)
    assert api.ok("getChatAdministrators", chat_id=GROUP["id"]) == []


# Formatting ---------------------------------------------------------------------------------------


def test_html_comes_back_as_text_and_entities_in_utf16_units(api: Api) -> None:
    html = (
        "👀 Price <b>12 €</b> <i>ok</i> <u>u</u> <s>s</s> <tg-spoiler>sp</tg-spoiler> "
        '<code>c</code> <pre><code class="language-python">x = 1</code></pre> '
        '<a href="https://example.com/a?b=1">link</a> <blockquote>q</blockquote> '
        "<blockquote expandable>e</blockquote> &lt;&amp;&gt;"
    )
    message = api.ok("sendMessage", chat_id=USER["id"], text=html, parse_mode="HTML")
    text = "👀 Price 12 € ok u s sp c x = 1 link q e <&>"
    assert message["text"] == text

    def at(piece: str) -> int:  # UTF-16 offset of the piece in the text
        return len(text[: text.index(piece)].encode("utf-16-le")) // 2

    assert at("12 €") == 9, "the eyes emoji is two UTF-16 code units"
    assert message["entities"] == [
        {"type": "bold", "offset": 9, "length": 4},
        {"type": "italic", "offset": at("ok"), "length": 2},
        {"type": "underline", "offset": at("u "), "length": 1},
        {"type": "strikethrough", "offset": at("s sp"), "length": 1},
        {"type": "spoiler", "offset": at("sp"), "length": 2},
        {"type": "code", "offset": at("c x"), "length": 1},
        {"type": "pre", "offset": at("x = 1"), "length": 5, "language": "python"},
        {
            "type": "text_link",
            "offset": at("link"),
            "length": 4,
            "url": "https://example.com/a?b=1",
        },
        {"type": "blockquote", "offset": at("q e"), "length": 1},
        {"type": "expandable_blockquote", "offset": at("e <"), "length": 1},
    ]
    assert api.sent(USER["id"])[0]["entities"] == message["entities"]


def test_entities_after_astral_characters_and_nesting() -> None:
    text, entities = parse_html_entities("𝄞🎉 <b>a<i>😀b</i></b>")
    assert text == "𝄞🎉 a😀b"
    assert entities == [
        {"type": "bold", "offset": 5, "length": 4},
        {"type": "italic", "offset": 6, "length": 3},
    ]


def test_captions_and_edits_carry_entities(api: Api) -> None:
    document = api.http.post(
        f"/bot{TOKEN}/sendDocument",
        data={"chat_id": str(USER["id"]), "caption": "🧾 <b>CSV</b>", "parse_mode": "HTML"},
        files={"document": ("a.csv", b"a,b\n", "text/csv")},
    ).json()["result"]
    assert document["caption"] == "🧾 CSV"
    assert document["caption_entities"] == [{"type": "bold", "offset": 3, "length": 3}]
    message = api.ok("sendMessage", chat_id=USER["id"], text="<b>a</b>", parse_mode="HTML")
    target = {"chat_id": USER["id"], "message_id": message["message_id"]}
    edited = api.ok("editMessageText", **target, text="<i>a</i>", parse_mode="HTML")
    assert edited["entities"] == [{"type": "italic", "offset": 0, "length": 1}], (
        "new formatting is a modification"
    )
    assert api.error("editMessageText", **target, text="<i>a</i>", parse_mode="html").startswith(
        "Bad Request: message is not modified"
    )
    plain = api.ok("editMessageText", **target, text="a")
    assert "entities" not in plain
    assert (
        api.error(
            "editMessageText", chat_id=USER["id"], message_id=document["message_id"], text="x"
        )
        == "Bad Request: there is no text in the message to edit"
    )


@pytest.mark.parametrize(
    ("html", "description"),
    [
        ("<b>open", 'Can\'t find end tag corresponding to start tag "b"'),
        ("€ <script>x</script>", 'Unsupported start tag "script" at byte offset 4'),
        ("<b><i>t</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ('<span class="x">a</span>', 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        ("<b", "Unclosed start tag at byte offset 0"),
        ('<tg-emoji emoji-id="x">👍</tg-emoji>', "Invalid custom emoji identifier specified"),
    ],
)
def test_invalid_html_is_refused_with_telegrams_description(
    api: Api, html: str, description: str
) -> None:
    assert api.error("sendMessage", chat_id=USER["id"], text=html, parse_mode="HTML") == (
        f"Bad Request: can't parse entities: {description}"
    )


def test_html_that_tdlib_accepts_is_accepted(api: Api) -> None:
    message = api.ok(
        "sendMessage", chat_id=USER["id"], text="R&D > 3 &unknown; &lt", parse_mode="HTML"
    )
    assert message["text"] == "R&D > 3 &unknown; <"
    assert "entities" not in message


def test_parse_mode_and_mentions(api: Api) -> None:
    assert api.error("sendMessage", chat_id=USER["id"], text="x", parse_mode="XML") == (
        "Bad Request: unsupported parse_mode"
    )
    unknown = '<a href="tg://user?id=777">who</a>'
    assert api.error("sendMessage", chat_id=USER["id"], text=unknown, parse_mode="HTML") == (
        "Bad Request: user not found"
    )
    api.user_message(text="hello")  # the emulator now knows the user
    known = f'<a href="tg://user?id={USER["id"]}">Uma</a>'
    message = api.ok("sendMessage", chat_id=USER["id"], text=known, parse_mode="HTML")
    [mention] = message["entities"]
    assert mention["type"] == "text_mention" and mention["user"]["id"] == USER["id"]


# Reactions ----------------------------------------------------------------------------------------


def react(api: Api, chat_id: int, message_id: int, *emoji: str) -> dict[str, Any]:
    return api.call(
        "setMessageReaction",
        chat_id=chat_id,
        message_id=message_id,
        reaction=[{"type": "emoji", "emoji": e} for e in emoji],
    )


def test_reaction_emoji_are_the_bot_api_list() -> None:
    from telegram.constants import ReactionEmoji  # an independent copy of the same list

    assert len(REACTION_EMOJI) == len(set(REACTION_EMOJI)) == 73
    assert set(REACTION_EMOJI) == {e.value.replace("\ufe0f", "") for e in ReactionEmoji}


def test_reactions_are_recorded_and_checked(api: Api) -> None:
    message_id = api.user_message(text="/scan Books")
    assert react(api, USER["id"], message_id, "👀") == {"ok": True, "result": True}
    assert react(api, USER["id"], message_id, "❤️")["ok"], "U+FE0F does not matter"
    assert react(api, USER["id"], message_id) == {"ok": True, "result": True}, "[] removes"
    reactions = [a for a in api.sent(USER["id"]) if a["kind"] == "reaction"]
    assert [(a["message_id"], a["emoji"]) for a in reactions] == [
        (message_id, ["👀"]),
        (message_id, ["❤️"]),
        (message_id, []),
    ]
    for wrong in ("🦆", "x", "👀👀"):
        assert react(api, USER["id"], message_id, wrong)["description"] == (
            "Bad Request: REACTION_INVALID"
        ), wrong
    assert react(api, USER["id"], message_id, "👍", "👎")["description"] == (
        "Bad Request: REACTIONS_TOO_MANY"
    )
    custom = api.call(
        "setMessageReaction",
        chat_id=USER["id"],
        message_id=message_id,
        reaction=[{"type": "custom_emoji", "custom_emoji_id": "5368324170671202286"}],
    )
    assert custom["description"] == "Bad Request: REACTION_INVALID"
    paid = api.call(
        "setMessageReaction",
        chat_id=USER["id"],
        message_id=message_id,
        reaction=[{"type": "paid"}],
    )
    assert paid["description"] == (
        "Bad Request: can't parse ReactionType: invalid reaction type specified"
    )
    assert react(api, USER["id"], 9999, "👀")["description"] == (
        "Bad Request: message to react not found"
    )
    assert react(api, -1, message_id, "👀")["description"] == "Bad Request: chat not found"
    assert len([a for a in api.sent(USER["id"]) if a["kind"] == "reaction"]) == 3


def test_a_chat_can_refuse_reactions(api: Api) -> None:
    api.ctl("chats", **GROUP, reactions_allowed=False)
    message_id = api.user_message(chat=GROUP, text="hi")
    assert react(api, GROUP["id"], message_id, "👀")["description"] == (
        "Bad Request: REACTION_INVALID"
    )
    assert api.ok("getChat", chat_id=GROUP["id"])["available_reactions"] == []
    api.ctl("chats", id=GROUP["id"], reactions_allowed=True)
    assert react(api, GROUP["id"], message_id, "👀")["ok"]
    assert "available_reactions" not in api.ok("getChat", chat_id=GROUP["id"])


# Edited messages and allowed_updates --------------------------------------------------------------


def test_a_user_edit_is_delivered_as_edited_message_with_the_whole_message(api: Api) -> None:
    message_id = api.photo(
        chat=GROUP, caption="/scan Books", media_group_id="g1", message_thread_id=7
    )
    [original] = api.updates()
    answer = api.ctl("edit", chat_id=GROUP["id"], message_id=message_id, caption="/scan Toys")
    assert answer["delivered"] is True
    [update] = api.updates()
    assert update["update_id"] == answer["update_id"] > original["update_id"]
    edited = update["edited_message"]
    before = original["message"]
    assert edited["caption"] == "/scan Toys"
    assert edited["caption_entities"] == [{"type": "bot_command", "offset": 0, "length": 5}]
    assert isinstance(edited["edit_date"], int)
    for kept in ("message_id", "date", "chat", "from", "photo", "media_group_id"):
        assert edited[kept] == before[kept], kept
    assert edited["message_thread_id"] == 7 and edited["is_topic_message"] is True
    bot_reply = api.ok(
        "sendMessage",
        chat_id=GROUP["id"],
        text="ok",
        reply_parameters={"message_id": message_id},
    )
    assert bot_reply["reply_to_message"]["caption"] == "/scan Toys", "the stored message changed"

    text_id = api.user_message(text="first")
    api.updates()
    api.ctl("edit", chat_id=USER["id"], message_id=text_id, text="second")
    [update] = api.updates()
    assert update["edited_message"]["text"] == "second"
    assert "entities" not in update["edited_message"]


def test_edits_that_telegram_would_not_allow_are_refused(api: Api) -> None:
    text_id = api.user_message(text="words")
    photo_id = api.photo()
    bot_message = api.ok("sendMessage", chat_id=USER["id"], text="bot")
    api.ctl_refused("edit", chat_id=USER["id"], message_id=text_id, caption="x")
    api.ctl_refused("edit", chat_id=USER["id"], message_id=photo_id, text="x")
    api.ctl_refused("edit", chat_id=USER["id"], message_id=bot_message["message_id"], text="x")
    api.ctl_refused("edit", chat_id=USER["id"], message_id=999, text="x")
    assert api.error(
        "editMessageText", chat_id=USER["id"], message_id=text_id, text="mine now"
    ) == ("Bad Request: message can't be edited")


def test_get_updates_honours_and_remembers_allowed_updates(api: Api) -> None:
    message_id = api.user_message(text="one")
    assert [u.keys() - {"update_id"} for u in api.updates(allowed_updates=["message"])] == [
        {"message"}
    ], "updates made before the call are still delivered"
    assert (
        api.ctl("edit", chat_id=USER["id"], message_id=message_id, text="two")["delivered"] is False
    )
    api.user_message(text="three")
    assert [u["message"]["text"] for u in api.updates()] == ["three"], "the list is remembered"
    assert api.ok("getUpdates", timeout=0, allowed_updates=[]) == []
    assert api.ctl("edit", chat_id=USER["id"], message_id=message_id, text="four")["delivered"]
    assert [u["edited_message"]["text"] for u in api.updates()] == ["four"]
    api.ok("getUpdates", timeout=0, allowed_updates=["callback_query"])
    assert api.ctl("messages", **{"from": USER}, text="five")["delivered"] is False
    assert api.updates() == []


# The calls log ------------------------------------------------------------------------------------


def test_every_answer_is_logged_with_its_result_or_error(api: Api) -> None:
    me = api.ok("getMe")
    api.call("sendMessage", chat_id=USER["id"], text="<b>x", parse_mode="HTML")
    api.http.post(
        f"/bot{TOKEN}/sendDocument",
        data={"chat_id": str(USER["id"])},
        files={"document": ("a.csv", b"a,b\n", "text/csv")},
    )
    calls = api.http.get("/sandbox/telegram/calls").json()["calls"]
    by_method = {c["method"]: c for c in calls}
    assert by_method["getMe"]["ok"] is True and by_method["getMe"]["result"] == me
    failed = by_method["sendMessage"]
    assert failed["ok"] is False and failed["error_code"] == 400
    assert failed["description"].startswith("Bad Request: can't parse entities")
    assert failed["params"]["text"] == "<b>x"
    upload = by_method["sendDocument"]
    assert upload["params"]["document"] == {
        "file_name": "a.csv",
        "mime_type": "text/csv",
        "size": 4,
    }
    assert upload["result"]["document"]["file_name"] == "a.csv"
