"""Whether a request carries an accepted API key: the per-request checks.

``rejection`` / ``allows`` / ``inference_allowed`` work on the raw ASGI scope, so the bare
ASGI proxy does not pay for a ``Request``. They do no I/O and never log: a key must not
reach a log line. A key is taken, in this order, from ``Authorization: Bearer <key>`` (the
prefix is matched exactly), ``X-API-Key: <key>``, then ``?api_key=<key>``. It is compared,
in constant time, with every accepted key. ``OPTIONS`` needs a key like every other method:
a CORS preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) never
gets here, the CORS layer answers it (``server.app``). ``reject`` sends the 401, rendered by
``llamactl.rendering``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from llamactl.errors import Unauthorized
from llamactl.rendering import Send, Shape, render, send_rendered

if TYPE_CHECKING:
    from llamactl.auth.stored import KeyBook
    from llamactl.database.keys import KeyRecord

__all__ = [
    "INVALID_KEY",
    "MISSING_KEY",
    "Keys",
    "Remembered",
    "allows",
    "inference_allowed",
    "key_record",
    "presented_key",
    "reject",
    "rejection",
]

Scope = Mapping[str, Any]

MISSING_KEY = "Missing API key"
INVALID_KEY = "Invalid API key"


def _digest(key: bytes) -> bytes:
    # Comparing fixed-length digests keeps the comparison time independent of key lengths.
    return hashlib.sha256(key).digest()


@dataclass(frozen=True, repr=False)
class Keys:
    """The accepted keys, as SHA-256 digests of their UTF-8 bytes, and the two switches.

    Build it with ``Keys.of`` from plain keys. It holds no plaintext key, and its ``repr``
    shows counts only.
    """

    management: tuple[bytes, ...]
    inference: tuple[bytes, ...]
    require_management: bool
    require_inference: bool
    # What an inference route accepts: inference keys and management keys.
    for_inference: tuple[bytes, ...] = field(init=False)
    # And the keys stored in the database (``auth.stored``), when there is a database.
    book: KeyBook | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "for_inference", self.inference + self.management)

    @classmethod
    def of(
        cls,
        *,
        management: Iterable[str] = (),
        inference: Iterable[str] = (),
        require_management: bool = True,
        require_inference: bool = True,
    ) -> Keys:
        """Keys from plain strings."""
        return cls(
            management=tuple(_digest(key.encode()) for key in management),
            inference=tuple(_digest(key.encode()) for key in inference),
            require_management=require_management,
            require_inference=require_inference,
        )

    def __repr__(self) -> str:
        return (
            f"Keys(management={len(self.management)} keys, "
            f"inference={len(self.inference)} keys, "
            f"require_management={self.require_management}, "
            f"require_inference={self.require_inference})"
        )


def presented_key(headers: Iterable[Sequence[bytes]], query_string: bytes) -> bytes | None:
    """The key a request presents, from raw ASGI ``headers`` and ``query_string``.

    In order: the first ``Authorization`` header if it is ``Bearer <key>`` (prefix matched
    exactly), the first ``X-API-Key`` header, the first ``api_key`` query parameter
    (URL-decoded). An empty value presents nothing. ``None`` when no key is presented.
    """
    authorization_seen = False
    api_key: bytes | None = None
    for name, value in headers:
        if name == b"authorization":
            if not authorization_seen:
                authorization_seen = True
                if value[:7] == b"Bearer " and len(value) > 7:
                    return value[7:]
        elif name == b"x-api-key" and api_key is None:
            api_key = value
    if api_key:
        return api_key
    if b"api_key=" not in query_string:
        return None
    for pair in query_string.split(b"&"):
        if pair[:8] == b"api_key=":
            return unquote_to_bytes(pair[8:].replace(b"+", b" ")) or None
    return None


def rejection(keys: Keys, scope: Scope, *, management: bool) -> str | None:
    """Why the request in ``scope`` is refused (``MISSING_KEY`` / ``INVALID_KEY``), or ``None``.

    ``management`` picks the route's class: management routes accept management keys only,
    inference routes accept both. Every accepted key is compared, in constant time.
    """
    if management:
        if not keys.require_management:
            return None
        accepted = keys.management
    else:
        if not keys.require_inference:
            return None
        accepted = keys.for_inference
    presented = presented_key(scope["headers"], scope.get("query_string", b""))
    if presented is None:
        return MISSING_KEY
    digest = _digest(presented)
    matched = False
    for candidate in accepted:
        matched |= hmac.compare_digest(digest, candidate)
    if matched:
        return None
    book = keys.book
    if not management and book is not None and len(book):
        record = book.find(presented)
        if record is not None:
            return book.refusal(record)  # None: the stored key may be used
    return INVALID_KEY


def key_record(keys: Keys, scope: Scope) -> KeyRecord | None:
    """The stored key the request presents, if it presents one (its checks passed or
    not: ask ``rejection`` first)."""
    book = keys.book
    if book is None or not len(book):
        return None
    presented = presented_key(scope["headers"], scope.get("query_string", b""))
    return None if presented is None else book.find(presented)


class Remembered:
    """The last inference key that passed on one client connection, so that the next
    request on it presenting the same key is not hashed and compared again.

    It holds that key as presented (as the connection's own request did, for as long as
    the connection lives) and the ``Keys`` it passed against: a reload, which replaces
    ``Keys``, forgets it. Only ever a key that passed: a refused one is checked each time.
    For a key stored in the database it also holds its record, which is looked up again by
    id on every request: one disabled, expired, changed or deleted since is checked anew.
    """

    __slots__ = ("keys", "presented", "record")

    def __init__(self) -> None:
        self.keys: Keys | None = None
        self.presented = b""
        self.record: KeyRecord | None = None


def inference_allowed(keys: Keys, scope: Scope, remembered: Remembered) -> bool:
    """Whether an inference route may serve the request in ``scope``: ``rejection`` with
    ``management=False``, skipped when the connection presents the key that passed last."""
    if not keys.require_inference:
        return True
    presented = presented_key(scope["headers"], scope.get("query_string", b""))
    if presented is None:
        return False
    book = keys.book
    if remembered.keys is keys and hmac.compare_digest(presented, remembered.presented):
        record = remembered.record
        if record is None:
            return True  # a key of the configuration
        if book is not None and book.still_usable(record):
            return True
    if rejection(keys, scope, management=False) is not None:
        return False
    remembered.keys, remembered.presented = keys, presented
    remembered.record = book.find(presented) if book is not None and len(book) else None
    return True


def allows(keys: Keys, scope: Scope, *, management: bool) -> bool:
    """Whether the request in ``scope`` may pass; see ``rejection``."""
    return rejection(keys, scope, management=management) is None


async def reject(send: Send, message: str, shape: Shape = Shape.OPENAI) -> None:
    """Send the 401 for ``message`` (``MISSING_KEY`` / ``INVALID_KEY``) to an ASGI ``send``,
    in the route's ``shape``."""
    await send_rendered(send, render(Unauthorized(message), shape))
