"""Durable state of the bot in SQLite: chats, submissions and their photos, webhook events,
the results history, the Telegram update inbox.

`storage` imports nothing from `bot`; all SQL of the project lives here. `Store` (repo.py)
gathers the repositories, one module per aggregate; its module doc lists them.
"""

from storage.db import Database, Migration, StorageError
from storage.inbox import Inbox, InboxUpdate, NewUpdate
from storage.intake import AddResult
from storage.models import (
    MESSAGE_STATES,
    OPEN_STATES,
    CaptionInfo,
    ChatSettings,
    Counts,
    NewPhoto,
    Photo,
    Problem,
    State,
    Submission,
)
from storage.repo import Store
from storage.transitions import TRANSITIONS
from storage.webhooks import WebhookOutcome

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
