"""A Telegram Bot API emulator on loopback, enough for an unmodified python-telegram-bot.

Bot API: /bot<token>/<method> (form, multipart or JSON parameters, Telegram's answer shape
`{"ok": ..., "result" | "error_code", "description", "parameters"}`), file downloads at
/file/bot<token>/<path>. Control API under /sandbox/telegram/ to act as users (messages, photos,
albums, documents, edits of their messages, button presses, in private chats, groups and forum
topics), upgrade a group to a supergroup, close and delete forum topics, register file bytes,
read what the bot sent and every answer it got, and inject failures (429, timeouts, blocked
chats).

It is as strict as the real Bot API where the bot meets it, so the bot's tests fail for the right
reasons: inline keyboards are validated (64-byte `callback_data`, `copy_text` limits, exactly one
action per button), HTML is parsed the way TDLib parses it and comes back as plain text with
entities in UTF-16 code units, chat members carry every field the Bot API reference requires,
reactions are checked against the reference's emoji list, and `getUpdates` honours
`allowed_updates`. Error descriptions are Telegram's own where known; each one that could not be
checked against Telegram says so where it is raised.

Flood limits (FloodLimiter, on by default with the Bots FAQ's figures): messages the bot sends or
edits count, about 30 per second per bot, about 1 per second per chat after a small burst (3),
20 per minute per group; past a limit the call is answered 429 `Too Many Requests: retry after
N` with `parameters.retry_after`, and recorded as a `flood` action. `GET/POST
/sandbox/telegram/limits` reads the counters and changes the limits (also `advance` and `freeze`
the limiter's clock, for tests); `POST /sandbox/telegram/reset` puts the defaults back.

Known gaps: Markdown and MarkdownV2 are accepted but not parsed (text passes through without
entities); entities Telegram detects by itself in a bot's text (URLs, mentions, hashtags, bot
commands) are not added; leading and trailing whitespace is not trimmed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import hashlib
import json
import math
import os
import re
import signal
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.data import read_json as _json
from sandbox.data import sniff_image

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_DOWNLOAD = 20 * 1024 * 1024
MAX_PHOTO_UPLOAD = 10 * 1024 * 1024  # sendPhoto: "The photo must be at most 10 MB in size"
MAX_CALLBACK_DATA_BYTES = 64  # InlineKeyboardButton.callback_data: "1-64 bytes"
MAX_COPY_TEXT = 256  # CopyTextButton.text: "1-256 characters"
MAX_BATCH_MESSAGES = 10_000  # POST /sandbox/telegram/messages/batch: messages a call
# Parameters that are strings even when they look like JSON numbers.
STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "file_id",
        "url",
        "secret_token",
        "language_code",
        "description",
        "short_description",
        "name",
        "title",
        "query",
        "ip_address",
    }
)
# The tags TDLib's parse_html accepts (td/telegram/MessageEntity.cpp); "tg-time" is left out, so
# a date-time entity is refused as an unsupported tag.
ALLOWED_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)
_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}
# TDLib's MessageEntity::get_type_priority: the order of entities that start and end together.
_ENTITY_PRIORITY = {
    "blockquote": 0,
    "expandable_blockquote": 0,
    "pre": 11,
    "code": 20,
    "text_link": 49,
    "text_mention": 49,
    "bold": 90,
    "italic": 91,
    "underline": 92,
    "strikethrough": 93,
    "spoiler": 94,
    "custom_emoji": 99,
}
_SPACE = frozenset(" \t\r\n\v\0")  # td::is_space; "\0" is TDLib's end of the string
_PARSE_MODES = {"html": "HTML", "markdown": "Markdown", "markdownv2": "MarkdownV2"}

# ReactionTypeEmoji.emoji in the Bot API reference (core.telegram.org/bots/api#reactiontypeemoji):
# "Currently, it can be one of ...", in the reference's order and spelling (the zero width joiner
# sequences without U+FE0F). The same list is in aiogram 3 and, with U+FE0F in three of the
# joined sequences, in python-telegram-bot's telegram.constants.ReactionEmoji; variation
# selector 16 is therefore ignored when comparing (an assumption: not checked against Telegram).
REACTION_EMOJI = (
    "👍",
    "👎",
    "❤",
    "🔥",
    "🥰",
    "👏",
    "😁",
    "🤔",
    "🤯",
    "😱",
    "🤬",
    "😢",
    "🎉",
    "🤩",
    "🤮",
    "💩",
    "🙏",
    "👌",
    "🕊",
    "🤡",
    "🥱",
    "🥴",
    "😍",
    "🐳",
    "❤\u200d🔥",
    "🌚",
    "🌭",
    "💯",
    "🤣",
    "⚡",
    "🍌",
    "🏆",
    "💔",
    "🤨",
    "😐",
    "🍓",
    "🍾",
    "💋",
    "🖕",
    "😈",
    "😴",
    "😭",
    "🤓",
    "👻",
    "👨\u200d💻",
    "👀",
    "🎃",
    "🙈",
    "😇",
    "😨",
    "🤝",
    "✍",
    "🤗",
    "🫡",
    "🎅",
    "🎄",
    "☃",
    "💅",
    "🤪",
    "🗿",
    "🆒",
    "💘",
    "🙉",
    "🦄",
    "😘",
    "💊",
    "🙊",
    "😎",
    "👾",
    "🤷\u200d♂",
    "🤷",
    "🤷\u200d♀",
    "😡",
)
_REACTIONS = frozenset(REACTION_EMOJI)

# Update types delivered when allowed_updates is empty or was never given (Bot API, getUpdates:
# "all update types except chat_member, message_reaction, and message_reaction_count").
_NOT_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

# InlineKeyboardButton: "Exactly one of the optional fields must be used to specify type of the
# button."
BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
_BUTTON = "Bad Request: can't parse inline keyboard button: "


class ApiError(Exception):
    def __init__(
        self,
        code: int,
        description: str,
        retry_after: int | None = None,
        *,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after
        self.migrate_to_chat_id = migrate_to_chat_id


class FloodError(ApiError):
    """A 429 of the flood limiter (not an injected fault)."""

    def __init__(self, refusal: FloodRefusal) -> None:
        super().__init__(
            429, f"Too Many Requests: retry after {refusal.retry_after}", refusal.retry_after
        )
        self.scope = refusal.scope


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of entity offsets and lengths."""
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8", "surrogatepass"))


def _entities_error(message: str) -> ApiError:
    return ApiError(400, f"Bad Request: can't parse entities: {message}")


def _decode_html_entity(s: str, pos: int) -> tuple[int, int]:
    """TDLib's decode_html_entity: (code point or 0, position after it). `s` ends with "\\0"."""
    end = pos + 1
    code = 0
    if s[end] == "#":
        end += 1
        if s[end] == "x":
            end += 1
            while s[end] in "0123456789abcdefABCDEF" and s[end] != "\0":
                code = code * 16 + int(s[end], 16)
                end += 1
        else:
            while "0" <= s[end] <= "9":
                code = code * 10 + int(s[end])
                end += 1
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return 0, pos
    else:
        while s[end].isascii() and s[end].isalpha():
            end += 1
        code = {"lt": ord("<"), "gt": ord(">"), "amp": ord("&"), "quot": ord('"')}.get(
            s[pos + 1 : end], 0
        )
        if code == 0:
            return 0, pos
    return code, end + 1 if s[end] == ";" else end


def checked_link(url: str) -> str:
    """A simplified LinkManager::get_checked_link: the URL Telegram keeps for a link, or ""."""
    if not url or any(ch.isspace() for ch in url):
        return ""
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", url)
    if match is None:
        if ":" in url.split("/", 1)[0].split("?", 1)[0] and not re.match(r"[^:]+:\d", url):
            return ""  # some other scheme ("mailto:x", "javascript:x")
        url = "http://" + url
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("tg", "ton"):
        return url
    if scheme not in ("http", "https"):
        return ""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if "." not in host.strip(".") and host != "localhost":
        return ""
    rebuilt = f"{scheme}://{parts.netloc}{parts.path or '/'}"
    if parts.query or "?" in url:
        rebuilt += "?" + parts.query
    if parts.fragment or "#" in url:
        rebuilt += "#" + parts.fragment
    return rebuilt


def _link_user_id(url: str) -> int | None:
    match = re.fullmatch(r"tg://user\?id=(\d{1,19})", url, flags=re.IGNORECASE)
    return int(match.group(1)) if match else None


