"""Reading pasted command lines into typed options, and the argv round trip."""

from __future__ import annotations

import random
import shlex
from typing import ClassVar

import pytest

from llamactl.backends import (
    BackendOptions,
    BackendOptionsBase,
    BackendType,
    CommandParseError,
    FieldKind,
    backend_args,
    options_class,
    parse_command,
    split_command,
)
from llamactl.backends.parse import _Parser
from llamactl.errors import InvalidInput, InvalidOptions

LLAMA, MLX, VLLM = BackendType.LLAMA_CPP, BackendType.MLX_LM, BackendType.VLLM


def parsed_json(backend: BackendType, text: str) -> dict[str, object]:
    return parse_command(backend, text).to_json()


# -- accepted commands -------------------------------------------------------------------------

PARSE_CASES: list[tuple[str, BackendType, str, dict[str, object]]] = [
    # the reference's cases
    (
        "basic",
        LLAMA,
        "llama-server --model /path/to/model.gguf --gpu-layers 32",
        {"model": "/path/to/model.gguf", "gpu_layers": 32},
    ),
    ("args only", LLAMA, "--model /m.gguf --ctx-size 4096", {"model": "/m.gguf", "ctx_size": 4096}),
    ("--model=", LLAMA, "llama-server --model=/m.gguf", {"model": "/m.gguf"}),
    (
        "quoted api key",
        LLAMA,
        'llama-server --api-key "sk-1234567890abcdef" -m m',
        {"api_key": "sk-1234567890abcdef", "model": "m"},
    ),
    ("--n-gpu-layers alias", LLAMA, "llama-server --n-gpu-layers 10", {"gpu_layers": 10}),
    (
        "repeated --lora and --lora=",
        LLAMA,
        "llama-server --lora a.gguf --lora=b.gguf --lora c,d.gguf",
        {"lora": ["a.gguf", "b.gguf", "c,d.gguf"]},
    ),
    (
        "mlx --log-level",
        MLX,
        "mlx_lm.server --model m --log-level DEBUG",
        {"model": "m", "log_level": "DEBUG"},
    ),
    (
        "mlx --trust-remote-code",
        MLX,
        "mlx_lm.server --trust-remote-code",
        {"trust_remote_code": True},
    ),
    ("mlx --temp=0.7", MLX, "mlx_lm.server --temp=0.7 --top-k 5", {"temp": 0.7, "top_k": 5}),
    ("vllm serve M", VLLM, "vllm serve org/M", {"model": "org/M"}),
    ("serve M", VLLM, "serve org/M", {"model": "org/M"}),
    ("vllm M without serve", VLLM, "vllm org/M", {"model": "org/M"}),
    (
        "positional plus flags",
        VLLM,
        "vllm serve org/M --tensor-parallel-size 2 --gpu-memory-utilization 0.9",
        {"model": "org/M", "tensor_parallel_size": 2, "gpu_memory_utilization": 0.9},
    ),
    (
        "positional after flags",
        VLLM,
        "vllm serve --enforce-eager org/M --seed 3",
        {"model": "org/M", "enforce_eager": True, "seed": 3},
    ),
    ("--model wins over positional", VLLM, "vllm serve A --model B", {"model": "B"}),
    ("vllm flags only", VLLM, "vllm serve --model B", {"model": "B"}),
    (
        "--middleware repeated",
        VLLM,
        "vllm serve M --middleware a.b --middleware c.d",
        {"model": "M", "middleware": ["a.b", "c.d"]},
    ),
    (
        "--api-key repeated",
        VLLM,
        "vllm serve M --api-key k1 --api-key=k2",
        {"model": "M", "api_key": ["k1", "k2"]},
    ),
    # executables
    ("path to executable", LLAMA, "/usr/local/bin/llama-server -c 1", {"ctx_size": 1}),
    ("executable case-insensitive", LLAMA, "LLAMA-SERVER.EXE -c 1", {"ctx_size": 1}),
    ("windows path", LLAMA, r'"C:\llama\llama-server.exe" -c 1', {"ctx_size": 1}),
    ("quoted path with spaces", LLAMA, "'/opt/my dir/llama-server' -c 1", {"ctx_size": 1}),
    ("no executable, no flags", LLAMA, "llama-server", {}),
    ("python -m mlx_lm.server", MLX, "python -m mlx_lm.server --model m", {"model": "m"}),
    (
        "python3.11 -m mlx_lm.server",
        MLX,
        "/usr/bin/python3.11 -m mlx_lm.server --port 9",
        {"port": 9},
    ),
    ("path to mlx_lm.server", MLX, "~/.venv/bin/mlx_lm.server --port 9", {"port": 9}),
    ("path to vllm", VLLM, "/opt/venv/bin/vllm serve M", {"model": "M"}),
    # short aliases, list fields included
    (
        "short aliases",
        LLAMA,
        "llama-server -m m.gguf -c 4096 -ngl 99 -t 8 -np 4 -a alias",
        {
            "model": "m.gguf",
            "ctx_size": 4096,
            "gpu_layers": 99,
            "threads": 8,
            "parallel": 4,
            "alias": "alias",
        },
    ),
    (
        "case-sensitive aliases",
        LLAMA,
        "llama-server -C 0xff -c 5",
        {"cpu_mask": "0xff", "ctx_size": 5},
    ),
    (
        "short aliases of list fields",
        LLAMA,
        "llama-server -ot exps=CPU -ot x=CUDA0 -l 15043+1",
        {"override_tensor": ["exps=CPU", "x=CUDA0"], "logit_bias": ["15043+1"]},
    ),
    ("short flag with =", LLAMA, "llama-server -c=2048", {"ctx_size": 2048}),
    (
        "flag spelling override",
        LLAMA,
        "llama-server --fim-qwen-1.5b-default",
        {"fim_qwen_1_5b_default": True},
    ),
    ("underscore spelling", LLAMA, "llama-server --ctx_size 1", {"ctx_size": 1}),
    ("later value wins", LLAMA, "llama-server -c 1 --ctx-size 2", {"ctx_size": 2}),
    # switches and booleans
    ("-fa alone", LLAMA, "llama-server -fa -m m", {"flash_attn": "on", "model": "m"}),
    ("-fa at the end", LLAMA, "llama-server -m m -fa", {"flash_attn": "on", "model": "m"}),
    ("-fa off", LLAMA, "llama-server -fa off", {"flash_attn": "off"}),
    ("-fa auto", LLAMA, "llama-server --flash-attn auto", {"flash_attn": "auto"}),
    ("-fa=true", LLAMA, "llama-server -fa=true", {"flash_attn": "on"}),
    ("-fa=false", LLAMA, "llama-server -fa=false", {"flash_attn": "off"}),
    ("-fa then a flag", LLAMA, "llama-server -fa --mlock", {"flash_attn": "on", "mlock": True}),
    ("--log-colors is a switch", LLAMA, "llama-server --log-colors", {"log_colors": "on"}),
    (
        "bool does not take the next word",
        LLAMA,
        "llama-server --mlock -c 1",
        {"mlock": True, "ctx_size": 1},
    ),
    (
        "--flag=false",
        LLAMA,
        "llama-server --mlock=false --no-mmap=True",
        {"mlock": False, "no_mmap": True},
    ),
    # values
    ("quoted value with spaces", LLAMA, 'llama-server --alias "my model"', {"alias": "my model"}),
    ("single quotes", LLAMA, "llama-server --alias 'it is \"x\"'", {"alias": 'it is "x"'}),
    ("escaped space", LLAMA, r"llama-server --alias my\ model", {"alias": "my model"}),
    (
        "empty quoted value for an unknown flag",
        LLAMA,
        "llama-server --foo ''",
        {"extra_args": {"foo": ""}},
    ),
    (
        "'=' inside a value",
        LLAMA,
        "llama-server --override-kv=a=int:1",
        {"override_kv": ["a=int:1"]},
    ),
    (
        "no expansion",
        LLAMA,
        "llama-server --alias '$HOME' --api-key $(x)",
        {"alias": "$HOME", "api_key": "$(x)"},
    ),
    ("lone dash is a value", LLAMA, "llama-server --log-file -", {"log_file": "-"}),
    (
        "negative numbers",
        LLAMA,
        "llama-server --seed -1 --temp -0.5 -mg -2 --rope-freq-base -1e-05 --yarn-ext-factor -.5",
        {
            "seed": -1,
            "temp": -0.5,
            "main_gpu": -2,
            "rope_freq_base": -1e-05,
            "yarn_ext_factor": -0.5,
        },
    ),
    ("negative as a string", LLAMA, "llama-server --alias -1", {"alias": "-1"}),
    ("dash value with =", LLAMA, "llama-server --alias=-x --seed=-3", {"alias": "-x", "seed": -3}),
    ("integer to float field", MLX, "mlx_lm.server --temp 1", {"temp": 1.0}),
    (
        "explicit zeros",
        LLAMA,
        "llama-server --seed 0 -ngl 0 --temp 0",
        {"seed": 0, "gpu_layers": 0, "temp": 0.0},
    ),
    ("port 0 means allocate", LLAMA, "llama-server --port 0", {}),
    (
        "variadic list",
        VLLM,
        "vllm serve M --served-model-name a b c --seed 1",
        {"model": "M", "served_model_name": ["a", "b", "c"], "seed": 1},
    ),
    (
        "variadic with =",
        VLLM,
        "vllm serve M --served-model-name=a",
        {"model": "M", "served_model_name": ["a"]},
    ),
    # continuations
    (
        "backslash-newline continuations",
        LLAMA,
        "llama-server \\\n  --model /m.gguf \\\n  -c 4096\n",
        {"model": "/m.gguf", "ctx_size": 4096},
    ),
    (
        "CRLF continuations",
        LLAMA,
        "llama-server \\\r\n  -c 1 \\\r\n  -ngl 2\r\n",
        {"ctx_size": 1, "gpu_layers": 2},
    ),
    ("continuation inside double quotes", LLAMA, 'llama-server --alias "a\\\nb"', {"alias": "ab"}),
    (
        "backslash-newline inside single quotes is kept",
        LLAMA,
        "llama-server --alias 'a\\\nb'",
        {"alias": "a\\\nb"},
    ),
    (
        "escaped backslash before newline",
        LLAMA,
        "llama-server --alias a\\\\\n-c 1",
        {"alias": "a\\", "ctx_size": 1},
    ),
    (
        "newline inside quotes",
        LLAMA,
        "llama-server --chat-template 'a\nb'",
        {"chat_template": "a\nb"},
    ),
    # unknown flags keep their spelling
    (
        "unknown flag with value",
        LLAMA,
        "llama-server --foo-bar x",
        {"extra_args": {"foo-bar": "x"}},
    ),
    ("unknown flag alone", LLAMA, "llama-server --foo-bar", {"extra_args": {"foo-bar": ""}}),
    (
        "unknown underscore flag",
        LLAMA,
        "llama-server --foo_bar 1",
        {"extra_args": {"foo_bar": "1"}},
    ),
    (
        "unknown flag before a flag",
        LLAMA,
        "llama-server --foo --mlock",
        {"extra_args": {"foo": ""}, "mlock": True},
    ),
    (
        "unknown flag with negative value",
        LLAMA,
        "llama-server --foo -1",
        {"extra_args": {"foo": "-1"}},
    ),
    (
        "unknown flag with =",
        LLAMA,
        "llama-server --foo=a=b --bar=",
        {"extra_args": {"foo": "a=b", "bar": ""}},
    ),
    (
        "unknown flag with quoted value",
        MLX,
        "mlx_lm.server --x-y 'a b'",
        {"extra_args": {"x-y": "a b"}},
    ),
    (
        "unknown flag takes what vllm would call a model",
        VLLM,
        "vllm serve --foo M",
        {"extra_args": {"foo": "M"}},
    ),
    (
        "extra-args is just an unknown flag",
        LLAMA,
        "llama-server --extra-args x",
        {"extra_args": {"extra-args": "x"}},
    ),
]


