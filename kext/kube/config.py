"""Where kube-apiserver is and how kext proves who it is: a kubeconfig file or the pod's
service account (client-go's clientcmd and rest.InClusterConfig, the parts kext needs).

`ClusterAccess` is the result: the server URL, the CA that verifies it, and a client
certificate and/or a bearer token (inline or a file re-read as it rotates). Its repr never
shows a token or a key. TLS is always verified: `insecure-skip-tls-verify` is refused.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kext.config import KubernetesConfig

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class KubeConfigError(Exception):
    """The kubeconfig or in-cluster environment cannot be used; the message says why."""


@dataclass(frozen=True)
class ClusterAccess:
    """How to reach and authenticate to one kube-apiserver."""

    server: str  # https://host:port, possibly with a path prefix
    ca_pem: bytes = field(default=b"", repr=False)  # PEM CA bundle; b"": the system's roots
    client_cert_pem: bytes = field(default=b"", repr=False)  # leaf, then intermediates
    client_key_pem: bytes = field(default=b"", repr=False)
    token: str = field(default="", repr=False)
    token_file: str = ""  # re-read as it rotates; wins over token (as client-go)
    tls_server_name: str = ""  # the name to verify instead of the URL's host
    source: str = ""  # where this came from, for messages


def from_settings(settings: KubernetesConfig) -> ClusterAccess | None:
    """The access server.yaml's `kubernetes:` section describes, or None when it names none."""
    if settings.in_cluster:
        return in_cluster()
    if settings.kubeconfig:
        return load_kubeconfig(settings.kubeconfig)
    return None


def in_cluster(environ: Mapping[str, str] | None = None,
               directory: str = SERVICE_ACCOUNT_DIR) -> ClusterAccess:
    """The pod's service account: KUBERNETES_SERVICE_HOST/PORT, `<directory>/token` (re-read
    as the kubelet rotates it) and `<directory>/ca.crt`."""
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise KubeConfigError("unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST "
                              "and KUBERNETES_SERVICE_PORT must be defined")
    token_file = os.path.join(directory, "token")
    try:
        with open(token_file, "rb") as f:
            if not f.read().strip():
                raise KubeConfigError(f"in-cluster token file {token_file} is empty")
    except OSError as error:
        raise KubeConfigError(f"cannot read the in-cluster token file {token_file}: "
                              f"{error.strerror or error}") from None
    ca_file = os.path.join(directory, "ca.crt")
    ca = _certificates(_read(ca_file, "in-cluster CA file"), ca_file)
    return ClusterAccess(server=f"https://{_host_port(host, port)}", ca_pem=ca,
                         token_file=token_file, source="in-cluster service account")


