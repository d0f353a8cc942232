"""Behaviour every backend options class shares: types, extra args, port, JSON round trips."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from llamactl.backends import (
    OPTIONS_CLASSES,
    BackendOptionsBase,
    BackendType,
    FieldKind,
    LlamaCppOptions,
    MlxLmOptions,
    VllmOptions,
    options_class,
    parse_backend_options,
    parse_backend_type,
    to_json,
)
from llamactl.backends.custom import CustomOptions
from llamactl.errors import InvalidOptions
from tests.support.backend_samples import field_value, full_json

BACKENDS = [BackendType.LLAMA_CPP, BackendType.MLX_LM, BackendType.VLLM]


@pytest.fixture(params=BACKENDS, ids=str)
def backend(request: pytest.FixtureRequest) -> BackendType:
    value = request.param
    assert isinstance(value, BackendType)
    return value


def field_of_kind(backend: BackendType, kind: FieldKind) -> str:
    """The first field of ``kind`` (other than port) of the backend's options class."""
    cls = options_class(backend)
    return next(n for n, k in cls.FIELD_KINDS.items() if k is kind and n != "port")


# -- registry --------------------------------------------------------------------------------


def test_backend_type_values() -> None:
    assert [str(t) for t in BackendType] == ["llama_cpp", "mlx_lm", "vllm", "custom"]
    assert dict(OPTIONS_CLASSES) == {
        BackendType.LLAMA_CPP: LlamaCppOptions,
        BackendType.MLX_LM: MlxLmOptions,
        BackendType.VLLM: VllmOptions,
        BackendType.CUSTOM: CustomOptions,
    }
    assert options_class("vllm") is VllmOptions


@pytest.mark.parametrize("value", ["llama", "LLAMA_CPP", "", None, 1, ["vllm"]])
def test_unknown_backend_type(value: object) -> None:
    with pytest.raises(InvalidOptions, match=r"^backend_type: expected one of 'llama_cpp'"):
        parse_backend_type(value)
    with pytest.raises(InvalidOptions) as caught:
        parse_backend_options(str(value), {})
    assert caught.value.field == "backend_type"


def test_common_attributes(backend: BackendType) -> None:
    options = parse_backend_options(backend, {"model": "m", "host": "127.0.0.1", "port": 9000})

    assert (options.model, options.host, options.port) == ("m", "127.0.0.1", 9000)
    assert options.BACKEND_TYPE is backend


def test_empty_object_is_all_unset(backend: BackendType) -> None:
    options = parse_backend_options(backend, {})

    assert options.set_fields() == []
    assert options.extra_args == {}
    assert options.to_json() == {}


def test_backend_options_must_be_an_object(backend: BackendType) -> None:
    with pytest.raises(InvalidOptions, match=r"^backend_options: expected a JSON object"):
        parse_backend_options(backend, ["model"])  # type: ignore[arg-type]


# -- types -----------------------------------------------------------------------------------

BAD_VALUES: dict[FieldKind, list[object]] = {
    FieldKind.INT: ["lots", "99", True, False, 1.5, [1], {"n": 1}],
    FieldKind.FLOAT: ["0.5", True, [0.5], float("nan"), float("inf")],
    FieldKind.BOOL: ["true", 1, 0, [True]],
    FieldKind.STR: [5, 1.5, ["a"], {"a": "b"}, "nul\x00byte"],
    FieldKind.LIST: ["a", [1], ["a", None], {"a": "b"}],
}


BAD_CASES = [
    (backend, kind, bad)
    for backend in BACKENDS
    for kind, values in BAD_VALUES.items()
    for bad in values
    if kind in options_class(backend).FIELD_KINDS.values()
]


@pytest.mark.parametrize(("backend", "kind", "bad"), BAD_CASES, ids=repr)
def test_bad_type_names_the_field_and_value(
    backend: BackendType, kind: FieldKind, bad: object
) -> None:
    field = field_of_kind(backend, kind)

    with pytest.raises(InvalidOptions) as caught:
        parse_backend_options(backend, {field: bad})

    assert caught.value.field.startswith(field)
    assert caught.value.message.startswith(f"{caught.value.field}: expected ")
    assert caught.value.value is bad or caught.value.field != field


