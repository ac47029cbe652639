"""`kext manifests` and `kext certs --service`: the chart's default objects without helm, valid
against the Kubernetes schemas, equal in substance to the chart's default render, trusting a CA
that is kept between runs or given."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from kext.certs import issue_cert, new_ca
from kext.cli import main
from tests.deploy.render import REPO, Object, Renderer, validate
from tests.deploy.tls import b64_pem, verify_client, verify_server

HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def kext_manifests(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[Object],
                                                                            str]:
    """Run `kext manifests ARGS` in this process: exit code, objects, stderr."""
    code = main(["manifests", *args])
    out, err = capsys.readouterr()
    objects = [o for o in yaml.safe_load_all(out) if o] if code == 0 else []
    return code, objects, err


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """config/server.yaml names its resources relative to the repository."""
    monkeypatch.chdir(REPO)


def substance(obj: Object) -> Object:
    """obj without what differs between two installs of the same thing: helm's labels, key
    material (checked on its own), the config checksum, and the ConfigMap's files parsed."""
    obj = copy.deepcopy(obj)
    metadata = obj["metadata"]
    for label in HELM_ONLY_LABELS:
        metadata.get("labels", {}).pop(label, None)
    if obj["kind"] == "Secret":
        obj["data"] = {key: "<key material>" for key in obj["data"]}
    if obj["kind"] == "APIService":
        obj["spec"]["caBundle"] = "<CA>"
    if obj["kind"] == "Deployment":
        annotations = obj["spec"]["template"]["metadata"]["annotations"]
        assert len(annotations["kext.io/config-checksum"]) == 64
        annotations["kext.io/config-checksum"] = "<sha256>"
    if obj["kind"] == "ConfigMap":
        obj["data"]["server.yaml"] = yaml.safe_load(obj["data"]["server.yaml"])
        documents = yaml.safe_load_all(obj["data"]["resources.yaml"])
        obj["data"]["resources.yaml"] = [d for d in documents if d]
    return obj


def by_identity(objects: list[Object]) -> dict[tuple[str, str, str], Object]:
    keyed = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
             for o in objects}
    assert len(keyed) == len(objects), "two objects with one identity"
    return keyed


def test_manifests_are_valid_and_the_charts_defaults(
    capsys: pytest.CaptureFixture[str], render: Renderer, tmp_path: Path, in_repo: None,
) -> None:
    code, objects, err = kext_manifests(capsys, "--config", "config/server.yaml",
                                        "--namespace", "widgets",
                                        "--cert-dir", str(tmp_path / "certs"))
    assert code == 0, err
    validate(objects)
    assert objects[0] == {"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": "widgets"}}
    chart = render(namespace="widgets").objects
    ours = {key: substance(o) for key, o in by_identity(objects[1:]).items()}
    theirs = {key: substance(o) for key, o in by_identity(chart).items()}
    assert sorted(ours) == sorted(theirs)
    for key in ours:
        assert ours[key] == theirs[key], key


def test_manifests_trust_their_ca_and_keep_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, in_repo: None,
) -> None:
    args = ("--config", "config/server.yaml", "--cert-dir", str(tmp_path / "certs"))
    code, first, err = kext_manifests(capsys, *args)
    assert code == 0, err
    assert f"wrote {tmp_path}/certs/ca.crt" in err
    objects = by_identity(first)
    ca = (tmp_path / "certs" / "ca.crt").read_bytes()
    api_service = objects[("APIService", "", "v1alpha1.example.kext.io")]
    assert b64_pem(api_service["spec"]["caBundle"]) == ca
    serving = objects[("Secret", "kext", "kext-serving-cert")]["data"]
    verify_server(ca, b64_pem(serving["tls.crt"]), b64_pem(serving["tls.key"]), "kext.kext.svc")
    etcd_server = objects[("Secret", "kext", "kext-etcd-server")]["data"]
    etcd_ca = b64_pem(etcd_server["ca.crt"])
    member = b64_pem(etcd_server["tls.crt"]), b64_pem(etcd_server["tls.key"])
    verify_server(etcd_ca, *member, "kext-etcd-2.kext-etcd.kext.svc")
    verify_client(etcd_ca, *member)
    client = objects[("Secret", "kext", "kext-etcd-client")]["data"]
    verify_client(etcd_ca, b64_pem(client["tls.crt"]), b64_pem(client["tls.key"]))

    # A second run applies the same trust: nothing is rewritten.
    code, second, err = kext_manifests(capsys, *args)
    assert code == 0 and "wrote" not in err
    assert by_identity(second) == objects