def sort_entities(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """TDLib's order: by offset, longer first, then by type priority."""
    return sorted(
        entities,
        key=lambda e: (e["offset"], -e["length"], _ENTITY_PRIORITY.get(e["type"], 50)),
    )


def parse_html_entities(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram HTML as TDLib's parse_html does: the plain text and its entities (offsets
    and lengths in UTF-16 code units), or ApiError 400 with Telegram's description.

    A `tg://user?id=` link comes back as a "text_mention" entity carrying only `{"user": {"id"}}`;
    the emulator fills in the user (or refuses an unknown one)."""
    s = text + "\0"
    n = len(text)
    out: list[str] = []
    utf16 = 0
    # open tags: name, argument, UTF-16 offset, index into `out`, expandable
    nested: list[tuple[str, str, int, int, bool]] = []
    entities: list[dict[str, Any]] = []
    bad_surrogate = False
    i = 0
    while i < n:
        ch = s[i]
        if ch == "&":
            code, after = _decode_html_entity(s, i)
            if code:
                out.append(chr(code))
                utf16 += 2 if code > 0xFFFF else 1
                bad_surrogate = bad_surrogate or 0xD800 <= code <= 0xDFFF
                i = after
                continue
        if ch != "<":
            out.append(ch)
            utf16 += 2 if ord(ch) > 0xFFFF else 1
            i += 1
            continue
        begin = i
        i += 1
        if s[i] != "/":
            while s[i] not in _SPACE and s[i] != ">":
                i += 1
            if i >= n:
                raise _entities_error(
                    f"Unclosed start tag at byte offset {_byte_offset(text, begin)}"
                )
            tag = s[begin + 1 : i].lower()
            if tag not in ALLOWED_TAGS:
                raise _entities_error(
                    f'Unsupported start tag "{tag}" at byte offset {_byte_offset(text, begin)}'
                )
            argument = ""
            expandable = False
            while s[i] != ">":
                while i < n and s[i] in _SPACE:
                    i += 1
                if i >= n:
                    raise _entities_error(
                        f"Unclosed start tag at byte offset {_byte_offset(text, begin)}"
                    )
                if s[i] == ">":
                    break
                name_begin = i
                while s[i] not in _SPACE and s[i] not in "=>":
                    i += 1
                name = s[name_begin:i]
                if not name:
                    raise _entities_error(
                        f'Empty attribute name in the tag "{tag}" at byte offset '
                        f"{_byte_offset(text, begin)}"
                    )
                while i < n and s[i] in _SPACE:
                    i += 1
                if s[i] != "=":  # an attribute without a value
                    expandable = expandable or (tag == "blockquote" and name == "expandable")
                    continue
                i += 1
                while i < n and s[i] in _SPACE:
                    i += 1
                if i >= n:
                    raise _entities_error(
                        f'Unclosed start tag "{tag}" at byte offset {_byte_offset(text, begin)}'
                    )
                if s[i] not in "'\"":
                    token_begin = i
                    while s[i].isascii() and (s[i].isalnum() or s[i] in ".-"):
                        i += 1
                    value = s[token_begin:i].lower()
                    if s[i] not in _SPACE and s[i] != ">":
                        raise _entities_error(
                            "Unexpected end of name token at byte offset "
                            f"{_byte_offset(text, token_begin)}"
                        )
                else:
                    quote = s[i]
                    i += 1
                    chars: list[str] = []
                    while i < n and s[i] != quote:
                        if s[i] == "&":
                            code, after = _decode_html_entity(s, i)
                            if code:
                                chars.append(chr(code))
                                i = after
                                continue
                        chars.append(s[i])
                        i += 1
                    if s[i] == quote and i < n:
                        i += 1
                    value = "".join(chars)
                if i >= n:
                    raise _entities_error(
                        f"Unclosed start tag at byte offset {_byte_offset(text, begin)}"
                    )
                if tag == "a" and name == "href":
                    argument = value
                elif tag == "code" and name == "class" and value.startswith("language-"):
                    argument = value[len("language-") :]
                elif tag == "span" and name == "class" and value.startswith("tg-"):
                    argument = value[len("tg-") :]
                elif tag == "tg-emoji" and name == "emoji-id":
                    argument = value
                elif tag == "blockquote" and name == "expandable":
                    expandable = True
            if tag == "span" and argument != "spoiler":
                raise _entities_error(
                    'Tag "span" must have class "tg-spoiler" at byte offset '
                    f"{_byte_offset(text, begin)}"
                )
            nested.append((tag, argument, utf16, len(out), expandable))
            i += 1
            continue
        # an end tag
        if not nested:
            raise _entities_error(f"Unexpected end tag at byte offset {_byte_offset(text, begin)}")
        while s[i] not in _SPACE and s[i] != ">":
            i += 1
        end_tag = s[begin + 2 : i].lower()
        while i < n and s[i] in _SPACE:
            i += 1
        if s[i] != ">":
            raise _entities_error(f"Unclosed end tag at byte offset {_byte_offset(text, begin)}")
        tag, argument, offset, out_begin, expandable = nested.pop()
        if end_tag and end_tag != tag:
            raise _entities_error(
                f"Unmatched end tag at byte offset {_byte_offset(text, begin)}, "
                f'expected "</{tag}>", found "</{end_tag}>"'
            )
        i += 1
        length = utf16 - offset
        if length <= 0:
            continue
        entity: dict[str, Any] = {"offset": offset, "length": length}
        if tag in _SIMPLE_TAGS:
            entities.append({"type": _SIMPLE_TAGS[tag], **entity})
        elif tag == "tg-emoji":
            if not re.fullmatch(r"-?\d{1,19}", argument) or not (0 < abs(int(argument)) < 2**63):
                raise _entities_error("Invalid custom emoji identifier specified")
            entities.append({"type": "custom_emoji", **entity, "custom_emoji_id": argument})
        elif tag == "a":
            url = argument or "".join(out[out_begin:])
            user_id = _link_user_id(url)
            if user_id is not None:
                entities.append({"type": "text_mention", **entity, "user": {"id": user_id}})
            elif url := checked_link(url):
                entities.append({"type": "text_link", **entity, "url": url})
        elif tag == "pre":
            last = entities[-1] if entities else None
            if (
                last is not None
                and last["type"] == "code"
                and (last["offset"], last["length"]) == (offset, length)
                and last.get("language")
            ):
                last["type"] = "pre"
            else:
                entities.append({"type": "pre", **entity})
        elif tag == "code":
            last = entities[-1] if entities else None
            if (
                last is not None
                and last["type"] == "pre"
                and (last["offset"], last["length"]) == (offset, length)
                and argument
            ):
                last["language"] = argument
            else:
                entities.append({"type": "code", **entity, "language": argument})
        else:  # blockquote
            kind = "expandable_blockquote" if expandable else "blockquote"
            entities.append({"type": kind, **entity})
    if nested:
        raise _entities_error(f'Can\'t find end tag corresponding to start tag "{nested[-1][0]}"')
    for entity in entities:
        if entity["type"] == "code" or not entity.get("language"):
            entity.pop("language", None)
    if bad_surrogate:
        raise _entities_error(
            "Text contains invalid Unicode characters after decoding HTML entities, check for "
            "unmatched surrogate code units"
        )
    return "".join(out), sort_entities(entities)


def parse_html(text: str) -> str:
    """Validate Telegram HTML and return the plain text, or raise ApiError like Telegram does."""
    return parse_html_entities(text)[0]


def _utf8(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def _check_button_url(url: Any, what: str = "inline keyboard button URL") -> None:
    if not isinstance(url, str):
        raise ApiError(400, f'{_BUTTON}Field "url" must be of type String')
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme and scheme not in ("http", "https", "tg", "ton"):
        raise ApiError(400, f"Bad Request: {what} '{url}' is invalid: Unsupported URL protocol")
    if not checked_link(url):
        raise ApiError(400, f"Bad Request: {what} '{url}' is invalid: Wrong HTTP URL")


def check_inline_button(button: Any) -> None:
    """One InlineKeyboardButton, refused with Telegram's description where it is known."""
    if not isinstance(button, dict):
        # From Telegram answers quoted in public bug reports, not checked against the server.
        raise ApiError(400, f"{_BUTTON}InlineKeyboardButton should be an Object")
    if "text" not in button:
        raise ApiError(400, f'{_BUTTON}Can\'t find field "text"')
    if not isinstance(button["text"], str):
        raise ApiError(400, f'{_BUTTON}Field "text" must be of type String')
    actions = [key for key in BUTTON_ACTIONS if key in button]
    if not actions:
        raise ApiError(400, f"{_BUTTON}Text buttons are unallowed in the inline keyboard")
    if len(actions) > 1:
        # The reference asks for exactly one; the official server would silently use one of
        # them. The emulator's own wording, to show the mistake.
        raise ApiError(
            400,
            f"{_BUTTON}exactly one of the optional fields must be used, found "
            + ", ".join(actions),
        )
    action = actions[0]
    value = button[action]
    if action == "callback_data":
        if not isinstance(value, str):
            raise ApiError(400, f'{_BUTTON}Field "callback_data" must be of type String')
        if not value:
            # What Telegram answers for "" (checked by a public live test suite).
            raise ApiError(400, f"{_BUTTON}Text buttons are unallowed in the inline keyboard")
        if len(_utf8(value)) > MAX_CALLBACK_DATA_BYTES:
            raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
    elif action == "copy_text":
        if not isinstance(value, dict):
            raise ApiError(400, f'{_BUTTON}Field "copy_text" must be of type Object')
        copy = value.get("text")
        if not isinstance(copy, str):
            raise ApiError(
                400, "Bad Request: can't parse CopyTextButton: Can't find field \"text\""
            )
        if not 1 <= len(copy) <= MAX_COPY_TEXT:
            # Telegram's answer for an empty text (checked by a public live test suite); assumed
            # to be the same for one over 256 characters.
            raise ApiError(400, "Bad Request: BUTTON_COPY_TEXT_INVALID")
    elif action == "url":
        _check_button_url(value)
    elif action == "web_app":
        url = value.get("url") if isinstance(value, dict) else None
        if not isinstance(url, str) or not url.lower().startswith("https://"):
            raise ApiError(
                400,
                f"Bad Request: inline keyboard button Web App URL '{url}' is invalid: "
                "Only HTTPS links are allowed",
            )


def check_reply_markup(markup: Any, *, inline_only: bool = False) -> None:
    """A reply_markup parameter as the Bot API reads it."""
    if markup is None:
        return
    if not isinstance(markup, dict):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    if "inline_keyboard" not in markup:
        if inline_only:
            # The emulator's wording: edits take an inline keyboard only.
            raise ApiError(400, "Bad Request: reply markup must be an inline keyboard")
        return
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list):
        raise ApiError(400, 'Bad Request: field "inline_keyboard" must be of type Array')
    for row in rows:
        if not isinstance(row, list):
            # From a Telegram answer quoted in a public bug report, not checked against the server.
            raise ApiError(
                400,
                'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup should be an '
                "Array of Arrays",
            )
        for button in row:
            check_inline_button(button)


def _command_entities(text: str | None) -> list[dict[str, Any]]:
    if not text or not text.startswith("/"):
        return []
    length = utf16_len(text.split(maxsplit=1)[0])
    return [{"type": "bot_command", "offset": 0, "length": length}]


def _update_type(update: dict[str, Any]) -> str:
    return next((key for key in update if key != "update_id"), "")


def _loggable(value: Any) -> Any:
    """A JSON copy of a parameter or result for the calls log (uploads as name, type and size)."""
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], bytes):
        return {"file_name": value[0], "mime_type": value[2], "size": len(value[1])}
    if isinstance(value, dict):
        return {str(k): _loggable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_loggable(v) for v in value]
    if isinstance(value, bytes):
        return {"size": len(value)}
    return json.loads(json.dumps(value, default=str))


# Flood control ------------------------------------------------------------------------------
#
# Source: Telegram's Bots FAQ, "My bot is hitting limits, how do I avoid this?"
# (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this). In short:
# inside one chat, avoid more than one message per second (short bursts over that may be
# allowed, then 429s follow); bulk notifications: not more than about 30 messages per second;
# not more than 20 messages per minute to the same group; long messages (over ~500 characters)
# hit the limits sooner. Everything beyond those three figures is the emulator's choice, listed
# in FloodLimiter's docstring.

# Methods that put a message in a chat or change one: each call counts against the limits
# (sendMediaGroup, copyMessages and forwardMessages as one message per item). The FAQ speaks of
# "messages" only; that edits count is not in the FAQ but widely observed (grammY's flood
# guide: about 20 edits per minute in a group). Everything else (answerCallbackQuery,
# setMessageReaction, sendChatAction, deleteMessage, getters, getUpdates, ...) is not counted.
COUNTED_METHODS = frozenset(
    {
        "sendmessage",
        "senddocument",
        "sendphoto",
        "sendvideo",
        "sendanimation",
        "sendaudio",
        "sendvoice",
        "sendvideonote",
        "sendsticker",
        "sendlocation",
        "sendvenue",
        "sendcontact",
        "sendpoll",
        "senddice",
        "sendmediagroup",
        "copymessage",
        "copymessages",
        "forwardmessage",
        "forwardmessages",
        "editmessagetext",
        "editmessagecaption",
        "editmessagereplymarkup",
        "editmessagemedia",
    }
)
# The FAQ's per-group limit; channels too (python-telegram-bot's wiki "Avoiding flood limits"
# quotes @BotSupport for that, unconfirmed by Telegram's documentation).
GROUP_TYPES = frozenset({"group", "supergroup", "channel"})
_EPS = 1e-9  # float slack when comparing limiter times


def message_cost(method: str, params: dict[str, Any]) -> int:
    """How many messages one call counts as: 0 for calls the limits ignore."""
    name = method.lower()
    if name not in COUNTED_METHODS:
        return 0
    items = params.get("media") if name == "sendmediagroup" else params.get("message_ids")
    if name in ("sendmediagroup", "copymessages", "forwardmessages") and isinstance(items, list):
        return max(1, len(items))
    return 1


@dataclass
class FloodLimits:
    """The settings of POST /sandbox/telegram/limits; the defaults are the FAQ's figures."""

    enabled: bool = True
    per_bot_per_second: int = 30  # any 1 s, all chats together; 0: off
    per_chat_per_second: float = 1.0  # token bucket refill, per chat; 0: off
    chat_burst: int = 3  # token bucket size: messages a chat may get at once
    per_group_per_minute: int = 20  # any 60 s, per group, supergroup or channel; 0: off
    group_window: float = 60.0  # the "minute" of that limit (tests shorten it)


