"""The `server.yaml` schema (SPEC §3) as typed dataclasses, and its loading and validation.

`load_config(path)` reads the file, checks every key and every declared resource, and either
returns a `ServerConfig` or raises `ConfigError` carrying one line per problem, each naming the
key path (`storage.etcd.endpoints[0]: ...`). Keys are camelCase in YAML and snake_case here.
A key given as `null` (or left empty) takes its default. Relative paths in the file resolve
against the current working directory, as kube-apiserver's flags do.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from kext.admission.policy.definition import (
    BINDING_KIND,
    POLICY_KIND,
    Binding,
    binding_from_manifest,
    policy_from_manifest,
)
from kext.admission.policy.validator import CompiledPolicy
from kext.admission.webhook.definition import (
    CONFIGURATION_KINDS,
    MUTATING,
    VALIDATING,
    Webhook,
    configuration_webhooks,
    load_ca_bundle,
    webhook_from_manifest,
)
from kext.api.errors import Cause, field_invalid
from kext.api.resource import ResourceDefinition, parse_crd
from kext.audit.policy import PolicyError, load_policy

API_VERSION = "kext.io/v1alpha1"
KIND = "ServerConfig"
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass
class ServingConfig:
    bind_address: str = "127.0.0.1"
    port: int = 8443
    cert_dir: str = "var/certs"
    cert_file: str = ""
    key_file: str = ""
    max_requests_inflight: int = 400
    max_mutating_requests_inflight: int = 200
    request_timeout_seconds: float = 60.0
    max_request_body_bytes: int = 3 * 1024 * 1024
    # Worker processes sharing the port, each with its own watch cache ("auto": one per core,
    # resolved when the configuration is read); 1 serves from this process, no supervisor.
    workers: int = 1

    # as kube's http.Server ReadHeaderTimeout: a connection that has not sent a request's
    # headers by then is closed
    read_header_timeout_seconds: float = 32.0
    # SIGTERM: readyz fails at once, the listener closes this much later (kube's
    # --shutdown-delay-duration: time for load balancers to stop sending traffic)
    shutdown_delay_seconds: float = 1.0


@dataclass
class EtcdConfig:
    endpoints: list[str] = field(default_factory=list)
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


@dataclass
class EmbeddedEtcdConfig:
    data_dir: str = "var/etcd"


@dataclass
class WatchCacheConfig:
    bookmark_interval: float = 60.0  # seconds between a watcher's bookmarks (kube's 1m)


@dataclass
class StorageConfig:
    prefix: str = "/registry"
    etcd: EtcdConfig = field(default_factory=EtcdConfig)
    embedded: EmbeddedEtcdConfig = field(default_factory=EmbeddedEtcdConfig)
    watch_cache: WatchCacheConfig = field(default_factory=WatchCacheConfig)


@dataclass
class RequestHeaderConfig:
    client_ca_file: str = ""
    allowed_names: list[str] = field(default_factory=list)
    username_headers: list[str] = field(default_factory=lambda: ["X-Remote-User"])
    group_headers: list[str] = field(default_factory=lambda: ["X-Remote-Group"])
    extra_header_prefixes: list[str] = field(default_factory=lambda: ["X-Remote-Extra-"])
    uid_headers: list[str] = field(default_factory=lambda: ["X-Remote-Uid"])


@dataclass
class TokenReviewConfig:
    enabled: bool = False
    cache_ttl_seconds: float = 10.0
    audiences: list[str] = field(default_factory=list)  # empty: the review names none


@dataclass
class AuthenticationConfig:
    anonymous: bool = False
    client_ca_file: str = ""
    request_header: RequestHeaderConfig = field(default_factory=RequestHeaderConfig)
    from_cluster: bool = False
    token_review: TokenReviewConfig = field(default_factory=TokenReviewConfig)


@dataclass
class AuthorizationConfig:
    mode: str = "AlwaysAllow"  # or "Delegated"
    always_allow_paths: list[str] = field(default_factory=lambda: ["/healthz", "/livez", "/readyz"])
    always_allow_groups: list[str] = field(default_factory=lambda: ["system:masters"])
    cache_authorized_ttl_seconds: float = 10.0
    cache_unauthorized_ttl_seconds: float = 10.0


@dataclass
class KubernetesConfig:
    kubeconfig: str = ""
    in_cluster: bool = False


@dataclass
class HookConfig:
    """One server-wide Python admission hook (`admission.hooks`)."""

    hook: str  # "package.module:callable"
    type: str = "Validating"  # or "Mutating"
    failure_policy: str = "Fail"  # or "Ignore"


@dataclass
class AdmissionConfig:
    hooks: list[HookConfig] = field(default_factory=list)
    # admission.webhooks' entries, then those of admission.configurations, in order
    webhooks: list[Webhook] = field(default_factory=list)
    # admission.configurations' ValidatingAdmissionPolicies (compiled) and their bindings
    policies: list[CompiledPolicy] = field(default_factory=list)
    bindings: list[Binding] = field(default_factory=list)
    from_cluster: bool = False


@dataclass
class AuditConfig:
    policy_file: str = ""  # an audit.k8s.io/v1 Policy; "" = no audit
    log_path: str = ""  # audit.k8s.io/v1 Event lines; "-" = standard output
    max_size_mb: int = 100
    max_backups: int = 10


@dataclass
class LoggingConfig:
    format: str = "text"  # or "json"
    level: str = "info"  # debug, info, warning or error


@dataclass
class ServerConfig:
    serving: ServingConfig = field(default_factory=ServingConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    authentication: AuthenticationConfig = field(default_factory=AuthenticationConfig)
    authorization: AuthorizationConfig = field(default_factory=AuthorizationConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    resources: list[ResourceDefinition] = field(default_factory=list)


class ConfigError(Exception):
    """The configuration cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def load_config(path: str) -> ServerConfig:
    """Read and validate the server.yaml at path (relative paths inside resolve against the
    current directory). Raises ConfigError listing every problem found."""
    text, problem = _read_text(path)
    if problem:
        raise ConfigError([problem])
    documents, problems = load_yaml_documents(text, path)
    if problems:
        raise ConfigError(problems)
    if len(documents) > 1:
        raise ConfigError([f"{path}: expected one YAML document, found {len(documents)}"])
    return parse_config(documents[0] if documents else None, source=path)


