"""The `server.yaml` schema (SPEC §3) as typed dataclasses, and its loading and validation."""

from __future__ import annotations

from dataclasses import dataclass, field

from kext.api.resource import ResourceDefinition


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
class StorageConfig:
    prefix: str = "/registry"
    etcd: EtcdConfig = field(default_factory=EtcdConfig)
    embedded: EmbeddedEtcdConfig = field(default_factory=EmbeddedEtcdConfig)


@dataclass
class RequestHeaderConfig:
    client_ca_file: str = ""
    allowed_names: list[str] = field(default_factory=list)
    username_headers: list[str] = field(default_factory=lambda: ["X-Remote-User"])
    group_headers: list[str] = field(default_factory=lambda: ["X-Remote-Group"])
    extra_header_prefixes: list[str] = field(default_factory=lambda: ["X-Remote-Extra-"])


@dataclass
class TokenReviewConfig:
    enabled: bool = False
    cache_ttl_seconds: float = 10.0


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
    always_allow_paths: list[str] = field(
        default_factory=lambda: ["/healthz", "/livez", "/readyz"]
    )
    always_allow_groups: list[str] = field(default_factory=lambda: ["system:masters"])
    cache_authorized_ttl_seconds: float = 10.0
    cache_unauthorized_ttl_seconds: float = 10.0


@dataclass
class KubernetesConfig:
    kubeconfig: str = ""
    in_cluster: bool = False


@dataclass
class WebhookConfig:
    name: str
    url: str
    ca_file: str = ""
    failure_policy: str = "Fail"  # or "Ignore"
    timeout_seconds: float = 10.0
    type: str = "Validating"  # or "Mutating"


@dataclass
class AdmissionConfig:
    hooks: list[str] = field(default_factory=list)
    webhooks: list[WebhookConfig] = field(default_factory=list)


@dataclass
class ServerConfig:
    serving: ServingConfig = field(default_factory=ServingConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    authentication: AuthenticationConfig = field(default_factory=AuthenticationConfig)
    authorization: AuthorizationConfig = field(default_factory=AuthorizationConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    resources: list[ResourceDefinition] = field(default_factory=list)
    # The directory of the config file: relative paths in it resolve against this.
    base_dir: str = "."
