"""Conversion between a resource's versions on the store's read and write paths (a real etcd):
objects stored in the storage version, served in the request's, through None conversion, a
Python converter hook and a webhook's answers; failures in kube's words."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import AsyncGenerator, Callable
from typing import Any

import orjson
import pytest
import yaml

from examples.gizmo_conversion import convert, convert_review
from kext.api.errors import StatusError
from kext.api.resource import ResourceDefinition, parse_crd
from kext.registry.conversion import (
    WEBHOOK_TIMEOUT_SECONDS,
    Converter,
    WebhookConverter,
    new_converter,
)
from kext.registry.rest import RequestContext
from kext.registry.store import Selection, Store
from kext.storage.cacher import Cacher
from kext.storage.interface import ListOptions, WatchEvent
from tests.kext_process import REPO
from tests.storage.memory import MemoryStore

pytestmark = pytest.mark.asyncio

Object = dict[str, Any]
PREFIX = "/registry"
CTX = RequestContext(namespace="ns", field_manager="test")
GIZMOS = REPO / "tests/resources/gizmos.yaml"


def gizmos() -> ResourceDefinition:
    parsed, problems = parse_crd(yaml.safe_load(GIZMOS.read_text()), "gizmos")
    assert parsed is not None, problems
    return parsed


def gizmo(version: str, name: str = "g", **spec: Any) -> Object:
    return {"apiVersion": f"test.kext.io/{version}", "kind": "Gizmo",
            "metadata": {"name": name}, "spec": spec}


class CountingHook:
    """examples.gizmo_conversion.convert, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, obj: Object, desired_api_version: str) -> Object:
        self.calls += 1
        return convert(obj, desired_api_version)


def store_with(storage: MemoryStore | Cacher, prefix: str,
               converter: Converter | None = None) -> Store:
    return Store(gizmos(), storage, prefix, converter=converter)


async def test_none_conversion_rewrites_only_the_api_version(memory: MemoryStore) -> None:
    gizmo_store = store_with(memory, PREFIX)
    created = await gizmo_store.create(CTX, "v1beta1", gizmo("v1beta1", count=3))
    assert created.object["apiVersion"] == "test.kext.io/v1beta1"
    stored = await memory.get(gizmo_store.key("ns", "g"))
    assert stored["apiVersion"] == "test.kext.io/v1"  # the storage version
    assert stored["spec"] == {"count": 3}  # fields as they were: None converts nothing else
    as_v1 = await gizmo_store.get("ns", "g", "v1")
    assert as_v1["apiVersion"] == "test.kext.io/v1" and as_v1["spec"] == {"count": 3}


async def test_a_converter_hook_converts_every_read_and_write(memory: MemoryStore) -> None:
    hook = CountingHook()
    gizmo_store = store_with(memory, PREFIX, new_converter(gizmos(), hook=hook))
    created = await gizmo_store.create(CTX, "v1beta1", gizmo("v1beta1", count=3, color="red"))
    assert created.object["spec"] == {"count": 3, "color": "red"}
    stored = await memory.get(gizmo_store.key("ns", "g"))
    assert stored["apiVersion"] == "test.kext.io/v1"
    assert stored["spec"] == {"replicas": 3, "color": "red"}

    as_v1 = await gizmo_store.get("ns", "g", "v1")
    assert as_v1 == {**as_v1, "apiVersion": "test.kext.io/v1"}
    assert as_v1["spec"] == {"replicas": 3, "color": "red"}

    async def bump(current: Object | None) -> Object:
        assert current is not None and current["spec"]["count"] == 3  # in the request's version
        current["spec"]["count"] = 4
        return current

    updated = await gizmo_store.update(CTX, "g", "v1beta1", bump)
    assert updated.object["spec"]["count"] == 4
    assert (await memory.get(gizmo_store.key("ns", "g")))["spec"]["replicas"] == 4

    await gizmo_store.create(CTX, "v1", gizmo("v1", "h", replicas=1))
    hook.calls = 0
    listed = await gizmo_store.get_list("", "v1beta1", Selection(), ListOptions())
    assert [i["spec"]["count"] for i in listed["items"]] == [4, 1]
    assert {i["apiVersion"] for i in listed["items"]} == {"test.kext.io/v1beta1"}
    assert hook.calls == 2
    hook.calls = 0
    await gizmo_store.get_list("", "v1", Selection(), ListOptions())
    assert hook.calls == 0  # stored in v1 already: nothing to convert


