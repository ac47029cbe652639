"""The registry's write path on each storage (a MemoryStore, a watch cache on one, a real
etcd): where the store calls a request's admission steps and the strategy (kube's order),
and that a retried update admits again."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import pytest_asyncio

from kext.api.errors import StatusError
from kext.auth.user import UserInfo
from kext.registry.rest import Admission, RequestContext
from kext.registry.store import DeleteOptions, Selection, Store
from kext.registry.strategy import crd_strategies
from tests.registry.conftest import Storage
from tests.registry.objects import definition, widget

pytestmark = pytest.mark.asyncio

Object = dict[str, Any]
VERSION = "v1alpha1"
CTX = RequestContext(user=UserInfo("alice"), namespace="ns", field_manager="test")


def phase(obj: Object, old: Object | None) -> None:
    obj["status"] = {"phase": "Pending" if old is None else "Ready"}


@pytest_asyncio.fixture
async def widgets(any_storage: Storage) -> Store:
    d = definition("widgets")
    return await any_storage.store(d, crd_strategies(d, [phase]))


async def test_create_runs_admission_around_the_strategy_in_kubes_order(widgets: Store) -> None:
    seen: dict[str, Object] = {}

    async def mutate(obj: Object, old: Object | None) -> None:
        assert old is None
        seen["mutate"] = copy.deepcopy(obj)
        obj["spec"]["tags"] = ["mutated"]
        obj["status"] = {"phase": "set by admission"}  # PrepareForCreate drops it

    async def validate(obj: Object, old: Object | None) -> None:
        seen["validate"] = copy.deepcopy(obj)

    body = widget(unknown=1)
    body["metadata"] = {"generateName": "w-"}
    result = await widgets.create(CTX, VERSION, body, Admission(mutate, validate))

    mutated = seen["mutate"]
    assert "unknown" not in mutated["spec"] and mutated["spec"]["size"] == 1  # decoded first
    assert mutated["metadata"]["managedFields"][0]["manager"] == "test"
    assert "uid" not in mutated["metadata"] and "name" not in mutated["metadata"]
    validated = seen["validate"]
    assert validated["metadata"]["uid"] and validated["metadata"]["name"].startswith("w-")
    assert validated["spec"]["tags"] == ["mutated"]
    assert validated["status"] == {"phase": "Pending"}  # the strategy's status hook ran first
    stored = await widgets.get("ns", result.object["metadata"]["name"], VERSION)
    assert stored["spec"]["tags"] == ["mutated"] and stored["status"] == {"phase": "Pending"}


async def test_schema_validation_sees_what_mutation_made(widgets: Store) -> None:
    async def shrink(obj: Object, old: Object | None) -> None:
        obj["spec"]["size"] = 0

    with pytest.raises(StatusError) as raised:
        await widgets.create(CTX, VERSION, widget(), Admission(mutate=shrink))
    assert raised.value.code == 422
    assert "spec.size" in raised.value.status()["message"]


async def test_a_replacement_from_mutation_is_what_is_stored(widgets: Store) -> None:
    async def replace(obj: Object, old: Object | None) -> Object:
        new = copy.deepcopy(obj)
        new["spec"]["color"] = "green"
        return new

    await widgets.create(CTX, VERSION, widget(), Admission(mutate=replace))
    assert (await widgets.get("ns", "w", VERSION))["spec"]["color"] == "green"


async def test_validating_admission_refuses_and_nothing_is_stored(widgets: Store) -> None:
    async def refuse(obj: Object, old: Object | None) -> None:
        raise StatusError(403, "Forbidden", "not today")

    with pytest.raises(StatusError) as raised:
        await widgets.create(CTX, VERSION, widget(), Admission(validate=refuse))
    assert raised.value.code == 403
    with pytest.raises(StatusError) as missing:
        await widgets.get("ns", "w", VERSION)
    assert missing.value.code == 404


async def test_dry_run_is_admitted_and_stores_nothing(widgets: Store) -> None:
    calls: list[str] = []

    async def validate(obj: Object, old: Object | None) -> None:
        calls.append("validate")

    dry = RequestContext(namespace="ns", field_manager="test", dry_run=True)
    await widgets.create(dry, VERSION, widget(), Admission(validate=validate))
    assert calls == ["validate"]
    with pytest.raises(StatusError):
        await widgets.get("ns", "w", VERSION)


async def test_a_retried_update_runs_mutation_again_on_the_new_object(widgets: Store) -> None:
    await widgets.create(CTX, VERSION, widget(size=1))
    olds: list[int] = []

    async def updated(current: Object | None) -> Object:
        assert current is not None
        if not olds:
            # a concurrent write between this attempt's read and its write: it must retry
            await widgets.update(CTX, "w", VERSION, bump_size)
        new = copy.deepcopy(current)
        new["spec"]["color"] = "red"
        return new

    async def record(obj: Object, old: Object | None) -> None:
        assert old is not None
        olds.append(old["spec"]["size"])

    result = await widgets.update(CTX, "w", VERSION, updated, Admission(mutate=record))
    assert olds == [1, 2]
    assert result.object["spec"] == {"color": "red", "size": 2}
    assert result.object["status"] == {"phase": "Ready"}


async def bump_size(current: Object | None) -> Object:
    assert current is not None
    new = copy.deepcopy(current)
    new["spec"]["size"] += 1
    return new


async def test_delete_validation_sees_each_object_deleted_or_marked(widgets: Store) -> None:
    await widgets.create(CTX, VERSION, widget("a"))
    kept = widget("b")
    kept["metadata"]["finalizers"] = ["example.kext.io/keep"]
    await widgets.create(CTX, VERSION, kept)
    seen: list[str] = []

    async def validate(obj: Object) -> None:
        assert obj["apiVersion"] == f"example.kext.io/{VERSION}"
        obj["metadata"]["labels"] = {"changed": "by admission"}  # a copy: nothing stored
        seen.append(obj["metadata"]["name"])

    listed = await widgets.delete_collection(CTX, VERSION, Selection(), DeleteOptions(),
                                             validate)
    assert sorted(seen) == ["a", "b"]
    marked = next(i for i in listed["items"] if i["metadata"]["name"] == "b")
    assert marked["metadata"]["deletionTimestamp"]
    assert "labels" not in (await widgets.get("ns", "b", VERSION))["metadata"]


async def test_delete_validation_refuses_a_delete(widgets: Store) -> None:
    await widgets.create(CTX, VERSION, widget())

    async def refuse(obj: Object) -> None:
        raise StatusError(403, "Forbidden", "keep it")

    with pytest.raises(StatusError) as raised:
        await widgets.delete(CTX, "w", VERSION, DeleteOptions(), refuse)
    assert raised.value.code == 403
    assert (await widgets.get("ns", "w", VERSION))["metadata"]["name"] == "w"


async def test_validation_cannot_change_what_is_stored(widgets: Store) -> None:
    async def meddle(obj: Object, old: Object | None) -> None:
        obj["spec"]["color"] = "red"

    result = await widgets.create(CTX, VERSION, widget(), Admission(validate=meddle))
    assert result.object["spec"]["color"] == "blue"
    updated = await widgets.update(CTX, "w", VERSION, bump_size, Admission(validate=meddle))
    assert updated.object["spec"]["color"] == "blue"
