"""The audit log of a real kext after a scripted sequence of requests: one event per request
at the policy's level, bodies where the policy asks for them, nothing where it says None,
auditID equal to the Audit-ID response header, no credential anywhere, and the file rotated
at its size limit. The same kext logs one JSON line per request (logging.format: json)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.etcd import EtcdServer
from tests.kext_process import KextProcess, start_kext

GROUP = "/apis/example.kext.io/v1alpha1"
TOKEN = "secret-token-7f3e9a"
POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "nonResourceURLs": ["/healthz*", "/readyz*", "/livez*", "/metrics"]},
        {"level": "RequestResponse",
         "resources": [{"group": "example.kext.io", "resources": ["gadgets"]}]},
        {"level": "Request",
         "resources": [{"group": "example.kext.io", "resources": ["widgets/status"]}]},
        {"level": "Metadata"},
    ],
}


def widget(name: str) -> dict[str, Any]:
    return {"apiVersion": "example.kext.io/v1alpha1", "kind": "Widget",
            "metadata": {"name": name}, "spec": {"size": 1}}


def gadget(name: str, note: str = "") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if note:
        metadata["annotations"] = {"note": note}
    return {"apiVersion": "example.kext.io/v1alpha1", "kind": "Gadget", "metadata": metadata,
            "spec": {"model": "m"}}


@pytest.fixture(scope="module")
def audited(etcd_server: EtcdServer,
            tmp_path_factory: pytest.TempPathFactory) -> Any:
    workdir: Path = tmp_path_factory.mktemp("audited")
    policy = workdir / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    log_path = workdir / "audit" / "audit.log"
    kext = start_kext(workdir, etcd_server.endpoint,
                      audit={"policyFile": str(policy), "logPath": str(log_path),
                             "maxSizeMB": 1, "maxBackups": 1},
                      logging={"format": "json", "level": "debug"})
    try:
        yield kext, log_path
    finally:
        kext.stop()


def read_events(path: Path, audit_ids: set[str], timeout: float = 10) -> list[dict[str, Any]]:
    """The events in the log (and its backups), once each of audit_ids has its last one
    (ResponseComplete, or ResponseStarted for a refused request)."""
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(path.parent.glob("audit*.log"))
        events = [json.loads(line) for f in files for line in f.read_text().splitlines()
                  if line]
        done = {e["auditID"] for e in events if e["stage"] == "ResponseComplete"
                or e["responseStatus"]["code"] == 401}
        if audit_ids <= done or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def test_a_scripted_sequence_is_audited_as_the_policy_says(audited: Any) -> None:
    kext, log_path = audited
    assert isinstance(kext, KextProcess)
    http = kext.session()
    ns = f"audit-{uuid.uuid4().hex[:6]}"
    base = f"{kext.url}{GROUP}/namespaces/{ns}/widgets"
    gadget_name = f"g-{uuid.uuid4().hex[:6]}"
    sent: list[tuple[str, requests.Response]] = []  # (what, response)

    def record(what: str, response: requests.Response) -> requests.Response:
        sent.append((what, response))
        return response

    assert record("create widget", http.post(base, json=widget("w1"))).status_code == 201
    assert record("get widget", http.get(f"{base}/w1")).status_code == 200
    assert record("list widgets", http.get(base)).status_code == 200
    status = record("get for status", http.get(f"{base}/w1")).json()
    status["status"] = {"phase": "Ready"}
    assert record("update status",
                  http.put(f"{base}/w1/status", json=status)).status_code == 200
    assert record("create gadget", http.post(f"{kext.url}{GROUP}/gadgets",
                                             json=gadget(gadget_name))).status_code == 201
    assert record("get missing gadget",
                  http.get(f"{kext.url}{GROUP}/gadgets/absent")).status_code == 404
    assert http.get(f"{kext.url}/healthz").status_code == 200  # level None
    assert http.get(f"{kext.url}/metrics").status_code == 200  # level None
    own_id = f"from-the-aggregator-{uuid.uuid4().hex[:6]}"
    assert record("own audit ID", http.get(f"{base}/w1", headers={"Audit-ID": own_id})
                  ).headers["Audit-ID"] == own_id
    record("with a token", http.get(f"{base}/w1?access_token={TOKEN}",
                                    headers={"Authorization": f"Bearer {TOKEN}",
                                             "X-Forwarded-For": "10.1.2.3"}))
    anonymous = requests.get(f"{base}/w1", verify=kext.ca_file, timeout=10)
    assert anonymous.status_code == 401
    with http.get(f"{base}?watch=true&timeoutSeconds=1", stream=True, timeout=30) as watch:
        watch_id = watch.headers["Audit-ID"]
        for _ in watch.iter_lines():
            pass
    assert record("delete widget", http.delete(f"{base}/w1")).status_code == 200

    ids = {r.headers["Audit-ID"] for _, r in sent} | {anonymous.headers["Audit-ID"], watch_id}
    events = read_events(log_path, ids)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_id.setdefault(e["auditID"], []).append(e)

    for what, response in sent:
        audit_id = response.headers["Audit-ID"]
        got = by_id.get(audit_id, [])
        assert [e["stage"] for e in got] == ["ResponseComplete"], (what, got)
        assert got[0]["responseStatus"]["code"] == response.status_code, what
        assert got[0]["apiVersion"] == "audit.k8s.io/v1" and got[0]["kind"] == "Event"

    def event_of(what: str) -> dict[str, Any]:
        response = next(r for w, r in sent if w == what)
        return by_id[response.headers["Audit-ID"]][0]

    created = event_of("create widget")
    assert created["level"] == "Metadata" and created["verb"] == "create"
    assert created["objectRef"] == {"resource": "widgets", "namespace": ns, "name": "w1",
                                    "apiGroup": "example.kext.io", "apiVersion": "v1alpha1"}
    assert "requestObject" not in created and "responseObject" not in created
    assert created["user"]["username"] == "kext-admin"
    assert "system:masters" in created["user"]["groups"]
    assert created["sourceIPs"] == ["127.0.0.1"]
    assert created["userAgent"].startswith("python-requests/")
    assert created["annotations"]["authorization.k8s.io/decision"] == "allow"
    assert "authorization.k8s.io/reason" in created["annotations"]
    assert created["requestReceivedTimestamp"] <= created["stageTimestamp"]
    assert created["stageTimestamp"].endswith("Z") and len(created["stageTimestamp"]) == 27

    listed = event_of("list widgets")
    assert listed["verb"] == "list" and listed["objectRef"]["namespace"] == ns

    status_update = event_of("update status")
    assert status_update["level"] == "Request"
    assert status_update["objectRef"]["subresource"] == "status"
    assert status_update["requestObject"]["status"] == {"phase": "Ready"}
    assert "responseObject" not in status_update

    gadget_created = event_of("create gadget")
    assert gadget_created["level"] == "RequestResponse"
    assert gadget_created["requestObject"]["metadata"]["name"] == gadget_name
    assert gadget_created["responseObject"]["metadata"]["uid"]
    assert gadget_created["objectRef"]["name"] == gadget_name

    missing = event_of("get missing gadget")
    assert missing["responseStatus"]["reason"] == "NotFound"
    assert missing["responseStatus"]["status"] == "Failure"
    assert missing["responseObject"]["kind"] == "Status"

    assert event_of("own audit ID")["auditID"] == own_id
    assert event_of("with a token")["sourceIPs"] == ["10.1.2.3", "127.0.0.1"]

    refused = by_id[anonymous.headers["Audit-ID"]]
    assert [e["stage"] for e in refused] == ["ResponseStarted"]
    assert refused[0]["user"] == {}
    assert refused[0]["responseStatus"] == {"metadata": {}, "status": "Failure",
                                            "message": "Unauthorized",
                                            "reason": "Unauthorized", "code": 401}

    watched = [e for e in events if e["auditID"] == watch_id]
    assert [e["stage"] for e in watched] == ["ResponseStarted", "ResponseComplete"]
    assert watched[0]["verb"] == "watch"

    # level None: no event for the probes and scrapes
    assert not [e for e in events if e["requestURI"].startswith(("/healthz", "/metrics"))]
    # no credential anywhere in the audit files
    for f in log_path.parent.glob("audit*.log"):
        assert TOKEN not in f.read_text()

    # the same requests in kext's own log: one JSON line each, with the same audit IDs
    lines = [json.loads(line) for line in kext.log().splitlines() if line.startswith("{")]
    requests_logged = {entry["audit-ID"]: entry for entry in lines if entry["msg"] == "HTTP"}
    entry = requests_logged[event_of("create widget")["auditID"]]
    assert entry["level"] == "debug" and entry["logger"] == "kext.httplog"
    assert entry["verb"] == "POST" and entry["resp"] == 201 and entry["user"] == "kext-admin"
    assert entry["URI"] == f"{GROUP}/namespaces/{ns}/widgets"
    assert entry["latency"].endswith(("ms", "µs", "s"))
    assert requests_logged[watch_id]["verb"] == "WATCH"
    assert TOKEN not in kext.log()
    assert requests_logged[event_of("with a token")["auditID"]]["URI"].endswith(
        "access_token=REDACTED")


def test_the_audit_log_rotates_at_its_size_limit(audited: Any) -> None:
    kext, log_path = audited
    http = kext.session()
    note = "n" * 200_000  # a gadget at RequestResponse: about 400 kB per event
    ids = []
    for i in range(8):
        response = http.post(f"{kext.url}{GROUP}/gadgets",
                             json=gadget(f"big-{uuid.uuid4().hex[:6]}-{i}", note))
        assert response.status_code == 201, response.text
        ids.append(response.headers["Audit-ID"])

    def files() -> list[Path]:
        return sorted(log_path.parent.glob("audit*.log"))

    deadline = time.monotonic() + 10
    while ids[-1] not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ids[-1] in log_path.read_text()
    found = files()
    backups = [f for f in found if f != log_path]
    assert len(backups) == 1  # maxBackups: 1 (older ones were removed)
    assert backups[0].name.startswith("audit-") and backups[0].name.endswith(".log")
    for f in found:
        assert f.stat().st_size <= 1024 * 1024
        for line in f.read_text().splitlines():
            json.loads(line)  # rotation never splits an event
    kept = {json.loads(line)["auditID"] for f in found for line in f.read_text().splitlines()}
    assert ids[-1] in kept and ids[0] not in kept  # the oldest went with the removed backups
