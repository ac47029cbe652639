"""`kext doctor`: why an APIService of kext's is not Available, in plain words (SPEC §10).

With cluster access (a kubeconfig, or in-cluster), doctor checks in the order kube-aggregator
depends on them, one line per check, each failure with its fix:

1. kube-apiserver answers;
2. the APIService of each group/version kext serves exists, is backed by a Service, carries a
   caBundle (never insecureSkipTLSVerify) and is Available (else its condition's reason and
   message: ServiceNotFound, MissingEndpoints, FailedDiscoveryCheck, ...);
3. the Service exists with the APIService's port, and has ready endpoints (EndpointSlices,
   as the aggregator reads them; Endpoints when slices cannot be read);
4. the caBundle verifies the certificate kext presents at each endpoint for the name the
   aggregator checks, `<service>.<namespace>.svc` (from outside the cluster pod addresses are
   usually unreachable: that is a warning, not a failure);
5. auth-delegation RBAC for kext's ServiceAccount (from the endpoints' pods, or
   --service-account): a ClusterRoleBinding to `system:auth-delegator` and a RoleBinding in
   kube-system to `extension-apiserver-authentication-reader`, or, when no such binding is
   found, SubjectAccessReviews proving the same permissions;
6. discovery from kube-apiserver's side: `GET /apis/<group>/<version>` through the
   aggregator lists kext's resources;
7. clock skew of kube-apiserver and kext (their Date headers) against this machine: a
   warning past SKEW_WARNING_SECONDS.

Exit code 0 when nothing failed (warnings allowed), 1 otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import email.utils
import os
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cryptography import x509

from kext.config import ServerConfig
from kext.kube import KubeClient, KubeError, KubeStatusError

_T = TypeVar("_T")

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"
SKEW_WARNING_SECONDS = 30.0
CALL_TIMEOUT = 10.0
PROBE_TIMEOUT = 5.0
MAX_PROBED_ENDPOINTS = 3
AUTH_DELEGATOR = "system:auth-delegator"
AUTH_READER = "extension-apiserver-authentication-reader"
AUTH_CONFIGMAP = "extension-apiserver-authentication"

_REASON_FIXES = {
    "ServiceNotFound": "create kext's Service (kext manifests, or the helm chart), or point the "
                       "APIService's spec.service at the Service kext runs behind",
    "ServicePortError": "make the Service listen on the APIService's spec.service.port "
                        "(default 443), or change that port to the Service's",
    "EndpointsNotFound": "kext has no pods behind its Service: check the Deployment and that "
                         "the Service's selector matches the pods' labels",
    "MissingEndpoints": "no kext pod is ready: check the pods (kubectl describe pod) and "
                        "kext's /readyz; the Service's port name must match the pods' port",
    "FailedDiscoveryCheck": "kube-apiserver reached the Service but kext's discovery answer "
                            "failed: see the serving certificate and discovery checks below, "
                            "and let the control plane through NetworkPolicies to kext's port",
    "ServiceAccessError": "kube-apiserver could not read the Service: check the control plane",
    "EndpointsAccessError": "kube-apiserver could not read the endpoints: check the control "
                            "plane",
}


@dataclass(frozen=True)
class Finding:
    """The outcome of one check."""

    status: str  # PASS, FAIL, WARN or SKIP
    check: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f" Fix: {self.fix}" if self.fix and self.status in (FAIL, WARN) else ""
        return f"{self.status} {self.check}: {self.detail}{fix}"


@dataclass(frozen=True)
class API:
    """A group/version kext serves and the resources (plurals) it holds."""

    group: str
    version: str
    resources: tuple[str, ...]

    @property
    def api_service(self) -> str:
        return f"{self.version}.{self.group}"


@dataclass(frozen=True)
class Probe:
    """What kext presented at an endpoint: its certificate, whether the caBundle verifies it
    for the name, and its Date header."""

    leaf: x509.Certificate | None
    verified: bool
    error: str
    date: float | None


@dataclass
class _Backend:
    """A Service some APIServices point at, with their caBundles."""

    namespace: str
    name: str
    port: int
    ca_bundles: dict[str, bytes] = field(default_factory=dict)  # APIService name -> PEM

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def dns_name(self) -> str:
        return f"{self.name}.{self.namespace}.svc"


def apis_of(config: ServerConfig) -> list[API]:
    """The group/versions the configuration serves, in declaration order."""
    found: dict[tuple[str, str], list[str]] = {}
    for definition in config.resources:
        for version in definition.served_versions:
            found.setdefault((definition.group, version.name), []).append(definition.plural)
    return [API(group, version, tuple(plurals)) for (group, version), plurals in found.items()]


ProbeFunc = Callable[[str, int, str, bytes], Awaitable[Probe]]


class Doctor:
    """Runs the checks; `emit` receives each finding as it is made."""

    def __init__(self, client: KubeClient, apis: list[API], *, namespace: str = "",
                 service_account: str = "", emit: Callable[[Finding], None] = lambda f: None,
                 probe: ProbeFunc | None = None, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.apis = apis
        self.namespace = namespace
        self.service_account = service_account
        self.findings: list[Finding] = []
        self._emit = emit
        self._probe = probe or probe_endpoint
        self._clock = clock
        self._kube_skew: float | None = None
        self._kext_skews: list[float] = []

    @property
    def failed(self) -> bool:
        return any(f.status == FAIL for f in self.findings)

    def add(self, status: str, check: str, detail: str, fix: str = "") -> None:
        finding = Finding(status, check, detail, fix)
        self.findings.append(finding)
        self._emit(finding)

    async def run(self) -> list[Finding]:
        if not await self._cluster():
            return self.findings
        backends = await self._api_services()
        for backend in backends.values():
            endpoints = await self._service(backend)
            await self._certificates(backend, endpoints)
            await self._rbac(backend, endpoints)
        for api in self.apis:
            await self._discovery(api)
        self._clock_skew()
        return self.findings

    # -- 1. kube-apiserver

    async def _cluster(self) -> bool:
        check = "kube-apiserver"
        try:
            sent = self._clock()
            response = await self.client.request("GET", "/version", timeout=CALL_TIMEOUT)
        except KubeError as error:
            self.add(FAIL, check, f"cannot talk to {self.client.server}: {error}.",
                     "check --kubeconfig and its current context, and that the cluster is up")
            return False
        self._kube_skew = _skew(response.header("date"), sent, self._clock())
        version = str((response.json() or {}).get("gitVersion") or "unknown version")
        self.add(PASS, check, f"{self.client.server} answers ({version})")
        if not self.apis:
            self.add(FAIL, "configuration", "declares no resources, so kext serves no API "
                     "group to check", "pass the server.yaml kext runs with: --config FILE")
        return True

    # -- 2. APIServices

    async def _api_services(self) -> dict[tuple[str, str, int], _Backend]:
        backends: dict[tuple[str, str, int], _Backend] = {}
        for api in self.apis:
            name = api.api_service
            check = f"APIService {name}"
            try:
                obj = await self.client.get(
                    f"/apis/apiregistration.k8s.io/v1/apiservices/{name}", timeout=CALL_TIMEOUT)
            except KubeStatusError as error:
                if error.code == 404:
                    self.add(FAIL, check, f"does not exist, so kube-apiserver does not route "
                             f"{api.group}/{api.version} to kext.",
                             "install kext's objects: kext manifests --config server.yaml | "
                             "kubectl apply -f - (or the helm chart)")
                else:
                    self.add(FAIL, check, f"cannot be read: {error.message}.",
                             "run kext doctor as a user who may read apiservices "
                             "(e.g. cluster-admin)")
                continue
            except KubeError as error:
                self.add(FAIL, check, f"cannot be read: {error}.", "check the cluster")
                continue
            backend = self._api_service(api, obj)
            if backend is not None:
                key = (backend.namespace, backend.name, backend.port)
                backends.setdefault(key, backend).ca_bundles.update(backend.ca_bundles)
        return backends

    def _api_service(self, api: API, obj: dict[str, Any]) -> _Backend | None:
        name = api.api_service
        check = f"APIService {name}"
        spec = obj.get("spec") or {}
        service = spec.get("service") or {}
        if not service:
            self.add(FAIL, check, f"is Local: kube-apiserver serves {api.group}/{api.version} "
                     "itself (a CustomResourceDefinition or a built-in API claims the group), "
                     "so requests never reach kext.",
                     f"delete the CRDs of {api.group} and apply kext's APIService with "
                     "spec.service naming kext's Service")
            return None
        backend = _Backend(str(service.get("namespace") or ""), str(service.get("name") or ""),
                           int(service.get("port") or 443))
        if self.namespace and backend.namespace != self.namespace:
            self.add(FAIL, check, f"points at Service {backend.where}, not at kext in "
                     f"namespace {self.namespace}.",
                     f"set spec.service.namespace to {self.namespace} (or pass the namespace "
                     "kext really runs in)")
        ca_bundle = _ca_bundle(spec.get("caBundle"))
        if spec.get("insecureSkipTLSVerify"):
            self.add(FAIL, check, "skips TLS verification (insecureSkipTLSVerify: true): "
                     "anyone who can take the Service's address can serve this API.",
                     "remove insecureSkipTLSVerify and set spec.caBundle to the CA of kext's "
                     "serving certificate (kext certs --service NAME --namespace NS prints it)")
        elif ca_bundle is None:
            self.add(FAIL, check, "has no valid caBundle, so kube-apiserver cannot verify "
                     "kext's serving certificate.",
                     "set spec.caBundle to the base64 PEM of the CA that signed kext's serving "
                     "certificate (kext certs --service NAME --namespace NS prints it)")
        if ca_bundle:
            backend.ca_bundles[name] = ca_bundle
        conditions = (obj.get("status") or {}).get("conditions") or []
        available = next((c for c in conditions if c.get("type") == "Available"), None)
        if available is None:
            self.add(WARN, check, "has no Available condition yet: the aggregator has not "
                     "checked it.", "wait a few seconds and run kext doctor again")
        elif available.get("status") == "True":
            self.add(PASS, check, f"Available, backed by Service {backend.where} port "
                     f"{backend.port}")
        else:
            reason = str(available.get("reason") or "Unknown")
            message = str(available.get("message") or "no message")
            self.add(FAIL, check, f"not Available: {reason}: {message}.",
                     _REASON_FIXES.get(reason, "see the checks below"))
        return backend

    # -- 3. Service and endpoints

    async def _service(self, backend: _Backend) -> list[tuple[str, int, str]]:
        """The ready endpoints (address, port, pod name) of the backend's port."""
        check = f"Service {backend.where}"
        try:
            service = await self.client.get(
                f"/api/v1/namespaces/{backend.namespace}/services/{backend.name}",
                timeout=CALL_TIMEOUT)
        except KubeError as error:
            if isinstance(error, KubeStatusError) and error.code == 404:
                self.add(FAIL, check, "does not exist.", _REASON_FIXES["ServiceNotFound"])
            else:
                self.add(FAIL, check, f"cannot be read: {error}.", "check your access")
            return []
        spec = service.get("spec") or {}
        if spec.get("type") == "ExternalName":
            self.add(WARN, check, f"is an ExternalName Service ({spec.get('externalName')}): "
                     "doctor cannot follow it to kext's pods.")
            return []
        ports = spec.get("ports") or []
        port = next((p for p in ports if p.get("port") == backend.port), None)
        if port is None:
            listed = ", ".join(str(p.get("port")) for p in ports) or "none"
            self.add(FAIL, check, f"does not listen on port {backend.port} (its ports: "
                     f"{listed}).", _REASON_FIXES["ServicePortError"])
            return []
        target = port.get("targetPort", backend.port)
        self.add(PASS, check, f"port {backend.port} -> {target}")
        return await self._endpoints(backend, str(port.get("name") or ""))

    async def _endpoints(self, backend: _Backend,
                         port_name: str) -> list[tuple[str, int, str]]:
        check = f"endpoints of {backend.where}"
        ready: list[tuple[str, int, str]] = []
        not_ready = 0
        try:
            slices = await self.client.get(
                f"/apis/discovery.k8s.io/v1/namespaces/{backend.namespace}/endpointslices",
                params={"labelSelector": f"kubernetes.io/service-name={backend.name}"},
                timeout=CALL_TIMEOUT)
            for item in slices.get("items") or []:
                numbers = [p.get("port") for p in item.get("ports") or []
                           if (p.get("name") or "") == port_name and p.get("port")]
                for endpoint in item.get("endpoints") or []:
                    addresses = endpoint.get("addresses") or []
                    if (endpoint.get("conditions") or {}).get("ready") is False:
                        not_ready += len(addresses)
                        continue
                    pod = str((endpoint.get("targetRef") or {}).get("name") or "")
                    ready.extend((a, int(n), pod) for a in addresses for n in numbers[:1])
        except KubeError as error:
            if not (isinstance(error, KubeStatusError) and error.code in (403, 404)):
                self.add(FAIL, check, f"cannot be read: {error}.", "check your access")
                return []
            try:
                ready, not_ready = await self._legacy_endpoints(backend, port_name)
            except KubeError as legacy:
                self.add(FAIL, check, f"cannot be read: {legacy}.", "check your access")
                return []
        if not ready:
            waiting = f" ({not_ready} not ready)" if not_ready else ""
            self.add(FAIL, check, f"no ready endpoint serves port {port_name or '(unnamed)'}"
                     f"{waiting}, so kube-apiserver has nowhere to send requests.",
                     _REASON_FIXES["MissingEndpoints"])
            return []
        shown = ", ".join(f"{a}:{p}" for a, p, _ in ready[:5])
        more = f" and {len(ready) - 5} more" if len(ready) > 5 else ""
        waiting = f"; {not_ready} not ready" if not_ready else ""
        self.add(PASS, check, f"{len(ready)} ready ({shown}{more}){waiting}")
        return ready

    async def _legacy_endpoints(self, backend: _Backend,
                                port_name: str) -> tuple[list[tuple[str, int, str]], int]:
        try:
            endpoints = await self.client.get(
                f"/api/v1/namespaces/{backend.namespace}/endpoints/{backend.name}",
                timeout=CALL_TIMEOUT)
        except KubeStatusError as error:
            if error.code == 404:
                return [], 0
            raise
        ready: list[tuple[str, int, str]] = []
        not_ready = 0
        for subset in endpoints.get("subsets") or []:
            numbers = [p.get("port") for p in subset.get("ports") or []
                       if (p.get("name") or "") == port_name and p.get("port")]
            for address in subset.get("addresses") or []:
                pod = str((address.get("targetRef") or {}).get("name") or "")
                ready.extend((str(address.get("ip")), int(n), pod) for n in numbers[:1])
            not_ready += len(subset.get("notReadyAddresses") or [])
        return ready, not_ready

    # -- 4. the serving certificate

    async def _certificates(self, backend: _Backend,
                            endpoints: list[tuple[str, int, str]]) -> None:
        if not endpoints or not backend.ca_bundles:
            why = "no ready endpoint to connect to" if not endpoints else (
                "no caBundle to verify it with (see the APIService check)")
            self.add(SKIP, f"serving certificate of {backend.where}", why)
            return
        for address, port, _ in endpoints[:MAX_PROBED_ENDPOINTS]:
            check = f"serving certificate at {_host_port(address, port)}"
            for api_service, bundle in backend.ca_bundles.items():
                probe = await self._probe(address, port, backend.dns_name, bundle)
                if probe.date is not None:
                    self._kext_skews.append(probe.date)
                self._certificate(check, api_service, backend.dns_name, bundle, probe)

    def _certificate(self, check: str, api_service: str, dns_name: str, bundle: bytes,
                     probe: Probe) -> None:
        fix = ("issue kext's serving certificate for the Service's names from the CA in the "
               f"caBundle (kext certs --service NAME --namespace NS), or set {api_service}'s "
               "caBundle to the CA that signed the certificate kext serves")
        if probe.leaf is None:
            self.add(WARN, check, f"cannot connect from this machine ({probe.error}), so the "
                     f"caBundle of {api_service} is not checked.",
                     "run kext doctor where pod addresses are reachable (e.g. in a pod of the "
                     "cluster)")
            return
        leaf = probe.leaf
        if probe.verified:
            self.add(PASS, check, f"the caBundle of {api_service} verifies it for {dns_name}")
            return
        now = datetime.datetime.now(datetime.UTC)
        names = _dns_names(leaf)
        if leaf.not_valid_after_utc < now or leaf.not_valid_before_utc > now:
            self.add(FAIL, check, f"is not valid now (valid {leaf.not_valid_before_utc:%Y-%m-%d}"
                     f" to {leaf.not_valid_after_utc:%Y-%m-%d}).", fix)
        elif dns_name not in names:
            self.add(FAIL, check, f"is not for {dns_name} (its names: "
                     f"{', '.join(names) or 'none'}), the name kube-apiserver verifies.", fix)
        else:
            roots = ", ".join(c.subject.rfc4514_string()
                              for c in x509.load_pem_x509_certificates(bundle))
            self.add(FAIL, check, f"is issued by {leaf.issuer.rfc4514_string()} and the "
                     f"caBundle of {api_service} ({roots}) does not verify it "
                     f"({probe.error}).", fix)

    # -- 5. auth-delegation RBAC

    async def _rbac(self, backend: _Backend, endpoints: list[tuple[str, int, str]]) -> None:
        account = self.service_account or await self._service_account(backend, endpoints)
        if not account:
            for role in (AUTH_DELEGATOR, AUTH_READER):
                self.add(SKIP, f"RBAC {role}", "kext's ServiceAccount is unknown (no pod "
                         "behind the Service to read it from); pass --service-account NAME")
            return
        namespace = backend.namespace
        subject = f"{namespace}/{account}"
        await self._binding(
            f"RBAC {AUTH_DELEGATOR}", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            "ClusterRole", AUTH_DELEGATOR, namespace, account,
            [("create", "authentication.k8s.io", "tokenreviews", "", ""),
             ("create", "authorization.k8s.io", "subjectaccessreviews", "", "")],
            f"kubectl create clusterrolebinding {account}:{AUTH_DELEGATOR.split(':')[1]} "
            f"--clusterrole={AUTH_DELEGATOR} --serviceaccount={namespace}:{account}",
            f"kext's ServiceAccount {subject} cannot create TokenReviews and "
            "SubjectAccessReviews, so it cannot authenticate or authorize requests")
        await self._binding(
            f"RBAC {AUTH_READER}",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/rolebindings",
            "Role", AUTH_READER, namespace, account,
            [(verb, "", "configmaps", "kube-system", AUTH_CONFIGMAP)
             for verb in ("get", "list", "watch")],
            f"kubectl -n kube-system create rolebinding {account}:{AUTH_READER} "
            f"--role={AUTH_READER} --serviceaccount={namespace}:{account}",
            f"kext's ServiceAccount {subject} cannot read kube-system/{AUTH_CONFIGMAP}, so it "
            "cannot learn the cluster's client and front-proxy CAs")

    async def _service_account(self, backend: _Backend,
                               endpoints: list[tuple[str, int, str]]) -> str:
        for _, _, pod in endpoints:
            if not pod:
                continue
            try:
                obj = await self.client.get(
                    f"/api/v1/namespaces/{backend.namespace}/pods/{pod}", timeout=CALL_TIMEOUT)
            except KubeError:
                continue
            return str((obj.get("spec") or {}).get("serviceAccountName") or "default")
        return ""

    async def _binding(self, check: str, path: str, role_kind: str, role: str, namespace: str,
                       account: str, permissions: list[tuple[str, str, str, str, str]],
                       fix: str, consequence: str) -> None:
        groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")
        try:
            bindings = (await self.client.get(path, timeout=CALL_TIMEOUT)).get("items") or []
        except KubeError:
            bindings = []
        for binding in bindings:
            ref = binding.get("roleRef") or {}
            if ref.get("kind") != role_kind or ref.get("name") != role:
                continue
            for s in binding.get("subjects") or []:
                if (s.get("kind") == "ServiceAccount" and s.get("name") == account
                        and (s.get("namespace") or "") == namespace) or (
                        s.get("kind") == "Group" and s.get("name") in groups):
                    name = (binding.get("metadata") or {}).get("name")
                    self.add(PASS, check, f"{role_kind}Binding {name} grants it to "
                             f"{namespace}/{account}")
                    return
        # No binding by that name: other RBAC (an aggregated role, a wider binding) may grant
        # the same; ask kube-apiserver.
        user = f"system:serviceaccount:{namespace}:{account}"
        denied = []
        for verb, group, resource, in_namespace, name in permissions:
            review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                      "spec": {"user": user, "groups": [*groups, "system:authenticated"],
                               "resourceAttributes": {"verb": verb, "group": group,
                                                      "resource": resource,
                                                      "namespace": in_namespace,
                                                      "name": name}}}
            try:
                answer = await self.client.post(
                    "/apis/authorization.k8s.io/v1/subjectaccessreviews", review,
                    timeout=CALL_TIMEOUT, idempotent=True)
            except KubeError as error:
                self.add(WARN, check, f"no {role_kind}Binding to {role} for {namespace}/"
                         f"{account} was found, and a SubjectAccessReview failed: {error}.", fix)
                return
            if not (answer.get("status") or {}).get("allowed"):
                denied.append(f"{verb} {resource}")
        if denied:
            self.add(FAIL, check, f"no {role_kind}Binding to {role} for {namespace}/{account}: "
                     f"{consequence} (denied: {', '.join(denied)}).", fix)
        else:
            self.add(PASS, check, f"no {role_kind}Binding to {role}, but other RBAC grants "
                     f"{namespace}/{account} the same permissions")

    # -- 6. discovery through the aggregator

    async def _discovery(self, api: API) -> None:
        path = f"/apis/{api.group}/{api.version}"
        check = f"discovery {path}"
        try:
            listing = await self.client.get(path, timeout=CALL_TIMEOUT)
        except KubeStatusError as error:
            if error.code == 503:
                detail = (f"kube-apiserver answers 503 ({error.message}): the aggregator "
                          "cannot reach kext.")
                fix = "fix the failures above; the APIService's Available condition says why"
            elif error.code == 404:
                detail = "kube-apiserver does not route it (404): the APIService is missing."
                fix = _REASON_FIXES["ServiceNotFound"]
            elif error.code in (401, 403):
                detail = (f"kext refused the aggregator's request ({error.code} "
                          f"{error.reason}: {error.message}).")
                fix = ("make kext trust the cluster's front-proxy CA: authentication.fromCluster"
                       ": true, or requestHeader.clientCAFile and allowedNames")
            else:
                detail, fix = f"failed: {error.code} {error.message}.", "see kext's log"
            self.add(FAIL, check, detail, fix)
            return
        except KubeError as error:
            self.add(FAIL, check, f"failed: {error}.", "check the cluster")
            return
        served = {str(r.get("name")) for r in listing.get("resources") or []
                  if "/" not in str(r.get("name"))}
        missing = [r for r in api.resources if r not in served]
        if missing:
            self.add(FAIL, check, f"lists {', '.join(sorted(served)) or 'no resources'} but not "
                     f"{', '.join(missing)}: the kext behind the Service runs another "
                     "configuration.", "deploy kext with this server.yaml (roll out the "
                     "Deployment after changing its ConfigMap)")
        else:
            self.add(PASS, check, f"kube-apiserver lists {', '.join(api.resources)}")

    # -- 7. clocks

    def _clock_skew(self) -> None:
        skews = []
        if self._kube_skew is not None:
            skews.append(("kube-apiserver", self._kube_skew))
        if self._kext_skews:
            skews.append(("kext", max(self._kext_skews, key=abs)))
        if not skews:
            return
        worst = [(who, s) for who, s in skews if abs(s) > SKEW_WARNING_SECONDS]
        said = ", ".join(f"{who} {round(s):+d} s" for who, s in skews)
        if worst:
            self.add(WARN, "clock skew", f"{said} against this machine's clock (more than "
                     f"{SKEW_WARNING_SECONDS:.0f} s): tokens and certificates are checked "
                     "against the clock.", "run time synchronisation (chrony, "
                     "systemd-timesyncd) on the nodes and on this machine")
        else:
            self.add(PASS, "clock skew", f"{said} against this machine's clock")


