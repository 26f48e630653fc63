"""A team of three at a market, end to end (issue 20, "Must show"): Anna, Ben and Carla in one
forum supergroup switched to German, each in a topic. Albums with purchase prices typed with a
decimal comma; an album captioned for another bot; results Telegram refuses; results that
finish together and come combined, one of them failed and retried from the combined reply.
At the end what Resell Scan analysed (read from the sandbox, batch by batch) is exactly what
`/find` lists, what `/report` counts and sums, what the report's CSV holds and what the
digest says."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.app import BotRuntime
from sandbox.data import analyse, collection_id, fake_jpeg
from storage import Store
from tests.conftest import eventually
from tests.harness import ANNA, BEN, CARLA, Harness, MovedClock, bot_running

pytestmark = pytest.mark.timeout(180)

BERLIN = ZoneInfo("Europe/Berlin")
GROUP = {
    "id": -1001234500077,
    "type": "supergroup",
    "title": "Flohmarkt-Team",
    "is_forum": True,
    "owner": CARLA["id"],
}
CHAT_ID = GROUP["id"]
AUTH = {"Authorization": "Bearer rs_test_full"}
REFUSED = "Bad Request: not enough rights to send text messages to the chat"
# Phase 4 uploads with this failure rate: a photo whose roll (sandbox/data.py `analyse`) is
# below it fails, and analysed again with the rate back at 0 it succeeds.
FAILURE_RATE = 0.5


Clock = MovedClock


def photo(title: str, *, fails: bool = False, part: int = 0) -> bytes:
    """A photo the sandbox analyses as `title`; with `fails` its analysis fails while the
    failure rate is FAILURE_RATE (and only then), without: it never fails."""
    marker = f"TITLE:{title}\n".encode() if part == 0 else b""
    for nonce in range(10_000):
        data = fake_jpeg(f"scenario-{title}-{part}-{nonce}") + marker
        outcome = analyse([data], "Electronics", FAILURE_RATE)["status"]
        if (outcome == "failed") == fails:
            return data
    raise AssertionError("no photo found")  # pragma: no cover


def eur(value: float) -> str:
    """An amount as the German report writes it: 1.234,50 €."""
    return f"{value:,.2f}".translate(str.maketrans(",.", ".,")) + " €"


def de_number(text: str) -> float | None:
    return float(text.replace(".", "").replace(",", ".")) if text else None


def store_of(runtime: BotRuntime) -> Store:
    assert runtime.store is not None
    return runtime.store


def buttons(action: dict[str, Any]) -> list[dict[str, Any]]:
    markup = action.get("reply_markup") or {}
    return [b for row in markup.get("inline_keyboard", []) for b in row]


async def send_album(
    harness: Harness,
    user: dict[str, Any],
    thread: int,
    photos: list[bytes],
    caption: str,
    group_id: str,
) -> list[int]:
    file_ids = [await harness.upload(data) for data in photos]
    return [
        await harness.message(
            user,
            GROUP,
            photo_file_id=file_id,
            media_group_id=group_id,
            message_thread_id=thread,
            caption=caption if index == 0 else None,
        )
        for index, file_id in enumerate(file_ids)
    ]


async def last_id(harness: Harness) -> int:
    return max([0, *(a["message_id"] or 0 for a in await harness.sent(CHAT_ID))])


async def new_send(
    harness: Harness, after: int, test: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    return await harness.wait_sent(
        CHAT_ID,
        lambda a: a["kind"] in ("send", "document", "photo") and (a["message_id"] or 0) > after
        and test(a),
        within=45,
        what=what,
    )  # fmt: skip


async def analysed_by_resell_scan(harness: Harness) -> list[dict[str, Any]]:
    """Every product analysis Resell Scan completed, from each batch's results (the API)."""
    batches = (await harness.http.get("/sandbox/batches")).json()["batches"]
    out = []
    for batch in batches:
        answer = await harness.http.get(
            f"/api/v1/products/analyze/{batch['batch_id']}/results", headers=AUTH
        )
        data = answer.json()["data"]
        assert data["status"] == "completed", data
        for product in data["products"]:
            if product["status"] != "completed":
                continue
            price = product["result"]["estimatedPrice"]
            out.append(
                {
                    "batch_id": batch["batch_id"],
                    "product_id": product["product_id"],
                    "title": product["result"]["title"],
                    "low": float(price["min"]),
                    "high": float(price["max"]),
                    "currency": price["currency"],
                    "paid": product["product_data"]["manual_fields"]["purchasePrice"],
                }
            )
    return out


