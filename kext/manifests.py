"""The cluster objects of a kext install (SPEC §8) without helm: `kext manifests`.

These builders are the source of `kext manifests`. The helm chart (deploy/helm/kext) renders
the same objects from its default values; tests/deploy render the chart and check, object by
object, that the two agree (helm's own labels and the generated key material aside) and that
`Install`'s defaults are the chart's values.yaml defaults. A change here or there fails those
tests until the other side follows.

The bundled 3-member etcd is the chart's default and so is built here; the chart's options
(cert-manager, an external etcd, a ServiceMonitor, admission from the cluster) are the chart's
alone.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from kext import __version__
from kext.config import ConfigError, load_config, load_yaml_documents, resource_manifests

if TYPE_CHECKING:  # kext.certs (cryptography) is imported when the command runs
    from kext.certs import EtcdCerts, KeyPair, ServiceCerts

Object = dict[str, Any]

CONFIG_DIR = "/etc/kext/config"  # the ConfigMap: server.yaml and resources.yaml
SERVING_DIR = "/etc/kext/serving"  # the serving-certificate Secret
ETCD_TLS_DIR = "/etc/kext/etcd"  # the etcd client-certificate Secret
VAR_DIR = "/kext/var"  # the only writable path (an emptyDir); the image's WORKDIR is /kext
ETCD_MEMBERS = 3


def _resources(cpu: str, memory: str, limit: str) -> Object:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": limit}}


@dataclass(frozen=True)
class Install:
    """What shapes a kext install: the chart's default values (deploy/helm/kext/values.yaml),
    with the release called `name` in `namespace`."""

    name: str = "kext"
    namespace: str = "kext"
    image: str = f"kext:{__version__}"
    image_pull_policy: str = "IfNotPresent"
    replicas: int = 2
    port: int = 8443
    service_port: int = 443
    group_priority_minimum: int = 1000
    version_priority: int = 15
    cluster_domain: str = "cluster.local"
    pdb_max_unavailable: int = 1
    resources: Object = field(default_factory=lambda: _resources("100m", "128Mi", "512Mi"))
    pod_security_context: Object = field(default_factory=lambda: {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
    security_context: Object = field(default_factory=lambda: {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    })
    etcd_prefix: str = "/registry"
    etcd_image: str = "registry.k8s.io/etcd:3.5.21-0"
    etcd_storage: str = "2Gi"
    etcd_resources: Object = field(default_factory=lambda: _resources("100m", "256Mi", "1Gi"))

    @property
    def etcd_name(self) -> str:
        return f"{self.name}-etcd"

    def etcd_member_hosts(self) -> list[str]:
        """The names on the bundled etcd members' certificate."""
        etcd, ns, domain = self.etcd_name, self.namespace, self.cluster_domain
        hosts = ["localhost", etcd, f"{etcd}.{ns}.svc", f"{etcd}.{ns}.svc.{domain}"]
        for member in self._members():
            hosts += [f"{member}.{etcd}.{ns}.svc", f"{member}.{etcd}.{ns}.svc.{domain}"]
        return [*hosts, "127.0.0.1"]

    def etcd_endpoints(self) -> list[str]:
        """The bundled members' client URLs, as kext's storage.etcd.endpoints."""
        return [f"https://{m}.{self.etcd_name}.{self.namespace}.svc:2379" for m in self._members()]

    def _members(self) -> list[str]:
        return [f"{self.etcd_name}-{i}" for i in range(ETCD_MEMBERS)]


def manifests(install: Install, definitions: Sequence[Object], serving: ServiceCerts,
              etcd: EtcdCerts) -> list[Object]:
    """Every object of a kext install for `kubectl apply`, in an order it can apply them:
    the Namespace (which `helm install --create-namespace` would make), then what the chart
    renders with its defaults."""
    if not definitions:
        raise ValueError("no resource definitions: kext would serve nothing")
    config_map = _config_map(install, definitions)
    objects: list[Object] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": install.namespace}},
        _service_account(install),
        _tls_secret(install, f"{install.name}-serving-cert", "apiserver", serving.ca,
                    serving.serving),
        config_map,
        *_rbac(install, definitions),
        _service(install),
        _deployment(install, config_map),
        *_api_services(install, definitions, serving.ca),
        _pod_disruption_budget(install, install.name, "apiserver", install.pdb_max_unavailable),
        _network_policy(install),
        *_bundled_etcd(install, etcd),
    ]
    return objects


