"""Delegated trust with a real kext (on a real etcd) and the kube-apiserver stand-in as the
cluster: kext reads kube-system/extension-apiserver-authentication from it (fromCluster),
reviews bearer tokens (TokenReview) and asks it about every request that is not
always-allowed (SubjectAccessReview), as an aggregated server installed in a cluster does.

Front-proxy requests are made over HTTP/2, as the aggregator makes them. Each test uses users
of its own, so what kext has cached for one test never answers another."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kext.certs import issue_cert, new_ca
from tests.etcd import EtcdServer
from tests.kext_process import REPO, KextProcess, free_port, start_kext, write_config
from tests.kube_apiserver import KubeAPIServer

SAR = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
GROUP, VERSION = "example.kext.io", "v1alpha1"
WIDGETS = f"/apis/{GROUP}/{VERSION}/namespaces/default/widgets"
TOKEN_TTL = 2.0
MASTERS = [("x-remote-group", "system:masters")]


def delegated(cluster: KubeAPIServer, directory: Path) -> dict[str, Any]:
    """server.yaml's sections for a kext that delegates everything to the stand-in."""
    kubeconfig = cluster.write_kubeconfig(directory / "cluster.kubeconfig")
    return {
        "kubernetes": {"kubeconfig": str(kubeconfig)},
        "authentication": {"fromCluster": True,
                           "tokenReview": {"enabled": True, "cacheTTL": f"{TOKEN_TTL:g}s"}},
        "authorization": {"mode": "Delegated", "cacheAuthorizedTTL": "30s",
                          "cacheUnauthorizedTTL": "30s"},
    }


