"""The cluster's admission, followed (`admission.fromCluster`): its
MutatingWebhookConfigurations and ValidatingWebhookConfigurations, its
ValidatingAdmissionPolicies and their bindings, and its Namespaces, each listed and watched
through the kube-apiserver client (kext.kube's Informer), as a Go aggregated server's admission
plugins follow them with shared informers.

- `ClusterWebhooks`: the webhooks of the cluster's configurations, in kube's order
  (configurations sorted by name, webhooks in their order), after server.yaml's own
  (`CompositeWebhooks`). Their `clientConfig.service` is called at its cluster DNS name.
  A configuration kext cannot use (a webhook kube would not accept either) is logged and
  that webhook left out; matchConditions that do not compile in kext's CEL fail when
  evaluated, under the webhook's failurePolicy, as kube's do.
- `ClusterPolicies`: the policies with their bindings (kext.admission.policy), policies sorted
  by name, each compiled once per resourceVersion, after server.yaml's own
  (`CompositePolicies`). One kext cannot read is logged and left out; expressions that do not
  compile in kext's CEL fail when evaluated, under the policy's failurePolicy, as kube's do.
- `ClusterNamespaces`: namespace labels for namespaceSelector, and `NamespaceLifecycle`
  (cf. plugin/namespace/lifecycle): a create in a namespace that does not exist is 404
  `namespaces "<name>" not found`, in one being terminated 403 `<resource> "<name>" is
  forbidden: unable to create new content in namespace <ns> because it is being terminated`.
  A namespace missing from the cache is looked up once more after 50 ms, then asked of
  kube-apiserver, as kube does.

Until the first lists arrive, requests that need them wait up to READY_TIMEOUT seconds, then
are refused (403 `not yet ready to handle request`), as kube's plugins do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kext.admission.attributes import CREATE, Attributes, Operation
from kext.admission.policy.definition import (
    BINDING_KIND,
    POLICY_KIND,
    Binding,
    Policy,
    binding_from_manifest,
    policy_from_manifest,
)
from kext.admission.policy.source import PolicyHook, PolicySource, pair
from kext.admission.policy.validator import CompiledPolicy
from kext.admission.webhook.call import WebhookSource
from kext.admission.webhook.definition import Webhook, configuration_webhooks
from kext.api import errors
from kext.api.errors import Cause
from kext.kube import Informer, KubeClient, KubeError, KubeStatusError

log = logging.getLogger(__name__)

Object = dict[str, Any]

ADMISSION = "/apis/admissionregistration.k8s.io/v1"
MUTATING_CONFIGURATIONS = f"{ADMISSION}/mutatingwebhookconfigurations"
VALIDATING_CONFIGURATIONS = f"{ADMISSION}/validatingwebhookconfigurations"
POLICIES = f"{ADMISSION}/validatingadmissionpolicies"
POLICY_BINDINGS = f"{ADMISSION}/validatingadmissionpolicybindings"
NAMESPACES = "/api/v1/namespaces"
READY_TIMEOUT = 10.0  # kube's admission plugins wait as long for their informers
MISSING_NAMESPACE_WAIT = 0.05  # kube's missingNamespaceWait
LOOKUP_TIMEOUT = 10.0


async def wait_ready(informers: Sequence[Informer], attributes: Attributes) -> None:
    """Wait for the informers' first lists; 403 `not yet ready` after READY_TIMEOUT."""
    try:
        for informer in informers:
            if not informer.synced:
                await informer.wait_synced(READY_TIMEOUT)
    except KubeError:
        raise forbidden(attributes, "not yet ready to handle request") from None


def forbidden(attributes: Attributes, why: str, causes: Sequence[Cause] = ()) -> errors.StatusError:
    """kube's admission.NewForbidden: named by the request, else by its object."""
    name = attributes.name
    if not name:
        metadata = (attributes.object or {}).get("metadata") or {}
        name = metadata.get("name") or metadata.get("generateName") or "Unknown"
    resource = attributes.resource
    qualified = f"{resource.resource}.{resource.group}" if resource.group else resource.resource
    return errors.StatusError(403, "Forbidden",
                              f"{qualified} {errors.go_quote(name)} is forbidden: {why}",
                              name=name, group=resource.group, kind=resource.resource,
                              causes=list(causes))