def cluster_server_config(install: Install) -> Object:
    """The server.yaml kext runs with in the cluster (the chart's `kext.serverConfig`)."""
    return {
        "apiVersion": "kext.io/v1alpha1",
        "kind": "ServerConfig",
        "serving": {
            "bindAddress": "0.0.0.0",
            "port": install.port,
            "certFile": f"{SERVING_DIR}/tls.crt",
            "keyFile": f"{SERVING_DIR}/tls.key",
        },
        "storage": {
            "prefix": install.etcd_prefix,
            "etcd": {
                "endpoints": install.etcd_endpoints(),
                "caFile": f"{ETCD_TLS_DIR}/ca.crt",
                "certFile": f"{ETCD_TLS_DIR}/tls.crt",
                "keyFile": f"{ETCD_TLS_DIR}/tls.key",
            },
        },
        # What an aggregated server in a cluster needs; this version of kext refuses them.
        "authentication": {"fromCluster": True, "tokenReview": {"enabled": True}},
        "authorization": {"mode": "Delegated"},
        "kubernetes": {"kubeconfig": "", "inCluster": True},
        "resources": [{"file": f"{CONFIG_DIR}/resources.yaml"}],
    }


def group_versions(definitions: Sequence[Object]) -> list[tuple[str, str]]:
    """The served (group, version) pairs of the definitions, sorted as the chart sorts them."""
    found = {
        (d["spec"]["group"], v["name"])
        for d in definitions
        for v in d["spec"]["versions"]
        if v.get("served")
    }
    return sorted(found, key=lambda gv: f"{gv[0]}/{gv[1]}")


def to_yaml_stream(objects: Sequence[Object]) -> str:
    """The objects as one YAML stream for `kubectl apply -f -`."""
    return yaml.safe_dump_all(objects, sort_keys=False, explicit_start=True, width=1 << 16)


# --- the objects ----------------------------------------------------------------------------


def _selector(install: Install, component: str) -> Object:
    return {
        "app.kubernetes.io/name": "kext",
        "app.kubernetes.io/instance": install.name,
        "app.kubernetes.io/component": component,
    }


def _labels(install: Install, component: str) -> Object:
    return {
        **_selector(install, component),
        "app.kubernetes.io/version": __version__,
        "app.kubernetes.io/part-of": "kext",
    }


def _meta(install: Install, name: str, component: str = "apiserver",
          namespace: str | None = "") -> Object:
    meta: Object = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace or install.namespace
    meta["labels"] = _labels(install, component)
    return meta


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _service_account(install: Install) -> Object:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(install, install.name)}


def _tls_secret(install: Install, name: str, component: str, ca: KeyPair,
                pair: KeyPair) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(install, name, component),
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": _b64(pair.cert_pem),
            "tls.key": _b64(pair.key_pem),
            "ca.crt": _b64(ca.cert_pem),
        },
    }


def _config_map(install: Install, definitions: Sequence[Object]) -> Object:
    resources = "".join(
        "---\n" + yaml.safe_dump(d, sort_keys=True, width=1 << 16) for d in definitions
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(install, f"{install.name}-config"),
        "data": {
            "server.yaml": yaml.safe_dump(cluster_server_config(install), sort_keys=True),
            "resources.yaml": resources,
        },
    }


def _service(install: Install) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(install, install.name),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(install, "apiserver"),
            "ports": [{"name": "https", "port": install.service_port, "targetPort": "https",
                       "protocol": "TCP"}],
        },
    }


def _probe(path: str, period: int, failures: int, timeout: int | None = None,
           port: str = "https", scheme: str | None = "HTTPS") -> Object:
    get: Object = {"path": path, "port": port}
    if scheme:
        get["scheme"] = scheme
    probe: Object = {"httpGet": get, "periodSeconds": period}
    if timeout is not None:
        probe["timeoutSeconds"] = timeout
    probe["failureThreshold"] = failures
    return probe