async def probe_endpoint(host: str, port: int, server_name: str, ca_bundle: bytes,
                         timeout: float = PROBE_TIMEOUT) -> Probe:
    """Connect to kext at host:port as kube-aggregator does (SNI server_name) and report the
    certificate it presents, whether ca_bundle verifies it for server_name, and the Date of
    its answer to GET /livez (local epoch seconds minus the Date, as skew)."""
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    plain.check_hostname = False
    plain.verify_mode = ssl.CERT_NONE
    plain.set_alpn_protocols(["http/1.1"])
    leaf: x509.Certificate | None = None
    date: float | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=plain,
                                                           server_hostname=server_name)
            try:
                der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
                leaf = x509.load_der_x509_certificate(der)
                sent = time.time()
                writer.write(f"GET /livez HTTP/1.1\r\nHost: {server_name}\r\n"
                             "Connection: close\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                for line in head.decode("latin-1").split("\r\n"):
                    if line.lower().startswith("date:"):
                        date = _skew(line.split(":", 1)[1].strip(), sent, time.time())
            finally:
                writer.close()
    except (OSError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError,
            asyncio.LimitOverrunError, ValueError) as error:
        if leaf is None:
            return Probe(None, False, _describe(error), None)
    verified, error_text = await _verify(host, port, server_name, ca_bundle, timeout)
    return Probe(leaf, verified, error_text, date)


async def _verify(host: str, port: int, server_name: str, ca_bundle: bytes,
                  timeout: float) -> tuple[bool, str]:
    """Whether a TLS handshake trusting only ca_bundle, checking server_name, succeeds."""
    try:
        context = ssl.create_default_context(cadata=ca_bundle.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as error:
        return False, f"the caBundle is not usable: {error}"
    context.set_alpn_protocols(["http/1.1"])
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port, ssl=context,
                                                      server_hostname=server_name)
            writer.close()
    except ssl.SSLCertVerificationError as error:
        return False, str(error.verify_message or error)
    except (OSError, TimeoutError, ssl.SSLError) as error:
        return False, _describe(error)
    return True, ""


def run_on_reactor(main: Callable[[], Awaitable[_T]]) -> _T:
    """Run main() on Twisted's asyncio reactor (installed here), as kext's client needs."""
    from twisted.internet import asyncioreactor

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor
    outcome: list[Any] = []

    async def wrapped() -> None:
        try:
            outcome.append(await main())
        except BaseException as error:  # re-raised below, outside the reactor
            outcome.append(error)
        finally:
            reactor.stop()

    reactor.callWhenRunning(lambda: asyncio.ensure_future(wrapped()))
    reactor.run(installSignalHandlers=False)
    loop.close()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    result: _T = outcome[0]
    return result


def main(config: ServerConfig, kubeconfig: str = "", context: str = "",
         namespace: str = "", service_account: str = "") -> int:
    """`kext doctor`: print one line per check; 0 when nothing failed, else 1."""
    from kext.kube import KubeConfigError, in_cluster, kubeconfig_paths, load_kubeconfig

    try:
        if kubeconfig:
            access = load_kubeconfig(kubeconfig, context)
        else:
            paths = kubeconfig_paths()
            if any(os.path.exists(p) for p in paths) or not os.environ.get(
                    "KUBERNETES_SERVICE_HOST"):
                access = load_kubeconfig(paths, context)
            else:
                access = in_cluster()
    except KubeConfigError as error:
        print(f"{FAIL} cluster access: {error}", file=sys.stderr)
        return 1

    def emit(finding: Finding) -> None:
        print(finding.line(), flush=True)

    async def diagnose() -> bool:
        client = KubeClient(access, timeout=CALL_TIMEOUT)
        try:
            doctor = Doctor(client, apis_of(config), namespace=namespace,
                            service_account=service_account, emit=emit)
            await doctor.run()
            return doctor.failed
        finally:
            await client.close()

    failed = run_on_reactor(diagnose)
    return 1 if failed else 0


def _skew(date_header: str, sent: float, received: float) -> float | None:
    """How far the clock behind a Date header is ahead of ours (seconds), or None. A Date
    is truncated to the second: half a second is added back."""
    try:
        then = email.utils.parsedate_to_datetime(date_header).timestamp() + 0.5
    except (TypeError, ValueError):
        return None
    return then - (sent + received) / 2


def _ca_bundle(value: object) -> bytes | None:
    """The PEM an APIService's caBundle holds, or None when it is empty or not certificates."""
    if not value:
        return None
    try:
        pem = base64.b64decode(str(value), validate=True)
        x509.load_pem_x509_certificates(pem)
    except (binascii.Error, ValueError):
        return None
    return pem


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in san.get_values_for_type(x509.DNSName)]


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return str(error) or type(error).__name__