def test_gpu_layers_messages() -> None:
    with pytest.raises(InvalidOptions) as caught:
        parse_backend_options("llama_cpp", {"gpu_layers": "lots"})
    forms = "an integer, 'auto' or 'all'"
    assert caught.value.message == f"gpu_layers: expected {forms}, got 'lots'"
    assert (caught.value.field, caught.value.value) == ("gpu_layers", "lots")

    with pytest.raises(InvalidOptions, match=rf"^gpu_layers: expected {forms}, got '99'$"):
        parse_backend_options("llama_cpp", {"gpu_layers": "99"})
    with pytest.raises(InvalidOptions, match=rf"^gpu_layers: expected {forms}, got true$"):
        parse_backend_options("llama_cpp", {"gpu_layers": True})
    with pytest.raises(InvalidOptions, match=rf"^ngld: expected {forms}, got 'AUTO'$"):
        parse_backend_options("llama_cpp", {"ngld": "AUTO"})


def test_list_element_error_names_the_index() -> None:
    with pytest.raises(InvalidOptions) as caught:
        parse_backend_options("llama_cpp", {"lora": ["a", 2]})
    assert caught.value.field == "lora[1]"


def test_int_accepted_for_float_and_whole_float_for_int(backend: BackendType) -> None:
    float_field = field_of_kind(backend, FieldKind.FLOAT)
    int_field = field_of_kind(backend, FieldKind.INT)

    options = parse_backend_options(backend, {float_field: 2, int_field: 4.0})

    assert getattr(options, float_field) == 2.0
    assert isinstance(getattr(options, float_field), float)
    assert getattr(options, int_field) == 4
    assert isinstance(getattr(options, int_field), int)


def test_explicit_zero_and_false_are_kept() -> None:
    options = LlamaCppOptions.from_json({"seed": 0, "mlock": False, "temp": 0, "gpu_layers": 0})

    assert (options.seed, options.mlock, options.temp, options.gpu_layers) == (0, False, 0.0, 0)
    assert options.to_json() == {"gpu_layers": 0, "mlock": False, "seed": 0, "temp": 0.0}


def test_null_means_unset(backend: BackendType) -> None:
    data = dict.fromkeys(options_class(backend).FIELD_ORDER)

    options = parse_backend_options(backend, {**data, "extra_args": None})

    assert options.to_json() == {}


def test_empty_string_and_empty_list_are_unset() -> None:
    options = LlamaCppOptions.from_json({"model": "", "lora": []})

    assert (options.model, options.lora) == (None, None)


# -- port ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "stored"), [(0, None), (None, None), (1, 1), (65535, 65535)])
def test_port_range(backend: BackendType, given: object, stored: int | None) -> None:
    assert parse_backend_options(backend, {"port": given}).port == stored


@pytest.mark.parametrize("bad", [70000, 65536, -1, "8080", True])
def test_port_out_of_range_or_wrong_type(backend: BackendType, bad: object) -> None:
    with pytest.raises(InvalidOptions) as caught:
        parse_backend_options(backend, {"port": bad})
    assert caught.value.field == "port"
    assert caught.value.value == bad


def test_port_zero_is_left_out_of_json(backend: BackendType) -> None:
    assert parse_backend_options(backend, {"port": 0, "model": "m"}).to_json() == {"model": "m"}


# -- extra args ------------------------------------------------------------------------------


def test_unknown_keys_keep_their_spelling_and_are_stringified(backend: BackendType) -> None:
    data = {
        "flash-attn": True,
        "context_size": 4096,
        "Rope-Freq": 0.5,
        "big": 1e6,
        "tiny": 1e-7,
        "neg": -1,
        "off": False,
        "name": "a b",
        "bare": "",
    }

    options = parse_backend_options(backend, data)

    assert options.extra_args == {
        "flash-attn": "true",
        "context_size": "4096",
        "Rope-Freq": "0.5",
        "big": "1000000.0",
        "tiny": "1e-07",
        "neg": "-1",
        "off": "false",
        "name": "a b",
        "bare": "",
    }
    assert options.set_fields() == []


@pytest.mark.parametrize("bad", [[1, 2], {"a": "b"}, None, float("nan")], ids=repr)
def test_unknown_key_with_unspellable_value(backend: BackendType, bad: object) -> None:
    with pytest.raises(InvalidOptions) as caught:
        parse_backend_options(backend, {"mystery-flag": bad})
    assert caught.value.field == "mystery-flag"
    assert caught.value.message.startswith("mystery-flag: expected ")


