"""The port between the tracker and the chat: what the tracker needs from Telegram, in its own
terms. The tracker (bot/tracker.py) decides what a submission owes the chat and when; an
implementation of `Chat` (bot/telegram/outbox.py) decides how it looks and gets it there,
within Telegram's limits. The tracker imports nothing from Telegram.

Failures come back as the few errors the tracker acts on: `RetryLater` (wait that long, as
told), `ChatGone` (the chat blocked or removed the bot), `Refused` (this message will never be
accepted), `PhotoUnavailable` (a photo cannot be fetched), and `ChatError` for anything that may
pass by itself (network, the chat service's own errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from bot.resellscan import Collection
from storage import ChatSettings, Submission


class ChatError(Exception):
    """A message or download failed; trying again later may work."""


class RetryLater(ChatError):
    """The chat service asked to wait (a flood limit)."""

    def __init__(self, seconds: float, message: str = "") -> None:
        super().__init__(message or f"retry after {seconds:g} s")
        self.seconds = seconds


class ChatGone(ChatError):
    """The chat blocked or removed the bot: nothing sent there will arrive."""


class Refused(ChatError):
    """The chat service refused this message or action; the same again will not pass."""


class PhotoUnavailable(ChatError):
    """A photo cannot be fetched; `reason` names the text that explains it to the user."""

    def __init__(self, reason: str, message: str = "", *, final: bool) -> None:
        super().__init__(message or reason)
        self.reason = reason  # photo_too_big, photo_unavailable
        self.final = final  # True: asking again will not help


class Role(Enum):
    """What a message is for; the tracker records the ids of some of them."""

    RESULTS = "results"  # carries the results' buttons: its id is the results message
    PROMPT = "prompt"  # a refusal or question a reply (field=value …) answers
    OTHER = "other"


@dataclass(frozen=True)
class Outgoing:
    """One message a submission owes the chat, as the chat side rendered it. `markup` is the
    chat side's keyboard, opaque here."""

    text: str
    markup: object | None = None
    document: tuple[str, bytes] | None = None  # (file name, content)
    role: Role = Role.OTHER


class Chat(Protocol):
    """What the tracker asks of the chat. Every send replies to the submission's first photo,
    in its forum topic, through the chat's send queue."""

    async def download(self, file_id: str) -> bytes:
        """A photo's bytes. PhotoUnavailable, ChatError."""
        ...

    async def react(self, chat_id: int, message_id: int, emoji: str) -> None:
        """Set the bot's reaction on a message. Refused where the chat allows none."""
        ...

    def shows_board(self, chat_id: int) -> bool:
        """Whether the chat lists open analyses on a live board (groups)."""
        ...

    def board_changed(self, sub: Submission) -> None:
        """Something the chat's board shows changed: refresh it soon."""
        ...

    async def messages_for(self, sub: Submission) -> list[Outgoing]:
        """What the submission's state owes the chat (results, a refusal, a question)."""
        ...

    async def combined(self, sub: Submission, messages: list[Outgoing]) -> int | None:
        """Where the chat's budget would make the results wait, send them combined with
        others finishing meanwhile and return that message's id; None to send as usual."""
        ...

    async def send(self, sub: Submission, out: Outgoing) -> int:
        """Send one message; its id."""
        ...

    def show_progress(self, sub: Submission, products: int, percent: float | None) -> None:
        """Edit the submission's analysing message when the chat's budget allows (a newer
        edit replaces one still waiting); never waits, never raises."""
        ...

    def show_done(self, sub: Submission) -> None:
        """Edit the analysing message to say the analysis finished (as show_progress)."""
        ...

    def analysing(self, sub: Submission, products: int) -> Outgoing:
        """The per-album "analysing" message."""
        ...

    async def collection_question(
        self,
        sub: Submission,
        photos: int,
        candidates: list[Collection] | None,
        ref: str,
        collections: list[Collection],
    ) -> Outgoing:
        """Which collection? With buttons for `candidates` (an ambiguous name) or a page of
        `collections`."""
        ...

    def duplicate_question(self, sub: Submission, earlier: Submission) -> Outgoing:
        """These photos were analysed already: show those results, or analyse again?"""
        ...

    def fields_question(self, sub: Submission, missing: list[str], example: str) -> Outgoing:
        """The collection needs fields the caption lacks: reply with them."""
        ...


def analysing_message_wanted(settings: ChatSettings, *, in_groups: bool = False) -> bool:
    """Whether the chat gets the per-album "analysing" message: its setting, else on in
    private chats, and in groups only with `in_groups` (GROUP_MODE=per_album; otherwise the
    board and reactions say it there, and groups allow 20 messages a minute)."""
    if settings.analysing_message is not None:
        return settings.analysing_message
    return settings.chat_id > 0 or in_groups
