"""Verification of Resell Scan's signed webhooks.

Documented: header `x-webhook-signature`, an HMAC, a secret starting `whsec_`. Not documented:
the hash, the encoding, a prefix, the key material (resell-scan-api.md §5.4). ASSUMED, per §9 #1
and RELIABILITY.md: HMAC-SHA256 over the raw body bytes; the header holds hex or base64, with or
without a `sha256=` / `v1,` / `v1=` prefix, possibly several signatures separated by commas or
spaces; the key is the whole secret or the part after `whsec_` (raw, or base64-decoded). Nothing
else is accepted. The variant that matched is returned so it can be logged and pinned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from bot.resellscan.models import WebhookEvent

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "x-webhook-signature"
MAX_SIGNATURE_HEADER = 1024  # a real header holds at most a few 88-character signatures
EVENT_COMPLETED = "analysis.completed"
_PREFIXES = ("sha256=", "v1=", "v1,")


class WebhookError(Exception):
    """Base of webhook failures."""


class SignatureError(WebhookError):
    """The signature is missing, malformed or matches none of the secrets."""


class PayloadError(WebhookError):
    """The signature was right but the body is not JSON at all."""


@dataclass(frozen=True)
class Verified:
    payload: Any  # the JSON as sent
    event: WebhookEvent | None  # None when the JSON is not an object
    variant: str  # e.g. "secret[0] key=full encoding=hex"


def sign(body: bytes, secret: str, *, encoding: str = "hex", prefix: str = "") -> str:
    """A header value for `body`, keyed with the whole secret (the scheme the sandbox uses)."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    text = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode("ascii")
    return prefix + text


def _keys(secret: str) -> list[tuple[str, bytes]]:
    keys = [("full", secret.encode("utf-8"))]
    if secret.startswith("whsec_"):
        rest = secret[len("whsec_") :]
        keys.append(("suffix", rest.encode("utf-8")))
        try:
            decoded = base64.b64decode(rest, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if decoded:
            keys.append(("suffix-b64", decoded))
    return keys


def _candidates(header: str) -> list[bytes]:
    """The signatures in the header as ASCII bytes, prefixes stripped."""
    try:
        raw = header.encode("ascii")
    except UnicodeEncodeError as exc:
        raise SignatureError("signature header is not ASCII") from exc
    parts = raw.replace(b",", b" ").split() if raw.count(b",") > 1 or b" " in raw else [raw]
    out: list[bytes] = []
    for part in parts:
        token = part.strip()
        for prefix in _PREFIXES:
            if token.lower().startswith(prefix.encode()):
                token = token[len(prefix) :]
                break
        if token and token.lower() not in (b"v1", b"sha256"):
            out.append(token)
    return out


def check_signature(body: bytes, header: str | None, secrets: Sequence[SecretStr]) -> str:
    """Raise SignatureError unless `header` signs `body` with one of `secrets`.

    Returns the variant that matched, for the log."""
    if not secrets:
        raise SignatureError("no webhook secret configured")
    if header is None or not header.strip():
        raise SignatureError("signature header missing")
    if len(header) > MAX_SIGNATURE_HEADER:
        raise SignatureError("signature header too long")
    candidates = _candidates(header)
    if not candidates:
        raise SignatureError("signature header empty")
    for index, secret in enumerate(secrets):
        for key_name, key in _keys(secret.get_secret_value()):
            digest = hmac.new(key, body, hashlib.sha256).digest()
            expected = {
                "hex": digest.hex().encode("ascii"),
                "base64": base64.b64encode(digest),
            }
            for candidate in candidates:
                for encoding, value in expected.items():
                    # bytes against bytes: compare_digest on non-ASCII str would raise TypeError
                    probe = candidate.lower() if encoding == "hex" else candidate
                    if hmac.compare_digest(probe, value):
                        return f"secret[{index}] key={key_name} encoding={encoding}"
    raise SignatureError("signature does not match")


def verify(raw_body: bytes, headers: Mapping[str, str], secrets: Sequence[SecretStr]) -> Verified:
    """Check the signature over the raw bytes, then read the event (tolerantly: any JSON a
    correct signature covers is kept, whatever its shape)."""
    header = None
    for name, value in headers.items():
        if name.lower() == SIGNATURE_HEADER:
            header = value
            break
    variant = check_signature(raw_body, header, secrets)
    try:
        payload = json.loads(raw_body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError("body is not JSON") from exc
    event = WebhookEvent.read(payload) if isinstance(payload, dict) else None
    return Verified(payload=payload, event=event, variant=variant)
