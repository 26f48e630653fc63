"""`Store`: every repository of the bot's state over one `Database`, as one object.

Storage is split by aggregate, by what changes together; each part is its own module and
class, usable alone over the same `Database` (`self.db`):

    transitions.py    the state machine: `TRANSITIONS`, the only writer of a state
    intake.py         photos, albums, /batch, pending /scan choices: which submission a
                      photo joins
    choices.py        what the user decides before sending: collection, fields, a fixed
                      caption, the duplicate guard, dropping, /cancel
    submissions.py    the way through Resell Scan: submit, reconcile, poll, complete; the
                      retry of failed products; recovery at start; reads of submissions
    notifications.py  the ids of messages sent for a submission
    outbox.py         every message, edit and reaction owed to a chat, as a row written
                      with the change of state that owes it; delivered by the bot's loop
    webhooks.py       webhook events, kept raw and applied once
    chats.py          chat settings
    boards.py         the live board of a group
    history.py        every analysed product, for search and reports (`Store.history`)
    ledger.py         every paid call (createAndAnalyze, analyze) and what became of it;
                      facts observed about the account's API
    inbox.py          the durable Telegram update inbox (its own object, `Inbox`)

`Store` inherits the methods of the parts (mixins) rather than forwarding to them, so
callers keep one object and the same method names. The parts never call each other's
methods: what two of them share (a transition, completing a submission from a kept webhook
event) is a module-level function over the caller's transaction (`Tx`). So each part reads
alone, the order of the bases does not matter, and no two parts define the same name.
"""

from __future__ import annotations

from storage.boards import Boards
from storage.chats import Chats
from storage.choices import Choices
from storage.db import Database
from storage.history import History
from storage.intake import AddResult, Intake
from storage.ledger import Ledger
from storage.models import Counts
from storage.notifications import Notifications
from storage.outbox import Outbox
from storage.submissions import Submissions
from storage.transitions import TRANSITIONS
from storage.webhooks import WebhookOutcome, Webhooks

__all__ = ["TRANSITIONS", "AddResult", "Counts", "Store", "WebhookOutcome"]


class Store(Chats, Intake, Choices, Submissions, Notifications, Webhooks, Boards, Outbox, Ledger):
    """All repositories over one Database (see the module doc)."""

    def __init__(self, db: Database) -> None:
        Chats.__init__(self, db)
        Intake.__init__(self, db)
        Choices.__init__(self, db)
        Submissions.__init__(self, db)
        Notifications.__init__(self, db)
        Webhooks.__init__(self, db)
        Boards.__init__(self, db)
        Outbox.__init__(self, db)
        Ledger.__init__(self, db)
        self.history = History(db)
