"""``/api/v1/backends``: reading pasted command lines, and asking llama-server about itself.

``parse-command`` turns a command line into typed backend options (the parsing is
``backends.parse_command``; nothing is run). ``llama-cpp/help``, ``version`` and
``devices`` run the configured llama-server executable once with ``--help``,
``--version`` or ``--list-devices`` (an argv list, never a shell; stdout and stderr
merged, as llama-server prints its version on stderr) and return what it printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import PlainTextResponse

from llamactl.backends import SPECS, parse_command, spec_for_config_key
from llamactl.config import AppConfig
from llamactl.errors import BackendFailed, InvalidInput, NotFound
from llamactl.server.bodies import read_object
from llamactl.server.responses import JSONResponse
from llamactl.server.routes_common import ServicesDep, error_responses

__all__ = ["COMMAND_TIMEOUT", "router", "run_llama_server"]

router = APIRouter(tags=["backends"])

COMMAND_TIMEOUT = 30.0  # seconds before a llama-server --help (etc.) is killed
_OUTPUT_IN_ERRORS = 4000  # characters of output quoted when the command fails


def _segment_choices() -> str:
    """``llama-cpp, mlx or vllm``: the backend segment of the URL is the configuration key."""
    keys = [spec.config_key for spec in SPECS.values()]
    return ", ".join(keys[:-1]) + f" or {keys[-1]}"


_SEGMENTS = _segment_choices()
_COMMAND_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["command"],
                    "properties": {"command": {"type": "string"}},
                    "example": {"command": "llama-server -m /models/model.gguf -c 4096 -ngl 99"},
                }
            }
        },
    }
}


@router.post(
    "/backends/{backend}/parse-command",
    openapi_extra=_COMMAND_BODY,
    responses=error_responses(400, 404),
)
async def parse_backend_command(
    backend: Annotated[str, Path(description=_SEGMENTS)], request: Request
) -> JSONResponse:
    """Read a command line as the backend's options, ready for a create body."""
    spec = spec_for_config_key(backend)
    if spec is None:
        raise NotFound(f"unknown backend {backend!r}: expected {_SEGMENTS}")
    backend_type = spec.backend_type
    body = await read_object(request)
    options = parse_command(backend_type, _command(body))
    return JSONResponse({"backend_type": backend_type.value, "backend_options": options.to_json()})


def _command(body: Mapping[str, object]) -> str:
    if "command" not in body:
        raise InvalidInput('command is required: send {"command": "<the command line>"}')
    command = body["command"]
    if not isinstance(command, str):
        raise InvalidInput(f"command must be a string, got {type(command).__name__}")
    if not command.strip():
        raise InvalidInput("command is empty")
    return command


@router.get(
    "/backends/llama-cpp/help", response_class=PlainTextResponse, responses=error_responses(502)
)
async def llama_cpp_help(services: ServicesDep) -> PlainTextResponse:
    """The output of ``llama-server --help``."""
    return PlainTextResponse(await run_llama_server(services.config, "--help"))


@router.get(
    "/backends/llama-cpp/version", response_class=PlainTextResponse, responses=error_responses(502)
)
async def llama_cpp_version(services: ServicesDep) -> PlainTextResponse:
    """The output of ``llama-server --version``."""
    return PlainTextResponse(await run_llama_server(services.config, "--version"))


@router.get(
    "/backends/llama-cpp/devices", response_class=PlainTextResponse, responses=error_responses(502)
)
async def llama_cpp_devices(services: ServicesDep) -> PlainTextResponse:
    """The output of ``llama-server --list-devices``."""
    return PlainTextResponse(await run_llama_server(services.config, "--list-devices"))


async def run_llama_server(config: AppConfig, flag: str) -> str:
    """Run ``backends.llama-cpp.command`` + its ``args`` + ``flag``; what it printed.

    ``BackendFailed`` when the executable is missing, exits with a non-zero status or
    runs longer than ``COMMAND_TIMEOUT`` (it is then killed).
    """
    backend = config.backends.llama_cpp
    argv = [backend.command, *backend.args, flag]
    shown = f"{backend.command} {flag}"
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **backend.environment},
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise BackendFailed(
            f"{backend.command} not found: install it or set backends.llama-cpp.command"
        ) from exc
    except PermissionError as exc:
        raise BackendFailed(f"{backend.command} cannot be executed: {exc.strerror}") from exc
    except OSError as exc:
        raise BackendFailed(f"cannot run {backend.command}: {exc}") from exc
    try:
        output, _ = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT)
    except TimeoutError:
        raise BackendFailed(f"{shown} did not finish within {COMMAND_TIMEOUT:g} s") from None
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    text = output.decode("utf-8", errors="replace")
    code = process.returncode
    if code:
        ending = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        quoted = text.strip()[-_OUTPUT_IN_ERRORS:]
        raise BackendFailed(f"{shown} {ending}" + (f": {quoted}" if quoted else ""))
    return text
