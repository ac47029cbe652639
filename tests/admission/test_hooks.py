"""Loading a resource's hooks by import path, as its CRD's `kext.io/hooks` names them, and the
errors a wrong path gives."""

from __future__ import annotations

from typing import Any

import pytest

from kext.admission.attributes import (
    CREATE,
    DELETE,
    UPDATE,
    Attributes,
    Operation,
    request_attributes,
)
from kext.admission.chain import Chain
from kext.admission.hooks import Defaulting, Validation, load_hook, load_hooks
from kext.api.errors import StatusError
from tests.admission.test_chain import KIND, PATCH, RESOURCE, Recorder, widget

Object = dict[str, Any]


def test_hooks_load_by_module_and_attribute_path() -> None:
    hook = load_hook("examples.widget_hooks:default_tags")
    obj: Object = {"spec": {"color": "red"}}
    hook(obj, None)
    assert obj["spec"]["tags"] == ["red"]
    # a dotted attribute path reaches a callable inside the module
    assert load_hook("json:JSONDecoder.decode") is not None
    assert [h.__name__ for h in load_hooks(["examples.widget_hooks:phase",
                                            "examples.widget_hooks:default_tags"])] == [
        "phase", "default_tags"]


def test_a_wrong_path_says_what_is_wrong() -> None:
    with pytest.raises(ModuleNotFoundError):
        load_hook("examples.no_such_module:hook")
    with pytest.raises(AttributeError):
        load_hook("examples.widget_hooks:no_such_hook")
    with pytest.raises(TypeError) as info:
        load_hook("examples.widget_hooks:Object.__doc__")
    assert str(info.value) == "examples.widget_hooks:Object.__doc__ is not callable"


@pytest.mark.asyncio
async def test_a_mutating_plugin_that_does_not_handle_an_operation_is_skipped() -> None:
    creates_only = Recorder((CREATE,))
    steps = Chain([creates_only]).admission(
        request_attributes(PATCH, UPDATE, KIND, RESOURCE, "w"))
    assert steps.mutate is not None
    assert await steps.mutate(widget(), widget()) is None  # an UPDATE: not handled
    await steps.mutate(widget(), None)  # a CREATE (an apply that creates)
    assert [a.operation for a in creates_only.seen] == [CREATE]


@pytest.mark.asyncio
async def test_mutating_plugins_see_deletes_but_change_nothing() -> None:
    class Refuse:
        def handles(self, operation: Operation) -> bool:
            return operation == DELETE

        async def admit(self, attributes: Attributes) -> Object | None:
            assert attributes.old_object is not None
            if attributes.old_object["metadata"]["name"] == "protected":
                raise StatusError(403, "Forbidden", "protected")
            return None

    validate = Chain([Refuse()]).delete_validation(
        request_attributes(PATCH, DELETE, KIND, RESOURCE))
    assert validate is not None
    await validate(widget("any"))
    with pytest.raises(StatusError) as info:
        await validate(widget("protected"))
    assert info.value.code == 403


def test_the_resource_plugins_handle_writes_not_deletes() -> None:
    for plugin in (Defaulting([]), Validation([])):
        assert plugin.handles(CREATE) and plugin.handles(UPDATE)
        assert not plugin.handles(DELETE)
