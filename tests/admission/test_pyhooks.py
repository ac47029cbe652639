"""Server-wide Python hooks as admission plugins, in memory: what a hook is given, how it
mutates, denies, warns and fails, in the chain's order."""

from __future__ import annotations

from typing import Any

import pytest

from kext.admission import AdmissionRequest, Denied
from kext.admission.attributes import (
    CREATE,
    DELETE,
    UPDATE,
    GroupVersionKind,
    GroupVersionResource,
    request_attributes,
)
from kext.admission.chain import Chain
from kext.admission.hooks import Defaulting
from kext.admission.pyhooks import PythonHook
from kext.api.errors import StatusError
from kext.auth.user import UserInfo
from kext.metrics import Metrics
from kext.registry.rest import RequestContext, options_object

pytestmark = pytest.mark.asyncio

Object = dict[str, Any]
KIND = GroupVersionKind("example.kext.io", "v1alpha1", "Widget")
RESOURCE = GroupVersionResource("example.kext.io", "v1alpha1", "widgets")


def widget(**spec: Any) -> Object:
    return {"apiVersion": "example.kext.io/v1alpha1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "ns"}, "spec": spec}


def context(dry_run: bool = False) -> RequestContext:
    return RequestContext(user=UserInfo("alice", ("devs",)), namespace="ns",
                          subresource="status", dry_run=dry_run,
                          options=options_object("UpdateOptions", fieldManager="kubectl"))


def mutating(func: Any, failure_policy: str = "Fail") -> PythonHook:
    return PythonHook("tests.hooks:mutate", func, mutating=True, failure_policy=failure_policy)


def validating(func: Any, failure_policy: str = "Fail") -> PythonHook:
    return PythonHook("tests.hooks:check", func, mutating=False, failure_policy=failure_policy)


async def admit(chain: Chain, obj: Object, old: Object | None = None,
                ctx: RequestContext | None = None) -> Object | None:
    steps = chain.admission(request_attributes(ctx or context(), UPDATE, KIND, RESOURCE, "w"))
    assert steps.mutate is not None
    return await steps.mutate(obj, old)


async def test_a_hook_is_given_the_whole_request() -> None:
    seen: list[AdmissionRequest] = []
    await admit(Chain([mutating(seen.append)]), widget(size=2), widget(size=1),
                context(dry_run=True))
    [request] = seen
    assert request.operation == "UPDATE"
    assert request.user_info == UserInfo("alice", ("devs",))
    assert (request.kind, request.resource, request.subresource) == (KIND, RESOURCE, "status")
    assert (request.name, request.namespace, request.dry_run) == ("w", "ns", True)
    assert request.object == widget(size=2) and request.old_object == widget(size=1)
    assert request.options == {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1",
                               "fieldManager": "kubectl"}


async def test_a_mutating_hook_changes_the_object_in_place_or_returns_a_new_one() -> None:
    def in_place(request: AdmissionRequest) -> None:
        assert request.object is not None
        request.object["spec"]["color"] = "red"

    async def replacing(request: AdmissionRequest) -> Object:
        return {**widget(size=9), "metadata": {"name": "w", "namespace": "ns"}}

    original = widget(size=2)
    result = await admit(Chain([mutating(in_place)]), original)
    assert result == widget(size=2, color="red")
    assert original == widget(size=2)  # the hook worked on a copy, taken as the result
    assert await admit(Chain([mutating(replacing)]), widget(size=2)) == widget(size=9)
    assert await admit(Chain([mutating(lambda request: None)]), widget(size=2)) is None


async def test_hooks_run_in_order_before_the_resources_own_defaulting() -> None:
    order: list[str] = []

    def first(request: AdmissionRequest) -> None:
        order.append("server-wide")
        assert request.object is not None
        request.object["spec"]["tags"] = ["a"]

    def defaulting(obj: Object, old: Object | None) -> None:
        order.append(f"resource sees {obj['spec']['tags']}")

    await admit(Chain([mutating(first), Defaulting([defaulting])]), widget())
    assert order == ["server-wide", "resource sees ['a']"]


async def test_denied_is_answered_as_a_webhook_denial() -> None:
    def forbid(request: AdmissionRequest) -> None:
        raise Denied("not today", code=403, reason="Forbidden")

    with pytest.raises(StatusError) as denied:
        await admit(Chain([mutating(forbid)]), widget())
    assert (denied.value.code, denied.value.reason, denied.value.message) == (
        403, "Forbidden", 'admission hook "tests.hooks:mutate" denied the request: not today')

    def plain(request: AdmissionRequest) -> None:
        raise Denied(code=302)

    chain = Chain([], [validating(plain)])
    steps = chain.admission(request_attributes(context(), CREATE, KIND, RESOURCE))
    assert steps.validate is not None
    with pytest.raises(StatusError) as denied:
        await steps.validate(widget(), None)
    assert (denied.value.code, denied.value.reason, denied.value.message) == (
        400, "", 'admission hook "tests.hooks:check" denied the request without explanation')


async def test_a_failing_hook_fails_closed_or_open() -> None:
    def broken(request: AdmissionRequest) -> None:
        assert request.object is not None
        request.object["spec"]["half"] = "done"
        raise ValueError("boom")

    with pytest.raises(StatusError) as failed:
        await admit(Chain([mutating(broken)]), widget())
    assert (failed.value.code, failed.value.reason, failed.value.message) == (
        500, "InternalError",
        'Internal error occurred: failed calling admission hook "tests.hooks:mutate": '
        "ValueError: boom")
    original = widget()
    assert await admit(Chain([mutating(broken, "Ignore")]), original) is None
    assert original == widget()  # what it did before failing is not kept

    with pytest.raises(StatusError) as failed:
        await admit(Chain([mutating(lambda request: ["not", "an", "object"])]), widget())
    assert failed.value.message.endswith(
        "TypeError: a mutating hook returns None or an object, not list")


async def test_warnings_are_the_requests() -> None:
    def warn(request: AdmissionRequest) -> None:
        request.warn("first")
        request.warn("first")
        request.warn("second")

    ctx = context()
    await admit(Chain([mutating(warn)]), widget(), ctx=ctx)
    assert list(ctx.warnings) == ["first", "second"]


async def test_a_validating_hook_sees_deletes() -> None:
    seen: list[AdmissionRequest] = []
    chain = Chain([], [validating(seen.append)])
    check = chain.delete_validation(request_attributes(context(), DELETE, KIND, RESOURCE, "w"))
    assert check is not None
    await check(widget(size=1))
    [request] = seen
    assert request.operation == "DELETE" and request.object is None
    assert request.old_object == widget(size=1)


async def test_hook_and_step_latency_are_recorded() -> None:
    metrics = Metrics()
    hook = PythonHook("tests.hooks:check", lambda request: None, mutating=False,
                      metrics=metrics.admission)
    chain = Chain([], [hook], metrics.admission)
    steps = chain.admission(request_attributes(context(), CREATE, KIND, RESOURCE))
    assert steps.validate is not None
    await steps.validate(widget(), None)
    text = metrics.exposition().decode()
    assert ('apiserver_admission_controller_admission_duration_seconds_count{'
            'name="tests.hooks:check",operation="CREATE",rejected="false",type="validate"} 1.0'
            in text)
    assert ('apiserver_admission_step_admission_duration_seconds_count{operation="CREATE",'
            'rejected="false",type="validate"} 1.0' in text)