@pytest.mark.parametrize(
    ("backend", "text", "expected"),
    [case[1:] for case in PARSE_CASES],
    ids=[case[0] for case in PARSE_CASES],
)
def test_parse_command(backend: BackendType, text: str, expected: dict[str, object]) -> None:
    assert parsed_json(backend, text) == expected


def test_hash_is_an_ordinary_character() -> None:
    assert parsed_json(LLAMA, "llama-server --alias a#b -c 1 --foo #x") == {
        "alias": "a#b",
        "ctx_size": 1,
        "extra_args": {"foo": "#x"},
    }


def test_backend_type_given_as_string() -> None:
    assert parse_command("llama_cpp", "-c 1") == parse_command(LLAMA, "-c 1")


def test_parse_result_is_typed() -> None:
    options = parse_command(VLLM, "vllm serve M --seed 1")
    assert type(options) is options_class(VLLM)
    assert options.seed == 1


def test_unknown_flags_re_emit_as_given() -> None:
    options = parse_command(LLAMA, "llama-server --foo-bar x --baz_qux --Zed=-1 -c 2")
    assert backend_args(options) == [
        "--ctx-size",
        "2",
        "--Zed",
        "-1",
        "--baz_qux",
        "--foo-bar",
        "x",
    ]


class CommaListOptions(BackendOptionsBase):
    """A backend with a list field that is neither multi-valued nor variadic."""

    BACKEND_TYPE: ClassVar[BackendType] = BackendType.LLAMA_CPP

    tags: list[str] | None = None


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["--tags", "a,b"], ["a", "b"]),
        (["--tags=a"], ["a"]),
        (["--tags", "a,b", "--tags", "c"], ["c"]),
    ],
)
def test_other_lists_split_on_commas(words: list[str], expected: list[str]) -> None:
    options = _Parser(CommaListOptions, words, named=False).parse()
    assert options.tags == expected


