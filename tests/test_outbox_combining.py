"""Combined results in a group (bot/telegram/outbox.py): what is taken is sent, exactly, in its
topic, whatever Telegram answers. A Bot-shaped stand-in (the real scheduler, real rendering) lets
the worst instants be chosen: a 429 on the combined send with more results arriving during the
wait, a send that fails while others wait, two forum topics at once, many results at once."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from telegram.error import BadRequest, ChatMigrated, Forbidden, RetryAfter, TimedOut

from bot.chat import ChatError, Outgoing, RetryLater, Role
from bot.telegram import render
from bot.telegram.callbacks import CallbackCodec
from bot.telegram.outbox import TelegramChat, translated
from bot.telegram.scheduler import SendLimits, SendScheduler
from storage import Submission
from tests.test_presentation import batch, make_sub

GROUP = -1001234500009


class Sent:
    def __init__(self, message_id: int) -> None:
        self.message_id = message_id


class Bot:
    """Records sends; fails the first ones as told."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.failures = list(failures or [])
        self.sent: list[dict[str, Any]] = []
        self.attempts = 0
        self.first_attempt = asyncio.Event()

    async def send_message(self, *, chat_id: int, text: str, **kw: Any) -> Sent:
        self.attempts += 1
        self.first_attempt.set()
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append({"chat_id": chat_id, "text": text, **kw})
        return Sent(1000 + len(self.sent))


class Store:
    async def photos(self, sub_id: int) -> list[Any]:
        return []


class Boards:
    @staticmethod
    def applies(chat_id: int) -> bool:
        return chat_id < 0


class AtBudget:
    """A group whose budget is spent, as the chat side sees it: results are combined rather
    than sent one by one. The real scheduler (unlimited) sends them."""

    def __init__(self) -> None:
        self.real = SendScheduler(SendLimits.unlimited())

    def wait_for(self, chat_id: int) -> float:
        return 1.0

    async def submit(self, chat_id: int, call: Any, **kw: Any) -> Any:
        return await self.real.submit(chat_id, call, **kw)


def chat_for(bot: Bot) -> TelegramChat:
    return TelegramChat(
        settings=None,  # type: ignore[arg-type]
        store=Store(),  # type: ignore[arg-type]
        catalog=None,  # type: ignore[arg-type]
        bot=bot,  # type: ignore[arg-type]
        callbacks=CallbackCodec(b"k" * 32),
        scheduler=AtBudget(),  # type: ignore[arg-type]
        boards=Boards(),  # type: ignore[arg-type]
        clock=lambda: 100.0,
    )


def result(sub_id: int, thread: int | None = None, products: int = 1) -> Submission:
    status = batch(products)
    return dataclasses.replace(
        make_sub(id=sub_id, chat_id=GROUP, message_id=sub_id, user_name=f"Seller {sub_id}"),
        thread_id=thread,
        results=status.raw,
    )


ONE = [Outgoing("results", role=Role.RESULTS)]


def sellers(text: str) -> set[int]:
    return {i for i in range(1, 100) if f"Seller {i}<" in text or f"Seller {i} " in text}


@pytest.mark.timeout(20)
async def test_a_429_on_the_combined_send_sends_what_was_taken_and_then_the_rest() -> None:
    bot = Bot([RetryAfter(timedelta(seconds=0.2))])
    chat = chat_for(bot)
    first = [asyncio.ensure_future(chat.combined(result(i), ONE)) for i in (1, 2)]
    await bot.first_attempt.wait()  # refused with 429; a third result comes during the wait
    third = asyncio.ensure_future(chat.combined(result(3), ONE))
    ids = await asyncio.gather(*first, third)
    by_id = {m: sellers(s["text"]) for m, s in zip((1001, 1002), bot.sent, strict=False)}
    assert 1 in by_id[ids[0]] and 2 in by_id[ids[1]] and 3 in by_id[ids[2]], (ids, by_id)
    assert sorted(i for group in by_id.values() for i in group) == [1, 2, 3], "each once"


@pytest.mark.timeout(20)
async def test_a_failed_combined_send_fails_what_it_took_and_the_others_still_go() -> None:
    bot = Bot([TimedOut()])
    chat = chat_for(bot)
    many = [asyncio.ensure_future(chat.combined(result(i, products=8), ONE)) for i in range(1, 13)]
    outcomes = await asyncio.gather(*many, return_exceptions=True)
    failed = [i for i, o in enumerate(outcomes, start=1) if isinstance(o, Exception)]
    sent = [i for i, o in enumerate(outcomes, start=1) if isinstance(o, int)]
    assert failed and sent, outcomes  # the first message's results retry later; the rest went
    assert sorted(i for s in bot.sent for i in sellers(s["text"])) == sent


@pytest.mark.timeout(20)
async def test_results_of_two_forum_topics_go_to_their_own_topic() -> None:
    bot = Bot()
    chat = chat_for(bot)
    await asyncio.gather(
        *(chat.combined(result(i, thread=11 if i % 2 else 22), ONE) for i in range(1, 7))
    )
    for message in bot.sent:
        threads = {11 if i % 2 else 22 for i in sellers(message["text"])}
        assert threads == {message["message_thread_id"]}, message


def test_as_many_as_fit_and_nothing_is_cut() -> None:
    codec = CallbackCodec(b"k" * 32)
    for products in (1, 3, 7):
        items = [(result(i, products=products), batch(products), products) for i in range(1, 40)]
        count = render.combined_fit("en", items, codec, now=100.0)
        text, _ = render.combined_results("en", items[:count], codec, now=100.0)
        assert len(text) <= render.SAFE_LIMIT
        assert sellers(text) == set(range(1, count + 1))
        batch_line = render.t("en", "combined_summary", ok=products, total=products, batch="0123")
        assert text.count(batch_line.split("·")[0].strip()) == count, "every summary present"
        if count < len(items):
            bigger, _ = render.combined_results("en", items[: count + 1], codec, now=100.0)
            assert len(bigger) > render.SAFE_LIMIT, "one more would not have fit"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RetryAfter(timedelta(seconds=3)), "RetryLater"),
        (Forbidden("bot was blocked by the user"), "ChatGone"),
        (ChatMigrated(-1009999), "ChatGone"),
        (BadRequest("message is too long"), "Refused"),
        (TimedOut(), "ChatError"),
    ],
)
async def test_telegram_errors_become_the_ports(error: Exception, expected: str) -> None:
    async def call() -> None:
        raise error

    with pytest.raises(ChatError) as caught:
        await translated(call)
    assert type(caught.value).__name__ == expected
    if isinstance(caught.value, RetryLater):
        assert caught.value.seconds == 3
