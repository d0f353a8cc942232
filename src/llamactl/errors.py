"""The one exception tree of llamactl.

Every error that llamactl raises on purpose is a ``LlamactlError``. Each class carries a
``code`` slug and an HTTP ``status`` so that the server renders it and the CLI turns it into
a message and an exit code without knowing the class. Foreign exceptions (SQLAlchemy,
pydantic, ``OSError``) are translated once, at the layer that meets them, chained with
``from exc``.

    LlamactlError
    ├── ConfigError               the configuration cannot be loaded or is invalid
    │   └── DataDirInUse          another llamactl holds the lock of the data directory
    ├── InvalidInput              a user-supplied value is malformed (400)
    │   ├── CommandParseError     a pasted command line cannot be read as a backend's flags
    │   ├── InvalidInstanceName   an instance name breaks the naming rule
    │   ├── InvalidJson           a request body is not valid JSON
    │   ├── InvalidOptions        instance or backend options fail validation
    │   ├── PayloadTooLarge       a request body exceeds server.max_request_body_mb (413)
    │   └── UnsupportedMediaType  a management request's body is not application/json (415)
    ├── Unauthorized              a request carries no accepted API key for its route (401)
    ├── ForeignOrigin             a web page of another origin may not call the API (403)
    ├── PermissionDenied          the request's key may not use that instance (403)
    ├── RateLimited               the request's key is over one of its limits (429)
    ├── NotFound                  something named does not exist (404)
    │   ├── InstanceNotFound      no instance has that name
    │   └── KeyNotFound           no stored API key has that id
    ├── Conflict                  the request clashes with current state (409)
    │   ├── InstanceExists        an instance with that name already exists
    │   ├── InvalidTransition     a status change that the lifecycle forbids
    │   └── LimitReached          a configured limit (max_instances, ...) is reached
    ├── NotServed                 the instance's backend does not serve the API asked for (501)
    ├── BackendFailed             a backend process could not be started or kept running
    │   ├── StartFailedRecently   an on-demand start is asked for again right after failing
    │   ├── GatewayTimeout        a backend did not send its response headers in time (504)
    │   └── BackendRefused        a backend answered an error after a stream had begun
    ├── ClientError               a request from the command-line client did not succeed
    │   ├── ApiError              the server answered with an error status
    │   └── Unreachable           the server cannot be reached
    ├── Unavailable               a request cannot be served now; try again later (503)
    │   ├── InstanceNotRunning    the instance is stopped and may not be started on demand
    │   ├── QueueFull             too many requests already wait for the instance
    │   ├── CapacityReached       the key may start the instance, but not make room for it
    │   └── NodeUnreachable       another llamactl (a node) cannot be reached
    ├── NodeFailed                another node answered with an error (its own status)
    │   └── NodeRefusedKey        a node refused the key configured for it (502)
    ├── ForwardingLoop            a request forwarded by a node would be forwarded again (508)
    ├── DatabaseError             the database failed or holds something unexpected
    │   ├── DatabaseUnavailable   the database cannot be written now: locked, full, deleted (503)
    │   ├── MigrationError        the schema cannot be brought to the code's version
    │   └── NotALlamactlDatabase  the database holds tables that are not llamactl's
    └── JsonImportError           a legacy instance JSON file cannot be imported
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "BackendFailed",
    "BackendRefused",
    "CapacityReached",
    "ClientError",
    "CommandParseError",
    "ConfigError",
    "Conflict",
    "DataDirInUse",
    "DatabaseError",
    "DatabaseUnavailable",
    "ForeignOrigin",
    "ForwardingLoop",
    "GatewayTimeout",
    "InstanceExists",
    "InstanceNotFound",
    "InstanceNotRunning",
    "InvalidInput",
    "InvalidInstanceName",
    "InvalidJson",
    "InvalidOptions",
    "InvalidTransition",
    "JsonImportError",
    "KeyNotFound",
    "LimitReached",
    "LlamactlError",
    "MigrationError",
    "NodeFailed",
    "NodeRefusedKey",
    "NodeUnreachable",
    "NotALlamactlDatabase",
    "NotFound",
    "NotServed",
    "PayloadTooLarge",
    "PermissionDenied",
    "QueueFull",
    "RateLimited",
    "StartFailedRecently",
    "Unauthorized",
    "Unavailable",
    "Unreachable",
    "UnsupportedMediaType",
]


class LlamactlError(Exception):
    """Base class: raised for every failure llamactl reports on purpose."""

    code = "internal_error"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(LlamactlError):
    """Raised when a configuration value, file or variable is invalid.

    ``key`` is the dotted setting (``database.max_open_connections``), ``value`` the raw
    value as given and ``source`` where it came from (``config.yaml:12`` or
    ``env LLAMACTL_PORT``).
    """

    code = "invalid_config"
    status = 400

    def __init__(
        self, message: str, *, key: str = "", value: object = None, source: str = ""
    ) -> None:
        super().__init__(message)
        self.key = key
        self.value = value
        self.source = source


class DataDirInUse(ConfigError):
    """Raised when another process holds the lock of the data directory; ``pid`` is its
    process ID as written in the lock file (``None`` when unreadable)."""

    code = "data_dir_in_use"

    def __init__(self, message: str, *, pid: int | None, data_dir: str) -> None:
        super().__init__(message, key="data_dir", value=data_dir)
        self.pid = pid


class InvalidInput(LlamactlError):
    """Raised when a value supplied by a user or client is malformed."""

    code = "invalid_request"
    status = 400


class CommandParseError(InvalidInput):
    """Raised when a command line cannot be split into words or read as a backend's flags."""

    code = "parse_error"


