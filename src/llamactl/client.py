"""A small synchronous client for the management API of a running llamactl.

``ApiClient`` sends one request per method and returns the parsed JSON body. It knows the
routes and the error bodies, nothing about terminals or exit codes: the CLI
(``cli.instances``) turns what it raises into messages. Every failure is one of two
``LlamactlError`` subclasses, translated here from ``OSError`` and ``http.client``'s
exceptions once:

    LlamactlError
    └── ClientError        a request to a llamactl server did not succeed
        ├── ApiError       the server answered with an error status (its code and message)
        └── Unreachable    no answer: refused, unknown host, timeout, connection cut

It is written on the standard library's ``http.client``, one connection per request: a
command makes one or two requests, and httpx would cost every command a fifth of a second
to import and to build its TLS context (see ``scripts/bench_cli``).

``default_api_key`` finds the key a local server generated, for callers that were given
none; ``default_url`` is where a local server listens by default (``LLAMACTL_HOST`` and
``LLAMACTL_PORT`` when set).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from urllib.parse import quote, urlencode, urlsplit

from llamactl.errors import ApiError, ClientError, ConfigError, LlamactlError, Unreachable

__all__ = [
    "DEFAULT_URL",
    "ApiClient",
    "ApiError",
    "ClientError",
    "JsonObject",
    "Unreachable",
    "default_api_key",
    "default_url",
    "is_local",
    "key_file_path",
    "likely_api_key",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
API = "/api/v1"
KEY_FILE = "management.key"
KEYS = "/auth/keys"

JsonObject = dict[str, object]

_LOCAL_NAMES = {"localhost", "localhost.localdomain"}
_MAX_PORT = 65535
_ANY_ADDRESS = {"", "0.0.0.0", "::", "[::]"}  # a server listening on every address
_CONNECT = 10.0  # seconds to connect, for the requests whose reads wait without a bound
_CLIENT_TIMEOUT = -1.0  # "the client's own timeout", for ``_send``
_WAIT_MARGIN = 10.0  # seconds the HTTP read waits beyond the server's own start timeout
_ERROR_TEXT = 200  # characters of a non-JSON error body quoted in the message


@dataclass(frozen=True)
class _Answer:
    """A response read whole."""

    status: int
    reason: str
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    @property
    def is_error(self) -> bool:
        return self.status >= 400


class ApiClient:
    """The management API of the llamactl at ``url``; ``api_key`` goes in ``Authorization``.

    ``timeout`` (seconds) bounds every request except ``start(wait=True)`` without a
    timeout and ``follow_logs``, which wait as long as the server does (their connect
    still gives up after ten seconds). ``key_fallback`` gives another key when the server
    refuses ``api_key`` (a guess): the request is sent again once with it, if it differs.
    Use it as a context manager, or call ``close``.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        timeout: float = 30,
        key_fallback: Callable[[], str | None] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path + API
        self._headers = {"Accept": "application/json", "User-Agent": "llamactl-cli"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = timeout
        self._key_fallback = key_fallback

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: every request has its own connection."""

    # -- instances -------------------------------------------------------------------------

    def list_instances(self) -> list[JsonObject]:
        return self._objects(self._send("GET", "/instances"), "a list of instances")

    def get(self, name: str) -> JsonObject:
        return self._object(self._send("GET", _instance(name)))

    def create(self, name: str, options: Mapping[str, object]) -> JsonObject:
        return self._object(self._send("POST", _instance(name), json=options))

    def update(self, name: str, options: Mapping[str, object]) -> JsonObject:
        return self._object(self._send("PUT", _instance(name), json=options))

    def delete(self, name: str) -> None:
        self._send("DELETE", _instance(name))

    def start(self, name: str, *, wait: bool = False, timeout: float | None = None) -> JsonObject:
        """Start ``name``; with ``wait``, answer once it is ready (``ApiError`` if it fails)."""
        params: dict[str, str] = {}
        read: float | None = self._timeout
        if wait:
            params["wait"] = "true"
            if timeout is not None:
                params["timeout"] = f"{timeout:g}"
            read = None if timeout is None else timeout + _WAIT_MARGIN
        elif timeout is not None:
            raise ValueError("timeout applies only with wait=True")
        answer = self._send("POST", _instance(name) + "/start", params=params, read_timeout=read)
        return self._object(answer)

    def stop(self, name: str) -> JsonObject:
        return self._object(self._send("POST", _instance(name) + "/stop"))

    def restart(self, name: str) -> JsonObject:
        return self._object(self._send("POST", _instance(name) + "/restart"))

    def logs(self, name: str, lines: int | None = None) -> str:
        """The instance's log; the last ``lines`` lines, or all of it when ``None``."""
        params = {} if lines is None else {"lines": str(lines)}
        return self._send("GET", _instance(name) + "/logs", params=params).text

    def follow_logs(self, name: str, lines: int | None = None) -> Iterator[tuple[str, JsonObject]]:
        """``(event, data)`` from the instance's log stream, until the server ends it.

        Events are ``log`` (``{"text": ...}``) and ``status`` (``{"status", "readiness"}``).
        The iterator ends when the server closes the stream; a cut connection raises
        ``Unreachable``.
        """
        params = {} if lines is None else {"lines": str(lines)}
        path = _instance(name) + "/logs/follow"
        for attempt in range(2):
            connection = self._connection(None)
            try:
                response = self._request(connection, None, "GET", path, params, None)
                if response.status < HTTPStatus.BAD_REQUEST:
                    yield from _server_sent_events(_lines(response))
                    return
                answer = _Answer(response.status, response.reason, response.read())
            except (OSError, http.client.HTTPException) as exc:
                raise self._unreachable(exc) from exc
            finally:
                connection.close()
            refused = answer.status == HTTPStatus.UNAUTHORIZED
            if attempt or not refused or not self._use_fallback_key():
                raise _api_error(answer)

    # -- stored inference keys ---------------------------------------------------------------

    def create_key(self, body: Mapping[str, object]) -> JsonObject:
        """Make a key: ``name``, ``permission_mode``, ``permissions``, limits, expiry. The
        answer is the only one that carries the key itself (``key``)."""
        return self._object(self._send("POST", KEYS, json=body))

    def list_keys(self) -> list[JsonObject]:
        return self._objects(self._send("GET", KEYS), "a list of keys")

    def get_key(self, key_id: int) -> JsonObject:
        return self._object(self._send("GET", _key(key_id)))

    def update_key(self, key_id: int, changes: Mapping[str, object]) -> JsonObject:
        """Change the fields in ``changes``; ``None`` clears a limit or the expiry."""
        return self._object(self._send("PUT", _key(key_id), json=changes))

    def delete_key(self, key_id: int) -> None:
        self._send("DELETE", _key(key_id))

    # -- backends --------------------------------------------------------------------------

    def nodes(self) -> JsonObject:
        """Every node the server knows, by name, with its health."""
        return self._object(self._send("GET", "/nodes"))

    def node(self, name: str) -> JsonObject:
        """One node, checked now."""
        return self._object(self._send("GET", f"/nodes/{quote(name, safe='')}"))

    def parse_command(self, backend: str, command: str) -> JsonObject:
        """``backend`` is the URL segment: ``llama-cpp``, ``mlx`` or ``vllm``."""
        path = f"/backends/{backend}/parse-command"
        return self._object(self._send("POST", path, json={"command": command}))

    # -- plumbing --------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, object] | None = None,
        read_timeout: float | None = _CLIENT_TIMEOUT,
    ) -> _Answer:
        """One request on its own connection, read whole; ``None`` reads without a bound."""
        read = self._timeout if read_timeout == _CLIENT_TIMEOUT else read_timeout
        answer = self._exchange(method, path, params, json, read)
        if answer.status == HTTPStatus.UNAUTHORIZED and self._use_fallback_key():
            answer = self._exchange(method, path, params, json, read)
        if answer.is_error:
            raise _api_error(answer)
        return answer

    def _exchange(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Mapping[str, object] | None,
        read: float | None,
    ) -> _Answer:
        connection = self._connection(read)
        try:
            response = self._request(connection, read, method, path, params, body)
            return _Answer(response.status, response.reason, response.read())
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from exc
        finally:
            connection.close()

    def _use_fallback_key(self) -> bool:
        """Switch to the fallback key (once); whether there is a different one to try."""
        fallback, self._key_fallback = self._key_fallback, None
        key = fallback() if fallback is not None else None
        if not key or self._headers.get("Authorization") == f"Bearer {key}":
            return False
        self._headers["Authorization"] = f"Bearer {key}"
        return True

    def _connection(self, read_timeout: float | None) -> http.client.HTTPConnection:
        """A connection whose connect is bounded even when its reads are not."""
        connect = self._timeout if read_timeout is not None else min(self._timeout, _CONNECT)
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=connect)

    def _request(
        self,
        connection: http.client.HTTPConnection,
        read_timeout: float | None,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Mapping[str, object] | None,
    ) -> http.client.HTTPResponse:
        target = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        headers = dict(self._headers)
        content = None
        if body is not None:
            content = _json_body(body)
            headers["Content-Type"] = "application/json"
        connection.connect()
        if connection.sock is not None:
            connection.sock.settimeout(read_timeout)
        connection.request(method, target, body=content, headers=headers)
        return connection.getresponse()

    def _unreachable(self, exc: Exception) -> Unreachable:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            reason = "timed out"
        return Unreachable(f"cannot reach llamactl at {self.url}: {reason}")

    def _json(self, answer: _Answer) -> object:
        try:
            return json.loads(answer.content)
        except ValueError as exc:
            raise self._unexpected("JSON") from exc

    def _object(self, answer: _Answer) -> JsonObject:
        body = self._json(answer)
        if not isinstance(body, dict):
            raise self._unexpected("a JSON object")
        return body

    def _objects(self, answer: _Answer, expected: str) -> list[JsonObject]:
        body = self._json(answer)
        if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
            raise self._unexpected(expected)
        return body

    def _unexpected(self, expected: str) -> ApiError:
        return ApiError(
            200,
            "unexpected_response",
            f"{self.url} did not answer with {expected}: is it a llamactl server?",
        )


