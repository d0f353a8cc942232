"""API keys: where they come from and whether a request carries an accepted one.

This module owns the two key classes and their checks:

- **management** keys open ``/api/v1/*`` and, as well, every inference route;
- **inference** keys open ``/v1/*`` and the private ``/llama-cpp/{name}/*`` routes only.

``load_keys`` runs once at startup. It takes the keys from the configuration; when a class
is required and none is configured, it generates one key (``sk-management-<64 hex>`` or
``sk-inference-<64 hex>``), stores it in ``<data_dir>/management.key`` or
``<data_dir>/inference.key`` with mode 0600, and reads that same file back on every later
start. It returns the startup messages too; they name the file, never the key.

Per request, ``rejection`` / ``allows`` work on the raw ASGI scope, so the bare ASGI proxy
does not pay for a ``Request``. They do no I/O and never log: a key must not reach a log
line. A key is taken, in this order, from ``Authorization: Bearer <key>`` (the prefix is
matched exactly), ``X-API-Key: <key>``, then ``?api_key=<key>``. It is compared, in constant
time, with every accepted key. ``OPTIONS`` needs a key like every other method: a CORS
preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) never gets
here, the CORS layer answers it (``server.app``).

A refused request gets a 401 in the OpenAI error shape, whatever the route::

    {"error": {"message": "Missing API key", "type": "authentication_error",
               "param": null, "code": "invalid_api_key"}}

with ``WWW-Authenticate: Bearer``. FastAPI routes use ``management_dependency`` /
``inference_dependency``, which raise ``Unauthorized``; the application registers one
handler that renders it with ``unauthorized_response(exc.message)``. The bare ASGI proxy
calls ``rejection`` and then ``await reject(send, message)``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote_to_bytes

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope, Send

from llamactl.config import AppConfig
from llamactl.errors import ConfigError, Unauthorized
from llamactl.rendering import Shape, render, send_rendered
from llamactl.server.errors import exception_response

__all__ = [
    "INVALID_KEY",
    "MISSING_KEY",
    "Keys",
    "LoadedKeys",
    "Remembered",
    "Unauthorized",
    "allows",
    "inference_allowed",
    "inference_dependency",
    "load_keys",
    "management_dependency",
    "presented_key",
    "reject",
    "rejection",
    "unauthorized_body",
    "unauthorized_response",
]

MISSING_KEY = "Missing API key"
INVALID_KEY = "Invalid API key"

_KEY_FILE_MODE = 0o600
# Permission bits a key file must not have: anything for group and others, and execute.
_TOO_WIDE = 0o177


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


@dataclass(frozen=True)
class LoadedKeys:
    """What ``load_keys`` returns: the keys and one startup message per key class."""

    keys: Keys
    messages: tuple[str, ...]


@dataclass(frozen=True)
class _KeyClass:
    name: str
    setting: str
    prefix: str
    filename: str
    routes: str


_MANAGEMENT = _KeyClass(
    "management", "auth.management_keys", "sk-management-", "management.key", "/api/v1"
)
_INFERENCE = _KeyClass(
    "inference", "auth.inference_keys", "sk-inference-", "inference.key", "/v1 and /llama-cpp"
)


def load_keys(config: AppConfig) -> LoadedKeys:
    """The keys of ``config``, generating or reading a key file where DESIGN 18 says so.

    Raises ``ConfigError`` when a configured key is empty, or when a key file exists but
    cannot be used (unreadable, empty, more than one word, or mode wider than 0600).
    """
    auth = config.auth
    management, management_message = _load_class(
        _MANAGEMENT, auth.require_management_auth, auth.management_keys, config.data_dir
    )
    inference, inference_message = _load_class(
        _INFERENCE, auth.require_inference_auth, auth.inference_keys, config.data_dir
    )
    keys = Keys.of(
        management=management,
        inference=inference,
        require_management=auth.require_management_auth,
        require_inference=auth.require_inference_auth,
    )
    return LoadedKeys(keys, (management_message, inference_message))


def _load_class(
    kind: _KeyClass, required: bool, configured: Sequence[SecretStr], data_dir: Path
) -> tuple[list[str], str]:
    keys = [secret.get_secret_value() for secret in configured]
    for index, key in enumerate(keys):
        if not key.strip():
            raise ConfigError(
                f"{kind.setting}[{index}] is empty; remove it or give a key",
                key=kind.setting,
            )
    if not required:
        return keys, f"{kind.name} auth: off, {kind.routes} accepts requests without a key"
    if keys:
        return keys, f"{kind.name} keys: {len(keys)} from the configuration"
    path = data_dir / kind.filename
    stored = _read_key_file(path)
    if stored is not None:
        return [stored], f"{kind.name} key: read from {path}"
    key, created = _create_key_file(path, kind.prefix)
    if created:
        return [key], f"{kind.name} key: generated and stored in {path} (mode 0600)"
    return [key], f"{kind.name} key: read from {path}"


def _read_key_file(path: Path) -> str | None:
    """The key stored in ``path``, or ``None`` when there is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        if path.is_symlink():
            raise ConfigError(f"the key file {path} is a link to a missing file") from None
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the key file {path}: {exc.strerror}") from exc
    try:
        _check_key_file_mode(path, os.fstat(fd).st_mode)
        data = _read_all(fd)
    except OSError as exc:
        raise ConfigError(f"cannot read the key file {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    try:
        key = data.decode().strip()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the key file {path} is not UTF-8 text") from exc
    if not key:
        raise ConfigError(f"the key file {path} is empty; delete it to generate a new key")
    if len(key.split()) != 1:
        raise ConfigError(f"the key file {path} must hold one key on one line")
    return key


def _check_key_file_mode(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise ConfigError(f"the key file {path} is not a regular file")
    if os.name == "posix" and mode & _TOO_WIDE:
        raise ConfigError(
            f"the key file {path} has mode {stat.S_IMODE(mode):04o}, wider than 0600;"
            f" run: chmod 600 {path}"
        )


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def _create_key_file(path: Path, prefix: str) -> tuple[str, bool]:
    """Store a new key in ``path``; ``(key, True)``, or ``(their key, False)`` if we lost a race.

    The key is written to a temporary file created with mode 0600, so it is never readable
    by others, then linked to ``path``, which fails rather than replaces a file that
    appeared in the meantime.
    """
    key = prefix + secrets.token_hex(32)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _KEY_FILE_MODE)
        with os.fdopen(fd, "wb") as file:
            os.fchmod(fd, _KEY_FILE_MODE)  # the umask may have narrowed it further
            file.write(f"{key}\n".encode())
            file.flush()
            os.fsync(fd)
        try:
            os.link(temporary, path)
        except FileExistsError:
            stored = _read_key_file(path)
            if stored is None:  # it came and went again; give up rather than loop
                raise ConfigError(f"the key file {path} changed while starting") from None
            return stored, False
        except OSError:  # a file system without hard links
            temporary.replace(path)
    except OSError as exc:
        raise ConfigError(f"cannot store the generated key in {path}: {exc.strerror}") from exc
    finally:
        temporary.unlink(missing_ok=True)
    return key, True


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
    return None if matched else INVALID_KEY


class Remembered:
    """The last inference key that passed on one client connection, so that the next
    request on it presenting the same key is not hashed and compared again.

    It holds that key as presented (as the connection's own request did, for as long as
    the connection lives) and the ``Keys`` it passed against: a reload, which replaces
    ``Keys``, forgets it. Only ever a key that passed: a refused one is checked each time.
    """

    __slots__ = ("keys", "presented")

    def __init__(self) -> None:
        self.keys: Keys | None = None
        self.presented = b""


def inference_allowed(keys: Keys, scope: Scope, remembered: Remembered) -> bool:
    """Whether an inference route may serve the request in ``scope``: ``rejection`` with
    ``management=False``, skipped when the connection presents the key that passed last."""
    if not keys.require_inference:
        return True
    presented = presented_key(scope["headers"], scope.get("query_string", b""))
    if presented is None:
        return False
    if remembered.keys is keys and hmac.compare_digest(presented, remembered.presented):
        return True
    if rejection(keys, scope, management=False) is not None:
        return False
    remembered.keys, remembered.presented = keys, presented
    return True


def allows(keys: Keys, scope: Scope, *, management: bool) -> bool:
    """Whether the request in ``scope`` may pass; see ``rejection``."""
    return rejection(keys, scope, management=management) is None


def unauthorized_body(message: str) -> bytes:
    """The JSON body of a 401, in the OpenAI error shape."""
    return render(Unauthorized(message), Shape.OPENAI).body


def unauthorized_response(message: str) -> Response:
    """The 401 response for ``message``: OpenAI error shape, ``WWW-Authenticate: Bearer``."""
    return exception_response(Unauthorized(message))


async def reject(send: Send, message: str) -> None:
    """Send the 401 for ``message`` straight to an ASGI ``send``."""
    await send_rendered(send, render(Unauthorized(message), Shape.OPENAI))


def _dependency(keys: Keys, *, management: bool) -> Callable[[Request], Awaitable[None]]:
    async def require_key(request: Request) -> None:
        message = rejection(keys, request.scope, management=management)
        if message is not None:
            raise Unauthorized(message)

    return require_key


def management_dependency(keys: Keys) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that raises ``Unauthorized`` unless a management key is given."""
    return _dependency(keys, management=True)


def inference_dependency(keys: Keys) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that raises ``Unauthorized`` unless an accepted key is given.

    Inference routes accept inference keys and management keys.
    """
    return _dependency(keys, management=False)
