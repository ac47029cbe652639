"""A real HTTPS stand-in for kube-apiserver, for tests of everything kext asks the cluster.

`KubeAPIServer(directory)` makes its own CAs (serving, client, front-proxy) and certificates,
and serves HTTP/1.1 over TLS with keep-alive from a thread (kext, in another process, reaches
it over the network as it would reach a cluster):

- authentication of each request by client certificate (CN = user, O = groups, signed by the
  client CA) or bearer token (`tokens[token] = User(...)`); anything else is 401;
- authorization of each request against `access` rules (default: allow all), 403 in kube's
  wording otherwise;
- the v1 wire format of `POST /apis/authentication.k8s.io/v1/tokenreviews` (answers from
  `tokens`, or `token_review_error`) and `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`
  (answers from `sar` rules, default: no opinion, so not allowed);
- GET, list (labelSelector, fieldSelector, limit/continue) and watch (resourceVersion,
  timeoutSeconds, allowWatchBookmarks, 410 Expired after `compact()`) of the objects a test
  `put()`s: configmaps, services, endpoints, endpointslices, pods, namespaces, secrets,
  serviceaccounts, (cluster)role(binding)s, apiservices, mutating/validating webhook
  configurations and validating admission policies (+ bindings), the last two defaulted as
  kube-apiserver's admissionregistration.k8s.io/v1 defaulting does (failurePolicy Fail,
  matchPolicy Equivalent, empty selectors, rule scope "*", generation, an empty status);
- the aggregator: a request under `/apis/<group>/<version>` of a stored APIService with a
  `spec.service` is proxied as kube-aggregator does it (503 "service unavailable" unless the
  APIService is Available; else to a ready endpoint of the Service's EndpointSlices, TLS
  verified with the APIService's caBundle for `<service>.<namespace>.svc`, presenting the
  front-proxy client certificate and X-Remote-User/-Group of the caller);
- `GET /version`.

Every request is recorded (`requests`), with the TLS connection it came on (`connections`
counts handshakes). `fail()` answers matching requests with an error (optionally Retry-After)
or drops the connection; `hang()` holds them until `release()` or `stop()`. `stop()` closes
the port and every open connection; `start()` again serves on the same port and CAs.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import copy
import datetime
import email.utils
import http.client
import json
import select
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

from kext.certs import issue_cert, new_ca

HOST = "127.0.0.1"
VERSION = {"major": "1", "minor": "33", "gitVersion": "v1.33.0-kext-stand-in",
           "platform": "linux/amd64"}


@dataclass
class User:
    """An identity the stand-in knows (a token's owner)."""

    name: str
    uid: str = ""
    groups: list[str] = field(default_factory=list)
    extra: dict[str, list[str]] = field(default_factory=dict)
    audiences: list[str] = field(default_factory=list)  # empty: valid for any audience


@dataclass
class Recorded:
    """One request the stand-in was asked."""

    method: str
    path: str
    query: dict[str, str]
    user: str  # who it authenticated as; "" when it did not
    auth: str  # "cert", "token" or ""
    token: str  # the bearer token presented, if any
    body: Any  # the decoded JSON body, or None
    connection: int  # which TLS connection (1, 2, ... in accept order)


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCES = [
    Resource("", "v1", "configmaps", "ConfigMap", True),
    Resource("", "v1", "services", "Service", True),
    Resource("", "v1", "endpoints", "Endpoints", True),
    Resource("", "v1", "pods", "Pod", True),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True),
    Resource("", "v1", "namespaces", "Namespace", False),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding",
             False),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    Resource("apiregistration.k8s.io", "v1", "apiservices", "APIService", False),
    Resource("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
             "MutatingWebhookConfiguration", False),
    Resource("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
             "ValidatingWebhookConfiguration", False),
    Resource("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies",
             "ValidatingAdmissionPolicy", False),
    Resource("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings",
             "ValidatingAdmissionPolicyBinding", False),
]
_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_KIND = {(r.api_version, r.kind): r for r in RESOURCES}


@dataclass(frozen=True)
class Attributes:
    """What a request asks, as kube's RequestInfo and a SubjectAccessReview name it."""

    user: str
    groups: tuple[str, ...]
    verb: str
    api_group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""  # non-resource requests only

    @property
    def resource_request(self) -> bool:
        return not self.path