def kubeconfig_paths(environ: Mapping[str, str] | None = None) -> list[str]:
    """The kubeconfig files kubectl would read: $KUBECONFIG's list, else ~/.kube/config."""
    env = os.environ if environ is None else environ
    listed = [p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    return listed or [os.path.join(os.path.expanduser("~"), ".kube", "config")]


def load_kubeconfig(paths: str | Sequence[str], context: str = "") -> ClusterAccess:
    """The cluster and user of `context` (default: current-context) in the kubeconfig file(s).
    Several files merge as kubectl merges $KUBECONFIG: the first to name an entry wins.
    Relative file paths inside resolve against the file that holds them."""
    files = [paths] if isinstance(paths, str) else list(paths)
    merged = _Merged()
    for path in files:
        merged.add(path)
    if not merged.found:
        raise KubeConfigError(f"no kubeconfig file found at {', '.join(files)}")
    name = context or merged.current_context
    if not name:
        raise KubeConfigError(f"{', '.join(files)}: no current-context is set")
    if name not in merged.contexts:
        raise KubeConfigError(f"{', '.join(files)}: context {name!r} does not exist")
    ctx, ctx_file = merged.contexts[name]
    where = f"kubeconfig {ctx_file}, context {name}"
    cluster_name, user_name = str(ctx.get("cluster") or ""), str(ctx.get("user") or "")
    if cluster_name not in merged.clusters:
        raise KubeConfigError(f"{where}: cluster {cluster_name!r} does not exist")
    cluster, cluster_file = merged.clusters[cluster_name]
    user, user_file = merged.users.get(user_name, ({}, ctx_file))
    return _access(cluster, cluster_file, user, user_file, f"{where}, cluster {cluster_name}",
                   f"{where}, user {user_name}", where)


class _Merged:
    def __init__(self) -> None:
        self.found = False
        self.current_context = ""
        self.clusters: dict[str, tuple[dict[str, Any], str]] = {}
        self.users: dict[str, tuple[dict[str, Any], str]] = {}
        self.contexts: dict[str, tuple[dict[str, Any], str]] = {}

    def add(self, path: str) -> None:
        try:
            with open(path, "rb") as f:
                document = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except FileNotFoundError:
            return
        except OSError as error:
            raise KubeConfigError(f"cannot read kubeconfig {path}: "
                                  f"{error.strerror or error}") from None
        except yaml.YAMLError as error:
            raise KubeConfigError(f"kubeconfig {path} is not valid YAML: {error}") from None
        self.found = True
        if document is None:
            return
        if not isinstance(document, dict):
            raise KubeConfigError(f"kubeconfig {path}: expected a Config mapping")
        self.current_context = self.current_context or str(document.get("current-context") or "")
        for key, table in (("clusters", self.clusters), ("users", self.users),
                           ("contexts", self.contexts)):
            inner = key[:-1]  # clusters[].cluster, users[].user, contexts[].context
            for entry in document.get(key) or []:
                if isinstance(entry, dict) and entry.get("name") not in table:
                    table[str(entry.get("name"))] = (dict(entry.get(inner) or {}), path)


def _access(cluster: dict[str, Any], cluster_file: str, user: dict[str, Any], user_file: str,
            cluster_where: str, user_where: str, source: str) -> ClusterAccess:
    server = str(cluster.get("server") or "")
    if not server:
        raise KubeConfigError(f"{cluster_where}: server is not set")
    parts = urlsplit(server)
    if parts.scheme != "https" or not parts.hostname:
        raise KubeConfigError(f"{cluster_where}: server {server!r} must be an https:// URL "
                              "(kext talks to kube-apiserver over verified TLS only)")
    if cluster.get("insecure-skip-tls-verify"):
        raise KubeConfigError(f"{cluster_where}: insecure-skip-tls-verify is not allowed: kext "
                              "verifies kube-apiserver's certificate; give certificate-authority "
                              "or certificate-authority-data instead")
    if cluster.get("proxy-url"):
        raise KubeConfigError(f"{cluster_where}: proxy-url is not supported by kext")
    ca = _pem(cluster, "certificate-authority", cluster_file, cluster_where)
    if ca:
        ca = _certificates(ca, f"{cluster_where}: certificate-authority")
    for unsupported in ("exec", "auth-provider", "username", "password", "as"):
        if user.get(unsupported):
            raise KubeConfigError(f"{user_where}: {unsupported} is not supported by kext; use a "
                                  "client certificate, token or tokenFile")
    cert = _pem(user, "client-certificate", user_file, user_where)
    key = _pem(user, "client-key", user_file, user_where)
    if bool(cert) != bool(key):
        raise KubeConfigError(f"{user_where}: client-certificate and client-key "
                              "must be given together")
    if cert:
        _certificates(cert, f"{user_where}: client-certificate")
        try:
            serialization.load_pem_private_key(key, password=None)
        except (ValueError, TypeError):
            raise KubeConfigError(f"{user_where}: client-key is not an unencrypted PEM "
                                  "private key") from None
    token_file = str(user.get("tokenFile") or "")
    if token_file:
        token_file = _resolve(token_file, user_file)
        _read(token_file, f"{user_where}: tokenFile")
    return ClusterAccess(
        server=server.rstrip("/"), ca_pem=ca, client_cert_pem=cert, client_key_pem=key,
        token=str(user.get("token") or ""), token_file=token_file,
        tls_server_name=str(cluster.get("tls-server-name") or ""), source=source,
    )


def _pem(entry: dict[str, Any], key: str, origin: str, where: str) -> bytes:
    """The `<key>-data` (base64) or the file `<key>` names, as bytes; b"" when neither."""
    data = entry.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(str(data), validate=True)
        except (binascii.Error, ValueError):
            raise KubeConfigError(f"{where}: {key}-data is not valid base64") from None
    path = entry.get(key)
    return _read(_resolve(str(path), origin), f"{where}: {key}") if path else b""


def _resolve(path: str, origin: str) -> str:
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.join(os.path.dirname(origin) or ".", path)


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as error:
        raise KubeConfigError(f"{what}: cannot read {path}: {error.strerror or error}") from None


def _certificates(pem: bytes, what: str) -> bytes:
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise KubeConfigError(f"{what} holds no PEM certificate") from None
    return pem


def _host_port(host: str, port: str) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"
