"""API keys: where they come from and whether a request carries an accepted one.

Two key classes:

- **management** keys open ``/api/v1/*`` and, as well, every inference route;
- **inference** keys open ``/v1/*`` and the private ``/llama-cpp/{name}/*`` routes only.

``keyfiles`` loads them (configuration or generated key files, DESIGN 18); ``keys`` checks
a request against them. A refused request gets a 401 in the OpenAI error shape, whatever
the route::

    {"error": {"message": "Missing API key", "type": "authentication_error",
               "param": null, "code": "invalid_api_key"}}

with ``WWW-Authenticate: Bearer``. The bare ASGI proxy calls ``rejection`` and then
``await reject(send, message)``; FastAPI routes raise ``errors.Unauthorized``, which the
management application's handlers render the same way (``server.auth``).

This package sits below both ``proxy`` and ``server``: it imports neither.
"""

from llamactl.auth.keyfiles import LoadedKeys, load_keys
from llamactl.auth.keys import (
    INVALID_KEY,
    MISSING_KEY,
    Keys,
    Remembered,
    allows,
    inference_allowed,
    key_record,
    presented_key,
    reject,
    rejection,
)

__all__ = [
    "INVALID_KEY",
    "MISSING_KEY",
    "Keys",
    "LoadedKeys",
    "Remembered",
    "allows",
    "inference_allowed",
    "key_record",
    "load_keys",
    "presented_key",
    "reject",
    "rejection",
]