# -- split_command -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a b  c", ["a", "b", "c"]),
        ("a 'b c' \"d e\"", ["a", "b c", "d e"]),
        ("a \\\n b", ["a", "b"]),
        ("a\\\nb", ["ab"]),
        ("a # b", ["a", "#", "b"]),
        ("a '' b", ["a", "", "b"]),
        ("'a\\\nb'", ["a\\\nb"]),
        ('"a\\"b"', ['a"b']),
        ('"it\'s"', ["it's"]),
        ("a\tb\r\nc", ["a", "b", "c"]),
    ],
)
def test_split_command(text: str, words: list[str]) -> None:
    assert split_command(text) == words


# -- errors ------------------------------------------------------------------------------------

ERROR_CASES: list[tuple[str, BackendType, str, type[InvalidInput], str]] = [
    ("empty", LLAMA, "", CommandParseError, "^command is empty$"),
    ("blank", LLAMA, "  \n\t ", CommandParseError, "^command is empty$"),
    ("only continuations", LLAMA, " \\\n \\\n", CommandParseError, "^command is empty$"),
    (
        "unterminated double quote",
        LLAMA,
        'llama-server --alias "my model',
        CommandParseError,
        "^unterminated quoted string$",
    ),
    (
        "unterminated single quote",
        LLAMA,
        "llama-server --alias 'x",
        CommandParseError,
        "^unterminated quoted string$",
    ),
    ("trailing backslash", LLAMA, "llama-server -c 1 \\", CommandParseError, "lone backslash"),
    (
        "three dashes",
        LLAMA,
        "llama-server ---model x",
        CommandParseError,
        "^malformed flag '---model'",
    ),
    ("bare --", LLAMA, "llama-server -- -c 1", CommandParseError, "^malformed flag '--'"),
    (
        "flag without a name",
        LLAMA,
        "llama-server --=x",
        CommandParseError,
        "^malformed flag '--=x'",
    ),
    (
        "not an integer",
        LLAMA,
        "llama-server --ctx-size big",
        InvalidOptions,
        "^--ctx-size: expected an integer, got 'big'$",
    ),
    (
        "fraction for an integer",
        LLAMA,
        "llama-server -c 1.5",
        InvalidOptions,
        "^-c: expected an integer, got '1.5'$",
    ),
    (
        "integer given with =",
        LLAMA,
        "llama-server --ctx-size=4k",
        InvalidOptions,
        "^--ctx-size: expected an integer, got '4k'$",
    ),
    (
        "not a number",
        MLX,
        "mlx_lm.server --temp hot",
        InvalidOptions,
        "^--temp: expected a number, got 'hot'$",
    ),
    (
        "nan",
        MLX,
        "mlx_lm.server --temp nan",
        InvalidOptions,
        "^--temp: expected a number, got 'nan'$",
    ),
    (
        "inf",
        LLAMA,
        "llama-server --temp inf",
        InvalidOptions,
        "^--temp: expected a number, got 'inf'$",
    ),
    (
        "bad boolean",
        LLAMA,
        "llama-server --mlock=yes",
        InvalidOptions,
        "^--mlock: expected true or false, got 'yes'$",
    ),
    (
        "port out of range",
        LLAMA,
        "llama-server --port 70000",
        InvalidOptions,
        "^--port: expected a port from 1 to 65535",
    ),
    ("negative port", VLLM, "vllm serve M --port -1", InvalidOptions, "^--port: expected a port"),
    (
        "missing value at the end",
        LLAMA,
        "llama-server --model",
        CommandParseError,
        "^--model: missing value",
    ),
    (
        "missing value before a flag",
        LLAMA,
        "llama-server -m --ctx-size 4",
        CommandParseError,
        "^-m: missing value",
    ),
    (
        "empty value with =",
        LLAMA,
        "llama-server --alias=",
        CommandParseError,
        "^--alias: expected a value, got ''$",
    ),
    (
        "empty quoted value",
        LLAMA,
        "llama-server --alias ''",
        CommandParseError,
        "^--alias: expected a value, got ''$",
    ),
    ("empty switch value", LLAMA, "llama-server -fa=", CommandParseError, "^-fa: expected a value"),
    (
        "missing list value",
        LLAMA,
        "llama-server --lora",
        CommandParseError,
        "^--lora: missing value",
    ),
    (
        "missing variadic value",
        VLLM,
        "vllm serve M --served-model-name --seed 1",
        CommandParseError,
        "^--served-model-name: missing value",
    ),
    (
        "dash value needs =",
        LLAMA,
        "llama-server --alias -x",
        CommandParseError,
        "write --alias=VALUE",
    ),
    (
        "stray positional",
        LLAMA,
        "llama-server -m m extra",
        CommandParseError,
        "^unexpected argument 'extra'$",
    ),
    (
        "value after a switch",
        LLAMA,
        "llama-server --mlock true",
        CommandParseError,
        "^unexpected argument 'true' \\(switch flags take no value",
    ),
    (
        "switch with an unknown value",
        LLAMA,
        "llama-server -fa maybe",
        InvalidOptions,
        "^-fa: expected one of on, off, auto, got 'maybe'$",
    ),
    (
        "second vllm positional",
        VLLM,
        "vllm serve A B",
        CommandParseError,
        "^unexpected argument 'B'$",
    ),
    (
        "wrong executable",
        LLAMA,
        "vllm serve M",
        CommandParseError,
        "^unexpected argument 'vllm' \\(a command starts with llama-server",
    ),
    (
        "mlx without -m",
        MLX,
        "python mlx_lm.server",
        CommandParseError,
        "^unexpected argument 'python'",
    ),
    (
        "mlx positional",
        MLX,
        "mlx_lm.server model",
        CommandParseError,
        "^unexpected argument 'model'$",
    ),
    (
        "env assignment",
        LLAMA,
        "CUDA_VISIBLE_DEVICES=0 llama-server -m m",
        CommandParseError,
        "CUDA_VISIBLE_DEVICES in the instance's environment",
    ),
    (
        "env assignment without command",
        VLLM,
        "HF_TOKEN=x",
        CommandParseError,
        "^'HF_TOKEN=x' sets an environment variable",
    ),
    (
        "unknown short flag",
        LLAMA,
        "llama-server -zz 1",
        CommandParseError,
        "^unknown flag '-zz': not a llama_cpp option.*long form",
    ),
    (
        "mlx has no short aliases",
        MLX,
        "mlx_lm.server -m x",
        CommandParseError,
        "^unknown flag '-m'",
    ),
    (
        "repeated unknown flag",
        LLAMA,
        "llama-server --foo 1 --foo 2",
        CommandParseError,
        "^--foo: given more than once",
    ),
    (
        "space in an unknown flag",
        LLAMA,
        "llama-server '--foo bar' 1",
        InvalidOptions,
        "^--foo bar: expected an option name",
    ),
    (
        "NUL in a value",
        LLAMA,
        "llama-server --alias a\x00b",
        InvalidOptions,
        "^--alias: expected a string without NUL",
    ),
    (
        "NUL in a list value",
        LLAMA,
        "llama-server --lora a\x00b",
        InvalidOptions,
        "^--lora: expected a string without NUL",
    ),
]