def _deployment(install: Install, config_map: Object) -> Object:
    selector = _selector(install, "apiserver")
    checksum = hashlib.sha256(yaml.safe_dump(config_map).encode()).hexdigest()
    container = {
        "name": "kext",
        "image": install.image,
        "imagePullPolicy": install.image_pull_policy,
        "args": ["--config", f"{CONFIG_DIR}/server.yaml"],
        "ports": [{"name": "https", "containerPort": install.port, "protocol": "TCP"}],
        "startupProbe": _probe("/livez", 2, 60),
        "livenessProbe": _probe("/livez", 10, 3, timeout=5),
        "readinessProbe": _probe("/readyz", 5, 3, timeout=5),
        "resources": copy.deepcopy(install.resources),
        "securityContext": copy.deepcopy(install.security_context),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "serving-cert", "mountPath": SERVING_DIR, "readOnly": True},
            {"name": "etcd-client", "mountPath": ETCD_TLS_DIR, "readOnly": True},
            {"name": "var", "mountPath": VAR_DIR},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(install, install.name),
        "spec": {
            "replicas": install.replicas,
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": dict(selector),
                    "annotations": {"kext.io/config-checksum": checksum},
                },
                "spec": {
                    "serviceAccountName": install.name,
                    "securityContext": copy.deepcopy(install.pod_security_context),
                    "affinity": _anti_affinity(selector),
                    "topologySpreadConstraints": [{
                        "maxSkew": 1,
                        "topologyKey": "topology.kubernetes.io/zone",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": dict(selector)},
                    }],
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": f"{install.name}-config"}},
                        {"name": "serving-cert",
                         "secret": {"secretName": f"{install.name}-serving-cert"}},
                        {"name": "etcd-client",
                         "secret": {"secretName": f"{install.etcd_name}-client"}},
                        {"name": "var", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def _anti_affinity(selector: Object) -> Object:
    return {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100,
        "podAffinityTerm": {
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchLabels": dict(selector)},
        },
    }]}}


def _api_services(install: Install, definitions: Sequence[Object], ca: KeyPair) -> list[Object]:
    return [
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": _meta(install, f"{version}.{group}", namespace=None),
            "spec": {
                "group": group,
                "version": version,
                "service": {"name": install.name, "namespace": install.namespace,
                            "port": install.service_port},
                "caBundle": _b64(ca.cert_pem),
                "groupPriorityMinimum": install.group_priority_minimum,
                "versionPriority": install.version_priority,
            },
        }
        for group, version in group_versions(definitions)
    ]


def _has_scale(definition: Object) -> bool:
    return any((v.get("subresources") or {}).get("scale") is not None
               for v in definition["spec"]["versions"])


def _rbac(install: Install, definitions: Sequence[Object]) -> list[Object]:
    subject = [{"kind": "ServiceAccount", "name": install.name, "namespace": install.namespace}]
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    view_rules: list[Object] = []
    edit_rules: list[Object] = []
    for d in definitions:
        group, plural = d["spec"]["group"], d["spec"]["names"]["plural"]
        scale = _has_scale(d)
        view_rules.append({
            "apiGroups": [group],
            "resources": [plural, f"{plural}/status", *([f"{plural}/scale"] if scale else [])],
            "verbs": ["get", "list", "watch"],
        })
        edit_rules.append({"apiGroups": [group], "resources": [plural],
                           "verbs": ["create", "update", "patch", "delete", "deletecollection"]})
        if scale:
            edit_rules.append({"apiGroups": [group], "resources": [f"{plural}/scale"],
                               "verbs": ["update", "patch"]})
    view = _meta(install, f"{install.name}:aggregate-to-view", namespace=None)
    view["labels"].update({f"{aggregate}{role}": "true" for role in ("view", "edit", "admin")})
    edit = _meta(install, f"{install.name}:aggregate-to-edit", namespace=None)
    edit["labels"].update({f"{aggregate}{role}": "true" for role in ("edit", "admin")})
    rbac = "rbac.authorization.k8s.io"
    return [
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta(install, f"{install.name}:system:auth-delegator", namespace=None),
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "system:auth-delegator"},
            "subjects": subject,
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "RoleBinding",
            "metadata": _meta(install, f"{install.name}:extension-apiserver-authentication-reader",
                              namespace="kube-system"),
            "roleRef": {"apiGroup": rbac, "kind": "Role",
                        "name": "extension-apiserver-authentication-reader"},
            "subjects": subject,
        },
        {"apiVersion": f"{rbac}/v1", "kind": "ClusterRole", "metadata": view, "rules": view_rules},
        {"apiVersion": f"{rbac}/v1", "kind": "ClusterRole", "metadata": edit, "rules": edit_rules},
    ]