async def test_a_failing_hook_is_a_500_in_kubes_words(memory: MemoryStore) -> None:
    def broken(obj: Object, desired_api_version: str) -> Object:
        raise KeyError("replicas")

    gizmo_store = store_with(memory, PREFIX, new_converter(gizmos(), hook=broken))
    with pytest.raises(StatusError) as caught:
        await gizmo_store.create(CTX, "v1beta1", gizmo("v1beta1", count=1))
    status = caught.value.status()
    assert status["code"] == 500 and "reason" not in status
    assert status["message"] == (
        "conversion hook for test.kext.io/v1beta1, Kind=Gizmo failed: KeyError: 'replicas'")


async def test_a_hook_keeps_identity_and_may_change_only_labels_and_annotations(
        memory: MemoryStore) -> None:
    def relabel(obj: Object, desired_api_version: str) -> Object:
        obj = convert(obj, desired_api_version)
        obj["metadata"]["labels"] = {"converted": "yes"}
        obj["metadata"]["generation"] = 99  # not the converter's to change: restored
        return obj

    gizmo_store = store_with(memory, PREFIX, new_converter(gizmos(), hook=relabel))
    await gizmo_store.create(CTX, "v1", gizmo("v1", replicas=1))
    got = await gizmo_store.get("ns", "g", "v1beta1")
    assert got["metadata"]["labels"] == {"converted": "yes"}
    assert got["metadata"]["generation"] == 1

    def rename(obj: Object, desired_api_version: str) -> Object:
        obj = convert(obj, desired_api_version)
        obj["metadata"]["name"] = "other"
        return obj

    renaming = store_with(memory, PREFIX, new_converter(gizmos(), hook=rename))
    with pytest.raises(StatusError) as caught:
        await renaming.get("ns", "g", "v1beta1")
    assert caught.value.message == ("conversion hook for test.kext.io/v1, Kind=Gizmo returned "
                                    "invalid object: must have the same name: g != other")


class ReviewingTransport:
    """Answers ConversionReviews in memory (the HTTPS path has its own tests): with
    examples.gizmo_conversion, or with whatever `answer` makes of the review."""

    url = "https://converter.example/convert"

    def __init__(self) -> None:
        self.reviews: list[Object] = []
        self.answer: Callable[[Object], Any] = convert_review

    async def post(self, body: bytes, timeout: float) -> bytes:
        assert timeout == WEBHOOK_TIMEOUT_SECONDS
        review = orjson.loads(body)
        self.reviews.append(copy.deepcopy(review))
        return orjson.dumps(self.answer(review))


def webhook_store(storage: MemoryStore, prefix: str,
                  transport: ReviewingTransport) -> Store:
    converter = Converter(gizmos(), WebhookConverter(transport, ["v1beta1", "v1"]))
    return store_with(storage, prefix, converter)


async def test_a_webhook_gets_one_review_per_object_or_list(memory: MemoryStore) -> None:
    transport = ReviewingTransport()
    gizmo_store = webhook_store(memory, PREFIX, transport)
    await gizmo_store.create(CTX, "v1beta1", gizmo("v1beta1", "a", count=1))
    await gizmo_store.create(CTX, "v1beta1", gizmo("v1beta1", "b", count=2))
    review = transport.reviews[0]
    assert review["apiVersion"] == "apiextensions.k8s.io/v1beta1"  # the first kext speaks
    assert review["kind"] == "ConversionReview"
    assert review["request"]["desiredAPIVersion"] == "test.kext.io/v1"
    assert [o["spec"] for o in review["request"]["objects"]] == [{"count": 1}]
    transport.reviews.clear()
    listed = await gizmo_store.get_list("ns", "v1beta1", Selection(), ListOptions())
    assert [i["spec"]["count"] for i in listed["items"]] == [1, 2]
    assert len(transport.reviews) == 1  # the whole list in one review
    assert len(transport.reviews[0]["request"]["objects"]) == 2