@pytest.mark.parametrize(
    ("backend", "text", "error", "message"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_parse_errors(
    backend: BackendType, text: str, error: type[InvalidInput], message: str
) -> None:
    with pytest.raises(error, match=message) as caught:
        parse_command(backend, text)
    assert type(caught.value) is error
    assert caught.value.status == 400


def test_parse_error_class() -> None:
    assert issubclass(CommandParseError, InvalidInput)
    assert CommandParseError.code == "parse_error"
    assert CommandParseError("x").status == 400


def test_type_error_names_the_field() -> None:
    with pytest.raises(InvalidOptions) as caught:
        parse_command(LLAMA, "llama-server -ngl lots")
    assert caught.value.field == "gpu_layers"
    assert caught.value.value == "lots"
    assert caught.value.message == "-ngl: expected an integer, 'auto' or 'all', got 'lots'"


def test_unknown_backend_type() -> None:
    with pytest.raises(InvalidOptions, match=r"^backend_type: "):
        parse_command("llama", "-c 1")


# -- round trip --------------------------------------------------------------------------------

# Safe extra-argument keys: none of them is a field or an alias of any backend.
EXTRA_KEYS = ["custom-flag", "another_one", "Xtra", "x.y"]


def sample(backend: BackendType, name: str, kind: FieldKind, rng: random.Random) -> object:
    """A value for ``name`` that survives being written as argv and read back."""
    cls = options_class(backend)
    attaches = backend is not LLAMA  # argparse servers get --flag=-value
    if name == "port":
        return rng.randint(1, 65535)
    if name in cls.SWITCHES:
        return rng.choice(cls.SWITCHES[name])
    if name in cls.INT_WORDS:
        return rng.choice([0, -1, 99, *cls.INT_WORDS[name]])
    if name in cls.COUNTS:
        return rng.choice([0, 1, 99, 2**40])
    match kind:
        case FieldKind.BOOL:
            return rng.choice([True, False])
        case FieldKind.INT:
            return rng.choice([0, 1, -1, 99, 2**40])
        case FieldKind.FLOAT:
            return rng.choice([0.0, 0.5, -1.25, 1e-07, -2e-05, 1e6, 3.0, 1e300])
        case FieldKind.STR:
            values = ["a", "/m/x.gguf", "; rm -rf ~", "é ü", "#1", "a=b", "x\ny", "-1", "'q\""]
            if attaches and not (backend is VLLM and name == "model"):
                values += ["--not-a-flag", "-x"]
            return rng.choice(values)
        case FieldKind.LIST:
            lists = [["one"], ["a", "b"], ["x=1", "y:2", "z z"], ["a,b"], ["-1"]]
            if attaches and name in cls.MULTI_VALUED:
                lists.append(["-k", "--key"])
            return rng.choice(lists)
    raise AssertionError(kind)


def random_options(backend: BackendType, rng: random.Random, count: int) -> BackendOptions:
    cls = options_class(backend)
    names = rng.sample(list(cls.FIELD_KINDS), min(count, len(cls.FIELD_KINDS)))
    data: dict[str, object] = {
        name: sample(backend, name, cls.FIELD_KINDS[name], rng) for name in names
    }
    extra_values = ["", "1", "a b", "-3", "#x"] + (["-v"] if backend is not LLAMA else [])
    keys = rng.sample(EXTRA_KEYS, rng.randint(0, len(EXTRA_KEYS)))
    data["extra_args"] = {key: rng.choice(extra_values) for key in keys}
    return cls.from_json(data)


def without_falses(options: BackendOptions) -> BackendOptions:
    """What comes back: a false switch is never written, so it reads back as unset."""
    falses = {name: None for name, value in options.set_fields() if value is False}
    return options.replace(**falses)


def command_line(options: BackendOptions, *, docker: bool = False) -> str:
    prefix = {LLAMA: ["llama-server"], MLX: ["mlx_lm.server"], VLLM: ["vllm", "serve"]}
    return shlex.join([*prefix[options.BACKEND_TYPE], *backend_args(options, docker=docker)])


ROUND_TRIP_SETS = [
    (backend, seed, count)
    for backend in (LLAMA, MLX, VLLM)
    for seed, count in enumerate([1, 2, 3, 5, 8, 8, 13, 13, 21, 34, 200, 200])
]


@pytest.mark.parametrize(
    ("backend", "seed", "count"),
    ROUND_TRIP_SETS,
    ids=[f"{backend}-{seed}-{count}" for backend, seed, count in ROUND_TRIP_SETS],
)
def test_round_trip(backend: BackendType, seed: int, count: int) -> None:
    options = random_options(backend, random.Random(seed), count)
    assert parse_command(backend, command_line(options)) == without_falses(options)


@pytest.mark.parametrize("seed", range(4))
def test_round_trip_vllm_docker_form(seed: int) -> None:
    options = random_options(VLLM, random.Random(100 + seed), 40)
    assert parse_command(VLLM, command_line(options, docker=True)) == without_falses(options)


@pytest.mark.parametrize(
    ("backend", "data"),
    [
        (LLAMA, {"seed": 0, "temp": 0.0, "gpu_layers": 0}),
        (LLAMA, {"flash_attn": "off", "mlock": True, "lora": ["a", "b"], "alias": "-1"}),
        (LLAMA, {"fim_qwen_1_5b_default": True, "extra_args": {"moe-cache-mib": "16"}}),
        (MLX, {"model": "-weird", "temp": -0.5, "extra_args": {"k": "--v"}}),
        (VLLM, {"model": "org/M", "served_model_name": ["a", "b"], "api_key": ["-k"]}),
        (VLLM, {"served_model_name": ["only"], "extra_args": {"flag": ""}}),
    ],
)
def test_round_trip_examples(backend: BackendType, data: dict[str, object]) -> None:
    options = options_class(backend).from_json(data)
    assert parse_command(backend, command_line(options)) == options


def test_false_switch_reads_back_unset() -> None:
    options = options_class(LLAMA).from_json({"mlock": False, "ctx_size": 1})
    parsed = parse_command(LLAMA, command_line(options))
    assert parsed.mlock is None
    assert parsed.ctx_size == 1


def test_an_integer_too_long_for_any_option_is_refused() -> None:
    huge = "9" * 5000
    with pytest.raises(InvalidOptions, match=r"^-c: expected an integer") as caught:
        parse_command(LLAMA, f"llama-server -c {huge}")
    assert caught.value.field == "ctx_size"


def test_a_negative_context_size_on_the_command_line_is_refused_by_its_flag() -> None:
    with pytest.raises(InvalidOptions, match=r"^-c: expected an integer >= 0, got -5$") as caught:
        parse_command(LLAMA, "llama-server -m x.gguf -c -5")
    assert caught.value.field == "ctx_size"
