#!/usr/bin/env python3
"""A stand-in for llama.cpp's ``llama-server``: a real process speaking real HTTP.

Standard library only, Python >= 3.11, so any interpreter can run it::

    python tests/fake_llama_server.py --port 8080 [--host H] [-m PATH] [--alias NAME] [...]

Command line
------------
``--port N`` (required; 0 picks a free port), ``--host H`` (default 127.0.0.1; it binds
only there), ``-m/--model PATH``, ``-a/--alias NAME``; ``--opt=value`` works for these.
Any other flag is ignored: an unknown ``-x``/``--x`` takes the next token as its value when
that token does not start with ``-`` (negative numbers count as values). Stray positional
tokens are ignored too. A missing ``--port`` or a bad value exits with code 2.

Output
------
stdout: first ``{"argv": [...], "pid": N}`` (``argv`` is ``sys.argv[1:]``, the flags as
received), then optionally the long line and ``{"child_pid": N}`` (see the table), each line
flushed at once.

stderr, llama-server-like::

    main: HTTP server is listening, hostname: HOST, port: PORT, http threads: N
    main: loading model '<model>'
    main: model loaded                                  (when loading ends)
    main: server is listening on http://HOST:PORT - starting the main loop
    srv  log_server_r: 127.0.0.1 "GET /health HTTP/1.1" 200 -     (one per request)

HTTP
----
- ``GET /health`` (also ``/v1/health``): 200 ``{"status": "ok"}``.
- ``GET /v1/models`` (also ``/models``): ``{"object": "list", "data": [{"id": <alias, else
  the model's basename>, "object": "model", "created": <int>, "owned_by": "llamacpp"}]}``.
- ``POST /v1/chat/completions`` (also ``/chat/completions``): ``choices[0].message.content``
  is ``"echo: <last user message>"``; 400 when ``messages`` is not a list.
- ``POST /v1/completions`` (also ``/completions``): ``choices[0].text`` is
  ``"echo: <prompt>"`` (a list prompt uses its last item); 400 when ``prompt`` is missing.
- ``POST /v1/embeddings`` (also ``/embeddings``): one fixed 4-number vector per input.
- ``POST /v1/messages`` (Anthropic's Messages API): a ``message`` whose one ``text``
  content block is ``"echo: <last user message>"`` (string content, or its text blocks
  joined by spaces), ``stop_reason`` ``"end_turn"`` (``"max_tokens"`` when truncated),
  ``usage`` with ``input_tokens`` (the words of ``system`` and every message) and
  ``output_tokens``; 400 when ``messages`` is not a list. Streamed, Anthropic's events:
  ``message_start`` (``usage.input_tokens``), ``content_block_start``, N
  ``content_block_delta`` (``text_delta``), ``content_block_stop``, ``message_delta``
  (``stop_reason``, ``usage.output_tokens``), ``message_stop``, each
  ``event: <type>\ndata: <JSON>\n\n``, with the same chunking and interval as chat.
- ``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``, counted as above.
- Any other GET/POST/PUT/DELETE/PATCH: 404 ``{"error": {"code": 404, ...}}``. Other methods
  (HEAD, OPTIONS) get the standard library's 501 and are not logged.

Every request gets 503 ``{"error": {"code": 503, "message": "Loading model", "type":
"unavailable_error"}}`` while the model is "loading"; the socket listens all along.
Invalid JSON bodies get 400. ``max_tokens`` (or ``max_completion_tokens``/``n_predict``)
truncates the content to that many words (``finish_reason`` becomes ``"length"``); ``usage``
counts words. With ``"stream": true`` the answer is ``text/event-stream`` with HTTP/1.1
chunked transfer encoding (``Connection: close`` for HTTP/1.0 clients): N events
``data: <chunk JSON>\\n\\n`` (``chat.completion.chunk`` with ``delta.content``, or
``text_completion`` with ``text`` for /v1/completions), the deltas joined give the
non-streamed content, the last carries ``finish_reason`` and ``usage``; then
``data: [DONE]\\n\\n``. Each event is written to the socket as it is produced. HTTP/1.1
keep-alive works, chunked request bodies are accepted, every response carries an
``X-Fake-Llama-Pid`` header.

Environment
-----------
``FAKE_LLAMA_LOAD_SECONDS``
    float, default 0: how long "loading" lasts, counted from the moment it listens.
``FAKE_LLAMA_STREAM_CHUNKS``
    int, default 5: data events per streamed answer (deltas may be empty strings when
    there are more chunks than words).
``FAKE_LLAMA_STREAM_INTERVAL``
    float, default 0: seconds between two events.
``FAKE_LLAMA_REQUEST_LOG``
    path: append one JSON line per request as it arrives, before it is answered:
    ``{"t": time.time(), "method", "path" (as sent, with any query), "body" (parsed JSON,
    or null when empty or invalid), "loading": bool, "pid", "peer": "host:port"}``. A stream
    the client abandons adds ``{"t", "event": "client_disconnected", "path", "pid", "peer",
    "chunks_sent"}``. One ``write()`` per line on an O_APPEND descriptor, under a lock, so
    threads and several servers may share one file.
``FAKE_LLAMA_EXIT_AT_START``
    int: print an error to stderr and exit with this code (0 allowed) right after parsing
    the arguments, before listening.
``FAKE_LLAMA_CRASH_AFTER_REQUESTS``
    int n >= 1: after answering the n-th request to a ``/v1/*`` path (any status; the
    aliases without ``/v1`` do not count), ``os._exit(3)``.
``FAKE_LLAMA_CRASH_ON_SIGNAL``
    signal name (``SIGUSR1`` or ``USR1``) or number: exit 4 when it arrives.
``FAKE_LLAMA_IGNORE_SIGTERM``
    ``1``: ignore SIGTERM, so only SIGKILL stops it.
``FAKE_LLAMA_SIGTERM_EXIT_CODE``
    int, default 0: exit code on SIGTERM.
``FAKE_LLAMA_LONG_LINE``
    int n: print one line of n characters (``0123456789`` repeated) to stdout at start.
``FAKE_LLAMA_CHILD``
    ``1``: spawn a sleeping grandchild (``sys.executable -c "time.sleep(3600)"``) in the
    same process group, sharing stdout/stderr, and print ``{"child_pid": N}``; the fake
    never stops it itself.

Signals: SIGTERM exits at once (open streams are cut) with ``FAKE_LLAMA_SIGTERM_EXIT_CODE``
after flushing stdout/stderr; SIGINT always exits 0 at once. Bad environment values exit
with code 2; a port that cannot be bound exits with code 1.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import select
import signal
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import PurePath
from typing import Any

EMBEDDING = [0.1, 0.2, 0.3, 0.4]
LOADING_ERROR = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
HTTP_THREADS = 32


class UsageError(Exception):
    """A bad command line or environment value (exit code 2)."""


# --------------------------------------------------------------------------- arguments


def _is_flag(token: str) -> bool:
    if not token.startswith("-") or token == "-":
        return False
    try:
        float(token)
    except ValueError:
        return True
    return False


KNOWN_FLAGS = {
    "--port": "port",
    "--host": "host",
    "-m": "model",
    "--model": "model",
    "-a": "alias",
    "--alias": "alias",
}


def parse_args(argv: list[str]) -> dict[str, Any]:
    """The four flags the fake cares about; everything else is skipped leniently."""
    options: dict[str, Any] = {"host": "127.0.0.1", "port": None, "model": None, "alias": None}
    i = 0
    while i < len(argv):
        token = argv[i]
        name, eq, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        if name in KNOWN_FLAGS:
            if eq:
                value = inline
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                raise UsageError(f"option {token} needs a value")
            options[KNOWN_FLAGS[name]] = value
        elif _is_flag(token) and not eq and i + 1 < len(argv) and not _is_flag(argv[i + 1]):
            i += 1  # an unknown flag with a value
        i += 1
    if options["port"] is None:
        raise UsageError("--port is required")
    try:
        port = int(options["port"])
    except ValueError:
        raise UsageError(f"invalid port {options['port']!r}") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"invalid port {port}")
    options["port"] = port
    return options


def _env_number(env: dict[str, str], name: str, kind: type, default: Any) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if kind is float and (value != value or value < 0):  # NaN or negative
        raise UsageError(f"{name}={raw!r} must be a number >= 0")
    return value


def _env_flag(env: dict[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_signal(env: dict[str, str], name: str) -> signal.Signals | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        if raw.isdigit():
            return signal.Signals(int(raw))
        upper = raw.upper()
        return signal.Signals[upper if upper.startswith("SIG") else "SIG" + upper]
    except (KeyError, ValueError):
        raise UsageError(f"{name}={raw!r} is not a signal") from None


class Settings:
    def __init__(self, env: dict[str, str]) -> None:
        self.load_seconds: float = _env_number(env, "FAKE_LLAMA_LOAD_SECONDS", float, 0.0)
        self.stream_chunks: int = _env_number(env, "FAKE_LLAMA_STREAM_CHUNKS", int, 5)
        self.stream_interval: float = _env_number(env, "FAKE_LLAMA_STREAM_INTERVAL", float, 0.0)
        self.request_log: str = env.get("FAKE_LLAMA_REQUEST_LOG", "")
        self.exit_at_start: int | None = _env_number(env, "FAKE_LLAMA_EXIT_AT_START", int, None)
        self.crash_after: int | None = _env_number(
            env, "FAKE_LLAMA_CRASH_AFTER_REQUESTS", int, None
        )
        self.crash_signal = _env_signal(env, "FAKE_LLAMA_CRASH_ON_SIGNAL")
        self.ignore_sigterm = _env_flag(env, "FAKE_LLAMA_IGNORE_SIGTERM")
        self.sigterm_exit_code: int = _env_number(env, "FAKE_LLAMA_SIGTERM_EXIT_CODE", int, 0)
        self.long_line: int = _env_number(env, "FAKE_LLAMA_LONG_LINE", int, 0)
        self.child = _env_flag(env, "FAKE_LLAMA_CHILD")
        if self.stream_chunks < 0:
            raise UsageError("FAKE_LLAMA_STREAM_CHUNKS must be >= 0")
        if self.crash_after is not None and self.crash_after < 1:
            raise UsageError("FAKE_LLAMA_CRASH_AFTER_REQUESTS must be >= 1")


# --------------------------------------------------------------------------- output


def say(line: str) -> None:
    """One line to stderr; a closed stderr is not the fake's problem."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def emit(obj: dict[str, Any]) -> None:
    """One JSON line to stdout, flushed."""
    try:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


