"""Whether a webhook is called for a request (cf. apiserver's webhook/generic ShouldCallHook
and predicates/{rules,namespace,object}): its namespaceSelector against the labels of the
request's namespace, its objectSelector against the labels of the object or the old object,
then its rules against the request's operation, group, version, resource, subresource and
scope, and with matchPolicy Equivalent against the same resource at the other served
versions (the webhook then sees the object in that version); last its matchConditions
(conditions.py, with the server's authorizer as `authorizer`).

kext has no Namespace objects of its own: without the cluster's (admission.fromCluster), a
namespace is taken to carry only the label kube sets on every namespace,
`kubernetes.io/metadata.name: <name>`, so selectors on that label work as they do in a
cluster and selectors on any other label match no namespace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from kext.admission.attributes import Attributes, GroupVersionKind, GroupVersionResource
from kext.admission.webhook.conditions import ConditionError, MatchConditions
from kext.admission.webhook.definition import Invocation, Rule, Webhook
from kext.admission.webhook.review import review_request
from kext.api import errors
from kext.api.selectors import LabelSelector
from kext.auth.authorization.authorizer import Authorizer
from kext.cel import Resource

Object = dict[str, Any]

# the label kube-apiserver keeps on every namespace
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


class NamespaceLabels(Protocol):
    """Where the labels of a namespace are found."""

    async def labels(self, namespace: str) -> Mapping[str, str] | None:
        """The namespace's labels; None when there is no such namespace."""
        ...


class ImpliedNamespaces:
    """Every namespace exists, with only its name label (see the module docstring)."""

    async def labels(self, namespace: str) -> Mapping[str, str] | None:
        return {NAMESPACE_NAME_LABEL: namespace}


def rule_matches(rule: Rule, attributes: Attributes, resource: GroupVersionResource) -> bool:
    """cf. rules.Matcher.Matches, for a request for resource (and a policy's named rule:
    its resourceNames, as kube's matchesResourceRules)."""
    if rule.resource_names and attributes.name not in rule.resource_names:
        return False
    operation = attributes.operation
    if "*" not in rule.operations and operation not in rule.operations:
        return False
    if rule.scope == "Namespaced" and not attributes.namespace:
        return False
    if rule.scope == "Cluster" and attributes.namespace:
        return False
    if "*" not in rule.api_groups and resource.group not in rule.api_groups:
        return False
    if "*" not in rule.api_versions and resource.version not in rule.api_versions:
        return False
    subresource = attributes.subresource
    for entry in rule.resources:
        res, _, sub = entry.partition("/")
        if (res == "*" or res == resource.resource) and (sub == "*" or sub == subresource):
            return True
    return False


class Matcher:
    """Decides which webhooks a request of one resource calls."""

    def __init__(self, namespaces: NamespaceLabels,
                 equivalents: Sequence[tuple[GroupVersionResource, GroupVersionKind]] = (),
                 convert: Callable[[Object, str], Awaitable[Object]] | None = None,
                 conditions: MatchConditions | None = None,
                 authorizer: Authorizer | None = None) -> None:
        self.namespaces = namespaces
        self.equivalents = tuple(equivalents)
        self.convert = convert
        self.conditions = conditions or MatchConditions()
        self.authorizer = authorizer  # the matchConditions' `authorizer`

    async def invocation(self, webhook: Webhook, attributes: Attributes) -> Invocation | None:
        """How webhook is called for the request, or None when it is not; a 404 Status when
        its namespaceSelector needs a namespace that does not exist (kube's answer)."""
        if not object_selected(webhook.object_selector, attributes):
            return None
        matched = match_rules(webhook.rules, webhook.match_policy, attributes, self.equivalents)
        if matched is None:
            return None
        invocation = Invocation(webhook, matched[0], attributes.subresource, matched[1])
        if attributes.namespace and not webhook.namespace_selector.empty:
            labels = await self.namespaces.labels(attributes.namespace)
            if labels is None:
                raise errors.not_found("", "namespaces", attributes.namespace)
            if not webhook.namespace_selector.matches(labels):
                return None
        if webhook.match_conditions and not await self._conditions_hold(invocation, attributes):
            return None
        return invocation

    async def _conditions_hold(self, invocation: Invocation, attributes: Attributes) -> bool:
        """The webhook's matchConditions on the request, its objects in the version the
        webhook matched; a condition that fails refuses the request (403) under failurePolicy
        Fail and skips the webhook under Ignore, as kube does."""
        version = invocation.kind.version
        convert = self.convert

        async def versioned(obj: Object | None) -> Object | None:
            return await convert(obj, version) if obj is not None and convert is not None else obj

        webhook = invocation.webhook
        resource = invocation.resource
        try:
            return await self.conditions.matches(
                webhook.match_conditions, await versioned(attributes.object),
                await versioned(attributes.old_object), review_request(invocation, attributes),
                authorizer=self.authorizer, user=attributes.user,
                resource=Resource(resource.group, resource.version, resource.resource,
                                  invocation.subresource, attributes.namespace,
                                  attributes.name))
        except ConditionError as error:
            if webhook.failure_policy == "Ignore":
                return False
            raise _forbidden(attributes, str(error)) from None


def match_rules(rules: Sequence[Rule], match_policy: str, attributes: Attributes,
                equivalents: Sequence[tuple[GroupVersionResource, GroupVersionKind]] = (),
                ) -> tuple[GroupVersionResource, GroupVersionKind] | None:
    """The resource and kind a request matches rules as (its own; with matchPolicy
    Equivalent, else the first equivalent resource a rule matches, earlier rules first), or
    None (cf. the webhooks' ShouldCallHook and the policies' matchesResourceRules)."""
    for rule in rules:
        if rule_matches(rule, attributes, attributes.resource):
            return attributes.resource, attributes.kind
    if match_policy != "Equivalent":
        return None
    for rule in rules:
        for resource, kind in equivalents:
            if resource != attributes.resource and rule_matches(rule, attributes, resource):
                return resource, kind
    return None


def object_selected(selector: LabelSelector, attributes: Attributes) -> bool:
    """Whether an objectSelector selects the request: the labels of its object or of its
    old object (cf. predicates/object)."""
    if selector.empty:
        return True
    return _selects(selector, attributes.object) or _selects(selector, attributes.old_object)


def _selects(selector: LabelSelector, obj: Mapping[str, object] | None) -> bool:
    if obj is None:
        return False
    metadata = obj.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    return selector.matches(labels if isinstance(labels, Mapping) else {})


def _forbidden(attributes: Attributes, why: str) -> errors.StatusError:
    """apimachinery's NewForbidden for the request's resource and name."""
    resource = attributes.resource
    qualified = f"{resource.resource}.{resource.group}" if resource.group else resource.resource
    if attributes.name:
        qualified = f"{qualified} {errors.go_quote(attributes.name)}"
    return errors.StatusError(403, "Forbidden", f"{qualified} is forbidden: {why}",
                              name=attributes.name, group=resource.group,
                              kind=resource.resource)
