"""The Telegram emulator's flood limits: direct HTTP calls, no bot. Time is driven through the
control API (`freeze` stops the limiter's clock, `advance` moves it), never by sleeping."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.server import SandboxThread
from sandbox.telegram import FloodLimiter, FloodRefusal, FloodTicket, busiest, message_cost

pytestmark = pytest.mark.telegram_limits

TOKEN = "123456:TEST-token-abcdefghijklmnop"
USER: dict[str, Any] = {"id": 701, "first_name": "Pia"}
PRIVATE: dict[str, Any] = {"id": 701, "type": "private", "first_name": "Pia"}
GROUP: dict[str, Any] = {"id": -4004, "type": "supergroup", "title": "Limits"}


class Api:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def call(self, method: str, **params: Any) -> httpx.Response:
        return self.http.post(f"/bot{TOKEN}/{method}", json=params)

    def ok(self, method: str, **params: Any) -> Any:
        response = self.call(method, **params)
        body = response.json()
        assert response.status_code == 200 and body["ok"], body
        return body["result"]

    def flood(self, method: str, **params: Any) -> int:
        """The call is refused with Telegram's 429 answer; its retry_after."""
        response = self.call(method, **params)
        body = response.json()
        assert response.status_code == 429, body
        retry_after = body["parameters"]["retry_after"]
        assert body == {
            "ok": False,
            "error_code": 429,
            "description": f"Too Many Requests: retry after {retry_after}",
            "parameters": {"retry_after": retry_after},
        }
        assert isinstance(retry_after, int) and retry_after >= 1
        return int(retry_after)

    def send(self, chat: dict[str, Any], text: str = "hi") -> int:
        message_id: int = self.ok("sendMessage", chat_id=chat["id"], text=text)["message_id"]
        return message_id

    def ctl(self, path: str, **body: Any) -> dict[str, Any]:
        response = self.http.post(f"/sandbox/telegram/{path}", json=body)
        result: dict[str, Any] = response.json()
        assert response.status_code == 200, result
        return result

    def limits(self, **body: Any) -> dict[str, Any]:
        if body:
            return self.ctl("limits", **body)
        result: dict[str, Any] = self.http.get("/sandbox/telegram/limits").json()
        return result

    def advance(self, seconds: float) -> None:
        self.limits(advance=seconds)

    def actions(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        params = {"chat_id": chat_id} if chat_id is not None else {}
        actions: list[dict[str, Any]] = self.http.get(
            "/sandbox/telegram/sent", params=params
        ).json()["actions"]
        return actions


@pytest.fixture
def api(sandbox: SandboxThread) -> Iterator[Api]:
    """The emulator with default limits and the limiter's clock stopped."""
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        client = Api(http)
        client.ctl("chats", **PRIVATE)
        client.ctl("chats", **GROUP)
        client.limits(freeze=True)
        yield client


def test_defaults_are_telegrams_figures(api: Api) -> None:
    report = api.limits()
    assert report["limits"] == {
        "enabled": True,
        "per_bot_per_second": 30,
        "per_chat_per_second": 1.0,
        "chat_burst": 3,
        "per_group_per_minute": 20,
        "group_window": 60.0,
    }
    assert (report["counted"], report["floods"], report["chats"]) == (0, 0, {})


def test_21st_group_message_within_a_minute_is_refused(api: Api) -> None:
    for _ in range(20):  # one a second: the per-chat limit never bites
        api.send(GROUP)
        api.advance(1)
    # 20 messages at t = 0..19, now t = 20: the first leaves the window at t = 60
    assert api.flood("sendMessage", chat_id=GROUP["id"], text="21st") == 40
    api.advance(39.5)
    assert api.flood("sendMessage", chat_id=GROUP["id"], text="21st") == 1  # 0.5 s, rounded up
    api.advance(0.5)
    api.send(GROUP, "21st")
    assert api.flood("sendMessage", chat_id=GROUP["id"], text="22nd") == 1  # t = 1 leaves at 61
    chat = api.limits()["chats"][str(GROUP["id"])]
    assert chat["type"] == "supergroup"
    assert (chat["counted"], chat["busiest_minute"], chat["floods"]) == (21, 20, 3)
    assert [a["scope"] for a in api.actions(GROUP["id"]) if a["kind"] == "flood"] == [
        "group",
        "group",
        "group",
    ]


def test_group_burst_is_limited_by_the_chat_bucket_too(api: Api) -> None:
    for _ in range(3):
        api.send(GROUP)
    assert api.flood("sendMessage", chat_id=GROUP["id"], text="4th") == 1
    assert api.actions(GROUP["id"])[-1]["scope"] == "chat"


def test_private_chat_gets_a_burst_then_one_message_a_second(api: Api) -> None:
    for _ in range(3):
        api.send(PRIVATE)
    assert api.flood("sendMessage", chat_id=PRIVATE["id"], text="4th") == 1
    api.advance(0.4)
    assert api.flood("sendMessage", chat_id=PRIVATE["id"], text="4th") == 1  # 0.6 s left
    api.advance(0.6)
    api.send(PRIVATE, "4th")
    assert api.flood("sendMessage", chat_id=PRIVATE["id"], text="5th") == 1
    for _ in range(5):  # steady one a second is fine forever
        api.advance(1)
        api.send(PRIVATE)
    api.advance(60)  # a long pause refills the bucket to its burst, not beyond
    for _ in range(3):
        api.send(PRIVATE)
    assert api.flood("sendMessage", chat_id=PRIVATE["id"], text="again") == 1
    chat = api.limits()["chats"][str(PRIVATE["id"])]
    assert (chat["counted"], chat["busiest_second"], chat["floods"]) == (12, 3, 4)


def test_at_most_30_messages_a_second_across_chats(api: Api) -> None:
    chats: list[dict[str, Any]] = [{"id": 9000 + i, "type": "private"} for i in range(31)]
    for chat in chats:
        api.ctl("chats", **chat)
    for chat in chats[:30]:
        api.send(chat)
    assert api.flood("sendMessage", chat_id=chats[30]["id"], text="31st") == 1
    flood = api.actions(chats[30]["id"])[-1]
    assert (flood["kind"], flood["scope"], flood["method"], flood["retry_after"]) == (
        "flood",
        "bot",
        "sendMessage",
        1,
    )
    api.advance(0.5)
    assert api.flood("sendMessage", chat_id=chats[30]["id"], text="31st") == 1
    api.advance(0.5)
    api.send(chats[30], "31st")
    report = api.limits()
    assert (report["counted"], report["floods"]) == (31, 2)
    assert report["floods_by_chat"] == {str(chats[30]["id"]): 2}


def test_edits_count(api: Api) -> None:
    message_id = api.send(PRIVATE, "v1")
    api.ok("editMessageText", chat_id=PRIVATE["id"], message_id=message_id, text="v2")
    markup = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
    api.ok(
        "editMessageReplyMarkup",
        chat_id=PRIVATE["id"],
        message_id=message_id,
        reply_markup=markup,
    )
    assert api.flood("editMessageText", chat_id=PRIVATE["id"], message_id=message_id, text="v3")
    flood = api.actions(PRIVATE["id"])[-1]
    assert (flood["kind"], flood["method"], flood["message_id"]) == (
        "flood",
        "editMessageText",
        message_id,
    )
    methods = api.limits()["chats"][str(PRIVATE["id"])]["methods"]
    assert methods == {"sendMessage": 1, "editMessageText": 1, "editMessageReplyMarkup": 1}


def test_edits_count_towards_the_group_minute(api: Api) -> None:
    message_id = api.send(GROUP, "status 0")
    for i in range(1, 20):
        api.advance(1)
        api.ok("editMessageText", chat_id=GROUP["id"], message_id=message_id, text=f"status {i}")
    api.advance(1)
    assert api.flood(
        "editMessageText", chat_id=GROUP["id"], message_id=message_id, text="status 20"
    )
    assert api.actions(GROUP["id"])[-1]["scope"] == "group"


def test_callback_answers_reactions_and_getters_do_not_count(api: Api) -> None:
    message_id = api.send(PRIVATE)
    api.send(PRIVATE)
    api.send(PRIVATE)
    file_id = api.ctl("files", data_b64="AAEC", mime_type="image/jpeg")["file_id"]
    api.ctl("messages", **{"from": USER, "text": "/start"})
    api.ctl("callback", **{"from": USER}, chat_id=PRIVATE["id"], message_id=message_id, data="x")
    for _ in range(5):
        api.ok("getMe")
        api.ok("getChat", chat_id=PRIVATE["id"])
        api.ok("getFile", file_id=file_id)
        api.ok("getUpdates", timeout=0)
        api.ok("answerCallbackQuery", callback_query_id="cbq1")
        api.ok("sendChatAction", chat_id=PRIVATE["id"], action="typing")
        api.ok(
            "setMessageReaction",
            chat_id=PRIVATE["id"],
            message_id=message_id,
            reaction=[{"type": "emoji", "emoji": "👍"}],
        )
    report = api.limits()
    assert (report["counted"], report["floods"]) == (3, 0)
    assert api.flood("sendMessage", chat_id=PRIVATE["id"], text="4th") == 1


def test_refused_calls_do_not_count(api: Api) -> None:
    for _ in range(5):
        response = api.call("sendMessage", chat_id=PRIVATE["id"], text=" ")
        assert response.status_code == 400, response.text
    message_id = api.send(PRIVATE, "same")
    response = api.call(
        "editMessageText", chat_id=PRIVATE["id"], message_id=message_id, text="same"
    )
    assert "message is not modified" in response.json()["description"]
    api.send(PRIVATE)
    api.send(PRIVATE)
    assert api.flood("sendMessage", chat_id=PRIVATE["id"], text="4th") == 1
    assert api.limits()["counted"] == 3


def test_limits_can_be_tightened_loosened_and_switched_off(api: Api) -> None:
    api.limits(per_group_per_minute=2, chat_burst=5)
    api.send(GROUP)
    api.send(GROUP)
    assert api.flood("sendMessage", chat_id=GROUP["id"], text="3rd") == 60
    api.limits(per_group_per_minute=4)
    api.send(GROUP, "3rd")
    api.send(GROUP, "4th")
    assert api.flood("sendMessage", chat_id=GROUP["id"], text="5th") == 60
    api.limits(per_chat_per_second=0.25, chat_burst=1)  # one message every 4 s
    api.send(PRIVATE)
    assert api.flood("sendMessage", chat_id=PRIVATE["id"], text="2nd") == 4
    api.limits(per_bot_per_second=0, per_chat_per_second=0, per_group_per_minute=0)
    for _ in range(40):
        api.send(GROUP)
    api.limits(enabled=False, per_bot_per_second=30, per_chat_per_second=1.0)
    for _ in range(40):
        api.send(PRIVATE)
    report = api.limits()
    assert report["limits"] == {
        "enabled": False,
        "per_bot_per_second": 30,
        "per_chat_per_second": 1.0,
        "chat_burst": 1,
        "per_group_per_minute": 0,
        "group_window": 60.0,
    }
    assert report["chats"][str(PRIVATE["id"])]["busiest_second"] == 41  # counted, not refused
    api.limits(enabled=True)
    assert api.flood("sendMessage", chat_id=PRIVATE["id"], text="on again") == 1
    api.ctl("reset")
    api.ctl("chats", **PRIVATE)
    report = api.limits()
    assert report["limits"]["enabled"] is True and report["limits"]["chat_burst"] == 3
    assert (report["frozen"], report["offset"], report["counted"]) == (False, 0.0, 0)


@pytest.mark.parametrize(
    "body",
    [
        {"per_group_minute": 20},
        {"enabled": "yes"},
        {"chat_burst": 0},
        {"chat_burst": 2.5},
        {"per_bot_per_second": -1},
        {"per_chat_per_second": True},
        {"advance": -1},
        {"freeze": 1},
    ],
)
def test_bad_settings_are_refused_and_change_nothing(api: Api, body: dict[str, Any]) -> None:
    before = api.limits()
    response = api.http.post("/sandbox/telegram/limits", json=body)
    assert response.status_code == 400, response.text
    after = api.limits()
    assert (after["limits"], after["clock"]) == (before["limits"], before["clock"])


def test_clear_forgets_history_and_keeps_settings(api: Api) -> None:
    api.limits(chat_burst=1)
    api.send(PRIVATE)
    assert api.flood("sendMessage", chat_id=PRIVATE["id"], text="2nd") == 1
    report = api.limits(clear=True)
    assert (report["counted"], report["floods"], report["chats"]) == (0, 0, {})
    assert report["limits"]["chat_burst"] == 1 and report["frozen"] is True
    api.send(PRIVATE)


def test_every_429_is_a_flood_action_and_in_the_calls_log(api: Api) -> None:
    api.ctl("faults", method="sendMessage", kind="429", retry_after=7, count=1)
    assert api.flood("sendMessage", chat_id=GROUP["id"], text="injected") == 7
    for _ in range(3):
        api.send(GROUP)
    assert api.flood("sendMessage", chat_id=GROUP["id"], text="limited") == 1
    floods = [a for a in api.actions(GROUP["id"]) if a["kind"] == "flood"]
    assert [(a["chat_id"], a["method"], a["retry_after"], a["scope"]) for a in floods] == [
        (GROUP["id"], "sendMessage", 7, "fault"),
        (GROUP["id"], "sendMessage", 1, "chat"),
    ]
    assert all(a["text"] is None for a in floods)
    calls = api.http.get("/sandbox/telegram/calls").json()["calls"]
    refused = [c for c in calls if c.get("error_code") == 429]
    assert [c["retry_after"] for c in refused] == [7, 1]
    report = api.limits()  # the limiter's own 429s only; the injected one is a fault
    assert (report["floods"], report["floods_by_chat"]) == (1, {str(GROUP["id"]): 1})
    times = report["chats"][str(GROUP["id"])]["at"]
    assert len(times) == 3 and len(set(times)) == 1  # the frozen clock


def test_a_timed_fault_pauses_one_chat_for_its_duration(api: Api) -> None:
    """A chat under a flood wait: every message to it is refused with the given retry_after
    until the fault's time is over (the limiter's clock); other chats and calls that are not
    messages are untouched, and the refusals do not count."""
    counted = ["sendMessage", "editMessageText", "sendDocument"]
    api.ctl("faults", kind="429", chat_id=GROUP["id"], retry_after=30, duration=60, methods=counted)
    for _ in range(5):  # any number of calls, not a count
        assert api.flood("sendMessage", chat_id=GROUP["id"], text="paused") == 30
    api.send(PRIVATE, "other chats go on")
    api.ok("getChat", chat_id=GROUP["id"])  # not in `methods`
    api.advance(30)
    assert api.flood("sendMessage", chat_id=GROUP["id"], text="still paused") == 30
    api.advance(29.5)
    assert api.flood("sendMessage", chat_id=GROUP["id"], text="half a second left") == 30
    api.advance(0.5)
    api.send(GROUP, "the wait is over")
    floods = [a for a in api.actions(GROUP["id"]) if a["kind"] == "flood"]
    assert len(floods) == 7
    assert {(a["scope"], a["retry_after"]) for a in floods} == {("fault", 30)}
    report = api.limits()
    assert report["floods"] == 0  # the injected refusals are not the limiter's
    assert report["chats"][str(GROUP["id"])]["counted"] == 1


def test_a_timed_fault_without_retry_after_counts_down(api: Api) -> None:
    api.ctl("faults", kind="429", chat_id=PRIVATE["id"], duration=60, method="sendMessage")
    assert api.flood("sendMessage", chat_id=PRIVATE["id"], text="a") == 60
    api.advance(10.2)
    assert api.flood("sendMessage", chat_id=PRIVATE["id"], text="b") == 50  # 49.8 s, rounded up
    api.advance(49.5)
    assert api.flood("sendMessage", chat_id=PRIVATE["id"], text="c") == 1
    api.advance(0.3)
    api.send(PRIVATE, "d")
    api.ctl("faults", kind="429", chat_id=PRIVATE["id"], duration=5, method="sendMessage")
    api.ctl("faults", clear=True)  # clear ends a timed fault too
    api.send(PRIVATE, "e")


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "429", "duration": 0},
        {"kind": "429", "duration": "60"},
        {"kind": "429", "duration": 10, "retry_after": 0},
        {"kind": "429", "methods": "sendMessage"},
        {"kind": "429", "methods": []},
        {"kind": "429", "chat_id": "-4004"},
        {"kind": "slow"},
    ],
)
def test_bad_faults_are_refused(api: Api, body: dict[str, Any]) -> None:
    response = api.http.post("/sandbox/telegram/faults", json=body)
    assert response.status_code == 400, response.text
    api.send(PRIVATE)  # and nothing was set


