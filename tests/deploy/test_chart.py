"""deploy/helm/kext rendered as `helm template` would, for its defaults and each option: every
object valid against the Kubernetes schemas, the APIService's caBundle verifying the serving
certificate for the Service's DNS name, and the pieces an aggregated server needs in place."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cryptography.x509 import verification

from kext.config import parse_config, unimplemented
from tests.deploy.render import REPO, Object, Rendered, Renderer, RenderError, validate
from tests.deploy.tls import b64_pem, dns_names, verify_client, verify_server

# Each option of the chart, as `--set` arguments (the defaults are the first).
OPTIONS: dict[str, tuple[str, ...]] = {
    "defaults": (),
    "cert-manager": ("certManager.enabled=true",),
    "cert-manager with your issuer": (
        "certManager.enabled=true", "certManager.issuerRef.name=corp-ca",
        "certManager.issuerRef.kind=ClusterIssuer", "certManager.issuerRef.group=cert-manager.io",
    ),
    "external etcd": (
        "etcd.endpoints={https://etcd-0.example.com:2379,https://etcd-1.example.com:2379}",
        "etcd.clientSecret=kext-etcd-tls",
    ),
    "external etcd without TLS": ("etcd.endpoints={http://etcd.storage.svc:2379}",),
    "ServiceMonitor": ("serviceMonitor.enabled=true", "serviceMonitor.labels.release=prom"),
    "admission from the cluster": ("admission.fromCluster=true",),
    "control-plane CIDRs": ("networkPolicy.controlPlaneCIDRs={10.0.0.0/24,192.168.10.0/28}",),
    "no PDB or NetworkPolicy": ("podDisruptionBudget.enabled=false", "networkPolicy.enabled=false"),
    "three replicas, own names": ("replicaCount=3", "fullnameOverride=widgets-api",
                                  "image.repository=registry.example.com/widgets",
                                  "image.tag=1.2.3"),
}

MULTI_VERSION_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: databases.storage.example.com
spec:
  group: storage.example.com
  names: {kind: Database, plural: databases, singular: database, listKind: DatabaseList}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
      subresources:
        status: {}
        scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
    - name: v1beta1
      served: true
      storage: false
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
    - name: v1alpha1
      served: false
      storage: false
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"""


@pytest.fixture(scope="module")
def default(render: Renderer) -> Rendered:
    return render()


@pytest.mark.parametrize("option", list(OPTIONS))
def test_every_rendered_object_is_valid(render: Renderer, option: str) -> None:
    rendered = render(*OPTIONS[option])
    validate(rendered.objects)
    for obj in rendered.objects:
        assert "insecureSkipTLSVerify" not in obj.get("spec", {}), obj["metadata"]["name"]
    for api_service in rendered.of_kind("APIService"):
        spec = api_service["spec"]
        injected = api_service["metadata"].get("annotations", {})
        assert spec.get("caBundle") or "cert-manager.io/inject-ca-from" in injected


def test_the_validator_refuses_what_kubectl_would(default: Rendered) -> None:
    """The schema check is strict: a misplaced field and a wrong type both fail."""
    service = yaml.safe_load(yaml.safe_dump(default.one("Service", "kext")))
    service["spec"]["targetPort"] = 8443
    with pytest.raises(AssertionError, match="targetPort"):
        validate([service])
    deployment = yaml.safe_load(yaml.safe_dump(default.one("Deployment", "kext")))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(AssertionError, match="replicas"):
        validate([deployment])