@dataclass(frozen=True)
class Rule:
    """Matches Attributes; None (or "*") matches anything."""

    allowed: bool
    user: str | None = None
    group: str | None = None  # one of the user's groups
    verb: str | None = None
    api_group: str | None = None
    resource: str | None = None
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None
    path: str | None = None  # a non-resource path; a trailing * matches a prefix
    reason: str = ""

    def matches(self, a: Attributes) -> bool:
        def ok(want: str | None, have: str) -> bool:
            return want is None or want == "*" or want == have

        if self.group is not None and self.group not in a.groups:
            return False
        if self.path is not None:
            if a.resource_request:
                return False
            prefix = self.path.endswith("*")
            if not (a.path.startswith(self.path[:-1]) if prefix else a.path == self.path):
                return False
        elif any(v is not None for v in (self.api_group, self.resource, self.subresource,
                                         self.namespace, self.name)) and not a.resource_request:
            return False
        return (ok(self.user, a.user) and ok(self.verb, a.verb)
                and ok(self.api_group, a.api_group) and ok(self.resource, a.resource)
                and ok(self.subresource, a.subresource) and ok(self.namespace, a.namespace)
                and ok(self.name, a.name))


class Rules:
    """An authorizer: a matching deny rule wins, then a matching allow rule, else the
    default. `decide` returns (allowed, denied, reason) as a SubjectAccessReview status."""

    def __init__(self, default_allow: bool) -> None:
        self.default_allow = default_allow
        self._rules: list[Rule] = []
        self._lock = threading.Lock()

    def allow(self, reason: str = "", **match: str) -> None:
        with self._lock:
            self._rules.append(Rule(True, reason=reason, **match))

    def deny(self, reason: str = "", **match: str) -> None:
        with self._lock:
            self._rules.append(Rule(False, reason=reason, **match))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def decide(self, a: Attributes) -> tuple[bool, bool, str]:
        with self._lock:
            rules = list(self._rules)
        for rule in rules:
            if not rule.allowed and rule.matches(a):
                return False, True, rule.reason
        for rule in rules:
            if rule.allowed and rule.matches(a):
                return True, False, rule.reason
        return self.default_allow, False, ""


@dataclass
class Fault:
    """What to do to matching requests instead of answering them."""

    method: str | None
    path: str  # a path prefix
    code: int = 0  # answer with this code (a Status body) ...
    retry_after: int = 0
    reset: bool = False  # ... or drop the connection without an answer
    hang: bool = False  # ... or hold the request until release()/stop()
    times: int | None = None  # how many requests it applies to (None: until cleared)
    hits: int = 0

    def take(self, method: str, path: str) -> bool:
        if (self.method and self.method != method) or not path.startswith(self.path):
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        self.hits += 1
        return True


@dataclass
class _Event:
    rv: int
    type: str
    resource: Resource
    obj: dict[str, Any]


class _Store:
    """Objects by (resource, namespace, name), and the event log watches read from."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.rv = 1000
        self.compacted = 0
        self.objects: dict[tuple[Resource, str, str], dict[str, Any]] = {}
        self.events: list[_Event] = []
        self.event_rvs: list[int] = []


class _Quiet(Exception):
    """Ends a connection without a traceback (a failed handshake, a dropped request)."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: KubeAPIServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # failed handshakes and dropped connections are the point of some tests