def parse_config(document: object, source: str = "config") -> ServerConfig:
    """Validate an already-parsed server.yaml document; raises ConfigError like load_config."""
    problems: list[str] = []
    if not isinstance(document, dict):
        raise ConfigError(
            [
                f"{source}: expected a mapping with apiVersion: {API_VERSION} "
                f"and kind: {KIND}, got {_describe(document)}"
            ]
        )
    top = _Fields(document, "", problems)
    api_version = top.raw("apiVersion")
    if api_version != API_VERSION:
        problems.append(f"apiVersion: expected {API_VERSION}, got {_describe(api_version)}")
    kind = top.raw("kind")
    if kind != KIND:
        problems.append(f"kind: expected {KIND}, got {_describe(kind)}")
    config = ServerConfig(
        serving=_serving(top.section("serving")),
        storage=_storage(top.section("storage")),
        authentication=_authentication(top.section("authentication")),
        authorization=_authorization(top.section("authorization")),
        kubernetes=_kubernetes(top.section("kubernetes")),
        admission=_admission(top.section("admission")),
        audit=_audit(top.section("audit")),
        logging=_logging(top.section("logging")),
        resources=_resources(top.raw("resources"), problems),
    )
    top.finish()
    _check_cluster_access(config, problems)
    if problems:
        raise ConfigError(problems)
    return config


# --- YAML -----------------------------------------------------------------------------------

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml_documents(text: str, source: str) -> tuple[list[object], list[str]]:
    """Every non-empty YAML document in text, or one problem line per syntax error
    (`<source>:<line>:<column>: <what>`) or duplicate key (kube-apiserver's strict decoding
    rejects those too, where PyYAML would silently keep the last)."""
    loader = _Loader(text)
    documents: list[object] = []
    problems: list[str] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            duplicates = _duplicate_keys(node, "", set())
            problems += [f"{source}:{line}: duplicate key {path}" for line, path in duplicates]
            document = loader.construct_document(node)
            if document is not None:
                documents.append(document)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        what = error.problem or error.context or "invalid YAML"
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        return [], [f"{where}: {what}"]
    except yaml.YAMLError as error:
        return [], [f"{source}: {' '.join(str(error).split())}"]
    finally:
        loader.dispose()
    return ([] if problems else documents), problems


def _duplicate_keys(node: yaml.Node, path: str, visited: set[int]) -> list[tuple[int, str]]:
    """(line, key path) of every key repeated in a mapping under node."""
    if id(node) in visited:  # an alias: already walked (and maybe recursive)
        return []
    visited.add(id(node))
    found: list[tuple[int, str]] = []
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found += _duplicate_keys(item, f"{path}[{i}]", visited)
    elif isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key_path = f"{path}.{key_node.value}" if path else str(key_node.value)
            if key_node.value in seen:
                found.append((key_node.start_mark.line + 1, key_path))
            seen.add(key_node.value)
            found += _duplicate_keys(value_node, key_path, visited)
    return found


