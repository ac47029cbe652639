"""The mutating webhooks of a resource as one mutating admission plugin (cf. apiserver's
webhook/mutating dispatcher): each matching webhook in order, its JSONPatch applied to the
object and the result decoded again (pruned and defaulted, as kube decodes what a webhook
returns), and reinvocation as kube does it (reinvocationcontext.go): once a webhook changed the
object, the webhooks with `reinvocationPolicy: IfNeeded` called before it are called again in a
second round (the chain runs that round); a webhook skipped in the first round is not called
in the second."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import jsonpatch
import orjson

from kext.admission.attributes import Attributes, Operation, ReinvocationContext, copy_object
from kext.admission.interfaces import ObjectInterfaces
from kext.admission.webhook.call import (
    Caller,
    CallingError,
    Rejection,
    WebhookSource,
    failed_closed,
)
from kext.admission.webhook.definition import Invocation, Webhook
from kext.admission.webhook.matching import Matcher
from kext.api import errors

log = logging.getLogger(__name__)

Object = dict[str, Any]

PLUGIN = "MutatingAdmissionWebhook"
STEP = "admit"  # kube's type label of mutating webhook metrics
PATCH_ANNOTATION = "patch.webhook.admission.k8s.io/"
MUTATION_ANNOTATION = "mutation.webhook.admission.k8s.io/"
FAILED_OPEN_ANNOTATION = "failed-open." + MUTATION_ANNOTATION


class _Reinvocation:
    """This plugin's part of a request's ReinvocationContext (cf. webhookReinvokeContext)."""

    def __init__(self) -> None:
        self.last_output: Object | None = None
        self.previously_invoked: set[str] = set()
        self.reinvoke: set[str] = set()

    def require_reinvoking_previous(self) -> None:
        self.reinvoke |= self.previously_invoked
        self.previously_invoked = set()


class MutatingWebhooks:
    """The mutating webhooks of source, for the requests of one resource."""

    def __init__(self, source: WebhookSource, matcher: Matcher, caller: Caller,
                 interfaces: ObjectInterfaces) -> None:
        self.source = source
        self.matcher = matcher
        self.caller = caller
        self.interfaces = interfaces

    def handles(self, operation: Operation) -> bool:
        return True

    async def admit(self, attributes: Attributes) -> Object | None:
        await self.source.ready(attributes)
        context = attributes.reinvocation or ReinvocationContext()
        state = context.values.get(PLUGIN)
        if state is None:
            state = context.values[PLUGIN] = _Reinvocation()
        original = attributes.object
        if context.is_reinvoke and state.last_output != original:
            # the plugins run again before this one changed the object since: the webhooks
            # that asked for it are called again
            state.require_reinvoking_previous()
        current = original
        called = False
        try:
            seen = attributes
            for index, webhook in enumerate(self.source.mutating):
                if seen.object is not current:
                    seen = dataclasses.replace(attributes, object=current)
                invocation = await self.matcher.invocation(webhook, seen)
                if invocation is None:
                    continue
                if context.is_reinvoke and webhook.uid not in state.reinvoke:
                    continue
                called = True
                round_ = 1 if context.is_reinvoke else 0
                patched = await self._call(invocation, seen, index, round_)
                if patched is not None:
                    current = patched
                    state.require_reinvoking_previous()
                    context.should_reinvoke = True
                if webhook.reinvocation_policy == "IfNeeded":
                    state.previously_invoked.add(webhook.uid)
        finally:
            # what the next round compares with (kube keeps it always; it matters only once
            # a webhook was called: without one, no webhook is reinvoked)
            if called:
                state.last_output = copy_object(current) if current is not None else None
        return None if current is original else current

    async def _call(self, invocation: Invocation, attributes: Attributes, index: int,
                    round_: int) -> Object | None:
        """Call one webhook; the object its patch made (in the request's version), or None
        when it changed nothing (or failed open)."""
        webhook = invocation.webhook
        version = invocation.kind.version
        convert = self.interfaces.convert
        obj = attributes.object
        request_version = attributes.kind.version
        versioned = await convert(obj, version) if obj is not None else None
        old = attributes.old_object
        versioned_old = await convert(old, version) if old is not None else None
        started = time.perf_counter()
        mutated: Object | None = None
        error: BaseException | None = None
        try:
            response = await self.caller.call(invocation, attributes, versioned, versioned_old)
            if response.patch:
                mutated = self._apply(webhook, response.patch, versioned)
                if mutated == versioned:
                    mutated = None
                attributes.add_annotation(
                    f"{PATCH_ANNOTATION}round_{round_}_index_{index}",
                    _json({"configuration": webhook.configuration, "webhook": webhook.name,
                           "patch": response.patch, "patchType": "JSONPatch"}))
        except (CallingError, Rejection, errors.StatusError) as exc:
            error = exc
        finally:
            rejected = self.caller.observe(webhook, STEP, attributes, started, error)
            attributes.add_annotation(
                f"{MUTATION_ANNOTATION}round_{round_}_index_{index}",
                _json({"configuration": webhook.configuration, "webhook": webhook.name,
                       "mutated": mutated is not None}))
        if isinstance(error, CallingError):
            if not rejected:
                log.warning("failed calling webhook, failing open %s: %s", webhook.name, error)
                attributes.add_annotation(f"{FAILED_OPEN_ANNOTATION}round_{round_}_index_{index}",
                                          webhook.name)
                return None
            log.warning("failed calling webhook, failing closed %s: %s", webhook.name, error)
            raise failed_closed(error)
        if isinstance(error, Rejection):
            raise error.status
        if error is not None:
            raise error
        if mutated is None:
            return None
        # kube decodes and defaults what a webhook returns; kext's decoder also prunes
        self.interfaces.decode(mutated, version)
        return await convert(mutated, request_version)

    def _apply(self, webhook: Webhook, patch: list[Any], obj: Object | None) -> Object:
        if obj is None:
            raise errors.internal_error(
                f"admission webhook {errors.go_quote(webhook.name)} attempted to modify the "
                "object, which is not supported for this operation")
        try:
            patched = jsonpatch.JsonPatch(patch).apply(obj, in_place=False)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError,
                KeyError, IndexError, ValueError) as exc:
            raise errors.internal_error(str(exc)) from None
        if not isinstance(patched, dict):
            raise errors.internal_error(
                f"admission webhook {errors.go_quote(webhook.name)} patched the object into "
                "something that is not an object")
        return patched


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()
