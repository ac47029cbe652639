"""The admission chain of a request (cf. apiserver pkg/admission/chain.go, reinvocation.go and
pkg/registry/rest's AdmissionToValidateObjectFunc): mutating plugins in order, run a second
time when one of them asks for it (a mutating webhook's reinvocation), then validating plugins
in order, turned into the steps the registry's store calls at kube's points. Each step's
latency is recorded as apiserver_admission_step_admission_duration_seconds."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any, Protocol

from kext.admission.attributes import (
    DELETE,
    Attributes,
    Operation,
    ReinvocationContext,
    with_objects,
)
from kext.admission.hooks import Defaulting, Validation, load_hooks
from kext.api.resource import ResourceDefinition
from kext.metrics import AdmissionMetrics
from kext.registry.rest import ADMIT_NOTHING, Admission, ValidateDeleteFunc

Object = dict[str, Any]

ADMIT = "admit"
VALIDATE = "validate"


class MutatingPlugin(Protocol):
    """cf. admission.MutationInterface."""

    def handles(self, operation: Operation) -> bool: ...

    async def admit(self, attributes: Attributes) -> Object | None:
        """Change attributes.object in place, or return its replacement; refuse by raising
        a StatusError. attributes.reinvocation is the attempt's ReinvocationContext."""
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
                 validating: Sequence[ValidatingPlugin] = (),
                 metrics: AdmissionMetrics | None = None) -> None:
        self.mutating = tuple(mutating)
        self.validating = tuple(validating)
        self.metrics = metrics

    def admission(self, static: Attributes) -> Admission:
        """The steps of one create, update, patch or apply. Each call is one attempt: the
        operation (CREATE without an old object, UPDATE with one) is decided then, so an
        update retried after a conflict runs the plugins again on the new attempt."""
        if not self.mutating and not self.validating:
            return ADMIT_NOTHING

        async def mutate(obj: Object, old: Object | None) -> Object | None:
            attributes = dataclasses.replace(with_objects(static, obj, old),
                                             reinvocation=ReinvocationContext())
            started, rejected = time.perf_counter(), True
            try:
                attributes = await self._admit(attributes)
                context = attributes.reinvocation
                assert context is not None
                if context.should_reinvoke:
                    # as kube's reinvoker: every plugin once more; the webhooks decide
                    # which of them run again
                    context.is_reinvoke = True
                    attributes = await self._admit(attributes)
                rejected = False
            finally:
                self._observe(ADMIT, attributes.operation, rejected, started)
            return attributes.object if attributes.object is not obj else None

        async def validate(obj: Object, old: Object | None) -> None:
            attributes = with_objects(static, obj, old)
            started, rejected = time.perf_counter(), True
            try:
                for plugin in self.validating:
                    if plugin.handles(attributes.operation):
                        await plugin.validate(attributes)
                rejected = False
            finally:
                self._observe(VALIDATE, attributes.operation, rejected, started)

        return Admission(mutate if self.mutating else None,
                         validate if self.validating else None)

    async def _admit(self, attributes: Attributes) -> Attributes:
        for plugin in self.mutating:
            if not plugin.handles(attributes.operation):
                continue
            result = await plugin.admit(attributes)
            if result is not None and result is not attributes.object:
                attributes = dataclasses.replace(attributes, object=result)
        return attributes

    def delete_validation(self, static: Attributes) -> ValidateDeleteFunc | None:
        """The step of one delete or deletecollection, called with each object about to be
        deleted (it becomes the attributes' old_object; mutating plugins may look and refuse,
        as kube runs them on delete, but change nothing); None when no plugin handles DELETE."""
        mutating = [p for p in self.mutating if p.handles(DELETE)]
        validating = [p for p in self.validating if p.handles(DELETE)]
        if not mutating and not validating:
            return None

        async def validate(obj: Object) -> None:
            attributes = dataclasses.replace(with_objects(static, None, obj),
                                             reinvocation=ReinvocationContext())
            if mutating:
                started, rejected = time.perf_counter(), True
                try:
                    for plugin in mutating:
                        await plugin.admit(attributes)
                    rejected = False
                finally:
                    self._observe(ADMIT, DELETE, rejected, started)
            if validating:
                started, rejected = time.perf_counter(), True
                try:
                    for validator in validating:
                        await validator.validate(attributes)
                    rejected = False
                finally:
                    self._observe(VALIDATE, DELETE, rejected, started)

        return validate

    def _observe(self, step: str, operation: str, rejected: bool, started: float) -> None:
        if self.metrics is not None:
            self.metrics.observe_step(step, operation, rejected, time.perf_counter() - started)


def resource_plugins(definition: ResourceDefinition
                     ) -> tuple[list[MutatingPlugin], list[ValidatingPlugin]]:
    """A declared resource's own plugins: its defaulting hooks (mutating) and validation
    hooks (validating), loaded once."""
    defaulting = load_hooks(definition.hooks.get("defaulting", ()))
    validation = load_hooks(definition.hooks.get("validation", ()))
    return ([Defaulting(defaulting)] if defaulting else [],
            [Validation(validation)] if validation else [])


def resource_chain(definition: ResourceDefinition,
                   metrics: AdmissionMetrics | None = None) -> Chain:
    """The chain of a declared resource with nothing server-wide: its own hooks."""
    mutating, validating = resource_plugins(definition)
    return Chain(mutating, validating, metrics)