def exit_now(code: int, message: str | None = None) -> None:
    if message:
        say(message)
    for stream in (sys.stdout, sys.stderr):
        # Exiting anyway: a failing or reentrant flush must not stop it.
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


# --------------------------------------------------------------------------- state


class State:
    def __init__(self, settings: Settings, model_id: str) -> None:
        self.settings = settings
        self.model_id = model_id
        self.ready_at = time.monotonic() + settings.load_seconds
        self.created = int(time.time())
        self.ids = itertools.count(1)
        self._lock = threading.Lock()
        self._v1_answered = 0
        self._log_fd: int | None = None
        if settings.request_log:
            try:
                self._log_fd = os.open(
                    settings.request_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
                )
            except OSError as error:
                raise UsageError(f"cannot open FAKE_LLAMA_REQUEST_LOG: {error}") from None

    def loading(self) -> bool:
        return time.monotonic() < self.ready_at

    def log(self, record: dict[str, Any]) -> None:
        if self._log_fd is None:
            return
        data = (json.dumps(record) + "\n").encode()
        with self._lock:
            view = memoryview(data)
            while view:
                written = os.write(self._log_fd, view)
                view = view[written:]

    def answered(self, path: str) -> None:
        """Count an answered /v1/* request; crash when the limit is reached."""
        limit = self.settings.crash_after
        if limit is None or not path.startswith("/v1/"):
            return
        with self._lock:
            self._v1_answered += 1
            reached = self._v1_answered >= limit
        if reached:
            exit_now(
                3, f"main: crashing after {limit} /v1 requests (FAKE_LLAMA_CRASH_AFTER_REQUESTS)"
            )