def _pod_disruption_budget(install: Install, name: str, component: str,
                           max_unavailable: int) -> Object:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(install, name, component),
        "spec": {"maxUnavailable": max_unavailable,
                 "selector": {"matchLabels": _selector(install, component)}},
    }


def _network_policy(install: Install) -> Object:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(install, install.name),
        "spec": {
            "podSelector": {"matchLabels": _selector(install, "apiserver")},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"port": "https", "protocol": "TCP"}]}],
        },
    }


def _bundled_etcd(install: Install, certs: EtcdCerts) -> list[Object]:
    etcd, ns = install.etcd_name, install.namespace
    selector = _selector(install, "etcd")
    peers = ",".join(f"{etcd}-{i}=https://{etcd}-{i}.{etcd}.{ns}.svc:2380"
                     for i in range(ETCD_MEMBERS))
    tls = "/etc/etcd/tls"
    container = {
        "name": "etcd",
        "image": install.etcd_image,
        "imagePullPolicy": "IfNotPresent",
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "command": ["etcd"],
        "args": [
            "--name=$(POD_NAME)",
            "--data-dir=/var/lib/etcd/data",
            "--listen-client-urls=https://0.0.0.0:2379",
            f"--advertise-client-urls=https://$(POD_NAME).{etcd}.{ns}.svc:2379",
            "--listen-peer-urls=https://0.0.0.0:2380",
            f"--initial-advertise-peer-urls=https://$(POD_NAME).{etcd}.{ns}.svc:2380",
            f"--initial-cluster={peers}",
            f"--initial-cluster-token={etcd}-{ns}",
            "--initial-cluster-state=new",
            "--listen-metrics-urls=http://0.0.0.0:2381",
            "--client-cert-auth",
            f"--trusted-ca-file={tls}/ca.crt",
            f"--cert-file={tls}/tls.crt",
            f"--key-file={tls}/tls.key",
            "--peer-client-cert-auth",
            f"--peer-trusted-ca-file={tls}/ca.crt",
            f"--peer-cert-file={tls}/tls.crt",
            f"--peer-key-file={tls}/tls.key",
        ],
        "ports": [
            {"name": "client", "containerPort": 2379, "protocol": "TCP"},
            {"name": "peer", "containerPort": 2380, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 2381, "protocol": "TCP"},
        ],
        "startupProbe": _probe("/health?serializable=false", 5, 60, port="metrics", scheme=None),
        "livenessProbe": _probe("/health?exclude=NOSPACE&serializable=true", 10, 6, timeout=5,
                                port="metrics", scheme=None),
        "readinessProbe": {
            "httpGet": {"path": "/health?serializable=false", "port": "metrics"},
            "periodSeconds": 5,
            "timeoutSeconds": 5,
        },
        "resources": copy.deepcopy(install.etcd_resources),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/etcd"},
            {"name": "tls", "mountPath": tls, "readOnly": True},
        ],
    }
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(install, etcd, "etcd"),
        "spec": {
            "serviceName": etcd,
            "replicas": ETCD_MEMBERS,
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": dict(selector)},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "fsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "affinity": _anti_affinity(selector),
                    "containers": [container],
                    "volumes": [{"name": "tls", "secret": {"secretName": f"{etcd}-server"}}],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data", "labels": dict(selector)},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": install.etcd_storage}},
                },
            }],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(install, etcd, "etcd"),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector,
            "ports": [
                {"name": "client", "port": 2379, "targetPort": "client", "protocol": "TCP"},
                {"name": "peer", "port": 2380, "targetPort": "peer", "protocol": "TCP"},
            ],
        },
    }
    client_port = {"port": "client", "protocol": "TCP"}
    network_policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(install, etcd, "etcd"),
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": _selector(install, "apiserver")}}],
                 "ports": [client_port]},
                {"from": [{"podSelector": {"matchLabels": dict(selector)}}],
                 "ports": [dict(client_port), {"port": "peer", "protocol": "TCP"}]},
            ],
        },
    }
    return [
        _tls_secret(install, f"{etcd}-server", "etcd", certs.ca, certs.member),
        _tls_secret(install, f"{etcd}-client", "etcd", certs.ca, certs.client),
        service,
        statefulset,
        _pod_disruption_budget(install, etcd, "etcd", 1),
        network_policy,
    ]


