"""The admission chain of a request (cf. apiserver pkg/admission/chain.go and
pkg/registry/rest's AdmissionToValidateObjectFunc): mutating plugins in order, then
validating plugins in order, turned into the steps the registry's store calls at kube's
points. Today the plugins of a resource are its own hooks (kext.admission.hooks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from kext.admission.attributes import DELETE, Attributes, Operation, with_objects
from kext.admission.hooks import Defaulting, Validation, load_hooks
from kext.api.resource import ResourceDefinition
from kext.registry.rest import ADMIT_NOTHING, Admission, ValidateDeleteFunc

Object = dict[str, Any]


class MutatingPlugin(Protocol):
    """cf. admission.MutationInterface."""

    def handles(self, operation: Operation) -> bool: ...

    async def admit(self, attributes: Attributes) -> Object | None:
        """Change attributes.object in place, or return its replacement; refuse by raising
        a StatusError."""
        ...


class ValidatingPlugin(Protocol):
    """cf. admission.ValidationInterface."""

    def handles(self, operation: Operation) -> bool: ...

    async def validate(self, attributes: Attributes) -> None:
        """Refuse the request by raising a StatusError."""
        ...


class Chain:
    """Admission plugins in order: every mutating one runs before any validating one."""

    def __init__(self, mutating: Sequence[MutatingPlugin] = (),
                 validating: Sequence[ValidatingPlugin] = ()) -> None:
        self.mutating = tuple(mutating)
        self.validating = tuple(validating)

    def admission(self, static: Attributes) -> Admission:
        """The steps of one create, update, patch or apply. Each call is one attempt: the
        operation (CREATE without an old object, UPDATE with one) is decided then, so an
        update retried after a conflict runs the plugins again on the new attempt."""
        if not self.mutating and not self.validating:
            return ADMIT_NOTHING

        async def mutate(obj: Object, old: Object | None) -> Object | None:
            attributes = with_objects(static, obj, old)
            replaced = False
            for plugin in self.mutating:
                if not plugin.handles(attributes.operation):
                    continue
                result = await plugin.admit(attributes)
                if result is not None and result is not attributes.object:
                    attributes = with_objects(static, result, old)
                    replaced = True
            return attributes.object if replaced else None

        async def validate(obj: Object, old: Object | None) -> None:
            attributes = with_objects(static, obj, old)
            for plugin in self.validating:
                if plugin.handles(attributes.operation):
                    await plugin.validate(attributes)

        return Admission(mutate if self.mutating else None,
                         validate if self.validating else None)

    def delete_validation(self, static: Attributes) -> ValidateDeleteFunc | None:
        """The step of one delete or deletecollection, called with each object about to be
        deleted (it becomes the attributes' old_object; mutating plugins may look and refuse,
        as kube runs them on delete, but change nothing); None when no plugin handles DELETE."""
        mutating = [p for p in self.mutating if p.handles(DELETE)]
        validating = [p for p in self.validating if p.handles(DELETE)]
        if not mutating and not validating:
            return None

        async def validate(obj: Object) -> None:
            attributes = with_objects(static, None, obj)
            for plugin in mutating:
                await plugin.admit(attributes)
            for validator in validating:
                await validator.validate(attributes)

        return validate


def resource_chain(definition: ResourceDefinition) -> Chain:
    """The chain of a declared resource: its defaulting hooks (mutating) and validation
    hooks (validating), loaded once."""
    defaulting = load_hooks(definition.hooks.get("defaulting", ()))
    validation = load_hooks(definition.hooks.get("validation", ()))
    return Chain([Defaulting(defaulting)] if defaulting else [],
                 [Validation(validation)] if validation else [])