class ClusterWebhooks:
    """The webhooks of the cluster's webhook configurations (a WebhookSource)."""

    def __init__(self, client: KubeClient) -> None:
        self.informers = {
            "MutatingWebhookConfiguration": Informer(client, MUTATING_CONFIGURATIONS),
            "ValidatingWebhookConfiguration": Informer(client, VALIDATING_CONFIGURATIONS),
        }
        self._mutating: tuple[Webhook, ...] = ()
        self._validating: tuple[Webhook, ...] = ()
        self._reported: set[tuple[str, str]] = set()
        for kind, informer in self.informers.items():
            informer.add_handler(self._handler(kind))

    @property
    def mutating(self) -> Sequence[Webhook]:
        return self._mutating

    @property
    def validating(self) -> Sequence[Webhook]:
        return self._validating

    @property
    def synced(self) -> bool:
        return all(i.synced for i in self.informers.values())

    def _handler(self, kind: str) -> Callable[[str, Object | None, Object | None], None]:
        def changed(_type: str, _new: Object | None, _old: Object | None) -> None:
            self._rebuild(kind)

        return changed

    def _rebuild(self, kind: str) -> None:
        configurations = sorted(self.informers[kind].items(),
                                key=lambda c: str((c.get("metadata") or {}).get("name", "")))
        webhooks: list[Webhook] = []
        for configuration in configurations:
            name = str((configuration.get("metadata") or {}).get("name", ""))
            version = str((configuration.get("metadata") or {}).get("resourceVersion", ""))
            causes: list[Cause] = []
            found = configuration_webhooks({**configuration, "kind": kind,
                                            "apiVersion": "admissionregistration.k8s.io/v1"},
                                           causes, source=f"{kind} {name}", strict=False)
            if causes and (name, version) not in self._reported:
                self._reported.add((name, version))
                for cause in causes:
                    log.warning("%s %s: %s: %s (left out)", kind, name, cause.field,
                                cause.message)
            webhooks.extend(found)
        if kind == "MutatingWebhookConfiguration":
            self._mutating = tuple(webhooks)
        else:
            self._validating = tuple(webhooks)
        log.info("following %d %ss: %d webhooks", len(configurations), kind, len(webhooks))


class CompositeWebhooks:
    """server.yaml's webhooks, then the cluster's (cf. generic's composite webhook source);
    a request waits until the cluster's configurations and namespaces were listed."""

    def __init__(self, static: WebhookSource, cluster: ClusterAdmission) -> None:
        self.static = static
        self.cluster = cluster.webhooks
        self._informers = [*cluster.webhooks.informers.values(), cluster.namespaces.informer]

    async def ready(self, attributes: Attributes) -> None:
        await wait_ready(self._informers, attributes)

    @property
    def mutating(self) -> Sequence[Webhook]:
        return (*self.static.mutating, *self.cluster.mutating)

    @property
    def validating(self) -> Sequence[Webhook]:
        return (*self.static.validating, *self.cluster.validating)


