"""Where API keys come from: the configuration, or a key file generated once.

``load_keys`` runs at startup and at every reload. It takes the keys from the
configuration; when a class is required and none is configured, it generates one key
(``sk-management-<64 hex>`` or ``sk-inference-<64 hex>``), stores it in
``<data_dir>/management.key`` or ``<data_dir>/inference.key`` with mode 0600, and reads that
same file back on every later start. It returns the startup messages too; they name the
file, never the key.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from llamactl.auth.keys import Keys
from llamactl.config import AppConfig
from llamactl.errors import ConfigError

__all__ = ["LoadedKeys", "load_keys", "read_or_create_secret"]

_KEY_FILE_MODE = 0o600
# Permission bits a key file must not have: anything for group and others, and execute.
_TOO_WIDE = 0o177


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


def read_or_create_secret(path: Path) -> bytes:
    """The secret stored in ``path`` (64 hex digits, mode 0600), made there if missing."""
    stored = _read_key_file(path)
    if stored is None:
        stored, _created = _create_key_file(path, "")
    try:
        return bytes.fromhex(stored)
    except ValueError:
        raise ConfigError(f"the secret file {path} does not hold hex digits") from None