# --------------------------------------------------------------------------- content


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return " ".join(p for p in parts if isinstance(p, str))
    return json.dumps(content)


def _max_tokens(body: dict[str, Any]) -> int | None:
    for key in ("max_tokens", "max_completion_tokens", "n_predict"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value if value >= 0 else None
    return None


def make_content(prompt: str, max_tokens: int | None) -> tuple[str, str]:
    """The deterministic answer and its finish reason."""
    content = "echo: " + prompt
    tokens = re.findall(r"\S+\s*", content)
    if max_tokens is not None and len(tokens) > max_tokens:
        return "".join(tokens[:max_tokens]).rstrip(), "length"
    return content, "stop"


def split_pieces(content: str, count: int) -> list[str]:
    """``count`` word-aligned pieces whose concatenation is ``content`` (some may be empty)."""
    tokens = re.findall(r"\S+\s*", content)
    if content and not tokens:
        tokens = [content]
    n = len(tokens)
    return ["".join(tokens[i * n // count : (i + 1) * n // count]) for i in range(count)]


def _words(text: str) -> int:
    return len(text.split())


def _error(code: int, message: str, kind: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "type": kind}}


# --------------------------------------------------------------------------- HTTP


class Disconnected(Exception):
    """The client went away in the middle of a stream."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-llama-server/1.0"
    sys_version = ""
    disable_nagle_algorithm = True  # small header and body writes must not wait for ACKs
    state: State  # set by main()

    # ---- plumbing

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        say(f"srv  log_server_r: {self.address_string()} {format % args}")

    def _peer(self) -> str:
        host, port = self.client_address[:2]
        return f"{host}:{port}"

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size_line = self.rfile.readline(1024)
                if not size_line:
                    raise ValueError("truncated chunked body")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)  # CRLF after the chunk
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else b""

    def _send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Fake-Llama-Pid", str(os.getpid()))
        self.end_headers()
        self.wfile.write(data)

    # ---- dispatch

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        state = self.state
        path = self.path.split("?", 1)[0]
        body: Any = None
        problem: str | None = None
        try:
            raw = self._read_body()
        except ValueError as error:
            raw, problem = b"", f"bad request body: {error}"
            self.close_connection = True
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                problem = "invalid JSON body"
        loading = state.loading()
        state.log(
            {
                "t": time.time(),
                "method": self.command,
                "path": self.path,
                "body": body,
                "loading": loading,
                "pid": os.getpid(),
                "peer": self._peer(),
            }
        )
        try:
            self._route(path, body, problem, loading)
        finally:
            state.answered(path)

    def _route(self, path: str, body: Any, problem: str | None, loading: bool) -> None:
        method = self.command
        if loading:
            self._send_json(503, LOADING_ERROR)
        elif method == "GET" and path in ("/health", "/v1/health"):
            self._send_json(200, {"status": "ok"})
        elif method == "GET" and path in ("/v1/models", "/models"):
            self._send_json(200, self._models())
        elif method == "POST" and path in ("/v1/messages", "/v1/messages/count_tokens"):
            if problem or not isinstance(body, dict):
                message = problem or "the body must be a JSON object"
                self._send_json(400, _error(400, message, "invalid_request_error"))
            else:
                self._messages(body, count_only=path.endswith("/count_tokens"))
        elif method == "POST" and path in (
            "/v1/chat/completions",
            "/chat/completions",
            "/v1/completions",
            "/completions",
            "/v1/embeddings",
            "/embeddings",
        ):
            if problem or not isinstance(body, dict):
                message = problem or "the body must be a JSON object"
                self._send_json(400, _error(400, message, "invalid_request_error"))
            elif path.endswith("/embeddings"):
                self._embeddings(body)
            else:
                self._complete(path, body, chat=path.endswith("/chat/completions"))
        else:
            self._send_json(404, _error(404, f"File Not Found: {method} {path}", "not_found_error"))

    # ---- endpoints

    def _models(self) -> dict[str, Any]:
        state = self.state
        return {
            "object": "list",
            "data": [
                {
                    "id": state.model_id,
                    "object": "model",
                    "created": state.created,
                    "owned_by": "llamacpp",
                }
            ],
        }

    def _embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input", "")
        items = inputs if isinstance(inputs, list) else [inputs]
        tokens = sum(_words(_text(item)) for item in items)
        self._send_json(
            200,
            {
                "object": "list",
                "model": self.state.model_id,
                "data": [
                    {"object": "embedding", "index": i, "embedding": list(EMBEDDING)}
                    for i in range(len(items))
                ],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def _complete(self, path: str, body: dict[str, Any], chat: bool) -> None:
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list):
                self._send_json(
                    400, _error(400, "'messages' must be a list", "invalid_request_error")
                )
                return
            dicts = [m for m in messages if isinstance(m, dict)]
            users = [m for m in dicts if m.get("role") == "user"] or dicts
            prompt = _text(users[-1].get("content")) if users else ""
            prompt_tokens = sum(_words(_text(m.get("content"))) for m in dicts)
        else:
            if "prompt" not in body:
                self._send_json(400, _error(400, "'prompt' is required", "invalid_request_error"))
                return
            raw_prompt = body["prompt"]
            if isinstance(raw_prompt, list):
                raw_prompt = raw_prompt[-1] if raw_prompt else ""
            prompt = _text(raw_prompt)
            prompt_tokens = _words(prompt)
        content, finish = make_content(prompt, _max_tokens(body))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": _words(content),
            "total_tokens": prompt_tokens + _words(content),
        }
        ident = f"{'chatcmpl' if chat else 'cmpl'}-fake-{os.getpid()}-{next(self.state.ids)}"
        if body.get("stream") is True:
            self._stream(path, ident, chat, content, finish, usage)
            return
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if chat:
            choice["message"] = {"role": "assistant", "content": content}
        else:
            choice["text"] = content
            choice["logprobs"] = None
        self._send_json(
            200,
            {
                "id": ident,
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": self.state.model_id,
                "choices": [choice],
                "usage": usage,
            },
        )

    def _messages(self, body: dict[str, Any], count_only: bool) -> None:
        """Anthropic's Messages API: a message, its token count, or its stream of events."""
        messages = body.get("messages")
        if not isinstance(messages, list):
            self._send_json(400, _error(400, "'messages' must be a list", "invalid_request_error"))
            return
        dicts = [m for m in messages if isinstance(m, dict)]
        users = [m for m in dicts if m.get("role") == "user"] or dicts
        prompt = _text(users[-1].get("content")) if users else ""
        input_tokens = _words(_text(body.get("system"))) + sum(
            _words(_text(m.get("content"))) for m in dicts
        )
        if count_only:
            self._send_json(200, {"input_tokens": input_tokens})
            return
        content, finish = make_content(prompt, _max_tokens(body))
        stop_reason = "max_tokens" if finish == "length" else "end_turn"
        message: dict[str, Any] = {
            "id": f"msg_fake_{os.getpid()}_{next(self.state.ids)}",
            "type": "message",
            "role": "assistant",
            "model": self.state.model_id,
            "content": [{"type": "text", "text": content}],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": _words(content)},
        }
        if body.get("stream") is True:
            self._stream_message(message, content)
        else:
            self._send_json(200, message)

    # ---- streaming

    def _start_stream(self) -> bool:
        """Send the head of an event stream; whether its body is chunked."""
        chunked = self.request_version != "HTTP/1.0"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Fake-Llama-Pid", str(os.getpid()))
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        return chunked

    def _stream_message(self, message: dict[str, Any], content: str) -> None:
        settings = self.state.settings
        chunked = self._start_stream()
        usage = message["usage"]
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 0},
        }
        block = {"type": "text", "text": ""}
        sent = 0
        try:
            self._named("message_start", {"message": start}, chunked)
            self._named("content_block_start", {"index": 0, "content_block": block}, chunked)
            for index, piece in enumerate(split_pieces(content, settings.stream_chunks)):
                if index and settings.stream_interval:
                    self._pause(settings.stream_interval)
                delta = {"type": "text_delta", "text": piece}
                self._named("content_block_delta", {"index": 0, "delta": delta}, chunked)
                sent += 1
            self._named("content_block_stop", {"index": 0}, chunked)
            delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
            final = {"output_tokens": usage["output_tokens"]}
            self._named("message_delta", {"delta": delta, "usage": final}, chunked)
            self._named("message_stop", {}, chunked)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (Disconnected, ConnectionError):
            self._abandoned(sent)

    def _named(self, kind: str, data: dict[str, Any], chunked: bool) -> None:
        """One Anthropic event: ``event: <kind>`` and its data, which repeats the type."""
        self._event(json.dumps({"type": kind, **data}), chunked, kind)

    def _abandoned(self, sent: int) -> None:
        self.close_connection = True
        self.state.log(
            {
                "t": time.time(),
                "event": "client_disconnected",
                "path": self.path,
                "pid": os.getpid(),
                "peer": self._peer(),
                "chunks_sent": sent,
            }
        )

    def _stream(
        self,
        path: str,
        ident: str,
        chat: bool,
        content: str,
        finish: str,
        usage: dict[str, int],
    ) -> None:
        settings = self.state.settings
        chunked = self._start_stream()
        pieces = split_pieces(content, settings.stream_chunks)
        sent = 0
        try:
            for index, piece in enumerate(pieces):
                if index and settings.stream_interval:
                    self._pause(settings.stream_interval)
                last = index == len(pieces) - 1
                chunk: dict[str, Any] = {
                    "id": ident,
                    "object": "chat.completion.chunk" if chat else "text_completion",
                    "created": int(time.time()),
                    "model": self.state.model_id,
                }
                if chat:
                    delta = {"content": piece}
                    if index == 0:
                        delta = {"role": "assistant", "content": piece}
                    chunk["choices"] = [
                        {"index": 0, "delta": delta, "finish_reason": finish if last else None}
                    ]
                else:
                    chunk["choices"] = [
                        {
                            "index": 0,
                            "text": piece,
                            "logprobs": None,
                            "finish_reason": finish if last else None,
                        }
                    ]
                if last:
                    chunk["usage"] = usage
                self._event(json.dumps(chunk), chunked)
                sent += 1
            self._event("[DONE]", chunked)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (Disconnected, ConnectionError):
            self._abandoned(sent)

    def _event(self, data: str, chunked: bool, kind: str | None = None) -> None:
        payload = f"data: {data}\n\n".encode()
        if kind is not None:
            payload = f"event: {kind}\n".encode() + payload
        if chunked:
            payload = f"{len(payload):x}\r\n".encode() + payload + b"\r\n"
        self.wfile.write(payload)

    def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, noticing at once if the client closes the connection."""
        deadline = time.monotonic() + seconds
        poller = select.poll()
        poller.register(self.connection, select.POLLIN)
        while (remaining := deadline - time.monotonic()) > 0:
            if not poller.poll(max(1, int(remaining * 1000))):
                continue
            try:
                peek = self.connection.recv(1, socket.MSG_PEEK)
            except OSError:
                raise Disconnected from None
            if not peek:
                raise Disconnected
            time.sleep(max(0.0, deadline - time.monotonic()))  # a pipelined request
            return


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def server_bind(self) -> None:
        # Skip HTTPServer's reverse DNS lookup of the host: it can be slow.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


# --------------------------------------------------------------------------- main


def install_signals(settings: Settings) -> None:
    def on_sigterm(signum: int, frame: object) -> None:
        exit_now(settings.sigterm_exit_code, "main: received SIGTERM, shutting down")

    def on_sigint(signum: int, frame: object) -> None:
        exit_now(0, "main: received SIGINT, shutting down")

    def on_crash(signum: int, frame: object) -> None:
        exit_now(4, f"main: crashing on {signal.Signals(signum).name}")

    if settings.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigint)
    if settings.crash_signal is not None:
        signal.signal(settings.crash_signal, on_crash)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    emit({"argv": argv, "pid": os.getpid()})
    try:
        settings = Settings(dict(os.environ))
        install_signals(settings)
        options = parse_args(argv)
    except UsageError as error:
        say(f"error: {error}")
        return 2
    model = options["model"] or "fake-model.gguf"
    model_id = options["alias"] or PurePath(model).name or model

    if settings.exit_at_start is not None:
        say(
            f"main: error: failed to load model '{model}' "
            f"(FAKE_LLAMA_EXIT_AT_START={settings.exit_at_start})"
        )
        return settings.exit_at_start
    if settings.long_line:
        pattern = "0123456789" * (settings.long_line // 10 + 1)
        try:
            sys.stdout.write(pattern[: settings.long_line] + "\n")
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
    if settings.child:
        import subprocess

        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(3600)"],
            stdin=subprocess.DEVNULL,
        )
        emit({"child_pid": child.pid})

    host = options["host"]
    Server.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        state = State(settings, model_id)
        server = Server((host, options["port"]), Handler)
    except UsageError as error:
        say(f"error: {error}")
        return 2
    except OSError as error:
        say(f"main: error: couldn't bind HTTP server socket, hostname: {host}, error: {error}")
        return 1
    Handler.state = state
    state.ready_at = time.monotonic() + settings.load_seconds
    port = server.server_address[1]
    url_host = f"[{host}]" if ":" in host else host
    say(
        f"main: HTTP server is listening, hostname: {host}, port: {port}, "
        f"http threads: {HTTP_THREADS}"
    )
    say(f"main: loading model '{model}'")

    def loaded() -> None:
        say("main: model loaded")
        say(f"main: server is listening on http://{url_host}:{port} - starting the main loop")
        say("srv  update_slots: all slots are idle")

    if settings.load_seconds:
        timer = threading.Timer(settings.load_seconds, loaded)
        timer.daemon = True
        timer.start()
    else:
        loaded()
    server.serve_forever(poll_interval=0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
