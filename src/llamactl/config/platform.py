"""Platform-dependent locations: the default data dir, the config search path, caches.

Pure functions of ``platform`` (a ``sys.platform`` value), an environment mapping and the
home directory, so that every platform can be tested from any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "config_dirs",
    "config_search_paths",
    "default_cache_dir",
    "default_data_dir",
    "is_macos",
    "is_windows",
]

CONFIG_FILE_NAME = "config.yaml"
LOCAL_CONFIG_NAMES = ("llamactl.yaml", "config.yaml")


def is_windows(platform: str) -> bool:
    """Whether ``platform`` names Windows (``win32``, ``cygwin``)."""
    return platform.startswith(("win", "cygwin"))


def is_macos(platform: str) -> bool:
    """Whether ``platform`` names macOS."""
    return platform == "darwin"


def default_data_dir(platform: str, environ: Mapping[str, str], home: Path) -> Path:
    """Where llamactl keeps its database, instances and logs unless told otherwise."""
    if is_windows(platform):
        for variable in ("PROGRAMDATA", "LOCALAPPDATA"):
            if environ.get(variable):
                return Path(environ[variable]) / "llamactl"
        return Path("C:\\ProgramData") / "llamactl"
    if is_macos(platform):
        if str(home) not in ("", "."):
            return home / "Library" / "Application Support" / "llamactl"
        return Path("/usr/local/var/llamactl")
    if str(home) not in ("", "."):
        return home / ".local" / "share" / "llamactl"
    return Path("/var/lib/llamactl")


def default_cache_dir(platform: str, environ: Mapping[str, str], home: Path) -> Path:
    """The llama.cpp download cache that llama-server itself uses on this platform."""
    if is_windows(platform):
        base = environ.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
        return Path(base) / "llama.cpp" / "cache"
    if is_macos(platform):
        return home / "Library" / "Caches" / "llama.cpp"
    if environ.get("XDG_CACHE_HOME"):
        return Path(environ["XDG_CACHE_HOME"]) / "llama.cpp"
    return home / ".cache" / "llama.cpp"


def config_dirs(platform: str, environ: Mapping[str, str], home: Path) -> list[Path]:
    """The per-user then system-wide llamactl config directories, most specific first."""
    if is_windows(platform):
        user = environ.get("APPDATA") or environ.get("USERPROFILE") or str(home)
        dirs = [Path(user) / "llamactl"]
        if environ.get("PROGRAMDATA"):
            dirs.append(Path(environ["PROGRAMDATA"]) / "llamactl")
        return dirs
    if is_macos(platform):
        return [
            home / "Library" / "Application Support" / "llamactl",
            Path("/Library/Application Support/llamactl"),
        ]
    return [home / ".config" / "llamactl", Path("/etc/llamactl")]


def config_search_paths(
    platform: str, environ: Mapping[str, str], home: Path, cwd: Path
) -> list[Path]:
    """Config files tried in order when no path is given explicitly."""
    local = [cwd / name for name in LOCAL_CONFIG_NAMES]
    return local + [folder / CONFIG_FILE_NAME for folder in config_dirs(platform, environ, home)]
