"""Text that can be stored and sent back: no lone surrogates. No I/O.

JSON lets a string spell half of a UTF-16 pair (``"\\ud800"``); Python decodes it into a
string that cannot be encoded as UTF-8, so it could be stored but never written out as
JSON again. ``lone_surrogate`` finds the first such string, key or value, in decoded JSON.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["lone_surrogate"]


def lone_surrogate(value: object, path: str = "") -> tuple[str, str] | None:
    """``(key, detail)`` for the first string in ``value`` that is not valid Unicode text.

    ``key`` is the dotted path of the value (``environment.HF_TOKEN``, ``nodes[1]``), or of
    the object whose key is at fault; ``None`` when every string is fine. The detail shows
    the string escaped, never raw. Iterative, so any nesting that JSON decoding allowed is
    walked without recursion.
    """
    pending: list[tuple[str, object]] = [(path, value)]
    while pending:
        where, item = pending.pop()
        if isinstance(item, str):
            if not _is_text(item):
                return where, f"not valid Unicode text (a lone surrogate) in {item!r}"
        elif isinstance(item, Mapping):
            entries = []
            for key, member in item.items():
                name = str(key)
                if not _is_text(name):
                    return where, f"the key {name!r} is not valid Unicode text (a lone surrogate)"
                entries.append((f"{where}.{name}" if where else name, member))
            pending.extend(reversed(entries))
        elif isinstance(item, list | tuple):
            members = [(f"{where}[{index}]", member) for index, member in enumerate(item)]
            pending.extend(reversed(members))
    return None


def _is_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
