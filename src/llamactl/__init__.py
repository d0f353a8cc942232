"""llamactl: start, supervise and route requests to local LLM inference servers."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("llamactl")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
