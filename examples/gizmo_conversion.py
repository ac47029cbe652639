"""An example version converter, for the two versions of tests/resources/gizmos.yaml, declared
in a CRD with the annotation

    kext.io/hooks: '{"conversion": "examples.gizmo_conversion:convert"}'

kext calls it with a copy of one object and the apiVersion wanted (`<group>/<version>`), and
stores or serves what it returns; see kext/registry/conversion.py for the contract (keep kind,
name, namespace and uid; of metadata only labels and annotations changes are kept). The same
function can answer a conversion webhook (`convert_review`), as the tests' webhook does.
"""

from __future__ import annotations

from typing import Any

Object = dict[str, Any]

# v1beta1 counted what v1 calls replicas, in spec and status alike.
RENAMED = {("v1beta1", "v1"): ("count", "replicas"), ("v1", "v1beta1"): ("replicas", "count")}


def convert(obj: Object, desired_api_version: str) -> Object:
    """obj in desired_api_version: `count` and `replicas` swapped as the versions name them."""
    source = str(obj.get("apiVersion", "")).rpartition("/")[2]
    target = desired_api_version.rpartition("/")[2]
    old, new = RENAMED.get((source, target), ("", ""))
    for part in ("spec", "status"):
        fields = obj.get(part)
        if old and isinstance(fields, dict) and old in fields:
            fields[new] = fields.pop(old)
    obj["apiVersion"] = desired_api_version
    return obj


def convert_review(review: Object) -> Object:
    """The answer to an apiextensions.k8s.io/v1 ConversionReview, for a webhook."""
    request = review["request"]
    converted = [convert(obj, request["desiredAPIVersion"]) for obj in request["objects"]]
    return {"apiVersion": review["apiVersion"], "kind": "ConversionReview",
            "response": {"uid": request["uid"], "convertedObjects": converted,
                         "result": {"status": "Success"}}}