@pytest.fixture(scope="module")
def kext(etcd_server: EtcdServer, cluster: KubeAPIServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[KextProcess]:
    workdir = tmp_path_factory.mktemp("kext")
    process = start_kext(workdir, etcd_server.endpoint, **delegated(cluster, workdir))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(autouse=True)
def fresh_rules(cluster: KubeAPIServer) -> Iterator[None]:
    cluster.sar.clear()
    cluster.access.clear()
    yield
    cluster.release()
    if not cluster.running:
        cluster.start()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def h2(kext: KextProcess, cert: tuple[str, str] | None = None) -> httpx.Client:
    """An HTTP/2 client trusting kext's CA, presenting cert (files) if given."""
    context = ssl.create_default_context(cafile=kext.ca_file)
    if cert is not None:
        context.load_cert_chain(*cert)
    return httpx.Client(http2=True, verify=context, trust_env=False, timeout=30)


def front_proxy(kext: KextProcess, cluster: KubeAPIServer) -> httpx.Client:
    """The aggregator: the stand-in's front-proxy client certificate."""
    return h2(kext, (cluster.front_proxy_cert_file, cluster.front_proxy_key_file))


def as_user(name: str, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [("x-remote-user", name), *extra]


def reviews_for(cluster: KubeAPIServer, user: str) -> list[dict[str, Any]]:
    """The SubjectAccessReview specs kext asked for user."""
    return [r.body["spec"] for r in cluster.requests_to(SAR, "POST")
            if r.body["spec"].get("user") == user]


def widget(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget",
            "metadata": {"name": name, "namespace": "default"}, "spec": {"size": 1}}


def create_as_admin(kext: KextProcess, name: str) -> dict[str, Any]:
    response = kext.session().post(f"{kext.url}{WIDGETS}", json=widget(name))
    assert response.status_code == 201, response.text
    return dict(response.json())


def poll(condition: Callable[[], bool], timeout: float = 20.0, every: float = 0.1) -> float:
    """Wait until condition holds (fail after timeout); returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(every)
    return time.monotonic() - started


def test_the_front_proxy_user_with_groups_uid_and_extras(kext: KextProcess,
                                                         cluster: KubeAPIServer) -> None:
    alice = unique("alice")
    cluster.sar.allow(user=alice, verb="list", resource="widgets")
    headers = as_user(alice, ("x-remote-group", "devs"), ("x-remote-group", "on-call"),
                      ("x-remote-uid", "uid-42"), ("x-remote-extra-scopes", "read"),
                      ("x-remote-extra-scopes", "write"),
                      ("X-Remote-Extra-Example.com%2FTeam", "blue"))
    with front_proxy(kext, cluster) as client:
        response = client.get(f"{kext.url}{WIDGETS}", headers=headers)
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200, response.text
        denied = client.delete(f"{kext.url}{WIDGETS}/nothing", headers=headers)
    (listed, deleting) = reviews_for(cluster, alice)
    assert listed == {
        "resourceAttributes": {"namespace": "default", "verb": "list", "group": GROUP,
                               "version": VERSION, "resource": "widgets"},
        "user": alice, "uid": "uid-42", "groups": ["devs", "on-call", "system:authenticated"],
        "extra": {"scopes": ["read", "write"], "example.com/team": ["blue"]}}
    assert deleting["resourceAttributes"]["verb"] == "delete"
    assert denied.status_code == 403
    assert f'User "{alice}" cannot delete' in denied.json()["message"]


def test_only_the_front_proxy_may_name_the_user(kext: KextProcess, cluster: KubeAPIServer,
                                                tmp_path: Path) -> None:
    mallory = unique("mallory")
    smuggled = as_user("kube-admin", *MASTERS)
    # a certificate of the front-proxy CA whose CN is not an allowed name: 401
    intruder = issue_cert(cluster.front_proxy_ca, "intruder", client=True)
    (tmp_path / "intruder.crt").write_bytes(intruder.cert_pem)
    (tmp_path / "intruder.key").write_bytes(intruder.key_pem)
    with h2(kext, (str(tmp_path / "intruder.crt"), str(tmp_path / "intruder.key"))) as client:
        response = client.get(f"{kext.url}{WIDGETS}", headers=smuggled)
        assert response.status_code == 401
        assert response.json()["reason"] == "Unauthorized"
    # a client certificate of the cluster's client CA is its own user, headers or not
    with h2(kext, cluster.client_cert(mallory, ["interns"])) as client:
        response = client.get(f"{kext.url}{WIDGETS}", headers=smuggled)
    assert response.status_code == 403
    assert f'User "{mallory}" cannot list resource "widgets"' in response.json()["message"]
    (review,) = reviews_for(cluster, mallory)
    assert review["groups"] == ["interns", "system:authenticated"]
    assert not reviews_for(cluster, "kube-admin")
    # kext's own admin certificate is kext-admin, whatever the headers say
    admin = kext.session().get(f"{kext.url}{WIDGETS}", headers=dict(as_user("someone-else")))
    assert admin.status_code == 200 and not reviews_for(cluster, "someone-else")
    # no credentials at all
    with h2(kext) as client:
        response = client.get(f"{kext.url}{WIDGETS}")
    assert (response.status_code, response.json()["message"]) == (401, "Unauthorized")


def test_a_bearer_token_is_reviewed_once_per_ttl(kext: KextProcess,
                                                 cluster: KubeAPIServer) -> None:
    team = unique("token-users")
    cluster.sar.allow(group=team)
    token = cluster.add_token(unique("tess"), [team])

    def reviews() -> int:
        return sum(1 for r in cluster.requests_to(TOKEN_REVIEWS, "POST")
                   if r.body["spec"]["token"] == token)

    bearer = {"Authorization": f"Bearer {token}"}
    session = requests.Session()
    session.trust_env = False
    started = time.monotonic()
    for _ in range(5):
        response = session.get(f"{kext.url}{WIDGETS}", headers=bearer, verify=kext.ca_file)
        assert response.status_code == 200, response.text
    if time.monotonic() - started < TOKEN_TTL:
        assert reviews() == 1

    def reviewed_again() -> bool:
        session.get(f"{kext.url}{WIDGETS}", headers=bearer, verify=kext.ca_file)
        return reviews() == 2

    poll(reviewed_again, every=0.2)
    assert time.monotonic() - started >= TOKEN_TTL
    bad = session.get(f"{kext.url}{WIDGETS}", headers={"Authorization": "Bearer nobody-s"},
                      verify=kext.ca_file)
    assert (bad.status_code, bad.json()["reason"]) == (401, "Unauthorized")
    assert token not in kext.log()


def test_a_denied_delete_is_kubes_403_and_changes_nothing(kext: KextProcess,
                                                          cluster: KubeAPIServer) -> None:
    dora, name = unique("dora"), unique("w")
    cluster.sar.allow(user=dora, verb="get")
    cluster.sar.deny(user=dora, verb="delete", reason=f"policy {name} says no")
    created = create_as_admin(kext, name)
    with front_proxy(kext, cluster) as client:
        assert client.get(f"{kext.url}{WIDGETS}/{name}", headers=as_user(dora)).status_code == 200
        response = client.delete(f"{kext.url}{WIDGETS}/{name}", headers=as_user(dora))
    status = response.json()
    assert (response.status_code, status["reason"], status["code"]) == (403, "Forbidden", 403)
    assert status["message"] == (
        f'widgets.example.kext.io "{name}" is forbidden: User "{dora}" cannot delete resource '
        f'"widgets" in API group "example.kext.io" in the namespace "default"')
    assert status["details"] == {"name": name, "group": GROUP, "kind": "widgets"}
    still = kext.session().get(f"{kext.url}{WIDGETS}/{name}").json()
    assert still["metadata"] == created["metadata"]
    # the review's reason is in kext's log, not in the answer
    poll(lambda: f"policy {name} says no" in kext.log())


def test_allow_and_deny_are_both_cached(kext: KextProcess, cluster: KubeAPIServer) -> None:
    carl = unique("carl")
    cluster.sar.allow(user=carl, verb="list")
    cluster.sar.deny(user=carl, verb="get")
    with front_proxy(kext, cluster) as client:
        def ask() -> tuple[int, int]:
            listed = client.get(f"{kext.url}{WIDGETS}", headers=as_user(carl)).status_code
            got = client.get(f"{kext.url}{WIDGETS}/x", headers=as_user(carl)).status_code
            return listed, got

        assert ask() == (200, 403)
        assert len(reviews_for(cluster, carl)) == 2
        # the cluster changes its mind; kext keeps both answers for their TTLs
        cluster.sar.clear()
        cluster.sar.deny(user=carl, verb="list")
        cluster.sar.allow(user=carl, verb="get")
        for _ in range(3):
            assert ask() == (200, 403)
        assert len(reviews_for(cluster, carl)) == 2
    exposition = kext.session().get(f"{kext.url}/metrics").text
    samples = {(s.name, tuple(s.labels.values())): s.value
               for f in text_string_to_metric_families(exposition) for s in f.samples}
    assert samples[("kext_authorization_cache_request_total", ("hit",))] >= 6
    assert samples[("authorization_attempts_total", ("allowed",))] >= 4
    assert samples[("authorization_attempts_total", ("denied",))] >= 4
    assert samples[("authentication_attempts", ("success",))] >= 8


def test_deletecollection_denied_while_get_is_allowed(kext: KextProcess,
                                                      cluster: KubeAPIServer) -> None:
    gina, name = unique("gina"), unique("w")
    cluster.sar.allow(user=gina, verb="get")
    cluster.sar.allow(user=gina, verb="list")
    create_as_admin(kext, name)
    with front_proxy(kext, cluster) as client:
        assert client.get(f"{kext.url}{WIDGETS}/{name}", headers=as_user(gina)).status_code == 200
        response = client.delete(f"{kext.url}{WIDGETS}", headers=as_user(gina))
    assert response.status_code == 403
    assert response.json()["message"] == (
        f'widgets.example.kext.io is forbidden: User "{gina}" cannot deletecollection resource '
        f'"widgets" in API group "example.kext.io" in the namespace "default"')
    assert [r["resourceAttributes"]["verb"] for r in reviews_for(cluster, gina)] == [
        "get", "deletecollection"]
    assert kext.session().get(f"{kext.url}{WIDGETS}/{name}").status_code == 200


def test_always_allowed_groups_and_paths_ask_nothing(kext: KextProcess,
                                                     cluster: KubeAPIServer) -> None:
    root, prober = unique("root"), unique("prober")
    before = len(cluster.requests_to(SAR))
    with front_proxy(kext, cluster) as client:
        response = client.get(f"{kext.url}{WIDGETS}", headers=as_user(root, *MASTERS))
        assert response.status_code == 200
        for path in ("/healthz", "/livez", "/readyz", "/readyz/etcd"):
            assert client.get(f"{kext.url}{path}", headers=as_user(prober)).status_code == 200
        assert len(cluster.requests_to(SAR)) == before
        # any other path is asked about, as a non-resource request
        assert client.get(f"{kext.url}/metrics", headers=as_user(prober)).status_code == 403
    assert reviews_for(cluster, prober) == [{
        "nonResourceAttributes": {"path": "/metrics", "verb": "get"}, "user": prober,
        "groups": ["system:authenticated"]}]
    with h2(kext) as anonymous:  # health probes need no credentials
        assert anonymous.get(f"{kext.url}/readyz").status_code == 200


def test_kubectl_as_another_user(kext: KextProcess, cluster: KubeAPIServer,
                                 tmp_path: Path) -> None:
    alice, bob, carol = unique("alice"), unique("bob"), unique("carol")
    cluster.sar.allow(user=alice, verb="impersonate", resource="users", name=bob)
    cluster.sar.allow(user=bob)
    cluster.sar.allow(user=alice, path="/*")  # discovery, as alice herself
    token = cluster.add_token(alice)
    kubeconfig = tmp_path / "alice.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kext",
        "clusters": [{"name": "kext", "cluster": {"server": kext.url,
                                                  "certificate-authority": kext.ca_file}}],
        "users": [{"name": "alice", "user": {"token": token}}],
        "contexts": [{"name": "kext", "context": {"cluster": "kext", "user": "alice"}}]}))

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), *args], capture_output=True,
            text=True, timeout=60, env={**os.environ, "KUBECACHEDIR": str(tmp_path / "cache")})

    allowed = kubectl("--as", bob, "get", "widgets", "-n", "default")
    assert allowed.returncode == 0, allowed.stderr
    listed = [r for r in reviews_for(cluster, bob)
              if r.get("resourceAttributes", {}).get("resource") == "widgets"]
    assert listed and listed[0]["groups"] == ["system:authenticated"]
    denied = kubectl("--as", carol, "get", "widgets", "-n", "default")
    assert denied.returncode != 0
    assert (f'Error from server (Forbidden): users "{carol}" is forbidden: User "{alice}" '
            'cannot impersonate resource "users" in API group "" at the cluster scope'
            ) in denied.stderr
    grouped = kubectl("--as", bob, "--as-group", "system:masters", "get", "widgets")
    assert grouped.returncode != 0
    assert (f'groups "system:masters" is forbidden: User "{alice}" cannot impersonate '
            'resource "groups"') in grouped.stderr
    assert not reviews_for(cluster, carol)


def test_a_rotated_front_proxy_ca_is_trusted_without_a_restart(
        kext: KextProcess, cluster: KubeAPIServer, tmp_path: Path) -> None:
    rotated_ca = new_ca("rotated-front-proxy-ca")
    proxy = issue_cert(rotated_ca, "front-proxy-client", client=True)
    cert = (tmp_path / "proxy.crt", tmp_path / "proxy.key")
    cert[0].write_bytes(proxy.cert_pem)
    cert[1].write_bytes(proxy.key_pem)
    new_proxy = (str(cert[0]), str(cert[1]))
    pid = kext.process.pid

    def status_with(files: tuple[str, str]) -> int:
        try:
            with h2(kext, files) as client:
                return client.get(f"{kext.url}{WIDGETS}",
                                  headers=as_user(unique("rotated"), *MASTERS)).status_code
        except httpx.TransportError:
            return 0  # the handshake was refused: kext does not know the CA

    assert status_with(new_proxy) in (0, 401)
    old_connection = front_proxy(kext, cluster)
    try:
        assert old_connection.get(f"{kext.url}{WIDGETS}",
                                  headers=as_user("x", *MASTERS)).status_code == 200
        cluster.put_extension_apiserver_authentication(**{
            "requestheader-client-ca-file": rotated_ca.cert_pem.decode()})
        poll(lambda: status_with(new_proxy) == 200)
        # the old CA is no longer trusted, even on a connection made before the rotation
        response = old_connection.get(f"{kext.url}{WIDGETS}", headers=as_user("x", *MASTERS))
        assert response.status_code == 401
        # an emptied key keeps the CA in use
        cluster.put_extension_apiserver_authentication(**{"requestheader-client-ca-file": ""})
        poll(lambda: "requestheader-client-ca-file is empty; keeping the CA" in kext.log())
        assert status_with(new_proxy) == 200
        assert kext.process.poll() is None and kext.process.pid == pid
    finally:
        old_connection.close()
        cluster.put_extension_apiserver_authentication()
        poll(lambda: status_with((cluster.front_proxy_cert_file,
                                  cluster.front_proxy_key_file)) == 200)


def test_the_cluster_gone_fails_closed_then_recovers(kext: KextProcess,
                                                     cluster: KubeAPIServer) -> None:
    known, stranger = unique("known"), unique("stranger")
    cluster.sar.allow(user=known)
    cluster.sar.allow(user=stranger)
    with front_proxy(kext, cluster) as client:
        def get(user: str) -> httpx.Response:
            return client.get(f"{kext.url}{WIDGETS}", headers=as_user(user))

        assert get(known).status_code == 200
        cluster.stop()
        try:
            assert get(known).status_code == 200  # a cached decision still serves
            failed = get(stranger)
            status = failed.json()
            assert (failed.status_code, status["reason"]) == (500, "InternalError")
            assert "SubjectAccessReview failed" in status["message"]
            assert get(stranger).status_code == 500  # the failure was not cached as a denial
        finally:
            cluster.start()
        poll(lambda: get(stranger).status_code == 200)
    assert kext.process.poll() is None


def run_until_exit(workdir: Path, etcd: EtcdServer, **overrides: Any,
                   ) -> subprocess.CompletedProcess[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(workdir, free_port(), etcd.endpoint, **overrides)
    return subprocess.run([sys.executable, "-m", "kext", "--config", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_no_right_to_read_the_configmap_stops_start_up(etcd_server: EtcdServer,
                                                       tmp_path: Path) -> None:
    with KubeAPIServer(tmp_path / "cluster") as cluster:
        cluster.put_extension_apiserver_authentication()
        cluster.access.deny(resource="configmaps", namespace="kube-system")
        result = run_until_exit(tmp_path / "kext", etcd_server,
                                **delegated(cluster, tmp_path))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("kext:")]
    assert len(lines) == 1, result.stderr
    assert "configmap kube-system/extension-apiserver-authentication (403 Forbidden: " in lines[0]
    assert 'User "kube-admin" cannot get resource "configmaps"' in lines[0]
    assert "Role extension-apiserver-authentication-reader in kube-system" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_a_configmap_missing_at_start_is_trusted_once_it_appears(
        etcd_server: EtcdServer, tmp_path: Path) -> None:
    with KubeAPIServer(tmp_path / "cluster") as cluster:
        workdir = tmp_path / "kext"
        workdir.mkdir()
        kext = start_kext(workdir, etcd_server.endpoint, **delegated(cluster, workdir))
        try:
            def front_proxy_status() -> int:
                try:
                    with front_proxy(kext, cluster) as client:
                        return client.get(f"{kext.url}{WIDGETS}",
                                          headers=as_user("x", *MASTERS)).status_code
                except httpx.TransportError:
                    return 0

            assert front_proxy_status() in (0, 401)
            cluster.put_extension_apiserver_authentication()
            poll(lambda: front_proxy_status() == 200)
        finally:
            kext.stop()
