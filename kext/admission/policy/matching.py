"""Whether a policy's matchConstraints, or a binding's matchResources, take a request (cf.
apiserver's policy/matching): its namespaceSelector, objectSelector, excludeResourceRules and
resourceRules (no rules: every resource) with its matchPolicy, by the webhooks' own rule and
selector matching (kext.admission.webhook.matching)."""

from __future__ import annotations

from collections.abc import Sequence

from kext.admission.attributes import Attributes, GroupVersionKind, GroupVersionResource
from kext.admission.policy.definition import MatchResources
from kext.admission.webhook.matching import NamespaceLabels, match_rules, object_selected
from kext.api import errors


class MatchError(Exception):
    """Whether the request matches cannot be told (kube's text): a configuration error."""


async def matches(constraints: MatchResources, attributes: Attributes,
                  equivalents: Sequence[tuple[GroupVersionResource, GroupVersionKind]],
                  namespaces: NamespaceLabels,
                  ) -> tuple[GroupVersionResource, GroupVersionKind] | None:
    """The resource and kind the request matches as (its own, or with matchPolicy
    Equivalent an equivalent one), or None. MatchError when the request's namespace, which
    the namespaceSelector needs, cannot be found, and the rules match (kube's order)."""
    namespace_error = ""
    if attributes.namespace and not constraints.namespace_selector.empty:
        try:
            labels = await namespaces.labels(attributes.namespace)
        except errors.StatusError as error:
            labels, namespace_error = None, error.message
        if labels is None and not namespace_error:
            namespace_error = errors.not_found("", "namespaces", attributes.namespace).message
        if labels is not None and not constraints.namespace_selector.matches(labels):
            return None
    if not object_selected(constraints.object_selector, attributes):
        return None
    policy = constraints.match_policy
    if match_rules(constraints.exclude_resource_rules, policy, attributes, equivalents):
        return None
    matched: tuple[GroupVersionResource, GroupVersionKind] | None = (
        attributes.resource, attributes.kind)
    if constraints.resource_rules:
        matched = match_rules(constraints.resource_rules, policy, attributes, equivalents)
    if matched is None:
        return None
    if namespace_error:
        raise MatchError(namespace_error)
    return matched
