"""The non-resource paths in memory, through the whole chain: discovery (aggregated and
legacy, with ETags), OpenAPI v2 and v3 (hashes and their redirects), /version, /api, the
health endpoints and /metrics."""

from __future__ import annotations

from typing import Any

import pytest

from tests.server.inmemory import InMemoryServer, body, header
from tests.server.test_handlers import create, status

pytestmark = pytest.mark.asyncio

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
GROUP = "/apis/example.kext.io"
VERSION = f"{GROUP}/v1alpha1"


async def get(server: InMemoryServer, path: str, **headers: str) -> Any:
    return await server.request("GET", path, headers={k.replace("_", "-"): v
                                                      for k, v in headers.items()})


async def test_aggregated_discovery_and_its_etag(server: InMemoryServer) -> None:
    first = await get(server, "/apis", accept=AGGREGATED)
    assert (first.code, first.content_type) == (200, AGGREGATED)
    document = body(first)
    assert document["kind"] == "APIGroupDiscoveryList"
    assert [g["metadata"]["name"] for g in document["items"]] == ["example.kext.io"]
    etag = header(first, "ETag")
    assert etag and header(first, "Vary") == "Accept"
    again = await get(server, "/apis", accept=AGGREGATED, if_none_match=etag)
    assert (again.code, again.body) == (304, b"")
    changed = await get(server, "/apis", accept=AGGREGATED, if_none_match='"other"')
    assert changed.code == 200


async def test_legacy_discovery(server: InMemoryServer) -> None:
    groups = body(await get(server, "/apis"))
    assert groups["kind"] == "APIGroupList"
    assert [g["name"] for g in groups["groups"]] == ["example.kext.io"]
    group = body(await get(server, GROUP))
    assert group["kind"] == "APIGroup"
    assert group["preferredVersion"]["version"] == "v1alpha1"
    resources = body(await get(server, VERSION))
    assert resources["kind"] == "APIResourceList"
    by_name = {r["name"]: r for r in resources["resources"]}
    assert set(by_name) == {"widgets", "widgets/status", "gadgets", "gadgets/status"}
    assert by_name["widgets"]["namespaced"] and not by_name["gadgets"]["namespaced"]
    assert by_name["widgets"]["shortNames"] == ["wd"]
    assert by_name["widgets/status"]["verbs"] == ["get", "patch", "update"]


async def test_discovery_paths_that_do_not_exist(server: InMemoryServer) -> None:
    for path in ("/apis/other.io", "/apis/example.kext.io/v9", f"{VERSION}/x/y/z/q"):
        error = status(await get(server, path), 404, "NotFound")
        assert error["message"] == f"the server could not find the requested resource ({path})"
    status(await get(server, "/apis", accept="application/xml"), 406, "NotAcceptable")
    status(await get(server, GROUP, accept="text/html"), 406, "NotAcceptable")


async def test_version_and_the_core_group(server: InMemoryServer) -> None:
    version = body(await get(server, "/version"))
    assert version["major"] == "1" and version["gitVersion"].startswith("v1.")
    for path in ("/api", "/api/v1", "/api/v1/namespaces"):
        status(await get(server, path), 404, "NotFound")


async def test_openapi_v2(server: InMemoryServer) -> None:
    response = await get(server, "/openapi/v2")
    assert response.code == 200
    document = body(response)
    assert document["swagger"] == "2.0"
    assert "io.kext.example.v1alpha1.Widget" in document["definitions"]
    assert (await get(server, "/openapi/v2", if_none_match=header(response, "ETag") or "")
            ).code == 304
    # client-go asks for protobuf only: 406, which kubectl tolerates
    status(await get(server, "/openapi/v2",
                     accept="application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
           406, "NotAcceptable")


async def test_openapi_v3_and_its_hashes(server: InMemoryServer) -> None:
    index = body(await get(server, "/openapi/v3"))
    entry = index["paths"]["apis/example.kext.io/v1alpha1"]["serverRelativeURL"]
    path, _, query = entry.partition("?hash=")
    assert path == "/openapi/v3/apis/example.kext.io/v1alpha1" and query
    pinned = await get(server, entry)
    assert pinned.code == 200 and body(pinned)["openapi"].startswith("3.")
    assert header(pinned, "Cache-Control") == "public, immutable"
    assert header(pinned, "Expires")
    plain = await get(server, path)
    assert plain.code == 200 and header(plain, "Cache-Control") is None
    old = await get(server, f"{path}?hash=0123")
    assert (old.code, header(old, "Location")) == (301, entry)
    status(await get(server, "/openapi/v3/apis/other.io/v1"), 404, "NotFound")
    status(await get(server, "/openapi/v3", accept="application/x-protobuf"), 406,
           "NotAcceptable")


async def test_health_endpoints(server: InMemoryServer) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        response = await get(server, path)
        assert (response.code, response.body) == (200, b"ok")
        assert response.content_type == "text/plain; charset=utf-8"
        assert header(response, "X-Content-Type-Options") == "nosniff"
    verbose = await get(server, "/readyz?verbose")
    assert verbose.body.decode() == ("[+]ping ok\n[+]etcd ok\n[+]watch-cache ok\n"
                                     "[+]shutdown ok\nreadyz check passed\n")
    one = await get(server, "/readyz/watch-cache")
    assert (one.code, one.body) == (200, b"ok")
    status(await get(server, "/readyz/nothing"), 404, "NotFound")


async def test_a_failing_check_fails_its_endpoints(server: InMemoryServer) -> None:
    server.healthy["etcd"] = False
    failed = await get(server, "/livez")
    assert failed.code == 500
    # the reason stays in the server's log: a probe is not told why
    assert failed.body.decode() == ("[+]ping ok\n[-]etcd failed: reason withheld\n"
                                    "livez check failed\n")
    one = await get(server, "/livez/etcd")
    assert one.code == 500
    assert one.body.decode() == ("internal server error: etcd check failed: etcd is "
                                 "unreachable: connection refused\n")
    excluded = await get(server, "/readyz?exclude=etcd&verbose")
    assert excluded.code == 200
    assert "[+]etcd excluded: ok\n" in excluded.body.decode()


async def test_readyz_fails_once_the_server_is_stopping(server: InMemoryServer) -> None:
    await server.stop()
    response = await get(server, "/readyz?verbose")
    assert response.code == 500
    assert "[-]shutdown failed: reason withheld\n" in response.body.decode()
    assert "[-]watch-cache failed: reason withheld\n" in response.body.decode()
    assert (await get(server, "/livez")).code == 200


async def test_metrics_are_this_servers(server: InMemoryServer) -> None:
    await create(server)
    response = await get(server, "/metrics")
    assert response.code == 200
    assert response.content_type == "text/plain; version=0.0.4; charset=utf-8"
    text = response.body.decode()
    assert ('apiserver_request_total{code="201",component="apiserver",dry_run="",'
            'group="example.kext.io",resource="widgets",scope="resource",subresource="",'
            'verb="POST",version="v1alpha1"} 1.0') in text
    assert 'apiserver_storage_objects{resource="widgets.example.kext.io"} 1.0' in text
