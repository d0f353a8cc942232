"""OpenAI-compatible routing: requests go to the instance their ``model`` names.

A bare ASGI application on the hot path (no framework machinery per request), and the
scheduler that counts requests and holds them until their backend is ready (starting it
on demand); ``LastResort`` answers what escapes the proxy unhandled.
"""

from llamactl.proxy.app import ProxyApp
from llamactl.proxy.guard import LastResort
from llamactl.proxy.scheduler import Scheduler
from llamactl.proxy.upstream import Upstream

__all__ = ["LastResort", "ProxyApp", "Scheduler", "Upstream"]
