"""Admission webhooks as kext calls them: each an admissionregistration.k8s.io/v1
MutatingWebhook or ValidatingWebhook, checked as kube-apiserver checks one it is given (its
API validation, wording included) and resolved to what a call needs (the URL, the CA).

`webhook_from_manifest` reads one webhook of a MutatingWebhookConfiguration or
ValidatingWebhookConfiguration; `configuration_webhooks` a whole configuration. Both report
problems as `Cause`s whose field paths are relative to what they were given, for the caller
to prefix (the config key in server.yaml, or the object followed in the cluster).

Where kext is more lenient than kube's v1 API: `sideEffects` may also be Some or Unknown
(objects stored through v1beta1 carry them): such a webhook is refused on dry-run requests, as
kube's dispatcher refuses it. Where stricter: `caBundle` must hold PEM certificates (kube finds
out on the first call), and the AdmissionReview versions must include v1 (kext speaks only
v1).
"""

from __future__ import annotations

import base64
import binascii
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from kext.admission.attributes import GroupVersionKind, GroupVersionResource
from kext.admission.webhook.conditions import MatchCondition, MatchConditions
from kext.api import meta
from kext.api.errors import (
    Cause,
    field_duplicate,
    field_forbidden,
    field_invalid,
    field_not_supported,
    field_required,
    field_too_many,
)
from kext.api.selectors import (
    DOES_NOT_EXIST,
    EQUALS,
    EXISTS,
    IN,
    NOT_IN,
    LabelSelector,
    Requirement,
)

API_GROUP = "admissionregistration.k8s.io"
API_VERSION = f"{API_GROUP}/v1"
MUTATING = "Mutating"
VALIDATING = "Validating"
CONFIGURATION_KINDS = {
    "MutatingWebhookConfiguration": MUTATING,
    "ValidatingWebhookConfiguration": VALIDATING,
}

OPERATIONS = ("*", "CONNECT", "CREATE", "DELETE", "UPDATE")
SCOPES = ("*", "Cluster", "Namespaced")
FAILURE_POLICIES = ("Fail", "Ignore")
MATCH_POLICIES = ("Equivalent", "Exact")
SIDE_EFFECTS = ("None", "NoneOnDryRun", "Some", "Unknown")
NO_SIDE_EFFECTS = ("None", "NoneOnDryRun")
REINVOCATION_POLICIES = ("IfNeeded", "Never")
# kube accepts these; kext sends only v1, so v1 must be among them
REVIEW_VERSIONS = ("v1", "v1beta1")
DEFAULT_TIMEOUT_SECONDS = 10
MAX_MATCH_CONDITIONS = 64

EVERYTHING = LabelSelector()


@dataclass(frozen=True)
class Rule:
    """A RuleWithOperations: what requests a webhook is called for; with resource_names, a
    NamedRuleWithOperations (an admission policy's: only requests for those names match)."""

    operations: tuple[str, ...]
    api_groups: tuple[str, ...]
    api_versions: tuple[str, ...]
    resources: tuple[str, ...]
    scope: str = "*"
    resource_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Webhook:
    """One webhook, defaults applied, its client config resolved to a URL and a CA bundle
    (empty: the system's trusted roots)."""

    name: str
    type: str  # MUTATING or VALIDATING
    url: str
    ca_pem: bytes = b""
    rules: tuple[Rule, ...] = ()
    failure_policy: str = "Fail"
    match_policy: str = "Equivalent"
    namespace_selector: LabelSelector = EVERYTHING
    object_selector: LabelSelector = EVERYTHING
    side_effects: str = "None"
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    reinvocation_policy: str = "Never"
    match_conditions: tuple[MatchCondition, ...] = ()
    admission_review_versions: tuple[str, ...] = ("v1",)
    configuration: str = ""  # the configuration's name; "" for server.yaml's own entries
    index: int = 0  # its place in the configuration
    source: str = field(default="", compare=False)  # where it was declared, for messages
    # the manifest it was read from, as given (kept for what is not modelled here)
    manifest: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def uid(self) -> str:
        """What tells the webhooks of all configurations apart (as kube's accessor UID)."""
        return f"{self.configuration}/{self.name}/{self.index}"

    @property
    def mutating(self) -> bool:
        return self.type == MUTATING


