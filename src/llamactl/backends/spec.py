"""``BackendSpec``: every fact about one backend that other layers need, in one value.

Each backend module exports its spec (``SPEC``); ``registry.SPECS`` collects them. The
proxy, parse-command, the CLI, the dashboard and the process code read a backend's traits
here instead of keeping their own tables. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from llamactl.backends.base import BackendOptionsBase, BackendType
from llamactl.config.models import BackendConfig, BackendsConfig

__all__ = ["ArgvStyle", "BackendSpec"]


class ArgvStyle(StrEnum):
    """How a flag and its value are written into argv."""

    # ``--flag VALUE`` always: llama-server reads the next argv item verbatim.
    SEPARATE = "separate"
    # ``--flag=VALUE`` when the value starts with "-": argparse would take it for a flag.
    ARGPARSE = "argparse"
    # Not flags of typed options: the spec's ``template_args`` gives every argument.
    TEMPLATE = "template"


@dataclass(frozen=True)
class BackendSpec:
    """One backend's traits.

    - ``config_key``: its section under ``backends`` in the configuration, also the URL
      segment of ``/api/v1/backends/{segment}/...``;
    - ``label``: how people see it named (the dashboard's backend choice);
    - ``executables``: program names a pasted command line may start with;
      ``subcommand`` follows the program (``vllm serve``); ``python_module`` is the
      ``python -m`` form (``python -m mlx_lm.server``);
    - ``argv_style``, ``positional_model``: how the options become argv (the model as the
      first, positional argument when run natively);
    - ``supports_docker``: whether it may run in a container;
      ``docker_section_required``: whether an instance asking for docker
      (``docker_enabled: true``) is refused when its section has no ``docker`` part (the
      built-ins, whose loaded sections always have one, run natively without it);
    - ``rewrites_model``: whether the proxy puts the backend's own model name into the
      ``model`` of a JSON body (the server checks it against what it serves);
    - ``messages_api``: whether the server answers Anthropic's Messages API
      (``/v1/messages``, ``/v1/messages/count_tokens``); the proxy answers 501 for one
      that does not, before starting anything;
    - ``served_name_field``: the option naming the model in responses, which llamactl
      fills with the instance name when unset (llama-server's ``--alias``);
    - ``health_path``: the readiness endpoint, unless the instance's configuration section
      names another; ``healthy_statuses``: the answers that mean ready;
    - ``api_key``: the key the server itself requires, which the proxy sends (``None``
      for none, or when llamactl cannot tell which of several to send);
    - ``served_model_name``: the model name the server expects in requests;
    - ``top_fields``: the options the dashboard's form shows up front;
    - ``section_of``: the configuration section that runs an instance, for a backend
      whose instances each name their own (``None``: the one ``backends.<config_key>``);
      it raises ``InvalidOptions`` naming the problem when there is no usable one;
    - ``section_key_of``: the dotted key of that section, for messages about its settings
      (``None``: ``backends.<config_key>``);
    - ``template_args``: for ``ArgvStyle.TEMPLATE``, the arguments after the program (or
      the image) from the options and the section, the section's own ``args`` included.

    A backend with no ``executables`` has no command line for parse-command to read.
    """

    backend_type: BackendType
    config_key: str
    label: str
    executables: frozenset[str]
    options_class: type[BackendOptionsBase]
    argv_style: ArgvStyle
    positional_model: bool
    supports_docker: bool
    rewrites_model: bool
    messages_api: bool
    health_path: str
    api_key: Callable[[BackendOptionsBase], str | None]
    served_model_name: Callable[[BackendOptionsBase], str | None]
    served_name_field: str | None = None
    subcommand: str | None = None
    python_module: str | None = None
    top_fields: tuple[str, ...] = ()
    healthy_statuses: range = range(200, 201)
    docker_section_required: bool = False
    section_of: Callable[[BackendsConfig, BackendOptionsBase], BackendConfig] | None = None
    section_key_of: Callable[[BackendOptionsBase], str] | None = None
    template_args: Callable[[BackendOptionsBase, BackendConfig], list[str]] | None = None
