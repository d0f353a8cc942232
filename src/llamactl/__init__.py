"""llamactl: start, supervise and route requests to local LLM inference servers."""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``__version__``, read from the installed metadata on first use.

    Looked up lazily because ``importlib.metadata`` costs every command that imports any
    part of llamactl (``llamactl --help`` included) tens of milliseconds.
    """
    if name != "__version__":
        raise AttributeError(f"module 'llamactl' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("llamactl")
    except PackageNotFoundError:  # running from a source tree that is not installed
        found = "0.0.0"
    globals()["__version__"] = found
    return found