class KubeAPIServer:
    """The stand-in. Use as a context manager or start()/stop(); see the module docstring."""

    def __init__(self, directory: Path, *, port: int = 0) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = port
        self.ca = new_ca("kube-stand-in-ca")
        self.serving = issue_cert(self.ca, "kube-apiserver",
                                  hosts=["localhost", HOST, "kubernetes.default.svc"])
        self.client_ca = new_ca("kube-stand-in-client-ca")
        self.front_proxy_ca = new_ca("kube-stand-in-front-proxy-ca")
        self.front_proxy_client = issue_cert(self.front_proxy_ca, "front-proxy-client",
                                             client=True)
        self.ca_file = self._write("ca.crt", self.ca.cert_pem)
        self.client_ca_file = self._write("client-ca.crt", self.client_ca.cert_pem)
        self.front_proxy_ca_file = self._write("front-proxy-ca.crt",
                                               self.front_proxy_ca.cert_pem)
        self.front_proxy_cert_file = self._write("front-proxy-client.crt",
                                                 self.front_proxy_client.cert_pem)
        self.front_proxy_key_file = self._write("front-proxy-client.key",
                                                self.front_proxy_client.key_pem)
        self.admin_cert_file, self.admin_key_file = self.client_cert(
            "kube-admin", ["system:masters"])
        serving_cert = self._write("apiserver.crt", self.serving.cert_pem)
        serving_key = self._write("apiserver.key", self.serving.key_pem)
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self._tls.load_cert_chain(serving_cert, serving_key)
        self._tls.load_verify_locations(self.client_ca_file)
        self._tls.verify_mode = ssl.CERT_OPTIONAL
        self._tls.set_alpn_protocols(["http/1.1"])

        self.tokens: dict[str, User] = {}
        self.token_review_error = ""  # when set, every TokenReview answers with this error
        self.sar = Rules(default_allow=False)  # SubjectAccessReview decisions
        self.access = Rules(default_allow=True)  # what callers of the stand-in may do
        self.clock_offset = 0.0  # seconds added to the Date header
        self.bookmark_interval: float | None = None  # BOOKMARK events when asked for
        self.requests: list[Recorded] = []
        self.connections = 0
        self.handshake_failures = 0
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._store = _Store()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._released = threading.Event()
        self._sockets: set[socket.socket] = set()

    # -- life cycle

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def open_connections(self) -> int:
        """TLS connections open now."""
        with self._lock:
            return len(self._sockets)

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> None:
        """Serve (again) on self.port (a free port the first time)."""
        assert self._httpd is None, "already running"
        self._stopping = threading.Event()
        self._released = threading.Event()
        self._httpd = _HTTPServer((HOST, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        name=f"kube-stand-in:{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the port and every open connection (watches end, hung requests drop)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        self._released.set()
        with self._store.cond:
            self._store.cond.notify_all()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> KubeAPIServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- credentials

    def client_cert(self, user: str, groups: list[str] | None = None) -> tuple[str, str]:
        """A client certificate for user (O = groups) from the client CA: (cert, key) files."""
        pair = issue_cert(self.client_ca, user, orgs=groups or [], client=True)
        stem = user.replace(":", "_").replace("/", "_")
        return (self._write(f"user-{stem}.crt", pair.cert_pem),
                self._write(f"user-{stem}.key", pair.key_pem))

    def add_token(self, user: str, groups: list[str] | None = None, **fields: Any) -> str:
        """A new bearer token for user; returns the token."""
        token = f"{user.replace(':', '-')}-{uuid.uuid4().hex}"
        self.tokens[token] = User(user, groups=list(groups or []), **fields)
        return token

    def write_kubeconfig(self, path: Path, *, token: str = "", token_file: str = "",
                         cert: tuple[str, str] | None = None, ca_file: str = "") -> Path:
        """A kubeconfig for this stand-in: with token, token_file or cert (cert, key files);
        none given: the admin client certificate (system:masters)."""
        user: dict[str, str] = {}
        if token:
            user["token"] = token
        elif token_file:
            user["tokenFile"] = token_file
        else:
            cert_file, key_file = cert or (self.admin_cert_file, self.admin_key_file)
            user = {"client-certificate": cert_file, "client-key": key_file}
        document = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "stand-in", "cluster": {
                "server": self.url, "certificate-authority": ca_file or self.ca_file}}],
            "users": [{"name": "stand-in-user", "user": user}],
            "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in",
                                                          "user": "stand-in-user"}}],
            "current-context": "stand-in",
        }
        path.write_text(yaml.safe_dump(document))
        return path

    def put_extension_apiserver_authentication(self, **overrides: str) -> dict[str, Any]:
        """kube-system/extension-apiserver-authentication as kube-apiserver publishes it, for
        this stand-in's client and front-proxy CAs (keys in overrides replace its data)."""
        data = {
            "client-ca-file": self.client_ca.cert_pem.decode(),
            "requestheader-client-ca-file": self.front_proxy_ca.cert_pem.decode(),
            "requestheader-allowed-names": json.dumps(["front-proxy-client"]),
            "requestheader-username-headers": json.dumps(["X-Remote-User"]),
            "requestheader-group-headers": json.dumps(["X-Remote-Group"]),
            "requestheader-extra-headers-prefix": json.dumps(["X-Remote-Extra-"]),
            "requestheader-uid-headers": json.dumps(["X-Remote-Uid"]),
        }
        data.update(overrides)
        return self.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": "extension-apiserver-authentication", "namespace": "kube-system"},
            "data": data})

    # -- objects

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace obj (by apiVersion, kind, namespace, name); a watch sees ADDED or
        MODIFIED. Returns the stored copy, with resourceVersion, uid and creationTimestamp."""
        resource = _BY_KIND[(obj["apiVersion"], obj["kind"])]
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        namespace = meta.get("namespace", "") if resource.namespaced else ""
        if resource.namespaced and not namespace:
            raise ValueError(f"{resource.kind} {meta.get('name')} needs a namespace")
        key = (resource, namespace, meta["name"])
        store = self._store
        _default_admission_policy(obj)
        with store.cond:
            old = store.objects.get(key)
            if resource.kind in _POLICY_KINDS:
                # kube bumps a policy's generation when its spec changes
                was = (old or {}).get("metadata", {})
                changed = old is None or old.get("spec") != obj.get("spec")
                meta["generation"] = int(was.get("generation", 0)) + (1 if changed else 0)
            store.rv += 1
            meta["resourceVersion"] = str(store.rv)
            meta.setdefault("uid", (old or {}).get("metadata", {}).get("uid") or str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _timestamp(time.time()))
            store.objects[key] = obj
            self._log_event(store, "MODIFIED" if old else "ADDED", resource, obj)
        return copy.deepcopy(obj)

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "") -> None:
        """Delete an object; a watch sees DELETED (a missing object is no error)."""
        resource = _BY_KIND[(api_version, kind)]
        store = self._store
        with store.cond:
            obj = store.objects.pop((resource, namespace, name), None)
            if obj is None:
                return
            store.rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(store.rv)
            self._log_event(store, "DELETED", resource, obj)

    def get(self, api_version: str, kind: str, name: str,
            namespace: str = "") -> dict[str, Any] | None:
        resource = _BY_KIND[(api_version, kind)]
        with self._store.cond:
            obj = self._store.objects.get((resource, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def clear_objects(self) -> None:
        """Forget every object (no DELETED events: watches from before see nothing)."""
        with self._store.cond:
            self._store.objects.clear()

    def compact(self) -> int:
        """Forget the event log: a watch from an older resourceVersion gets 410 Expired."""
        store = self._store
        with store.cond:
            store.compacted = store.rv
            store.events.clear()
            store.event_rvs.clear()
            return store.rv

    @property
    def resource_version(self) -> int:
        return self._store.rv

    # -- faults and what was asked

    def fail(self, path: str, code: int = 503, *, method: str | None = None,
             times: int | None = None, retry_after: int = 0, reset: bool = False) -> Fault:
        """Answer requests under path with code (a Status), or drop them (reset=True)."""
        fault = Fault(method, path, code=code, retry_after=retry_after, reset=reset, times=times)
        with self._lock:
            self._faults.append(fault)
        return fault

    def hang(self, path: str, *, method: str | None = None, times: int | None = None) -> Fault:
        """Hold requests under path unanswered until release() or stop()."""
        fault = Fault(method, path, hang=True, times=times)
        with self._lock:
            self._faults.append(fault)
        return fault

    def release(self) -> None:
        """Drop every fault; hung requests are answered as if nothing had happened."""
        with self._lock:
            self._faults.clear()
        self._released.set()
        self._released = threading.Event()

    def requests_to(self, path: str, method: str | None = None) -> list[Recorded]:
        """The recorded requests whose path starts with path."""
        return [r for r in list(self.requests)
                if r.path.startswith(path) and (method is None or r.method == method)]

    def clear_requests(self) -> None:
        self.requests.clear()

    # -- internals used by the handler

    def _write(self, name: str, data: bytes) -> str:
        path = self.directory / name
        path.write_bytes(data)
        if name.endswith(".key"):
            path.chmod(0o600)
        return str(path)

    def _log_event(self, store: _Store, kind: str, resource: Resource,
                   obj: dict[str, Any]) -> None:
        store.events.append(_Event(store.rv, kind, resource, copy.deepcopy(obj)))
        store.event_rvs.append(store.rv)
        store.cond.notify_all()

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            return next((f for f in self._faults if f.take(method, path)), None)

    def _opened(self, sock: socket.socket) -> int:
        with self._lock:
            self.connections += 1
            self._sockets.add(sock)
            return self.connections

    def _closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        owner = self.server.owner
        raw = self.request
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # headers and body: no Nagle
        raw.settimeout(10)
        try:
            self.request = owner._tls.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            with owner._lock:
                owner.handshake_failures += 1
            raw.close()
            raise _Quiet() from None
        self.request.settimeout(None)
        self.connection_id = owner._opened(self.request)
        super().setup()

    def finish(self) -> None:
        self.server.owner._closed(self.request)
        with contextlib.suppress(OSError):
            super().finish()
        self.request.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        now = time.time() if timestamp is None else timestamp
        return email.utils.formatdate(now + self.server.owner.clock_offset, usegmt=True)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    # -- one request

    def _serve(self) -> None:
        owner = self.server.owner
        parts = urlsplit(self.path)
        path, query = parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        user, groups, auth, token = self._authenticate()
        owner.requests.append(Recorded(self.command, path, query, user, auth, token, body,
                                       self.connection_id))
        fault = owner._fault_for(self.command, path)
        if fault is not None:
            if fault.hang:
                released = owner._released
                while not (released.is_set() or owner._stopping.is_set()):
                    released.wait(0.05)
                if owner._stopping.is_set():
                    self.close_connection = True
                    return
            elif fault.reset:
                self.close_connection = True
                self.request.shutdown(socket.SHUT_RDWR)
                return
            else:
                extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
                self._status(fault.code, _REASONS.get(fault.code, "InternalError"),
                             f"injected failure {fault.code}", headers=extra)
                return
        if not user:
            self._status(401, "Unauthorized", "Unauthorized")
            return
        attrs = _attributes(self.command, path, query, user, groups)
        allowed, _, reason = owner.access.decide(attrs)
        if not allowed:
            self._status(403, "Forbidden", _forbidden_message(attrs, reason),
                         details=_details(attrs))
            return
        self._route(attrs, path, query, raw, body, user, groups)

    def _authenticate(self) -> tuple[str, tuple[str, ...], str, str]:
        owner = self.server.owner
        authorization = self.headers.get("Authorization", "")
        token = authorization[7:].strip() if authorization.startswith("Bearer ") else ""
        cert = self.request.getpeercert()
        if cert:
            subject = [item for rdn in cert.get("subject", ()) for item in rdn]
            cn = next((v for k, v in subject if k == "commonName"), "")
            orgs = tuple(v for k, v in subject if k == "organizationName")
            return cn, (*orgs, "system:authenticated"), "cert", token
        if token and token in owner.tokens:
            known = owner.tokens[token]
            return known.name, (*known.groups, "system:authenticated"), "token", token
        return "", (), "", token

    def _route(self, attrs: Attributes, path: str, query: dict[str, str], raw: bytes,
               body: Any, user: str, groups: tuple[str, ...]) -> None:
        owner = self.server.owner
        if path == "/version" and self.command == "GET":
            self._json(200, VERSION)
            return
        if attrs.resource_request and self.command == "POST" and attrs.resource in (
                "tokenreviews", "subjectaccessreviews", "selfsubjectaccessreviews"):
            self._review(attrs, body, user, groups)
            return
        service = self._aggregated(attrs, path)
        if service is not None:
            self._proxy(service, path, query, raw, user, groups)
            return
        resource = _BY_PATH.get((attrs.api_group, attrs.version, attrs.resource))
        if resource is None or not attrs.resource_request or attrs.subresource:
            self._status(404, "NotFound", "the server could not find the requested resource")
            return
        if self.command != "GET":
            self._status(405, "MethodNotAllowed",
                         f"{attrs.verb} is not supported by the kube-apiserver stand-in")
            return
        if attrs.name:
            # a Namespace's own attributes name it as their namespace; it is stored without
            namespace = attrs.namespace if resource.namespaced else ""
            with owner._store.cond:
                obj = owner._store.objects.get((resource, namespace, attrs.name))
                obj = copy.deepcopy(obj) if obj else None
            if obj is None:
                self._status(404, "NotFound", f'{_qualified(resource)} "{attrs.name}" not found',
                             details={"name": attrs.name, "group": resource.group,
                                      "kind": resource.plural})
            else:
                self._json(200, obj)
            return
        try:
            match = _matcher(query)
        except ValueError as error:
            self._status(400, "BadRequest", str(error))
            return
        if attrs.verb == "watch":
            self._watch(resource, attrs.namespace, match, query)
        else:
            self._list(resource, attrs.namespace, match, query)

    # -- reviews

    def _review(self, attrs: Attributes, body: Any, user: str, groups: tuple[str, ...]) -> None:
        owner = self.server.owner
        if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
            self._status(400, "BadRequest", "the request body must be a review with a spec")
            return
        spec = body["spec"]
        kind = {"tokenreviews": "TokenReview", "subjectaccessreviews": "SubjectAccessReview",
                "selfsubjectaccessreviews": "SelfSubjectAccessReview"}[attrs.resource]
        if attrs.resource == "tokenreviews":
            status = self._token_status(spec)
        else:
            if attrs.resource == "selfsubjectaccessreviews":
                subject, subject_groups = user, groups
            else:
                subject = str(spec.get("user") or "")
                subject_groups = tuple(spec.get("groups") or ())
            resource = spec.get("resourceAttributes") or {}
            non_resource = spec.get("nonResourceAttributes") or {}
            review = Attributes(
                user=subject, groups=subject_groups,
                verb=str((resource or non_resource).get("verb") or ""),
                api_group=str(resource.get("group") or ""),
                version=str(resource.get("version") or ""),
                resource=str(resource.get("resource") or ""),
                subresource=str(resource.get("subresource") or ""),
                namespace=str(resource.get("namespace") or ""),
                name=str(resource.get("name") or ""),
                path="" if resource else str(non_resource.get("path") or ""),
            )
            allowed, denied, reason = owner.sar.decide(review)
            status = {"allowed": allowed}
            if denied:
                status["denied"] = True
            if reason:
                status["reason"] = reason
        self._json(201, {"kind": kind, "apiVersion": f"{attrs.api_group}/v1",
                         "metadata": {"creationTimestamp": None}, "spec": spec,
                         "status": status})

    def _token_status(self, spec: dict[str, Any]) -> dict[str, Any]:
        owner = self.server.owner
        if owner.token_review_error:
            return {"authenticated": False, "error": owner.token_review_error}
        known = owner.tokens.get(str(spec.get("token") or ""))
        if known is None:
            return {"authenticated": False}
        wanted = list(spec.get("audiences") or [])
        if wanted and known.audiences and not set(wanted) & set(known.audiences):
            return {"authenticated": False,
                    "error": "token audiences are invalid for the target audiences"}
        user: dict[str, Any] = {"username": known.name,
                                "groups": [*known.groups, "system:authenticated"]}
        if known.uid:
            user["uid"] = known.uid
        if known.extra:
            user["extra"] = known.extra
        status: dict[str, Any] = {"authenticated": True, "user": user}
        if wanted:
            status["audiences"] = [a for a in wanted if not known.audiences
                                   or a in known.audiences]
        return status

    # -- list and watch

    def _list(self, resource: Resource, namespace: str, match: Callable[[dict[str, Any]], bool],
              query: dict[str, str]) -> None:
        store = self.server.owner._store
        with store.cond:
            rv = store.rv
            items = sorted(
                (copy.deepcopy(obj) for (r, ns, _), obj in store.objects.items()
                 if r == resource and (not namespace or ns == namespace) and match(obj)),
                key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]),
            )
        start = 0
        if query.get("continue"):
            try:
                start = int(json.loads(base64.b64decode(query["continue"]))["start"])
            except (ValueError, KeyError, TypeError):
                self._status(400, "BadRequest", "invalid continue token")
                return
        limit = int(query.get("limit") or 0)
        end = start + limit if limit else len(items)
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if end < len(items):
            meta["continue"] = base64.b64encode(json.dumps({"start": end}).encode()).decode()
        page = items[start:end]
        for obj in page:  # kube-apiserver leaves these out of list items of built-in types
            obj.pop("apiVersion", None)
            obj.pop("kind", None)
        self._json(200, {"kind": f"{resource.kind}List", "apiVersion": resource.api_version,
                         "metadata": meta, "items": page})

    def _watch(self, resource: Resource, namespace: str, match: Callable[[dict[str, Any]], bool],
               query: dict[str, str]) -> None:
        owner = self.server.owner
        store = owner._store
        requested = query.get("resourceVersion", "")
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        initial: list[dict[str, Any]] = []
        with store.cond:
            if requested in ("", "0"):
                since = store.rv
                initial = [copy.deepcopy(obj) for (r, ns, _), obj in store.objects.items()
                           if r == resource and (not namespace or ns == namespace)
                           and match(obj)]
                expired = False
            else:
                since = int(requested)
                expired = since < store.compacted
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if expired:
                self._chunk({"type": "ERROR", "object": _status_body(
                    410, "Expired", f"too old resource version: {since} ({store.compacted})")})
                self._chunk_end()
                return
            for obj in initial:
                self._chunk({"type": "ADDED", "object": obj})
            deadline = time.monotonic() + timeout if timeout is not None else None
            next_bookmark = time.monotonic() + (owner.bookmark_interval or 0)
            while not owner._stopping.is_set():
                with store.cond:
                    i = bisect.bisect_right(store.event_rvs, since)
                    pending = store.events[i:]
                    if not pending:
                        store.cond.wait(0.05)
                        pending = store.events[bisect.bisect_right(store.event_rvs, since):]
                    current = store.rv
                for event in pending:
                    since = event.rv
                    if event.resource != resource or (
                            namespace and event.obj["metadata"].get("namespace") != namespace):
                        continue
                    if match(event.obj):
                        self._chunk({"type": event.type, "object": event.obj})
                now = time.monotonic()
                if bookmarks and owner.bookmark_interval and now >= next_bookmark:
                    next_bookmark = now + owner.bookmark_interval
                    self._chunk({"type": "BOOKMARK", "object": {
                        "kind": resource.kind, "apiVersion": resource.api_version,
                        "metadata": {"resourceVersion": str(current)}}})
                if deadline is not None and now >= deadline:
                    break
                if select.select([self.request], [], [], 0)[0]:
                    # A watching client sends nothing: readable means it hung up.
                    self.close_connection = True
                    return
            if not owner._stopping.is_set():
                self._chunk_end()
            else:
                self.close_connection = True
        except OSError:
            self.close_connection = True

    def _chunk(self, value: Any) -> None:
        data = json.dumps(value, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _chunk_end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    # -- the aggregator

    def _aggregated(self, attrs: Attributes, path: str) -> dict[str, Any] | None:
        segments = path.strip("/").split("/")
        if len(segments) < 3 or segments[0] != "apis":
            return None
        owner = self.server.owner
        return owner.get("apiregistration.k8s.io/v1", "APIService",
                         f"{segments[2]}.{segments[1]}")

    def _proxy(self, api_service: dict[str, Any], path: str, query: dict[str, str], raw: bytes,
               user: str, groups: tuple[str, ...]) -> None:
        owner = self.server.owner
        spec = api_service.get("spec") or {}
        service_ref = spec.get("service")
        if not service_ref:
            self._status(404, "NotFound", "the server could not find the requested resource")
            return
        conditions = (api_service.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Available" and c.get("status") == "True"
                   for c in conditions):
            self._text(503, "service unavailable\n")
            return
        namespace, name = service_ref["namespace"], service_ref["name"]
        try:
            host, port = _resolve_endpoint(owner, namespace, name,
                                           int(service_ref.get("port") or 443))
            context = ssl.create_default_context(
                cadata=base64.b64decode(spec.get("caBundle") or "").decode() or None)
            context.load_cert_chain(owner.front_proxy_cert_file, owner.front_proxy_key_file)
            connection = http.client.HTTPSConnection(host, port, timeout=10, context=context)
            sock = socket.create_connection((host, port), timeout=10)
            connection.sock = context.wrap_socket(sock, server_hostname=f"{name}.{namespace}.svc")
            headers = {"X-Remote-User": user, "Accept": self.headers.get("Accept", "*/*")}
            if self.headers.get("Content-Type"):
                headers["Content-Type"] = self.headers["Content-Type"]
            target = path + ("?" + "&".join(f"{k}={v}" for k, v in query.items())
                             if query else "")
            connection.putrequest(self.command, target, skip_accept_encoding=True)
            for key, value in headers.items():
                connection.putheader(key, value)
            for group in groups:
                connection.putheader("X-Remote-Group", group)
            connection.putheader("Content-Length", str(len(raw)))
            connection.endheaders(raw or None)
            response = connection.getresponse()
            data = response.read()
            connection.close()
        except (OSError, ssl.SSLError, http.client.HTTPException, LookupError) as error:
            self._text(503, f"error trying to reach service: {error}\n")
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.getheader("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # -- writing answers

    def _json(self, code: int, value: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(value).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, item in (headers or {}).items():
            self.send_header(key, item)
        self.end_headers()
        self.wfile.write(data)

    def _text(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str, *,
                details: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None) -> None:
        self._json(code, _status_body(code, reason, message, details), headers)


_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            409: "Conflict", 410: "Expired", 429: "TooManyRequests", 500: "InternalError",
            503: "ServiceUnavailable", 504: "Timeout"}


def _status_body(code: int, reason: str, message: str,
                 details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "message": message, "reason": reason,
                            "code": code}
    if details:
        body["details"] = details
    return body


_POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def _default_match_resources(match: dict[str, Any]) -> None:
    match.setdefault("namespaceSelector", {})
    match.setdefault("objectSelector", {})
    match.setdefault("matchPolicy", "Equivalent")
    for key in ("resourceRules", "excludeResourceRules"):
        for rule in match.get(key) or []:
            rule.setdefault("scope", "*")


def _default_admission_policy(obj: dict[str, Any]) -> None:
    """What kube-apiserver's v1 defaulting adds to a ValidatingAdmissionPolicy or binding
    (SetDefaults_ValidatingAdmissionPolicySpec, SetDefaults_MatchResources, ParamRef's)."""
    spec = obj.get("spec")
    if obj.get("kind") not in _POLICY_KINDS or not isinstance(spec, dict):
        return
    if obj["kind"] == "ValidatingAdmissionPolicy":
        spec.setdefault("failurePolicy", "Fail")
        _default_match_resources(spec.setdefault("matchConstraints", {}))
        obj.setdefault("status", {})
        return
    if isinstance(spec.get("matchResources"), dict):
        _default_match_resources(spec["matchResources"])


def _timestamp(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(int(seconds), datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def _qualified(resource: Resource) -> str:
    return f"{resource.plural}.{resource.group}" if resource.group else resource.plural


def _attributes(method: str, path: str, query: dict[str, str], user: str,
                groups: tuple[str, ...]) -> Attributes:
    """kube's RequestInfo for the paths the stand-in knows: resource requests under /api/v1
    and /apis/<group>/<version>; anything else is a non-resource request."""
    segments = [s for s in path.split("/") if s]
    if segments[:1] == ["api"] and len(segments) >= 3:
        group, version, rest = "", segments[1], segments[2:]
    elif segments[:1] == ["apis"] and len(segments) >= 4:
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        verb = {"GET": "get", "POST": "post", "PUT": "put", "DELETE": "delete"}.get(method, "")
        return Attributes(user, groups, verb, path=path)
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource, name = rest[0], rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if resource == "namespaces" and name:
        namespace = name
    if method == "GET":
        verb = "get" if name else ("watch" if query.get("watch") in ("true", "1") else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if name else "deletecollection"}.get(method, method.lower())
    return Attributes(user, groups, verb, group, version, resource, subresource, namespace,
                      name)


def _forbidden_message(a: Attributes, reason: str) -> str:
    """kube-apiserver's 403 wording (endpoints/handlers/responsewriters.ForbiddenStatusError)."""
    if not a.resource_request:
        message = f'forbidden: User "{a.user}" cannot {a.verb} path "{a.path}"'
    else:
        resource = a.resource + (f"/{a.subresource}" if a.subresource else "")
        qualified = f"{a.resource}.{a.api_group}" if a.api_group else a.resource
        subject = f'{qualified} "{a.name}"' if a.name else qualified
        scope = (f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope")
        message = (f'{subject} is forbidden: User "{a.user}" cannot {a.verb} resource '
                   f'"{resource}" in API group "{a.api_group}" {scope}')
    return f"{message}: {reason}" if reason else message


def _details(a: Attributes) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": a.resource} if a.resource_request else {}
    if a.name:
        out["name"] = a.name
    if a.api_group:
        out["group"] = a.api_group
    return out


def _matcher(query: dict[str, str]) -> Callable[[dict[str, Any]], bool]:
    """The labelSelector and fieldSelector of query as one predicate (equality-based
    requirements and label existence, which is what kext's callers send)."""
    labels = _requirements(query.get("labelSelector", ""), allow_exists=True)
    fields = _requirements(query.get("fieldSelector", ""), allow_exists=False)
    for key, _, _ in fields:
        if key not in ("metadata.name", "metadata.namespace"):
            raise ValueError(f'field label not supported: {key}')

    def match(obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        have = meta.get("labels") or {}
        for key, op, value in labels:
            if op == "exists" and key not in have:
                return False
            if op == "!exists" and key in have:
                return False
            if op == "=" and have.get(key) != value:
                return False
            if op == "!=" and have.get(key) == value:
                return False
        for key, op, value in fields:
            actual = str(meta.get(key.split(".", 1)[1]) or "")
            if (op == "=") != (actual == value):
                return False
        return True

    return match


def _requirements(selector: str, allow_exists: bool) -> list[tuple[str, str, str]]:
    out = []
    for term in (t.strip() for t in selector.split(",") if t.strip()):
        for op in ("!=", "==", "="):
            if op in term:
                key, value = (s.strip() for s in term.split(op, 1))
                out.append((key, "!=" if op == "!=" else "=", value))
                break
        else:
            if not allow_exists:
                raise ValueError(f"invalid selector: {selector!r}")
            out.append((term[1:], "!exists", "") if term.startswith("!")
                       else (term, "exists", ""))
    return out


def _resolve_endpoint(owner: KubeAPIServer, namespace: str, name: str,
                      port: int) -> tuple[str, int]:
    """Where kube-aggregator would send a request for the Service's port: a ready address
    of its EndpointSlices, on the slice port named like the Service port."""
    service = owner.get("v1", "Service", name, namespace)
    if service is None:
        raise LookupError(f'service "{name}" not found')
    port_name = next((p.get("name", "") for p in (service.get("spec") or {}).get("ports") or []
                      if p.get("port") == port), None)
    if port_name is None:
        raise LookupError(f"no service port {port} found for service {name!r}")
    for endpoint_slice in _slices(owner, namespace, name):
        numbers = [p.get("port") for p in endpoint_slice.get("ports") or []
                   if (p.get("name") or "") == port_name and p.get("port")]
        for endpoint in endpoint_slice.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            if numbers and endpoint.get("addresses"):
                return str(endpoint["addresses"][0]), int(numbers[0])
    raise LookupError(f'no endpoints available for service "{name}"')


def _slices(owner: KubeAPIServer, namespace: str, name: str) -> list[dict[str, Any]]:
    store = owner._store
    resource = _BY_KIND[("discovery.k8s.io/v1", "EndpointSlice")]
    with store.cond:
        return [copy.deepcopy(obj) for (r, ns, _), obj in store.objects.items()
                if r == resource and ns == namespace
                and (obj["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
                == name]