def service_url(name: str, namespace: str, port: int, path: str) -> str:
    """Where kube-apiserver calls a webhook's clientConfig.service: its cluster DNS name."""
    return f"https://{name}.{namespace}.svc:{port}{path}"


def configuration_webhooks(manifest: Mapping[str, Any], causes: list[Cause],
                           source: str = "", strict: bool = True) -> list[Webhook]:
    """The webhooks of a MutatingWebhookConfiguration or ValidatingWebhookConfiguration
    manifest (apiVersion admissionregistration.k8s.io/v1), each cause found added to causes;
    source says where the manifest came from. strict=False lets fields kext does not know
    pass (objects read from a cluster may carry newer ones)."""
    kind = manifest.get("kind")
    webhook_type = CONFIGURATION_KINDS.get(kind) if isinstance(kind, str) else None
    if manifest.get("apiVersion") != API_VERSION:
        causes.append(field_not_supported("apiVersion", manifest.get("apiVersion"),
                                          [API_VERSION]))
    if webhook_type is None:
        causes.append(field_not_supported("kind", kind, sorted(CONFIGURATION_KINDS)))
        return []
    check = Check(causes, strict)
    metadata = check.mapping(manifest, "metadata", "metadata")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        causes.append(field_required("metadata.name", "name or generateName is required"))
        name = ""
    else:
        for problem in meta.is_dns1123_subdomain(name):
            causes.append(field_invalid("metadata.name", name, problem))
    check.unknown(manifest, "", ("apiVersion", "kind", "metadata", "webhooks"))
    webhooks: list[Webhook] = []
    names: set[str] = set()
    for i, item in enumerate(check.items(manifest, "webhooks", "webhooks")):
        path = f"webhooks[{i}]"
        if not isinstance(item, Mapping):
            causes.append(field_invalid(path, item, "must be an object"))
            continue
        hook_name = item.get("name")
        if isinstance(hook_name, str) and hook_name:
            if hook_name in names:
                causes.append(field_duplicate(f"{path}.name", hook_name))
            names.add(hook_name)
        webhook = webhook_from_manifest(item, webhook_type, causes, path=path,
                                        configuration=name, index=i,
                                        source=f"{source}.{path}" if source else path,
                                        strict=strict)
        if webhook is not None:
            webhooks.append(webhook)
    return webhooks


def webhook_from_manifest(item: Mapping[str, Any], webhook_type: str, causes: list[Cause], *,
                          path: str = "", configuration: str = "", index: int = 0,
                          defaults: Mapping[str, Any] | None = None,
                          source: str = "", strict: bool = True) -> Webhook | None:
    """One MutatingWebhook or ValidatingWebhook (webhook_type MUTATING or VALIDATING), or None
    when it has problems (added to causes, paths under path). defaults stand in for fields
    the manifest leaves out (server.yaml's entries default sideEffects, rules...)."""
    check = Check(causes, strict)
    given = len(causes)
    merged = {**(defaults or {}), **item}
    mutating = webhook_type == MUTATING
    known = ["name", "clientConfig", "rules", "failurePolicy", "matchPolicy",
             "namespaceSelector", "objectSelector", "sideEffects", "timeoutSeconds",
             "admissionReviewVersions", "matchConditions"]
    if mutating:
        known.append("reinvocationPolicy")
    check.unknown(merged, path, known)

    name = check.string(merged, "name", _at(path, "name"))
    if not name:
        causes.append(field_required(_at(path, "name")))
    else:
        for problem in meta.is_dns1123_subdomain(name):
            causes.append(field_invalid(_at(path, "name"), name, problem))
        if not meta.is_dns1123_subdomain(name) and name.count(".") < 2:
            causes.append(field_invalid(
                _at(path, "name"), name,
                "should be a domain with at least three segments separated by dots"))
    url, ca_pem = _client_config(check, merged.get("clientConfig"), _at(path, "clientConfig"))
    rules = tuple(
        rule for i, raw in enumerate(check.items(merged, "rules", _at(path, "rules")))
        if (rule := read_rule(check, raw, f"{_at(path, 'rules')}[{i}]")) is not None
    )
    failure_policy = check.choice(merged, "failurePolicy", _at(path, "failurePolicy"),
                                  FAILURE_POLICIES, "Fail")
    match_policy = check.choice(merged, "matchPolicy", _at(path, "matchPolicy"),
                                MATCH_POLICIES, "Equivalent")
    if merged.get("sideEffects") is None:
        causes.append(field_required(_at(path, "sideEffects"),
                                     "must specify one of " + ", ".join(NO_SIDE_EFFECTS)))
    side_effects = check.choice(merged, "sideEffects", _at(path, "sideEffects"), SIDE_EFFECTS,
                                "None")
    timeout = merged.get("timeoutSeconds")
    if timeout is None:
        timeout = DEFAULT_TIMEOUT_SECONDS
    elif not isinstance(timeout, int) or isinstance(timeout, bool):
        causes.append(field_invalid(_at(path, "timeoutSeconds"), timeout, "must be an integer"))
        timeout = DEFAULT_TIMEOUT_SECONDS
    elif not 1 <= timeout <= 30:
        causes.append(field_invalid(_at(path, "timeoutSeconds"), timeout,
                                    "the timeout value must be between 1 and 30 seconds"))
    namespace_selector = label_selector(merged.get("namespaceSelector"),
                                        _at(path, "namespaceSelector"), causes, strict)
    object_selector = label_selector(merged.get("objectSelector"), _at(path, "objectSelector"),
                                     causes, strict)
    reinvocation = "Never"
    if mutating:
        reinvocation = check.choice(merged, "reinvocationPolicy", _at(path, "reinvocationPolicy"),
                                    REINVOCATION_POLICIES, "Never")
    versions = _review_versions(check, merged, _at(path, "admissionReviewVersions"))
    conditions = read_match_conditions(check, merged, _at(path, "matchConditions"))
    if len(causes) > given:
        return None
    return Webhook(
        name=name, type=webhook_type, url=url, ca_pem=ca_pem, rules=rules,
        failure_policy=failure_policy, match_policy=match_policy,
        namespace_selector=namespace_selector, object_selector=object_selector,
        side_effects=side_effects, timeout_seconds=timeout, reinvocation_policy=reinvocation,
        match_conditions=conditions, admission_review_versions=versions,
        configuration=configuration, index=index, source=source, manifest=dict(item),
    )


