"""`kext doctor` against the kube-apiserver stand-in, with a real kext (on a real etcd) as the
Service's only endpoint on 127.0.0.1: a healthy install passes every check; each piece of a
deliberately broken install is named with its fix."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kext.certs import ensure_self_signed, new_ca
from tests.etcd import EtcdServer
from tests.kext_process import REPO, KextProcess, start_kext
from tests.kube_apiserver import KubeAPIServer

NS, SERVICE, ACCOUNT = "kext-system", "kext", "kext"
API_SERVICE = "v1alpha1.example.kext.io"
SA_USER = f"system:serviceaccount:{NS}:{ACCOUNT}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    server = KubeAPIServer(tmp_path_factory.mktemp("kube-apiserver"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def kext(etcd_server: EtcdServer, cluster: KubeAPIServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[KextProcess]:
    """kext trusting the stand-in's front proxy, serving a certificate for its Service's name
    (made before it starts: kext keeps valid material it finds)."""
    workdir = tmp_path_factory.mktemp("kext")
    ensure_self_signed(str(workdir / "certs"), [f"{SERVICE}.{NS}.svc"], "https://127.0.0.1")
    process = start_kext(workdir, etcd_server.endpoint, authentication={"requestHeader": {
        "clientCAFile": cluster.front_proxy_ca_file, "allowedNames": ["front-proxy-client"]}})
    try:
        yield process
    finally:
        process.stop()


def kext_port(kext: KextProcess) -> int:
    return int(kext.url.rsplit(":", 1)[1])


def install(cluster: KubeAPIServer, kext: KextProcess) -> None:
    """What a healthy install leaves in the cluster (the aggregator's status included)."""
    cluster.clear_objects()
    cluster.sar.clear()
    cluster.clock_offset = 0
    with open(kext.ca_file, "rb") as f:
        ca_bundle = base64.b64encode(f.read()).decode()
    cluster.put({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                 "metadata": {"name": API_SERVICE},
                 "spec": {"group": "example.kext.io", "version": "v1alpha1",
                          "service": {"namespace": NS, "name": SERVICE, "port": 443},
                          "caBundle": ca_bundle, "groupPriorityMinimum": 1000,
                          "versionPriority": 15},
                 "status": {"conditions": [{"type": "Available", "status": "True",
                                            "reason": "Passed",
                                            "message": "all checks passed"}]}})
    cluster.put({"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": SERVICE, "namespace": NS},
                 "spec": {"type": "ClusterIP", "selector": {"app": "kext"},
                          "ports": [{"name": "https", "port": 443,
                                     "targetPort": kext_port(kext)}]}})
    cluster.put({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                 "metadata": {"name": f"{SERVICE}-abcde", "namespace": NS,
                              "labels": {"kubernetes.io/service-name": SERVICE}},
                 "addressType": "IPv4",
                 "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True},
                                "targetRef": {"kind": "Pod", "name": "kext-0",
                                              "namespace": NS}}],
                 "ports": [{"name": "https", "port": kext_port(kext), "protocol": "TCP"}]})
    cluster.put({"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": "kext-0", "namespace": NS, "labels": {"app": "kext"}},
                 "spec": {"serviceAccountName": ACCOUNT, "containers": [{"name": "kext"}]}})
    subject = [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NS}]
    cluster.put({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                 "metadata": {"name": "kext:auth-delegator"},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                             "name": "system:auth-delegator"}, "subjects": subject})
    cluster.put({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                 "metadata": {"name": "kext:extension-apiserver-authentication-reader",
                              "namespace": "kube-system"},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                             "name": "extension-apiserver-authentication-reader"},
                 "subjects": subject})


def set_available(cluster: KubeAPIServer, status: str, reason: str, message: str) -> None:
    api_service = cluster.get("apiregistration.k8s.io/v1", "APIService", API_SERVICE)
    assert api_service is not None
    api_service["status"] = {"conditions": [{"type": "Available", "status": status,
                                             "reason": reason, "message": message}]}
    cluster.put(api_service)


