"""JSON responses of the management API, in ASCII.

Non-ASCII characters are written as ``\\u`` escapes. The JSON means the same, and a
string that is not valid Unicode text (a lone surrogate stored before llamactl refused
them) is sent as its escape instead of failing the whole response with a 500; the user
can then see it and replace it.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse as _FastApiJSONResponse

__all__ = ["JSONResponse"]


class JSONResponse(_FastApiJSONResponse):
    """FastAPI's JSON response, with every non-ASCII character escaped."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode("ascii")