def _read_text(path: str) -> tuple[str, str]:
    """The text of path, or a one-line problem."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(), ""
    except FileNotFoundError:
        return "", f"{path}: no such file"
    except IsADirectoryError:
        return "", f"{path}: is a directory, expected a file"
    except UnicodeDecodeError:
        return "", f"{path}: not UTF-8 text"
    except OSError as error:
        return "", f"{path}: cannot read: {error.strerror}"


# --- values ---------------------------------------------------------------------------------

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float | None:
    """Seconds in a Go duration string (`10s`, `1m30s`, `500ms`, `0`), or None if malformed."""
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    if s[:1] in "+-" and s:
        s = s[1:]
    if s == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(s):
        match = _DURATION_PART.match(s, pos)
        if not match:
            return None
        total += float(match[1]) * _DURATION_UNITS[match[2]]
        pos = match.end()
    return sign * total if pos else None


def _describe(value: object) -> str:
    """A value as it would read in YAML, for messages."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def _file_problem(path: str) -> str:
    """Why path cannot be used as an input file, or ''."""
    if not os.path.exists(path):
        return f"no such file: {path}"
    if os.path.isdir(path):
        return f"is a directory, expected a file: {path}"
    if not os.access(path, os.R_OK):
        return f"cannot read: {path}"
    return ""


