"""The port between the bot's core and the chat: what it needs from Telegram, in its own terms.
The tracker (bot/tracker.py) decides what a submission owes the chat and writes it to the
outbox; the deliverer (bot/outbox.py) sends each row through an implementation of `Chat`
(bot/telegram/outbox.py), which decides how it looks. Neither imports Telegram.

Failures come back as the few errors the tracker acts on: `RetryLater` (wait that long, as
told), `ChatGone` (the chat blocked or removed the bot), `ChatMoved` (the chat has a new id: a
group upgraded to a supergroup), `TopicGone` (a forum topic was deleted or closed), `Refused`
(this message will never be accepted), `PhotoUnavailable` (a photo cannot be fetched), and
`ChatError` for anything that may pass by itself (network, the chat service's own errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from storage import ChatSettings, Submission
from storage.outbox import OutboxRow


class ChatError(Exception):
    """A message or download failed; trying again later may work."""


class RetryLater(ChatError):
    """The chat service asked to wait (a flood limit)."""

    def __init__(self, seconds: float, message: str = "") -> None:
        super().__init__(message or f"retry after {seconds:g} s")
        self.seconds = seconds


class ChatGone(ChatError):
    """The chat blocked or removed the bot: nothing sent there will arrive."""


class ChatMoved(ChatError):
    """The chat lives on under another id (a group upgraded to a supergroup): what is owed to
    it goes there."""

    def __init__(self, new_chat_id: int, message: str = "") -> None:
        super().__init__(message or f"migrated to {new_chat_id}")
        self.new_chat_id = new_chat_id


class TopicGone(ChatError):
    """The forum topic a message was for is deleted or closed; the chat's general topic still
    takes it."""


class Refused(ChatError):
    """The chat service refused this message or action; the same again will not pass."""


class PhotoUnavailable(ChatError):
    """A photo cannot be fetched; `reason` names the text that explains it to the user."""

    def __init__(
        self, reason: str, message: str = "", *, final: bool, retry_after: float = 0.0
    ) -> None:
        super().__init__(message or reason)
        self.reason = reason  # photo_too_big, photo_unavailable
        self.final = final  # True: asking again will not help
        self.retry_after = retry_after  # seconds the chat service asked to wait (a flood limit)


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


@dataclass(frozen=True)
class BoardShown:
    """What refreshing a live board did: `sent` messages counted against the limits (a send
    or an edit: 1); `again_at`: what changed waits for the board's own budget, refresh it
    then."""

    sent: int = 0
    again_at: float | None = None


class Chat(Protocol):
    """What the bot needs from the chat. The tracker only downloads photos through it (what
    it owes the chat it writes to the outbox); the outbox's deliverer (bot/outbox.py) renders
    and sends through the rest, one Telegram call at a time, when the delivery loop lets it.
    Every send replies to the submission's first photo, in its forum topic."""

    async def download(self, file_id: str) -> bytes:
        """A photo's bytes. PhotoUnavailable, ChatError."""
        ...

    async def react(self, chat_id: int, message_id: int, emoji: str) -> None:
        """Set the bot's reaction on a message. Refused where the chat allows none."""
        ...

    async def messages_for(self, sub: Submission) -> list[Outgoing]:
        """What the submission's state owes the chat (results, a refusal, a failure)."""
        ...

    async def question(self, sub: Submission, payload: dict[str, Any]) -> Outgoing:
        """A question the submission waits on: `payload["question"]` is "collection" (with
        `candidates` and `ref`), "duplicate" (with `earlier`) or "fields" (with `missing`
        and `example`)."""
        ...

    def analysing(self, sub: Submission, products: int) -> Outgoing:
        """The per-album "analysing" message."""
        ...

    async def send(self, sub: Submission, out: Outgoing) -> int:
        """Send one message; its id."""
        ...

    async def send_combined(self, subs: list[Submission]) -> tuple[int, int]:
        """Results of several submissions in one reply, as many as fit from the first: the
        message id and how many it took."""
        ...

    async def edit_progress(self, sub: Submission) -> None:
        """Edit the submission's analysing message to its progress now (or "done")."""
        ...

    async def refresh_board(self, chat_id: int, thread: int) -> BoardShown:
        """Show the chat's (topic's) open analyses on its board, or remove the board."""
        ...

    async def post(self, row: OutboxRow) -> int | None:
        """Send a message, document or photo rendered when it was owed (TEXT), or edit a
        message's text or keyboard (EDIT); the id of a message sent."""
        ...


def analysing_message_wanted(settings: ChatSettings, *, in_groups: bool = False) -> bool:
    """Whether the chat gets the per-album "analysing" message: its setting, else on in
    private chats, and in groups only with `in_groups` (GROUP_MODE=per_album; otherwise the
    board and reactions say it there, and groups allow 20 messages a minute)."""
    if settings.analysing_message is not None:
        return settings.analysing_message
    return settings.chat_id > 0 or in_groups
