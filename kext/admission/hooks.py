"""A resource's own Python hooks, declared by import path ("package.module:callable") in its
CRD's `kext.io/hooks` annotation.

Kinds (the annotation's keys):
- defaulting(obj, old) -> None: mutate obj in place; runs before schema validation (the
  resource's mutating admission plugin, `Defaulting`).
- validation(obj, old) -> list[str] | None: messages that reject the write with 422 Invalid
  (the resource's validating admission plugin, `Validation`).
- status(obj, old) -> None: compute fields (e.g. `.status`) in place after validation (a
  strategy concern: kext.registry.strategy runs them as its Canonicalize step).
`old` is None on create. A hook may be a coroutine function.
- conversion(obj, desired_api_version) -> obj: one per resource, the converter between its
  versions (not an admission plugin: kext.registry.conversion documents its contract).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from kext.admission.attributes import CREATE, UPDATE, Attributes, Operation
from kext.api import errors
from kext.api.errors import Cause

Object = dict[str, Any]

Hook = Callable[[Object, Object | None], Any]


def load_hook(path: str) -> Hook:
    """Import "package.module:callable" (the working directory is searched too, as
    `python -m` does, so a project's own hooks import without installing them)."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    hook = module
    for part in attr.split("."):
        hook = getattr(hook, part)
    if not callable(hook):
        raise TypeError(f"{path} is not callable")
    return hook


def load_hooks(paths: Sequence[str]) -> list[Hook]:
    """load_hook for each path, in order."""
    return [load_hook(path) for path in paths]


async def call_hook(hook: Hook, obj: Object, old: Object | None) -> Any:
    """Run a hook, awaiting it when it is a coroutine function."""
    result = hook(obj, old)
    if inspect.isawaitable(result):
        result = await result
    return result


class Defaulting:
    """The resource's defaulting hooks as a mutating admission plugin: each changes the
    request's object in place, on create and update (the stored object as old)."""

    def __init__(self, hooks: Sequence[Hook]) -> None:
        self.hooks = tuple(hooks)

    def handles(self, operation: Operation) -> bool:
        return operation in (CREATE, UPDATE)

    async def admit(self, attributes: Attributes) -> Object | None:
        assert attributes.object is not None
        for hook in self.hooks:
            await call_hook(hook, attributes.object, attributes.old_object)
        return None


class Validation:
    """The resource's validation hooks as a validating admission plugin: their messages
    (strings or Causes) refuse the write with one 422 Invalid on the resource's kind."""

    def __init__(self, hooks: Sequence[Hook]) -> None:
        self.hooks = tuple(hooks)

    def handles(self, operation: Operation) -> bool:
        return operation in (CREATE, UPDATE)

    async def validate(self, attributes: Attributes) -> None:
        obj = attributes.object
        assert obj is not None
        causes: list[Cause] = []
        for hook in self.hooks:
            for message in await call_hook(hook, obj, attributes.old_object) or ():
                if isinstance(message, Cause):
                    causes.append(message)
                else:
                    # a message about the whole object, worded as kube words a validation
                    # rule of the root schema (its nil field path printed as "<nil>")
                    causes.append(errors.field_invalid("<nil>", "object", str(message)))
        if causes:
            name = (obj.get("metadata") or {}).get("name") or attributes.name
            raise errors.invalid(attributes.kind.group, attributes.kind.kind, name, causes)