def _url_problem(value: str, schemes: tuple[str, ...], port_required: bool) -> bool:
    """Whether value is not an absolute URL with one of schemes, a host and nothing odd."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return True
    return (
        parts.scheme not in schemes
        or not parts.hostname
        or (port_required and port is None)
        or bool(parts.username or parts.password or parts.query or parts.fragment)
    )


_T = TypeVar("_T")


class _Fields:
    """Reads the keys of one YAML mapping, recording one problem per bad or unknown key."""

    def __init__(self, value: object, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        self.seen: set[str] = set()
        self.data: dict[Any, Any] = {}
        if isinstance(value, dict):
            self.data = value
        elif value is not None:
            problems.append(f"{path}: expected a mapping, got {_describe(value)}")

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.key_path(key)}: {message}")

    def raw(self, key: str) -> object:
        self.seen.add(key)
        return self.data.get(key)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def _typed(
        self, key: str, default: _T, convert: Callable[[object], _T | None], want: str
    ) -> _T:
        value = self.raw(key)
        if value is None:
            return default
        converted = convert(value)
        if converted is None:
            self.problem(key, f"expected {want}, got {_describe(value)}")
            return default
        return converted

    def string(self, key: str, default: str = "") -> str:
        return self._typed(key, default, lambda v: v if isinstance(v, str) else None, "a string")

    def boolean(self, key: str, default: bool) -> bool:
        return self._typed(
            key, default, lambda v: v if isinstance(v, bool) else None, "true or false"
        )

    def integer(self, key: str, default: int, minimum: int, maximum: int | None = None) -> int:
        def convert(v: object) -> int | None:
            return v if isinstance(v, int) and not isinstance(v, bool) else None

        value = self._typed(key, default, convert, "an integer")
        if maximum is not None and not minimum <= value <= maximum:
            self.problem(key, f"expected an integer between {minimum} and {maximum}, got {value}")
            return default
        if value < minimum:
            self.problem(key, f"expected an integer of at least {minimum}, got {value}")
            return default
        return value

    def number(self, key: str, default: float, minimum: float, maximum: float) -> float:
        def convert(v: object) -> float | None:
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

        value = self._typed(key, default, convert, "a number")
        if not minimum <= value <= maximum:
            self.problem(
                key, f"expected a number between {minimum:g} and {maximum:g}, got {value:g}"
            )
            return default
        return value

    def duration(self, key: str, default: float, minimum: float = 0.0) -> float:
        def convert(v: object) -> float | None:
            return parse_duration(v) if isinstance(v, str) else None

        value = self._typed(key, default, convert, "a duration like 10s or 1m")
        if value < minimum:
            self.problem(key, "expected a positive duration" if minimum else "must not be negative")
            return default
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        want = ", ".join(choices[:-1]) + f" or {choices[-1]}"
        return self._typed(key, default, lambda v: v if v in choices else None, want)

    def strings(self, key: str, default: list[str]) -> list[str]:
        value = self.raw(key)
        if value is None:
            return list(default)
        if not isinstance(value, list):
            self.problem(key, f"expected a list of strings, got {_describe(value)}")
            return list(default)
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append(item)
            else:
                self.problem(f"{key}[{i}]", f"expected a string, got {_describe(item)}")
        return out

    def items(self, key: str) -> Iterator[tuple[str, object]]:
        """The (path, item) pairs of a list-valued key."""
        value = self.raw(key)
        if value is None:
            return
        if not isinstance(value, list):
            self.problem(key, f"expected a list, got {_describe(value)}")
            return
        for i, item in enumerate(value):
            yield f"{self.key_path(key)}[{i}]", item

    def file(self, key: str) -> str:
        """An optional input file: '' or a path that exists."""
        path = self.string(key)
        if path:
            problem = _file_problem(path)
            if problem:
                self.problem(key, problem)
        return path

    def pair(self, cert_key: str, key_key: str) -> tuple[str, str]:
        """A certificate and key file: both or neither."""
        cert, key = self.file(cert_key), self.file(key_key)
        if cert and not key and self.has(cert_key):
            self.problem(key_key, f"required when {self.key_path(cert_key)} is set")
        if key and not cert and self.has(key_key):
            self.problem(cert_key, f"required when {self.key_path(key_key)} is set")
        return cert, key

    def section(self, key: str) -> _Fields:
        return _Fields(self.raw(key), self.key_path(key), self.problems)

    def finish(self) -> None:
        """Record the keys nobody asked for."""
        known = sorted(self.seen)
        for key in self.data:
            if key in self.seen:
                continue
            name = str(key)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.problems.append(f"{self.key_path(name)}: unknown key{hint}")


# --- sections -------------------------------------------------------------------------------

_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_HOOK = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def _serving(f: _Fields) -> ServingConfig:
    defaults = ServingConfig()
    bind_address = f.string("bindAddress", defaults.bind_address)
    try:
        ipaddress.ip_address(bind_address)
    except ValueError:
        f.problem(
            "bindAddress", f"expected an IP address like 127.0.0.1 or 0.0.0.0, got {bind_address!r}"
        )
    cert_file, key_file = f.pair("certFile", "keyFile")
    cert_dir = f.string("certDir", defaults.cert_dir)
    if not cert_dir and not cert_file:
        f.problem(
            "certDir", "required when serving.certFile is empty (self-signed material goes there)"
        )
    config = ServingConfig(
        bind_address=bind_address,
        port=f.integer("port", defaults.port, 1, 65535),
        cert_dir=cert_dir,
        cert_file=cert_file,
        key_file=key_file,
        max_requests_inflight=f.integer("maxRequestsInflight", defaults.max_requests_inflight, 0),
        max_mutating_requests_inflight=f.integer(
            "maxMutatingRequestsInflight", defaults.max_mutating_requests_inflight, 0
        ),
        request_timeout_seconds=f.duration(
            "requestTimeout", defaults.request_timeout_seconds, minimum=1e-9
        ),
        max_request_body_bytes=f.integer("maxRequestBodyBytes", defaults.max_request_body_bytes, 1),
        workers=_workers(f),

        read_header_timeout_seconds=f.duration(
            "readHeaderTimeout", defaults.read_header_timeout_seconds, minimum=1e-9
        ),
        shutdown_delay_seconds=f.duration("shutdownDelayDuration",
                                          defaults.shutdown_delay_seconds),
    )
    # The in-flight limits are split across the workers (kube's limits are per server; here
    # the pod's total stays what was configured): each needs a share of at least one.
    for key, limit in (("maxRequestsInflight", config.max_requests_inflight),
                       ("maxMutatingRequestsInflight", config.max_mutating_requests_inflight)):
        if 0 < limit < config.workers:
            f.problem(key, f"expected 0 (no limit) or at least serving.workers "
                           f"({config.workers}): the limit is split across the workers")
    f.finish()
    return config


def _workers(f: _Fields) -> int:
    value = f.raw("workers")
    if value is None:
        return ServingConfig.workers
    if value == "auto":
        return available_cpus()
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    f.problem("workers", f"expected a positive integer or auto, got {_describe(value)}")
    return ServingConfig.workers


def available_cpus() -> int:
    """The cores this process may run on (serving.workers: auto): its CPU affinity, lowered
    to the cgroup's CPU quota when one is set (a container's CPU limit; cgroup v2 cpu.max or
    v1 cpu.cfs_quota_us), rounded up; at least 1."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus or 1, math.ceil(quota))
    return max(cpus or 1, 1)


