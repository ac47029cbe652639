"""One webhook call, shared by the mutating and the validating dispatchers (cf. the
callHook functions of apiserver's webhook/mutating and webhook/validating dispatchers): the
dry-run check, the AdmissionReview sent and its response checked, the response's warnings
and audit annotations recorded. Failures come out as kube tells them apart: `CallingError`
(kext could not get a usable answer: the webhook's failurePolicy decides), `Rejection` (the
webhook denied the request), or a StatusError (anything else: the request fails)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from kext.admission.attributes import Attributes
from kext.admission.webhook.client import WebhookCallError, WebhookClient
from kext.admission.webhook.definition import NO_SIDE_EFFECTS, Invocation, Webhook
from kext.admission.webhook.review import (
    InvalidPatch,
    InvalidResponse,
    ReviewResponse,
    UnsupportedPatchType,
    admission_review,
    denial_status,
    verify_response,
)
from kext.api import errors
from kext.metrics import AdmissionMetrics

Object = dict[str, Any]

# kube's error types of apiserver_admission_webhook_rejection_count
CALLING_WEBHOOK_ERROR = "calling_webhook_error"
APISERVER_INTERNAL_ERROR = "apiserver_internal_error"
NO_ERROR = "no_error"


class WebhookSource(Protocol):
    """Where the webhooks in effect come from (server.yaml, configuration files, the
    cluster), in the order they are called."""

    @property
    def mutating(self) -> Sequence[Webhook]: ...

    @property
    def validating(self) -> Sequence[Webhook]: ...

    async def ready(self, attributes: Attributes) -> None:
        """Wait until the webhooks are known (or refuse the request)."""
        ...


class StaticWebhooks:
    """Webhooks fixed at start-up."""

    def __init__(self, webhooks: Sequence[Webhook]) -> None:
        self._mutating = tuple(w for w in webhooks if w.mutating)
        self._validating = tuple(w for w in webhooks if not w.mutating)

    @property
    def mutating(self) -> Sequence[Webhook]:
        return self._mutating

    @property
    def validating(self) -> Sequence[Webhook]:
        return self._validating

    async def ready(self, attributes: Attributes) -> None:
        return None


class CallingError(Exception):
    """kube's ErrCallingWebhook: reason in its words, code the HTTP code it records."""

    def __init__(self, webhook: Webhook, reason: str, code: int = 503) -> None:
        super().__init__(f"failed calling webhook {errors.go_quote(webhook.name)}: {reason}")
        self.webhook = webhook
        self.reason = reason
        self.code = code


class Rejection(Exception):
    """kube's ErrWebhookRejection: the webhook said no; status is what the client gets."""

    def __init__(self, status: errors.StatusError) -> None:
        super().__init__(status.message)
        self.status = status


class Caller:
    """Calls webhooks through one client, recording apiserver_admission_webhook_* metrics."""

    def __init__(self, client: WebhookClient, metrics: AdmissionMetrics | None = None) -> None:
        self.client = client
        self.metrics = metrics

    async def call(self, invocation: Invocation, attributes: Attributes, obj: Object | None,
                   old: Object | None) -> ReviewResponse:
        """Send the review of attributes (obj and old in the invocation's version) and return
        the allowing response; raises CallingError, Rejection or a StatusError."""
        webhook = invocation.webhook
        if attributes.dry_run and webhook.side_effects not in NO_SIDE_EFFECTS:
            raise errors.bad_request(
                f"admission webhook {errors.go_quote(webhook.name)} does not support dry run")
        review = admission_review(invocation, attributes, obj, old)
        uid = review["request"]["uid"]
        url = f"{webhook.url}?timeout={webhook.timeout_seconds}s"
        try:
            body = await self.client.post(url, webhook.ca_pem, orjson.dumps(review),
                                          webhook.timeout_seconds)
        except WebhookCallError as exc:
            raise CallingError(webhook, f"failed to call webhook: {exc.reason}", exc.code) from None
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise CallingError(webhook, f"failed to call webhook: the response is not JSON: "
                                        f"{exc}") from None
        try:
            response = verify_response(uid, webhook.mutating, answer)
        except InvalidResponse as exc:
            raise CallingError(webhook, f"received invalid webhook response: {exc}") from None
        except InvalidPatch as exc:
            raise CallingError(webhook, f"received undecodable patch in webhook response: "
                                        f"{exc}") from None
        except UnsupportedPatchType as exc:
            raise CallingError(webhook, f"unsupported patch type {errors.go_quote(str(exc))}",
                               400) from None
        for key, value in response.audit_annotations.items():
            attributes.add_annotation(f"{webhook.name}/{key}", value)
        for warning in response.warnings:
            attributes.warnings.add(warning)
        if not response.allowed:
            raise Rejection(denial_status(webhook.name, response.result))
        return response

    def observe(self, webhook: Webhook, step: str, attributes: Attributes, started: float,
                error: BaseException | None) -> bool:
        """Record one call's metrics as kube's dispatchers do (step "admit" or "validating");
        whether the request is rejected because of it."""
        operation = attributes.operation
        ignore = webhook.failure_policy == "Ignore"
        elapsed = time.perf_counter() - started
        if error is None:
            self._observe(webhook.name, step, operation, False, 200, elapsed)
            return False
        if isinstance(error, CallingError):
            if not ignore:
                self._rejection(webhook.name, step, operation, CALLING_WEBHOOK_ERROR, error.code)
            elif self.metrics is not None:
                self.metrics.observe_webhook_fail_open(webhook.name, step)
            self._observe(webhook.name, step, operation, not ignore, error.code, elapsed)
            return not ignore
        if isinstance(error, Rejection):
            self._rejection(webhook.name, step, operation, NO_ERROR, error.status.code)
            self._observe(webhook.name, step, operation, True, error.status.code, elapsed)
            return True
        self._rejection(webhook.name, step, operation, APISERVER_INTERNAL_ERROR, 0)
        self._observe(webhook.name, step, operation, True, 0, elapsed)
        return True

    def _observe(self, name: str, step: str, operation: str, rejected: bool, code: int,
                 elapsed: float) -> None:
        if self.metrics is not None:
            self.metrics.observe_webhook(name, step, operation, rejected, code, elapsed)

    def _rejection(self, name: str, step: str, operation: str, error_type: str,
                   code: int) -> None:
        if self.metrics is not None:
            self.metrics.observe_webhook_rejection(name, step, operation, error_type, code)


def failed_closed(error: CallingError) -> errors.StatusError:
    """What the client gets when a webhook that fails closed could not be called."""
    return errors.internal_error(str(error))
