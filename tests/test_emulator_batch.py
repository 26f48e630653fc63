"""The emulator's load-test controls: many users' messages in one call, and reading the action
log incrementally. Direct HTTP calls, no bot."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.data import fake_jpeg
from sandbox.server import SandboxThread
from sandbox.telegram import MAX_BATCH_MESSAGES

TOKEN = "123456:TEST-token-abcdefghijklmnop"


@pytest.fixture
def http(sandbox: SandboxThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, timeout=30) as client:
        yield client


def _updates(http: httpx.Client, offset: int = 0) -> list[dict[str, Any]]:
    body = http.post(f"/bot{TOKEN}/getUpdates", json={"offset": offset, "timeout": 0}).json()
    assert body["ok"], body
    updates: list[dict[str, Any]] = body["result"]
    return updates


def test_a_batch_queues_every_message_in_order(http: httpx.Client) -> None:
    file_id = http.post(
        "/sandbox/telegram/files",
        json={"data_b64": base64.b64encode(fake_jpeg("batch")).decode(), "mime_type": "image/jpeg"},
    ).json()["file_id"]
    messages = [
        {"from": {"id": 50_000 + i, "first_name": f"U{i}"}, "text": "/start"} for i in range(150)
    ]
    messages.append({"from": {"id": 60_000}, "photo_file_id": file_id, "caption": "/scan Books"})
    answer = http.post("/sandbox/telegram/messages/batch", json={"messages": messages}).json()
    assert answer["ok"] and answer["count"] == 151 and answer["pending"] == 151
    assert answer["last_update_id"] - answer["first_update_id"] == 150
    assert http.get("/sandbox/telegram/pending").json() == {"pending": 151}
    first = _updates(http)
    assert len(first) == 100  # getUpdates' own limit
    rest = _updates(http, first[-1]["update_id"] + 1)
    updates = first + rest
    senders = [u["message"]["from"]["id"] for u in updates]
    assert senders == [50_000 + i for i in range(150)] + [60_000]
    start = updates[0]["message"]
    assert start["chat"] == {"id": 50_000, "type": "private", "first_name": "U0"}
    assert start["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert updates[-1]["message"]["photo"][-1]["file_id"] == file_id


@pytest.mark.parametrize(
    "messages",
    [
        [],
        "not a list",
        [{"text": "no sender"}],
        [{"from": {"id": 1}, "text": "ok"}, {"from": {"id": 2}, "photo_file_id": "nope"}],
        [{"from": {"id": 1}, "text": "x"}] * (MAX_BATCH_MESSAGES + 1),
    ],
)
def test_a_bad_batch_queues_nothing(http: httpx.Client, messages: Any) -> None:
    response = http.post("/sandbox/telegram/messages/batch", json={"messages": messages})
    assert response.status_code == 400, response.text
    assert http.get("/sandbox/telegram/pending").json() == {"pending": 0}


def test_sent_since_reads_each_action_once(http: httpx.Client) -> None:
    for chat_id in (701, 702):
        http.post("/sandbox/telegram/chats", json={"id": chat_id, "type": "private"})
    send = f"/bot{TOKEN}/sendMessage"
    http.post(send, json={"chat_id": 701, "text": "one"})
    http.post(send, json={"chat_id": 702, "text": "two"})
    page = http.get("/sandbox/telegram/sent").json()
    assert page["total"] == 2 and [a["text"] for a in page["actions"]] == ["one", "two"]
    http.post(send, json={"chat_id": 701, "text": "three"})
    page = http.get("/sandbox/telegram/sent", params={"since": page["total"]}).json()
    assert page["total"] == 3 and [a["text"] for a in page["actions"]] == ["three"]
    page = http.get("/sandbox/telegram/sent", params={"since": 1, "chat_id": 701}).json()
    assert [a["text"] for a in page["actions"]] == ["three"]
    page = http.get("/sandbox/telegram/sent", params={"since": 3}).json()
    assert (page["total"], page["actions"]) == (3, [])
    assert http.get("/sandbox/telegram/sent", params={"kind": "edit"}).json()["actions"] == []
