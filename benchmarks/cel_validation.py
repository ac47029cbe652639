"""The cost of CEL validation per create: `python -m benchmarks.cel_validation`.

A resource with 10 x-kubernetes-validations rules (cross-field, regex, quantity, URL, IP,
list, map and messageExpression rules: tests/integration/buckets-with-rules.yaml plus six)
against the same resource with its rules removed:

- in process: `Schema.validate` of one object (what every create and update runs);
- on the wire: creates through a real kext on a real etcd, at 1 and 8 clients.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from kext.api.schema import Schema
from tests.etcd import EtcdServer
from tests.kext_process import start_kext

CRD = Path(__file__).resolve().parent.parent / "tests/integration/buckets-with-rules.yaml"
EXTRA_PROPERTIES: dict[str, Any] = {
    "endpoint": {"type": "string", "maxLength": 256,
                 "x-kubernetes-validations": [{"rule": "isURL(self) && "
                                                       "url(self).getScheme() == 'https'"}]},
    "allowFrom": {"type": "string", "maxLength": 64,
                  "x-kubernetes-validations": [{"rule": "isCIDR(self)"}]},
    "tags": {"type": "array", "maxItems": 16, "items": {"type": "string", "maxLength": 32},
             "x-kubernetes-validations": [{"rule": "self.all(t, t.lowerAscii() == t)"},
                                          {"rule": "self.size() == 0 || self.isSorted()"}]},
    "labels": {"type": "object", "maxProperties": 16,
               "additionalProperties": {"type": "string", "maxLength": 63},
               "x-kubernetes-validations": [{"rule": "self.all(k, k.size() <= 63)"}]},
}


def crd_with_ten_rules() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"].update(copy.deepcopy(EXTRA_PROPERTIES))
    return crd


def without_rules(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_rules(v) for k, v in value.items() if k != "x-kubernetes-validations"}
    if isinstance(value, list):
        return [without_rules(v) for v in value]
    return value


def bucket(name: str) -> dict[str, Any]:
    return {"apiVersion": "rules.kext.io/v1", "kind": "Bucket", "metadata": {"name": name},
            "spec": {"minReplicas": 1, "replicas": 2, "maxReplicas": 3, "retentionDays": 7,
                     "maxRetentionDays": 30, "owner": "team-a", "quota": "5Gi",
                     "storageClass": "fast", "endpoint": "https://example.com/b",
                     "allowFrom": "10.0.0.0/8", "tags": ["a", "b", "c"],
                     "labels": {"app": "web", "tier": "front"}}}


def count_rules(value: Any) -> int:
    if isinstance(value, dict):
        own = len(value.get("x-kubernetes-validations") or ())
        return own + sum(count_rules(v) for k, v in value.items()
                         if k != "x-kubernetes-validations")
    if isinstance(value, list):
        return sum(count_rules(v) for v in value)
    return 0


def in_process(crd: dict[str, Any], rounds: int) -> float:
    schema = Schema(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    obj = bucket("b")
    assert schema.validate(obj) == [], schema.validate(obj)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            schema.validate(obj)
        best = min(best, (time.perf_counter() - start) / rounds)
    return best


def on_the_wire(crd: dict[str, Any], etcd: EtcdServer, workdir: Path, creates: int,
                clients: int) -> float:
    path = workdir / f"crd-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(crd))
    kext = start_kext(workdir / path.stem, etcd.endpoint, resources=[{"file": str(path)}])
    try:
        ns = f"bench-{uuid.uuid4().hex[:6]}"
        url = f"{kext.url}/apis/rules.kext.io/v1/namespaces/{ns}/buckets"

        def work(worker: int, count: int, out: list[float]) -> None:
            session = kext.session()
            for i in range(count):
                start = time.perf_counter()
                r = session.post(url, json=bucket(f"w{worker}-{i}"))
                out.append(time.perf_counter() - start)
                assert r.status_code == 201, r.text
        work(0, 20, [])  # warm-up
        latencies: list[float] = []
        threads = [threading.Thread(target=work, args=(w + 1, creates // clients, latencies))
                   for w in range(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        return len(latencies) / elapsed
    finally:
        kext.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cel_validation",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--creates", type=int, default=800)
    parser.add_argument("--no-wire", action="store_true", help="only the in-process figures")
    args = parser.parse_args(argv)
    ruled = crd_with_ten_rules()
    plain = without_rules(ruled)
    print(f"rules: {count_rules(ruled)} (and {count_rules(plain)} without)")
    with_rules_s = in_process(ruled, args.rounds)
    without_s = in_process(plain, args.rounds)
    print(f"Schema.validate, one object: {with_rules_s * 1e6:.1f} µs with the rules, "
          f"{without_s * 1e6:.1f} µs without: the rules cost {(with_rules_s - without_s) * 1e6:.1f}"
          " µs per create")
    if args.no_wire:
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        etcd = EtcdServer(workdir / "etcd")
        etcd.start()
        try:
            for clients in (1, 8):
                rates = {name: on_the_wire(crd, etcd, workdir, args.creates, clients)
                         for name, crd in (("with rules", ruled), ("without", plain))}
                print(f"creates/s at {clients} client(s): "
                      + ", ".join(f"{name} {rate:.0f}" for name, rate in rates.items())
                      + f" (with/without {rates['with rules'] / rates['without']:.2f})")
        finally:
            etcd.stop()


if __name__ == "__main__":
    main()
