"""ValidatingAdmissionPolicies: their definitions as configuration, matching, evaluation,
and kube's answers through the whole handler tree in memory (params from kext's own
Gadgets and Widgets)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from kext.admission.attributes import (
    Attributes,
    GroupVersionKind,
    GroupVersionResource,
    Operation,
)
from kext.admission.interfaces import ObjectInterfaces
from kext.admission.policy.definition import (
    MatchResources,
    binding_from_manifest,
    policy_from_manifest,
)
from kext.admission.policy.dispatcher import ValidatingAdmissionPolicies
from kext.admission.policy.matching import MatchError, matches
from kext.admission.policy.params import NoParams
from kext.admission.policy.source import StaticPolicies
from kext.admission.policy.validator import CompiledPolicy
from kext.admission.webhook.definition import Check
from kext.admission.webhook.matching import ImpliedNamespaces
from kext.api.errors import Cause, StatusError
from kext.auth.user import UserInfo
from kext.config import ConfigError, ServerConfig, parse_config
from kext.server.request import Response
from tests.registry.objects import widget
from tests.server.inmemory import GADGETS, WIDGETS, InMemoryServer, body
from tests.server.test_handlers import status

ADMISSION = "admissionregistration.k8s.io/v1"
GROUP = "example.kext.io"
WIDGET_RULES = [{"operations": ["CREATE", "UPDATE"], "apiGroups": [GROUP],
                 "apiVersions": ["*"], "resources": ["widgets"]}]


def policy(name: str = "small", **spec: Any) -> dict[str, Any]:
    spec.setdefault("matchConstraints", {"resourceRules": WIDGET_RULES})
    spec.setdefault("validations", [{"expression": "object.spec.size < 10"}])
    return {"apiVersion": ADMISSION, "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name}, "spec": spec}


def binding(name: str = "small-binding", policy_name: str = "small",
            actions: tuple[str, ...] = ("Deny",), **spec: Any) -> dict[str, Any]:
    return {"apiVersion": ADMISSION, "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {"policyName": policy_name, "validationActions": list(actions), **spec}}


def config_problems(*manifests: dict[str, Any]) -> list[str]:
    try:
        parse_config({"apiVersion": "kext.io/v1alpha1", "kind": "ServerConfig",
                      "admission": {"configurations": [{"inline": m} for m in manifests]}})
    except ConfigError as error:
        return error.problems
    return []


def compiled(**spec: Any) -> CompiledPolicy:
    causes: list[Cause] = []
    parsed = policy_from_manifest(policy(**spec), causes)
    assert parsed is not None, causes
    return CompiledPolicy(parsed)


def attributes(obj: dict[str, Any] | None = None, *, operation: Operation = "CREATE",
               namespace: str = "ns", name: str = "w", old: dict[str, Any] | None = None,
               resource: str = "widgets", version: str = "v1alpha1") -> Attributes:
    kind = "Widget" if resource == "widgets" else "Gadget"
    return Attributes(operation=operation, kind=GroupVersionKind(GROUP, version, kind),
                      resource=GroupVersionResource(GROUP, version, resource), name=name,
                      namespace=namespace, object=obj, old_object=old,
                      user=UserInfo("alice", groups=("devs",)))


# -- definitions, as configuration


def test_good_policies_and_bindings_load_and_compile_once() -> None:
    parsed = parse_config({"apiVersion": "kext.io/v1alpha1", "kind": "ServerConfig",
                           "admission": {"configurations": [
                               {"inline": policy()}, {"inline": binding()}]}})
    [loaded] = parsed.admission.policies
    assert loaded.policy.name == "small" and loaded.policy.failure_policy == "Fail"
    assert loaded.policy.match_constraints.match_policy == "Equivalent"
    [bound] = parsed.admission.bindings
    assert (bound.policy_name, bound.validation_actions) == ("small", ("Deny",))


def test_a_bad_policy_is_a_configuration_problem_naming_its_field(tmp_path: Path) -> None:
    file = tmp_path / "policies.yaml"
    file.write_text(json.dumps(policy(validations=[
        {"expression": "object.spec.size <", "reason": "Teapot"}])))
    try:
        parse_config({"apiVersion": "kext.io/v1alpha1", "kind": "ServerConfig",
                      "admission": {"configurations": [{"file": str(file)}]}})
    except ConfigError as error:
        problems = error.problems
    where = f"admission.configurations[0] ({file})"
    assert problems[0] == (f'{where}: spec.validations[0].reason: Unsupported value: "Teapot": '
                           'supported values: "Forbidden", "Invalid", "RequestEntityTooLarge", '
                           '"Unauthorized"')
    assert len(problems) == 1  # a policy with problems is not compiled
    file.write_text(json.dumps(policy(validations=[{"expression": "object.spec.size <"}])))
    try:
        parse_config({"apiVersion": "kext.io/v1alpha1", "kind": "ServerConfig",
                      "admission": {"configurations": [{"file": str(file)}]}})
    except ConfigError as error:
        problems = error.problems
    assert problems[0].startswith(
        f'{where}: spec.validations[0].expression: Invalid value: "object.spec.size <": '
        "compilation failed: ERROR: <input>:1:19: Syntax error:")


def test_what_kubes_api_validation_refuses_kext_refuses() -> None:
    where = "admission.configurations[0].inline"
    assert config_problems(policy(matchConstraints=None)) == [
        f"{where}.spec.matchConstraints: Required value"]
    assert config_problems(policy(validations=[])) == [
        f"{where}.spec.validations: Required value: validations or auditAnnotations must "
        "contain at least one item",
        f"{where}.spec.auditAnnotations: Required value: validations or auditAnnotations must "
        "contain at least one item"]
    assert config_problems(policy(variables=[{"name": "a-b", "expression": "1"}])) == [
        f'{where}.spec.variables[0].name: Invalid value: "a-b": name is not a valid CEL '
        "identifier"]
    assert config_problems(policy(validations=[{"expression": "params.max > 1"}])) == [
        f"{where}.spec.validations[0].expression: Invalid value: \"params.max > 1\": "
        "compilation failed: ERROR: <input>:1:7: undeclared reference to 'params.max' "
        "(in container '')\n | params.max > 1\n | ......^"]
    [typo] = config_problems(policy(validations=[{"expression": "request.usrInfo != null"}]))
    assert typo.startswith(f'{where}.spec.validations[0].expression: Invalid value: "request.'
                           "usrInfo != null\": compilation failed: ERROR: <input>:1:8: "
                           "undefined field 'usrInfo'")
    assert config_problems(policy(), binding(actions=("Deny", "Warn"))) == [
        "admission.configurations[1].inline.spec.validationActions: Invalid value: "
        '["Deny","Warn"]: must not contain both Deny and Warn (repeating the same validation '
        "failure information in the API response and headers serves no purpose)"]
    assert config_problems(policy(), binding(paramRef={"name": "a", "selector": {}})) == [
        "admission.configurations[1].inline.spec.paramRef.name: Forbidden: name and selector "
        "are mutually exclusive",
        "admission.configurations[1].inline.spec.paramRef.selector: Forbidden: name and "
        "selector are mutually exclusive",
        "admission.configurations[1].inline.spec.paramRef.parameterNotFoundAction: Required "
        "value"]
    assert config_problems(policy(paramKind={"apiVersion": "example.kext.io/", "kind": "A b"},
                                  validations=[{"expression": "true",
                                                "messageExpression": " "}])) == [
        f'{where}.spec.paramKind.apiVersion: Invalid value: "example.kext.io/": version must '
        "be specified",
        f'{where}.spec.paramKind.kind: Invalid value: "A b": may have mixed case, but should '
        "otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters "
        "or '-', start with an alphabetic character, and end with an alphanumeric character "
        "(e.g. 'my-name',  or 'abc-123', regex used for validation is "
        "'[a-z]([-a-z0-9]*[a-z0-9])?')",
        f'{where}.spec.validations[0].messageExpression: Invalid value: " ": must be non-empty '
        "if specified"]
    [key] = config_problems(policy(auditAnnotations=[{"key": "a b", "valueExpression": "'x'"}]))
    assert key.startswith(f'{where}.spec.auditAnnotations[0].key: Invalid value: "small/a b": ')
    assert config_problems(binding(policy_name="nowhere")) == [
        f"{where}.spec.policyName: no ValidatingAdmissionPolicy 'nowhere' in "
        "admission.configurations"]


def test_a_variable_may_read_only_the_variables_before_it() -> None:
    problems = config_problems(policy(variables=[
        {"name": "a", "expression": "variables.b"}, {"name": "b", "expression": "1"}]))
    assert len(problems) == 1
    assert problems[0].startswith(
        "admission.configurations[0].inline.spec.variables[0].expression: Invalid value: "
        "\"variables.b\": compilation failed: ERROR: <input>:1:10: undefined field 'b'")


# -- matching


def constraints(**fields: Any) -> MatchResources:
    causes: list[Cause] = []
    from kext.admission.policy.definition import match_resources

    found = match_resources(Check(causes), fields, "m")
    assert causes == []
    return found


EQUIVALENTS = ((GroupVersionResource(GROUP, "v1", "widgets"),
                GroupVersionKind(GROUP, "v1", "Widget")),
               (GroupVersionResource(GROUP, "v1alpha1", "widgets"),
                GroupVersionKind(GROUP, "v1alpha1", "Widget")))


@pytest.mark.asyncio
async def test_matching_by_rules_names_exclusions_selectors_and_match_policy() -> None:
    namespaces = ImpliedNamespaces()
    request = attributes({"metadata": {"name": "w", "labels": {"tier": "gold"}}})
    assert await matches(constraints(resourceRules=WIDGET_RULES), request, (),
                         namespaces) == (request.resource, request.kind)
    named = [{**WIDGET_RULES[0], "resourceNames": ["other"]}]
    assert await matches(constraints(resourceRules=named), request, (), namespaces) is None
    assert await matches(constraints(resourceRules=WIDGET_RULES,
                                     excludeResourceRules=WIDGET_RULES), request, (),
                         namespaces) is None
    assert await matches(constraints(resourceRules=WIDGET_RULES,
                                     objectSelector={"matchLabels": {"tier": "silver"}}),
                         request, (), namespaces) is None
    by_name = {"matchLabels": {"kubernetes.io/metadata.name": "ns"}}
    assert await matches(constraints(resourceRules=WIDGET_RULES, namespaceSelector=by_name),
                         request, (), namespaces) is not None
    v1_only = [{**WIDGET_RULES[0], "apiVersions": ["v1"]}]
    assert await matches(constraints(resourceRules=v1_only, matchPolicy="Exact"), request,
                         EQUIVALENTS, namespaces) is None
    assert await matches(constraints(resourceRules=v1_only), request, EQUIVALENTS,
                         namespaces) == EQUIVALENTS[0]
    # a binding's matchResources without rules: every resource its selectors take
    assert await matches(constraints(), request, (), namespaces) is not None


@pytest.mark.asyncio
async def test_a_namespace_that_cannot_be_found_is_a_matching_error() -> None:
    class Nowhere:
        async def labels(self, namespace: str) -> None:
            return None

    selector = {"matchLabels": {"team": "a"}}
    with pytest.raises(MatchError, match='namespaces "ns" not found'):
        await matches(constraints(resourceRules=WIDGET_RULES, namespaceSelector=selector),
                      attributes({}), (), Nowhere())
    # ...but only once the rules match (kube's order)
    gadgets = [{**WIDGET_RULES[0], "resources": ["gadgets"]}]
    assert await matches(constraints(resourceRules=gadgets, namespaceSelector=selector),
                         attributes({}), (), Nowhere()) is None


# -- evaluation


def test_a_denial_takes_its_message_from_the_message_expression_then_message() -> None:
    policy_ = compiled(validations=[
        {"expression": "object.spec.size < 10", "reason": "Forbidden",
         "messageExpression": "'size ' + string(object.spec.size) + ' is too big'"},
        {"expression": "object.spec.size < 5", "message": "  under five  ",
         "messageExpression": "object.spec.size"},  # not a string at run time: the message
        {"expression": " object.spec.size < 3 "},
        {"expression": "object.spec.size > 0"}])
    result = policy_.validate({"object": {"spec": {"size": 12}}})
    assert [(d.action, d.message, d.reason) for d in result.decisions] == [
        ("deny", "size 12 is too big", "Forbidden"),
        ("deny", "under five", "Invalid"),
        ("deny", "failed expression: object.spec.size < 3", "Invalid"),
        ("admit", "", ""),
    ]


def test_variables_are_lazy_and_a_failing_one_fails_only_its_readers() -> None:
    policy_ = compiled(variables=[{"name": "size", "expression": "object.spec.size"},
                                  {"name": "broken", "expression": "object.spec.nothing"},
                                  {"name": "big", "expression": "variables.size > 9"}],
                       validations=[{"expression": "!variables.big"},
                                    {"expression": "variables.broken == 1"},
                                    {"expression": "true || variables.broken == 1"}])
    result = policy_.validate({"object": {"spec": {"size": 12}}})
    assert [(d.action, d.evaluation, d.message) for d in result.decisions] == [
        ("deny", "deny", "failed expression: !variables.big"),
        ("deny", "error", "expression 'variables.broken == 1' resulted in error: composited "
                          'variable "broken" fails to evaluate: no such key: nothing'),
        ("admit", "admit", ""),
    ]


def test_failure_policy_ignore_admits_what_cannot_be_evaluated() -> None:
    for failure_policy, action in (("Fail", "deny"), ("Ignore", "admit")):
        policy_ = compiled(failurePolicy=failure_policy,
                           validations=[{"expression": "object.spec.size / 0 == 1"}])
        [decision] = policy_.validate({"object": {"spec": {"size": 1}}}).decisions
        assert (decision.action, decision.evaluation) == (action, "error")
        assert decision.message == ("expression 'object.spec.size / 0 == 1' resulted in error: "
                                    "division by zero")


def test_match_conditions_decide_whether_the_validations_run() -> None:
    policy_ = compiled(matchConditions=[
        {"name": "not-dry", "expression": "request.dryRun == false"},
        {"name": "by-alice", "expression": "request.userInfo.username == 'alice'"}])
    denied = {"object": {"spec": {"size": 12}},
              "request": {"dryRun": False, "userInfo": {"username": "alice"}}}
    assert [d.action for d in policy_.validate(denied).decisions] == ["deny"]
    by_bob = {**denied, "request": {"dryRun": False, "userInfo": {"username": "bob"}}}
    assert policy_.validate(by_bob).decisions == []
    broken = compiled(matchConditions=[{"name": "n", "expression": "object.nope == 1"}])
    [decision] = broken.validate(denied).decisions
    assert decision.message == ("expression 'object.nope == 1' resulted in error: no such "
                                "key: nope")


def test_audit_annotations_publish_strings_and_leave_out_nulls() -> None:
    policy_ = compiled(validations=[], auditAnnotations=[
        {"key": "size", "valueExpression": "'size is ' + string(object.spec.size)"},
        {"key": "none", "valueExpression": "null"},
        {"key": "number", "valueExpression": "object.spec.size"}])
    result = policy_.validate({"object": {"spec": {"size": 3}}})
    assert [(a.key, a.action, a.value or a.error) for a in result.audit_annotations] == [
        ("size", "publish", "size is 3"), ("none", "exclude", ""),
        ("number", "error", "valueExpression 'object.spec.size' resulted in unsupported "
                            "return type: int. Return type must be either string or null.")]


# -- the plugin


def plugin(*manifests: dict[str, Any]) -> ValidatingAdmissionPolicies:
    causes: list[Cause] = []
    policies = [CompiledPolicy(p) for m in manifests if m["kind"].endswith("Policy")
                if (p := policy_from_manifest(m, causes)) is not None]
    bindings = [b for m in manifests if m["kind"].endswith("Binding")
                if (b := binding_from_manifest(m, causes)) is not None]
    assert causes == []
    return ValidatingAdmissionPolicies(StaticPolicies(policies, bindings), ObjectInterfaces(),
                                       ImpliedNamespaces(), NoParams())


@pytest.mark.asyncio
async def test_validation_actions_deny_warn_and_audit() -> None:
    audited = plugin(policy(), binding(actions=("Warn", "Audit")))
    request = attributes({"metadata": {"name": "w"}, "spec": {"size": 12}})
    await audited.validate(request)
    assert list(request.warnings) == [
        "Validation failed for ValidatingAdmissionPolicy 'small' with binding 'small-binding': "
        "failed expression: object.spec.size < 10"]
    assert json.loads(request.annotations[
        "validation.policy.admission.k8s.io/validation_failure"]) == [{
            "message": "failed expression: object.spec.size < 10", "policy": "small",
            "binding": "small-binding", "expressionIndex": 0,
            "validationActions": ["Warn", "Audit"]}]
    with pytest.raises(StatusError) as denied:
        await plugin(policy(), binding()).validate(request)
    assert denied.value.status() == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'widgets.example.kext.io "w" is forbidden: ValidatingAdmissionPolicy '
                   "'small' with binding 'small-binding' denied request: failed expression: "
                   "object.spec.size < 10",
        "reason": "Invalid", "code": 422,
        "details": {"name": "w", "group": GROUP, "kind": "widgets", "causes": [{
            "message": "ValidatingAdmissionPolicy 'small' with binding 'small-binding' denied "
                       "request: failed expression: object.spec.size < 10"}]}}
    await plugin(policy(), binding()).validate(attributes({"spec": {"size": 1}}))


@pytest.mark.asyncio
async def test_each_reason_answers_with_its_code() -> None:
    for reason, code in (("Forbidden", 403), ("Unauthorized", 401),
                         ("RequestEntityTooLarge", 413), ("Invalid", 422)):
        refusing = plugin(policy(validations=[{"expression": "false", "reason": reason}]),
                          binding())
        with pytest.raises(StatusError) as denied:
            await refusing.validate(attributes({"spec": {}}, name=""))
        assert (denied.value.code, denied.value.reason) == (code, reason)
        assert denied.value.message.startswith('widgets.example.kext.io "Unknown" is forbidden')


@pytest.mark.asyncio
async def test_a_policy_publishes_its_audit_annotations_under_its_name() -> None:
    annotating = plugin(policy(auditAnnotations=[
        {"key": "size", "valueExpression": "string(object.spec.size)"}]), binding(),
        binding("second-binding"))
    request = attributes({"spec": {"size": 1}})
    await annotating.validate(request)
    assert request.annotations == {"small/size": "1"}  # one value, though two bindings


@pytest.mark.asyncio
async def test_a_param_kind_kext_does_not_serve_fails_the_policy() -> None:
    needing = plugin(policy(paramKind={"apiVersion": "example.kext.io/v1", "kind": "Limit"},
                            validations=[{"expression": "object.spec.size < params.max"}]),
                     binding(paramRef={"name": "l", "parameterNotFoundAction": "Deny"}))
    with pytest.raises(StatusError) as denied:
        await needing.validate(attributes({"spec": {"size": 1}}))
    assert denied.value.message.endswith(
        "ValidatingAdmissionPolicy 'small' denied request: failed to configure policy: failed "
        "to find resource referenced by paramKind: 'example.kext.io/v1, Kind=Limit'")
    assert denied.value.code == 422
    config_maps = plugin(policy(paramKind={"apiVersion": "v1", "kind": "ConfigMap"}),
                         binding(paramRef={"name": "c", "parameterNotFoundAction": "Allow"}))
    with pytest.raises(StatusError) as denied:
        await config_maps.validate(attributes({"spec": {"size": 1}}))
    assert denied.value.message.endswith("paramKind: '/v1, Kind=ConfigMap'")


# -- through the server, params from kext's own resources

LIMITED = policy("limited", paramKind={"apiVersion": f"{GROUP}/v1alpha1", "kind": "Gadget"},
                 validations=[{
                     "expression": "object.spec.size <= params.spec.replicas",
                     "messageExpression": "'size must be at most ' + "
                                          "string(params.spec.replicas)",
                     "reason": "Forbidden"}])


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[InMemoryServer]:
    manifests = [
        policy(), binding(matchResources={"objectSelector": {"matchLabels": {"policy": "deny"}}}),
        binding("warned", actions=("Warn",),
                matchResources={"objectSelector": {"matchLabels": {"policy": "warn"}}}),
        LIMITED,
        binding("by-name", "limited", paramRef={"name": "limits",
                                                "parameterNotFoundAction": "Deny"},
                matchResources={"objectSelector": {"matchLabels": {"policy": "by-name"}}}),
        binding("by-selector", "limited", paramRef={
            "selector": {"matchLabels": {"limits": "yes"}}, "parameterNotFoundAction": "Allow"},
            matchResources={"objectSelector": {"matchLabels": {"policy": "by-selector"}}}),
    ]
    admission = parse_config({"apiVersion": "kext.io/v1alpha1", "kind": "ServerConfig",
                              "admission": {"configurations": [{"inline": m}
                                                               for m in manifests]}}).admission

    def configure(options: ServerConfig, tmp: Path) -> None:
        options.admission = admission

    started = await InMemoryServer.start(tmp_path, configure=configure)
    yield started
    await started.stop()


def gadget(name: str, replicas: int, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1alpha1", "kind": "Gadget",
            "metadata": {"name": name, "labels": labels or {}}, "spec": {"replicas": replicas}}


@pytest.mark.asyncio
async def test_deny_and_warn_on_the_wire(server: InMemoryServer) -> None:
    refused = await server.request("POST", WIDGETS, widget("big", labels={"policy": "deny"},
                                                           size=12))
    denial = status(refused, 422, "Invalid")
    assert denial["message"] == (
        'widgets.example.kext.io "big" is forbidden: ValidatingAdmissionPolicy \'small\' with '
        "binding 'small-binding' denied request: failed expression: object.spec.size < 10")
    warned = await server.request("POST", WIDGETS, widget("big", labels={"policy": "warn"},
                                                          size=12))
    assert warned.code == 201
    assert [v for k, v in warned.headers if k == "Warning"] == [
        '299 - "Validation failed for ValidatingAdmissionPolicy \'small\' with binding '
        "'warned': failed expression: object.spec.size < 10\""]
    assert body(warned)["metadata"]["name"] == "big"
    scraped = await server.request("GET", "/metrics")
    assert isinstance(scraped, Response)
    metrics = scraped.body.decode()
    for binding_name, action in (("small-binding", "deny"), ("warned", "warn")):
        assert ('apiserver_validating_admission_policy_check_total{enforcement_action='
                f'"{action}",error_type="invalid_error",policy="small",policy_binding='
                f'"{binding_name}"}} 1.0') in metrics


@pytest.mark.asyncio
async def test_params_by_name_and_by_selector_from_kexts_own_resources(
        server: InMemoryServer) -> None:
    by_name = widget("a", labels={"policy": "by-name"}, size=4)
    missing = status(await server.request("POST", WIDGETS, by_name), 422, "Invalid")
    assert missing["message"].endswith(
        "ValidatingAdmissionPolicy 'limited' with binding 'by-name' denied request: failed to "
        "configure binding: no params found for policy binding with `Deny` "
        "parameterNotFoundAction")
    assert (await server.request("POST", GADGETS, gadget("limits", 3))).code == 201
    too_big = status(await server.request("POST", WIDGETS, by_name), 403, "Forbidden")
    assert too_big["message"].endswith("denied request: size must be at most 3")
    assert (await server.request("POST", WIDGETS, {**by_name, "spec": {"size": 3}})).code == 201

    by_selector = widget("b", labels={"policy": "by-selector"}, size=4)
    # none selected, and parameterNotFoundAction Allow: nothing to validate
    assert (await server.request("POST", WIDGETS, by_selector)).code == 201
    for name, replicas in (("five", 5), ("two", 2)):
        created = await server.request("POST", GADGETS, gadget(name, replicas, {"limits": "yes"}))
        assert created.code == 201
    # every selected param is validated against
    refused = status(await server.request("POST", WIDGETS, {**by_selector, "metadata": {
        "name": "c", "labels": {"policy": "by-selector"}}}), 403, "Forbidden")
    assert refused["message"].endswith("denied request: size must be at most 2")


@pytest.mark.asyncio
async def test_the_readmes_example_denies_in_prod_and_warns_elsewhere(tmp_path: Path) -> None:
    from tests.kext_process import REPO

    example = str(REPO / "examples/widget-policies.yaml")
    admission = parse_config({"apiVersion": "kext.io/v1alpha1", "kind": "ServerConfig",
                              "admission": {"configurations": [{"file": example}]}}).admission

    def configure(options: ServerConfig, tmp: Path) -> None:
        options.admission = admission

    server = await InMemoryServer.start(tmp_path, configure=configure)
    try:
        prod = WIDGETS.replace("/namespaces/ns/", "/namespaces/prod/")
        refused = status(await server.request("POST", prod, widget("red", color="red", size=4)),
                         403, "Forbidden")
        assert refused["message"] == (
            'widgets.example.kext.io "red" is forbidden: ValidatingAdmissionPolicy '
            "'widget-size' with binding 'widget-size-prod' denied request: red widgets are at "
            "most size 3")
        big = status(await server.request("POST", prod, widget("big", size=11)), 422,
                     "Invalid")
        assert big["message"].endswith("denied request: size 11 is over 10")
        warned = await server.request("POST", WIDGETS, widget("big", size=11))
        assert warned.code == 201
        assert [v for k, v in warned.headers if k == "Warning"] == [
            "299 - \"Validation failed for ValidatingAdmissionPolicy 'widget-size' with binding "
            "'widget-size-elsewhere': size 11 is over 10\""]
    finally:
        await server.stop()


def test_kubes_cost_limits_stop_expensive_expressions() -> None:
    squared = "object.spec.items.all(x, object.spec.items.all(y, x == y || true))"
    cubed = f"object.spec.items.all(z, {squared})"
    items = {"object": {"spec": {"items": list(range(400))}}}
    [decision] = compiled(validations=[{"expression": cubed}]).validate(items).decisions
    assert (decision.action, decision.message) == (
        "deny", f"expression '{cubed}' resulted in error: operation cancelled: actual cost "
                "limit exceeded")
    many = compiled(validations=[{"expression": "!object.spec.text.contains('needle')"}] * 60)
    small = many.validate({"object": {"spec": {"text": "hay"}}})
    assert {d.action for d in small.decisions} == {"admit"}
    [spent] = many.validate({"object": {"spec": {"text": "hay" * 700_000}}}).decisions
    assert (spent.action, spent.message) == (
        "deny", "validation failed due to running out of cost budget, no further validation "
                "rules will be run")


def test_the_engines_iteration_limit_is_an_evaluation_error_not_a_crash() -> None:
    policy_ = compiled(validations=[{"expression": "object.spec.items.all(x, x >= 0)"}])
    [decision] = policy_.validate({"object": {"spec": {"items": [1] * 10_000}}}).decisions
    assert decision.evaluation == "error"
    assert decision.message.endswith("resulted in error: Iteration budget exceeded (kext's CEL "
                                     "engine runs at most 10000 comprehension iterations per "
                                     "expression)")


@pytest.mark.asyncio
async def test_an_equivalent_match_sees_the_object_in_the_version_it_matched() -> None:
    async def convert(obj: dict[str, Any], version: str) -> dict[str, Any]:
        return {**obj, "apiVersion": f"{GROUP}/{version}"}

    causes: list[Cause] = []
    v1_only = [{**WIDGET_RULES[0], "apiVersions": ["v1"]}]
    parsed = policy_from_manifest(policy(
        matchConstraints={"resourceRules": v1_only},
        validations=[{"expression": "object.apiVersion == 'example.kext.io/v1' && "
                                    "request.kind.version == 'v1' && "
                                    "request.requestKind.version == 'v1alpha1'"}]), causes)
    assert parsed is not None
    [bound] = [b for b in [binding_from_manifest(binding(), causes)] if b is not None]
    plugin_ = ValidatingAdmissionPolicies(
        StaticPolicies([CompiledPolicy(parsed)], [bound]),
        ObjectInterfaces(EQUIVALENTS, convert=convert), ImpliedNamespaces(), NoParams())
    await plugin_.validate(attributes({"apiVersion": f"{GROUP}/v1alpha1", "spec": {}}))


@pytest.mark.asyncio
async def test_namespace_object_is_the_clusters_namespace_or_null() -> None:
    checks = policy(validations=[{
        "expression": "namespaceObject == null || "
                      "namespaceObject.metadata.labels.team == 'a' && "
                      "!has(namespaceObject.metadata.managedFields)",
        "messageExpression": "'namespace ' + namespaceObject.metadata.name"}])
    without = plugin(checks, binding())
    await without.validate(attributes({"spec": {}}))  # no cluster: null

    class Cluster:
        async def namespace(self, name: str) -> dict[str, Any] | None:
            if name == "gone":
                return None
            return {"metadata": {"name": name, "labels": {"team": "b" if name == "b" else "a"},
                                 "managedFields": [{}]}, "status": {"phase": "Active"}}

    following = ValidatingAdmissionPolicies(without.source, ObjectInterfaces(),
                                            ImpliedNamespaces(), NoParams(), Cluster())
    await following.validate(attributes({"spec": {}}, namespace="a"))
    with pytest.raises(StatusError) as denied:
        await following.validate(attributes({"spec": {}}, namespace="b"))
    assert denied.value.message.endswith("denied request: namespace b")
    with pytest.raises(StatusError) as missing:
        await following.validate(attributes({"spec": {}}, namespace="gone"))
    assert (missing.value.code, missing.value.message) == (404, 'namespaces "gone" not found')


@pytest.mark.asyncio
async def test_a_delete_is_validated_on_the_old_object(tmp_path: Path) -> None:
    protect = policy("protected", matchConstraints={"resourceRules": [{
        **WIDGET_RULES[0], "operations": ["DELETE"]}]}, validations=[{
            "expression": "object == null && "
                          "oldObject.metadata.?labels.protected.orValue('') != 'true'",
            "message": "protected widgets stay", "reason": "Forbidden"}])
    admission = parse_config({"apiVersion": "kext.io/v1alpha1", "kind": "ServerConfig",
                              "admission": {"configurations": [
                                  {"inline": protect},
                                  {"inline": binding(policy_name="protected")}]}}).admission

    def configure(options: ServerConfig, tmp: Path) -> None:
        options.admission = admission

    server = await InMemoryServer.start(tmp_path, configure=configure)
    try:
        for name, labels in (("kept", {"protected": "true"}), ("gone", {})):
            assert (await server.request("POST", WIDGETS, widget(name, labels=labels))
                    ).code == 201
        refused = status(await server.request("DELETE", f"{WIDGETS}/kept"), 403, "Forbidden")
        assert refused["message"] == (
            'widgets.example.kext.io "kept" is forbidden: ValidatingAdmissionPolicy '
            "'protected' with binding 'small-binding' denied request: protected widgets stay")
        assert (await server.request("DELETE", f"{WIDGETS}/gone")).code == 200
        assert (await server.request("GET", f"{WIDGETS}/kept")).code == 200
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_namespaced_params_are_read_in_the_requests_namespace(tmp_path: Path) -> None:
    # a Widget called "limits" in each namespace holds that namespace's largest size
    limited = policy("per-namespace",
                     paramKind={"apiVersion": f"{GROUP}/v1alpha1", "kind": "Widget"},
                     matchConstraints={"resourceRules": [{**WIDGET_RULES[0],
                                                          "resources": ["widgets"]}]},
                     validations=[{"expression": "object.metadata.name == 'limits' || "
                                                 "object.spec.size <= params.spec.size"}])
    per_namespace = binding("per-namespace-binding", "per-namespace", paramRef={
        "name": "limits", "parameterNotFoundAction": "Allow"})
    admission = parse_config({"apiVersion": "kext.io/v1alpha1", "kind": "ServerConfig",
                              "admission": {"configurations": [
                                  {"inline": limited}, {"inline": per_namespace}]}}).admission

    def configure(options: ServerConfig, tmp: Path) -> None:
        options.admission = admission

    server = await InMemoryServer.start(tmp_path, configure=configure)
    try:
        other = WIDGETS.replace("/namespaces/ns/", "/namespaces/other/")
        assert (await server.request("POST", WIDGETS, widget("limits", size=2))).code == 201
        status(await server.request("POST", WIDGETS, widget("big", size=3)), 422, "Invalid")
        # no "limits" in namespace other: Allow, nothing to check
        assert (await server.request("POST", other, widget("big", size=3))).code == 201
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_a_policy_asks_the_servers_authorizer_for_the_requesting_user() -> None:
    """`authorizer` in a policy (kube's example: only those allowed to `approve` widgets
    may create big ones): each check decided by the server's authorizer for the user."""
    from tests.admission.test_authz import Rules

    guarded = policy("big-needs-approval", validations=[{
        "expression": "object.spec.size < 10 || "
                      "authorizer.requestResource.check('approve').allowed()",
        "messageExpression": "'size ' + string(object.spec.size) + ' needs approval'"}])
    causes: list[Cause] = []
    parsed = policy_from_manifest(guarded, causes)
    assert parsed is not None and causes == []
    assert CompiledPolicy(parsed).uses_authorizer

    def with_rules(rules: Rules) -> ValidatingAdmissionPolicies:
        dispatcher = plugin(guarded, binding(policy_name="big-needs-approval"))
        dispatcher.authorizer = rules
        return dispatcher

    big = {"metadata": {"name": "w"}, "spec": {"size": 12}}
    approver = Rules("approve")
    await with_rules(approver).validate(attributes(big))
    [asked] = approver.asked
    assert (asked.user.name, asked.verb, asked.resource, asked.namespace, asked.name) == (
        "alice", "approve", "widgets", "ns", "w")
    with pytest.raises(StatusError) as denied:
        await with_rules(Rules()).validate(attributes(big))
    assert denied.value.message.endswith("denied request: size 12 needs approval")
    nobody = Rules()
    await with_rules(nobody).validate(attributes({"spec": {"size": 1}}))
    assert nobody.asked == []  # a small one needs no check