# The limiter itself, on an injected clock ---------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_on_an_injected_clock() -> None:
    clock = FakeClock()
    limiter = FloodLimiter(clock)
    first = limiter.acquire("sendMessage", 1, "private")
    assert isinstance(first, FloodTicket) and first.at == 1000.0
    for _ in range(2):
        assert isinstance(limiter.acquire("sendMessage", 1, "private"), FloodTicket)
    refusal = limiter.acquire("sendMessage", 1, "private")
    assert isinstance(refusal, FloodRefusal)
    assert (refusal.retry_after, refusal.scope, refusal.wait) == (1, "chat", 1.0)
    clock.now += 0.25
    refusal = limiter.acquire("sendMessage", 1, "private")
    assert isinstance(refusal, FloodRefusal) and refusal.wait == pytest.approx(0.75)
    limiter.refund(first)  # the first call failed after all
    assert isinstance(limiter.acquire("sendMessage", 1, "private"), FloodTicket)
    assert limiter.counted == 3


def test_album_is_admitted_on_one_free_slot_and_counts_all_its_items() -> None:
    clock = FakeClock()
    limiter = FloodLimiter(clock)
    media = [{"type": "photo", "media": f"p{i}"} for i in range(10)]
    cost = message_cost("sendMediaGroup", {"media": media})
    assert cost == 10
    album = limiter.acquire("sendMediaGroup", 1, "private", cost)
    assert isinstance(album, FloodTicket)
    refusal = limiter.acquire("sendMessage", 1, "private")
    assert isinstance(refusal, FloodRefusal)
    assert refusal.retry_after == 8  # 3 - 10 = -7 tokens: 8 s until one is back
    assert limiter.report()["chats"]["1"]["busiest_second"] == 10


def test_counted_methods() -> None:
    for method in (
        "sendMessage",
        "sendDocument",
        "sendPhoto",
        "copyMessage",
        "editMessageText",
        "editMessageCaption",
        "editMessageReplyMarkup",
    ):
        assert message_cost(method, {}) == 1, method
    for method in (
        "answerCallbackQuery",
        "setMessageReaction",
        "getMe",
        "getFile",
        "getChat",
        "getUpdates",
        "sendChatAction",
        "deleteMessage",
    ):
        assert message_cost(method, {}) == 0, method


def test_freeze_and_unfreeze_keep_the_clock_continuous() -> None:
    clock = FakeClock()
    limiter = FloodLimiter(clock)
    limiter.freeze(True)
    clock.now += 50
    assert limiter.now() == 1000.0
    limiter.advance(2)
    assert limiter.now() == 1002.0
    limiter.freeze(False)
    assert limiter.now() == 1002.0
    clock.now += 1
    assert limiter.now() == 1003.0


def test_busiest_window() -> None:
    assert busiest([], 60) == 0
    assert busiest([0, 59.9, 60, 119.95], 60) == 2
    assert busiest([0, 0, 0, 0.5, 1.0], 1) == 4
