"""Reading a pasted command line (``llama-server -m x.gguf -c 4096 ...``) as typed options.

The text is split into words like a POSIX shell would (quotes, backslash escapes,
backslash-newline continuations; ``#`` is an ordinary character), the executable is
dropped, and every flag is matched to a field of the backend's options class through its
name or an alias. Values are read by the field's kind, negative numbers included; unknown
long flags are kept in ``extra_args`` under their original spelling so that they come back
out exactly as given. Anything that cannot be read raises an error naming the flag or the
word. Pure: nothing here runs or looks anything up.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Generic, TypeVar

from llamactl.backends.base import (
    EXTRA_ARGS,
    BackendOptionsBase,
    BackendType,
    FieldKind,
    accepted_forms,
)
from llamactl.backends.registry import BackendOptions, options_class, spec_for
from llamactl.backends.spec import BackendSpec
from llamactl.backends.values import describe, invalid
from llamactl.errors import CommandParseError, InvalidOptions

__all__ = ["CommandParseError", "parse_command", "split_command"]

_PYTHON = re.compile(r"python(3(\.\d+)?)?(\.exe)?", re.IGNORECASE)
_ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_NEGATIVE_NUMBER = re.compile(r"-([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
_INTEGER = re.compile(r"[-+]?[0-9]+")
_BOOLEANS: Mapping[str, bool] = MappingProxyType({"true": True, "false": False})

_Options = TypeVar("_Options", bound=BackendOptionsBase)


# -- words -------------------------------------------------------------------------------


def split_command(text: str) -> list[str]:
    """Split ``text`` into words with POSIX shell quoting; raise ``CommandParseError``.

    Backslash-newline continuations are removed first (outside single quotes), as a
    shell does; ``#`` starts no comment. Nothing is expanded: ``$HOME`` stays as typed.
    """
    lexer = shlex.shlex(_join_continuations(text), posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        words = list(lexer)
    except ValueError as exc:  # "No closing quotation" or "No escaped character"
        if "quotation" in str(exc):
            raise CommandParseError("unterminated quoted string") from exc
        raise CommandParseError("the command ends with a lone backslash") from exc
    if not words:
        raise CommandParseError("command is empty")
    return words


def _join_continuations(text: str) -> str:
    """Drop every backslash-newline (or backslash-CRLF) that is not inside single quotes."""
    out: list[str] = []
    quote = ""
    index = 0
    while index < len(text):
        char = text[index]
        if quote == "'":
            quote = "" if char == "'" else quote
        elif char == "\\":
            if text.startswith("\n", index + 1) or text.startswith("\r\n", index + 1):
                index += 2 if text[index + 1] == "\n" else 3
                continue
            out.append(text[index : index + 2])  # an escaped character is never a quote
            index += 2
            continue
        elif char == '"':
            quote = "" if quote else '"'
        elif char == "'" and not quote:
            quote = "'"
        out.append(char)
        index += 1
    return "".join(out)


def _strip_executable(spec: BackendSpec, words: list[str]) -> tuple[list[str], bool]:
    """The words after the executable (and a subcommand such as vLLM's ``serve``), and
    whether there was one."""
    first = words[0]
    if _ENV_ASSIGNMENT.match(first):
        name = first.partition("=")[0]
        raise CommandParseError(
            f"{first!r} sets an environment variable, which is not part of the command: "
            f"put {name} in the instance's environment instead"
        )
    is_python = _PYTHON.fullmatch(_basename(first)) is not None
    module = spec.python_module
    if module is not None and is_python and words[1:3] == ["-m", module]:
        return words[3:], True
    rest = words[1:] if _basename(first).lower() in spec.executables else words
    if spec.subcommand is not None and rest[:1] == [spec.subcommand]:
        rest = rest[1:]
    return rest, len(rest) < len(words)


def _basename(word: str) -> str:
    return re.split(r"[\\/]", word)[-1]


def _is_negative_number(word: str) -> bool:
    return _NEGATIVE_NUMBER.fullmatch(word) is not None


def _looks_like_flag(word: str) -> bool:
    """``-x``, ``--x``: not a lone ``-`` and not a negative number, which are values."""
    return word.startswith("-") and word != "-" and not _is_negative_number(word)


# -- flags -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Flag:
    """One flag word: ``--ctx-size=4096`` → text ``--ctx-size``, name ``ctx-size``."""

    text: str  # as typed, without the "=value"
    name: str  # without the leading dashes
    inline: str | None  # the value after "=", if any

    @classmethod
    def read(cls, word: str) -> _Flag:
        if word.startswith("---"):
            raise CommandParseError(f"malformed flag {word!r}: too many dashes")
        dashes = 2 if word.startswith("--") else 1
        name, equals, value = word[dashes:].partition("=")
        if not name:
            raise CommandParseError(f"malformed flag {word!r}: no name")
        return cls(word[:dashes] + name, name, value if equals else None)

    @property
    def is_short(self) -> bool:
        return not self.text.startswith("--")


class _Parser(Generic[_Options]):
    """Reads the words after the executable into options of ``cls``.

    ``named`` says whether the command named its executable (only for error hints).
    """

    def __init__(self, cls: type[_Options], words: list[str], *, named: bool) -> None:
        self.cls = cls
        self.spec = spec_for(cls.BACKEND_TYPE)
        self.words = words
        self.named_executable = named
        self.index = 0
        self.values: dict[str, object] = {}
        self.extras: dict[str, str] = {}
        self.spelled: dict[str, str] = {}  # field or extra key → the flag as typed
        self.positional_model: str | None = None

    def parse(self) -> _Options:
        while self.index < len(self.words):
            word = self._take()
            if _looks_like_flag(word):
                self._flag(_Flag.read(word))
            else:
                self._positional(word)
        return self._build()

    def _take(self) -> str:
        word = self.words[self.index]
        self.index += 1
        return word

    def _peek_value(self) -> str | None:
        """The next word if it can be a value (not a flag), else ``None``."""
        if self.index < len(self.words) and not _looks_like_flag(self.words[self.index]):
            return self.words[self.index]
        return None

    def _positional(self, word: str) -> None:
        if self.spec.positional_model and self.positional_model is None:
            self.positional_model = word
            return
        hint = ""
        if word.lower() in _BOOLEANS:
            hint = " (switch flags take no value; write --flag=true or --flag=false)"
        elif self.index == 1 and not self.named_executable:
            names = " or ".join(sorted(self.spec.executables))
            hint = f" (a command starts with {names} or with a flag)"
        raise CommandParseError(f"unexpected argument {word!r}{hint}")

    def _flag(self, flag: _Flag) -> None:
        field = self._field_of(flag.name)
        if field is None:
            self._unknown(flag)
            return
        self.spelled[field] = flag.text
        kind = self.cls.FIELD_KINDS[field]
        if field in self.cls.SWITCHES:
            self.values[field] = self._switch(flag, self.cls.SWITCHES[field])
        elif kind is FieldKind.BOOL:
            self.values[field] = self._bool(flag)
        elif kind is FieldKind.LIST:
            self.values[field] = self._list(field, flag)
        else:
            words = self.cls.INT_WORDS.get(field, ())
            self.values[field] = _convert(flag, field, kind, self._value(flag), words)

    def _field_of(self, name: str) -> str | None:
        """The field a flag name sets: its key, an alias or a spelling override."""
        return self.cls.field_for(name)

    def _value(self, flag: _Flag) -> str:
        """The value of a flag that needs one: after ``=``, else the next word."""
        value = flag.inline
        if value is None:
            value = self._peek_value()
            if value is None:
                raise CommandParseError(
                    f"{flag.text}: missing value (write {flag.text}=VALUE for a value "
                    "that starts with '-')"
                )
            self.index += 1
        if not value:
            raise CommandParseError(f"{flag.text}: expected a value, got ''")
        return value

    def _bool(self, flag: _Flag) -> bool:
        if flag.inline is None:
            return True
        value = _BOOLEANS.get(flag.inline.lower())
        if value is None:
            raise invalid(
                flag.text, f"expected true or false, got {describe(flag.inline)}", flag.inline
            )
        return value

    def _switch(self, flag: _Flag, words: tuple[str, ...]) -> str | bool:
        """``-fa`` alone is ``on``; ``-fa on|off|auto`` and ``-fa=VALUE`` give the value."""
        if flag.inline is not None:
            value = self._value(flag)
            return _BOOLEANS.get(value.lower(), value)
        following = self._peek_value()
        if following in words:
            self.index += 1
            return following
        if following is not None and not self.spec.positional_model:
            # No positional argument is valid here, so this word was meant as the value.
            detail = f"expected {accepted_forms(words)}, got {describe(following)}"
            raise invalid(flag.text, detail, following)
        return "on"

    def _list(self, field: str, flag: _Flag) -> list[str]:
        if field in self.cls.MULTI_VALUED:
            earlier = self.values.get(field)
            return [*(earlier if isinstance(earlier, list) else []), self._value(flag)]
        if field in self.cls.VARIADIC and flag.inline is None:
            values = [self._value(flag)]
            while (following := self._peek_value()) is not None:
                values.append(following)
                self.index += 1
            return values
        return self._value(flag).split(",")

    def _unknown(self, flag: _Flag) -> None:
        backend = self.cls.BACKEND_TYPE
        if flag.is_short:
            raise CommandParseError(
                f"unknown flag {flag.text!r}: not a {backend} option, and only long flags "
                "(--name) are passed through unchanged; write its long form"
            )
        if flag.name in self.extras:
            raise CommandParseError(
                f"{flag.text}: given more than once; an unknown flag is passed through "
                "with a single value"
            )
        value = flag.inline
        if value is None:
            value = self._peek_value()
            if value is not None:
                self.index += 1
        self.extras[flag.name] = value or ""
        self.spelled[flag.name] = flag.text

    def _build(self) -> _Options:
        data = dict(self.values)
        if self.positional_model is not None and "model" not in data:
            data["model"] = self.positional_model
        data[EXTRA_ARGS] = self.extras
        try:
            return self.cls.from_json(data)
        except InvalidOptions as exc:
            raise self._named_by_flag(exc) from exc

    def _named_by_flag(self, exc: InvalidOptions) -> InvalidOptions:
        """``exc`` with its message led by the flag as typed rather than the JSON key."""
        key = exc.field.removeprefix(f"{EXTRA_ARGS}.")
        if key == exc.field:
            key = re.split(r"[\[.]", key)[0]
        flag = self.spelled.get(key)
        if flag is None:
            return exc
        detail = exc.message.removeprefix(f"{exc.field}: ")
        return InvalidOptions(f"{flag}: {detail}", field=exc.field, value=exc.value)


_MAX_DIGITS = 40  # no option of any backend needs more; Python refuses past 4300


def _convert(
    flag: _Flag, field: str, kind: FieldKind, text: str, words: tuple[str, ...] = ()
) -> object:
    """``text`` as the field's type; a bad value raises ``InvalidOptions`` naming the flag.

    ``words`` are what an integer field takes besides numbers (``-ngl auto``).
    """
    if kind is FieldKind.INT:
        if _INTEGER.fullmatch(text) and len(text) <= _MAX_DIGITS:
            return int(text)
        if text in words:
            return text
        what = accepted_forms(words, integer=True) if words else "an integer"
        raise InvalidOptions(
            f"{flag.text}: expected {what}, got {describe(text)}", field=field, value=text
        )
    if kind is FieldKind.FLOAT:
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if math.isfinite(number) and "_" not in text:
            return number
        raise InvalidOptions(
            f"{flag.text}: expected a number, got {describe(text)}", field=field, value=text
        )
    return text


def parse_command(backend_type: BackendType | str, text: str) -> BackendOptions:
    """Read the command line ``text`` as options of ``backend_type``.

    Accepts an optional leading executable (``llama-server``, ``mlx_lm.server`` or
    ``python -m mlx_lm.server``, ``vllm serve`` or ``serve``; a path to it is fine), then
    ``--name value``, ``--name=value``, ``-n value`` and ``-n=value`` flags. For vLLM the
    first positional word is the model (``--model`` wins when both are given). Raises
    ``CommandParseError`` for text that cannot be read as flags and ``InvalidOptions``
    for a value of the wrong type or range; both name the flag or word at fault.
    """
    cls = options_class(backend_type)
    spec = spec_for(backend_type)
    if not spec.executables:
        raise CommandParseError(
            f"the {spec.backend_type} backend has no command line to read: its program and "
            "arguments are configured, and an instance adds its own in backend_options"
        )
    args, named = _strip_executable(spec, split_command(text))
    return _Parser(cls, args, named=named).parse()
