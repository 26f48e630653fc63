"""A Telegram Bot API emulator on loopback, enough for an unmodified python-telegram-bot.

Bot API: /bot<token>/<method> (form, multipart or JSON parameters, Telegram's answer shape
`{"ok": ..., "result" | "error_code", "description", "parameters"}`), file downloads at
/file/bot<token>/<path>. Control API under /sandbox/telegram/ to act as users (messages, photos,
albums, documents, button presses, in private chats, groups and forum topics), register file bytes,
read what the bot sent, and inject failures (429, timeouts, blocked chats).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import html
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.data import read_json as _json

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_DOWNLOAD = 20 * 1024 * 1024
# Parameters that are strings even when they look like JSON numbers.
STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "file_id",
        "url",
        "secret_token",
        "language_code",
        "description",
        "short_description",
        "name",
        "title",
        "query",
        "ip_address",
    }
)
ALLOWED_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
    }
)
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)([^<>]*)>")
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|amp|lt|gt|quot);")


class ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after


def parse_html(text: str) -> str:
    """Validate Telegram HTML and return the plain text, or raise ApiError like Telegram does."""
    out: list[str] = []
    stack: list[str] = []
    pos = 0
    while pos < len(text):
        ch = text[pos]
        if ch == "<":
            match = _TAG.match(text, pos)
            if match is None:
                raise ApiError(
                    400,
                    f"Bad Request: can't parse entities: Unexpected end "
                    f"of name token at byte offset {pos}",
                )
            closing, name = match.group(1), match.group(2).lower()
            if name not in ALLOWED_TAGS:
                raise ApiError(
                    400,
                    f"Bad Request: can't parse entities: Unsupported start tag "
                    f'"{name}" at byte offset {pos}',
                )
            if closing:
                if not stack or stack[-1] != name:
                    raise ApiError(
                        400,
                        f"Bad Request: can't parse entities: Can't find end tag "
                        f'corresponding to start tag "{stack[-1] if stack else name}"',
                    )
                stack.pop()
            else:
                stack.append(name)
            pos = match.end()
        elif ch == "&":
            match = _ENTITY.match(text, pos)
            if match is None:
                raise ApiError(
                    400,
                    "Bad Request: can't parse entities: Character '&' is reserved "
                    f"and must be escaped with &amp; at byte offset {pos}",
                )
            out.append(html.unescape(match.group(0)))
            pos = match.end()
        elif ch == ">":
            raise ApiError(
                400,
                "Bad Request: can't parse entities: Character '>' is reserved "
                f"and must be escaped with &gt; at byte offset {pos}",
            )
        else:
            out.append(ch)
            pos += 1
    if stack:
        raise ApiError(
            400,
            f"Bad Request: can't parse entities: Can't find end tag "
            f'corresponding to start tag "{stack[-1]}"',
        )
    return "".join(out)


def _command_entities(text: str | None) -> list[dict[str, Any]]:
    if not text or not text.startswith("/"):
        return []
    length = len(text.split(maxsplit=1)[0])
    return [{"type": "bot_command", "offset": 0, "length": length}]


@dataclass
class Fault:
    method: str | None
    kind: str  # "429", "timeout" (slow but done), "hang" (slow, not done), "error"
    count: int = 1
    retry_after: int = 1
    seconds: float = 15.0
    chat_id: int | None = None


@dataclass
class StoredFile:
    data: bytes
    unique_id: str
    path: str
    mime_type: str | None
    size: int  # the size Telegram reports (may be set larger than data for tests)


@dataclass
class BotIdentity:
    id: int = 0
    username: str = "ResellScanSandboxBot"
    first_name: str = "Resell Scan (sandbox)"
    can_read_all_group_messages: bool = False


@dataclass
class State:
    updates: list[dict[str, Any]] = field(default_factory=list)
    next_update_id: int = 1000
    message_ids: dict[int, int] = field(default_factory=dict)
    messages: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    chats: dict[int, dict[str, Any]] = field(default_factory=dict)
    admins: dict[int, set[int]] = field(default_factory=dict)
    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    files: dict[str, StoredFile] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    commands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    webhook_url: str = ""
    webhook_secret: str = ""
    file_counter: int = 0
    callback_counter: int = 0


class TelegramEmulator:
    def __init__(self, *, bot_username: str = "ResellScanSandboxBot") -> None:
        self.identity = BotIdentity(username=bot_username)
        self.state = State()
        self._changed: asyncio.Condition | None = None
        self._pusher: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None

    @property
    def changed(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def stop(self) -> None:
        if self._pusher:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher
        if self._http:
            await self._http.aclose()

    def routes(self) -> list[Route]:
        return [
            Route("/bot{token}/{method}", self.api, methods=["GET", "POST"]),
            Route("/file/bot{token}/{path:path}", self.download, methods=["GET"]),
            Route("/sandbox/telegram/reset", self.ctl_reset, methods=["POST"]),
            Route("/sandbox/telegram/bot", self.ctl_bot, methods=["POST"]),
            Route("/sandbox/telegram/chats", self.ctl_chat, methods=["POST"]),
            Route("/sandbox/telegram/files", self.ctl_file, methods=["POST"]),
            Route("/sandbox/telegram/messages", self.ctl_message, methods=["POST"]),
            Route("/sandbox/telegram/callback", self.ctl_callback, methods=["POST"]),
            Route("/sandbox/telegram/sent", self.ctl_sent, methods=["GET"]),
            Route("/sandbox/telegram/calls", self.ctl_calls, methods=["GET"]),
            Route("/sandbox/telegram/faults", self.ctl_faults, methods=["POST"]),
            Route("/sandbox/telegram/commands", self.ctl_commands, methods=["GET"]),
            Route("/sandbox/telegram/pending", self.ctl_pending, methods=["GET"]),
        ]

    # Bot API -------------------------------------------------------------------------------

    async def api(self, request: Request) -> Response:
        token = request.path_params["token"]
        method_name = request.path_params["method"]
        head, sep, tail = token.partition(":")
        if not (sep and head.isdigit() and tail):
            return _fail(ApiError(401, "Unauthorized"))
        self.identity.id = int(head)
        params = await _params(request)
        key = method_name.lower()
        self.state.calls.append({"method": method_name, "at": time.time()})
        handler = getattr(self, f"m_{key}", None)
        if handler is None:
            return _fail(ApiError(404, "Not Found: method not found"))
        try:
            await self._apply_faults(method_name, params)
            result = await handler(params)
        except ApiError as exc:
            return _fail(exc)
        return JSONResponse({"ok": True, "result": result})

    async def _apply_faults(self, method: str, params: dict[str, Any]) -> None:
        chat_id = params.get("chat_id")
        for fault in list(self.state.faults):
            if fault.method and fault.method.lower() != method.lower():
                continue
            if fault.chat_id is not None and fault.chat_id != chat_id:
                continue
            fault.count -= 1
            if fault.count <= 0:
                self.state.faults.remove(fault)
            if fault.kind == "429":
                raise ApiError(
                    429,
                    f"Too Many Requests: retry after {fault.retry_after}",
                    retry_after=fault.retry_after,
                )
            if fault.kind == "timeout":  # slow, then done: the caller may have given up
                await asyncio.sleep(fault.seconds)
                return
            if fault.kind == "hang":  # slow, then nothing was done
                await asyncio.sleep(fault.seconds)
                raise ApiError(502, "Bad Gateway")
            raise ApiError(500, "Internal Server Error")
        if (
            isinstance(chat_id, int)
            and chat_id in self.state.blocked
            and method.lower()
            in {"sendmessage", "senddocument", "editmessagetext", "sendchataction"}
        ):
            raise ApiError(403, "Forbidden: bot was blocked by the user")

    def _me(self) -> dict[str, Any]:
        return {
            "id": self.identity.id,
            "is_bot": True,
            "first_name": self.identity.first_name,
            "username": self.identity.username,
            "can_join_groups": True,
            "can_read_all_group_messages": self.identity.can_read_all_group_messages,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def m_getme(self, p: dict[str, Any]) -> Any:
        return self._me()

    async def m_logout(self, p: dict[str, Any]) -> Any:
        return True

    async def m_close(self, p: dict[str, Any]) -> Any:
        return True

    async def m_getupdates(self, p: dict[str, Any]) -> Any:
        if self.state.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int(p.get("offset") or 0)
        limit = int(p.get("limit") or 100)
        timeout = float(p.get("timeout") or 0)
        if offset:
            self.state.updates = [u for u in self.state.updates if u["update_id"] >= offset]
        deadline = time.monotonic() + timeout
        async with self.changed:
            while not self.state.updates:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), remaining)
        return self.state.updates[:limit]

    async def m_setwebhook(self, p: dict[str, Any]) -> Any:
        url = str(p.get("url", ""))
        if url and not url.startswith(("http://", "https://")):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided")
        self.state.webhook_url = url
        self.state.webhook_secret = str(p.get("secret_token", ""))
        if p.get("drop_pending_updates"):
            self.state.updates.clear()
        if url and self._pusher is None:
            self._pusher = asyncio.create_task(self._push_loop())
        await self._notify()
        return True

    async def m_deletewebhook(self, p: dict[str, Any]) -> Any:
        self.state.webhook_url = ""
        if p.get("drop_pending_updates"):
            self.state.updates.clear()
        return True

    async def m_getwebhookinfo(self, p: dict[str, Any]) -> Any:
        return {
            "url": self.state.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self.state.updates),
        }

    async def _push_loop(self) -> None:
        """Deliver updates to the webhook, in order, retrying until accepted."""
        self._http = self._http or httpx.AsyncClient(timeout=10)
        delay = 0.05
        while True:
            async with self.changed:
                while not (self.state.webhook_url and self.state.updates):
                    await self.changed.wait()
            update = self.state.updates[0]
            try:
                response = await self._http.post(
                    self.state.webhook_url,
                    json=update,
                    headers={"X-Telegram-Bot-Api-Secret-Token": self.state.webhook_secret},
                )
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                if self.state.updates and self.state.updates[0] is update:
                    self.state.updates.pop(0)
                delay = 0.05
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _chat(self, chat_id: Any) -> dict[str, Any]:
        try:
            key = int(chat_id)
        except (TypeError, ValueError) as exc:
            raise ApiError(400, "Bad Request: chat not found") from exc
        chat = self.state.chats.get(key)
        if chat is None:
            raise ApiError(400, "Bad Request: chat not found")
        return chat

    def _next_message_id(self, chat_id: int) -> int:
        value = self.state.message_ids.get(chat_id, 0) + 1
        self.state.message_ids[chat_id] = value
        return value

    def _bot_message(self, p: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat = self._chat(p.get("chat_id"))
        message_id = self._next_message_id(chat["id"])
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": self._me(),
            **content,
        }
        thread = p.get("message_thread_id")
        if thread is not None:
            message["message_thread_id"] = int(thread)
            message["is_topic_message"] = True
        reply = p.get("reply_parameters")
        reply_to = (
            reply.get("message_id") if isinstance(reply, dict) else p.get("reply_to_message_id")
        )
        if reply_to is not None:
            original = self.state.messages.get((chat["id"], int(reply_to)))
            if original is None and not (
                isinstance(reply, dict) and reply.get("allow_sending_without_reply")
            ):
                raise ApiError(400, "Bad Request: message to be replied not found")
            if original is not None:
                message["reply_to_message"] = original
        if p.get("reply_markup") is not None:
            message["reply_markup"] = p["reply_markup"]
        self.state.messages[(chat["id"], message_id)] = message
        return message

    def _text(self, p: dict[str, Any], key: str, limit: int) -> tuple[str, str | None]:
        raw = str(p.get(key, ""))
        mode = p.get("parse_mode")
        plain = parse_html(raw) if isinstance(mode, str) and mode.upper() == "HTML" else raw
        if key == "text" and not plain.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(plain) > limit:
            what = "message is too long" if key == "text" else "message caption is too long"
            raise ApiError(400, f"Bad Request: {what}")
        return plain, raw if mode else None

    def _record(self, kind: str, message: dict[str, Any], **extra: Any) -> None:
        reply = message.get("reply_to_message")
        self.state.actions.append(
            {
                "kind": kind,
                "chat_id": message["chat"]["id"],
                "message_id": message["message_id"],
                "thread_id": message.get("message_thread_id"),
                "reply_to": reply["message_id"] if reply else None,
                "text": message.get("text") or message.get("caption"),
                "reply_markup": message.get("reply_markup"),
                "at": time.time(),
                **extra,
            }
        )

    async def m_sendmessage(self, p: dict[str, Any]) -> Any:
        plain, raw = self._text(p, "text", MAX_TEXT)
        message = self._bot_message(p, text=plain)
        self._record("send", message, html=raw)
        await self._notify()
        return message

    async def m_editmessagetext(self, p: dict[str, Any]) -> Any:
        chat = self._chat(p.get("chat_id"))
        key = (chat["id"], int(p.get("message_id", 0)))
        message = self.state.messages.get(key)
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        plain, raw = self._text(p, "text", MAX_TEXT)
        markup = p.get("reply_markup")
        if message.get("text") == plain and message.get("reply_markup") == markup:
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message "
                "content and reply markup are exactly the same as a current content "
                "and reply markup of the message",
            )
        message = {**message, "text": plain, "edit_date": int(time.time())}
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        self.state.messages[key] = message
        self._record("edit", message, html=raw)
        await self._notify()
        return message

    async def m_editmessagereplymarkup(self, p: dict[str, Any]) -> Any:
        chat = self._chat(p.get("chat_id"))
        key = (chat["id"], int(p.get("message_id", 0)))
        message = self.state.messages.get(key)
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        message = {**message, "edit_date": int(time.time())}
        if p.get("reply_markup") is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = p["reply_markup"]
        self.state.messages[key] = message
        self._record("edit_markup", message)
        return message

    async def m_deletemessage(self, p: dict[str, Any]) -> Any:
        chat = self._chat(p.get("chat_id"))
        key = (chat["id"], int(p.get("message_id", 0)))
        message = self.state.messages.pop(key, None)
        if message is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        self._record("delete", message)
        return True

    async def m_senddocument(self, p: dict[str, Any]) -> Any:
        document = p.get("document")
        if not isinstance(document, tuple):
            raise ApiError(400, "Bad Request: there is no document in the request")
        name, blob, mime = document
        caption, raw = self._text(p, "caption", MAX_CAPTION) if p.get("caption") else ("", None)
        file_id = self._store_file(blob, mime)
        doc = {
            "file_id": file_id,
            "file_unique_id": self.state.files[file_id].unique_id,
            "file_name": name,
            "mime_type": mime,
            "file_size": len(blob),
        }
        message = self._bot_message(p, document=doc, **({"caption": caption} if caption else {}))
        self._record(
            "document",
            message,
            file_name=name,
            content_b64=base64.b64encode(blob).decode(),
            html=raw,
        )
        await self._notify()
        return message

    async def m_sendchataction(self, p: dict[str, Any]) -> Any:
        self._chat(p.get("chat_id"))
        return True

    async def m_answercallbackquery(self, p: dict[str, Any]) -> Any:
        self.state.actions.append(
            {
                "kind": "callback_answer",
                "chat_id": None,
                "callback_query_id": p.get("callback_query_id"),
                "text": p.get("text"),
                "at": time.time(),
            }
        )
        return True

    async def m_setmycommands(self, p: dict[str, Any]) -> Any:
        scope = p.get("scope") or {"type": "default"}
        key = json.dumps(
            {"scope": scope, "language_code": p.get("language_code") or ""}, sort_keys=True
        )
        commands = p.get("commands")
        if not isinstance(commands, list):
            raise ApiError(400, "Bad Request: commands must be an array")
        self.state.commands[key] = commands
        return True

    async def m_getmycommands(self, p: dict[str, Any]) -> Any:
        key = json.dumps(
            {
                "scope": p.get("scope") or {"type": "default"},
                "language_code": p.get("language_code") or "",
            },
            sort_keys=True,
        )
        return self.state.commands.get(key, [])

    async def m_deletemycommands(self, p: dict[str, Any]) -> Any:
        return True

    async def m_getchat(self, p: dict[str, Any]) -> Any:
        chat = self._chat(p.get("chat_id"))
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    def _member(self, chat_id: int, user_id: int) -> dict[str, Any]:
        user = (
            self._me()
            if user_id == self.identity.id
            else self.state.users.get(
                user_id, {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"}
            )
        )
        if user_id in self.state.admins.get(chat_id, set()):
            return {
                "status": "administrator",
                "user": user,
                "can_be_edited": False,
                "is_anonymous": False,
                "can_manage_chat": True,
                "can_delete_messages": True,
                "can_manage_video_chats": False,
                "can_restrict_members": True,
                "can_promote_members": False,
                "can_change_info": True,
                "can_invite_users": True,
                "can_post_stories": False,
                "can_edit_stories": False,
                "can_delete_stories": False,
            }
        return {"status": "member", "user": user}

    async def m_getchatmember(self, p: dict[str, Any]) -> Any:
        chat = self._chat(p.get("chat_id"))
        return self._member(chat["id"], int(p.get("user_id", 0)))

    async def m_getchatadministrators(self, p: dict[str, Any]) -> Any:
        chat = self._chat(p.get("chat_id"))
        return [
            self._member(chat["id"], uid)
            for uid in sorted(self.state.admins.get(chat["id"], set()))
        ]

    async def m_getfile(self, p: dict[str, Any]) -> Any:
        file_id = str(p.get("file_id", ""))
        stored = self.state.files.get(file_id)
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if stored.size > MAX_DOWNLOAD:
            raise ApiError(400, "Bad Request: file is too big")
        return {
            "file_id": file_id,
            "file_unique_id": stored.unique_id,
            "file_size": stored.size,
            "file_path": stored.path,
        }

    async def download(self, request: Request) -> Response:
        path = request.path_params["path"]
        for stored in self.state.files.values():
            if stored.path == path:
                self.state.calls.append({"method": "download", "path": path, "at": time.time()})
                return Response(
                    stored.data, media_type=stored.mime_type or "application/octet-stream"
                )
        return Response(b"Not Found", status_code=404)

    def _store_file(self, blob: bytes, mime: str | None, size: int | None = None) -> str:
        self.state.file_counter += 1
        n = self.state.file_counter
        digest = hashlib.sha256(blob + str(n).encode()).hexdigest()
        file_id = f"AgAC{digest[:28]}{n}"
        ext = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}.get(
            mime or "", "bin"
        )
        self.state.files[file_id] = StoredFile(
            data=blob,
            unique_id=f"AQAD{digest[28:40]}",
            path=f"files/file_{n}.{ext}",
            mime_type=mime,
            size=size if size is not None else len(blob),
        )
        return file_id

    # Control API ---------------------------------------------------------------------------

    async def ctl_reset(self, request: Request) -> Response:
        self.state = State()
        self.identity.can_read_all_group_messages = False
        return JSONResponse({"ok": True})

    async def ctl_bot(self, request: Request) -> Response:
        body = await _json(request)
        for key in ("username", "first_name", "can_read_all_group_messages"):
            if key in body:
                setattr(self.identity, key, body[key])
        return JSONResponse({"ok": True, "bot": self._me()})

    async def ctl_chat(self, request: Request) -> Response:
        body = await _json(request)
        chat = self._register_chat(body)
        if "admins" in body:
            self.state.admins[chat["id"]] = {int(a) for a in body["admins"]}
        if "blocked" in body:
            (self.state.blocked.add if body["blocked"] else self.state.blocked.discard)(chat["id"])
        return JSONResponse({"ok": True, "chat": chat})

    def _register_chat(self, spec: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(spec["id"])
        existing = self.state.chats.get(chat_id, {})
        chat: dict[str, Any] = {
            "id": chat_id,
            "type": spec.get("type", existing.get("type", "private")),
        }
        for key in ("title", "first_name", "username", "is_forum"):
            if key in spec:
                chat[key] = spec[key]
            elif key in existing:
                chat[key] = existing[key]
        if chat["type"] == "private" and "first_name" not in chat:
            chat["first_name"] = f"User {chat_id}"
        if chat["type"] != "private" and "title" not in chat:
            chat["title"] = f"Group {chat_id}"
        self.state.chats[chat_id] = chat
        return chat

    async def ctl_file(self, request: Request) -> Response:
        body = await _json(request)
        blob = base64.b64decode(body.get("data_b64", ""))
        file_id = self._store_file(blob, body.get("mime_type"), body.get("file_size"))
        stored = self.state.files[file_id]
        return JSONResponse(
            {"file_id": file_id, "file_unique_id": stored.unique_id, "file_size": stored.size}
        )

    def _user(self, spec: dict[str, Any]) -> dict[str, Any]:
        user = {
            "id": int(spec["id"]),
            "is_bot": False,
            "first_name": spec.get("first_name", f"User {spec['id']}"),
        }
        for key in ("last_name", "username", "language_code"):
            if spec.get(key):
                user[key] = spec[key]
        self.state.users[user["id"]] = user
        return user

    def _push_update(self, payload: dict[str, Any], update_id: int | None = None) -> int:
        if update_id is None:
            update_id = self.state.next_update_id
        self.state.next_update_id = max(self.state.next_update_id, update_id) + 1
        self.state.updates.append({"update_id": update_id, **payload})
        return update_id

    async def ctl_message(self, request: Request) -> Response:
        """Act as a user sending a message. Body: from, chat, text | caption, photo_file_id,
        document {file_id, file_name, mime_type}, media_group_id, message_thread_id,
        message_id (to deliver out of order), reply_to_message_id, update_id."""
        body = await _json(request)
        user = self._user(body["from"])
        chat_spec = body.get("chat") or {
            "id": user["id"],
            "type": "private",
            "first_name": user["first_name"],
        }
        chat = self._register_chat(chat_spec)
        message_id = body.get("message_id")
        if message_id is None:
            message_id = self._next_message_id(chat["id"])
        else:
            self.state.message_ids[chat["id"]] = max(
                self.state.message_ids.get(chat["id"], 0), int(message_id)
            )
        message: dict[str, Any] = {
            "message_id": int(message_id),
            "date": int(time.time()),
            "chat": chat,
            "from": user,
        }
        if body.get("message_thread_id") is not None:
            message["message_thread_id"] = int(body["message_thread_id"])
            message["is_topic_message"] = True
        if body.get("text") is not None:
            message["text"] = body["text"]
            if entities := _command_entities(body["text"]):
                message["entities"] = entities
        if body.get("caption"):
            message["caption"] = body["caption"]
            if entities := _command_entities(body["caption"]):
                message["caption_entities"] = entities
        if body.get("media_group_id"):
            message["media_group_id"] = str(body["media_group_id"])
        if body.get("photo_file_id"):
            file_id = body["photo_file_id"]
            stored = self.state.files.get(file_id)
            if stored is None:
                return JSONResponse({"ok": False, "error": "unknown file id"}, status_code=400)
            message["photo"] = [
                {
                    "file_id": f"{file_id}_thumb",
                    "file_unique_id": stored.unique_id + "t",
                    "width": 90,
                    "height": 90,
                    "file_size": min(stored.size, 1500),
                },
                {
                    "file_id": file_id,
                    "file_unique_id": stored.unique_id,
                    "width": 1280,
                    "height": 960,
                    "file_size": stored.size,
                },
            ]
        if body.get("document"):
            doc = body["document"]
            stored = self.state.files.get(doc["file_id"])
            if stored is None:
                return JSONResponse({"ok": False, "error": "unknown file id"}, status_code=400)
            message["document"] = {
                "file_id": doc["file_id"],
                "file_unique_id": stored.unique_id,
                "file_name": doc.get("file_name", "file"),
                "mime_type": doc.get("mime_type", stored.mime_type),
                "file_size": stored.size,
            }
        if body.get("reply_to_message_id") is not None:
            original = self.state.messages.get((chat["id"], int(body["reply_to_message_id"])))
            if original is not None:
                message["reply_to_message"] = original
        self.state.messages[(chat["id"], message["message_id"])] = message
        update_id = self._push_update({"message": message}, body.get("update_id"))
        await self._notify()
        return JSONResponse(
            {"ok": True, "update_id": update_id, "message_id": message["message_id"]}
        )

    async def ctl_callback(self, request: Request) -> Response:
        """Act as a user pressing an inline button on a bot message."""
        body = await _json(request)
        user = self._user(body["from"])
        chat_id = int(body["chat_id"])
        message = self.state.messages.get((chat_id, int(body["message_id"])))
        if message is None:
            return JSONResponse({"ok": False, "error": "unknown message"}, status_code=400)
        self.state.callback_counter += 1
        query = {
            "id": f"cbq{self.state.callback_counter}",
            "from": user,
            "chat_instance": str(chat_id),
            "message": message,
            "data": str(body["data"]),
        }
        update_id = self._push_update({"callback_query": query})
        await self._notify()
        return JSONResponse({"ok": True, "update_id": update_id})

    async def ctl_sent(self, request: Request) -> Response:
        q = request.query_params
        items = self.state.actions
        if "chat_id" in q:
            items = [a for a in items if a["chat_id"] == int(q["chat_id"])]
        return JSONResponse({"actions": items})

    async def ctl_calls(self, request: Request) -> Response:
        return JSONResponse({"calls": self.state.calls})

    async def ctl_faults(self, request: Request) -> Response:
        body = await _json(request)
        if body.get("clear"):
            self.state.faults.clear()
            return JSONResponse({"ok": True})
        self.state.faults.append(
            Fault(
                method=body.get("method"),
                kind=str(body.get("kind", "429")),
                count=int(body.get("count", 1)),
                retry_after=int(body.get("retry_after", 1)),
                seconds=float(body.get("seconds", 15.0)),
                chat_id=body.get("chat_id"),
            )
        )
        return JSONResponse({"ok": True})

    async def ctl_commands(self, request: Request) -> Response:
        return JSONResponse({"commands": self.state.commands})

    async def ctl_pending(self, request: Request) -> Response:
        return JSONResponse({"pending": len(self.state.updates)})


def _fail(exc: ApiError) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error_code": exc.code, "description": exc.description}
    if exc.retry_after is not None:
        body["parameters"] = {"retry_after": exc.retry_after}
    return JSONResponse(body, status_code=exc.code)


async def _params(request: Request) -> dict[str, Any]:
    """Bot API parameters from the query, a form, multipart, or JSON: PTB sends strings as they
    are and everything else JSON-encoded."""
    params: dict[str, Any] = dict(request.query_params)
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        body = await request.json()
        if isinstance(body, dict):
            params.update(body)
        return params
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        async with request.form(max_part_size=60 * 1024 * 1024) as form:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    params[key] = (value.filename or key, await value.read(), value.content_type)
                else:
                    params[key] = _decode(key, value)
        # attach://name references a multipart part
        for key, value in list(params.items()):
            if isinstance(value, str) and value.startswith("attach://"):
                params[key] = params.get(value.removeprefix("attach://"), value)
    return params


def _decode(key: str, value: str) -> Any:
    if key in STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value