class InvalidInstanceName(InvalidInput):
    """Raised when an instance name breaks the naming rule."""

    code = "invalid_instance_name"


class InvalidJson(InvalidInput):
    """Raised when a request body is not valid JSON."""

    code = "invalid_json"


class InvalidOptions(InvalidInput):
    """Raised when instance or backend options fail validation; ``field`` names the key."""

    code = "invalid_options"

    def __init__(self, message: str, *, field: str = "", value: object = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class PayloadTooLarge(InvalidInput):
    """Raised when a request body is larger than ``server.max_request_body_mb``."""

    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(InvalidInput):
    """Raised when a management request carries a body that is not ``application/json``."""

    code = "unsupported_media_type"
    status = 415


class Unauthorized(LlamactlError):
    """Raised when a request carries no accepted API key for its route; ``message`` says
    whether the key is missing or invalid. Every route answers it in the OpenAI shape."""

    code = "unauthorized"
    status = 401


class ForeignOrigin(LlamactlError):
    """Raised when, with management auth off, a web page of a foreign origin calls the API."""

    code = "forbidden_origin"
    status = 403


class PermissionDenied(LlamactlError):
    """Raised when a stored key that names its instances does not name this one."""

    code = "permission_denied"
    status = 403


class RateLimited(LlamactlError):
    """Raised when a stored key is over its concurrency or requests-per-minute limit;
    ``retry_after`` seconds is when to try again."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotFound(LlamactlError):
    """Raised when something named does not exist."""

    code = "not_found"
    status = 404


class InstanceNotFound(NotFound):
    """Raised when no instance has the given name."""

    code = "instance_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"instance not found: {name}")
        self.name = name


class KeyNotFound(NotFound):
    """Raised when no stored API key has the id asked for."""

    code = "key_not_found"


class Conflict(LlamactlError):
    """Raised when a request clashes with the current state."""

    code = "conflict"
    status = 409


class InstanceExists(Conflict):
    """Raised when creating an instance whose name is taken."""

    code = "instance_exists"

    def __init__(self, name: str) -> None:
        super().__init__(f"instance already exists: {name}")
        self.name = name


class InvalidTransition(Conflict):
    """Raised when an instance is asked to move between two statuses that do not connect."""

    code = "invalid_transition"


class LimitReached(Conflict):
    """Raised when a configured limit (max_instances, max_running_instances, ports) is hit."""

    code = "limit_reached"


class BackendFailed(LlamactlError):
    """Raised when a backend process cannot be started (missing executable, early exit)."""

    code = "backend_failed"
    status = 502


class StartFailedRecently(BackendFailed):
    """Raised when a request would start an instance whose on-demand start failed seconds
    ago: the same failure is answered at once; ``retry_after`` is the seconds remaining."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class GatewayTimeout(BackendFailed):
    """Raised when a backend sends no response headers within
    ``instances.response_header_timeout`` seconds."""

    code = "gateway_timeout"
    status = 504


class BackendRefused(BackendFailed):
    """Raised when a backend answers a streamed request with an error status after
    llamactl had already begun the response (loading progress): its status and message."""

    code = "backend_error"

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class Unavailable(LlamactlError):
    """Raised when a request cannot be served now; ``retry_after`` seconds is a hint."""

    code = "unavailable"
    status = 503

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InstanceNotRunning(Unavailable):
    """Raised when a request needs an instance that is stopped and not started on demand."""

    code = "instance_not_running"


class QueueFull(Unavailable):
    """Raised when an instance's wait queue (``instances.max_queued_requests``) is full."""

    code = "queue_full"


class CapacityReached(Unavailable):
    """Raised when a key may start an instance on demand but not evict another to make
    room, and every running slot is taken."""

    code = "capacity_reached"


class NodeUnreachable(Unavailable):
    """Raised when another node cannot be reached (refused, timed out, or cut off)."""

    code = "node_unreachable"


class NodeFailed(LlamactlError):
    """Raised when another node answers a call with an error: its status (a 5xx of the
    node's becomes 502) and message, prefixed with the node's name."""

    code = "node_failed"
    status = 502

    def __init__(self, message: str, *, status: int = 502, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        if code is not None:
            self.code = code


class NodeRefusedKey(NodeFailed):
    """Raised when a node answers 401 or 403 to the key configured for it."""

    code = "node_refused_key"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class NotServed(LlamactlError):
    """Raised when a request asks for an API (Anthropic's Messages API) that the backend
    of its instance does not serve, as its spec says."""

    code = "not_implemented"
    status = 501


class ForwardingLoop(LlamactlError):
    """Raised when a request that another node forwarded here would be forwarded on."""

    code = "forwarding_loop"
    status = 508


class ClientError(LlamactlError):
    """Raised when a request to a llamactl server does not succeed."""

    code = "client_error"


class ApiError(ClientError):
    """Raised when the server answers with an error status; ``code`` and ``message`` are its own."""

    def __init__(
        self, status: int, code: str, message: str, *, details: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.details = details  # more lines a reader may need (a failed backend's output)


class Unreachable(ClientError):
    """Raised when the server cannot be reached or stops answering mid-request."""

    code = "unreachable"
    status = 503


class DatabaseError(LlamactlError):
    """Raised when the database fails or holds something unexpected."""

    code = "database_error"


class DatabaseUnavailable(DatabaseError):
    """Raised when the database cannot take a write now: another process holds its lock
    longer than ``busy_timeout``, the disk is full or read-only, or the file was deleted or
    replaced while llamactl runs. Nothing was written."""

    code = "database_unavailable"
    status = 503


class MigrationError(DatabaseError):
    """Raised when the schema cannot be brought to the version this code expects."""

    code = "migration_error"


class NotALlamactlDatabase(MigrationError):
    """Raised when the database holds tables that llamactl did not create."""

    code = "not_a_llamactl_database"


class JsonImportError(LlamactlError):
    """Raised when a legacy instance JSON file cannot be read or validated."""

    code = "json_import_error"

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path
