"""ValidatingAdmissionPolicies and their bindings as kext reads them: each an
admissionregistration.k8s.io/v1 manifest, checked as kube-apiserver's API validation checks it
(wording included), defaults applied as kube's v1 defaulting does (failurePolicy Fail,
matchPolicy Equivalent, empty selectors).

`policy_from_manifest` and `binding_from_manifest` report problems as `Cause`s whose paths are
relative to the manifest, for the caller to prefix. With strict=False (objects followed in a
cluster, which kube-apiserver validated already, maybe in a newer version) unknown fields
pass. Whether the CEL expressions compile is kext.admission.policy.validator's to say.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kext.admission.webhook.conditions import MatchCondition
from kext.admission.webhook.definition import (
    EVERYTHING,
    FAILURE_POLICIES,
    MATCH_POLICIES,
    Check,
    Rule,
    label_selector,
    path_segment_problems,
    read_match_conditions,
    read_rule,
)
from kext.api import meta
from kext.api.errors import (
    Cause,
    field_duplicate,
    field_forbidden,
    field_invalid,
    field_not_supported,
    field_required,
)
from kext.api.selectors import LabelSelector

POLICY_KIND = "ValidatingAdmissionPolicy"
BINDING_KIND = "ValidatingAdmissionPolicyBinding"
DENY, WARN, AUDIT = "Deny", "Warn", "Audit"
VALIDATION_ACTIONS = (AUDIT, DENY, WARN)
PARAMETER_NOT_FOUND_ACTIONS = ("Allow", "Deny")
# the reasons a validation may give, and the HTTP code a denial then answers with
REASON_CODES = {"Unauthorized": 401, "Forbidden": 403, "Invalid": 422,
                "RequestEntityTooLarge": 413}
DEFAULT_REASON = "Invalid"
MAX_AUDIT_ANNOTATIONS = 20
MAX_AUDIT_VALUE_EXPRESSION = 5 * 1024
_CEL_IDENTIFIER = re.compile(r"^[_a-zA-Z][_a-zA-Z0-9]*$")
_CEL_RESERVED = frozenset({
    "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for",
    "function", "if", "import", "let", "loop", "package", "namespace", "return", "var", "void",
    "while",
})


@dataclass(frozen=True)
class MatchResources:
    """What requests a policy (matchConstraints) or a binding (matchResources) applies to."""

    resource_rules: tuple[Rule, ...] = ()
    exclude_resource_rules: tuple[Rule, ...] = ()
    namespace_selector: LabelSelector = EVERYTHING
    object_selector: LabelSelector = EVERYTHING
    match_policy: str = "Equivalent"


@dataclass(frozen=True)
class ParamKind:
    api_version: str  # group/version
    kind: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def __str__(self) -> str:
        """As kube prints a schema.GroupVersionKind in its messages (`/v1, Kind=ConfigMap`
        for the core group)."""
        return f"{self.group}/{self.version}, Kind={self.kind}"


@dataclass(frozen=True)
class Validation:
    expression: str
    message: str = ""
    message_expression: str = ""
    reason: str = ""  # "": Invalid


@dataclass(frozen=True)
class AuditAnnotation:
    key: str
    value_expression: str


@dataclass(frozen=True)
class Variable:
    name: str
    expression: str


@dataclass(frozen=True)
class Policy:
    """One ValidatingAdmissionPolicy, defaults applied."""

    name: str
    match_constraints: MatchResources
    failure_policy: str = "Fail"
    param_kind: ParamKind | None = None
    match_conditions: tuple[MatchCondition, ...] = ()
    variables: tuple[Variable, ...] = ()
    validations: tuple[Validation, ...] = ()
    audit_annotations: tuple[AuditAnnotation, ...] = ()
    source: str = field(default="", compare=False)  # where it was declared, for messages


@dataclass(frozen=True)
class ParamRef:
    name: str = ""
    namespace: str = ""
    selector: LabelSelector | None = None
    parameter_not_found_action: str = "Deny"


@dataclass(frozen=True)
class Binding:
    """One ValidatingAdmissionPolicyBinding."""

    name: str
    policy_name: str
    validation_actions: tuple[str, ...]
    param_ref: ParamRef | None = None
    match_resources: MatchResources | None = None  # None: whatever the policy matches
    source: str = field(default="", compare=False)


def policy_from_manifest(manifest: Mapping[str, Any], causes: list[Cause], *,
                         strict: bool = True, source: str = "") -> Policy | None:
    """The ValidatingAdmissionPolicy of manifest, or None when it has problems (added to
    causes)."""
    check = Check(causes, strict)
    given = len(causes)
    name = _metadata(check, manifest)
    check.unknown(manifest, "", ("apiVersion", "kind", "metadata", "spec", "status"))
    spec = check.mapping(manifest, "spec", "spec")
    check.unknown(spec, "spec", ("paramKind", "matchConstraints", "validations", "failurePolicy",
                                 "auditAnnotations", "matchConditions", "variables"))
    failure_policy = check.choice(spec, "failurePolicy", "spec.failurePolicy",
                                  FAILURE_POLICIES, "Fail")
    param_kind = _param_kind(check, spec.get("paramKind"), "spec.paramKind")
    constraints = spec.get("matchConstraints")
    if constraints is None:
        causes.append(field_required("spec.matchConstraints"))
        match_constraints = MatchResources()
    else:
        match_constraints = match_resources(check, constraints, "spec.matchConstraints")
        if not match_constraints.resource_rules:
            causes.append(field_required("spec.matchConstraints.resourceRules"))
    conditions = read_match_conditions(check, spec, "spec.matchConditions", compile_here=False)
    variables = _variables(check, spec, "spec.variables")
    validations = _validations(check, spec, "spec.validations")
    annotations = _audit_annotations(check, spec, "spec.auditAnnotations", name)
    if not spec.get("validations") and not spec.get("auditAnnotations"):
        why = "validations or auditAnnotations must contain at least one item"
        causes.append(field_required("spec.validations", why))
        causes.append(field_required("spec.auditAnnotations", why))
    if len(causes) > given:
        return None
    return Policy(name=name, match_constraints=match_constraints, failure_policy=failure_policy,
                  param_kind=param_kind, match_conditions=conditions, variables=variables,
                  validations=validations, audit_annotations=annotations, source=source)


def binding_from_manifest(manifest: Mapping[str, Any], causes: list[Cause], *,
                          strict: bool = True, source: str = "") -> Binding | None:
    """The ValidatingAdmissionPolicyBinding of manifest, or None when it has problems."""
    check = Check(causes, strict)
    given = len(causes)
    name = _metadata(check, manifest)
    check.unknown(manifest, "", ("apiVersion", "kind", "metadata", "spec"))
    spec = check.mapping(manifest, "spec", "spec")
    check.unknown(spec, "spec", ("policyName", "paramRef", "matchResources",
                                 "validationActions"))
    policy_name = check.string(spec, "policyName", "spec.policyName")
    if not policy_name:
        causes.append(field_required("spec.policyName"))
    else:
        for problem in meta.is_dns1123_subdomain(policy_name):
            causes.append(field_invalid("spec.policyName", policy_name, problem))
    param_ref = _param_ref(check, spec.get("paramRef"), "spec.paramRef")
    resources = spec.get("matchResources")
    matched = (match_resources(check, resources, "spec.matchResources")
               if resources is not None else None)
    actions = _validation_actions(check, spec, "spec.validationActions")
    if len(causes) > given:
        return None
    return Binding(name=name, policy_name=policy_name, validation_actions=actions,
                   param_ref=param_ref, match_resources=matched, source=source)


def match_resources(check: Check, value: object, path: str) -> MatchResources:
    """A MatchResources (cf. validateMatchResources), defaults applied."""
    causes = check.causes
    if not isinstance(value, Mapping):
        causes.append(field_invalid(path, value, "must be an object"))
        return MatchResources()
    check.unknown(value, path, ("namespaceSelector", "objectSelector", "resourceRules",
                                "excludeResourceRules", "matchPolicy"))

    def rules(key: str) -> tuple[Rule, ...]:
        out = []
        for i, raw in enumerate(check.items(value, key, f"{path}.{key}")):
            rule = read_rule(check, raw, f"{path}.{key}[{i}]", named=True)
            if rule is not None:
                out.append(rule)
        return tuple(out)

    return MatchResources(
        resource_rules=rules("resourceRules"),
        exclude_resource_rules=rules("excludeResourceRules"),
        namespace_selector=label_selector(value.get("namespaceSelector"),
                                          f"{path}.namespaceSelector", causes, check.strict),
        object_selector=label_selector(value.get("objectSelector"), f"{path}.objectSelector",
                                       causes, check.strict),
        match_policy=check.choice(value, "matchPolicy", f"{path}.matchPolicy", MATCH_POLICIES,
                                  "Equivalent"),
    )


# -- the parts


def _metadata(check: Check, manifest: Mapping[str, Any]) -> str:
    metadata = check.mapping(manifest, "metadata", "metadata")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        check.causes.append(field_required("metadata.name", "name or generateName is required"))
        return ""
    for problem in meta.is_dns1123_subdomain(name):
        check.causes.append(field_invalid("metadata.name", name, problem))
    return name


def _param_kind(check: Check, value: object, path: str) -> ParamKind | None:
    """cf. validateParamKind."""
    if value is None:
        return None
    causes = check.causes
    if not isinstance(value, Mapping):
        causes.append(field_invalid(path, value, "must be an object"))
        return None
    check.unknown(value, path, ("apiVersion", "kind"))
    api_version = check.string(value, "apiVersion", f"{path}.apiVersion")
    kind = check.string(value, "kind", f"{path}.kind")
    at = f"{path}.apiVersion"
    if not api_version:
        causes.append(field_required(at))
    elif api_version.count("/") > 1:
        causes.append(field_invalid(at, api_version,
                                    f"unexpected GroupVersion string: {api_version}"))
    else:
        group, _, version = api_version.rpartition("/")
        if group and (problems := meta.is_dns1123_subdomain(group)):
            causes.append(field_invalid(at, group, ",".join(problems)))
        if not version:
            causes.append(field_invalid(at, api_version, "version must be specified"))
        elif problems := meta.is_dns1035_label(version):
            causes.append(field_invalid(at, version, ",".join(problems)))
    if not kind:
        causes.append(field_required(f"{path}.kind"))
    elif problems := meta.is_dns1035_label(kind.lower()):
        causes.append(field_invalid(f"{path}.kind", kind,
                                    "may have mixed case, but should otherwise match: "
                                    + ",".join(problems)))
    return ParamKind(api_version, kind)


def _param_ref(check: Check, value: object, path: str) -> ParamRef | None:
    """cf. validateParamRef."""
    if value is None:
        return None
    causes = check.causes
    if not isinstance(value, Mapping):
        causes.append(field_invalid(path, value, "must be an object"))
        return None
    check.unknown(value, path, ("name", "namespace", "selector", "parameterNotFoundAction"))
    name = check.string(value, "name", f"{path}.name")
    namespace = check.string(value, "namespace", f"{path}.namespace")
    for problem in path_segment_problems(name) if name else ():
        causes.append(field_invalid(f"{path}.name", name, problem))
    selector = None
    if value.get("selector") is not None:
        selector = label_selector(value.get("selector"), f"{path}.selector", causes,
                                  check.strict)
    if name and selector is not None:
        causes.append(field_forbidden(f"{path}.name", "name and selector are mutually exclusive"))
        causes.append(field_forbidden(f"{path}.selector",
                                      "name and selector are mutually exclusive"))
    if not name and selector is None:
        causes.append(field_required(path, "one of name or selector must be specified"))
    action = value.get("parameterNotFoundAction")
    if not action:
        causes.append(field_required(f"{path}.parameterNotFoundAction"))
        action = "Deny"
    elif action not in PARAMETER_NOT_FOUND_ACTIONS:
        causes.append(field_not_supported(f"{path}.parameterNotFoundAction", action,
                                          PARAMETER_NOT_FOUND_ACTIONS))
    return ParamRef(name, namespace, selector, str(action))


def _validation_actions(check: Check, spec: Mapping[str, Any], path: str) -> tuple[str, ...]:
    causes = check.causes
    actions = check.strings(spec, "validationActions", path)
    if not actions:
        causes.append(field_required(path, "at least one validation action is required"))
    seen: set[str] = set()
    for i, action in enumerate(actions):
        if action in seen:
            causes.append(field_duplicate(f"{path}[{i}]", action))
        seen.add(action)
        if action not in VALIDATION_ACTIONS:
            causes.append(field_not_supported(f"{path}[{i}]", action, VALIDATION_ACTIONS))
    if DENY in seen and WARN in seen:
        causes.append(field_invalid(
            path, actions, "must not contain both Deny and Warn (repeating the same validation "
            "failure information in the API response and headers serves no purpose)"))
    return tuple(actions)


def _variables(check: Check, spec: Mapping[str, Any], path: str) -> tuple[Variable, ...]:
    causes = check.causes
    out: list[Variable] = []
    names: set[str] = set()
    for i, item in enumerate(check.items(spec, "variables", path)):
        at = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            causes.append(field_invalid(at, item, "must be an object"))
            continue
        check.unknown(item, at, ("name", "expression"))
        name = check.string(item, "name", f"{at}.name")
        if not name.strip():
            causes.append(field_required(f"{at}.name", "name is not specified"))
        elif not _CEL_IDENTIFIER.match(name) or name in _CEL_RESERVED:
            causes.append(field_invalid(f"{at}.name", name, "name is not a valid CEL identifier"))
        elif name in names:
            causes.append(field_duplicate(f"{at}.name", name))
        names.add(name)
        expression = check.string(item, "expression", f"{at}.expression")
        if not expression.strip():
            causes.append(field_required(f"{at}.expression", "expression is not specified"))
        out.append(Variable(name, expression))
    return tuple(out)


def _validations(check: Check, spec: Mapping[str, Any], path: str) -> tuple[Validation, ...]:
    """cf. validateValidation."""
    causes = check.causes
    out: list[Validation] = []
    for i, item in enumerate(check.items(spec, "validations", path)):
        at = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            causes.append(field_invalid(at, item, "must be an object"))
            continue
        check.unknown(item, at, ("expression", "message", "messageExpression", "reason"))
        expression = check.string(item, "expression", f"{at}.expression")
        if not expression.strip():
            causes.append(field_required(f"{at}.expression", "expression is not specified"))
        message = check.string(item, "message", f"{at}.message")
        if message and not message.strip():
            causes.append(field_invalid(f"{at}.message", message,
                                        "message must be non-empty if specified"))
        elif "\n" in message.strip() or "\r" in message.strip():
            causes.append(field_invalid(f"{at}.message", message,
                                        "message must not contain line breaks"))
        message_expression = check.string(item, "messageExpression", f"{at}.messageExpression")
        if message_expression and not message_expression.strip():
            causes.append(field_invalid(f"{at}.messageExpression", message_expression,
                                        "must be non-empty if specified"))
        reason = item.get("reason")
        if reason is not None and reason not in REASON_CODES:
            causes.append(field_not_supported(f"{at}.reason", reason, sorted(REASON_CODES)))
            reason = None
        out.append(Validation(expression, message, message_expression, str(reason or "")))
    return tuple(out)


def _audit_annotations(check: Check, spec: Mapping[str, Any], path: str,
                       policy_name: str) -> tuple[AuditAnnotation, ...]:
    """cf. validateAuditAnnotation: `<policy>/<key>` must be a qualified name."""
    causes = check.causes
    raw = check.items(spec, "auditAnnotations", path)
    if len(raw) > MAX_AUDIT_ANNOTATIONS:
        causes.append(field_invalid(path, raw, f"must not have more than "
                                    f"{MAX_AUDIT_ANNOTATIONS} auditAnnotations"))
    out: list[AuditAnnotation] = []
    keys: set[str] = set()
    for i, item in enumerate(raw):
        at = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            causes.append(field_invalid(at, item, "must be an object"))
            continue
        check.unknown(item, at, ("key", "valueExpression"))
        key = check.string(item, "key", f"{at}.key")
        if policy_name:
            qualified = f"{policy_name}/{key}"
            for problem in meta.is_qualified_name(qualified):
                causes.append(field_invalid(f"{at}.key", qualified, problem))
        if key in keys:
            causes.append(field_duplicate(f"{at}.key", key))
        keys.add(key)
        value = check.string(item, "valueExpression", f"{at}.valueExpression")
        if not value.strip():
            causes.append(field_required(f"{at}.valueExpression",
                                         "valueExpression is not specified"))
        elif len(value.strip().encode()) > MAX_AUDIT_VALUE_EXPRESSION:
            causes.append(field_required(f"{at}.valueExpression", f"must not exceed "
                                         f"{MAX_AUDIT_VALUE_EXPRESSION} bytes in length"))
        out.append(AuditAnnotation(key, value))
    return tuple(out)