@dataclass
class FloodRefusal:
    retry_after: int  # whole seconds, at least 1
    wait: float  # the exact time until the offending limit allows one more message
    scope: str  # "bot", "chat" or "group": the limit that needs the longest wait


@dataclass
class FloodTicket:
    """A message the limiter let through, to take back if the call then fails."""

    chat_id: int | None
    group: bool
    at: float
    cost: int
    method: str
    charged: bool  # the limits were on: buckets and windows took the messages


@dataclass
class _FloodCall:
    """The Bot API call being answered, for TelegramEmulator._flood_gate."""

    method: str
    params: dict[str, Any]
    passed: bool = False
    ticket: FloodTicket | None = None


_FLOOD_CALL: contextvars.ContextVar[_FloodCall | None] = contextvars.ContextVar(
    "flood_call", default=None
)


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class _ChatLog:
    type: str
    at: list[float] = field(default_factory=list)  # limiter time of every counted message
    methods: dict[str, int] = field(default_factory=dict)
    floods: int = 0


def _prune(window: deque[float], period: float, now: float) -> None:
    while window and window[0] <= now - period + _EPS:
        window.popleft()


def _window_wait(window: deque[float], limit: int, period: float, now: float) -> float:
    """Seconds until a sliding window of `period` seconds holds fewer than `limit` messages."""
    _prune(window, period, now)
    if len(window) < limit:
        return 0.0
    return window[len(window) - limit] + period - now


def _take_back(window: deque[float] | list[float], at: float, count: int) -> None:
    for _ in range(count):
        for i in range(len(window) - 1, -1, -1):
            if window[i] == at:
                del window[i]
                break


def busiest(times: list[float], period: float) -> int:
    """The most messages within any `period` seconds (a half-open window, as the limiter counts)."""
    ordered = sorted(times)
    best = start = 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - period + _EPS:
            start += 1
        best = max(best, end - start + 1)
    return best


