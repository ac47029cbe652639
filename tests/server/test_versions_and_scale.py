"""Two versions and the scale subresource through the whole handler tree in memory (the
server kext builds, on a MemoryStore): every served version read and written with the
example converter, a watch through the version that is not stored, the deprecated version's
warning, and `/scale` with each of its verbs and patch types."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from kext.api.resource import ResourceDefinition, parse_crd
from tests.kext_process import REPO
from tests.server.inmemory import InMemoryServer, body, close_stream, header, next_chunk
from tests.server.test_handlers import APPLY, JSON_PATCH, MERGE, status

pytestmark = pytest.mark.asyncio

V1 = "/apis/test.kext.io/v1/namespaces/ns/gizmos"
V1BETA1 = "/apis/test.kext.io/v1beta1/namespaces/ns/gizmos"
WARNING = '299 - "test.kext.io/v1beta1 Gizmo is deprecated; use test.kext.io/v1 Gizmo"'
TABLE = {"accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}


def converted_gizmos() -> ResourceDefinition:
    crd = yaml.safe_load((REPO / "tests/resources/gizmos.yaml").read_text())
    crd["metadata"]["annotations"] = {
        "kext.io/hooks": json.dumps({"conversion": "examples.gizmo_conversion:convert"})}
    definition, problems = parse_crd(crd, "gizmos")
    assert definition is not None, problems
    return definition


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[InMemoryServer]:
    built = await InMemoryServer.start(tmp_path, [converted_gizmos()])
    yield built
    await built.stop()


def gizmo(version: str, name: str = "g", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"test.kext.io/{version}", "kind": "Gizmo",
            "metadata": {"name": name}, "spec": spec}


async def test_both_versions_read_and_write_one_stored_object(server: InMemoryServer) -> None:
    created = await server.request("POST", V1BETA1, gizmo("v1beta1", count=2))
    assert created.code == 201 and header(created, "Warning") == WARNING
    stored = server.storage.stored("/registry/test.kext.io/gizmos/ns/g")
    assert stored["apiVersion"] == "test.kext.io/v1" and stored["spec"] == {"replicas": 2}
    assert body(await server.request("GET", f"{V1}/g"))["spec"] == {"replicas": 2}
    replaced = body(await server.request("GET", f"{V1}/g"))
    replaced["spec"]["replicas"] = 3
    assert (await server.request("PUT", f"{V1}/g", replaced)).code == 200
    listed = body(await server.request("GET", V1BETA1))
    assert [i["spec"] for i in listed["items"]] == [{"count": 3}]
    table = body(await server.request("GET", V1BETA1, headers=TABLE))
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Count"]
    assert table["rows"][0]["cells"] == ["g", 3]


async def test_a_watch_through_v1beta1(server: InMemoryServer) -> None:
    stream = await server.request("GET", f"{V1BETA1}?watch=true")
    try:
        assert header(stream, "Warning") == WARNING
        await server.request("POST", V1, gizmo("v1", replicas=5))
        event = await next_chunk(stream)
        assert event["type"] == "ADDED"
        assert event["object"]["apiVersion"] == "test.kext.io/v1beta1"
        assert event["object"]["spec"] == {"count": 5}
    finally:
        await close_stream(stream)


async def test_scale_get_put_and_patch(server: InMemoryServer) -> None:
    await server.request("POST", V1, gizmo("v1", replicas=1))
    url = f"{V1}/g/scale"
    scale = body(await server.request("GET", url))
    assert (scale["kind"], scale["spec"]) == ("Scale", {"replicas": 1})
    assert body(await server.request("GET", f"{V1BETA1}/g/scale"))["spec"] == {"replicas": 1}
    scale["spec"]["replicas"] = 2
    assert body(await server.request("PUT", url, scale))["spec"] == {"replicas": 2}
    status(await server.request("PUT", url, scale), 409, "Conflict")  # its RV is stale now
    patched = await server.request("PATCH", url, b'[{"op":"replace","path":"/spec/replicas",'
                                   b'"value":4}]', headers=JSON_PATCH)
    assert body(patched)["spec"] == {"replicas": 4}
    merged = await server.request("PATCH", url, {"spec": {"replicas": 6}}, headers=MERGE)
    assert body(merged)["spec"] == {"replicas": 6}
    refused = status(await server.request("PATCH", url, b'[{"op":"test","path":"/spec/replicas"'
                                          b',"value":1}]', headers=JSON_PATCH), 422, "Invalid")
    assert refused["message"].endswith("testing value /spec/replicas failed: test failed")
    table = body(await server.request("GET", url, headers=TABLE))
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Desired", "Available", "Age"]
    assert table["rows"][0]["cells"][:3] == ["g", 6, 0]
    got = body(await server.request("GET", f"{V1}/g"))
    assert got["spec"] == {"replicas": 6} and got["metadata"]["generation"] == 4


async def test_apply_through_scale(server: InMemoryServer) -> None:
    await server.request("POST", V1, gizmo("v1", replicas=1))
    url = f"{V1}/g/scale?fieldManager=autoscaler"
    scale = b"apiVersion: autoscaling/v1\nkind: Scale\nspec:\n  replicas: 3\n"
    conflict = status(await server.request("PATCH", url, scale, headers=APPLY), 409,
                      "Conflict")
    assert "conflict with" in conflict["message"] and ".spec.replicas" in conflict["message"]
    applied = await server.request("PATCH", f"{url}&force=true", scale, headers=APPLY)
    assert body(applied)["spec"] == {"replicas": 3}
    got = body(await server.request("GET", f"{V1}/g"))
    (owner,) = [e for e in got["metadata"]["managedFields"] if e["manager"] == "autoscaler"]
    assert (owner["operation"], owner["subresource"], owner["fieldsV1"]) == (
        "Apply", "scale", {"f:spec": {"f:replicas": {}}})
    wrong = status(await server.request("PATCH", url, b"apiVersion: v1\nkind: Scale\n",
                                        headers=APPLY), 400, "BadRequest")
    assert wrong["message"] == "invalid object type: /v1, Kind=Scale"


async def test_scale_refusals(server: InMemoryServer) -> None:
    await server.request("POST", V1, gizmo("v1", color="red"))
    url = f"{V1}/g/scale"
    missing = status(await server.request("GET", url), 500, "InternalError")
    assert missing["message"].endswith('the spec replicas field ".spec.replicas" does not exist')
    status(await server.request("PATCH", url, {"metadata": {}}, headers=MERGE), 400,
           "BadRequest")
    status(await server.request("PATCH", url, b"{}",
                                headers={"content-type": "application/strategic-merge-patch+json"}),
           415, "UnsupportedMediaType")
    wrong = status(await server.request("PUT", url, {"apiVersion": "test.kext.io/v1",
                                                    "kind": "Gizmo"}), 400, "BadRequest")
    assert wrong["message"] == ("the API version in the data (test.kext.io/v1) does not match "
                                "the expected API version (autoscaling/v1)")
    status(await server.request("DELETE", url), 405, "MethodNotAllowed")