def test_manifests_with_your_ca(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                in_repo: None) -> None:
    ca = new_ca("corp-ca")
    ca.write(str(tmp_path / "corp.pem"), str(tmp_path / "corp.key"))
    code, objects, err = kext_manifests(
        capsys, "--config", "config/server.yaml", "--ca-file", str(tmp_path / "corp.pem"),
        "--image", "registry.example.com/kext:1.0", "--cert-dir", str(tmp_path / "certs"))
    assert code == 0, err
    keyed = by_identity(objects)
    bundle = keyed[("APIService", "", "v1alpha1.example.kext.io")]["spec"]["caBundle"]
    assert b64_pem(bundle) == ca.cert_pem
    serving = keyed[("Secret", "kext", "kext-serving-cert")]["data"]
    verify_server(ca.cert_pem, b64_pem(serving["tls.crt"]), b64_pem(serving["tls.key"]),
                  "kext.kext.svc.cluster.local")
    assert (tmp_path / "corp.pem").read_bytes() == ca.cert_pem  # given, so never rewritten
    pod = keyed[("Deployment", "kext", "kext")]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example.com/kext:1.0"


@pytest.mark.parametrize(("setup", "message"), [
    ("no key", "corp.key: no such file"),
    ("not a CA", "not a PEM certificate and its EC private key"),
])
def test_manifests_refuse_an_unusable_ca(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         in_repo: None, setup: str, message: str) -> None:
    (tmp_path / "corp.pem").write_text("not a certificate\n")
    if setup == "not a CA":
        (tmp_path / "corp.key").write_text("not a key\n")
    code, _, err = kext_manifests(capsys, "--config", "config/server.yaml",
                                  "--ca-file", str(tmp_path / "corp.pem"),
                                  "--cert-dir", str(tmp_path / "certs"))
    assert code == 2
    assert message in err


def test_manifests_name_the_problems_of_the_config(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("apiVersion: kext.io/v1alpha1\nkind: ServerConfig\n"
                      "resources:\n  - file: missing.yaml\n")
    code, _, err = kext_manifests(capsys, "--config", str(config))
    assert code == 2
    assert err.splitlines() == ["resources[0].file: no such file: missing.yaml"]


def _cert(pem: bytes) -> Any:
    return x509.load_pem_x509_certificate(pem)


def test_certs_for_a_service(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_dir = tmp_path / "svc"
    assert main(["certs", "--service", "widgets-api", "--namespace", "apps",
                 "--dir", str(out_dir)]) == 0
    out = capsys.readouterr().out
    ca = (out_dir / "ca.crt").read_bytes()
    bundle = [line.split(": ", 1)[1] for line in out.splitlines()
              if line.startswith("caBundle: ")]
    assert bundle == [base64.b64encode(ca).decode()]
    cert, key = (out_dir / "tls.crt").read_bytes(), (out_dir / "tls.key").read_bytes()
    for host in ("widgets-api.apps.svc", "widgets-api.apps.svc.cluster.local"):
        verify_server(ca, cert, key, host)
    assert (out_dir / "tls.key").stat().st_mode & 0o077 == 0

    # Run again: the same CA and certificate, kept.
    assert main(["certs", "--service", "widgets-api", "--namespace", "apps",
                 "--dir", str(out_dir)]) == 0
    assert "wrote" not in capsys.readouterr().out
    assert (out_dir / "tls.crt").read_bytes() == cert

    # For another namespace the certificate is reissued by the same CA.
    assert main(["certs", "--service", "widgets-api", "--namespace", "other",
                 "--dir", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "kept  " + str(out_dir / "ca.crt") in out and "wrote " + str(out_dir / "tls.crt") in out
    verify_server(ca, (out_dir / "tls.crt").read_bytes(), (out_dir / "tls.key").read_bytes(),
                  "widgets-api.other.svc")


def test_a_peer_certificate_serves_and_dials() -> None:
    ca = new_ca("etcd-ca")
    peer = issue_cert(ca, "etcd", hosts=["etcd-0.etcd"], peer=True)
    verify_server(ca.cert_pem, peer.cert_pem, peer.key_pem, "etcd-0.etcd")
    verify_client(ca.cert_pem, peer.cert_pem, peer.key_pem)
    assert _cert(peer.cert_pem).subject.rfc4514_string() == "CN=etcd"