def test_defaults_install_what_an_aggregated_server_needs(default: Rendered) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in default.objects)
    assert kinds == sorted([
        ("APIService", "v1alpha1.example.kext.io"),
        ("ClusterRole", "kext:aggregate-to-edit"),
        ("ClusterRole", "kext:aggregate-to-view"),
        ("ClusterRoleBinding", "kext:system:auth-delegator"),
        ("ConfigMap", "kext-config"),
        ("Deployment", "kext"),
        ("NetworkPolicy", "kext"),
        ("NetworkPolicy", "kext-etcd"),
        ("PodDisruptionBudget", "kext"),
        ("PodDisruptionBudget", "kext-etcd"),
        ("RoleBinding", "kext:extension-apiserver-authentication-reader"),
        ("Secret", "kext-etcd-client"),
        ("Secret", "kext-etcd-server"),
        ("Secret", "kext-serving-cert"),
        ("Service", "kext"),
        ("Service", "kext-etcd"),
        ("ServiceAccount", "kext"),
        ("StatefulSet", "kext-etcd"),
    ])
    for obj in default.objects:
        if obj["kind"] not in ("APIService", "ClusterRole", "ClusterRoleBinding"):
            expected = "kube-system" if obj["kind"] == "RoleBinding" else "kext"
            assert obj["metadata"]["namespace"] == expected, obj["metadata"]["name"]


def test_ca_bundle_verifies_the_serving_certificate(render: Renderer) -> None:
    rendered = render(namespace="widgets", fresh=True)
    secret = rendered.one("Secret", "kext-serving-cert")
    ca = b64_pem(rendered.one("APIService", "v1alpha1.example.kext.io")["spec"]["caBundle"])
    cert, key = b64_pem(secret["data"]["tls.crt"]), b64_pem(secret["data"]["tls.key"])
    assert b64_pem(secret["data"]["ca.crt"]) == ca
    # The name the aggregator dials, and the cluster-local one.
    verify_server(ca, cert, key, "kext.widgets.svc")
    verify_server(ca, cert, key, "kext.widgets.svc.cluster.local")
    with pytest.raises(verification.VerificationError):
        verify_server(ca, cert, key, "kext.default.svc")
    # Another render is another CA: the bundle does not verify its certificate.
    other = render(namespace="widgets", fresh=True).one("Secret", "kext-serving-cert")
    with pytest.raises(verification.VerificationError):
        verify_server(ca, b64_pem(other["data"]["tls.crt"]), key, "kext.widgets.svc")


def test_service_sends_443_to_kexts_port(render: Renderer) -> None:
    rendered = render("port=9443")
    service = rendered.one("Service", "kext")
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]
    container = rendered.one("Deployment", "kext")["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"name": "https", "containerPort": 9443, "protocol": "TCP"}]
    for api_service in rendered.of_kind("APIService"):
        assert api_service["spec"]["service"] == {"name": "kext", "namespace": "kext",
                                                  "port": 443}
    server = yaml.safe_load(rendered.one("ConfigMap", "kext-config")["data"]["server.yaml"])
    assert server["serving"]["port"] == 9443
    assert service["spec"]["selector"] == (
        rendered.one("Deployment", "kext")["spec"]["template"]["metadata"]["labels"])


def test_deployment_is_replicated_probed_and_locked_down(default: Rendered) -> None:
    deployment = default.one("Deployment", "kext")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "kext:0.1.0"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"] == {"path": "/livez", "port": "https",
                                                    "scheme": "HTTPS"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    writable = [m for m in container["volumeMounts"] if not m.get("readOnly")]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert [(m["mountPath"], "emptyDir" in volumes[m["name"]]) for m in writable] == [
        ("/kext/var", True)]
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert pod["serviceAccountName"] == "kext"
    pdb = default.one("PodDisruptionBudget", "kext")
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]


