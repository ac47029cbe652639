"""The validating webhooks of a resource as one validating admission plugin (cf. apiserver's
webhook/validating dispatcher): every matching webhook called at once; the request is refused
with the first refusal (in the webhooks' order), after all of them answered."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from kext.admission.attributes import Attributes, Operation
from kext.admission.interfaces import ObjectInterfaces
from kext.admission.webhook.call import (
    Caller,
    CallingError,
    Rejection,
    WebhookSource,
    failed_closed,
)
from kext.admission.webhook.definition import Invocation
from kext.admission.webhook.matching import Matcher
from kext.api import errors

log = logging.getLogger(__name__)

Object = dict[str, Any]

STEP = "validating"  # kube's type label of validating webhook metrics
FAILED_OPEN_ANNOTATION = "failed-open.validating.webhook.admission.k8s.io/"


class ValidatingWebhooks:
    """The validating webhooks of source, for the requests of one resource."""

    def __init__(self, source: WebhookSource, matcher: Matcher, caller: Caller,
                 interfaces: ObjectInterfaces) -> None:
        self.source = source
        self.matcher = matcher
        self.caller = caller
        self.interfaces = interfaces

    def handles(self, operation: Operation) -> bool:
        return True

    async def validate(self, attributes: Attributes) -> None:
        await self.source.ready(attributes)
        invocations = []
        for index, webhook in enumerate(self.source.validating):
            invocation = await self.matcher.invocation(webhook, attributes)
            if invocation is not None:
                invocations.append((index, invocation))
        if not invocations:
            return
        if len(invocations) == 1:
            index, invocation = invocations[0]
            await self._call(invocation, attributes, index)
            return
        outcomes = await asyncio.gather(
            *(self._call(invocation, attributes, index) for index, invocation in invocations),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _call(self, invocation: Invocation, attributes: Attributes, index: int) -> None:
        webhook = invocation.webhook
        version = invocation.kind.version
        obj, old = attributes.object, attributes.old_object
        convert = self.interfaces.convert
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            await self.caller.call(invocation, attributes,
                                   await convert(obj, version) if obj is not None else None,
                                   await convert(old, version) if old is not None else None)
        except (CallingError, Rejection, errors.StatusError) as exc:
            error = exc
        rejected = self.caller.observe(webhook, STEP, attributes, started, error)
        if error is None:
            return
        if isinstance(error, CallingError):
            if not rejected:
                log.warning("failed calling webhook, failing open %s: %s", webhook.name, error)
                attributes.add_annotation(f"{FAILED_OPEN_ANNOTATION}round_0_index_{index}",
                                          webhook.name)
                return
            log.warning("failed calling webhook, failing closed %s: %s", webhook.name, error)
            raise failed_closed(error)
        if isinstance(error, Rejection):
            log.info("rejected by webhook %s: %s", webhook.name, error.status.message)
            raise error.status
        raise error