def label_selector(value: object, path: str, causes: list[Cause],
                   strict: bool = True) -> LabelSelector:
    """A metav1.LabelSelector (matchLabels, matchExpressions) as a selector, checked as kube's
    ValidateLabelSelector; None or {} selects everything."""
    if value is None:
        return EVERYTHING
    if not isinstance(value, Mapping):
        causes.append(field_invalid(path, value, "must be an object"))
        return EVERYTHING
    check = Check(causes, strict)
    check.unknown(value, path, ("matchLabels", "matchExpressions"))
    requirements: list[Requirement] = []
    labels = check.mapping(value, "matchLabels", _at(path, "matchLabels"))
    for key, label in labels.items():
        key_path = _at(path, "matchLabels")
        for problem in meta.is_qualified_name(str(key)):
            causes.append(field_invalid(key_path, key, problem))
        if not isinstance(label, str):
            causes.append(field_invalid(key_path, label, "must be a string"))
            continue
        for problem in meta.is_valid_label_value(label):
            causes.append(field_invalid(key_path, label, problem))
        requirements.append(Requirement(str(key), EQUALS, (label,)))
    operators = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}
    for i, expression in enumerate(check.items(value, "matchExpressions",
                                               _at(path, "matchExpressions"))):
        expr_path = f"{_at(path, 'matchExpressions')}[{i}]"
        if not isinstance(expression, Mapping):
            causes.append(field_invalid(expr_path, expression, "must be an object"))
            continue
        check.unknown(expression, expr_path, ("key", "operator", "values"))
        key = check.string(expression, "key", _at(expr_path, "key"))
        for problem in meta.is_qualified_name(key):
            causes.append(field_invalid(_at(expr_path, "key"), key, problem))
        operator = expression.get("operator")
        values = [v for v in check.items(expression, "values", _at(expr_path, "values"))
                  if isinstance(v, str)]
        if operator in ("In", "NotIn"):
            if not values:
                causes.append(field_required(
                    _at(expr_path, "values"),
                    "must be specified when `operator` is 'In' or 'NotIn'"))
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                causes.append(field_forbidden(
                    _at(expr_path, "values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            causes.append(field_invalid(_at(expr_path, "operator"), operator,
                                        "not a valid selector operator"))
            continue
        for j, label in enumerate(values):
            for problem in meta.is_valid_label_value(label):
                causes.append(field_invalid(f"{_at(expr_path, 'values')}[{j}]", label, problem))
        requirements.append(Requirement(key, operators[str(operator)], tuple(sorted(values))))
    return LabelSelector(tuple(sorted(requirements, key=lambda r: r.key)))


def load_ca_bundle(data: bytes, path: str, causes: list[Cause]) -> bytes:
    """data when it holds PEM certificates; else a cause (client-go's wording)."""
    try:
        if not x509.load_pem_x509_certificates(data):
            raise ValueError("no certificate")
    except ValueError:
        causes.append(field_invalid(path, "<bytes>", "unable to load root certificates: unable "
                                    "to parse bytes as PEM block"))
        return b""
    return data


# -- the parts


def _client_config(check: Check, value: object, path: str) -> tuple[str, bytes]:
    causes = check.causes
    if not isinstance(value, Mapping):
        causes.append(field_required(path, "exactly one of url or service is required"))
        return "", b""
    check.unknown(value, path, ("url", "service", "caBundle"))
    ca_pem = b""
    bundle = value.get("caBundle")
    if bundle is not None:
        try:
            if not isinstance(bundle, str):
                raise ValueError
            ca_pem = load_ca_bundle(base64.b64decode(bundle, validate=True),
                                    _at(path, "caBundle"), causes)
        except (ValueError, binascii.Error):
            causes.append(field_invalid(_at(path, "caBundle"), "<bytes>",
                                        "must be base64-encoded PEM certificates"))
    url, service = value.get("url"), value.get("service")
    if (url is None) == (service is None):
        causes.append(field_required(path, "exactly one of url or service is required"))
        return "", ca_pem
    if url is not None:
        return _url(check, url, _at(path, "url")), ca_pem
    return _service(check, service, _at(path, "service")), ca_pem


def _url(check: Check, url: object, path: str) -> str:
    causes = check.causes
    form = "; desired format: https://host[/path]"
    if not isinstance(url, str):
        causes.append(field_required(path, "url must be a valid URL" + form))
        return ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError as exc:
        causes.append(field_required(path, f"url must be a valid URL: {exc}{form}"))
        return ""
    if parts.scheme != "https":
        causes.append(field_invalid(path, parts.scheme,
                                    "'https' is the only allowed URL scheme" + form))
    if not parts.hostname:
        causes.append(field_invalid(path, parts.netloc, "host must be specified" + form))
    if parts.username or parts.password:
        causes.append(field_invalid(path, parts.netloc.rpartition("@")[0],
                                    "user information is not permitted in the URL"))
    if parts.fragment:
        causes.append(field_invalid(path, parts.fragment, "fragments are not permitted in the URL"))
    if parts.query:
        causes.append(field_invalid(path, parts.query,
                                    "query parameters are not permitted in the URL"))
    return url


def _service(check: Check, service: object, path: str) -> str:
    causes = check.causes
    if not isinstance(service, Mapping):
        causes.append(field_invalid(path, service, "must be an object"))
        return ""
    check.unknown(service, path, ("namespace", "name", "path", "port"))
    name = check.string(service, "name", _at(path, "name"))
    namespace = check.string(service, "namespace", _at(path, "namespace"))
    if not name:
        causes.append(field_required(_at(path, "name")))
    if not namespace:
        causes.append(field_required(_at(path, "namespace")))
    port = service.get("port", 443)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        causes.append(field_invalid(_at(path, "port"), port,
                                    "port is not valid: must be between 1 and 65535, inclusive"))
        port = 443
    url_path = check.string(service, "path", _at(path, "path"))
    if url_path not in ("", "/"):
        if not url_path.startswith("/"):
            causes.append(field_invalid(_at(path, "path"), url_path, "must start with a '/'"))
        for i, step in enumerate(url_path[1:].removesuffix("/").split("/")):
            if not step:
                causes.append(field_invalid(_at(path, "path"), url_path,
                                            f"segment[{i}] may not be empty"))
            for problem in meta.is_dns1123_subdomain(step) if step else ():
                causes.append(field_invalid(_at(path, "path"), url_path,
                                            f"segment[{i}]: {problem}"))
    return service_url(name, namespace, port, url_path)


def read_rule(check: Check, raw: object, path: str, *, named: bool = False) -> Rule | None:
    """A RuleWithOperations (named: a NamedRuleWithOperations, with resourceNames) at path,
    checked as kube's validateRule."""
    causes = check.causes
    if not isinstance(raw, Mapping):
        causes.append(field_invalid(path, raw, "must be an object"))
        return None
    known = ("operations", "apiGroups", "apiVersions", "resources", "scope")
    check.unknown(raw, path, (*known, "resourceNames") if named else known)
    operations = check.strings(raw, "operations", _at(path, "operations"))
    if not operations:
        causes.append(field_required(_at(path, "operations")))
    if len(operations) > 1 and "*" in operations:
        causes.append(field_invalid(_at(path, "operations"), operations,
                                    "if '*' is present, must not specify other operations"))
    for i, operation in enumerate(operations):
        if operation not in OPERATIONS:
            causes.append(field_not_supported(f"{_at(path, 'operations')}[{i}]", operation,
                                              OPERATIONS))
    groups = check.strings(raw, "apiGroups", _at(path, "apiGroups"))
    if not groups:
        causes.append(field_required(_at(path, "apiGroups")))
    if len(groups) > 1 and "*" in groups:
        causes.append(field_invalid(_at(path, "apiGroups"), groups,
                                    "if '*' is present, must not specify other API groups"))
    versions = check.strings(raw, "apiVersions", _at(path, "apiVersions"))
    if not versions:
        causes.append(field_required(_at(path, "apiVersions")))
    if len(versions) > 1 and "*" in versions:
        causes.append(field_invalid(_at(path, "apiVersions"), versions,
                                    "if '*' is present, must not specify other API versions"))
    for i, version in enumerate(versions):
        if not version:
            causes.append(field_required(f"{_at(path, 'apiVersions')}[{i}]"))
    resources = check.strings(raw, "resources", _at(path, "resources"))
    _check_resources(resources, _at(path, "resources"), causes)
    scope = check.choice(raw, "scope", _at(path, "scope"), SCOPES, "*")
    names = check.strings(raw, "resourceNames", _at(path, "resourceNames")) if named else []
    for i, name in enumerate(names):  # cf. validateNamedRuleWithOperations
        at = f"{_at(path, 'resourceNames')}[{i}]"
        for problem in path_segment_problems(name):
            causes.append(field_invalid(at, name, problem))
        if name in names[:i]:
            causes.append(field_duplicate(at, name))
    return Rule(tuple(operations), tuple(groups), tuple(versions), tuple(resources), scope,
                tuple(names))


def path_segment_problems(name: str) -> list[str]:
    """cf. apimachinery's path.ValidatePathSegmentName."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


def _check_resources(resources: Sequence[str], path: str, causes: list[Cause]) -> None:
    """kube's validateResources: the wildcards may not overlap."""
    if not resources:
        causes.append(field_required(path))
    with_wildcard_sub: set[str] = set()
    sub_with_wildcard_res: set[str] = set()
    plain = False
    for i, res_sub in enumerate(resources):
        if not res_sub:
            causes.append(field_required(f"{path}[{i}]"))
            continue
        res, slash, sub = res_sub.partition("/")
        if not slash:
            plain = plain or res_sub != "*"
            continue
        if res in with_wildcard_sub:
            causes.append(field_invalid(f"{path}[{i}]", res_sub,
                                        f"if '{res}/*' is present, must not specify {res_sub}"))
        if sub in sub_with_wildcard_res:
            causes.append(field_invalid(f"{path}[{i}]", res_sub,
                                        f"if '*/{sub}' is present, must not specify {res_sub}"))
        if sub == "*":
            with_wildcard_sub.add(res)
        if res == "*":
            sub_with_wildcard_res.add(sub)
    if len(resources) > 1 and "*/*" in resources:
        causes.append(field_invalid(path, list(resources),
                                    "if '*/*' is present, must not specify other resources"))
    if "*" in resources and plain:
        causes.append(field_invalid(path, list(resources), "if '*' is present, must not specify "
                                    "other resources without subresources"))


def _review_versions(check: Check, item: Mapping[str, Any], path: str) -> tuple[str, ...]:
    causes = check.causes
    versions = check.strings(item, "admissionReviewVersions", path)
    if not versions:
        causes.append(field_required(path, "must specify one of " + ", ".join(REVIEW_VERSIONS)))
        return ()
    seen: set[str] = set()
    for i, version in enumerate(versions):
        if version in seen:
            causes.append(field_invalid(f"{path}[{i}]", version, "duplicate version"))
        seen.add(version)
        for problem in meta.is_dns1035_label(version):
            causes.append(field_invalid(f"{path}[{i}]", version, problem))
    if "v1" not in versions:
        causes.append(field_invalid(path, versions, "must include v1: kext sends "
                                    "AdmissionReview admission.k8s.io/v1 only"))
    return tuple(versions)


def read_match_conditions(check: Check, item: Mapping[str, Any], path: str, *,
                          compile_here: bool = True) -> tuple[MatchCondition, ...]:
    """The matchConditions of item (cf. validateMatchConditions); compile_here: whether
    they must compile as a webhook's (an admission policy's compile with its own
    variables, elsewhere)."""
    causes = check.causes
    raw = check.items(item, "matchConditions", path)
    if len(raw) > MAX_MATCH_CONDITIONS:
        causes.append(field_too_many(path, len(raw), MAX_MATCH_CONDITIONS))
    conditions: list[MatchCondition] = []
    names: set[str] = set()
    for i, condition in enumerate(raw):
        at = f"{path}[{i}]"
        if not isinstance(condition, Mapping):
            causes.append(field_invalid(at, condition, "must be an object"))
            continue
        check.unknown(condition, at, ("name", "expression"))
        name = check.string(condition, "name", _at(at, "name"))
        if not name:
            causes.append(field_required(_at(at, "name")))
        else:
            for problem in meta.is_qualified_name(name):
                causes.append(field_invalid(_at(at, "name"), name, problem))
            if name in names:
                causes.append(field_duplicate(_at(at, "name"), name))
            names.add(name)
        expression = check.string(condition, "expression", _at(at, "expression"))
        if not expression.strip():
            causes.append(field_required(_at(at, "expression")))
        elif check.strict and compile_here:  # from a cluster: the failure policy decides
            problem = _compile_problem(expression)
            if problem:
                causes.append(field_invalid(_at(at, "expression"), expression, problem))
        conditions.append(MatchCondition(name, expression))
    return tuple(conditions)


def _compile_problem(expression: str) -> str:
    """Why a matchCondition does not compile, as kube says it (kext.cel, imported only for
    webhooks that have conditions)."""
    return MatchConditions().compile_problem(expression)


def _at(path: str, child: str) -> str:
    return f"{path}.{child}" if path else child


class Check:
    """Reads typed fields of a decoded manifest, recording a cause for each bad one (shared
    with the admission policies' definitions)."""

    def __init__(self, causes: list[Cause], strict: bool = True) -> None:
        self.causes = causes
        self.strict = strict

    def unknown(self, item: Mapping[str, Any], path: str, known: Sequence[str]) -> None:
        if not self.strict:
            return
        for key in item:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self.causes.append(Cause("FieldValueNotSupported", f"unknown field{hint}",
                                         _at(path, str(key))))

    def string(self, item: Mapping[str, Any], key: str, path: str) -> str:
        value = item.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.causes.append(field_invalid(path, value, "must be a string"))
            return ""
        return value

    def choice(self, item: Mapping[str, Any], key: str, path: str, choices: Sequence[str],
               default: str) -> str:
        value = item.get(key)
        if value is None:
            return default
        if value not in choices:
            self.causes.append(field_not_supported(path, value, tuple(choices)))
            return default
        return str(value)

    def items(self, item: Mapping[str, Any], key: str, path: str) -> list[Any]:
        value = item.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.causes.append(field_invalid(path, value, "must be a list"))
            return []
        return value

    def strings(self, item: Mapping[str, Any], key: str, path: str) -> list[str]:
        out = []
        for i, value in enumerate(self.items(item, key, path)):
            if isinstance(value, str):
                out.append(value)
            else:
                self.causes.append(field_invalid(f"{path}[{i}]", value, "must be a string"))
        return out

    def mapping(self, item: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = item.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.causes.append(field_invalid(path, value, "must be an object"))
            return {}
        return value


@dataclass(frozen=True)
class Invocation:
    """A webhook to call, and the resource and kind it matched (on an equivalent match, the
    version the object is converted to for it)."""

    webhook: Webhook
    resource: GroupVersionResource
    subresource: str
    kind: GroupVersionKind
