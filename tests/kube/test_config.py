"""Reading cluster access: kubeconfig files (as kubectl reads them) and the in-cluster
service account; what kext refuses, and that no secret shows in a repr."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from kext.certs import issue_cert, new_ca
from kext.config import KubernetesConfig
from kext.kube import KubeConfigError, from_settings, in_cluster, kubeconfig_paths, load_kubeconfig
from kext.kube.token import FileToken

CA = new_ca("test-ca")
CLIENT = issue_cert(CA, "alice", client=True)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write(path: Path, *, cluster: dict[str, Any] | None = None,
          user: dict[str, Any] | None = None, current: str = "main",
          extra_contexts: list[dict[str, Any]] | None = None) -> Path:
    document = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster if cluster is not None else {
            "server": "https://10.0.0.1:6443", "certificate-authority-data": b64(CA.cert_pem)}}],
        "users": [{"name": "u", "user": user if user is not None else {"token": "secret-token"}}],
        "contexts": [{"name": "main", "context": {"cluster": "c", "user": "u"}},
                     *(extra_contexts or [])],
        "current-context": current,
    }
    path.write_text(yaml.safe_dump(document))
    return path


def test_current_context_with_inline_data(tmp_path: Path) -> None:
    access = load_kubeconfig(str(write(tmp_path / "config", user={
        "client-certificate-data": b64(CLIENT.cert_pem),
        "client-key-data": b64(CLIENT.key_pem), "token": "secret-token"})))
    assert access.server == "https://10.0.0.1:6443"
    assert access.ca_pem == CA.cert_pem
    assert access.client_cert_pem == CLIENT.cert_pem
    assert access.token == "secret-token"
    assert "secret-token" not in repr(access) and "PRIVATE" not in repr(access)
    assert "context main" in access.source


def test_relative_files_resolve_against_the_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki/ca.crt").write_bytes(CA.cert_pem)
    (tmp_path / "pki/alice.crt").write_bytes(CLIENT.cert_pem)
    (tmp_path / "pki/alice.key").write_bytes(CLIENT.key_pem)
    (tmp_path / "pki/token").write_text("file-token\n")
    path = write(tmp_path / "config",
                 cluster={"server": "https://k:6443", "certificate-authority": "pki/ca.crt",
                          "tls-server-name": "kubernetes"},
                 user={"client-certificate": "pki/alice.crt", "client-key": "pki/alice.key",
                       "tokenFile": "pki/token"})
    access = load_kubeconfig(str(path))
    assert access.ca_pem == CA.cert_pem
    assert access.client_key_pem == CLIENT.key_pem
    assert access.token_file == str(tmp_path / "pki/token")
    assert access.tls_server_name == "kubernetes"
    assert FileToken(access.token_file).token() == "file-token"


def test_several_files_merge_first_wins(tmp_path: Path) -> None:
    first = write(tmp_path / "a", current="other", extra_contexts=[
        {"name": "other", "context": {"cluster": "c", "user": "u"}}])
    second = write(tmp_path / "b", cluster={"server": "https://second:6443"}, current="main")
    access = load_kubeconfig([str(first), str(tmp_path / "missing"), str(second)])
    assert access.server == "https://10.0.0.1:6443"  # cluster c from the first file
    assert "context other" in access.source
    assert load_kubeconfig(str(second), context="main").server == "https://second:6443"


def test_kubeconfig_paths_follow_kubeconfig_variable(tmp_path: Path) -> None:
    assert kubeconfig_paths({"KUBECONFIG": "/a:/b"}) == ["/a", "/b"]
    assert kubeconfig_paths({"HOME": str(tmp_path)})[0].endswith(".kube/config")


@pytest.mark.parametrize(("cluster", "user", "message"), [
    ({"server": "https://k", "insecure-skip-tls-verify": True}, None,
     "insecure-skip-tls-verify is not allowed"),
    ({"server": "http://k:8080"}, None, "must be an https:// URL"),
    ({}, None, "server is not set"),
    ({"server": "https://k", "certificate-authority-data": "%%%"}, None, "not valid base64"),
    ({"server": "https://k", "certificate-authority-data": b64(b"junk")}, None,
     "holds no PEM certificate"),
    (None, {"exec": {"command": "aws"}}, "exec is not supported"),
    (None, {"client-certificate-data": b64(CLIENT.cert_pem)}, "must be given together"),
    (None, {"tokenFile": "/nonexistent/token"}, "cannot read /nonexistent/token"),
])
def test_refused_kubeconfigs_say_why(tmp_path: Path, cluster: dict[str, Any] | None,
                                     user: dict[str, Any] | None, message: str) -> None:
    path = write(tmp_path / "config", cluster=cluster, user=user)
    with pytest.raises(KubeConfigError, match=message):
        load_kubeconfig(str(path))


def test_missing_file_and_context(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="no kubeconfig file found"):
        load_kubeconfig(str(tmp_path / "none"))
    with pytest.raises(KubeConfigError, match="context 'nope' does not exist"):
        load_kubeconfig(str(write(tmp_path / "config")), context="nope")
    with pytest.raises(KubeConfigError, match="no current-context"):
        load_kubeconfig(str(write(tmp_path / "config2", current="")))


def test_in_cluster(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_bytes(CA.cert_pem)
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    access = in_cluster(env, str(tmp_path))
    assert access.server == "https://10.96.0.1:443"
    assert access.token_file == str(tmp_path / "token")
    assert access.ca_pem == CA.cert_pem
    six = in_cluster({"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"},
                     str(tmp_path))
    assert six.server == "https://[fd00::1]:443"
    with pytest.raises(KubeConfigError, match="KUBERNETES_SERVICE_HOST"):
        in_cluster({}, str(tmp_path))
    with pytest.raises(KubeConfigError, match="token file"):
        in_cluster(env, str(tmp_path / "elsewhere"))


def test_from_settings(tmp_path: Path) -> None:
    assert from_settings(KubernetesConfig()) is None
    path = write(tmp_path / "config")
    access = from_settings(KubernetesConfig(kubeconfig=str(path)))
    assert access is not None and access.server == "https://10.0.0.1:6443"


def test_a_token_file_keeps_its_last_token_when_a_read_fails(tmp_path: Path) -> None:
    now = [0.0]
    path = tmp_path / "token"
    path.write_text("one")
    token = FileToken(str(path), period=60, clock=lambda: now[0])
    assert token.token() == "one"
    path.write_text("two")
    now[0] = 30
    assert token.token() == "one"  # still young
    now[0] = 55  # past the period less the leeway
    assert token.token() == "two"
    path.write_text("")
    now[0] = 200
    assert token.token() == "two"  # mid-rotation: an empty file keeps the last good token
    path.unlink()
    assert token.token() == "two"
    assert "two" not in repr(token)
