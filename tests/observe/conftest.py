"""Real llamactl servers over fake llama-servers, on uvloop: the proxy tests' fixtures."""

from tests.proxy.conftest import anyio_backend, serve

__all__ = ["anyio_backend", "serve"]
