"""Durable state of the bot in SQLite: chats, submissions and their photos, webhook events.

`storage` imports nothing from `bot`; all SQL of the project lives here.
"""

from storage.db import Database, Migration, StorageError
from storage.inbox import Inbox, InboxUpdate, NewUpdate
from storage.models import (
    MESSAGE_STATES,
    OPEN_STATES,
    CaptionInfo,
    ChatSettings,
    NewPhoto,
    Photo,
    Problem,
    State,
    Submission,
)
from storage.repo import TRANSITIONS, AddResult, Counts, Store, WebhookOutcome

__all__ = [
    "MESSAGE_STATES",
    "OPEN_STATES",
    "TRANSITIONS",
    "AddResult",
    "CaptionInfo",
    "ChatSettings",
    "Counts",
    "Database",
    "Inbox",
    "InboxUpdate",
    "Migration",
    "NewPhoto",
    "NewUpdate",
    "Photo",
    "Problem",
    "State",
    "StorageError",
    "Store",
    "Submission",
    "WebhookOutcome",
]
