"""The webhook signature check: known answer, accepted variants, one test per failure mode."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from pydantic import SecretStr

from bot.resellscan.webhooks import (
    MAX_SIGNATURE_HEADER,
    PayloadError,
    SignatureError,
    check_signature,
    sign,
    verify,
)

SECRET = "whsec_c2VjcmV0LWJ5dGVzLWZvci10ZXN0cw=="
SECRETS = [SecretStr(SECRET)]
BODY = json.dumps(
    {
        "id": "evt_1",
        "event": "analysis.completed",
        "created_at": "2025-05-15T10:00:00.000Z",
        "data": {"batch_id": "b1", "status": "completed", "products": []},
    }
).encode()


def test_known_answer_vector_from_github_docs() -> None:
    expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign(b"Hello, World!", "It's a Secret to Everybody") == expected
    variant = check_signature(
        b"Hello, World!", "sha256=" + expected, [SecretStr("It's a Secret to Everybody")]
    )
    assert variant == "secret[0] key=full encoding=hex"


@pytest.mark.parametrize(
    ("header", "variant"),
    [
        (sign(BODY, SECRET), "key=full encoding=hex"),
        (sign(BODY, SECRET).upper(), "key=full encoding=hex"),
        ("sha256=" + sign(BODY, SECRET), "key=full encoding=hex"),
        (sign(BODY, SECRET, encoding="base64"), "key=full encoding=base64"),
        ("v1," + sign(BODY, SECRET, encoding="base64"), "key=full encoding=base64"),
        (sign(BODY, SECRET.removeprefix("whsec_")), "key=suffix encoding=hex"),
        (
            "v1,"
            + base64.b64encode(
                hmac.new(base64.b64decode(SECRET[6:]), BODY, hashlib.sha256).digest()
            ).decode(),
            "key=suffix-b64 encoding=base64",
        ),
        ("v1,AAAA v1," + sign(BODY, SECRET, encoding="base64"), "key=full encoding=base64"),
    ],
)
def test_accepted_variants(header: str, variant: str) -> None:
    assert check_signature(BODY, header, SECRETS).endswith(variant)


def test_verify_parses_the_documented_event() -> None:
    verified = verify(BODY, {"X-Webhook-Signature": sign(BODY, SECRET)}, SECRETS)
    assert verified.event.id == "evt_1" and verified.event.batch().batch_id == "b1"


def test_rotation_accepts_any_configured_secret() -> None:
    old, new = SecretStr("whsec_old"), SecretStr("whsec_new")
    assert check_signature(BODY, sign(BODY, "whsec_new"), [old, new]).startswith("secret[1]")


def test_wrong_secret() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        check_signature(BODY, sign(BODY, "whsec_other"), SECRETS)


def test_changed_body() -> None:
    with pytest.raises(SignatureError):
        check_signature(BODY + b" ", sign(BODY, SECRET), SECRETS)


def test_reserialised_json_does_not_match() -> None:
    reserialised = json.dumps(json.loads(BODY), separators=(",", ":")).encode()
    with pytest.raises(SignatureError):
        check_signature(reserialised, sign(BODY, SECRET), SECRETS)


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header(header: str | None) -> None:
    with pytest.raises(SignatureError, match="missing"):
        check_signature(BODY, header, SECRETS)


def test_missing_header_in_verify() -> None:
    with pytest.raises(SignatureError):
        verify(BODY, {"content-type": "application/json"}, SECRETS)


@pytest.mark.parametrize("header", ["ä" * 64, "sha256=" + "é" * 64, "\u2603"])
def test_non_ascii_header(header: str) -> None:
    with pytest.raises(SignatureError, match="not ASCII"):
        check_signature(BODY, header, SECRETS)


def test_wrong_encoding() -> None:
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).digest()
    for wrong in (
        base64.b32encode(digest).decode(),
        base64.urlsafe_b64encode(digest[:16]).decode(),
        digest.hex()[:32],
    ):
        with pytest.raises(SignatureError):
            check_signature(BODY, wrong, SECRETS)


def test_wrong_hash_function() -> None:
    sha1 = hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest()
    with pytest.raises(SignatureError):
        check_signature(BODY, sha1, SECRETS)


def test_oversized_header() -> None:
    with pytest.raises(SignatureError, match="too long"):
        check_signature(BODY, "a" * (MAX_SIGNATURE_HEADER + 1), SECRETS)


def test_no_secrets_configured() -> None:
    with pytest.raises(SignatureError, match="no webhook secret"):
        check_signature(BODY, sign(BODY, SECRET), [])


def test_bad_json_after_a_good_signature_is_a_payload_error() -> None:
    for body in (b"not json", b"\xff\xfe", b"{"):
        with pytest.raises(PayloadError):
            verify(body, {"x-webhook-signature": sign(body, SECRET)}, SECRETS)


def test_any_signed_json_is_kept_whatever_its_shape() -> None:
    """A correct signature over valid JSON is never refused: odd shapes are read as far as
    they go and the payload is kept as sent."""
    odd = verify(b"[1, 2]", {"x-webhook-signature": sign(b"[1, 2]", SECRET)}, SECRETS)
    assert odd.event is None and odd.payload == [1, 2]
    body = b'{"event": "x", "id": 7}'
    other = verify(body, {"x-webhook-signature": sign(body, SECRET)}, SECRETS)
    assert other.event is not None and other.event.id == "7" and other.event.event == "x"
    flat = b'{"batch_id": 9001, "status": "COMPLETED"}'  # no envelope, no event name
    read = verify(flat, {"x-webhook-signature": sign(flat, SECRET)}, SECRETS)
    assert read.event is not None and read.event.event is None
    assert read.event.batch().batch_id == "9001" and read.event.batch().finished
