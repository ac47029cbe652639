"""KubeClient against the HTTPS kube-apiserver stand-in: TLS verification, client-cert and
token authentication (and a rotated token file), the connection pool, retries, timeouts,
Status errors and watches."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kext.certs import new_ca
from kext.kube import (
    ClusterAccess,
    KubeClient,
    KubeStatusError,
    KubeTimeout,
    KubeUnavailable,
    load_kubeconfig,
)
from tests.kube_apiserver import KubeAPIServer

pytestmark = pytest.mark.asyncio

CONFIGMAP = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
CONFIGMAPS = "/api/v1/namespaces/kube-system/configmaps"


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll condition until it holds; fail after timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def token_access(server: KubeAPIServer, token: str = "", token_file: str = "") -> ClusterAccess:
    with open(server.ca_file, "rb") as f:
        ca = f.read()
    return ClusterAccess(server=server.url, ca_pem=ca, token=token, token_file=token_file)


def cert_client(server: KubeAPIServer, tmp_path: Path, reactor: Any,
                **options: Any) -> KubeClient:
    access = load_kubeconfig(str(server.write_kubeconfig(tmp_path / "kubeconfig")))
    return KubeClient(access, reactor=reactor, **options)


async def test_client_certificate_is_the_caller(kube_apiserver: KubeAPIServer,
                                                tmp_path: Path, reactor: Any) -> None:
    kube_apiserver.put_extension_apiserver_authentication()
    client = cert_client(kube_apiserver, tmp_path, reactor)
    configmap = await client.get(CONFIGMAP)
    assert "requestheader-client-ca-file" in configmap["data"]
    (request,) = kube_apiserver.requests
    assert (request.user, request.auth) == ("kube-admin", "cert")
    await client.close()


async def test_calls_share_one_tls_connection(kube_apiserver: KubeAPIServer,
                                              tmp_path: Path, reactor: Any) -> None:
    client = cert_client(kube_apiserver, tmp_path, reactor)
    for _ in range(20):
        await client.get("/version")
    assert kube_apiserver.connections == 1
    await asyncio.gather(*(client.get("/version") for _ in range(8)))
    assert 1 <= kube_apiserver.connections <= 8  # concurrent calls may open a few more
    before = kube_apiserver.connections
    for _ in range(10):
        await client.get("/version")
    assert kube_apiserver.connections == before  # ... which are then reused
    await client.close()


async def test_a_server_certificate_from_another_ca_is_refused(
        kube_apiserver: KubeAPIServer, reactor: Any) -> None:
    other = new_ca("someone-else")
    access = ClusterAccess(server=kube_apiserver.url, ca_pem=other.cert_pem, token="t")
    client = KubeClient(access, reactor=reactor, timeout=5)
    with pytest.raises(KubeUnavailable, match="certificate verify failed"):
        await client.get("/version")
    assert kube_apiserver.requests == []
    # One handshake, failed, and no second try (the server may count it a moment later).
    await until(lambda: kube_apiserver.handshake_failures + kube_apiserver.connections >= 1)
    assert kube_apiserver.handshake_failures + kube_apiserver.connections == 1
    await client.close()


async def test_a_server_certificate_for_another_name_is_refused(
        kube_apiserver: KubeAPIServer, reactor: Any) -> None:
    access = token_access(kube_apiserver, token="t")
    wrong_name = ClusterAccess(server=access.server, ca_pem=access.ca_pem, token="t",
                               tls_server_name="not-kube.example.com")
    client = KubeClient(wrong_name, reactor=reactor, timeout=5)
    with pytest.raises(KubeUnavailable, match="TLS"):
        await client.get("/version")
    assert kube_apiserver.requests == []
    await client.close()


async def test_tls_server_name_verifies_the_name_instead_of_the_address(
        kube_apiserver: KubeAPIServer, reactor: Any) -> None:
    token = kube_apiserver.add_token("kext")
    access = token_access(kube_apiserver, token=token)
    named = ClusterAccess(server=access.server, ca_pem=access.ca_pem, token=token,
                          tls_server_name="kubernetes.default.svc")
    client = KubeClient(named, reactor=reactor)
    assert (await client.get("/version"))["major"] == "1"
    await client.close()


async def test_bearer_token_and_a_refused_token(kube_apiserver: KubeAPIServer,
                                                reactor: Any) -> None:
    token = kube_apiserver.add_token("system:serviceaccount:kext:kext")
    client = KubeClient(token_access(kube_apiserver, token=token), reactor=reactor)
    await client.get("/version")
    assert kube_apiserver.requests[-1].user == "system:serviceaccount:kext:kext"
    assert kube_apiserver.requests[-1].auth == "token"
    await client.close()

    stranger = KubeClient(token_access(kube_apiserver, token="not-a-token"), reactor=reactor)
    with pytest.raises(KubeStatusError) as refused:
        await stranger.get("/version")
    assert (refused.value.code, refused.value.reason) == (401, "Unauthorized")
    assert "not-a-token" not in str(refused.value) + repr(refused.value) + repr(stranger)
    await stranger.close()


async def test_a_rotated_token_file_is_read_again(kube_apiserver: KubeAPIServer,
                                                  tmp_path: Path, reactor: Any) -> None:
    first = kube_apiserver.add_token("kext")
    token_file = tmp_path / "token"
    token_file.write_text(first + "\n")
    client = KubeClient(token_access(kube_apiserver, token_file=str(token_file)),
                        reactor=reactor)
    await client.get("/version")
    # The kubelet rotates the file; the old token then stops working.
    second = kube_apiserver.add_token("kext")
    token_file.write_text(second)
    del kube_apiserver.tokens[first]
    await client.get("/version")  # a 401, the file read again, the call retried once
    assert [r.token for r in kube_apiserver.requests] == [first, first, second]
    await client.get("/version")
    assert kube_apiserver.requests[-1].token == second
    await client.close()


async def test_a_token_file_is_re_read_after_its_period(kube_apiserver: KubeAPIServer,
                                                        tmp_path: Path, reactor: Any) -> None:
    first, second = kube_apiserver.add_token("kext"), kube_apiserver.add_token("kext")
    token_file = tmp_path / "token"
    token_file.write_text(first)
    # A period no longer than the leeway: every call reads the file.
    client = KubeClient(token_access(kube_apiserver, token_file=str(token_file)),
                        reactor=reactor, token_period=0)
    await client.get("/version")
    token_file.write_text(second)
    await client.get("/version")
    assert [r.token for r in kube_apiserver.requests] == [first, second]
    await client.close()


async def test_idempotent_calls_are_retried_on_5xx(kube_apiserver: KubeAPIServer,
                                                   tmp_path: Path, reactor: Any) -> None:
    client = cert_client(kube_apiserver, tmp_path, reactor)
    kube_apiserver.fail("/version", 503, times=2)
    assert (await client.get("/version"))["major"] == "1"
    assert len(kube_apiserver.requests_to("/version")) == 3
    await client.close()


async def test_a_side_effecting_post_is_not_retried_on_5xx(kube_apiserver: KubeAPIServer,
                                                           tmp_path: Path,
                                                           reactor: Any) -> None:
    client = cert_client(kube_apiserver, tmp_path, reactor)
    path = "/apis/authentication.k8s.io/v1/tokenreviews"
    kube_apiserver.fail(path, 500, times=1)
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
              "spec": {"token": "x"}}
    with pytest.raises(KubeStatusError) as failed:
        await client.post(path, review)
    assert failed.value.code == 500
    assert len(kube_apiserver.requests_to(path)) == 1
    # The same review declared free of side effects is retried.
    kube_apiserver.fail(path, 500, times=1)
    answer = await client.post(path, review, idempotent=True)
    assert answer["status"] == {"authenticated": False}
    assert len(kube_apiserver.requests_to(path)) == 3
    await client.close()


async def test_retry_after_is_honoured_for_any_call(kube_apiserver: KubeAPIServer,
                                                    tmp_path: Path, reactor: Any) -> None:
    client = cert_client(kube_apiserver, tmp_path, reactor)
    path = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    kube_apiserver.fail(path, 429, times=1, retry_after=1)
    started = time.monotonic()
    answer = await client.post(path, {"spec": {"user": "alice", "resourceAttributes": {
        "verb": "get", "resource": "widgets"}}})
    assert time.monotonic() - started >= 0.9  # it waited as asked before trying again
    assert answer["status"]["allowed"] is False
    assert len(kube_apiserver.requests_to(path)) == 2
    await client.close()


async def test_a_retry_after_past_the_timeout_fails_at_once(kube_apiserver: KubeAPIServer,
                                                            tmp_path: Path,
                                                            reactor: Any) -> None:
    client = cert_client(kube_apiserver, tmp_path, reactor)
    kube_apiserver.fail("/version", 503, retry_after=30)
    started = time.monotonic()
    with pytest.raises(KubeStatusError) as failed:
        await client.get("/version", timeout=2)
    assert failed.value.code == 503
    assert time.monotonic() - started < 2
    await client.close()


async def test_dropped_connections_are_retried_for_gets_only(kube_apiserver: KubeAPIServer,
                                                             tmp_path: Path,
                                                             reactor: Any) -> None:
    client = cert_client(kube_apiserver, tmp_path, reactor)
    kube_apiserver.fail("/version", reset=True, times=1)
    assert (await client.get("/version"))["major"] == "1"
    path = "/apis/authentication.k8s.io/v1/tokenreviews"
    kube_apiserver.fail(path, reset=True, times=1)
    with pytest.raises(KubeUnavailable):
        await client.post(path, {"spec": {"token": "x"}})
    await client.close()


async def test_a_hanging_server_never_holds_a_caller_past_its_timeout(
        kube_apiserver: KubeAPIServer, tmp_path: Path, reactor: Any) -> None:
    client = cert_client(kube_apiserver, tmp_path, reactor)
    kube_apiserver.hang("/version")
    started = time.monotonic()
    with pytest.raises(KubeTimeout, match=r"within 0\.5s"):
        await client.get("/version", timeout=0.5)
    assert time.monotonic() - started < 0.5 + 1.0
    kube_apiserver.release()
    assert (await client.get("/version"))["major"] == "1"
    await client.close()


async def test_a_stopped_server_is_unavailable_then_recovers(kube_apiserver: KubeAPIServer,
                                                             tmp_path: Path,
                                                             reactor: Any) -> None:
    client = cert_client(kube_apiserver, tmp_path, reactor)
    await client.get("/version")
    kube_apiserver.stop()
    with pytest.raises(KubeUnavailable, match="connection refused"):
        await client.get("/version", timeout=1)
    kube_apiserver.start()
    assert (await client.get("/version"))["major"] == "1"
    await client.close()


async def test_errors_carry_kubes_status(kube_apiserver: KubeAPIServer, tmp_path: Path,
                                         reactor: Any) -> None:
    client = cert_client(kube_apiserver, tmp_path, reactor)
    with pytest.raises(KubeStatusError) as missing:
        await client.get(f"{CONFIGMAPS}/nothing")
    assert (missing.value.code, missing.value.reason) == (404, "NotFound")
    assert missing.value.message == 'configmaps "nothing" not found'
    assert missing.value.status["details"]["name"] == "nothing"

    kube_apiserver.access.deny(user="kube-admin", resource="configmaps")
    with pytest.raises(KubeStatusError) as forbidden:
        await client.get(CONFIGMAP)
    assert (forbidden.value.code, forbidden.value.reason) == (403, "Forbidden")
    assert forbidden.value.message == (
        'configmaps "extension-apiserver-authentication" is forbidden: User "kube-admin" '
        'cannot get resource "configmaps" in API group "" in the namespace "kube-system"')
    await client.close()


async def test_an_error_without_a_status_body_reads_as_client_go_reads_it(
        kube_apiserver: KubeAPIServer, tmp_path: Path, reactor: Any) -> None:
    # The aggregator answers in plain text for an APIService that is not Available.
    kube_apiserver.put({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                        "metadata": {"name": "v1.example.kext.io"},
                        "spec": {"group": "example.kext.io", "version": "v1",
                                 "service": {"namespace": "kext", "name": "kext"}}})
    client = cert_client(kube_apiserver, tmp_path, reactor, retries=0)
    with pytest.raises(KubeStatusError) as unavailable:
        await client.get("/apis/example.kext.io/v1")
    assert (unavailable.value.code, unavailable.value.reason) == (503, "ServiceUnavailable")
    assert unavailable.value.message == "the server is currently unable to handle the request"
    await client.close()


async def test_watch_streams_events_from_a_resource_version(kube_apiserver: KubeAPIServer,
                                                            tmp_path: Path,
                                                            reactor: Any) -> None:
    first = kube_apiserver.put_extension_apiserver_authentication()
    client = cert_client(kube_apiserver, tmp_path, reactor)
    async with client.watch(CONFIGMAPS, first["metadata"]["resourceVersion"],
                            timeout_seconds=30) as events:
        kube_apiserver.put_extension_apiserver_authentication(**{"client-ca-file": "x"})
        kube_apiserver.put({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "elsewhere", "namespace": "default"}})
        kube_apiserver.delete("v1", "ConfigMap", "extension-apiserver-authentication",
                              "kube-system")
        seen = []
        async for event in events:
            seen.append((event.type, event.object["metadata"]["name"]))
            if event.type == "DELETED":
                break
    assert seen == [("MODIFIED", "extension-apiserver-authentication"),
                    ("DELETED", "extension-apiserver-authentication")]
    await client.close()


async def test_watch_without_resource_version_starts_with_the_current_state(
        kube_apiserver: KubeAPIServer, tmp_path: Path, reactor: Any) -> None:
    kube_apiserver.put_extension_apiserver_authentication()
    client = cert_client(kube_apiserver, tmp_path, reactor)
    events = [e async for e in client.watch(CONFIGMAPS, timeout_seconds=1)]
    assert [(e.type, e.object["kind"]) for e in events] == [("ADDED", "ConfigMap")]
    await client.close()


async def test_watch_from_a_compacted_resource_version_is_410(kube_apiserver: KubeAPIServer,
                                                              tmp_path: Path,
                                                              reactor: Any) -> None:
    old = kube_apiserver.put_extension_apiserver_authentication()
    kube_apiserver.put_extension_apiserver_authentication(**{"client-ca-file": "y"})
    kube_apiserver.compact()
    client = cert_client(kube_apiserver, tmp_path, reactor)
    with pytest.raises(KubeStatusError) as expired:
        async with client.watch(CONFIGMAPS, old["metadata"]["resourceVersion"]) as events:
            async for _ in events:
                pass
    assert (expired.value.code, expired.value.reason) == (410, "Expired")
    assert expired.value.message.startswith("too old resource version")
    await client.close()


async def test_a_watch_cut_by_the_server_raises_unavailable(kube_apiserver: KubeAPIServer,
                                                            tmp_path: Path,
                                                            reactor: Any) -> None:
    client = cert_client(kube_apiserver, tmp_path, reactor)
    async with client.watch(CONFIGMAPS, str(kube_apiserver.resource_version)) as events:
        kube_apiserver.stop()
        with pytest.raises(KubeUnavailable, match="broke off"):
            async for _ in events:
                pass
    await client.close()


async def test_close_ends_open_watches(kube_apiserver: KubeAPIServer, tmp_path: Path,
                                       reactor: Any) -> None:
    client = cert_client(kube_apiserver, tmp_path, reactor)
    stream = client.watch(CONFIGMAPS, str(kube_apiserver.resource_version))
    await stream.__aenter__()
    waiting = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0)
    await client.close()
    with pytest.raises((StopAsyncIteration, KubeUnavailable)):
        await asyncio.wait_for(waiting, 5)


async def test_no_token_in_logs_or_reprs(kube_apiserver: KubeAPIServer, reactor: Any,
                                         caplog: pytest.LogCaptureFixture) -> None:
    token = kube_apiserver.add_token("kext")
    access = token_access(kube_apiserver, token=token)
    client = KubeClient(access, reactor=reactor)
    kube_apiserver.fail("/version", 503, times=2)
    with caplog.at_level(logging.DEBUG, logger="kext"):
        await client.get("/version")
        kube_apiserver.fail("/api", 500)
        with pytest.raises(KubeStatusError) as failed:
            await client.get("/api/v1/namespaces", timeout=1)
    assert "retrying" in caplog.text
    for text in (caplog.text, repr(access), repr(client), str(failed.value),
                 repr(failed.value)):
        assert token not in text
    await client.close()
