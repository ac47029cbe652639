"""Audit events on the wire (audit.k8s.io/v1 JSON lines) and the log they go to: rotated by
size as lumberjack rotates, and never blocking when full or failing (counted instead)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

import pytest

from kext.audit import AuditEvent, AuditLog, Level
from kext.audit.event import body_object_ref, micro_time, redact_uri, render
from kext.audit.log import RotatingFile
from kext.auth.user import UserInfo

pytestmark = pytest.mark.asyncio

ALICE = UserInfo("alice", ("devs", "system:authenticated"))
MANAGED = [{"manager": "kubectl", "operation": "Apply"}]


def event(level: Level = Level.METADATA, **kwargs: object) -> AuditEvent:
    fields: dict[str, object] = dict(
        level=level, audit_id="4f3a", request_uri="/apis/example.kext.io/v1/namespaces/ns/"
        "widgets", verb="create", user=ALICE, source_ips=["10.0.0.1", "127.0.0.1"],
        user_agent="kubectl/v1.30", received=1714557600.123456,
        object_ref={"resource": "widgets", "namespace": "ns", "name": "", "apiGroup":
                    "example.kext.io", "apiVersion": "v1", "subresource": ""},
    )
    fields.update(kwargs)
    return AuditEvent(**fields)


BODY = json.dumps({"apiVersion": "example.kext.io/v1", "kind": "Widget",
                   "metadata": {"name": "w1", "uid": "u-1", "resourceVersion": "7",
                                "managedFields": MANAGED}, "spec": {"size": 1}}).encode()


def line(e: AuditEvent, stage: str = "ResponseComplete") -> dict[str, object]:
    return json.loads(render(e.at_stage(stage, 1714557600.5)))


async def test_an_event_reads_as_kube_writes_it() -> None:
    e = event(body_object_ref=body_object_ref(BODY, "application/json"), response_code=201,
              response_body=BODY, response_content_type="application/json",
              annotations={"authorization.k8s.io/decision": "allow"})
    out = line(e)
    assert list(out) == ["kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb",
                         "user", "sourceIPs", "userAgent", "objectRef", "responseStatus",
                         "requestReceivedTimestamp", "stageTimestamp", "annotations"]
    assert out["kind"] == "Event" and out["apiVersion"] == "audit.k8s.io/v1"
    assert out["user"] == {"username": "alice", "groups": ["devs", "system:authenticated"]}
    # Metadata: the object is named from the body, but no body is recorded
    assert out["objectRef"] == {"resource": "widgets", "namespace": "ns", "name": "w1",
                                "uid": "u-1", "apiGroup": "example.kext.io",
                                "apiVersion": "v1", "resourceVersion": "7"}
    assert out["responseStatus"] == {"metadata": {}, "code": 201}
    assert out["requestReceivedTimestamp"] == "2024-05-01T10:00:00.123456Z"
    assert out["stageTimestamp"] == "2024-05-01T10:00:00.500000Z"
    received = line(e, "RequestReceived")
    assert received["stageTimestamp"] == received["requestReceivedTimestamp"]
    assert "name" not in received["objectRef"]  # read later, as kube

    request = line(event(Level.REQUEST, request_body=BODY, response_code=201,
                         response_body=BODY, request_content_type="application/json",
                         response_content_type="application/json"))
    assert request["requestObject"]["metadata"]["managedFields"] == MANAGED
    assert "responseObject" not in request
    full = line(event(Level.REQUEST_RESPONSE, request_body=BODY, response_code=201,
                      response_body=BODY, omit_managed_fields=True,
                      response_content_type="application/json"))
    assert "managedFields" not in full["requestObject"]["metadata"]
    assert "managedFields" not in full["responseObject"]["metadata"]
    assert full["responseObject"]["spec"] == {"size": 1}


async def test_a_failure_keeps_the_status_fields() -> None:
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": 'widgets "w1" not found', "reason": "NotFound",
              "details": {"name": "w1", "kind": "widgets"}, "code": 404}
    out = line(event(response_code=404, response_body=json.dumps(status).encode(),
                     response_content_type="application/json"))
    assert out["responseStatus"] == {"metadata": {}, "status": "Failure",
                                     "message": 'widgets "w1" not found', "reason": "NotFound",
                                     "details": {"name": "w1", "kind": "widgets"}, "code": 404}


async def test_yaml_bodies_and_credentials_in_uris() -> None:
    out = line(event(Level.REQUEST, request_body=b"spec:\n  size: 2\n",
                     request_content_type="application/apply-patch+yaml"))
    assert out["requestObject"] == {"spec": {"size": 2}}
    assert redact_uri("/apis/g/v1/w?watch=1&access_token=s3cret") == \
        "/apis/g/v1/w?watch=1&access_token=REDACTED"
    assert redact_uri("/apis/g/v1/w?watch=1") == "/apis/g/v1/w?watch=1"
    assert micro_time(0.5) == "1970-01-01T00:00:00.500000Z"


async def test_the_file_rotates_at_its_size_limit_and_keeps_the_newest_backups(
    tmp_path: Path,
) -> None:
    path = tmp_path / "logs" / "audit.log"
    out = RotatingFile(str(path), max_bytes=100, max_backups=2)
    lines = [f"{i:02d}".encode() * 20 + b"\n" for i in range(7)]  # 41 bytes each
    for item in lines:
        assert out.write([item]) == (0, "")
    out.close()
    # two lines fit in 100 bytes: 7 lines make 4 files, of which the oldest is removed
    assert path.read_bytes() == lines[6]
    backups = out.backups()
    assert len(backups) == 2
    assert [Path(b).read_bytes() for b in backups] == [lines[4] + lines[5], lines[2] + lines[3]]
    for name in backups:
        stem = Path(name).name
        assert stem.startswith("audit-") and stem.endswith(".log")  # audit-<UTC time>.log
    assert out.write([b"x" * 101]) == (1, "an event of 101 bytes exceeds the maximum file "
                                          "size of 100 bytes")
    # a restarted writer appends to the file it finds
    again = RotatingFile(str(path), max_bytes=100, max_backups=2)
    assert again.write([lines[0]]) == (0, "")
    again.close()
    assert path.read_bytes() == lines[6] + lines[0]
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


async def test_a_full_queue_or_a_failing_file_is_counted_never_waited_for(
    tmp_path: Path,
) -> None:
    lost: list[tuple[str, int]] = []
    writing, blocked = threading.Event(), threading.Event()

    class Stuck(RotatingFile):
        def write(self, lines: list[bytes]) -> tuple[int, str]:
            writing.set()
            blocked.wait(10)  # a disk that does not answer
            return super().write(lines)

    sink = AuditLog(str(tmp_path / "audit.log"), 1, 1, lambda p, n: lost.append((p, n)),
                    queue_size=3)
    sink._out = Stuck(str(tmp_path / "audit.log"), 1 << 20, 1)  # the file it writes to, stuck
    sink.start()
    sink.process(event().at_stage("ResponseComplete", 1.0))
    assert writing.wait(10)  # the writer is stuck on its first event
    for _ in range(9):
        sink.process(event().at_stage("ResponseComplete", 1.0))  # returns at once
    assert lost == [("buffered", 1)] * 6  # three wait in the queue, six are dropped
    await asyncio.wait_for(sink.close(timeout=0.1), 5)  # shutdown does not wait for ever
    blocked.set()  # the disk answers again: the writer writes what it holds

    def written() -> int:
        path = tmp_path / "audit.log"
        return len(path.read_text().splitlines()) if path.exists() else 0

    for _ in range(1000):
        if written() == 4:
            break
        await asyncio.sleep(0.01)
    assert written() == 4

    failing = tmp_path / "not-a-dir"
    failing.write_text("a file where the log's directory should be")
    lost.clear()
    broken = AuditLog(str(failing / "audit.log"), 1, 1, lambda p, n: lost.append((p, n)))
    broken.start()
    broken.process(event().at_stage("ResponseComplete", 1.0))
    await broken.close()
    assert lost == [("log", 1)]


async def test_closing_writes_everything_queued(tmp_path: Path) -> None:
    sink = AuditLog(str(tmp_path / "audit.log"), 1, 1, lambda p, n: None)
    sink.start()
    for i in range(1000):
        sink.process(event(audit_id=str(i)).at_stage("ResponseComplete", 1.0))
    await asyncio.wait_for(sink.close(), 10)
    ids = [json.loads(x)["auditID"] for x in (tmp_path / "audit.log").read_text().splitlines()]
    assert ids == [str(i) for i in range(1000)]
