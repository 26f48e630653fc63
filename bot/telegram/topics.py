"""Forum topics that went away: messages for a deleted or closed topic go to the group's general
topic instead, with a line that names who they are for and which topic they came from.

Telegram answers a send into a deleted topic with "Bad Request: message thread not found" (or
TOPIC_DELETED) and into a closed one with TOPIC_CLOSED (a bot that may not manage topics). Such
a topic is remembered for a while (`GoneTopics`), so the next message goes to the general topic
at once; a closed topic may be reopened, so it is tried again after RECHECK_SECONDS.

A topic's name comes from the messages the bot sees (`forum_topic_created` on the topic's first
message, which Telegram attaches to every message in the topic as `reply_to_message`) and is
kept in SQLite (`storage.chats`); unknown, the topic is named by its number.
"""

from __future__ import annotations

import html
from collections import OrderedDict
from typing import Any

from telegram import Message

RECHECK_SECONDS = 3600.0  # a closed topic may be reopened: try it again this much later
REMEMBERED = 1024  # gone topics kept in memory (the oldest forgotten first)

# The markers of Telegram's answers for a topic that cannot take messages (lower case).
GONE_MARKERS = ("message thread not found", "topic_deleted", "topic_closed")

_NOTES = {
    "en": {
        "sender": "↪️ For {sender}: the topic {topic} was deleted or closed, so this comes here.",
        "plain": "↪️ The topic {topic} was deleted or closed, so this comes here.",
        "named": "“{name}”",
        "numbered": "#{number}",
    },
    "de": {
        "sender": (
            "↪️ Für {sender}: Das Thema {topic} wurde gelöscht oder geschlossen, darum kommt"
            " dies hierher."
        ),
        "plain": "↪️ Das Thema {topic} wurde gelöscht oder geschlossen, darum kommt dies hierher.",
        "named": "„{name}“",
        "numbered": "#{number}",
    },
}


def is_topic_gone(description: str) -> bool:
    text = description.lower()
    return any(marker in text for marker in GONE_MARKERS)


def note(lang: str, thread_id: int, name: str | None, sender: str | None) -> str:
    """The line (Telegram HTML) put above a message that could not go to its topic."""
    texts = _NOTES.get(lang, _NOTES["en"])
    if name:
        topic = texts["named"].format(name=html.escape(name, quote=False))
    else:
        topic = texts["numbered"].format(number=thread_id)
    if sender:
        return texts["sender"].format(sender=html.escape(sender, quote=False), topic=topic)
    return texts["plain"].format(topic=topic)


def topic_name_of(message: Message) -> tuple[int, str] | None:
    """The (thread id, name) a message shows: a topic created or renamed, or a message in a
    topic carrying the topic's first message."""
    if message.forum_topic_created is not None and message.message_thread_id is not None:
        return message.message_thread_id, message.forum_topic_created.name
    edited = message.forum_topic_edited
    if edited is not None and edited.name and message.message_thread_id is not None:
        return message.message_thread_id, edited.name
    first: Any = message.reply_to_message
    if (
        message.is_topic_message
        and message.message_thread_id is not None
        and first is not None
        and first.forum_topic_created is not None
    ):
        return message.message_thread_id, first.forum_topic_created.name
    return None


class GoneTopics:
    """Topics a send was refused for, and when (in memory, bounded)."""

    def __init__(self) -> None:
        self._gone: OrderedDict[tuple[int, int], float] = OrderedDict()

    def mark(self, chat_id: int, thread_id: int, now: float) -> None:
        key = (chat_id, thread_id)
        self._gone[key] = now
        self._gone.move_to_end(key)
        while len(self._gone) > REMEMBERED:
            self._gone.popitem(last=False)

    def gone(self, chat_id: int, thread_id: int, now: float) -> bool:
        since = self._gone.get((chat_id, thread_id))
        if since is None:
            return False
        if now - since > RECHECK_SECONDS:
            del self._gone[(chat_id, thread_id)]
            return False
        return True