def _cgroup_cpu_quota() -> float | None:
    """The cgroup's CPU quota in cores, or None when unlimited or unreadable."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as q, \
                open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as p:
            v1_quota, v1_period = int(q.read()), int(p.read())
        return None if v1_quota <= 0 else v1_quota / v1_period
    except (OSError, ValueError):
        return None


def _storage(f: _Fields) -> StorageConfig:
    defaults = StorageConfig()
    prefix = f.string("prefix", defaults.prefix)
    if not prefix.startswith("/") or not prefix.strip("/"):
        f.problem("prefix", f"expected an etcd key prefix like /registry, got {prefix!r}")
    prefix = "/" + prefix.strip("/")
    etcd = f.section("etcd")
    endpoints = etcd.strings("endpoints", [])
    for i, endpoint in enumerate(endpoints):
        if _url_problem(endpoint, ("http", "https"), port_required=True):
            etcd.problem(
                f"endpoints[{i}]", f"expected a URL like https://host:2379, got {endpoint!r}"
            )
    ca_file = etcd.file("caFile")
    cert_file, key_file = etcd.pair("certFile", "keyFile")
    etcd.finish()
    embedded = f.section("embedded")
    data_dir = embedded.string("dataDir", defaults.embedded.data_dir)
    if not data_dir and not endpoints:
        embedded.problem("dataDir", "required when storage.etcd.endpoints is empty")
    embedded.finish()
    watch_cache = f.section("watchCache")
    bookmark_interval = watch_cache.duration(
        "bookmarkInterval", defaults.watch_cache.bookmark_interval, minimum=1e-9
    )
    watch_cache.finish()
    f.finish()
    return StorageConfig(
        prefix=prefix,
        etcd=EtcdConfig(endpoints, ca_file, cert_file, key_file),
        embedded=EmbeddedEtcdConfig(data_dir),
        watch_cache=WatchCacheConfig(bookmark_interval),
    )


def _header_names(f: _Fields, key: str, default: list[str]) -> list[str]:
    names = f.strings(key, default)
    for i, name in enumerate(names):
        if not _HEADER_NAME.match(name):
            f.problem(f"{key}[{i}]", f"expected an HTTP header name, got {name!r}")
    return names


def _authentication(f: _Fields) -> AuthenticationConfig:
    defaults = AuthenticationConfig()
    anonymous = f.boolean("anonymous", defaults.anonymous)
    client_ca_file = f.file("clientCAFile")
    rh = f.section("requestHeader")
    rh_defaults = RequestHeaderConfig()
    request_header = RequestHeaderConfig(
        client_ca_file=rh.file("clientCAFile"),
        allowed_names=rh.strings("allowedNames", []),
        username_headers=_header_names(rh, "usernameHeaders", rh_defaults.username_headers),
        group_headers=_header_names(rh, "groupHeaders", rh_defaults.group_headers),
        extra_header_prefixes=_header_names(
            rh, "extraHeaderPrefixes", rh_defaults.extra_header_prefixes
        ),
        uid_headers=_header_names(rh, "uidHeaders", rh_defaults.uid_headers),
    )
    if request_header.client_ca_file and not request_header.username_headers:
        rh.problem("usernameHeaders", "required when requestHeader.clientCAFile is set")
    if request_header.allowed_names and not rh.has("clientCAFile"):
        rh.problem("allowedNames", f"needs {rh.key_path('clientCAFile')}")
    rh.finish()
    from_cluster = f.boolean("fromCluster", defaults.from_cluster)
    tr = f.section("tokenReview")
    token_review = TokenReviewConfig(
        enabled=tr.boolean("enabled", False),
        cache_ttl_seconds=tr.duration("cacheTTL", TokenReviewConfig().cache_ttl_seconds),
        audiences=tr.strings("audiences", []),
    )
    tr.finish()
    f.finish()
    return AuthenticationConfig(
        anonymous, client_ca_file, request_header, from_cluster, token_review
    )


def _authorization(f: _Fields) -> AuthorizationConfig:
    defaults = AuthorizationConfig()
    paths = f.strings("alwaysAllowPaths", defaults.always_allow_paths)
    for i, path in enumerate(paths):
        if not path.startswith("/") or "*" in path[:-1]:
            f.problem(
                f"alwaysAllowPaths[{i}]",
                f"expected a path like /healthz or a prefix like /debug/*, got {path!r}",
            )
    config = AuthorizationConfig(
        mode=f.choice("mode", defaults.mode, ("AlwaysAllow", "Delegated")),
        always_allow_paths=paths,
        always_allow_groups=f.strings("alwaysAllowGroups", defaults.always_allow_groups),
        cache_authorized_ttl_seconds=f.duration(
            "cacheAuthorizedTTL", defaults.cache_authorized_ttl_seconds
        ),
        cache_unauthorized_ttl_seconds=f.duration(
            "cacheUnauthorizedTTL", defaults.cache_unauthorized_ttl_seconds
        ),
    )
    f.finish()
    return config


def _kubernetes(f: _Fields) -> KubernetesConfig:
    config = KubernetesConfig(f.file("kubeconfig"), f.boolean("inCluster", False))
    if config.kubeconfig and config.in_cluster:
        f.problem("inCluster", "set either kubernetes.kubeconfig or kubernetes.inCluster, not both")
    f.finish()
    return config


def _admission(f: _Fields) -> AdmissionConfig:
    hooks = [hook for path, item in f.items("hooks")
             if (hook := _hook(item, path, f.problems)) is not None]
    webhooks: list[Webhook] = []
    names: dict[str, str] = {}
    for index, (path, item) in enumerate(f.items("webhooks")):
        if isinstance(item, dict):
            webhook = _webhook(item, path, index, names, f.problems)
            if webhook is not None:
                webhooks.append(webhook)
        else:
            f.problems.append(
                f"{path}: expected a mapping with name and url, got {_describe(item)}"
            )
    policies: list[CompiledPolicy] = []
    bindings: list[Binding] = []
    configurations: dict[tuple[str, str], str] = {}
    for path, item in f.items("configurations"):
        for manifest, where in _manifests(item, path, "webhook configuration", f.problems):
            _configuration(manifest, where, configurations, webhooks, policies, bindings,
                           f.problems)
    _unbound(policies, bindings, f.problems)
    from_cluster = f.boolean("fromCluster", False)
    f.finish()
    return AdmissionConfig(hooks, webhooks, policies, bindings, from_cluster)


def _hook(item: object, path: str, problems: list[str]) -> HookConfig | None:
    """An `admission.hooks` entry: "package.module:callable" (validating, failing closed) or
    {hook, type, failurePolicy}."""
    if isinstance(item, str):
        item = {"hook": item}
        short = True
    elif isinstance(item, dict):
        short = False
    else:
        problems.append(f'{path}: expected "package.module:callable" or a mapping with hook, '
                        f"got {_describe(item)}")
        return None
    h = _Fields(item, path, problems)
    hook = h.string("hook")
    where = path if short else h.key_path("hook")
    if not hook:
        problems.append(f"{where}: required")
    elif not _HOOK.match(hook):
        problems.append(f'{where}: expected "package.module:callable", got {hook!r}')
    config = HookConfig(
        hook=hook,
        type=h.choice("type", "Validating", ("Mutating", "Validating")),
        failure_policy=h.choice("failurePolicy", "Fail", ("Fail", "Ignore")),
    )
    h.finish()
    return config if hook and _HOOK.match(hook) else None


# What an `admission.webhooks` entry leaves out: no side effects, AdmissionReview v1, and
# called on the creates and updates of every resource kext serves.
_WEBHOOK_DEFAULTS: dict[str, Any] = {
    "sideEffects": "None",
    "admissionReviewVersions": ["v1"],
    "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": ["*"], "apiVersions": ["*"],
               "resources": ["*"]}],
}


def _webhook(item: dict[str, Any], path: str, index: int, names: dict[str, str],
             problems: list[str]) -> Webhook | None:
    """An `admission.webhooks` entry: an admissionregistration.k8s.io/v1 webhook's fields,
    with `url` and `caFile` for its clientConfig and `type` (Mutating or Validating)."""
    fields = dict(item)
    given = len(problems)
    name = fields.get("name")
    if not name:
        problems.append(f"{path}.name: required")
    elif isinstance(name, str) and name in names:
        problems.append(f"{path}.name: {name!r} is already used by {names[name]}")
    elif isinstance(name, str):
        names[name] = path
    w = _Fields({k: fields.pop(k) for k in ("url", "caFile", "type") if k in fields}, path,
                problems)
    url = w.string("url")
    if not url:
        w.problem("url", "required")
    elif _url_problem(url, ("https",), port_required=False):
        w.problem("url", f"expected an https:// URL like https://host:9443/validate, got {url!r}")
        url = ""
    ca_file = w.file("caFile")
    webhook_type = w.choice("type", VALIDATING, (MUTATING, VALIDATING))
    w.finish()
    ca_pem = b""
    if ca_file and not _file_problem(ca_file):
        causes: list[Cause] = []
        with open(ca_file, "rb") as ca:
            ca_pem = load_ca_bundle(ca.read(), "caFile", causes)
        if causes:
            problems.append(f"{path}.caFile: {ca_file} holds no PEM certificates")
    causes = []
    # the url was checked above: a stand-in lets the other fields be checked without it
    fields["clientConfig"] = {"url": url or "https://url.invalid"}
    webhook = webhook_from_manifest(fields, webhook_type, causes, configuration="",
                                    index=index, defaults=_WEBHOOK_DEFAULTS, source=path)
    problems.extend(f"{path}.{c.field}: {c.message}" if c.field else f"{path}: {c.message}"
                    for c in causes if not (c.field == "name" and not name))
    if webhook is None or len(problems) > given:
        return None
    return dataclasses.replace(webhook, ca_pem=ca_pem)


_POLICY_KINDS = (POLICY_KIND, BINDING_KIND)


def _configuration(manifest: object, where: str, seen: dict[tuple[str, str], str],
                   webhooks: list[Webhook], policies: list[CompiledPolicy],
                   bindings: list[Binding], problems: list[str]) -> None:
    """One document of `admission.configurations`: its webhooks, a policy (compiled: an
    expression that does not compile is a problem here, as kube's API refuses it) or a
    binding."""
    kinds = (*CONFIGURATION_KINDS, *_POLICY_KINDS)
    kind = manifest.get("kind") if isinstance(manifest, dict) else None
    if not isinstance(manifest, dict) or kind not in kinds:
        got = f"kind {kind}" if isinstance(kind, str) else _describe(manifest)
        problems.append(f"{where}: expected a {', '.join(kinds[:-1])} or {kinds[-1]}, got {got}")
        return
    name = (manifest.get("metadata") or {}).get("name") if isinstance(
        manifest.get("metadata"), dict) else None
    if isinstance(name, str) and name:
        if (kind, name) in seen:
            problems.append(f"{where}: {kind} {name!r} is already declared by {seen[kind, name]}")
            return
        seen[kind, name] = where
    if kind in _POLICY_KINDS:
        if manifest.get("apiVersion") != "admissionregistration.k8s.io/v1":
            problems.append(f"{where}.apiVersion: expected admissionregistration.k8s.io/v1, "
                            f"got {_describe(manifest.get('apiVersion'))}")
        elif not name:
            problems.append(f"{where}.metadata.name: required")
        else:
            _policy(manifest, where, policies, bindings, problems)
        return
    causes: list[Cause] = []
    found = configuration_webhooks(manifest, causes, source=where)
    problems.extend(f"{where}.{c.field}: {c.message}" for c in causes)
    if not causes:
        webhooks.extend(found)


def _policy(manifest: dict[str, Any], where: str, policies: list[CompiledPolicy],
            bindings: list[Binding], problems: list[str]) -> None:
    causes: list[Cause] = []
    if manifest["kind"] == POLICY_KIND:
        policy = policy_from_manifest(manifest, causes, source=where)
        if policy is not None:
            compiled = CompiledPolicy(policy)
            causes += [field_invalid(path, expression, why)
                       for path, expression, why in compiled.compile_problems()]
            policies.append(compiled)
    else:
        binding = binding_from_manifest(manifest, causes, source=where)
        if binding is not None:
            bindings.append(binding)
    # from a file: `admission.configurations[0] (p.yaml): spec.validations[0]...`
    glue = ": " if where.endswith(")") else "."
    problems.extend(f"{where}{glue}{c.field}: {c.message}" if c.field else f"{where}: {c.message}"
                    for c in causes)


def _unbound(policies: list[CompiledPolicy], bindings: list[Binding],
             problems: list[str]) -> None:
    """A binding naming a policy the files do not declare would never apply: say so."""
    declared = {p.policy.name for p in policies}
    for binding in bindings:
        if binding.policy_name not in declared:
            glue = ": " if binding.source.endswith(")") else "."
            problems.append(f"{binding.source}{glue}spec.policyName: no {POLICY_KIND} "
                            f"{binding.policy_name!r} in admission.configurations")


def _audit(f: _Fields) -> AuditConfig:
    defaults = AuditConfig()
    policy_file = f.file("policyFile")
    if policy_file and not _file_problem(policy_file):
        try:
            load_policy(policy_file)
        except PolicyError as error:
            for problem in error.problems:
                f.problem("policyFile", f"{policy_file}: {problem}")
    log_path = f.string("logPath")
    if log_path and log_path != "-":
        if os.path.isdir(log_path):
            f.problem("logPath", f"is a directory, expected a file: {log_path}")
        elif os.path.exists(log_path) and not os.access(log_path, os.W_OK):
            f.problem("logPath", f"cannot write: {log_path}")
    if policy_file and not log_path:
        f.problem("logPath", 'required when audit.policyFile is set (a file, or "-" for '
                  "standard output)")
    if log_path and not f.has("policyFile"):
        f.problem("policyFile", "required when audit.logPath is set: the policy decides what "
                  "is audited")
    config = AuditConfig(
        policy_file=policy_file,
        log_path=log_path,
        max_size_mb=f.integer("maxSizeMB", defaults.max_size_mb, 1),
        max_backups=f.integer("maxBackups", defaults.max_backups, 0),
    )
    f.finish()
    return config


def _logging(f: _Fields) -> LoggingConfig:
    defaults = LoggingConfig()
    config = LoggingConfig(
        format=f.choice("format", defaults.format, ("text", "json")),
        level=f.choice("level", defaults.level, LOG_LEVELS),
    )
    f.finish()
    return config


def _check_cluster_access(config: ServerConfig, problems: list[str]) -> None:
    """Features that talk to kube-apiserver need a way to reach it."""
    if config.kubernetes.kubeconfig or config.kubernetes.in_cluster:
        return
    needs = "needs kubernetes.kubeconfig or kubernetes.inCluster: true"
    if config.authorization.mode == "Delegated":
        problems.append(f"authorization.mode: Delegated {needs}")
    if config.authentication.token_review.enabled:
        problems.append(f"authentication.tokenReview.enabled: {needs}")
    if config.authentication.from_cluster:
        problems.append(f"authentication.fromCluster: {needs}")
    if config.admission.from_cluster:
        problems.append(f"admission.fromCluster: {needs}")


# --- resources ------------------------------------------------------------------------------


def _manifests(item: object, path: str, what: str,
               problems: list[str]) -> list[tuple[object, str]]:
    """The manifests one `file: PATH` or `inline: {...}` entry (or a bare manifest) at path
    holds, each with the `where` naming it; what names the kind expected, for messages."""
    if isinstance(item, dict) and set(item) == {"file"}:
        file = item["file"]
        if not isinstance(file, str) or not file:
            problems.append(f"{path}.file: expected a file path, got {_describe(file)}")
            return []
        problem = _file_problem(file)
        text, read_problem = ("", "") if problem else _read_text(file)
        if problem or read_problem:
            problems.append(f"{path}.file: {problem or read_problem}")
            return []
        documents, yaml_problems = load_yaml_documents(text, file)
        problems.extend(f"{path}.file: {p}" for p in yaml_problems)
        if not documents and not yaml_problems:
            problems.append(f"{path}.file: no {what} in {file}")
        if len(documents) == 1:
            return [(documents[0], f"{path} ({file})")]
        return [(doc, f"{path} ({file}, document {j + 1})") for j, doc in enumerate(documents)]
    if isinstance(item, dict) and set(item) == {"inline"}:
        return [(item["inline"], f"{path}.inline")]
    if isinstance(item, dict) and "apiVersion" in item and "kind" in item:
        return [(item, path)]
    got = "keys " + ", ".join(map(str, item)) if isinstance(item, dict) else _describe(item)
    problems.append(
        f"{path}: expected `file: PATH`, `inline: {{...}}` or a {what} manifest, got {got}"
    )
    return []


def resource_manifests(index: int, item: object, problems: list[str]) -> list[tuple[object, str]]:
    """The CRD manifests one `resources` entry declares, each with the `where` naming it."""
    return _manifests(item, f"resources[{index}]", "CustomResourceDefinition", problems)


def _resources(value: object, problems: list[str]) -> list[ResourceDefinition]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"resources: expected a list, got {_describe(value)}")
        return []
    definitions: list[ResourceDefinition] = []
    by_name: dict[str, str] = {}
    by_kind: dict[tuple[str, str], str] = {}
    for index, item in enumerate(value):
        for manifest, where in resource_manifests(index, item, problems):
            definition, crd_problems = parse_crd(manifest, where)
            if where.endswith(")"):
                # From a file: `resources[0] (x.yaml): spec.names.plural: ...` reads better
                # than a field path glued to the file name.
                crd_problems = [
                    f"{where}: {p.removeprefix(where + '.')}" if p.startswith(where + ".") else p
                    for p in crd_problems
                ]
            problems.extend(crd_problems)
            if definition is None or crd_problems:
                continue
            if definition.name in by_name:
                problems.append(
                    f"{where}: {definition.name} is already declared by {by_name[definition.name]}"
                )
                continue
            kind_key = (definition.group, definition.kind)
            if kind_key in by_kind:
                problems.append(
                    f"{where}: kind {definition.kind} in group {definition.group} "
                    f"is already declared by {by_kind[kind_key]}"
                )
                continue
            by_name[definition.name] = where
            by_kind[kind_key] = where
            definitions.append(definition)
    return definitions


def unimplemented(config: ServerConfig) -> list[str]:
    """Settings this version of kext accepts in the schema but does not carry out yet, one
    line each: serving with them would silently ignore them (for authorization: fail open),
    so kext refuses to start instead."""
    problems: list[str] = []
    return problems
