"""Signed, expiring URLs under which Resell Scan fetches a photo from the bot.

A token is `<media_key>.<expires>.<mac>`: the photo's random key (not its Telegram file id), the
expiry as Unix seconds, and HMAC-SHA256 over both. The key is derived from the bot token, so no
extra secret is needed and URLs survive restarts; the token itself never appears in a URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass


def derive_key(bot_token: str) -> bytes:
    return hmac.new(bot_token.encode(), b"resell-scan-bot media url v1", hashlib.sha256).digest()


@dataclass(frozen=True)
class MediaSigner:
    key: bytes
    base_url: str
    ttl: float

    def _mac(self, media_key: str, expires: int) -> str:
        mac = hmac.new(self.key, f"{media_key}.{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:20]).decode().rstrip("=")

    def token(self, media_key: str, now: float) -> str:
        return self.token_until(media_key, int(now + self.ttl))

    def token_until(self, media_key: str, expires: int) -> str:
        return f"{media_key}.{expires}.{self._mac(media_key, expires)}"

    def url(self, media_key: str, now: float) -> str:
        return self.url_until(media_key, int(now + self.ttl))

    def url_until(self, media_key: str, expires: int) -> str:
        return f"{self.base_url.rstrip('/')}/media/{self.token_until(media_key, expires)}"

    def check(self, token: str, now: float) -> str | None:
        """The media key of a valid, unexpired token; None otherwise."""
        if len(token) > 200:
            return None
        parts = token.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        media_key, expires_text, mac = parts
        expected = self._mac(media_key, int(expires_text))
        if not hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace")):
            return None
        if int(expires_text) < now:
            return None
        return media_key
