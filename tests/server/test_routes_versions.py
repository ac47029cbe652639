"""The router in memory: `/scale` requests reach admission as kube's do (kind
autoscaling/v1 Scale, subresource scale, Scale objects), and every request to a deprecated
version answers with its Warning header, an error too."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import orjson
import pytest

from kext.admission.attributes import CREATE, UPDATE, Attributes, Operation
from kext.admission.chain import Chain
from kext.auth.user import UserInfo
from kext.registry.store import Store
from kext.server.request import AnyResponse, APIRequest, Response
from kext.server.request_info import parse_request_info
from kext.server.routes import Router
from tests.registry.test_conversion import gizmos
from tests.storage.memory import MemoryStore

pytestmark = pytest.mark.asyncio

Object = dict[str, Any]
WARNING = ("Warning", '299 - "test.kext.io/v1beta1 Gizmo is deprecated; use test.kext.io/v1 '
                      'Gizmo"')


class Recorder:
    """An admission plugin that records what it is shown."""

    def __init__(self) -> None:
        self.seen: list[Attributes] = []

    def handles(self, operation: Operation) -> bool:
        return operation in (CREATE, UPDATE)

    async def admit(self, attributes: Attributes) -> Object | None:
        self.seen.append(attributes)
        return None

    async def validate(self, attributes: Attributes) -> None:
        self.seen.append(attributes)


async def no_watch(request: APIRequest, scope: Any) -> AnyResponse:
    raise AssertionError("no watch here")


def request(method: str, path: str, body: Any = None,
            content_type: str = "application/json") -> APIRequest:
    path, _, query_string = path.partition("?")
    query = parse_qs(query_string)
    data = b"" if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
    return APIRequest(method, path, query, {"content-type": content_type}, data,
                      parse_request_info(method, path, query), user=UserInfo("alice"))


@pytest.fixture
def router() -> Router:
    return Router([Store(gizmos(), MemoryStore(), "/registry")], [], no_watch)


def body(response: AnyResponse) -> Object:
    assert isinstance(response, Response)
    decoded: Object = json.loads(response.body)
    return decoded


async def test_scale_writes_are_admitted_as_scales(router: Router) -> None:
    recorder = Recorder()
    router.chains[("test.kext.io", "gizmos")] = Chain([recorder], [recorder])
    base = "/apis/test.kext.io/v1/namespaces/ns/gizmos"
    created = await router(request("POST", base, {
        "apiVersion": "test.kext.io/v1", "kind": "Gizmo", "metadata": {"name": "g"},
        "spec": {"replicas": 1}}))
    assert created.code == 201
    recorder.seen.clear()
    patched = await router(request("PATCH", f"{base}/g/scale", b'{"spec":{"replicas":2}}',
                                   "application/merge-patch+json"))
    assert patched.code == 200 and body(patched)["spec"] == {"replicas": 2}
    mutating, validating = recorder.seen
    for attributes in (mutating, validating):
        assert attributes.operation == UPDATE and attributes.subresource == "scale"
        assert tuple(attributes.kind) == ("autoscaling", "v1", "Scale")
        assert tuple(attributes.resource) == ("test.kext.io", "v1", "gizmos")
        assert attributes.object is not None and attributes.object["kind"] == "Scale"
        assert attributes.old_object is not None
        assert attributes.old_object["spec"] == {"replicas": 1}
    assert validating.object is not None and validating.object["spec"] == {"replicas": 2}


async def test_a_deprecated_version_warns_on_every_answer(router: Router) -> None:
    base = "/apis/test.kext.io/v1beta1/namespaces/ns/gizmos"
    listed = await router(request("GET", base))
    assert listed.code == 200 and WARNING in listed.headers
    missing = await router(request("GET", f"{base}/nothing"))
    assert missing.code == 404 and WARNING in missing.headers
    fine = await router(request("GET", "/apis/test.kext.io/v1/namespaces/ns/gizmos"))
    assert not [h for h in fine.headers if h[0] == "Warning"]
