"""Which failures to fetch a photo from Telegram are final (bot/telegram/outbox.py
`TelegramChat.download`): only a 400; everything else is tried again by the tracker, a bounded
number of times (tests/test_outage.py drives those end to end through the emulator)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from bot.chat import PhotoUnavailable
from bot.telegram.outbox import TelegramChat

pytestmark = pytest.mark.timeout(10)


class StubFile:
    def __init__(self, path: str | None, download: TelegramError | None) -> None:
        self.file_path = path
        self.failure = download

    async def download_as_bytearray(self) -> bytearray:
        if self.failure is not None:
            raise self.failure
        return bytearray(b"\xff\xd8 a photo")


class StubBot:
    """Telegram answering getFile with `get_file` (an error, or a file path) and the file's
    download with `download` (an error, or the bytes)."""

    def __init__(
        self, get_file: TelegramError | str | None, download: TelegramError | None = None
    ) -> None:
        self.answer = get_file
        self.download = download

    async def get_file(self, file_id: str) -> StubFile:
        if isinstance(self.answer, TelegramError):
            raise self.answer
        return StubFile(self.answer, self.download)


def chat_with(bot: StubBot) -> TelegramChat:
    unused = cast(Any, None)
    return TelegramChat(
        settings=unused, store=unused, catalog=unused, bot=cast(Any, bot), callbacks=unused
    )


async def test_a_photo_telegram_hands_over_is_its_bytes() -> None:
    assert await chat_with(StubBot("files/1.jpg")).download("f") == b"\xff\xd8 a photo"


@pytest.mark.parametrize(
    ("bot", "reason"),
    [
        (StubBot(BadRequest("Bad Request: file is too big")), "photo_too_big"),
        (StubBot(BadRequest("Bad Request: invalid file_id")), "photo_unavailable"),
    ],
    ids=["too-big", "unknown-file-id"],
)
async def test_a_400_is_final(bot: StubBot, reason: str) -> None:
    with pytest.raises(PhotoUnavailable) as caught:
        await chat_with(bot).download("f")
    assert caught.value.final
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "bot",
    [
        StubBot(NetworkError("Internal Server Error (500)")),
        StubBot(TimedOut()),
        StubBot(NetworkError("httpx.ConnectError: connection refused")),
        # PTB raises InvalidToken for a 404, Forbidden for a 403, on a file download too.
        StubBot("files/1.jpg", download=InvalidToken("Not Found")),
        StubBot("files/1.jpg", download=Forbidden("Forbidden")),
        StubBot("files/1.jpg", download=TimedOut()),
        # Telegram may leave the path out; PTB's download then raised a RuntimeError, which
        # the tracker took for a request it cannot build (the user was told so, for good).
        StubBot(None),
    ],
    ids=[
        "getFile-500",
        "getFile-timeout",
        "getFile-refused",
        "download-404",
        "download-403",
        "download-timeout",
        "no-file-path",
    ],
)
async def test_anything_else_may_pass(bot: StubBot) -> None:
    with pytest.raises(PhotoUnavailable) as caught:
        await chat_with(bot).download("f")
    assert not caught.value.final
    assert caught.value.reason == "photo_unavailable"
    assert caught.value.retry_after == 0


async def test_a_flood_wait_carries_its_wait() -> None:
    """A 429 on getFile: tried again, not before the wait Telegram asked for (the tracker's
    pause is at least `retry_after`)."""
    with pytest.raises(PhotoUnavailable) as caught:
        await chat_with(StubBot(RetryAfter(7))).download("f")
    assert not caught.value.final
    assert caught.value.retry_after == 7
