"""What every typed backend options class shares: field metadata, JSON input and output.

A backend options object is an immutable pydantic model whose fields are the backend's
command-line options, named by their JSON keys, declared in command-line order, each
``None`` when unset. Reading JSON is strict (``from_json``): aliases resolve to their
canonical field, unknown keys are kept in ``extra_args`` under their original spelling,
wrong types raise ``InvalidOptions``. Writing JSON (``to_json``) gives back only the set
fields, explicit zeros and falses included, keys sorted. Pure: no I/O.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator, Mapping
from enum import StrEnum
from types import MappingProxyType, NoneType, UnionType
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field

from llamactl.backends.values import (
    check_bool,
    check_float,
    check_int,
    check_str,
    check_str_list,
    check_str_map,
    describe,
    expected,
    invalid,
    stringify,
)
from llamactl.errors import InvalidOptions

__all__ = ["BackendOptionsBase", "BackendType", "FieldKind"]

MAX_PORT = 65535
EXTRA_ARGS = "extra_args"
_FORBIDDEN_IN_FLAG = frozenset(" \t\r\n=\x00")


class BackendType(StrEnum):
    """The inference servers llamactl knows how to run."""

    LLAMA_CPP = "llama_cpp"  # llama.cpp's llama-server
    MLX_LM = "mlx_lm"  # mlx_lm.server (Apple silicon)
    VLLM = "vllm"  # vllm serve
    CUSTOM = "custom"  # any OpenAI-compatible server, as a backends.custom entry runs it


class FieldKind(StrEnum):
    """The JSON type of an option field, which also decides how it becomes argv."""

    BOOL = "bool"  # --flag when true, nothing when false
    INT = "int"  # --flag N
    FLOAT = "float"  # --flag X
    STR = "str"  # --flag VALUE
    LIST = "list"  # see MULTI_VALUED and VARIADIC for how the values are spelled


_KIND_BY_TYPE: Mapping[object, FieldKind] = MappingProxyType(
    {bool: FieldKind.BOOL, int: FieldKind.INT, float: FieldKind.FLOAT, str: FieldKind.STR}
)


def _kind_of(annotation: object) -> FieldKind:
    """Map a field annotation such as ``int | None`` or ``list[str] | None`` to its kind."""
    if typing.get_origin(annotation) in (typing.Union, UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not NoneType]
        if len(members) == 1:
            return _kind_of(members[0])
        if members == [int, str]:  # a count that also takes words (see ``INT_WORDS``)
            return FieldKind.INT
    if typing.get_origin(annotation) is list:
        return FieldKind.LIST
    kind = _KIND_BY_TYPE.get(annotation)
    if kind is None:
        raise TypeError(f"unsupported backend option annotation: {annotation!r}")
    return kind


def _check_flag_key(field: str, key: str) -> str:
    """An extra argument key becomes ``--<key>`` verbatim, so it must be a plain word."""
    if not key or key.startswith("-") or _FORBIDDEN_IN_FLAG.intersection(key):
        raise invalid(
            field,
            f"expected an option name without a leading '-', spaces or '=', got {describe(key)}",
            key,
        )
    return key


Checker = Callable[[str, object], object]


def _check_optional_str(label: str, value: object) -> str | None:
    """A string (no NUL); the empty string means unset."""
    if type(value) is str and "\x00" not in value:  # the common case, without a call
        return value or None
    return check_str(label, value) or None


def _check_optional_list(label: str, value: object) -> list[str] | None:
    return check_str_list(label, value) or None


SWITCH_VALUES = ("on", "off", "auto")


def accepted_forms(words: tuple[str, ...], *, integer: bool = False) -> str:
    """``"an integer, 'auto' or 'all'"``, ``"one of on, off, auto"``: for error messages."""
    if integer:
        quoted = [repr(word) for word in words]
        return "an integer, " + ", ".join(quoted[:-1]) + f" or {quoted[-1]}"
    return "one of " + ", ".join(words)


def _switch_checker(words: tuple[str, ...]) -> Checker:
    """A check for a switch taking ``words``; a legacy boolean means on or off."""
    what = accepted_forms(words)

    def check(label: str, value: object) -> str | None:
        if isinstance(value, bool):
            return "on" if value else "off"
        text = _check_optional_str(label, value)
        if text is not None and text not in words:
            raise expected(label, what, value)
        return text

    return check


def _int_or_words_checker(words: tuple[str, ...]) -> Checker:
    """A check for a count that also takes ``words`` (``-ngl 99``, ``-ngl auto``).

    As for every integer field, a number in a string (``"99"``) is refused: JSON has
    numbers for that.
    """
    what = accepted_forms(words, integer=True)

    def check(label: str, value: object) -> int | str:
        if isinstance(value, str):
            if value in words:
                return value
            raise expected(label, what, value)
        try:
            return check_int(label, value)
        except InvalidOptions:
            raise expected(label, what, value) from None

    return check


def _check_count(label: str, value: object) -> int:
    """An integer that counts something (a size, tokens, workers): never negative."""
    number = check_int(label, value)
    if number < 0:
        raise expected(label, "an integer >= 0", value)
    return number


_KIND_CHECKERS: Mapping[FieldKind, Checker] = MappingProxyType(
    {
        FieldKind.BOOL: check_bool,
        FieldKind.INT: check_int,
        FieldKind.FLOAT: check_float,
        FieldKind.STR: _check_optional_str,
        FieldKind.LIST: _check_optional_list,
    }
)


class BackendOptionsBase(BaseModel):
    """Base of the typed options of one backend; subclasses declare the fields.

    Class metadata, filled in for each subclass:

    - ``FIELD_ORDER``: field names in command-line order (``extra_args`` excluded);
    - ``FIELD_KINDS``: the JSON type of each field;
    - ``ALIASES``: alternative input keys and the field each one sets;
    - ``MULTI_VALUED``: list fields whose flag is repeated once per value;
    - ``VARIADIC``: list fields given as one flag followed by every value;
      any other list field is one flag with the values joined by commas;
    - ``SWITCHES``: string fields taking one of a few words (``on|off|auto``), each with
      its words; a legacy boolean means ``on`` or ``off``;
    - ``INT_WORDS``: integer fields (annotated ``int | str | None``) that also take a few
      words, each with its words (llama-server's ``-ngl N|auto|all``);
    - ``COUNTS``: integer fields that count something (sizes, tokens, workers): >= 0;
    - ``FLAG_OVERRIDES``: flags whose spelling is not ``--`` + key with ``_`` → ``-``.

    Instances are frozen; ``replace`` returns a validated copy. Treat the lists and the
    ``extra_args`` dict as read-only: they are shared between copies.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    BACKEND_TYPE: ClassVar[BackendType]
    FIELD_ORDER: ClassVar[tuple[str, ...]] = ()
    FIELD_KINDS: ClassVar[Mapping[str, FieldKind]] = MappingProxyType({})
    ALIASES: ClassVar[Mapping[str, str]] = MappingProxyType({})
    MULTI_VALUED: ClassVar[frozenset[str]] = frozenset()
    VARIADIC: ClassVar[frozenset[str]] = frozenset()
    SWITCHES: ClassVar[Mapping[str, tuple[str, ...]]] = MappingProxyType({})
    INT_WORDS: ClassVar[Mapping[str, tuple[str, ...]]] = MappingProxyType({})
    COUNTS: ClassVar[frozenset[str]] = frozenset()
    FLAG_OVERRIDES: ClassVar[Mapping[str, str]] = MappingProxyType({})
    # The check of each field, looked up once per value rather than dispatched by kind.
    _CHECKERS: ClassVar[Mapping[str, Checker]] = MappingProxyType({})
    # The options with nothing set: every checked object is a copy of it (see ``_build``).
    _EMPTY: ClassVar[BackendOptionsBase | None] = None

    extra_args: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        kinds = {
            name: _kind_of(info.annotation)
            for name, info in cls.model_fields.items()
            if name != EXTRA_ARGS
        }
        cls.FIELD_ORDER = tuple(kinds)
        cls.FIELD_KINDS = MappingProxyType(kinds)
        checkers = {name: _KIND_CHECKERS[kind] for name, kind in kinds.items()}
        checkers.update({name: _switch_checker(words) for name, words in cls.SWITCHES.items()})
        checkers.update(
            {name: _int_or_words_checker(words) for name, words in cls.INT_WORDS.items()}
        )
        checkers.update({name: _check_count for name in cls.COUNTS})
        if "port" in checkers:
            checkers["port"] = cls._check_port
        cls._CHECKERS = MappingProxyType(checkers)
        cls._EMPTY = cls.model_validate({})

    # -- input -------------------------------------------------------------------------

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Self:
        """Validate decoded JSON into options; raise ``InvalidOptions`` naming the bad key."""
        if not isinstance(data, dict | Mapping):
            raise expected("backend_options", "a JSON object", data)
        extras = cls._explicit_extra_args(data.get(EXTRA_ARGS))
        values: dict[str, object] = {}
        aliased: list[str] = []
        checkers, aliases = cls._CHECKERS, cls.ALIASES  # this loop runs for every stored row
        for key, value in data.items():
            if not isinstance(key, str):
                raise expected(str(key), "a string key", key)
            checker = checkers.get(key)
            if checker is not None:
                values[key] = None if value is None else checker(key, value)
            elif key in aliases:
                if value is not None:
                    aliased.append(key)
            elif key != EXTRA_ARGS:
                extras[_check_flag_key(key, key)] = stringify(key, value)
        if aliased:
            values.update(cls._aliased_values(data, aliased))
        return cls._build(values, extras)

    @classmethod
    def _aliased_values(cls, data: Mapping[str, object], present: list[str]) -> dict[str, object]:
        """Values given under the aliases ``present``; they win over the canonical key.

        Aliases are applied in table order, so the later of two aliases of a field wins.
        """
        order = list(cls.ALIASES)
        values: dict[str, object] = {}
        for alias in sorted(present, key=order.index):
            field = cls.ALIASES[alias]
            values[field] = cls._check_field(field, data[alias], alias)
        return values

    @classmethod
    def _explicit_extra_args(cls, value: object) -> dict[str, str]:
        if value is None:
            return {}
        checked = check_str_map(EXTRA_ARGS, value)
        for key in checked:
            _check_flag_key(f"{EXTRA_ARGS}.{key}", key)
        return checked

    @classmethod
    def _check_field(cls, field: str, value: object, label: str) -> object:
        """Check ``value`` for ``field`` (reported as ``label``); ``None`` means unset."""
        if value is None:
            return None
        return cls._CHECKERS[field](label, value)

    @staticmethod
    def _check_port(label: str, value: object) -> int | None:
        """A port is 1 to 65535; 0 asks for one to be allocated and is stored as unset."""
        port = check_int(label, value)
        if port == 0:
            return None
        if not 1 <= port <= MAX_PORT:
            raise expected(label, f"a port from 1 to {MAX_PORT} (or 0 to allocate one)", value)
        return port

    @classmethod
    def _build(cls, values: Mapping[str, object], extras: dict[str, str]) -> Self:
        """Options from values that the field checks have passed (``None`` means unset).

        The checks above are the validation: each returns exactly the field's type, so the
        object is a copy of the empty options with the values applied, not a second,
        per-field validation by pydantic (that would cost more than all the checks, for
        every stored row that ``load_all`` reads). Tests hold the two paths equal.
        """
        fields = {name: value for name, value in values.items() if value is not None}
        fields[EXTRA_ARGS] = extras
        empty = cls._EMPTY
        assert isinstance(empty, cls)
        return empty.model_copy(update=fields)

    # -- output and copies ---------------------------------------------------------------

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """Show only what is set: a repr of 156 ``None`` fields helps nobody."""
        yield from self.set_fields()
        if self.extra_args:
            yield EXTRA_ARGS, self.extra_args

    def to_json(self) -> dict[str, object]:
        """Set fields only (explicit zeros and falses included), keys in alphabetical order."""
        result: dict[str, object] = {}
        values = self.__dict__
        # Every field defaults to None, so the set ones are among those given at creation:
        # fewer to look at than all ~150 fields (this runs for every save).
        for name in self.model_fields_set:
            value = values[name]
            if value is not None and name != EXTRA_ARGS:
                result[name] = list(value) if isinstance(value, list) else value
        if self.extra_args:
            result[EXTRA_ARGS] = dict(sorted(self.extra_args.items()))
        return dict(sorted(result.items()))

    def set_fields(self) -> list[tuple[str, object]]:
        """The fields that are set, as ``(name, value)`` pairs in command-line order."""
        values = self.__dict__
        return [(name, values[name]) for name in self.FIELD_ORDER if values[name] is not None]

    def replace(self, **changes: object) -> Self:
        """A validated copy with ``changes`` applied (canonical names; ``None`` unsets)."""
        values: dict[str, object] = {name: getattr(self, name) for name in self.FIELD_ORDER}
        extras = dict(self.extra_args)
        for key, value in changes.items():
            if key == EXTRA_ARGS:
                extras = self._explicit_extra_args(value)
            elif key in self.FIELD_KINDS:
                values[key] = self._check_field(key, value, key)
            else:
                detail = f"unknown {self.BACKEND_TYPE} option (value {describe(value)})"
                raise invalid(key, detail, value)
        return self._build(values, extras)

    @classmethod
    def field_for(cls, name: str) -> str | None:
        """The field that ``name`` sets, in any of its spellings, or ``None``.

        ``ctx_size``, ``ctx-size``, ``--ctx-size``, ``c`` and ``-c`` all give ``ctx_size``;
        so do the flag spellings of ``FLAG_OVERRIDES`` (``--fim-qwen-1.5b-default``).
        """
        key = name.lstrip("-").replace("-", "_")
        if key in cls.FIELD_KINDS:
            return key
        if key in cls.ALIASES:
            return cls.ALIASES[key]
        for field, flag in cls.FLAG_OVERRIDES.items():
            if flag.lstrip("-").replace("-", "_") == key:
                return field
        return None

    @classmethod
    def flag_name(cls, field: str) -> str:
        """The command-line flag of ``field``: ``gpu_layers`` → ``--gpu-layers``."""
        return cls.FLAG_OVERRIDES.get(field, "--" + field.replace("_", "-"))