def definitions_from_config(path: str) -> list[Object]:
    """The CustomResourceDefinition manifests the server.yaml at path declares, as written,
    after load_config has checked the file and every definition (it raises ConfigError)."""
    load_config(path)
    with open(path, encoding="utf-8") as f:
        documents, _ = load_yaml_documents(f.read(), path)
    document = documents[0] if documents and isinstance(documents[0], dict) else {}
    entries = document.get("resources") or []
    problems: list[str] = []
    found = [manifest for index, item in enumerate(entries)
             for manifest, _where in resource_manifests(index, item, problems)]
    return [m for m in found if isinstance(m, dict)]


# --- the command ----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `kext manifests`."""
    # SUPPRESS keeps `kext --config F manifests` working, as for `kext check`.
    parser.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE",
                        help="the server.yaml whose resource definitions to install")
    parser.add_argument("--namespace", default=Install.namespace, metavar="NS",
                        help=f"where kext runs (default {Install.namespace})")
    parser.add_argument("--image", default=Install.image, metavar="IMG",
                        help=f"kext's image (default {Install.image}, built from the Dockerfile)")
    parser.add_argument("--ca-file", default="", metavar="CA.pem",
                        help="the CA that signs the serving certificate and is the APIService "
                        "caBundle; default: a CA "
                        "generated in --cert-dir and reused on the next run")
    parser.add_argument("--ca-key-file", default="", metavar="FILE",
                        help="the key of --ca-file (default: CA.key beside it)")
    parser.add_argument("--cert-dir", default="", metavar="DIR",
                        help="where the serving and etcd certificates are kept between runs "
                        "(default var/cluster-certs/NS)")


def command(config: str, namespace: str, image: str, ca_file: str, ca_key_file: str,
            cert_dir: str) -> int:
    """`kext manifests`: the YAML stream on stdout, what it wrote on stderr; 0, or 2 with one
    line per problem."""
    from kext.certs import ensure_etcd_certs, ensure_service_certs

    try:
        definitions = definitions_from_config(config)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 2
    install = Install(namespace=namespace, image=image)
    cert_dir = cert_dir or os.path.join("var", "cluster-certs", namespace)
    try:
        serving = ensure_service_certs(cert_dir, install.name, namespace, ca_file, ca_key_file,
                                       install.cluster_domain)
        etcd = ensure_etcd_certs(cert_dir, install.etcd_member_hosts(), install.name)
        stream = to_yaml_stream(manifests(install, definitions, serving, etcd))
    except (OSError, ValueError) as error:
        print(f"kext manifests: {getattr(error, 'strerror', None) or error}", file=sys.stderr)
        return 2
    for path in (*serving.written, *etcd.written):
        print(f"wrote {path}", file=sys.stderr)
    print(f"caBundle: the CA in {serving.ca_file}; the serving and etcd certificates are kept "
          f"in {cert_dir} for the next run", file=sys.stderr)
    sys.stdout.write(stream)
    return 0
