# ruff: noqa: E501 - the table of expected problem lines reads best one line each
"""server.yaml loading: every kind of bad configuration gives one line naming the key, and
`kext check` exits 0 or 2 without a traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from kext.config import (
    ConfigError,
    HookConfig,
    ServerConfig,
    load_config,
    parse_config,
    parse_duration,
)

REPO = Path(__file__).resolve().parent.parent
KEXT = Path(sys.executable).parent / "kext"
WIDGETS = "config/resources/widgets.yaml"
GADGETS = "config/resources/gadgets.yaml"
HEADER = "apiVersion: kext.io/v1alpha1\nkind: ServerConfig\n"


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    # Relative paths in a config resolve against the current directory.
    monkeypatch.chdir(REPO)


def _write(tmp_path: Path, body: str, header: str = HEADER) -> str:
    path = tmp_path / "server.yaml"
    path.write_text(header + textwrap.dedent(body))
    return str(path)


def _problems(tmp_path: Path, body: str, header: str = HEADER) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, body, header))
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


# --- good configurations --------------------------------------------------------------------


def test_the_embedded_default_loads() -> None:
    config = load_config("config/server.yaml")
    assert config == ServerConfig(resources=config.resources)  # every other key is a default
    [widgets] = config.resources
    assert widgets.name == "widgets.example.kext.io"
    assert widgets.kind == "Widget" and widgets.namespaced and widgets.short_names == ("wd",)
    version = widgets.storage_version
    assert version.name == "v1alpha1" and version.status_subresource
    assert [c.name for c in version.printer_columns] == ["Size", "Color", "Phase", "Age"]
    assert version.selectable_fields == (".spec.color",)


def test_camel_case_keys_fill_snake_case_fields(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not checked here")
    (tmp_path / "kubeconfig").write_text("")
    config = load_config(
        _write(
            tmp_path,
            f"""
            serving: {{bindAddress: "::", port: 9443, certDir: /tmp/x, requestTimeout: 1m30s,
                      maxRequestsInflight: 10, maxMutatingRequestsInflight: 5}}
            storage:
              prefix: /kext/
              etcd: {{endpoints: ["https://etcd-0:2379", "http://127.0.0.1:2379"]}}
            authentication:
              anonymous: true
              requestHeader: {{clientCAFile: {tmp_path}/ca.pem, allowedNames: [front-proxy]}}
              tokenReview: {{enabled: true, cacheTTL: 2m}}
            authorization: {{mode: Delegated, cacheUnauthorizedTTL: 500ms}}
            kubernetes: {{kubeconfig: {tmp_path}/kubeconfig}}
            admission:
              hooks: [mypkg.hooks:default_widget]
              webhooks:
                - {{name: policy.example.com, url: "https://policy:9443/validate",
                    failurePolicy: Ignore, timeoutSeconds: 5, type: Validating}}
            """,
        )
    )
    assert config.serving.bind_address == "::" and config.serving.port == 9443
    assert config.serving.request_timeout_seconds == 90.0
    assert config.serving.max_requests_inflight == 10
    assert config.storage.prefix == "/kext"
    assert config.storage.etcd.endpoints == ["https://etcd-0:2379", "http://127.0.0.1:2379"]
    assert config.authentication.anonymous is True
    assert config.authentication.request_header.allowed_names == ["front-proxy"]
    assert config.authentication.request_header.username_headers == ["X-Remote-User"]
    assert config.authentication.token_review.cache_ttl_seconds == 120.0
    assert config.authorization.mode == "Delegated"
    assert config.authorization.cache_unauthorized_ttl_seconds == 0.5
    assert config.authorization.cache_authorized_ttl_seconds == 10.0
    assert config.admission.hooks == [HookConfig("mypkg.hooks:default_widget")]
    [webhook] = config.admission.webhooks
    assert (webhook.name, webhook.failure_policy, webhook.timeout_seconds) == (
        "policy.example.com",
        "Ignore",
        5,
    )
    assert config.resources == []


def test_resources_by_file_inline_and_as_a_manifest(tmp_path: Path) -> None:
    gadgets = yaml.safe_load(Path(GADGETS).read_text())
    document: dict[str, object] = {
        "apiVersion": "kext.io/v1alpha1",
        "kind": "ServerConfig",
        "resources": [{"file": WIDGETS}, {"inline": gadgets}],
    }
    config = parse_config(document)
    assert [r.name for r in config.resources] == [
        "widgets.example.kext.io",
        "gadgets.example.kext.io",
    ]
    assert not config.resources[1].namespaced
    document["resources"] = [gadgets]
    assert [r.name for r in parse_config(document).resources] == ["gadgets.example.kext.io"]


def test_a_file_may_hold_several_definitions(tmp_path: Path) -> None:
    both = tmp_path / "both.yaml"
    both.write_text(Path(WIDGETS).read_text() + "\n---\n" + Path(GADGETS).read_text() + "---\n")
    config = load_config(_write(tmp_path, f"resources: [{{file: {both}}}]\n"))
    assert [r.kind for r in config.resources] == ["Widget", "Gadget"]


def test_empty_sections_take_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "serving:\nstorage: {etcd: {endpoints: }}\n"))
    assert config == ServerConfig()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10.0), ("1m", 60.0), ("1h30m", 5400.0), ("500ms", 0.5), ("0", 0.0), ("1.5s", 1.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "s", "1d", "1 m", "m1", "--1s"])
def test_bad_durations(text: str) -> None:
    assert parse_duration(text) is None


# --- one problem, one line ------------------------------------------------------------------

BAD = [
    ("serving: {port: abc}", "serving.port: expected an integer, got 'abc'"),
    ("serving: {port: 70000}", "serving.port: expected an integer between 1 and 65535, got 70000"),
    ("serving: {port: true}", "serving.port: expected an integer, got true"),
    ("serving: {prot: 8443}", "serving.prot: unknown key (did you mean port?)"),
    (
        "serving: {bindAddress: localhost}",
        "serving.bindAddress: expected an IP address like 127.0.0.1 or 0.0.0.0, got 'localhost'",
    ),
    (
        "serving: {certFile: config/server.yaml}",
        "serving.keyFile: required when serving.certFile is set",
    ),
    (
        "serving: {keyFile: config/server.yaml}",
        "serving.certFile: required when serving.keyFile is set",
    ),
    ("serving: [8443]", "serving: expected a mapping, got a list"),
    ("serving: {requestTimeout: 0s}", "serving.requestTimeout: expected a positive duration"),
    (
        "storage: {prefix: registry}",
        "storage.prefix: expected an etcd key prefix like /registry, got 'registry'",
    ),
    (
        "storage: {etcd: {endpoints: [foo]}}",
        "storage.etcd.endpoints[0]: expected a URL like https://host:2379, got 'foo'",
    ),
    (
        "storage: {etcd: {endpoints: ['https://ok:2379', 'https://no-port']}}",
        "storage.etcd.endpoints[1]: expected a URL like https://host:2379, got 'https://no-port'",
    ),
    (
        "storage: {etcd: {endpoints: https://etcd:2379}}",
        "storage.etcd.endpoints: expected a list of strings, got 'https://etcd:2379'",
    ),
    ("storage: {etcd: {caFile: nope/ca.pem}}", "storage.etcd.caFile: no such file: nope/ca.pem"),
    (
        "storage: {embedded: {dataDir: ''}}",
        "storage.embedded.dataDir: required when storage.etcd.endpoints is empty",
    ),
    (
        "storage: {watchCache: {bookmarkInterval: 0s}}",
        "storage.watchCache.bookmarkInterval: expected a positive duration",
    ),
    (
        "storage: {watchCache: {bookmarkInterval: 60}}",
        "storage.watchCache.bookmarkInterval: expected a duration like 10s or 1m, got 60",
    ),
    (
        "authentication: {anonymous: maybe}",
        "authentication.anonymous: expected true or false, got 'maybe'",
    ),
    (
        "authentication: {clientCAFile: nope.pem}",
        "authentication.clientCAFile: no such file: nope.pem",
    ),
    (
        "authentication: {clientCAFile: config}",
        "authentication.clientCAFile: is a directory, expected a file: config",
    ),
    (
        "authentication: {tokenReview: {cacheTTL: 10}}",
        "authentication.tokenReview.cacheTTL: expected a duration like 10s or 1m, got 10",
    ),
    (
        "authentication: {tokenReview: {cacheTTL: ten seconds}}",
        "authentication.tokenReview.cacheTTL: expected a duration like 10s or 1m, got 'ten seconds'",
    ),
    (
        "authentication: {tokenReview: {cacheTTL: -1s}}",
        "authentication.tokenReview.cacheTTL: must not be negative",
    ),
    (
        "authentication: {requestHeader: {allowedNames: [front-proxy-client]}}",
        "authentication.requestHeader.allowedNames: needs authentication.requestHeader.clientCAFile",
    ),
    (
        "authentication: {requestHeader: {usernameHeaders: [X Remote User]}}",
        "authentication.requestHeader.usernameHeaders[0]: expected an HTTP header name, got 'X Remote User'",
    ),
    (
        "authentication: {requestHeader: {clientCAFile: config/server.yaml, usernameHeaders: []}}",
        "authentication.requestHeader.usernameHeaders: required when requestHeader.clientCAFile is set",
    ),
    (
        "authentication: {tokenReview: {enabled: true}}",
        "authentication.tokenReview.enabled: needs kubernetes.kubeconfig or kubernetes.inCluster: true",
    ),
    (
        "authentication: {fromCluster: true}",
        "authentication.fromCluster: needs kubernetes.kubeconfig or kubernetes.inCluster: true",
    ),
    (
        "authorization: {mode: RBAC}",
        "authorization.mode: expected AlwaysAllow or Delegated, got 'RBAC'",
    ),
    (
        "authorization: {mode: Delegated}",
        "authorization.mode: Delegated needs kubernetes.kubeconfig or kubernetes.inCluster: true",
    ),
    (
        "authorization: {alwaysAllowPaths: [healthz]}",
        "authorization.alwaysAllowPaths[0]: expected a path like /healthz or a prefix like /debug/*, got 'healthz'",
    ),
    (
        "authorization: {alwaysAllowGroups: [1]}",
        "authorization.alwaysAllowGroups[0]: expected a string, got 1",
    ),
    (
        "authorization: {cacheAuthorizedTTL: 5 minutes}",
        "authorization.cacheAuthorizedTTL: expected a duration like 10s or 1m, got '5 minutes'",
    ),
    (
        "kubernetes: {kubeconfig: nope/kubeconfig}",
        "kubernetes.kubeconfig: no such file: nope/kubeconfig",
    ),
    ("kubernetes: {inCluster: 1}", "kubernetes.inCluster: expected true or false, got 1"),
    (
        "kubernetes: {kubeconfig: config/server.yaml, inCluster: true}",
        "kubernetes.inCluster: set either kubernetes.kubeconfig or kubernetes.inCluster, not both",
    ),
    (
        "admission: {hooks: [mypkg.hooks]}",
        "admission.hooks[0]: expected \"package.module:callable\", got 'mypkg.hooks'",
    ),
    ("admission: {webhooks: [{url: 'https://w:9443/'}]}", "admission.webhooks[0].name: required"),
    ("admission: {webhooks: [{name: w.example.com}]}", "admission.webhooks[0].url: required"),
    (
        "admission: {webhooks: [hook]}",
        "admission.webhooks[0]: expected a mapping with name and url, got 'hook'",
    ),
    (
        "admission: {webhooks: [{name: w.example.com, url: 'http://w:9443/'}]}",
        "admission.webhooks[0].url: expected an https:// URL like https://host:9443/validate, got 'http://w:9443/'",
    ),
    (
        "admission: {webhooks: [{name: w.example.com, url: 'https://w/', failurePolicy: Retry}]}",
        'admission.webhooks[0].failurePolicy: Unsupported value: "Retry": supported values: "Fail", "Ignore"',
    ),
    (
        "admission: {webhooks: [{name: w.example.com, url: 'https://w/', timeoutSeconds: 31}]}",
        "admission.webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
    ),
    (
        "admission: {webhooks: [{name: w.example.com, url: 'https://w/', type: Both}]}",
        "admission.webhooks[0].type: expected Mutating or Validating, got 'Both'",
    ),
    (
        "admission: {webhooks: [{name: w.example.com, url: 'https://w/', caFile: nope.pem}]}",
        "admission.webhooks[0].caFile: no such file: nope.pem",
    ),
    (
        "admission: {webhooks: [{name: w.example.com, url: 'https://a/'}, {name: w.example.com, url: 'https://b/'}]}",
        "admission.webhooks[1].name: 'w.example.com' is already used by admission.webhooks[0]",
    ),
    (
        "admission: {webhooks: [{name: w.example.com, url: 'https://w/', sideEfects: None}]}",
        "admission.webhooks[0].sideEfects: unknown field (did you mean sideEffects?)",
    ),
    (
        "admission: {webhooks: [{name: w, url: 'https://w/'}]}",
        'admission.webhooks[0].name: Invalid value: "w": should be a domain with at least three segments separated by dots',
    ),
    ("servng: {}", "servng: unknown key (did you mean serving?)"),
    ("resources: {file: x.yaml}", "resources: expected a list, got a mapping"),
    ("resources: [{file: nope.yaml}]", "resources[0].file: no such file: nope.yaml"),
    ("resources: [{file: 3}]", "resources[0].file: expected a file path, got 3"),
    (
        "resources: [{path: x.yaml}]",
        "resources[0]: expected `file: PATH`, `inline: {...}` or a CustomResourceDefinition manifest, got keys path",
    ),
    (
        f"resources: [{{file: {WIDGETS}}}, {{file: {WIDGETS}}}]",
        f"resources[1] ({WIDGETS}): widgets.example.kext.io is already declared by resources[0] ({WIDGETS})",
    ),
]


@pytest.mark.parametrize(("body", "problem"), BAD, ids=[b for b, _ in BAD])
def test_one_bad_key_one_line(tmp_path: Path, body: str, problem: str) -> None:
    assert _problems(tmp_path, body + "\n") == [problem]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """
        serving: {port: abc, prot: 1}
        storage: {etcd: {endpoints: [foo, bar]}}
        authorization: {mode: Nope}
        resources: [{file: nope.yaml}]
        """,
    )
    assert problems == [
        "serving.port: expected an integer, got 'abc'",
        "serving.prot: unknown key (did you mean port?)",
        "storage.etcd.endpoints[0]: expected a URL like https://host:2379, got 'foo'",
        "storage.etcd.endpoints[1]: expected a URL like https://host:2379, got 'bar'",
        "authorization.mode: expected AlwaysAllow or Delegated, got 'Nope'",
        "resources[0].file: no such file: nope.yaml",
    ]


def test_header_must_name_the_config_kind(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "apiVersion: v1\nkind: ConfigMap\n", header="")
    assert problems == [
        "apiVersion: expected kext.io/v1alpha1, got 'v1'",
        "kind: expected ServerConfig, got 'ConfigMap'",
    ]
    assert _problems(tmp_path, "serving: {}\n", header="") == [
        "apiVersion: expected kext.io/v1alpha1, got nothing",
        "kind: expected ServerConfig, got nothing",
    ]


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(str(tmp_path / "nope.yaml"))
    assert caught.value.problems == [f"{tmp_path}/nope.yaml: no such file"]


def test_empty_file(tmp_path: Path) -> None:
    [problem] = _problems(tmp_path, "", header="")
    assert problem.endswith(
        "expected a mapping with apiVersion: kext.io/v1alpha1 and kind: ServerConfig, got nothing"
    )


def test_yaml_syntax_error_is_one_line_with_its_line_number(tmp_path: Path) -> None:
    path = _write(tmp_path, "serving:\n  port: 8443\n   bindAddress: x\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}:5:")
    assert "mapping values are not allowed" in problem


def test_duplicate_keys_are_problems(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "serving:\n  port: 8443\n  port: 9443\nresources:\n- {file: a, file: b}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        f"{path}:5: duplicate key serving.port",
        f"{path}:7: duplicate key resources[0].file",
    ]


def test_yaml_error_in_a_resource_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: apiextensions.k8s.io/v1\nkind: [\n")
    [problem] = _problems(tmp_path, f"resources: [{{file: {bad}}}]\n")
    assert problem.startswith(f"resources[0].file: {bad}:")


def test_a_resource_file_without_documents(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n---\n")
    assert _problems(tmp_path, f"resources: [{{file: {empty}}}]\n") == [
        f"resources[0].file: no CustomResourceDefinition in {empty}"
    ]


def test_bad_definitions_are_reported_where_they_are(tmp_path: Path) -> None:
    crd = yaml.safe_load(Path(WIDGETS).read_text())
    del crd["spec"]["names"]["plural"]
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(crd))
    problems = _problems(tmp_path, f"resources: [{{file: {WIDGETS}}}, {{file: {broken}}}]\n")
    assert problems, "a CRD without names.plural must be rejected"
    assert all(p.startswith(f"resources[1] ({broken}): ") for p in problems), problems
    assert f"resources[1] ({broken}): spec.names.plural: Required value" in problems


def test_bad_inline_definitions_name_the_field() -> None:
    crd = yaml.safe_load(Path(GADGETS).read_text())
    crd["spec"]["scope"] = "Galaxy"
    document: dict[str, object] = {"apiVersion": "kext.io/v1alpha1", "kind": "ServerConfig"}
    for item, where in (({"inline": crd}, "resources[0].inline"), (crd, "resources[0]")):
        document["resources"] = [item]
        with pytest.raises(ConfigError) as caught:
            parse_config(document)
        [problem] = caught.value.problems
        assert problem.startswith(f"{where}.spec.scope: Unsupported value: ")


def test_same_kind_twice_in_a_group(tmp_path: Path) -> None:
    crd = yaml.safe_load(Path(WIDGETS).read_text())
    crd["metadata"]["name"] = "gizmos.example.kext.io"
    crd["spec"]["names"].update(plural="gizmos", singular="gizmo", shortNames=[])
    document: dict[str, object] = {"apiVersion": "kext.io/v1alpha1", "kind": "ServerConfig"}
    document["resources"] = [{"file": WIDGETS}, crd]
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    assert caught.value.problems == [
        "resources[1]: kind Widget in group example.kext.io is already declared by "
        f"resources[0] ({WIDGETS})"
    ]


# --- the command line -----------------------------------------------------------------------


def _kext(*args: str, module: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "kext"] if module else [str(KEXT)]
    return subprocess.run(
        [*command, *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


def test_check_good_config() -> None:
    result = _kext("check", "--config", "config/server.yaml")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "ok: 1 resource (widgets.example.kext.io)\n"


def test_check_defaults_to_the_embedded_config_and_runs_as_a_module() -> None:
    result = _kext("check", module=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 1 resource")


def test_check_counts_every_resource(tmp_path: Path) -> None:
    path = _write(
        tmp_path, f"resources: [{{file: {REPO / WIDGETS}}}, {{file: {REPO / GADGETS}}}]\n"
    )
    result = _kext("--config", path, "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok: 2 resources (widgets.example.kext.io, gadgets.example.kext.io)\n"


def test_check_broken_config_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        serving: {port: abc}
        storage: {etcd: {endpoints: [foo]}}
        authentication: {tokenReview: {cacheTTL: soon}}
        """,
    )
    result = _kext("check", "--config", path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "serving.port: expected an integer, got 'abc'",
        "storage.etcd.endpoints[0]: expected a URL like https://host:2379, got 'foo'",
        "authentication.tokenReview.cacheTTL: expected a duration like 10s or 1m, got 'soon'",
    ]


