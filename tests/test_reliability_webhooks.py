"""Webhook storm and fuzzing of the relay and the caption parser."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.intake import CaptionError, NotForUs, coerce_fields, parse_caption
from bot.resellscan import ManualField
from bot.resellscan.webhooks import sign
from bot.telegram.texts import t
from tests.conftest import eventually
from tests.harness import ANNA, BEN, CARLA, WEBHOOK_SECRET, Harness, bot_running, results_replies

USERS = [ANNA, BEN, CARLA]


async def test_webhook_storm(
    harness: Harness, settings_for: Callable[..., Any], large: bool
) -> None:
    """Many deliveries: duplicates, reordered, late, and 10% with bad signatures."""
    batches_wanted, deliveries_wanted = (100, 1000) if large else (15, 200)
    rng = random.Random(99)
    await harness.rs("/sandbox/config", {"analysis_seconds": 0, "rate_limit": 100_000})
    settings = settings_for(
        resell_scan_webhook_secrets=WEBHOOK_SECRET, poll_initial_seconds=600, poll_max_seconds=600
    )
    async with bot_running(settings) as bot:
        assert bot.store is not None
        for i in range(batches_wanted):
            await harness.photo(USERS[i % 3], caption="/scan Electronics")

        async def all_submitted() -> bool:
            counts = await bot.store.count_by_state()  # type: ignore[union-attr]
            return counts.get("submitted", 0) == batches_wanted

        await eventually(all_submitted, within=60, what="every photo submitted")
        batch_ids = [
            b["batch_id"] for b in (await harness.http.get("/sandbox/batches")).json()["batches"]
        ]
        bodies = {}
        for batch_id in batch_ids:
            data = (
                await harness.http.get(
                    f"/api/v1/products/analyze/{batch_id}/results",
                    headers={"Authorization": "Bearer rs_test_full"},
                )
            ).json()
            bodies[batch_id] = json.dumps(
                {
                    "id": f"evt_{batch_id}",
                    "event": "analysis.completed",
                    "created_at": "2026-11-27T10:00:00.000Z",
                    "data": data["data"],
                }
            ).encode()
        plan: list[tuple[bytes, str, bool]] = []
        for batch_id in batch_ids:  # every batch at least once, correctly signed
            plan.append((bodies[batch_id], sign(bodies[batch_id], WEBHOOK_SECRET), True))
        while len(plan) < deliveries_wanted:
            body = bodies[rng.choice(batch_ids)]
            if rng.random() < 0.1:
                bad = rng.choice(
                    [
                        sign(body, "whsec_attacker"),
                        sign(body + b"x", WEBHOOK_SECRET),
                        "",
                        "sha256=" + "0" * 64,
                    ]
                )
                plan.append((body, bad, False))
            else:
                plan.append((body, sign(body, WEBHOOK_SECRET), True))
        rng.shuffle(plan)
        late = plan[len(plan) * 2 // 3 :]  # a third arrives after the replies went out
        early = plan[: len(plan) * 2 // 3]
        url = f"http://127.0.0.1:{bot.port}/webhooks/resell-scan"
        statuses: list[tuple[int, bool]] = []
        async with httpx.AsyncClient(timeout=30) as http:

            async def deliver(body: bytes, signature: str, good: bool) -> None:
                headers = {"content-type": "application/json"}
                if signature:
                    headers["x-webhook-signature"] = signature
                response = await http.post(url, content=body, headers=headers)
                statuses.append((response.status_code, good))

            async def send(items: list[tuple[bytes, str, bool]]) -> None:
                for start in range(0, len(items), 25):
                    await asyncio.gather(*(deliver(*item) for item in items[start : start + 25]))

            await send(early)

            async def all_replied() -> bool:
                return await total_replies(harness) == batches_wanted

            await eventually(all_replied, within=60, what="every batch's results reply")
            await send(late)
    assert len(statuses) == deliveries_wanted
    assert all(code < 500 for code, _ in statuses), "never a 5xx"
    assert all(code == 401 for code, good in statuses if not good), "every bad signature is 401"
    assert all(code == 200 for code, good in statuses if good)
    assert await total_replies(harness) == batches_wanted, "every batch reported exactly once"


async def total_replies(harness: Harness) -> int:
    total = 0
    for user in USERS:
        total += len(results_replies(await harness.sent(user["id"])))
    return total


# Fuzzing ----------------------------------------------------------------------------------------

caption_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=200) | st.builds(
    lambda parts: " ".join(parts),
    st.lists(
        st.sampled_from(
            [
                "/scan",
                "/scan@ResellBot",
                "/scan@resellbot",
                "/scan@OtherBot",
                "/@",
                '"',
                "'",
                "„",
                "“",
                "=",
                "a=1",
                "price=12,5",
                "Sneakers",
                "x=",
                "=y",
                "Levi's",
                '"two words"',
            ]
        ),
        max_size=8,
    ),
)


@pytest.mark.timeout(600)
def test_fuzz_caption_parser(large: bool) -> None:
    fields = [
        ManualField(key="price", label="p", type="number", required=True),
        ManualField(key="n", label="n", type="integer"),
        ManualField(key="ok", label="o", type="boolean"),
        ManualField(key="c", label="c", type="select", options=["a", "b"]),
    ]

    @settings(max_examples=10_000 if large else 300, deadline=None)
    @given(caption_text)
    @example("/@0")  # a command for a bot named "0": not ours, and not a caption error
    @example("/scan@OtherBot Sneakers price=1")
    @example("/scan@RESELLBOT Sneakers price=1")
    def check(text: str) -> None:
        """Only our own two outcomes come out: a caption error with a text to show, or a
        command for another bot, which the handlers ignore without a word."""
        try:
            request = parse_caption(text, "ResellBot")
        except NotForUs as exc:
            (addressee,) = exc.args
            assert text.strip().startswith("/") and "@" in text
            assert addressee and addressee.lower() != "resellbot", addressee
            return
        except CaptionError as exc:
            explained = t("en", f"caption_{exc.code}", **exc.params)  # every error has a text
            assert explained.strip()
            return
        if request is not None:
            values, problems = coerce_fields(request.fields, fields)
            assert set(values).isdisjoint({p.key for p in problems if p.code != "missing"})

    check()


@pytest.mark.timeout(600)
def test_fuzz_webhook_endpoint(tmp_path: Path, large: bool) -> None:
    """Random bodies and headers at the real relay app (over ASGI): only 2xx/4xx, never 5xx."""
    from bot.metrics import Metrics
    from bot.web import Health, build_web_app
    from storage import Database, Store
    from tests.harness import make_settings

    loop = asyncio.new_event_loop()

    class Waker:
        def wake(self) -> None:
            return None

    async def setup() -> tuple[Database, httpx.AsyncClient]:
        db = await Database.open(tmp_path / "fuzz.sqlite3")
        settings_ = make_settings(
            _FakeSandbox(),
            tmp_path,
            resell_scan_webhook_secrets=WEBHOOK_SECRET,
            webhook_max_body_bytes=2048,
        )
        app = build_web_app(
            settings=settings_,
            store=Store(db),
            tracker=Waker(),  # type: ignore[arg-type]
            metrics=Metrics(),
            media=None,
            bot=None,
            health=Health(),
            http=None,
        )  # type: ignore[arg-type]
        return db, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bot")

    db, client = loop.run_until_complete(setup())
    json_values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=20,
    )
    events = st.fixed_dictionaries(
        {
            "id": st.text(max_size=30),
            "event": st.sampled_from(["analysis.completed", "other", ""]),
        },
        optional={"data": json_values, "created_at": json_values},
    )

    @settings(
        max_examples=10_000 if large else 300,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        body=st.binary(max_size=3000)
        | events.map(lambda e: json.dumps(e).encode())
        | json_values.map(lambda v: json.dumps(v).encode()),
        signature=st.none()
        | st.binary(max_size=300).filter(lambda b: b"\r" not in b and b"\n" not in b)
        | st.just(b"sign-correctly"),
    )
    def check(body: bytes, signature: bytes | None) -> None:
        headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
        if signature == b"sign-correctly":
            headers.append((b"x-webhook-signature", sign(body, WEBHOOK_SECRET).encode()))
        elif signature is not None:
            headers.append((b"x-webhook-signature", signature))
        response = loop.run_until_complete(
            client.post("/webhooks/resell-scan", content=body, headers=headers)
        )
        assert response.status_code in (200, 400, 401, 413), response.status_code

    try:
        check()
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(db.close())
        loop.close()


class _FakeSandbox:
    """Just the two URLs make_settings reads; the fuzz test talks to no sandbox."""

    url = "http://127.0.0.1:9"
    api_url = "http://127.0.0.1:9/api/v1"
