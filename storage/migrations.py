"""Schema versions, applied in order by Database.migrate (PRAGMA user_version).

Every migration is literal SQL, frozen once released: a migration computed from live code (the
state enum, say) would silently change an old schema when the code changes. A change SQLite's
ALTER TABLE cannot make (a CHECK constraint, a column's type) is a `rebuild` migration, applied
with SQLite's table-rebuild procedure (see `Database.migrate`).
"""

from __future__ import annotations

from storage.db import Migration
from storage.history import HISTORY_SCHEMA  # literal SQL, frozen as version 8

# The columns of `submissions` as of version 4, in order (copied by the version 5 rebuild).
_SUBMISSION_COLUMNS_V4 = (
    "id, chat_id, thread_id, message_id, user_id, user_name, media_group_id, collection_ref,"
    " collection_id, collection_name, manual_fields, caption_seen, remove_background, language,"
    " idempotency_key, state, batch_id, attempts, next_action_at, gather_deadline, problem,"
    " last_error, created_at, updated_at, submitted_at, raw_status, total_products,"
    " successful_products, failed_products, progress, results, progress_message_id,"
    " progress_shown, progress_edited_at, poll_count, completed_at, completed_by,"
    " notify_claimed_at, notified_at, notify_attempts, parts_sent, collecting, unreadable_count"
)

# Version 13: the purchase price of each history row re-read from its manual field
# (`purchasePrice`, the key in any casing, `_` `-` and spaces ignored; the first such key)
# when that holds text, by bot.results.purchase_price's rule (bot.intake.parse_number):
# strip; drop "€", "EUR", spaces and narrow no-break spaces; with both "," and "." the later
# one is the decimal mark and the other groups digits; a lone "," is a decimal comma; then
# an optional sign and digits with at most one "."; at most 1e12 in size. Text that is no
# such number leaves purchase_price empty (JSON notation such as "1e3" was read before); a
# number replaces the field's text. `rtrim(c, <c without ",">)` keeps `c` up to its last
# ",", so its length is the position of the last ",".
_REPAIR_PURCHASE_PRICES = """
UPDATE results_history
SET purchase_price = repaired.number,
    manual_fields = CASE
        WHEN repaired.number IS NULL THEN results_history.manual_fields
        ELSE json_set(results_history.manual_fields, '$."' || repaired.key || '"',
                      repaired.number)
    END
FROM (
    SELECT id, key,
           CASE
               WHEN digits <> '' AND digits NOT GLOB '*[^0-9.]*' AND digits GLOB '*[0-9]*'
                    AND length(digits) - length(replace(digits, '.', '')) <= 1
                    AND abs(CAST(n AS REAL)) <= 1e12
               THEN CAST(n AS REAL)
           END AS number
    FROM (
        SELECT id, key, n,
               CASE WHEN substr(n, 1, 1) IN ('+', '-') THEN substr(n, 2) ELSE n END AS digits
        FROM (
            SELECT id, key,
                   CASE
                       WHEN instr(c, ',') > 0 AND instr(c, '.') > 0 THEN
                           CASE
                               WHEN length(rtrim(c, replace(c, ',', '')))
                                    > length(rtrim(c, replace(c, '.', '')))
                               THEN replace(replace(c, '.', ''), ',', '.')
                               ELSE replace(c, ',', '')
                           END
                       WHEN length(c) - length(replace(c, ',', '')) = 1
                       THEN replace(c, ',', '.')
                       ELSE c
                   END AS n
            FROM (
                SELECT h.id AS id, j.key AS key,
                       replace(replace(replace(replace(
                           trim(j.value, ' ' || char(9, 10, 11, 12, 13)),
                           '€', ''), 'EUR', ''), ' ', ''), char(8239), '') AS c
                FROM results_history h, json_each(h.manual_fields) j
                WHERE j.type = 'text'
                  AND j.id = (
                      SELECT MIN(k.id) FROM json_each(h.manual_fields) k
                      WHERE lower(replace(replace(replace(k.key, '_', ''), '-', ''), ' ', ''))
                            = 'purchaseprice'
                  )
            )
        )
    )
) AS repaired
WHERE results_history.id = repaired.id
"""