@pytest.mark.parametrize("key", ["--verbose", "-v", "a b", "a=b", ""])
def test_unknown_key_that_cannot_be_a_flag(backend: BackendType, key: str) -> None:
    with pytest.raises(InvalidOptions) as caught:
        parse_backend_options(backend, {key: "x"})
    assert caught.value.field == key


def test_explicit_extra_args_merge_with_unknown_keys(backend: BackendType) -> None:
    data = {
        "extra_args": {"verbose-prompt": "", "log-file": "/x.log", "shared": "explicit"},
        "shared": "top-level",
        "other": 3,
    }

    options = parse_backend_options(backend, data)

    assert options.extra_args == {
        "verbose-prompt": "",
        "log-file": "/x.log",
        "shared": "top-level",
        "other": "3",
    }


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"threads": 4}, "extra_args.threads"),
        ({"flag": True}, "extra_args.flag"),
        ({"flag": None}, "extra_args.flag"),
        (["flag"], "extra_args"),
        ("flag", "extra_args"),
        ({"--flag": ""}, "extra_args.--flag"),
    ],
)
def test_explicit_extra_args_must_map_names_to_strings(
    backend: BackendType, extra: object, field: str
) -> None:
    with pytest.raises(InvalidOptions) as caught:
        parse_backend_options(backend, {"extra_args": extra})
    assert caught.value.field == field


# -- output ----------------------------------------------------------------------------------


def test_to_json_is_sorted_and_only_has_set_fields() -> None:
    options = parse_backend_options(
        "llama_cpp", {"threads": 8, "model": "/m", "alias": "x", "zzz": "1", "port": 8001}
    )

    result = to_json(options)

    assert list(result) == ["alias", "extra_args", "model", "port", "threads"]
    assert result == {
        "alias": "x",
        "extra_args": {"zzz": "1"},
        "model": "/m",
        "port": 8001,
        "threads": 8,
    }


def test_to_json_returns_copies() -> None:
    options = LlamaCppOptions.from_json({"lora": ["a"], "x": "1"})
    result = options.to_json()

    lora = result["lora"]
    extra = result["extra_args"]
    assert isinstance(lora, list)
    assert isinstance(extra, dict)
    lora.append("b")
    extra["y"] = "2"

    assert options.lora == ["a"]
    assert options.extra_args == {"x": "1"}


def test_every_field_round_trips(backend: BackendType) -> None:
    cls = options_class(backend)
    data = {**full_json(cls), "extra_args": {"custom-flag": "", "other": "v"}}

    options = parse_backend_options(backend, data)

    assert options.to_json() == dict(sorted(data.items()))
    assert parse_backend_options(backend, options.to_json()) == options


@pytest.mark.parametrize("seed", range(25))
def test_random_subsets_round_trip(backend: BackendType, seed: int) -> None:
    rng = random.Random(seed)
    cls = options_class(backend)
    names = rng.sample(list(cls.FIELD_ORDER), k=rng.randint(1, 12))
    data: dict[str, object] = {name: field_value(cls, name, rng) for name in names}
    data.pop("port", None)
    if rng.random() < 0.5:
        data["extra_args"] = {f"x-{seed}": str(seed)}

    options = parse_backend_options(backend, data)
    again = parse_backend_options(backend, options.to_json())

    assert again == options
    assert again.to_json() == options.to_json()
    assert list(options.to_json()) == sorted(options.to_json())


@pytest.mark.parametrize("seed", range(25))
def test_checked_options_equal_what_pydantic_validates(backend: BackendType, seed: int) -> None:
    # from_json builds from its own checks without a second validation; this holds the
    # result to what pydantic's strict validation makes of the same (canonical) values.
    rng = random.Random(seed)
    cls = options_class(backend)
    names = rng.sample(list(cls.FIELD_ORDER), k=rng.randint(0, len(cls.FIELD_ORDER)))
    data: dict[str, object] = {name: field_value(cls, name, rng) for name in names}
    data["extra_args"] = {f"x-{seed}": str(seed)} if seed % 2 else {}

    checked = parse_backend_options(backend, data)
    validated = cls.model_validate(data)

    assert checked == validated
    assert checked.model_fields_set == validated.model_fields_set
    for name in cls.model_fields:
        assert type(getattr(checked, name)) is type(getattr(validated, name)), name


