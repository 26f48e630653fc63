"""Composition root: builds every part from Settings and owns their lifecycles.

Start order: database, HTTP client, PTB Application (getMe), tracker (resumes open work), web
server, then updates (long polling or Telegram webhook). Stop runs it backwards: no new updates
first, then in-flight handlers and tracker tasks finish their transactions, then the rest.
Nothing is created at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import uvicorn
from telegram import LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.ext import Application, ApplicationBuilder, Defaults
from telegram.request import HTTPXRequest

from bot import __version__
from bot.config import GroupMode, Settings
from bot.intake import Catalog
from bot.media import MediaSigner, derive_key
from bot.metrics import Metrics
from bot.outbox import Deliverer, stale_allowlist_entry
from bot.resellscan import ResellScanClient, RetryPolicy
from bot.telegram.board import Boards
from bot.telegram.callbacks import CallbackCodec, derive_callback_key
from bot.telegram.delivery import DeliveryLoop, SendLimits
from bot.telegram.handlers import Handlers, Services, register_commands
from bot.telegram.inbox import ALLOWED_UPDATES, UpdateInbox
from bot.telegram.outbox import TelegramChat
from bot.telegram.team import Team
from bot.telegram.texts import language_for
from bot.tracker import Tracker
from bot.web import TELEGRAM_PATH, EmbeddedServer, Health, build_web_app
from storage import Database, Inbox, Store

log = logging.getLogger(__name__)

PRUNE_EVERY = 6 * 3600.0
KEEP_EVENTS = 7 * 86400.0
TELEGRAM_CONNECTIONS = 256  # PTB's default pool
KEEPALIVE_CONNECTIONS = 32  # of them kept open while idle


def telegram_request() -> HTTPXRequest:
    """PTB's own connection pool (256 connections), but at most KEEPALIVE_CONNECTIONS of them
    kept open while idle. PTB lifts httpx's limit on idle connections, and httpcore checks every
    idle connection on every request: after a burst of photo fetches (one getFile per photo
    Resell Scan fetches), each later call scanned a hundred idle sockets. httpx's own default
    keeps 20."""
    return HTTPXRequest(
        connection_pool_size=TELEGRAM_CONNECTIONS,
        httpx_kwargs={
            "limits": httpx.Limits(
                max_connections=TELEGRAM_CONNECTIONS,
                max_keepalive_connections=KEEPALIVE_CONNECTIONS,
            )
        },
    )


class BotRuntime:
    """A running bot. Use `async with running(settings) as runtime:` or start()/stop()."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = Metrics()
        self.health = Health()
        self.db: Database | None = None
        self.store: Store | None = None
        self.http: httpx.AsyncClient | None = None
        self.application: Application[Any, Any, Any, Any, Any, Any] | None = None
        self.tracker: Tracker | None = None
        self.chat: TelegramChat | None = None
        self.inbox: UpdateInbox | None = None
        self.delivery: DeliveryLoop | None = None
        self.server: EmbeddedServer | None = None
        self._server_task: asyncio.Task[None] | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._digests: asyncio.Task[None] | None = None
        self.team: Team | None = None
        self.port: int = settings.http_port

    async def start(self) -> None:
        settings = self.settings
        log.info("resell-scan-bot %s starting", __version__)
        self.db = await Database.open(settings.database_path)
        self.store = Store(self.db)
        await self._warn_stale_allowlist()
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.resell_scan_timeout, connect=10.0),
            headers={"User-Agent": f"resell-scan-bot/{__version__}"},
        )

        def observe(endpoint: str, outcome: str) -> None:
            self.metrics.observe_api(endpoint, outcome)
            self.health.observe_resellscan(endpoint, outcome)

        client = ResellScanClient(
            self.http,
            api_key=settings.resell_scan_api_key,
            base_url=settings.resell_scan_base_url,
            retry=RetryPolicy(
                max_attempts=settings.resell_scan_max_attempts,
                total_timeout=settings.resell_scan_retry_total,
            ),
            observe=observe,
        )
        catalog = Catalog(client)
        builder = (
            ApplicationBuilder()
            .token(settings.telegram_bot_token.get_secret_value())
            .base_url(settings.bot_api_url)
            .base_file_url(settings.bot_file_url)
            .get_updates_read_timeout(settings.telegram_poll_timeout + 10)
            .request(telegram_request())
            # No PTB Updater: it confirms updates before they are stored (bot/telegram/inbox.py).
            .updater(None)
            # Every text is Telegram HTML (bot/telegram/texts.py escapes parameters) and no
            # message needs a link preview: said once here, not at every call.
            .defaults(
                Defaults(
                    parse_mode=ParseMode.HTML,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                )
            )
        )
        application = builder.build()
        self.application = application
        await application.initialize()
        token = settings.telegram_bot_token.get_secret_value()
        media = MediaSigner(
            derive_key(token),
            settings.public_base_url or "http://unset.invalid",
            settings.media_url_ttl_seconds,
        )
        codec = CallbackCodec(derive_callback_key(token))
        # Every message goes through the outbox and its delivery loop, which keeps Telegram's
        # limits by design (bot/telegram/delivery.py); PTB's AIORateLimiter would retry instead.
        store = self.store

        async def chat_language(chat_id: int) -> str:
            chat = await store.chat(chat_id)
            return language_for(chat.language, None, settings.default_language, group=True)

        group_boards = settings.group_mode is GroupMode.BOARD
        self.chat = TelegramChat(
            settings=settings,
            store=self.store,
            catalog=catalog,
            bot=application.bot,
            callbacks=codec,
            boards=Boards(
                store=store,
                bot=application.bot,
                language=chat_language,
                interval=settings.board_interval_seconds,
            ),
            group_boards=group_boards,
            clock=self.clock,
        )
        deliverer = Deliverer(
            store=store,
            chat=self.chat,
            metrics=self.metrics,
            clock=self.clock,
        )
        self.delivery = DeliveryLoop(
            store=store,
            deliverer=deliverer,
            limits=SendLimits(
                per_bot_per_second=settings.telegram_messages_per_second,
                per_chat_per_second=settings.telegram_chat_messages_per_second,
                per_group_per_minute=settings.telegram_group_messages_per_minute,
                group_window=settings.telegram_group_window_seconds,
            ),
            combine=self.chat.shows_board,  # groups with a board combine waiting results
            wall=self.clock,
        )
        self.db.on_owed = self.delivery.wake
        self.tracker = Tracker(
            settings=settings,
            store=self.store,
            client=client,
            catalog=catalog,
            chat=self.chat,
            shows_board=self.chat.shows_board,
            metrics=self.metrics,
            media=media,
            clock=self.clock,
            intake_quiet=self._intake_quiet,
        )
        self.delivery.work_waiting = lambda: self.tracker is not None and self.tracker.backlog
        self.tracker.on_backlog_cleared = self.delivery.wake
        self.team = Team(
            settings=settings,
            store=self.store,
            bot=application.bot,
            clock=self.clock,
        )
        services = Services(
            settings=settings,
            store=self.store,
            catalog=catalog,
            tracker=self.tracker,
            chat=self.chat,
            callbacks=codec,
            team=self.team,
            clock=self.clock,
        )
        Handlers(services).register(application)
        try:
            await register_commands(application)
        except Exception as exc:  # a nicety; never a reason not to start
            log.warning("setMyCommands failed: %s", exc)

        self.inbox = UpdateInbox(
            application,
            Inbox(self.db),
            poll_timeout=settings.telegram_poll_timeout,
            clock=self.clock,
        )
        web = build_web_app(
            settings=settings,
            store=self.store,
            tracker=self.tracker,
            metrics=self.metrics,
            media=media,
            bot=application.bot,
            health=self.health,
            http=self.http,
            inbox=self.inbox if settings.telegram_webhook_url else None,
            clock=self.clock,
        )
        config = uvicorn.Config(
            web,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=3,
        )
        self.server = EmbeddedServer(config)
        self._server_task = asyncio.create_task(self.server.serve(), name="web")
        while not self.server.started:
            if self._server_task.done():
                self._server_task.result()  # raises the bind error
                raise RuntimeError("web server stopped during start-up")
            await asyncio.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        log.info("HTTP side on %s:%d", settings.http_host, self.port)
        await application.start()
        self.delivery.start()
        await self.tracker.start()
        await self.inbox.resume()
        if settings.telegram_webhook_url:
            await application.bot.set_webhook(
                settings.telegram_webhook_url.rstrip("/") + TELEGRAM_PATH,
                secret_token=settings.telegram_webhook_secret.get_secret_value(),
                allowed_updates=ALLOWED_UPDATES,
            )
            log.info("receiving Telegram updates by webhook")
        else:
            self.inbox.start_polling()
            log.info("receiving Telegram updates by long polling")
        self._housekeeping = asyncio.create_task(self._prune_loop(), name="prune")
        self._digests = asyncio.create_task(
            self.team.run_digests(settings.digest_check_seconds), name="digests"
        )

    async def _warn_stale_allowlist(self) -> None:
        """ALLOWED_CHAT_IDS names a group that Telegram upgraded to a supergroup (the database
        followed it): the old id still admits the new one, but the setting should say so."""
        assert self.store is not None
        allowed = self.settings.allowed_chat_ids
        for old, new in (await self.store.successors_of(allowed)).items():
            log.warning("%s", stale_allowlist_entry(old, new, new_listed=new in allowed))

    async def _intake_quiet(self) -> None:
        if self.inbox is not None:
            await self.inbox.quiet()

    async def _prune_loop(self) -> None:
        assert self.store is not None
        assert self.inbox is not None
        while True:
            now = self.clock()
            try:
                pruned = await self.store.prune(
                    events_before=now - KEEP_EVENTS,
                    unknown_before=now - self.settings.webhook_unknown_retention_seconds,
                )
                pruned["updates"] = await self.inbox.inbox.prune(
                    done_before=now - self.settings.inbox_retention_seconds
                )
                self.metrics.pruned_events.inc(pruned["unknown_events"])
                if any(pruned.values()):
                    log.info("pruned %s", pruned)
            except Exception:
                log.exception("pruning failed")
            await asyncio.sleep(PRUNE_EVERY)

    async def stop(self) -> None:
        """Stop taking updates, let in-flight work finish its transactions, close everything."""
        log.info("stopping")
        app = self.application
        for task in (self._housekeeping, self._digests):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.inbox is not None:
            await self.inbox.stop()
        if app is not None and app.running:
            await app.stop()
        if self.tracker is not None:
            await self.tracker.stop()
        if self.delivery is not None:
            await self.delivery.stop()
        if self.server is not None and self._server_task is not None:
            self.server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server_task, timeout=5)
        if app is not None:
            with contextlib.suppress(Exception):
                await app.shutdown()
        if self.http is not None:
            await self.http.aclose()
        if self.db is not None:
            await self.db.close()
        log.info("stopped")


@contextlib.asynccontextmanager
async def running(settings: Settings, **kw: Any) -> AsyncIterator[BotRuntime]:
    runtime = BotRuntime(settings, **kw)
    try:
        await runtime.start()
        yield runtime
    finally:
        await runtime.stop()
