"""The audit policy: which requests are audited, at which level, at which stages
(cf. k8s.io/apiserver pkg/audit/policy: reader.go, checker.go, and
pkg/apis/audit/validation).

`load_policy(path)` reads an `audit.k8s.io/v1` Policy and returns a `Policy`, or raises
`PolicyError` with one line per problem (`rules[0].level: Unsupported value: ...`). A policy
evaluates a request to the first rule that matches it: its level, its omitted stages (the
rule's and the policy's) and whether managed fields are dropped from bodies; no match is
level None (not audited)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

import yaml

from kext.api import errors
from kext.api.meta import name_is_dns_subdomain
from kext.auth.user import UserInfo

API_VERSION = "audit.k8s.io/v1"


class Level(enum.IntEnum):
    """How much of a request is recorded; ordered, so `level >= Level.REQUEST` reads well."""

    NONE = 0
    METADATA = 1
    REQUEST = 2
    REQUEST_RESPONSE = 3

    @property
    def wire(self) -> str:
        return _LEVEL_NAMES[self]


_LEVEL_NAMES = {Level.NONE: "None", Level.METADATA: "Metadata", Level.REQUEST: "Request",
                Level.REQUEST_RESPONSE: "RequestResponse"}
_LEVELS = {name: level for level, name in _LEVEL_NAMES.items()}

STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")


class RequestAttributes(Protocol):
    """What a rule matches on besides the user (kext.server.request_info.RequestInfo)."""

    @property
    def is_resource_request(self) -> bool: ...
    @property
    def path(self) -> str: ...
    @property
    def verb(self) -> str: ...
    @property
    def api_group(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def resource(self) -> str: ...
    @property
    def subresource(self) -> str: ...
    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class GroupResources:
    group: str = ""
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    level: Level
    users: frozenset[str] = frozenset()
    user_groups: frozenset[str] = frozenset()
    verbs: frozenset[str] = frozenset()
    resources: tuple[GroupResources, ...] = ()
    namespaces: frozenset[str] = frozenset()
    non_resource_urls: tuple[str, ...] = ()
    omit_stages: frozenset[str] = frozenset()  # the rule's and the policy's
    omit_managed_fields: bool | None = None  # None: the policy's

    def matches(self, user: UserInfo | None, request: RequestAttributes) -> bool:
        """Whether this rule applies to the request (cf. ruleMatches)."""
        if self.users and (user is None or user.name not in self.users):
            return False
        if self.user_groups and (user is None
                                 or not any(g in self.user_groups for g in user.groups)):
            return False
        if self.verbs and request.verb not in self.verbs:
            return False
        if self.namespaces or self.resources:
            return self._matches_resource(request)
        if self.non_resource_urls:
            return not request.is_resource_request and any(
                _path_matches(request.path, spec) for spec in self.non_resource_urls
            )
        return True

    def _matches_resource(self, request: RequestAttributes) -> bool:
        if not request.is_resource_request:
            return False
        # cluster-scoped resources have the namespace ""
        if self.namespaces and request.namespace not in self.namespaces:
            return False
        if not self.resources:
            return True
        resource, subresource = request.resource, request.subresource
        combined = f"{resource}/{subresource}" if subresource else resource
        for gr in self.resources:
            if gr.group != request.api_group and gr.group != "*":
                continue
            if not gr.resources:
                return True
            if gr.resource_names and request.name not in gr.resource_names:
                continue
            for spec in gr.resources:
                if spec in (combined, "*"):
                    return True
                if subresource and spec.startswith("*/") and spec[2:] == subresource:
                    return True
                if spec.endswith("/*") and spec[:-2] == resource:
                    return True
        return False


def _path_matches(path: str, spec: str) -> bool:
    if spec in ("*", path):
        return True
    return spec.endswith("*") and path.startswith(spec.rstrip("*"))


@dataclass(frozen=True)
class RequestAuditConfig:
    """What the policy decided for one request."""

    level: Level
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool = False


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    omit_stages: frozenset[str] = frozenset()
    omit_managed_fields: bool = False

    def evaluate(self, user: UserInfo | None, request: RequestAttributes) -> RequestAuditConfig:
        """The first matching rule's level and stages; level None when no rule matches
        (cf. EvaluatePolicyRule). `user` is None for a request that failed authentication."""
        for rule in self.rules:
            if rule.matches(user, request):
                omit_managed = (self.omit_managed_fields if rule.omit_managed_fields is None
                                else rule.omit_managed_fields)
                return RequestAuditConfig(rule.level, rule.omit_stages, omit_managed)
        return RequestAuditConfig(Level.NONE, self.omit_stages, self.omit_managed_fields)


class PolicyError(Exception):
    """The policy file cannot be used; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_policy(path: str) -> Policy:
    """Read and validate the audit.k8s.io/v1 Policy in the file at path (YAML or JSON).
    Raises PolicyError. Unknown fields are refused: a misspelt `users` would otherwise make a
    rule match everyone."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise PolicyError([f"cannot read {path}: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise PolicyError([f"{path}: not UTF-8 text"]) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise PolicyError([f"{where}: {getattr(exc, 'problem', None) or exc}"]) from None
    return parse_policy(document)


def parse_policy(document: object) -> Policy:
    """Validate an already-parsed Policy document (cf. LoadPolicyFromBytes and
    ValidatePolicy); raises PolicyError."""
    problems: list[str] = []
    if not isinstance(document, dict):
        raise PolicyError([f"expected an {API_VERSION} Policy, got {_describe(document)}"])
    if document.get("apiVersion") != API_VERSION or document.get("kind") != "Policy":
        problems.append(f"expected apiVersion: {API_VERSION} and kind: Policy, got "
                        f"{_describe(document.get('apiVersion'))} and "
                        f"{_describe(document.get('kind'))}")
    _unknown(document, {"apiVersion", "kind", "metadata", "rules", "omitStages",
                        "omitManagedFields"}, "", problems)
    omit_stages = _stages(document.get("omitStages"), "omitStages", problems)
    omit_managed = _bool(document.get("omitManagedFields"), "omitManagedFields", problems)
    rules: list[Rule] = []
    raw_rules = document.get("rules")
    if raw_rules is not None and not isinstance(raw_rules, list):
        problems.append(f"rules: expected a list, got {_describe(raw_rules)}")
    elif not raw_rules:
        problems.append("rules: a policy needs at least one rule")
    else:
        for i, raw in enumerate(raw_rules):
            rule = _rule(raw, f"rules[{i}]", omit_stages, problems)
            if rule is not None:
                rules.append(rule)
    if problems:
        raise PolicyError(problems)
    return Policy(tuple(rules), omit_stages, bool(omit_managed))


def _rule(raw: object, path: str, policy_stages: frozenset[str],
          problems: list[str]) -> Rule | None:
    if not isinstance(raw, dict):
        problems.append(f"{path}: expected a mapping, got {_describe(raw)}")
        return None
    _unknown(raw, {"level", "users", "userGroups", "verbs", "resources", "namespaces",
                   "nonResourceURLs", "omitStages", "omitManagedFields"}, path, problems)
    level = _level(raw.get("level"), f"{path}.level", problems)
    urls = _strings(raw.get("nonResourceURLs"), f"{path}.nonResourceURLs", problems)
    for i, url in enumerate(urls):
        if url == "*":
            continue
        where = f"{path}.nonResourceURLs[{i}]"
        if not url.startswith("/"):
            problems.append(_cause(errors.field_invalid(
                where, url, "non-resource URL rules must begin with a '/' character")))
        if url and "*" in url[:-1]:
            problems.append(_cause(errors.field_invalid(
                where, url, "non-resource URL wildcards '*' must be the final character of "
                "the rule")))
    resources = _group_resources(raw.get("resources"), f"{path}.resources", problems)
    namespaces = _strings(raw.get("namespaces"), f"{path}.namespaces", problems)
    if urls and (resources or namespaces):
        problems.append(_cause(errors.field_invalid(
            f"{path}.nonResourceURLs", urls,
            "rules cannot apply to both regular resources and non-resource URLs")))
    stages = _stages(raw.get("omitStages"), f"{path}.omitStages", problems)
    omit_managed = _bool(raw.get("omitManagedFields"), f"{path}.omitManagedFields", problems)
    if level is None:
        return None
    return Rule(
        level=level,
        users=frozenset(_strings(raw.get("users"), f"{path}.users", problems)),
        user_groups=frozenset(_strings(raw.get("userGroups"), f"{path}.userGroups", problems)),
        verbs=frozenset(_strings(raw.get("verbs"), f"{path}.verbs", problems)),
        resources=tuple(resources),
        namespaces=frozenset(namespaces),
        non_resource_urls=tuple(urls),
        omit_stages=stages | policy_stages,
        omit_managed_fields=omit_managed,
    )


def _group_resources(raw: object, path: str, problems: list[str]) -> list[GroupResources]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(f"{path}: expected a list, got {_describe(raw)}")
        return []
    out = []
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected a mapping, got {_describe(item)}")
            continue
        _unknown(item, {"group", "resources", "resourceNames"}, where, problems)
        group = item.get("group") or ""
        if not isinstance(group, str):
            problems.append(f"{where}.group: expected a string, got {_describe(group)}")
            continue
        if group and group != "*":
            messages = name_is_dns_subdomain(group, False)
            if messages:
                problems.append(_cause(errors.field_invalid(
                    f"{where}.group", group, ",".join(messages))))
        resources = _strings(item.get("resources"), f"{where}.resources", problems)
        names = _strings(item.get("resourceNames"), f"{where}.resourceNames", problems)
        if names and not resources:
            problems.append(_cause(errors.field_invalid(
                f"{where}.resourceNames", names,
                "using resourceNames requires at least one resource")))
        out.append(GroupResources(group, tuple(resources), tuple(names)))
    return out


def _level(raw: object, path: str, problems: list[str]) -> Level | None:
    if raw is None or raw == "":
        problems.append(_cause(errors.field_required(path)))
        return None
    level = _LEVELS.get(raw) if isinstance(raw, str) else None
    if level is None:
        problems.append(_cause(errors.field_not_supported(path, raw, list(_LEVELS))))
    return level


def _stages(raw: object, path: str, problems: list[str]) -> frozenset[str]:
    stages = _strings(raw, path, problems)
    for i, stage in enumerate(stages):
        if stage not in STAGES:
            problems.append(_cause(errors.field_invalid(
                f"{path}[{i}]", stage, "allowed stages are " + ",".join(STAGES))))
    return frozenset(s for s in stages if s in STAGES)


def _strings(raw: object, path: str, problems: list[str]) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        problems.append(f"{path}: expected a list of strings, got {_describe(raw)}")
        return []
    return list(raw)


def _bool(raw: object, path: str, problems: list[str]) -> bool | None:
    if raw is None or isinstance(raw, bool):
        return raw
    problems.append(f"{path}: expected true or false, got {_describe(raw)}")
    return None


def _unknown(raw: dict[Any, Any], known: set[str], path: str, problems: list[str]) -> None:
    for key in raw:
        if key not in known:
            where = f"{path}.{key}" if path else str(key)
            problems.append(f"{where}: unknown field")


def _cause(cause: errors.Cause) -> str:
    return f"{cause.field}: {cause.message}"


def _describe(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)
