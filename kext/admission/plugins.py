"""A server's admission, built once from `admission` in server.yaml: the server-wide Python
hooks, the webhooks (server.yaml's entries and configuration files, and with fromCluster the
cluster's: kext.admission.cluster), one webhook client, the admission metrics and the
server's authorizer (for CEL's `authorizer`: kext.admission.authz).
`chain(definition, interfaces)` puts a resource's chain together in kube's order:

- mutating: NamespaceLifecycle (with fromCluster), the server-wide mutating hooks, the
  resource's defaulting hooks, the mutating webhooks (reinvoked as their reinvocationPolicy
  says);
- (the store validates against the schema in between);
- validating: the server-wide validating hooks, the resource's validation hooks, the
  ValidatingAdmissionPolicies (kext.admission.policy: configuration files' and with
  fromCluster the cluster's; their params read from kext's resources through `params`), the
  validating webhooks (called concurrently).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kext.admission.chain import Chain, MutatingPlugin, ValidatingPlugin, resource_plugins
from kext.admission.cluster import (
    ClusterAdmission,
    CompositePolicies,
    CompositeWebhooks,
    NamespaceLifecycle,
)
from kext.admission.interfaces import ObjectInterfaces
from kext.admission.policy.dispatcher import ValidatingAdmissionPolicies
from kext.admission.policy.params import NoParams, ParamSource
from kext.admission.policy.source import PolicySource, StaticPolicies
from kext.admission.pyhooks import PythonHook
from kext.admission.webhook.call import Caller, StaticWebhooks, WebhookSource
from kext.admission.webhook.client import WebhookClient
from kext.admission.webhook.conditions import MatchConditions
from kext.admission.webhook.matching import ImpliedNamespaces, Matcher, NamespaceLabels
from kext.admission.webhook.mutating import MutatingWebhooks
from kext.admission.webhook.validating import ValidatingWebhooks
from kext.api.resource import ResourceDefinition
from kext.auth.authorization.authorizer import Authorizer
from kext.config import AdmissionConfig
from kext.kube import KubeClient
from kext.metrics import AdmissionMetrics


class AdmissionConfigError(Exception):
    """A part of the admission configuration cannot be loaded (a hook does not import)."""


@dataclass
class AdmissionPlugins:
    """What every resource's chain shares. start() begins following the cluster (when it
    does); close() ends that and the webhook client's connections."""

    hooks: Sequence[PythonHook] = ()
    webhooks: WebhookSource | None = None
    client: WebhookClient | None = None
    namespaces: NamespaceLabels = field(default_factory=ImpliedNamespaces)
    metrics: AdmissionMetrics | None = None
    policies: PolicySource | None = None
    cluster: ClusterAdmission | None = None
    conditions: MatchConditions = field(default_factory=MatchConditions)
    # the server's: decides the checks of admission CEL's `authorizer` (kext.admission.authz)
    authorizer: Authorizer | None = None

    @classmethod
    def from_config(cls, config: AdmissionConfig, metrics: AdmissionMetrics | None = None,
                    kube: KubeClient | None = None,
                    authorizer: Authorizer | None = None) -> AdmissionPlugins:
        """Import the hooks and set up the webhooks of config (the webhook client only when
        there may be a webhook to call); kube is the cluster's client, needed by
        fromCluster; authorizer the server's, for CEL's `authorizer`. Raises
        AdmissionConfigError naming the key."""
        hooks = []
        for i, hook in enumerate(config.hooks):
            try:
                hooks.append(PythonHook.load(hook.hook, hook.type, hook.failure_policy, metrics))
            except Exception as exc:
                raise AdmissionConfigError(
                    f"admission.hooks[{i}]: cannot import {hook.hook!r}: "
                    f"{type(exc).__name__}: {exc}") from None
        static = StaticWebhooks(config.webhooks)
        webhooks: WebhookSource | None = static if config.webhooks else None
        cluster = None
        namespaces: NamespaceLabels = ImpliedNamespaces()
        if config.from_cluster:
            if kube is None:
                raise AdmissionConfigError("admission.fromCluster: needs kubernetes.kubeconfig "
                                           "or kubernetes.inCluster: true")
            cluster = ClusterAdmission(kube)
            webhooks = CompositeWebhooks(static, cluster)
            namespaces = cluster.namespaces
        client = WebhookClient() if webhooks is not None else None
        static_policies = StaticPolicies(config.policies, config.bindings)
        policies: PolicySource | None = static_policies if static_policies.hooks else None
        if cluster is not None:
            policies = CompositePolicies(static_policies, cluster)
        return cls(hooks=hooks, webhooks=webhooks, client=client, namespaces=namespaces,
                   metrics=metrics, policies=policies, cluster=cluster, authorizer=authorizer)

    def start(self) -> None:
        """Begin following the cluster's configurations and namespaces (on the running
        loop); requests that need them wait for the first lists."""
        if self.cluster is not None:
            self.cluster.start()

    def chain(self, definition: ResourceDefinition, interfaces: ObjectInterfaces,
              params: ParamSource | None = None) -> Chain:
        """The admission chain of one resource; params: where its policies' params are
        read (the server's resources)."""
        own_mutating, own_validating = resource_plugins(definition)
        mutating: list[MutatingPlugin] = []
        if self.cluster is not None and definition.namespaced:
            mutating.append(NamespaceLifecycle(self.cluster.namespaces))
        mutating += [h for h in self.hooks if h.mutating]
        validating: list[ValidatingPlugin] = [h for h in self.hooks if not h.mutating]
        mutating += own_mutating
        validating += own_validating
        if self.policies is not None:
            validating.append(ValidatingAdmissionPolicies(
                self.policies, interfaces, self.namespaces, params or NoParams(),
                self.cluster.namespaces if self.cluster is not None else None, self.metrics,
                self.authorizer))
        if self.webhooks is not None and self.client is not None:
            matcher = Matcher(self.namespaces, interfaces.equivalents, interfaces.convert,
                              self.conditions, self.authorizer)
            caller = Caller(self.client, self.metrics)
            # the cluster's webhooks come and go; server.yaml's are known now
            following = self.cluster is not None
            if following or self.webhooks.mutating:
                mutating.append(MutatingWebhooks(self.webhooks, matcher, caller, interfaces))
            if following or self.webhooks.validating:
                validating.append(ValidatingWebhooks(self.webhooks, matcher, caller, interfaces))
        return Chain(mutating, validating, self.metrics)

    async def close(self) -> None:
        """Stop following the cluster; close the webhook client's connections."""
        if self.cluster is not None:
            await self.cluster.stop()
        if self.client is not None:
            await self.client.close()