class FloodLimiter:
    """Telegram's flood limits for messages the bot sends or edits, answered with 429.

    Model (Telegram publishes no algorithm, only the FAQ's figures):
    - per bot: a sliding window, at most `per_bot_per_second` counted messages in any second,
      all chats together. The FAQ says "about 30 per second" for bulk notifications; the
      emulator applies it to every message, replies included (some libraries read the FAQ as
      bulk-only).
    - per chat (every chat, private or not): a token bucket of `chat_burst` messages refilled
      at `per_chat_per_second`. The FAQ allows "short bursts" without a figure; 3 is the
      emulator's guess: a reply, a status message and a document at once pass, a fourth at once
      waits. `chat_burst` 1 is the strictest reading (one message per second, no burst).
    - per group, supergroup or channel, on top of the per-chat bucket: a sliding window, at
      most `per_group_per_minute` in any 60 seconds. So the 21st message within a minute is
      refused even when the first 20 came at once. (python-telegram-bot's AIORateLimiter
      paces groups with a leaky bucket that lets 20 out at once and then one every 3 s, which
      can send about 39 within the first minute: this window refuses the 21st of those.)
    - retry_after: the seconds until every limit the message broke allows it again, rounded up,
      at least 1. Telegram documents neither its values nor whether one flood wait also holds
      other chats; bots report longer waits after repeated floods. Not modelled: the FAQ's
      remark that long messages (over ~500 characters) hit the limits sooner, bans.
    - which calls count: the FAQ says "messages"; here COUNTED_METHODS, edits included.
    - a refused call counts nothing (it was not sent), and a counted call the method then
      refuses (400: empty text, "message is not modified", ...) is taken back; blocked chats
      (403) and injected faults are answered before the limiter looks. Whether Telegram counts
      failed calls is not documented.
    - an album (sendMediaGroup) is admitted when one more message is, then counts as all its
      items, so a 10-photo album to a private chat is not refused forever.

    The clock is injectable (time.monotonic by default); `advance` moves it forward and `freeze`
    stops it, for tests. Disabled: nothing is refused, the counters are still kept, and no
    bucket or window fills (they start empty when enabled again).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        """Default limits, the clock running unshifted, no history."""
        self.limits = FloodLimits()
        self.offset = 0.0  # seconds added by `advance`
        self.frozen_at: float | None = None
        self.clear()

    def clear(self) -> None:
        """Forget the history (counters, buckets, windows); keep the settings and the clock."""
        self._bot: deque[float] = deque()
        self._groups: dict[int, deque[float]] = {}
        self._buckets: dict[int, _Bucket] = {}
        self.chats: dict[int, _ChatLog] = {}
        self.counted = 0
        self.floods = 0

    def now(self) -> float:
        base = self.clock() if self.frozen_at is None else self.frozen_at
        return base + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def freeze(self, frozen: bool) -> None:
        """Stop the limiter's clock (only `advance` moves it), or let it run on from there."""
        if frozen and self.frozen_at is None:
            self.frozen_at = self.clock()
        elif not frozen and self.frozen_at is not None:
            self.offset += self.frozen_at - self.clock()  # continue from the frozen time
            self.frozen_at = None

    def _bucket(self, chat_id: int, now: float) -> _Bucket:
        limits = self.limits
        bucket = self._buckets.get(chat_id)
        if bucket is None:
            bucket = self._buckets[chat_id] = _Bucket(float(limits.chat_burst), now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(
            float(limits.chat_burst), bucket.tokens + elapsed * limits.per_chat_per_second
        )
        bucket.updated = now
        return bucket

    def _log(self, chat_id: int, chat_type: str) -> _ChatLog:
        log = self.chats.get(chat_id)
        if log is None:
            log = self.chats[chat_id] = _ChatLog(chat_type)
        return log

    def acquire(
        self, method: str, chat_id: int | None, chat_type: str, cost: int = 1
    ) -> FloodTicket | FloodRefusal:
        """Let one call's messages through (and count them), or say how long to wait."""
        limits = self.limits
        now = self.now()
        _prune(self._bot, 1.0, now)
        window: deque[float] | None = None
        if chat_id is not None and chat_type in GROUP_TYPES:
            window = self._groups.setdefault(chat_id, deque())
            _prune(window, self.limits.group_window, now)
        if limits.enabled:
            waits: list[tuple[float, str]] = []
            if limits.per_bot_per_second > 0:
                bot_wait = _window_wait(self._bot, limits.per_bot_per_second, 1.0, now)
                waits.append((bot_wait, "bot"))
            if chat_id is not None and limits.per_chat_per_second > 0:
                tokens = self._bucket(chat_id, now).tokens
                waits.append((max(0.0, (1.0 - tokens) / limits.per_chat_per_second), "chat"))
            if window is not None and limits.per_group_per_minute > 0:
                group_wait = _window_wait(
                    window, limits.per_group_per_minute, limits.group_window, now
                )
                waits.append((group_wait, "group"))
            wait, scope = max(waits, default=(0.0, ""))
            if wait > _EPS:
                self.floods += 1
                if chat_id is not None:
                    self._log(chat_id, chat_type).floods += 1
                return FloodRefusal(max(1, math.ceil(wait - _EPS)), wait, scope)
            self._bot.extend([now] * cost)
            if window is not None:
                window.extend([now] * cost)
            if chat_id is not None and limits.per_chat_per_second > 0:
                self._bucket(chat_id, now).tokens -= cost
        if chat_id is not None:
            log = self._log(chat_id, chat_type)
            log.at.extend([now] * cost)
            log.methods[method] = log.methods.get(method, 0) + cost
        self.counted += cost
        return FloodTicket(chat_id, window is not None, now, cost, method, limits.enabled)

    def refund(self, ticket: FloodTicket) -> None:
        """The call failed after all: its messages were not sent and do not count."""
        self.counted -= ticket.cost
        if ticket.charged:
            _take_back(self._bot, ticket.at, ticket.cost)
        if ticket.chat_id is None:
            return
        if ticket.charged:
            if ticket.group and ticket.chat_id in self._groups:
                _take_back(self._groups[ticket.chat_id], ticket.at, ticket.cost)
            bucket = self._buckets.get(ticket.chat_id)
            if bucket is not None:
                bucket.tokens = min(float(self.limits.chat_burst), bucket.tokens + ticket.cost)
        log = self.chats.get(ticket.chat_id)
        if log is not None:
            _take_back(log.at, ticket.at, ticket.cost)
            left = log.methods.get(ticket.method, 0) - ticket.cost
            if left > 0:
                log.methods[ticket.method] = left
            else:
                log.methods.pop(ticket.method, None)

    def report(self) -> dict[str, Any]:
        chats = {
            str(chat_id): {
                "type": log.type,
                "counted": len(log.at),
                "at": log.at,
                "methods": log.methods,
                "floods": log.floods,
                "busiest_second": busiest(log.at, 1.0),
                "busiest_minute": busiest(log.at, 60.0),
            }
            for chat_id, log in self.chats.items()
        }
        return {
            "limits": asdict(self.limits),
            "clock": self.now(),
            "frozen": self.frozen_at is not None,
            "offset": self.offset,
            "counted": self.counted,
            "floods": self.floods,
            "floods_by_chat": {k: v["floods"] for k, v in chats.items() if v["floods"]},
            "chats": chats,
        }


@dataclass
class Fault:
    method: str | None
    kind: str  # "429", "timeout" (slow but done), "hang" (slow, not done), "error"
    count: int = 1
    # 429: the retry_after answered; None (only with `until`): the seconds left until `until`,
    # rounded up, as a flood wait that counts down
    retry_after: int | None = 1
    seconds: float = 15.0
    chat_id: int | None = None
    message_id: int | None = None  # only calls about that message (an edit, a delete)
    methods: frozenset[str] | None = None  # lower-case method names; None: any (or `method`)
    error_code: int = 500  # "error": the status answered (404: a file path Telegram forgot)
    description: str | None = None  # "error": what it says (400: "Bad Request: message can't …")
    until: float | None = None  # the limiter's clock: every matching call fails until then


def _fault_from(body: dict[str, Any], now: float) -> Fault:
    """A fault from a POST /sandbox/telegram/faults body; ValueError for a bad field."""
    kind = str(body.get("kind", "429"))
    if kind not in ("429", "timeout", "hang", "error"):
        raise ValueError("kind must be 429, timeout, hang or error")
    methods = body.get("methods")
    if methods is not None and not (
        isinstance(methods, list) and methods and all(isinstance(m, str) for m in methods)
    ):
        raise ValueError("methods must be a non-empty list of method names")
    duration = body.get("duration")
    if duration is not None and (
        isinstance(duration, bool)
        or not isinstance(duration, int | float)
        or not math.isfinite(duration)
        or duration <= 0
    ):
        raise ValueError("duration must be a number of seconds > 0")
    retry_after = body.get("retry_after")
    if retry_after is not None and (
        isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 1
    ):
        raise ValueError("retry_after must be a whole number >= 1")
    chat_id = body.get("chat_id")
    if chat_id is not None and (isinstance(chat_id, bool) or not isinstance(chat_id, int)):
        raise ValueError("chat_id must be a whole number")
    message_id = body.get("message_id")
    if message_id is not None and (isinstance(message_id, bool) or not isinstance(message_id, int)):
        raise ValueError("message_id must be a whole number")
    error_code = body.get("error_code", 500)
    if error_code not in _ERROR_DESCRIPTIONS:
        raise ValueError(f"error_code must be one of {sorted(_ERROR_DESCRIPTIONS)}")
    if retry_after is None and duration is None:
        retry_after = 1
    description = body.get("description")
    if description is not None and not isinstance(description, str):
        raise ValueError("description must be a string")
    return Fault(
        method=body.get("method"),
        kind=kind,
        count=int(body.get("count", 1)),
        retry_after=retry_after,
        seconds=float(body.get("seconds", 15.0)),
        chat_id=chat_id,
        message_id=message_id,
        methods=frozenset(m.lower() for m in methods) if methods is not None else None,
        until=now + float(duration) if duration is not None else None,
        error_code=error_code,
        description=description,
    )


# What an "error" fault answers, by status (429 is a kind of its own, with retry_after).
_ERROR_DESCRIPTIONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass
class StoredFile:
    data: bytes
    unique_id: str
    path: str
    mime_type: str | None
    size: int  # the size Telegram reports (may be set larger than data for tests)


@dataclass
class BotIdentity:
    id: int = 0
    username: str = "ResellScanSandboxBot"
    first_name: str = "Resell Scan (sandbox)"
    can_read_all_group_messages: bool = False


@dataclass
class State:
    updates: list[dict[str, Any]] = field(default_factory=list)
    next_update_id: int = 1000
    message_ids: dict[int, int] = field(default_factory=dict)
    messages: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    chats: dict[int, dict[str, Any]] = field(default_factory=dict)
    admins: dict[int, set[int]] = field(default_factory=dict)
    owners: dict[int, int] = field(default_factory=dict)
    no_reactions: set[int] = field(default_factory=set)
    reactions: dict[tuple[int, int], list[dict[str, Any]]] = field(default_factory=dict)
    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    # Groups upgraded to supergroups: old id -> new id (the old id answers every call with
    # 400 and `parameters.migrate_to_chat_id`).
    migrated: dict[int, int] = field(default_factory=dict)
    # Forum topics created through the control API: (chat id, thread id) -> name, state
    # ("open", "closed", "deleted") and the topic's first message (forum_topic_created).
    topics: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    files: dict[str, StoredFile] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    commands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # None: never given, so the default set; Telegram remembers the last list it was given.
    allowed_updates: list[str] | None = None
    webhook_url: str = ""
    webhook_secret: str = ""
    file_counter: int = 0
    callback_counter: int = 0
    # Crash tests: SIGKILL this process the moment Telegram holds nothing undelivered (the
    # getUpdates offset confirmed the last update, or the webhook answered 200 for it).
    kill_on_confirm: int | None = None


class TelegramEmulator:
    def __init__(
        self,
        *,
        bot_username: str = "ResellScanSandboxBot",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.identity = BotIdentity(username=bot_username)
        self.state = State()
        self.flood = FloodLimiter(clock)
        self._changed: asyncio.Condition | None = None
        self._pusher: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None

    @property
    def changed(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def stop(self) -> None:
        if self._pusher:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher
        if self._http:
            await self._http.aclose()

    def routes(self) -> list[Route]:
        return [
            Route("/bot{token}/{method}", self.api, methods=["GET", "POST"]),
            Route("/file/bot{token}/{path:path}", self.download, methods=["GET"]),
            Route("/sandbox/telegram/reset", self.ctl_reset, methods=["POST"]),
            Route("/sandbox/telegram/bot", self.ctl_bot, methods=["POST"]),
            Route("/sandbox/telegram/chats", self.ctl_chat, methods=["POST"]),
            Route("/sandbox/telegram/upgrade", self.ctl_upgrade, methods=["POST"]),
            Route("/sandbox/telegram/topics", self.ctl_topic, methods=["POST"]),
            Route("/sandbox/telegram/files", self.ctl_file, methods=["POST"]),
            Route("/sandbox/telegram/messages", self.ctl_message, methods=["POST"]),
            Route("/sandbox/telegram/messages/batch", self.ctl_messages_batch, methods=["POST"]),
            Route("/sandbox/telegram/edit", self.ctl_edit, methods=["POST"]),
            Route("/sandbox/telegram/callback", self.ctl_callback, methods=["POST"]),
            Route("/sandbox/telegram/sent", self.ctl_sent, methods=["GET"]),
            Route("/sandbox/telegram/calls", self.ctl_calls, methods=["GET"]),
            Route("/sandbox/telegram/faults", self.ctl_faults, methods=["POST"]),
            Route("/sandbox/telegram/limits", self.ctl_limits, methods=["GET", "POST"]),
            Route("/sandbox/telegram/commands", self.ctl_commands, methods=["GET"]),
            Route("/sandbox/telegram/pending", self.ctl_pending, methods=["GET"]),
            Route("/sandbox/telegram/kill_on_confirm", self.ctl_kill, methods=["POST"]),
        ]

    # Bot API -------------------------------------------------------------------------------

    async def api(self, request: Request) -> Response:
        token = request.path_params["token"]
        method_name = request.path_params["method"]
        # Logged on arrival (the control API may read it while it is answered): the params
        # come once parsed, `ok` and `answered_at` once answered.
        call: dict[str, Any] = {"method": method_name, "at": time.time(), "params": {}}
        self.state.calls.append(call)
        head, sep, tail = token.partition(":")
        if not (sep and head.isdigit() and tail):
            return self._answer(call, error=ApiError(401, "Unauthorized"))
        self.identity.id = int(head)
        params = await _params(request)
        call["params"] = _loggable(params)
        handler = getattr(self, f"m_{method_name.lower()}", None)
        if handler is None:
            return self._answer(call, error=ApiError(404, "Not Found: method not found"))
        flood_call = _FloodCall(method_name, params)
        context = _FLOOD_CALL.set(flood_call)
        try:
            await self._apply_faults(method_name, params)
            try:
                result = await handler(params)
            except BaseException:
                if flood_call.ticket is not None:
                    self.flood.refund(flood_call.ticket)
                raise
            if message_cost(method_name, params) and not flood_call.passed:
                raise RuntimeError(f"m_{method_name.lower()} must call _flood_gate")
        except ApiError as exc:
            if exc.code == 429:
                self._record_flood(method_name, params, exc)
            return self._answer(call, error=exc)
        finally:
            _FLOOD_CALL.reset(context)
        return self._answer(call, result=result)

    def _flood_gate(self) -> None:
        """Flood control for the call being answered: every method that sends or edits a
        message calls this once it has checked its parameters and before it changes anything.
        Telegram's Bot API server and TDLib check parameters (markup, entities, lengths) before
        Telegram's servers see the message, so a malformed call is answered 400 even when the
        limits are exhausted; the emulator also answers its server-side refusals ("message is
        not modified", "message to edit not found") first, which is a simplification. Raises
        FloodError (429); a no-op outside a Bot API call or the second time."""
        flood_call = _FLOOD_CALL.get()
        if flood_call is None or flood_call.passed:
            return
        flood_call.passed = True
        flood_call.ticket = self._flood_check(flood_call.method, flood_call.params)

    def _flood_check(self, method: str, params: dict[str, Any]) -> FloodTicket | None:
        """Count a message against the flood limits, or raise FloodError (429)."""
        cost = message_cost(method, params)
        if not cost:
            return None
        chat_id: int | None = None
        chat_type = ""
        if params.get("chat_id") not in (None, ""):
            try:
                chat = self.state.chats.get(int(params["chat_id"]))
            except (TypeError, ValueError):
                chat = None
            if chat is None:
                return None  # the method refuses it (chat not found)
            chat_id, chat_type = chat["id"], chat["type"]
        outcome = self.flood.acquire(method, chat_id, chat_type, cost)
        if isinstance(outcome, FloodRefusal):
            raise FloodError(outcome)
        return outcome

    def _record_flood(self, method: str, params: dict[str, Any], exc: ApiError) -> None:
        """Every 429 the bot was answered, as a `flood` action: the limiter's (scope "bot",
        "chat" or "group") and injected faults' (scope "fault")."""
        chat_id = params.get("chat_id")
        with contextlib.suppress(TypeError, ValueError):
            chat_id = int(chat_id) if chat_id not in (None, "") else None
        message_id = params.get("message_id")
        self.state.actions.append(
            {
                "kind": "flood",
                "chat_id": chat_id,
                "message_id": message_id if isinstance(message_id, int) else None,
                "thread_id": params.get("message_thread_id"),
                "reply_to": None,
                "text": None,
                "entities": [],
                "reply_markup": None,
                "method": method,
                "retry_after": exc.retry_after,
                "scope": exc.scope if isinstance(exc, FloodError) else "fault",
                "clock": self.flood.now(),
                "at": time.time(),
            }
        )

    @staticmethod
    def _answer(
        call: dict[str, Any], *, result: Any = None, error: ApiError | None = None
    ) -> JSONResponse:
        """Answer the bot, and log exactly what it received."""
        if error is not None:
            response = _fail(error)
            call.update(ok=False, error_code=error.code, description=error.description)
            if error.retry_after is not None:
                call["retry_after"] = error.retry_after
            if error.migrate_to_chat_id is not None:
                call["migrate_to_chat_id"] = error.migrate_to_chat_id
        else:
            response = JSONResponse({"ok": True, "result": result})
            call.update(ok=True, result=json.loads(bytes(response.body))["result"])
        call["answered_at"] = time.time()
        return response

    async def _apply_faults(self, method: str, params: dict[str, Any]) -> None:
        chat_id = params.get("chat_id")
        with contextlib.suppress(TypeError, ValueError):
            chat_id = int(chat_id) if chat_id not in (None, "") else None
        now = self.flood.now()
        name = method.lower()
        for fault in list(self.state.faults):
            if fault.until is not None and now >= fault.until - _EPS:
                self.state.faults.remove(fault)  # its time is over
                continue
            if fault.method and fault.method.lower() != name:
                continue
            if fault.methods is not None and name not in fault.methods:
                continue
            if fault.chat_id is not None and fault.chat_id != chat_id:
                continue
            if fault.message_id is not None and str(fault.message_id) != str(
                params.get("message_id")
            ):
                continue
            if fault.until is None:  # a timed fault holds for its time, whatever the count
                fault.count -= 1
                if fault.count <= 0:
                    self.state.faults.remove(fault)
            if fault.kind == "429":
                retry_after = fault.retry_after
                if retry_after is None:
                    assert fault.until is not None
                    retry_after = max(1, math.ceil(fault.until - now - _EPS))
                raise ApiError(
                    429,
                    f"Too Many Requests: retry after {retry_after}",
                    retry_after=retry_after,
                )
            if fault.kind == "timeout":  # slow, then done: the caller may have given up
                await asyncio.sleep(fault.seconds)
                return
            if fault.kind == "hang":  # slow, then nothing was done
                await asyncio.sleep(fault.seconds)
                raise ApiError(502, "Bad Gateway")
            raise ApiError(
                fault.error_code, fault.description or _ERROR_DESCRIPTIONS[fault.error_code]
            )
        if (
            isinstance(chat_id, int)
            and chat_id in self.state.blocked
            and method.lower()
            in {
                "sendmessage",
                "senddocument",
                "sendphoto",
                "editmessagetext",
                "sendchataction",
                "setmessagereaction",
            }
        ):
            raise ApiError(403, "Forbidden: bot was blocked by the user")

    def _me(self) -> dict[str, Any]:
        return {
            "id": self.identity.id,
            "is_bot": True,
            "first_name": self.identity.first_name,
            "username": self.identity.username,
            "can_join_groups": True,
            "can_read_all_group_messages": self.identity.can_read_all_group_messages,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def m_getme(self, p: dict[str, Any]) -> Any:
        return self._me()

    async def m_logout(self, p: dict[str, Any]) -> Any:
        return True

    async def m_close(self, p: dict[str, Any]) -> Any:
        return True

    def _remember_allowed_updates(self, p: dict[str, Any]) -> None:
        allowed = p.get("allowed_updates")
        if isinstance(allowed, str):  # a form value that was not JSON
            with contextlib.suppress(ValueError):
                allowed = json.loads(allowed)
        if isinstance(allowed, list):
            self.state.allowed_updates = [str(a) for a in allowed]

    def _is_allowed(self, update_type: str) -> bool:
        allowed = self.state.allowed_updates
        if not allowed:  # never given, or [] ("all except ...")
            return update_type not in _NOT_BY_DEFAULT
        return update_type in allowed

    async def m_getupdates(self, p: dict[str, Any]) -> Any:
        if self.state.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        self._remember_allowed_updates(p)
        offset = int(p.get("offset") or 0)
        limit = int(p.get("limit") or 100)
        timeout = float(p.get("timeout") or 0)
        if offset:
            before = len(self.state.updates)
            self.state.updates = [u for u in self.state.updates if u["update_id"] >= offset]
            if before and not self.state.updates:
                self._confirmed_all()
        deadline = time.monotonic() + timeout
        async with self.changed:
            while not self.state.updates:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), remaining)
        return self.state.updates[:limit]

    async def m_setwebhook(self, p: dict[str, Any]) -> Any:
        url = str(p.get("url", ""))
        if url and not url.startswith(("http://", "https://")):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided")
        self._remember_allowed_updates(p)
        self.state.webhook_url = url
        self.state.webhook_secret = str(p.get("secret_token", ""))
        if p.get("drop_pending_updates"):
            self.state.updates.clear()
        if url and self._pusher is None:
            self._pusher = asyncio.create_task(self._push_loop())
        await self._notify()
        return True

    async def m_deletewebhook(self, p: dict[str, Any]) -> Any:
        self.state.webhook_url = ""
        if p.get("drop_pending_updates"):
            self.state.updates.clear()
        return True

    async def m_getwebhookinfo(self, p: dict[str, Any]) -> Any:
        info: dict[str, Any] = {
            "url": self.state.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self.state.updates),
        }
        if self.state.webhook_url and self.state.allowed_updates is not None:
            info["allowed_updates"] = self.state.allowed_updates
        return info

    async def _push_loop(self) -> None:
        """Deliver updates to the webhook, in order, retrying until accepted."""
        self._http = self._http or httpx.AsyncClient(timeout=10)
        delay = 0.05
        while True:
            async with self.changed:
                while not (self.state.webhook_url and self.state.updates):
                    await self.changed.wait()
            update = self.state.updates[0]
            try:
                response = await self._http.post(
                    self.state.webhook_url,
                    json=update,
                    headers={"X-Telegram-Bot-Api-Secret-Token": self.state.webhook_secret},
                )
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                if self.state.updates and self.state.updates[0] is update:
                    self.state.updates.pop(0)
                    if not self.state.updates:
                        self._confirmed_all()
                delay = 0.05
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _chat(self, chat_id: Any) -> dict[str, Any]:
        try:
            key = int(chat_id)
        except (TypeError, ValueError) as exc:
            raise ApiError(400, "Bad Request: chat not found") from exc
        if key in self.state.migrated:
            # Telegram's answer to any call for a group that became a supergroup; the new
            # id rides in `parameters` (Bot API, ResponseParameters.migrate_to_chat_id).
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                migrate_to_chat_id=self.state.migrated[key],
            )
        chat = self.state.chats.get(key)
        if chat is None:
            raise ApiError(400, "Bad Request: chat not found")
        return chat

    def _check_thread(self, chat: dict[str, Any], thread: Any) -> None:
        """A send into a forum topic that was deleted or closed, answered as Telegram does
        (the texts as Telegram's answers are quoted in public bug reports): "message thread
        not found" for a deleted one; TOPIC_CLOSED for a closed one (the bot is taken to lack
        the right to manage topics, which would let it post there)."""
        if thread is None:
            return
        try:
            key = (chat["id"], int(thread))
        except (TypeError, ValueError) as exc:
            raise ApiError(400, "Bad Request: message thread not found") from exc
        topic = self.state.topics.get(key)
        if topic is None:
            return  # a topic the emulator was not told about: taken to exist
        if topic["state"] == "deleted":
            raise ApiError(400, "Bad Request: message thread not found")
        if topic["state"] == "closed":
            raise ApiError(400, "Bad Request: TOPIC_CLOSED")

    def _next_message_id(self, chat_id: int) -> int:
        value = self.state.message_ids.get(chat_id, 0) + 1
        self.state.message_ids[chat_id] = value
        return value

    def _bot_message(self, p: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat = self._chat(p.get("chat_id"))
        markup = p.get("reply_markup")
        check_reply_markup(markup)
        reply = p.get("reply_parameters")
        reply_to = (
            reply.get("message_id") if isinstance(reply, dict) else p.get("reply_to_message_id")
        )
        self._check_thread(chat, p.get("message_thread_id"))
        original = None
        if reply_to is not None:
            original = self.state.messages.get((chat["id"], int(reply_to)))
            if original is None and not (
                isinstance(reply, dict) and reply.get("allow_sending_without_reply")
            ):
                raise ApiError(400, "Bad Request: message to be replied not found")
        self._flood_gate()
        message_id = self._next_message_id(chat["id"])
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": self._me(),
            **content,
        }
        thread = p.get("message_thread_id")
        if thread is not None:
            message["message_thread_id"] = int(thread)
            message["is_topic_message"] = True
        if original is not None:
            message["reply_to_message"] = original
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup  # only inline keyboards show on the message
        self.state.messages[(chat["id"], message_id)] = message
        return message

    def _resolve_mentions(self, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for entity in entities:
            if entity["type"] == "text_mention":
                user_id = int(entity["user"]["id"])
                user = self._me() if user_id == self.identity.id else self.state.users.get(user_id)
                if user is None:
                    # What Telegram answers for a text_mention entity of an unknown user (checked
                    # by a public live test suite); assumed the same for an HTML mention.
                    raise ApiError(400, "Bad Request: user not found")
                entity["user"] = user
        return entities

    def _text(
        self, p: dict[str, Any], key: str, limit: int
    ) -> tuple[str, str | None, list[dict[str, Any]]]:
        """The plain text (or caption) Telegram stores, the raw markup, and the entities."""
        raw = str(p.get(key, ""))
        mode = p.get("parse_mode")
        entities: list[dict[str, Any]] = []
        if mode:
            kind = _PARSE_MODES.get(str(mode).lower())
            if kind is None:
                raise ApiError(400, "Bad Request: unsupported parse_mode")
            if kind == "HTML":
                plain, entities = parse_html_entities(raw)
                entities = self._resolve_mentions(entities)
            else:
                plain = raw  # Markdown and MarkdownV2 are not parsed (see the module docstring)
        else:
            plain = raw
            given = p.get("entities" if key == "text" else "caption_entities")
            if isinstance(given, list):
                entities = sort_entities([e for e in given if isinstance(e, dict)])
        if key == "text" and not plain.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(plain) > limit:
            what = "message is too long" if key == "text" else "message caption is too long"
            raise ApiError(400, f"Bad Request: {what}")
        return plain, raw if mode else None, entities

    def _record(self, kind: str, message: dict[str, Any], **extra: Any) -> None:
        reply = message.get("reply_to_message")
        self.state.actions.append(
            {
                "kind": kind,
                "chat_id": message["chat"]["id"],
                "message_id": message["message_id"],
                "thread_id": message.get("message_thread_id"),
                "reply_to": reply["message_id"] if reply else None,
                "text": message.get("text") or message.get("caption"),
                "entities": message.get("entities") or message.get("caption_entities") or [],
                "reply_markup": message.get("reply_markup"),
                "at": time.time(),
                **extra,
            }
        )

    async def m_sendmessage(self, p: dict[str, Any]) -> Any:
        plain, raw, entities = self._text(p, "text", MAX_TEXT)
        content: dict[str, Any] = {"text": plain}
        if entities:
            content["entities"] = entities
        message = self._bot_message(p, **content)
        self._record("send", message, html=raw)
        await self._notify()
        return message

    def _editable(self, p: dict[str, Any]) -> tuple[tuple[int, int], dict[str, Any]]:
        chat = self._chat(p.get("chat_id"))
        key = (chat["id"], int(p.get("message_id", 0)))
        message = self.state.messages.get(key)
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if message.get("from", {}).get("id") != self.identity.id:
            raise ApiError(400, "Bad Request: message can't be edited")
        return key, message

    async def m_editmessagetext(self, p: dict[str, Any]) -> Any:
        key, message = self._editable(p)
        plain, raw, entities = self._text(p, "text", MAX_TEXT)
        markup = p.get("reply_markup")
        check_reply_markup(markup, inline_only=True)
        if "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        if (
            message.get("text") == plain
            and message.get("entities", []) == entities
            and message.get("reply_markup") == markup
        ):
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message "
                "content and reply markup are exactly the same as a current content "
                "and reply markup of the message",
            )
        self._flood_gate()
        message = {**message, "text": plain, "edit_date": int(time.time())}
        message.pop("entities", None)
        if entities:
            message["entities"] = entities
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        self.state.messages[key] = message
        self._record("edit", message, html=raw)
        await self._notify()
        return message

    async def m_editmessagereplymarkup(self, p: dict[str, Any]) -> Any:
        key, message = self._editable(p)
        markup = p.get("reply_markup")
        check_reply_markup(markup, inline_only=True)
        if message.get("reply_markup") == markup:
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message "
                "content and reply markup are exactly the same as a current content "
                "and reply markup of the message",
            )
        self._flood_gate()
        message = {**message, "edit_date": int(time.time())}
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        self.state.messages[key] = message
        self._record("edit_markup", message)
        return message

    async def m_deletemessage(self, p: dict[str, Any]) -> Any:
        chat = self._chat(p.get("chat_id"))
        key = (chat["id"], int(p.get("message_id", 0)))
        message = self.state.messages.pop(key, None)
        if message is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        self.state.reactions.pop(key, None)
        self._record("delete", message)
        return True

    async def m_senddocument(self, p: dict[str, Any]) -> Any:
        document = p.get("document")
        if not isinstance(document, tuple):
            raise ApiError(400, "Bad Request: there is no document in the request")
        name, blob, mime = document
        caption, raw, entities = (
            self._text(p, "caption", MAX_CAPTION) if p.get("caption") else ("", None, [])
        )
        self._chat(p.get("chat_id"))
        check_reply_markup(p.get("reply_markup"))
        self._flood_gate()
        file_id = self._store_file(blob, mime)
        doc = {
            "file_id": file_id,
            "file_unique_id": self.state.files[file_id].unique_id,
            "file_name": name,
            "mime_type": mime,
            "file_size": len(blob),
        }
        content: dict[str, Any] = {"document": doc}
        if caption:
            content["caption"] = caption
        if entities:
            content["caption_entities"] = entities
        message = self._bot_message(p, **content)
        self._record(
            "document",
            message,
            file_name=name,
            content_b64=base64.b64encode(blob).decode(),
            html=raw,
        )
        await self._notify()
        return message

    async def m_sendphoto(self, p: dict[str, Any]) -> Any:
        """sendPhoto with an uploaded file (as the bot sends charts) or a known file_id. Like
        Telegram, a photo must be an image (JPEG, PNG, WebP) up to 10 MB; the message carries
        the usual two sizes."""
        photo = p.get("photo")
        if isinstance(photo, tuple):
            _, blob, _ = photo
            kind = sniff_image(blob)
            if kind is None:
                raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
            if len(blob) > MAX_PHOTO_UPLOAD:
                raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
            file_id = self._store_file(blob, kind)
        elif isinstance(photo, str) and photo in self.state.files:
            file_id, blob = photo, self.state.files[photo].data
        else:
            raise ApiError(400, "Bad Request: there is no photo in the request")
        caption, raw, entities = (
            self._text(p, "caption", MAX_CAPTION) if p.get("caption") else ("", None, [])
        )
        self._chat(p.get("chat_id"))
        check_reply_markup(p.get("reply_markup"))
        self._flood_gate()
        unique = self.state.files[file_id].unique_id
        sizes = [
            {"file_id": f"{file_id}_thumb", "file_unique_id": unique + "t", "width": 90,
             "height": 90, "file_size": min(len(blob), 1500)},
            {"file_id": file_id, "file_unique_id": unique, "width": 800, "height": 450,
             "file_size": len(blob)},
        ]  # fmt: skip
        content: dict[str, Any] = {"photo": sizes}
        if caption:
            content["caption"] = caption
        if entities:
            content["caption_entities"] = entities
        message = self._bot_message(p, **content)
        self._record("photo", message, content_b64=base64.b64encode(blob).decode(), html=raw)
        await self._notify()
        return message

    async def m_sendchataction(self, p: dict[str, Any]) -> Any:
        self._chat(p.get("chat_id"))
        return True

    async def m_setmessagereaction(self, p: dict[str, Any]) -> Any:
        """setMessageReaction. Error texts: "message to react not found" was checked against
        Telegram by a public live test suite; REACTION_INVALID and REACTIONS_TOO_MANY are the
        errors of messages.sendReaction as the official server words them; the parsing errors
        follow the official server's source (telegram-bot-api, Client.cpp)."""
        reaction = p.get("reaction", [])
        if isinstance(reaction, str):
            try:
                reaction = json.loads(reaction) if reaction else []
            except ValueError as exc:
                raise ApiError(400, "Bad Request: can't parse reaction types JSON object") from exc
        if not isinstance(reaction, list):
            raise ApiError(400, "Bad Request: expected an Array of ReactionType")
        for item in reaction:
            if not isinstance(item, dict):
                raise ApiError(400, "Bad Request: can't parse ReactionType: expected an Object")
            if "type" not in item:
                raise ApiError(
                    400, "Bad Request: can't parse ReactionType: Can't find field \"type\""
                )
            if item["type"] not in ("emoji", "custom_emoji"):
                raise ApiError(
                    400, "Bad Request: can't parse ReactionType: invalid reaction type specified"
                )
            if item["type"] == "emoji" and not isinstance(item.get("emoji"), str):
                raise ApiError(
                    400, "Bad Request: can't parse ReactionType: Can't find field \"emoji\""
                )
        if p.get("chat_id") in (None, ""):
            raise ApiError(400, "Bad Request: chat_id is empty")
        chat = self._chat(p.get("chat_id"))
        try:
            key = (chat["id"], int(p.get("message_id") or 0))
        except (TypeError, ValueError):
            key = (chat["id"], 0)
        if key not in self.state.messages:
            raise ApiError(400, "Bad Request: message to react not found")
        for item in reaction:
            if item["type"] == "custom_emoji":  # no emulated chat allows custom emoji
                raise ApiError(400, "Bad Request: REACTION_INVALID")
            if str(item["emoji"]).replace("\ufe0f", "") not in _REACTIONS:
                raise ApiError(400, "Bad Request: REACTION_INVALID")
            if chat["id"] in self.state.no_reactions:
                raise ApiError(400, "Bad Request: REACTION_INVALID")
        if len(reaction) > 1:  # "bots can set up to one reaction per message"
            raise ApiError(400, "Bad Request: REACTIONS_TOO_MANY")
        self.state.reactions[key] = reaction
        message = self.state.messages[key]
        self.state.actions.append(
            {
                "kind": "reaction",
                "chat_id": chat["id"],
                "message_id": key[1],
                "thread_id": message.get("message_thread_id"),
                "reply_to": None,
                "text": None,
                "reply_markup": None,
                "emoji": [item["emoji"] for item in reaction],
                "is_big": bool(p.get("is_big")),
                "at": time.time(),
            }
        )
        await self._notify()
        return True

    async def m_answercallbackquery(self, p: dict[str, Any]) -> Any:
        self.state.actions.append(
            {
                "kind": "callback_answer",
                "chat_id": None,
                "callback_query_id": p.get("callback_query_id"),
                "text": p.get("text"),
                "at": time.time(),
            }
        )
        return True

    async def m_setmycommands(self, p: dict[str, Any]) -> Any:
        scope = p.get("scope") or {"type": "default"}
        key = json.dumps(
            {"scope": scope, "language_code": p.get("language_code") or ""}, sort_keys=True
        )
        commands = p.get("commands")
        if not isinstance(commands, list):
            raise ApiError(400, "Bad Request: commands must be an array")
        self.state.commands[key] = commands
        return True

    async def m_getmycommands(self, p: dict[str, Any]) -> Any:
        key = json.dumps(
            {
                "scope": p.get("scope") or {"type": "default"},
                "language_code": p.get("language_code") or "",
            },
            sort_keys=True,
        )
        return self.state.commands.get(key, [])

    async def m_deletemycommands(self, p: dict[str, Any]) -> Any:
        return True

    async def m_getchat(self, p: dict[str, Any]) -> Any:
        chat = self._chat(p.get("chat_id"))
        full = {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }
        if chat["id"] in self.state.no_reactions:
            full["available_reactions"] = []  # omitted: every emoji reaction is allowed
        return full

    def _member_user(self, user_id: int) -> dict[str, Any]:
        if user_id == self.identity.id:
            return self._me()
        return self.state.users.get(
            user_id, {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"}
        )

    def _member(self, chat: dict[str, Any], user_id: int) -> dict[str, Any]:
        """A ChatMember with every field the Bot API reference marks as always present."""
        user = self._member_user(user_id)
        if chat["type"] != "private" and self.state.owners.get(chat["id"]) == user_id:
            return {"status": "creator", "user": user, "is_anonymous": False}
        if chat["type"] != "private" and user_id in self.state.admins.get(chat["id"], set()):
            admin: dict[str, Any] = {
                "status": "administrator",
                "user": user,
                "can_be_edited": False,
                "is_anonymous": False,
                "can_manage_chat": True,
                "can_delete_messages": True,
                "can_manage_video_chats": False,
                "can_restrict_members": True,
                "can_promote_members": False,
                "can_change_info": True,
                "can_invite_users": True,
                "can_post_stories": False,
                "can_edit_stories": False,
                "can_delete_stories": False,
                "can_send_welcome_messages": False,
                # "for groups and supergroups only"
                "can_pin_messages": True,
                "can_manage_tags": False,
            }
            if chat["type"] == "supergroup":
                admin["can_manage_topics"] = bool(chat.get("is_forum"))  # "supergroups only"
            return admin
        return {"status": "member", "user": user}

    async def m_getchatmember(self, p: dict[str, Any]) -> Any:
        chat = self._chat(p.get("chat_id"))
        try:
            user_id = int(p.get("user_id") or 0)
        except (TypeError, ValueError):
            user_id = 0
        if user_id <= 0:
            raise ApiError(400, "Bad Request: invalid user_id specified")
        return self._member(chat, user_id)

    async def m_getchatadministrators(self, p: dict[str, Any]) -> Any:
        """Owner first, then the admins; like Telegram, no bots ("which aren't bots")."""
        chat = self._chat(p.get("chat_id"))
        if chat["type"] == "private":
            # Telegram's answer, as bots that handle it quote it.
            raise ApiError(400, "Bad Request: there are no administrators in the private chat")
        ids: list[int] = []
        owner = self.state.owners.get(chat["id"])
        if owner is not None:
            ids.append(owner)
        ids += sorted(self.state.admins.get(chat["id"], set()) - set(ids))
        members = [self._member(chat, uid) for uid in ids]
        return [m for m in members if not m["user"].get("is_bot")]

    async def m_getfile(self, p: dict[str, Any]) -> Any:
        file_id = str(p.get("file_id", ""))
        stored = self.state.files.get(file_id)
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if stored.size > MAX_DOWNLOAD:
            raise ApiError(400, "Bad Request: file is too big")
        return {
            "file_id": file_id,
            "file_unique_id": stored.unique_id,
            "file_size": stored.size,
            "file_path": stored.path,
        }

    async def download(self, request: Request) -> Response:
        """A file's bytes. Logged as method "download" (also when it fails), and injected
        faults apply to it under that name (`methods: ["download"]`), answered like the Bot
        API's errors (Telegram's file server answers JSON errors too)."""
        path = request.path_params["path"]
        call: dict[str, Any] = {"method": "download", "path": path, "at": time.time()}
        self.state.calls.append(call)
        try:
            await self._apply_faults("download", {})
        except ApiError as exc:
            return self._answer(call, error=exc)
        for stored in self.state.files.values():
            if stored.path == path:
                call.update(ok=True, answered_at=time.time())
                return Response(
                    stored.data, media_type=stored.mime_type or "application/octet-stream"
                )
        return self._answer(call, error=ApiError(404, "Not Found"))

    def _store_file(self, blob: bytes, mime: str | None, size: int | None = None) -> str:
        self.state.file_counter += 1
        n = self.state.file_counter
        digest = hashlib.sha256(blob + str(n).encode()).hexdigest()
        file_id = f"AgAC{digest[:28]}{n}"
        ext = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}.get(
            mime or "", "bin"
        )
        self.state.files[file_id] = StoredFile(
            data=blob,
            # Like Telegram's: the same file (the same bytes, resent or forwarded) keeps its
            # file_unique_id, while every upload gets its own file_id.
            unique_id=f"AQAD{hashlib.sha256(blob).hexdigest()[:12]}",
            path=f"files/file_{n}.{ext}",
            mime_type=mime,
            size=size if size is not None else len(blob),
        )
        return file_id

    # Control API ---------------------------------------------------------------------------

    async def ctl_reset(self, request: Request) -> Response:
        """Forget everything; the flood limits go back to their defaults (enabled, Telegram's
        figures), with no history, the clock running and no `advance` offset."""
        self.state = State()
        self.identity.can_read_all_group_messages = False
        self.flood.reset()
        return JSONResponse({"ok": True})

    async def ctl_limits(self, request: Request) -> Response:
        """Telegram's flood limits (see FloodLimiter).

        GET: `limits` (the settings below), `clock` (the limiter's time now, seconds), `frozen`,
        `offset`, `counted` (messages that counted), `floods` (429s the limiter answered),
        `floods_by_chat`, and per chat (`chats`, keyed by chat id as a string): `type`,
        `counted`, `at` (the limiter time of every message that counted; an album's items
        each), `methods`, `floods`, `busiest_second`, `busiest_minute`.

        POST (JSON, every field optional; answers like GET): `enabled` (bool),
        `per_bot_per_second` (int, 0: off), `per_chat_per_second` (number, 0: off),
        `chat_burst` (int >= 1), `per_group_per_minute` (int, 0: off), `group_window` (the
        length of that "minute" in seconds, default 60: tests shorten it); test-only: `advance`
        (seconds >= 0: move the limiter's clock forward, nothing else), `freeze` (bool: stop the
        limiter's clock so only `advance` moves it; false lets it run on from there),
        `clear` (true: forget counters, buckets and windows, keep the settings). Anything else,
        or a wrong type, is refused with 400 and nothing changes."""
        if request.method == "POST":
            body = await _json(request)
            try:
                updates = _limit_updates(body)
            except ValueError as exc:
                return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
            if body.get("clear"):
                self.flood.clear()
            for key, value in updates.items():
                setattr(self.flood.limits, key, value)
            if "freeze" in body:
                self.flood.freeze(bool(body["freeze"]))
            if "advance" in body:
                self.flood.advance(float(body["advance"]))
        return JSONResponse({"ok": True, **self.flood.report()})

    async def ctl_bot(self, request: Request) -> Response:
        body = await _json(request)
        for key in ("username", "first_name", "can_read_all_group_messages"):
            if key in body:
                setattr(self.identity, key, body[key])
        return JSONResponse({"ok": True, "bot": self._me()})

    async def ctl_chat(self, request: Request) -> Response:
        """Create or change a chat: id, type, title, is_forum, admins (user ids), owner (a user
        id, answered as "creator"), blocked, reactions_allowed (false: setMessageReaction is
        refused with REACTION_INVALID)."""
        body = await _json(request)
        chat = self._register_chat(body)
        if "admins" in body:
            self.state.admins[chat["id"]] = {int(a) for a in body["admins"]}
        if "owner" in body:
            if body["owner"] is None:
                self.state.owners.pop(chat["id"], None)
            else:
                self.state.owners[chat["id"]] = int(body["owner"])
        if "blocked" in body:
            (self.state.blocked.add if body["blocked"] else self.state.blocked.discard)(chat["id"])
        if "reactions_allowed" in body:
            if body["reactions_allowed"]:
                self.state.no_reactions.discard(chat["id"])
            else:
                self.state.no_reactions.add(chat["id"])
        return JSONResponse({"ok": True, "chat": chat})

    async def ctl_upgrade(self, request: Request) -> Response:
        """A group becomes a supergroup, as when an admin turns on the visible history or the
        group grows: `chat_id` (a "group"), `new_chat_id` (default -100 followed by the old
        id's digits), `from` (the admin, for the service messages), `updates` (default true:
        the old chat gets a service message with `migrate_to_chat_id` and the new one a
        service message with `migrate_from_chat_id`, as updates). Afterwards every call for
        the old id is answered 400 "Bad Request: group chat was upgraded to a supergroup
        chat" with `parameters.migrate_to_chat_id`; the new chat keeps the admins, owner,
        blocked and reactions settings."""
        body = await _json(request)
        try:
            old = int(body["chat_id"])
        except (KeyError, TypeError, ValueError):
            return JSONResponse({"ok": False, "error": "chat_id is required"}, status_code=400)
        chat = self.state.chats.get(old)
        if chat is None or chat["type"] != "group" or old in self.state.migrated:
            return JSONResponse(
                {"ok": False, "error": "only a known basic group (type group) can be upgraded"},
                status_code=400,
            )
        try:
            new = int(body.get("new_chat_id") or f"-100{abs(old)}")
        except (TypeError, ValueError):
            return JSONResponse({"ok": False, "error": "new_chat_id must be an integer"}, 400)
        if new in self.state.chats or new >= 0:
            return JSONResponse(
                {"ok": False, "error": "new_chat_id is taken or not a group id (negative)"},
                status_code=400,
            )
        supergroup = self._register_chat(
            {"id": new, "type": "supergroup", "title": chat.get("title", f"Group {old}")}
        )
        if old in self.state.admins:
            self.state.admins[new] = set(self.state.admins[old])
        if old in self.state.owners:
            self.state.owners[new] = self.state.owners[old]
        for group in (self.state.blocked, self.state.no_reactions):
            if old in group:
                group.add(new)
        self.state.migrated[old] = new
        update_ids: list[int | None] = []
        if body.get("updates", True):
            admin = self._user(_sender(body))
            for where, field_name, value in (
                (chat, "migrate_to_chat_id", new),
                (supergroup, "migrate_from_chat_id", old),
            ):
                message_id = self._next_message_id(where["id"])
                message: dict[str, Any] = {
                    "message_id": message_id,
                    "date": int(time.time()),
                    "chat": where,
                    "from": admin,
                    field_name: value,
                }
                self.state.messages[(where["id"], message_id)] = message
                update_ids.append(self._push_update({"message": message}))
            await self._notify()
        return JSONResponse({"ok": True, "chat": supergroup, "update_ids": update_ids})

    async def ctl_topic(self, request: Request) -> Response:
        """Forum topics. `{"chat_id", "name", "from"}` creates one in a forum supergroup: its
        first message (`forum_topic_created`) goes to the bot as an update, and users'
        messages in it carry that message as `reply_to_message`, as in Telegram; answers
        `thread_id`. `{"chat_id", "thread_id", "state"}` closes ("closed"), reopens ("open")
        or deletes ("deleted", with its messages) a topic: sends into it are refused then."""
        body = await _json(request)
        try:
            chat = self._chat(body.get("chat_id"))
        except ApiError as exc:
            return JSONResponse({"ok": False, "error": exc.description}, status_code=400)
        if "thread_id" in body:
            try:
                key = (chat["id"], int(body["thread_id"]))
            except (TypeError, ValueError):
                return JSONResponse({"ok": False, "error": "thread_id must be an integer"}, 400)
            topic = self.state.topics.get(key)
            state = body.get("state")
            if topic is None or state not in ("open", "closed", "deleted"):
                return JSONResponse(
                    {"ok": False, "error": "a known thread_id and a state (open, closed, deleted)"},
                    status_code=400,
                )
            topic["state"] = state
            if state == "deleted":
                for message_key in [
                    k
                    for k, m in self.state.messages.items()
                    if k[0] == chat["id"] and m.get("message_thread_id") == key[1]
                ]:
                    del self.state.messages[message_key]
            return JSONResponse({"ok": True, "thread_id": key[1], "state": state})
        name = str(body.get("name") or "")
        if not chat.get("is_forum") or not 1 <= len(name) <= 128:
            return JSONResponse(
                {"ok": False, "error": "a forum chat (is_forum) and a name of 1-128 characters"},
                status_code=400,
            )
        thread_id = self._next_message_id(chat["id"])
        message = {
            "message_id": thread_id,
            "message_thread_id": thread_id,
            "is_topic_message": True,
            "date": int(time.time()),
            "chat": chat,
            "from": self._user(_sender(body)),
            "forum_topic_created": {"name": name, "icon_color": 7322096},
        }
        self.state.messages[(chat["id"], thread_id)] = message
        self.state.topics[(chat["id"], thread_id)] = {
            "name": name,
            "state": "open",
            "message": message,
        }
        self._push_update({"message": message})
        await self._notify()
        return JSONResponse({"ok": True, "thread_id": thread_id})

    def _register_chat(self, spec: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(spec["id"])
        existing = self.state.chats.get(chat_id, {})
        chat: dict[str, Any] = {
            "id": chat_id,
            "type": spec.get("type", existing.get("type", "private")),
        }
        for key in ("title", "first_name", "username", "is_forum"):
            if key in spec:
                chat[key] = spec[key]
            elif key in existing:
                chat[key] = existing[key]
        if chat["type"] == "private" and "first_name" not in chat:
            chat["first_name"] = f"User {chat_id}"
        if chat["type"] != "private" and "title" not in chat:
            chat["title"] = f"Group {chat_id}"
        self.state.chats[chat_id] = chat
        return chat

    async def ctl_file(self, request: Request) -> Response:
        body = await _json(request)
        blob = base64.b64decode(body.get("data_b64", ""))
        file_id = self._store_file(blob, body.get("mime_type"), body.get("file_size"))
        stored = self.state.files[file_id]
        return JSONResponse(
            {"file_id": file_id, "file_unique_id": stored.unique_id, "file_size": stored.size}
        )

    def _user(self, spec: dict[str, Any]) -> dict[str, Any]:
        user = {
            "id": int(spec["id"]),
            "is_bot": False,
            "first_name": spec.get("first_name", f"User {spec['id']}"),
        }
        for key in ("last_name", "username", "language_code"):
            if spec.get(key):
                user[key] = spec[key]
        self.state.users[user["id"]] = user
        return user

    def _push_update(self, payload: dict[str, Any], update_id: int | None = None) -> int | None:
        """Queue an update; None when the bot's allowed_updates leave it out (Telegram does not
        keep such updates)."""
        if update_id is None:
            update_id = self.state.next_update_id
        self.state.next_update_id = max(self.state.next_update_id, update_id) + 1
        if not self._is_allowed(_update_type(payload)):
            return None
        self.state.updates.append({"update_id": update_id, **payload})
        return update_id

    async def ctl_message(self, request: Request) -> Response:
        """Act as a user sending a message. Body: from, chat, text | caption, photo_file_id,
        document {file_id, file_name, mime_type}, media_group_id, message_thread_id,
        message_id (to deliver out of order), reply_to_message_id, update_id."""
        answer = self._user_message(await _json(request))
        if answer.get("ok"):
            await self._notify()
            return JSONResponse(answer)
        return JSONResponse(answer, status_code=400)

    async def ctl_messages_batch(self, request: Request) -> Response:
        """Many users' messages at once (load tests): `{"messages": [body, ...]}`, each body
        as for POST /sandbox/telegram/messages, at most MAX_BATCH_MESSAGES. All are checked
        first and none is queued when one is malformed (400 names its index); else answers
        `{"ok": true, "count", "first_update_id", "last_update_id", "pending"}`."""
        body = await _json(request)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return JSONResponse(
                {"ok": False, "error": "messages must be a non-empty list"}, status_code=400
            )
        if len(messages) > MAX_BATCH_MESSAGES:
            return JSONResponse(
                {"ok": False, "error": f"at most {MAX_BATCH_MESSAGES} messages a call"},
                status_code=400,
            )
        for index, spec in enumerate(messages):
            problem = _message_problem(spec, self.state.files)
            if problem:
                return JSONResponse(
                    {"ok": False, "error": f"messages[{index}]: {problem}"}, status_code=400
                )
        answers = [self._user_message(spec) for spec in messages]
        await self._notify()
        ids = [a["update_id"] for a in answers if a.get("update_id") is not None]
        return JSONResponse(
            {
                "ok": True,
                "count": len(answers),
                "first_update_id": min(ids, default=None),
                "last_update_id": max(ids, default=None),
                "pending": len(self.state.updates),
            }
        )

    def _user_message(self, body: dict[str, Any]) -> dict[str, Any]:
        """Queue one user's message (ctl_message's body); the answer, `ok` false when a file
        id is unknown. The caller notifies waiting getUpdates calls."""
        user = self._user(body["from"])
        chat_spec = body.get("chat") or {
            "id": user["id"],
            "type": "private",
            "first_name": user["first_name"],
        }
        if int(chat_spec["id"]) in self.state.migrated:
            return {"ok": False, "error": "that group was upgraded to a supergroup"}
        chat = self._register_chat(chat_spec)
        message_id = body.get("message_id")
        if message_id is None:
            message_id = self._next_message_id(chat["id"])
        else:
            self.state.message_ids[chat["id"]] = max(
                self.state.message_ids.get(chat["id"], 0), int(message_id)
            )
        message: dict[str, Any] = {
            "message_id": int(message_id),
            "date": int(time.time()),
            "chat": chat,
            "from": user,
        }
        if body.get("message_thread_id") is not None:
            message["message_thread_id"] = int(body["message_thread_id"])
            message["is_topic_message"] = True
        if body.get("text") is not None:
            message["text"] = body["text"]
            if entities := _command_entities(body["text"]):
                message["entities"] = entities
        if body.get("caption"):
            message["caption"] = body["caption"]
            if entities := _command_entities(body["caption"]):
                message["caption_entities"] = entities
        if body.get("media_group_id"):
            message["media_group_id"] = str(body["media_group_id"])
        if body.get("photo_file_id"):
            file_id = body["photo_file_id"]
            stored = self.state.files.get(file_id)
            if stored is None:
                return {"ok": False, "error": "unknown file id"}
            message["photo"] = [
                {
                    "file_id": f"{file_id}_thumb",
                    "file_unique_id": stored.unique_id + "t",
                    "width": 90,
                    "height": 90,
                    "file_size": min(stored.size, 1500),
                },
                {
                    "file_id": file_id,
                    "file_unique_id": stored.unique_id,
                    "width": 1280,
                    "height": 960,
                    "file_size": stored.size,
                },
            ]
        if body.get("document"):
            doc = body["document"]
            stored = self.state.files.get(doc["file_id"])
            if stored is None:
                return {"ok": False, "error": "unknown file id"}
            message["document"] = {
                "file_id": doc["file_id"],
                "file_unique_id": stored.unique_id,
                "file_name": doc.get("file_name", "file"),
                "mime_type": doc.get("mime_type", stored.mime_type),
                "file_size": stored.size,
            }
        if body.get("reply_to_message_id") is not None:
            original = self.state.messages.get((chat["id"], int(body["reply_to_message_id"])))
            if original is not None:
                message["reply_to_message"] = original
        elif "message_thread_id" in message:
            # In a forum topic, a message that replies to nothing carries the topic's first
            # message (forum_topic_created) as its reply.
            topic = self.state.topics.get((chat["id"], message["message_thread_id"]))
            if topic is not None:
                message["reply_to_message"] = topic["message"]
        self.state.messages[(chat["id"], message["message_id"])] = message
        update_id = self._push_update({"message": message}, body.get("update_id"))
        return {
            "ok": True,
            "update_id": update_id,
            "message_id": message["message_id"],
            "delivered": update_id is not None,
        }

    async def ctl_edit(self, request: Request) -> Response:
        """Act as a user editing their earlier message. Body: chat_id, message_id, text or
        caption, update_id (optional). Pushes an `edited_message` update carrying the whole
        message (photo, media_group_id, thread, ...) with the new text or caption and
        `edit_date`, and stores it."""
        body = await _json(request)
        key = (int(body["chat_id"]), int(body["message_id"]))
        original = self.state.messages.get(key)
        if original is None or original.get("from", {}).get("id") == self.identity.id:
            return JSONResponse({"ok": False, "error": "unknown user message"}, status_code=400)
        message = {**original, "edit_date": int(time.time())}
        if "text" in body:
            if "text" not in original:
                return JSONResponse(
                    {"ok": False, "error": "the message has no text (edit its caption)"},
                    status_code=400,
                )
            message["text"] = str(body["text"])
            message.pop("entities", None)
            if entities := _command_entities(message["text"]):
                message["entities"] = entities
        elif "caption" in body:
            if not ({"photo", "document"} & original.keys()):
                return JSONResponse(
                    {"ok": False, "error": "the message has no media (edit its text)"},
                    status_code=400,
                )
            message.pop("caption", None)
            message.pop("caption_entities", None)
            if body["caption"]:
                message["caption"] = str(body["caption"])
                if entities := _command_entities(message["caption"]):
                    message["caption_entities"] = entities
        else:
            return JSONResponse({"ok": False, "error": "text or caption"}, status_code=400)
        self.state.messages[key] = message
        update_id = self._push_update({"edited_message": message}, body.get("update_id"))
        await self._notify()
        return JSONResponse(
            {
                "ok": True,
                "update_id": update_id,
                "message_id": key[1],
                "delivered": update_id is not None,
            }
        )

    async def ctl_callback(self, request: Request) -> Response:
        """Act as a user pressing an inline button on a bot message."""
        body = await _json(request)
        user = self._user(body["from"])
        chat_id = int(body["chat_id"])
        message = self.state.messages.get((chat_id, int(body["message_id"])))
        if message is None:
            return JSONResponse({"ok": False, "error": "unknown message"}, status_code=400)
        self.state.callback_counter += 1
        query = {
            "id": f"cbq{self.state.callback_counter}",
            "from": user,
            "chat_instance": str(chat_id),
            "message": message,
            "data": str(body["data"]),
        }
        update_id = self._push_update({"callback_query": query})
        await self._notify()
        return JSONResponse(
            {"ok": True, "update_id": update_id, "delivered": update_id is not None}
        )

    async def ctl_sent(self, request: Request) -> Response:
        """What the bot sent, edited and deleted, its reactions and the 429s it got, in order:
        `actions`, and `total` (the length of the whole log). `chat_id`: only that chat's;
        `since=N`: only actions after the first N of the whole log (poll with the last
        `total` to read each action once); `kind`: only actions of that kind."""
        q = request.query_params
        items = self.state.actions
        total = len(items)
        try:
            since = int(q.get("since", 0))
            chat_id = int(q["chat_id"]) if "chat_id" in q else None
        except ValueError:
            return JSONResponse({"ok": False, "error": "bad since or chat_id"}, status_code=400)
        if since > 0:
            items = items[since:]
        if chat_id is not None:
            items = [a for a in items if a["chat_id"] == chat_id]
        if "kind" in q:
            items = [a for a in items if a["kind"] == q["kind"]]
        return JSONResponse({"actions": items, "total": total})

    async def ctl_calls(self, request: Request) -> Response:
        """Every Bot API call: method, params, and the `result` the bot received (or `ok`
        false with `error_code` and `description`); file downloads as method "download"."""
        return JSONResponse({"calls": self.state.calls})

    async def ctl_faults(self, request: Request) -> Response:
        """The next matching calls fail. Body: `method` (one Bot API method; none: any),
        `methods` (a list of method names, any of them), `chat_id` (only calls to that chat),
        `message_id` (only calls about that message: "message can't be edited" holds for one),
        `kind` ("429", "timeout" = slow but done, "hang" = slow and not done, "error"),
        `count` (how many calls), `retry_after` (429), `seconds` (timeout and hang),
        `error_code` ("error": 500 by default, or 400, 403, 404, 502, 503) and `description`
        (what it says, e.g. "Bad Request: message can't be edited"). File downloads match as
        method "download" (a 404 there: a file path Telegram no longer knows).
        `duration` (seconds): instead of `count`, every matching call fails from now until
        then (the flood limiter's clock, so `freeze`/`advance` drive it in tests), like a chat
        under a flood wait; with no `retry_after`, a 429 answers the seconds left, rounded up.
        `{"clear": true}` removes every fault."""
        body = await _json(request)
        if body.get("clear"):
            self.state.faults.clear()
            return JSONResponse({"ok": True})
        try:
            fault = _fault_from(body, self.flood.now())
        except (TypeError, ValueError) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        self.state.faults.append(fault)
        return JSONResponse({"ok": True})

    async def ctl_commands(self, request: Request) -> Response:
        return JSONResponse({"commands": self.state.commands})

    def _confirmed_all(self) -> None:
        """Telegram now considers every update delivered: the worst instant to die."""
        pid, self.state.kill_on_confirm = self.state.kill_on_confirm, None
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    async def ctl_kill(self, request: Request) -> Response:
        """`{"pid": N}`: SIGKILL process N the moment no update is left undelivered (crash
        tests); `{"pid": null}` disarms."""
        body = await _json(request)
        pid = body.get("pid")
        self.state.kill_on_confirm = int(pid) if pid is not None else None
        return JSONResponse({"ok": True})

    async def ctl_pending(self, request: Request) -> Response:
        return JSONResponse({"pending": len(self.state.updates)})


def _message_problem(spec: Any, files: dict[str, StoredFile]) -> str | None:
    """Why a user message body cannot be queued (checked before a batch queues any)."""
    if not isinstance(spec, dict):
        return "must be an object"
    sender = spec.get("from")
    if not isinstance(sender, dict) or "id" not in sender:
        return "from must be a user with an id"
    chat = spec.get("chat")
    if chat is not None and not (isinstance(chat, dict) and "id" in chat):
        return "chat must be a chat with an id"
    if spec.get("photo_file_id") and spec["photo_file_id"] not in files:
        return "unknown file id"
    document = spec.get("document")
    if document and not (isinstance(document, dict) and document.get("file_id") in files):
        return "unknown file id"
    return None


def _limit_updates(body: dict[str, Any]) -> dict[str, Any]:
    """The settings a POST /sandbox/telegram/limits body changes; ValueError for a bad one."""
    allowed = {
        "enabled",
        "per_bot_per_second",
        "per_chat_per_second",
        "chat_burst",
        "per_group_per_minute",
        "group_window",
        "advance",
        "freeze",
        "clear",
    }
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(unknown)}")
    for key in ("enabled", "freeze", "clear"):
        if key in body and not isinstance(body[key], bool):
            raise ValueError(f"{key} must be true or false")
    updates: dict[str, Any] = {}
    if "enabled" in body:
        updates["enabled"] = body["enabled"]
    for key, least in (("per_bot_per_second", 0), ("per_group_per_minute", 0), ("chat_burst", 1)):
        if key in body:
            value = body[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
                raise ValueError(f"{key} must be a whole number")
            if value < least:
                raise ValueError(f"{key} must be at least {least}")
            updates[key] = int(value)
    for key in ("per_chat_per_second", "group_window", "advance"):
        if key in body:
            value = body[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{key} must be a number >= 0")
            if not math.isfinite(value):
                raise ValueError(f"{key} must be finite")
            if key in ("per_chat_per_second", "group_window"):
                updates[key] = float(value)
    return updates


def _sender(body: dict[str, Any]) -> dict[str, Any]:
    """The `from` of a control request, or an admin standing in for whoever did it."""
    sender = body.get("from")
    if isinstance(sender, dict) and isinstance(sender.get("id"), int):
        return sender
    return {"id": 1, "first_name": "Admin"}


def _fail(exc: ApiError) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error_code": exc.code, "description": exc.description}
    if exc.retry_after is not None:
        body["parameters"] = {"retry_after": exc.retry_after}
    if exc.migrate_to_chat_id is not None:
        body["parameters"] = {"migrate_to_chat_id": exc.migrate_to_chat_id}
    return JSONResponse(body, status_code=exc.code)


async def _params(request: Request) -> dict[str, Any]:
    """Bot API parameters from the query, a form, multipart, or JSON: PTB sends strings as they
    are and everything else JSON-encoded."""
    params: dict[str, Any] = dict(request.query_params)
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        body = await request.json()
        if isinstance(body, dict):
            params.update(body)
        return params
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        async with request.form(max_part_size=60 * 1024 * 1024) as form:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    params[key] = (value.filename or key, await value.read(), value.content_type)
                else:
                    params[key] = _decode(key, value)
        # attach://name references a multipart part
        for key, value in list(params.items()):
            if isinstance(value, str) and value.startswith("attach://"):
                params[key] = params.get(value.removeprefix("attach://"), value)
    return params


def _decode(key: str, value: str) -> Any:
    if key in STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value