def test_checked_options_share_no_state(backend: BackendType) -> None:
    first = parse_backend_options(backend, {"x": "1"})
    second = parse_backend_options(backend, {})

    assert first.extra_args == {"x": "1"}
    assert second.extra_args == {}
    assert first.extra_args is not second.extra_args
    assert parse_backend_options(backend, {}).extra_args is not second.extra_args
    assert second.model_fields_set == {"extra_args"}


# -- immutability and copies -----------------------------------------------------------------


def test_options_are_frozen(backend: BackendType) -> None:
    options = parse_backend_options(backend, {"model": "m"})

    with pytest.raises(ValidationError):
        options.model = "other"  # type: ignore[misc]


def test_replace_validates_and_leaves_the_original_alone(backend: BackendType) -> None:
    options = parse_backend_options(backend, {"model": "m", "port": 8000, "x": "1"})

    moved = options.replace(port=8001, host="0.0.0.0")

    assert (moved.port, moved.host, moved.model, moved.extra_args) == (
        8001,
        "0.0.0.0",
        "m",
        {"x": "1"},
    )
    assert (options.port, options.host) == (8000, None)
    assert options.replace(port=0).port is None
    assert options.replace(model=None).model is None
    assert options.replace(extra_args={"y": ""}).extra_args == {"y": ""}


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"port": 70000}, "port"), ({"model": 5}, "model"), ({"no_such_option": 1}, "no_such_option")],
)
def test_replace_rejects_bad_changes(
    backend: BackendType, changes: dict[str, object], field: str
) -> None:
    options = parse_backend_options(backend, {})
    with pytest.raises(InvalidOptions) as caught:
        options.replace(**changes)
    assert caught.value.field == field


def test_equal_options_from_differently_ordered_input(backend: BackendType) -> None:
    first = parse_backend_options(backend, {"model": "m", "port": 1, "x": "1", "y": "2"})
    second = parse_backend_options(backend, {"y": "2", "x": "1", "port": 1, "model": "m"})
    assert first == second


def test_repr_shows_only_set_fields() -> None:
    options = parse_backend_options("vllm", {"model": "m", "port": 1, "zz": "1"})
    assert repr(options) == "VllmOptions(port=1, model='m', extra_args={'zz': '1'})"


def test_subclasses_share_the_base() -> None:
    for cls in OPTIONS_CLASSES.values():
        assert issubclass(cls, BackendOptionsBase)
        assert {"model", "host", "port"} <= set(cls.FIELD_ORDER)


@pytest.mark.parametrize(
    ("backend", "key", "field"),
    [
        ("llama_cpp", "ctx_size", "ctx_size"),
        ("llama_cpp", "c", "c"),  # an alias is checked as its field, and named as typed
        ("llama_cpp", "batch_size", "batch_size"),
        ("vllm", "tensor_parallel_size", "tensor_parallel_size"),
        ("mlx_lm", "max_tokens", "max_tokens"),
    ],
)
def test_a_negative_count_is_refused_naming_the_key(backend: str, key: str, field: str) -> None:
    with pytest.raises(InvalidOptions) as caught:
        parse_backend_options(backend, {key: -5})
    assert caught.value.message == f"{field}: expected an integer >= 0, got -5"
    assert (caught.value.field, caught.value.value) == (field, -5)


def test_zero_counts_and_negative_non_counts_are_kept() -> None:
    """0 is "from the model" for ctx_size; -1 means something for seed and gpu layers."""
    options = parse_backend_options("llama_cpp", {"ctx_size": 0, "seed": -1, "threads": -1})
    assert options.to_json() == {"ctx_size": 0, "seed": -1, "threads": -1}
    with pytest.raises(InvalidOptions, match=r"^ctx_size: expected an integer >= 0, got -1$"):
        LlamaCppOptions().replace(ctx_size=-1)
    assert set(LlamaCppOptions.FIELD_KINDS) >= LlamaCppOptions.COUNTS
    assert set(VllmOptions.FIELD_KINDS) >= VllmOptions.COUNTS
    assert set(MlxLmOptions.FIELD_KINDS) >= MlxLmOptions.COUNTS