def _lines(response: http.client.HTTPResponse) -> Iterator[str]:
    """The lines of a streamed body, without their line ends, until the server closes it."""
    while line := response.readline():
        yield line.decode("utf-8", errors="replace").rstrip("\r\n")


def _instance(name: str) -> str:
    return f"/instances/{quote(name, safe='')}"


def _key(key_id: int) -> str:
    return f"{KEYS}/{int(key_id)}"


def _api_error(response: _Answer) -> ApiError:
    """The error in ``response``: the management shape, the 401 shape, or the bare status."""
    status = response.status
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        code = error.get("code")
        return ApiError(status, code if isinstance(code, str) else "", error["message"])
    text = response.text.strip().splitlines()
    detail = f": {text[0][:_ERROR_TEXT]}" if text else ""
    return ApiError(status, "http_error", f"HTTP {status} {response.reason}{detail}")


def _server_sent_events(lines: Iterator[str]) -> Iterator[tuple[str, JsonObject]]:
    """Parse a ``text/event-stream``: ``event:`` and ``data:`` fields, blank line ends one."""
    event = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event, _event_data("\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    if data:
        yield event, _event_data("\n".join(data))


def _event_data(text: str) -> JsonObject:
    try:
        value = json.loads(text)
    except ValueError:
        return {"text": text}
    return value if isinstance(value, dict) else {"value": value}


def default_url(environ: Mapping[str, str]) -> str:
    """The URL of a server on this machine started with ``environ``'s settings.

    ``LLAMACTL_PORT`` gives the port and ``LLAMACTL_HOST`` the address, except one that
    means every address (``0.0.0.0``, ``::``), which is reached on loopback. Only the
    environment is read: loading the configuration would cost every command a tenth of a
    second, so a port set in the configuration file needs ``--url`` or ``LLAMACTL_URL``.
    """
    host = environ.get("LLAMACTL_HOST", "").strip()
    if host in _ANY_ADDRESS:
        host = DEFAULT_HOST
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = environ.get("LLAMACTL_PORT", "").strip() or str(DEFAULT_PORT)
    if not port.isdigit() or not 1 <= int(port) <= _MAX_PORT:
        raise ConfigError(
            f"LLAMACTL_PORT: expected a port from 1 to {_MAX_PORT}, got {port!r}",
            key="server.port",
            value=port,
            source="env LLAMACTL_PORT",
        )
    return f"http://{host}:{int(port)}"


def key_file_path(environ: Mapping[str, str], config_path: str | None = None) -> Path | None:
    """Where a local server keeps its generated management key, or ``None`` if unknown."""
    from llamactl.config import load_config

    try:
        return load_config(config_path, environ).data_dir / KEY_FILE
    except LlamactlError:
        return None


def default_api_key(
    url: str, environ: Mapping[str, str], config_path: str | None = None
) -> str | None:
    """The key in the local server's key file when ``url`` is on this machine, else ``None``.

    A missing or unreadable file gives ``None``: the request then goes without a key and the
    server's 401 says so. This loads the configuration to find the data directory; see
    ``likely_api_key`` for the quick guess that is tried first.
    """
    if not is_local(url):
        return None
    path = key_file_path(environ, config_path)
    return None if path is None else _read_key(path)


def likely_api_key(
    url: str, environ: Mapping[str, str], config_path: str | None = None
) -> str | None:
    """The key of a local server that runs with the default data directory, if there is one.

    A guess that spares loading the configuration (a fifth of a second): the data directory
    is ``LLAMACTL_DATA_DIRECTORY`` when that is an absolute path (the environment wins over
    every other source), else the platform's default. A configuration file or ``.env`` may
    put it elsewhere, so a key found here is only tried first: on a 401 the caller asks
    ``default_api_key`` (see ``ApiClient``'s ``key_fallback``). ``None`` with ``--config``.
    """
    if config_path is not None or not is_local(url):
        return None
    given = environ.get("LLAMACTL_DATA_DIRECTORY", "")
    data_dir = Path(given) if Path(given).is_absolute() else _platform_data_dir(environ)
    return _read_key(data_dir / KEY_FILE)


def _platform_data_dir(environ: Mapping[str, str]) -> Path:
    """``config.platform.default_data_dir`` for this machine (a test holds the two equal).

    Spelled out here because importing anything of ``llamactl.config`` loads all of it.
    """
    home = next(
        (Path(environ[name]) for name in ("HOME", "USERPROFILE") if environ.get(name)), None
    )
    home = home or Path.home()
    if sys.platform.startswith(("win", "cygwin")):
        base = environ.get("PROGRAMDATA") or environ.get("LOCALAPPDATA") or "C:\\ProgramData"
        return Path(base) / "llamactl"
    if str(home) in ("", "."):
        return Path("/usr/local/var/llamactl" if sys.platform == "darwin" else "/var/lib/llamactl")
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "llamactl"
    return home / ".local" / "share" / "llamactl"


def _read_key(path: Path) -> str | None:
    try:
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return key or None


def is_local(url: str) -> bool:
    """Whether ``url`` names this machine (a loopback address or ``localhost``)."""
    host = (urlsplit(url).hostname or "").lower()
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _json_body(body: Mapping[str, object]) -> bytes:
    """``body`` as JSON with every non-ASCII character escaped.

    A string that is not valid Unicode text (a lone surrogate, from ``--set`` or from an
    argument that was not UTF-8) then reaches the server, which refuses it naming the key,
    instead of failing here with a traceback.
    """
    return json.dumps(body, ensure_ascii=True).encode("ascii")