@pytest.mark.parametrize("command", [["check"], []], ids=["check", "run"])
def test_missing_config_is_one_line_and_exit_2(tmp_path: Path, command: list[str]) -> None:
    result = _kext(*command, "--config", "config/nope.yaml")
    assert result.returncode == 2
    assert result.stderr == "config/nope.yaml: no such file\n"


def test_yaml_error_exits_2_without_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, "serving: {port: [\n")
    result = _kext("check", "--config", path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{path}:")


def test_usage_lists_the_commands() -> None:
    result = _kext("--help")
    assert result.returncode == 0
    assert "check" in result.stdout and "certs" in result.stdout


def test_delegation_to_the_cluster_is_accepted_with_a_way_to_reach_it(tmp_path: Path) -> None:
    """Delegated authorization, TokenReview and fromCluster need only kubernetes.*: kext check
    accepts them (reaching the cluster is start-up's business)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    path = _write(tmp_path, f"kubernetes: {{kubeconfig: {kubeconfig}}}\n"
                            "authorization: {mode: Delegated}\n"
                            "authentication: {fromCluster: true, tokenReview: {enabled: true}}\n")
    result = _kext("check", "--config", path)
    assert (result.returncode, result.stderr) == (0, "")


# --- audit, logging and shutdown ------------------------------------------------------------

AUDIT_POLICY = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Metadata}]\n"

BAD_OPERATIONS = [
    ("audit: {policyFile: nope.yaml, logPath: '-'}", "audit.policyFile: no such file: nope.yaml"),
    ("audit: {policyFile: POLICY}", 'audit.logPath: required when audit.policyFile is set (a file, or "-" for standard output)'),
    ("audit: {logPath: audit.log}", "audit.policyFile: required when audit.logPath is set: the policy decides what is audited"),
    ("audit: {policyFile: POLICY, logPath: LOGDIR}", "audit.logPath: is a directory, expected a file: LOGDIR"),
    ("audit: {policyFile: POLICY, logPath: '-', maxSizeMB: 0}", "audit.maxSizeMB: expected an integer of at least 1, got 0"),
    ("audit: {policyFile: POLICY, logPath: '-', maxBackups: -1}", "audit.maxBackups: expected an integer of at least 0, got -1"),
    ("audit: {policyFile: POLICY, logPath: '-', maxSizeMb: 3}", "audit.maxSizeMb: unknown key (did you mean maxSizeMB?)"),
    ("audit: {policyFile: BADPOLICY, logPath: '-'}", 'audit.policyFile: BADPOLICY: rules[0].level: Unsupported value: "Loud": supported values: "None", "Metadata", "Request", "RequestResponse"'),
    ("logging: {format: xml}", "logging.format: expected text or json, got 'xml'"),
    ("logging: {level: verbose}", "logging.level: expected debug, info, warning or error, got 'verbose'"),
    ("serving: {shutdownDelayDuration: soon}", "serving.shutdownDelayDuration: expected a duration like 10s or 1m, got 'soon'"),
]


@pytest.mark.parametrize(("body", "problem"), BAD_OPERATIONS, ids=[b for b, _ in BAD_OPERATIONS])
def test_a_bad_audit_logging_or_shutdown_key_is_one_line(tmp_path: Path, body: str,
                                                          problem: str) -> None:
    policy, bad = tmp_path / "policy.yaml", tmp_path / "bad-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    bad.write_text(AUDIT_POLICY.replace("Metadata", "Loud"))
    (tmp_path / "logs").mkdir()
    names = {"BADPOLICY": str(bad), "POLICY": str(policy), "LOGDIR": str(tmp_path / "logs")}
    for name, value in names.items():
        body, problem = body.replace(name, value), problem.replace(name, value)
    assert _problems(tmp_path, body + "\n") == [problem]


def test_audit_logging_and_shutdown_keys(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(AUDIT_POLICY)
    config = load_config(_write(tmp_path, f"""\
        serving: {{shutdownDelayDuration: 250ms}}
        audit: {{policyFile: {policy}, logPath: {tmp_path}/audit/audit.log, maxSizeMB: 5,
                 maxBackups: 0}}
        logging: {{format: json, level: debug}}
        """))
    assert config.serving.shutdown_delay_seconds == 0.25
    assert (config.audit.policy_file, config.audit.max_size_mb, config.audit.max_backups) == (
        str(policy), 5, 0)
    assert config.audit.log_path == f"{tmp_path}/audit/audit.log"  # its directory is made later
    assert (config.logging.format, config.logging.level) == ("json", "debug")
    defaults = load_config(_write(tmp_path, ""))
    assert defaults.audit.policy_file == "" and defaults.audit.max_size_mb == 100
    assert defaults.audit.max_backups == 10 and defaults.serving.shutdown_delay_seconds == 1.0
    assert (defaults.logging.format, defaults.logging.level) == ("text", "info")
