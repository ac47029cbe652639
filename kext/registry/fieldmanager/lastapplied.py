"""kubectl's client-side apply annotation as server-side apply treats it: the conflicts a first
server-side apply by kubectl may take over, and the annotation kept equal to what kubectl
applies (cf. k8s.io/apimachinery pkg/util/managedfields/internal: lastapplied.go,
lastappliedmanager.go, lastappliedupdater.go).
"""

from __future__ import annotations

import json
from typing import Any

from kext.api.errors import go_json
from kext.api.meta import TOTAL_ANNOTATION_SIZE_LIMIT
from kext.registry.fieldmanager.fieldpath import Path
from kext.registry.fieldmanager.typed import Atom, compare, to_field_set, validation_message

Object = dict[str, Any]

LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
# The manager whose apply upgrades client-side apply and keeps its annotation in sync.
KUBECTL_MANAGER = "kubectl"


def allowed_conflicts(live: Object, t: Atom, api_version: str) -> set[Path] | None:
    """Conflicts a server-side apply by kubectl may take over (lastAppliedManager): the fields
    the annotation of `live`, an object of type `t`, still describes as they are; None when
    there is no usable annotation for `api_version`."""
    metadata = live.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    text = annotations.get(LAST_APPLIED_ANNOTATION) if isinstance(annotations, dict) else None
    if not isinstance(text, str) or not text:
        return None
    try:
        last = json.loads(text)
    except ValueError:
        return None
    if not isinstance(last, dict) or not last.get("kind") or (
            last.get("apiVersion") != api_version):
        return None
    if validation_message(last, t):
        return None
    diff = compare(last, live, t)
    return to_field_set(last, t) - diff.modified - diff.added - diff.removed


def sync_annotation(metadata: dict[str, Any], applied: Object) -> None:
    """lastAppliedUpdater: an existing client-side apply annotation of `metadata` becomes
    what kubectl applied (dropped if it no longer fits the annotation size limit)."""
    annotations = metadata.get("annotations")
    if not isinstance(annotations, dict) or not annotations.get(LAST_APPLIED_ANNOTATION):
        return
    config = dict(applied)
    config_meta = config.get("metadata")
    if isinstance(config_meta, dict):
        config_meta = dict(config_meta)
        config_annotations = config_meta.get("annotations")
        if isinstance(config_annotations, dict):
            config_meta["annotations"] = {k: v for k, v in config_annotations.items()
                                          if k != LAST_APPLIED_ANNOTATION}
        elif "annotations" in config_meta:
            del config_meta["annotations"]
        config["metadata"] = config_meta
    annotations = dict(annotations)
    annotations[LAST_APPLIED_ANNOTATION] = go_json(config) + "\n"
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > TOTAL_ANNOTATION_SIZE_LIMIT:
        del annotations[LAST_APPLIED_ANNOTATION]
    metadata["annotations"] = annotations