@pytest.mark.parametrize(("answer", "message"), [
    (lambda r: {"apiVersion": "apiextensions.k8s.io/v1beta1", "kind": "ConversionReview",
                "response": {"uid": r["request"]["uid"],
                             "result": {"status": "Failure", "message": "no, not today"}}},
     "failed: no, not today"),
    (lambda r: {"apiVersion": "apiextensions.k8s.io/v1beta1", "kind": "ConversionReview",
                "response": {"uid": r["request"]["uid"], "result": {"status": "Success"},
                             "convertedObjects": []}},
     "returned 0 objects, expected 1"),
    (lambda r: {"apiVersion": "apiextensions.k8s.io/v1beta1", "kind": "ConversionReview",
                "response": {"uid": r["request"]["uid"], "result": {"status": "Success"},
                             "convertedObjects": r["request"]["objects"]}},
     "returned invalid object at index 0: invalid groupVersion (expected test.kext.io/v1, "
     "received test.kext.io/v1beta1)"),
    (lambda r: {"apiVersion": "apiextensions.k8s.io/v1beta1", "kind": "ConversionReview"},
     "failed: no response provided"),
])
async def test_webhook_answers_kube_refuses(memory: MemoryStore, answer: Any,
                                            message: str) -> None:
    transport = ReviewingTransport()
    transport.answer = answer
    gizmo_store = webhook_store(memory, PREFIX, transport)
    with pytest.raises(StatusError) as caught:
        await gizmo_store.create(CTX, "v1beta1", gizmo("v1beta1", count=1))
    assert caught.value.code == 500
    assert caught.value.message == (
        f"conversion webhook for test.kext.io/v1beta1, Kind=Gizmo {message}")


async def test_webhook_review_v1_checks_kind_and_uid(memory: MemoryStore) -> None:
    transport = ReviewingTransport()
    converter = Converter(gizmos(), WebhookConverter(transport, ["v1"]))
    gizmo_store = store_with(memory, PREFIX, converter)

    def wrong_uid(review: Object) -> Object:
        answer = convert_review(review)
        answer["response"]["uid"] = "not-it"
        return answer

    transport.answer = wrong_uid
    with pytest.raises(StatusError) as caught:
        await gizmo_store.create(CTX, "v1beta1", gizmo("v1beta1", count=1))
    uid = transport.reviews[-1]["request"]["uid"]
    assert caught.value.message.endswith(f'failed: expected response.uid="{uid}", got "not-it"')
    transport.answer = lambda review: {**convert_review(review), "kind": "AdmissionReview"}
    with pytest.raises(StatusError) as caught:
        await gizmo_store.create(CTX, "v1beta1", gizmo("v1beta1", count=1))
    assert caught.value.message.endswith(
        "failed: expected webhook response of apiextensions.k8s.io/v1, Kind=ConversionReview, "
        "got apiextensions.k8s.io/v1, Kind=AdmissionReview")


async def test_watch_events_are_converted_once_per_version_not_per_watcher(
        memory: MemoryStore) -> None:
    hook = CountingHook()
    definition = gizmos()
    cache = Cacher(memory, f"{PREFIX}/test.kext.io/gizmos/")
    await cache.start()
    try:
        gizmo_store = Store(definition, cache, PREFIX,
                            converter=new_converter(definition, hook=hook))
        # from a revision: each watcher gets the very events of the cache's window
        other = await gizmo_store.create(dataclasses.replace(CTX, namespace="other"), "v1",
                                         gizmo("v1", replicas=1))
        since = int(other.object["metadata"]["resourceVersion"])
        watchers = [gizmo_store.watch("ns", since, Selection()) for _ in range(3)]
        firsts = [asyncio.ensure_future(anext(w)) for w in watchers]
        await asyncio.sleep(0)
        await gizmo_store.create(CTX, "v1", gizmo("v1", replicas=2))
        events: list[WatchEvent] = list(await asyncio.wait_for(asyncio.gather(*firsts), 10))
        hook.calls = 0
        objects = await asyncio.gather(*(gizmo_store.event_object(e, "v1beta1")
                                         for e in events))
        assert hook.calls == 1  # three watchers of v1beta1, one conversion
        assert all(o["spec"] == {"count": 2} for o in objects)
        assert all(o["apiVersion"] == "test.kext.io/v1beta1" for o in objects)
        assert gizmo_store.event_object_now(events[0], "v1") is events[0].object
        await _close(watchers)
    finally:
        await cache.stop()


async def _close(watchers: list[AsyncGenerator[WatchEvent, None]]) -> None:
    for watcher in watchers:
        await watcher.aclose()


async def test_converted_objects_are_never_the_ones_given() -> None:
    converter = new_converter(gizmos(), hook=convert)
    original = gizmo("v1", replicas=1)
    original["metadata"] = {"name": "g", "namespace": "ns", "uid": "u"}
    kept = copy.deepcopy(original)
    converted = await converter.convert(original, "v1beta1")
    assert original == kept and converted["spec"] == {"count": 1}
    assert await converter.convert(original, "v1") is original


@pytest.fixture
def memory() -> MemoryStore:
    """The storage under the stores: in memory (the same contract as etcd's)."""
    return MemoryStore()
