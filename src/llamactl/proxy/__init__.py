"""OpenAI-compatible routing: requests go to the instance their ``model`` names.

A bare ASGI application on the hot path (no framework machinery per request), a small
pooled HTTP/1.1 client for the backends, and the on-demand start that holds requests until
the backend is ready; ``LastResort`` answers what escapes the proxy unhandled.
"""

from llamactl.proxy.app import ProxyApp
from llamactl.proxy.guard import LastResort
from llamactl.proxy.ondemand import OnDemand
from llamactl.proxy.upstream import Upstream

__all__ = ["LastResort", "OnDemand", "ProxyApp", "Upstream"]
