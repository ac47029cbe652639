"""The admission chain's plumbing in memory: the attributes each step sees, the order of
plugins, and the resource's own hooks as plugins."""

from __future__ import annotations

from typing import Any

import pytest

from kext.admission.attributes import (
    CREATE,
    DELETE,
    UPDATE,
    Attributes,
    GroupVersionKind,
    GroupVersionResource,
    Operation,
    request_attributes,
)
from kext.admission.chain import Chain
from kext.admission.hooks import Defaulting, Validation
from kext.api.errors import Cause, StatusError
from kext.auth.user import UserInfo
from kext.registry.rest import ADMIT_NOTHING, RequestContext, options_object

pytestmark = pytest.mark.asyncio

Object = dict[str, Any]
KIND = GroupVersionKind("example.kext.io", "v1alpha1", "Widget")
RESOURCE = GroupVersionResource("example.kext.io", "v1alpha1", "widgets")
PATCH = RequestContext(
    user=UserInfo("alice", ("devs",)), namespace="ns", dry_run=True, field_manager="kubectl",
    options=options_object("PatchOptions", dryRun=["All"], fieldManager="kubectl", force=True),
)


def widget(name: str = "w", **spec: Any) -> Object:
    return {"apiVersion": "example.kext.io/v1alpha1", "kind": "Widget",
            "metadata": {"name": name, "namespace": "ns"}, "spec": spec}


class Recorder:
    """A plugin recording the attributes it was given."""

    def __init__(self, operations: tuple[Operation, ...] = (CREATE, UPDATE, DELETE)) -> None:
        self.operations = operations
        self.seen: list[Attributes] = []

    def handles(self, operation: Operation) -> bool:
        return operation in self.operations

    async def admit(self, attributes: Attributes) -> Object | None:
        self.seen.append(attributes)
        return None

    async def validate(self, attributes: Attributes) -> None:
        self.seen.append(attributes)


async def test_a_patch_is_admitted_as_an_update_or_as_the_create_of_an_apply() -> None:
    recorder = Recorder()
    steps = Chain([recorder]).admission(request_attributes(PATCH, UPDATE, KIND, RESOURCE, "w"))
    assert steps.mutate is not None and steps.validate is None
    await steps.mutate(widget(size=2), widget(size=1))
    await steps.mutate(widget(size=2), None)
    update, create = recorder.seen
    assert (update.operation, create.operation) == (UPDATE, CREATE)
    assert update.options == {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1",
                              "dryRun": ["All"], "fieldManager": "kubectl"}
    assert create.options["kind"] == "CreateOptions" and "force" not in create.options
    assert update.old_object == widget(size=1) and create.old_object is None
    assert (update.user, update.namespace, update.name, update.dry_run) == (
        UserInfo("alice", ("devs",)), "ns", "w", True)
    assert update.kind == KIND and update.resource == RESOURCE


async def test_a_create_without_a_name_in_the_request_is_named_by_its_object() -> None:
    recorder = Recorder()
    ctx = RequestContext(namespace="ns", options=options_object("CreateOptions"))
    steps = Chain([], [recorder]).admission(request_attributes(ctx, CREATE, KIND, RESOURCE))
    assert steps.validate is not None
    await steps.validate(widget("generated-x1"), None)
    assert recorder.seen[0].name == "generated-x1"


async def test_mutating_plugins_run_in_order_and_a_replacement_is_passed_on() -> None:
    class Replace:
        def handles(self, operation: Operation) -> bool:
            return True

        async def admit(self, attributes: Attributes) -> Object | None:
            assert attributes.object is not None
            return {**attributes.object, "spec": {"size": 5}}

    after = Recorder()
    steps = Chain([Replace(), after]).admission(
        request_attributes(PATCH, UPDATE, KIND, RESOURCE, "w"))
    assert steps.mutate is not None
    original = widget(size=1)
    result = await steps.mutate(original, widget())
    assert result == widget(size=5) and original == widget(size=1)
    assert after.seen[0].object == widget(size=5)


async def test_an_empty_chain_admits_nothing_and_skips_delete() -> None:
    static = request_attributes(PATCH, UPDATE, KIND, RESOURCE, "w")
    assert Chain().admission(static) is ADMIT_NOTHING
    assert Chain([Recorder((CREATE,))]).delete_validation(static) is None


async def test_delete_validation_sees_the_object_as_old_object() -> None:
    recorder = Recorder((DELETE,))
    ctx = RequestContext(namespace="ns", options=options_object("DeleteOptions"))
    validate = Chain([], [recorder]).delete_validation(
        request_attributes(ctx, DELETE, KIND, RESOURCE))
    assert validate is not None
    await validate(widget("a"))
    [seen] = recorder.seen
    assert (seen.operation, seen.object, seen.old_object, seen.name) == (
        DELETE, None, widget("a"), "")
    assert seen.options == {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}


async def test_the_resources_hooks_default_and_validate_as_plugins() -> None:
    async def default_tags(obj: Object, old: Object | None) -> None:  # awaited
        obj["spec"].setdefault("tags", ["blue"])

    def small(obj: Object, old: Object | None) -> list[Any]:
        if obj["spec"].get("size", 0) > 5:
            return ["too big", Cause("FieldValueInvalid", "is odd", "spec.size")]
        return []

    chain = Chain([Defaulting([default_tags])], [Validation([small])])
    steps = chain.admission(request_attributes(PATCH, UPDATE, KIND, RESOURCE, "w"))
    assert steps.mutate is not None and steps.validate is not None
    obj = widget(size=9)
    assert await steps.mutate(obj, None) is None  # changed in place
    assert obj["spec"]["tags"] == ["blue"]
    with pytest.raises(StatusError) as raised:
        await steps.validate(obj, None)
    status = raised.value.status()
    assert (status["code"], status["reason"]) == (422, "Invalid")
    assert status["message"] == (
        'Widget.example.kext.io "w" is invalid: [<nil>: Invalid value: "object": too big, '
        "spec.size: is odd]")
    assert chain.delete_validation(request_attributes(PATCH, DELETE, KIND, RESOURCE)) is None