# Version 17: the trigram index holds the word index's text (with its German spellings) and,
# where it differs, that text again with the diacritics of _FOLD_V17 dropped (as
# storage.history does for new rows with its `_FOLD`; frozen here as it was then).
_FOLD_V17 = (
    *((c, "a") for c in "àáâãäå"),
    *((c, "A") for c in "ÀÁÂÃÄÅ"),
    *((c, "e") for c in "èéêë"),
    *((c, "E") for c in "ÈÉÊË"),
    *((c, "i") for c in "ìíîï"),
    *((c, "I") for c in "ÌÍÎÏ"),
    *((c, "o") for c in "òóôõö"),
    *((c, "O") for c in "ÒÓÔÕÖ"),
    *((c, "u") for c in "ùúûü"),
    *((c, "U") for c in "ÙÚÛÜ"),
    *((c, "y") for c in "ýÿ"),
    ("Ý", "Y"),
    ("ç", "c"),
    ("Ç", "C"),
    ("ñ", "n"),
    ("Ñ", "N"),
    ("ß", "ss"),
    ("ẞ", "SS"),
)


_TRIGRAM_COLUMNS = ("title", "brand", "category", "collection_name", "sender_name")


def _fill_trigram_v17() -> str:
    """INSERT … SELECT of every row's trigram text. The folding is nested a few replace()
    calls deep per subquery (60 in one expression overflow SQLite's parser stack)."""
    source = (
        "SELECT rowid, "  # noqa: S608 (literal: column names)
        + ", ".join(f"{c}, {c} AS {c}_folded" for c in _TRIGRAM_COLUMNS)
        + " FROM results_history_fts"
    )
    for first in range(0, len(_FOLD_V17), 8):
        chunk = _FOLD_V17[first : first + 8]
        columns = []
        for c in _TRIGRAM_COLUMNS:
            expression = f"{c}_folded"
            for char, plain in chunk:
                expression = f"replace({expression}, '{char}', '{plain}')"
            columns.append(f"{c}, {expression} AS {c}_folded")
        source = f"SELECT rowid, {', '.join(columns)} FROM ({source})"  # noqa: S608
    return (
        "INSERT INTO results_history_trigram"  # noqa: S608 (literal: column names)
        " (rowid, title, brand, category, collection_name, sender_name) SELECT rowid, "
        + ", ".join(
            f"CASE WHEN {c}_folded = {c} THEN {c} ELSE {c} || ' ' || {c}_folded END"
            for c in _TRIGRAM_COLUMNS
        )
        + f" FROM ({source})"
    )


_FILL_TRIGRAM_INDEX = _fill_trigram_v17()

MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "chats, submissions, photos, webhook events",
        [
            """
            CREATE TABLE chats (
                chat_id INTEGER PRIMARY KEY,
                default_collection_id TEXT,
                default_collection_name TEXT,
                remove_background INTEGER NOT NULL DEFAULT 0,
                language TEXT,
                admin_only INTEGER NOT NULL DEFAULT 0,
                reachable INTEGER NOT NULL DEFAULT 1,
                updated_at REAL NOT NULL
            )
            """,
            """
            CREATE TABLE submissions (
                id INTEGER PRIMARY KEY,
                chat_id INTEGER NOT NULL,
                thread_id INTEGER,
                message_id INTEGER NOT NULL,
                user_id INTEGER NOT NULL,
                user_name TEXT NOT NULL,
                media_group_id TEXT,
                collection_ref TEXT,
                collection_id TEXT,
                collection_name TEXT,
                manual_fields TEXT NOT NULL DEFAULT '{}',
                caption_seen INTEGER NOT NULL DEFAULT 0,
                remove_background INTEGER NOT NULL DEFAULT 0,
                language TEXT NOT NULL DEFAULT 'en',
                idempotency_key TEXT NOT NULL UNIQUE,
                state TEXT NOT NULL CHECK (state IN ('received', 'submitting', 'submitted',
                    'completed', 'notified', 'rejected', 'failed', 'expired', 'uncertain')),
                batch_id TEXT UNIQUE,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_action_at REAL,
                gather_deadline REAL,
                problem TEXT,
                last_error TEXT,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                submitted_at REAL,
                raw_status TEXT,
                total_products INTEGER,
                successful_products INTEGER,
                failed_products INTEGER,
                progress REAL,
                results TEXT,
                progress_message_id INTEGER,
                progress_shown REAL,
                progress_edited_at REAL,
                poll_count INTEGER NOT NULL DEFAULT 0,
                completed_at REAL,
                completed_by TEXT,
                notify_claimed_at REAL,
                notified_at REAL,
                notify_attempts INTEGER NOT NULL DEFAULT 0,
                parts_sent INTEGER NOT NULL DEFAULT 0
            )
            """,
            """
            CREATE UNIQUE INDEX submissions_album ON submissions (chat_id, media_group_id)
            WHERE media_group_id IS NOT NULL
            """,
            "CREATE INDEX submissions_due ON submissions (next_action_at) "
            "WHERE next_action_at IS NOT NULL",
            "CREATE INDEX submissions_chat ON submissions (chat_id, state)",
            """
            CREATE TABLE photos (
                id INTEGER PRIMARY KEY,
                submission_id INTEGER NOT NULL REFERENCES submissions (id) ON DELETE CASCADE,
                chat_id INTEGER NOT NULL,
                message_id INTEGER NOT NULL,
                product_key TEXT NOT NULL,
                file_id TEXT NOT NULL,
                file_unique_id TEXT NOT NULL,
                file_size INTEGER,
                mime_type TEXT,
                file_name TEXT,
                media_key TEXT NOT NULL UNIQUE,
                UNIQUE (chat_id, message_id)
            )
            """,
            "CREATE INDEX photos_submission ON photos (submission_id, message_id)",
            """
            CREATE TABLE webhook_events (
                event_id TEXT PRIMARY KEY,
                event TEXT NOT NULL,
                batch_id TEXT,
                payload TEXT NOT NULL,
                applied INTEGER NOT NULL DEFAULT 0,
                received_at REAL NOT NULL
            )
            """,
            "CREATE INDEX webhook_events_unapplied ON webhook_events (batch_id) WHERE applied = 0",
            "CREATE INDEX webhook_events_age ON webhook_events (received_at)",
        ],
    ),
    Migration(
        2,
        "telegram update ids and pending /scan choices",
        [
            """
            CREATE TABLE telegram_updates (
                update_id INTEGER PRIMARY KEY,
                received_at REAL NOT NULL
            )
            """,
            "CREATE INDEX telegram_updates_age ON telegram_updates (received_at)",
            """
            CREATE TABLE pending_scans (
                chat_id INTEGER NOT NULL,
                user_id INTEGER NOT NULL,
                collection_ref TEXT NOT NULL,
                manual_fields TEXT NOT NULL,
                expires_at REAL NOT NULL,
                PRIMARY KEY (chat_id, user_id)
            )
            """,
        ],
    ),
    Migration(
        3,
        "multi-product batches collected with /batch ... /done",
        [
            "ALTER TABLE submissions ADD COLUMN collecting INTEGER NOT NULL DEFAULT 0",
            "CREATE INDEX submissions_collecting ON submissions (chat_id, user_id)"
            " WHERE collecting = 1",
        ],
    ),
    Migration(
        4,
        "raw webhook bodies with the counts read from them; unreadable answers per submission",
        [
            "ALTER TABLE webhook_events ADD COLUMN results TEXT",
            "ALTER TABLE webhook_events ADD COLUMN summary TEXT",
            "ALTER TABLE submissions ADD COLUMN unreadable_count INTEGER NOT NULL DEFAULT 0",
        ],
    ),
    Migration(
        5,
        "state 'reconciling'; request time, product ids and lookups of ambiguous uploads;"
        " the durable Telegram update inbox",
        [
            """
            CREATE TABLE submissions_new (
                id INTEGER PRIMARY KEY,
                chat_id INTEGER NOT NULL,
                thread_id INTEGER,
                message_id INTEGER NOT NULL,
                user_id INTEGER NOT NULL,
                user_name TEXT NOT NULL,
                media_group_id TEXT,
                collection_ref TEXT,
                collection_id TEXT,
                collection_name TEXT,
                manual_fields TEXT NOT NULL DEFAULT '{}',
                caption_seen INTEGER NOT NULL DEFAULT 0,
                remove_background INTEGER NOT NULL DEFAULT 0,
                language TEXT NOT NULL DEFAULT 'en',
                idempotency_key TEXT NOT NULL UNIQUE,
                state TEXT NOT NULL CHECK (state IN ('received', 'submitting', 'submitted',
                    'completed', 'notified', 'rejected', 'failed', 'expired', 'uncertain',
                    'reconciling')),
                batch_id TEXT UNIQUE,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_action_at REAL,
                gather_deadline REAL,
                problem TEXT,
                last_error TEXT,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                submitted_at REAL,
                raw_status TEXT,
                total_products INTEGER,
                successful_products INTEGER,
                failed_products INTEGER,
                progress REAL,
                results TEXT,
                progress_message_id INTEGER,
                progress_shown REAL,
                progress_edited_at REAL,
                poll_count INTEGER NOT NULL DEFAULT 0,
                completed_at REAL,
                completed_by TEXT,
                notify_claimed_at REAL,
                notified_at REAL,
                notify_attempts INTEGER NOT NULL DEFAULT 0,
                parts_sent INTEGER NOT NULL DEFAULT 0,
                collecting INTEGER NOT NULL DEFAULT 0,
                unreadable_count INTEGER NOT NULL DEFAULT 0,
                requested_at REAL,
                reconcile_checks INTEGER NOT NULL DEFAULT 0,
                reconcile_until REAL,
                product_ids TEXT,
                rate_limited_since REAL,
                batch_closed_at REAL
            )
            """,
            f"INSERT INTO submissions_new ({_SUBMISSION_COLUMNS_V4})"  # noqa: S608 (literal)
            f" SELECT {_SUBMISSION_COLUMNS_V4} FROM submissions",
            "DROP TABLE submissions",
            "ALTER TABLE submissions_new RENAME TO submissions",
            "CREATE UNIQUE INDEX submissions_album ON submissions (chat_id, media_group_id)"
            " WHERE media_group_id IS NOT NULL",
            "CREATE INDEX submissions_due ON submissions (next_action_at)"
            " WHERE next_action_at IS NOT NULL",
            "CREATE INDEX submissions_chat ON submissions (chat_id, state)",
            "CREATE INDEX submissions_collecting ON submissions (chat_id, user_id)"
            " WHERE collecting = 1",
            "CREATE INDEX submissions_reconciling ON submissions (state)"
            " WHERE state = 'reconciling'",
            """
            CREATE TABLE inbox (
                id INTEGER PRIMARY KEY,
                update_id INTEGER NOT NULL UNIQUE,
                chat_id INTEGER,
                payload TEXT NOT NULL,
                received_at REAL NOT NULL,
                done_at REAL
            )
            """,
            "CREATE INDEX inbox_pending ON inbox (id) WHERE done_at IS NULL",
            "CREATE INDEX inbox_done ON inbox (done_at) WHERE done_at IS NOT NULL",
            "DROP TABLE telegram_updates",
            "ALTER TABLE webhook_events ADD COLUMN product_ids TEXT",
        ],
        rebuild=True,
    ),
    Migration(
        6,
        "reactions, results buttons, duplicate guard, fixing a submission by edit or reply",
        [
            "ALTER TABLE chats ADD COLUMN analysing_message INTEGER",
            "ALTER TABLE chats ADD COLUMN reactions INTEGER",
            "ALTER TABLE chats ADD COLUMN duplicate_guard INTEGER NOT NULL DEFAULT 1",
            "ALTER TABLE submissions ADD COLUMN reaction TEXT",
            "ALTER TABLE submissions ADD COLUMN results_message_id INTEGER",
            "ALTER TABLE submissions ADD COLUMN prompt_message_id INTEGER",
            "ALTER TABLE submissions ADD COLUMN retried_at REAL",
            "ALTER TABLE submissions ADD COLUMN retry_of INTEGER",
            "ALTER TABLE submissions ADD COLUMN duplicate_of INTEGER",
            "ALTER TABLE submissions ADD COLUMN guard_passed INTEGER NOT NULL DEFAULT 0",
            "CREATE INDEX photos_unique ON photos (chat_id, file_unique_id)",
            "CREATE INDEX submissions_prompt ON submissions (chat_id, prompt_message_id)"
            " WHERE prompt_message_id IS NOT NULL",
        ],
    ),
    Migration(
        7,
        "the live board of each group (topic); a daily digest per chat",
        [
            """
            CREATE TABLE boards (
                chat_id INTEGER NOT NULL,
                thread_id INTEGER NOT NULL,
                message_id INTEGER NOT NULL,
                text TEXT,
                PRIMARY KEY (chat_id, thread_id)
            )
            """,
            "ALTER TABLE chats ADD COLUMN digest_time TEXT",
            "ALTER TABLE chats ADD COLUMN timezone TEXT",
            "ALTER TABLE chats ADD COLUMN digest_last_day TEXT",
        ],
    ),
    Migration(8, "every analysed product, kept for /find, /report and the digest", HISTORY_SCHEMA),
    Migration(
        9,
        "the outbox: every message owed to a chat as a row; refusals to strangers once an hour",
        [
            """
            CREATE TABLE outbox (
                id INTEGER PRIMARY KEY,
                chat_id INTEGER NOT NULL,
                thread_id INTEGER,
                reply_to INTEGER,
                submission_id INTEGER,
                kind TEXT NOT NULL,
                priority INTEGER NOT NULL,
                key TEXT UNIQUE,
                payload TEXT NOT NULL DEFAULT '{}',
                document BLOB,
                created_at REAL NOT NULL,
                not_before REAL NOT NULL DEFAULT 0,
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT
            )
            """,
            "CREATE INDEX outbox_chat ON outbox (chat_id, priority, id)",
            "CREATE INDEX outbox_order ON outbox (priority, id)",
            "CREATE INDEX outbox_due ON outbox (not_before)",
            "CREATE TABLE refusals (user_id INTEGER PRIMARY KEY, refused_at REAL NOT NULL)",
            "ALTER TABLE boards ADD COLUMN edited_at REAL",
            # What a running bot of version 8 still owed (a notification not sent yet).
            """
            INSERT INTO outbox (chat_id, thread_id, reply_to, submission_id, kind, priority,
                                key, created_at)
            SELECT chat_id, thread_id, message_id, id, 'notify', 0, 'notify:' || id, updated_at
            FROM submissions
            WHERE state IN ('completed', 'rejected', 'failed', 'expired', 'uncertain')
              AND notified_at IS NULL
            """,
        ],
    ),
    Migration(
        10,
        "where Telegram moved a chat: groups upgraded to supergroups (their old ids admit the"
        " new ones), forum topic names, digests stopped for chats that are gone",
        [
            """
            CREATE TABLE chat_migrations (
                old_chat_id INTEGER PRIMARY KEY,
                new_chat_id INTEGER NOT NULL,
                migrated_at REAL NOT NULL
            )
            """,
            "CREATE INDEX chat_migrations_new ON chat_migrations (new_chat_id)",
            """
            CREATE TABLE topics (
                chat_id INTEGER NOT NULL,
                thread_id INTEGER NOT NULL,
                name TEXT NOT NULL,
                PRIMARY KEY (chat_id, thread_id)
            )
            """,
            "ALTER TABLE chats ADD COLUMN digest_failures INTEGER NOT NULL DEFAULT 0",
        ],
    ),
    Migration(
        11,
        "the ledger of paid calls (createAndAnalyze, analyze), one row per call, and what the"
        " bot has observed about the account's API (facts)",
        [
            """
            CREATE TABLE paid_calls (
                id INTEGER PRIMARY KEY,
                submission_id INTEGER NOT NULL,
                decision INTEGER NOT NULL,
                endpoint TEXT NOT NULL,
                key TEXT NOT NULL,
                sends INTEGER NOT NULL DEFAULT 0,
                outcome TEXT NOT NULL DEFAULT 'pending',
                batch_id TEXT,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            )
            """,
            "CREATE UNIQUE INDEX paid_calls_decision ON paid_calls (submission_id, decision, key)",
            "CREATE INDEX paid_calls_time ON paid_calls (created_at)",
            "ALTER TABLE submissions ADD COLUMN decision INTEGER NOT NULL DEFAULT 0",
            """
            CREATE TABLE account_facts (
                name TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                observed_at REAL NOT NULL
            )
            """,
        ],
    ),
    Migration(
        12,
        "photos Telegram would not hand over: the failed fetches of a submission, counted where"
        " they happen",
        ["ALTER TABLE submissions ADD COLUMN photo_failures INTEGER NOT NULL DEFAULT 0"],
    ),
    Migration(
        13,
        "purchase prices kept as numbers in the results history: rows kept with a decimal comma"
        " (12,5), a thousands separator or a euro sign had the text and no purchase_price",
        [_REPAIR_PURCHASE_PRICES],
    ),
    Migration(
        14,
        "history rows owed as soon as the results are known (before: once delivered, so results"
        " Telegram refused were never kept); those lost so far are owed now",
        [
            """
            CREATE TABLE history_owed (
                submission_id INTEGER PRIMARY KEY,
                owed_at REAL NOT NULL
            )
            """,
            # Results known and never kept: waiting for Telegram, or never delivered (refused,
            # or dropped for a chat that was gone); a results message sent had kept them.
            """
            INSERT INTO history_owed (submission_id, owed_at)
            SELECT s.id, COALESCE(s.completed_at, s.updated_at) FROM submissions s
            WHERE s.state IN ('completed', 'notified') AND s.results IS NOT NULL
              AND s.results_message_id IS NULL
              AND NOT EXISTS (SELECT 1 FROM results_history h WHERE h.submission_id = s.id)
            """,
        ],
    ),
    Migration(
        15,
        "each daily digest covers the time since the previous one: where its window ended",
        ["ALTER TABLE chats ADD COLUMN digest_until REAL"],
    ),
    Migration(
        16,
        "/find queries kept server-side behind a short token for their page buttons (the"
        " 64 bytes of callback data cut a long query, so page 2 searched for less)",
        [
            """
            CREATE TABLE find_queries (
                id INTEGER PRIMARY KEY,
                chat_id INTEGER NOT NULL,
                query TEXT NOT NULL,
                used_at REAL NOT NULL,
                UNIQUE (chat_id, query)
            )
            """,
            "CREATE INDEX find_queries_used ON find_queries (used_at)",
        ],
    ),
    Migration(
        17,
        "/find matches inside words (German compounds: schuh finds Lederschuhe): a trigram"
        " index beside the word index, filled with the rows kept so far",
        [
            """
            CREATE VIRTUAL TABLE results_history_trigram USING fts5 (
                title, brand, category, collection_name, sender_name,
                tokenize = 'trigram'
            )
            """,
            """
            CREATE TRIGGER results_history_trigram_delete AFTER DELETE ON results_history BEGIN
                DELETE FROM results_history_trigram WHERE rowid = old.id;
            END
            """,
            _FILL_TRIGRAM_INDEX,
        ],
    ),
    Migration(
        18,
        "reactions Telegram refused in a chat are tried again after a while: when they were"
        " last refused (they never came back, and /settings still promised them)",
        ["ALTER TABLE chats ADD COLUMN reactions_refused_at REAL"],
    ),
]