def _name(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _resource_version(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


class ClusterPolicies:
    """The policies of the cluster's ValidatingAdmissionPolicies and bindings."""

    def __init__(self, client: KubeClient) -> None:
        self.informers = {POLICY_KIND: Informer(client, POLICIES),
                          BINDING_KIND: Informer(client, POLICY_BINDINGS)}
        self._hooks: tuple[PolicyHook, ...] = ()
        # by policy name: the resourceVersion compiled, and its compilation (None: unusable)
        self._compiled: dict[str, tuple[str, CompiledPolicy | None]] = {}
        self._reported: set[tuple[str, str, str]] = set()
        for informer in self.informers.values():
            informer.add_handler(self._changed)

    @property
    def hooks(self) -> Sequence[PolicyHook]:
        return self._hooks

    def _changed(self, _type: str, _new: Object | None, _old: Object | None) -> None:
        self._rebuild()

    def _rebuild(self) -> None:
        compiled: list[CompiledPolicy] = []
        seen: set[str] = set()
        for manifest in sorted(self.informers[POLICY_KIND].items(), key=_name):
            name, version = _name(manifest), _resource_version(manifest)
            seen.add(name)
            cached = self._compiled.get(name)
            if cached is None or cached[0] != version:
                causes: list[Cause] = []
                policy = policy_from_manifest(manifest, causes, strict=False,
                                              source=f"{POLICY_KIND} {name}")
                self._report(POLICY_KIND, manifest, causes)
                cached = (version, _compiled(policy) if policy is not None else None)
                self._compiled[name] = cached
            if cached[1] is not None:
                compiled.append(cached[1])
        for name in set(self._compiled) - seen:
            del self._compiled[name]
        bindings: list[Binding] = []
        for manifest in sorted(self.informers[BINDING_KIND].items(), key=_name):
            causes = []
            binding = binding_from_manifest(manifest, causes, strict=False,
                                            source=f"{BINDING_KIND} {_name(manifest)}")
            self._report(BINDING_KIND, manifest, causes)
            if binding is not None:
                bindings.append(binding)
        self._hooks = tuple(pair(compiled, bindings))
        log.info("following %d %ss and %d bindings: %d in force", len(compiled), POLICY_KIND,
                 len(bindings), len(self._hooks))

    def _report(self, kind: str, manifest: Object, causes: Sequence[Cause]) -> None:
        key = (kind, _name(manifest), _resource_version(manifest))
        if causes and key not in self._reported:
            self._reported.add(key)
            for cause in causes:
                log.warning("%s %s: %s: %s (left out)", kind, key[1], cause.field,
                            cause.message)


def _not_served(informer: Informer) -> bool:
    error = informer.last_error
    return not informer.synced and isinstance(error, KubeStatusError) and error.code == 404


def _compiled(policy: Policy) -> CompiledPolicy | None:
    try:
        return CompiledPolicy(policy)
    except Exception:  # one policy kext cannot set up must not stop following the others
        log.exception("%s %s: cannot be compiled (left out)", POLICY_KIND, policy.name)
        return None


class CompositePolicies:
    """server.yaml's policies, then the cluster's; a request waits until the cluster's
    policies, bindings and namespaces were listed. A cluster that does not serve
    admissionregistration.k8s.io/v1 policies (before kube 1.30) has none: its 404 is not
    waited for."""

    def __init__(self, static: PolicySource, cluster: ClusterAdmission) -> None:
        self.static = static
        self.cluster = cluster.policies
        self._namespaces = cluster.namespaces.informer

    async def ready(self, attributes: Attributes) -> None:
        for informer in self.cluster.informers.values():
            if not informer.synced:
                await informer.wait_answered(READY_TIMEOUT)
                if not informer.synced and informer.last_error is None:  # no answer in time
                    raise forbidden(attributes, "not yet ready to handle request")
        served = [i for i in self.cluster.informers.values() if not _not_served(i)]
        await wait_ready([*served, self._namespaces], attributes)

    @property
    def hooks(self) -> Sequence[PolicyHook]:
        return (*self.static.hooks, *self.cluster.hooks)


class ClusterNamespaces:
    """The cluster's namespaces: their labels (a NamespaceLabels) and their phase."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.informer = Informer(client, NAMESPACES)

    async def namespace(self, name: str) -> Object | None:
        """The namespace called name: from the cache, after a short wait, or asked of
        kube-apiserver (kube's lookups); None when there is none. KubeError when it cannot be
        asked."""
        found = self.informer.get(name)
        if found is None:
            await asyncio.sleep(MISSING_NAMESPACE_WAIT)
            found = self.informer.get(name)
        if found is None:
            try:
                found = await self.client.get(f"{NAMESPACES}/{name}", timeout=LOOKUP_TIMEOUT)
            except KubeStatusError as error:
                if error.code == 404:
                    return None
                raise
        return found

    async def labels(self, namespace: str) -> Mapping[str, str] | None:
        try:
            if not self.informer.synced:
                await self.informer.wait_synced(READY_TIMEOUT)
            found = await self.namespace(namespace)
        except KubeError as error:
            raise errors.internal_error(str(error)) from None
        if found is None:
            return None
        labels = (found.get("metadata") or {}).get("labels") or {}
        return {str(k): str(v) for k, v in labels.items()}


class NamespaceLifecycle:
    """kube's NamespaceLifecycle for kext's resources: creates only in namespaces that exist
    and are not being terminated (kext serves no Namespaces, so there is nothing else)."""

    def __init__(self, namespaces: ClusterNamespaces) -> None:
        self.namespaces = namespaces

    def handles(self, operation: Operation) -> bool:
        return operation == CREATE

    async def admit(self, attributes: Attributes) -> Object | None:
        namespace = attributes.namespace
        if attributes.operation != CREATE or not namespace:
            return None
        await wait_ready([self.namespaces.informer], attributes)
        try:
            found = await self.namespaces.namespace(namespace)
        except KubeError as error:
            raise errors.internal_error(str(error)) from None
        if found is None:
            raise errors.not_found("", "namespaces", namespace)
        if (found.get("status") or {}).get("phase") == "Terminating":
            raise forbidden(
                attributes,
                f"unable to create new content in namespace {namespace} because it is being "
                "terminated",
                [Cause("NamespaceTerminating", f"namespace {namespace} is being terminated",
                       "metadata.namespace")])
        return None


class ClusterAdmission:
    """What admission follows in the cluster; start() on the running loop, stop() at the
    end."""

    def __init__(self, client: KubeClient) -> None:
        self.webhooks = ClusterWebhooks(client)
        self.policies = ClusterPolicies(client)
        self.namespaces = ClusterNamespaces(client)

    @property
    def informers(self) -> list[Informer]:
        return [*self.webhooks.informers.values(), *self.policies.informers.values(),
                self.namespaces.informer]

    def start(self) -> None:
        for informer in self.informers:
            informer.start()

    async def stop(self) -> None:
        for informer in self.informers:
            await informer.stop()
