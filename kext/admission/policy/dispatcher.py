"""The ValidatingAdmissionPolicy admission plugin of one resource (cf. apiserver's
policy/validating dispatcher.go): for each policy whose matchConstraints take the request,
each of its bindings whose matchResources take it, and each param the binding names, the
policy is evaluated (kext.admission.policy.validator) and its decisions applied as the
binding's validationActions say:

- Deny: the request is refused with the first denial, kube's admission.NewForbidden text
  `<resource>.<group> "<name>" is forbidden: ValidatingAdmissionPolicy '<policy>' with binding
  '<binding>' denied request: <message>`, the Status reason the validation's (default Invalid)
  and its code (Invalid 422, Forbidden 403, Unauthorized 401, RequestEntityTooLarge 413), one
  cause carrying the message;
- Warn: a `Warning` header `Validation failed for ValidatingAdmissionPolicy '<policy>' with
  binding '<binding>': <message>`;
- Audit: the audit annotation `validation.policy.admission.k8s.io/validation_failure`, a JSON
  list of the failures.

An expression that fails to compile or evaluate is a denial under the policy's failurePolicy
Fail and nothing under Ignore; so is a configuration error (a namespace or params that cannot be
found, a paramKind kext does not serve), which refuses the request whatever the
validationActions (`... denied request: failed to configure binding: ...`). A policy's
auditAnnotations become the audit annotations `<policy>/<key>`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from kext.admission.attributes import Attributes, GroupVersionKind, Operation
from kext.admission.authz import NoAuthorizer, with_authorizer
from kext.admission.cluster import forbidden
from kext.admission.interfaces import ObjectInterfaces
from kext.admission.policy.definition import (
    AUDIT,
    DEFAULT_REASON,
    DENY,
    REASON_CODES,
    WARN,
    Binding,
)
from kext.admission.policy.matching import MatchError, matches
from kext.admission.policy.params import ParamError, ParamSource, collect_params
from kext.admission.policy.source import PolicyHook, PolicySource
from kext.admission.policy.validator import ACTION_DENY, ERROR, EVAL_ERROR, PUBLISH, Decision
from kext.admission.webhook.matching import NamespaceLabels
from kext.admission.webhook.review import admission_request
from kext.api import errors
from kext.api.errors import Cause
from kext.auth.authorization.authorizer import Authorizer
from kext.cel import Resource
from kext.metrics import AdmissionMetrics

log = logging.getLogger(__name__)

Object = dict[str, Any]

VALIDATION_FAILURE_ANNOTATION = "validation.policy.admission.k8s.io/validation_failure"
MAX_VALIDATION_FAILURES = 50
MAX_AUDIT_ANNOTATION_VALUE = 10 * 1024


class NamespaceObjects(Protocol):
    """Where the Namespace objects of the cluster are found (kext.admission.cluster's)."""

    async def namespace(self, name: str) -> Object | None: ...


@dataclass(frozen=True)
class _Denial:
    policy: str
    binding: str  # "": the policy's own configuration
    message: str
    reason: str = ""


class ValidatingAdmissionPolicies:
    """The policies of source, for the requests of one resource."""

    def __init__(self, source: PolicySource, interfaces: ObjectInterfaces,
                 namespaces: NamespaceLabels, params: ParamSource,
                 namespace_objects: NamespaceObjects | None = None,
                 metrics: AdmissionMetrics | None = None,
                 authorizer: Authorizer | None = None) -> None:
        self.source = source
        self.interfaces = interfaces
        self.namespaces = namespaces
        self.params = params
        self.namespace_objects = namespace_objects
        self.metrics = metrics
        self.authorizer = authorizer  # the server's: decides `authorizer`'s checks

    def handles(self, operation: Operation) -> bool:
        return True

    async def validate(self, attributes: Attributes) -> None:
        await self.source.ready(attributes)
        hooks = self.source.hooks
        if not hooks:
            return
        denials: list[_Denial] = []
        failures: list[Object] = []
        versioned: dict[str, tuple[Object | None, Object | None]] = {}
        checks: dict[Any, Any] = {}  # one decision per check per request (CachingAuthorizer)
        for hook in hooks:
            await self._dispatch(hook, attributes, denials, failures, versioned, checks)
        if failures:
            _publish_failures(attributes, failures)
        if denials:
            raise _denied(attributes, denials[0])

    async def _dispatch(self, hook: PolicyHook, attributes: Attributes,
                        denials: list[_Denial], failures: list[Object],
                        versioned: dict[str, tuple[Object | None, Object | None]],
                        checks: dict[Any, Any]) -> None:
        compiled = hook.policy
        policy = compiled.policy
        fail = policy.failure_policy != "Ignore"

        def configuration_error(why: str, binding: Binding | None) -> None:
            if fail:
                what = "binding" if binding is not None else "policy"
                denials.append(_Denial(policy.name, binding.name if binding else "",
                                       f"failed to configure {what}: {why}"))

        equivalents = self.interfaces.equivalents
        try:
            matched = await matches(policy.match_constraints, attributes, equivalents,
                                    self.namespaces)
        except MatchError as error:
            configuration_error(str(error), None)
            return
        if matched is None:
            return
        resource, kind = matched
        # `authorizer.requestResource`: the resource the policy matched
        request_resource = Resource(resource.group, resource.version, resource.resource,
                                    attributes.subresource, attributes.namespace,
                                    attributes.name)
        param_resource = None
        if policy.param_kind is not None:
            param_resource = self.params.resource(policy.param_kind)
            if param_resource is None:
                configuration_error("failed to find resource referenced by paramKind: "
                                    f"'{policy.param_kind}'", None)
                return
        annotations: dict[str, list[str]] = {}
        for binding in hook.bindings:
            if binding.match_resources is not None:
                try:
                    if await matches(binding.match_resources, attributes, equivalents,
                                     self.namespaces) is None:
                        continue
                except MatchError as error:
                    configuration_error(str(error), binding)
                    continue
            try:
                params = await collect_params(policy.param_kind, param_resource,
                                              binding.param_ref, attributes.namespace)
            except ParamError as error:
                configuration_error(str(error), binding)
                continue
            except errors.StatusError as error:  # the params could not be read
                configuration_error(error.message, binding)
                continue
            if not params:
                continue
            try:
                obj, old = await self._versioned(attributes, kind, versioned)
            except errors.StatusError as error:
                configuration_error(f"failed to convert object version: {error.message}",
                                    binding)
                continue
            activation = {
                "object": obj, "oldObject": old,
                "request": admission_request(attributes, resource, kind),
                "namespaceObject": await self._namespace_object(attributes),
            }
            for param in params:
                bound = {**activation, "params": param}
                if compiled.uses_authorizer:
                    result = await with_authorizer(
                        partial(compiled.validate, bound, resource=request_resource),
                        self.authorizer or NoAuthorizer(), attributes.user, decisions=checks)
                else:
                    result = compiled.validate(bound)
                for index, decision in enumerate(result.decisions):
                    if decision.action == ACTION_DENY:
                        _act(policy.name, binding, index, decision, attributes, denials,
                             failures, self.metrics)
                    elif decision.evaluation == EVAL_ERROR and self.metrics is not None:
                        self.metrics.observe_policy_check(policy.name, binding.name,
                                                          error_type(decision.message),
                                                          "allow", decision.elapsed)
                for annotation in result.audit_annotations:
                    if annotation.action == PUBLISH:
                        values = annotations.setdefault(annotation.key, [])
                        value = annotation.value[:MAX_AUDIT_ANNOTATION_VALUE]
                        if value not in values:
                            values.append(value)
                    elif annotation.action == ERROR:
                        denials.append(_Denial(policy.name, binding.name, annotation.error))
                        if self.metrics is not None:
                            self.metrics.observe_policy_check(
                                policy.name, binding.name, error_type(annotation.error),
                                "deny", annotation.elapsed)
        for key, values in annotations.items():
            attributes.add_annotation(f"{policy.name}/{key}", ", ".join(values))

    async def _versioned(self, attributes: Attributes, kind: GroupVersionKind,
                         versioned: dict[str, tuple[Object | None, Object | None]],
                         ) -> tuple[Object | None, Object | None]:
        """The request's objects in the version the policy matched (converted once)."""
        version = kind.version
        if version == attributes.kind.version:
            return attributes.object, attributes.old_object
        if version not in versioned:
            convert = self.interfaces.convert
            obj, old = attributes.object, attributes.old_object
            versioned[version] = (await convert(obj, version) if obj is not None else None,
                                  await convert(old, version) if old is not None else None)
        return versioned[version]

    async def _namespace_object(self, attributes: Attributes) -> Object | None:
        """The request's Namespace as CEL sees it (cf. CreateNamespaceObject): known only
        when kext follows the cluster's namespaces; a missing one is kube's 404."""
        if not attributes.namespace or self.namespace_objects is None:
            return None
        from kext.kube import KubeError

        try:
            found = await self.namespace_objects.namespace(attributes.namespace)
        except KubeError as error:
            raise errors.internal_error(str(error)) from None
        if found is None:
            raise errors.not_found("", "namespaces", attributes.namespace)
        return namespace_object(found)


def namespace_object(namespace: Mapping[str, Any]) -> Object:
    """What admission CEL sees of a Namespace: its spec, status and part of its metadata."""
    metadata = namespace.get("metadata") or {}
    kept = ("name", "generateName", "namespace", "uid", "resourceVersion", "generation",
            "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
            "annotations", "finalizers")
    out: Object = {"metadata": {k: metadata[k] for k in kept if k in metadata}}
    for part in ("spec", "status"):
        out[part] = namespace.get(part) or {}
    return out


def error_type(message: str) -> str:
    """The error_type label of an outcome that did not admit, by its message (cf.
    validating.ErrorType: a plain denial is an invalid_error too)."""
    if message.startswith("compilation"):
        return "compile_error"
    if message.startswith("validation failed due to running out of cost budget"):
        return "out_of_budget"
    return "invalid_error"


def _act(policy: str, binding: Binding, index: int, decision: Decision,
         attributes: Attributes, denials: list[_Denial], failures: list[Object],
         metrics: AdmissionMetrics | None) -> None:
    """A denial, as each of the binding's validationActions says."""
    if metrics is not None:
        kind = error_type(decision.message)
        for action in binding.validation_actions:
            metrics.observe_policy_check(policy, binding.name, kind, action.lower(),
                                         decision.elapsed)
    for action in binding.validation_actions:
        if action == DENY:
            denials.append(_Denial(policy, binding.name, decision.message, decision.reason))
        elif action == WARN:
            attributes.warnings.add(f"Validation failed for ValidatingAdmissionPolicy "
                                    f"'{policy}' with binding '{binding.name}': "
                                    f"{decision.message}")
        elif action == AUDIT:
            failures.append({"message": decision.message, "policy": binding.policy_name,
                             "binding": binding.name, "expressionIndex": index,
                             "validationActions": list(binding.validation_actions)})
    if decision.evaluation == EVAL_ERROR:
        log.info("ValidatingAdmissionPolicy %s with binding %s: %s", policy, binding.name,
                 decision.message)


def _publish_failures(attributes: Attributes, failures: Sequence[Object]) -> None:
    if len(failures) > MAX_VALIDATION_FAILURES:
        log.warning("%d validation failures of %s exceed %d: the audit annotation keeps the "
                    "first", len(failures), attributes.resource.resource,
                    MAX_VALIDATION_FAILURES)
        failures = failures[:MAX_VALIDATION_FAILURES]
    attributes.add_annotation(VALIDATION_FAILURE_ANNOTATION, go_json(list(failures)))


def go_json(value: Any) -> str:
    """JSON as Go's encoding/json writes it: compact, HTML characters escaped."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def _denied(attributes: Attributes, denial: _Denial) -> errors.StatusError:
    """kube's answer to the first denial: NewForbidden's text, the validation's reason and
    its code, and the message as a cause."""
    if denial.binding:
        message = (f"ValidatingAdmissionPolicy '{denial.policy}' with binding "
                   f"'{denial.binding}' denied request: {denial.message}")
    else:
        message = f"ValidatingAdmissionPolicy '{denial.policy}' denied request: {denial.message}"
    error = forbidden(attributes, message)
    reason = denial.reason or DEFAULT_REASON
    error.reason = reason
    error.code = REASON_CODES.get(reason, 422)
    error.causes.append(Cause("", message))
    return error