def _mounted_files(rendered: Rendered, root: Path) -> Object:
    """The pod's read-only mounts written under root (ConfigMap and Secret keys as files),
    and kext's server.yaml with its paths moved there."""
    pod = rendered.one("Deployment", "kext")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in pod["containers"][0]["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            files = rendered.one("ConfigMap", volume["configMap"]["name"])["data"]
            contents = {k: v.encode() for k, v in files.items()}
        elif "secret" in volume:
            data = rendered.one("Secret", volume["secret"]["secretName"])["data"]
            contents = {k: b64_pem(v) for k, v in data.items()}
        else:
            continue
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        for key, value in contents.items():
            (target / key).write_bytes(value)
    text = (root / "etc/kext/config/server.yaml").read_text()
    document: Object = yaml.safe_load(text.replace("/etc/kext/", f"{root}/etc/kext/"))
    return document


def test_server_yaml_is_a_cluster_config_kext_reads(default: Rendered, tmp_path: Path) -> None:
    """The ConfigMap's server.yaml, with the pod's mounts in place, is a valid kext
    configuration: its files exist where the Deployment mounts them, it serves the declared
    resources, and it asks for nothing this version of kext refuses."""
    document = _mounted_files(default, tmp_path)
    config = parse_config(document, source="server.yaml")
    assert [d.name for d in config.resources] == ["widgets.example.kext.io"]
    assert config.serving.bind_address == "0.0.0.0"
    assert config.authorization.mode == "Delegated"
    assert config.authentication.from_cluster and config.authentication.token_review.enabled
    assert config.kubernetes.in_cluster
    assert config.storage.etcd.endpoints == [
        f"https://kext-etcd-{i}.kext-etcd.kext.svc:2379" for i in range(3)]
    etcd = config.storage.etcd
    verify_client(*(Path(p).read_bytes() for p in (etcd.ca_file, etcd.cert_file, etcd.key_file)))
    assert unimplemented(config) == []


def test_bundled_etcd_has_three_members_with_peer_and_client_tls(default: Rendered) -> None:
    statefulset = default.one("StatefulSet", "kext-etcd")
    assert statefulset["spec"]["replicas"] == 3
    assert statefulset["spec"]["serviceName"] == "kext-etcd"
    claim = statefulset["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    args = dict(a.removeprefix("--").partition("=")[::2] for a in container["args"])
    assert args["initial-cluster"].count("=https://") == 3
    assert {"client-cert-auth", "peer-client-cert-auth"} <= set(args)
    assert args["listen-client-urls"].startswith("https://")
    assert args["listen-peer-urls"].startswith("https://")
    server = default.one("Secret", "kext-etcd-server")["data"]
    ca, cert, key = (b64_pem(server[k]) for k in ("ca.crt", "tls.crt", "tls.key"))
    for i in range(3):  # each member serves clients and peers under its own name ...
        verify_server(ca, cert, key, f"kext-etcd-{i}.kext-etcd.kext.svc")
    verify_client(ca, cert, key)  # ... and dials its peers with the same certificate
    client = default.one("Secret", "kext-etcd-client")["data"]
    verify_client(ca, b64_pem(client["tls.crt"]), b64_pem(client["tls.key"]))
    assert default.one("Service", "kext-etcd")["spec"]["clusterIP"] == "None"


def test_external_etcd_uses_your_endpoints_and_client_secret(render: Renderer) -> None:
    rendered = render(*OPTIONS["external etcd"])
    assert not rendered.of_kind("StatefulSet")
    assert {o["metadata"]["name"] for o in rendered.of_kind("Secret")} == {"kext-serving-cert"}
    server = yaml.safe_load(rendered.one("ConfigMap", "kext-config")["data"]["server.yaml"])
    assert server["storage"]["etcd"] == {
        "endpoints": ["https://etcd-0.example.com:2379", "https://etcd-1.example.com:2379"],
        "caFile": "/etc/kext/etcd/ca.crt",
        "certFile": "/etc/kext/etcd/tls.crt",
        "keyFile": "/etc/kext/etcd/tls.key",
    }
    pod = rendered.one("Deployment", "kext")["spec"]["template"]["spec"]
    assert {"name": "etcd-client", "secret": {"secretName": "kext-etcd-tls"}} in pod["volumes"]

    plain = render(*OPTIONS["external etcd without TLS"])
    server = yaml.safe_load(plain.one("ConfigMap", "kext-config")["data"]["server.yaml"])
    assert server["storage"]["etcd"]["caFile"] == ""
    pod = plain.one("Deployment", "kext")["spec"]["template"]["spec"]
    assert "etcd-client" not in {v["name"] for v in pod["volumes"]}


def test_cert_manager_issues_the_certificate_and_injects_the_ca(render: Renderer) -> None:
    rendered = render(*OPTIONS["cert-manager"])
    assert not rendered.of_kind("Secret") or {
        o["metadata"]["name"] for o in rendered.of_kind("Secret")} == {
        "kext-etcd-server", "kext-etcd-client"}
    certificate = rendered.one("Certificate", "kext-serving-cert")
    assert certificate["spec"]["secretName"] == "kext-serving-cert"
    assert "kext.kext.svc" in certificate["spec"]["dnsNames"]
    assert certificate["spec"]["issuerRef"]["name"] == "kext-ca"
    ca_certificate = rendered.one("Certificate", "kext-ca")
    assert ca_certificate["spec"]["isCA"] is True
    assert rendered.one("Issuer", "kext-ca")["spec"] == {"ca": {"secretName": "kext-ca"}}
    for api_service in rendered.of_kind("APIService"):
        assert api_service["metadata"]["annotations"] == {
            "cert-manager.io/inject-ca-from": "kext/kext-serving-cert"}
        assert "caBundle" not in api_service["spec"]

    yours = render(*OPTIONS["cert-manager with your issuer"])
    assert not yours.of_kind("Issuer")
    assert yours.one("Certificate", "kext-serving-cert")["spec"]["issuerRef"] == {
        "name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}


def test_one_api_service_per_served_group_version(render: Renderer, tmp_path: Path) -> None:
    crds = tmp_path / "crds.yaml"
    widgets = (REPO / "config" / "resources" / "widgets.yaml").read_text()
    crds.write_text(f"{MULTI_VERSION_CRD}---\n{widgets}")
    rendered = render("apiService.groupPriorityMinimum=2000",
                      set_file=[f"definitionsFile={crds}"])
    validate(rendered.objects)
    api_services = {o["metadata"]["name"]: o["spec"] for o in rendered.of_kind("APIService")}
    assert sorted(api_services) == [
        "v1.storage.example.com", "v1alpha1.example.kext.io", "v1beta1.storage.example.com"]
    for name, spec in api_services.items():
        assert name == f"{spec['version']}.{spec['group']}"
        assert (spec["groupPriorityMinimum"], spec["versionPriority"]) == (2000, 15)
    config = rendered.one("ConfigMap", "kext-config")["data"]
    served = [d for d in yaml.safe_load_all(config["resources.yaml"]) if d]
    assert [d["metadata"]["name"] for d in served] == [
        "databases.storage.example.com", "widgets.example.kext.io"]
    rules = rendered.one("ClusterRole", "kext:aggregate-to-edit")["rules"]
    assert {"apiGroups": ["storage.example.com"], "resources": ["databases/scale"],
            "verbs": ["update", "patch"]} in rules


def test_rbac_delegates_and_aggregates(render: Renderer) -> None:
    rendered = render()
    subject = [{"kind": "ServiceAccount", "name": "kext", "namespace": "kext"}]
    delegator = rendered.one("ClusterRoleBinding", "kext:system:auth-delegator")
    assert delegator["roleRef"]["name"] == "system:auth-delegator"
    assert delegator["subjects"] == subject
    reader = rendered.one("RoleBinding", "kext:extension-apiserver-authentication-reader")
    assert reader["metadata"]["namespace"] == "kube-system"
    assert reader["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                 "name": "extension-apiserver-authentication-reader"}
    assert reader["subjects"] == subject
    view = rendered.one("ClusterRole", "kext:aggregate-to-view")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert view["rules"] == [{"apiGroups": ["example.kext.io"],
                              "resources": ["widgets", "widgets/status"],
                              "verbs": ["get", "list", "watch"]}]
    edit = rendered.one("ClusterRole", "kext:aggregate-to-edit")
    labels = edit["metadata"]["labels"]
    assert labels["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert labels["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in labels
    assert not [o for o in rendered.objects if o["metadata"]["name"] == "kext:admission"]

    admission = render("admission.fromCluster=true")
    role = admission.one("ClusterRole", "kext:admission")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert resources == {"mutatingwebhookconfigurations", "validatingwebhookconfigurations",
                         "validatingadmissionpolicies", "validatingadmissionpolicybindings",
                         "namespaces"}
    assert all(rule["verbs"] == ["get", "list", "watch"] for rule in role["rules"])
    assert admission.one("ClusterRoleBinding", "kext:admission")["subjects"] == subject
    server = yaml.safe_load(admission.one("ConfigMap", "kext-config")["data"]["server.yaml"])
    assert server["admission"] == {"fromCluster": True}


def test_service_monitor_scrapes_metrics_over_verified_tls(render: Renderer) -> None:
    rendered = render(*OPTIONS["ServiceMonitor"])
    monitor = rendered.one("ServiceMonitor", "kext")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    endpoint = monitor["spec"]["endpoints"][0]
    assert (endpoint["port"], endpoint["scheme"], endpoint["path"]) == ("https", "https",
                                                                        "/metrics")
    assert endpoint["tlsConfig"]["ca"] == {"secret": {"name": "kext-serving-cert",
                                                      "key": "ca.crt"}}
    assert "insecureSkipVerify" not in endpoint["tlsConfig"]
    secret = rendered.one("Secret", "kext-serving-cert")
    assert endpoint["tlsConfig"]["serverName"] in dns_names(b64_pem(secret["data"]["tls.crt"]))


def test_network_policy_opens_only_kexts_port(render: Renderer) -> None:
    policy = render(*OPTIONS["control-plane CIDRs"]).one("NetworkPolicy", "kext")
    assert policy["spec"]["ingress"] == [{
        "ports": [{"port": "https", "protocol": "TCP"}],
        "from": [{"ipBlock": {"cidr": "10.0.0.0/24"}}, {"ipBlock": {"cidr": "192.168.10.0/28"}}],
    }]


def test_extra_config_reaches_server_yaml_and_rolls_the_pods(render: Renderer,
                                                             default: Rendered) -> None:
    rendered = render("config.logging.format=json", "config.serving.workers=2",
                      "config.serving.bindAddress=127.0.0.1")
    server = yaml.safe_load(rendered.one("ConfigMap", "kext-config")["data"]["server.yaml"])
    assert server["logging"] == {"format": "json"}
    assert server["serving"]["workers"] == 2
    assert server["serving"]["bindAddress"] == "0.0.0.0"  # the cluster's keys win

    def checksum(r: Rendered) -> str:
        template = r.one("Deployment", "kext")["spec"]["template"]
        return str(template["metadata"]["annotations"]["kext.io/config-checksum"])

    assert checksum(rendered) != checksum(default)
    assert checksum(render(fresh=True)) == checksum(default)


@pytest.mark.parametrize(("args", "values", "message"), [
    (("replicaCount=0",), None, "replicaCount"),
    (("replicas=3",), None, "Additional properties"),
    (("etcd.endpoints={etcd:2379}",), None, "etcd.endpoints"),
    ((), {"definitions": []}, "give kext at least one CustomResourceDefinition"),
    ((), {"definitions": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}]},
     "definitions"),
])
def test_bad_values_are_refused(render: Renderer, args: tuple[str, ...], values: Object | None,
                                message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render(*args, values=values)


def test_a_broken_definitions_file_is_named(render: Renderer, tmp_path: Path) -> None:
    crds = tmp_path / "crds.yaml"
    crds.write_text(f"{MULTI_VERSION_CRD}---\nspec: [unclosed\n")
    with pytest.raises(RenderError, match="definitionsFile, document 2"):
        render(set_file=[f"definitionsFile={crds}"])
