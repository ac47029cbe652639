"""The policies in force and their bindings (cf. apiserver's policy/generic PolicySource): each
`PolicyHook` a compiled policy with the bindings that name it; a policy without a binding
does nothing, a binding naming no known policy neither (as kube's source leaves them out).

`StaticPolicies` are server.yaml's (admission.configurations), compiled at start-up; the
cluster's (admission.fromCluster) are kext.admission.cluster's ClusterPolicies, and
CompositePolicies puts both together, server.yaml's first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from kext.admission.attributes import Attributes
from kext.admission.policy.definition import Binding
from kext.admission.policy.validator import CompiledPolicy


@dataclass(frozen=True)
class PolicyHook:
    """A compiled policy and its bindings, in order."""

    policy: CompiledPolicy
    bindings: tuple[Binding, ...]

    @property
    def name(self) -> str:
        return self.policy.policy.name


class PolicySource(Protocol):
    """Where the policies of a request come from."""

    @property
    def hooks(self) -> Sequence[PolicyHook]: ...

    async def ready(self, attributes: Attributes) -> None:
        """Wait until the policies are known (a 403 StatusError if they cannot be)."""
        ...


def pair(policies: Iterable[CompiledPolicy], bindings: Iterable[Binding]) -> list[PolicyHook]:
    """The hooks of policies (in their order) with their bindings (in theirs)."""
    by_policy: dict[str, list[Binding]] = {}
    for binding in bindings:
        by_policy.setdefault(binding.policy_name, []).append(binding)
    return [PolicyHook(p, tuple(by_policy[p.policy.name])) for p in policies
            if p.policy.name in by_policy]


class StaticPolicies:
    """The policies and bindings of server.yaml's admission.configurations."""

    def __init__(self, policies: Sequence[CompiledPolicy], bindings: Sequence[Binding]) -> None:
        self._hooks = tuple(pair(policies, bindings))

    @property
    def hooks(self) -> Sequence[PolicyHook]:
        return self._hooks

    async def ready(self, attributes: Attributes) -> None:
        return None
