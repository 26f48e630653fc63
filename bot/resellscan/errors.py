"""The one exception tree of the Resell Scan client.

    ResellScanError
    ├── TransportError            network trouble; `sent` says whether the request may have arrived
    │   └── ConnectionFailed      the request provably never reached the server (safe to retry)
    ├── AmbiguousWrite            a POST that may have been processed (do not resend blindly)
    ├── InvalidRequest            we could not build the request (never sent; resending won't help)
    ├── ProtocolError             the server answered something that is not the expected JSON
    └── APIError                  the server answered with an error status
        ├── RateLimited           429, with `retry_after` seconds when the server said
        ├── AuthError             401: missing, unknown, expired or disabled key
        ├── PaymentRequired       402: not enough tokens (documented for the sibling WaWi API)
        ├── PermissionDenied      403: the key lacks a resource permission (`resource`)
        ├── NotFound              404
        ├── ValidationFailed      400/422, with the server's `details` and the `fields` it named
        └── ServerError           5xx

Lower-level httpx errors are translated at one boundary (`client._send`) with `raise ... from`.
Messages never contain the API key.
"""

from __future__ import annotations

from typing import Any


class ResellScanError(Exception):
    """Base of everything the client raises."""


class TransportError(ResellScanError):
    """The request failed on the network. `sent` is False only when it provably never arrived."""

    sent: bool = True

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class ConnectionFailed(TransportError):
    """Connecting failed: the server never saw the request."""

    def __init__(self, message: str) -> None:
        super().__init__(message, sent=False)


class AmbiguousWrite(ResellScanError):
    """A write whose outcome is unknown: it may or may not have created something."""

    def __init__(self, message: str, *, cause: ResellScanError | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class InvalidRequest(ResellScanError):
    """The request could not be built (e.g. a value JSON cannot carry); nothing was sent."""


class ProtocolError(ResellScanError):
    """The response could not be understood (not JSON, or missing a field we need)."""


class APIError(ResellScanError):
    """An error status from the API, with the server's message."""

    retryable = False

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = body


class RateLimited(APIError):
    retryable = True

    def __init__(
        self, status: int, message: str, body: Any = None, *, retry_after: float | None = None
    ) -> None:
        super().__init__(status, message, body)
        self.retry_after = retry_after


class AuthError(APIError):
    pass


class PaymentRequired(APIError):
    pass


class PermissionDenied(APIError):
    def __init__(self, status: int, message: str, body: Any = None, *, resource: str) -> None:
        super().__init__(status, message, body)
        self.resource = resource


class NotFound(APIError):
    pass


class ValidationFailed(APIError):
    def __init__(
        self,
        status: int,
        message: str,
        body: Any = None,
        *,
        details: list[str] | None = None,
        fields: list[str] | None = None,
    ) -> None:
        super().__init__(status, message, body)
        self.details = details or []
        self.fields = fields or []


class ServerError(APIError):
    retryable = True