async def images_in(harness: Harness, collection: str) -> list[str]:
    answer = await harness.http.get(
        f"/api/v1/collections/{collection_id(collection)}/products",
        params={"include_images": "true", "limit": 100},
        headers=AUTH,
    )
    return [i["sha256"] for p in answer.json()["data"] for i in p["images"]]


async def test_a_team_day_in_a_german_forum_group(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    # A small group window so the scenario is not throttled for a minute; the same limits
    # in the emulator and in the bot.
    await harness.rs("/sandbox/telegram/limits", {"per_group_per_minute": 20, "group_window": 5})
    await harness.rs("/sandbox/config", {"analysis_seconds": 0.5, "failure_rate": 0.0})
    await harness.chat(**GROUP)
    shoes = (
        await harness.rs(
            "/sandbox/telegram/topics", {"chat_id": CHAT_ID, "name": "Schuhe", "from": CARLA}
        )
    )["thread_id"]
    tech = (
        await harness.rs(
            "/sandbox/telegram/topics", {"chat_id": CHAT_ID, "name": "Technik", "from": CARLA}
        )
    )["thread_id"]
    # The bot's clock: tomorrow at 18:00 in Berlin (ahead of the messages' dates, never behind),
    # moved to 20:00:05 for the digest.
    day = datetime.now(BERLIN).date() + timedelta(days=1)
    clock = Clock(datetime(day.year, day.month, day.day, 18, 0, tzinfo=BERLIN))
    today, yesterday = f"{day:%d.%m.%Y}", f"{day - timedelta(days=1):%d.%m.%Y}"
    settings = settings_for(
        telegram_group_messages_per_minute=20,
        telegram_group_window_seconds=5,
        board_interval_seconds=0.5,
        digest_check_seconds=3600,
    )
    other_bot = [photo(f"Spielzeug {i}") for i in range(3)]

    async with bot_running(settings, clock=clock) as runtime:
        store = store_of(runtime)

        # 1. German, Berlin time, a digest at 20:00 ------------------------------------------
        await harness.text(ANNA, "/settings", GROUP)
        view = await harness.wait_text(CHAT_ID, "Settings of this chat")
        [language] = [b for b in buttons(view) if b["text"] == "Deutsch"]
        await harness.press(ANNA, CHAT_ID, view["message_id"], language["callback_data"])
        await harness.wait_sent(
            CHAT_ID,
            lambda a: a["kind"] == "edit" and "Einstellungen dieses Chats" in (a["text"] or ""),
            what="the settings in German",
        )
        await harness.text(CARLA, "/settings timezone Europe/Berlin", GROUP)
        await harness.wait_text(CHAT_ID, "Zeitzone Europe/Berlin")
        await harness.text(CARLA, "/settings digest 20:00", GROUP)
        await harness.wait_text(CHAT_ID, "Tagesbericht: 20:00 (Zeitzone Europe/Berlin)")

        # 2. Albums in two topics, prices with a decimal comma; Ben's first album is for
        #    another bot, and none of its photos may reach Resell Scan --------------------------
        mark = await last_id(harness)
        anna_album = await send_album(
            harness,
            ANNA,
            shoes,
            [photo("Lederschuhe Größe 42"), photo("x", part=1), photo("y", part=2)],
            "/scan Sneakers purchasePrice=12,5 size=42",
            "anna-1",
        )
        await send_album(harness, BEN, tech, other_bot, "/scan@OtherBot Toys", "ben-other")
        ben_album = await send_album(
            harness,
            BEN,
            tech,
            [photo("Kofferradio Grundig"), photo("z", part=1)],
            "/scan Electronics purchasePrice=7,25",
            "ben-1",
        )
        anna_results = await new_send(
            harness, mark, lambda a: "Ergebnisse für Anna" in (a["text"] or ""), "Anna's results"
        )
        ben_results = await new_send(
            harness, mark, lambda a: "Ergebnisse für Ben" in (a["text"] or ""), "Ben's results"
        )
        assert (anna_results["thread_id"], anna_results["reply_to"]) == (shoes, anna_album[0])
        assert (ben_results["thread_id"], ben_results["reply_to"]) == (tech, ben_album[0])
        assert "Lederschuhe Größe 42" in anna_results["text"]
        assert "Kofferradio Grundig" in ben_results["text"]

        # 3. Carla's album: Telegram refuses its results (the bot may not post there now) --------
        mark = await last_id(harness)
        await harness.rs("/sandbox/config", {"analysis_seconds": 2.0})
        await send_album(
            harness,
            CARLA,
            shoes,
            [photo("Kinderschuhe Adidas"), photo("w", part=1)],
            "/scan Sneakers purchasePrice=19,90",
            "carla-1",
        )
        # Her line is on the Schuhe board (sent or edited): the next message sent into the
        # group is her results.
        await harness.wait_sent(
            CHAT_ID,
            lambda a: a["kind"] in ("send", "edit")
            and (a["text"] or "").startswith("📋")
            and "Carla · Sneakers" in (a["text"] or ""),
            what="Carla on the board",
        )  # fmt: skip
        await harness.rs(
            "/sandbox/telegram/faults",
            {
                "kind": "error",
                "error_code": 400,
                "description": REFUSED,
                "methods": ["sendMessage"],
                "chat_id": CHAT_ID,
                "count": 1,
            },
        )

        async def refused() -> bool:
            return await store.count_by_state() == {"notified": 3}

        await eventually(refused, within=20, what="Carla's results refused and recorded")
        texts = [a["text"] or "" for a in await harness.sent(CHAT_ID)]
        assert not [t for t in texts if "Ergebnisse für Carla" in t], "refused: never shown"

        # 4. Three results finish together in Technik while Telegram makes the group wait: one
        #    combined reply. Ben's product failed; he retries it from the combined reply -------
        await harness.rs(
            "/sandbox/config", {"analysis_seconds": 60.0, "failure_rate": FAILURE_RATE}
        )
        mark = await last_id(harness)
        singles = {}
        for user, title, fails, price in (
            (ANNA, "Plattenspieler Dual", False, "3,5"),
            (BEN, "Walkman Sony", True, "24,99"),
            (CARLA, "Taschenrechner Casio", False, "8,75"),
        ):
            singles[user["id"]] = await harness.photo(
                user,
                GROUP,
                caption=f"/scan Electronics purchasePrice={price}",
                data=photo(title, fails=fails),
                message_thread_id=tech,
            )
        await eventually(lambda: _creates(harness, 6), within=20, what="the three singles uploaded")
        await harness.rs("/sandbox/config", {"failure_rate": 0.0, "analysis_seconds": 0.5})
        await harness.wait_sent(
            CHAT_ID,
            lambda a: a["kind"] in ("send", "edit")
            and (a["text"] or "").startswith("📋 Wird analysiert (3)"),
            what="the three on the Technik board",
        )  # fmt: skip
        # Telegram answers 429 to every message into the group for the next 5 s, while the
        # three analyses finish: their results wait, then go as one reply.
        await harness.rs(
            "/sandbox/telegram/faults",
            {"kind": "429", "duration": 5, "methods": ["sendMessage"], "chat_id": CHAT_ID},
        )
        batches = (await harness.http.get("/sandbox/batches")).json()["batches"]
        for batch in batches[-3:]:
            await harness.rs(f"/sandbox/batches/{batch['batch_id']}/complete", {})
        combined = await new_send(
            harness,
            mark,
            lambda a: "Ergebnisse</b> von" in (a.get("html") or ""),
            "the combined reply",
        )
        assert "Ergebnisse von 3 Analysen" in combined["text"], combined["text"]
        assert combined["thread_id"] == tech
        for user in (ANNA, BEN, CARLA):
            assert f'href="tg://user?id={user["id"]}"' in combined["html"], "each mentioned"
        every = buttons(combined)
        [retry] = [b for b in every if "🔁" in b["text"]]
        await harness.press(BEN, CHAT_ID, combined["message_id"], retry["callback_data"])
        edit = await harness.wait_sent(
            CHAT_ID,
            lambda a: a["kind"] == "edit_markup" and a["message_id"] == combined["message_id"],
            within=45,  # the group may still be paused by the 429 (5 s) on a busy machine
            what="the combined reply's keyboard edited",
        )
        assert buttons(edit) == [b for b in every if b != retry], "only Ben's 🔁 removed"
        await new_send(
            harness, mark, lambda a: "🔁 Analysiere die 1" in (a["text"] or ""), "the notice"
        )
        retried = await new_send(
            harness,
            combined["message_id"],
            lambda a: "Ergebnisse für Ben" in (a["text"] or ""),
            "the retry's results",
        )
        assert "Walkman Sony" in retried["text"]
        assert (retried["thread_id"], retried["reply_to"]) == (tech, singles[BEN["id"]])

        async def all_answered() -> bool:
            return await store.count_by_state() == {"notified": 7}

        await eventually(all_answered, within=20, what="every analysis answered")

        # What Resell Scan analysed --------------------------------------------------------
        truth = await analysed_by_resell_scan(harness)
        titles = sorted(p["title"] for p in truth)
        assert titles == sorted(
            [
                "Lederschuhe Größe 42",
                "Kofferradio Grundig",
                "Kinderschuhe Adidas",
                "Plattenspieler Dual",
                "Walkman Sony",
                "Taschenrechner Casio",
            ]
        ), "six analysed; the Walkman once (it failed first), nothing for the other bot"
        paid = {p["title"]: p["paid"] for p in truth}
        assert paid == {
            "Lederschuhe Größe 42": 12.5,
            "Kofferradio Grundig": 7.25,
            "Kinderschuhe Adidas": 19.9,
            "Plattenspieler Dual": 3.5,
            "Walkman Sony": 24.99,
            "Taschenrechner Casio": 8.75,
        }, "the decimal commas reached Resell Scan as numbers"
        batches = (await harness.http.get("/sandbox/batches")).json()["batches"]
        [walkman] = [p for p in truth if p["title"] == "Walkman Sony"]
        [failed] = [b for b in batches if b["failed_products"]]
        assert failed["product_ids"] == [walkman["product_id"]], "it failed first, then not"
        assert failed["batch_id"] != walkman["batch_id"] and len(batches) == 7
        sender = {
            "Lederschuhe Größe 42": "Anna Berg",
            "Kofferradio Grundig": "Ben",
            "Kinderschuhe Adidas": "Carla",
            "Plattenspieler Dual": "Anna Berg",
            "Walkman Sony": "Ben",
            "Taschenrechner Casio": "Carla",
        }
        low = math.fsum(p["low"] for p in truth)
        high = math.fsum(p["high"] for p in truth)
        mid = math.fsum((p["low"] + p["high"]) / 2 for p in truth)
        purchases = math.fsum(p["paid"] for p in truth)
        margin = math.fsum((p["low"] + p["high"]) / 2 - p["paid"] for p in truth)

        # The album for the other bot never went up.
        creates = await harness.creates()
        assert len(creates) == 6
        assert collection_id("Toys") not in {c["body"]["collectionId"] for c in creates}
        uploaded = await images_in(harness, "Sneakers") + await images_in(harness, "Electronics")
        assert len(uploaded) == 3 + 2 + 2 + 3
        assert not {hashlib.sha256(p).hexdigest() for p in other_bot} & set(uploaded)
        assert await images_in(harness, "Toys") == []
        texts = [a["text"] or "" for a in await harness.sent(CHAT_ID)]
        assert not [t for t in texts if "Welche Sammlung" in t or "Toys" in t], texts

        # The history the bot kept: once per analysed product, the refused one without a link.
        rows = await store.history.between(CHAT_ID, 0, clock() + 1)
        assert sorted(r.title or "" for r in rows) == titles
        [kept] = [r for r in rows if r.title == "Kinderschuhe Adidas"]
        assert kept.message_id is None and kept.message_link is None

        # /find lists exactly what Resell Scan analysed -----------------------------------
        mark = await last_id(harness)
        await harness.text(BEN, "/find", GROUP)
        found = await new_send(
            harness, mark, lambda a: (a["text"] or "").startswith("🔎"), "the /find answer"
        )
        lines = found["text"].splitlines()
        assert lines[0].startswith("🔎 Hier analysiert: 6, 1–6"), lines[0]
        assert len(lines) == 1 + 6
        for product in truth:
            [line] = [x for x in lines[1:] if f" {product['title']} · " in x]
            span = f"{eur(product['low'])[:-2]}–{eur(product['high'])}"
            assert f" · {span} · {today} · {sender[product['title']]}" in line, line
        assert "<b>Kinderschuhe Adidas</b>" in found["html"], "refused: nothing to link to"
        for title in set(titles) - {"Kinderschuhe Adidas"}:
            assert f"{title}</a>" in found["html"], f"{title} links to its results"
        mark = await last_id(harness)
        await harness.text(ANNA, "/find schuhe", GROUP)
        shoes_found = await new_send(
            harness, mark, lambda a: (a["text"] or "").startswith("🔎"), "/find schuhe"
        )
        assert "2 gefunden" in shoes_found["text"], shoes_found["text"]
        assert "Lederschuhe" in shoes_found["text"] and "Kinderschuhe" in shoes_found["text"]

        # /report counts and sums the same ----------------------------------------------
        mark = await last_id(harness)
        await harness.text(CARLA, "/report", GROUP)
        summary = await new_send(
            harness, mark, lambda a: (a["text"] or "").startswith("📊 Heute"), "the report"
        )
        text = summary["text"]
        assert today in text
        assert "📦 Produkte: 6 · Mitglieder: 3" in text, text
        assert f"💶 Geschätzter Wert: {eur(mid)} (Spanne {eur(low)[:-2]}–{eur(high)})" in text
        assert f"🧾 Einkaufspreise: {eur(purchases)} (bei 6 von 6 angegeben)" in text, text
        assert f"📈 Geschätzte Marge: {eur(margin)} (über 6 mit Schätzung" in text, text
        for name in ("Anna Berg", "Ben", "Carla"):
            own = [p for p in truth if sender[p["title"]] == name]
            own_mid = math.fsum((p["low"] + p["high"]) / 2 for p in own)
            own_span = (
                f"{eur(math.fsum(p['low'] for p in own))[:-2]}"
                f"–{eur(math.fsum(p['high'] for p in own))}"
            )
            own_margin = math.fsum((p["low"] + p["high"]) / 2 - p["paid"] for p in own)
            assert (
                f"• {name}: 📦 2 · {eur(own_mid)} ({own_span})"
                f" · Marge {eur(own_margin)} (2 mit Einkaufspreis)"
            ) in text, text

        [csv_button] = buttons(summary)
        mark = await last_id(harness)
        await harness.press(CARLA, CHAT_ID, summary["message_id"], csv_button["callback_data"])
        document = await new_send(
            harness, mark, lambda a: a["kind"] == "document", "the report's CSV"
        )
        table = list(
            csv.DictReader(
                io.StringIO(base64.b64decode(document["content_b64"]).decode("utf-8-sig")),
                delimiter=";",
            )
        )
        assert sorted(r["title"] for r in table) == titles
        for product in truth:
            [line] = [r for r in table if r["title"] == product["title"]]
            product_mid = (product["low"] + product["high"]) / 2
            assert line["sender"] == sender[product["title"]]
            assert line["analysed_at"].startswith(day.isoformat()), line
            assert de_number(line["price_min"]) == product["low"]
            assert de_number(line["price_max"]) == product["high"]
            assert de_number(line["purchase_price"]) == product["paid"], line
            assert de_number(line["margin"]) == pytest.approx(product_mid - product["paid"])
            assert line["currency"] == product["currency"]
        assert [r["message_link"] for r in table if r["title"] == "Kinderschuhe Adidas"] == [""]

        # The digest at 20:00 says the same --------------------------------------------
        clock.set(datetime(day.year, day.month, day.day, 20, 0, 5, tzinfo=BERLIN))
        mark = await last_id(harness)
        assert runtime.team is not None
        assert await runtime.team.send_due_digests() == 1
        digest = await new_send(
            harness, mark, lambda a: (a["text"] or "").startswith("🗓"), "the digest"
        )
        assert "Tagesbericht" in digest["text"]
        assert f"{yesterday} 20:00 – {today} 20:00" in digest["text"], digest["text"]
        body = text.split("\n", 1)[1]  # the report without its heading
        assert body in digest["text"], (body, digest["text"])
    limits = (await harness.http.get("/sandbox/telegram/limits")).json()
    assert limits["floods"] == 0, "within the group's limit by design"


async def _creates(harness: Harness, wanted: int) -> bool:
    return len(await harness.creates()) >= wanted