def doctor(cluster: KubeAPIServer, kext: KextProcess,
           tmp_path: Path) -> tuple[int, list[str]]:
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    result = subprocess.run(
        [sys.executable, "-m", "kext", "doctor", "--kubeconfig", str(kubeconfig),
         "--config", str(kext.workdir / "server.yaml")],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert result.stderr == "", result.stderr
    return result.returncode, result.stdout.splitlines()


def line(lines: list[str], start: str) -> str:
    found = [item for item in lines if item.startswith(start)]
    assert found, f"no line starting {start!r} in:\n" + "\n".join(lines)
    return found[0]


def test_a_healthy_install_passes_every_check(cluster: KubeAPIServer, kext: KextProcess,
                                              tmp_path: Path) -> None:
    install(cluster, kext)
    code, lines = doctor(cluster, kext, tmp_path)
    assert code == 0, "\n".join(lines)
    assert all(item.startswith("PASS ") for item in lines), "\n".join(lines)
    port = kext_port(kext)
    assert [item.split(":")[0] for item in lines] == [
        "PASS kube-apiserver",
        f"PASS APIService {API_SERVICE}",
        f"PASS Service {NS}/{SERVICE}",
        f"PASS endpoints of {NS}/{SERVICE}",
        "PASS serving certificate at 127.0.0.1",
        "PASS RBAC system",
        "PASS RBAC extension-apiserver-authentication-reader",
        "PASS discovery /apis/example.kext.io/v1alpha1",
        "PASS clock skew",
    ]
    assert f"127.0.0.1:{port}" in line(lines, "PASS endpoints")
    assert f"for {SERVICE}.{NS}.svc" in line(lines, "PASS serving certificate")
    assert "ClusterRoleBinding kext:auth-delegator" in line(lines, "PASS RBAC system")
    # Discovery really went through the stand-in's aggregator to kext.
    assert "gadgets, widgets" in line(lines, "PASS discovery") or \
        "widgets, gadgets" in line(lines, "PASS discovery")


def no_endpoints(cluster: KubeAPIServer, kext: KextProcess) -> None:
    cluster.delete("discovery.k8s.io/v1", "EndpointSlice", f"{SERVICE}-abcde", NS)
    cluster.put({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                 "metadata": {"name": f"{SERVICE}-fghij", "namespace": NS,
                              "labels": {"kubernetes.io/service-name": SERVICE}},
                 "addressType": "IPv4",
                 "endpoints": [{"addresses": ["10.0.0.9"], "conditions": {"ready": False}}],
                 "ports": [{"name": "https", "port": kext_port(kext)}]})
    set_available(cluster, "False", "MissingEndpoints",
                  f'endpointslices for service/{SERVICE} in "{NS}" have no addresses with '
                  'port name "https"')


def foreign_ca_bundle(cluster: KubeAPIServer, kext: KextProcess) -> None:
    api_service = cluster.get("apiregistration.k8s.io/v1", "APIService", API_SERVICE)
    assert api_service is not None
    api_service["spec"]["caBundle"] = base64.b64encode(new_ca("another-ca").cert_pem).decode()
    cluster.put(api_service)
    set_available(cluster, "False", "FailedDiscoveryCheck",
                  "failing or missing response from https://127.0.0.1/apis/example.kext.io/"
                  "v1alpha1: tls: failed to verify certificate: x509: certificate signed by "
                  "unknown authority")


def missing_role_binding(cluster: KubeAPIServer, kext: KextProcess) -> None:
    cluster.delete("rbac.authorization.k8s.io/v1", "RoleBinding",
                   "kext:extension-apiserver-authentication-reader", "kube-system")


def failed_discovery(cluster: KubeAPIServer, kext: KextProcess) -> None:
    set_available(cluster, "False", "FailedDiscoveryCheck",
                  "failing or missing response from https://10.0.0.5:8443/apis/example.kext.io/"
                  "v1alpha1: bad status from https://10.0.0.5:8443/apis/example.kext.io/"
                  "v1alpha1: 401")


def missing_api_service(cluster: KubeAPIServer, kext: KextProcess) -> None:
    cluster.delete("apiregistration.k8s.io/v1", "APIService", API_SERVICE)


def missing_service(cluster: KubeAPIServer, kext: KextProcess) -> None:
    cluster.delete("v1", "Service", SERVICE, NS)
    set_available(cluster, "False", "ServiceNotFound",
                  f'service/{SERVICE} in "{NS}" is not present')


BROKEN: list[tuple[Callable[[KubeAPIServer, KextProcess], None], list[tuple[str, str]]]] = [
    (no_endpoints, [
        (f"FAIL APIService {API_SERVICE}", "not Available: MissingEndpoints: endpointslices"),
        (f"FAIL APIService {API_SERVICE}", "Fix: no kext pod is ready"),
        (f"FAIL endpoints of {NS}/{SERVICE}", "no ready endpoint serves port https (1 not ready)"),
        (f"FAIL endpoints of {NS}/{SERVICE}", "Fix: "),
        ("FAIL discovery /apis/example.kext.io/v1alpha1", "answers 503"),
        (f"SKIP serving certificate of {NS}/{SERVICE}", "no ready endpoint"),
        ("SKIP RBAC system:auth-delegator", "pass --service-account NAME"),
    ]),
    (foreign_ca_bundle, [
        (f"FAIL APIService {API_SERVICE}", "FailedDiscoveryCheck"),
        ("FAIL serving certificate at 127.0.0.1", f"caBundle of {API_SERVICE} (CN=another-ca) "
                                                  "does not verify it"),
        ("FAIL serving certificate at 127.0.0.1", "Fix: issue kext's serving certificate"),
        ("PASS RBAC system:auth-delegator", "kext:auth-delegator"),
    ]),
    (missing_role_binding, [
        ("FAIL RBAC extension-apiserver-authentication-reader",
         f"no RoleBinding to extension-apiserver-authentication-reader for {NS}/{ACCOUNT}"),
        ("FAIL RBAC extension-apiserver-authentication-reader",
         "Fix: kubectl -n kube-system create rolebinding kext:extension-apiserver-"
         "authentication-reader --role=extension-apiserver-authentication-reader "
         f"--serviceaccount={NS}:{ACCOUNT}"),
        (f"PASS APIService {API_SERVICE}", "Available"),
    ]),
    (failed_discovery, [
        (f"FAIL APIService {API_SERVICE}", "not Available: FailedDiscoveryCheck: failing or "
                                           "missing response from https://10.0.0.5:8443"),
        (f"FAIL APIService {API_SERVICE}", "Fix: kube-apiserver reached the Service"),
        ("PASS serving certificate at 127.0.0.1", "verifies"),
        ("FAIL discovery /apis/example.kext.io/v1alpha1", "the aggregator cannot reach kext"),
    ]),
    (missing_api_service, [
        (f"FAIL APIService {API_SERVICE}", "does not exist"),
        (f"FAIL APIService {API_SERVICE}", "Fix: install kext's objects: kext manifests"),
        ("FAIL discovery /apis/example.kext.io/v1alpha1", "does not route it (404)"),
    ]),
    (missing_service, [
        (f"FAIL APIService {API_SERVICE}", "ServiceNotFound"),
        (f"FAIL Service {NS}/{SERVICE}", "does not exist. Fix: create kext's Service"),
    ]),
]


@pytest.mark.parametrize(("breakage", "expected"), BROKEN,
                         ids=[b.__name__ for b, _ in BROKEN])
def test_a_broken_install_is_named_with_its_fix(
        cluster: KubeAPIServer, kext: KextProcess, tmp_path: Path,
        breakage: Callable[[KubeAPIServer, KextProcess], None],
        expected: list[tuple[str, str]]) -> None:
    install(cluster, kext)
    breakage(cluster, kext)
    code, lines = doctor(cluster, kext, tmp_path)
    assert code == 1, "\n".join(lines)
    for start, words in expected:
        assert words in line(lines, start), "\n".join(lines)


def test_rbac_granted_another_way_passes_through_subject_access_reviews(
        cluster: KubeAPIServer, kext: KextProcess, tmp_path: Path) -> None:
    install(cluster, kext)
    missing_role_binding(cluster, kext)
    cluster.sar.allow(user=SA_USER, resource="configmaps", namespace="kube-system",
                      name="extension-apiserver-authentication")
    code, lines = doctor(cluster, kext, tmp_path)
    assert code == 0, "\n".join(lines)
    assert "other RBAC grants" in line(
        lines, "PASS RBAC extension-apiserver-authentication-reader")
    reviews: list[Any] = [r.body for r in cluster.requests_to(
        "/apis/authorization.k8s.io/v1/subjectaccessreviews")]
    assert {r["spec"]["resourceAttributes"]["verb"] for r in reviews[-3:]} == {
        "get", "list", "watch"}
    assert all(r["spec"]["user"] == SA_USER for r in reviews)


def test_clock_skew_is_a_warning(cluster: KubeAPIServer, kext: KextProcess,
                                 tmp_path: Path) -> None:
    install(cluster, kext)
    cluster.clock_offset = 120
    code, lines = doctor(cluster, kext, tmp_path)
    assert code == 0, "\n".join(lines)
    warning = line(lines, "WARN clock skew")
    skew = int(warning.split("kube-apiserver ")[1].split(" s")[0])
    assert 118 <= skew <= 122, warning  # Date headers have whole seconds
    assert "kext -" in warning or "kext +" in warning


def test_no_cluster_access_fails_plainly(kext: KextProcess, tmp_path: Path) -> None:
    cluster = KubeAPIServer(tmp_path / "down")  # never started: nothing listens
    cluster.port = 1
    code, lines = doctor(cluster, kext, tmp_path)
    assert code == 1
    assert lines == [line(lines, "FAIL kube-apiserver")]
    assert "connection refused" in lines[0] and "Fix: check --kubeconfig" in lines[0]


def test_a_bad_configuration_is_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("apiVersion: kext.io/v1alpha1\nkind: ServerConfig\nserving: {port: x}\n")
    result = subprocess.run([sys.executable, "-m", "kext", "doctor", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.startswith("serving.port:")
